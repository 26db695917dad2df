"""Multi-phase runs: one YAML, one command, several consecutive training phases (BERT's 128 then 512 tokens,
ModernBERT's pretraining, context extension and decay).

Each entry of the YAML's ``phases`` list names the phase, takes a ``share`` of ``max_duration`` and may override
the keys in :data:`PHASE_KEYS` (data, sequence length, batch sizes, the model's ``model_config``, its own
schedule segment). Every phase is its own Composer ``Trainer`` that saves into ``{save_folder}/{phase name}``;
a phase after the first starts from the previous phase's final checkpoint with its optimizer state, RNG and
global timestamp, but with its own fresh data stream. The learning-rate schedule is evaluated on the global
clock with ``max_duration`` as its horizon, so it runs on continuously across a switch; a phase that sets its
own ``scheduler`` evaluates it on the phase's clock (its start is 0, its length is ``1dur``). With
``autoresume`` a killed run restarts in the phase it was in: finished phases are skipped (their folder holds a
``phase_done.json`` marker) and the current one resumes from its own newest checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from composer.core import Callback, State, Time, TimeUnit
from composer.loggers import Logger
from composer.optim import ComposerScheduler
from composer.utils import dist
from omegaconf import OmegaConf

from bertforge.config.schema import TrainConfig
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError, join_key
from bertforge.models.convert.rules import layout_difference, tensor_layout

log = logging.getLogger(__name__)

PHASE_KEYS = frozenset({
    "max_seq_len", "global_train_batch_size", "device_train_microbatch_size", "device_eval_batch_size",
    "train_loader", "eval_loader", "model", "scheduler", "save_interval", "eval_interval",
    "eval_subset_num_batches", "grad_clip_norm", "precision",
})
"""What a phase may change; everything else (optimizer, seed, tokenizer, run folders) is the run's."""
DONE_MARKER = "phase_done.json"
SHARE_TOLERANCE = 1e-6
PHASE_UNITS = (TimeUnit.BATCH, TimeUnit.SAMPLE, TimeUnit.TOKEN)


@dataclass
class Phase:
    """One planned phase: its merged config and where it sits on the global clock (``unit``)."""

    index: int
    name: str
    start: int
    end: int
    unit: TimeUnit
    cfg: TrainConfig
    own_scheduler: bool
    save_folder: str | None
    previous_folder: str | None
    count: int
    run_duration: str
    """The whole run's max_duration: the global schedule's horizon."""

    def describe(self) -> str:
        """A one-line summary for the log."""
        return (f"phase {self.index + 1}/{self.count} '{self.name}': {self.start}-{self.end}{self.unit.value}, "
                f"max_seq_len {self.cfg.max_seq_len}, global batch {self.cfg.global_train_batch_size}"
                + (", own schedule" if self.own_scheduler else ""))


def _check_entry(i: int, entry: Any) -> None:
    key = f"phases[{i}]"
    if not isinstance(entry, dict):
        raise ConfigError(key, "each phase is a mapping with name, share and the keys it changes")
    if "name" not in entry:
        raise ConfigError(join_key(key, "name"), "required key is missing; every phase has a name")
    if not isinstance(entry["name"], str) or not entry["name"] or "/" in entry["name"]:
        raise ConfigError(join_key(key, "name"), f"{entry['name']!r}: give a non-empty name without '/'")
    if ("share" in entry) == ("duration" in entry):
        raise ConfigError(join_key(key, "share"), "give the phase's length as a share of max_duration (e.g. 0.9) "
                          "or as a duration in max_duration's unit (e.g. 900ba), one of the two")
    share = entry.get("share", 0.5)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise ConfigError(join_key(key, "share"), f"{share!r}: must be a number in (0, 1]")
    for name in entry:
        if name not in PHASE_KEYS | {"name", "share", "duration"}:
            raise ConfigError(join_key(key, name), f"a phase cannot change '{name}'; it may change "
                              f"{', '.join(sorted(PHASE_KEYS))}")
    model = entry.get("model")
    if model is not None:
        if not isinstance(model, dict) or set(model) - {"model_config"}:
            raise ConfigError(join_key(key, "model"), "a phase may change only model.model_config (e.g. "
                              "rope_theta_global for context extension), not the family or its other arguments")


def _length(i: int, entry: dict, total: Time) -> float:
    """The phase's length in max_duration's unit, from its share or its duration."""
    if "share" in entry:
        return float(entry["share"]) * total.value
    key = join_key(f"phases[{i}]", "duration")
    try:
        duration = Time.from_timestring(str(entry["duration"]))
    except ValueError:
        raise ConfigError(key, f"{entry['duration']!r} is not a Composer time such as 900ba") from None
    if duration.unit != total.unit or duration.value <= 0:
        raise ConfigError(key, f"{entry['duration']}: give a positive duration in max_duration's unit "
                          f"({total.unit.value}, as in {total})")
    return float(duration.value)


