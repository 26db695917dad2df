"""The sentence-pair (NSP/SOP) head shared by every family: one class, loss MLM + pair cross-entropy against a
float64 re-computation, metrics, the first-token pick from unpadded rows, gradients and a Composer training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from composer import Trainer
from composer.core import Evaluator
from composer.models import HuggingFaceModel
from transformers import BertTokenizerFast

from bertforge import registry
from bertforge.data.mlm import IGNORE_INDEX
from bertforge.errors import UserError
from bertforge.models.common.nsp import NSPHead
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from bertforge.models.metrics import NSPAccuracy, SOPAccuracy
from tests.models.tiny_blocks import FAMILIES
from tests.models.tiny_blocks import TINY as TINY_BLOCKS

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLS, SEP, MASK = 2, 3, 4
# segment ids 0/1: FlexBERT's token-type table needs 2 rows (the others have them by default)
TINY = {**TINY_BLOCKS, "flexbert": {"model_config": {**TINY_BLOCKS["flexbert"]["model_config"], "type_vocab_size": 2}}}
MLM_METRICS = {"LanguageCrossEntropy", "MaskedAccuracy", "LanguagePerplexity"}


def word_tokenizer(folder: Path) -> BertTokenizerFast:
    """A WordPiece tokenizer of 5 special tokens and 40 words, its vocabulary written to ``folder``."""
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + [f"w{i}" for i in range(40)]) + "\n")
    return BertTokenizerFast(str(vocab))  # positional: vocab_file in transformers 4, vocab in 5


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> BertTokenizerFast:
    return word_tokenizer(tmp_path_factory.mktemp("vocab"))


def nsp_model(family: str, tokenizer, objective: str = "nsp"):
    """A tiny registry model of ``family`` in eval mode, set to ``objective``."""
    torch.manual_seed(0)
    name = "hf_bert" if family == "modernbert" else family
    model = registry.models.build({"name": name, **TINY[family]}, "model", tokenizer)
    model.set_objective(objective)
    return model.eval()


def pair_batch(seed: int, vocab: int = 45, segments=((6, 9), (3, 4), (10, 12), (2, 2), (7, 1))) -> dict:
    """``[CLS] A [SEP] B [SEP]`` rows, right-padded, with segment ids, ~20% masked tokens and pair labels."""
    gen = torch.Generator().manual_seed(seed)
    width = max(a + b + 3 for a, b in segments) + 2
    batch = {key: torch.zeros(len(segments), width, dtype=torch.long)
             for key in ("input_ids", "attention_mask", "token_type_ids")}
    labels = torch.full((len(segments), width), IGNORE_INDEX)
    for row, (a, b) in enumerate(segments):
        words = torch.randint(5, vocab, (a + b,), generator=gen).tolist()
        ids = torch.tensor([CLS, *words[:a], SEP, *words[a:], SEP])
        n = ids.numel()
        batch["input_ids"][row, :n], batch["attention_mask"][row, :n] = ids, 1
        batch["token_type_ids"][row, a + 2:n] = 1
        masked = (torch.rand(n, generator=gen) < 0.2) & (ids > SEP)
        masked[1] = True  # at least one target per row (position 1 is A's first word)
        labels[row, :n][masked] = ids[masked]
        batch["input_ids"][row, :n][masked] = MASK
    batch["labels"] = labels
    batch["next_sentence_label"] = torch.randint(0, 2, (len(segments),), generator=gen)
    return batch


def _reference(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 from the dense path: MLM logits (B, L, V), pair logits (B, 2) and the expected loss."""
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    with torch.no_grad():
        if isinstance(model, HuggingFaceModel):
            names = ("input_ids", "attention_mask", "token_type_ids")
            kwargs = dict(zip(names, inputs, strict=True))
            if model.model.config.model_type == "modernbert":
                kwargs.pop("token_type_ids")
            logits = model.model(**kwargs).logits
            hidden = model.model.base_model(**kwargs)[0]  # (B, L, H) after any final norm
        else:
            logits = model.model(*inputs[:2], token_type_ids=inputs[2]).logits
            hidden = model.model.model(*inputs)
    head = model.nsp_head
    pooled = torch.tanh(hidden[:, 0].double() @ head.pooler.weight.double().T + head.pooler.bias.double())
    pair = pooled @ head.classifier.weight.double().T + head.classifier.bias.double()
    targets = batch["labels"] != IGNORE_INDEX
    mlm = F.cross_entropy(logits[targets].double(), batch["labels"][targets])
    return logits.double(), pair, mlm + F.cross_entropy(pair, batch["next_sentence_label"])


