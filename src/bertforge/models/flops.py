"""Model FLOPs accounting: one count for the benchmark (``benchmark_fwd.py``) and for training, where
every ComposerModel of ours supplies ``flops_per_batch`` to Composer's ``SpeedMonitor`` (:class:`FlopsPerBatch`).

Forward FLOPs per real token = ``2 * N`` (N: parameters outside embedding tables, each used in one
multiply-add per token) plus the attention term ``4 * hidden * keys`` per layer (scores QK^T and the
weighted sum of V), where ``keys`` is the mean number of keys a query sees: ``seq_len`` for global
attention, fewer for sliding-window layers (a config that has ``attention_half_windows()``, one
entry per layer, None for global, e.g. FlexBERT). A train step (forward + backward) is 3x the forward.
A family whose compute is not attention (e.g. M2's long convolutions) defines ``flops_per_token(seq_len) -> float``
(forward FLOPs per token) on its model or its config, and that replaces this formula.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch

from bertforge.models.params import count_params, inner_module, peel
from bertforge.ops.padding import unpad_info

TRAIN_MULTIPLIER = 3  # backward costs about twice the forward

# Dense peak TFLOP/s by GPU: (bf16/fp16 tensor cores, tf32 tensor cores, plain fp32). Datasheet values,
# without sparsity. Checked in order, so more specific names come first.
PEAK_TFLOPS: list[tuple[str, tuple[float, float, float]]] = [
    (r"H200", (989.4, 494.7, 66.9)),
    (r"H100.*(PCIe|PCIE)", (756.0, 378.0, 51.2)),
    (r"H100", (989.4, 494.7, 66.9)),  # SXM
    (r"A100", (312.0, 156.0, 19.5)),
    (r"\bA10\b", (125.0, 62.5, 31.2)),
    (r"\bL4\b", (121.0, 60.0, 30.3)),
    (r"4090", (165.2, 82.6, 82.6)),
]


def _config_of(model: Any) -> Any:
    return getattr(inner_module(model), "config", None)


def _shape(config: Any) -> tuple[int, int] | None:
    """(layers, hidden) from a transformers-style config, or None when it does not say."""
    if config is None:
        return None
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    return (int(layers), int(hidden)) if layers and hidden else None


def mean_keys_per_query(seq_len: int, half_window: int | None) -> float:
    """Mean number of keys a query attends to: all ``seq_len``, or those with ``|i - j| <= half_window``."""
    if half_window is None or half_window >= seq_len - 1:
        return float(seq_len)
    h = half_window
    # sum over queries i of (min(i, h) + min(seq_len - 1 - i, h) + 1)
    return (seq_len + 2 * (h * (h + 1) / 2 + h * (seq_len - 1 - h))) / seq_len


def attention_flops_per_token(config: Any, seq_len: int) -> float:
    """The attention term of the forward FLOPs per token (0 when the config does not give the shape)."""
    shape = _shape(config)
    if shape is None:
        return 0.0
    layers, hidden = shape
    windows = getattr(config, "attention_half_windows", None)
    if callable(windows):
        return float(4 * hidden * sum(mean_keys_per_query(seq_len, w) for w in windows()))
    return float(4 * layers * hidden * seq_len)


def forward_flops_per_token(model: Any, seq_len: int, n_params_nonembedding: int | None = None) -> float:
    """Forward FLOPs per real token of ``model`` at ``seq_len``.

    Uses ``flops_per_token(seq_len)`` from the model (ComposerModel, its inner module, or its config)
    when one exists; else ``2 * N_nonembedding`` plus the attention term (see the module docstring).
    """
    for owner in (peel(model), inner_module(model), _config_of(model)):
        hook = getattr(owner, "flops_per_token", None)
        if callable(hook):
            return float(hook(seq_len))
    if n_params_nonembedding is None:
        n_params_nonembedding = count_params(inner_module(model))[1]
    return float(2 * n_params_nonembedding + attention_flops_per_token(_config_of(model), seq_len))


def flops_per_token(model: Any, seq_len: int, train: bool, n_params_nonembedding: int | None = None) -> float:
    """FLOPs per real token: the forward's, times 3 for a train step (forward + backward)."""
    fwd = forward_flops_per_token(model, seq_len, n_params_nonembedding)
    return fwd * (TRAIN_MULTIPLIER if train else 1)


def batch_flops(model: Any, lengths: Iterable[int], train: bool, n_params_nonembedding: int | None = None) -> float:
    """Model FLOPs of a batch: each sequence's real tokens times the per-token FLOPs at its own length.

    Padding is not counted: a model that computes on padding does that work on top of this figure.
    """
    if n_params_nonembedding is None:
        n_params_nonembedding = count_params(inner_module(model))[1]
    cache: dict[int, float] = {}
    total = 0.0
    for n in lengths:
        n = int(n)
        if n not in cache:
            cache[n] = flops_per_token(model, n, train, n_params_nonembedding)
        total += n * cache[n]
    return total


def peak_flops(precision: str, device: torch.device | str | None = None,
               peak_tflops: float | None = None) -> float | None:
    """Peak FLOP/s of the device for ``precision``: ``peak_tflops`` when given, else the table by GPU name.

    Returns None on CPU or an unknown GPU (MFU is then not reported). fp32 uses the TF32 figure when
    PyTorch lets matmuls use TF32 (``torch.backends.cuda.matmul.allow_tf32``).
    """
    if peak_tflops:
        return peak_tflops * 1e12
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return None
    return table_peak_flops(torch.cuda.get_device_name(device), precision, torch.backends.cuda.matmul.allow_tf32)


def table_peak_flops(gpu_name: str, precision: str, allow_tf32: bool = False) -> float | None:
    """Peak FLOP/s of the GPU named ``gpu_name`` (``torch.cuda.get_device_name``) from the table, or None."""
    for pattern, (half, tf32, fp32) in PEAK_TFLOPS:
        if re.search(pattern, gpu_name):
            tflops = half if precision in ("amp_bf16", "amp_fp16", "bf16", "fp16") else (tf32 if allow_tf32 else fp32)
            return tflops * 1e12
    return None


def document_lengths(attention_mask: torch.Tensor) -> list[int]:
    """Real tokens of each sequence in a batch: one per row of a 0/1 mask, one per document of packed rows
    (segment ids 1, 2, ...), as the unpadded encoders see them (:func:`bertforge.ops.padding.unpad_info`)."""
    bounds = unpad_info(attention_mask).cu_seqlens
    return (bounds[1:] - bounds[:-1]).tolist()


class FlopsPerBatch:
    """Mixin for a ComposerModel: ``flops_per_batch(batch)``, the hook Composer's ``SpeedMonitor`` calls to
    log FLOP/s and MFU, counted as :func:`batch_flops` counts a train step (padding excluded)."""

    def flops_per_batch(self, batch: dict) -> float:
        """Train-step (forward + backward) model FLOPs of ``batch``, from its ``attention_mask``."""
        cached = self.__dict__.get("_nonembedding_params")
        if cached is None:
            cached = self.__dict__["_nonembedding_params"] = count_params(inner_module(self))[1]
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(batch["input_ids"])
        return batch_flops(self, document_lengths(mask), True, cached)
