"""What a converter does with every config field and every tensor, so that nothing is dropped silently.

Each direction (a transformers config -> FlexBERT, FlexBERT -> a transformers config) is a table that
classifies EVERY field of the source config: :class:`To` maps it, :class:`Must` restricts it to the
values the target can express (anything else is refused, naming the field and the fix), :class:`Ignore`
says why it cannot change the function (tests check that no field goes unclassified). Tensors go
through :func:`rename_exact` and :func:`load_exact`, which fail on any tensor left over or missing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from bertforge.errors import ConfigError, UserError
from bertforge.models.flexbert.config import FlexBertConfig

FLEXBERT_FIELDS = tuple(f.name for f in dataclasses.fields(FlexBertConfig))
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class To:
    """Mapped: to ``target`` (default: the same name), or to the fields ``fn(value, source)`` returns."""

    target: str | None = None
    fn: Callable[[Any, Any], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Must:
    """The target format fixes this field: it must be one of ``allowed``; ``fix`` says what to do otherwise."""

    allowed: tuple
    fix: str


@dataclass(frozen=True)
class Ignore:
    """The field cannot change the function computed (``why``)."""

    why: str


Rule = To | Must | Ignore

# PretrainedConfig fields (shared by every transformers config) that cannot change an encoder's outputs.
_GENERATION = "generate() settings; an encoder's forward never reads them"
_METADATA = "bookkeeping and labels for other heads; the MLM forward never reads them"
_OUTPUT = "what forward returns besides the logits, not their values"
PRETRAINED_IGNORED: dict[str, Rule] = {
    **{name: Ignore(_GENERATION) for name in (
        "bad_words_ids", "begin_suppress_tokens", "decoder_start_token_id", "diversity_penalty", "do_sample",
        "early_stopping", "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty", "forced_bos_token_id",
        "forced_eos_token_id", "length_penalty", "max_length", "min_length", "no_repeat_ngram_size",
        "num_beam_groups", "num_beams", "num_return_sequences", "output_scores", "remove_invalid_values",
        "repetition_penalty", "return_dict_in_generate", "suppress_tokens", "temperature", "top_k", "top_p",
        "typical_p", "use_cache", "is_encoder_decoder", "tie_encoder_decoder")},
    **{name: Ignore(_METADATA) for name in (
        "_name_or_path", "architectures", "finetuning_task", "id2label", "label2id", "model_type", "prefix",
        "problem_type", "task_specific_params", "tokenizer_class", "transformers_version", "tf_legacy_loss")},
    **{name: Ignore(_OUTPUT) for name in ("output_attentions", "output_hidden_states", "return_dict")},
    **{name: Ignore("special token ids; only the tokenizer and generate() use them (padding_idx only stops "
                    "that embedding row's gradient)") for name in ("bos_token_id", "eos_token_id", "sep_token_id",
                                                                    "pad_token_id", "cls_token_id")},
    "dtype": Ignore("storage precision; weights are copied into FlexBERT's float32 parameters"),
    "use_bfloat16": Ignore("legacy TensorFlow precision flag"),
    "torchscript": Ignore("clones the tied decoder instead of sharing it: same values"),
    "chunk_size_feed_forward": Ignore("splits the feed-forward over the sequence to save memory: same values"),
    "pruned_heads": Must(({},), "FlexBERT has no pruned heads; convert the model before pruning"),
    "add_cross_attention": Must((False,), "FlexBERT is an encoder without cross-attention; set it to false"),
    "cross_attention_hidden_size": Ignore("read only with add_cross_attention, which must be false"),
}


def unclassified(table: dict[str, Rule], fields: Iterable[str]) -> list[str]:
    """The ``fields`` that ``table`` does not classify (a converter must classify them all)."""
    return sorted(set(fields) - set(table))


def apply_rules(source: Any, table: dict[str, Rule], fields: Iterable[str], where: str,
                target: str) -> tuple[dict[str, Any], list[str]]:
    """Walk ``table`` over ``source`` (a config object): the mapped target fields, and one problem per refusal.

    ``fields`` are all the fields the source's class has; one the table does not classify is a problem too
    (a newer transformers or FlexBERT added it), so nothing can be skipped. ``where`` prefixes field names
    in the problems (e.g. ``BertConfig.``), ``target`` names the format for them.
    """
    problems = [f"{where}{name}: unknown to bertforge's {target} converter (a newer version added it); "
                f"pin the version bertforge supports" for name in unclassified(table, fields)]
    out: dict[str, Any] = {}
    for name, rule in table.items():
        if not hasattr(source, name):  # a field this transformers version does not have (5 dropped pruned_heads,
            continue                   # BERT's position_embedding_type, ModernBERT's *_rope_theta): nothing to map
        value = getattr(source, name)
        if isinstance(rule, Must) and not any(_same(value, ok) for ok in rule.allowed):
            problems.append(f"{where}{name}={value!r} cannot be {target}: {rule.fix}")
        elif isinstance(rule, To):
            try:
                out.update(rule.fn(value, source) if rule.fn else {rule.target or name: value})
            except ValueError as err:  # a converter's own refusal
                problems.append(f"{where}{name}={value!r} cannot be {target}: {err}")
    return out, problems


def _same(value: Any, allowed: Any) -> bool:
    return type(value) is type(allowed) and value == allowed if isinstance(allowed, bool) else value == allowed


def import_config(hf: Any, table: dict[str, Rule], form: dict[str, Any], overrides: dict[str, Any]) -> FlexBertConfig:
    """The FlexBERT config for the transformers config ``hf``: ``table``'s mapped fields, the fixed ``form`` of
    that architecture, then ``overrides``; one ConfigError line naming every field it cannot express."""
    values, problems = apply_rules(hf, table, type(hf)().to_dict(), "", "converted to FlexBERT")
    raise_problems(problems, type(hf).__name__)
    source = {**values, **form}
    changed = {k: v for k, v in overrides.items() if k in source and source[k] != v}
    if changed:  # applied as asked, but never silently: they change the converted model
        log.warning("model.model_config on top of the converted %s: %s", type(hf).__name__,
                    ", ".join(f"{k} {source[k]!r} -> {v!r}" for k, v in changed.items()))
    return FlexBertConfig(**{**source, **overrides})


def export_fields(cfg: FlexBertConfig, table: dict[str, Rule], target: str) -> tuple[dict[str, Any], list[str]]:
    """The transformers config fields for ``cfg`` under ``table``, and one problem per field it cannot express."""
    return apply_rules(cfg, table, FLEXBERT_FIELDS, "", f"written as {target}")


def raise_problems(problems: list[str], key: str) -> None:
    """Raise one ConfigError line listing ``problems`` (nothing when empty)."""
    if problems:
        raise ConfigError(key, "; ".join(problems))


def rename_exact(state: dict[str, torch.Tensor], names: dict[str, str], ignored: Callable[[str], bool],
                 what: str) -> dict[str, torch.Tensor]:
    """``state`` under new names (``names``: old -> new); fails naming any tensor neither renamed nor ``ignored``."""
    left = sorted(k for k in state if k not in names and not ignored(k))
    if left:
        raise UserError(f"{what}: tensors with no counterpart, the converted model would lose them: {left}")
    return {new: state[old] for old, new in names.items() if old in state}


def load_exact(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module`` with every parameter and persistent buffer filled and nothing left over."""
    own = module.state_dict()
    reshaped = [f"{k} {tuple(v.shape)} here, {tuple(state[k].shape)} given" for k, v in own.items()
                if k in state and v.shape != state[k].shape]
    if reshaped:  # load_state_dict would raise a multi-line RuntimeError
        raise UserError(f"{what}: tensors of another shape: {'; '.join(sorted(reshaped))}")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{what}: tensors missing {sorted(missing)}, unexpected {sorted(unexpected)}")


