"""Batch-size warmup: train on a growing share of each batch's rows early on (ModernBERT's schedule).

The dataloader still yields full batches, so data order, sample counts and resumption are
unchanged; during warmup only the first ``ceil(fraction * rows)`` rows are used, the fraction
rising linearly from ``start_fraction`` to 1 over ``t_warmup``.
"""

from __future__ import annotations

import math

from composer.core import Callback, State
from composer.loggers import Logger
from composer.optim.scheduler import _convert_time

from bertforge.registry import callbacks


class BatchSizeWarmup(Callback):
    """Slice each training batch to a linearly growing fraction of its rows during warmup."""

    def __init__(self, start_fraction: float, t_warmup: str):
        if not 0.0 < start_fraction <= 1.0:
            raise ValueError(f"start_fraction {start_fraction} must be in (0, 1]")
        self.start_fraction, self.t_warmup = start_fraction, t_warmup

    def fraction(self, state: State) -> float:
        """The share of rows used at the current step."""
        warmup = _convert_time(self.t_warmup, state)
        now = state.timestamp.get(warmup.unit).value
        if warmup.value == 0 or now >= warmup.value:
            return 1.0
        return self.start_fraction + (1.0 - self.start_fraction) * now / warmup.value

    def after_dataloader(self, state: State, logger: Logger) -> None:
        fraction = self.fraction(state)
        if fraction >= 1.0:
            return
        rows = state.batch["input_ids"].shape[0]
        keep = max(1, math.ceil(fraction * rows))
        state.batch = {k: v[:keep] for k, v in state.batch.items()}
        logger.log_metrics({"trainer/batch_size_warmup_rows": keep})


@callbacks.register("batch_size_warmup")
def build_batch_size_warmup(start_fraction: float = 0.25, t_warmup: str = "0.05dur") -> Callback:
    """Start with ``start_fraction`` of each batch and grow linearly to the full batch over ``t_warmup``."""
    return BatchSizeWarmup(start_fraction, t_warmup)
