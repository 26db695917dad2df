"""FlexBERT <-> transformers ModernBERT. Tensor names already match; every config field is classified."""

from __future__ import annotations

from typing import Any

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

from bertforge.models.convert import activations
from bertforge.models.convert.rules import (
    PRETRAINED_IGNORED,
    Ignore,
    Must,
    Rule,
    To,
    export_fields,
    import_config,
    load_exact,
    raise_problems,
    same_tensor,
)
from bertforge.models.flexbert.config import FlexBertConfig


def _every(hf: ModernBertConfig) -> int:
    """Every how many layers attention is global (layer 0 first): transformers 4's field, or 5's layer_types."""
    kinds = getattr(hf, "layer_types", None)
    if kinds is None:  # transformers 4.x
        return hf.global_attn_every_n_layers
    full = [i for i, kind in enumerate(kinds) if kind == "full_attention"]
    every = full[1] if len(full) > 1 else len(kinds)
    if any(kind != ("full_attention" if i % every == 0 else "sliding_attention") for i, kind in enumerate(kinds)):
        raise ValueError("FlexBERT attends globally in every n-th layer from layer 0 and locally in the others; "
                         f"layer_types {kinds} is not that pattern")
    return every


def _rope(value: dict, hf: ModernBertConfig) -> dict:
    """transformers 5's per-layer-type RoPE: the global and the local theta; no scaling."""
    out = {}
    for kind, target in (("full_attention", "rope_theta_global"), ("sliding_attention", "rope_theta_local")):
        params = dict(value.get(kind) or {})
        if params.pop("rope_type", "default") != "default" or set(params) - {"rope_theta"}:
            raise ValueError("FlexBERT's RoPE has no scaling; use rope_type 'default' with only rope_theta")
        if "rope_theta" in params:
            out[target] = params["rope_theta"]
    return out


def _no_rope_scaling(value: Any, hf: ModernBertConfig) -> dict:
    if value is None or value == getattr(hf, "rope_parameters", None):  # transformers 5: an alias, checked there
        return {}
    raise ValueError("FlexBERT's RoPE has no scaling; remove rope_scaling from the config")


def _window(value: int, hf: ModernBertConfig) -> dict:
    every = _every(hf)
    if every < 1:
        raise ValueError("global_attn_every_n_layers must be >= 1")
    if every == 1 or hf.num_hidden_layers == 1:  # layer i is global when i % every == 0: no local layer
        return {"local_attention_window": None, "global_attention_every_n_layers": every}
    if value < 2:
        raise ValueError("FlexBERT's sliding window is >= 2 tokens (a token sees at least one neighbour each side)")
    return {"local_attention_window": value, "global_attention_every_n_layers": every}


def _head_dim(value: int | None, hf: ModernBertConfig) -> dict:
    if value not in (None, hf.hidden_size // hf.num_attention_heads):
        raise ValueError("RoPE would rotate a different width than FlexBERT's hidden_size / num_attention_heads")
    return {}


_HEADS_ONLY = Ignore("read only by sequence-classification heads; FlexBERT's classifier has its own")
_EXECUTION = Ignore("execution only (kernels, compilation, when logits are repadded): same values")
# ModernBertConfig field (and the attributes modeling_modernbert or RoPE reads beyond them) -> what the import does.
IMPORT: dict[str, Rule] = {
    **PRETRAINED_IGNORED,
    **{name: To() for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size", "max_position_embeddings", "attention_bias", "attention_dropout",
                               "mlp_bias", "mlp_dropout", "embedding_dropout", "norm_bias", "norm_eps",
                               "decoder_bias", "tie_word_embeddings")},
    "hidden_activation": To(fn=lambda value, hf: {"hidden_activation": activations.from_hf(value)}),
    "classifier_activation": To(fn=lambda value, hf: {"head_activation": activations.from_hf(value)}),
    "classifier_bias": To("head_bias"),
    "global_rope_theta": To("rope_theta_global"),
    "local_rope_theta": To(fn=lambda value, hf: {"rope_theta_local": hf.global_rope_theta if value is None
                                                 else value}),
    "local_attention": To(fn=_window),
    "global_attn_every_n_layers": Ignore("mapped together with local_attention"),
    "layer_types": Ignore("mapped together with local_attention (transformers 5)"),
    "rope_parameters": To(fn=_rope),
    "initializer_range": To("init_std"),
    "initializer_cutoff_factor": Ignore("initialisation only; the weights are converted"),
    "classifier_pooling": _HEADS_ONLY,
    "classifier_dropout": _HEADS_ONLY,
    "sparse_prediction": Ignore("with labels, which tokens get logits; each token's logits are the same"),
    "sparse_pred_ignore_index": Ignore("with labels, which tokens get logits; each token's logits are the same"),
    "deterministic_flash_attn": _EXECUTION,
    "reference_compile": _EXECUTION,
    "repad_logits_with_grad": _EXECUTION,
    "is_decoder": Ignore("modeling_modernbert never reads it: attention is always bidirectional"),
    "rope_scaling": To(fn=_no_rope_scaling),
    "sliding_window": Ignore("transformers 5's half window, local_attention // 2: mapped with local_attention"),
    "partial_rotary_factor": Must((None, 1.0), "FlexBERT rotates whole heads; remove partial_rotary_factor"),
    "head_dim": To(fn=_head_dim),
}
# The FlexBERT settings that make it ModernBERT (the fields the import does not map).
MODERNBERT_FORM = dict(
    position_encoding="rope", type_vocab_size=0, embedding_norm=True, mlp_type="glu", norm_type="layernorm",
    block_type="prenorm", first_layer_attn_norm=False, final_norm=True, head_dense=True, head_norm=True,
    hidden_dropout=0.0,
)


