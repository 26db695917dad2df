"""transformers classes around bertforge's own encoders (M2-BERT, FlexBERT presets that ModernBERT cannot express):
``AutoModel`` gives the encoder's hidden states, ``AutoModelForMaskedLM`` the MLM logits,
``AutoModelForSequenceClassification`` a finetuned GLUE classifier's logits. Written into exported
folders beside ``configuration_bertforge.py``; the computation is bertforge's, so bertforge must be installed."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

from .configuration_bertforge import BertforgeConfig

try:
    import bertforge  # noqa: F401  (first: a missing package fails here, with the message below)
    from bertforge.models.classifier import SequenceClassifier
    from bertforge.models.flexbert.config import FlexBertConfig
    from bertforge.models.flexbert.model import FlexBertForMaskedLM, FlexBertModel
    from bertforge.models.m2.config import M2BertConfig
    from bertforge.models.m2.model import M2BertForMaskedLM, M2BertModel
except ImportError:
    raise ImportError("this model runs bertforge's code; install it with `pip install bertforge`") from None

# family -> (config dataclass, encoder, masked LM)
FAMILIES = {
    "flexbert": (FlexBertConfig, FlexBertModel, FlexBertForMaskedLM),
    "m2_bert": (M2BertConfig, M2BertModel, M2BertForMaskedLM),
}


def family_config(config: BertforgeConfig) -> Any:
    """The family's config dataclass, with the (possibly resized) vocabulary of ``config``."""
    if config.family not in FAMILIES:
        raise ValueError(f"unknown bertforge family '{config.family}'; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[config.family][0](**{**config.family_config, "vocab_size": config.vocab_size})


def _mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(input_ids) if attention_mask is None else attention_mask


class BertforgePreTrainedModel(PreTrainedModel):
    """Shared loading behaviour: tensors named as in bertforge's masked LM (``model.*``, ``head.*``, ``decoder.*``)."""

    config_class = BertforgeConfig
    base_model_prefix = "model"

    def _init_weights(self, module: torch.nn.Module) -> None:
        """No weights: bertforge's constructors initialise them, and loading replaces them all. The buffers that are not
        saved (ALiBi slopes, RoPE frequencies, M2 decay) are recomputed: transformers 5 builds the model on the meta
        device and leaves them empty after loading."""
        reset = getattr(module, "reset_buffers", None)
        if callable(reset):
            with torch.no_grad():
                reset()

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.model.embeddings.tok_embeddings

    def set_input_embeddings(self, value: torch.nn.Embedding) -> None:
        self.model.embeddings.tok_embeddings = value


class BertforgeModel(BertforgePreTrainedModel):
    """The encoder: ``last_hidden_state`` ``(B, L, H)``; padding (``attention_mask`` 0) never reaches real tokens."""

    _keys_to_ignore_on_load_unexpected = [r"^head\.", r"^decoder\."]  # the MLM head of a masked-LM folder

    def __init__(self, config: BertforgeConfig):
        super().__init__(config)
        self.model = FAMILIES[config.family][1](family_config(config))
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool | None = None,
                **kwargs: Any) -> BaseModelOutput | tuple:
        hidden = self.model(input_ids, _mask(input_ids, attention_mask), token_type_ids)  # (B, L, H)
        return (hidden,) if return_dict is False else BaseModelOutput(last_hidden_state=hidden)


class BertforgeForMaskedLM(BertforgePreTrainedModel):
    """Encoder + bertforge's MLM head: ``logits`` ``(B, L, V)`` (0 at padding); with ``labels``, the mean
    cross-entropy over the labels that are not -100."""

    # target -> source: transformers 5 reads the mapping; 4.x iterates it and gets the target names
    _tied_weights_keys = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}

    def __init__(self, config: BertforgeConfig):
        super().__init__(config)
        mlm = FAMILIES[config.family][2](family_config(config))
        self.model, self.head, self.decoder = mlm.model, mlm.head, mlm.decoder
        self.post_init()

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.decoder

    def set_output_embeddings(self, value: torch.nn.Linear) -> None:
        self.decoder = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> MaskedLMOutput | tuple:
        mask = _mask(input_ids, attention_mask)
        hidden = self.model(input_ids, mask, token_type_ids)  # (B, L, H)
        logits = self.decoder(self.head(hidden)) * (mask != 0)[..., None].to(hidden.dtype)  # (B, L, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return MaskedLMOutput(loss=loss, logits=logits)


class BertforgeForSequenceClassification(BertforgePreTrainedModel):
    """bertforge's :class:`SequenceClassifier`: encoder, pooling (``config.pooling``: first token or mean of real
    tokens), dense + tanh, dropout (``config.classifier_dropout``), linear: ``logits`` ``(B, num_labels)``. With
    ``labels``, the loss of ``config.problem_type`` (regression: MSE; single-label: cross-entropy)."""

    def __init__(self, config: BertforgeConfig):
        super().__init__(config)
        encoder = FAMILIES[config.family][1](family_config(config))
        task = SequenceClassifier(encoder, config.hidden_size, config.num_labels, config.pooling,
                                  config.classifier_dropout)
        self.model, self.head, self.classifier, self.pooling = task.model, task.head, task.classifier, task.pooling
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> SequenceClassifierOutput | tuple:
        # SequenceClassifier's own forward on these same submodules (model, pooling, head, classifier)
        logits = SequenceClassifier.forward(self, input_ids, _mask(input_ids, attention_mask), token_type_ids)
        loss = None if labels is None else _classifier_loss(self.config, logits, labels)
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _classifier_loss(config: BertforgeConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """MSE for regression (``num_labels == 1``), BCE for multi-label, cross-entropy otherwise, in fp32."""
    kind = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    if kind == "regression":
        return F.mse_loss(logits.float().squeeze(-1), labels.float().view(-1))
    if kind == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
    return F.cross_entropy(logits.float(), labels.view(-1))
