"""Sequence packing: several documents per row, with segment ids so attention stays inside each one.

A packed batch's ``attention_mask`` holds 0 for padding and 1, 2, ... for the documents of a row;
models that unpad (FlexBERT) turn each run of equal ids into its own sequence in ``cu_seqlens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bertforge.data.mlm import MLMCollator


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group item indices into bins of at most ``capacity`` tokens, longest items first."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        size = min(lengths[i], capacity)
        slot = next((b for b, free in enumerate(room) if free >= size), None)
        if slot is None:
            bins.append([i])
            room.append(capacity - size)
        else:
            bins[slot].append(i)
            room[slot] -= size
    return bins


@dataclass
class PackingMLMCollator(MLMCollator):
    """MLM collation over packed rows of ``max_seq_len`` tokens (documents longer than that are cut)."""

    max_seq_len: int = 512

    def pad(self, samples: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        docs = [list(s["input_ids"])[: self.max_seq_len] for s in samples]
        rows = first_fit_decreasing([len(d) for d in docs], self.max_seq_len)
        width = -(-max(sum(len(docs[i]) for i in row) for row in rows) // self.pad_to_multiple_of)
        width *= self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        segments = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            start = 0
            for segment, i in enumerate(row, start=1):
                end = start + len(docs[i])
                input_ids[r, start:end] = torch.as_tensor(docs[i], dtype=torch.long)
                segments[r, start:end] = segment
                start = end
        return input_ids, segments


def real_token_fraction(batch: dict) -> float:
    """Real tokens / token slots of a batch (packing or padding efficiency)."""
    mask = batch["attention_mask"]
    return float((mask > 0).sum()) / mask.numel()


def documents_in_batch(batch: dict) -> int:
    """Number of documents in a batch: rows, or the segments of packed rows."""
    return int(batch["attention_mask"].max(dim=1).values.sum())
