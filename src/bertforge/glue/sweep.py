"""The sweep: resolve the starting point, plan (task, seed) jobs with the MNLI chain, skip cached ones, run, report."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable

from omegaconf import OmegaConf

from bertforge import registry
from bertforge.checkpoints import run_dir_of
from bertforge.data.tokenizer import check_same_tokenizer, checkpoint_tokenizer, load_tokenizer
from bertforge.errors import UserError
from bertforge.glue.checkpoint import run_checkpoint
from bertforge.glue.config import GlueConfig, load_glue_config
from bertforge.glue.finetune import Job, run_job
from bertforge.glue.pool import RESULT_FILE, run_jobs
from bertforge.glue.report import to_markdown, write_results
from bertforge.glue.tasks import TASKS
from bertforge.runtime import configure_logging

UPSTREAM = "mnli"
log = logging.getLogger(__name__)


def resolve(cfg: GlueConfig) -> GlueConfig:
    """Fill ``model`` and ``tokenizer`` from the starting checkpoint when null; check paths and the model block.

    A run folder as ``starting_checkpoint`` stands for its ``checkpoints/latest-rank0.pt``."""
    ckpt = run_checkpoint(cfg.starting_checkpoint) or cfg.starting_checkpoint
    if ckpt and not os.path.exists(ckpt):
        raise UserError(f"starting_checkpoint: {ckpt} not found; give a main.py .pt file or a Hugging Face folder")
    model, tokenizer, code_paths = cfg.model, cfg.tokenizer, list(cfg.code_paths)
    registry.import_code_paths(code_paths)
    if model is None:
        run_config = os.path.join(run_dir_of(ckpt), "config.yaml") if ckpt and os.path.isfile(ckpt) else None
        if not run_config or not os.path.isfile(run_config):
            raise UserError("model: null needs starting_checkpoint to be a main.py checkpoint with the run's "
                            "config.yaml in its run folder; otherwise give a model block, e.g. {name: hf_bert}")
        run = OmegaConf.to_container(OmegaConf.load(run_config))
        model = run["model"]
        extra = [p for p in run.get("code_paths") or [] if p not in code_paths]
        registry.import_code_paths(extra, key=f"{run_config}: code_paths")
        code_paths += extra
    trained_with = checkpoint_tokenizer(ckpt)
    if tokenizer is None:
        if not ckpt:
            raise UserError("tokenizer: null needs a starting_checkpoint to take the tokenizer from; name one")
        tokenizer = trained_with or (os.path.join(run_dir_of(ckpt), "tokenizer") if os.path.isfile(ckpt) else ckpt)
    elif trained_with and trained_with != tokenizer:
        check_same_tokenizer(load_tokenizer(tokenizer, key="tokenizer", required=()), tokenizer, trained_with, ckpt,
                             "tokenizer", "set tokenizer: null to use the pretraining's")
    registry.classifiers.validate(model, "model")
    if cfg.data_dir is not None:
        if not os.path.isdir(cfg.data_dir):
            raise UserError(f"data_dir: {cfg.data_dir} is not a folder; give a local GLUE folder or null for the Hub")
        for task in cfg.tasks:
            folder = os.path.join(cfg.data_dir, TASKS[task].folder)
            if not os.path.isdir(folder):
                raise UserError(f"{folder}: task folder not found (data_dir holds the standard GLUE layout)")
    return dataclasses.replace(cfg, model=model, tokenizer=tokenizer, code_paths=code_paths, starting_checkpoint=ckpt)


def _identity(path: str | None) -> str | None:
    """A path with its size and modification time, so a rewritten checkpoint is a new starting point."""
    if path is None:
        return None
    stat = os.stat(path)
    return f"{os.path.abspath(path)}|{stat.st_size}|{int(stat.st_mtime)}"


def job_key(cfg: GlueConfig, task: str, seed: int, start_id: str | None) -> str:
    """Hash of what decides a job's result: model, tokenizer, data, optimizer, schedule, settings, start, seed."""
    parts = {"task": task, "seed": seed, "model": cfg.model, "tokenizer": cfg.tokenizer, "data_dir": cfg.data_dir,
             "optimizer": cfg.optimizer, "scheduler": cfg.scheduler, "precision": cfg.precision,
             "settings": dataclasses.asdict(cfg.settings(task)), "start": start_id}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan(cfg: GlueConfig) -> tuple[list[Job], list[Job]]:
    """Two phases: every task not chained (MNLI first), then the tasks that start from MNLI's weights."""
    chain = UPSTREAM in cfg.tasks
    upstream_seed = cfg.task_seeds(UPSTREAM)[0] if chain else None
    first, second, upstream = [], [], None
    ordered = sorted(cfg.tasks, key=lambda t: t != UPSTREAM)
    for task in ordered:
        settings = cfg.settings(task)
        chained = chain and settings.from_mnli and task != UPSTREAM
        for seed in cfg.task_seeds(task):
            start = upstream.job_dir + "/model.pt" if chained else cfg.starting_checkpoint
            start_id = f"{UPSTREAM}:{upstream.key}" if chained else _identity(cfg.starting_checkpoint)
            key = job_key(cfg, task, seed, start_id)
            job_dir = os.path.join(cfg.output_dir, "jobs", f"{task}-seed{seed}-{key}")
            needs_save = task == UPSTREAM and seed == upstream_seed and any(
                cfg.settings(t).from_mnli for t in cfg.tasks if t != UPSTREAM)
            job = Job(task, seed, settings, start, key, job_dir, cfg.save_checkpoints or needs_save)
            if needs_save:
                upstream = job
            (second if chained else first).append(job)
    return first, second


