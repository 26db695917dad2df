"""Our own families as Composer models: an MLM module plus metrics, loss (MLM, MDLM, or MLM + a sentence-pair head's
NSP/SOP) and Hugging Face export; the pair head's helpers shared with the transformers family."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from composer.models import ComposerModel

from bertforge.errors import UserError
from bertforge.models.common.mlm import is_mdlm_batch, mdlm_loss, mdlm_loss_terms
from bertforge.models.common.nsp import PAIR_OBJECTIVES, NSPHead, nsp_loss, pair_labels
from bertforge.models.convert.bert import exports_nsp, load_nsp_head, nsp_export_refusal, to_bert_pretraining
from bertforge.models.export import save_hf_folder
from bertforge.models.flops import FlopsPerBatch
from bertforge.models.metrics import MDLMNegativeELBO, NSPAccuracy, lm_metrics


def pair_head(objective: str, current: NSPHead | None, module: torch.nn.Module,
              pretrained: str | None) -> NSPHead | None:
    """The sentence-pair head an ``objective`` needs: for ``'nsp'``/``'sop'`` ``current`` or a new one sized and
    initialised from ``module.config`` (``init_std``, or transformers' ``initializer_range``) on ``module``'s device,
    starting from ``pretrained``'s pooler and NSP classifier where that checkpoint has them; None otherwise."""
    if objective not in PAIR_OBJECTIVES:
        return None
    if current is not None:
        return current
    cfg = module.config
    head = NSPHead(cfg.hidden_size, getattr(cfg, "init_std", None) or cfg.initializer_range)
    if pretrained:
        load_nsp_head(head, pretrained)
    return head.to(next(module.parameters()).device)


def apply_objective(model: torch.nn.Module, objective: str, eval_attr: str = "eval_metrics") -> None:
    """Give ``model`` fresh metrics for ``objective`` (:func:`~bertforge.models.metrics.lm_metrics`) and, for
    ``'nsp'``/``'sop'``, the pair head (dropped for other objectives); call before the Trainer builds the optimizer.
    ``eval_attr``: where the wrapper keeps its eval metrics (Composer's HuggingFaceModel reads ``val_metrics``)."""
    model.train_metrics = {type(m).__name__: m for m in lm_metrics(objective, train=True)}
    setattr(model, eval_attr, {type(m).__name__: m for m in lm_metrics(objective)})
    model.objective = objective
    model.nsp_head = pair_head(objective, model.nsp_head, model.model, model.pretrained_source)


def with_pair_loss(mlm_loss: torch.Tensor, nsp_logits: torch.Tensor | None, batch: dict,
                   objective: str) -> torch.Tensor:
    """``mlm_loss`` plus, for a model with a pair head, the pair cross-entropy (mean over the batch's pairs)."""
    if nsp_logits is None:
        return mlm_loss
    return mlm_loss + nsp_loss(nsp_logits, pair_labels(batch, objective))


class MaskedLMComposerModel(FlopsPerBatch, ComposerModel):
    """Wraps a module whose ``forward(input_ids, attention_mask, labels=, token_type_ids=)`` returns
    :class:`~bertforge.models.common.mlm.MLMOutput` for the masked tokens only (sparse prediction). The module
    unpads, so packed batches (segment ids in ``attention_mask``) are supported. Batches of a masked diffusion
    collator (``mdlm_t`` present) train on the MDLM loss; :meth:`set_objective` adds its eval metric. Objective
    ``'nsp'`` (or ``'sop'``) adds a sentence-pair head (``nsp_head``) on the module's ``cls_hidden``: loss MLM + pair
    cross-entropy. ``pretrained_source``: the transformers checkpoint the module was converted from, whose pooler
    and NSP classifier start that head when it has them."""

    supports_packing = True

    def __init__(self, module: torch.nn.Module, tokenizer: Any = None,
                 exporter: Callable[[torch.nn.Module, Any], Any] | None = None, pretrained_source: str | None = None):
        super().__init__()
        self.model = module
        self.tokenizer = tokenizer
        self.exporter = exporter
        self.pretrained_source = pretrained_source
        self.nsp_head: NSPHead | None = None
        self.set_objective("mlm")

    def set_objective(self, objective: str) -> None:
        """Metrics and pair head for ``objective`` (:func:`apply_objective`)."""
        apply_objective(self, objective)

    def forward(self, batch: dict) -> Any:
        out = self.model(batch["input_ids"], batch["attention_mask"], labels=batch.get("labels"),
                         token_type_ids=batch.get("token_type_ids"))
        return out if self.nsp_head is None else out._replace(nsp_logits=self.nsp_head(out.cls_hidden))

    def loss(self, outputs: Any, batch: dict) -> torch.Tensor:
        if is_mdlm_batch(batch):
            return mdlm_loss(outputs.token_loss, batch["labels"], batch)
        return with_pair_loss(outputs.loss, outputs.nsp_logits, batch, self.objective)

    def eval_forward(self, batch: dict, outputs: Any = None) -> Any:
        return outputs if outputs is not None else self.forward(batch)

    def get_metrics(self, is_train: bool = False) -> dict:
        return self.train_metrics if is_train else self.eval_metrics

    def update_metric(self, batch: dict, outputs: Any, metric) -> None:
        if isinstance(metric, NSPAccuracy):
            metric.update(outputs.nsp_logits, pair_labels(batch, self.objective))
            return
        if isinstance(metric, MDLMNegativeELBO):
            if is_mdlm_batch(batch):
                metric.update(*mdlm_loss_terms(outputs.token_loss, batch["labels"], batch))
            return
        metric.update(outputs.logits, outputs.labels)

    def export_refusal(self) -> str | None:
        """Why :meth:`export_hf` would refuse this model (None: it exports), known before any training."""
        if self.nsp_head is not None and not exports_nsp(self.exporter):
            return nsp_export_refusal(type(self.model).__name__)
        if self.exporter is None:
            return f"{type(self.model).__name__} has no Hugging Face export"
        return None

    def fsdp_units(self) -> list[torch.nn.Module]:
        """The encoder's blocks, one FSDP unit each; embeddings and heads form the outer unit."""
        return list(self.model.model.layers)

    def export_hf(self, folder: str) -> str:
        """Write a transformers folder (weights, config, tokenizer) via the family's exporter; with a pair head,
        as ``BertForPreTraining`` (MLM + NSP), the only format transformers has for it."""
        refusal = self.export_refusal()
        if refusal:
            raise UserError(refusal)
        hf_model = self.exporter(self.model, self.tokenizer)  # refuses before anything is written
        if self.nsp_head is not None:
            hf_model = to_bert_pretraining(hf_model, self.nsp_head)
        return save_hf_folder(hf_model, self.tokenizer, folder)
