"""Runs export to PyLate ColBERT folders: after reload the token embeddings equal those before saving, and on the
document path they equal ours (our encoder -> the projection -> L2 norm, fp32 1e-5), the [D] prefix included."""

from __future__ import annotations

import pytest
import torch
from pylate.models import ColBERT

from bertforge.errors import UserError
from bertforge.export.pylate import to_colbert
from tests.export.runs import TEXTS, encoder_hidden, input_embeddings

DIM = 8


@pytest.mark.parametrize("kind", ["hf_bert", "flexbert", "m2_bert"])
def test_colbert_matches_ours_and_survives_reload(kind, run_of, tmp_path):
    run, model = run_of(kind)
    hidden = model.model.config.hidden_size
    projection = torch.randn(DIM, hidden, generator=torch.Generator().manual_seed(0))
    colbert = to_colbert(str(run), dim=DIM, projection=projection)
    docs = colbert.encode(TEXTS, is_query=False)  # per document: its real tokens (no punctuation to skip)

    features = colbert.tokenize(TEXTS, is_query=False)  # [CLS] [D] words [SEP], padded
    ids = features["input_ids"]
    assert (ids[:, 1] == colbert.document_prefix_id).all()
    table = input_embeddings(model).weight  # our encoder, given PyLate's new row for the prefix token
    saved = table.detach().clone()
    prefix = colbert.document_prefix_id
    assert prefix < table.shape[0]  # the padded vocabulary has the row: ids and shapes stay ours
    try:
        with torch.no_grad():
            table[prefix] = colbert[0].auto_model.get_input_embeddings().weight[prefix]
        batch = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        ours = torch.nn.functional.normalize(encoder_hidden(model, batch) @ projection.T, dim=-1)  # (B, L, DIM)
    finally:
        with torch.no_grad():
            table.copy_(saved)
    for row, doc in enumerate(docs):
        real = features["attention_mask"][row].bool()
        torch.testing.assert_close(torch.as_tensor(doc), ours[row][real], rtol=0, atol=1e-5)

    colbert.save(str(tmp_path / "colbert"))
    again = ColBERT(model_name_or_path=str(tmp_path / "colbert"))
    for before, after in zip(colbert.encode(TEXTS, is_query=True), again.encode(TEXTS, is_query=True)):
        torch.testing.assert_close(torch.as_tensor(after), torch.as_tensor(before), rtol=0, atol=1e-5)
    for before, after in zip(docs, again.encode(TEXTS, is_query=False)):
        torch.testing.assert_close(torch.as_tensor(after), torch.as_tensor(before), rtol=0, atol=1e-5)
    torch.testing.assert_close(again[1].linear.weight, projection, rtol=0, atol=0)


def test_projection_of_the_wrong_shape_fails_in_one_line(run_of):
    with pytest.raises(UserError, match=r"projection: shape \(3, 4\), expected \(dim, hidden\) = \(8, 32\)"):
        to_colbert(str(run_of("m2_bert")[0]), dim=DIM, projection=torch.zeros(3, 4))
