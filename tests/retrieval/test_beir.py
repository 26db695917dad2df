"""The BEIR loader on the real SciFact files and on small hand-written ones."""

import pytest

from bertforge.errors import UserError
from bertforge.retrieval.beir import load_beir, read_qrels, subset, train_pairs


def test_scifact_counts(scifact):
    test = load_beir(str(scifact), "test")
    assert len(test.corpus) == 5183
    assert len(test.queries) == 300
    assert sum(len(r) for r in test.qrels.values()) == 339
    assert all(not d.endswith("\r") for r in test.qrels.values() for d in r)  # CRLF stripped
    assert set(test.qrels) == set(test.queries)
    train = load_beir(str(scifact), "train")
    assert len(train.queries) == 809
    assert len(train_pairs(train)) == 919


def test_qrels_header_crlf_and_grades(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_bytes(b"query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq1\td2\t2\r\nq2\td1\t0\r\n")
    assert read_qrels(str(path)) == {"q1": {"d1": 1, "d2": 2}, "q2": {"d1": 0}}
    path.write_bytes(b"q1\td1\n")
    with pytest.raises(UserError, match=r"test.tsv:1: expected 3 tab-separated columns"):
        read_qrels(str(path))


def test_subset_keeps_every_judged_document(scifact):
    data = load_beir(str(scifact), "test")
    small = subset(data, corpus_limit=400, query_limit=50, seed=0)
    assert len(small.queries) == 50 and len(small.corpus) == 400
    assert all(d in small.corpus for r in small.qrels.values() for d in r)
    assert subset(data, 400, 50, seed=0).corpus.keys() == small.corpus.keys()  # a fixed draw per seed
