"""transformers BERT (``BertModel`` / ``BertForMaskedLM``) -> FlexBERT configured as classic BERT."""

from __future__ import annotations

import torch
from transformers import BertConfig

from bertforge.models.flexbert.config import FlexBertConfig

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu",
               "silu": "silu"}


def flexbert_config_from_bert(hf: BertConfig, **overrides) -> FlexBertConfig:
    """FlexBERT as classic BERT: learned positions, token types, post-norm, biases, plain GELU MLP."""
    values = dict(
        vocab_size=hf.vocab_size, hidden_size=hf.hidden_size, num_hidden_layers=hf.num_hidden_layers,
        num_attention_heads=hf.num_attention_heads, intermediate_size=hf.intermediate_size,
        position_encoding="learned", max_position_embeddings=hf.max_position_embeddings,
        type_vocab_size=hf.type_vocab_size, embedding_norm=True, embedding_dropout=hf.hidden_dropout_prob,
        local_attention_window=None, attention_bias=True, attention_dropout=hf.attention_probs_dropout_prob,
        mlp_type="mlp", hidden_activation=ACTIVATIONS[hf.hidden_act], mlp_bias=True,
        hidden_dropout=hf.hidden_dropout_prob, norm_type="layernorm", norm_bias=True, norm_eps=hf.layer_norm_eps,
        block_type="postnorm", final_norm=False, head_dense=True, head_activation=ACTIVATIONS[hf.hidden_act],
        head_norm=True, head_bias=True, tie_word_embeddings=True, decoder_bias=True,
        init_std=hf.initializer_range, init_depth_scaled=False,
    )
    values.update(overrides)
    return FlexBertConfig(**values)


_EMBEDDINGS = {
    "embeddings.word_embeddings": "model.embeddings.tok_embeddings",
    "embeddings.position_embeddings": "model.embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "model.embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "model.embeddings.norm",
}
_LAYER = {
    "attention.output.dense": "attn.Wo",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "mlp.Wi",
    "output.dense": "mlp.Wo",
    "output.LayerNorm": "mlp_norm",
}
_HEAD = {
    "cls.predictions.transform.dense": "head.dense",
    "cls.predictions.transform.LayerNorm": "head.norm",
}


def flexbert_state_from_bert(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """Map a BERT state dict (with or without the ``bert.`` prefix and MLM head) to FlexBERT names.

    Query, key and value are concatenated into ``Wqkv``. Keys with no FlexBERT counterpart
    (the pooler, NSP head, position-id buffers) are dropped.
    """
    src = {k.removeprefix("bert."): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    for old, new in {**_EMBEDDINGS, **_HEAD}.items():
        for suffix in ("weight", "bias"):
            if f"{old}.{suffix}" in src:
                out[f"{new}.{suffix}"] = src[f"{old}.{suffix}"]
    for i in range(num_layers):
        prefix = f"encoder.layer.{i}."
        for old, new in _LAYER.items():
            for suffix in ("weight", "bias"):
                out[f"model.layers.{i}.{new}.{suffix}"] = src[f"{prefix}{old}.{suffix}"]
        for suffix in ("weight", "bias"):
            parts = [src[f"{prefix}attention.self.{p}.{suffix}"] for p in ("query", "key", "value")]
            out[f"model.layers.{i}.attn.Wqkv.{suffix}"] = torch.cat(parts, dim=0)
    out["decoder.weight"] = out["model.embeddings.tok_embeddings.weight"]
    if "cls.predictions.bias" in src:
        out["decoder.bias"] = src["cls.predictions.bias"]
    return out
