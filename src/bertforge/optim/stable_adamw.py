"""StableAdamW: AdamW with per-tensor update clipping (Wortsman et al. 2023), ModernBERT's optimizer.

The algorithm is torch-optimi's ``StableAdamW``, the implementation ModernBERT trained with. On CUDA
GPUs with bf16 support it runs Triton kernels and the clipping factor never leaves the GPU; elsewhere
(CPU, older GPUs) optimi's torch path reads it with ``.item()`` per tensor. Per tensor and step ``t``:

    m_hat, v_hat = Adam's bias-corrected moments of the gradient g
    lr_t = lr / max(1, sqrt(mean(g^2 / max(v_hat, eps^2))))
    p <- p * (1 - weight_decay * lr_t / max_lr) - lr_t * m_hat / (sqrt(v_hat) + eps)

Weight decay is decoupled from the learning rate as in Composer's DecoupledAdamW: it follows the
schedule (``lr_t / max_lr``) but is not multiplied by the learning rate. ``max_lr`` is each group's
own starting lr (a group with its own ``lr``, e.g. M2's filters, decays relative to that lr), which
is also the ``initial_lr`` Composer's scheduler scales.
"""

from __future__ import annotations

from typing import Any

import optimi
from optimi.utils import _default_to_triton


class StableAdamW(optimi.StableAdamW):
    """optimi's StableAdamW with decoupled weight decay scaled per group by ``lr / (the group's own lr)``."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-6,
                 weight_decay: float = 1e-5):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, decouple_lr=True)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group whose weight decay is relative to its own lr (optimi's default: the global lr)."""
        param_group.setdefault("max_lr", param_group.get("lr", self.defaults["lr"]))
        super().add_param_group(param_group)

    def step(self, closure=None, param=None):
        """One step; on the first, each group picks the Triton kernels only if its parameters live where they run.

        optimi 0.3.3 decides from an empty list (so: whenever Triton is installed, even for CPU tensors);
        the choice is made here instead, once the parameters are on their final device.
        """
        for group in self.param_groups:
            if not group["setup"] and group["triton"] is None and group["foreach"] is None:
                group["triton"] = bool(group["params"]) and _default_to_triton(group["params"])
        return super().step(closure, param)
