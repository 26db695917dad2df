"""Gated linear unit ``act(a) * g`` on the packed ``(T, 2I)`` output of ``Wi`` as one Triton kernel each way.

Our own kernel: liger-kernel's GeGLU is tanh-GELU only (ModernBERT uses exact, erf GELU) and takes the two halves
as separate contiguous tensors (two copies of ``Wi``'s output); this one reads both halves in place and covers
exact GELU, tanh GELU and SiLU. Math in float32, results in the input dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from bertforge.kernels.ops import FUSED_GLU_ACTIVATIONS

GLU_ACTIVATIONS = {name: i for i, name in enumerate(FUSED_GLU_ACTIVATIONS)}  # the kernel's ACT codes
_BLOCK = 1024


@triton.jit
def _act_and_grad(a, ACT: tl.constexpr):
    """act(a) and act'(a) in float32 for ACT 0 (erf GELU), 1 (tanh GELU), 2 (SiLU)."""
    if ACT == 0:
        cdf = 0.5 * (1.0 + tl.erf(a * 0.7071067811865476))
        return a * cdf, cdf + a * 0.3989422804014327 * tl.exp(-0.5 * a * a)
    elif ACT == 1:
        inner = 0.7978845608028654 * (a + 0.044715 * a * a * a)
        t = 2.0 * tl.sigmoid(2.0 * inner) - 1.0  # tanh(inner)
        d_inner = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * a * a)
        return 0.5 * a * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * d_inner
    else:
        s = tl.sigmoid(a)
        return a * s, s * (1.0 + a * (1.0 - s))


@triton.jit
def _glu_forward(h_ptr, y_ptr, width, h_stride, y_stride, ACT: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < width
    a = tl.load(h_ptr + row * h_stride + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(h_ptr + row * h_stride + width + cols, mask=mask, other=0.0).to(tl.float32)
    act, _ = _act_and_grad(a, ACT)
    tl.store(y_ptr + row * y_stride + cols, (act * g).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _glu_backward(h_ptr, dy_ptr, dh_ptr, width, h_stride, dy_stride, ACT: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < width
    a = tl.load(h_ptr + row * h_stride + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(h_ptr + row * h_stride + width + cols, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + row * dy_stride + cols, mask=mask, other=0.0).to(tl.float32)
    act, d_act = _act_and_grad(a, ACT)
    out = dh_ptr.dtype.element_ty
    tl.store(dh_ptr + row * h_stride + cols, (dy * g * d_act).to(out), mask=mask)
    tl.store(dh_ptr + row * h_stride + width + cols, (dy * act).to(out), mask=mask)


def _launch(kernel, rows: int, width: int, *args, act: int) -> None:
    block = min(_BLOCK, triton.next_power_of_2(width))
    kernel[(rows, triton.cdiv(width, block))](*args, ACT=act, BLOCK=block)


class GLUFunction(torch.autograd.Function):
    """Autograd for :func:`glu_fused`; saves only the packed input."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, act: int) -> torch.Tensor:
        h = hidden.reshape(-1, hidden.shape[-1]).contiguous()  # (T, 2I)
        width = h.shape[1] // 2
        y = h.new_empty(h.shape[0], width)
        _launch(_glu_forward, h.shape[0], width, h, y, width, h.stride(0), y.stride(0), act=act)
        ctx.save_for_backward(h)
        ctx.act, ctx.shape = act, hidden.shape
        return y.view(*hidden.shape[:-1], width)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (h,) = ctx.saved_tensors
        width = h.shape[1] // 2
        dy = dy.reshape(-1, width).contiguous()
        dh = torch.empty_like(h)
        _launch(_glu_backward, h.shape[0], width, h, dy, dh, width, h.stride(0), dy.stride(0), act=ctx.act)
        return dh.view(ctx.shape), None


def glu_fused(hidden: torch.Tensor, activation: str) -> torch.Tensor:
    """``act(a) * g`` for ``hidden = [a | g]`` ``(..., 2I)`` -> ``(..., I)``; ``activation`` in GLU_ACTIVATIONS."""
    return GLUFunction.apply(hidden, GLU_ACTIVATIONS[activation])
