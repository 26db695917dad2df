"""transformers BERT (``BertModel`` / ``BertForMaskedLM``) -> FlexBERT configured as classic BERT."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForMaskedLM

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


# FlexBERT settings that classic BERT fixes; a config that differs cannot be written as BertForMaskedLM.
BERT_FIXED = dict(
    position_encoding="learned", embedding_norm=True, local_attention_window=None, attention_bias=True,
    mlp_type="mlp", mlp_bias=True, norm_type="layernorm", norm_bias=True, block_type="postnorm", final_norm=False,
    head_dense=True, head_norm=True, head_bias=True, tie_word_embeddings=True, decoder_bias=True,
)
_INVERSE_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "silu": "silu"}


def bert_incompatibilities(cfg: FlexBertConfig) -> list[str]:
    """The FlexBERT keys whose values classic BERT cannot express (empty: exportable)."""
    bad = [k for k, v in BERT_FIXED.items() if getattr(cfg, k) != v]
    if cfg.hidden_activation != cfg.head_activation:
        bad.append("head_activation")
    return bad


def to_bert(model: torch.nn.Module, tokenizer=None) -> BertForMaskedLM:
    """A transformers ``BertForMaskedLM`` holding the weights of a FlexBERT configured as BERT."""
    cfg = model.config
    bad = bert_incompatibilities(cfg)
    if bad:
        raise ValueError(f"this FlexBERT config cannot be written as BERT: {', '.join(bad)} differ")
    hf_cfg = BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        hidden_act=_INVERSE_ACTIVATIONS[cfg.hidden_activation], max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=max(cfg.type_vocab_size, 1), layer_norm_eps=cfg.norm_eps,
        hidden_dropout_prob=cfg.hidden_dropout, attention_probs_dropout_prob=cfg.attention_dropout,
        initializer_range=cfg.init_std, pad_token_id=getattr(tokenizer, "pad_token_id", None) or 0,
    )
    hf = BertForMaskedLM(hf_cfg)
    ours = model.state_dict()
    names = {v: k for k, v in {**_EMBEDDINGS, **_HEAD}.items()}
    state = {}
    for key, value in ours.items():
        module, _, suffix = key.rpartition(".")
        if module in names:
            state[f"bert.{names[module]}.{suffix}" if not module.startswith("head") else f"{names[module]}.{suffix}"] \
                = value
    for i in range(cfg.num_hidden_layers):
        for old, new in _LAYER.items():
            for suffix in ("weight", "bias"):
                state[f"bert.encoder.layer.{i}.{old}.{suffix}"] = ours[f"model.layers.{i}.{new}.{suffix}"]
        for suffix in ("weight", "bias"):
            q, k, v = ours[f"model.layers.{i}.attn.Wqkv.{suffix}"].chunk(3, dim=0)
            for name, part in (("query", q), ("key", k), ("value", v)):
                state[f"bert.encoder.layer.{i}.attention.self.{name}.{suffix}"] = part
    state["cls.predictions.bias"] = ours["decoder.bias"]
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("decoder.weight", "decoder.bias", "position_ids"))
               and "token_type_embeddings" not in k]
    if missing or unexpected:
        raise RuntimeError(f"BERT export mismatch: missing {missing}, unexpected {unexpected}")
    return hf.eval()
