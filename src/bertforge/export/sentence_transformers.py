"""Any bertforge run (every family) or Hugging Face / sentence-transformers folder as a sentence-transformers model:
the transformer module (bertforge's own code for families transformers lacks), pooling (mean over the real tokens,
or the first token) and optional L2 normalisation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import bertforge.export.remote  # noqa: F401  (registers model_type bertforge with transformers' Auto classes)
from bertforge.errors import UserError
from bertforge.export.source import hf_folder, require

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

POOLING = ("mean", "cls")


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


def to_sentence_transformer(source: str, pooling: Literal["mean", "cls"] = "mean", normalize: bool = False,
                            max_seq_length: int | None = None, trust_remote_code: bool = False) -> SentenceTransformer:
    """A SentenceTransformer for ``source`` (a bertforge run folder, or a Hugging Face / sentence-transformers
    folder or Hub name): Transformer + Pooling (``mean``: over the real tokens; ``cls``: the first token) +
    Normalize when ``normalize``. ``max_seq_length``: the longest input in tokens (default: the tokenizer's)."""
    if pooling not in POOLING:
        raise UserError(f"pooling: '{pooling}' is not one of {', '.join(POOLING)}")
    st = require("sentence_transformers", "sentence-transformers")
    with hf_folder(source) as folder:
        transformer = transformer_module(folder, max_seq_length, trust_remote_code)
    modules = [transformer, st.models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode=pooling)]
    if normalize:
        modules.append(st.models.Normalize())
    return st.SentenceTransformer(modules=modules)


def save_sentence_transformer(source: str, out: str, pooling: Literal["mean", "cls"] = "mean",
                              normalize: bool = False, max_seq_length: int | None = None) -> str:
    """Write :func:`to_sentence_transformer`'s model to ``out``, which ``SentenceTransformer(out)`` loads
    (a bertforge-code folder: with ``trust_remote_code=True`` where bertforge is not imported); return ``out``."""
    to_sentence_transformer(source, pooling, normalize, max_seq_length).save(out)
    return out
