"""Load a Hugging Face masked-LM folder (ours or a published one) for sampling, and wrap any MLM module as the
sampler's ``(input_ids, attention_mask) -> logits`` callable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bertforge.data.tokenizer import load_tokenizer
from bertforge.errors import UserError
from bertforge.generation.sampler import ModelFn


def logits_fn(module: torch.nn.Module, vocab_size: int | None = None) -> ModelFn:
    """The sampler's model callable for a transformers ``*ForMaskedLM`` or one of our MLM modules: full logits
    (B, L, V) without gradients, cut to the tokenizer's ``vocab_size`` (padded vocabulary rows never win)."""

    def call(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = module(input_ids=input_ids, attention_mask=attention_mask)
        logits = out.logits if hasattr(out, "logits") else out[0]  # (B, L, V)
        return logits[..., :vocab_size] if vocab_size else logits

    return call


def model_max_length(config: Any) -> int | None:
    """The longest sequence the model takes (``max_position_embeddings``), or None when it does not say."""
    return getattr(config, "max_position_embeddings", None)


def check_mask_token(tokenizer: Any, where: str) -> int:
    """The tokenizer's mask token id; without one, a one-line error naming ``where``."""
    if tokenizer.mask_token_id is None:
        raise UserError(f"{where}: the tokenizer has no mask token; masked-diffusion sampling starts from mask "
                        "tokens: use a tokenizer with one (e.g. [MASK]) or add it and save the tokenizer there")
    return tokenizer.mask_token_id


def load_masked_lm(folder: str, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> tuple[torch.nn.Module, Any]:
    """``AutoModelForMaskedLM`` and ``AutoTokenizer`` from ``folder`` (a local folder or a Hub name), in eval mode
    on ``device``; a missing folder, a model that is not a masked LM, or a tokenizer without a mask token is one
    line naming the folder."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    path = Path(folder).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise UserError(f"{folder}: no config.json here; pass a Hugging Face model folder, e.g. runs/<run>/hf")
    if not path.exists() and (folder.startswith((".", "/", "~")) or folder.count("/") != 1):
        raise UserError(f"{folder}: no such folder; pass a Hugging Face model folder, e.g. runs/<run>/hf")
    name = str(path) if path.exists() else folder
    try:
        config = AutoConfig.from_pretrained(name)
        model = AutoModelForMaskedLM.from_pretrained(name, config=config, dtype=dtype)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{folder}: cannot load a masked LM ({first})") from None
    tokenizer = load_tokenizer(name, key=folder, required=())
    check_mask_token(tokenizer, folder)
    if len(tokenizer) > model.config.vocab_size:
        raise UserError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                        f"{model.config.vocab_size}; they do not belong together")
    return model.to(device).eval(), tokenizer
