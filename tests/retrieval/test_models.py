"""Retrievers from a bertforge run (through bertforge.export): documents up to the model's max length."""

import logging

import pytest

from bertforge.retrieval.config import ModelSettings
from bertforge.retrieval.models import load_colbert, load_dense

LONG_DOC = " ".join(f"w{i % 40}" for i in range(300))  # 300 words: past the tiny models' 64 positions


@pytest.fixture(scope="module")
def m2_run(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    from tests.export.runs import make_run

    return make_run(tmp_path_factory.mktemp("runs"), "m2_bert")


def test_dense_from_run_caps_length_at_max_positions(m2_run, caplog):
    with caplog.at_level(logging.INFO, logger="bertforge.retrieval"):
        model = load_dense(ModelSettings(path=str(m2_run), max_seq_length=4096, pooling="cls"), "cpu")
    assert model.max_seq_length == 64
    assert "model.max_seq_length=4096 exceeds the model's max_position_embeddings; using 64" in caplog.text
    emb = model.encode([LONG_DOC, "w1 w2"], convert_to_tensor=True)
    assert emb.shape == (2, 32)
    assert float(emb.norm(dim=1).min()) == pytest.approx(1.0, abs=1e-5)  # normalize: true by default


def test_colbert_from_run(m2_run):
    pytest.importorskip("pylate")
    model = load_colbert(ModelSettings(path=str(m2_run), kind="colbert", max_seq_length=4096, embedding_size=16),
                         "cpu")
    assert model.document_length == 64
    doc = model.encode([LONG_DOC], is_query=False)[0]
    assert doc.shape[1] == 16 and 32 < doc.shape[0] <= 64
