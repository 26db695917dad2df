"""``retrieval.py <yaml> [key=value ...]``: BM25, the starting model, finetuning, the finetuned model; one table."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import time

import torch

from bertforge.retrieval.beir import BeirSplit, load_beir, subset, train_pairs
from bertforge.retrieval.bm25 import BM25Index, mine_negatives
from bertforge.retrieval.config import RetrievalConfig, load_retrieval_config
from bertforge.retrieval.metrics import evaluate

log = logging.getLogger(__name__)

COLUMNS = ("model", "ndcg@10", "mrr@10", "recall@100", "docs_per_s", "seconds")


def _load(cfg: RetrievalConfig, device: str, path: str | None = None):
    from bertforge.retrieval.models import load_colbert, load_dense

    return (load_colbert if cfg.model.kind == "colbert" else load_dense)(cfg.model, device, path)


def _score(cfg: RetrievalConfig, model, data: BeirSplit, label: str) -> dict:
    from bertforge.retrieval.evaluate import evaluate_colbert, evaluate_dense

    log.info("evaluating %s on %d documents, %d queries", label, len(data.corpus), len(data.queries))
    start = time.perf_counter()
    metrics = (evaluate_colbert if cfg.model.kind == "colbert" else evaluate_dense)(model, data, cfg.eval)
    return {"model": label, **metrics, "seconds": time.perf_counter() - start}


def _finetune(cfg: RetrievalConfig, model, device: str):
    from bertforge.retrieval.train_colbert import finetune_colbert
    from bertforge.retrieval.train_st import finetune_dense

    train = load_beir(cfg.data.path, cfg.data.train_split)
    triples = train_pairs(train)[: cfg.train.max_pairs]
    negatives = None
    if cfg.train.hard_negatives:
        used = {q: train.queries[q] for q, _, _ in triples}
        mined = mine_negatives(BM25Index(train.corpus), used, train.qrels, train.corpus, cfg.train.hard_negatives)
        negatives = [mined[q] for q, _, _ in triples]
    pairs = [(q, p) for _, q, p in triples]
    distill = None
    if cfg.train.loss == "distillation":
        from bertforge.retrieval.distill import distillation_set

        distill = distillation_set(cfg.train, cfg.model, pairs, negatives, device, cfg.eval.batch_size)
    fn = finetune_colbert if cfg.model.kind == "colbert" else finetune_dense
    return fn(model, pairs, negatives, cfg.train, cfg.run_dir, cfg.seed, device, distill=distill)


def run(cfg: RetrievalConfig) -> list[dict]:
    """Evaluate BM25 and the starting model, finetune, evaluate again; write results.json/.csv to ``run_dir``."""
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    os.makedirs(cfg.run_dir, exist_ok=True)
    data = subset(load_beir(cfg.data.path, cfg.data.eval_split), cfg.data.corpus_limit, cfg.data.query_limit,
                  cfg.seed)
    name = os.path.basename(os.path.normpath(cfg.model.path))
    rows = []
    if cfg.eval.bm25:
        start = time.perf_counter()
        index = BM25Index(data.corpus)
        rows.append({"model": "BM25 (bm25s)", **evaluate(index.search(data.queries, cfg.eval.top_k), data.qrels),
                     "docs_per_s": index.docs_per_s, "seconds": time.perf_counter() - start})
    model = _load(cfg, device) if (cfg.eval.before or cfg.train is not None) else None
    if cfg.eval.before:
        rows.append(_score(cfg, model, data, f"{name} ({cfg.model.kind}, zero-shot)"))
    if cfg.train is not None:
        start = time.perf_counter()
        model = _finetune(cfg, model, device)
        log.info("finetuning took %.0f s", time.perf_counter() - start)
        if cfg.eval.after:
            rows.append(_score(cfg, model, data, f"{name} ({cfg.model.kind}, finetuned)"))
    write_results(cfg, data, rows)
    return rows


def write_results(cfg: RetrievalConfig, data: BeirSplit, rows: list[dict]) -> None:
    """``results.json`` (config, data sizes, rows) and ``results.csv`` (the rows) in ``cfg.run_dir``."""
    info = {"config": dataclasses.asdict(cfg), "documents": len(data.corpus), "queries": len(data.queries),
            "rows": rows}
    with open(os.path.join(cfg.run_dir, "results.json"), "w") as f:
        json.dump(info, f, indent=2)
    with open(os.path.join(cfg.run_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def to_markdown(rows: list[dict]) -> str:
    """The results as a markdown table: model, nDCG@10, MRR@10, R@100, docs/s."""
    lines = ["| model | nDCG@10 | MRR@10 | R@100 | docs/s |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['ndcg@10']:.4f} | {r['mrr@10']:.4f} | {r['recall@100']:.4f} "
                     f"| {r['docs_per_s']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Parse ``<yaml> [key=value ...]``, run, print the table (stdout; progress goes to stderr)."""
    parser = argparse.ArgumentParser(prog="retrieval.py", description="Retrieval finetuning and BEIR evaluation.")
    parser.add_argument("config", help="YAML file, e.g. yamls/retrieval/quickstart-st.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=2 eval.bm25=false")
    args = parser.parse_args(argv)
    cfg = load_retrieval_config(args.config, args.overrides)
    from bertforge.runtime import configure_logging

    configure_logging(None)
    start = time.perf_counter()
    rows = run(cfg)
    print(to_markdown(rows), flush=True)
    log.info("done in %.0f s; results in %s", time.perf_counter() - start, cfg.run_dir)
