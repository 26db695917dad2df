"""MDLM masking: the per-sequence rate, which tokens may be masked, the ELBO weights, and the ``mdlm`` collator."""

from __future__ import annotations

import pytest
import torch
from transformers import BertTokenizerFast

from bertforge import registry
from bertforge.data.mdlm import MDLMCollator, masking_rate, mdlm_mask, sequence_weight
from bertforge.data.mlm import IGNORE_INDEX, PackingCollator
from bertforge.errors import ConfigError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MASK = 4


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    """A WordPiece tokenizer of 5 special tokens and 40 words."""
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + [f"w{i}" for i in range(40)]) + "\n")
    return BertTokenizerFast(str(vocab))  # positional: vocab_file in transformers 4, vocab in 5


def _ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(5, 45, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_rate_and_masks_follow_the_seeded_draws_exactly():
    ids = _ids(3, 10)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[2, 6:] = False  # e.g. [CLS] and padding
    out = mdlm_mask(ids, maskable, MASK, torch.Generator().manual_seed(7), eps=1e-3)
    ref = torch.Generator().manual_seed(7)  # the documented draw order: one rate per row, then one per token
    t = 1e-3 + (1 - 1e-3) * torch.rand(3, generator=ref)
    masked = maskable & (torch.rand(3, 10, generator=ref) < t[:, None])
    assert out.t.dtype == torch.float32 and torch.equal(out.t, t.float())
    assert masked.any() and torch.equal(out.labels != IGNORE_INDEX, masked)
    assert torch.equal(out.labels[masked], ids[masked]) and (out.input_ids[masked] == MASK).all()
    assert torch.equal(out.input_ids[~masked], ids[~masked]) and out.maskable is maskable


def test_masked_fraction_matches_each_rows_rate():
    ids = _ids(16, 20000)
    maskable = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.9
    out = mdlm_mask(ids, maskable, MASK, torch.Generator().manual_seed(2))
    n = maskable.sum(1).double()
    frac = (out.labels != IGNORE_INDEX).sum(1) / n
    sigma = torch.sqrt(out.t.double() * (1 - out.t.double()) / n)
    assert (out.labels[~maskable] == IGNORE_INDEX).all()
    assert ((frac - out.t).abs() <= 5 * sigma + 1e-9).all(), (frac, out.t)  # binomial, 5 sigma


def test_rates_stay_in_eps_to_one_and_cosine_masks_less():
    u = torch.linspace(0, 1, 101)
    for schedule in ("linear", "cosine"):
        t = masking_rate(u, 0.01, schedule)
        assert t[0] == pytest.approx(0.01) and t[-1] == pytest.approx(1.0) and (t.diff() >= 0).all()
    assert (masking_rate(u[1:-1], 0.01, "cosine") < masking_rate(u[1:-1], 0.01, "linear")).all()


def test_inverse_t_weights_are_the_elbo_weights():
    """linear: exactly 1/t. cosine: E[w(t) * t] over its rates equals E_linear[1/t * t] = 1 (importance weight)."""
    t = masking_rate(torch.rand(5, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(sequence_weight(t), 1 / t)
    assert torch.equal(sequence_weight(t, weighting="uniform"), torch.ones(5))
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000  # midpoint rule over U(0, 1)
    t = masking_rate(u, 1e-3, "cosine")
    assert (sequence_weight(t, 1e-3, "cosine") * t).mean().item() == pytest.approx(1.0, abs=1e-6)


def test_collator_masks_words_only_and_says_how_to_weight(tokenizer):
    collate = registry.collators.build({"name": "mdlm"}, "train_loader.collator", tokenizer, 0.15, False)
    assert isinstance(collate, MDLMCollator) and isinstance(collate, PackingCollator)
    torch.manual_seed(0)
    samples = [{"input_ids": tokenizer(" ".join(f"w{i}" for i in range(n)))["input_ids"]} for n in (30, 7)]
    batch = collate(samples)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "mdlm_t", "mdlm_maskable", "mdlm_weight"}
    real = batch["attention_mask"].bool()
    assert torch.equal(batch["mdlm_maskable"], real & (batch["input_ids"] > 4) | (batch["labels"] != IGNORE_INDEX))
    assert not batch["mdlm_maskable"][:, 0].any() and batch["mdlm_maskable"].sum() == 37  # [CLS], [SEP], padding
    assert torch.equal(batch["mdlm_weight"], 1 / batch["mdlm_t"])


def test_eval_masks_depend_only_on_the_batch_and_packing_works(tokenizer):
    collate = registry.collators.build({"name": "mdlm", "weighting": "uniform", "schedule": "cosine"},
                                       "eval_loader.collator", tokenizer, 0.15, True)
    rows = [[[2, 5, 6, 7, 3], [2, 8, 9, 3]], [[2, 10, 11, 12, 13, 3]]]
    first = collate.collate_packed(rows, 12)
    torch.rand(3)  # the global RNG must not matter
    second = collate.collate_packed(rows, 12)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert first["attention_mask"].tolist()[0] == [1] * 5 + [2] * 4 + [0] * 3
    assert first["mdlm_maskable"].sum() == 9 and torch.equal(first["mdlm_weight"], torch.ones(2))


def test_bad_collator_options_name_the_key(tokenizer):
    with pytest.raises(ConfigError, match=r"^train_loader\.collator\.schedule: 'cosin' is not allowed"):
        registry.collators.validate({"name": "mdlm", "schedule": "cosin"}, "train_loader.collator")
    with pytest.raises(ConfigError, match=r"^collator\.eps: 0.0 must be strictly between 0 and 1"):
        registry.collators.build({"name": "mdlm", "eps": 0}, "train_loader.collator", tokenizer, 0.15, False)
