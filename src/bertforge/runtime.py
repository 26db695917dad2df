"""Where and how a run computes, and how it reports: device, precision and status logging, one rule each.

Used by pretraining (``train.py``), GLUE finetuning and the benchmark, so that "which device",
"which precision when none is given" and "where do status messages go" have one answer.
"""

from __future__ import annotations

import logging

import torch
from composer.devices import Device, DeviceCPU, DeviceGPU
from composer.utils import dist

from bertforge.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HANDLER_NAME = "bertforge-status"


def device_name(choice: str | None = None, key: str = "device") -> str:
    """'gpu' or 'cpu': ``choice`` when given, else 'gpu' when CUDA is available.

    Asking for a GPU where CUDA is not available is a :class:`ConfigError` naming ``key``.
    """
    name = choice or ("gpu" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "gpu"):
        raise ConfigError(key, f"{name!r} is not a device; use cpu or gpu")
    if name == "gpu" and not torch.cuda.is_available():
        fix = f"{key} cpu" if key.startswith("--") else f"{key}=cpu"
        raise ConfigError(key, f"'gpu' was asked for but CUDA is not available; use {fix}")
    return name


def composer_device(choice: str | None = None, key: str = "device") -> Device:
    """The Composer device for :func:`device_name`'s answer."""
    return DeviceGPU() if device_name(choice, key) == "gpu" else DeviceCPU()


def default_precision(on_gpu: bool) -> str:
    """bf16 autocast on a GPU that supports it, fp32 otherwise."""
    return "amp_bf16" if on_gpu and torch.cuda.is_bf16_supported() else "fp32"


def trainer_precision(choice: str | None, on_gpu: bool, key: str = "precision") -> str:
    """The precision a Composer Trainer runs at: ``choice``, else :func:`default_precision`.

    Composer trains on CPU in fp32 only, so any other choice there is a :class:`ConfigError` naming ``key``.
    """
    if not choice:
        return default_precision(on_gpu)
    if choice != "fp32" and not on_gpu:
        raise ConfigError(key, f"{choice} needs a GPU; use {key}=fp32 on CPU")
    return choice


def pick_device(cfg) -> Device:
    """The Composer device of a pretraining config: its ``device``, else a GPU when CUDA is available."""
    return composer_device(cfg.device)


def pick_precision(cfg, device: Device) -> str:
    """The config's ``precision``, else bf16 autocast on a GPU that supports it and fp32 otherwise."""
    return trainer_precision(cfg.precision, isinstance(device, DeviceGPU))


def configure_logging(level: str | None, key: str = "python_log_level") -> None:
    """Show bertforge's status messages (the ``bertforge`` logger tree) at ``level``.

    ``level`` is the YAML's ``python_log_level``. Given, it configures Python logging as Composer's
    Trainer does for ``composer`` (``logging.basicConfig`` with the rank in each line) and sets the
    ``bertforge`` level. Null shows INFO and above: through the root logger's handlers when something
    configured them, else on stderr as ``[bertforge] message``. Calling it again replaces the earlier setting.
    """
    logger = logging.getLogger("bertforge")
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    if level is None:
        logger.setLevel(logging.INFO)
        if not logging.getLogger().handlers:
            handler = logging.StreamHandler()  # sys.stderr at the time of the call
            handler.set_name(_HANDLER_NAME)
            handler.setFormatter(logging.Formatter("[bertforge] %(message)s"))
            logger.addHandler(handler)
        return
    if str(level).upper() not in LOG_LEVELS:
        raise ConfigError(key, f"{level!r} is not a log level; use one of {', '.join(LOG_LEVELS).lower()}")
    logging.basicConfig(
        format=f"%(asctime)s: rank{dist.get_global_rank()}[%(process)d][%(threadName)s]: "
        "%(levelname)s: %(name)s: %(message)s"
    )
    logger.setLevel(str(level).upper())
