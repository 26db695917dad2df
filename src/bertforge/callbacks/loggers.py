"""Loggers by YAML name. Optional backends (W&B, MLflow) fail with one line when not installed."""

from __future__ import annotations

import importlib.util

from composer.loggers import LoggerDestination, MLFlowLogger, TensorboardLogger, WandBLogger

from bertforge.errors import UserError
from bertforge.registry import loggers


def _require(module: str, name: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise UserError(f"loggers: '{name}' needs the '{module}' package; pip install {module}, or remove the logger")


@loggers.register("tensorboard")
def build_tensorboard(log_dir: str = "{run_dir}/tensorboard", flush_interval: int = 100) -> LoggerDestination:
    """TensorBoard event files under ``log_dir``."""
    _require("tensorboard", "tensorboard")
    return TensorboardLogger(log_dir=log_dir, flush_interval=flush_interval)


@loggers.register("wandb")
def build_wandb(project: str | None = None, entity: str | None = None, group: str | None = None,
                tags: list[str] | None = None) -> LoggerDestination:
    """Weights & Biases (needs ``wandb`` installed and a login)."""
    _require("wandb", "wandb")
    return WandBLogger(project=project, entity=entity, group=group, tags=tags)


@loggers.register("mlflow")
def build_mlflow(experiment_name: str | None = None, tracking_uri: str | None = None) -> LoggerDestination:
    """MLflow tracking (needs ``mlflow`` installed)."""
    _require("mlflow", "mlflow")
    return MLFlowLogger(experiment_name=experiment_name, tracking_uri=tracking_uri)
