"""transformers BERT (``BertModel`` / ``BertForMaskedLM``) <-> FlexBERT configured as classic BERT, and the
NSP head (our :class:`~bertforge.models.common.nsp.NSPHead`) <-> ``BertForPreTraining``'s pooler and
``cls.seq_relationship``, for every family whose MLM exports as ``BertForMaskedLM``.

Both directions classify every config field (:mod:`bertforge.models.convert.rules`) and move every
tensor, so a conversion either computes the same function or is refused before any weight is touched.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoConfig, BertConfig, BertForMaskedLM, BertForPreTraining
from transformers.utils import logging as transformers_logging

from bertforge.errors import UserError
from bertforge.models.common.nsp import NSPHead
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
    rename_exact,
    same_tensor,
)
from bertforge.models.flexbert.config import FlexBertConfig

log = logging.getLogger(__name__)


def _activation(value: str, hf: BertConfig) -> dict:  # BERT's MLP and MLM head share hidden_act
    name = activations.from_hf(value)
    return {"hidden_activation": name, "head_activation": name}


def _token_types(value: int, hf: BertConfig) -> dict:
    if value < 1:
        raise ValueError("transformers' BERT always adds token type 0's embedding, so it needs >= 1 type")
    return {"type_vocab_size": value}


# BertConfig field -> what the import does with it.
IMPORT: dict[str, Rule] = {
    **PRETRAINED_IGNORED,
    **{name: To() for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size", "max_position_embeddings", "tie_word_embeddings")},
    "type_vocab_size": To(fn=_token_types),
    "hidden_act": To(fn=_activation),
    "hidden_dropout_prob": To(fn=lambda value, hf: {"embedding_dropout": value, "hidden_dropout": value}),
    "attention_probs_dropout_prob": To("attention_dropout"),
    "layer_norm_eps": To("norm_eps"),
    "initializer_range": To("init_std"),
    "position_embedding_type": Must(("absolute",), "FlexBERT has no relative-distance attention (relative_key, "
                                    "relative_key_query); only BERT with absolute positions converts"),
    "is_decoder": Must((False,), "a decoder BERT attends causally and FlexBERT attends both ways; use an encoder"),
    "classifier_dropout": Ignore("read only by sequence-classification heads; FlexBERT's classifier has its own"),
}
# The FlexBERT settings that make it classic BERT (the fields the import does not map).
BERT_FORM = dict(
    position_encoding="learned", embedding_norm=True, local_attention_window=None, attention_bias=True,
    mlp_type="mlp", mlp_bias=True, mlp_dropout=0.0, norm_type="layernorm", norm_bias=True, block_type="postnorm",
    final_norm=False, head_dense=True, head_norm=True, head_bias=True, decoder_bias=True, init_depth_scaled=False,
)


def _one_dropout(value: float, cfg: FlexBertConfig) -> dict:
    if value != cfg.hidden_dropout:
        raise ValueError(f"BERT has one dropout (hidden_dropout_prob) for both; set it equal to hidden_dropout "
                         f"{cfg.hidden_dropout}")
    return {}


def _same_head_activation(value: str, cfg: FlexBertConfig) -> dict:
    if value != cfg.hidden_activation:
        raise ValueError(f"BERT's head uses hidden_act; set it equal to hidden_activation '{cfg.hidden_activation}'")
    return {}


def _must(value: Any, fix: str) -> Must:
    return Must((value,), fix)


_INIT_ONLY = Ignore("initialisation only; the trained weights are exported")
_EXECUTION = Ignore("execution only: every backend and layout computes the same values")
# FlexBertConfig field -> what the export to BertForMaskedLM does with it.
EXPORT: dict[str, Rule] = {
    **{name: To() for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                               "intermediate_size", "max_position_embeddings", "tie_word_embeddings")},
    "pad_vocab_to_multiple_of": Ignore("only sizes a null vocab_size; vocab_size is exported"),
    "position_encoding": _must("learned", "BERT adds learned absolute positions; set position_encoding: learned"),
    # none: two zero rows, so BERT's added type embedding is 0 for the 0/1 ids a BERT tokenizer gives
    "type_vocab_size": To(fn=lambda value, cfg: {"type_vocab_size": value or 2}),
    "embedding_norm": _must(True, "BERT normalises its embeddings; set embedding_norm: true"),
    "embedding_dropout": To(fn=_one_dropout),
    "rope_theta_global": Ignore("RoPE only; BERT form uses learned positions (required above)"),
    "rope_theta_local": Ignore("RoPE only; BERT form uses learned positions (required above)"),
    "local_attention_window": _must(None, "BERT attends globally in every layer; set local_attention_window: null"),
    "global_attention_every_n_layers": Ignore("read only with a local_attention_window, which must be null"),
    "attention_bias": _must(True, "BERT's attention has biases; set attention_bias: true"),
    "attention_dropout": To("attention_probs_dropout_prob"),
    "attention_backend": _EXECUTION,
    "kernels": _EXECUTION,
    "unpad": _EXECUTION,
    "activation_checkpointing": _EXECUTION,
    "activation_checkpointing_every": _EXECUTION,
    "mlp_type": _must("mlp", "BERT's MLP is not gated; set mlp_type: mlp"),
    "hidden_activation": To(fn=lambda value, cfg: {"hidden_act": activations.to_hf(value)}),
    "mlp_bias": _must(True, "BERT's MLP has biases; set mlp_bias: true"),
    "mlp_dropout": _must(0.0, "BERT has no dropout inside the MLP; set mlp_dropout: 0"),
    "hidden_dropout": To("hidden_dropout_prob"),
    "norm_type": _must("layernorm", "BERT uses LayerNorm; set norm_type: layernorm"),
    "norm_bias": _must(True, "BERT's LayerNorms have biases; set norm_bias: true"),
    "norm_eps": To("layer_norm_eps"),
    "block_type": _must("postnorm", "BERT normalises after the residual add; set block_type: postnorm"),
    "first_layer_attn_norm": Ignore("read only by pre-norm blocks; BERT form is post-norm (required above)"),
    "final_norm": _must(False, "BERT has no final norm; set final_norm: false"),
    "head_dense": _must(True, "BERT's MLM head has a dense layer; set head_dense: true"),
    "head_activation": To(fn=_same_head_activation),
    "head_norm": _must(True, "BERT's MLM head has a LayerNorm; set head_norm: true"),
    "head_bias": _must(True, "BERT's MLM head dense layer has a bias; set head_bias: true"),
    "decoder_bias": _must(True, "BERT's decoder has a bias; set decoder_bias: true"),
    "init_std": To("initializer_range"),
    "init_depth_scaled": _INIT_ONLY,
}


def flexbert_config_from_bert(hf: BertConfig, **overrides: Any) -> FlexBertConfig:
    """The FlexBERT config computing the same function as ``hf`` (then ``overrides``); refuses what it cannot."""
    return import_config(hf, IMPORT, BERT_FORM, overrides)


def _export(cfg: FlexBertConfig) -> tuple[dict, list[str]]:
    return export_fields(cfg, EXPORT, "BERT")


def bert_incompatibilities(cfg: FlexBertConfig) -> list[str]:
    """Why ``cfg`` cannot be written as BERT, one line per field (empty: :func:`to_bert` works)."""
    return _export(cfg)[1]


def bert_config_from_flexbert(cfg: FlexBertConfig, tokenizer: Any = None) -> BertConfig:
    """The ``BertConfig`` computing ``cfg``'s function; one ConfigError line naming every field it cannot."""
    values, problems = _export(cfg)
    raise_problems(problems, "model.model_config")
    pad = getattr(tokenizer, "pad_token_id", None)
    return BertConfig(**values, pad_token_id=pad if pad is not None and 0 <= pad < cfg.vocab_size else 0)


