"""Masked diffusion (MDLM) corruption: each sequence draws a masking rate ``t``, each maskable token is masked
with probability ``t``; the loss weights a sequence's masked-token cross-entropies by its ELBO weight.

Batches of the ``mdlm`` collator hold ``input_ids`` (masked positions replaced by [MASK], no 80/10/10),
``attention_mask``, ``labels`` (original id where masked, -100 elsewhere), ``mdlm_t`` ``(B,)`` the masking rate,
``mdlm_maskable`` ``(B, L)`` the tokens that could be masked (the loss divides by their count) and
``mdlm_weight`` ``(B,)`` the per-sequence loss weight (see :func:`sequence_weight`). The model's loss then is
``sum_i w_i * CE_i / n_maskable`` over the masked tokens ``i``: with ``weighting: inverse_t`` this is the negative
ELBO in nats per token (Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple

import torch

from bertforge.data.mlm import IGNORE_INDEX, MLMCollator, tokenizer_ids
from bertforge.errors import ConfigError
from bertforge.registry import collators

Schedule = Literal["linear", "cosine"]
Weighting = Literal["inverse_t", "uniform"]


class MDLMBatch(NamedTuple):
    """One corrupted batch: ``input_ids`` and ``labels`` ``(B, L)``, masking rates ``t`` ``(B,)`` (float32) and
    the ``maskable`` ``(B, L)`` bool mask it was given (the loss normaliser)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    t: torch.Tensor
    maskable: torch.Tensor


def masking_rate(u: torch.Tensor, eps: float = 1e-3, schedule: Schedule = "linear") -> torch.Tensor:
    """The masking rate ``t`` in ``[eps, 1]`` for uniform draws ``u``: ``eps + (1 - eps) * s(u)`` with
    ``s(u) = u`` (linear) or ``1 - cos(pi u / 2)`` (cosine: more lightly masked sequences)."""
    if schedule == "linear":
        s = u
    elif schedule == "cosine":
        s = 1 - torch.cos(0.5 * math.pi * u)
    else:
        raise ValueError(f"schedule {schedule!r}: expected 'linear' or 'cosine'")
    return eps + (1 - eps) * s


def sequence_weight(t: torch.Tensor, eps: float = 1e-3, schedule: Schedule = "linear",
                    weighting: Weighting = "inverse_t") -> torch.Tensor:
    """The loss weight of sequences masked at rate ``t`` ``(B,)``.

    ``inverse_t``: the ELBO weight, ``1 / t`` for the linear schedule. For the cosine schedule it is also
    multiplied by ``ds/du = pi/2 * sin(pi u / 2) = pi/2 * sqrt(s (2 - s))`` (importance weight against the
    linear schedule's uniform rates), so that the loss stays an unbiased estimate of the same ELBO.
    ``uniform``: 1 (every masked token counts the same).
    """
    if weighting == "uniform":
        return torch.ones_like(t)
    if weighting != "inverse_t":
        raise ValueError(f"weighting {weighting!r}: expected 'inverse_t' or 'uniform'")
    if schedule == "linear":
        return 1 / t
    s = ((t - eps) / (1 - eps)).clamp(0, 1)
    return 0.5 * math.pi * torch.sqrt(s * (2 - s)) / t


def mdlm_mask(input_ids: torch.Tensor, maskable: torch.Tensor, mask_token_id: int,
              generator: torch.Generator | None = None, eps: float = 1e-3,
              schedule: Schedule = "linear") -> MDLMBatch:
    """Mask each ``maskable`` token of ``input_ids`` ``(B, L)`` with its sequence's rate ``t``.

    Draws ``u ~ U(0, 1)`` per sequence (``t = masking_rate(u)``), then one uniform per token; a token is masked
    when its draw is below ``t``. A sequence may end up with no masked token (its loss is then 0).
    """
    u = torch.rand(input_ids.shape[0], generator=generator)  # (B,)
    t = masking_rate(u, eps, schedule).float()
    draw = torch.rand(input_ids.shape, generator=generator)  # (B, L)
    masked = maskable & (draw < t[:, None])
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return MDLMBatch(input_ids.masked_fill(masked, mask_token_id), labels, t, maskable)


@dataclass
class MDLMCollator(MLMCollator):
    """Pads samples (or lays out packed rows) like :class:`MLMCollator`, then applies MDLM masking.

    Special tokens and padding are never masked. ``mlm_probability`` is not used (each sequence draws its own
    rate; a packed row draws one rate for all its documents). With ``deterministic=True`` (eval) the rates and
    masks depend only on the batch's content; otherwise they come from torch's global RNG (checkpointed).
    """

    objective: ClassVar[str] = "mdlm"
    """What the model should score: its MDLM metrics (``model.set_objective``)."""
    uses_mlm_probability: ClassVar[bool] = False
    """Each sequence draws its own rate: a loader's ``mlm_probability`` is refused (bertforge.data.text)."""
    schedule: Schedule = "linear"
    weighting: Weighting = "inverse_t"
    eps: float = 1e-3

    def _batch(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        maskable = attention_mask.bool() & ~torch.isin(input_ids, self._special)
        return self.corrupt(input_ids, attention_mask, maskable)

    def corrupt(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                maskable: torch.Tensor) -> dict[str, torch.Tensor]:
        """The MDLM batch for padded ``input_ids`` ``(B, L)`` whose ``maskable`` positions may be masked."""
        out = mdlm_mask(input_ids, maskable, self.mask_token_id, self._generator(input_ids), self.eps, self.schedule)
        return {"input_ids": out.input_ids, "attention_mask": attention_mask, "labels": out.labels,
                "mdlm_t": out.t, "mdlm_maskable": out.maskable,
                "mdlm_weight": sequence_weight(out.t, self.eps, self.schedule, self.weighting)}


@collators.register("mdlm")
def build_mdlm_collator(tokenizer, mlm_probability: float, deterministic: bool, schedule: Schedule = "linear",
                        weighting: Weighting = "inverse_t", eps: float = 1e-3) -> MDLMCollator:
    """Masked diffusion (MDLM): per sequence t = eps + (1-eps) U(0,1), tokens masked with probability t; packs."""
    if not 0.0 < eps < 1.0:
        raise ConfigError("collator.eps", f"{eps} must be strictly between 0 and 1, e.g. 1e-3")
    return MDLMCollator(
        **tokenizer_ids(tokenizer),
        deterministic=deterministic,
        schedule=schedule,
        weighting=weighting,
        eps=eps,
    )
