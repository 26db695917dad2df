"""Import and load edges: a Hugging Face folder we are handed is reproduced (float32 logits within ATOL) or refused
in one line naming what cannot be kept; never a different model in silence. Tiny random models in tmp folders."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
    RobertaForMaskedLM,
    XLMRobertaConfig,
)

from bertforge.config import load_config
from bertforge.errors import ConfigError, UserError
from bertforge.generation.loading import load_masked_lm, model_max_length
from bertforge.models.flexbert.build import build_flexbert_mlm
from bertforge.models.hf_bert import build_hf_mlm
from bertforge.phases import check_handovers, plan_phases
from bertforge.registry import models
from tests.conftest import QUICKSTART_YAML, SHARED_DATA
from tests.models.test_convert_fields import _perturbed

ATOL = 1e-5  # float32 logits of tiny models, same weights: only summation order differs
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=64)


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / "bert-base-uncased")


def _save(model, folder, tok=None):
    model.save_pretrained(folder)
    if tok is not None:
        tok.save_pretrained(folder)
    return str(folder)


def _batch(vocab: int):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 3:] = 0, 0
    return ids, mask, torch.randint(0, 1, ids.shape, generator=gen)


def _hf_logits(model, ids, mask, **kw):
    with torch.no_grad():
        return model.eval()(input_ids=ids, attention_mask=mask, **kw).logits[mask.bool()]


def test_a_bert_folder_with_non_default_fields_imports_exactly(tok, tmp_path):
    """Through the registry (folder -> AutoModelForMaskedLM -> FlexBERT), not only the converter functions."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_act="gelu_new", type_vocab_size=1, pad_token_id=3,
                     layer_norm_eps=1e-2, tie_word_embeddings=False, chunk_size_feed_forward=4,
                     classifier_dropout=0.3, **SMALL)
    source = _perturbed(BertForMaskedLM(cfg), 1)
    ours = build_flexbert_mlm(tok, pretrained_model_name=_save(source, tmp_path)).model.eval()
    ids, mask, types = _batch(len(tok))
    with torch.no_grad():
        got = ours(ids, mask, token_type_ids=types).logits[mask.bool()]
    torch.testing.assert_close(got, _hf_logits(source, ids, mask, token_type_ids=types), rtol=0, atol=ATOL)


@pytest.mark.parametrize("config", [
    RobertaConfig(**SMALL), XLMRobertaConfig(**SMALL), ElectraConfig(**SMALL), DebertaV2Config(**SMALL),
    DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=48)], ids=lambda c: c.model_type)
def test_other_architectures_are_refused_by_name(config, tok, tmp_path):
    config.save_pretrained(tmp_path)  # the refusal comes from the config, before any weight
    with pytest.raises(ConfigError, match=f"is {config.model_type}; FlexBERT converts modernbert and bert") as err:
        build_flexbert_mlm(tok, pretrained_model_name=str(tmp_path))
    assert "\n" not in str(err.value)


def test_flexbert_overrides_that_reshape_a_weight_fail_in_one_line(tok, tmp_path, caplog):
    """Before: a multi-line RuntimeError from load_state_dict; now the tensor and both shapes, after a warning
    line naming the override."""
    folder = _save(BertForMaskedLM(BertConfig(vocab_size=len(tok), **SMALL)), tmp_path)
    with caplog.at_level(logging.WARNING), pytest.raises(UserError) as err:
        build_flexbert_mlm(tok, model_config={"max_position_embeddings": 128}, pretrained_model_name=folder)
    assert "position_embeddings.weight (128, 32) here, (64, 32) given" in str(err.value)
    assert "\n" not in str(err.value) and "max_position_embeddings 64 -> 128" in caplog.text


