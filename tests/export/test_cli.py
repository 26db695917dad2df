"""``python -m bertforge.export``: each format writes a folder its library loads; bad input is one line, exit 2."""

from __future__ import annotations

import sys

import pytest
import torch

from bertforge.cli import USER_ERROR_EXIT_CODE, run_cli
from bertforge.export.__main__ import main


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, argv)
    assert exit_.value.code == USER_ERROR_EXIT_CODE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_each_format_writes_a_loadable_folder(run_of, tmp_path, capsys):
    from pylate.models import ColBERT
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForMaskedLM

    run = str(run_of("flexbert_alibi")[0])
    run_cli(main, ["hf", run, "--out", str(tmp_path / "hf")])
    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "hf")).__name__ == "BertforgeForMaskedLM"
    run_cli(main, ["sentence-transformers", run, "--pooling", "cls", "--normalize", "--max-seq-length", "16",
                   "--out", str(tmp_path / "st")])
    st = SentenceTransformer(str(tmp_path / "st"))
    assert st.max_seq_length == 16 and st.get_sentence_embedding_dimension() == 32
    assert torch.as_tensor(st.encode(["w1 w2"])).norm().item() == pytest.approx(1.0, abs=1e-5)
    run_cli(main, ["pylate", run, "--dim", "8", "--out", str(tmp_path / "colbert")])
    assert ColBERT(model_name_or_path=str(tmp_path / "colbert"))[1].linear.weight.shape == (8, 32)
    assert capsys.readouterr().out.split() == [str(tmp_path / name) for name in ("hf", "st", "colbert")]


def test_bad_sources_fail_in_one_line(tmp_path, capsys):
    assert "not a bertforge run folder (no config.yaml)" in _fails(["hf", str(tmp_path), "--out", "x"], capsys)
    assert "no such folder" in _fails(["pylate", str(tmp_path / "no" / "run"), "--out", "x"], capsys)


def test_run_without_checkpoint_fails_in_one_line(run_of, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_of("m2_bert")[0], run, symlinks=True)
    (run / "checkpoints" / "latest-rank0.pt").unlink()
    err = _fails(["sentence-transformers", str(run), "--out", str(tmp_path / "st")], capsys)
    assert err == (f"bertforge: error: {run}/checkpoints has no latest-rank0.pt; train the run first or pass "
                   "--checkpoint")


@pytest.mark.parametrize(("fmt", "module", "package"), [("sentence-transformers", "sentence_transformers",
                                                          "sentence-transformers"), ("pylate", "pylate", "pylate")])
def test_missing_optional_package_names_the_extra(fmt, module, package, run_of, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as when it is not installed
    if module == "pylate":
        monkeypatch.setitem(sys.modules, "pylate.models", None)
    err = _fails([fmt, str(run_of("m2_bert")[0]), "--out", str(tmp_path / "x")], capsys)
    assert err == (f"bertforge: error: {package} is not installed; "
                   "install the retrieval extra: pip install -e .[retrieval]")
