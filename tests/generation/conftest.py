"""Tiny random masked LMs saved as Hugging Face folders: ModernBERT (RoPE) and BERT (learned positions)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import SHARED_DATA


def save_tiny(folder: Path, kind: str) -> Path:
    """A 2-layer, 32-wide random ``kind`` ("modernbert" or "bert") masked LM with its real tokenizer in ``folder``."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128, initializer_range=0.3)
    if kind == "modernbert":
        tok = AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / "modernbert")
        config = ModernBertConfig(vocab_size=50368, local_attention=16, global_attn_every_n_layers=2,
                                  pad_token_id=tok.pad_token_id, attn_implementation="sdpa", **small)
        model = ModernBertForMaskedLM(config)
    else:
        tok = AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / "bert-base-uncased")
        config = BertConfig(vocab_size=tok.vocab_size, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                            **small)
        model = BertForMaskedLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def modernbert_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("modernbert"), "modernbert")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("bert"), "bert")


@pytest.fixture(scope="session")
def modernbert_lm(modernbert_dir):
    """(model, tokenizer) of the tiny ModernBERT, loaded once."""
    from bertforge.generation import load_masked_lm

    return load_masked_lm(str(modernbert_dir))
