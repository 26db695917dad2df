"""BM25 baseline through the ``bm25s`` package (Snowball stemming when PyStemmer is installed)."""

from __future__ import annotations

import functools
import logging
import time

from bertforge.export.source import require

log = logging.getLogger(__name__)


@functools.cache
def _stemmer():
    """An English Snowball stemmer when PyStemmer is installed (BEIR's Elasticsearch baseline stems too)."""
    try:
        import Stemmer
    except ImportError:
        log.info("bm25: PyStemmer is not installed, indexing without stemming")
        return None
    return Stemmer.Stemmer("english")


class BM25Index:
    """A BM25 index over ``corpus`` ({doc id: text}); :meth:`search` returns doc ids best first."""

    def __init__(self, corpus: dict[str, str]):
        bm25s = require("bm25s", "bm25s")
        self._stemmer = _stemmer()
        self.ids = list(corpus)
        start = time.perf_counter()
        tokens = bm25s.tokenize(list(corpus.values()), stopwords="en", stemmer=self._stemmer, show_progress=False)
        self.model = bm25s.BM25()
        self.model.index(tokens, show_progress=False)
        self.docs_per_s = len(self.ids) / max(time.perf_counter() - start, 1e-9)

    def search(self, queries: dict[str, str], k: int) -> dict[str, list[str]]:
        """Top ``k`` document ids for every query."""
        bm25s = require("bm25s", "bm25s")
        k = min(k, len(self.ids))
        tokens = bm25s.tokenize(list(queries.values()), stopwords="en", stemmer=self._stemmer, show_progress=False)
        docs, _ = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return {qid: [self.ids[int(i)] for i in row] for qid, row in zip(queries, docs)}


def mine_negatives(index: BM25Index, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                   corpus: dict[str, str], per_query: int) -> dict[str, list[str]]:
    """The ``per_query`` best BM25 documents of every query that are not judged relevant, as texts."""
    ranked = index.search(queries, per_query + max(len(r) for r in qrels.values()) + 1)
    out = {}
    for qid, ids in ranked.items():
        relevant = {d for d, g in qrels[qid].items() if g > 0}
        out[qid] = [corpus[d] for d in ids if d not in relevant][:per_query]
    return out