def test_flexbert_overrides_that_change_the_function_are_logged(tok, tmp_path, caplog):
    folder = _save(BertForMaskedLM(BertConfig(vocab_size=len(tok), **SMALL)), tmp_path)
    with caplog.at_level(logging.WARNING):
        module = build_flexbert_mlm(tok, model_config={"norm_eps": 1e-2, "unpad": False},
                                    pretrained_model_name=folder).model
    assert module.config.norm_eps == 1e-2  # applied as asked, and said: the execution-only key is not listed
    assert "on top of the converted BertConfig: norm_eps 1e-12 -> 0.01" in caplog.text and "unpad" not in caplog.text


@pytest.mark.parametrize("override, named", [
    ({"tie_word_embeddings": False}, "cls.predictions.decoder.weight (30522, 32) tied to"),
    ({"num_hidden_layers": 3}, "bert.encoder.layer.2."),
    ({"max_position_embeddings": 128, "hidden_dropout_prob": 0.0}, "(64, 32) -> (128, 32)"),
])
def test_hf_bert_pretrained_overrides_that_change_the_weights_are_refused(override, named, tok, tmp_path):
    """Before: tie false and more layers silently started those weights at random, more positions crashed."""
    folder = _save(BertForMaskedLM(BertConfig(vocab_size=len(tok), **SMALL)), tmp_path)
    with pytest.raises(ConfigError) as err:
        build_hf_mlm(tok, pretrained_model_name=folder, pretrained=True, model_config=override)
    message = str(err.value)
    first = next(iter(override))
    assert message.startswith(f"model.model_config: {first}=") and named in message and "\n" not in message
    assert "hidden_dropout_prob" not in message  # only the key that changes the weights is blamed


def test_hf_bert_pretrained_overrides_that_keep_the_weights_load_exactly(tok, tmp_path, caplog):
    torch.manual_seed(0)
    source = _perturbed(RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), pad_token_id=1, **SMALL)), 2)
    folder = _save(source, tmp_path)
    with caplog.at_level(logging.WARNING):
        model = build_hf_mlm(tok, pretrained_model_name=folder, pretrained=True,
                             model_config={"attention_probs_dropout_prob": 0.0}).model
    ids, mask, _ = _batch(len(tok))
    torch.testing.assert_close(_hf_logits(model, ids, mask), _hf_logits(source, ids, mask), rtol=0, atol=ATOL)
    assert "attention_probs_dropout_prob 0.1 -> 0.0" in caplog.text


def test_sampling_refuses_a_folder_without_masked_lm_weights(tok, tmp_path):
    """Before: a BertModel folder loaded with a random MLM head and sampled noise."""
    folder = _save(BertModel(BertConfig(vocab_size=len(tok), **SMALL)), tmp_path, tok)
    with pytest.raises(UserError, match=r"holds BertModel, without the masked-LM weights cls\.predictions") as err:
        load_masked_lm(folder)
    assert "BertForMaskedLM" in str(err.value) and "\n" not in str(err.value)


def test_roberta_max_length_leaves_out_the_padding_offset(tok, tmp_path):
    """RoBERTa numbers positions from pad_token_id + 1: 66 rows take 64 tokens (before: 66, an IndexError)."""
    source = RobertaForMaskedLM(RobertaConfig(vocab_size=len(tok), pad_token_id=1, **{**SMALL,
                                                                                       "max_position_embeddings": 66}))
    model, _ = load_masked_lm(_save(source, tmp_path, tok))
    limit = model_max_length(model.config)
    assert limit == 64 and model_max_length(BertConfig(**SMALL)) == 64
    ids = torch.full((1, limit), 1000)
    assert model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (1, 64, len(tok))


def _phases(second_model: dict):
    cfg = load_config(QUICKSTART_YAML, ["max_duration=100ba"])
    cfg.phases = [{"name": "short", "share": 0.5},
                  {"name": "long", "share": 0.5, "model": {"model_config": second_model}}]
    return plan_phases(cfg, "ckpt")


