"""MLM collator: 80/10/10 corruption, special tokens and padding never selected, deterministic eval masks."""

from __future__ import annotations

import torch

from bertforge.data.mlm import IGNORE_INDEX, MLMCollator

PAD, CLS, SEP, MASK = 0, 2, 3, 4
VOCAB = 1000


def _collator(p: float = 0.15, deterministic: bool = False) -> MLMCollator:
    return MLMCollator(PAD, MASK, special_token_ids=[PAD, 1, CLS, SEP, MASK], vocab_size=VOCAB,
                       mlm_probability=p, deterministic=deterministic)


def _samples(n: int, gen: torch.Generator) -> list[dict]:
    out = []
    for _ in range(n):
        length = int(torch.randint(5, 120, (1,), generator=gen))
        body = torch.randint(5, VOCAB, (length,), generator=gen).tolist()
        out.append({"input_ids": [CLS, *body, SEP]})
    return out


def test_padding_and_shapes():
    batch = _collator()([{"input_ids": [CLS, 10, 11, SEP]}, {"input_ids": [CLS, 12, SEP]}])
    assert batch["input_ids"].shape == (2, 8)  # padded to a multiple of 8
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]


def test_masking_statistics_and_exclusions():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    collate = _collator(p=0.3)
    samples = _samples(400, gen)
    ids, attn = collate.pad(samples)
    corrupted, labels = collate.mask(ids, attn)
    selected = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor([PAD, CLS, SEP]))
    assert not (selected & special).any(), "special tokens or padding were selected"
    assert not (selected & (attn == 0)).any()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(corrupted[~selected], ids[~selected]), "unselected tokens must be unchanged"
    real = (attn == 1) & ~special
    rate = selected.sum() / real.sum()
    assert abs(rate - 0.3) < 0.01, rate
    n = selected.sum().item()
    masked = (corrupted[selected] == MASK).sum().item() / n
    kept = (corrupted[selected] == ids[selected]).sum().item() / n
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1 - 0.001) < 0.02, (masked, kept)
    randomised = corrupted[selected & (corrupted != MASK) & (corrupted != ids)]
    assert abs(randomised.numel() / n - 0.1) < 0.02
    assert not torch.isin(randomised, torch.tensor([PAD, 1, CLS, SEP, MASK])).any(), "random token was special"


def test_deterministic_mode_repeats_masks_and_ignores_global_rng():
    gen = torch.Generator().manual_seed(2)
    samples = _samples(16, gen)
    collate = _collator(deterministic=True)
    torch.manual_seed(0)
    first = collate(samples)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    second = collate(samples)
    assert torch.equal(torch.get_rng_state(), state), "eval masking must not consume the global RNG"
    assert torch.equal(first["input_ids"], second["input_ids"])
    assert torch.equal(first["labels"], second["labels"])
    assert (first["labels"] != IGNORE_INDEX).any()


def test_random_mode_uses_global_rng():
    samples = _samples(16, torch.Generator().manual_seed(3))
    collate = _collator()
    torch.manual_seed(5)
    a = collate(samples)
    torch.manual_seed(5)
    b = collate(samples)
    c = collate(samples)
    assert torch.equal(a["labels"], b["labels"])
    assert not torch.equal(b["labels"], c["labels"])
