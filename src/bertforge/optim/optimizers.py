"""Optimizers by YAML name; each builder takes the model's named parameters first."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from composer.optim import DecoupledAdamW

from bertforge.optim.stable_adamw import StableAdamW
from bertforge.registry import optimizers

NO_DECAY_MARKERS = ("bias", "norm", "LayerNorm", "embeddings")


def param_groups(named_params: Iterable[tuple[str, torch.nn.Parameter]], weight_decay: float,
                 no_decay_norms_biases: bool) -> list[dict]:
    """Parameter groups: one per distinct (weight decay, per-parameter options) combination.

    With ``no_decay_norms_biases``, norms, biases and embeddings get no weight decay. A parameter
    may carry its own options in an ``_optim`` dict (e.g. M2's filter MLPs: ``{"lr": 1e-3,
    "weight_decay": 0.1}``); they override the defaults for its group.
    """
    groups: dict[tuple, dict] = {}
    for name, param in named_params:
        if not param.requires_grad:
            continue
        no_decay = no_decay_norms_biases and any(m in name for m in NO_DECAY_MARKERS)
        options = {"weight_decay": 0.0 if no_decay else weight_decay, **getattr(param, "_optim", {})}
        key = tuple(sorted(options.items()))
        groups.setdefault(key, {"params": [], **options})["params"].append(param)
    return list(groups.values())


@optimizers.register("decoupled_adamw")
def build_decoupled_adamw(
    params,
    lr: float = 5e-4,
    betas: list[float] = (0.9, 0.98),
    eps: float = 1e-6,
    weight_decay: float = 1e-5,
    no_decay_norms_biases: bool = False,
) -> torch.optim.Optimizer:
    """Composer's DecoupledAdamW: weight decay scaled by lr/initial_lr, independent of the gradient."""
    groups = param_groups(params, weight_decay, no_decay_norms_biases)
    return DecoupledAdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@optimizers.register("adamw")
def build_adamw(
    params,
    lr: float = 5e-4,
    betas: list[float] = (0.9, 0.98),
    eps: float = 1e-6,
    weight_decay: float = 0.01,
    no_decay_norms_biases: bool = False,
) -> torch.optim.Optimizer:
    """torch.optim.AdamW (weight decay multiplied by the learning rate)."""
    groups = param_groups(params, weight_decay, no_decay_norms_biases)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@optimizers.register("stable_adamw")
def build_stable_adamw(
    params,
    lr: float = 8e-4,
    betas: list[float] = (0.9, 0.98),
    eps: float = 1e-6,
    weight_decay: float = 1e-5,
    no_decay_norms_biases: bool = True,
) -> torch.optim.Optimizer:
    """StableAdamW (torch-optimi's update clipping + per-group decoupled weight decay), ModernBERT's optimizer."""
    groups = param_groups(params, weight_decay, no_decay_norms_biases)
    return StableAdamW(groups, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
