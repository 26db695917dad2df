"""StableAdamW: AdamW with per-tensor update clipping (Wortsman et al. 2023), as used by ModernBERT.

Each step's learning rate for a tensor is divided by ``max(1, RMS(g^2 / v_hat))``, which bounds
the update when the second-moment estimate lags behind a sudden gradient spike. Weight decay is
decoupled and scaled by ``lr / initial_lr`` like Composer's DecoupledAdamW.
"""

from __future__ import annotations

import torch


class StableAdamW(torch.optim.Optimizer):
    """AdamW with update clipping and decoupled weight decay."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                 weight_decay: float = 1e-5):
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid StableAdamW settings lr={lr} betas={betas} eps={eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, initial_lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step, grad = state["step"], p.grad
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                v_hat = exp_avg_sq / (1 - beta2**step)
                rms = (grad.square() / v_hat.clamp(min=group["eps"] ** 2)).mean().sqrt()
                lr = group["lr"] / max(1.0, rms.item())
                if group["weight_decay"]:
                    p.mul_(1 - group["weight_decay"] * group["lr"] / group["initial_lr"])
                denom = v_hat.sqrt().add_(group["eps"])
                p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        return loss
