"""StreamingTextDataset: id rows (``convert_dataset.py --tokenizer``) are framed exactly as text rows are."""

from __future__ import annotations

import pytest

from bertforge.data.convert import convert
from bertforge.data.text import StreamingTextDataset
from bertforge.data.tokenizer import load_tokenizer, special_frame
from tests.conftest import SHARED_DATA, shakespeare_docs


@pytest.mark.parametrize("name,frame", [("bert-base-uncased", ([101], [102])),
                                        ("modernbert", ([50281], [50282]))])
def test_id_rows_get_the_special_tokens_text_rows_get(tmp_path, name, frame):
    """Before: id rows went through build_inputs_with_special_tokens, which for ModernBERT's plain fast tokenizer
    returns the ids bare, so its --tokenizer data trained without [CLS]/[SEP] while its text data had them."""
    path = str(SHARED_DATA / "tokenizers" / name)
    tok = load_tokenizer(path)
    assert special_frame(tok) == frame
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(d.replace("\n", " ") for d in shakespeare_docs()[:12]) + "\n")
    convert(source, tmp_path / "text", splits="train")
    convert(source, tmp_path / "ids", splits="train", tokenizer=path)
    rows = {kind: StreamingTextDataset(tok, 24, local=str(tmp_path / kind), split="train", shuffle=False)
            for kind in ("text", "ids")}
    for i in range(12):
        want = rows["text"][i]["input_ids"]
        assert rows["ids"][i]["input_ids"] == want and len(want) <= 24
        assert want[:1] == frame[0] and want[-1:] == frame[1]
