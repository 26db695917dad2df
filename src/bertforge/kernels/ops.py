"""Fused replacements for FlexBERT's RoPE, norms, GLU and MLM loss, each beside the plain torch op it replaces.

The fused ops are liger-kernel's Triton kernels (RoPE, LayerNorm, RMSNorm, fused linear + cross-entropy) and our
GLU kernel (:mod:`bertforge.kernels.glu`). Each falls back to its torch op for a tensor Triton cannot take (a CPU
tensor outside the interpreter), so a model built with fused kernels still runs anywhere.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.kernels.interpreter import patch_interpreter
from bertforge.kernels.select import runs_triton
from bertforge.ops.rotary import apply_rotary

IGNORE_INDEX = -100


@functools.cache
def _liger(name: str) -> ModuleType:
    """``liger_kernel.ops.<name>``, imported after the interpreter shims (a no-op on GPUs)."""
    patch_interpreter()
    import importlib

    return importlib.import_module(f"liger_kernel.ops.{name}")


def torch_rotary_qk(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                    sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on ``q`` and ``k`` ``(T, nh, hd)`` with ``cos``/``sin`` ``(T, 1, hd)`` (half-split layout)."""
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


def fused_rotary_qk(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                    sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`torch_rotary_qk` as liger's one-pass Triton kernel (q and k together); returns contiguous tensors."""
    if not runs_triton(q):
        return torch_rotary_qk(q, k, cos, sin)
    total, _, head_dim = q.shape
    cos, sin = cos.reshape(1, total, head_dim), sin.reshape(1, total, head_dim)
    # liger's layout is (batch, heads, seq, hd): the unpadded tokens are one sequence of a batch of one
    q, k = _liger("rope").LigerRopeFunction.apply(q[None].transpose(1, 2), k[None].transpose(1, 2), cos, sin)
    return q.transpose(1, 2)[0], k.transpose(1, 2)[0]


class FusedLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and state dict) whose forward is liger's Triton LayerNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_triton(x) or not self.elementwise_affine:
            return super().forward(x)
        bias = self.bias if self.bias is not None else self.weight.new_zeros(self.weight.shape)  # liger needs one
        return _liger("layer_norm").LigerLayerNormFunction.apply(x, self.weight, bias, self.eps)


class FusedRMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` (same parameters and state dict) whose forward is liger's Triton RMSNorm, in float32 math."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not runs_triton(x) or not self.elementwise_affine:
            return super().forward(x)
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        return _liger("rms_norm").LigerRMSNormFunction.apply(x, self.weight, eps, 0.0, "gemma", False)


_FUSED_TWINS = {nn.LayerNorm: FusedLayerNorm, nn.RMSNorm: FusedRMSNorm}


def use_fused_norms(module: nn.Module) -> int:
    """Turn every ``nn.LayerNorm``/``nn.RMSNorm`` inside ``module`` into its fused twin in place (same object,
    parameters and state dict: only ``forward`` changes). Returns how many were turned."""
    swapped = 0
    for sub in module.modules():
        twin = _FUSED_TWINS.get(type(sub))
        if twin is not None:
            sub.__class__ = twin
            swapped += 1
    return swapped


def torch_glu(hidden: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """``act(a) * g`` for ``hidden = [a | g]`` ``(..., 2I)``."""
    inp, gate = hidden.chunk(2, dim=-1)
    return act(inp) * gate


def torch_token_cross_entropy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                              targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy ``(N,)`` float32 of the logits ``x @ weight.T + bias`` ``(N, V)`` against ``targets``."""
    return F.cross_entropy(F.linear(x, weight, bias).float(), targets, reduction="none")


def fused_token_cross_entropy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                              targets: torch.Tensor) -> torch.Tensor:
    """:func:`torch_token_cross_entropy` as liger's fused linear + cross-entropy: the logits are made a chunk of
    rows at a time and never held whole (the backward recomputes them)."""
    if not runs_triton(x):
        return torch_token_cross_entropy(x, weight, bias, targets)
    flce = _liger("fused_linear_cross_entropy").LigerFusedLinearCrossEntropyFunction
    return flce.apply(x, weight, targets, bias, None, IGNORE_INDEX, 0.0, 0.0, "none")[0]


FUSED_GLU_ACTIVATIONS = ("gelu", "gelu_tanh", "silu")


def _glu_activation(act: nn.Module) -> str | None:
    if isinstance(act, nn.GELU):
        return "gelu" if act.approximate == "none" else "gelu_tanh"
    return "silu" if isinstance(act, nn.SiLU) else None


def fused_glu(hidden: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """:func:`torch_glu` as our one-pass Triton kernel when ``act`` is GELU (exact or tanh) or SiLU."""
    name = _glu_activation(act)
    if name is None or not runs_triton(hidden):
        return torch_glu(hidden, act)
    from bertforge.kernels.glu import glu_fused  # imports triton

    return glu_fused(hidden, name)
