"""Build a retriever from any starting point: a sentence-transformers / PyLate folder, a transformers folder, or
a bertforge run (every family), through :mod:`bertforge.export`; dense models are sentence-transformers',
ColBERT ones PyLate's."""

from __future__ import annotations

import logging
import os

from bertforge.export.source import require
from bertforge.retrieval.config import ModelSettings

log = logging.getLogger(__name__)


def cap_length(model, wanted: int) -> int:
    """``wanted`` capped by the encoder's ``max_position_embeddings`` (one log line when it is)."""
    config = getattr(model[0].auto_model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and 0 < limit < wanted:
        log.info("model.max_seq_length=%d exceeds the model's max_position_embeddings; using %d", wanted, limit)
        return limit
    return wanted


def load_dense(settings: ModelSettings, device: str, path: str | None = None):
    """A ``SentenceTransformer`` from ``path`` (default ``settings.path``) with ``max_seq_length`` applied. A
    sentence-transformers folder keeps its own pooling; other sources get ``settings.pooling``/``normalize``."""
    st = require("sentence_transformers", "sentence-transformers")
    from bertforge.export.sentence_transformers import to_sentence_transformer  # also registers bertforge code
    from bertforge.export.source import is_run

    path = path or settings.path
    if not is_run(path) and os.path.isfile(os.path.join(path, "modules.json")):
        model = st.SentenceTransformer(path, device=device)
    else:
        model = to_sentence_transformer(path, pooling=settings.pooling, normalize=settings.normalize)
    model.to(device)
    model.max_seq_length = cap_length(model, settings.max_seq_length)
    return model


def load_colbert(settings: ModelSettings, device: str, path: str | None = None):
    """A PyLate ``ColBERT`` from ``path`` (default ``settings.path``). An encoder without a projection gets a new
    ``embedding_size`` one, randomly initialised: zero-shot figures of such a model mean little."""
    require("pylate", "pylate")
    from bertforge.export.pylate import to_colbert

    model = to_colbert(path or settings.path, dim=settings.embedding_size, query_length=settings.query_length,
                       document_length=settings.max_seq_length)
    model.to(device)
    length = cap_length(model, settings.max_seq_length)
    model.document_length = length
    model.max_seq_length = length
    return model
