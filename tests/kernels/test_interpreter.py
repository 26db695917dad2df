"""The fused kernels checked against the torch ops on CPU, in Triton's interpreter.

``TRITON_INTERPRET=1`` only takes effect for kernels defined after it is set, and triton defines some of its own
(``tl.sum``) when it is first imported, which other tests may already have done in this process: so the checks
(``interpreted_*.py``) run in a fresh pytest process with the variable set from the start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_kernels_match_torch_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [str(HERE.parents[1] / "src"), str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])}
    files = [str(HERE / "interpreted_ops.py"), str(HERE / "interpreted_models.py"), str(HERE / "interpreted_bench.py")]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-800:]
