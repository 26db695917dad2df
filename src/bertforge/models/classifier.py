"""Sequence classification/regression on top of any of our encoders (FlexBERT, M2-BERT), for GLUE.

The encoder is any module with ``forward(input_ids, attention_mask, token_type_ids) -> (B, L, H)``
whose state-dict names match the family's MLM model under ``model.``, so a pretraining checkpoint's
encoder loads as is; the pooler and classifier are the new task head.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from composer.models import ComposerModel
from torch import nn

from bertforge.models.flops import FlopsPerBatch
from bertforge.models.metrics import classification_metrics


class SequenceClassifier(nn.Module):
    """Encoder, pooling (first token or mean of real tokens), dense + tanh, dropout, linear classifier."""

    def __init__(self, encoder: nn.Module, hidden: int, num_labels: int, pooling: Literal["cls", "mean"] = "cls",
                 dropout: float = 0.0):
        super().__init__()
        self.model = encoder
        self.pooling = pooling
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.model(input_ids, attention_mask, token_type_ids)  # (B, L, H), zeros at padding
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            real = (attention_mask > 0).to(hidden.dtype)[..., None]
            pooled = (hidden * real).sum(1) / real.sum(1).clamp(min=1.0)
        return self.classifier(self.head(pooled))  # (B, num_labels)


class ClassifierComposerModel(FlopsPerBatch, ComposerModel):
    """A :class:`SequenceClassifier` with cross-entropy (or MSE for ``num_labels == 1``) and GLUE metrics."""

    head_prefixes = ("model.head.", "model.classifier.")
    optional_prefixes: tuple[str, ...] = ()

    def __init__(self, module: SequenceClassifier, num_labels: int, tokenizer: Any = None):
        super().__init__()
        self.model, self.num_labels, self.tokenizer = module, num_labels, tokenizer
        self.eval_metrics = {type(m).__name__: m for m in classification_metrics(num_labels)}

    def forward(self, batch: dict) -> torch.Tensor:
        logits = self.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        return logits.squeeze(-1) if self.num_labels == 1 else logits

    def loss(self, outputs: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.num_labels == 1:
            return F.mse_loss(outputs.float(), batch["labels"].float())
        return F.cross_entropy(outputs.float(), batch["labels"])

    def eval_forward(self, batch: dict, outputs: Any = None) -> torch.Tensor:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict:
        return {} if is_train else self.eval_metrics

    def update_metric(self, batch: dict, outputs: torch.Tensor, metric) -> None:
        metric.update(outputs, batch["labels"])
