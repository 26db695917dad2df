"""transformers classes around bertforge's own encoders (M2-BERT, FlexBERT presets that ModernBERT cannot express):
``AutoModel`` gives the encoder's hidden states, ``AutoModelForMaskedLM`` the MLM logits. Written into exported
folders beside ``configuration_bertforge.py``; the computation is bertforge's, so bertforge must be installed."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from .configuration_bertforge import BertforgeConfig

try:
    import bertforge  # noqa: F401  (first: a missing package fails here, with the message below)
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
        """Nothing: bertforge's constructors initialise their weights, and loading replaces them all."""

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

    _tied_weights_keys = ["decoder.weight"]

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
