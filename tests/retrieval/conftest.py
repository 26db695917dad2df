"""Paths of the shared BEIR SciFact copy and the MiniLM sentence-transformers folder (`make test` makes it)."""

from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

SCIFACT = SHARED_DATA / "beir" / "scifact"
MINILM = REPO / "data" / "models" / "all-MiniLM-L6-v2"


@pytest.fixture
def scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"BEIR SciFact not found at {SCIFACT}")
    return SCIFACT


@pytest.fixture
def minilm() -> Path:
    if not (MINILM / "modules.json").is_file():
        pytest.fail(f"{MINILM} not found: run `make retrieval-model` (make test does)")
    return MINILM