_LAYER = {"attention.output.dense": "attn.Wo", "attention.output.LayerNorm": "attn_norm",
          "intermediate.dense": "mlp.Wi", "output.dense": "mlp.Wo", "output.LayerNorm": "mlp_norm"}


def _names(cfg: FlexBertConfig) -> dict[str, str]:
    """BERT tensor name (without ``bert.``) -> FlexBERT name, for every tensor that maps one to one."""
    names = {"embeddings.word_embeddings.weight": "model.embeddings.tok_embeddings.weight",
             "embeddings.position_embeddings.weight": "model.embeddings.position_embeddings.weight",
             "cls.predictions.bias": "decoder.bias"}
    if cfg.type_vocab_size:
        names["embeddings.token_type_embeddings.weight"] = "model.embeddings.token_type_embeddings.weight"
    if not cfg.tie_word_embeddings:
        names["cls.predictions.decoder.weight"] = "decoder.weight"
    modules = {"embeddings.LayerNorm": "model.embeddings.norm", "cls.predictions.transform.dense": "head.dense",
               "cls.predictions.transform.LayerNorm": "head.norm"}
    for i in range(cfg.num_hidden_layers):
        for old, new in _LAYER.items():
            modules[f"encoder.layer.{i}.{old}"] = f"model.layers.{i}.{new}"
    for old, new in modules.items():
        names.update({f"{old}.{suffix}": f"{new}.{suffix}" for suffix in ("weight", "bias")})
    return names


