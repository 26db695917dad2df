"""Bidirectional attention over unpadded tokens, behind one function with several backends.

Every backend takes ``q``, ``k``, ``v`` ``(total, heads, head_dim)`` (views are fine) plus the
varlen bookkeeping and returns ``(total, heads * head_dim)``. Local (sliding-window) attention lets token i see token j
when ``|i - j| <= window``; ALiBi adds ``-slope * |i - j|`` per head. Backends:

- ``flash_attn``: flash-attn's varlen kernel (CUDA, fp16/bf16), when the package is installed.
- ``sdpa``: pad to ``(batch, max_seqlen)`` and call PyTorch SDPA with a boolean/additive mask.
- ``varlen``: one SDPA call per sequence, no padding at all (the CPU default).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bertforge.ops.alibi import alibi_bias
from bertforge.ops.padding import positions_in_sequence, sequence_ids

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
    Masks up to 4096 tokens are cached, since every layer and sequence of that length reuses them.
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


_cached_mask = functools.lru_cache(maxsize=32)(_build_mask)


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


def flash_attn_available() -> bool:
    """True when flash-attn is importable and a CUDA device is present."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def resolve_backend(name: str, device: torch.device, dtype: torch.dtype) -> str:
    """The backend to use for ``name`` ('auto' picks flash-attn, else SDPA on GPU, varlen on CPU)."""
    if name != "auto":
        if name == "flash_attn" and not flash_attn_available():
            raise RuntimeError("attention backend 'flash_attn' needs the flash-attn package and a CUDA GPU")
        return name
    if device.type == "cuda":
        return "flash_attn" if flash_attn_available() and dtype in (torch.float16, torch.bfloat16) else "sdpa"
    return "varlen"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, *,
              backend: str = "auto", window: int | None = None, alibi_slopes: torch.Tensor | None = None,
              dropout_p: float = 0.0, scale: float | None = None) -> torch.Tensor:
    """Attention for unpadded ``q``, ``k``, ``v`` ``(total, heads, head_dim)`` -> ``(total, heads * head_dim)``."""
    name = resolve_backend(backend, q.device, q.dtype)
    return BACKENDS[name](q, k, v, cu_seqlens, max_seqlen, window=window, alibi_slopes=alibi_slopes,
                          dropout_p=dropout_p, scale=scale)
