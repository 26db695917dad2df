"""StableAdamW (our wrapper of torch-optimi's) against a float64 step-by-step reference of the algorithm.

Reference (Wortsman et al. 2023, with optimi's eps convention): Adam's bias-corrected moments m_hat,
v_hat; lr_t = lr / max(1, RMS(g^2 / max(v_hat, eps^2))); p <- p * (1 - wd * lr_t / max_lr) -
lr_t * m_hat / (sqrt(v_hat) + eps), where max_lr is the group's own starting lr. Tolerances: float64
parameters agree to 1e-12 relative, float32 ones to 2e-6 absolute on O(1) values (float32 rounding;
measured 2e-7), and on a GPU (optimi's Triton kernels) to 1e-5 absolute.
"""

from __future__ import annotations

import pytest
import torch

from bertforge.optim.stable_adamw import StableAdamW

BETAS, EPS = (0.9, 0.98), 1e-6
SCHEDULE = [0.25, 0.5, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2]  # lr multiplier per step, as a scheduler would set
SPIKE_STEP = 5  # the gradient of the first tensor jumps 100x here, so its update is clipped
# (base lr, weight decay) per group; the second group has its own lr, like M2's filters
GROUPS = [(1e-2, 0.1), (3e-3, 0.05)]
SHAPES = [[(7, 5), (13,)], [(6,)]]


def _gradients(seed: int = 0) -> list[list[list[torch.Tensor]]]:
    """gradients[step][group][tensor], float64."""
    gen = torch.Generator().manual_seed(seed)
    steps = []
    for step in range(len(SCHEDULE)):
        grads = [[torch.randn(shape, generator=gen, dtype=torch.float64) for shape in shapes] for shapes in SHAPES]
        if step == SPIKE_STEP:
            grads[0][0] *= 100
        steps.append(grads)
    return steps


def reference(p0: torch.Tensor, grads: list[torch.Tensor], lr: float, wd: float) -> tuple[torch.Tensor, list[float]]:
    """Naive float64 StableAdamW on one tensor: its final value and the clipping ratio lr_t / lr per step."""
    (b1, b2), p = BETAS, p0.double().clone()
    m, v, ratios = torch.zeros_like(p), torch.zeros_like(p), []
    for t, (g, f) in enumerate(zip(grads, SCHEDULE), start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        rms = (g * g / v_hat.clamp(min=EPS**2)).mean().sqrt().item()
        lr_t = lr * f / max(1.0, rms)
        p = p * (1 - wd * lr_t / lr) - lr_t * m_hat / (v_hat.sqrt() + EPS)
        ratios.append(lr_t / (lr * f))
    return p, ratios


def _run(dtype: torch.dtype, device: str = "cpu", forbid_sync: bool = False):
    """Step StableAdamW through SCHEDULE on _gradients(); params[group][tensor] at the start and at the end.

    ``forbid_sync``: after the first step (state allocation), any host-device synchronisation raises."""
    gen = torch.Generator().manual_seed(1)
    starts = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes] for shapes in SHAPES]
    params = [[torch.nn.Parameter(p.to(device, dtype, copy=True)) for p in group] for group in starts]
    (lr, wd), (own_lr, own_wd) = GROUPS
    opt = StableAdamW([{"params": params[0], "weight_decay": wd},
                       {"params": params[1], "lr": own_lr, "weight_decay": own_wd}],
                      lr=lr, betas=BETAS, eps=EPS, weight_decay=wd)
    grads = [[[g.to(device, dtype) for g in group] for group in step] for step in _gradients()]
    try:
        for step, f in enumerate(SCHEDULE):
            for group, (base, _) in zip(opt.param_groups, GROUPS):
                group["lr"] = base * f
            for group_params, group_grads in zip(params, grads[step]):
                for p, g in zip(group_params, group_grads):
                    p.grad = g
            opt.step()
            if forbid_sync and step == 0:
                torch.cuda.set_sync_debug_mode("error")
    finally:
        if forbid_sync:
            torch.cuda.set_sync_debug_mode("default")
    return opt, starts, params


def _check_against_reference(starts, params, atol: float, rtol: float) -> None:
    grads, clipped = _gradients(), False
    for g, ((base, decay), group_params) in enumerate(zip(GROUPS, params)):
        for i, p in enumerate(group_params):
            expected, ratios = reference(starts[g][i], [grads[s][g][i] for s in range(len(SCHEDULE))], base, decay)
            clipped |= min(ratios) < 0.5
            torch.testing.assert_close(p.detach().cpu().double(), expected, rtol=rtol, atol=atol)
    assert clipped, "the spike should have been clipped at least 2x in the reference"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_naive_reference_per_group(dtype):
    opt, starts, params = _run(dtype)
    assert [group["triton"] for group in opt.param_groups] == [False, False]  # CPU tensors: optimi's torch path
    atol, rtol = (1e-14, 1e-12) if dtype == torch.float64 else (2e-6, 0.0)
    _check_against_reference(starts, params, atol, rtol)


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()), reason="needs a CUDA GPU "
                    "with bf16 (optimi's Triton kernels)")
def test_triton_path_on_gpu_matches_reference_without_host_sync():
    """On a GPU the clipping factor stays on the device: no step after the first synchronises with the host."""
    opt, starts, params = _run(torch.float32, "cuda", forbid_sync=True)
    assert [group["triton"] for group in opt.param_groups] == [True, True]
    _check_against_reference(starts, params, atol=1e-5, rtol=0.0)


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
