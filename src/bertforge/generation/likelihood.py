"""Monte-Carlo ELBO estimate of log p(continuation | context) for a masked-diffusion language model.

This is the estimator LLaDA's and dllm's evaluations use. For a continuation of L tokens after a context, one
sample draws k uniformly from {1, ..., L}, masks k continuation tokens chosen uniformly at random (the context
stays visible), runs the model once, and scores

    (L / k) * sum over the masked positions i of log p(x_i | the partly masked sequence).

Its expectation over k and the masked set is the masked-diffusion evidence lower bound (the discrete-time form
of the 1/t-weighted MDLM bound), so the mean of ``mc_num`` samples is an unbiased estimate of a lower bound on
log p(continuation | context). Samples run ``batch_size`` at a time as rows of one forward batch. With
``stratified`` (the default, as in LLaDA) the k of the samples are spread evenly over {1, ..., L} from one random
offset: each k is still uniform (so the mean stays unbiased) but the spread lowers the variance. The reported
standard error treats the samples as independent (exact without stratification, an approximation with it).

The model is the sampler's callable ``(input_ids (R, W), attention_mask (R, W)) -> logits (R, W, V)`` (see
:func:`bertforge.generation.logits_fn`); as in the sampler the mask token is never a prediction: its logit is
dropped before the softmax. Everything random comes from one CPU generator seeded with ``seed``, so an estimate
is the same on every device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from bertforge.errors import ConfigError, UserError
from bertforge.generation.sampler import ModelFn


@dataclass(frozen=True)
class ELBOConfig:
    """How many Monte-Carlo samples, how many per forward batch, the seed, and whether k is stratified."""

    mc_num: int = 128
    batch_size: int = 32
    seed: int = 0
    stratified: bool = True

    def __post_init__(self):
        if self.mc_num < 1:
            raise ConfigError("mc_num", f"{self.mc_num}: must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"{self.batch_size}: must be at least 1")


class LikelihoodEstimate(NamedTuple):
    """``value``: the estimated bound on log p(continuation | context) in nats; ``stderr``: its standard error
    (nan for one sample); ``samples``: the per-sample values (float64, length ``mc_num``)."""

    value: float
    stderr: float
    samples: torch.Tensor


def draw_masks(length: int, config: ELBOConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``mc_num`` random masks over a continuation of ``length`` tokens and their weights: (masks (S, L) bool,
    weights (S,) float64 = L / k), k uniform on {1, ..., L} (stratified or independent)."""
    n = config.mc_num
    if config.stratified:
        offset = torch.rand((), generator=gen, dtype=torch.float64)
        position = (offset + torch.arange(n, dtype=torch.float64) / n) % 1.0  # (S,) each uniform on [0, 1)
    else:
        position = torch.rand(n, generator=gen, dtype=torch.float64)
    k = (position * length).floor().long().clamp(max=length - 1) + 1  # (S,) in 1..L
    rank = torch.rand(n, length, generator=gen).argsort(1).argsort(1)  # (S, L) a random order of the positions
    return rank < k[:, None], length / k.double()


def masked_logprob_sums(model_fn: ModelFn, ids: torch.Tensor, start: int, masks: torch.Tensor, mask_token_id: int,
                        batch_size: int) -> torch.Tensor:
    """For each mask row: sum over its masked continuation positions of log p(true token), float64 (S,).
    ``ids`` (W,) is context + continuation; the continuation starts at column ``start``; ``masks`` (S, L)."""
    out = []
    for lo in range(0, masks.shape[0], batch_size):
        m = masks[lo:lo + batch_size].to(ids.device)  # (R, L)
        rows = ids.expand(m.shape[0], -1).clone()  # (R, W)
        rows[:, start:][m] = mask_token_id
        logits = model_fn(rows, torch.ones_like(rows))[:, start:].double()  # (R, L, V)
        logits[..., mask_token_id] = float("-inf")
        logp = logits.log_softmax(-1).gather(-1, ids[start:].expand_as(m)[..., None]).squeeze(-1)  # (R, L)
        out.append(torch.where(m, logp, 0.0).sum(1).cpu())
    return torch.cat(out)


def elbo_loglikelihood(model_fn: ModelFn, context: Sequence[int], continuation: Sequence[int], *,
                       mask_token_id: int, config: ELBOConfig = ELBOConfig(),
                       device: torch.device | str | None = None) -> LikelihoodEstimate:
    """The Monte-Carlo estimate of the ELBO of ``continuation`` (token ids) after ``context``; see the module doc."""
    if not continuation:
        raise UserError("elbo_loglikelihood: the continuation is empty; there is nothing to score")
    ids = torch.tensor(list(context) + list(continuation), dtype=torch.long, device=device)  # (W,)
    gen = torch.Generator().manual_seed(config.seed)
    masks, weights = draw_masks(len(continuation), config, gen)
    samples = weights * masked_logprob_sums(model_fn, ids, len(context), masks, mask_token_id, config.batch_size)
    n = samples.numel()
    stderr = float(samples.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("nan")
    return LikelihoodEstimate(float(samples.mean()), stderr, samples)
