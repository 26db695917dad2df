"""The metric code against hand-computed values and against sentence-transformers' evaluator."""

import math
import random

import pytest

from bertforge.retrieval.metrics import evaluate, mrr_at_k, ndcg_at_k, recall_at_k

QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 2, "d4": 1}}
RANKINGS = {"q1": ["d5", "d1", "d6", "d2"], "q2": ["d4", "d7"]}


def test_hand_computed_toy_qrels():
    # q1: gains at ranks 2 and 4 -> DCG = 1/log2(3) + 1/log2(5) = 0.6309298 + 0.4306766 = 1.0616063;
    #     ideal: ranks 1, 2 -> 1 + 0.6309298 = 1.6309298; nDCG = 0.6509209; first hit at rank 2: RR 0.5; recall 2/2
    # q2 (graded): d4 (grade 1) at rank 1 -> DCG 1; ideal 2/1 + 1/log2(3) = 2.6309298; nDCG = 0.3800938;
    #     RR 1; recall 1/2
    assert ndcg_at_k(RANKINGS["q1"], QRELS["q1"], 10) == pytest.approx(0.6509209, abs=1e-7)
    assert ndcg_at_k(RANKINGS["q2"], QRELS["q2"], 10) == pytest.approx(0.3800938, abs=1e-7)
    assert mrr_at_k(RANKINGS["q1"], QRELS["q1"], 10) == 0.5
    assert recall_at_k(RANKINGS["q2"], QRELS["q2"], 100) == 0.5
    means = evaluate(RANKINGS, QRELS)
    assert means == pytest.approx({"ndcg@10": (0.6509209 + 0.3800938) / 2, "mrr@10": 0.75, "recall@100": 0.75},
                                  abs=1e-7)


def test_cutoffs_and_unranked_queries():
    ranking = [f"x{i}" for i in range(10)] + ["d1"]  # the hit at rank 11 is outside @10
    assert ndcg_at_k(ranking, {"d1": 1}, 10) == 0.0
    assert mrr_at_k(ranking, {"d1": 1}, 10) == 0.0
    assert recall_at_k(ranking, {"d1": 1}, 100) == 1.0
    # a judged query without a ranking counts as 0 (pytrec_eval and BEIR average over the qrels' queries)
    assert evaluate({"q1": ["d1"]}, {"q1": {"d1": 1}, "q2": {"d2": 1}})["ndcg@10"] == 0.5
    assert math.isclose(ndcg_at_k(["d1", "d2"], {"d1": 1, "d2": 1}, 10), 1.0)


def test_matches_sentence_transformers_evaluator():
    """Same rankings, binary qrels: equal to InformationRetrievalEvaluator.compute_metrics (1e-12)."""
    st_eval = pytest.importorskip("sentence_transformers.evaluation")
    rng = random.Random(0)
    docs = [f"d{i}" for i in range(200)]
    qrels = {f"q{i}": {d: 1 for d in rng.sample(docs, rng.randint(1, 4))} for i in range(30)}
    rankings = {q: rng.sample(docs, 150) for q in qrels}
    for q in list(qrels)[:10]:  # put some hits near the top so the metrics are far from 0
        rankings[q] = list(qrels[q]) + [d for d in rankings[q] if d not in qrels[q]]
    evaluator = st_eval.InformationRetrievalEvaluator(
        queries={q: q for q in qrels}, corpus={d: d for d in docs},
        relevant_docs={q: set(r) for q, r in qrels.items()},
        mrr_at_k=[10], ndcg_at_k=[10], precision_recall_at_k=[100], accuracy_at_k=[10], map_at_k=[10])
    results = [[{"corpus_id": d, "score": -rank} for rank, d in enumerate(rankings[q])] for q in evaluator.queries_ids]
    ref = evaluator.compute_metrics(results)
    ours = evaluate(rankings, qrels)
    assert ours["ndcg@10"] == pytest.approx(ref["ndcg@k"][10], abs=1e-12)
    assert ours["mrr@10"] == pytest.approx(ref["mrr@k"][10], abs=1e-12)
    assert ours["recall@100"] == pytest.approx(ref["recall@k"][100], abs=1e-12)
    assert 0.2 < ours["ndcg@10"] < 0.9
