"""Write a bertforge masked LM that transformers has no class for (M2-BERT, FlexBERT presets ModernBERT cannot
express) as a transformers folder with bertforge's own modeling code: ``config.json`` (``model_type: bertforge``,
``auto_map`` for AutoConfig, AutoModel and AutoModelForMaskedLM), safetensors weights, the tokenizer, and
``configuration_bertforge.py`` / ``modeling_bertforge.py``, which load with ``trust_remote_code=True``."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from bertforge.export.remote import FAMILIES, BertforgeConfig, BertforgeForMaskedLM
from bertforge.models.export import save_hf_folder

AUTO_MAP = {
    "AutoConfig": "configuration_bertforge.BertforgeConfig",
    "AutoModel": "modeling_bertforge.BertforgeModel",
    "AutoModelForMaskedLM": "modeling_bertforge.BertforgeForMaskedLM",
}
# execution-only settings reset in the exported config: whatever machine loads the folder picks its own backend
PORTABLE = {"flexbert": {"attention_backend": "auto", "kernels": "auto", "activation_checkpointing": False},
            "m2_bert": {"fftconv_backend": "auto", "activation_checkpointing": False}}


def remote_code_family(module: torch.nn.Module) -> str | None:
    """The bertforge family of masked-LM ``module`` (``flexbert``, ``m2_bert``), or None if it is not one."""
    return next((name for name, (_, _, mlm) in FAMILIES.items() if isinstance(module, mlm)), None)


def to_remote_code(module: torch.nn.Module, tokenizer: Any = None) -> BertforgeForMaskedLM:
    """``module`` (FlexBertForMaskedLM or M2BertForMaskedLM) as a transformers ``BertforgeForMaskedLM`` holding
    the same tensors; special token ids from ``tokenizer`` when given."""
    family = remote_code_family(module)
    if family is None:
        raise TypeError(f"{type(module).__name__} is not a bertforge masked LM ({', '.join(FAMILIES)})")
    fields = dataclasses.asdict(module.config)
    fields.update({k: v for k, v in PORTABLE[family].items() if k in fields})
    tied = module.decoder.weight is module.model.embeddings.tok_embeddings.weight
    tokens = {f"{t}_token_id": getattr(tokenizer, f"{t}_token_id", None) for t in ("pad", "cls", "sep", "mask")}
    config = BertforgeConfig(family=family, family_config=fields, tie_word_embeddings=tied,
                             architectures=[BertforgeForMaskedLM.__name__], auto_map=dict(AUTO_MAP),
                             **{k: v for k, v in tokens.items() if v is not None})
    hf_model = BertforgeForMaskedLM(config)
    hf_model.load_state_dict(module.state_dict(), strict=True)
    return hf_model.to(next(module.parameters()).dtype).eval()


def save_remote_code(module: torch.nn.Module, tokenizer: Any, folder: str) -> str:
    """Write ``module`` and ``tokenizer`` as a transformers folder with bertforge's modeling code; return it."""
    return save_hf_folder(to_remote_code(module, tokenizer), tokenizer, folder)
