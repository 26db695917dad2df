"""The collator registry: the built-in ``mlm``, what a loader hands its builder, and the YAML block's defaults."""

from __future__ import annotations

import pytest
import torch
from transformers import BertTokenizerFast

from bertforge import registry
from bertforge.config import load_config
from bertforge.config.schema import DatasetConfig, LoaderConfig
from bertforge.data.mlm import MLMCollator, PackingCollator
from bertforge.data.text import build_collator
from bertforge.errors import ConfigError
from tests.conftest import QUICKSTART_YAML


@pytest.fixture(scope="module")
def tokenizer(tiny_wordpiece) -> BertTokenizerFast:
    """The shared tiny WordPiece tokenizer (tests/conftest.py)."""
    return tiny_wordpiece


def test_collator_names():
    assert registry.collators.names() == ["mdlm", "mlm", "nsp", "sft"]


def test_mlm_builder_takes_its_ids_from_the_tokenizer(tokenizer):
    collate = registry.collators.build({"name": "mlm"}, "train_loader.collator", tokenizer, 0.3, True)
    assert isinstance(collate, MLMCollator) and isinstance(collate, PackingCollator)
    assert (collate.pad_token_id, collate.mask_token_id, collate.vocab_size) == (0, 4, 45)
    assert sorted(collate.special_token_ids) == [0, 1, 2, 3, 4]
    assert (collate.mlm_probability, collate.deterministic) == (0.3, True)
    batch = collate([{"input_ids": tokenizer(" ".join(f"w{i}" for i in range(30)))["input_ids"]}])
    selected = batch["labels"] != -100
    assert selected.any() and not torch.isin(batch["labels"][selected], torch.arange(5)).any()


@pytest.mark.parametrize("train", [True, False])
def test_loader_gives_the_collator_its_rate_and_eval_determinism(tokenizer, train):
    loader = LoaderConfig(DatasetConfig(local="unused"), mlm_probability=0.25)
    collate = build_collator(loader, tokenizer, train, "train_loader" if train else "eval_loader")
    assert (collate.mlm_probability, collate.deterministic) == (0.25, not train)


def test_yaml_without_a_collator_block_gets_mlm_and_the_block_is_checked():
    cfg = load_config(QUICKSTART_YAML, ["eval_loader.collator.name=mlm", "eval_loader.collator.pad_to=16"])
    assert cfg.train_loader.collator == {"name": "mlm"}
    assert cfg.eval_loader.collator == {"name": "mlm", "pad_to": 16}
    message = r"^eval_loader\.collator\.pad_to: unknown key; valid keys here: whole_word_mask$"
    with pytest.raises(ConfigError, match=message):
        registry.collators.validate(cfg.eval_loader.collator, "eval_loader.collator")