def tensor_layout(module: torch.nn.Module, ties: bool = True) -> dict[str, tuple]:
    """What a checkpoint must fit: name -> (shape, the first name of the same tensor when ``ties``, i.e. tied
    weights) for every parameter and persistent buffer. Cheap on the meta device."""
    first: dict[int, str] = {}
    return {name: (tuple(t.shape), first.setdefault(id(t), name) if ties else name)
            for name, t in module.state_dict(keep_vars=True).items()}


def layout_difference(old: dict[str, tuple], new: dict[str, tuple], shown: int = 3) -> str:
    """The first ``shown`` tensors whose presence, shape or tying differ between two :func:`tensor_layout`s."""

    def describe(name: str, entry: tuple | None) -> str:
        if entry is None:
            return "absent"
        return str(entry[0]) + (f" tied to {entry[1]}" if entry[1] != name else "")

    names = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    parts = [f"{k} {describe(k, old.get(k))} -> {describe(k, new.get(k))}" for k in names[:shown]]
    return "; ".join(parts) + (f"; {len(names) - shown} more" if len(names) > shown else "")


def same_tensor(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    """Fail when two tensors a tied model must share differ (e.g. a decoder saved apart from its embeddings)."""
    if a.shape != b.shape or not torch.equal(a, b):
        raise UserError(f"{what}: the config ties them but the tensors differ; set tie_word_embeddings: false")
