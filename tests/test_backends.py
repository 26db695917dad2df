"""``python -m bertforge.backends``: the backend table, its reasons, and ``--require`` (all on CPU)."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from bertforge import backends
from bertforge.backends import ACTIVE, READY, UNAVAILABLE, Backend
from bertforge.cli import run_cli
from bertforge.errors import UserError


def fake_imports(monkeypatch, present: dict[str, str]) -> None:
    """Make ``backends.try_import`` find exactly the modules in ``present`` (module -> version)."""

    def fake(module: str):
        if module in present:
            return types.SimpleNamespace(__version__=present[module], __file__=f"/x/{module}.so"), ""
        return None, "not installed"

    monkeypatch.setattr(backends, "try_import", fake)
    monkeypatch.setattr(backends, "version_of", lambda dist, module=None: module.__version__)


def test_cli_prints_every_backend_and_exits_zero_without_require():
    done = subprocess.run([sys.executable, "-m", "bertforge.backends", "--require", "torch"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1] for line in done.stdout.splitlines()[1:]}
    assert list(rows) == list(backends.NAMES)
    assert set(rows.values()) <= {ACTIVE, READY, UNAVAILABLE}
    assert torch.__version__ in done.stdout
    if not torch.cuda.is_available():
        assert rows["gpu"] == UNAVAILABLE and rows["flash-attn"] != ACTIVE and rows["fftconv"] != ACTIVE


@pytest.mark.parametrize("gpu, status", [(False, READY), (True, ACTIVE)])
def test_installed_gpu_backends_are_ready_without_a_gpu_and_active_with_one(monkeypatch, gpu, status):
    fake_imports(monkeypatch, {"flash_attn": "2.8.3", "bertforge_fftconv_cuda": "0", "liger_kernel": "0.8.5",
                               "triton": "3.2.0"})
    monkeypatch.setattr(backends, "gpu_visible", lambda: gpu)
    monkeypatch.setattr(backends, "_fused_check", lambda: None)  # the plain liger-kernel check
    rows = [backends.flash_attn_backend(), backends.fftconv_backend(), backends.fused_backend()]
    assert [b.status for b in rows] == [status] * 3
    assert "flash-attn 2.8.3" in rows[0].detail and "prebuilt" in rows[1].detail
    assert rows[2].detail.startswith("liger-kernel 0.8.5, triton 3.2.0")


def test_missing_packages_say_how_to_get_them(monkeypatch):
    fake_imports(monkeypatch, {"triton": "3.2.0"})
    monkeypatch.setattr(backends, "gpu_visible", lambda: True)
    flash, fft, fused = backends.flash_attn_backend(), backends.fftconv_backend(), backends.fused_backend()
    assert all(b.status == UNAVAILABLE for b in (flash, fft, fused))
    assert "pip install --no-build-isolation -e .[gpu]" in flash.detail and "not installed" in flash.detail
    assert "make kernel" in fft.detail and "BERTFORGE_JIT_KERNELS=1" in fft.detail
    assert fused.detail.startswith("liger-kernel not installed")


@pytest.mark.parametrize("gpu, result, status", [
    (False, (False, "no CUDA device"), READY),       # installed, waiting for a GPU (a docker build)
    (True, (False, "kernels disabled"), UNAVAILABLE),
    (True, (True, "liger-kernel 0.8.5 on H100"), ACTIVE),
    (False, (True, "in Triton's CPU interpreter"), ACTIVE),
])
def test_fused_row_follows_bertforge_kernels_check(monkeypatch, gpu, result, status):
    fake_imports(monkeypatch, {"liger_kernel": "0.8.5", "triton": "3.2.0"})
    monkeypatch.setattr(backends, "gpu_visible", lambda: gpu)
    monkeypatch.setattr(backends, "_fused_check", lambda: lambda: result)
    row = backends.fused_backend()
    assert row.status == status and result[1] in row.detail


def test_a_failing_fused_check_is_a_reason_not_a_traceback(monkeypatch):
    fake_imports(monkeypatch, {"liger_kernel": "0.8.5", "triton": "3.2.0"})
    monkeypatch.setattr(backends, "gpu_visible", lambda: True)

    def broken():
        raise RuntimeError("driver too old\nsecond line")

    monkeypatch.setattr(backends, "_fused_check", lambda: broken)
    row = backends.fused_backend()
    assert row.status == UNAVAILABLE and row.detail.endswith("failed (driver too old)")


def test_try_import_tells_missing_from_broken(tmp_path, monkeypatch):
    (tmp_path / "bf_broken_ext.py").write_text("raise ImportError('undefined symbol: _ZN3c10')\n")
    (tmp_path / "bf_needs_dep.py").write_text("import bf_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert backends.try_import("bf_not_there") == (None, "not installed")
    assert backends.try_import("bf_broken_ext") == (None, "import failed (undefined symbol: _ZN3c10)")
    assert backends.try_import("bf_needs_dep") == (None, "import failed (No module named 'bf_absent_dependency')")
    module, why = backends.try_import("json")
    assert module is not None and why == ""


ROWS = [Backend("torch", ACTIVE, "2.7.0"), Backend("gpu", UNAVAILABLE, "no CUDA GPU is visible"),
        Backend("flash-attn", READY, "flash-attn 2.8.3"), Backend("fftconv", UNAVAILABLE, "not built"),
        Backend("fused", UNAVAILABLE, "liger-kernel not installed")]


def test_require_passes_for_ready_backends_and_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(backends, "collect", lambda: ROWS)
    backends.main(["--require", "torch,flash-attn"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["backend", "status", "detail"]
    assert out[3].split()[:2] == ["flash-attn", READY] and len(out) == 6


def test_require_names_every_missing_backend_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(backends, "collect", lambda: ROWS)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(backends.main, ["--require", "gpu,flash-attn,fftconv,fused"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("bertforge: error: required backends missing: gpu: no CUDA GPU is visible; fftconv: not built; "
                   "fused: liger-kernel not installed\n")


def test_unknown_required_name_suggests_the_closest(monkeypatch):
    monkeypatch.setattr(backends, "collect", lambda: pytest.fail("the table must not be built for a bad argument"))
    with pytest.raises(UserError, match=r"^--require: unknown backend 'flashattn' \(did you mean 'flash-attn'\?\); "
                                        r"choose from torch, gpu, flash-attn, fftconv, fused$"):
        backends.main(["--require", "flashattn"])
