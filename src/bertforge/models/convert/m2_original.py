"""The original M2-BERT (HazyResearch/m2, ``bert/src/bert_layers.py``) <-> our ``m2_bert`` family.

Config: every key of the original's config.json (or its YAML ``model.model_config``) is mapped to an
:class:`~bertforge.models.m2.config.M2BertConfig` field, known not to change the encoder's outputs, or refused
naming the key and value. Tensors: every tensor of the original's ``BertForMaskedLM`` state dict is mapped to
ours, recomputed by both sides from the config and checked (``pos_emb.t``, ``modulation.deltas``,
``position_ids``), a tied copy (the decoder weight, each filter's sine frequencies, stored once per sine
layer) checked equal, or kept aside unchanged (a pooler or classifier, which our family has no place for);
anything else, a missing tensor or a wrong shape fails with one line naming it. Our names are those of
:class:`~bertforge.models.m2.model.M2BertForMaskedLM` (no Composer ``model.`` prefix).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from bertforge.errors import UserError
from bertforge.models.convert.activations import from_hf, to_hf
from bertforge.models.convert.rules import PRETRAINED_IGNORED, Ignore, Must, Rule, To, apply_rules, raise_problems
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.filter import decay_rates

ASIDE_PREFIXES = ("bert.pooler.", "classifier.")
"""Heads of the original's classification / retrieval models: kept aside unchanged, written back on export."""
HEAD_PREFIX = "cls.predictions."
NEEDED = ("long_conv_l_max", "long_conv_kernel_learning_rate", "hyena_lr_pos_emb", "hyena_w", "hyena_wd",
          "hyena_emb_dim")
"""Keys the original reads without a default (its model cannot be built without them)."""
ORIGINAL_DEFAULTS: dict[str, Any] = {
    # transformers' BertConfig
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12,
    # the original's BertConfig (bert/src/configuration_bert.py)
    "use_glu_mlp": True, "use_monarch_mlp": False, "monarch_mlp_nblocks": 4, "use_positional_encodings": False,
    "monarch_mixer_sequence_mixing": False, "residual_long_conv": False, "bidirectional": True, "hyena_w_mod": 1,
    "hyena_filter_order": 64, "hyena_training_additions": False, "use_flash_mm": False,
}
"""What the original uses for a key its config leaves out (vocab_size comes from the weights)."""

_TRAINING = Ignore("training-only (learning rates, weight decay, dropout the original never applies at this place)")
_POOLER = Ignore("read only by the original's pooler / sentence-embedding heads, which are kept aside, not converted")
_SCRIPT = Ignore("a setting of the original's training / evaluation scripts; the model's function does not read it")
_ATTENTION = Ignore("attention settings; with monarch_mixer_sequence_mixing the original builds no attention")


def _mlp_blocks(value: Any, src: Any) -> dict:
    return {"mlp_blocks": int(src.monarch_mlp_nblocks) if value else 1}


def _head_activation(value: Any, src: Any) -> dict:
    return {"head_activation": from_hf(value)}


