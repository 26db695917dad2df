"""Exports whose source is itself a sentence-transformers or PyLate folder either reproduce what that folder computes
(fp32, 1e-5, on one padded batch of mixed lengths) or refuse in one line naming what they cannot carry over."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer, models

from bertforge.errors import UserError
from bertforge.export.pylate import to_colbert
from bertforge.export.sentence_transformers import save_sentence_transformer, to_sentence_transformer
from tests.export.runs import TEXTS

ATOL = 1e-5  # fp32, the same weights: only summation order differs


def _encode(st: SentenceTransformer) -> torch.Tensor:
    return st.encode(TEXTS, convert_to_tensor=True, batch_size=len(TEXTS))  # one padded batch


@pytest.fixture(scope="module")
def st_folder(run_of, tmp_path_factory) -> str:
    """A sentence-transformers folder pooling the first token, normalising, with a default prompt."""
    out = str(tmp_path_factory.mktemp("st") / "cls_norm")
    st = to_sentence_transformer(str(run_of("hf_bert")[0]), pooling="cls", normalize=True)
    st.prompts, st.default_prompt_name = {"query": "w7 w8 "}, "query"
    st.save(out)
    return out


def test_a_sentence_transformers_source_keeps_its_pooling_normalize_and_prompts(st_folder):
    """Was: mean pooling, no Normalize, no prompt (max |diff| 1.44 against the source's own embeddings)."""
    source = SentenceTransformer(st_folder)
    again = to_sentence_transformer(st_folder)
    assert [type(m).__name__ for m in again] == ["Transformer", "Pooling", "Normalize"]
    assert again.default_prompt_name == "query" and again.prompts["query"] == "w7 w8 "
    torch.testing.assert_close(_encode(again), _encode(source), rtol=0, atol=ATOL)
    mean = to_sentence_transformer(st_folder, pooling="mean", normalize=False)  # asked for: another function
    assert mean[1].pooling_mode_mean_tokens and len(mean) == 2


def test_a_module_the_export_would_drop_is_refused_by_name(st_folder, tmp_path):
    source = SentenceTransformer(st_folder)
    dense = models.Dense(source.get_sentence_embedding_dimension(), 8)
    SentenceTransformer(modules=[source[0], source[1], dense]).save(str(tmp_path / "dense"))
    with pytest.raises(UserError, match=r"module 2_Dense \(Dense\) .*use the folder as it is") as err:
        save_sentence_transformer(str(tmp_path / "dense"), str(tmp_path / "out"))
    assert "\n" not in str(err.value)


def test_a_pooling_the_export_cannot_write_is_refused_unless_another_is_chosen(st_folder, tmp_path):
    source = SentenceTransformer(st_folder)
    pool = models.Pooling(source.get_sentence_embedding_dimension(), pooling_mode="max")
    SentenceTransformer(modules=[source[0], pool]).save(str(tmp_path / "max"))
    with pytest.raises(UserError, match="pools with 'max'.*pooling mean or cls"):
        to_sentence_transformer(str(tmp_path / "max"))
    assert to_sentence_transformer(str(tmp_path / "max"), pooling="cls")[1].pooling_mode_cls_token


def test_colbert_from_a_sentence_transformers_folder_gets_the_dim_asked_for(st_folder):
    """Was: PyLate's default 128 columns whatever ``dim`` said."""
    hidden = SentenceTransformer(st_folder).get_sentence_embedding_dimension()
    colbert = to_colbert(st_folder, dim=8)
    assert tuple(colbert[1].linear.weight.shape) == (8, hidden)
    assert all(doc.shape[-1] == 8 for doc in colbert.encode(TEXTS, is_query=False))


def test_colbert_from_a_pylate_folder_keeps_its_projection_or_refuses_another_dim(run_of, tmp_path):
    folder = str(tmp_path / "colbert")
    to_colbert(str(run_of("hf_bert")[0]), dim=16).save(folder)
    assert tuple(to_colbert(folder)[1].linear.weight.shape)[0] == 16
    with pytest.raises(UserError, match=r"dim: 8, but .* projecting to 16 dims; omit dim"):
        to_colbert(folder, dim=8)
