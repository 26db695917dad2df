"""Configuration of a bertforge model that transformers runs through bertforge's own code (``trust_remote_code``)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig


class BertforgeConfig(PretrainedConfig):
    """One bertforge family (``family``: ``flexbert`` or ``m2_bert``) and its architecture (``family_config``: the
    fields of that family's config dataclass). ``vocab_size`` is the embedding rows (it follows
    ``resize_token_embeddings``); ``hidden_size`` and ``max_position_embeddings`` mirror the family config for
    tools that read them (sentence-transformers, PyLate). ``pooling`` (``cls`` or ``mean``) and ``classifier_dropout``
    configure the sequence-classification head."""

    model_type = "bertforge"

    def __init__(self, family: str = "flexbert", family_config: dict | None = None, pooling: str = "cls",
                 classifier_dropout: float = 0.0, **kwargs: Any):
        self.family = family
        self.family_config = dict(family_config or {})
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        for key in ("vocab_size", "hidden_size", "max_position_embeddings", "num_hidden_layers"):
            if key in self.family_config:
                kwargs.setdefault(key, self.family_config[key])
        super().__init__(**kwargs)
