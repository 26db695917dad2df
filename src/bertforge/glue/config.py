"""The GLUE sweep YAML: typed schema, loading with ``key=value`` overrides, per-task settings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from bertforge.config.load import load_raw
from bertforge.config.schema import check_time
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError, did_you_mean
from bertforge.glue.tasks import TASKS


@dataclass
class TaskSettings:
    """Hyperparameters of one task; a null value falls back to ``defaults``."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    warmup: str | None = None
    """Scheduler warmup as a Composer time, e.g. '0.06dur' (the scheduler's ``t_warmup``)."""
    max_seq_len: int | None = None
    grad_clip_norm: float | None = None
    """Clip the global gradient norm to this value (0: no clipping); 1.0 by default, as BERT and
    transformers' Trainer do."""
    pooling: str | None = None
    """Passed to the classifier builder as ``pooling`` (hf_bert: 'cls')."""
    num_seeds: int | None = None
    """Use the first N of ``seeds`` (large tasks: 1, as in MosaicBERT); null: all."""
    from_mnli: bool | None = None
    """Start from the finetuned weights of the first MNLI seed (RTE, MRPC, STS-B in the shipped YAMLs)."""
    max_train_samples: int | None = None
    """Train on a fixed random subset of this size (same for every seed); null: all."""
    max_eval_samples: int | None = None
    eval_batch_size: int | None = None
    train_file: str | None = None
    """File name under the task folder (default: the GLUE name, train.tsv)."""
    eval_files: list[str] | None = None
    """File names of the evaluation sets, in the task's order (MNLI: matched, mismatched)."""

    def __post_init__(self) -> None:
        if self.warmup is not None:
            check_time("warmup", self.warmup)
        for name in ("epochs", "batch_size", "max_seq_len", "num_seeds", "max_train_samples", "max_eval_samples",
                     "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"{value} must be >= 1")
        if self.grad_clip_norm is not None and self.grad_clip_norm < 0:
            raise ConfigError("grad_clip_norm", f"{self.grad_clip_norm} must be >= 0 (0: no clipping)")


def _base_defaults() -> TaskSettings:
    return TaskSettings(epochs=3, batch_size=32, lr=5.0e-5, weight_decay=5.0e-6, warmup="0.06dur",
                        max_seq_len=128, grad_clip_norm=1.0, pooling="cls", from_mnli=False, eval_batch_size=64)


TASK_DEFAULTS: dict[str, dict] = {
    "mnli": {"num_seeds": 1}, "qnli": {"num_seeds": 1}, "qqp": {"num_seeds": 1},
    "rte": {"from_mnli": True}, "mrpc": {"from_mnli": True}, "stsb": {"from_mnli": True},
}
"""Built-in per-task defaults under the YAML's: one seed for the large tasks, and the MNLI chain
(Izsak et al. 2021) for RTE, MRPC and STS-B."""


@dataclass
class GlueConfig:
    """A whole sweep: one model, many (task, seed) finetuning jobs, one results table."""

    data_dir: str | None
    """Local GLUE folder in the standard TSV layout (CoLA/, MRPC/, ...); null: the datasets Hub copy."""
    model: dict | None = None
    """Registry classifier block, e.g. ``{name: hf_bert, model_config: {...}}``; null: the model block of
    the pretraining run that wrote ``starting_checkpoint`` (its config.yaml)."""
    tokenizer: str | None = None
    """Tokenizer name or folder; null: the starting checkpoint's (run_dir/tokenizer or the HF folder)."""
    starting_checkpoint: str | None = None
    """A Composer checkpoint (.pt) written by main.py, a Hugging Face folder, or null for the model block's own
    initialisation (random, or ``pretrained: true``)."""
    output_dir: str = "runs/glue"
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    seeds: list[int] = field(default_factory=lambda: [17])
    parallel_workers: int = 1
    """Worker processes on CPU (1: run in this process). With GPUs: one worker per GPU."""
    save_checkpoints: bool = False
    """Keep every job's finetuned weights (MNLI's are always kept when a chained task needs them)."""
    optimizer: dict = field(default_factory=lambda: {"name": "decoupled_adamw", "betas": [0.9, 0.98], "eps": 1e-6})
    """Registry optimizer block; ``lr`` and ``weight_decay`` come from the task settings."""
    scheduler: dict = field(default_factory=lambda: {"name": "linear_decay_with_warmup", "alpha_f": 0.0})
    """Registry scheduler block; ``t_warmup`` comes from the task's ``warmup``."""
    defaults: TaskSettings = field(default_factory=_base_defaults)
    task_settings: dict[str, TaskSettings] = field(default_factory=dict)
    """Per-task overrides of ``defaults``, keyed by task name (mnli, rte, ...)."""
    precision: Literal["fp32", "amp_bf16", "amp_fp16"] | None = None
    """Null: amp_bf16 on a GPU that supports it, else fp32."""
    cache_dir: str | None = None
    """Tokenized-data cache; null: ``{output_dir}/token_cache``."""
    code_paths: list[str] = field(default_factory=list)
    """Python files imported before anything is built, so that their registry decorators (e.g. a classifier of
    your own) take effect; a ``model: null`` sweep also imports the pretraining run's own ``code_paths``."""
    python_log_level: str | None = None
    """Level of bertforge's and Composer's log messages (debug, info, ...); null: bertforge's progress lines
    at INFO on stderr, Python logging otherwise left alone (as in pretraining YAMLs)."""

    def __post_init__(self) -> None:
        if self.data_dir == "???":
            raise ConfigError("data_dir", "required: a local GLUE folder (data_dir=path/to/glue), or data_dir=null "
                              "to load the datasets Hub copy")
        for i, task in enumerate(self.tasks):
            if task not in TASKS:
                raise ConfigError(f"tasks[{i}]", f"unknown task '{task}'{did_you_mean(task, TASKS)}; "
                                  f"choose from {', '.join(TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError("tasks", f"lists a task twice: {self.tasks}")
        if not self.seeds:
            raise ConfigError("seeds", "needs at least one seed")
        if self.parallel_workers < 1:
            raise ConfigError("parallel_workers", f"{self.parallel_workers} must be >= 1")
        for name in self.task_settings:
            if name not in TASKS:
                raise ConfigError(f"task_settings.{name}", f"unknown task{did_you_mean(name, TASKS)}")
        self.task_settings = {k: from_dict(TaskSettings, v, f"task_settings.{k}") if isinstance(v, dict) else v
                              for k, v in self.task_settings.items()}

    def settings(self, task: str) -> TaskSettings:
        """Merged settings: built-in base, YAML ``defaults``, built-in TASK_DEFAULTS, YAML ``task_settings``."""
        merged = asdict(_base_defaults())
        merged.update(_non_null(self.defaults))
        merged.update(TASK_DEFAULTS.get(task, {}))
        merged.update(_non_null(self.task_settings.get(task)))
        return TaskSettings(**merged)

    def task_seeds(self, task: str) -> list[int]:
        """The seeds this task runs with."""
        n = self.settings(task).num_seeds
        return list(self.seeds[:n] if n else self.seeds)


def _non_null(layer: TaskSettings | None) -> dict:
    return {} if layer is None else {f.name: getattr(layer, f.name) for f in fields(layer)
                                      if getattr(layer, f.name) is not None}


def load_glue_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> GlueConfig:
    """Read a GLUE YAML plus ``key=value`` overrides into a checked :class:`GlueConfig`."""
    return from_dict(GlueConfig, load_raw(path, overrides))
