"""One finetuning job: (task, seed, settings, starting weights) -> dev-set metrics, with Composer's Trainer."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass

import torch
from composer import Trainer
from composer.core import Evaluator
from composer.devices import DeviceGPU
from composer.utils import reproducibility

from bertforge import registry
from bertforge.checkpoints import read_model_weights
from bertforge.data.tokenizer import CLASSIFIER_REQUIRED, load_tokenizer
from bertforge.errors import UserError
from bertforge.glue.checkpoint import load_encoder
from bertforge.glue.config import GlueConfig, TaskSettings
from bertforge.glue.data import Examples, TokenizedDataset, make_loader, read_hub, read_tsv, subset, tokenize_cached
from bertforge.glue.tasks import METRIC_CLASSES, TASKS, TaskSpec
from bertforge.runtime import composer_device, trainer_precision
from bertforge.train import check_learned_positions, loop_hooks

JOB_CONFIG = "glue_config.json"  # beside a saved job's model.pt: the resolved sweep config that rebuilds its model


@dataclass
class Job:
    """One (task, seed) finetune. ``start`` is the weights file/folder to begin from (None: the model's init)."""

    task: str
    seed: int
    settings: TaskSettings
    start: str | None
    key: str
    """Hash of everything that decides the result (the cache key)."""
    job_dir: str
    save: bool
    """Keep the finetuned weights in ``{job_dir}/model.pt``, with the sweep's config beside them (``JOB_CONFIG``)."""

    @property
    def name(self) -> str:
        return f"{self.task}/seed{self.seed}"


def read_split(cfg: GlueConfig, spec: TaskSpec, file: str, hub_split: str) -> Examples:
    """One split from the local GLUE folder, or from the Hub when ``data_dir`` is null."""
    if cfg.data_dir is None:
        return read_hub(spec, hub_split)
    folder = os.path.join(cfg.data_dir, spec.folder)
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: task folder not found under data_dir (standard GLUE layout)")
    return read_tsv(os.path.join(folder, file), spec)


def build_loaders(cfg: GlueConfig, job: Job, tokenizer) -> tuple[torch.utils.data.DataLoader, list[Evaluator]]:
    """The train loader and one Evaluator per dev set (MNLI: matched and mismatched)."""
    spec, s = TASKS[job.task], job.settings
    cache = cfg.cache_dir or os.path.join(cfg.output_dir, "token_cache")
    regression = spec.labels is None

    def dataset(examples: Examples, n: int | None) -> TokenizedDataset:
        examples = subset(examples, n)
        return TokenizedDataset(tokenize_cached(examples, tokenizer, s.max_seq_len, cache), examples.labels, regression)

    train = dataset(read_split(cfg, spec, s.train_file or spec.train_file, "train"), s.max_train_samples)
    train_loader = make_loader(train, tokenizer, s.batch_size, True, job.seed)
    eval_files = s.eval_files or [e.file for e in spec.evals]
    if len(eval_files) != len(spec.evals):
        raise UserError(f"task_settings.{job.task}.eval_files: needs {len(spec.evals)} files, got {eval_files}")
    metric_names = [METRIC_CLASSES[m] for m in spec.metrics]
    evaluators = []
    for split, file in zip(spec.evals, eval_files):
        ds = dataset(read_split(cfg, spec, file, split.hub_split), s.max_eval_samples)
        loader = make_loader(ds, tokenizer, s.eval_batch_size, False, job.seed)
        evaluators.append(Evaluator(label=split.entry, dataloader=loader, metric_names=metric_names))
    return train_loader, evaluators


def build_model(cfg: GlueConfig, job: Job, tokenizer) -> torch.nn.Module:
    """The registry classifier for the task, with the starting weights loaded strictly apart from the head."""
    spec = TASKS[job.task]
    block = {**cfg.model, "pooling": job.settings.pooling}
    model = registry.classifiers.build(block, "model", tokenizer, spec.num_labels)
    check_learned_positions(model, job.settings.max_seq_len, f"task_settings.{job.task}.max_seq_len")
    if job.start:
        load_encoder(model, read_model_weights(job.start, key="starting_checkpoint"), job.start)
    return model


def run_job(cfg: GlueConfig, job: Job) -> dict[str, float]:
    """Finetune and evaluate; returns ``{'<entry>/<metric>': percent}``; saves weights when ``job.save``."""
    reproducibility.seed_all(job.seed)
    tokenizer = load_tokenizer(cfg.tokenizer, key="tokenizer", required=CLASSIFIER_REQUIRED)
    model = build_model(cfg, job, tokenizer)
    train_loader, evaluators = build_loaders(cfg, job, tokenizer)
    s = job.settings
    optimizer = registry.optimizers.build({**cfg.optimizer, "lr": s.lr, "weight_decay": s.weight_decay},
                                          "optimizer", model.named_parameters())
    scheduler = registry.schedulers.build({**cfg.scheduler, "t_warmup": s.warmup}, "scheduler")
    # in batches, not epochs: Composer rounds a 'dur' warmup to whole units of max_duration
    max_duration = f"{s.epochs * len(train_loader)}ba"
    algorithms, hooks = loop_hooks(s.grad_clip_norm or None)  # 0: no clipping
    device = composer_device()
    trainer = Trainer(
        model=model, train_dataloader=train_loader, max_duration=max_duration, optimizers=optimizer,
        schedulers=scheduler, algorithms=algorithms, callbacks=hooks,
        device=device, precision=trainer_precision(cfg.precision, isinstance(device, DeviceGPU)), seed=job.seed,
        progress_bar=False, log_to_console=False, python_log_level=cfg.python_log_level,
        run_name=f"glue-{job.task}-{job.seed}",
    )
    with warnings.catch_warnings():  # tiny subsets: a 0-batch warmup and a last batch below the microbatch size
        warnings.filterwarnings("ignore", message=r"(?s).*(warmup duration is 0|Cannot split tensor)")
        trainer.fit()
        trainer.eval(eval_dataloader=evaluators)
    results = {}
    for split in TASKS[job.task].evals:
        for metric in TASKS[job.task].metrics:
            value = trainer.state.eval_metrics[split.entry][METRIC_CLASSES[metric]].compute()
            results[f"{split.entry}/{metric}"] = round(100.0 * float(value), 4)
    if job.save:
        os.makedirs(job.job_dir, exist_ok=True)
        torch.save({"state": {"model": model.state_dict()}}, os.path.join(job.job_dir, "model.pt"))
        with open(os.path.join(job.job_dir, JOB_CONFIG), "w") as f:  # what rebuilds the model, before the sweep ends
            json.dump(dataclasses.asdict(cfg), f, indent=1, default=str)
    trainer.close()
    return results