def plan_phases(cfg: TrainConfig, save_folder: str | None = None) -> list[Phase]:
    """Check ``cfg.phases`` and return each phase with its merged, validated config (raises ConfigError).

    ``save_folder``: the run's checkpoint folder with its placeholders resolved; each phase saves in a subfolder.
    """
    entries = cfg.phases
    if not isinstance(entries, list) or not entries:
        raise ConfigError("phases", "give a non-empty list of phases, or leave the key out for a single phase")
    total = Time.from_timestring(cfg.max_duration)
    if total.unit not in PHASE_UNITS:
        raise ConfigError("max_duration", f"{cfg.max_duration}: phases split max_duration by share, so give it in "
                          "batches, samples or tokens (e.g. 1000ba), not epochs")
    base = asdict(cfg)
    base["phases"] = []
    for i, entry in enumerate(entries):
        _check_entry(i, entry)
    names = [entry["name"] for entry in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError("phases", f"phase name '{repeated[0]}' is used twice; names must be unique")
    lengths = [_length(i, entry, total) for i, entry in enumerate(entries)]
    if abs(sum(lengths) / total.value - 1.0) > SHARE_TOLERANCE:
        raise ConfigError("phases", f"the shares add up to {sum(lengths) / total.value:g}; they must add up to 1 "
                          f"(each phase's share, or duration / max_duration {cfg.max_duration})")
    phases, start, cumulative = [], 0, 0.0
    for i, entry in enumerate(entries):
        cumulative += lengths[i]
        end = total.value if i == len(entries) - 1 else round(cumulative)
        if end <= start:
            length = entry.get("share", entry.get("duration"))
            raise ConfigError(join_key(f"phases[{i}]", "share"), f"{length} of {cfg.max_duration} is "
                              "shorter than one step; make the phase longer or max_duration longer")
        overrides = {k: v for k, v in entry.items() if k not in ("name", "share", "duration")}
        merged = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(overrides)))
        if "scheduler" in overrides:  # a phase's schedule segment replaces the run's block, it does not merge
            merged["scheduler"] = overrides["scheduler"]
        folder = os.path.join(save_folder, entry["name"]) if save_folder else None
        merged["max_duration"] = f"{end}{total.unit.value}"
        merged["save_folder"] = folder
        try:
            phase_cfg = from_dict(TrainConfig, merged)
        except ConfigError as err:
            raise ConfigError(join_key(f"phases[{i}]", err.key), str(err).split(": ", 1)[-1]) from None
        phases.append(Phase(i, entry["name"], start, end, total.unit, phase_cfg, "scheduler" in entry, folder,
                            phases[-1].save_folder if phases else None, len(entries), cfg.max_duration))
        start = end
    if len(phases) > 1 and not save_folder:
        raise ConfigError("save_folder", "a multi-phase run hands each phase to the next through its final "
                          "checkpoint; set save_folder")
    return phases


def _layout(cfg: TrainConfig, build: Callable[[TrainConfig], torch.nn.Module]) -> dict[str, tuple] | None:
    """The phase model's :func:`tensor_layout`, built on the meta device (None: building it loads weights there)."""
    model = dict(cfg.model)
    if model.get("pretrained"):  # hf_bert: the checkpoint's config at random init has the same layout
        model["pretrained"] = False
    try:
        with torch.device("meta"):
            return tensor_layout(build(replace(cfg, model=model)))
    except RuntimeError as err:  # e.g. flexbert converting a checkpoint: transformers refuses to load on meta
        log.info("phases: the model's weights are checked when each phase starts (%s)", str(err).splitlines()[0])
        return None


def check_handovers(phases: list[Phase], build: Callable[[TrainConfig], torch.nn.Module]) -> None:
    """Before any phase trains: refuse (one line) a phase whose ``model_config`` changes the set, shapes or tying of
    the weights it would take over from the phase before (Composer would fail at the switch, after that phase
    trained). ``build`` makes a phase's model from its config (and may check it against the phase's other keys, e.g.
    ``max_seq_len``); the models are built on the meta device."""
    layouts = []
    for phase in phases:  # ``build``'s own checks run on every phase's config; their errors name the phase
        try:
            layouts.append(_layout(phase.cfg, build))
        except ConfigError as err:
            raise ConfigError(join_key(f"phases[{phase.index}]", err.key), str(err).split(": ", 1)[-1]) from None
    for (before, old), (phase, new) in zip(zip(phases, layouts), zip(phases[1:], layouts[1:])):
        if old is None or new is None or old == new:
            continue
        was, now = before.cfg.model.get("model_config") or {}, phase.cfg.model.get("model_config") or {}
        keys = ", ".join(f"{k}={now.get(k)!r}" for k in sorted(was.keys() | now.keys()) if was.get(k) != now.get(k))
        raise ConfigError(join_key(f"phases[{phase.index}]", "model.model_config"), f"{keys} changes the weights "
                          f"phase '{phase.name}' takes over from '{before.name}' ({layout_difference(old, new)}); "
                          "a phase may change only what keeps every weight (e.g. rope_theta_global, dropout)")


