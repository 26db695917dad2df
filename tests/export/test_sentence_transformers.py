"""Every family exports to a sentence-transformers folder whose embeddings equal ours (fp32, 1e-5): our encoder's
hidden states of each text alone, mean-pooled or first token, L2-normalised if asked; batched with padding."""

from __future__ import annotations

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer

from bertforge.errors import UserError
from bertforge.export.sentence_transformers import save_sentence_transformer, to_sentence_transformer
from bertforge.models.convert.bert import to_bert
from bertforge.models.convert.modernbert import to_modernbert
from bertforge.models.flexbert.build import hf_exporter
from tests.conftest import TRANSFORMERS_5
from tests.export.runs import TEXTS, sentence_embeddings

CASES = [("hf_bert", "mean", False), ("flexbert", "cls", True), ("flexbert_alibi", "mean", True),
         ("m2_bert", "cls", False)]


def _expected_class(kind: str, model) -> str:
    if kind == "hf_bert":
        return "BertModel"
    exporter = hf_exporter(model.model.config) if kind.startswith("flexbert") else None
    if exporter is None:
        return "BertforgeModel"  # bertforge's own modeling code
    return {to_modernbert: "ModernBertModel", to_bert: "BertModel"}[exporter]


@pytest.mark.parametrize(("kind", "pooling", "normalize"), CASES)
def test_saved_folder_gives_our_embeddings(kind, pooling, normalize, run_of, tmp_path):
    run, model = run_of(kind)
    out = save_sentence_transformer(str(run), str(tmp_path / "st"), pooling=pooling, normalize=normalize)
    st = SentenceTransformer(out)
    assert type(st[0].auto_model).__name__ == _expected_class(kind, model)
    assert [type(m).__name__ for m in st] == ["Transformer", "Pooling"] + ["Normalize"] * normalize
    theirs = st.encode(TEXTS, convert_to_tensor=True, batch_size=len(TEXTS))  # one padded batch
    ours = sentence_embeddings(model, model.tokenizer, TEXTS, pooling, normalize)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    if normalize:
        torch.testing.assert_close(theirs.norm(dim=-1), torch.ones(len(TEXTS)), rtol=0, atol=1e-5)


def test_bertforge_code_folder_also_loads_with_trust_remote_code(run_of, tmp_path):
    """With trust_remote_code the folder's own files run (as where bertforge is not imported): same embeddings."""
    run, model = run_of("m2_bert")
    out = save_sentence_transformer(str(run), str(tmp_path / "st"))
    st = SentenceTransformer(out, trust_remote_code=True)
    module = type(st[0].auto_model).__module__
    if TRANSFORMERS_5:  # 5 prefers the class importing bertforge registered (auto_factory's explicit_local_code)
        assert module == "bertforge.export.remote.modeling_bertforge"
    else:
        assert "transformers_modules" in module
    ours = sentence_embeddings(model, model.tokenizer, TEXTS, "mean", False)
    torch.testing.assert_close(st.encode(TEXTS, convert_to_tensor=True), ours, rtol=0, atol=1e-5)


def test_hf_and_st_folders_are_sources_too(run_of, tmp_path):
    """A saved ST folder re-exports with another pooling; max_seq_length is kept and truncates."""
    run, model = run_of("flexbert_alibi")
    first = save_sentence_transformer(str(run), str(tmp_path / "st"), max_seq_length=5)
    assert json.loads((tmp_path / "st" / "sentence_bert_config.json").read_text())["max_seq_length"] == 5
    st = to_sentence_transformer(first, pooling="cls")
    assert st.max_seq_length == 5
    long_text = TEXTS[2]  # 10 words: [CLS] + 3 words + [SEP] once truncated to 5 tokens
    ours = sentence_embeddings(model, model.tokenizer, ["w5 w6 w7"], "cls", False)
    torch.testing.assert_close(st.encode([long_text], convert_to_tensor=True), ours, rtol=0, atol=1e-5)


def test_bad_sources_and_pooling_fail_in_one_line(tmp_path, run_of):
    with pytest.raises(UserError, match="no such folder"):
        to_sentence_transformer(str(tmp_path / "missing" / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a bertforge run"):
        to_sentence_transformer(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="pooling: 'max' is not one of mean, cls"):
        to_sentence_transformer(str(run_of("m2_bert")[0]), pooling="max")
