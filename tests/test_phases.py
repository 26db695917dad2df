"""Multi-phase runs: planning and bad input (fast), the schedule's clock across a switch (exact)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from composer.core import Time, Timestamp, TimeUnit
from composer.optim import LinearWithWarmupScheduler
from omegaconf import OmegaConf

from bertforge.config import load_config
from bertforge.errors import ConfigError
from bertforge.optim.schedulers import build_wsd
from bertforge.phases import PhaseClockScheduler, handover_transform, phase_scheduler, plan_phases
from tests.conftest import QUICKSTART_YAML, REPO, run_main, tiny_overrides

TWO_PHASES = [
    {"name": "seq64", "share": 0.9, "max_seq_len": 64, "global_train_batch_size": 16},
    {"name": "seq128", "share": 0.1, "max_seq_len": 128, "train_loader": {"dataset": {"local": "elsewhere"}},
     "model": {"model_config": {"num_hidden_layers": 2}}},
]


def _cfg(phases, **extra):
    overrides = [f"{k}={v}" for k, v in extra.items()]
    cfg = load_config(QUICKSTART_YAML, ["max_duration=1000ba", *overrides])
    cfg.phases = phases
    return cfg


def test_durations_and_shares_mix():
    phases = [{"name": "a", "duration": "700ba"}, {"name": "b", "share": 0.3}]
    assert [(p.start, p.end) for p in plan_phases(_cfg(phases), "ckpt")] == [(0, 700), (700, 1000)]
    big = load_config("yamls/pretrain/modernbert-base-phases.yaml")
    plan = plan_phases(big, "ckpt")
    assert [(p.end, p.cfg.max_seq_len) for p in plan] == [(1719 * 10**9, 1024), (1969 * 10**9, 8192),
                                                          (2019 * 10**9, 8192)]
    assert [p.cfg.model["model_config"]["rope_theta_global"] for p in plan] == [1e4, 1.6e5, 1.6e5]


def test_plan_splits_max_duration_and_merges_each_phase():
    first, second = plan_phases(_cfg(TWO_PHASES), "runs/x/checkpoints")
    assert (first.start, first.end, second.start, second.end) == (0, 900, 900, 1000)
    assert first.cfg.max_duration == "900ba" and second.cfg.max_duration == "1000ba"
    assert (first.cfg.max_seq_len, first.cfg.global_train_batch_size) == (64, 16)
    assert (second.cfg.max_seq_len, second.cfg.global_train_batch_size) == (128, 32)  # 32: the YAML's
    # nested blocks merge key by key: the split and shuffle of the base train_loader stay
    assert second.cfg.train_loader.dataset.local == "elsewhere"
    assert second.cfg.train_loader.dataset.split == "train" and second.cfg.train_loader.dataset.shuffle
    assert second.cfg.model["model_config"]["hidden_size"] == 128
    assert first.save_folder == "runs/x/checkpoints/seq64" and second.previous_folder == first.save_folder
    assert second.cfg.save_folder == "runs/x/checkpoints/seq128"


@pytest.mark.parametrize("phases, extra, message", [
    ([{"name": "a", "share": 0.9}, {"name": "b", "share": 0.2}], {}, "phases: the shares add up to 1.1"),
    ([{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}], {}, "phases: phase name 'a' is used twice"),
    ([{"name": "a", "share": 1.0, "optimizer": {"name": "adamw"}}], {}, "phases[0].optimizer: a phase cannot"),
    ([{"name": "a", "share": 1.0, "model": {"name": "flexbert"}}], {}, "phases[0].model: a phase may change only"),
    ([{"share": 1.0}], {}, "phases[0].name: required key is missing"),
    ([{"name": "a"}], {}, "phases[0].share: give the phase's length as a share"),
    ([{"name": "a", "duration": "500ba"}, {"name": "b", "duration": "400ba"}], {}, "phases: the shares add up to 0.9"),
    ([{"name": "a", "duration": "5ep"}], {}, "phases[0].duration: 5ep: give a positive duration in"),
    ([{"name": "a", "share": 0}], {}, "phases[0].share: 0: must be a number in (0, 1]"),
    ([{"name": "a", "share": 1.0, "max_seq_len": 4}], {}, "phases[0].max_seq_len: 4 is too short"),
    ([{"name": "a", "share": 1.0, "train_loader": {"dataset": {"loacl": "x"}}}], {},
     "phases[0].train_loader.dataset.loacl: unknown key (did you mean 'local'?)"),
    ([{"name": "a", "share": 1.0}], {"max_duration": "2ep"}, "max_duration: 2ep: phases split max_duration"),
    ([{"name": "a", "share": 0.001}, {"name": "b", "share": 0.999}], {"max_duration": "10ba"},
     "phases[0].share: 0.001 of 10ba is shorter than one step"),
    ([{"name": "a", "duration": "10ba"}], {"max_duration": "10tok"}, "phases[0].duration: 10ba: give a positive"),
])
def test_bad_phase_lists_fail_in_one_line(phases, extra, message):
    with pytest.raises(ConfigError) as err:
        plan_phases(_cfg(phases, **extra), "ckpt")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def _state(batch: int, max_batches: int):
    return types.SimpleNamespace(timestamp=Timestamp(batch=batch), max_duration=Time(max_batches, TimeUnit.BATCH),
                                 dataloader_len=None)


@pytest.mark.parametrize("inner", [
    LinearWithWarmupScheduler(t_warmup="0.1dur", alpha_f=0.0),
    build_wsd(t_warmup="0.06dur", t_decay="0.2dur", decay_shape="1-sqrt"),
], ids=["linear", "wsd"])
def test_global_schedule_is_the_one_phase_schedule_in_every_phase(inner):
    """Each phase's Trainer ends at its own boundary (its max_duration), yet the rate at every batch, the two at
    the switch included, is the single-run schedule's: Composer's '1dur' would otherwise mean the phase end."""
    phases = plan_phases(_cfg(TWO_PHASES), "ckpt")
    for phase in phases:
        wrapped = phase_scheduler(phase, inner)
        for batch in range(phase.start, phase.end):
            assert wrapped(_state(batch, phase.end)) == inner(_state(batch, 1000)), (phase.name, batch)
    last_of_first = phase_scheduler(phases[0], inner)(_state(899, 900))
    first_of_second = phase_scheduler(phases[1], inner)(_state(900, 1000))
    single_run_step = inner(_state(899, 1000)) - inner(_state(900, 1000))
    assert last_of_first - first_of_second == single_run_step  # no jump at the switch beyond the schedule's own


def test_a_phase_with_its_own_schedule_runs_it_on_the_phase_clock():
    own = {"name": "constant_with_warmup", "t_warmup": "0.5dur"}
    phases = [dict(TWO_PHASES[0]), dict(TWO_PHASES[1], scheduler=own)]
    second = plan_phases(_cfg(phases), "ckpt")[1]
    inner = LinearWithWarmupScheduler(t_warmup="0.5dur", alpha_f=1.0)
    wrapped = phase_scheduler(second, inner)
    assert isinstance(wrapped, PhaseClockScheduler)
    assert wrapped(_state(900, 1000)) == 0.0  # the phase's own warmup starts at its first batch
    assert wrapped(_state(925, 1000)) == pytest.approx(0.5)
    assert wrapped(_state(950, 1000)) == pytest.approx(1.0)


def test_handover_drops_the_previous_phases_data_position_only():
    def checkpoint(phase):
        return {"state": {"callbacks": {"PhaseMarker": {"phase": phase}}, "dataset_state": {"train": {"epoch": 0}},
                          "timestamp": {"epoch": 0, "batch": 900, "batch_in_epoch": 900, "sample_in_epoch": 9,
                                        "token_in_epoch": 99, "epoch_in_iteration": 0}}}

    theirs, ours = checkpoint("seq64"), checkpoint("seq128")
    handover_transform("seq128")(theirs)
    handover_transform("seq128")(ours)
    assert "dataset_state" not in theirs["state"]
    assert theirs["state"]["timestamp"] == {"epoch": 1, "batch": 900, "batch_in_epoch": 0, "sample_in_epoch": 0,
                                            "token_in_epoch": 0, "epoch_in_iteration": 1}
    assert ours == checkpoint("seq128")  # a phase's own checkpoint resumes untouched


# --- end to end: two phases of a tiny BERT in subprocesses (as a user runs them) ---

E2E_PHASES = [
    {"name": "short", "share": 0.6, "max_seq_len": 32, "global_train_batch_size": 16},
    {"name": "long", "share": 0.4, "max_seq_len": 64, "global_train_batch_size": 8},
]
E2E = {"max_duration": "20ba", "save_interval": "4ba", "eval_interval": "20ba", "deterministic": True,
       "save_num_checkpoints_to_keep": -1, "log_to_console": True, "console_log_interval": "1ba"}


def _phased_yaml(tmp_path: Path) -> Path:
    raw = OmegaConf.load(QUICKSTART_YAML)
    raw.phases = E2E_PHASES
    path = tmp_path / "phased.yaml"
    OmegaConf.save(raw, path)
    return path


def _lrs(log: str) -> dict[int, float]:
    """Batch -> learning rate, from the console logger's per-batch blocks."""
    lrs, batch = {}, None
    for line in log.splitlines():
        if match := re.match(r"\[batch=(\d+)/\d+\]:", line.strip()):
            batch = int(match.group(1))
        elif batch is not None and (match := re.search(r"Train lr-DecoupledAdamW/group0: ([0-9.e-]+)", line)):
            lrs[batch] = float(match.group(1))
    return lrs


