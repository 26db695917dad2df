"""Same command, same seed, same weights: two fresh runs that each train their tokenizer end bit-identical."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import QUICKSTART_YAML, REPO, tiny_overrides


@pytest.mark.slow
def test_two_fresh_runs_end_with_identical_weights(sample_mds, tmp_path):
    # sample_mds has no tokenizer stored with it, so each run trains its own at start (tokenizer.name null);
    # before the fix the two tokenizers differed and so did the weights. No eval or callbacks: they cannot
    # change the weights and only cost time.
    run_dirs = [tmp_path / "first", tmp_path / "second"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    extra = dict(max_duration="4ba", save_interval="4ba", device="cpu", callbacks="[]", eval_loader="null")
    procs = [subprocess.Popen([sys.executable, str(REPO / "main.py"), str(QUICKSTART_YAML),
                               *tiny_overrides(sample_mds, run_dir, **extra)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for run_dir in run_dirs]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    first, second = ((d / "tokenizer" / "tokenizer.json").read_bytes() for d in run_dirs)
    assert first == second
    want, got = (torch.load(d / "checkpoints" / "latest-rank0.pt", map_location="cpu", weights_only=False)["state"]
                 for d in run_dirs)
    assert int(want["timestamp"]["Timestamp"]["batch"]) == int(got["timestamp"]["Timestamp"]["batch"]) == 4
    assert want["model"].keys() == got["model"].keys()
    for name in want["model"]:
        torch.testing.assert_close(got["model"][name], want["model"][name], rtol=0, atol=0, msg=name)
