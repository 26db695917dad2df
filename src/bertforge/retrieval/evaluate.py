"""Score a dense or ColBERT model on a BEIR split: encode the corpus by length, search exactly, measure."""

from __future__ import annotations

import contextlib
import logging
import time

import torch

from bertforge.retrieval.beir import BeirSplit
from bertforge.retrieval.config import EvalSettings
from bertforge.retrieval.encode import encode_by_length, maxsim_scores, token_lengths, top_ids
from bertforge.retrieval.metrics import evaluate

log = logging.getLogger(__name__)


def _autocast(bf16: bool, device_type: str):
    return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def evaluate_dense(model, data: BeirSplit, settings: EvalSettings) -> dict[str, float]:
    """Metrics and corpus documents/s of a ``SentenceTransformer`` (its own similarity function)."""
    texts, doc_ids = list(data.corpus.values()), list(data.corpus)
    device_type = model.device.type

    def encode(batch: list[str]) -> torch.Tensor:
        return model.encode(batch, batch_size=len(batch), convert_to_tensor=True, show_progress_bar=False).cpu()

    lengths = token_lengths(model.tokenizer, texts, model.max_seq_length)
    docs = encode_by_length(encode, texts, lengths, settings.batch_size, settings.bf16, device_type)
    with torch.inference_mode(), _autocast(settings.bf16, device_type):
        queries = encode(list(data.queries.values()))
    scores = model.similarity(queries.float(), torch.stack(docs.outputs).float())
    return _measure(top_ids(scores, list(data.queries), doc_ids, settings.top_k), data, docs)


def evaluate_colbert(model, data: BeirSplit, settings: EvalSettings) -> dict[str, float]:
    """Metrics and corpus documents/s of a PyLate ``ColBERT`` model (exact MaxSim over the whole corpus)."""
    texts, doc_ids = list(data.corpus.values()), list(data.corpus)
    device_type = model.device.type

    def encode(batch: list[str], is_query: bool = False) -> list:
        out = model.encode(batch, batch_size=len(batch), is_query=is_query, show_progress_bar=False)
        return [torch.as_tensor(t).float() for t in out]  # one (tokens, dim) matrix per text

    lengths = token_lengths(model.tokenizer, texts, model.document_length)
    docs = encode_by_length(encode, texts, lengths, settings.batch_size, settings.bf16, device_type)
    with torch.inference_mode(), _autocast(settings.bf16, device_type):
        queries = encode(list(data.queries.values()), is_query=True)
    scores = maxsim_scores(queries, docs.outputs)
    return _measure(top_ids(scores, list(data.queries), doc_ids, settings.top_k), data, docs)


def _measure(rankings: dict[str, list[str]], data: BeirSplit, docs) -> dict[str, float]:
    metrics = evaluate(rankings, data.qrels)
    log.info("nDCG@10 %.4f, %.1f docs/s, %.0f%% of the fed tokens were padding", metrics["ndcg@10"],
             docs.texts_per_s, 100 * docs.padding)
    return {**metrics, "docs_per_s": docs.texts_per_s}


def timed(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
