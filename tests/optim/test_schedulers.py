"""Warmup-stable-decay shape, checked against hand-computed multipliers over a 100-batch run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from composer.core import Time, Timestamp

from bertforge.optim.schedulers import WarmupStableDecayScheduler


def _state(batch: int) -> SimpleNamespace:
    return SimpleNamespace(
        max_duration=Time.from_timestring("100ba"),
        timestamp=Timestamp(batch=batch),
        dataloader_len=None,
    )


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_multipliers(shape):
    sched = WarmupStableDecayScheduler("0.1dur", "0.2dur", alpha_f=0.1, decay_shape=shape)
    assert sched(_state(0)) == 0.0
    assert sched(_state(5)) == pytest.approx(0.5)
    assert sched(_state(10)) == 1.0 and sched(_state(79)) == 1.0
    progress = (90 - 80) / 20
    remaining = 1 - progress if shape == "linear" else 1 - math.sqrt(progress)
    assert sched(_state(90)) == pytest.approx(0.1 + 0.9 * remaining)
    assert sched(_state(100)) == pytest.approx(0.1)


def test_wsd_alpha_scales_the_plateau_and_decays_from_it():
    """ModernBERT's context-extension decay: from 3/8 of the peak down to alpha_f along 1 - sqrt."""
    sched = WarmupStableDecayScheduler("0dur", "1dur", alpha_f=0.000375, decay_shape="1-sqrt", alpha=0.375)
    assert sched(_state(0)) == pytest.approx(0.375)
    assert sched(_state(25)) == pytest.approx(0.000375 + (0.375 - 0.000375) * (1 - math.sqrt(0.25)))
    assert sched(_state(100)) == pytest.approx(0.000375)
    held = WarmupStableDecayScheduler("0.1dur", "0dur", alpha_f=0.0, decay_shape="linear", alpha=0.5)
    assert held(_state(5)) == pytest.approx(0.25) and held(_state(60)) == 0.5
