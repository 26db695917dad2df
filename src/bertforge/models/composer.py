"""Our own families as Composer models: an MLM module plus metrics, loss (MLM or MDLM) and Hugging Face export."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from composer.models import ComposerModel

from bertforge.models.common.mlm import is_mdlm_batch, mdlm_loss, mdlm_loss_terms
from bertforge.models.export import save_hf_folder
from bertforge.models.flops import FlopsPerBatch
from bertforge.models.metrics import MDLMNegativeELBO, lm_metrics


class MaskedLMComposerModel(FlopsPerBatch, ComposerModel):
    """Wraps a module whose ``forward(input_ids, attention_mask, labels=, token_type_ids=)`` returns
    :class:`~bertforge.models.common.mlm.MLMOutput` for the masked tokens only (sparse prediction). The module
    unpads, so packed batches (segment ids in ``attention_mask``) are supported. Batches of a masked diffusion
    collator (``mdlm_t`` present) train on the MDLM loss; :meth:`set_objective` adds its eval metric."""

    supports_packing = True

    def __init__(self, module: torch.nn.Module, tokenizer: Any = None,
                 exporter: Callable[[torch.nn.Module, Any], Any] | None = None):
        super().__init__()
        self.model = module
        self.tokenizer = tokenizer
        self.exporter = exporter
        self.set_objective("mlm")

    def set_objective(self, objective: str) -> None:
        """Fresh metrics for ``'mlm'`` or ``'mdlm'`` (which adds the negative ELBO on eval); call before the Trainer."""
        self.train_metrics = {type(m).__name__: m for m in lm_metrics(objective, train=True)}
        self.eval_metrics = {type(m).__name__: m for m in lm_metrics(objective)}

    def forward(self, batch: dict) -> Any:
        return self.model(batch["input_ids"], batch["attention_mask"], labels=batch.get("labels"),
                          token_type_ids=batch.get("token_type_ids"))

    def loss(self, outputs: Any, batch: dict) -> torch.Tensor:
        if is_mdlm_batch(batch):
            return mdlm_loss(outputs.token_loss, batch["labels"], batch)
        return outputs.loss

    def eval_forward(self, batch: dict, outputs: Any = None) -> Any:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict:
        return self.train_metrics if is_train else self.eval_metrics

    def update_metric(self, batch: dict, outputs: Any, metric) -> None:
        if isinstance(metric, MDLMNegativeELBO):
            if is_mdlm_batch(batch):
                metric.update(*mdlm_loss_terms(outputs.token_loss, batch["labels"], batch))
            return
        metric.update(outputs.logits, outputs.labels)

    def export_hf(self, folder: str) -> str:
        """Write a transformers folder (weights, config, tokenizer) via the family's exporter."""
        if self.exporter is None:
            raise TypeError(f"{type(self.model).__name__} has no Hugging Face export")
        hf_model = self.exporter(self.model, self.tokenizer)  # refuses before anything is written
        return save_hf_folder(hf_model, self.tokenizer, folder)
