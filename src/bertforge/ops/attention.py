"""Bidirectional attention over unpadded tokens, behind one function with several backends.

Every backend takes ``q``, ``k``, ``v`` ``(total, heads, head_dim)`` (views are fine) plus the
varlen bookkeeping and returns ``(total, heads * head_dim)``. Local (sliding-window) attention lets token i see token j
when ``|i - j| <= window``; ALiBi adds ``-slope * |i - j|`` per head. Backends:

- ``flash_attn``: flash-attn's varlen kernel (CUDA, fp16/bf16), when the package is installed.
- ``sdpa``: pad to ``(batch, max_seqlen)`` and call PyTorch SDPA with a boolean/additive mask.
- ``varlen``: one SDPA call per sequence, no padding at all (the CPU default).

Models resolve the backend once with ``AttentionBackend``; ``attention()`` resolves on every call.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bertforge.ops.alibi import alibi_bias
from bertforge.ops.padding import positions_in_sequence, sequence_ids

log = logging.getLogger("bertforge")

AttentionFn = Callable[..., torch.Tensor]
BACKENDS: dict[str, AttentionFn] = {}


def register(name: str) -> Callable[[AttentionFn], AttentionFn]:
    """Add an attention backend under ``name``."""

    def wrap(fn: AttentionFn) -> AttentionFn:
        BACKENDS[name] = fn
        return fn

    return wrap


def _mask(length: int, window: int | None, slopes: torch.Tensor | None, device, dtype) -> torch.Tensor | None:
    """``(1, heads|1, L, L)`` additive mask for one length (window and/or ALiBi), or None.

    Additive float masks keep PyTorch's fused SDPA kernels; boolean ones fall back to the slow math path.
    Masks up to 4096 tokens are cached, since every layer and sequence of that length reuses them
    (see ``_cached_mask`` for why a cached mask is never an inference tensor).
    """
    if window is None and slopes is None:
        return None
    key = (length, window, tuple(slopes.tolist()) if slopes is not None else None, str(device), dtype)
    return _cached_mask(*key) if length <= 4096 else _build_mask(*key)


def _build_mask(length, window, slopes, device, dtype):
    slopes = torch.tensor(slopes) if slopes is not None else None
    bias = alibi_bias(slopes, length, device).to(dtype) if slopes is not None else None
    if window is not None and length > window + 1:
        pos = torch.arange(length, device=device)
        outside = ((pos[None, :] - pos[:, None]).abs() > window)[None]
        bias = (bias if bias is not None else torch.zeros(1, length, length, device=device, dtype=dtype))
        bias = bias.masked_fill(outside, float("-inf"))
    return bias[None] if bias is not None else None


@functools.lru_cache(maxsize=32)
def _cached_mask(length, window, slopes, device, dtype):
    # A cached mask outlives the call that built it. Built under torch.inference_mode (a benchmark, a
    # sample-generation callback) it would be an inference tensor, and every later training step that
    # saves it for backward (SDPA does) would fail. So build it outside inference mode: a normal tensor
    # is valid in every mode, and one cache entry serves inference and training alike.
    with torch.inference_mode(False):
        return _build_mask(length, window, slopes, device, dtype)


def clear_mask_cache() -> None:
    """Forget every cached attention mask (tests use it to start from a fresh process's state)."""
    _cached_mask.cache_clear()


@register("varlen")
def varlen_attention(q, k, v, cu_seqlens, max_seqlen, *, window=None, alibi_slopes=None, dropout_p=0.0, scale=None):
    """One SDPA call per sequence: no compute is spent on padding (fastest on CPU)."""
    bounds = cu_seqlens.tolist()
    batch, total = len(bounds) - 1, bounds[-1]
    if total == batch * max_seqlen:  # all sequences equally long: one batched call, nothing to pad
        qb, kb, vb = (t.unflatten(0, (batch, max_seqlen)).transpose(1, 2) for t in (q, k, v))  # (B, H, L, D)
        mask = _mask(max_seqlen, window, alibi_slopes, q.device, q.dtype)
        out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        return out.transpose(1, 2).reshape(total, -1)
    outs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        qs, ks, vs = (t[start:end].transpose(0, 1)[None] for t in (q, k, v))  # each (1, H, l, D)
        mask = _mask(end - start, window, alibi_slopes, q.device, q.dtype)
        out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, dropout_p=dropout_p, scale=scale)
        outs.append(out[0].transpose(0, 1))  # (l, H, D)
    return torch.cat(outs).flatten(1)


