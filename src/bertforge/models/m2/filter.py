"""Hyena-style implicit long-convolution filters for M2-BERT's sequence mixer.

A filter is not a table of ``L`` weights per channel: a small MLP with sine activations maps
positional features (t and a few sin/cos bands) to one value per channel, and an exponential
decay, faster for some channels than others, shapes it. The filter at lag ``d`` therefore does
not depend on the batch's sequence length, which is what makes padding harmless once padded
positions are zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bertforge.models.m2.config import M2BertConfig
from bertforge.ops.fftconv import FFTConv


def _context_device() -> torch.device:
    """The device a ``with torch.device(...)`` block puts new tensors on (``torch.get_default_device()`` ignores it)."""
    return torch.empty(0).device


def positional_features(length: int, emb_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(length, emb_dim)`` filter-MLP inputs [t, cos bands, sin bands] and ``(length, 1)`` t in [0, 1]."""
    # device given: transformers 5's from_pretrained patches torch.linspace while it first enters torch.device("meta"),
    # and torch caches that patched function as the constructor to redirect, so ours would stay on the CPU
    device = _context_device()
    t = torch.linspace(0, 1, length, device=device)[:, None]  # (L, 1)
    bands = (emb_dim - 1) // 2
    angle = 2 * math.pi * torch.arange(length, dtype=t.dtype)[:, None] / length  # (L, 1), default dtype as t
    freqs = torch.linspace(1e-4, bands - 1, bands, device=device)[None]  # (1, bands)
    return torch.cat([t, torch.cos(freqs * angle), -torch.sin(freqs * angle)], dim=-1), t


def decay_rates(channels: int, cfg: M2BertConfig) -> torch.Tensor:
    """``(channels,)`` decay rates, slowest first: channels reach ``filter_decay_target`` between the fast and
    slow points (the original stores their negatives as ``modulation.deltas``)."""
    fastest = -math.log(cfg.filter_decay_target) / cfg.filter_decay_fast
    slowest = -math.log(cfg.filter_decay_target) / cfg.filter_decay_slow
    return torch.linspace(slowest, fastest, channels, device=_context_device())


def decay_modulation(t: torch.Tensor, channels: int, cfg: M2BertConfig) -> torch.Tensor:
    """``(L, channels)`` exp(-rate * t) with :func:`decay_rates`."""
    return torch.exp(-t * decay_rates(channels, cfg)[None])


class Sine(nn.Module):
    """sin(mod * freq * x) with one learned frequency per feature and a fixed factor ``mod`` (hyena_w_mod)."""

    def __init__(self, width: int, freq: float, mod: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full((width,), float(freq)))
        self.mod = float(mod)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.mod * self.freq * x)


class FilterMLP(nn.Module):
    """Positional features ``(L, emb_dim)`` -> filter values ``(L, channels)``, sine after each hidden layer."""

    def __init__(self, emb_dim: int, order: int, channels: int, inner_layers: int):
        super().__init__()
        hidden = [nn.Linear(order, order) for _ in range(inner_layers)]
        self.layers = nn.ModuleList([nn.Linear(emb_dim, order), *hidden])
        self.out = nn.Linear(order, channels, bias=False)

    def forward(self, z: torch.Tensor, sine: Sine) -> torch.Tensor:
        for layer in self.layers:
            z = sine(layer(z))
        return self.out(z)


class LongConv(nn.Module):
    """Per-channel long convolution with implicit forward (and reverse) filters plus the skip term ``D``.

    ``forward(u)`` takes ``(N, C, L)`` with padded positions already zero and returns
    ``conv(u, k_fwd, k_rev) + D * u``. The filter MLPs (and their shared sine frequencies) carry
    ``_optim = {lr: filter_lr, weight_decay: filter_weight_decay}`` and the positional features
    ``{lr: pos_features_lr, weight_decay: 0}`` for an optimizer that builds groups from such tags.
    The filters are laid out on ``filter_length`` positions (default ``max_position_embeddings``).
    """

    def __init__(self, cfg: M2BertConfig, channels: int):
        super().__init__()
        self.conv = FFTConv(cfg.fftconv_backend)  # resolved once per device type, not per call
        self.max_len = cfg.filter_length or cfg.max_position_embeddings
        z, t = positional_features(self.max_len, cfg.filter_emb_dim)
        if cfg.pos_features_lr > 0:
            self.z = nn.Parameter(z)
            self.z._optim = {"lr": cfg.pos_features_lr, "weight_decay": 0.0}
        else:
            self.register_buffer("z", z)
        self.register_buffer("modulation", decay_modulation(t, channels, cfg), persistent=False)
        self._modulation_args = (channels, cfg)
        self.sine = Sine(cfg.filter_order, cfg.filter_sine_freq, cfg.filter_sine_freq_mod)
        mlp = (cfg.filter_emb_dim, cfg.filter_order, channels, cfg.filter_inner_layers)
        self.fwd = FilterMLP(*mlp)
        self.rev = FilterMLP(*mlp) if cfg.bidirectional else None
        self.D = nn.Parameter(torch.randn(channels))
        tag = {"weight_decay": cfg.filter_weight_decay} | ({"lr": cfg.filter_lr} if cfg.filter_lr is not None else {})
        for module in (self.sine, self.fwd, self.rev):
            for param in module.parameters() if module is not None else ():
                param._optim = dict(tag)

    def reset_buffers(self) -> None:
        """Recompute ``modulation`` (not saved; see modeling_bertforge's ``_init_weights``)."""
        channels, cfg = self._modulation_args
        _, t = positional_features(self.max_len, cfg.filter_emb_dim)
        self.modulation.copy_(decay_modulation(t, channels, cfg))  # computed where t is, copied to the buffer's device

    def filters(self, length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``(C, length)`` forward and reverse filters."""
        if length > self.max_len:
            raise ValueError(f"M2-BERT: sequence of {length} tokens exceeds the filter length {self.max_len}; "
                             "raise model_config.filter_length (default: max_position_embeddings)")
        z, decay = self.z[:length], self.modulation[:length]
        k = (self.fwd(z, self.sine) * decay).t()  # (C, L)
        k_rev = (self.rev(z, self.sine) * decay).t() if self.rev is not None else None
        return k, k_rev

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (N, C, L) -> (N, C, L)
        k, k_rev = self.filters(u.shape[-1])
        return self.conv(u, k, k_rev) + u * self.D[:, None]
