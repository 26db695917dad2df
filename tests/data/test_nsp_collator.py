"""The nsp collator and nsp_sample (bertforge.data.nsp): the batch contract, dynamic and static masks, eval
determinism, refusal of over-long pairs, and converted MDS pairs read back through both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.data.mlm import IGNORE_INDEX, PackingCollator
from bertforge.data.nsp import build_nsp_collator, nsp_sample
from bertforge.errors import UserError

TOKENIZER = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tokenizers" / "bert-base-uncased"


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


def pair(tok, a: str, b: str, label: int) -> dict:
    enc = tok(a, b)
    return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"], "next_sentence_label": label}


def test_dynamic_batch_contract(tok):
    collate = build_nsp_collator(tok, 0.3, False, whole_word_mask=True)
    assert collate.objective == "nsp" and not isinstance(collate, PackingCollator)
    samples = [pair(tok, "the king spoke to his people.", "they listened with unbelievable care.", 0),
               pair(tok, "rain fell.", "hello", 1)] * 20
    torch.manual_seed(0)
    batch = collate(samples)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "next_sentence_label"}
    n = len(samples[0]["input_ids"])
    assert batch["input_ids"].shape == (40, 16) and batch["attention_mask"][0].tolist() == [1] * n + [0] * (16 - n)
    assert batch["token_type_ids"][0].tolist() == samples[0]["token_type_ids"] + [0] * (16 - n)
    assert batch["next_sentence_label"].dtype == torch.long and batch["next_sentence_label"][:2].tolist() == [0, 1]
    ids, _ = collate.masker.pad(samples)
    selected = batch["labels"] != IGNORE_INDEX
    assert selected.any() and torch.equal(batch["labels"][selected], ids[selected])
    assert not (selected & torch.isin(ids, torch.tensor(tok.all_special_ids))).any(), "a special token was masked"


def test_eval_masks_depend_only_on_the_batch(tok):
    collate = build_nsp_collator(tok, 0.15, True)
    samples = [pair(tok, "the king spoke to his people and they listened.", "rain fell on the old town.", 0)] * 8
    torch.manual_seed(1)
    first = collate(samples)
    torch.manual_seed(2)
    second = collate(samples)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_static_masks_are_used_as_stored(tok):
    collate = build_nsp_collator(tok, 0.15, False)
    sample = pair(tok, "the king spoke.", "rain fell.", 1)
    sample["input_ids"][2] = tok.mask_token_id
    static = dict(sample, masked_lm_positions=[2, 5], masked_lm_ids=[2332, 3500])
    batch = collate([static, static])
    assert batch["input_ids"][0, : len(sample["input_ids"])].tolist() == sample["input_ids"]
    assert batch["labels"][0].tolist()[:8] == [-100, -100, 2332, -100, -100, 3500, -100, -100]
    with pytest.raises(UserError, match="mixes statically masked pairs"):
        collate([static, sample])


def test_nsp_sample_refuses_pairs_longer_than_max_seq_len():
    record = {"input_ids": np.arange(10, dtype=np.int32), "token_type_ids": np.zeros(10, dtype=np.uint8),
              "next_sentence_label": np.int8(1), "masked_lm_positions": np.array([3], dtype=np.int32),
              "masked_lm_ids": np.array([7], dtype=np.int32)}
    assert nsp_sample(record, 10) == {"input_ids": list(range(10)), "token_type_ids": [0] * 10,
                                      "next_sentence_label": 1, "masked_lm_positions": [3], "masked_lm_ids": [7]}
    with pytest.raises(UserError, match="max_seq_len: 8 is shorter than a sentence pair of 10 tokens"):
        nsp_sample(record, 8)


def test_converted_pairs_through_sample_and_collator(tmp_path, tok):
    from streaming import LocalDataset

    from bertforge.data.convert import main
    from bertforge.data.mds_checks import check_pairs_fit

    text = "\n\n".join("\n".join(f"Sentence {d} {s} of the king and his people." for s in range(6)) for d in range(12))
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    main(["--input", str(tmp_path / "in.txt"), "--out", str(out), "--objective", "nsp", "--tokenizer", str(TOKENIZER),
          "--max-seq-len", "24", "--splits", "train", "--static-masking", "--whole-word-mask", "--dupe-factor", "2"])
    check_pairs_fit(str(out), 24)
    with pytest.raises(UserError, match="max_seq_len: 16 is shorter than the sentence pairs"):
        check_pairs_fit(str(out), 16)
    ds = LocalDataset(str(out), "train")
    samples = [nsp_sample(ds[i], 24) for i in range(len(ds))]
    batch = build_nsp_collator(tok, 0.15, False)(samples)
    selected = batch["labels"] != IGNORE_INDEX
    assert torch.equal(selected.sum(1), torch.tensor([len(s["masked_lm_positions"]) for s in samples]))
    assert (selected.sum(1) <= 4).all()  # max_predictions_per_seq: ceil(0.15 * 24)
    assert batch["next_sentence_label"].tolist() == [s["next_sentence_label"] for s in samples]
