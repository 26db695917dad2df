"""Converters classify every config field and move every tensor; the issue-12 reproductions round-trip or refuse."""

from __future__ import annotations

import inspect
import re
import typing

import pytest
import torch
import transformers.models.bert.modeling_bert as modeling_bert
import transformers.models.modernbert.modeling_modernbert as modeling_modernbert
from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM
from transformers.activations import ACT2FN

from bertforge.errors import ConfigError, UserError
from bertforge.models.common.layers import activation
from bertforge.models.convert import activations, bert, modernbert
from bertforge.models.convert.rules import FLEXBERT_FIELDS, unclassified
from bertforge.models.flexbert.build import hf_exporter
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from tests.conftest import TRANSFORMERS_5
from tests.models.test_flexbert_parity import _mixed_batch

ATOL = 1e-5  # float32 logits of tiny models, same weights: only summation order differs


def _read_attributes(module) -> set[str]:
    """The ``config.<name>`` attributes a transformers modeling file reads (beyond its to_dict fields)."""
    return set(re.findall(r"config\.([a-z][a-z_]*)", inspect.getsource(module)))


# Read by modeling code but not config fields: derived properties, or the task heads' label count.
_DERIVED = {"use_return_dict", "num_labels"}


@pytest.mark.parametrize("table, config_class, module", [
    (bert.IMPORT, BertConfig, modeling_bert), (modernbert.IMPORT, ModernBertConfig, modeling_modernbert)])
def test_import_tables_classify_every_transformers_field(table, config_class, module):
    assert unclassified(table, config_class().to_dict()) == []
    assert unclassified(table, _read_attributes(module) - _DERIVED) == []


@pytest.mark.parametrize("table", [bert.EXPORT, modernbert.EXPORT])
def test_export_tables_classify_every_flexbert_field(table):
    assert unclassified(table, FLEXBERT_FIELDS) == []


def test_an_unclassified_field_is_refused(monkeypatch):
    table = dict(bert.IMPORT)
    del table["hidden_act"]
    monkeypatch.setattr(bert, "IMPORT", table)
    with pytest.raises(ConfigError, match="hidden_act: unknown to bertforge"):
        bert.flexbert_config_from_bert(BertConfig())


def test_activation_maps_compute_the_same_function():
    x = torch.linspace(-8, 8, 2001, dtype=torch.float64)
    for hf_name, ours in activations.FROM_HF.items():  # import: every mapped transformers name
        torch.testing.assert_close(activation(ours)(x), ACT2FN[hf_name](x), rtol=0, atol=1e-6, msg=hf_name)
    allowed = typing.get_args(typing.get_type_hints(FlexBertConfig)["hidden_activation"])
    assert set(activations.TO_HF) == set(allowed)  # export: every value the config allows, inverse of import
    assert all(activations.FROM_HF[activations.TO_HF[name]] == name for name in allowed)
    assert typing.get_args(typing.get_type_hints(FlexBertConfig)["head_activation"]) == allowed


@pytest.mark.parametrize("name", ["gelu_pytorch_tanh", "gelu_new", "swish", "gelu_fast", "quick_gelu", "mish"])
def test_transformers_activation_names_map_or_refuse_in_one_line(name):
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, hidden_act=name)
    if name in activations.FROM_HF:
        assert bert.flexbert_config_from_bert(cfg).hidden_activation == activations.FROM_HF[name]
    else:
        with pytest.raises(ConfigError, match=r"^BertConfig: hidden_act='mish' cannot .*use one of") as err:
            bert.flexbert_config_from_bert(cfg)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", ["relative_key", "relative_key_query"])
def test_relative_position_bert_is_refused(kind):
    with pytest.raises(ConfigError, match=f"position_embedding_type='{kind}' cannot be converted"):
        bert.flexbert_config_from_bert(BertConfig(position_embedding_type=kind))


def test_relative_distance_tensors_are_never_dropped():
    """Even past the config check, a tensor without a FlexBERT counterpart fails by name."""
    hf = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, position_embedding_type="relative_key"))
    state = hf.state_dict()
    if TRANSFORMERS_5:  # 5 dropped relative position BERT, but 4.x checkpoints with its tensors still load as dicts
        state["bert.encoder.layer.0.attention.self.distance_embedding.weight"] = torch.zeros(2 * 512 - 1, 8)
    else:
        assert "bert.encoder.layer.0.attention.self.distance_embedding.weight" in state
    cfg = bert.flexbert_config_from_bert(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32))
    with pytest.raises(UserError, match="distance_embedding"):
        bert.flexbert_state_from_bert(state, cfg)


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


