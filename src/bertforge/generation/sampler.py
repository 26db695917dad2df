"""Iterative unmasking for masked-diffusion language models: the sampling algorithm, in plain torch.

The answer starts as ``max_new_tokens`` mask tokens after the prompt. It is decoded in semi-autoregressive
blocks of ``block_length`` tokens, left to right; the ``steps`` budget is spread over the blocks. At each step
the model predicts every position, and the best still-masked positions of the current block are committed:
``k = ceil(masked / steps left)`` of them (so a block is done within its steps), ranked by ``low_confidence``
(the predicted token's probability), ``margin`` (top-1 minus top-2 probability) or ``random``, plus, with a
``threshold``, every position whose predicted token's probability exceeds it, and, with a ``factor``, the
n most probable positions for the largest n whose n-th probability is at least 1 - factor / (n + 1) (Fast-dLLM's
confidence-aware parallel decoding: its threshold and factor rules). A committed token never changes.
Temperature 0 takes the argmax (deterministic); temperature > 0 samples with Gumbel noise. Once an end-of-answer
token is committed, the masked positions after it are filled with [PAD] (attended, as chat finetuning shows
them: answer, end token, padding), and a row whose canvas holds no mask is finished: no further forward pass is
spent on it.

With a block cache (models/block_cache.py), a block's first pass runs the whole canvas and keeps every layer's
keys and values; its later passes run only the block's tokens (``cache='dual'``) or the block and the canvas after
it (``'prefix'``) over them: Fast-dLLM's DualCache and PrefixCache.

The model is any callable ``(input_ids (R, W), attention_mask (R, W)) -> logits (R, W, V)``. It always sees
right-padded rows whose real tokens start at column 0, so a prompt decoded alone or in a batch of longer
prompts sees the same positions and gives the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch

from bertforge.errors import ConfigError, UserError
from bertforge.models.block_cache import CACHES

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepFn = Callable[[int, torch.Tensor, torch.Tensor], None]  # (step, canvas tokens (B, N), open mask (B, N))
REMASKING = ("low_confidence", "margin", "random")


class BlockCache(Protocol):
    """Keys and values kept across a block's passes (see models/block_cache.py)."""

    recomputes_suffix: bool  # later passes run the block and the canvas after it, not the block alone

    def refresh(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Full logits (R, W, V) of right-padded rows; keeps their keys and values."""

    def block_logits(self, rows: torch.Tensor, block_ids: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Logits (R, L, V) of one block's tokens of cached rows, at columns ``cols`` (R, L)."""


@dataclass(frozen=True)
class SamplerConfig:
    """How to decode: ``steps`` defaults to ``max_new_tokens`` (one token per step), ``block_length`` to one block."""

    max_new_tokens: int = 64
    steps: int | None = None
    block_length: int | None = None
    temperature: float = 0.0  # 0: greedy; > 0: Gumbel-max sampling from softmax(logits / temperature)
    remasking: str = "low_confidence"  # which masked positions to commit first
    threshold: float | None = None  # also commit every position whose token probability exceeds this
    factor: float | None = None  # also commit the top n while the n-th probability >= 1 - factor / (n + 1)
    seed: int = 0  # Gumbel noise and ``random`` ranking
    cache: str = "none"  # a block's later passes run its tokens ('dual') or them and the canvas after them
    # ('prefix') over cached keys/values (Fast-dLLM)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", f"{self.max_new_tokens}: must be at least 1")
        if self.block_len < 1 or self.max_new_tokens % self.block_len:
            raise ConfigError("block_length", f"{self.block_length} does not divide max_new_tokens "
                              f"{self.max_new_tokens}; choose a divisor of it (or leave it unset: one block)")
        if self.num_steps < self.num_blocks:
            raise ConfigError("steps", f"{self.num_steps} is fewer than the {self.num_blocks} blocks (max_new_tokens "
                              f"{self.max_new_tokens} / block_length {self.block_len}); every block needs a step: "
                              f"raise steps to at least {self.num_blocks} or raise block_length")
        if self.remasking not in REMASKING:
            raise ConfigError("remasking", f"'{self.remasking}': choose one of {', '.join(REMASKING)}")
        if self.temperature < 0:
            raise ConfigError("temperature", f"{self.temperature}: must be >= 0 (0 is greedy)")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ConfigError("threshold", f"{self.threshold}: must be in (0, 1] (1.0 never fires)")
        if self.factor is not None and self.factor <= 0:
            raise ConfigError("factor", f"{self.factor}: must be > 0 (Fast-dLLM uses about 1; smaller is stricter)")
        if self.cache not in CACHES:
            raise ConfigError("cache", f"'{self.cache}': choose one of {', '.join(CACHES)}")

    @property
    def block_len(self) -> int:
        return self.max_new_tokens if self.block_length is None else self.block_length

    @property
    def num_blocks(self) -> int:
        return self.max_new_tokens // self.block_len

    @property
    def num_steps(self) -> int:
        return self.steps if self.steps is not None else self.max_new_tokens

    def steps_per_block(self) -> list[int]:
        """The step budget of each block: an even share, the remainder to the first blocks."""
        base, extra = divmod(self.num_steps, self.num_blocks)
        return [base + (b < extra) for b in range(self.num_blocks)]


class GenerationOutput(NamedTuple):
    """``tokens`` (B, max_new_tokens): the decoded canvas (pad after an end token); ``commit_step`` (B, N): the
    step that committed each position (-1: filled after an end token); ``answers``: each row's tokens before its
    first end token; ``forward_passes``: model calls made for the whole batch."""

    tokens: torch.Tensor
    commit_step: torch.Tensor
    answers: list[list[int]]
    forward_passes: int


def sample(model_fn: ModelFn, prompts: Sequence[Sequence[int]], config: SamplerConfig, *, mask_token_id: int,
           pad_token_id: int, end_token_ids: Sequence[int] = (), max_length: int | None = None,
           device: torch.device | str | None = None, on_step: StepFn | None = None,
           cache: BlockCache | None = None) -> GenerationOutput:
    """Decode ``config.max_new_tokens`` tokens after each prompt (token ids) with ``model_fn``; see the module doc.
    ``on_step(step, tokens (B, N), open_mask (B, N))``, when given, is called after each forward pass's commits
    with the canvas and its still-masked positions (live views: read, do not modify). With a ``cache``, each
    block's first pass runs the whole canvas through it and the block's later passes its tokens alone."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("every prompt needs at least one token (an empty prompt was given)")
    lens = torch.tensor([len(p) for p in prompts], device=device)  # (B,)
    longest, n = int(lens.max()), config.max_new_tokens
    if max_length is not None and longest + n > max_length:
        raise UserError(f"prompt of {longest} tokens + max_new_tokens {n} = {longest + n} exceeds the model's "
                        f"max length {max_length}; shorten the prompt or lower max_new_tokens")
    batch = len(prompts)
    x = torch.full((batch, longest + n), pad_token_id, dtype=torch.long, device=device)  # left-padded prompts
    for i, p in enumerate(prompts):
        x[i, longest - len(p):longest] = torch.as_tensor(list(p), dtype=torch.long)
    x[:, longest:] = mask_token_id
    open_ = torch.ones(batch, n, dtype=torch.bool, device=device)  # canvas positions not yet committed
    commit_step = torch.full((batch, n), -1, dtype=torch.long, device=device)
    ends = torch.tensor(sorted(set(end_token_ids)), dtype=torch.long, device=device)
    gen = torch.Generator(device=x.device).manual_seed(config.seed)
    passes, first_step = 0, 0
    for b, budget in enumerate(config.steps_per_block()):
        lo, hi = b * config.block_len, (b + 1) * config.block_len  # canvas columns of this block
        for s in range(budget):
            block_open = open_[:, lo:hi]  # (B, L)
            rows = block_open.any(1).nonzero().squeeze(1)  # (R,) rows with work left in this block
            if rows.numel() == 0:
                break
            ids, mask, cols = _right_padded(x[rows], lens[rows], longest, lo, hi, pad_token_id)
            if cache is None:
                logits = _at(model_fn(ids, mask), cols)
            elif s == 0:
                logits = _at(cache.refresh(ids, mask, rows), cols)
            else:
                span = cols if not cache.recomputes_suffix else cols[:, :1] + torch.arange(n - lo, device=x.device)
                logits = cache.block_logits(rows, ids.gather(1, span), span)[:, :hi - lo].float()
            passes += 1
            logits[..., mask_token_id] = float("-inf")  # the mask token is never a prediction
            tokens, score, prob = _propose(logits, config, gen)  # (R, L) each
            k = (block_open[rows].sum(1) + (budget - s) - 1) // (budget - s)  # ceil(masked / steps left)
            chosen = _choose(score, prob, block_open[rows], k, config.threshold, config.factor)  # (R, L)
            x[rows, longest + lo:longest + hi] = torch.where(chosen, tokens, x[rows, longest + lo:longest + hi])
            open_[rows, lo:hi] &= ~chosen
            commit_step[rows, lo:hi] = torch.where(chosen, first_step + s, commit_step[rows, lo:hi])
            if ends.numel():
                _fill_after_end(x[:, longest:], open_, ends, pad_token_id)
            if on_step is not None:
                on_step(first_step + s, x[:, longest:], open_)
        first_step += budget
    tokens = x[:, longest:]
    return GenerationOutput(tokens, commit_step, _answers(tokens, ends), passes)


def _right_padded(x: torch.Tensor, lens: torch.Tensor, longest: int, lo: int, hi: int,
                  pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The left-padded rows ``x`` as the model sees them, right-padded (real tokens from column 0): ids and
    attention mask (R, W), and the columns of canvas block ``lo:hi`` in them (R, L)."""
    total = x.shape[1]
    width = int(lens.max()) + total - longest  # the longest of these rows, with its canvas
    src = (longest - lens)[:, None] + torch.arange(width, device=x.device)[None]  # (R, W) column in x
    mask = (src < total).long()  # (R, W) 1 on the prompt and canvas, 0 on the padding after them
    ids = torch.cat([x, torch.full_like(x[:, :1], pad_token_id)], 1).gather(1, src.clamp(max=total))
    cols = lens[:, None] + torch.arange(lo, hi, device=x.device)[None]  # (R, L) block columns in these rows
    return ids, mask, cols


def _at(logits: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The logits (R, W, V) at columns ``cols`` (R, L), in float32: (R, L, V)."""
    return logits.gather(1, cols[..., None].expand(-1, -1, logits.shape[-1])).float()


def _propose(logits: torch.Tensor, config: SamplerConfig, gen: torch.Generator):
    """Per position: the proposed token, its ranking score, and its probability under softmax(logits)."""
    probs = logits.softmax(-1)  # (R, L, V)
    if config.temperature > 0:
        u = torch.rand(logits.shape, generator=gen, device=logits.device, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
        tokens = (logits.double() / config.temperature + gumbel).argmax(-1)
    else:
        tokens = logits.argmax(-1)
    prob = probs.gather(-1, tokens[..., None]).squeeze(-1)  # (R, L)
    if config.remasking == "low_confidence":
        score = prob
    elif config.remasking == "margin":
        top2 = probs.topk(2, dim=-1).values
        score = top2[..., 0] - top2[..., 1]
    else:
        score = torch.rand(prob.shape, generator=gen, device=prob.device, dtype=torch.float64).float()
    return tokens, score, prob


def _choose(score: torch.Tensor, prob: torch.Tensor, open_: torch.Tensor, k: torch.Tensor,
            threshold: float | None, factor: float | None = None) -> torch.Tensor:
    """The open positions to commit: each row's ``k`` best by ``score`` (ties: leftmost), plus, with a threshold,
    every open position whose probability exceeds it, plus, with a factor, the leading run of the most probable
    open positions whose n-th probability is at least 1 - factor / (n + 1)."""
    chosen = open_ & (_rank(score, open_) < k[:, None])
    if threshold is not None:
        chosen |= open_ & (prob > threshold)
    if factor is not None:
        top = prob.masked_fill(~open_, -1.0).sort(dim=1, descending=True).values  # (R, L)
        n = torch.arange(1, top.shape[1] + 1, device=top.device)
        run = (top >= 1 - factor / (n + 1)).long().cumprod(1).sum(1)  # (R,) how many pass, best first
        chosen |= open_ & (_rank(prob, open_) < run[:, None])
    return chosen


def _rank(score: torch.Tensor, open_: torch.Tensor) -> torch.Tensor:
    """Each position's place (0 = best) when the open positions are sorted by ``score``, ties leftmost (R, L)."""
    order = score.masked_fill(~open_, float("-inf")).sort(dim=1, descending=True, stable=True).indices
    return order.argsort(dim=1)


def _fill_after_end(canvas: torch.Tensor, open_: torch.Tensor, ends: torch.Tensor, pad_token_id: int) -> None:
    """In place: the open positions after each row's first committed end token become padding."""
    n = canvas.shape[1]
    is_end = torch.isin(canvas, ends) & ~open_  # (B, N)
    first = torch.where(is_end.any(1), is_end.int().argmax(1), n)  # (B,)
    fill = open_ & (torch.arange(n, device=canvas.device)[None] > first[:, None])
    canvas[fill] = pad_token_id
    open_ &= ~fill


def _answers(tokens: torch.Tensor, ends: torch.Tensor) -> list[list[int]]:
    """Each row's tokens before its first end token."""
    stop, out = set(ends.tolist()), []
    for row in tokens.tolist():
        cut = next((i for i, tok in enumerate(row) if tok in stop), len(row))
        out.append(row[:cut])
    return out
