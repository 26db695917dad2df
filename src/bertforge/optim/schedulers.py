"""Learning-rate schedules by YAML name: Composer's schedulers plus warmup-stable-decay."""

from __future__ import annotations

import math
from typing import Literal

from composer.core import State
from composer.optim import (
    ComposerScheduler,
    ConstantScheduler,
    ConstantWithWarmupScheduler,
    CosineAnnealingWithWarmupScheduler,
    LinearWithWarmupScheduler,
)
from composer.optim.scheduler import _convert_time

from bertforge.errors import ConfigError
from bertforge.registry import schedulers


@schedulers.register("linear_decay_with_warmup")
def build_linear(t_warmup: str = "0.06dur", alpha_f: float = 0.02, t_max: str = "1dur") -> ComposerScheduler:
    """Linear warmup from 0, then linear decay to ``alpha_f`` x the peak learning rate."""
    return LinearWithWarmupScheduler(t_warmup=t_warmup, alpha_f=alpha_f, t_max=t_max)


@schedulers.register("cosine_decay_with_warmup")
def build_cosine(t_warmup: str = "0.06dur", alpha_f: float = 0.0, t_max: str = "1dur") -> ComposerScheduler:
    """Linear warmup from 0, then cosine decay to ``alpha_f`` x the peak learning rate."""
    return CosineAnnealingWithWarmupScheduler(t_warmup=t_warmup, alpha_f=alpha_f, t_max=t_max)


@schedulers.register("constant")
def build_constant(alpha: float = 1.0) -> ComposerScheduler:
    """The peak learning rate times ``alpha`` throughout."""
    return ConstantScheduler(alpha=alpha)


@schedulers.register("constant_with_warmup")
def build_constant_warmup(t_warmup: str = "0.06dur", alpha: float = 1.0) -> ComposerScheduler:
    """Linear warmup, then constant."""
    return ConstantWithWarmupScheduler(t_warmup=t_warmup, alpha=alpha)


def _overlap(t_warmup: str, t_decay: str, total: str) -> ConfigError:
    """The error for a decay that would start before the warmup ends (and cut the warmup short)."""
    return ConfigError("scheduler.t_decay", f"t_warmup {t_warmup} + t_decay {t_decay} exceed the whole run "
                       f"({total}); the decay would start before the warmup ends: shorten one of them")


class WarmupStableDecayScheduler(ComposerScheduler):
    """Warmup-stable-decay (trapezoidal): linear warmup to ``alpha``, hold, then decay to ``alpha_f`` over
    ``t_decay``.

    ``decay_shape`` is ``linear`` or ``1-sqrt`` (as used by ModernBERT). Times are Composer time strings. ``alpha``
    below 1 holds a lower plateau, e.g. ModernBERT's context-extension phases at 3e-4 of a run whose peak is 8e-4.
    """

    def __init__(self, t_warmup: str, t_decay: str, alpha_f: float, decay_shape: str, alpha: float = 1.0):
        self.t_warmup, self.t_decay, self.alpha_f, self.decay_shape = t_warmup, t_decay, alpha_f, decay_shape
        self.alpha = alpha

    def __call__(self, state: State, ssr: float = 1.0) -> float:
        t_max = _convert_time("1dur", state, ssr)
        warmup, decay = (self._count(name, t_max, state, ssr) for name in ("t_warmup", "t_decay"))
        now = state.timestamp.get(t_max.unit).value
        decay_start = t_max.value - decay
        if warmup > decay_start:  # units the builder could not compare (e.g. 600ba and 0.5dur)
            raise _overlap(self.t_warmup, self.t_decay, f"{t_max.value}{t_max.unit.value}")
        if now < warmup:
            return self.alpha * now / max(warmup, 1)
        if now < decay_start or decay == 0:
            return self.alpha
        progress = min((now - decay_start) / decay, 1.0)
        remaining = 1.0 - progress if self.decay_shape == "linear" else 1.0 - math.sqrt(progress)
        return self.alpha_f + (self.alpha - self.alpha_f) * remaining

    def _count(self, name: str, t_max, state: State, ssr: float) -> float:
        """``t_warmup`` / ``t_decay`` counted in the run length's unit; one line when it counts another (it would be
        compared as if it did)."""
        time = _convert_time(getattr(self, name), state, ssr)
        if time.unit != t_max.unit and time.value:
            unit = t_max.unit.value
            raise ConfigError(f"scheduler.{name}", f"{getattr(self, name)} counts {time.unit.value} but the run's "
                              f"length counts {unit} ({t_max.value}{unit}); give it in {unit} or as a fraction of "
                              "the run (e.g. 0.06dur)")
        return time.value


@schedulers.register("warmup_stable_decay")
def build_wsd(
    t_warmup: str = "0.06dur",
    t_decay: str = "0.1dur",
    alpha_f: float = 0.0,
    decay_shape: Literal["linear", "1-sqrt"] = "linear",
    alpha: float = 1.0,
) -> ComposerScheduler:
    """Linear warmup to ``alpha``, a long constant stage, then a final decay to ``alpha_f`` over ``t_decay``."""
    shares = [float(str(t).strip()[:-3]) for t in (t_warmup, t_decay) if str(t).strip().endswith("dur")]
    if len(shares) == 2 and sum(shares) > 1:  # refused before any work where the units compare here
        raise _overlap(t_warmup, t_decay, "1dur")
    return WarmupStableDecayScheduler(t_warmup, t_decay, alpha_f, decay_shape, alpha)
