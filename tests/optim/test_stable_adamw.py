"""StableAdamW: equals plain Adam (no decay) when updates are not clipped, and clips spikes."""

from __future__ import annotations

import torch

from bertforge.optim.stable_adamw import StableAdamW


def test_matches_adam_without_clipping_or_decay():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(10))
    b = torch.nn.Parameter(a.detach().clone())
    ours = StableAdamW([a], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    ref = torch.optim.Adam([b], lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    g = torch.randn(10) * 1e-3  # a constant gradient keeps v_hat == g^2, so RMS(g^2 / v_hat) == 1: no clipping
    for _ in range(5):
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert not torch.equal(a.detach(), torch.zeros(10))


def test_clips_a_gradient_spike():
    p = torch.nn.Parameter(torch.zeros(100))
    opt = StableAdamW([p], lr=1.0, betas=(0.9, 0.999), eps=1e-12, weight_decay=0.0)
    for _ in range(20):
        p.grad = torch.full((100,), 1e-3)
        opt.step()
    before = p.detach().clone()
    p.grad = torch.full((100,), 10.0)  # a 10^4x spike: v_hat lags, so the raw Adam step would be huge
    opt.step()
    step = (p.detach() - before).abs().max().item()
    assert step < 1.5, step
