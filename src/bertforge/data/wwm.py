"""Whole-word masking: which tokens form one word, and Google-style static masks with a prediction budget.

Words come from the vocabulary alone (samples hold ids, not offsets), for two tokenizer kinds:

* WordPiece (BERT): a token starting with ``##`` continues the word before it.
* byte-level BPE (RoBERTa, GPT-2, ModernBERT): a token continues the word before it when its first byte is a word
  byte (an ASCII letter or digit, or any byte of a non-ASCII character) and the previous token's last byte is one
  too; so ``Ġ`` (a leading space) and punctuation start a new word, as the tokenizers' own pre-tokenizers split.

Special tokens, padding and anything else the caller marks as not maskable are never part of a word.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bertforge.errors import UserError

WORDPIECE_PREFIX = "##"
BYTE_LEVEL_SPACE = "\u0120"  # 'Ġ': byte-level BPE's picture of a space byte
_KIND_SHARE = 0.01  # a tokenizer kind is recognised when this share of the vocabulary carries its marker


def _byte_level_chars() -> dict[str, int]:
    """Byte-level BPE's alphabet: printable Latin-1 bytes stand for themselves, the others for chr(256 + n)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {chr(b): b for b in printable}
    others = [b for b in range(256) if b not in chars.values()]
    chars.update({chr(256 + n): b for n, b in enumerate(others)})
    return chars


def _is_word_byte(byte: int | None) -> bool:
    return byte is not None and (byte >= 0x80 or chr(byte).isalnum())


@dataclass(frozen=True, eq=False)  # eq=False: compared and hashed by identity (it holds arrays)
class WordBoundaries:
    """Per vocabulary id: ``continues[v]``, token ``v`` may continue the word before it; ``joinable[v]``, a word
    may go on after token ``v``. ``kind`` is 'wordpiece' or 'byte_level'."""

    kind: str
    continues: np.ndarray  # (V,) bool
    joinable: np.ndarray  # (V,) bool

    def word_starts(self, ids: np.ndarray, maskable: np.ndarray) -> np.ndarray:
        """``(..., L)`` bool: True where a new word starts (and at every position that is not ``maskable``)."""
        prev_ids = np.roll(ids, 1, axis=-1)
        prev_ok = np.roll(maskable, 1, axis=-1)
        prev_ok[..., 0] = False
        inside = maskable & prev_ok & self.continues[ids] & self.joinable[prev_ids]
        return ~inside

    def first_positions(self, ids: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` long: for each position, the position of the first token of its word."""
        starts = torch.from_numpy(self.word_starts(ids.cpu().numpy(), maskable.cpu().numpy()))
        pos = torch.arange(ids.shape[1]).expand_as(ids)
        return torch.cummax(torch.where(starts, pos, 0), dim=1).values

    def groups(self, ids: np.ndarray, maskable: np.ndarray) -> list[np.ndarray]:
        """The maskable positions of one sequence ``(L,)``, grouped into words (each group in order)."""
        positions = np.flatnonzero(maskable)
        if len(positions) == 0:
            return []
        starts = self.word_starts(ids, maskable)[positions]
        return np.split(positions, np.flatnonzero(starts)[1:])


def word_boundaries(tokenizer, key: str = "whole_word_mask") -> WordBoundaries:
    """The :class:`WordBoundaries` of a WordPiece or byte-level BPE ``tokenizer`` (told apart by their vocabulary:
    ``##`` continuations or ``Ġ`` word starts); a :class:`UserError` naming ``key`` for any other kind."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    tokens = [t if isinstance(t, str) else "" for t in tokens]
    share = _KIND_SHARE * len(tokens)
    if sum(t.startswith(WORDPIECE_PREFIX) and len(t) > 2 for t in tokens) > share:
        continues = np.array([t.startswith(WORDPIECE_PREFIX) and len(t) > 2 for t in tokens])
        return WordBoundaries("wordpiece", continues, np.ones(len(tokens), dtype=bool))
    if sum(t.startswith(BYTE_LEVEL_SPACE) for t in tokens) > share:
        chars = _byte_level_chars()
        continues = np.array([bool(t) and _is_word_byte(chars.get(t[0])) for t in tokens])
        joinable = np.array([bool(t) and _is_word_byte(chars.get(t[-1])) for t in tokens])
        return WordBoundaries("byte_level", continues, joinable)
    raise UserError(f"{key}: cannot tell where words start in tokenizer {getattr(tokenizer, 'name_or_path', '')!r} "
                    "(neither WordPiece '##' pieces nor byte-level BPE 'Ġ' words); turn whole-word masking off")


def replacement_ids(vocab_size: int, special_ids: Sequence[int]) -> np.ndarray:
    """The ids a '10% random' replacement draws from: the whole vocabulary but the special tokens."""
    keep = np.ones(vocab_size, dtype=bool)
    keep[[i for i in special_ids if 0 <= i < vocab_size]] = False
    return np.flatnonzero(keep)


def static_mask(ids: np.ndarray, maskable: np.ndarray, rng: random.Random, *, probability: float,
                max_predictions: int, mask_token_id: int, replacements: np.ndarray,
                words: WordBoundaries | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Google's masked-LM predictions for one sequence ``ids`` ``(L,)``: (corrupted ids, positions, original ids).

    The budget is ``min(max_predictions, max(1, round(n * probability)))`` for ``n`` maskable tokens; words (single
    tokens without ``words``) are visited in a random order and taken whole while they fit the budget. Each chosen
    token becomes ``mask_token_id`` (80%), a random id of ``replacements`` (10%) or stays (10%).
    """
    groups = words.groups(ids, maskable) if words is not None else [p[None] for p in np.flatnonzero(maskable)]
    budget = min(max_predictions, max(1, round(int(maskable.sum()) * probability)))
    rng.shuffle(groups)
    chosen: list[int] = []
    for group in groups:
        if len(chosen) >= budget:
            break
        if len(chosen) + len(group) <= budget:  # a word that does not fit is skipped, never cut
            chosen.extend(group.tolist())
    chosen.sort()
    corrupted = ids.copy()
    for pos in chosen:
        draw = rng.random()
        if draw < 0.8:
            corrupted[pos] = mask_token_id
        elif draw < 0.9:
            corrupted[pos] = replacements[rng.randrange(len(replacements))]
    positions = np.asarray(chosen, dtype=np.int64)
    return corrupted, positions, ids[positions]
