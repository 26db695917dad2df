"""FlexBERT <-> transformers ModernBERT. Parameter names already match; configs map key by key."""

from __future__ import annotations

import dataclasses

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

from bertforge.errors import UserError
from bertforge.models.flexbert.config import FlexBertConfig

# FlexBERT settings that ModernBERT fixes; a config that differs cannot be exported to that format.
MODERNBERT_FIXED = dict(
    position_encoding="rope", type_vocab_size=0, embedding_norm=True, mlp_type="glu", norm_type="layernorm",
    block_type="prenorm", first_layer_attn_norm=False, final_norm=True, head_dense=True, head_norm=True,
    tie_word_embeddings=True, hidden_dropout=0.0,
)


def flexbert_config_from_modernbert(hf: ModernBertConfig, **overrides) -> FlexBertConfig:
    """The FlexBERT config that computes the same function as ``hf``."""
    values = dict(
        vocab_size=hf.vocab_size, hidden_size=hf.hidden_size, num_hidden_layers=hf.num_hidden_layers,
        num_attention_heads=hf.num_attention_heads, intermediate_size=hf.intermediate_size,
        hidden_activation=hf.hidden_activation, rope_theta_global=hf.global_rope_theta,
        rope_theta_local=hf.local_rope_theta if hf.local_rope_theta is not None else hf.global_rope_theta,
        local_attention_window=hf.local_attention, global_attention_every_n_layers=hf.global_attn_every_n_layers,
        attention_bias=hf.attention_bias, attention_dropout=hf.attention_dropout, mlp_bias=hf.mlp_bias,
        mlp_dropout=hf.mlp_dropout, embedding_dropout=hf.embedding_dropout, norm_bias=hf.norm_bias,
        norm_eps=hf.norm_eps, head_activation=hf.classifier_activation, head_bias=hf.classifier_bias,
        decoder_bias=hf.decoder_bias, init_std=hf.initializer_range, max_position_embeddings=hf.max_position_embeddings,
        **MODERNBERT_FIXED,
    )
    values.update(overrides)
    return FlexBertConfig(**values)


def modernbert_incompatibilities(cfg: FlexBertConfig) -> list[str]:
    """The FlexBERT keys whose values ModernBERT cannot express (empty: exportable)."""
    differing = [k for k, v in MODERNBERT_FIXED.items() if getattr(cfg, k) != v]
    if cfg.local_attention_window is None:
        differing.append("local_attention_window (null)")
    return differing


def modernbert_config_from_flexbert(cfg: FlexBertConfig, tokenizer=None) -> ModernBertConfig:
    """The ModernBERT config for ``cfg``; fails naming the keys ModernBERT cannot express."""
    differing = modernbert_incompatibilities(cfg)
    if differing:
        raise UserError(f"this FlexBERT config cannot be written as ModernBERT: {', '.join(differing)} differ")
    defaults = ModernBertConfig()
    special = {}
    for name in ("pad", "cls", "sep", "bos", "eos"):
        value = getattr(tokenizer, f"{name}_token_id", None) if tokenizer is not None else None
        if value is None:  # no tokenizer: ModernBERT's ids where the vocabulary has them, else 0
            default = getattr(defaults, f"{name}_token_id")
            value = default if default < cfg.vocab_size else 0
        special[f"{name}_token_id"] = value
    return ModernBertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, intermediate_size=cfg.intermediate_size,
        hidden_activation=cfg.hidden_activation, global_rope_theta=cfg.rope_theta_global,
        local_rope_theta=cfg.rope_theta_local, local_attention=cfg.local_attention_window,
        global_attn_every_n_layers=cfg.global_attention_every_n_layers, attention_bias=cfg.attention_bias,
        attention_dropout=cfg.attention_dropout, mlp_bias=cfg.mlp_bias, mlp_dropout=cfg.mlp_dropout,
        embedding_dropout=cfg.embedding_dropout, norm_bias=cfg.norm_bias, norm_eps=cfg.norm_eps,
        classifier_activation=cfg.head_activation, classifier_bias=cfg.head_bias, decoder_bias=cfg.decoder_bias,
        initializer_range=cfg.init_std, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True, **special,
    )


def to_modernbert(model: torch.nn.Module, tokenizer=None) -> ModernBertForMaskedLM:
    """A transformers ``ModernBertForMaskedLM`` holding ``model``'s (a FlexBertForMaskedLM) weights."""
    hf = ModernBertForMaskedLM(modernbert_config_from_flexbert(model.config, tokenizer))
    missing, unexpected = hf.load_state_dict(model.state_dict(), strict=False)
    missing = [k for k in missing if k != "decoder.weight"]  # tied to the token embeddings
    if missing or unexpected:
        raise RuntimeError(f"ModernBERT export mismatch: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def from_modernbert_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A FlexBERT state dict from a ModernBertForMaskedLM one (same names; the tied decoder is filled in)."""
    state = dict(state)
    state.setdefault("decoder.weight", state["model.embeddings.tok_embeddings.weight"])
    return state


def config_fields() -> set[str]:
    """All FlexBertConfig field names (for the conversion tests)."""
    return {f.name for f in dataclasses.fields(FlexBertConfig)}
