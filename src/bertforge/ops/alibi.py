"""ALiBi: per-head linear attention biases (Press et al. 2022), symmetric for bidirectional encoders."""

from __future__ import annotations

import math

import torch


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The geometric head slopes; for a head count that is not a power of two, interleave the next power's."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two_slopes(closest)
    if closest < num_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, length: int, device: torch.device | None = None) -> torch.Tensor:
    """``(heads, length, length)`` additive bias ``-slope * |i - j|``."""
    pos = torch.arange(length, device=device)
    distance = (pos[None, :] - pos[:, None]).abs().float()
    return -slopes.to(device)[:, None, None] * distance[None]