def _final(run_dir: Path) -> tuple[dict, int]:
    ckpt = torch.load(run_dir / "checkpoints" / "long" / "latest-rank0.pt", map_location="cpu", weights_only=False)
    return ckpt["state"]["model"], int(ckpt["state"]["timestamp"]["Timestamp"]["batch"])


@pytest.fixture(scope="module")
def straight_run(sample_mds, tmp_path_factory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("phases")
    yaml = _phased_yaml(tmp)
    result = run_main([str(yaml), *tiny_overrides(sample_mds, tmp / "straight", **E2E)])
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml, tmp / "straight", result.stdout + result.stderr


@pytest.mark.slow
def test_phases_run_in_order_with_a_continuous_schedule(straight_run):
    _, run_dir, log = straight_run
    assert "phase 1/2 'short': 0-12ba, max_seq_len 32, global batch 16" in log
    assert "phase 2/2 'long': 12-20ba, max_seq_len 64, global batch 8" in log
    for name, end in (("short", 12), ("long", 20)):
        assert json.loads((run_dir / "checkpoints" / name / "phase_done.json").read_text())["batch"] == end
    # each phase saves into its own folder; the second picks up the global step (and opens a new epoch)
    assert (run_dir / "checkpoints" / "short" / "ep0-ba12-rank0.pt").exists()
    assert (run_dir / "checkpoints" / "long" / "ep1-ba20-rank0.pt").exists()
    # the rate of every batch (the two at the switch included) is the single 20-batch schedule's:
    # linear warmup over 0.06dur (1 batch) then linear decay to 0.02 x peak, batch i trained at schedule(i)
    lrs = _lrs(log)
    assert sorted(lrs) == list(range(1, 21))
    reference = LinearWithWarmupScheduler(t_warmup="0.06dur", alpha_f=0.02)
    for batch, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * reference(_state(batch - 1, 20)), abs=5e-5), batch  # console: 4 digits
    assert ckpt_lr(run_dir, "short") == pytest.approx(1e-3 * reference(_state(12, 20)), rel=1e-6)


