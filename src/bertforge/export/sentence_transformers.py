"""Any bertforge run (every family) or Hugging Face / sentence-transformers folder as a sentence-transformers model:
the transformer module (bertforge's own code for families transformers lacks), pooling (mean over the real tokens,
or the first token) and optional L2 normalisation."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import bertforge.export.remote  # noqa: F401  (registers model_type bertforge with transformers' Auto classes)
from bertforge.errors import UserError
from bertforge.export.source import hf_folder, require, st_json, st_modules

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

POOLING = ("mean", "cls")
# Pooling's config keys pooling_mode_<key> -> sentence-transformers' pooling_mode names
_MODE_NAMES = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max", "weightedmean_tokens": "weightedmean"}
_MODEL_SETTINGS = ("prompts", "default_prompt_name", "similarity_fn_name")  # config_sentence_transformers.json


def source_head(source: str) -> dict[str, Any]:
    """What a sentence-transformers folder ``source`` computes after its transformer, for the export to keep: its
    ``pooling`` (``mean``, ``cls``, or another mode's name), ``normalize``, ``include_prompt`` and its prompt
    settings (``model``); {} for any other source. A module the export has no place for is refused by name."""
    entries = st_modules(source)
    if entries is None:
        return {}
    settings = st_json(source, "config_sentence_transformers.json") or {}
    head: dict[str, Any] = {"normalize": False, "model": {k: v for k, v in settings.items() if k in _MODEL_SETTINGS}}
    for entry in entries:
        if entry["kind"] == "Pooling":
            config = st_json(source, os.path.join(entry.get("path", ""), "config.json")) or {}
            modes = [k.removeprefix("pooling_mode_") for k, v in config.items() if k.startswith("pooling_mode_") and v]
            head["pooling"] = "+".join(_MODE_NAMES.get(m, m) for m in modes)
            head["include_prompt"] = config.get("include_prompt", True)
        elif entry["kind"] == "Normalize":
            head["normalize"] = True
        elif entry["kind"] != "Transformer":
            raise UserError(f"{source}: module {entry.get('path') or entry.get('name')} ({entry['kind']}) has no "
                            f"place in the export (Transformer, Pooling, Normalize); use the folder as it is")
    return head


def transformer_module(folder: str, max_seq_length: int | None = None, trust_remote_code: bool = False):
    """sentence-transformers' Transformer module for the transformers folder (or Hub name) ``folder``.

    A bertforge folder (``model_type: bertforge``) loads through the classes :mod:`bertforge.export.remote`
    registers, so without ``trust_remote_code``; ``trust_remote_code`` is for other folders with their own code.
    """
    models = require("sentence_transformers", "sentence-transformers").models
    trust = {"trust_remote_code": True} if trust_remote_code else {}
    try:
        module = models.Transformer(folder, max_seq_length=max_seq_length, model_args=dict(trust),
                                    config_args=dict(trust), tokenizer_args=dict(trust))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{folder}: cannot load it as a transformers model ({first})") from None
    return module


def to_sentence_transformer(source: str, pooling: Literal["mean", "cls"] | None = None, normalize: bool | None = None,
                            max_seq_length: int | None = None, trust_remote_code: bool = False) -> SentenceTransformer:
    """A SentenceTransformer for ``source`` (a bertforge run folder, or a Hugging Face / sentence-transformers
    folder or Hub name): Transformer + Pooling (``mean``: over the real tokens; ``cls``: the first token) +
    Normalize when ``normalize``. ``pooling`` / ``normalize`` None: a sentence-transformers source's own (with its
    prompts), else mean / false. ``max_seq_length``: the longest input in tokens (default: the tokenizer's)."""
    if pooling is not None and pooling not in POOLING:
        raise UserError(f"pooling: '{pooling}' is not one of {', '.join(POOLING)}")
    head = source_head(source)
    if pooling is None:
        pooling = head.get("pooling", "mean")
        if pooling not in POOLING:
            raise UserError(f"{source}: pools with '{pooling}', which the export cannot write; choose pooling mean or "
                            "cls")
    normalize = head.get("normalize", False) if normalize is None else normalize
    st = require("sentence_transformers", "sentence-transformers")
    with hf_folder(source) as folder:
        transformer = transformer_module(folder, max_seq_length, trust_remote_code)
    modules = [transformer, st.models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode=pooling,
                                              include_prompt=head.get("include_prompt", True))]
    if normalize:
        modules.append(st.models.Normalize())
    return st.SentenceTransformer(modules=modules, **head.get("model", {}))


def save_sentence_transformer(source: str, out: str, pooling: Literal["mean", "cls"] | None = None,
                              normalize: bool | None = None, max_seq_length: int | None = None) -> str:
    """Write :func:`to_sentence_transformer`'s model to ``out``, which ``SentenceTransformer(out)`` loads
    (a bertforge-code folder: with ``trust_remote_code=True`` where bertforge is not imported); return ``out``."""
    to_sentence_transformer(source, pooling, normalize, max_seq_length).save(out)
    return out
