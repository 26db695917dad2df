"""The masked-LM output every family returns, sparse prediction over the masked tokens only, and the masked
diffusion (MDLM) loss: masked-token cross-entropies weighted per sequence, per maskable token."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.data.mlm import IGNORE_INDEX
from bertforge.kernels.ops import fused_token_cross_entropy


class MLMOutput(NamedTuple):
    """``logits`` ``(n_masked, vocab)`` with their ``labels`` when labels were given, else ``(B, L, V)``.

    ``token_loss`` ``(n_masked,)`` float32 is each masked token's cross-entropy (``loss`` is its mean), in the
    row-major order of the masked positions of the ``(B, L)`` labels. ``cls_hidden`` ``(B, H)`` is each row's first
    token's final hidden state (what a sentence-pair head pools); ``nsp_logits`` ``(B, 2)`` that head's output, when
    the model has one.
    """

    logits: torch.Tensor
    labels: torch.Tensor | None
    loss: torch.Tensor | None
    token_loss: torch.Tensor | None = None
    cls_hidden: torch.Tensor | None = None
    nsp_logits: torch.Tensor | None = None


def sparse_mlm(hidden: torch.Tensor, flat_labels: torch.Tensor, head: nn.Module, decoder: nn.Linear,
               fused: bool = False) -> MLMOutput:
    """Run ``head`` and ``decoder`` on the rows of ``hidden`` ``(T, H)`` whose label is not ignored, with the loss.

    ``fused`` with grad enabled (training): the loss is liger's fused decoder + cross-entropy, which never holds the
    ``(n_masked, V)`` logits with their gradient; the metrics still get logits for the masked rows, made without
    autograd after the loss (one more decoder matmul, no graph kept). Evaluation (no grad) takes the plain path.
    """
    selected = flat_labels != IGNORE_INDEX
    targets = flat_labels[selected]
    if fused and torch.is_grad_enabled():
        transformed = head(hidden[selected])  # (n_masked, H)
        token_loss = fused_token_cross_entropy(transformed, decoder.weight, decoder.bias, targets)  # (n_masked,)
        with torch.no_grad():
            logits = decoder(transformed)  # for the metrics only
        return MLMOutput(logits, targets, token_loss.mean(), token_loss)
    logits = decoder(head(hidden[selected]))  # (n_masked, V)
    token_loss = F.cross_entropy(logits.float(), targets, reduction="none")  # (n_masked,)
    return MLMOutput(logits, targets, token_loss.mean(), token_loss)


def is_mdlm_batch(batch: dict) -> bool:
    """Whether ``batch`` comes from a masked diffusion collator (it carries ``mdlm_t``)."""
    return "mdlm_t" in batch


def masked_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy ``(n_masked,)`` float32 of dense ``logits`` ``(B, L, V)`` at the labelled positions, row-major."""
    selected = labels != IGNORE_INDEX
    return F.cross_entropy(logits[selected].float(), labels[selected], reduction="none")


class MDLMLossTerms(NamedTuple):
    """A batch's weighted masked-token cross-entropy ``total`` and its count of maskable ``tokens``."""

    total: torch.Tensor
    tokens: torch.Tensor


def mdlm_loss_terms(token_loss: torch.Tensor, labels: torch.Tensor, batch: dict) -> MDLMLossTerms:
    """``sum_i w_i * CE_i`` over the masked tokens ``i`` and the number of maskable tokens of ``batch``.

    ``token_loss`` ``(n_masked,)`` lists the masked positions of ``labels`` ``(B, L)`` in row-major order; ``w_i``
    is the weight of its sequence: ``batch['mdlm_weight']`` ``(B,)`` when present, else ``1 / batch['mdlm_t']``.
    """
    weight = batch.get("mdlm_weight")
    weight = 1.0 / batch["mdlm_t"].float() if weight is None else weight.float()  # (B,)
    rows = (labels != IGNORE_INDEX).nonzero(as_tuple=True)[0]  # (n_masked,) the sequence of each target
    if rows.numel() != token_loss.numel():
        raise ValueError(f"{token_loss.numel()} token losses for {rows.numel()} masked positions")
    total = (token_loss.float() * weight.to(token_loss.device)[rows]).sum()
    return MDLMLossTerms(total, batch["mdlm_maskable"].sum())


def mdlm_loss(token_loss: torch.Tensor, labels: torch.Tensor, batch: dict) -> torch.Tensor:
    """The MDLM loss: weighted masked-token cross-entropy per maskable token (:func:`mdlm_loss_terms`).

    With ``inverse_t`` weights it is the negative ELBO in nats per token. Composer's microbatching normalises
    each microbatch by its own maskable tokens and averages microbatches by their sequence counts, as it does
    for every loss.
    """
    total, tokens = mdlm_loss_terms(token_loss, labels, batch)
    return total / tokens.clamp(min=1)
