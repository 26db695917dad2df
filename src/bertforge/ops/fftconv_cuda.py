"""The fused CUDA FFT-convolution kernel (``csrc/fftconv``): loading it and its autograd function.

The extension module ``bertforge_fftconv_cuda`` comes from one of two builds:

- ahead of time, through the package build: ``make kernel`` (``BERTFORGE_BUILD_CUDA=1 pip install
  --no-build-isolation -e .``), needs an nvcc matching torch's CUDA;
- just in time, with ``torch.utils.cpp_extension.load`` on first use (cached by torch under
  ``~/.cache/torch_extensions``): when the backend is set to ``cuda`` explicitly, or with
  ``BERTFORGE_JIT_KERNELS=1`` for the ``auto`` backend.

The kernel transforms at ``n = 2^log_n >= 2L - 1`` with ``6 <= log_n <= 14``, i.e. sequences of up to
8192 tokens; longer ones use the ``torch.fft`` backend.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from types import ModuleType

import torch

from bertforge.ops import fftconv  # two_sided_kernel, looked up at call time (fftconv imports this module)

MODULE = "bertforge_fftconv_cuda"
MIN_LOG_N, MAX_LOG_N = 6, 14
MAX_LENGTH = 1 << (MAX_LOG_N - 1)
JIT_ENV = "BERTFORGE_JIT_KERNELS"


def source_dir() -> Path:
    """``csrc/fftconv`` of the source tree this package was installed from (editable installs)."""
    return Path(__file__).resolve().parents[3] / "csrc" / "fftconv"


def sources() -> list[str]:
    """The binding and kernel sources, binding first."""
    return [str(source_dir() / "fftconv_binding.cpp"), str(source_dir() / "fftconv_kernel.cu")]


def transform_log_n(length: int) -> int:
    """log2 of the transform size the kernel uses for ``length`` (a linear, not circular, convolution)."""
    return max(MIN_LOG_N, (2 * length - 1).bit_length())


def jit_build(verbose: bool = False) -> ModuleType:
    """Compile and import the extension with ``torch.utils.cpp_extension.load`` (cached between runs)."""
    from torch.utils.cpp_extension import load

    missing = [s for s in sources() if not os.path.exists(s)]
    if missing:
        raise FileNotFoundError(f"kernel source {missing[0]} not found (JIT needs an editable install of the repo)")
    return load(name=MODULE, sources=sources(), extra_cflags=["-O3"], extra_cuda_cflags=["-O3", "-std=c++17"],
                verbose=verbose)


@functools.cache
def _jit_module() -> tuple[ModuleType | None, str]:
    if not torch.cuda.is_available():
        return None, "JIT build skipped: no CUDA device"
    try:
        return jit_build(), "jit"
    except Exception as exc:  # a failed compile must not stop training: the torch backend takes over
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"JIT build failed ({first})"


def load_extension(allow_jit: bool) -> tuple[ModuleType | None, str]:
    """``(module, how)``: the prebuilt module, else a JIT build when allowed; ``(None, why)`` otherwise."""
    try:
        return importlib.import_module(MODULE), "prebuilt"
    except ImportError:
        pass
    if allow_jit or os.environ.get(JIT_ENV) == "1" or _jit_module.cache_info().currsize:
        return _jit_module()
    return None, f"not built (run `make kernel`, or set {JIT_ENV}=1 to compile it on first use)"


def filter_half_spectrum(k: torch.Tensor, k_rev: torch.Tensor | None, length: int, log_n: int) -> torch.Tensor:
    """complex64 ``(C, n/2 + 1)``: rfft of the two-sided circular kernel (reverse lags at the end)."""
    n = 1 << log_n
    return torch.fft.rfft(fftconv.two_sided_kernel(k, k_rev, length, n, torch.float32), n=n)


def backward_chunks(rows: int, channels: int, device: torch.device) -> int:
    """Batch chunks of the backward kernel: enough (channel, chunk) blocks to fill the GPU twice."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    return max(1, min(rows, -(-2 * sms // channels), 65535))


class FusedFFTConv(torch.autograd.Function):
    """``y = fft_conv(u, k, k_rev)`` with the fused kernel in both directions; grads for u, k and k_rev."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None, ext: ModuleType) -> torch.Tensor:
        channels, length = u.shape[-2], u.shape[-1]
        u3 = u.reshape(-1, channels, length).contiguous()
        log_n = transform_log_n(length)
        with torch.no_grad():
            kf = filter_half_spectrum(k.detach(), None if k_rev is None else k_rev.detach(), length, log_n)
        y = ext.forward(u3, kf, log_n)
        ctx.save_for_backward(u3, kf)
        ctx.shape, ctx.log_n, ctx.ext = u.shape, log_n, ext
        ctx.k_meta = (k.shape, k.dtype)
        ctx.k_rev_meta = None if k_rev is None else (k_rev.shape, k_rev.dtype)
        return y.view(u.shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        u3, kf = ctx.saved_tensors
        rows, channels, length = u3.shape
        n = 1 << ctx.log_n
        dy3 = dy.reshape(u3.shape).to(u3.dtype).contiguous()
        chunks = backward_chunks(rows, channels, u3.device)
        du, partial = ctx.ext.backward(dy3, u3, kf, ctx.log_n, chunks)
        dh = torch.fft.irfft(partial.sum(0), n=n)  # (C, n): gradient of the two-sided kernel
        dk = dk_rev = None
        if ctx.needs_input_grad[1]:
            shape, dtype = ctx.k_meta
            dk = dh.new_zeros(shape)
            dk[:, :length] = dh[:, :length]
            dk = dk.to(dtype)
        if ctx.k_rev_meta is not None and ctx.needs_input_grad[2]:
            shape, dtype = ctx.k_rev_meta
            dk_rev = dh.new_zeros(shape)
            if length > 1:
                dk_rev[:, : length - 1] = dh[:, n - length + 1 :].flip(-1)
            dk_rev = dk_rev.to(dtype)
        return du.view(ctx.shape), dk, dk_rev, None


def kernel_supports(u: torch.Tensor, k: torch.Tensor) -> str | None:
    """None when the kernel can take these inputs, else the reason it cannot."""
    if u.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return f"dtype {u.dtype} not supported by the kernel"
    if u.shape[-1] > MAX_LENGTH:
        return f"sequence length {u.shape[-1]} > {MAX_LENGTH} (the kernel's largest transform)"
    if k.dim() != 2:
        return "filters must be (C, L)"
    if u.is_cuda:
        n = 1 << transform_log_n(u.shape[-1])
        needed = 8 * (n + n // 16 + n // 2 + 1)  # the backward kernel's shared memory (csrc/fftconv), the larger
        limit = getattr(torch.cuda.get_device_properties(u.device), "shared_memory_per_block_optin", None)
        if limit is not None and needed > limit:
            return (f"length {u.shape[-1]} needs {needed // 1024} KiB of shared memory per block, "
                    f"the GPU allows {limit // 1024}")
    return None


def fused_fft_conv(ext: ModuleType, u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None) -> torch.Tensor:
    """Run the kernel (autograd-aware) on CUDA tensors ``u`` ``(..., C, L)``, ``k``/``k_rev`` ``(C, >= L)``."""
    return FusedFFTConv.apply(u, k, k_rev, ext)
