"""Masked-language-model collation: pad a batch, choose tokens to predict, corrupt them 80/10/10."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass
class MLMCollator:
    """Pads ``{'input_ids': [...]}`` samples and applies BERT masking.

    Of the real tokens, ``mlm_probability`` are selected; 80% of those become ``mask_token_id``,
    10% a random non-special token, 10% stay as they are. Special tokens and padding are never
    selected. ``labels`` hold the original ids at selected positions and -100 elsewhere.

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

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = self.pad(samples)
        corrupted, labels = self.mask(input_ids, attention_mask)
        return {"input_ids": corrupted, "attention_mask": attention_mask, "labels": labels}


def collator_for_tokenizer(tokenizer, mlm_probability: float, deterministic: bool = False) -> MLMCollator:
    """An MLM collator for a Hugging Face tokenizer."""
    return MLMCollator(
        pad_token_id=tokenizer.pad_token_id,
        mask_token_id=tokenizer.mask_token_id,
        special_token_ids=tokenizer.all_special_ids,
        vocab_size=len(tokenizer),
        mlm_probability=mlm_probability,
        deterministic=deterministic,
    )
