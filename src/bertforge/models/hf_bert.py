"""The Hugging Face family: any transformers ``AutoModelForMaskedLM`` (BERT, RoBERTa, ...) as a ComposerModel."""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from typing import Any, NamedTuple

import torch
from composer.models import HuggingFaceModel
from transformers import AutoConfig, AutoModelForMaskedLM, BertForMaskedLM, PretrainedConfig, PreTrainedModel

from bertforge.config.validate import check_config, folded_keywords
from bertforge.errors import ConfigError, UserError, did_you_mean
from bertforge.models.common.mlm import is_mdlm_batch, masked_token_loss, mdlm_loss, mdlm_loss_terms
from bertforge.models.common.nsp import first_token, pair_labels
from bertforge.models.common.vocab import check_vocab, padded_vocab_size
from bertforge.models.composer import apply_objective, with_pair_loss
from bertforge.models.convert.bert import nsp_export_refusal, to_bert_pretraining
from bertforge.models.convert.rules import layout_difference, tensor_layout
from bertforge.models.export import save_hf_folder
from bertforge.models.flops import FlopsPerBatch
from bertforge.models.metrics import MDLMNegativeELBO, NSPAccuracy, mlm_metrics
from bertforge.registry import models

KEY = "model"
log = logging.getLogger(__name__)
CHECKPOINTING = "activation_checkpointing"
"""A ``model_config`` key read here (transformers' own gradient checkpointing), never set on the transformers config."""


class PairEvalOutput(NamedTuple):
    """What :meth:`HFMaskedLM.eval_forward` returns for a model with a pair head: MLM ``logits`` and ``nsp_logits``."""

    logits: torch.Tensor
    nsp_logits: torch.Tensor


