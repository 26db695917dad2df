"""``throughput_mfu``: Composer's ``SpeedMonitor``, with MFU measured against bertforge's GPU peak table.

Throughput and MFU come from ``SpeedMonitor`` itself: tokens/s counts what the DataSpec counts (main.py
counts real tokens, ``attention_mask > 0``), and FLOP/s come from the model's ``flops_per_batch``
(:class:`bertforge.models.flops.FlopsPerBatch`: the same per-document count as ``benchmark_fwd.py``,
padding excluded). What this adds is configuration only: the peak FLOP/s of
:func:`bertforge.models.flops.peak_flops` (``peak_tflops``, else the GPU table that the benchmark uses, which
knows GPUs Composer's table does not and the TF32 peak for fp32 when TF32 matmuls are on), so training
and benchmark MFU are comparable, and no warning on CPU or an unknown GPU (MFU is just not logged).
Nothing SpeedMonitor cannot report was left in our own callback, so it has no metrics of its own.
"""

from __future__ import annotations

import logging

from composer.callbacks import SpeedMonitor
from composer.core import Callback, State
from composer.devices import DeviceGPU
from composer.loggers import Logger

from bertforge.models.flops import peak_flops
from bertforge.models.params import peel
from bertforge.registry import callbacks

log = logging.getLogger(__name__)


class ThroughputMFU(SpeedMonitor):
    """``SpeedMonitor(window_size)`` whose peak FLOP/s (for ``throughput/device/mfu``) is ``peak_tflops``,
    else the benchmark's GPU table; MFU is not logged where neither knows the peak."""

    def __init__(self, window_size: int = 20, peak_tflops: float | None = None):
        super().__init__(window_size=window_size, gpu_flops_available=peak_tflops * 1e12 if peak_tflops else None)

    def init(self, state: State, logger: Logger) -> None:
        if self.gpu_flops_available is None:
            device = "cuda" if isinstance(state.device, DeviceGPU) else "cpu"
            self.gpu_flops_available = peak_flops(state.precision.value, device) or 0  # 0: MFU off
        if not callable(getattr(peel(state.model), "flops_per_batch", None)):
            log.warning("throughput_mfu: %s has no flops_per_batch; FLOP/s and MFU are not logged",
                        type(peel(state.model)).__name__)


@callbacks.register("throughput_mfu")
def build_throughput_mfu(window_size: int = 20, peak_tflops: float | None = None) -> Callback:
    """Log throughput, FLOP/s and MFU (Composer's SpeedMonitor) with the benchmark's peak FLOP/s table."""
    return ThroughputMFU(window_size=window_size, peak_tflops=peak_tflops)