def test_every_family_gets_the_same_head_class_under_the_same_names(tokenizer):
    for family in FAMILIES:
        model = nsp_model(family, tokenizer)
        assert type(model.nsp_head) is NSPHead, family
        names = {k for k in model.state_dict() if k.startswith("nsp_head.")}
        assert names == {f"nsp_head.{p}.{s}" for p in ("pooler", "classifier") for s in ("weight", "bias")}, family
        assert model.nsp_head.classifier.out_features == 2
        model.set_objective("mlm")  # an MLM run has no pair head and exports as before
        assert model.nsp_head is None and not any(k.startswith("nsp_head.") for k in model.state_dict())


def test_head_initialised_like_the_family():
    head = NSPHead(256, init_std=0.02)
    assert head.pooler.weight.std().item() == pytest.approx(0.02, rel=0.05)  # 65k samples: ~0.3% spread
    assert (head.pooler.bias == 0).all() and (head.classifier.bias == 0).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_is_mlm_plus_pair_cross_entropy(family, tokenizer):
    model = nsp_model(family, tokenizer)
    batch = pair_batch(seed=1)
    _, pair, want = _reference(model, batch)
    with torch.no_grad():
        outputs = model(dict(batch))
        loss = model.loss(outputs, batch)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)  # float32 model vs float64 re-computation
    nsp_logits = outputs["nsp_logits"] if isinstance(model, HuggingFaceModel) else outputs.nsp_logits
    torch.testing.assert_close(nsp_logits.double(), pair, rtol=0, atol=1e-5)


def test_batch_without_pair_labels_is_one_clear_line(tokenizer):
    model = nsp_model("flexbert", tokenizer)
    batch = {k: v for k, v in pair_batch(seed=1).items() if k != "next_sentence_label"}
    with pytest.raises(UserError, match="objective 'nsp': the batch has no next_sentence_label"):
        model.loss(model(batch), batch)


@pytest.mark.parametrize("family", ["flexbert", "hf_bert"])
def test_metrics_for_nsp_on_train_and_eval(family, tokenizer):
    model = nsp_model(family, tokenizer)
    for train in (True, False):
        assert set(model.get_metrics(is_train=train)) == MLM_METRICS | {"NSPAccuracy"}
    metrics = model.get_metrics(is_train=False)
    correct = total = 0
    ce, masked = 0.0, 0
    for seed in (2, 3):
        batch = pair_batch(seed)
        logits, pair, _ = _reference(model, batch)
        correct += int((pair.argmax(-1) == batch["next_sentence_label"]).sum())
        total += len(pair)
        targets = batch["labels"] != IGNORE_INDEX
        ce += float(F.cross_entropy(logits[targets], batch["labels"][targets], reduction="sum"))
        masked += int(targets.sum())
        with torch.no_grad():
            outputs = model.eval_forward(dict(batch))
        for metric in metrics.values():
            model.update_metric(batch, outputs, metric)
    assert 0 < correct < total  # a random head gets some right and some wrong, so the check can fail
    assert metrics["NSPAccuracy"].compute().item() == pytest.approx(correct / total)
    assert metrics["LanguageCrossEntropy"].compute().item() == pytest.approx(ce / masked, rel=1e-5)


def test_sop_objective_uses_the_same_head_and_its_own_metric(tokenizer):
    model = nsp_model("m2_bert", tokenizer, objective="sop")
    assert type(model.nsp_head) is NSPHead
    assert isinstance(model.get_metrics(is_train=False)["SOPAccuracy"], SOPAccuracy)
    batch = pair_batch(seed=4)
    batch["sentence_order_label"] = batch.pop("next_sentence_label")
    with torch.no_grad():
        assert torch.isfinite(model.loss(model(batch), batch))


