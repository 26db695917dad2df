"""Ranking metrics as BEIR reports them: nDCG@k (graded gains), MRR@k and Recall@k (relevance > 0).

Rankings are ``{query id: [document id, ...]}`` best first; qrels are ``{query id: {document id: grade}}``.
Every query of ``qrels`` counts (a query without a ranking scores 0), as in pytrec_eval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Rankings = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranking: sum of grade / log2(rank + 1) over the top k, over the same for the ideal order."""
    dcg = sum(judged.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranking[:k]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant document within the top k (0 when none)."""
    for i, doc in enumerate(ranking[:k]):
        if judged.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(ranking: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k."""
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def evaluate(rankings: Rankings, qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10, MRR@10 and Recall@100 over the queries of ``qrels``."""
    if not qrels:
        raise ValueError("qrels is empty: no query to evaluate")
    totals = {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    for qid, judged in qrels.items():
        ranking = list(rankings.get(qid, ()))
        totals["ndcg@10"] += ndcg_at_k(ranking, judged, 10)
        totals["mrr@10"] += mrr_at_k(ranking, judged, 10)
        totals["recall@100"] += recall_at_k(ranking, judged, 100)
    return {name: value / len(qrels) for name, value in totals.items()}