def _qkv(layer: int, suffix: str) -> list[str]:
    return [f"encoder.layer.{layer}.attention.self.{part}.{suffix}" for part in ("query", "key", "value")]


# Source tensors the MLM function never reads: position/type id buffers, the pooler and NSP head.
_UNUSED = ("embeddings.position_ids", "embeddings.token_type_ids", "pooler.", "cls.seq_relationship.")


def flexbert_state_from_bert(state: dict[str, torch.Tensor], cfg: FlexBertConfig) -> dict[str, torch.Tensor]:
    """A BERT state dict (``BertModel`` or ``BertForMaskedLM``, with or without ``bert.``) under FlexBERT names.

    Query, key and value are concatenated into ``Wqkv``. Every other tensor is renamed, or is one the
    MLM never reads (pooler, NSP head, id buffers) or the copy of a tied one (checked equal); anything
    else fails, naming it.
    """
    src = {k.removeprefix("bert."): v for k, v in state.items()}
    out = {}
    for i in range(cfg.num_hidden_layers):
        for suffix in ("weight", "bias"):
            if all(k in src for k in _qkv(i, suffix)):
                out[f"model.layers.{i}.attn.Wqkv.{suffix}"] = torch.cat([src.pop(k) for k in _qkv(i, suffix)])
    if "cls.predictions.decoder.bias" in src:  # the bias the head adds: transformers 4 shares it with
        src["cls.predictions.bias"] = src.pop("cls.predictions.decoder.bias")  # cls.predictions.bias, 5 only when tied
    aliases = {}
    if cfg.tie_word_embeddings:
        aliases["cls.predictions.decoder.weight"] = "embeddings.word_embeddings.weight"
    for alias, original in aliases.items():
        if alias in src and original in src:
            same_tensor(src[alias], src[original], f"BERT weights {alias} and {original}")
    out.update(rename_exact(src, _names(cfg), lambda k: k in aliases or k.startswith(_UNUSED), "BERT weights"))
    if cfg.tie_word_embeddings and "model.embeddings.tok_embeddings.weight" in out:
        out["decoder.weight"] = out["model.embeddings.tok_embeddings.weight"]
    return out


