"""Read a BEIR-format dataset: corpus.jsonl, queries.jsonl and qrels/<split>.tsv (header row, CRLF or LF)."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

from bertforge.errors import UserError


@dataclass
class BeirSplit:
    """The corpus, the queries that have judgements in ``split``, and those judgements."""

    corpus: dict[str, str]
    """Document id -> text ("title text", as BEIR's dense models see it)."""
    queries: dict[str, str]
    """Query id -> text, only the queries with at least one judged document in the split, in file order."""
    qrels: dict[str, dict[str, int]]
    """Query id -> {document id: relevance grade}."""


def _read_jsonl(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{n}: not a JSON line ({err.msg})") from None
            if "_id" not in row:
                raise UserError(f"{path}:{n}: the row has no '_id' key (BEIR format)")
            rows.append(row)
    return rows


def read_qrels(path: str) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (query-id, corpus-id, score; a header row; CRLF or LF line ends)."""
    if not os.path.isfile(path):
        raise UserError(f"qrels file not found: {path}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\r\n").split("\t")
            if not any(parts) or (n == 1 and parts[0] == "query-id"):
                continue
            if len(parts) != 3:
                raise UserError(f"{path}:{n}: expected 3 tab-separated columns (query-id, corpus-id, score)")
            try:
                grade = int(float(parts[2]))
            except ValueError:
                raise UserError(f"{path}:{n}: score {parts[2]!r} is not a number") from None
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def load_beir(folder: str, split: str) -> BeirSplit:
    """Load ``folder`` (a BEIR dataset) with the judgements of ``split``; documents are "title text"."""
    corpus = {}
    for row in _read_jsonl(os.path.join(folder, "corpus.jsonl")):
        corpus[str(row["_id"])] = f"{row.get('title') or ''} {row.get('text') or ''}".strip()
    all_queries = {str(r["_id"]): r.get("text", "") for r in _read_jsonl(os.path.join(folder, "queries.jsonl"))}
    qrels = read_qrels(os.path.join(folder, "qrels", f"{split}.tsv"))
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        raise UserError(f"{folder}: qrels/{split}.tsv names query {missing[0]!r} that queries.jsonl lacks")
    queries = {q: t for q, t in all_queries.items() if any(g > 0 for g in qrels.get(q, {}).values())}
    return BeirSplit(corpus=corpus, queries=queries, qrels={q: qrels[q] for q in queries})


def subset(data: BeirSplit, corpus_limit: int | None, query_limit: int | None, seed: int) -> BeirSplit:
    """Keep the first ``query_limit`` queries and, of the corpus, every judged document of those queries plus
    random others up to ``corpus_limit`` documents (a fixed draw for a given ``seed``)."""
    queries = dict(list(data.queries.items())[:query_limit]) if query_limit else data.queries
    qrels = {q: data.qrels[q] for q in queries}
    corpus = data.corpus
    if corpus_limit and corpus_limit < len(corpus):
        judged = {d for rel in qrels.values() for d in rel if d in corpus}
        others = sorted(d for d in corpus if d not in judged)
        random.Random(seed).shuffle(others)
        keep = judged | set(others[: max(0, corpus_limit - len(judged))])
        corpus = {d: t for d, t in corpus.items() if d in keep}
    return BeirSplit(corpus=corpus, queries=queries, qrels=qrels)


def train_pairs(data: BeirSplit) -> list[tuple[str, str, str]]:
    """(query id, query text, positive document text) for every positive judgement, in file order."""
    return [(q, data.queries[q], data.corpus[d]) for q, rel in data.qrels.items()
            for d, grade in rel.items() if grade > 0 and d in data.corpus]