class HFMaskedLM(FlopsPerBatch, HuggingFaceModel):
    """Composer's HuggingFaceModel that also supplies ``flops_per_batch`` to SpeedMonitor (FLOP/s, MFU).

    Batches of a masked diffusion collator (``mdlm_t`` present) train on the MDLM loss, computed here from the
    logits rather than by the transformers model; :meth:`set_objective` adds the MDLM eval metric. Objective
    ``'nsp'``/``'sop'`` adds the shared sentence-pair head (``nsp_head``) on the base model's first-token output.
    """

    def __init__(self, *args: Any, pretrained_source: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pretrained_source = pretrained_source  # its pooler / NSP classifier start a pair head
        self.nsp_head = None
        self.objective = "mlm"

    def set_objective(self, objective: str) -> None:
        """Metrics and pair head for ``objective`` (:func:`~bertforge.models.composer.apply_objective`)."""
        apply_objective(self, objective, eval_attr="val_metrics")

    def forward(self, batch):
        if is_mdlm_batch(batch):  # the transformers model would compute an unweighted loss over the labels
            batch = {k: v for k, v in batch.items() if k != "labels"}
        if self.nsp_head is None:
            return super().forward(batch)
        last = []  # the base model's output (B, L, H): hidden_states[-1] is not it for every model (ModernBERT)
        hook = self.model.base_model.register_forward_hook(lambda module, args, out: last.append(out[0]))
        try:
            outputs = super().forward(batch)
        finally:
            hook.remove()
        outputs["nsp_logits"] = self.nsp_head(first_token(last[-1], batch["attention_mask"]))  # (B, 2)
        return outputs

    def loss(self, outputs, batch):
        if not is_mdlm_batch(batch):
            return with_pair_loss(super().loss(outputs, batch), outputs.get("nsp_logits"), batch, self.objective)
        labels = batch["labels"]
        return mdlm_loss(masked_token_loss(outputs["logits"], labels), labels, batch)

    def eval_forward(self, batch, outputs=None):
        if self.nsp_head is None:
            return super().eval_forward(batch, outputs)
        if outputs is None:  # no MLM loss for evaluation, as HuggingFaceModel does
            outputs = self.forward({k: v for k, v in batch.items() if k != "labels"})
        return PairEvalOutput(super().eval_forward(batch, outputs), outputs["nsp_logits"])

    def update_metric(self, batch, outputs, metric) -> dict:
        if isinstance(outputs, PairEvalOutput):
            if isinstance(metric, NSPAccuracy):
                metric.update(outputs.nsp_logits, pair_labels(batch, self.objective))
                return {}
            outputs = outputs.logits
        if not isinstance(metric, MDLMNegativeELBO):
            return super().update_metric(batch, outputs, metric)
        if is_mdlm_batch(batch):  # eval_forward moved the labels to self.labels; outputs are the logits
            token_loss = masked_token_loss(outputs, self.labels.to(outputs.device))
            metric.update(*mdlm_loss_terms(token_loss, self.labels, batch))
        return {}

    def export_refusal(self) -> str | None:
        """Why :meth:`export_hf` would refuse (None: it exports): a pair head on a model other than BERT."""
        if self.nsp_head is not None and not isinstance(self.model, BertForMaskedLM):
            return nsp_export_refusal(type(self.model).__name__)
        return None

    def fsdp_units(self) -> list[torch.nn.Module]:
        """One FSDP unit per transformer layer: BERT/RoBERTa ``encoder.layer``, ModernBERT ``layers``."""
        base = self.model.base_model
        return list(base.layers if hasattr(base, "layers") else base.encoder.layer)

    def export_hf(self, folder: str) -> str:
        """Write the transformers model and tokenizer to ``folder``; with a pair head, as ``BertForPreTraining``."""
        hf_model = self.model if self.nsp_head is None else to_bert_pretraining(self.model, self.nsp_head)
        return save_hf_folder(hf_model, self.tokenizer, folder)


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
    (else None: the keys are checked once the checkpoint's config is loaded); either also takes
    ``activation_checkpointing``.
    """
    name = block.get("pretrained_model_name")
    if not name:
        return _with_checkpointing_key(config_class_for_type(block.get("model_type") or "bert"))
    try:
        return _with_checkpointing_key(type(AutoConfig.from_pretrained(name, local_files_only=True)))
    except (OSError, ValueError):
        return None


@functools.cache
def _with_checkpointing_key(config_class: type[PretrainedConfig]) -> type[PretrainedConfig]:
    """``config_class`` also taking ``activation_checkpointing: bool``, refused (ValueError) where the
    transformers model cannot checkpoint; for checking a ``model_config`` block only."""

    def __init__(self, activation_checkpointing: bool = False, **kwargs: Any):
        refusal = _checkpointing_refusal(config_class) if activation_checkpointing else None
        if refusal:
            raise ValueError(refusal)
        config_class.__init__(self, **kwargs)
        self.activation_checkpointing = activation_checkpointing

    params = list(inspect.signature(config_class.__init__).parameters.values())  # the class's keys, plus ours
    ours = inspect.Parameter(CHECKPOINTING, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    __init__.__signature__ = inspect.Signature([*params[:at], ours, *params[at:]])
    return type(config_class.__name__, (config_class,), {"__init__": __init__, "__module__": __name__})


def _checkpointing_refusal(config_class: type[PretrainedConfig]) -> str | None:
    """Why the masked LM of ``config_class`` cannot checkpoint activations (None: it can, or is unknown here)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

    try:
        model_class = MODEL_FOR_MASKED_LM_MAPPING[config_class]
    except KeyError:
        return None
    if model_class.supports_gradient_checkpointing:
        return None
    return f"{CHECKPOINTING}: {model_class.__name__} has no gradient checkpointing in transformers; remove the key"


def enable_checkpointing(model: PreTrainedModel, model_config: dict | None) -> None:
    """Turn on transformers' gradient checkpointing (non-reentrant: RNG state replayed, any inputs) when the
    block's ``model_config`` sets ``activation_checkpointing``; it acts in training only."""
    if not (model_config or {}).get(CHECKPOINTING):
        return
    if not model.supports_gradient_checkpointing:
        raise ConfigError(f"{KEY}.model_config.{CHECKPOINTING}", f"{type(model).__name__} has no gradient "
                          "checkpointing in transformers; remove the key")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_config(tokenizer, model_type: str | None, pretrained_model_name: str | None, model_config: dict,
                 pad_vocab_to_multiple_of: int | None) -> PretrainedConfig:
    """The transformers config: from the pretrained name or ``model_type`` (default bert), with overrides applied.

    The vocabulary defaults to the tokenizer's size rounded up to ``pad_vocab_to_multiple_of`` (default 8); with a
    pretrained name it is the checkpoint's, so that key, and a ``model_type`` other than the checkpoint's, are
    refused rather than ignored. ``activation_checkpointing`` is not a config attribute (see
    :func:`enable_checkpointing`).
    """
    model_config = {k: v for k, v in model_config.items() if k != CHECKPOINTING}
    if pretrained_model_name:
        try:
            config = AutoConfig.from_pretrained(pretrained_model_name)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise UserError(f"{KEY}.pretrained_model_name: cannot load '{pretrained_model_name}' ({first})") from None
        if model_type is not None and model_type != config.model_type:
            raise ConfigError(f"{KEY}.model_type", f"'{model_type}', but '{pretrained_model_name}' is "
                              f"{config.model_type}; drop model_type (the checkpoint decides it)")
        if pad_vocab_to_multiple_of is not None:
            raise ConfigError(f"{KEY}.pad_vocab_to_multiple_of", f"the vocabulary of '{pretrained_model_name}' is "
                              "its own; drop the key (or set model_config.vocab_size)")
        check_config(type(config), model_config, f"{KEY}.model_config")
        folded = sorted(folded_keywords(type(config)) & set(model_config))
        if folded:  # setattr would leave rope_parameters / layer_types as the checkpoint has them
            raise ConfigError(f"{KEY}.model_config.{folded[0]}", f"{type(config).__name__} derives rope_parameters /"
                              " layer_types from it only when built from keywords, not on a pretrained config")
        for name, value in model_config.items():
            setattr(config, name, value)
    else:  # built from keywords, so fields derived from others follow them (transformers 5's layer_types)
        cls = config_class_for_type(model_type or "bert")
        check_config(cls, model_config, f"{KEY}.model_config")
        config = cls(**{"vocab_size": padded_vocab_size(tokenizer, pad_vocab_to_multiple_of or 8),
                        "pad_token_id": tokenizer.pad_token_id, **model_config})
    check_vocab(tokenizer, config.vocab_size, f"{KEY}.model_config.vocab_size")
    return config


def _meta_layout(config: PretrainedConfig, changes: dict) -> dict[str, tuple]:
    """:func:`tensor_layout` of the masked LM that ``config`` with ``changes`` builds (on the meta device)."""
    config = copy.deepcopy(config)
    for name, value in changes.items():
        setattr(config, name, value)
    with torch.device("meta"):
        return tensor_layout(AutoModelForMaskedLM.from_config(config))


def check_pretrained_overrides(name: str, model_config: dict) -> None:
    """Before loading ``name``'s weights: log the ``model_config`` values that replace the checkpoint's, and refuse
    (one line naming them) those that add, drop, reshape or untie a weight, which transformers would fill at random,
    discard, or fail on with a multi-line error."""
    source = AutoConfig.from_pretrained(name)
    changed = {k: v for k, v in model_config.items() if k != CHECKPOINTING and getattr(source, k, None) != v}
    if not changed:
        return
    log.warning("%s.model_config on top of '%s': %s", KEY, name,
                ", ".join(f"{k} {getattr(source, k, None)!r} -> {v!r}" for k, v in changed.items()))
    before, after = _meta_layout(source, {}), _meta_layout(source, changed)
    if before == after:
        return
    culprits = []
    for key, value in changed.items():  # one at a time; a pair that only fails together (width, heads) names both
        try:
            if _meta_layout(source, {key: value}) != before:
                culprits.append(key)
        except (ValueError, TypeError, AttributeError):
            culprits.append(key)
    keys = ", ".join(f"{k}={changed[k]!r}" for k in culprits or changed)
    raise ConfigError(f"{KEY}.model_config", f"{keys} changes the weights of '{name}' "
                      f"({layout_difference(before, after)}), which would start at random or be dropped; remove it, "
                      "or set pretrained: false to train that config from scratch")


@models.register("hf_bert", config_class=model_config_class)
def build_hf_mlm(
    tokenizer: Any,
    model_type: str | None = None,
    pretrained_model_name: str | None = None,
    pretrained: bool = False,
    model_config: dict | None = None,
    pad_vocab_to_multiple_of: int | None = None,
) -> HuggingFaceModel:
    """A transformers masked-LM (``model_type`` or ``pretrained_model_name``), random init or pretrained.

    ``model_config``: transformers config attributes, and ``activation_checkpointing`` (see
    :func:`enable_checkpointing`)."""
    if pretrained and not pretrained_model_name:
        raise ConfigError(f"{KEY}.pretrained", "is true but no pretrained_model_name is given")
    config = build_config(tokenizer, model_type, pretrained_model_name, model_config or {}, pad_vocab_to_multiple_of)
    if pretrained:
        check_pretrained_overrides(pretrained_model_name, model_config or {})
        model = AutoModelForMaskedLM.from_pretrained(pretrained_model_name, config=config)
    else:
        model = AutoModelForMaskedLM.from_config(config)
    enable_checkpointing(model, model_config)
    return HFMaskedLM(
        model,
        tokenizer=tokenizer,
        use_logits=True,
        metrics=mlm_metrics(),
        eval_metrics=mlm_metrics(),
        shift_labels=False,
        pretrained_source=pretrained_model_name if pretrained else None,
    )
