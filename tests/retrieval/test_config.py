"""The retrieval YAML: the shipped files validate, bad lines fail in one line naming the key."""

import sys

import pytest

from bertforge.errors import UserError
from bertforge.retrieval.bm25 import BM25Index
from bertforge.retrieval.config import load_retrieval_config
from tests.conftest import REPO

YAMLS = sorted((REPO / "yamls" / "retrieval").glob("*.yaml"))
ST_YAML = REPO / "yamls" / "retrieval" / "quickstart-st.yaml"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_shipped_yamls_validate(path, scifact, minilm, monkeypatch):
    monkeypatch.chdir(REPO)
    teacher = [f"train.teacher={minilm}"] if "teacher:" in path.read_text() else []  # a quickstart's output
    cfg = load_retrieval_config(path, teacher)
    assert cfg.model.kind in ("dense", "colbert") and cfg.train is not None


@pytest.mark.parametrize("override, match", [
    ("train.epoch=2", r"^train.epoch: unknown key \(did you mean 'epochs'\?\)"),
    ("model.pooling=max", r"^model.pooling: 'max' is not allowed; choose one of 'mean', 'cls'"),
    ("data.path=/nonexistent/beir", r"^data.path: /nonexistent/beir is not a folder"),
    ("data.eval_split=dev", r"^data.eval_split: .*dev.tsv not found; splits there: test, train$"),
    ("model.path=/nonexistent/model", r"^model.path: /nonexistent/model does not exist"),
    ("eval.top_k=10", r"^eval.top_k: 10 must be >= 100"),
    ("train.lr=0", r"^train.lr: 0.0 must be > 0"),
    ("train.loss=distill", r"^train.loss: 'distill' is not allowed; choose one of 'contrastive', 'distillation'"),
    ("train.loss=distillation", r"^train.teacher: loss: distillation needs a teacher model folder"),
    ("train.teacher=x", r"^train.teacher: a teacher is only used with loss: distillation"),
    ("train.loss=distillation train.teacher=/nonexistent/t",
     r"^train.teacher: /nonexistent/t does not exist; pass a dense model or cross-encoder folder"),
    ("train.loss=distillation train.teacher=x train.hard_negatives=0",
     r"^train.hard_negatives: loss: distillation scores each query's positive against its BM25 negatives"),
    ("train.loss=distillation train.teacher=x train.teacher_scale=0", r"^train.teacher_scale: 0.0 must be > 0"),
])
def test_bad_lines_name_the_key(override, match, scifact, minilm, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(UserError, match=match) as err:
        load_retrieval_config(ST_YAML, override.split())
    assert "\n" not in str(err.value)


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "bm25s", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(UserError, match=r"^bm25s is not installed; install the retrieval extra: pip install -e \.\["):
        BM25Index({"d1": "text"})


def test_cli_prints_one_line(tmp_path, capsys):
    from bertforge.cli import run_cli
    from bertforge.retrieval import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("run_dir: x\nmodel: {path: y}\ndata: {path: z}\nevall: {}\n")
    with pytest.raises(SystemExit) as code:
        run_cli(main, [str(bad)])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bertforge: error: evall: unknown key (did you mean 'eval'?)") and "\n" not in err
