"""Any bertforge run (every family), Hugging Face or sentence-transformers folder as a PyLate ColBERT model: the
transformer module, then a linear projection to ``dim`` (freshly initialised unless given; a PyLate model keeps its
own); PyLate L2-normalises each token's embedding and adds its query / document prefix tokens to the tokenizer (new
embedding rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from bertforge.errors import UserError
from bertforge.export.sentence_transformers import transformer_module
from bertforge.export.source import hf_folder, require, st_modules

if TYPE_CHECKING:
    from pylate.models import ColBERT


def to_colbert(source: str, dim: int | None = None, projection: torch.Tensor | None = None,
               document_length: int | None = None, query_length: int | None = None,
               trust_remote_code: bool = False, **colbert_kwargs: Any) -> ColBERT:
    """A PyLate ColBERT for ``source``: a bertforge run folder or a Hugging Face / sentence-transformers folder (or
    Hub name), given a new projection ``(dim, hidden)`` (``projection``, else PyLate's random init; ``dim`` default
    128); a PyLate folder loads as saved unless ``projection`` replaces its own (another ``dim`` alone is refused).
    ``document_length`` / ``query_length``: tokens per document / query (PyLate's defaults when None);
    ``colbert_kwargs`` go to ``pylate.models.ColBERT`` (e.g. ``query_prefix``, ``document_prefix``)."""
    models = require("pylate.models", "pylate")
    lengths = {"document_length": document_length, "query_length": query_length}
    if dim is not None and dim < 1:
        raise UserError(f"dim: {dim} must be >= 1")
    if projection is None and st_modules(source) is not None:  # a PyLate model, or a sentence-transformers one
        colbert = models.ColBERT(model_name_or_path=source, embedding_size=dim, trust_remote_code=trust_remote_code,
                                 **lengths, **colbert_kwargs)
        kept = colbert[1].linear.out_features  # a PyLate model keeps its own projection whatever dim says
        if dim is not None and kept != dim:
            raise UserError(f"dim: {dim}, but {source} is a PyLate model projecting to {kept} dims; omit dim to keep "
                            "its projection, or give a projection to replace it")
        return colbert
    dim = 128 if dim is None else dim
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


def save_colbert(source: str, out: str, dim: int | None = None, projection: torch.Tensor | None = None,
                 **kwargs: Any) -> str:
    """Write :func:`to_colbert`'s model to ``out``, which ``pylate.models.ColBERT(model_name_or_path=out)`` loads
    (a bertforge-code folder: with ``trust_remote_code=True`` where bertforge is not imported); return ``out``."""
    to_colbert(source, dim, projection, **kwargs).save(out)
    return out
