"""GLUE fixtures: the shared GLUE files, the bert-base-uncased tokenizer, and a tiny random-init BERT block."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

GLUE_DIR = SHARED_DATA / "glue"
TOKENIZER = SHARED_DATA / "tokenizers" / "bert-base-uncased"
TINY_BERT = {
    "name": "hf_bert",
    "model_config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 128},
}


def tiny_sweep(output_dir: Path, **extra) -> dict:
    """A GLUE config dict: tiny BERT, MNLI (k-shot files) chained into RTE, small subsets, one seed."""
    raw = {
        "data_dir": str(GLUE_DIR), "model": TINY_BERT, "tokenizer": str(TOKENIZER), "output_dir": str(output_dir),
        "tasks": ["mnli", "rte"], "seeds": [17],
        "defaults": {"epochs": 1, "batch_size": 16, "max_seq_len": 64, "max_train_samples": 48,
                     "max_eval_samples": 64, "lr": 1.0e-3},
        "task_settings": {"mnli": {"train_file": "kshot-16-42/train.tsv",
                                   "eval_files": ["kshot-16-42/dev_matched.tsv", "kshot-16-42/dev_matched.tsv"]}},
    }
    raw.update(extra)
    return raw


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))
