"""Timing and memory of one benchmark case: warm-up excluded, device-synchronised, median of N repeats.

On GPU each repeat is timed with CUDA events and peak memory is ``torch.cuda.max_memory_allocated``.
On CPU repeats use ``time.perf_counter`` and peak memory is the rise of the process's resident-set
high-water mark over its resident set just before the case, after freed memory has been handed back
to the OS (``malloc_trim``): activations, workspaces and, in train mode, gradients and optimizer state
created during the case, not the weights. The high-water mark is ``VmHWM`` after resetting it through
``/proc/self/clear_refs``; where that is not possible, the rise of ``ru_maxrss``, which only shows
growth beyond every earlier peak of the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Timing:
    """Milliseconds per call over the timed repeats (warm-up excluded)."""

    times_ms: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def min(self) -> float:
        return min(self.times_ms)

    @property
    def max(self) -> float:
        return max(self.times_ms)


def is_oom(err: BaseException) -> bool:
    """True for a CUDA (or other accelerator) out-of-memory error."""
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


def time_calls(fn: Callable[[int], None], device: torch.device, repeats: int, warmup: int) -> Timing:
    """Call ``fn(0) ... fn(warmup - 1)`` untimed, then ``fn(warmup) ... fn(warmup + repeats - 1)`` timed.

    Returns the timed calls' durations in ms, each measured with the device synchronised.
    """
    for i in range(warmup):
        fn(i)
    _sync(device)
    times = []
    for i in range(warmup, warmup + repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t0) * 1e3)
    return Timing(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _release_free_memory() -> None:
    """Give memory freed by earlier cases back to the OS (glibc ``malloc_trim``), so RSS counts live memory."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager measuring the peak memory of what runs inside it, in MiB (``.mib``, ``.kind``)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mib: float | None = None
        self.kind = ""

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _release_free_memory()
            self._hwm = _reset_rss_peak() and _proc_status_kb("VmHWM") is not None
            self._before = _proc_status_kb("VmRSS") if self._hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            with contextlib.suppress(RuntimeError):
                _sync(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.kind = "cuda_max_allocated"
        elif self._hwm:
            self.mib = max(0, (_proc_status_kb("VmHWM") or 0) - self._before) / 1024
            self.kind = "rss_peak_rise"
        else:
            self.mib = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._before) / 1024
            self.kind = "ru_maxrss_rise"
