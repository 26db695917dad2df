"""Two CPU processes with gloo through Composer's launcher: disjoint data per rank, one checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import QUICKSTART_YAML, REPO, tiny_overrides, write_mds

COMPOSER = str(Path(sys.executable).parent / "composer")


def _launch(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [COMPOSER, "-n", "2", "--stdout", str(tmp_path / "rank{rank}.out"),
         "--stderr", str(tmp_path / "rank{rank}.err"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=400, env=env,
    )


@pytest.mark.slow
def test_each_rank_streams_its_own_part_of_a_remote_mixture(sample_mds, tmp_path):
    """Two ranks over a local source and a remote one cached locally: together they read every sample exactly
    once (so neither overlaps the other), and both sources reach both ranks."""
    remote = tmp_path / "remote"
    write_mds(remote / "train", [f"second source document {i}" for i in range(200)])
    (tmp_path / "out").mkdir()
    probe = [str(REPO / "tests" / "dist_read_probe.py"), str(sample_mds), str(tmp_path / "out"), "0", str(remote)]
    result = _launch(probe, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["len"] == ranks[1]["len"] == 700  # (1200 + 200 samples) over 2 ranks
    from streaming import LocalDataset

    every = Counter(s["text"] for folder in (sample_mds, remote) for s in LocalDataset(local=str(folder / "train")))
    read = [Counter(r["texts"]) for r in ranks]
    assert read[0] + read[1] == every, "a sample was read twice or never (the corpus repeats some speeches)"
    for rank in read:  # both sources reach both ranks
        assert 0 < sum(n for t, n in rank.items() if t.startswith("second source")) < rank.total()


@pytest.mark.slow
def test_two_process_training_saves_one_checkpoint(sample_mds, tmp_path):
    run_dir = tmp_path / "run"
    args = tiny_overrides(sample_mds, run_dir, max_duration="6ba", save_interval="6ba", eval_interval="6ba",
                          log_to_console=True, console_log_interval="6ba")
    result = _launch(["main.py", str(QUICKSTART_YAML), *args], tmp_path)
    rank_logs = [tmp_path / f"rank{r}.err" for r in (0, 1)]
    logs = result.stdout + result.stderr + "".join(p.read_text() for p in rank_logs if p.exists())
    assert result.returncode == 0, (result.stderr + logs)[-3000:]
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.suffix == ".pt")
    assert checkpoints == ["ep0-ba6-rank0.pt", "latest-rank0.pt"]
    import torch

    state = torch.load(run_dir / "checkpoints" / "ep0-ba6-rank0.pt", map_location="cpu", weights_only=False)["state"]
    assert state["timestamp"]["Timestamp"]["sample"] == 96  # 6 batches x 16 global, i.e. 8 per rank per step
    assert state["dataset_state"]["train"]["sample_in_epoch"] == 96
    assert (run_dir / "hf" / "config.json").is_file()