def _must(value: Any, fix: str) -> Must:
    return Must((value,), fix)


# FlexBertConfig field -> what the export to ModernBertForMaskedLM does with it.
EXPORT: dict[str, Rule] = {
    **{name: To() for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size", "max_position_embeddings", "embedding_dropout", "attention_bias",
                               "attention_dropout", "mlp_bias", "mlp_dropout", "norm_bias", "norm_eps",
                               "decoder_bias", "tie_word_embeddings")},
    "pad_vocab_to_multiple_of": Ignore("only sizes a null vocab_size; vocab_size is exported"),
    "position_encoding": _must("rope", "ModernBERT uses RoPE; set position_encoding: rope"),
    "type_vocab_size": _must(0, "ModernBERT has no token types; set type_vocab_size: 0"),
    "embedding_norm": _must(True, "ModernBERT normalises its embeddings; set embedding_norm: true"),
    "rope_theta_global": To("global_rope_theta"),
    "rope_theta_local": To("local_rope_theta"),
    # no window: every layer global (every 1st), the window size is then never read
    "local_attention_window": To(fn=lambda value, cfg: {"local_attention": 128 if value is None else value}),
    "global_attention_every_n_layers": To(fn=lambda value, cfg: {
        "global_attn_every_n_layers": 1 if cfg.local_attention_window is None else value}),
    "attention_backend": Ignore("execution only: every backend computes the same attention"),
    "kernels": Ignore("execution only: fused and torch kernels compute the same values"),
    "unpad": Ignore("execution only: padding never reaches the layers either way"),
    "activation_checkpointing": Ignore("training memory only: recomputed activations are the same values"),
    "activation_checkpointing_every": Ignore("training memory only: recomputed activations are the same values"),
    "mlp_type": _must("glu", "ModernBERT's MLP is gated; set mlp_type: glu"),
    "hidden_activation": To(fn=lambda value, cfg: {"hidden_activation": activations.to_hf(value)}),
    "hidden_dropout": _must(0.0, "ModernBERT has no dropout on the residual branches; set hidden_dropout: 0"),
    "norm_type": _must("layernorm", "ModernBERT uses LayerNorm; set norm_type: layernorm"),
    "block_type": _must("prenorm", "ModernBERT normalises before each sublayer; set block_type: prenorm"),
    "first_layer_attn_norm": _must(False, "ModernBERT's first layer has no attention norm; set it false"),
    "final_norm": _must(True, "ModernBERT ends with a norm; set final_norm: true"),
    "head_dense": _must(True, "ModernBERT's MLM head has a dense layer; set head_dense: true"),
    "head_activation": To(fn=lambda value, cfg: {"classifier_activation": activations.to_hf(value)}),
    "head_norm": _must(True, "ModernBERT's MLM head has a norm; set head_norm: true"),
    "head_bias": To("classifier_bias"),
    "init_std": To("initializer_range"),
    "init_depth_scaled": Ignore("initialisation only; the trained weights are exported"),
}


def flexbert_config_from_modernbert(hf: ModernBertConfig, **overrides: Any) -> FlexBertConfig:
    """The FlexBERT config computing the same function as ``hf`` (then ``overrides``); refuses what it cannot."""
    return import_config(hf, IMPORT, MODERNBERT_FORM, overrides)


def _export(cfg: FlexBertConfig) -> tuple[dict, list[str]]:
    return export_fields(cfg, EXPORT, "ModernBERT")


def modernbert_incompatibilities(cfg: FlexBertConfig) -> list[str]:
    """Why ``cfg`` cannot be written as ModernBERT, one line per field (empty: :func:`to_modernbert` works)."""
    return _export(cfg)[1]


def modernbert_config_from_flexbert(cfg: FlexBertConfig, tokenizer: Any = None) -> ModernBertConfig:
    """The ModernBERT config computing ``cfg``'s function; one ConfigError line naming every field it cannot."""
    values, problems = _export(cfg)
    raise_problems(problems, "model.model_config")
    defaults = ModernBertConfig()
    special = {}
    for name in ("pad", "cls", "sep", "bos", "eos"):  # the tokenizer's ids, else ModernBERT's, else 0
        value = getattr(tokenizer, f"{name}_token_id", None)
        if value is None or not 0 <= value < cfg.vocab_size:
            value = getattr(defaults, f"{name}_token_id")
        special[f"{name}_token_id"] = value if value < cfg.vocab_size else 0
    return ModernBertConfig(**values, **special)


def to_modernbert(model: torch.nn.Module, tokenizer: Any = None) -> ModernBertForMaskedLM:
    """A transformers ``ModernBertForMaskedLM`` computing the same logits as ``model`` (a FlexBertForMaskedLM)."""
    hf = ModernBertForMaskedLM(modernbert_config_from_flexbert(model.config, tokenizer))
    load_exact(hf, model.state_dict(), "ModernBERT export")
    return hf.eval()


def flexbert_state_from_modernbert(state: dict[str, torch.Tensor], cfg: FlexBertConfig) -> dict[str, torch.Tensor]:
    """A FlexBERT state dict from a ``ModernBertForMaskedLM`` one: same names; a tied decoder is checked and shared."""
    state = dict(state)
    embeddings = state.get("model.embeddings.tok_embeddings.weight")
    if cfg.tie_word_embeddings and embeddings is not None:
        if "decoder.weight" in state:
            same_tensor(state["decoder.weight"], embeddings, "ModernBERT weights decoder.weight and tok_embeddings")
        state["decoder.weight"] = embeddings
    return state  # load_exact then fails on any tensor FlexBERT lacks
