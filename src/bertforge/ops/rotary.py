"""Rotary position embeddings (RoPE, half-split "rotate_half" layout) for unpadded tokens."""

from __future__ import annotations

import torch


def inverse_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """RoPE's ``(head_dim / 2,)`` inverse frequencies ``theta ** (-2i / head_dim)``, float32."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


class Rotary(torch.nn.Module):
    """Holds the inverse frequencies of one RoPE base; rotates query/key heads by token position."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.register_buffer("inv_freq", inverse_frequencies(head_dim, theta), persistent=False)
        self.theta = theta

    def reset_buffers(self) -> None:
        """Recompute ``inv_freq`` (not saved: transformers 5's from_pretrained leaves it empty)."""
        self.inv_freq.copy_(inverse_frequencies(2 * self.inv_freq.numel(), self.theta))

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin tables ``(total, 1, head_dim)`` for token ``positions`` ``(total,)``, in float32 math."""
        freqs = positions.float()[:, None] * self.inv_freq.float()[None, :]  # (T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def extra_repr(self) -> str:
        return f"theta={self.theta}"


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dimension's halves."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(total, ..., head_dim)`` by per-token angles; ``cos``/``sin`` broadcast against it."""
    return x * cos + rotate_half(x) * sin
