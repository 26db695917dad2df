"""The ``m2_bert`` registry entry: an M2-BERT masked LM from a ``model_config`` block."""

from __future__ import annotations

from typing import Any

from bertforge.config.validate import from_dict
from bertforge.models.common.vocab import check_vocab, padded_vocab_size
from bertforge.models.composer import MaskedLMComposerModel
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.model import M2BertForMaskedLM
from bertforge.registry import models

KEY = "model.model_config"


@models.register("m2_bert")
def build_m2_bert_mlm(tokenizer: Any, model_config: dict | None = None) -> MaskedLMComposerModel:
    """M2-BERT (Monarch Mixer) masked LM. ``model_config`` keys are M2BertConfig fields."""
    cfg = from_dict(M2BertConfig, dict(model_config or {}), KEY)
    if cfg.vocab_size is None:
        cfg.vocab_size = padded_vocab_size(tokenizer, cfg.pad_vocab_to_multiple_of)
    check_vocab(tokenizer, cfg.vocab_size, f"{KEY}.vocab_size")
    return MaskedLMComposerModel(M2BertForMaskedLM(cfg), tokenizer, exporter=None)