_FIELD_OF_UNIT = {TimeUnit.BATCH: "batch", TimeUnit.SAMPLE: "sample", TimeUnit.TOKEN: "token"}


def _shifted(timestamp, origin: Time):
    """``timestamp`` read from ``origin`` (a copy with that one unit's count moved back)."""
    field = _FIELD_OF_UNIT[origin.unit]
    return timestamp.copy(**{field: getattr(timestamp, field).value - origin.value})


class _ScheduleClock:
    """What a Composer scheduler reads of the State, with its own horizon and origin."""

    def __init__(self, state: State, origin: Time, horizon: Time) -> None:
        self._state, self.max_duration = state, horizon
        self.timestamp = _shifted(state.timestamp, origin) if origin.value else state.timestamp

    def __getattr__(self, name: str):
        return getattr(self._state, name)


class PhaseClockScheduler(ComposerScheduler):
    """Evaluate ``inner`` as if training ran from ``origin`` for ``horizon`` (same unit): the whole run for the
    global schedule, one phase for a phase's own schedule. Composer otherwise reads '1dur' as the current
    Trainer's max_duration, which ends at the phase boundary."""

    def __init__(self, inner: ComposerScheduler, origin: Time, horizon: Time) -> None:
        self.inner, self.origin, self.horizon = inner, origin, horizon

    def __call__(self, state: State, ssr: float = 1.0) -> float:
        return self.inner(_ScheduleClock(state, self.origin, self.horizon), ssr)


def phase_scheduler(phase: Phase, inner: ComposerScheduler) -> ComposerScheduler:
    """``inner`` on the run's clock, or on the phase's own clock when the phase set its own scheduler."""
    total = Time.from_timestring(phase.run_duration)
    if phase.own_scheduler:
        return PhaseClockScheduler(inner, Time(phase.start, phase.unit), Time(phase.end - phase.start, phase.unit))
    return PhaseClockScheduler(inner, Time(0, total.unit), total)


class PhaseMarker(Callback):
    """Records the phase name in every checkpoint, so a phase can tell its own checkpoints from its
    predecessor's, and logs the phase at the start of fitting."""

    def __init__(self, name: str, summary: str) -> None:
        self.name, self.summary = name, summary

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.name}

    def fit_start(self, state: State, logger: Logger) -> None:
        log.info("%s", self.summary)
        logger.log_hyperparameters({"phase": self.name})


def handover_transform(phase_name: str) -> Callable[[dict], None]:
    """A Composer ``load_ignore_keys`` callable: when the loaded checkpoint is another phase's, drop its data
    stream position and start a new epoch, so this phase reads its own data from the start (Composer would
    otherwise spin the new loader forward by the old position); the phase's own checkpoints load unchanged."""

    def transform(state_dict: dict) -> None:
        state = state_dict["state"]
        marker = state.get("callbacks", {}).get(PhaseMarker.__qualname__, {})
        if marker.get("phase") == phase_name:
            return
        state.pop("dataset_state", None)
        stamp = state["timestamp"].get("Timestamp", state["timestamp"])  # Composer nests it under its class name
        stamp["epoch"] = int(stamp["epoch"]) + 1
        for key in ("batch_in_epoch", "sample_in_epoch", "token_in_epoch"):
            stamp[key] = 0
        stamp["epoch_in_iteration"] = int(stamp.get("epoch_in_iteration", 0)) + 1

    return transform


def is_done(phase: Phase) -> bool:
    """Whether ``phase`` finished in an earlier launch (its folder holds the marker)."""
    return bool(phase.save_folder) and os.path.exists(os.path.join(phase.save_folder, DONE_MARKER))


def mark_done(phase: Phase, batch: int) -> None:
    """Rank 0 writes the marker once the phase's final checkpoint is in place; all ranks wait for it."""
    if phase.save_folder and dist.get_global_rank() == 0:
        with open(os.path.join(phase.save_folder, DONE_MARKER), "w") as f:
            json.dump({"phase": phase.name, "end": phase.end, "unit": phase.unit.value, "batch": batch}, f)
    dist.barrier()


def previous_checkpoint(phase: Phase) -> str | None:
    """The checkpoint a phase after the first starts from: its predecessor's newest (final) one."""
    if phase.previous_folder is None:
        return None
    return os.path.join(phase.previous_folder, "latest-rank{rank}.pt")
