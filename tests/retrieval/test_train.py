"""2-step finetunes on a handful of SciFact pairs through the whole pipeline: the weights change, the saved
model loads and embeds as the in-memory one, results land in the run folder."""

import importlib
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


def _cross_encoder(folder, minilm):
    """A tiny randomly initialised BERT cross-encoder (one logit) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                        num_labels=1, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(folder)
    return folder


def test_teacher_scores_equal_direct_computation(minilm, tmp_path):
    """Dense teacher: scaled cosines of the teacher's own embeddings; cross-encoder: its logits (1e-5)."""
    st = pytest.importorskip("sentence_transformers")
    from bertforge.retrieval.config import ModelSettings, TrainSettings
    from bertforge.retrieval.distill import distillation_set

    pairs = [("vitamin d and bones", "Vitamin D deficiency is associated with bone loss."),
             ("statins and muscle pain", "Statin therapy is linked to myalgia in some patients.")]
    negatives = [["Coffee intake does not change sleep quality.", "Statin therapy is linked to myalgia."],
                 ["Vitamin D deficiency is associated with bone loss.", "Exercise improves mood."]]
    model = ModelSettings(path=str(minilm), max_seq_length=64)
    dense = distillation_set(TrainSettings(loss="distillation", teacher=str(minilm), hard_negatives=2), model,
                             pairs, negatives, "cpu")
    teacher = st.SentenceTransformer(str(minilm), device="cpu")
    for i, (query, positive) in enumerate(pairs):
        emb = teacher.encode([query, positive, *negatives[i]], convert_to_tensor=True, normalize_embeddings=True)
        assert dense.documents[i] == [positive, *negatives[i]]
        torch.testing.assert_close(torch.tensor(dense.scores[i]), 20 * emb[1:] @ emb[0], rtol=0, atol=1e-5)

    folder = _cross_encoder(tmp_path / "ce", minilm)
    cross = distillation_set(TrainSettings(loss="distillation", teacher=str(folder), teacher_kind="cross_encoder",
                                           teacher_scale=2.0, hard_negatives=2), model, pairs, negatives, "cpu")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    net, tok = AutoModelForSequenceClassification.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    for i, (query, positive) in enumerate(pairs):
        docs = [positive, *negatives[i]]
        with torch.no_grad():
            logits = net(**tok([query] * len(docs), docs, padding=True, return_tensors="pt")).logits[:, 0]
        torch.testing.assert_close(torch.tensor(cross.scores[i]), 2.0 * logits, rtol=0, atol=1e-5)


def _kl_to_teacher(student, distill, score) -> float:
    """Mean KL(teacher || student) over the training queries, from the student's scaled scores."""
    with torch.no_grad():
        s = torch.stack([score(student, q, docs) for q, docs in zip(distill.queries, distill.documents)])
    t = torch.tensor(distill.scores)
    return float(torch.nn.functional.kl_div(s.log_softmax(1), t.log_softmax(1), log_target=True,
                                            reduction="batchmean"))


@pytest.mark.parametrize("kind", ["dense", "colbert"])
def test_distillation_moves_the_student_towards_the_teacher(kind, scifact, minilm, tmp_path, monkeypatch):
    """Distillation from a cross-encoder with random weights (scores no student starts near): a few steps
    lower the KL between the teacher's and the student's score distributions on the training queries."""
    pytest.importorskip("pylate.models" if kind == "colbert" else "sentence_transformers")
    from bertforge.retrieval.distill import distillation_set

    run_module = importlib.import_module("bertforge.retrieval.run")  # the package's `run` is the function

    monkeypatch.chdir(REPO)
    teacher = _cross_encoder(tmp_path / "ce", minilm)
    yaml = "quickstart-colbert.yaml" if kind == "colbert" else "quickstart-st.yaml"
    cfg = load_retrieval_config(REPO / "yamls/retrieval" / yaml,
                                [f"run_dir={tmp_path / 'run'}", f"model.path={minilm}", f"data.path={scifact}",
                                 *TINY, "train.lr=3e-4", "train.loss=distillation",
                                 f"train.teacher={teacher}", "train.teacher_kind=cross_encoder",
                                 "train.teacher_scale=20", "train.hard_negatives=3", "eval.before=false",
                                 "eval.bm25=false", "train.save_model=false"])
    start = run_module._load(cfg, "cpu")  # ColBERT: a new random projection, so "before" is this very model
    captured = {}

    def spy(*args, **kwargs):  # the teacher's training set, and the student's KL to it before training
        captured["set"] = distillation_set(*args, **kwargs)
        captured["before"] = _kl_to_teacher(start, captured["set"], score)
        return captured["set"]

    monkeypatch.setattr("bertforge.retrieval.distill.distillation_set", spy)
    if kind == "colbert":
        from pylate.scores import colbert_kd_scores

        def score(model, query, docs):
            q = model.encode([query], is_query=True, convert_to_tensor=True)
            d = model.encode(docs, is_query=False, convert_to_tensor=True)  # a list of (tokens, dim)
            mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(x)) for x in d], batch_first=True)
            padded = torch.nn.utils.rnn.pad_sequence(list(d), batch_first=True)
            raw = colbert_kd_scores(q, padded[None], documents_mask=mask[None])[0]  # the loss's own MaxSim
            return (raw - raw.min()) / (raw.max() - raw.min() + 1e-8)  # PyLate's min-max normalisation
    else:
        def score(model, query, docs):
            emb = model.encode([query, *docs], convert_to_tensor=True, normalize_embeddings=True)
            return 20 * emb[1:] @ emb[0]
    model = run_module._finetune(cfg, start, "cpu")
    distill = captured["set"]
    assert len(distill.queries) == 8 and all(len(d) == 4 for d in distill.documents)
    before, after = captured["before"], _kl_to_teacher(model, distill, score)
    assert after < before, (before, after)
