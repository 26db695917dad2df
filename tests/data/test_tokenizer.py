"""WordPiece training is deterministic across processes; a tokenizer trained with the data is the one a run uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertforge.data.convert import convert
from bertforge.data.tokenizer import (
    SPECIAL_TOKENS,
    MDSTexts,
    data_tokenizer,
    tokenizer_for_run,
    train_wordpiece_backend,
)
from bertforge.errors import UserError
from tests.conftest import QUICKSTART_YAML, SAMPLE_TEXT, shakespeare_docs

# one process: train on the first 1200 speeches of the sample corpus and save tokenizer.json to argv[1]
TRAIN_SCRIPT = """
import re, sys
from bertforge.data.tokenizer import train_wordpiece_backend
docs = [d.strip() for d in re.split(r"\\n\\s*\\n", open(sys.argv[2]).read()) if d.strip()][:1200]
train_wordpiece_backend(docs, 512).save(sys.argv[1])
"""


def test_training_gives_identical_tokenizer_json_in_separate_processes(tmp_path):
    # before the fix every process numbered the '##c' pieces in its own hash order: 5 of 5 runs differed
    outs = [tmp_path / f"tokenizer{i}.json" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(out), str(SAMPLE_TEXT)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for out in outs]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    first, second = (out.read_bytes() for out in outs)
    assert len(json.loads(first)["model"]["vocab"]) == 512
    assert first == second


def test_trained_pieces_are_ordinary_tokens():
    tok = train_wordpiece_backend(shakespeare_docs()[:300], 300)
    state = json.loads(tok.to_str())
    assert [(t["id"], t["content"]) for t in state["added_tokens"]] == list(enumerate(SPECIAL_TOKENS))
    vocab = tok.get_vocab()
    assert len(vocab) == 300 and "##e" in vocab and "e" in vocab
    enc = tok.encode("Thunderbolts, ROMEO!")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]" and "[UNK]" not in enc.tokens
    assert any(t.startswith("##") for t in enc.tokens)
    assert tok.decode(enc.ids, skip_special_tokens=True) == "thunderbolts, romeo!"


@pytest.fixture(scope="module")
def data_with_tokenizer(tmp_path_factory) -> Path:
    """400 speeches as train/val MDS text splits, with a 300-token tokenizer trained by the converter."""
    folder = tmp_path_factory.mktemp("tokdata")
    (folder / "in.txt").write_text("\n\n".join(shakespeare_docs()[:400]) + "\n", encoding="utf-8")
    convert(folder / "in.txt", folder / "mds", doc_separator="blank", train_tokenizer=300)
    return folder / "mds"


def test_run_takes_the_data_tokenizer_which_equals_training_it(data_with_tokenizer, tmp_path):
    mds = data_with_tokenizer
    stored = (mds / "tokenizer" / "tokenizer.json").read_text()
    assert data_tokenizer(str(mds), str(mds / "train"), 300, True, None) == str(mds / "tokenizer")
    tok = tokenizer_for_run(None, str(mds / "train"), str(tmp_path / "run"), 300, True, None, str(mds))
    assert len(tok) == 300 and (tmp_path / "run" / "tokenizer.json").read_text() == stored
    assert json.loads(stored) == json.loads(train_wordpiece_backend(MDSTexts(str(mds / "train")), 300).to_str())


@pytest.mark.parametrize("other", [
    {"vocab_size": 301}, {"lowercase": False}, {"max_docs": 10}, {"train_folder": "val"},
])
def test_data_tokenizer_only_when_settings_match(data_with_tokenizer, other):
    mds = data_with_tokenizer
    args = {"train_folder": "train", "vocab_size": 300, "lowercase": True, "max_docs": None, **other}
    args["train_folder"] = str(mds / args["train_folder"])
    assert data_tokenizer(str(mds), **args) is None


def test_data_tokenizer_missing_folder_is_user_error(tmp_path):
    (tmp_path / "bertforge_meta.json").write_text(json.dumps(
        {"format": "text", "trained_tokenizer": {"path": "tokenizer", "split": "train", "vocab_size": 300,
                                                 "lowercase": True}}))
    with pytest.raises(UserError, match=r"names the tokenizer .*tokenizer, which is missing; re-run convert_dataset"):
        data_tokenizer(str(tmp_path), str(tmp_path / "train"), 300, True, None)


def test_build_tokenizer_uses_the_data_tokenizer(data_with_tokenizer, tmp_path):
    from bertforge.config import load_config
    from bertforge.train import build_tokenizer

    mds = data_with_tokenizer
    cfg = load_config(QUICKSTART_YAML, [f"run_dir={tmp_path / 'run'}", f"train_loader.dataset.local={mds}",
                                        f"eval_loader.dataset.local={mds}", "tokenizer.vocab_size=300"])
    tok = build_tokenizer(cfg)
    assert len(tok) == 300
    saved = tmp_path / "run" / "tokenizer" / "tokenizer.json"
    assert saved.read_text() == (mds / "tokenizer" / "tokenizer.json").read_text()


def test_a_rerun_asking_for_another_tokenizer_is_refused(data_with_tokenizer, tmp_path):
    """Before: a rerun reused the tokenizer an earlier attempt saved, whatever tokenizer.vocab_size now said."""
    from bertforge.config import load_config
    from bertforge.train import build_tokenizer

    mds = data_with_tokenizer
    args = [f"run_dir={tmp_path / 'run'}", f"train_loader.dataset.local={mds}", f"eval_loader.dataset.local={mds}"]
    assert len(build_tokenizer(load_config(QUICKSTART_YAML, [*args, "tokenizer.vocab_size=300"]))) == 300
    assert len(build_tokenizer(load_config(QUICKSTART_YAML, [*args, "tokenizer.vocab_size=300"]))) == 300  # reused
    with pytest.raises(UserError, match=r"^tokenizer\.vocab_size: 400, but an earlier attempt of this run saved a "
                                        r"tokenizer made with 300 in .*run/tokenizer"):
        build_tokenizer(load_config(QUICKSTART_YAML, [*args, "tokenizer.vocab_size=400"]))


def test_weights_from_a_folder_refuse_another_tokenizer(tmp_path):
    """A pretrained folder carries its tokenizer: another one (ids meaning other tokens) is refused; the same one
    under another path passes, and a folder without tokenizer files has nothing to compare."""
    import shutil

    from bertforge.data.tokenizer import check_pretrained_tokenizer, load_tokenizer
    from tests.conftest import SHARED_DATA

    bert, modernbert = (SHARED_DATA / "tokenizers" / name for name in ("bert-base-uncased", "modernbert"))
    folder = tmp_path / "pretrained"
    shutil.copytree(bert, folder)
    (folder / "config.json").write_text("{}")
    with pytest.raises(UserError, match=rf"^tokenizer\.name: '{modernbert}' is not the tokenizer {folder} was trained "
                                        rf"with \('{folder}'\).*; use the tokenizer of {folder}$"):
        check_pretrained_tokenizer(load_tokenizer(str(modernbert)), str(modernbert), str(folder), "tokenizer.name")
    check_pretrained_tokenizer(load_tokenizer(str(bert)), str(bert), str(folder), "tokenizer.name")
    bare = tmp_path / "weights-only"
    bare.mkdir()
    check_pretrained_tokenizer(load_tokenizer(str(modernbert)), str(modernbert), str(bare), "tokenizer.name")
