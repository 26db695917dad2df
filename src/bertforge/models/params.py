"""What a model is made of: its wrappers peeled off, and its parameters counted (one rule for every caller)."""

from __future__ import annotations

from typing import Any

import torch


def peel(model: Any) -> Any:
    """``model`` without distributed wrappers (DDP's ``.module``), e.g. the ComposerModel."""
    while isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def inner_module(model: Any) -> Any:
    """The innermost module: a ComposerModel's ``.model`` (e.g. the transformers model), else ``model``."""
    model = peel(model)
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, parameters outside ``nn.Embedding`` tables); tied weights count once."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a shared tensor once
    tables = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return total, total - sum(w.numel() for w in tables.values())


def describe_parameters(model: torch.nn.Module) -> str:
    """'149.7M parameters (110.5M non-embedding)', as :func:`count_params` counts them."""
    total, nonembedding = count_params(model)
    return f"{total / 1e6:.1f}M parameters ({nonembedding / 1e6:.1f}M non-embedding)"
