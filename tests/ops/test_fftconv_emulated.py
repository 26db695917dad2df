"""The fused FFT-convolution CUDA kernels themselves, run on the CPU: ``csrc/fftconv/fftconv_kernel.cu``
is compiled unchanged with the host compiler against ``tests/ops/cuda_emulation`` (each CUDA thread a
std::thread, ``__syncthreads`` a barrier) and driven through the real autograd wrapper. This checks the
kernels' indexing, synchronisation, row pairing and spectrum split without a GPU; the GPU tests in
test_fftconv_cuda.py check the same on the hardware. Relative error is ||a - b|| / ||b|| against the
float64 torch.fft convolution: 1e-5 for float32, 1e-2 for bfloat16 (same bounds as on the GPU).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.ops import fftconv_cuda
from bertforge.ops.fftconv import torch_fft_conv
from tests.ops.test_fftconv_cuda import relative_error

HERE = Path(__file__).resolve().parent
KERNEL_DIR = Path(fftconv_cuda.sources()[1]).parent


@pytest.fixture(scope="module")
def emulator(tmp_path_factory) -> Path:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("needs a C++20 compiler (g++) to build the kernel emulation")
    exe = tmp_path_factory.mktemp("emulator") / "emulator"
    cmd = [compiler, "-std=c++20", "-O2", "-pthread", "-Wall", "-Werror", "-Wno-unknown-pragmas",
           "-DBERTFORGE_CUDA_EMULATION", f"-I{HERE / 'cuda_emulation'}", f"-I{KERNEL_DIR}",
           str(HERE / "cuda_emulation" / "emulator.cpp"), "-o", str(exe)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return exe


class EmulatedExtension:
    """The extension's ``forward`` / ``backward`` contract, served by the emulated CUDA kernels."""

    def __init__(self, exe: Path, chunks: int | None = None) -> None:
        self.exe, self.chunks = exe, chunks

    def _run(self, mode: str, u: torch.Tensor, kf: torch.Tensor, log_n: int, chunks: int, **inputs) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="fftconv-emu-"))
        for name, tensor in {"u": u, **inputs}.items():
            tensor.float().numpy().astype("<f4").tofile(folder / f"{name}.bin")
        torch.view_as_real(kf.contiguous()).numpy().astype("<f4").tofile(folder / "kf.bin")
        dtype = {torch.float32: "f32", torch.bfloat16: "bf16"}[u.dtype]
        rows, channels, length = u.shape
        args = [str(self.exe), mode, dtype, str(rows), str(channels), str(length), str(log_n), str(chunks), str(folder)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return folder

    @staticmethod
    def _load(folder: Path, name: str, like: torch.Tensor) -> torch.Tensor:
        data = np.fromfile(folder / f"{name}.bin", dtype="<f4")
        return torch.from_numpy(data.copy()).reshape(like.shape).to(like.dtype)

    def forward(self, u: torch.Tensor, kf: torch.Tensor, log_n: int) -> torch.Tensor:
        folder = self._run("forward", u, kf, log_n, 1)
        y = self._load(folder, "y", u)
        shutil.rmtree(folder)
        return y

    def backward(self, dy: torch.Tensor, u: torch.Tensor, kf: torch.Tensor, log_n: int, chunks: int):
        chunks = self.chunks or chunks
        folder = self._run("backward", u, kf, log_n, chunks, dy=dy)
        du = self._load(folder, "du", u)
        raw = np.fromfile(folder / "partial.bin", dtype="<f4").reshape(chunks, *kf.shape, 2)
        shutil.rmtree(folder)
        return du, torch.view_as_complex(torch.from_numpy(raw.copy()))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("length,rev,chunks", [(1, True, None), (5, True, None), (32, False, None),
                                               (100, True, 2), (1000, True, None), (2048, True, 3),
                                               (3001, True, None), (8192, True, 2)])
def test_emulated_kernels_match_float64_fft(emulator, length, rev, chunks, dtype, tol):
    g = torch.Generator().manual_seed(length)
    u = torch.randn(3, 2, length, generator=g).to(dtype)  # 3 rows: the forward pairs rows, one left alone
    k = torch.randn(2, length + 3, generator=g) / length**0.5  # filters may be longer than L
    k_rev = torch.randn(2, length, generator=g) / length**0.5 if rev else None
    leaves = [t.clone().requires_grad_() for t in (u, k) + ((k_rev,) if rev else ())]
    y = fftconv_cuda.fused_fft_conv(EmulatedExtension(emulator, chunks), *leaves, *([] if rev else [None]))
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    y_ref = torch_fft_conv(*ref_leaves, *([] if rev else [None]))
    assert y.dtype == dtype and relative_error(y, y_ref) < tol
    dy = torch.randn(y.shape, generator=g)
    got = torch.autograd.grad(y, leaves, dy.to(dtype))
    ref = torch.autograd.grad(y_ref, ref_leaves, dy.to(dtype).double(), allow_unused=True)
    for name, a, b, leaf in zip(("u", "k", "k_rev"), got, ref, leaves):
        assert a.dtype == leaf.dtype
        if b is None:  # L = 1: the reverse filter has no tap in range
            assert torch.all(a == 0)
        else:
            assert relative_error(a, b) < tol, f"grad {name}: relative error {relative_error(a, b):.2e}"
