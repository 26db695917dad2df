"""Run by test_interpreter.py in a process with TRITON_INTERPRET=1: benchmarks/kernels_gpu.py works end to end
(its ``--cpu-smoke`` mode: every case and variant, the table and the CSV) and refuses other CPU runs in one line."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels_gpu.py"


def _script():
    spec = importlib.util.spec_from_file_location("kernels_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_smoke_writes_every_case(tmp_path, capsys):
    rows = _script().main(["--cpu-smoke", "--out", str(tmp_path)])
    cases = {"layernorm", "rmsnorm", "geglu", "rope", "mlm_loss", "train_step"}
    assert {(r["case"], r["variant"]) for r in rows} == {(c, v) for c in cases for v in ("torch", "fused")}
    with open(tmp_path / "kernels.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows) and all(r["ms"] > 0 for r in rows)
    assert "| train_step | fused |" in capsys.readouterr().out


def test_refuses_without_a_gpu(monkeypatch):
    import torch

    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--cpu-smoke: set TRITON_INTERPRET=1"):
        _script().main(["--cpu-smoke"])
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        _script().main([])
