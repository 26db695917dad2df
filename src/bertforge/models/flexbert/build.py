"""The ``flexbert`` registry entry: FlexBERT MLM from a config block or converted Hugging Face weights."""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from transformers import AutoConfig, AutoModelForMaskedLM

from bertforge.config.validate import check_fields, from_dict
from bertforge.errors import ConfigError, UserError
from bertforge.models.classifier import ClassifierComposerModel, SequenceClassifier
from bertforge.models.common.vocab import check_vocab, padded_vocab_size
from bertforge.models.composer import MaskedLMComposerModel
from bertforge.models.convert.bert import (
    bert_incompatibilities,
    flexbert_config_from_bert,
    flexbert_state_from_bert,
    to_bert,
)
from bertforge.models.convert.modernbert import (
    flexbert_config_from_modernbert,
    flexbert_state_from_modernbert,
    modernbert_incompatibilities,
    to_modernbert,
)
from bertforge.models.convert.rules import load_exact
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from bertforge.registry import classifiers, models

KEY = "model.model_config"
log = logging.getLogger(__name__)


def _from_pretrained(name: str, overrides: dict) -> FlexBertForMaskedLM:
    """Convert a transformers ModernBERT or BERT checkpoint (folder or Hub name) into FlexBERT."""
    try:
        hf_config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"model.pretrained_model_name: cannot load '{name}' ({first})") from None
    if hf_config.model_type not in HF_IMPORTERS:
        raise ConfigError("model.pretrained_model_name", f"'{name}' is {hf_config.model_type}; FlexBERT converts "
                          "modernbert and bert checkpoints")
    to_config, to_state = HF_IMPORTERS[hf_config.model_type]
    cfg = to_config(hf_config, **overrides)  # refuses what FlexBERT cannot compute before loading any weight
    model = FlexBertForMaskedLM(cfg)
    source, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
    if info["missing_keys"]:  # e.g. an encoder-only checkpoint: transformers filled these at random
        log.warning("model.pretrained_model_name: '%s' has no %s; they start from random values (fine for "
                    "finetuning or continued pretraining, not for using its MLM head as is)", name,
                    ", ".join(sorted(info["missing_keys"])))
    _check_dropped(name, info["unexpected_keys"])
    load_exact(model, to_state(source.state_dict(), cfg), name)
    return model


NOT_MLM = re.compile(r"(^|\.)(pooler|seq_relationship|classifier|position_ids)(\.|$)")
"""Checkpoint tensors a masked LM has no place for by design: BERT's pooler and NSP head, a task classifier."""


def _check_dropped(name: str, dropped: list[str]) -> None:
    """Refuse a checkpoint whose tensors transformers' masked LM left out (other than :data:`NOT_MLM`): the model
    would compute something else than the source; say which task head is not carried over."""
    foreign = sorted(k for k in dropped if not NOT_MLM.search(k))
    if foreign:
        raise UserError(f"model.pretrained_model_name: '{name}' has tensors its masked LM does not use "
                        f"({', '.join(foreign[:3])}{f' and {len(foreign) - 3} more' if len(foreign) > 3 else ''}); "
                        "is it a BERT or ModernBERT checkpoint of another architecture?")
    if any("classifier" in k for k in dropped):
        log.warning("model.pretrained_model_name: '%s' holds a task classifier; it is not carried over (the "
                    "encoder is, and a GLUE run starts a new head with the task's pooling)", name)


HF_IMPORTERS = {"modernbert": (flexbert_config_from_modernbert, flexbert_state_from_modernbert),
              "bert": (flexbert_config_from_bert, flexbert_state_from_bert)}


def _mlm_module(tokenizer: Any, model_config: dict | None, pretrained_model_name: str | None) -> FlexBertForMaskedLM:
    overrides = dict(model_config or {})
    if pretrained_model_name:
        overrides = check_fields(FlexBertConfig, overrides, KEY)  # names and types; values go on the checkpoint's
        module = _from_pretrained(pretrained_model_name, overrides)
    else:
        cfg = from_dict(FlexBertConfig, overrides, KEY)
        if cfg.vocab_size is None:
            cfg.vocab_size = padded_vocab_size(tokenizer, cfg.pad_vocab_to_multiple_of)
        module = FlexBertForMaskedLM(cfg)
    check_vocab(tokenizer, module.config.vocab_size, f"{KEY}.vocab_size")
    return module


@models.register("flexbert", config_class=FlexBertConfig)
def build_flexbert_mlm(tokenizer: Any, model_config: dict | None = None,
                       pretrained_model_name: str | None = None) -> MaskedLMComposerModel:
    """FlexBERT masked LM. ``model_config`` keys are FlexBertConfig fields; ``pretrained_model_name``
    converts a transformers ModernBERT or BERT checkpoint (its config, then ``model_config`` on top)."""
    module = _mlm_module(tokenizer, model_config, pretrained_model_name)
    return MaskedLMComposerModel(module, tokenizer, exporter=hf_exporter(module.config),
                                 pretrained_source=pretrained_model_name)


@classifiers.register("flexbert", config_class=FlexBertConfig)
def build_flexbert_classifier(tokenizer: Any, num_labels: int, model_config: dict | None = None,
                              pretrained_model_name: str | None = None, pooling: Literal["cls", "mean"] = "cls",
                              classifier_dropout: float = 0.0) -> ClassifierComposerModel:
    """FlexBERT encoder + a new classification (``num_labels == 1``: regression) head, for GLUE."""
    encoder = _mlm_module(tokenizer, model_config, pretrained_model_name).model
    head = SequenceClassifier(encoder, encoder.config.hidden_size, num_labels, pooling, classifier_dropout)
    return ClassifierComposerModel(head, num_labels, tokenizer)


def hf_exporter(cfg: FlexBertConfig):
    """ModernBERT format when the config fits it, else BERT's, else None (e.g. ALiBi: no HF equivalent).

    The check is the exporter's own config builder, so an exporter returned here cannot refuse later.
    """
    if not modernbert_incompatibilities(cfg):
        return to_modernbert
    if not bert_incompatibilities(cfg):
        return to_bert
    return None