def ckpt_lr(run_dir: Path, phase: str) -> float:
    """The learning rate the phase's final checkpoint holds for the next batch."""
    ckpt = torch.load(run_dir / "checkpoints" / phase / "latest-rank0.pt", map_location="cpu", weights_only=False)
    groups = next(iter(ckpt["state"]["optimizers"].values()))["param_groups"]
    return groups[0]["lr"]


def _launch_and_kill_at(args: list[str], checkpoint: Path) -> None:
    """Start the run and SIGKILL it as soon as ``checkpoint`` (a ``latest`` link, moved once complete) exists."""
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.mark.slow
def test_sigkill_in_each_phase_then_rerun_matches_uninterrupted(straight_run, sample_mds, tmp_path):
    """Killed in the first phase, restarted with the same command, killed again in the second phase, restarted:
    each restart resumes in the phase it was in, and the final weights equal the uninterrupted run's."""
    yaml, straight, _ = straight_run
    killed = tmp_path / "killed"
    args = [str(yaml), *tiny_overrides(sample_mds, killed, **dict(E2E, log_to_console=False)),
            f"tokenizer.name={straight / 'tokenizer'}"]
    _launch_and_kill_at(args, killed / "checkpoints" / "short" / "latest-rank0.pt")
    assert not (killed / "checkpoints" / "short" / "phase_done.json").exists()
    _launch_and_kill_at(args, killed / "checkpoints" / "long" / "latest-rank0.pt")
    assert (killed / "checkpoints" / "short" / "phase_done.json").exists()
    assert not (killed / "checkpoints" / "long" / "phase_done.json").exists()

    result = run_main(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "phase 1/2 'short' finished in an earlier launch; skipped" in result.stderr
    want, want_batch = _final(straight)
    got, got_batch = _final(killed)
    assert want_batch == got_batch == 20
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