def _logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask) if hasattr(model, "can_generate") else model(ids, mask)
    return out.logits[mask.bool()]


def test_untied_modernbert_imports_and_exports_untied():
    torch.manual_seed(0)
    hf = _perturbed(ModernBertForMaskedLM(ModernBertConfig(
        vocab_size=90, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        local_attention=8, pad_token_id=0, tie_word_embeddings=False, attn_implementation="sdpa")), 1)
    assert hf.decoder.weight.data_ptr() != hf.model.embeddings.tok_embeddings.weight.data_ptr()
    cfg = modernbert.flexbert_config_from_modernbert(hf.config)
    ours = FlexBertForMaskedLM(cfg)
    ours.load_state_dict(modernbert.flexbert_state_from_modernbert(hf.state_dict(), cfg))
    ids, mask = _mixed_batch(90)
    torch.testing.assert_close(_logits(ours.eval(), ids, mask), _logits(hf, ids, mask), rtol=0, atol=ATOL)
    back = modernbert.to_modernbert(_perturbed(ours, 2))
    assert not back.config.tie_word_embeddings
    torch.testing.assert_close(_logits(back, ids, mask), _logits(ours, ids, mask), rtol=0, atol=ATOL)


def test_bert_form_without_token_types_exports_function_preserving():
    cfg = bert.flexbert_config_from_bert(BertConfig(vocab_size=80, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=4, intermediate_size=48,
                                                    max_position_embeddings=64), type_vocab_size=0)
    ours = _perturbed(FlexBertForMaskedLM(cfg), 3)
    assert hf_exporter(cfg) is bert.to_bert
    hf = bert.to_bert(ours)
    assert (hf.bert.embeddings.token_type_embeddings.weight == 0).all()
    ids, mask = _mixed_batch(80)
    pairs = (torch.arange(ids.shape[1]) > 5).long().expand_as(ids)  # a BERT tokenizer's sentence-pair ids
    with torch.no_grad():
        got = hf(input_ids=ids, attention_mask=mask, token_type_ids=pairs).logits[mask.bool()]
    torch.testing.assert_close(got, _logits(ours, ids, mask), rtol=0, atol=ATOL)


def test_untied_bert_round_trips():
    hf = _perturbed(BertForMaskedLM(BertConfig(vocab_size=80, hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=4, intermediate_size=48,
                                               tie_word_embeddings=False)), 4)
    cfg = bert.flexbert_config_from_bert(hf.config)
    ours = FlexBertForMaskedLM(cfg)
    ours.load_state_dict(bert.flexbert_state_from_bert(hf.state_dict(), cfg))
    ids, mask = _mixed_batch(80)
    torch.testing.assert_close(_logits(ours.eval(), ids, mask), _logits(hf, ids, mask), rtol=0, atol=ATOL)
    back = bert.to_bert(_perturbed(ours, 5))
    torch.testing.assert_close(_logits(back, ids, mask), _logits(ours, ids, mask), rtol=0, atol=ATOL)


@pytest.mark.parametrize("act", ["gelu_tanh", "quick_gelu"])
def test_every_activation_the_precheck_accepts_exports(act):
    """The reported crash: gelu_tanh passed can_export_hf and failed at the end of training."""
    cfg = FlexBertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=24, hidden_activation=act, head_activation=act)
    ours = _perturbed(FlexBertForMaskedLM(cfg), 6)
    assert hf_exporter(cfg) is modernbert.to_modernbert
    hf = modernbert.to_modernbert(ours)
    ids, mask = _mixed_batch(64)
    torch.testing.assert_close(_logits(hf, ids, mask), _logits(ours, ids, mask), rtol=0, atol=ATOL)


def test_refused_export_names_every_field_in_one_line():
    cfg = FlexBertConfig(vocab_size=64, hidden_size=16, num_attention_heads=2, block_type="postnorm",
                         hidden_dropout=0.1)
    with pytest.raises(ConfigError) as err:
        modernbert.modernbert_config_from_flexbert(cfg)
    message = str(err.value)
    assert "\n" not in message and "block_type='postnorm'" in message and "hidden_dropout=0.1" in message
    problems = modernbert.modernbert_incompatibilities(cfg)  # the pre-check is the same function
    assert len(problems) == 2 and all(problem in message for problem in problems)
