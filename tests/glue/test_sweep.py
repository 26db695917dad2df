"""End to end: a 2-task, 1-seed sweep (MNLI chained into RTE) with a tiny BERT, failures, reruns, workers."""

from __future__ import annotations

import json
import math
import os
import time

import pytest
import torch

from bertforge.config.validate import from_dict
from bertforge.glue import GlueConfig, run_sweep
from bertforge.glue.finetune import Job
from bertforge.glue.sweep import plan, resolve
from tests.glue.conftest import tiny_sweep


def _refuse(cfg: GlueConfig, job: Job) -> dict:
    raise AssertionError(f"{job.name} should have come from the cache")


def _fake(cfg: GlueConfig, job: Job) -> dict:
    """A stand-in finetune for pool tests (module level so spawned workers can import it)."""
    if job.task == "mrpc":
        raise RuntimeError("boom")
    return {"rte/accuracy": 50.0 + job.seed}


def test_two_task_sweep_chains_mnli_into_rte_then_reruns_from_cache(tmp_path):
    cfg = from_dict(GlueConfig, tiny_sweep(tmp_path, save_checkpoints=False))
    start = time.time()
    summary = run_sweep(cfg)
    assert time.time() - start < 60
    assert not summary["failed"]
    assert set(summary["entries"]) == {"mnli-m", "mnli-mm", "rte"}
    for entry in ("mnli-m", "mnli-mm", "rte"):
        assert 0.0 <= summary["entries"][entry]["scores"][17] <= 100.0
    assert summary["average_over"] == ["mnli-m", "mnli-mm", "rte"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [j["task"] for j in saved["jobs"]] == ["mnli", "rte"]
    assert "| **GLUE average** | 3 entries |" in (tmp_path / "results.md").read_text()
    first, second = plan(resolve(cfg))
    assert [j.task for j in first] == ["mnli"] and first[0].save  # MNLI's weights are kept for the chain
    assert [j.task for j in second] == ["rte"] and second[0].start == f"{first[0].job_dir}/model.pt"
    _exported_mnli_job_gives_our_logits(first[0].job_dir, tmp_path / "exported")
    # a rerun finds every finished job by (task, seed, config hash) and trains nothing
    again = run_sweep(cfg, runner=_refuse)
    assert again["entries"]["rte"]["scores"] == summary["entries"]["rte"]["scores"]
    # a changed setting is a new job
    changed = from_dict(GlueConfig, tiny_sweep(tmp_path, task_settings={"rte": {"lr": 5.0e-4}}))
    assert plan(resolve(changed))[1][0].key != second[0].key


def _exported_mnli_job_gives_our_logits(job_dir: str, out) -> None:
    """The saved MNLI job of a real sweep exports (`python -m bertforge.export classifier <job>`) to a folder whose
    AutoModelForSequenceClassification gives our classifier's logits (fp32, 1e-5) with MNLI's labels. The job's own
    glue_config.json is enough: without the sweep's results.json (an unfinished sweep) the export needs no flags."""
    from transformers import AutoModelForSequenceClassification

    from bertforge.export.__main__ import main as export_main
    from bertforge.export.classifier import find_source, load_classifier

    results = os.path.join(os.path.dirname(os.path.dirname(job_dir)), "results.json")
    os.replace(results, results + ".aside")
    export_main(["classifier", job_dir, "--out", str(out)])
    ours = load_classifier(find_source(job_dir))
    os.replace(results + ".aside", results)
    theirs = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert list(theirs.config.id2label.values()) == ["entailment", "neutral", "contradiction"]
    batch = ours.tokenizer(["a man sleeps", "two dogs run in the park"], ["he is awake", "animals move"],
                           padding=True, return_tensors="pt")
    with torch.no_grad():
        want = ours.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        got = theirs(**batch).logits
    want = getattr(want, "logits", want)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_failed_job_shows_in_table_and_others_finish(tmp_path):
    raw = tiny_sweep(tmp_path, tasks=["rte", "mrpc"], task_settings={"mrpc": {"train_file": "missing.tsv"}})
    summary = run_sweep(from_dict(GlueConfig, raw))
    assert [f["task"] for f in summary["failed"]] == ["mrpc"]
    assert "MRPC/missing.tsv: GLUE file not found" in summary["failed"][0]["error"]
    assert 17 in summary["entries"]["rte"]["scores"]
    assert "- mrpc/seed17: " in (tmp_path / "results.md").read_text()


def test_chained_task_fails_when_mnli_fails(tmp_path):
    raw = tiny_sweep(tmp_path, task_settings={"mnli": {"train_file": "nope.tsv"}})
    summary = run_sweep(from_dict(GlueConfig, raw))
    errors = {f["task"]: f["error"] for f in summary["failed"]}
    assert "nope.tsv" in errors["mnli"] and errors["rte"].startswith("upstream mnli job failed")


@pytest.mark.slow
def test_worker_processes_isolate_failures(tmp_path):
    raw = tiny_sweep(tmp_path, tasks=["rte", "mrpc"], seeds=[1, 2], parallel_workers=2)
    summary = run_sweep(from_dict(GlueConfig, raw), runner=_fake)
    assert summary["entries"]["rte"]["scores"] == {1: 51.0, 2: 52.0}
    assert sorted(f["seed"] for f in summary["failed"]) == [1, 2]
    assert all(f["error"].startswith("RuntimeError: boom") for f in summary["failed"])


@pytest.mark.parametrize("block", [
    {"name": "flexbert", "model_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                          "intermediate_size": 48, "local_attention_window": 16}},
    {"name": "m2_bert", "model_config": {"hidden_size": 32, "num_hidden_layers": 1, "intermediate_size": 64,
                                         "max_position_embeddings": 64, "filter_order": 16}},
], ids=["flexbert", "m2_bert"])
def test_sweep_runs_every_family_through_the_registry(tmp_path, block):
    summary = run_sweep(from_dict(GlueConfig, tiny_sweep(tmp_path, model=block, tasks=["rte", "stsb"])))
    assert not summary["failed"], summary["failed"]
    assert set(summary["entries"]) == {"rte", "stsb"}
    stsb = summary["entries"]["stsb"]["scores"][17]  # mean of Pearson and Spearman, in percent
    assert math.isfinite(stsb) and -100.0 <= stsb <= 100.0


def test_pretrained_flexbert_encoder_loads_into_its_classifier(tokenizer):
    from bertforge import registry
    from bertforge.glue.checkpoint import load_encoder

    config = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 48}
    mlm = registry.models.build({"name": "flexbert", "model_config": config}, "model", tokenizer)
    clf = registry.classifiers.build({"name": "flexbert", "model_config": config}, "model", tokenizer, 3)
    report = load_encoder(clf, mlm.state_dict(), "pretraining run")
    encoder_keys = {k for k in clf.state_dict() if k.startswith("model.model.")}
    assert set(report.loaded) == encoder_keys and encoder_keys
    assert all(k.startswith(("model.head.", "model.classifier.")) for k in report.fresh)
    assert any(k.startswith("model.decoder") for k in report.ignored)  # the MLM head is not part of the classifier
    for key in encoder_keys:
        assert torch.equal(clf.state_dict()[key], mlm.state_dict()[key])


def _report_device(cfg: GlueConfig, job: Job) -> dict:
    """A stand-in finetune that reports which GPU its worker was pinned to, and the worker's pid."""
    return {"gpu": float(os.environ["CUDA_VISIBLE_DEVICES"]), "pid": float(os.getpid())}


@pytest.mark.slow
def test_one_worker_per_gpu_each_pinned_to_its_own_device(tmp_path, monkeypatch):
    from bertforge.glue.pool import run_jobs

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # the parent sees two GPUs
    cfg = resolve(from_dict(GlueConfig, tiny_sweep(tmp_path, tasks=["rte", "mrpc"], seeds=[1, 2, 3])))
    jobs = plan(cfg)[0]
    records = run_jobs(cfg, jobs, runner=_report_device)
    assert [r["status"] for r in records] == ["ok"] * len(jobs) == ["ok"] * 6
    device_of: dict[float, float] = {}
    for record in records:
        pid, gpu = record["metrics"]["pid"], record["metrics"]["gpu"]
        assert gpu in (0.0, 1.0)
        assert device_of.setdefault(pid, gpu) == gpu, "a worker changed device between jobs"
    assert len(device_of) <= 2 and len(set(device_of.values())) == len(device_of), "two workers share a GPU"


def test_progress_is_logged_and_main_prints_only_the_table(tmp_path, caplog, capsys, monkeypatch):
    import logging

    from omegaconf import OmegaConf

    from bertforge.errors import ConfigError
    from bertforge.glue import sweep
    from bertforge.glue.report import to_markdown

    raw = tiny_sweep(tmp_path, tasks=["rte"], seeds=[1, 2])
    with caplog.at_level(logging.INFO, logger="bertforge"):
        summary = run_sweep(from_dict(GlueConfig, raw), runner=_fake)
    assert capsys.readouterr().out == ""
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bertforge.glue")]
    assert lines[0] == f"2 GLUE jobs -> {tmp_path}" and lines[1].startswith("rte/seed1: rte/accuracy 51.00 (")
    path = tmp_path / "sweep.yaml"
    OmegaConf.save(raw, path)
    monkeypatch.setattr(sweep, "run_sweep", lambda cfg: summary)
    sweep.main([str(path)])
    assert capsys.readouterr().out == to_markdown(summary, [1, 2]) + "\n"
    with pytest.raises(ConfigError, match="python_log_level: 'loud' is not a log level"):
        sweep.main([str(path), "python_log_level=loud"])
