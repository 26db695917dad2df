"""Exact mid-epoch resumption: restore the RNG right before the first resumed batch is collated.

Composer restores the checkpointed RNG only at an epoch boundary or while spinning a dataloader
forward; when a streaming dataset resumes mid-epoch by itself, the RNG is left as the new process
made it, so MLM masks and dropout after a resume differ from an uninterrupted run. This callback
checkpoints every rank's RNG and puts it back at the first ``BEFORE_DATALOADER`` after loading,
which is the moment the uninterrupted run was at when the checkpoint was written.
"""

from __future__ import annotations

from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import reproducibility


class ResumeRNG(Callback):
    """Save all ranks' RNG states with each checkpoint and restore them on the first batch after resume."""

    def __init__(self) -> None:
        self._pending: list | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": reproducibility.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state.get("rng")

    def before_dataloader(self, state: State, logger: Logger) -> None:
        if self._pending is not None:
            reproducibility.load_rng_state(self._pending)
            self._pending = None
