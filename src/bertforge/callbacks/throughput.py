"""``throughput_mfu``: real (non-pad) tokens per second and model FLOPs utilization during training.

FLOPs use the benchmark's accounting (:mod:`bertforge.bench.flops`): for each sequence, its real
tokens times the train-step FLOPs per token at its own length; padding is never counted.
"""

from __future__ import annotations

import time
from collections import deque

import torch
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from bertforge.bench.flops import batch_flops, count_params, peak_flops, unwrap
from bertforge.registry import callbacks

PREFIX = "throughput_mfu"


class ThroughputMFU(Callback):
    """Logs real tokens/s (this device and all devices) and MFU, averaged over the last ``window_size`` batches.

    A batch's real tokens are ``attention_mask.sum()`` of the device batch; its time runs from
    ``batch_start`` to ``batch_end`` with the device synchronised at both ends. MFU is logged when the
    peak FLOP/s is known (``peak_tflops``, or a GPU in the table of :mod:`bertforge.bench.flops`).
    """

    def __init__(self, window_size: int = 20, peak_tflops: float | None = None):
        self.window: deque[tuple[int, float, float]] = deque(maxlen=window_size)
        self.peak_tflops = peak_tflops
        self._nonembedding: int | None = None
        self._lengths: list[int] = []
        self._t0 = 0.0

    def fit_start(self, state: State, logger: Logger) -> None:
        self._nonembedding = count_params(unwrap(state.model))[1]

    def after_dataloader(self, state: State, logger: Logger) -> None:
        batch = state.batch
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is None and isinstance(batch, dict) and "input_ids" in batch:
            mask = torch.ones_like(batch["input_ids"])
        self._lengths = mask.sum(dim=1).tolist() if mask is not None else []

    def batch_start(self, state: State, logger: Logger) -> None:
        _sync()
        self._t0 = time.perf_counter()

    def batch_end(self, state: State, logger: Logger) -> None:
        _sync()
        seconds = time.perf_counter() - self._t0
        flops = batch_flops(state.model, self._lengths, True, self._nonembedding)
        self.window.append((int(sum(self._lengths)), flops, seconds))
        logger.log_metrics(self.metrics(state))

    def metrics(self, state: State) -> dict[str, float]:
        """The window's averages: tokens/s per device and in all, TFLOP/s per device, MFU when known."""
        tokens = sum(w[0] for w in self.window)
        flops = sum(w[1] for w in self.window)
        seconds = max(sum(w[2] for w in self.window), 1e-9)
        out = {
            f"{PREFIX}/device_real_tokens_per_sec": tokens / seconds,
            f"{PREFIX}/real_tokens_per_sec": tokens / seconds * dist.get_world_size(),
            f"{PREFIX}/device_tflops_per_sec": flops / seconds / 1e12,
        }
        device = next(state.model.parameters()).device
        precision = getattr(state.precision, "value", str(state.precision))
        peak = peak_flops(precision, device, self.peak_tflops)
        if peak:
            out[f"{PREFIX}/mfu"] = flops / seconds / peak
        return out


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@callbacks.register("throughput_mfu")
def build_throughput_mfu(window_size: int = 20, peak_tflops: float | None = None) -> Callback:
    """Log real (non-pad) tokens/s and MFU (model FLOPs / peak FLOP/s), as benchmark_fwd.py counts them."""
    return ThroughputMFU(window_size=window_size, peak_tflops=peak_tflops)
