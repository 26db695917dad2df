"""Train batch ``i`` with the learning rate the schedule gives at batch ``i``.

Composer steps its schedulers at the end of a batch *before* it advances the timestamp, so the
rate computed there is the schedule at the batch just finished, and batch ``i`` trains with the
schedule at ``i - 1`` (batch 0 and batch 1 both get the value at 0). transformers' Trainer, the
papers' recipes and our own docs mean the schedule at ``i``. Re-evaluating the schedulers once
the timestamp has moved on removes the lag; resumption is unaffected (the rate for the next
batch is what the checkpoint's optimizer state holds).
"""

from __future__ import annotations

from composer.core import Callback, State
from composer.loggers import Logger


class ScheduleAlignment(Callback):
    """Re-step every scheduler after the timestamp advances, so batch ``i`` uses schedule(i)."""

    def batch_end(self, state: State, logger: Logger) -> None:
        for scheduler in state.schedulers:
            scheduler.step()
