"""Write a trained model as a Hugging Face folder (config, weights, tokenizer) that transformers loads."""

from __future__ import annotations

import os

import torch


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The ComposerModel inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def can_export_hf(composer_model: torch.nn.Module) -> bool:
    """Whether :func:`export_hf` can write this model as a transformers folder."""
    composer_model = unwrap(composer_model)
    if hasattr(composer_model, "export_hf"):
        return getattr(composer_model, "exporter", None) is not None
    return hasattr(getattr(composer_model, "model", None), "save_pretrained")


def export_hf(composer_model: torch.nn.Module, folder: str) -> str:
    """Save ``composer_model``'s transformers model and tokenizer to ``folder``; return the folder."""
    composer_model = unwrap(composer_model)
    if hasattr(composer_model, "export_hf"):
        return composer_model.export_hf(folder)
    hf_model = getattr(composer_model, "model", None)
    if hf_model is None or not hasattr(hf_model, "save_pretrained"):
        raise TypeError(f"{type(composer_model).__name__} has no Hugging Face model to export")
    os.makedirs(folder, exist_ok=True)
    hf_model.save_pretrained(folder, safe_serialization=True)
    tokenizer = getattr(composer_model, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
