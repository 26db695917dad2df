"""The CUDA kernel's sources compile, on a machine without a GPU (CI): the kernel with nvcc, the torch
binding with the host compiler against the installed torch. ``make test`` fetches the compilers from
PyPI into ``.cuda-toolchain`` (see the Makefile); a test skips, with the reason, when one is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch

from bertforge.ops import fftconv_cuda

REPO = Path(__file__).resolve().parents[2]
# Used only once `make cuda-toolchain` finished (its marker file): a broken download must skip, not fail.
_TOOLCHAIN_ROOT = REPO / ".cuda-toolchain"
TOOLCHAIN = _TOOLCHAIN_ROOT / "nvidia" if (_TOOLCHAIN_ROOT / ".installed").exists() else Path("/nonexistent")


def find_nvcc() -> str | None:
    """nvcc from $NVCC, the repo's PyPI toolchain, $CUDA_HOME or PATH."""
    candidates = [os.environ.get("NVCC"), TOOLCHAIN / "cu13" / "bin" / "nvcc",
                  Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc", shutil.which("nvcc")]
    return next((str(c) for c in candidates if c and os.access(c, os.X_OK)), None)


def cuda12_headers() -> list[str]:
    """Include dirs with cuda_runtime_api.h and crt/host_defines.h of torch's CUDA major version."""
    spec = importlib.util.find_spec("nvidia.cuda_runtime")
    runtime = Path(next(iter(spec.submodule_search_locations))) / "include" if spec else None
    dirs = [runtime, TOOLCHAIN / "cuda_nvcc" / "include"]
    if all(d is not None and d.is_dir() for d in dirs) and (dirs[1] / "crt" / "host_defines.h").exists():
        return [str(d) for d in dirs]
    home = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    return [str(home)] if (home / "crt" / "host_defines.h").exists() else []


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd[:3])} ... failed:\n{done.stderr[-4000:]}"


@pytest.mark.slow
def test_kernel_compiles_with_nvcc(tmp_path):
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("no nvcc (run `make cuda-toolchain`, or set NVCC)")
    source = fftconv_cuda.sources()[1]
    _run([nvcc, "-std=c++17", "-O3", "-arch=sm_90", "-c", source, "-o", str(tmp_path / "kernel.o")])
    assert (tmp_path / "kernel.o").stat().st_size > 0


def test_binding_compiles_against_installed_torch():
    from torch.utils.cpp_extension import include_paths

    compiler = shutil.which(os.environ.get("CXX", "c++"))
    headers = cuda12_headers()
    if compiler is None or not headers or torch.version.cuda is None:
        pytest.skip("needs a C++ compiler, a CUDA build of torch and CUDA headers (run `make cuda-toolchain`)")
    flags = [f"-I{p}" for p in include_paths() + headers + [sysconfig.get_paths()["include"]]]
    _run([compiler, "-std=c++17", "-fsyntax-only", *flags, "-DTORCH_EXTENSION_NAME=bertforge_fftconv_cuda",
          fftconv_cuda.sources()[0]])
