"""Small building blocks shared by every family: norms, activations, the MLM prediction head, the block loop."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the sigmoid approximation of GELU (transformers' ``quick_gelu``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {
    "gelu": lambda: nn.GELU(),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": lambda: nn.SiLU(),
    "relu": lambda: nn.ReLU(),
    "quick_gelu": lambda: QuickGELU(),
}


def activation(name: str) -> nn.Module:
    """An activation module by name (gelu, gelu_tanh, silu, relu, quick_gelu)."""
    return ACTIVATIONS[name]()


def norm(kind: str, dim: int, eps: float, bias: bool) -> nn.Module:
    """LayerNorm (optionally without bias) or RMSNorm."""
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    return nn.LayerNorm(dim, eps=eps, bias=bias)


class PredictionTransform(nn.Module):
    """The MLM head's transform before the decoder: dense + activation + norm, each optional."""

    def __init__(self, hidden: int, *, dense: bool, act: str, use_norm: bool, norm_kind: str, eps: float,
                 norm_bias: bool, dense_bias: bool):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden, bias=dense_bias) if dense else nn.Identity()
        self.act = activation(act) if dense else nn.Identity()
        self.norm = norm(norm_kind, hidden, eps, norm_bias) if use_norm else nn.Identity()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (N, H) -> (N, H)
        return self.norm(self.act(self.dense(hidden)))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, *args, checkpoint_every: int | None = None) -> torch.Tensor:
    """``x`` through each block in turn (``block(x, *args)``), with activation checkpointing when asked.

    Training with grad enabled and ``checkpoint_every`` set, block i (i % checkpoint_every == 0) keeps only its
    inputs and recomputes its activations in the backward pass (non-reentrant checkpoint, which replays the
    RNG state so dropout masks match); in eval or under no_grad every block runs plainly.
    """
    recompute = checkpoint_every is not None and torch.is_grad_enabled()
    for i, block in enumerate(blocks):
        if recompute and block.training and i % checkpoint_every == 0:
            x = checkpoint(block, x, *args, use_reentrant=False)
        else:
            x = block(x, *args)
    return x
