"""The Hugging Face family: any transformers ``AutoModelForMaskedLM`` (BERT, RoBERTa, ...) as a ComposerModel."""

from __future__ import annotations

from typing import Any

from composer.models import HuggingFaceModel
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig

from bertforge.config.validate import check_config
from bertforge.errors import ConfigError, UserError, did_you_mean
from bertforge.models.common.mlm import is_mdlm_batch, masked_token_loss, mdlm_loss, mdlm_loss_terms
from bertforge.models.common.vocab import check_vocab, padded_vocab_size
from bertforge.models.flops import FlopsPerBatch
from bertforge.models.metrics import MDLMNegativeELBO, lm_metrics, mlm_metrics
from bertforge.registry import models

KEY = "model"


class HFMaskedLM(FlopsPerBatch, HuggingFaceModel):
    """Composer's HuggingFaceModel that also supplies ``flops_per_batch`` to SpeedMonitor (FLOP/s, MFU).

    Batches of a masked diffusion collator (``mdlm_t`` present) train on the MDLM loss, computed here from the
    logits rather than by the transformers model; :meth:`set_objective` adds the MDLM eval metric.
    """

    def set_objective(self, objective: str) -> None:
        """Fresh metrics for ``'mlm'`` or ``'mdlm'`` (which adds the negative ELBO on eval); call before the Trainer."""
        self.train_metrics = {type(m).__name__: m for m in lm_metrics(objective, train=True)}
        self.val_metrics = {type(m).__name__: m for m in lm_metrics(objective)}

    def forward(self, batch):
        if is_mdlm_batch(batch):  # the transformers model would compute an unweighted loss over the labels
            batch = {k: v for k, v in batch.items() if k != "labels"}
        return super().forward(batch)

    def loss(self, outputs, batch):
        if not is_mdlm_batch(batch):
            return super().loss(outputs, batch)
        labels = batch["labels"]
        return mdlm_loss(masked_token_loss(outputs["logits"], labels), labels, batch)

    def update_metric(self, batch, outputs, metric) -> dict:
        if not isinstance(metric, MDLMNegativeELBO):
            return super().update_metric(batch, outputs, metric)
        if is_mdlm_batch(batch):  # eval_forward moved the labels to self.labels; outputs are the logits
            token_loss = masked_token_loss(outputs, self.labels.to(outputs.device))
            metric.update(*mdlm_loss_terms(token_loss, self.labels, batch))
        return {}


def config_class_for_type(model_type: str) -> type[PretrainedConfig]:
    """The transformers config class of ``model_type``; an unknown type fails with a did-you-mean."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise ConfigError(
            f"{KEY}.model_type",
            f"unknown transformers model type '{model_type}'{did_you_mean(model_type, CONFIG_MAPPING.keys())}",
        )
    return CONFIG_MAPPING[model_type]


def model_config_class(block: dict) -> type[PretrainedConfig] | None:
    """The config class a ``hf_bert`` block's ``model_config`` must fit, for checking before any work.

    That is ``model_type``'s, or the pretrained checkpoint's when it is a local folder or already cached
    (else None: the keys are checked once the checkpoint's config is loaded).
    """
    name = block.get("pretrained_model_name")
    if not name:
        return config_class_for_type(block.get("model_type") or "bert")
    try:
        return type(AutoConfig.from_pretrained(name, local_files_only=True))
    except (OSError, ValueError):
        return None


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
        config = config_class_for_type(model_type)()
        config.vocab_size = padded_vocab_size(tokenizer, pad_vocab_to_multiple_of)
        config.pad_token_id = tokenizer.pad_token_id
    check_config(type(config), model_config, f"{KEY}.model_config")
    for name, value in model_config.items():
        setattr(config, name, value)
    check_vocab(tokenizer, config.vocab_size, f"{KEY}.model_config.vocab_size")
    return config


@models.register("hf_bert", config_class=model_config_class)
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
    return HFMaskedLM(
        model,
        tokenizer=tokenizer,
        use_logits=True,
        metrics=mlm_metrics(),
        eval_metrics=mlm_metrics(),
        shift_labels=False,
    )
