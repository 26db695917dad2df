"""The ``m2_bert`` registry entries: M2-BERT masked LM and classifier from a ``model_config`` block."""

from __future__ import annotations

from typing import Any, Literal

from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError
from bertforge.models.classifier import ClassifierComposerModel, SequenceClassifier
from bertforge.models.common.vocab import check_vocab, padded_vocab_size
from bertforge.models.composer import MaskedLMComposerModel
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.model import M2BertForMaskedLM
from bertforge.registry import classifiers, models

KEY = "model.model_config"


def _mlm_module(tokenizer: Any, model_config: dict | None) -> M2BertForMaskedLM:
    cfg = from_dict(M2BertConfig, dict(model_config or {}), KEY)
    if cfg.vocab_size is None:
        cfg.vocab_size = padded_vocab_size(tokenizer, cfg.pad_vocab_to_multiple_of)
    check_vocab(tokenizer, cfg.vocab_size, f"{KEY}.vocab_size")
    return M2BertForMaskedLM(cfg)


@models.register("m2_bert", config_class=M2BertConfig)
def build_m2_bert_mlm(tokenizer: Any, model_config: dict | None = None) -> MaskedLMComposerModel:
    """M2-BERT (Monarch Mixer) masked LM. ``model_config`` keys are M2BertConfig fields."""
    return MaskedLMComposerModel(_mlm_module(tokenizer, model_config), tokenizer, exporter=None)


@classifiers.register("m2_bert", config_class=M2BertConfig)
def build_m2_bert_classifier(tokenizer: Any, num_labels: int, model_config: dict | None = None,
                             pooling: Literal["cls", "mean"] = "cls",
                             classifier_dropout: float | None = None) -> ClassifierComposerModel:
    """M2-BERT encoder + a new classification (``num_labels == 1``: regression) head, for GLUE.

    ``classifier_dropout`` (on the pooled output) null: the model's ``hidden_dropout``, as the original.
    """
    encoder = _mlm_module(tokenizer, model_config).model
    dropout = encoder.config.hidden_dropout if classifier_dropout is None else classifier_dropout
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("model.classifier_dropout", f"{dropout} must be in [0, 1) (null: hidden_dropout)")
    head = SequenceClassifier(encoder, encoder.config.hidden_size, num_labels, pooling, dropout)
    return ClassifierComposerModel(head, num_labels, tokenizer)
