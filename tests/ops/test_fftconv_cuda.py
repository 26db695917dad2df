"""The fused FFT-convolution kernel: its autograd wrapper on CPU, the kernel itself on a GPU.

CPU tests drive ``FusedFFTConv`` with ``ReferenceExtension``, a float64 torch implementation of the
kernel's contract (``csrc/fftconv/fftconv.h``) that uses the kernel's own tricks: two rows per complex
transform in the forward, ``dy + i*u`` split by symmetry in the backward, per-chunk filter gradients.
GPU tests compare the real kernel with the torch.fft backend, outputs and every input gradient,
as the relative error ||a - b|| / ||b||: 1e-5 in float32 and 1e-2 in bfloat16, lengths 128..8192.
"""

from __future__ import annotations

import pytest
import torch

from bertforge.ops import fftconv, fftconv_cuda
from bertforge.ops.fftconv import direct_conv, fft_conv, torch_fft_conv

gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (kernel tests)")


class ReferenceExtension:
    """The kernel's contract in float64 torch: ``forward(u, kf, log_n)``, ``backward(dy, u, kf, log_n, chunks)``."""

    @staticmethod
    def _full(kf: torch.Tensor, n: int) -> torch.Tensor:
        return torch.cat([kf, kf[:, 1 : n - n // 2].flip(-1).conj()], dim=-1)  # Hermitian extension to n bins

    def forward(self, u: torch.Tensor, kf: torch.Tensor, log_n: int) -> torch.Tensor:
        n, length = 1 << log_n, u.shape[-1]
        rows = torch.cat([u, u.new_zeros(u.shape[0] % 2, *u.shape[1:])]).double()
        z = torch.complex(rows[0::2], rows[1::2])  # rows a + i*b share one transform
        out = torch.fft.ifft(torch.fft.fft(z, n=n) * self._full(kf.to(torch.complex128), n), n=n)[..., :length]
        y = torch.stack([out.real, out.imag], dim=1).reshape(-1, *u.shape[1:])[: u.shape[0]]
        return y.to(u.dtype)

    def backward(self, dy: torch.Tensor, u: torch.Tensor, kf: torch.Tensor, log_n: int, chunks: int):
        n, length = 1 << log_n, u.shape[-1]
        big = torch.fft.fft(torch.complex(dy.double(), u.double()), n=n)  # Z = DY + i U
        mirror = big[..., (-torch.arange(n)) % n].conj()
        dy_hat, u_hat = (big + mirror) / 2, (big - mirror) / 2j
        h = self._full(kf.to(torch.complex128), n)
        du = torch.fft.ifft(dy_hat * h.conj(), n=n).real[..., :length].to(u.dtype)
        grad = (dy_hat * u_hat.conj())[..., : n // 2 + 1]
        partial = torch.stack([grad[c::chunks].sum(0) for c in range(chunks)])
        return du, partial.to(kf.dtype)


def _inputs(batch, channels, length, dtype=torch.float64, device="cpu", rev=True):
    g = torch.Generator().manual_seed(length)
    make = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)  # noqa: E731
    u = make(batch, channels, length)
    k, k_rev = make(channels, length) / length**0.5, make(channels, length) / length**0.5
    return u, k, (k_rev if rev else None)


@pytest.mark.parametrize("length", [1, 2, 31, 64, 100])
def test_half_spectrum_holds_both_directions(length):
    u, k, k_rev = _inputs(3, 4, length)
    log_n = fftconv_cuda.transform_log_n(length)
    assert (1 << log_n) >= 2 * length - 1 and log_n >= fftconv_cuda.MIN_LOG_N
    kf = fftconv_cuda.filter_half_spectrum(k, k_rev, length, log_n)
    assert kf.dtype == torch.complex64 and kf.shape == (4, (1 << log_n) // 2 + 1)
    y = ReferenceExtension().forward(u, kf, log_n)
    torch.testing.assert_close(y, direct_conv(u, k, k_rev), rtol=0, atol=1e-5)  # kf is complex64


@pytest.mark.parametrize("batch,rev", [(1, True), (4, True), (5, False)])
def test_fused_function_forward_and_gradients(batch, rev):
    u, k, k_rev = _inputs(batch, 3, 37, rev=rev)
    k = torch.cat([k, torch.randn(3, 5, dtype=torch.float64)], dim=-1)  # filters may be longer than L
    leaves = [t.clone().requires_grad_() for t in (u, k) + ((k_rev,) if rev else ())]
    ext = ReferenceExtension()
    y = fftconv_cuda.fused_fft_conv(ext, leaves[0], leaves[1], leaves[2] if rev else None)
    expect = direct_conv(u, k, k_rev)
    torch.testing.assert_close(y, expect, rtol=0, atol=1e-5)
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, leaves, dy)
    ref_leaves = [t.clone().requires_grad_() for t in (u, k) + ((k_rev,) if rev else ())]
    ref = torch.autograd.grad(direct_conv(*ref_leaves, *([] if rev else [None])), ref_leaves, dy)
    for name, a, b in zip(("u", "k", "k_rev"), got, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4, msg=f"grad of {name}")
    assert torch.all(got[1][:, 37:] == 0)  # taps beyond L get no gradient


def test_kernel_supports_names_the_reason():
    u, k, _ = _inputs(1, 2, 8, dtype=torch.float32)
    assert fftconv_cuda.kernel_supports(u, k) is None
    assert "dtype" in fftconv_cuda.kernel_supports(u.double(), k)
    long_u = torch.zeros(1, 2, fftconv_cuda.MAX_LENGTH + 1)
    assert "8192" in fftconv_cuda.kernel_supports(long_u, k)


def test_auto_on_gpu_without_kernel_notes_once(caplog, monkeypatch):
    monkeypatch.setattr(fftconv_cuda, "MODULE", "bertforge_no_such_module")
    monkeypatch.delenv(fftconv_cuda.JIT_ENV, raising=False)
    fftconv._note.cache_clear()
    if fftconv_cuda._jit_module.cache_info().currsize:
        pytest.skip("a JIT build is already loaded in this process")
    for _ in range(3):
        assert fftconv.resolve("auto", torch.device("cuda")) == "torch"
    err = caplog.text
    assert err.count("not built") == 1 and "make kernel" in err


# ---- GPU: the real kernel ---------------------------------------------------------------------


def _kernel():
    ext, how = fftconv_cuda.load_extension(True)
    if ext is None:
        pytest.fail(f"fused kernel unavailable on a GPU machine: {how}")
    return ext


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64 (the kernel tests' error measure)."""
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("length", [128, 1000, 2048, 3001, 4096, 8192])
@pytest.mark.parametrize("rev", [True, False])
def test_kernel_matches_torch_fft(length, dtype, tol, rev):
    ext = _kernel()
    u, k, k_rev = _inputs(3, 48, length, dtype=torch.float32, device="cuda", rev=rev)
    u = u.to(dtype)
    ours = [t.clone().requires_grad_() for t in (u, k) + ((k_rev,) if rev else ())]
    ref = [t.clone().requires_grad_() for t in (u, k) + ((k_rev,) if rev else ())]
    y = fftconv_cuda.fused_fft_conv(ext, ours[0], ours[1], ours[2] if rev else None)
    y_ref = torch_fft_conv(ref[0], ref[1], ref[2] if rev else None)
    assert y.dtype == dtype and relative_error(y, y_ref) < tol
    dy = torch.randn_like(y_ref)
    for name, a, b in zip(("u", "k", "k_rev"), torch.autograd.grad(y, ours, dy), torch.autograd.grad(y_ref, ref, dy)):
        error = relative_error(a, b)
        assert a.dtype == b.dtype and error < tol, f"grad {name}: relative error {error:.2e}"


@gpu
@needs_cuda
def test_auto_backend_uses_kernel_and_falls_back_past_8192(caplog):
    _kernel()
    u, k, k_rev = _inputs(2, 8, 300, dtype=torch.float32, device="cuda")
    assert fftconv.resolve("auto", u.device) == "cuda"
    assert relative_error(fft_conv(u, k, k_rev), torch_fft_conv(u, k, k_rev)) < 1e-5
    fftconv._note.cache_clear()
    long_u = torch.randn(1, 2, fftconv_cuda.MAX_LENGTH + 8, device="cuda")
    long_k = torch.randn(2, long_u.shape[-1], device="cuda")
    torch.testing.assert_close(fft_conv(long_u, long_k, backend="cuda"), torch_fft_conv(long_u, long_k))
    assert "8192" in caplog.text


@gpu
@needs_cuda
def test_m2_train_step_same_with_kernel_and_torch_fft():
    from bertforge.models.m2.config import M2BertConfig
    from bertforge.models.m2.model import M2BertForMaskedLM

    _kernel()
    grads = {}
    for backend in ("torch", "cuda"):
        torch.manual_seed(0)
        cfg = M2BertConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           max_position_embeddings=512, hidden_dropout=0.0, fftconv_backend=backend)
        model = M2BertForMaskedLM(cfg).cuda()
        ids = torch.randint(5, 128, (4, 512), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        loss = model(ids, attention_mask=torch.ones_like(ids), labels=ids).loss
        loss.backward()
        grads[backend] = (loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()
                                          if p.grad is not None})
    (loss_t, g_t), (loss_c, g_c) = grads["torch"], grads["cuda"]
    assert abs(float(loss_t - loss_c)) < 1e-4
    for name in g_t:
        assert relative_error(g_c[name], g_t[name]) < 1e-4, name
