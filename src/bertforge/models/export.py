"""Write a trained model as a Hugging Face folder (config, weights, tokenizer) that transformers loads: the family's
transformers class where transformers has one, else bertforge's own modeling code (``trust_remote_code``)."""

from __future__ import annotations

import copy
import inspect
import os
from typing import Any

import torch

from bertforge.models.params import peel


def save_hf_folder(hf_model: Any, tokenizer: Any, folder: str) -> str:
    """Write a transformers model (safetensors weights, config) and its tokenizer, when given, to ``folder``."""
    os.makedirs(folder, exist_ok=True)
    hf_model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        fitted_tokenizer(hf_model, tokenizer).save_pretrained(folder)
    return folder


def fitted_tokenizer(hf_model: Any, tokenizer: Any) -> Any:
    """``tokenizer``, or a copy that stops returning ``token_type_ids`` when ``hf_model`` has no such input (ModernBERT
    with a BERT tokenizer), so that ``hf_model(**tokenizer(text))`` works with the saved folder."""
    names = list(getattr(tokenizer, "model_input_names", []))
    if "token_type_ids" not in names or "token_type_ids" in inspect.signature(hf_model.forward).parameters:
        return tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.model_input_names = [n for n in names if n != "token_type_ids"]
    tokenizer.init_kwargs["model_input_names"] = tokenizer.model_input_names  # saved in tokenizer_config.json
    return tokenizer


def writes_remote_code(composer_model: torch.nn.Module) -> bool:
    """Whether :func:`export_hf` writes ``composer_model`` with bertforge's own modeling code: a FlexBERT or M2-BERT
    masked LM that transformers has no class for (the model's own export refuses) and no sentence-pair head."""
    from bertforge.export.remote_code import remote_code_family  # lazy: that module builds on this one

    composer_model = peel(composer_model)
    own = getattr(composer_model, "export_refusal", None)
    return (own is not None and own() is not None and getattr(composer_model, "nsp_head", None) is None
            and remote_code_family(getattr(composer_model, "model", None)) is not None)


def export_refusal(composer_model: torch.nn.Module) -> str | None:
    """Why :func:`export_hf` cannot write this model as a transformers folder (None: it can), before training."""
    composer_model = peel(composer_model)
    if writes_remote_code(composer_model):
        return None
    if hasattr(composer_model, "export_refusal"):
        return composer_model.export_refusal()
    if hasattr(getattr(composer_model, "model", None), "save_pretrained"):
        return None
    return f"{type(composer_model).__name__} has no Hugging Face model to export"


def can_export_hf(composer_model: torch.nn.Module) -> bool:
    """Whether :func:`export_hf` can write this model as a transformers folder."""
    return export_refusal(composer_model) is None


def export_hf(composer_model: torch.nn.Module, folder: str) -> str:
    """Save ``composer_model``'s transformers model and tokenizer to ``folder``; return the folder. A family
    transformers lacks is written with bertforge's modeling code (:func:`writes_remote_code`)."""
    composer_model = peel(composer_model)
    if writes_remote_code(composer_model):
        from bertforge.export.remote_code import save_remote_code

        return save_remote_code(composer_model.model, getattr(composer_model, "tokenizer", None), folder)
    if hasattr(composer_model, "export_hf"):
        return composer_model.export_hf(folder)
    hf_model = getattr(composer_model, "model", None)
    if hf_model is None or not hasattr(hf_model, "save_pretrained"):
        raise TypeError(f"{type(composer_model).__name__} has no Hugging Face model to export")
    return save_hf_folder(hf_model, getattr(composer_model, "tokenizer", None), folder)
