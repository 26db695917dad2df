"""Long convolution along the sequence axis, behind one function with interchangeable backends.

``fft_conv(u, k, k_rev)`` convolves every channel of ``u`` ``(..., C, L)`` with its own filter:

    y[t] = sum_{d=0}^{L-1} k[d] * u[t - d]            (forward / causal part)
         + sum_{d=1}^{L-1} k_rev[d - 1] * u[t + d]    (reverse part, when ``k_rev`` is given)

Out-of-range positions count as zero, so the result is a *linear* (not circular) convolution:
the FFT backend transforms at a length of at least ``2L``. Backends, one signature each:

- ``direct``: float64 O(L^2) loop over lags, the reference for tests;
- ``torch``: ``torch.fft`` (CPU and GPU), the default where no kernel is built;
- ``cuda``: the fused kernel in ``csrc/fftconv`` (forward and backward; see ``fftconv_cuda``), picked
  automatically for CUDA tensors when it is built; where it is not built, cannot load, or cannot take
  the input (CPU tensors, more than 8192 tokens) the torch backend runs instead with a one-line note.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from types import ModuleType

import torch

from bertforge.ops import fftconv_cuda

log = logging.getLogger(__name__)

BACKENDS = ("auto", "direct", "torch", "cuda")


def _check(u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None) -> int:
    length = u.shape[-1]
    for name, kernel in (("k", k), ("k_rev", k_rev)):
        if kernel is not None and (kernel.shape[-1] < length or kernel.shape[-2] != u.shape[-2]):
            raise ValueError(f"fft_conv: {name} has shape {tuple(kernel.shape)}; "
                             f"expected (C={u.shape[-2]}, >= {length})")
    return length


def direct_conv(u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: the sums above computed lag by lag in float64, returned in ``u``'s dtype."""
    length = _check(u, k, k_rev)
    x, kf = u.double(), k[..., :length].double()  # (..., C, L), (C, L)
    y = torch.zeros_like(x)
    for d in range(length):
        y[..., d:] += kf[:, d : d + 1] * x[..., : length - d]
    if k_rev is not None:
        kr = k_rev.double()
        for d in range(1, length):
            y[..., : length - d] += kr[:, d - 1 : d] * x[..., d:]
    return y.to(u.dtype)


def fft_size(length: int) -> int:
    """The transform length: the smallest power of two >= 2 * length (linear, not circular, conv)."""
    return 1 << max(1, (2 * length - 1).bit_length())


def two_sided_kernel(k: torch.Tensor, k_rev: torch.Tensor | None, length: int, n: int,
                     dtype: torch.dtype) -> torch.Tensor:
    """The circular kernel of both directions for a transform of size ``n >= 2 * length - 1``.

    ``(C, L)`` lags ``0 .. L-1`` of ``k``, and when ``k_rev`` is given the reverse lags at the end
    (circular lag ``n - d`` is lag ``-d``), making it ``(C, n)``; differentiable.
    """
    kernel = k[..., :length].to(dtype)
    if k_rev is None or length == 1:
        return kernel
    gap = kernel.new_zeros(*kernel.shape[:-1], n - 2 * length + 1)
    return torch.cat([kernel, gap, k_rev[..., : length - 1].to(dtype).flip(-1)], dim=-1)


def torch_fft_conv(u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.fft`` backend: one real FFT of the input and of a combined two-sided kernel.

    The reverse filter sits at the end of the kernel (circular lag ``n - d`` is lag ``-d``), so both
    directions cost one pointwise product. Half-precision inputs are transformed in float32.
    """
    length = _check(u, k, k_rev)
    n = fft_size(length)
    compute = u.dtype if u.dtype in (torch.float32, torch.float64) else torch.float32
    kernel = two_sided_kernel(k, k_rev, length, n, compute)
    y = torch.fft.irfft(torch.fft.rfft(u.to(compute), n=n) * torch.fft.rfft(kernel, n=n), n=n)
    return y[..., :length].to(u.dtype)


@functools.cache
def _note(why: str) -> None:
    """Say once per reason that the torch backend runs instead of the CUDA kernel."""
    log.warning("fft_conv: %s; using the torch.fft backend", why)


def _kernel_or_torch(ext: ModuleType, u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None) -> torch.Tensor:
    """The loaded kernel ``ext`` where it can take these inputs, else the torch backend (noted once)."""
    _check(u, k, k_rev)
    why = fftconv_cuda.kernel_supports(u, k)
    if why is not None:
        _note(why)
        return torch_fft_conv(u, k, k_rev)
    return fftconv_cuda.fused_fft_conv(ext, u, k, k_rev)


def _cuda_implementation(device: torch.device) -> Callable[..., torch.Tensor]:
    """The ``cuda`` backend for tensors on ``device``: the kernel (JIT-compiled if need be), or torch, noted."""
    if device.type != "cuda":
        _note("CUDA kernel given CPU tensors")
        return torch_fft_conv
    ext, how = fftconv_cuda.load_extension(True)
    if ext is None:
        _note(f"CUDA kernel {how}")
        return torch_fft_conv
    return functools.partial(_kernel_or_torch, ext)


def cuda_fft_conv(u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None = None) -> torch.Tensor:
    """The fused CUDA kernel (JIT-compiled if need be); the torch backend, noted once, where it cannot run."""
    return _cuda_implementation(u.device)(u, k, k_rev)


IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "direct": direct_conv,
    "torch": torch_fft_conv,
    "cuda": cuda_fft_conv,
}


def resolve(backend: str, device: torch.device) -> str:
    """The backend ``auto`` stands for on ``device``: cuda when the kernel is built (or JIT is on), else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown fft_conv backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if device.type != "cuda":
        return "torch"
    ext, how = fftconv_cuda.load_extension(False)
    if ext is None:
        _note(f"CUDA kernel {how}")
        return "torch"
    return "cuda"


def implementation(backend: str, device: torch.device) -> Callable[..., torch.Tensor]:
    """The function that runs ``backend`` for tensors on ``device`` (extension loading done here, once)."""
    name = resolve(backend, device)
    return _cuda_implementation(device) if name == "cuda" else IMPLEMENTATIONS[name]


class FFTConv:
    """``fft_conv`` with its backend resolved once per device type and remembered.

    Models are built before they are moved to their device, so the choice (and the CUDA extension's
    loading) happens at the first call on a new device type; later calls are one dict lookup. Copies and
    pickles drop the choices made (a loaded extension module cannot be copied).
    """

    def __init__(self, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown fft_conv backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        self._chosen: dict[str, Callable[..., torch.Tensor]] = {}

    def __call__(self, u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None = None) -> torch.Tensor:
        """Same as ``fft_conv(u, k, k_rev, backend)``."""
        fn = self._chosen.get(u.device.type)
        if fn is None:
            fn = self._chosen[u.device.type] = implementation(self.backend, u.device)
        return fn(u, k, k_rev)

    def __getstate__(self) -> dict:
        return {"backend": self.backend, "_chosen": {}}

    def __repr__(self) -> str:
        return f"FFTConv({self.backend!r})"


def fft_conv(u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor | None = None,
             backend: str = "auto") -> torch.Tensor:
    """Convolve ``u`` ``(..., C, L)`` with per-channel filters ``k`` (and ``k_rev``) ``(C, >= L)``.

    Returns ``(..., C, L)`` in ``u``'s dtype; see the module docstring for the exact sums. Resolves
    ``backend`` on every call: models hold an ``FFTConv`` instead.
    """
    return implementation(backend, u.device)(u, k, k_rev)
