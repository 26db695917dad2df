"""Two "nodes" on loopback sharing one save folder: autoresume after a SIGKILL of both is exact.

Each node is Composer's launcher with ``--world_size 2 --nproc 1 --node_rank r`` in its own user and mount
namespace with a private /dev/shm, as on two machines whose only shared filesystem is the save folder's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bertforge.checkpoints import latest_checkpoint, resolve_resume
from tests.conftest import QUICKSTART_YAML, REPO, tiny_overrides
from tests.test_train import _final_weights

COMPOSER = str(Path(sys.executable).parent / "composer")
PRIVATE_SHM = "mount -t tmpfs tmpfs /dev/shm && exec \"$@\""


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"], capture_output=True)
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(not _namespaces_work(), reason="needs `unshare -rm` (user + mount namespaces) "
                                   "to give each loopback node a private /dev/shm")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_nodes(args: list[str], logs: Path) -> list[subprocess.Popen]:
    """Start node 0 and node 1 of a two-node run, each in its own session (so one killpg ends it)."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    for rank in (0, 1):
        cmd = ["unshare", "-rm", "sh", "-c", PRIVATE_SHM, "sh", COMPOSER, "--world_size", "2", "--nproc", "1",
               "--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port), *args]
        with open(logs / f"node{rank}.log", "ab") as out:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    return procs


def _wait(procs: list[subprocess.Popen], logs: Path, timeout: float = 400) -> None:
    for proc in procs:
        proc.wait(timeout=timeout)
    text = "".join((logs / f"node{r}.log").read_text()[-2000:] for r in (0, 1))
    assert [p.returncode for p in procs] == [0, 0], text


def _two_node_args(sample_mds: Path, run_dir: Path, **extra) -> list[str]:
    common = {"max_duration": "8ba", "save_interval": "2ba", "eval_interval": "8ba", "deterministic": True,
              "autoresume": True, "save_num_checkpoints_to_keep": -1, "callbacks": "[]"}
    return ["main.py", str(QUICKSTART_YAML), *tiny_overrides(sample_mds, run_dir, **dict(common, **extra))]


def test_resolve_resume_prefers_the_runs_latest_checkpoint(tmp_path):
    assert resolve_resume(str(tmp_path), True, "init.pt", True) == ("init.pt", True, False, False)  # nothing saved yet
    (tmp_path / "ep0-ba4-rank0.pt").write_bytes(b"x")
    os.symlink("ep0-ba4-rank0.pt", tmp_path / "latest-rank0.pt")
    own = str(tmp_path / "ep0-ba4-rank0.pt")
    assert latest_checkpoint(str(tmp_path)) == own
    assert resolve_resume(str(tmp_path), True, "init.pt", True) == (own, False, False, True)  # loaded whole
    assert resolve_resume(str(tmp_path), False, "init.pt", True) == ("init.pt", True, False, False)
    assert resolve_resume("s3://bucket/ckpt", True, None, False) == (None, False, True, False)  # Composer downloads it
    os.remove(tmp_path / "ep0-ba4-rank0.pt")  # a dangling latest is no checkpoint
    assert latest_checkpoint(str(tmp_path)) is None


@pytest.mark.slow
@needs_unshare
def test_two_nodes_sharing_a_save_folder_resume_exactly(sample_mds, tmp_path):
    straight = tmp_path / "straight"
    _wait(_launch_nodes(_two_node_args(sample_mds, straight), tmp_path), tmp_path)

    killed = tmp_path / "killed"
    args = _two_node_args(sample_mds, killed, **{"tokenizer.name": str(straight / "tokenizer")})
    procs = _launch_nodes(args, tmp_path)
    first = killed / "checkpoints" / "latest-rank0.pt"  # moved only once a checkpoint is complete
    deadline = time.time() + 300
    while not first.exists() and all(p.poll() is None for p in procs) and time.time() < deadline:
        time.sleep(0.01)
    for proc in procs:
        os.killpg(proc.pid, signal.SIGKILL)
    assert [p.wait() for p in procs] == [-signal.SIGKILL] * 2, "a node ended before it could be killed"
    resumed_from = killed / "checkpoints" / os.readlink(first)
    assert resumed_from.name != "ep0-ba8-rank0.pt"
    stamp = resumed_from.stat().st_mtime_ns

    _wait(_launch_nodes(args, tmp_path), tmp_path)  # the same command again, on both nodes
    assert resumed_from.stat().st_mtime_ns == stamp, "the rerun started over instead of resuming"
    want, want_batch = _final_weights(straight)
    got, got_batch = _final_weights(killed)
    assert want_batch == got_batch == 8
    assert want.keys() == got.keys()
    for name in want:  # bit-identical: deterministic mode, the same two ranks, the RNG restored from the checkpoint
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0, msg=name)
