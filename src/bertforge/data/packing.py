"""Sequence packing with a fixed token budget: every batch is ``rows x max_seq_len`` token slots.

Documents are taken from the stream in order and placed first-fit into the batch's rows; one that
fits nowhere waits in a small carry buffer (up to ``lookahead`` documents) and starts a later batch,
so short documents behind it can still fill the gaps. A packed batch's ``attention_mask`` holds 0
for padding and 1, 2, ... for the documents of a row; models that unpad (FlexBERT, M2) turn each
run of equal ids into its own sequence in ``cu_seqlens``, so attention never crosses documents.

Resumption stays exact: the state saved with a checkpoint is, per rank, how many documents were
read from the stream and the carried documents themselves (gathered from every rank at save time;
the stream resumes at the slowest rank and the others skip ahead). This needs the packing to run in
the main process (``num_workers: 0``); with workers, the stream resumes at the documents emitted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from composer.utils import dist
from torch.utils.data import IterableDataset

if TYPE_CHECKING:  # mlm imports this module
    from bertforge.data.mlm import PackingCollator


class RowPacker:
    """First-fit of documents, in arrival order, into ``rows`` rows of ``capacity`` tokens each."""

    def __init__(self, rows: int, capacity: int) -> None:
        self.rows: list[list[list[int]]] = [[] for _ in range(rows)]
        self.room = [capacity] * rows
        self.documents = 0

    def add(self, doc: list[int]) -> bool:
        """Place ``doc`` in the first row with room; False when it fits nowhere."""
        slot = next((r for r, free in enumerate(self.room) if free >= len(doc)), None)
        if slot is None:
            return False
        self.rows[slot].append(doc)
        self.room[slot] -= len(doc)
        self.documents += 1
        return True

    @property
    def full(self) -> bool:
        """No token slot left."""
        return not any(self.room)


def packed_rows(rows: Sequence[Sequence[Sequence[int]]], width: int, pad_token_id: int):
    """``(input_ids, segment_ids)`` of shape ``(len(rows), width)`` for rows given as lists of documents."""
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    segments = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for segment, doc in enumerate(row, start=1):
            end = start + len(doc)
            input_ids[r, start:end] = torch.as_tensor(doc, dtype=torch.long)
            segments[r, start:end] = segment
            start = end
    return input_ids, segments


class TokenBudgetBatches(IterableDataset):
    """Packed batches of exactly ``rows x max_seq_len`` slots from a stream of ``{'input_ids'}`` documents.

    Each batch is ``collator.collate_packed(rows, max_seq_len)``. ``documents`` is a (streaming) dataset
    yielding one document per item; its ``state_dict`` and ``load_state_dict`` are wrapped so that Composer
    checkpoints and resumes the packing exactly.
    """

    def __init__(self, documents, rows: int, max_seq_len: int, collator: PackingCollator, lookahead: int = 8,
                 drop_last: bool = True, tracks_position: bool = True) -> None:
        self.documents = documents
        self.rows, self.max_seq_len, self.collator = rows, max_seq_len, collator
        self.lookahead, self.drop_last, self.tracks_position = lookahead, drop_last, tracks_position
        self._position = 0  # documents read from this rank's stream in this epoch
        self._carry: list[list[int]] = []
        self._resume: tuple[int, int, list[list[int]]] | None = None  # (stream start, skip, carry)

    def _stream(self, skip: int) -> Iterator[list[int]]:
        for i, sample in enumerate(self.documents):
            self._position += 1
            if i >= skip:
                yield list(sample["input_ids"])[: self.max_seq_len]

    def __iter__(self) -> Iterator[dict]:
        start, skip, carry = self._resume or (0, 0, [])
        self._resume = None
        self._position, self._carry = start, [list(doc) for doc in carry]
        stream = self._stream(skip)
        exhausted = False
        while not exhausted or self._carry:
            packer = RowPacker(self.rows, self.max_seq_len)
            waiting, self._carry = self._carry, []
            for doc in waiting:
                if not packer.add(doc):
                    self._carry.append(doc)
            while not exhausted and not packer.full and len(self._carry) <= self.lookahead:
                doc = next(stream, None)
                if doc is None:
                    exhausted = True
                elif not packer.add(doc):
                    self._carry.append(doc)
            if packer.documents == 0 or (exhausted and self.drop_last):
                break  # the stream's tail does not fill a whole batch
            yield self.collator.collate_packed(packer.rows, self.max_seq_len)

    def state_dict(self, num_samples: int, from_beginning: bool) -> dict[str, Any]:
        """The stream's state at the slowest rank, plus every rank's documents to skip and carried documents."""
        if not self.tracks_position:
            return self.documents.state_dict(num_samples, from_beginning)
        ranks = dist.all_gather_object((self._position, self._carry)) if dist.get_world_size() > 1 else [
            (self._position, self._carry)]
        slowest = min(position for position, _ in ranks)
        state = self.documents.state_dict(slowest * len(ranks), True)
        state["packing"] = {"skip": [p - slowest for p, _ in ranks], "carry": [c for _, c in ranks]}
        return state

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        """Resume the stream and this rank's packing where the checkpoint left them."""
        obj = dict(obj)
        packing = obj.pop("packing", None)
        self.documents.load_state_dict(obj)
        rank, world = dist.get_global_rank(), dist.get_world_size()
        if packing is not None and len(packing["skip"]) == world:
            base = obj["sample_in_epoch"] // world
            self._resume = (base, packing["skip"][rank], packing["carry"][rank])


def real_token_fraction(batch: dict) -> float:
    """Real tokens / token slots of a batch (packing or padding efficiency)."""
    mask = batch["attention_mask"]
    return float((mask > 0).sum()) / mask.numel()


def documents_in_batch(batch: dict) -> int:
    """Number of documents in a batch: rows, or the segments of packed rows."""
    return int(batch["attention_mask"].max(dim=1).values.sum())
