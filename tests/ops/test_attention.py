"""Attention backends against a float64 naive reference; unpad/pad round trip; padding invariance."""

from __future__ import annotations

import math

import pytest
import torch

from bertforge.ops import attention as attention_ops
from bertforge.ops.alibi import alibi_slopes
from bertforge.ops.attention import BACKENDS, attention, clear_mask_cache, flash_attn_available
from bertforge.ops.padding import pad, positions_in_sequence, unpad, unpad_info

LENGTHS = [7, 1, 19, 12, 33]


def _qkv(dtype=torch.float32, heads=4, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    total = sum(LENGTHS)
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
    return torch.randn(total, 3, heads, dim, generator=gen, dtype=dtype), cu


def naive(qkv, cu, window=None, slopes=None):
    """Float64 softmax attention, one sequence at a time, with explicit masking and biases."""
    qkv = qkv.double()
    outs = []
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        q, k, v = qkv[s:e].unbind(1)  # (l, H, D)
        scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(q.shape[-1])
        dist = (torch.arange(e - s)[None, :] - torch.arange(e - s)[:, None]).abs()
        if slopes is not None:
            scores = scores - slopes.double()[:, None, None] * dist
        if window is not None:
            scores = scores.masked_fill(dist > window, float("-inf"))
        outs.append(torch.einsum("hij,jhd->ihd", scores.softmax(-1), v))
    return torch.cat(outs).flatten(1)


@pytest.mark.parametrize("backend", ["varlen", "sdpa"])
@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("use_alibi", [False, True])
def test_backends_match_float64_reference(backend, window, use_alibi):
    qkv, cu = _qkv()
    slopes = alibi_slopes(qkv.shape[2]) if use_alibi else None
    got = BACKENDS[backend](*qkv.unbind(1), cu, max(LENGTHS), window=window, alibi_slopes=slopes)
    want = naive(qkv, cu, window, slopes)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)


def test_local_window_differs_from_global():
    qkv, cu = _qkv()
    local = attention(*qkv.unbind(1), cu, max(LENGTHS), backend="varlen", window=3)
    full = attention(*qkv.unbind(1), cu, max(LENGTHS), backend="varlen")
    assert not torch.allclose(local, full, atol=1e-3)  # the window really cuts off far tokens


@pytest.mark.parametrize("window, use_alibi", [(3, False), (None, True)])
def test_mask_cached_under_inference_mode_is_a_normal_tensor(window, use_alibi):
    # A mask cached during an inference_mode forward is reused by later training steps; an inference
    # tensor there fails their backward ("Inference tensors cannot be saved for backward").
    clear_mask_cache()
    slopes = alibi_slopes(4) if use_alibi else None
    with torch.inference_mode():
        first = attention_ops._mask(9, window, slopes, torch.device("cpu"), torch.float32)
    again = attention_ops._mask(9, window, slopes, torch.device("cpu"), torch.float32)
    assert not first.is_inference() and again is first  # cached, and usable outside inference mode
    qkv, cu = _qkv()
    q = qkv[:, 0].clone().requires_grad_()
    with torch.inference_mode():
        attention(q.detach(), *qkv.unbind(1)[1:], cu, max(LENGTHS), backend="varlen", window=window,
                  alibi_slopes=slopes)
    attention(q, *qkv.unbind(1)[1:], cu, max(LENGTHS), backend="varlen", window=window,
              alibi_slopes=slopes).sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_alibi_slopes_match_paper_values():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(12).shape == (12,) and (alibi_slopes(12) > 0).all()


def test_unpad_pad_round_trip_and_positions():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]])  # right and left padding
    x = torch.arange(12.0).view(3, 4, 1)
    info = unpad_info(mask)
    flat = unpad(x, info)
    assert flat.flatten().tolist() == [0, 1, 2, 4, 9, 10, 11]
    assert info.cu_seqlens.tolist() == [0, 3, 4, 7] and info.max_seqlen == 3
    assert positions_in_sequence(info.cu_seqlens, 7).tolist() == [0, 1, 2, 0, 0, 1, 2]
    torch.testing.assert_close(pad(flat, info), x * mask[..., None])


@pytest.mark.gpu
@pytest.mark.skipif(not flash_attn_available(), reason="needs a CUDA GPU with flash-attn installed")
@pytest.mark.parametrize("window", [None, 3])
def test_flash_attn_matches_reference_on_gpu(window):
    qkv, cu = _qkv(dtype=torch.float32)
    got = BACKENDS["flash_attn"](*qkv.cuda().bfloat16().unbind(1), cu.cuda(), max(LENGTHS), window=window)
    torch.testing.assert_close(got.float().cpu().double(), naive(qkv, cu, window), rtol=0, atol=2e-2)
