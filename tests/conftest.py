"""Shared fixtures: real text (tiny-shakespeare) as small MDS splits, and a tiny model config."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_TEXT = REPO / "data" / "sample" / "tinyshakespeare.txt"
# the pinned line is transformers 4.57; the GPU machine has 5, where a few behaviours the tests pin changed
TRANSFORMERS_5 = int(version("transformers").split(".")[0]) >= 5


def shakespeare_docs() -> list[str]:
    """The speeches of tiny-shakespeare (documents separated by blank lines)."""
    text = SAMPLE_TEXT.read_text()
    return [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]


def write_mds(folder: Path, docs: list[str]) -> None:
    """Write ``docs`` as a raw-text MDS split."""
    from streaming import MDSWriter

    with MDSWriter(out=str(folder), columns={"text": "str"}) as writer:
        for doc in docs:
            writer.write({"text": doc})


@pytest.fixture
def clean_registries(monkeypatch):
    """Give every registry a copy of its entries, so names registered by a test vanish after it."""
    from bertforge import registry

    registry.models.names()  # load the built-ins into the entries being copied
    for reg in registry.ALL.values():
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))


@pytest.fixture(scope="session")
def tiny_wordpiece(tmp_path_factory):
    """A WordPiece tokenizer (BertTokenizerFast) of 5 special tokens ([PAD] [UNK] [CLS] [SEP] [MASK]) and 40 words."""
    from transformers import BertTokenizerFast

    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(40)]) + "\n")
    return BertTokenizerFast(str(vocab))  # positional: vocab_file in transformers 4, vocab in 5


@pytest.fixture(scope="session")
def sample_mds(tmp_path_factory) -> Path:
    """train (1200 docs) and val (120 docs) MDS splits of tiny-shakespeare."""
    docs = shakespeare_docs()
    random.Random(0).shuffle(docs)
    root = tmp_path_factory.mktemp("mds")
    write_mds(root / "train", docs[:1200])
    write_mds(root / "val", docs[1200:1320])
    return root


def tiny_overrides(mds: Path, run_dir: Path, **extra) -> list[str]:
    """Command-line overrides turning the quickstart YAML into a seconds-long run."""
    values = {
        "run_dir": str(run_dir),
        "train_loader.dataset.local": str(mds),
        "eval_loader.dataset.local": str(mds),
        "tokenizer.vocab_size": 512,
        "max_seq_len": 64,
        "model.model_config.hidden_size": 32,
        "model.model_config.num_hidden_layers": 1,
        "model.model_config.intermediate_size": 64,
        "model.model_config.max_position_embeddings": 64,
        "global_train_batch_size": 16,
        "device_eval_batch_size": 32,
        "eval_subset_num_batches": 2,
        "progress_bar": False,
        "log_to_console": False,
        "eval_first": False,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


QUICKSTART_YAML = REPO / "yamls" / "quickstart" / "hf-bert-tiny.yaml"


def run_main(args: list[str], timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """Run ``main.py`` in a subprocess from the repo root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env, **popen,
    )