def test_a_phase_that_changes_the_weights_is_refused_before_training(tok):
    """Before: the strict load at the switch failed with a multi-line RuntimeError after the first phase trained."""
    def build(cfg):
        return models.build(cfg.model, "model", tok)

    check_handovers(_phases({"hidden_dropout_prob": 0.0, "max_position_embeddings": 128}), build)  # same weights
    with pytest.raises(ConfigError) as err:
        check_handovers(_phases({"max_position_embeddings": 512}), build)
    message = str(err.value)
    assert message.startswith("phases[1].model.model_config: max_position_embeddings=512 changes the weights phase "
                              "'long' takes over from 'short' (model.bert.embeddings.position_embeddings.weight "
                              "(128, 128) -> (512, 128))") and "\n" not in message


def test_flexbert_import_of_a_classifier_folder_says_its_head_is_not_kept(tok, tmp_path, caplog):
    """The encoder converts exactly; the task classifier transformers leaves out is named in a warning."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    source = BertForSequenceClassification(BertConfig(vocab_size=len(tok), num_labels=3, **SMALL))
    with caplog.at_level(logging.WARNING):
        ours = build_flexbert_mlm(tok, pretrained_model_name=_save(source, tmp_path)).model.eval()
    assert "holds a task classifier; it is not carried over" in caplog.text
    ids, mask, types = _batch(len(tok))
    with torch.no_grad():
        want = source.eval().bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = ours.model(ids, mask, types)  # FlexBERT's encoder: (batch, length, hidden) hidden states
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=0, atol=ATOL)


def test_flexbert_import_refuses_tensors_the_masked_lm_would_drop(tok, tmp_path):
    """Before: transformers dropped them with a warning and the import went on."""
    from safetensors.torch import save_file

    folder = _save(BertForMaskedLM(BertConfig(vocab_size=len(tok), **SMALL)), tmp_path)
    state = {k: v.clone() for k, v in BertForMaskedLM.from_pretrained(folder).state_dict().items()}
    del state["cls.predictions.decoder.weight"], state["cls.predictions.decoder.bias"]  # tied: not saved
    save_file({**state, "bert.encoder.layer.0.adapter.weight": torch.zeros(4, 32)}, f"{folder}/model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(UserError, match=r"has tensors its masked LM does not use \(bert\.encoder\.layer\.0\.adapter"):
        build_flexbert_mlm(tok, pretrained_model_name=folder)


def test_flexbert_override_errors_name_the_source_not_flexbert_defaults(tok, tmp_path):
    """Before: hidden_size 64 over a 2-head source was checked against FlexBERT's default 12 heads."""
    folder = _save(BertForMaskedLM(BertConfig(vocab_size=len(tok), **SMALL)), tmp_path)
    with pytest.raises(UserError) as err:
        build_flexbert_mlm(tok, model_config={"hidden_size": 64}, pretrained_model_name=folder)
    message = str(err.value).replace(str(folder), "<folder>")  # the tmp path may hold any digits (pytest-12/)
    assert "12" not in message and "(64," in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"model\.model_config\.hiden_size: unknown key \(did you mean"):
        build_flexbert_mlm(tok, model_config={"hiden_size": 64}, pretrained_model_name=folder)


def test_max_seq_len_beyond_the_learned_positions_is_refused_at_build(tok):
    """Before: a multi-line RuntimeError inside the first training batch (of the phase that raised it)."""
    from bertforge.train import build_model

    cfg = load_config(QUICKSTART_YAML, ["max_seq_len=256"])
    with pytest.raises(ConfigError, match=r"^max_seq_len: 256 exceeds the model's 128 learned positions "
                                          r"\(model\.bert\.embeddings\.position_embeddings\)"):
        build_model(cfg, tok, "mlm")
    assert build_model(load_config(QUICKSTART_YAML, ["max_seq_len=128"]), tok, "mlm") is not None
    phases = _phases({})
    phases[1].cfg.max_seq_len = 256
    with pytest.raises(ConfigError, match=r"^phases\[1\]\.max_seq_len: 256 exceeds the model's 128 learned"):
        check_handovers(phases, lambda cfg: build_model(cfg, tok, "mlm"))
