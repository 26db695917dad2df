"""Masked-language-model collation: pad a batch, choose tokens to predict, corrupt them 80/10/10.

Also the collator interface. A collator, registered in ``bertforge.registry.collators`` and named in a
loader's ``collator: {name: ..., **kwargs}`` block, is built as ``builder(tokenizer, mlm_probability,
deterministic, **kwargs)`` (``deterministic``: eval masks must depend only on the batch) and turns a
list of ``{'input_ids': [...]}`` samples into a batch dict. A loader with ``packing: true`` also needs
``collate_packed(rows, width)``, which batches rows that each hold several whole documents.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from bertforge.data.packing import packed_rows
from bertforge.data.wwm import WordBoundaries, word_boundaries
from bertforge.registry import collators

IGNORE_INDEX = -100


class Collator(Protocol):
    """What a registered collator builds: a callable from samples to a batch of tensors."""

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class PackingCollator(Collator, Protocol):
    """A collator that also batches packed rows: ``rows[r]`` lists the documents (token ids) of row ``r``,
    laid out in ``width`` slots; the batch's ``attention_mask`` holds 0 for padding and 1, 2, ... per document."""

    def collate_packed(self, rows: Sequence[Sequence[Sequence[int]]], width: int) -> dict[str, torch.Tensor]: ...


@dataclass
class MLMCollator:
    """Pads ``{'input_ids': [...]}`` samples and applies BERT masking.

    Of the real tokens, ``mlm_probability`` are selected; 80% of those become ``mask_token_id``,
    10% a random non-special token, 10% stay as they are. Special tokens and padding are never
    selected. ``labels`` hold the original ids at selected positions and -100 elsewhere. With ``whole_words``
    (whole-word masking) the draw is made once per word, so a word is selected with all its tokens (each
    token then gets its own 80/10/10 choice, as in Google's BERT).

    With ``deterministic=True`` (used for eval) the choice of masks depends only on the batch's
    content, so repeated evaluations score the same masked positions; otherwise it draws from
    torch's global RNG, which Composer checkpoints and restores on resume.
    """

    pad_token_id: int
    mask_token_id: int
    special_token_ids: Sequence[int]
    vocab_size: int
    mlm_probability: float = 0.15
    pad_to_multiple_of: int = 8
    deterministic: bool = False
    whole_words: WordBoundaries | None = None

    def __post_init__(self) -> None:
        self._special = torch.tensor(sorted(set(self.special_token_ids)), dtype=torch.long)
        is_special = torch.zeros(self.vocab_size, dtype=torch.bool)
        is_special[self._special[self._special < self.vocab_size]] = True
        self._replacement_ids = torch.nonzero(~is_special).squeeze(1)

    def pad(self, samples: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad ``input_ids`` to the batch's longest (rounded up); return ids and attention mask."""
        lengths = [len(s["input_ids"]) for s in samples]
        width = -(-max(lengths) // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(samples), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
        for row, (sample, length) in enumerate(zip(samples, lengths)):
            input_ids[row, :length] = torch.as_tensor(sample["input_ids"], dtype=torch.long)
            attention_mask[row, :length] = 1
        return input_ids, attention_mask

    def _generator(self, input_ids: torch.Tensor) -> torch.Generator | None:
        if not self.deterministic:
            return None
        digest = hashlib.blake2b(input_ids.numpy().tobytes(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))

    def mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (corrupted input_ids, labels) for a padded batch."""
        gen = self._generator(input_ids)
        candidates = attention_mask.bool() & ~torch.isin(input_ids, self._special)
        draw = torch.rand(input_ids.shape, generator=gen)
        if self.whole_words is not None:  # every token takes the draw of its word's first token
            draw = draw.gather(1, self.whole_words.first_positions(input_ids, candidates))
        selected = candidates & (draw < self.mlm_probability)
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        # Split the selected tokens 80/10/10 with a second uniform draw.
        action = torch.rand(input_ids.shape, generator=gen)
        to_mask = selected & (action < 0.8)
        to_random = selected & (action >= 0.8) & (action < 0.9)
        corrupted = input_ids.masked_fill(to_mask, self.mask_token_id)
        picks = torch.randint(len(self._replacement_ids), input_ids.shape, generator=gen)
        corrupted = torch.where(to_random, self._replacement_ids[picks], corrupted)
        return corrupted, labels

    def _batch(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        corrupted, labels = self.mask(input_ids, attention_mask)
        return {"input_ids": corrupted, "attention_mask": attention_mask, "labels": labels}

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        return self._batch(*self.pad(samples))

    def collate_packed(self, rows: Sequence[Sequence[Sequence[int]]], width: int) -> dict[str, torch.Tensor]:
        """A batch of packed rows (lists of documents): corrupted ids, segment-id attention mask, labels."""
        return self._batch(*packed_rows(rows, width, self.pad_token_id))


def uses_mlm_probability(collate: Collator) -> bool:
    """Whether ``collate`` masks at the loader's ``mlm_probability``: a collator says so with a ``uses_mlm_probability``
    attribute; one without it does unless its objective is ``mdlm`` (a rate drawn per sequence)."""
    return bool(getattr(collate, "uses_mlm_probability", getattr(collate, "objective", "mlm") != "mdlm"))


def tokenizer_ids(tokenizer) -> dict:
    """The token ids and vocabulary size a masking collator takes from its tokenizer."""
    return dict(pad_token_id=tokenizer.pad_token_id, mask_token_id=tokenizer.mask_token_id,
                special_token_ids=tokenizer.all_special_ids, vocab_size=len(tokenizer))


@collators.register("mlm")
def build_mlm_collator(tokenizer, mlm_probability: float, deterministic: bool,
                       whole_word_mask: bool = False) -> MLMCollator:
    """BERT masking of mlm_probability of the real tokens (80% [MASK], 10% random, 10% kept); supports packing.
    ``whole_word_mask``: select whole words (WordPiece or byte-level BPE tokenizers)."""
    return MLMCollator(
        **tokenizer_ids(tokenizer),
        mlm_probability=mlm_probability,
        deterministic=deterministic,
        whole_words=word_boundaries(tokenizer, "collator.whole_word_mask") if whole_word_mask else None,
    )
