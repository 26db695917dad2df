"""Sharding with Composer's own FSDP: the YAML's ``parallelism`` block, checked before any work, and the FSDP units.

``parallelism: {fsdp: {sharding_strategy: FULL_SHARD, mixed_precision: DEFAULT, state_dict_type: sharded, ...}}``
is llm-foundry's shape; the ``fsdp`` mapping goes to ``Trainer(parallelism_config=...)`` as it is. Composer picks
FSDP (v1) by default and its FSDP2 when the environment has ``FSDP_VERSION=2``; the keys are checked against
the version that will run. Composer's FSDP (v1) places each shard with ``torch.cuda.current_device()``, so it
needs CUDA; FSDP2 also runs on CPU with gloo.

The wrap policy comes from the model: a Composer model lists its blocks in ``fsdp_units()`` (one block = one
unit); :func:`mark_fsdp_units` hands that list to Composer, whose FSDP wraps each block on its own and the rest
(embeddings, head) in one outer unit.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields
from typing import Any

from composer.distributed.mosaic_parallelism import BACKWARD_PREFETCH_MAP, SHARDING_MAP
from composer.utils.parallelism import FSDP2Config, FSDPConfig
from torch import nn
from torchmetrics import Metric, MetricCollection

from bertforge.errors import ConfigError, did_you_mean, join_key

log = logging.getLogger(__name__)

_PYTHON_OBJECTS = {"ignored_modules", "process_group", "load_planner", "save_planner", "device_mesh",
                   "te_checkpoint_wrapper", "te_shard_fp8_weight"}  # not settable from a YAML
FSDP1_KEYS = sorted(f.name for f in fields(FSDPConfig) if not f.name.startswith("_")
                    and f.name not in _PYTHON_OBJECTS)
FSDP2_KEYS = sorted(FSDP2Config.settable_attrs() - _PYTHON_OBJECTS)
_CHOICES = {
    "sharding_strategy": tuple(SHARDING_MAP),
    "backward_prefetch": tuple(BACKWARD_PREFETCH_MAP),
    "state_dict_type": ("full", "sharded"),
    "mixed_precision": ("DEFAULT", "PURE", "FULL"),
}
_DTYPE_KEYS = ("param_dtype", "reduce_dtype", "buffer_dtype")
_DTYPES = ("fp32", "float32", "fp16", "float16", "half", "bf16", "bfloat16", "amp_fp16", "amp_bf16")


def fsdp_version() -> int:
    """The FSDP Composer runs: 2 when the environment says ``FSDP_VERSION=2`` (Composer's own switch), else 1."""
    return 2 if os.environ.get("FSDP_VERSION", "1") == "2" else 1


def _check_value(key: str, name: str, value: Any, default: Any) -> None:
    if name in _CHOICES:
        if name == "mixed_precision" and isinstance(value, dict):
            unknown = [k for k in value if k not in _DTYPE_KEYS]
            if unknown:
                raise ConfigError(join_key(key, unknown[0]), f"unknown key; use {', '.join(_DTYPE_KEYS)}"
                                  + did_you_mean(unknown[0], _DTYPE_KEYS))
            bad = [k for k, v in value.items() if v is not None and str(v).lower() not in _DTYPES]
            if bad:
                raise ConfigError(join_key(key, bad[0]), f"{value[bad[0]]!r} is not a dtype; use one of {_DTYPES}")
            return
        choices = _CHOICES[name]
        if not isinstance(value, str) or value.upper() not in [c.upper() for c in choices]:
            raise ConfigError(key, f"{value!r} is not one of {', '.join(choices)}" + did_you_mean(value, choices))
    elif name == "reshard_after_forward":  # FSDP2: true, false, or the size of the group to reshard to
        if not isinstance(value, int):
            raise ConfigError(key, f"{value!r} must be true, false or an integer")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(key, f"{value!r} must be true or false")
    elif isinstance(default, int) and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(key, f"{value!r} must be an integer")


def _check_fsdp(fsdp: Any, version: int) -> dict:
    if not isinstance(fsdp, dict):
        raise ConfigError("parallelism.fsdp", f"{fsdp!r} must be a mapping of FSDP settings, e.g. "
                          "{sharding_strategy: FULL_SHARD}")
    allowed = FSDP2_KEYS if version == 2 else FSDP1_KEYS
    defaults = FSDP2Config.__dataclass_fields__ if version == 2 else FSDPConfig.__dataclass_fields__
    for name, value in fsdp.items():
        key = join_key("parallelism.fsdp", name)
        if name not in allowed:
            other = FSDP1_KEYS if version == 2 else FSDP2_KEYS
            hint = (f"; it is an FSDP{1 if version == 2 else 2} setting and this run uses FSDP{version}"
                    + (" (FSDP_VERSION=2 in the environment)" if version == 2 else "")) if name in other else ""
            if name == "sharding_strategy" and version == 2:
                hint += " (FSDP2's reshard_after_forward: true is FULL_SHARD, false is SHARD_GRAD_OP)"
            raise ConfigError(key, f"unknown FSDP{version} key{hint}; known: {', '.join(allowed)}"
                              + did_you_mean(name, allowed))
        _check_value(key, name, value, defaults[name].default)
    return fsdp


def parallelism_config(block: dict | None, world_size: int, on_gpu: bool,
                       microbatch: int | str = 1) -> dict[str, Any] | None:
    """Check the ``parallelism`` block and return Composer's ``parallelism_config`` (None: plain DDP).

    Refused, each with one line naming the key: unknown keys or values, FSDP on a single process, Composer's
    FSDP (v1) without a GPU, and ``device_train_microbatch_size: auto`` under FSDP2 (Composer's auto needs v1).
    """
    if not block:
        return None
    if not isinstance(block, dict):
        raise ConfigError("parallelism", f"{block!r} must be a mapping, e.g. {{fsdp: {{sharding_strategy: ...}}}}")
    unknown = [k for k in block if k != "fsdp"]
    if unknown:
        raise ConfigError(join_key("parallelism", unknown[0]), "unknown key; the parallelism block takes 'fsdp'"
                          + did_you_mean(unknown[0], ["fsdp"]))
    if block.get("fsdp") is None:
        return None
    version = fsdp_version()
    fsdp = _check_fsdp(block["fsdp"], version)
    if world_size < 2:
        raise ConfigError("parallelism.fsdp", "FSDP shards across processes but this run has 1; launch with "
                          "`composer -n <gpus> main.py ...` or remove parallelism.fsdp")
    if version == 1 and not on_gpu:
        raise ConfigError("parallelism.fsdp", "Composer's FSDP needs CUDA GPUs (it places shards with "
                          "torch.cuda.current_device()); on CPU set FSDP_VERSION=2 in the environment for Composer's "
                          "FSDP2, or remove parallelism.fsdp")
    if version == 2 and microbatch == "auto" and on_gpu:
        raise ConfigError("device_train_microbatch_size", "'auto' needs Composer's FSDP (v1), not FSDP2 "
                          "(FSDP_VERSION=2); give a number of sequences")
    return {"fsdp": dict(fsdp)}


def mark_fsdp_units(model: nn.Module) -> int:
    """Make each block the model's ``fsdp_units()`` lists one FSDP unit (the rest forms the outer unit); return
    how many. A model without ``fsdp_units`` is sharded as one unit, with a warning."""
    units = list(model.fsdp_units()) if callable(getattr(model, "fsdp_units", None)) else []
    if not units:
        log.warning("FSDP: %s lists no blocks (fsdp_units); it is sharded as one unit, so every step gathers "
                    "all its weights at once", type(model).__name__)
        return 0
    unit_ids = frozenset(id(unit) for unit in units)

    def wrap(module: nn.Module) -> bool:
        return id(module) in unit_ids

    for child in model.children():  # Composer asks each direct child (the module it wraps) for fsdp_wrap_fn
        if not isinstance(child, Metric | MetricCollection):
            child.fsdp_wrap_fn = wrap
    log.info("FSDP: %d units, one per block of %s", len(units), type(model).__name__)
    return len(units)
