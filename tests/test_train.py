"""End-to-end pretraining on CPU: loss falls, Hugging Face export parity, SIGKILL + autoresume is exact."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import QUICKSTART_YAML, REPO, run_main, tiny_overrides


def _eval_losses(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"metrics/eval/LanguageCrossEntropy: ([0-9.]+)", log)]


@pytest.fixture(scope="module")
def trained_run(sample_mds, tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    args = tiny_overrides(sample_mds, run_dir, max_duration="60ba", eval_interval="30ba", eval_first=True,
                          log_to_console=True, console_log_interval="10ba", save_interval="30ba",
                          **{"optimizer.lr": 3e-3})
    result = run_main([str(QUICKSTART_YAML), *args])
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result.stdout + result.stderr


def test_pretraining_logs_metrics_and_eval_loss_falls(trained_run):
    _, log = trained_run
    for key in ("loss/train/total", "metrics/train/MaskedAccuracy", "metrics/train/LanguagePerplexity",
                "metrics/eval/MaskedAccuracy", "metrics/eval/LanguagePerplexity"):
        assert key in log, key
    losses = _eval_losses(log)
    assert len(losses) == 3, losses  # before training, at 30ba, at 60ba
    assert losses[-1] < losses[0] - 0.3, losses


def test_run_folder_has_tokenizer_config_and_checkpoint(trained_run):
    run_dir, _ = trained_run
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "ep0-ba60-rank0.pt").is_file()


def test_hf_export_gives_identical_logits(trained_run):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from bertforge import registry
    from bertforge.config import load_config

    run_dir, _ = trained_run
    hf = AutoModelForMaskedLM.from_pretrained(run_dir / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "hf")
    cfg = load_config(run_dir / "config.yaml")
    ours = registry.models.build(cfg.model, "model", tokenizer)
    state = torch.load(run_dir / "checkpoints" / "ep0-ba60-rank0.pt", map_location="cpu", weights_only=False)
    ours.load_state_dict(state["state"]["model"])
    ours.eval()
    texts = ["To be, or not to be, that is the question.", "Hark!", "What light through yonder window breaks?"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**batch).logits
        got = ours(dict(batch)).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(got[mask], ref[mask], rtol=0, atol=1e-5)


def _final_weights(run_dir: Path) -> dict:
    ckpt = torch.load(run_dir / "checkpoints" / "latest-rank0.pt", map_location="cpu", weights_only=False)
    return ckpt["state"]["model"], int(ckpt["state"]["timestamp"]["Timestamp"]["batch"])


@pytest.mark.parametrize("yaml,extra", [
    # (the plain single-source BERT path resumes exactly in tests/test_multinode.py, on two nodes, and multi-phase
    # runs in tests/test_phases.py)
    # masked diffusion on FlexBERT with packing: packed batches carry documents across batches, so the checkpoint
    # must hold them (see data/packing.py); per-sequence rates and masks come from the checkpointed RNG stream
    (REPO / "yamls/generative/quickstart-mdlm.yaml", {"max_duration": "20ba", "eval_subset_num_batches": 1,
                                                      "tokenizer.name": "null",
                                                      "train_loader.packing": True, "eval_loader.packing": True}),
    # a two-source mixture (streams), each streamed from a "remote" folder into a cache ($MDS, $TMP: filled in below)
    (QUICKSTART_YAML, {"train_loader.dataset.local": "null", "train_loader.dataset.cache_limit": "10mb",
                       "train_loader.dataset.streams": "[{local: $TMP/cache-a, remote: $MDS, split: train, proportion: "
                       "0.75}, {local: $TMP/cache-b, remote: 'file://$MDS', split: val, proportion: 0.25}]"}),
], ids=["mdlm-flexbert-packed", "hf-bert-streams"])
def test_sigkill_then_autoresume_matches_uninterrupted(sample_mds, tmp_path, yaml, extra):
    extra = {k: v.replace("$MDS", str(sample_mds)).replace("$TMP", str(tmp_path)) if isinstance(v, str) else v
             for k, v in extra.items()}
    common = dict({"max_duration": "60ba", "save_interval": "10ba", "eval_interval": "20ba", "deterministic": True,
                   "save_num_checkpoints_to_keep": -1}, **extra)
    steps = int(common["max_duration"][:-2])
    straight = tmp_path / "straight"
    result = run_main([str(yaml), *tiny_overrides(sample_mds, straight, **common)])
    assert result.returncode == 0, result.stderr[-3000:]

    # Reuse the first run's tokenizer to save training it again (training is deterministic:
    # tests/test_reproducible.py checks two fresh runs that each train their own).
    common["tokenizer.name"] = str(straight / "tokenizer")
    killed = tmp_path / "killed"
    cmd = [sys.executable, str(REPO / "main.py"), str(yaml), *tiny_overrides(sample_mds, killed, **common)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_ckpt = killed / "checkpoints" / "latest-rank0.pt"  # moved only once a checkpoint is complete
    deadline = time.time() + 240
    while not first_ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "checkpoints" / f"ep0-ba{steps}-rank0.pt").exists()
    resumed_from = os.readlink(first_ckpt)
    stamp = (killed / "checkpoints" / resumed_from).stat().st_mtime_ns

    result = run_main([str(yaml), *tiny_overrides(sample_mds, killed, **common)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (killed / "checkpoints" / resumed_from).stat().st_mtime_ns == stamp, "rerun did not resume"
    want, want_batch = _final_weights(straight)
    got, got_batch = _final_weights(killed)
    assert want_batch == got_batch == steps
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)


def test_incomplete_checkpoint_is_moved_aside(tmp_path):
    from bertforge.checkpoints import discard_incomplete_checkpoints

    for name in ("ep0-ba10-rank0.pt", "ep0-ba20-rank0.pt", "ep0-ba30-rank0.pt"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink("ep0-ba20-rank0.pt", tmp_path / "latest-rank0.pt")
    moved = discard_incomplete_checkpoints(str(tmp_path))
    assert moved == [str(tmp_path / "ep0-ba30-rank0.pt")]
    assert (tmp_path / "ep0-ba30-rank0.pt.incomplete").exists()
    assert (tmp_path / "ep0-ba20-rank0.pt").exists() and (tmp_path / "ep0-ba10-rank0.pt").exists()
    os.remove(tmp_path / "latest-rank0.pt")
    assert len(discard_incomplete_checkpoints(str(tmp_path))) == 2  # no latest: nothing is complete


def test_incomplete_sharded_checkpoint_folder_is_moved_aside(tmp_path):
    from bertforge.checkpoints import discard_incomplete_checkpoints

    for name in ("ep0-ba4", "ep0-ba6"):  # FSDP sharded checkpoints: one folder of per-rank shards each
        (tmp_path / name).mkdir()
        (tmp_path / name / "__0_0.distcp").write_bytes(b"x")
    os.symlink("ep0-ba4", tmp_path / "latest-rank0.pt")  # killed while ep0-ba6 was being written
    assert discard_incomplete_checkpoints(str(tmp_path)) == [str(tmp_path / "ep0-ba6")]
    assert (tmp_path / "ep0-ba6.incomplete" / "__0_0.distcp").exists() and (tmp_path / "ep0-ba4").is_dir()
