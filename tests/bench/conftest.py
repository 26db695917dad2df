"""A tiny model for the benchmark tests: the quickstart YAML shrunk by key=value overrides."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import QUICKSTART_YAML

TINY = [
    "tokenizer.vocab_size=512",
    "model.model_config.hidden_size=32",
    "model.model_config.num_hidden_layers=1",
    "model.model_config.num_attention_heads=2",
    "model.model_config.intermediate_size=64",
    "model.model_config.max_position_embeddings=64",
]
FAST = ["--repeats", "3", "--warmup", "1", "--batch-size", "4", "--device", "cpu", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def two_yamls(tmp_path) -> list[str]:
    """The quickstart YAML and a copy under another name, so that a sweep has two models."""
    other = tmp_path / "hf-bert-tiny-copy.yaml"
    other.write_text(QUICKSTART_YAML.read_text())
    return [str(QUICKSTART_YAML), str(other)]
