"""Teacher scores for distillation: every training query's candidates (its positive and BM25 negatives) scored
by a dense teacher (scaled cosine) or a cross-encoder (logits), once, before training."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import torch

from bertforge.errors import ConfigError
from bertforge.export.source import require
from bertforge.retrieval.config import ModelSettings, TrainSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DistillationSet:
    """One example per (query, positive): the query, its candidate documents (positive first) and the teacher's
    scores for them (already multiplied by the teacher scale)."""

    queries: list[str]
    documents: list[list[str]]
    scores: list[list[float]]


def candidates(pairs: Sequence[tuple[str, str]], negatives: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each pair's positive followed by its negatives; every list has the same length (the losses reshape the
    documents to (batch, candidates))."""
    docs = [[positive, *negs] for (_, positive), negs in zip(pairs, negatives, strict=True)]
    if len({len(d) for d in docs}) > 1:
        short = min(len(d) for d in docs) - 1
        raise ConfigError("train.hard_negatives", f"a query has only {short} BM25 negatives; lower it")
    return docs


def dense_teacher_scores(teacher, queries: Sequence[str], documents: Sequence[Sequence[str]],
                         batch_size: int = 32) -> torch.Tensor:
    """Cosine similarity of each query with each of its documents, (queries, candidates), by a
    ``SentenceTransformer``; every distinct text is encoded once."""
    texts = sorted({t for docs in documents for t in docs})
    index = {t: i for i, t in enumerate(texts)}
    doc_emb = teacher.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    query_emb = teacher.encode(list(queries), batch_size=batch_size, convert_to_tensor=True,
                               normalize_embeddings=True)
    picked = doc_emb[torch.tensor([[index[t] for t in docs] for docs in documents])]  # (Q, C, D)
    return torch.einsum("qd,qcd->qc", query_emb.float(), picked.float()).cpu()


def cross_encoder_scores(teacher, queries: Sequence[str], documents: Sequence[Sequence[str]],
                         batch_size: int = 32) -> torch.Tensor:
    """A ``CrossEncoder``'s raw score (logit) of each (query, document) pair, (queries, candidates)."""
    pairs = [(q, d) for q, docs in zip(queries, documents, strict=True) for d in docs]
    flat = teacher.predict(pairs, batch_size=batch_size, convert_to_tensor=True, activation_fn=torch.nn.Identity())
    return flat.float().reshape(len(queries), -1).cpu()


def load_teacher(settings: TrainSettings, model: ModelSettings, device: str):
    """The teacher model: a dense retriever built as :func:`~bertforge.retrieval.models.load_dense` builds the
    student (documents truncated at ``settings.max_seq_length``), or a sentence-transformers ``CrossEncoder``."""
    length = settings.max_seq_length or model.max_seq_length
    if settings.teacher_kind == "cross_encoder":
        st = require("sentence_transformers", "sentence-transformers")
        return st.CrossEncoder(settings.teacher, device=device, max_length=length)
    from bertforge.retrieval.models import load_dense

    return load_dense(dataclasses.replace(model, path=settings.teacher, kind="dense", max_seq_length=length), device)


def distillation_set(settings: TrainSettings, model: ModelSettings, pairs: Sequence[tuple[str, str]],
                     negatives: Sequence[Sequence[str]], device: str, batch_size: int = 32) -> DistillationSet:
    """Score every pair's candidates with the teacher of ``settings``; log the teacher's own accuracy (how often
    it ranks the positive first) as a sanity line."""
    start = time.perf_counter()
    docs = candidates(pairs, negatives)
    queries = [q for q, _ in pairs]
    teacher = load_teacher(settings, model, device)
    score_fn = cross_encoder_scores if settings.teacher_kind == "cross_encoder" else dense_teacher_scores
    with torch.inference_mode():
        scores = score_fn(teacher, queries, docs, batch_size) * settings.scale
    top1 = float((scores.argmax(dim=1) == 0).float().mean())
    log.info("teacher %s scored %d queries x %d candidates in %.0f s; it ranks the positive first for %.1f%%",
             settings.teacher, len(queries), len(docs[0]), time.perf_counter() - start, 100 * top1)
    return DistillationSet(queries, docs, scores.tolist())
