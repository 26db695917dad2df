"""Encode a corpus in batches of similar token length (little padding) and search it: dense dot product
(sentence-transformers) or exact ColBERT MaxSim (PyLate models), both on torch without an index."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches of ``batch_size``, longest first (the first batch shows
    at once whether the longest ones fit in memory); every index appears exactly once."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Total tokens the batches feed the model once each is padded to its longest member."""
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


@dataclass
class Encoded:
    """Per-text outputs in the input order, and the speed of the encoding."""

    outputs: list[Any]
    texts_per_s: float
    padding: float
    """Share of fed tokens that were padding."""


def encode_by_length(encode: Callable[[list[str]], Sequence[Any]], texts: Sequence[str],
                     lengths: Sequence[int], batch_size: int, bf16: bool = False, device_type: str = "cpu") -> Encoded:
    """Call ``encode`` on batches of texts of similar token length; return outputs in the order of ``texts``.
    ``bf16``: under bfloat16 autocast on ``device_type``."""
    batches = length_batches(lengths, batch_size)
    outputs: list[Any] = [None] * len(texts)
    autocast = torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    start = time.perf_counter()
    with torch.inference_mode(), autocast:
        for n, batch in enumerate(batches):
            if n and n % max(1, len(batches) // 5) == 0:
                log.info("encoded %d/%d batches (%.1f texts/s)", n, len(batches),
                         n * batch_size / (time.perf_counter() - start))
            for i, out in zip(batch, encode([texts[i] for i in batch])):
                outputs[i] = out
    seconds = max(time.perf_counter() - start, 1e-9)
    fed = padded_tokens(lengths, batches)
    return Encoded(outputs, len(texts) / seconds, 1.0 - sum(lengths) / fed if fed else 0.0)


def token_lengths(tokenizer, texts: Sequence[str], max_length: int) -> list[int]:
    """Token count of every text (special tokens included), truncated at ``max_length``."""
    ids = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
    return [len(x) for x in ids]


def top_ids(scores: torch.Tensor, query_ids: Sequence[str], doc_ids: Sequence[str], k: int) -> dict[str, list[str]]:
    """The ``k`` best document ids per query from a (queries, documents) score matrix."""
    top = torch.topk(scores.float(), k=min(k, scores.shape[1]), dim=1).indices
    return {qid: [doc_ids[j] for j in row] for qid, row in zip(query_ids, top.tolist())}


def maxsim_scores(query_emb: Sequence[torch.Tensor], doc_emb: Sequence[torch.Tensor], chunk: int = 256) -> torch.Tensor:
    """Exact ColBERT late interaction, (queries, documents): score(q, d) = sum over q's tokens of the largest
    dot product with d's tokens. Documents are scored in padded chunks of ``chunk``."""
    # (Q, Lq, D); a zero padding token adds max(0) = 0 to every document's score
    queries = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(q).float() for q in query_emb], batch_first=True)
    scores = torch.empty(len(queries), len(doc_emb))
    for start in range(0, len(doc_emb), chunk):
        docs = [torch.as_tensor(d).float() for d in doc_emb[start : start + chunk]]
        padded = torch.nn.utils.rnn.pad_sequence(docs, batch_first=True)  # (C, Ld, D)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(d), dtype=torch.bool) for d in docs], batch_first=True)
        for q0 in range(0, len(queries), 32):  # 32 queries at a time bounds the (q, c, Lq, Ld) similarities
            sim = torch.einsum("qid,cjd->qcij", queries[q0 : q0 + 32], padded)
            sim = sim.masked_fill(~mask[None, :, None, :], float("-inf"))
            scores[q0 : q0 + 32, start : start + len(docs)] = sim.max(dim=-1).values.sum(dim=-1)
    return scores