CONFIG_RULES: dict[str, Rule] = {
    **PRETRAINED_IGNORED,
    "vocab_size": To(), "hidden_size": To(), "num_hidden_layers": To(), "intermediate_size": To(),
    "max_position_embeddings": To(), "type_vocab_size": To(),
    "hidden_dropout_prob": To("hidden_dropout"), "layer_norm_eps": To("norm_eps"), "initializer_range": To("init_std"),
    "hidden_act": To(fn=_head_activation),
    "long_conv_l_max": To("filter_length"), "long_conv_kernel_learning_rate": To("filter_lr"),
    "hyena_lr_pos_emb": To("pos_features_lr"), "hyena_w": To("filter_sine_freq"),
    "hyena_w_mod": To("filter_sine_freq_mod"), "hyena_wd": To("filter_weight_decay"),
    "hyena_emb_dim": To("filter_emb_dim"), "hyena_filter_order": To("filter_order"),
    "bidirectional": To(), "residual_long_conv": To(), "hyena_training_additions": To("mixer_input_norm"),
    "use_glu_mlp": To(fn=lambda value, src: {"mlp_type": "glu" if value else "mlp"}),
    "use_monarch_mlp": To(fn=_mlp_blocks),
    "monarch_mlp_nblocks": Ignore("read with use_monarch_mlp (mlp_blocks)"),
    "monarch_mixer_sequence_mixing": Must((True,), "false is the original's attention BERT; import it as BERT"),
    "use_positional_encodings": Must((True,), "m2_bert always adds learned positions, as every published M2"),
    "use_flash_mm": Must((False,), "FlashMMSequenceMixing stores its filters in another layout; not supported"),
    "use_flash_fft": Ignore("execution only: the FlashFFTConv kernel computes the same convolution"),
    "hyena_filter_dropout": _TRAINING, "attention_probs_dropout_prob": _ATTENTION, "num_attention_heads": _ATTENTION,
    "alibi_starting_size": _ATTENTION, "position_embedding_type": Ignore("transformers' BERT key; never read"),
    "classifier_dropout": _POOLER, "num_labels": _POOLER, "pool_all": _POOLER, "use_cls_token": _POOLER,
    "gather_sentence_embeddings": _POOLER, "use_normalized_embeddings": _POOLER, "attention_pooling": _POOLER,
    "sequence_token_planting": _POOLER,
    "expand_positional_embeddings": Ignore("a load-time resize in the original's from_composer; the weights "
                                           "given here are used with the shapes they have"),
    "performing_BEIR_evaluation": _SCRIPT, "pretrained_checkpoint": _SCRIPT, "use_learnable_monarch": _SCRIPT,
    "precision": _SCRIPT, "evaluation_max_seq_len": _SCRIPT, "gradient_checkpointing": _SCRIPT,
    "torch_dtype": Ignore("storage precision; weights are loaded into float32 parameters"),
    "auto_map": _SCRIPT, "is_decoder": Ignore("the original only warns about it"),
}


def config_from_original(original: dict[str, Any], vocab_size: int | None = None,
                         where: str = "config.json") -> M2BertConfig:
    """Our config for the original's config dict; one ConfigError line naming every key it cannot express.

    ``vocab_size`` (rows of the checkpoint's word embeddings) fills a config without one.
    """
    values = {**ORIGINAL_DEFAULTS, **({"vocab_size": vocab_size} if vocab_size else {}), **original}
    missing = [k for k in (*NEEDED, "vocab_size") if k not in values]
    if missing:
        raise UserError(f"{where}: lacks {', '.join(missing)}, which the original model needs; add them")
    table = {key: rule for key, rule in CONFIG_RULES.items() if key in values}
    mapped, problems = apply_rules(SimpleNamespace(**values), table, values, "", "expressed by m2_bert")
    raise_problems(problems, where)
    try:
        return M2BertConfig(**mapped)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None


OUR_RULES: dict[str, Rule] = {  # our fields -> the original's keys (written by config_to_original)
    "filter_inner_layers": Must((2,), "the original's filter MLP has 2 inner layers"),
    "short_conv_kernel": Must((3,), "the original's short convolution has kernel 3"),
    "filter_decay_fast": Must((0.3,), "the original fixes it"), "filter_decay_slow": Must((1.5,), "fixed"),
    "filter_decay_target": Must((1e-2,), "the original fixes it"),
    "head_norm_eps": Must((1e-12,), "the original's MLM head LayerNorm has eps 1e-12"),
    "mlp_type": Must(("glu", "mlp"), "glu or mlp"),
    **{name: Ignore("written to config.json") for name in (
        "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
        "type_vocab_size", "hidden_dropout", "norm_eps", "filter_order", "filter_emb_dim", "filter_sine_freq",
        "filter_sine_freq_mod", "filter_length", "bidirectional", "residual_long_conv", "mixer_input_norm",
        "mlp_blocks", "filter_lr", "filter_weight_decay", "pos_features_lr", "head_activation", "init_std")},
    **{name: Ignore("bertforge execution or training setting") for name in (
        "pad_vocab_to_multiple_of", "fftconv_backend", "kernels", "mlm_targets", "activation_checkpointing",
        "activation_checkpointing_every")},
}


