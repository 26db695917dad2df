"""The Hugging Face family: any transformers ``AutoModelForMaskedLM`` (BERT, RoBERTa, ...) as a ComposerModel."""

from __future__ import annotations

from typing import Any

from composer.models import HuggingFaceModel
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig

from bertforge.errors import ConfigError, UserError, did_you_mean
from bertforge.models.common.vocab import check_vocab, padded_vocab_size
from bertforge.models.metrics import mlm_metrics
from bertforge.registry import models

KEY = "model"


def _check_config_keys(config_cls: type[PretrainedConfig], overrides: dict) -> None:
    """transformers configs accept any key silently; reject keys the architecture does not have."""
    known = set(config_cls().to_dict())
    for name in overrides:
        if name not in known:
            raise ConfigError(
                f"{KEY}.model_config.{name}",
                f"unknown key for {config_cls.model_type} configs{did_you_mean(name, known)}",
            )


def build_config(tokenizer, model_type: str, pretrained_model_name: str | None, model_config: dict,
                 pad_vocab_to_multiple_of: int) -> PretrainedConfig:
    """The transformers config: from the pretrained name or ``model_type``, with overrides applied.

    The vocabulary defaults to the tokenizer's size rounded up to ``pad_vocab_to_multiple_of``.
    """
    if pretrained_model_name:
        try:
            config = AutoConfig.from_pretrained(pretrained_model_name)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise UserError(f"{KEY}.pretrained_model_name: cannot load '{pretrained_model_name}' ({first})") from None
    else:
        try:
            config = AutoConfig.for_model(model_type)
        except ValueError:
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING

            raise ConfigError(
                f"{KEY}.model_type",
                f"unknown transformers model type '{model_type}'{did_you_mean(model_type, CONFIG_MAPPING.keys())}",
            ) from None
        config.vocab_size = padded_vocab_size(tokenizer, pad_vocab_to_multiple_of)
        config.pad_token_id = tokenizer.pad_token_id
    _check_config_keys(type(config), model_config)
    for name, value in model_config.items():
        setattr(config, name, value)
    check_vocab(tokenizer, config.vocab_size, f"{KEY}.model_config.vocab_size")
    return config


@models.register("hf_bert")
def build_hf_mlm(
    tokenizer: Any,
    model_type: str = "bert",
    pretrained_model_name: str | None = None,
    pretrained: bool = False,
    model_config: dict | None = None,
    pad_vocab_to_multiple_of: int = 8,
    gradient_checkpointing: bool = False,
) -> HuggingFaceModel:
    """A transformers masked-LM (``model_type`` or ``pretrained_model_name``), random init or pretrained."""
    if pretrained and not pretrained_model_name:
        raise ConfigError(f"{KEY}.pretrained", "is true but no pretrained_model_name is given")
    config = build_config(tokenizer, model_type, pretrained_model_name, model_config or {}, pad_vocab_to_multiple_of)
    if pretrained:
        model = AutoModelForMaskedLM.from_pretrained(pretrained_model_name, config=config)
    else:
        model = AutoModelForMaskedLM.from_config(config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return HuggingFaceModel(
        model,
        tokenizer=tokenizer,
        use_logits=True,
        metrics=mlm_metrics(),
        eval_metrics=mlm_metrics(),
        shift_labels=False,
    )
