"""Load a Hugging Face masked-LM folder (ours or a published one) for sampling, and wrap any MLM module as the
sampler's ``(input_ids, attention_mask) -> logits`` callable."""

from __future__ import annotations

import sys
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
    """The longest sequence the model takes (``max_position_embeddings``, less the ``pad_token_id + 1`` rows that
    RoBERTa and its kin skip), or None when it does not say."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None or not _numbers_positions_after_padding(config):
        return limit
    return limit - config.pad_token_id - 1


def _numbers_positions_after_padding(config: Any) -> bool:
    """Whether the transformers masked LM of ``config`` numbers its positions from ``pad_token_id + 1`` (the modeling
    modules of RoBERTa, XLM-R, CamemBERT, MPNet ... define ``create_position_ids_from_input_ids``)."""
    from transformers import PretrainedConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

    if not isinstance(config, PretrainedConfig) or config.pad_token_id is None:
        return False
    if type(config) not in MODEL_FOR_MASKED_LM_MAPPING:
        return False
    module = sys.modules[MODEL_FOR_MASKED_LM_MAPPING[type(config)].__module__]
    # a module function in transformers 4, a static method of the embeddings class (RobertaEmbeddings ...) in 5
    return any(hasattr(obj, "create_position_ids_from_input_ids")
               for obj in (module, *(v for v in vars(module).values() if isinstance(v, type))))


def check_mask_token(tokenizer: Any, where: str) -> int:
    """The tokenizer's mask token id; without one, a one-line error naming ``where``."""
    if tokenizer.mask_token_id is None:
        raise UserError(f"{where}: the tokenizer has no mask token; masked-diffusion sampling starts from mask "
                        "tokens: use a tokenizer with one (e.g. [MASK]) or add it and save the tokenizer there")
    return tokenizer.mask_token_id


def load_masked_lm(folder: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, *,
                   random_head: bool = False) -> tuple[torch.nn.Module, Any]:
    """``AutoModelForMaskedLM`` and ``AutoTokenizer`` from ``folder`` (a local folder or a Hub name), in eval mode
    on ``device``; a missing folder, a model that is not a masked LM, weights without the masked-LM head (unless
    ``random_head``: tests of the sampler's mechanics) or a tokenizer without a mask token is one line naming the
    folder."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    path = Path(folder).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise UserError(f"{folder}: no config.json here; pass a Hugging Face model folder, e.g. runs/<run>/hf")
    if not path.exists() and (folder.startswith((".", "/", "~")) or folder.count("/") != 1):
        raise UserError(f"{folder}: no such folder; pass a Hugging Face model folder, e.g. runs/<run>/hf")
    name = str(path) if path.exists() else folder
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers 5 draws a "Loading weights" bar on stderr; keep the CLI's lines
    try:
        config = AutoConfig.from_pretrained(name)
        model, info = AutoModelForMaskedLM.from_pretrained(name, config=config, dtype=dtype, output_loading_info=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{folder}: cannot load a masked LM ({first})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    missing = sorted(info["missing_keys"])
    if missing and not random_head:  # transformers filled them at random: the samples would be noise
        saved = ", ".join(config.architectures or [config.model_type])
        raise UserError(f"{folder}: holds {saved}, without the masked-LM weights {', '.join(missing[:3])}"
                        f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}; pass a folder saved from a "
                        f"{type(model).__name__} (e.g. runs/<run>/hf)")
    tokenizer = load_tokenizer(name, key=folder, required=())
    check_mask_token(tokenizer, folder)
    if len(tokenizer) > model.config.vocab_size:
        raise UserError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                        f"{model.config.vocab_size}; they do not belong together")
    return model.to(device).eval(), tokenizer