def config_to_original(cfg: M2BertConfig) -> dict[str, Any]:
    """The original's config.json for our ``cfg`` (vocab_size set); one ConfigError line per field it lacks."""
    _, problems = apply_rules(cfg, OUR_RULES, [f.name for f in dataclasses.fields(cfg)], "", "written as M2")
    if cfg.type_vocab_size < 1:
        problems.append(f"type_vocab_size={cfg.type_vocab_size} cannot be written as M2: it always has token types")
    try:
        activation = to_hf(cfg.head_activation)
    except ValueError as err:
        problems.append(f"head_activation={cfg.head_activation!r} cannot be written as M2: {err}")
        activation = None
    raise_problems(problems, "model.model_config")
    return {
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": 12 if cfg.hidden_size % 12 == 0 else 1, "intermediate_size": cfg.intermediate_size,
        "hidden_act": activation, "hidden_dropout_prob": cfg.hidden_dropout, "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": cfg.max_position_embeddings, "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.init_std, "layer_norm_eps": cfg.norm_eps, "pad_token_id": 0,
        "monarch_mixer_sequence_mixing": True, "long_conv_l_max": cfg.filter_length or cfg.max_position_embeddings,
        "long_conv_kernel_learning_rate": cfg.filter_lr, "hyena_lr_pos_emb": cfg.pos_features_lr,
        "hyena_w": cfg.filter_sine_freq, "hyena_w_mod": cfg.filter_sine_freq_mod, "hyena_wd": cfg.filter_weight_decay,
        "hyena_emb_dim": cfg.filter_emb_dim, "hyena_filter_order": cfg.filter_order, "hyena_filter_dropout": 0.0,
        "hyena_training_additions": cfg.mixer_input_norm, "bidirectional": cfg.bidirectional,
        "residual_long_conv": cfg.residual_long_conv, "use_glu_mlp": cfg.mlp_type == "glu",
        "use_monarch_mlp": cfg.mlp_blocks > 1, "monarch_mlp_nblocks": cfg.mlp_blocks if cfg.mlp_blocks > 1 else 4,
        "use_positional_encodings": True, "use_flash_mm": False, "use_flash_fft": False, "pool_all": False,
    }


# ---------------------------------------------------------------- tensors


@dataclass(frozen=True)
class Link:
    """One original tensor <-> one of ours; ``theirs_shape`` reshapes ours to the original's (None: same)."""

    theirs: str
    ours: str
    theirs_shape: tuple[int, ...] | None = None


@dataclass
class Layout:
    """Every original tensor name of a config: linked to ours, or derived (recomputed / tied) from ours."""

    links: list[Link] = field(default_factory=list)
    derived: dict[str, tuple[str, Any]] = field(default_factory=dict)
    """original name -> (what it is, how to compute it: an our-name (a tied copy) or a tensor (fixed))."""


def _pair(links: list[Link], theirs: str, ours: str, names: tuple[str, ...] = ("weight", "bias")) -> None:
    links.extend(Link(f"{theirs}.{n}", f"{ours}.{n}") for n in names)


def _filter(layout: Layout, theirs: str, ours: str, cfg: M2BertConfig) -> None:
    length = cfg.filter_length or cfg.max_position_embeddings
    layout.links += [Link(f"{theirs}.bias", f"{ours}.D"),
                     Link(f"{theirs}.pos_emb.z", f"{ours}.z", (1, length, cfg.filter_emb_dim))]
    directions = [("implicit_filter", "fwd")] + ([("implicit_filter_rev", "rev")] if cfg.bidirectional else [])
    sines = [f"{theirs}.{seq}.{2 * i + 1}.freq" for seq, _ in directions for i in range(cfg.filter_inner_layers + 1)]
    layout.links.append(Link(sines[0], f"{ours}.sine.freq", (1, cfg.filter_order)))
    for copy in sines[1:]:  # one Sin module shared by every layer of both filter MLPs
        layout.derived[copy] = ("a copy of the shared sine frequencies", f"{ours}.sine.freq")
    for seq, mine in directions:
        for i in range(cfg.filter_inner_layers + 1):
            _pair(layout.links, f"{theirs}.{seq}.{2 * i}", f"{ours}.{mine}.layers.{i}")
        last = 2 * cfg.filter_inner_layers + 2
        layout.links.append(Link(f"{theirs}.{seq}.{last}.weight", f"{ours}.{mine}.out.weight"))
    layout.derived[f"{theirs}.pos_emb.t"] = ("the filter positions t = linspace(0, 1, long_conv_l_max)",
                                             torch.linspace(0, 1, length)[None, :, None])
    layout.derived[f"{theirs}.modulation.deltas"] = ("the decay rates (negated)",
                                                     -decay_rates(cfg.hidden_size, cfg)[None, None])


