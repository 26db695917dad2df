"""Starting points: Composer checkpoints and Hugging Face folders load strictly apart from the head."""

from __future__ import annotations

import pytest
import torch

from bertforge import registry
from bertforge.checkpoints import read_model_weights
from bertforge.errors import UserError
from bertforge.glue.checkpoint import load_encoder
from tests.glue.conftest import TINY_BERT


def _mlm(tokenizer, **config):
    block = {**TINY_BERT, "model_config": {**TINY_BERT["model_config"], **config}}
    return registry.models.build(block, "model", tokenizer)


def _classifier(tokenizer, num_labels=2):
    return registry.classifiers.build(TINY_BERT, "model", tokenizer, num_labels)


def _composer_checkpoint(model, path):
    torch.save({"state": {"model": model.state_dict()}, "rng": None}, path)
    return str(path)


def test_composer_checkpoint_loads_encoder_and_keeps_head_new(tmp_path, tokenizer):
    mlm = _mlm(tokenizer)
    path = _composer_checkpoint(mlm, tmp_path / "latest-rank0.pt")
    clf = _classifier(tokenizer)
    report = load_encoder(clf, read_model_weights(path), path)
    mlm_state, clf_state = mlm.state_dict(), clf.state_dict()
    encoder = [k for k in clf_state if k.startswith("model.bert.") and ".pooler." not in k]
    assert sorted(report.loaded) == sorted(encoder)
    assert all(torch.equal(clf_state[k], mlm_state[k]) for k in encoder)
    assert set(report.fresh) == {"model.classifier.weight", "model.classifier.bias",
                                 "model.bert.pooler.dense.weight", "model.bert.pooler.dense.bias"}
    assert all(k.startswith("model.cls.") for k in report.ignored)


def test_hf_folder_loads_with_its_own_key_prefix(tmp_path, tokenizer):
    mlm = _mlm(tokenizer)
    mlm.model.save_pretrained(tmp_path / "hf")
    mlm.model.bert.save_pretrained(tmp_path / "encoder-only")  # keys without the 'bert.' prefix, with a pooler
    for folder in ("hf", "encoder-only"):
        clf = _classifier(tokenizer, num_labels=3)
        report = load_encoder(clf, read_model_weights(str(tmp_path / folder)), folder)
        word = "model.bert.embeddings.word_embeddings.weight"
        assert word in report.loaded and torch.equal(clf.state_dict()[word], mlm.state_dict()[word])


def test_mismatches_are_reported_by_name(tmp_path, tokenizer):
    clf = _classifier(tokenizer)
    wide = _mlm(tokenizer, intermediate_size=96).state_dict()
    with pytest.raises(UserError, match=r"shape of model\.bert\.encoder\.layer\.0\.intermediate\.dense\.weight: "
                                        r"checkpoint \(96, 32\), model \(64, 32\)"):
        load_encoder(clf, wide, "wide.pt")
    state = _mlm(tokenizer).state_dict()
    del state["model.bert.encoder.layer.0.output.dense.bias"]
    state["model.bert.encoder.layer.1.output.dense.bias"] = torch.zeros(32)
    with pytest.raises(UserError, match=r"missing model\.bert\.encoder\.layer\.0\.output\.dense\.bias.*"
                                        r"unexpected model\.bert\.encoder\.layer\.1\.output\.dense\.bias"):
        load_encoder(clf, state, "x.pt")


def test_unreadable_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"bad\.pt: cannot be read as a checkpoint"):
        read_model_weights(str(bad))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"other\.pt: holds no model weights"):
        read_model_weights(str(tmp_path / "other.pt"))
