"""Callbacks by YAML name: Composer's monitors and our Hugging Face export."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from composer.callbacks import LRMonitor, MemoryMonitor, OptimizerMonitor, RuntimeEstimator, SpeedMonitor
from composer.core import Callback, State
from composer.loggers import Logger
from composer.utils import dist

from bertforge.data.packing import real_token_fraction
from bertforge.models.export import export_hf
from bertforge.registry import callbacks

log = logging.getLogger(__name__)


@callbacks.register("lr_monitor")
def build_lr_monitor() -> Callback:
    """Log each parameter group's learning rate every batch."""
    return LRMonitor()


@callbacks.register("speed_monitor")
def build_speed_monitor(window_size: int = 50) -> Callback:
    """Log throughput (batches, samples, tokens per second) averaged over ``window_size`` batches."""
    return SpeedMonitor(window_size=window_size)


@callbacks.register("memory_monitor")
def build_memory_monitor() -> Callback:
    """Log GPU memory use (does nothing on CPU)."""
    return MemoryMonitor()


@callbacks.register("optimizer_monitor")
def build_optimizer_monitor(log_optimizer_metrics: bool = True) -> Callback:
    """Log gradient and parameter norms."""
    return OptimizerMonitor(log_optimizer_metrics=log_optimizer_metrics)


@callbacks.register("runtime_estimator")
def build_runtime_estimator() -> Callback:
    """Estimate the remaining wall-clock time of the run."""
    return RuntimeEstimator()


class RealTokenFraction(Callback):
    """Log ``data/real_token_fraction``: real tokens / token slots of each training batch."""

    def after_dataloader(self, state: State, logger: Logger) -> None:
        logger.log_metrics({"data/real_token_fraction": real_token_fraction(state.batch)})


@callbacks.register("real_token_fraction")
def build_real_token_fraction() -> Callback:
    """Log the packing (or padding) efficiency of every training batch."""
    return RealTokenFraction()


class HuggingFaceExport(Callback):
    """At the end of training, rank 0 writes the model as a transformers folder (config, weights, tokenizer).

    A sharded (FSDP) model is gathered first: every rank takes part in collecting the whole state dict on rank 0's
    CPU, which loads it into a fresh unsharded copy from ``rebuild`` (set by the trainer builder) and exports that.
    """

    def __init__(self, folder: str):
        self.folder = folder
        self.rebuild: Callable[[], torch.nn.Module] | None = None

    def fit_end(self, state: State, logger: Logger) -> None:
        model = state.model
        if self.rebuild is not None:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if dist.get_global_rank() == 0:
                model = self.rebuild()
                model.load_state_dict(whole)
        if dist.get_global_rank() == 0:
            export_hf(model.eval(), self.folder)
            log.info("Hugging Face model written to %s", self.folder)
        dist.barrier()


@callbacks.register("hf_export")
def build_hf_export(folder: str = "{run_dir}/hf") -> Callback:
    """Write the final model as a Hugging Face folder loadable with ``AutoModelForMaskedLM``."""
    return HuggingFaceExport(folder)