def to_bert(model: torch.nn.Module, tokenizer: Any = None) -> BertForMaskedLM:
    """A transformers ``BertForMaskedLM`` computing the same logits as ``model`` (a FlexBERT in BERT form)."""
    cfg = model.config
    hf = BertForMaskedLM(bert_config_from_flexbert(cfg, tokenizer))
    ours = model.state_dict()
    state = {("" if old.startswith("cls.") else "bert.") + old: ours[new] for old, new in _names(cfg).items()}
    for i in range(cfg.num_hidden_layers):
        for suffix in ("weight", "bias"):
            parts = ours[f"model.layers.{i}.attn.Wqkv.{suffix}"].chunk(3)
            state.update({f"bert.{name}": part for name, part in zip(_qkv(i, suffix), parts, strict=True)})
    if not cfg.type_vocab_size:  # zero type embeddings add nothing, as FlexBERT without token types
        state["bert.embeddings.token_type_embeddings.weight"] = torch.zeros(2, cfg.hidden_size)
    state["cls.predictions.decoder.bias"] = ours["decoder.bias"]
    if cfg.tie_word_embeddings:
        state["cls.predictions.decoder.weight"] = ours["model.embeddings.tok_embeddings.weight"]
    load_exact(hf, state, "BERT export")
    return hf.eval()


# NSPHead tensor -> BertForPreTraining tensor.
NSP_NAMES = {f"{ours}.{suffix}": f"{theirs}.{suffix}" for ours, theirs in
             (("pooler", "bert.pooler.dense"), ("classifier", "cls.seq_relationship")) for suffix in ("weight", "bias")}


def nsp_export_refusal(what: str) -> str:
    """The one line refusing to export ``what`` (a model name) with its NSP head."""
    return (f"{what} has an NSP head, which only BERT keeps in transformers (BertForPreTraining); export a "
            f"BERT-shaped model (hf_bert model_type bert, or flexbert in BERT form), or train with objective mlm")


def exports_nsp(exporter: Callable | None) -> bool:
    """Whether a family's ``exporter`` writes ``BertForMaskedLM``, which :func:`to_bert_pretraining` extends."""
    return exporter is to_bert


def to_bert_pretraining(mlm: torch.nn.Module, head: NSPHead) -> BertForPreTraining:
    """A transformers ``BertForPreTraining``: ``mlm``'s (a ``BertForMaskedLM``) weights plus ``head`` as the pooler
    and ``cls.seq_relationship``, so that its MLM and NSP logits equal ours. Anything else refuses in one line."""
    if not isinstance(mlm, BertForMaskedLM):
        raise UserError(nsp_export_refusal(type(mlm).__name__))
    hf = BertForPreTraining(copy.deepcopy(mlm.config))
    state = {**mlm.state_dict(), **rename_exact(head.state_dict(), NSP_NAMES, lambda k: False, "NSP head")}
    load_exact(hf, state, "BERT export with NSP head")
    return hf.eval()


def load_nsp_head(head: NSPHead, name: str) -> None:
    """Load the pooler and NSP classifier of the transformers checkpoint ``name`` into ``head`` where it has them
    (a ``BertForPreTraining`` has both, a ``BertModel`` only the pooler); one log line says what stays new."""
    model_type = AutoConfig.from_pretrained(name).model_type
    if model_type != "bert":
        log.info("NSP head: new (pooler and classifier); '%s' is %s, which has no NSP weights", name, model_type)
        return
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its "newly initialized" warning would repeat the line below
    try:
        hf, info = BertForPreTraining.from_pretrained(name, output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
    missing = set(info["missing_keys"])
    theirs = hf.state_dict()
    found = {ours: theirs[key] for ours, key in NSP_NAMES.items() if key not in missing}
    parts = [part for part in ("pooler", "classifier") if all(f"{part}.{s}" in found for s in ("weight", "bias"))]
    head.load_state_dict({k: v for k, v in found.items() if k.split(".")[0] in parts}, strict=False)
    fresh = [part for part in ("pooler", "classifier") if part not in parts]
    log.info("NSP head: %s from '%s'%s", " and ".join(parts) or "nothing", name,
             f"; new {' and '.join(fresh)} (not in the checkpoint)" if fresh else "")