def layout(cfg: M2BertConfig) -> Layout:
    """The original's tensor names for ``cfg`` and how each relates to ours."""
    out = Layout()
    hidden, width, blocks = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_blocks
    emb = "bert.embeddings"
    out.links += [Link(f"{emb}.word_embeddings.weight", "model.embeddings.tok_embeddings.weight"),
                  Link(f"{emb}.position_embeddings.weight", "model.embeddings.position_embeddings.weight"),
                  Link(f"{emb}.token_type_embeddings.weight", "model.embeddings.token_type_embeddings.weight")]
    _pair(out.links, f"{emb}.LayerNorm", "model.embeddings.norm")
    out.derived[f"{emb}.position_ids"] = ("positions 0..max_position_embeddings-1",
                                          torch.arange(cfg.max_position_embeddings)[None])
    wi_out = 2 * width if cfg.mlp_type == "glu" else width
    for i in range(cfg.num_hidden_layers):
        theirs, ours = f"bert.encoder.layer.{i}", f"model.layers.{i}"
        _pair(out.links, f"{theirs}.attention.in_linear", f"{ours}.mixer.Win")
        _pair(out.links, f"{theirs}.attention.out_linear", f"{ours}.mixer.Wo")
        _pair(out.links, f"{theirs}.attention.short_filter", f"{ours}.mixer.short_conv")
        if cfg.mixer_input_norm:
            _pair(out.links, f"{theirs}.attention.layernorm", f"{ours}.mixer.input_norm")
        _filter(out, f"{theirs}.attention.filter_fn", f"{ours}.mixer.long_conv", cfg)
        if cfg.residual_long_conv:
            _filter(out, f"{theirs}.attention.filter_fn2", f"{ours}.mixer.residual_conv", cfg)
        dense = blocks == 1  # the original's nn.Linear: (out, in), ours (1, out, in)
        out.links += [Link(f"{theirs}.mlp.gated_layers.weight", f"{ours}.mlp.Wi.weight", (wi_out, hidden) if dense
                           else None),
                      Link(f"{theirs}.mlp.wo.weight", f"{ours}.mlp.Wo.weight", (hidden, width) if dense else None),
                      Link(f"{theirs}.mlp.wo.bias", f"{ours}.mlp.Wo.bias")]
        _pair(out.links, f"{theirs}.mlp.layernorm", f"{ours}.mlp_norm")
    _pair(out.links, f"{HEAD_PREFIX}transform.dense", "head.dense")
    _pair(out.links, f"{HEAD_PREFIX}transform.LayerNorm", "head.norm")
    out.links.append(Link(f"{HEAD_PREFIX}decoder.bias", "decoder.bias"))
    out.derived[f"{HEAD_PREFIX}decoder.weight"] = ("the decoder, tied to the word embeddings",
                                                   "model.embeddings.tok_embeddings.weight")
    return out


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original's names as its ``BertForMaskedLM`` has them: drop a Composer ``model.`` (or DDP ``module.``)
    prefix every key has; a bare ``BertModel``'s ``embeddings.``/``encoder.`` get ``bert.``."""
    for prefix in ("model.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    if state and all(k.startswith(("embeddings.", "encoder.", "pooler.")) for k in state):
        state = {f"bert.{k}": v for k, v in state.items()}
    return state


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")


@dataclass
class ImportReport:
    """What an import did: tensors mapped, derived ones checked, heads kept aside, our head tensors left fresh."""

    mapped: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    aside: dict[str, torch.Tensor] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Recomputed buffers: the same up to the storage precision of the file (bf16 at worst)."""
    if a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b.to(a.dtype))
    return torch.allclose(a.double(), b.double(), rtol=1e-2, atol=1e-3)


def state_from_original(state: dict[str, torch.Tensor], cfg: M2BertConfig,
                        where: str = "checkpoint") -> tuple[dict[str, torch.Tensor], ImportReport]:
    """Our state dict (M2BertForMaskedLM names) from the original's; one UserError line naming any tensor that is
    missing, unexpected, of the wrong shape, or a tied / recomputed copy that disagrees.

    A checkpoint without the MLM head (a retrieval or classification model) leaves ours out: ``report.fresh``
    names them (the model keeps its initial head). Poolers and classifiers go to ``report.aside`` unchanged.
    """
    state = normalize_keys(state)
    plan, report = layout(cfg), ImportReport()
    our_shapes, expected = shapes(cfg)
    no_head = not any(k.startswith(HEAD_PREFIX) for k in state)
    unexpected = [k for k in state if k not in expected and not k.startswith(ASIDE_PREFIXES)]
    missing = [k for k in expected if k not in state and not (no_head and k.startswith(HEAD_PREFIX))
               and k != f"{HEAD_PREFIX}decoder.weight"]  # transformers may save a tied decoder only once
    if unexpected or missing:
        parts = ([f"unexpected {_names(unexpected)}"] if unexpected else []) + (
            [f"missing {_names(missing)}"] if missing else [])
        raise UserError(f"{where}: does not fit the config: {'; '.join(parts)}; is config.json the checkpoint's own?")
    wrong = [f"{k} {tuple(state[k].shape)} (config: {expected[k]})" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if wrong:
        raise UserError(f"{where}: wrong shapes: {_names(wrong)}; is config.json the checkpoint's own?")
    ours: dict[str, torch.Tensor] = {}
    for link in plan.links:
        if link.theirs not in state:
            report.fresh.append(link.ours)
            continue
        ours[link.ours] = state[link.theirs].reshape(our_shapes[link.ours])
        report.mapped.append(link.theirs)
    ours["decoder.weight"] = ours["model.embeddings.tok_embeddings.weight"]
    if no_head:
        report.fresh.append("decoder.weight (tied: the imported word embeddings)")
    bad = []
    for name, (what, source) in plan.derived.items():
        if name not in state:
            continue
        value = state[name]
        same = (_close(source, value) if isinstance(source, torch.Tensor)
                else torch.equal(ours[source].reshape(value.shape).to(value.dtype), value))
        if not same:
            bad.append(f"{name} ({what})")
        report.checked.append(name)
    if bad:
        raise UserError(f"{where}: tensors that m2_bert recomputes or ties differ from the config's: {_names(bad)}")
    report.aside = {k: v for k, v in state.items() if k.startswith(ASIDE_PREFIXES)}
    return ours, report


def shapes(cfg: M2BertConfig) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Our tensor shapes and the original's (name -> shape) for ``cfg``, from our model on the meta device."""
    from bertforge.models.m2.model import M2BertForMaskedLM

    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in M2BertForMaskedLM(cfg).state_dict().items()}
    plan = layout(cfg)
    theirs = {link.theirs: link.theirs_shape or ours[link.ours] for link in plan.links}
    for name, (_, source) in plan.derived.items():
        theirs[name] = tuple(source.shape) if isinstance(source, torch.Tensor) else _tied_shape(name, ours[source])
    return ours, theirs


def _tied_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, *shape) if name.endswith(".freq") else shape


def state_to_original(ours: dict[str, torch.Tensor], cfg: M2BertConfig,
                      aside: dict[str, torch.Tensor] | None = None,
                      drop_head: bool = False) -> dict[str, torch.Tensor]:
    """The original ``BertForMaskedLM`` state dict (its own names, buffers included) for our state dict.

    ``aside`` (heads kept at import) is added back; ``drop_head`` leaves out the MLM head (for a checkpoint
    imported without one). Tied copies share storage with the tensor they copy.
    """
    plan, out = layout(cfg), {}
    for link in plan.links:
        if drop_head and link.theirs.startswith(HEAD_PREFIX):
            continue
        out[link.theirs] = ours[link.ours].reshape(link.theirs_shape) if link.theirs_shape else ours[link.ours]
    for name, (_, source) in plan.derived.items():
        if drop_head and name.startswith(HEAD_PREFIX):
            continue
        if isinstance(source, torch.Tensor):
            out[name] = source.clone()
        else:
            first = next(link.theirs for link in plan.links if link.ours == source)
            out[name] = out[first]
    out.update(aside or {})
    return out
