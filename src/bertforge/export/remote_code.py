"""Write a bertforge masked LM that transformers has no class for (M2-BERT, FlexBERT presets ModernBERT cannot
express) as a transformers folder with bertforge's own modeling code: ``config.json`` (``model_type: bertforge``,
``auto_map`` for AutoConfig, AutoModel and AutoModelForMaskedLM, plus AutoModelForSequenceClassification for a
finetuned classifier), safetensors weights, the tokenizer, and
``configuration_bertforge.py`` / ``modeling_bertforge.py``, which load with ``trust_remote_code=True``."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from bertforge.export.remote import FAMILIES, BertforgeConfig, BertforgeForMaskedLM, BertforgeForSequenceClassification
from bertforge.models.export import save_hf_folder

AUTO_MAP = {
    "AutoConfig": "configuration_bertforge.BertforgeConfig",
    "AutoModel": "modeling_bertforge.BertforgeModel",
    "AutoModelForMaskedLM": "modeling_bertforge.BertforgeForMaskedLM",
}
CLASSIFIER_MAP = "modeling_bertforge.BertforgeForSequenceClassification"
# execution-only settings reset in the exported config: whatever machine loads the folder picks its own backend
PORTABLE = {"flexbert": {"attention_backend": "auto", "kernels": "auto", "activation_checkpointing": False},
            "m2_bert": {"fftconv_backend": "auto", "activation_checkpointing": False}}


def remote_code_family(module: torch.nn.Module) -> str | None:
    """The bertforge family of masked-LM ``module`` (``flexbert``, ``m2_bert``), or None if it is not one."""
    return next((name for name, (_, _, mlm) in FAMILIES.items() if isinstance(module, mlm)), None)


def _remote_config(family: str, family_cfg: Any, tokenizer: Any, architecture: type, **kwargs: Any) -> BertforgeConfig:
    """The ``BertforgeConfig`` of ``family_cfg`` (a family config dataclass) with portable execution settings, the
    special token ids of ``tokenizer``, ``architecture`` and the ``auto_map`` the folder's code needs."""
    fields = dataclasses.asdict(family_cfg)
    fields.update({k: v for k, v in PORTABLE[family].items() if k in fields})
    tokens = {f"{t}_token_id": getattr(tokenizer, f"{t}_token_id", None) for t in ("pad", "cls", "sep", "mask")}
    auto_map = {**AUTO_MAP, **({"AutoModelForSequenceClassification": CLASSIFIER_MAP}
                               if architecture is BertforgeForSequenceClassification else {})}
    return BertforgeConfig(family=family, family_config=fields, architectures=[architecture.__name__],
                           auto_map=auto_map, **{k: v for k, v in tokens.items() if v is not None}, **kwargs)


def to_remote_code(module: torch.nn.Module, tokenizer: Any = None) -> BertforgeForMaskedLM:
    """``module`` (FlexBertForMaskedLM or M2BertForMaskedLM) as a transformers ``BertforgeForMaskedLM`` holding
    the same tensors; special token ids from ``tokenizer`` when given."""
    family = remote_code_family(module)
    if family is None:
        raise TypeError(f"{type(module).__name__} is not a bertforge masked LM ({', '.join(FAMILIES)})")
    tied = module.decoder.weight is module.model.embeddings.tok_embeddings.weight
    config = _remote_config(family, module.config, tokenizer, BertforgeForMaskedLM, tie_word_embeddings=tied)
    hf_model = BertforgeForMaskedLM(config)
    hf_model.load_state_dict(module.state_dict(), strict=True)
    return hf_model.to(next(module.parameters()).dtype).eval()


def encoder_family(encoder: torch.nn.Module) -> str | None:
    """The bertforge family of ``encoder`` (FlexBertModel: ``flexbert``, M2BertModel: ``m2_bert``), or None."""
    return next((name for name, (_, model, _) in FAMILIES.items() if isinstance(encoder, model)), None)


def to_remote_classifier(module: torch.nn.Module, tokenizer: Any = None,
                         **labels: Any) -> BertforgeForSequenceClassification:
    """``module`` (a :class:`~bertforge.models.classifier.SequenceClassifier` on a FlexBERT or M2-BERT encoder) as
    a transformers ``BertforgeForSequenceClassification`` holding the same tensors. ``labels``: ``num_labels``,
    ``id2label``, ``label2id``, ``problem_type`` for the config."""
    family = encoder_family(getattr(module, "model", None))
    if family is None:
        raise TypeError(f"{type(module).__name__} is not a classifier on a bertforge encoder ({', '.join(FAMILIES)})")
    dropout = next((m.p for m in module.head if isinstance(m, torch.nn.Dropout)), 0.0)
    config = _remote_config(family, module.model.config, tokenizer, BertforgeForSequenceClassification,
                            pooling=module.pooling, classifier_dropout=dropout, **labels)
    hf_model = BertforgeForSequenceClassification(config)
    hf_model.load_state_dict(module.state_dict(), strict=True)
    return hf_model.to(next(module.parameters()).dtype).eval()


def save_remote_code(module: torch.nn.Module, tokenizer: Any, folder: str) -> str:
    """Write ``module`` and ``tokenizer`` as a transformers folder with bertforge's modeling code; return it."""
    return save_hf_folder(to_remote_code(module, tokenizer), tokenizer, folder)