@register("sdpa")
def sdpa_attention(q, k, v, cu_seqlens, max_seqlen, *, window=None, alibi_slopes=None, dropout_p=0.0, scale=None):
    """Pad to ``(batch, max_seqlen)`` and run PyTorch SDPA once, with padding keys masked out."""
    total, heads, dim = q.shape
    batch = cu_seqlens.numel() - 1
    flat = sequence_ids(cu_seqlens, total) * max_seqlen + positions_in_sequence(cu_seqlens, total)

    def padded(t: torch.Tensor) -> torch.Tensor:  # (T, H, D) -> (B, H, L, D)
        out = t.new_zeros(batch * max_seqlen, heads, dim)
        out[flat] = t
        return out.view(batch, max_seqlen, heads, dim).transpose(1, 2)

    key_valid = torch.zeros(batch * max_seqlen, dtype=torch.bool, device=q.device)
    key_valid[flat] = True
    key_pad = ~key_valid.view(batch, 1, 1, max_seqlen)
    extra = _mask(max_seqlen, window, alibi_slopes, q.device, q.dtype)
    base = extra if extra is not None else q.new_zeros(1, 1, 1, max_seqlen)
    mask = base.masked_fill(key_pad, float("-inf"))
    out = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=mask, dropout_p=dropout_p,
                                         scale=scale)
    return out.transpose(1, 2).reshape(batch * max_seqlen, heads * dim)[flat]


@register("flash_attn")
def flash_attention(q, k, v, cu_seqlens, max_seqlen, *, window=None, alibi_slopes=None, dropout_p=0.0, scale=None):
    """flash-attn's varlen kernel (CUDA, half precision)."""
    from flash_attn import flash_attn_varlen_func

    out = flash_attn_varlen_func(
        q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p=dropout_p, softmax_scale=scale,
        window_size=(window, window) if window is not None else (-1, -1),
        alibi_slopes=alibi_slopes.to(q.device, torch.float32) if alibi_slopes is not None else None,
    )
    return out.flatten(1)


def flash_attn_missing() -> str | None:
    """Why flash-attn cannot run here (no CUDA device, package not installed), or None when it can.

    Cheap enough for config validation: it neither imports flash-attn nor creates a CUDA context.
    """
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if importlib.util.find_spec("flash_attn") is None:
        return "the flash-attn package is not installed"
    return None


def flash_attn_available() -> bool:
    """True when flash-attn is importable and a CUDA device is present."""
    return flash_attn_missing() is None


def _check_name(name: str) -> None:
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of auto, {', '.join(BACKENDS)}")


def _choose(name: str, device: torch.device, dtype: torch.dtype) -> tuple[str, str | None]:
    """``(backend, why)`` for ``name`` on these inputs; ``why`` says why a preferred backend was passed over."""
    if name not in ("auto", "flash_attn"):
        return name, None
    if name == "auto" and device.type != "cuda":
        return "varlen", None
    fallback = "sdpa" if device.type == "cuda" else "varlen"
    if device.type != "cuda":
        return fallback, f"inputs are on {device.type}, flash-attn runs on CUDA"
    if dtype not in (torch.float16, torch.bfloat16):
        return fallback, f"inputs are {dtype}, flash-attn takes float16/bfloat16"
    missing = flash_attn_missing()
    if missing is not None:
        return fallback, missing
    return "flash_attn", None


def resolve_backend(name: str, device: torch.device, dtype: torch.dtype) -> str:
    """The backend that runs ``name`` for inputs on ``device`` in ``dtype``.

    'auto' picks flash-attn on CUDA in half precision when installed, else SDPA on GPU and varlen on CPU;
    'flash_attn' falls back the same way for inputs it cannot take. A fallback logs one line.
    """
    _check_name(name)
    chosen, why = _choose(name, device, dtype)
    if why is not None:
        log.warning("attention_backend %s: %s; using %s", name, why, chosen)
    return chosen


class AttentionBackend:
    """An attention backend name, resolved to a function once per (device type, dtype) and remembered.

    A model is built before Composer moves it to its device and before autocast picks the dtype, so the
    choice is made at the first call that sees a new (device type, dtype); every later call is one dict
    lookup. Models build one and share it between layers. Copies and pickles drop the choices made.
    """

    def __init__(self, name: str = "auto"):
        _check_name(name)
        self.name = name
        self._chosen: dict[tuple[str, torch.dtype], AttentionFn] = {}

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
                 **kwargs) -> torch.Tensor:
        """Run the backend chosen for ``q``'s device type and dtype; same arguments as ``attention``."""
        key = (q.device.type, q.dtype)
        fn = self._chosen.get(key)
        if fn is None:
            fn = self._chosen[key] = BACKENDS[resolve_backend(self.name, q.device, q.dtype)]
        return fn(q, k, v, cu_seqlens, max_seqlen, **kwargs)

    def __getstate__(self) -> dict:
        return {"name": self.name, "_chosen": {}}

    def __repr__(self) -> str:
        return f"AttentionBackend({self.name!r})"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, *,
              backend: str = "auto", window: int | None = None, alibi_slopes: torch.Tensor | None = None,
              dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """Attention for unpadded ``q``, ``k``, ``v`` ``(total, heads, head_dim)`` -> ``(total, heads * head_dim)``.

    Resolves ``backend`` on every call: for one-off calls and tests; models hold an ``AttentionBackend``.
    """
    return AttentionBackend(backend)(q, k, v, cu_seqlens, max_seqlen, window=window, alibi_slopes=alibi_slopes,
                                     dropout_p=dropout_p, scale=scale)
