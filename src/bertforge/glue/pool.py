"""Run jobs: one worker per GPU, or ``parallel_workers`` CPU processes; a failed job never stops the others."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from bertforge import registry
from bertforge.errors import UserError
from bertforge.glue.config import GlueConfig
from bertforge.glue.finetune import Job, run_job

RESULT_FILE = "result.json"
log = logging.getLogger(__name__)


def _error_line(err: BaseException) -> str:
    if isinstance(err, UserError):
        return str(err)
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {first}{where}"


def execute(cfg: GlueConfig, job: Job, runner: Callable[[GlueConfig, Job], dict] = run_job) -> dict:
    """Run one job, catching any error; write and return its record (status ok/failed, metrics, error)."""
    start = time.time()
    record = {"task": job.task, "seed": job.seed, "key": job.key, "status": "ok", "metrics": {}, "error": None}
    try:
        registry.import_code_paths(cfg.code_paths)  # spawned workers start without the user's registrations
        record["metrics"] = runner(cfg, job)
    except Exception as err:  # isolate the job: the sweep goes on and the table shows the error
        record.update(status="failed", error=_error_line(err))
    record["seconds"] = round(time.time() - start, 1)
    os.makedirs(job.job_dir, exist_ok=True)
    with open(os.path.join(job.job_dir, RESULT_FILE), "w") as f:
        json.dump(record, f, indent=1)
    return record


def _init_worker(gpu_queue, threads: int) -> None:
    """Pin this worker to one GPU (before CUDA starts) or cap its CPU threads."""
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())
    torch.set_num_threads(max(1, threads))


def worker_count(cfg: GlueConfig) -> tuple[int, int]:
    """(workers, GPUs): one worker per GPU when there are GPUs, else ``parallel_workers``."""
    gpus = torch.cuda.device_count()
    return (gpus, gpus) if gpus else (cfg.parallel_workers, 0)


def run_jobs(cfg: GlueConfig, jobs: list[Job], runner: Callable[[GlueConfig, Job], dict] = run_job) -> list[dict]:
    """Run ``jobs`` and return their records in the same order; logs one line per finished job."""
    workers, gpus = worker_count(cfg)
    if workers == 1 or len(jobs) <= 1:
        records = []
        for job in jobs:
            records.append(execute(cfg, job, runner))
            log.info("%s", _summary(records[-1]))
        return records
    ctx = multiprocessing.get_context("spawn")
    queue = None
    if gpus:
        queue = ctx.Queue()
        for i in range(gpus):
            queue.put(i)
    threads = 1 if gpus else (os.cpu_count() or 1) // workers
    records: dict[int, dict] = {}
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue, threads)) as pool:
        futures = {pool.submit(execute, cfg, job, runner): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                records[i] = future.result()
            except Exception as err:  # the worker process died (out of memory, segfault)
                job = jobs[i]
                records[i] = {"task": job.task, "seed": job.seed, "key": job.key, "status": "failed",
                              "metrics": {}, "error": f"worker died: {_error_line(err)}", "seconds": None}
            log.info("%s", _summary(records[i]))
    return [records[i] for i in range(len(jobs))]


def _summary(record: dict) -> str:
    name = f"{record['task']}/seed{record['seed']}"
    if record["status"] == "ok":
        scores = ", ".join(f"{k} {v:.2f}" for k, v in record["metrics"].items())
        return f"{name}: {scores} ({record['seconds']} s)"
    return f"{name}: FAILED: {record['error']}"
