"""Whole-word masking (bertforge.data.wwm, the mlm collator's whole_word_mask): word grouping checked against the
tokenizers' own word_ids() for WordPiece and byte-level BPE, whole words only, budgets, 80/10/10, specials."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.data.mlm import IGNORE_INDEX, build_mlm_collator
from bertforge.data.wwm import replacement_ids, static_mask, word_boundaries
from bertforge.errors import UserError

TOKENIZERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tokenizers"
TEXT = ("Hello, world's (tokenization) is naïve: the quick brown fox jumped over the lazy dogs. Tokenizers don't "
        "split unusual words like antidisestablishmentarianism or photosynthesizing!\nNext line: unbelievably "
        "overcomplicated reimplementations, 2024 edition.")


@pytest.fixture(scope="module", params=["bert-base-uncased", "modernbert"])
def tok(request):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZERS / request.param))


def reference_starts(encoding) -> np.ndarray:
    """Word starts from the tokenizer's own pre-tokenizer (word_ids), True on special tokens."""
    wid = encoding.word_ids()
    return np.array([w is None or i == 0 or wid[i - 1] != w for i, w in enumerate(wid)])


def word_ids_of(tok, ids: torch.Tensor) -> torch.Tensor:
    maskable = ~torch.isin(ids, torch.tensor(tok.all_special_ids))
    starts = torch.from_numpy(word_boundaries(tok).word_starts(ids.numpy(), maskable.numpy()))
    return torch.cumsum(starts.long(), dim=1)


def test_grouping_matches_the_tokenizers_words(tok):
    words = word_boundaries(tok)
    assert words.kind == ("wordpiece" if "bert-base" in tok.name_or_path else "byte_level")
    enc = tok(TEXT)
    ids = np.array(enc["input_ids"])
    maskable = ~np.isin(ids, tok.all_special_ids)
    assert np.array_equal(words.word_starts(ids, maskable), reference_starts(enc))
    groups = words.groups(ids, maskable)
    assert sum(len(g) > 1 for g in groups) >= 3, "the text has words of several tokens"
    assert sum(map(len, groups)) == maskable.sum()


def test_static_masks_cover_whole_words_within_budget(tok):
    words = word_boundaries(tok)
    enc = tok([TEXT, TEXT.upper(), TEXT[40:]] * 80)
    repl = replacement_ids(len(tok), tok.all_special_ids)
    rng = random.Random(0)
    outcomes = {"mask": 0, "random": 0, "kept": 0}
    for seq in enc["input_ids"]:
        ids = np.array(seq)
        maskable = ~np.isin(ids, tok.all_special_ids)
        corrupted, pos, orig = static_mask(ids, maskable, rng, probability=0.15, max_predictions=12,
                                           mask_token_id=tok.mask_token_id, replacements=repl, words=words)
        assert 1 <= len(pos) <= 12 and np.array_equal(orig, ids[pos]) and maskable[pos].all()
        chosen = set(pos.tolist())
        for group in words.groups(ids, maskable):  # every word is masked whole or not at all
            assert len(chosen & set(group.tolist())) in (0, len(group))
        assert np.array_equal(np.delete(corrupted, pos), np.delete(ids, pos)), "only chosen positions change"
        for p in pos:
            kind = "mask" if corrupted[p] == tok.mask_token_id else "kept" if corrupted[p] == ids[p] else "random"
            outcomes[kind] += 1
            assert kind != "random" or corrupted[p] not in tok.all_special_ids
    n = sum(outcomes.values())
    assert n > 2000
    # tolerance 3 points (binomial std <= 0.9 points at n > 2000); 'kept' also holds random draws of the same id
    assert abs(outcomes["mask"] / n - 0.8) < 0.03 and abs(outcomes["random"] / n - 0.1) < 0.03, outcomes


def test_static_budget_without_whole_words():
    ids = np.arange(10, 110)
    maskable = np.ones(100, dtype=bool)
    maskable[[0, 50, 99]] = False
    _, pos, _ = static_mask(ids, maskable, random.Random(1), probability=0.15, max_predictions=20,
                            mask_token_id=4, replacements=np.arange(5, 200))
    assert len(pos) == 15 and maskable[pos].all()  # round(97 * 0.15) tokens, one by one
    _, pos, _ = static_mask(ids, maskable, random.Random(1), probability=0.5, max_predictions=20,
                            mask_token_id=4, replacements=np.arange(5, 200))
    assert len(pos) == 20  # capped by max_predictions


def test_dynamic_whole_word_masking_in_the_mlm_collator(tok):
    collate = build_mlm_collator(tok, 0.3, False, whole_word_mask=True)
    enc = tok([TEXT, TEXT[30:], TEXT.lower()] * 60, add_special_tokens=True)
    torch.manual_seed(0)
    batch = collate([{"input_ids": ids} for ids in enc["input_ids"]])
    ids, _ = collate.pad([{"input_ids": x} for x in enc["input_ids"]])
    selected = batch["labels"] != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    assert not (selected & special).any(), "special tokens or padding were selected"
    key = (word_ids_of(tok, ids) + torch.arange(ids.shape[0])[:, None] * ids.shape[1])[~special]
    sel = selected[~special].long()
    any_sel = torch.zeros(ids.numel(), dtype=torch.long).scatter_reduce(0, key, sel, "amax", include_self=False)
    all_sel = torch.ones(ids.numel(), dtype=torch.long).scatter_reduce(0, key, sel, "amin", include_self=False)
    assert torch.equal(any_sel[key], all_sel[key]), "a word was selected in part"
    assert (key.bincount() > 1).sum() > 100, "the batch has words of several tokens"
    rate = selected.sum() / (~special & (batch["attention_mask"] == 1)).sum()
    assert abs(rate - 0.3) < 0.03, rate  # per-word draws: the token rate stays mlm_probability (3 points)
    masked = (batch["input_ids"][selected] == tok.mask_token_id).float().mean()
    assert abs(masked - 0.8) < 0.03, masked


def test_unknown_tokenizer_kind_is_one_line():
    fake = type("Fake", (), {"__len__": lambda self: 100, "name_or_path": "chars",
                             "convert_ids_to_tokens": lambda self, ids: [chr(97 + i % 26) for i in ids]})()
    with pytest.raises(UserError, match="collator.whole_word_mask: cannot tell where words start"):
        word_boundaries(fake, "collator.whole_word_mask")