def test_unknown_objective_names_the_known_ones(tokenizer):
    model = nsp_model("flexbert", tokenizer, objective="mlm")
    with pytest.raises(ValueError, match="objective 'nspp': expected one of 'mlm', 'mdlm', 'nsp', 'sop'"):
        model.set_objective("nspp")


def test_flexbert_unpadded_first_token_equals_padded():
    torch.manual_seed(0)
    cfg = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
               type_vocab_size=2)
    unpadded = FlexBertForMaskedLM(FlexBertConfig(**cfg, unpad=True)).eval()
    padded = FlexBertForMaskedLM(FlexBertConfig(**cfg, unpad=False, attention_backend="sdpa")).eval()
    padded.load_state_dict(unpadded.state_dict())
    batch = pair_batch(seed=5)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    ids, mask = torch.cat([ids, ids[:1].roll(3, dims=1)]), torch.cat([mask, mask[:1].roll(3, dims=1)])  # left pad
    types = torch.cat([batch["token_type_ids"], batch["token_type_ids"][:1].roll(3, dims=1)])
    with torch.no_grad():
        got = unpadded(ids, mask, labels=None, token_type_ids=types).cls_hidden
        want = padded(ids, mask, labels=None, token_type_ids=types).cls_hidden
        dense = unpadded.model(ids, mask, types)  # (B, L, H)
    assert got.shape == (ids.shape[0], 32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    first = mask.argmax(dim=1)  # the left-padded row starts at 3
    assert first[-1] == 3
    torch.testing.assert_close(got, dense[torch.arange(len(first)), first], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[-1], got[0], rtol=0, atol=1e-5)  # padding on the left changes nothing


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_the_head_and_the_encoder_through_it(family, tokenizer):
    model = nsp_model(family, tokenizer).train()
    batch = pair_batch(seed=6)
    outputs = model(dict(batch))
    nsp_logits = outputs["nsp_logits"] if isinstance(model, HuggingFaceModel) else outputs.nsp_logits
    embeddings = model.model.get_input_embeddings() if isinstance(model, HuggingFaceModel) else \
        model.model.model.embeddings.tok_embeddings
    pair_loss = F.cross_entropy(nsp_logits, batch["next_sentence_label"])
    (grad,) = torch.autograd.grad(pair_loss, embeddings.weight, retain_graph=True)
    assert grad.abs().sum() > 0  # the pair loss alone trains the encoder
    model.loss(outputs, batch).backward()
    for name, param in model.nsp_head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("family", ["flexbert", "hf_bert"])
def test_composer_trains_nsp_batches(family, tokenizer):
    model = nsp_model(family, tokenizer).train()
    before = model.nsp_head.classifier.weight.detach().clone()
    batches = [pair_batch(seed) for seed in (7, 8)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    evaluator = Evaluator(label="eval", dataloader=loader, device_eval_microbatch_size=5)
    trainer = Trainer(model=model, train_dataloader=loader, max_duration="2ba", device="cpu", seed=0,
                      optimizers=torch.optim.AdamW(model.parameters(), lr=1e-3), device_train_microbatch_size=5,
                      eval_dataloader=evaluator, eval_interval="2ba", progress_bar=False, loggers=[])
    trainer.fit()
    assert not torch.equal(model.nsp_head.classifier.weight.detach(), before)  # the optimizer saw the head
    train_acc = trainer.state.train_metrics["NSPAccuracy"].compute().item()
    eval_acc = trainer.state.eval_metrics["eval"]["NSPAccuracy"].compute().item()
    assert 0.0 <= train_acc <= 1.0 and 0.0 <= eval_acc <= 1.0
    assert isinstance(trainer.state.eval_metrics["eval"]["NSPAccuracy"], NSPAccuracy)
    assert torch.isfinite(trainer.state.eval_metrics["eval"]["LanguageCrossEntropy"].compute())
