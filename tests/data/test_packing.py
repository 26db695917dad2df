"""Packing: first-fit-decreasing rows, segment ids, and attention that never crosses documents."""

from __future__ import annotations

import torch

from bertforge.data.packing import PackingMLMCollator, documents_in_batch, first_fit_decreasing, real_token_fraction
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertModel
from bertforge.ops.padding import unpad_info


def test_first_fit_decreasing_respects_capacity():
    lengths = [7, 3, 5, 2, 8, 1, 4]
    bins = first_fit_decreasing(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(7))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 3  # 30 tokens need at least 3 rows of 10


def test_collator_segments_and_efficiency():
    collate = PackingMLMCollator(0, 4, special_token_ids=[0, 1, 2, 3, 4], vocab_size=50, mlm_probability=0.15,
                                 pad_to_multiple_of=1, max_seq_len=10)
    samples = [{"input_ids": list(range(5, 5 + n))} for n in (7, 3, 5, 2, 8, 1, 4)]
    batch = collate(samples)
    assert batch["input_ids"].shape == (3, 10)
    assert documents_in_batch(batch) == 7
    assert real_token_fraction(batch) == 30 / 30
    info = unpad_info(batch["attention_mask"])
    assert sorted((info.cu_seqlens[1:] - info.cu_seqlens[:-1]).tolist()) == [1, 2, 3, 4, 5, 7, 8]


def test_packed_rows_give_the_same_outputs_as_separate_rows():
    torch.manual_seed(0)
    model = FlexBertModel(FlexBertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=48, local_attention_window=4)).eval()
    a, b = torch.randint(5, 60, (6,)), torch.randint(5, 60, (9,))
    packed_ids = torch.cat([a, b])[None]
    packed_mask = torch.tensor([[1] * 6 + [2] * 9])
    separate_ids = torch.zeros(2, 9, dtype=torch.long)
    separate_ids[0, :6], separate_ids[1] = a, b
    separate_mask = torch.tensor([[1] * 6 + [0] * 3, [1] * 9])
    with torch.no_grad():
        packed = model(packed_ids, packed_mask)[0]
        separate = model(separate_ids, separate_mask)
    torch.testing.assert_close(packed[:6], separate[0, :6], rtol=0, atol=1e-5)
    torch.testing.assert_close(packed[6:], separate[1], rtol=0, atol=1e-5)
