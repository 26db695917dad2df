"""The MDLM loss and ELBO metric of every family against a float64 re-computation from the dense logits."""

from __future__ import annotations

import pytest
import torch
from composer.models import HuggingFaceModel
from transformers import BertTokenizerFast

from bertforge import registry
from bertforge.data.mlm import IGNORE_INDEX
from bertforge.models.metrics import MDLMNegativeELBO
from tests.models.tiny_blocks import FAMILIES, TINY


@pytest.fixture(scope="module")
def tokenizer(tiny_wordpiece) -> BertTokenizerFast:
    """The shared tiny WordPiece tokenizer (tests/conftest.py)."""
    return tiny_wordpiece


def _model(family: str, tokenizer):
    torch.manual_seed(0)
    name = "hf_bert" if family == "modernbert" else family
    return registry.models.build({"name": name, **TINY[family]}, "model", tokenizer).eval()


def _batch(tokenizer, seed: int, packed: bool = False, **collator) -> dict:
    collate = registry.collators.build({"name": "mdlm", **collator}, "eval_loader.collator", tokenizer, 0.15, True)
    gen = torch.Generator().manual_seed(seed)
    docs = [[2, *torch.randint(5, 45, (n,), generator=gen).tolist(), 3] for n in (20, 5, 13, 30)]
    return collate.collate_packed([docs[0::2], docs[1::2]], 40) if packed else collate([{"input_ids": d} for d in docs])


def _dense_logits(model, batch: dict) -> torch.Tensor:
    """Logits ``(B, L, V)`` of every position, without labels (no sparse prediction)."""
    with torch.no_grad():
        if isinstance(model, HuggingFaceModel):
            return model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return model.model(batch["input_ids"], batch["attention_mask"]).logits


def _naive_terms(logits: torch.Tensor, batch: dict, weighted: bool = True) -> tuple[float, int]:
    """float64: sum over masked tokens of w_seq * -log p(label), and the number of maskable tokens."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    total = 0.0
    for b, pos in (batch["labels"] != IGNORE_INDEX).nonzero().tolist():
        weight = 1.0 / float(batch["mdlm_t"][b]) if weighted else 1.0
        total += weight * -float(logp[b, pos, batch["labels"][b, pos]])
    return total, int(batch["mdlm_maskable"].sum())


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_inverse_t_weighted_cross_entropy_per_maskable_token(family, tokenizer):
    model = _model(family, tokenizer)
    batch = _batch(tokenizer, seed=1)
    total, tokens = _naive_terms(_dense_logits(model, batch), batch)
    assert (batch["labels"] != IGNORE_INDEX).sum() >= 5
    with torch.no_grad():
        loss = model.loss(model(dict(batch)), batch)
    assert loss.item() == pytest.approx(total / tokens, rel=1e-5)  # float32 cross-entropy vs float64


def test_packed_rows_and_uniform_weighting(tokenizer):
    model = _model("flexbert", tokenizer)
    batch = _batch(tokenizer, seed=2, packed=True, weighting="uniform")
    assert batch["attention_mask"].max() == 2
    total, tokens = _naive_terms(_dense_logits(model, batch), batch, weighted=False)
    with torch.no_grad():
        loss = model.loss(model(batch), batch)
    assert loss.item() == pytest.approx(total / tokens, rel=1e-5)


def test_without_mdlm_weight_the_loss_weights_by_inverse_t(tokenizer):
    """Collators that only give ``mdlm_t`` (e.g. ``sft``) get the linear schedule's 1/t."""
    model = _model("flexbert", tokenizer)
    batch = _batch(tokenizer, seed=3)
    plain = {k: v for k, v in batch.items() if k != "mdlm_weight"}
    with torch.no_grad():
        torch.testing.assert_close(model.loss(model(plain), plain), model.loss(model(batch), batch))


@pytest.mark.parametrize("family", ["flexbert", "modernbert"])
def test_eval_metrics_give_the_bound_over_batches_and_masked_token_cross_entropy(family, tokenizer):
    model = _model(family, tokenizer)
    assert "MDLMNegativeELBO" not in model.get_metrics(is_train=False)  # MLM runs keep their metrics
    model.set_objective("mdlm")
    metrics = model.get_metrics(is_train=False)
    assert "MDLMNegativeELBO" not in model.get_metrics(is_train=True)
    sums, masked_ce, masked = [0.0, 0], 0.0, 0
    for seed in (4, 5):
        batch = _batch(tokenizer, seed)
        total, tokens = _naive_terms(_dense_logits(model, batch), batch)
        unweighted, _ = _naive_terms(_dense_logits(model, batch), batch, weighted=False)
        sums = [sums[0] + total, sums[1] + tokens]
        masked_ce, masked = masked_ce + unweighted, masked + int((batch["labels"] != IGNORE_INDEX).sum())
        with torch.no_grad():
            outputs = model.eval_forward(batch)
        for metric in metrics.values():
            model.update_metric(batch, outputs, metric)
    assert isinstance(metrics["MDLMNegativeELBO"], MDLMNegativeELBO)
    assert metrics["MDLMNegativeELBO"].compute().item() == pytest.approx(sums[0] / sums[1], rel=1e-5)
    assert metrics["LanguageCrossEntropy"].compute().item() == pytest.approx(masked_ce / masked, rel=1e-5)


def test_mlm_output_token_losses_average_to_the_loss(tokenizer):
    model = _model("m2_bert", tokenizer)
    batch = _batch(tokenizer, seed=6)
    with torch.no_grad():
        out = model(batch)
    assert out.token_loss.shape == out.labels.shape
    torch.testing.assert_close(out.token_loss.mean(), out.loss)
