"""Any bertforge run (every family) or Hugging Face folder as a PyLate ColBERT model: the transformer module, then
a linear projection to ``dim`` (freshly initialised unless given); PyLate L2-normalises each token's embedding and
adds its query / document prefix tokens to the tokenizer (new embedding rows)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from bertforge.errors import UserError
from bertforge.export.sentence_transformers import transformer_module
from bertforge.export.source import hf_folder, require

if TYPE_CHECKING:
    from pylate.models import ColBERT


def to_colbert(source: str, dim: int = 128, projection: torch.Tensor | None = None,
               document_length: int | None = None, query_length: int | None = None,
               trust_remote_code: bool = False, **colbert_kwargs: Any) -> ColBERT:
    """A PyLate ColBERT for ``source``: a bertforge run folder or a Hugging Face folder (or Hub name), given a new
    projection ``(dim, hidden)`` (``projection``, else PyLate's random init); a PyLate folder loads as saved.
    ``document_length`` / ``query_length``: tokens per document / query (PyLate's defaults when None);
    ``colbert_kwargs`` go to ``pylate.models.ColBERT`` (e.g. ``query_prefix``, ``document_prefix``)."""
    models = require("pylate.models", "pylate")
    lengths = {"document_length": document_length, "query_length": query_length}
    if os.path.isfile(os.path.join(source, "modules.json")) and projection is None:  # already a PyLate/ST model
        return models.ColBERT(model_name_or_path=source, trust_remote_code=trust_remote_code, **lengths,
                              **colbert_kwargs)
    if dim < 1:
        raise UserError(f"dim: {dim} must be >= 1")
    with hf_folder(source) as folder:
        transformer = transformer_module(folder, trust_remote_code=trust_remote_code)
    hidden = transformer.get_word_embedding_dimension()
    if projection is not None and tuple(projection.shape) != (dim, hidden):
        raise UserError(f"projection: shape {tuple(projection.shape)}, expected (dim, hidden) = ({dim}, {hidden})")
    colbert = models.ColBERT(modules=[transformer], embedding_size=dim, **lengths, **colbert_kwargs)
    if projection is not None:
        with torch.no_grad():
            colbert[1].linear.weight.copy_(projection)
    return colbert


def save_colbert(source: str, out: str, dim: int = 128, projection: torch.Tensor | None = None,
                 **kwargs: Any) -> str:
    """Write :func:`to_colbert`'s model to ``out``, which ``pylate.models.ColBERT(model_name_or_path=out)`` loads
    (a bertforge-code folder: with ``trust_remote_code=True`` where bertforge is not imported); return ``out``."""
    to_colbert(source, dim, projection, **kwargs).save(out)
    return out
