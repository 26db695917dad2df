"""2-step finetunes on a handful of SciFact pairs through the whole pipeline: the weights change, the saved
model loads and embeds as the in-memory one, results land in the run folder."""

import json

import pytest
import torch

from bertforge.retrieval.config import load_retrieval_config
from bertforge.retrieval.run import run
from tests.conftest import REPO

TINY = ["data.corpus_limit=24", "data.query_limit=3", "train.max_pairs=8", "train.max_steps=2",
        "train.batch_size=4", "train.max_seq_length=16", "model.max_seq_length=32", "eval.batch_size=16",
        "train.lr=1e-4"]


def _first_weight(model) -> torch.Tensor:
    return model[0].auto_model.encoder.layer[0].attention.self.query.weight.detach().clone()


def test_sentence_transformers_two_steps(scifact, minilm, tmp_path, monkeypatch):
    st = pytest.importorskip("sentence_transformers")
    monkeypatch.chdir(REPO)
    cfg = load_retrieval_config(REPO / "yamls/retrieval/quickstart-st.yaml",
                                [f"run_dir={tmp_path}", f"model.path={minilm}", f"data.path={scifact}",
                                 "train.hard_negatives=1", *TINY])
    before = _first_weight(st.SentenceTransformer(str(minilm), device="cpu"))
    rows = run(cfg)
    assert [r["model"].split(" (")[0] for r in rows] == ["BM25", "all-MiniLM-L6-v2", "all-MiniLM-L6-v2"]
    saved = st.SentenceTransformer(str(tmp_path / "model"), device="cpu")
    assert not torch.allclose(_first_weight(saved), before)  # the 2 steps moved the weights
    assert saved.max_seq_length == 32  # the eval length is restored after training at 16
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["documents"] == 24 and len(results["rows"]) == 3
    assert (tmp_path / "results.csv").read_text().startswith("model,ndcg@10,mrr@10,recall@100,docs_per_s")


def test_pylate_two_steps(scifact, minilm, tmp_path, monkeypatch):
    pylate_models = pytest.importorskip("pylate.models")
    monkeypatch.chdir(REPO)
    cfg = load_retrieval_config(REPO / "yamls/retrieval/quickstart-colbert.yaml",
                                [f"run_dir={tmp_path}", f"model.path={minilm}", f"data.path={scifact}",
                                 "eval.before=false", "eval.bm25=false", *TINY])
    rows = run(cfg)
    assert len(rows) == 1 and 0 <= rows[0]["ndcg@10"] <= 1
    saved = pylate_models.ColBERT(str(tmp_path / "model"), device="cpu")
    assert saved[1].linear.weight.shape == (128, 384)
    start = pylate_models.ColBERT(str(minilm), device="cpu")
    assert not torch.allclose(_first_weight(saved), _first_weight(start))
    text = ["Vitamin D deficiency is associated with bone loss."]
    a = saved.encode(text, is_query=False)[0]
    assert a.shape[1] == 128 and a.shape[0] > 5
