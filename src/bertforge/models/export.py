"""Write a trained model as a Hugging Face folder (config, weights, tokenizer) that transformers loads."""

from __future__ import annotations

import os
from typing import Any

import torch

from bertforge.models.params import peel


def save_hf_folder(hf_model: Any, tokenizer: Any, folder: str) -> str:
    """Write a transformers model (safetensors weights, config) and its tokenizer, when given, to ``folder``."""
    os.makedirs(folder, exist_ok=True)
    hf_model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def export_refusal(composer_model: torch.nn.Module) -> str | None:
    """Why :func:`export_hf` cannot write this model as a transformers folder (None: it can), before training."""
    composer_model = peel(composer_model)
    if hasattr(composer_model, "export_refusal"):
        return composer_model.export_refusal()
    if hasattr(getattr(composer_model, "model", None), "save_pretrained"):
        return None
    return f"{type(composer_model).__name__} has no Hugging Face model to export"


def can_export_hf(composer_model: torch.nn.Module) -> bool:
    """Whether :func:`export_hf` can write this model as a transformers folder."""
    return export_refusal(composer_model) is None


def export_hf(composer_model: torch.nn.Module, folder: str) -> str:
    """Save ``composer_model``'s transformers model and tokenizer to ``folder``; return the folder."""
    composer_model = peel(composer_model)
    if hasattr(composer_model, "export_hf"):
        return composer_model.export_hf(folder)
    hf_model = getattr(composer_model, "model", None)
    if hf_model is None or not hasattr(hf_model, "save_pretrained"):
        raise TypeError(f"{type(composer_model).__name__} has no Hugging Face model to export")
    return save_hf_folder(hf_model, getattr(composer_model, "tokenizer", None), folder)
