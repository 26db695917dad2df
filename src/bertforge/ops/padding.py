"""Remove padding from a batch once, and put it back where a consumer needs a dense tensor.

Unpadded tensors hold the real tokens of all sequences back to back: ``(total_tokens, ...)``.
``cu_seqlens`` (int32, ``(batch + 1,)``) gives where each sequence starts, the same bookkeeping
that flash-attn's varlen kernels and sequence packing use.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Unpadded(NamedTuple):
    """A batch with its padding removed.

    Attributes:
        indices: ``(total,)`` positions of the real tokens in the flattened ``(batch * seqlen)`` batch.
        cu_seqlens: ``(sequences + 1,)`` int32 cumulative sequence lengths, starting at 0 (one
            sequence per row, or per document when rows are packed).
        max_seqlen: the longest sequence in the batch.
        batch: number of sequences.
        seqlen: padded length of the original batch.
    """

    indices: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    batch: int
    seqlen: int


def unpad_info(attention_mask: torch.Tensor) -> Unpadded:
    """Bookkeeping to unpad a ``(batch, seqlen)`` mask: 0 marks padding, any other value a real token.

    A plain 0/1 mask makes each row one sequence. A packed row holds several documents with
    segment ids 1, 2, ...: each run of equal ids becomes its own sequence in ``cu_seqlens``, so
    attention never crosses a document boundary.
    """
    batch, seqlen = attention_mask.shape
    flat = attention_mask.flatten()
    indices = torch.nonzero(flat, as_tuple=False).flatten()
    row, segment = indices // seqlen, flat[indices]
    new_sequence = torch.ones_like(indices, dtype=torch.bool)
    new_sequence[1:] = (row[1:] != row[:-1]) | (segment[1:] != segment[:-1])
    starts = torch.nonzero(new_sequence, as_tuple=False).flatten()
    bounds = torch.cat([starts, starts.new_tensor([indices.numel()])]).to(torch.int32)
    max_seqlen = int((bounds[1:] - bounds[:-1]).max()) if indices.numel() else 0
    return Unpadded(indices, bounds, max_seqlen, batch, seqlen)


def unpad(x: torch.Tensor, info: Unpadded) -> torch.Tensor:
    """``(batch, seqlen, ...)`` -> ``(total, ...)``: keep the real tokens (a view when nothing is padded)."""
    if info.indices.numel() == info.batch * info.seqlen:
        return x.flatten(0, 1)
    return x.flatten(0, 1)[info.indices]


def pad(x: torch.Tensor, info: Unpadded) -> torch.Tensor:
    """``(total, ...)`` -> ``(batch, seqlen, ...)`` with zeros at padded positions."""
    if x.shape[0] == info.batch * info.seqlen:
        return x.view(info.batch, info.seqlen, *x.shape[1:])
    out = x.new_zeros((info.batch * info.seqlen, *x.shape[1:]))
    out[info.indices] = x
    return out.view(info.batch, info.seqlen, *x.shape[1:])


def positions_in_sequence(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """``(total,)`` index of each token within its own sequence (0 at every sequence start)."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), lengths, output_size=total)
    return torch.arange(total, device=cu_seqlens.device) - starts


def sequence_ids(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """``(total,)`` index of the sequence each token belongs to."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    return torch.repeat_interleave(torch.arange(len(lengths), device=cu_seqlens.device), lengths, output_size=total)
