"""The Hugging Face family as a sequence classifier/regressor (GLUE): ``AutoModelForSequenceClassification``.

The encoder config comes from :func:`bertforge.models.hf_bert.build_config`, so a classifier built
from a pretraining run's ``model`` block has exactly the encoder that run trained. Every registered
classifier returns a ComposerModel with

* eval metrics named by class: ``MulticlassAccuracy``, ``BinaryF1Score`` (2 labels),
  ``MatthewsCorrCoef`` for classification, ``PearsonCorrCoef`` and ``SpearmanCorrCoef`` for
  regression (``num_labels == 1``); GLUE picks the ones its task reports;
* ``head_prefixes``: state-dict key prefixes of the new task head (never loaded from a checkpoint);
* ``optional_prefixes``: prefixes loaded when a checkpoint has them, else freshly initialised
  (BERT's pooler, which an MLM checkpoint does not have).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from composer.models import HuggingFaceModel
from transformers import AutoModelForSequenceClassification

from bertforge.errors import ConfigError, UserError
from bertforge.models.flops import FlopsPerBatch
from bertforge.models.hf_bert import build_config, enable_checkpointing, model_config_class
from bertforge.models.metrics import classification_metrics
from bertforge.registry import classifiers

KEY = "model"


class HFClassifier(FlopsPerBatch, HuggingFaceModel):
    """``HuggingFaceModel`` whose eval outputs are ``(batch,)`` scores for regression, ``(batch, classes)`` else."""

    def eval_forward(self, batch: dict, outputs: Any = None) -> torch.Tensor:
        logits = super().eval_forward(batch, outputs)
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits


def _head_prefixes(hf_model: torch.nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(new head, optional) key prefixes: modules outside the base model, and the base model's pooler."""
    base = hf_model.base_model_prefix
    tops = {name.split(".")[0] for name in hf_model.state_dict()}
    head = tuple(f"model.{top}." for top in sorted(tops) if top != base)
    optional = tuple(f"model.{base}.{name}." for name, _ in hf_model.get_submodule(base).named_children()
                     if name == "pooler")
    return head, optional


@classifiers.register("hf_bert", config_class=model_config_class)
def build_hf_classifier(
    tokenizer: Any,
    num_labels: int,
    model_type: str | None = None,
    pretrained_model_name: str | None = None,
    pretrained: bool = False,
    model_config: dict | None = None,
    pad_vocab_to_multiple_of: int | None = None,
    pooling: Literal["cls"] = "cls",
) -> HFClassifier:
    """A transformers sequence classifier (``num_labels == 1``: regression) with a new task head.

    ``pooling: cls`` is the family's own pooler over the first token; ``pretrained: true`` loads
    ``pretrained_model_name``'s encoder weights, failing on any missing encoder weight.
    """
    if pretrained and not pretrained_model_name:
        raise ConfigError(f"{KEY}.pretrained", "is true but no pretrained_model_name is given")
    config = build_config(tokenizer, model_type, pretrained_model_name, dict(model_config or {}),
                          pad_vocab_to_multiple_of)
    config.num_labels = num_labels
    config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    if pretrained:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            pretrained_model_name, config=config, output_loading_info=True
        )
        head, optional = _head_prefixes(model)
        bad = [k for k in info["missing_keys"] if not f"model.{k}".startswith(head + optional)]
        if bad:
            raise UserError(f"{KEY}.pretrained_model_name: '{pretrained_model_name}' lacks encoder weights {bad[:5]}")
    else:
        model = AutoModelForSequenceClassification.from_config(config)
    enable_checkpointing(model, model_config)
    wrapped = HFClassifier(model, tokenizer=tokenizer, use_logits=True, metrics=[],
                           eval_metrics=classification_metrics(num_labels), shift_labels=False)
    wrapped.head_prefixes, wrapped.optional_prefixes = _head_prefixes(model)
    return wrapped