def cached(job: Job) -> dict | None:
    """The record of a finished (ok) run of the same job, when its saved weights are there if they are needed."""
    path = os.path.join(job.job_dir, RESULT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    weights_ok = not job.save or os.path.isfile(os.path.join(job.job_dir, "model.pt"))
    return record if record.get("status") == "ok" and weights_ok else None


def _failed_upstream(job: Job, reason: str) -> dict:
    return {"task": job.task, "seed": job.seed, "key": job.key, "status": "failed", "metrics": {},
            "error": reason, "seconds": None}


def run_phase(cfg: GlueConfig, jobs: list[Job], runner: Callable) -> list[dict]:
    """Run the jobs of one phase that have no cached result; chained jobs fail when MNLI's weights are missing."""
    records: dict[str, dict] = {}
    todo = []
    for job in jobs:
        hit = cached(job)
        if hit is not None:
            records[job.key] = hit
            log.info("%s: cached (%s)", job.name, job.job_dir)
        elif job.start and not os.path.exists(job.start):
            records[job.key] = _failed_upstream(job, f"upstream {UPSTREAM} job failed; no weights at {job.start}")
        else:
            todo.append(job)
    for job, record in zip(todo, run_jobs(cfg, todo, runner)):
        records[job.key] = record
    return [records[j.key] for j in jobs]


def run_sweep(cfg: GlueConfig, runner: Callable = run_job) -> dict:
    """Resolve, plan, run both phases, and write results.json and results.md; returns the summary.

    Progress (one line per job) goes to the ``bertforge.glue`` loggers at INFO."""
    cfg = resolve(cfg)
    first, second = plan(cfg)
    log.info("%d GLUE jobs -> %s", len(first) + len(second), cfg.output_dir)
    records = run_phase(cfg, first, runner) + run_phase(cfg, second, runner)
    return write_results(cfg.output_dir, dataclasses.asdict(cfg), cfg.tasks, cfg.seeds, records)


def main(argv: list[str]) -> None:
    """``glue.py <yaml> [key=value ...]``: run the sweep and print the results table (the program's output,
    on stdout; progress lines are log messages, on stderr)."""
    parser = argparse.ArgumentParser(prog="glue.py", description="Finetune on GLUE tasks and seeds; one table.")
    parser.add_argument("config", help="YAML file, e.g. yamls/finetune-glue/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. tasks=[rte,mrpc] seeds=[17,42]")
    args = parser.parse_args(argv)
    cfg = load_glue_config(args.config, args.overrides)
    configure_logging(cfg.python_log_level)
    print(to_markdown(run_sweep(cfg), cfg.seeds), flush=True)
