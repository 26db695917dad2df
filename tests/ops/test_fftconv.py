"""FFT long convolution: the torch.fft backend equals the direct float64 reference, both directions, with gradients."""

from __future__ import annotations

import pytest
import torch

from bertforge.ops import fftconv
from bertforge.ops.fftconv import direct_conv, fft_conv, fft_size, torch_fft_conv

LENGTHS = [1, 2, 3, 5, 127, 128, 129, 1000, 4096]


def _inputs(length: int, channels: int = 2, batch: int = 1, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, channels, length, generator=gen, dtype=torch.float64)
    k = torch.randn(channels, length, generator=gen, dtype=torch.float64) / length**0.5
    k_rev = torch.randn(channels, length, generator=gen, dtype=torch.float64) / length**0.5
    return u, k, k_rev


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_fft_matches_direct_reference(length, bidirectional):
    u, k, k_rev = _inputs(length)
    k_rev = k_rev if bidirectional else None
    torch.testing.assert_close(torch_fft_conv(u, k, k_rev), direct_conv(u, k, k_rev), rtol=0, atol=1e-10)


def test_reference_is_the_documented_sum():
    u, k, k_rev = _inputs(6, channels=1)
    y = direct_conv(u, k, k_rev)[0, 0]
    x, f, r = u[0, 0], k[0], k_rev[0]
    t = 2  # y[2] = k0 x2 + k1 x1 + k2 x0 + r0 x3 + r1 x4 + r2 x5
    want = f[0] * x[2] + f[1] * x[1] + f[2] * x[0] + r[0] * x[3] + r[1] * x[4] + r[2] * x[5]
    torch.testing.assert_close(y[t], want)


def test_fft_length_makes_the_convolution_linear():
    for length in LENGTHS:
        assert fft_size(length) >= 2 * length
    # a long filter must not wrap around: the last output only sees the past, the first only the future
    u, k, k_rev = _inputs(64)
    u[..., 1:] = 0  # only the first token is non-zero
    y = torch_fft_conv(u, k, k_rev)
    torch.testing.assert_close(y[0], k * u[0, :, :1], rtol=0, atol=1e-12)


def test_gradients_flow():
    u, k, k_rev = (t.clone().requires_grad_() for t in _inputs(6, channels=2, batch=2))
    assert torch.autograd.gradcheck(torch_fft_conv, (u, k, k_rev), fast_mode=True)
    assert torch.autograd.gradcheck(torch_fft_conv, (u[:1, :1, :3], k[:1, :3], k_rev[:1, :3]))  # full Jacobian


def test_float32_and_half_inputs_keep_their_dtype():
    u, k, k_rev = (t.float() for t in _inputs(50))
    torch.testing.assert_close(fft_conv(u, k, k_rev), direct_conv(u, k, k_rev), rtol=0, atol=1e-5)
    assert torch_fft_conv(u.bfloat16(), k, k_rev).dtype == torch.bfloat16


def test_backend_choice_and_cuda_fallback(caplog):
    u, k, _ = _inputs(10)
    assert fftconv.resolve("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="unknown fft_conv backend"):
        fft_conv(u, k, backend="cufft")
    fftconv._note.cache_clear()
    torch.testing.assert_close(fft_conv(u, k, backend="cuda"), torch_fft_conv(u, k))  # falls back on CPU
    assert caplog.text.count("using the torch.fft backend") == 1
