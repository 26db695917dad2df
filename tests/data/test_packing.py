"""Packing: fixed token budget per batch, no document lost, exact resume, attention never crosses documents."""

from __future__ import annotations

import pytest
import torch

from bertforge.data import packing
from bertforge.data.mlm import MLMCollator
from bertforge.data.packing import RowPacker, TokenBudgetBatches, documents_in_batch, real_token_fraction
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertModel
from bertforge.ops.padding import unpad_info


class ListStream:
    """A document stream with mosaicml-streaming's resume interface: rank ``r`` of ``world`` reads
    ``docs[r::world]`` and resumes at global sample ``sample_in_epoch`` (each rank skips its share)."""

    def __init__(self, docs: list[list[int]], rank: int = 0, world: int = 1) -> None:
        self.docs, self.rank, self.world, self.start = docs, rank, world, 0

    def __iter__(self):
        self_docs = self.docs[self.rank :: self.world][self.start :]
        self.start = 0
        return iter({"input_ids": d} for d in self_docs)

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict:
        return {"epoch": 0, "sample_in_epoch": num_samples}

    def load_state_dict(self, obj: dict) -> None:
        self.start = obj["sample_in_epoch"] // self.world


def _docs(n: int, seed: int = 0, longest: int = 40) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, longest + 1, (n,), generator=g).tolist()
    return [[2, *torch.randint(5, 50, (k - 2,), generator=g).tolist(), 3] for k in lengths]


def _collator() -> MLMCollator:
    return MLMCollator(0, 4, special_token_ids=[0, 1, 2, 3, 4], vocab_size=50, mlm_probability=0.15,
                       deterministic=True)


def _documents_of(batch: dict) -> list[tuple[int, ...]]:
    """The documents of a packed batch, as token tuples (labels restore masked ids)."""
    ids = torch.where(batch["labels"] >= 0, batch["labels"], batch["input_ids"])
    out = []
    for row_ids, row_seg in zip(ids, batch["attention_mask"]):
        for seg in range(1, int(row_seg.max()) + 1):
            out.append(tuple(row_ids[row_seg == seg].tolist()))
    return out


def test_row_packer_first_fit_in_arrival_order():
    packer = RowPacker(rows=2, capacity=10)
    assert [packer.add([0] * n) for n in (7, 6, 3, 4, 1)] == [True, True, True, True, False]
    assert [[len(d) for d in row] for row in packer.rows] == [[7, 3], [6, 4]]
    assert packer.full and packer.documents == 4


@pytest.mark.parametrize("lookahead", [0, 8])
def test_every_batch_has_the_token_budget_and_no_document_is_lost(lookahead):
    docs = _docs(300)
    batches = list(TokenBudgetBatches(ListStream(docs), rows=4, max_seq_len=64, collator=_collator(),
                                      lookahead=lookahead, drop_last=False))
    assert all(b["input_ids"].shape == (4, 64) for b in batches)
    seen = [d for b in batches for d in _documents_of(b)]
    assert sorted(seen) == sorted(tuple(d) for d in docs)  # each document exactly once
    assert sum(documents_in_batch(b) for b in batches) == len(docs)
    efficiency = sum(real_token_fraction(b) for b in batches[:-1]) / (len(batches) - 1)
    assert efficiency > (0.9 if lookahead else 0.8)  # rows of 64 slots, documents of 3..40 tokens
    info = unpad_info(batches[0]["attention_mask"])  # per-document sequences for the model
    assert info.cu_seqlens.numel() - 1 == documents_in_batch(batches[0])


def test_drop_last_drops_only_the_tail():
    docs = _docs(100)
    kept = list(TokenBudgetBatches(ListStream(docs), 4, 64, _collator(), drop_last=True))
    every = list(TokenBudgetBatches(ListStream(docs), 4, 64, _collator(), drop_last=False))
    assert 0 < len(kept) < len(every)
    for a, b in zip(kept, every):
        assert torch.equal(a["input_ids"], b["input_ids"])


def test_one_document_per_row_packs_like_plain_padding():
    docs = [d[:16] for d in _docs(20, seed=3, longest=64) if len(d) >= 16][:4]  # rows of exactly 16 tokens
    collate = _collator()
    packed = collate.collate_packed([[d] for d in docs], 16)
    padded = collate([{"input_ids": d} for d in docs])
    assert (packed["labels"] != -100).any()
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(packed[key], padded[key]), key


def _run(batches: TokenBudgetBatches, n: int) -> list[torch.Tensor]:
    it = iter(batches)
    return [next(it)["input_ids"] for _ in range(n)]


def test_resume_is_exact_with_carried_documents():
    docs = _docs(400, seed=1, longest=64)
    straight = _run(TokenBudgetBatches(ListStream(docs), 4, 64, _collator()), 12)
    first = TokenBudgetBatches(ListStream(docs), 4, 64, _collator())
    head = _run(first, 5)
    state = first.state_dict(num_samples=-1, from_beginning=True)  # Composer's count is not used
    assert state["packing"]["carry"][0], "the test should resume with documents carried over"
    resumed = TokenBudgetBatches(ListStream(docs), 4, 64, _collator())
    resumed.load_state_dict(state)
    tail = _run(resumed, 7)
    for a, b in zip(head + tail, straight):
        assert torch.equal(a, b)


def test_resume_is_exact_on_two_ranks_that_read_different_amounts(monkeypatch):
    docs = _docs(800, seed=2, longest=64)
    make = lambda rank: TokenBudgetBatches(ListStream(docs, rank, 2), 4, 64, _collator())  # noqa: E731
    straight = [_run(make(r), 10) for r in range(2)]
    ranks = [make(r) for r in range(2)]
    heads = [_run(b, 4) for b in ranks]
    assert ranks[0]._position != ranks[1]._position  # the ranks have read different amounts
    local = [(b._position, b._carry) for b in ranks]
    monkeypatch.setattr(packing.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(packing.dist, "all_gather_object", lambda obj: local)
    state = ranks[0].state_dict(num_samples=-1, from_beginning=True)
    assert state["sample_in_epoch"] == 2 * min(p for p, _ in local)
    for rank in range(2):
        monkeypatch.setattr(packing.dist, "get_global_rank", lambda r=rank: r)
        resumed = make(rank)
        resumed.load_state_dict(state)
        for a, b in zip(heads[rank] + _run(resumed, 6), straight[rank]):
            assert torch.equal(a, b)


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
