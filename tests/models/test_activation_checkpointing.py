"""Activation checkpointing (``model_config.activation_checkpointing``) in every family: the loss and every
gradient equal the run without it (fp32, dropout on, same seed), blocks really are recomputed in the backward
pass, and families or values that cannot checkpoint are refused in one line before any model is built."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from bertforge import registry
from bertforge.errors import ConfigError
from tests.conftest import TRANSFORMERS_5
from tests.models.test_nsp_head import word_tokenizer

ATOL = 1e-6  # fp32, same weights, same dropout masks: recomputation repeats the same operations
DROPOUT = {
    "flexbert": dict(hidden_dropout=0.1, attention_dropout=0.1, embedding_dropout=0.1, mlp_dropout=0.1),
    "m2_bert": dict(hidden_dropout=0.1),
    "hf_bert": dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1),
    "modernbert": dict(attention_dropout=0.1, mlp_dropout=0.1, embedding_dropout=0.1),
}
if not TRANSFORMERS_5:  # 4.x compiles ModernBERT where Triton is (reference_compile None); 5 has no such key
    DROPOUT["modernbert"]["reference_compile"] = False
TINY = {  # three blocks, so that checkpointing every 2nd block leaves the middle one alone
    "flexbert": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                     local_attention_window=6, global_attention_every_n_layers=2),
    "m2_bert": dict(hidden_size=32, num_hidden_layers=3, intermediate_size=48, max_position_embeddings=64,
                    filter_order=16),
    "hf_bert": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                    max_position_embeddings=64),
    "modernbert": dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                       local_attention=8, global_attn_every_n_layers=2, max_position_embeddings=64),
}
CASES = {  # case -> (family, extra model_config)
    "flexbert_unpadded": ("flexbert", {}),
    "flexbert_padded": ("flexbert", {"unpad": False}),
    "m2_bert": ("m2_bert", {}),
    "hf_bert": ("hf_bert", {}),
    "modernbert": ("modernbert", {}),
}
BLOCKS = ("Block", "BertLayer", "ModernBertEncoderLayer")  # one encoder block per family


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return word_tokenizer(tmp_path_factory.mktemp("vocab"))


def build(case: str, tokenizer, **model_config):
    """The registry model of ``case`` with dropout on, initialised from seed 0 (twins share their weights)."""
    family, extra = CASES[case]
    block = {"name": "hf_bert" if family == "modernbert" else family,
             "model_config": {**TINY[family], **DROPOUT[family], **extra, **model_config}}
    if family == "modernbert":
        block["model_type"] = "modernbert"
    torch.manual_seed(0)
    return registry.models.build(block, "model", tokenizer)


def mlm_batch() -> dict[str, torch.Tensor]:
    """Three right-padded rows (lengths 11, 5, 16) of word ids, every third real token a target."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 45, (3, 16), generator=gen)
    mask = (torch.arange(16)[None] < torch.tensor([11, 5, 16])[:, None]).long()
    ids = ids * mask
    labels = torch.where((torch.arange(16)[None] % 3 == 1) & mask.bool(), ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loss_and_grads(model, seed: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One training forward and backward from ``seed`` (the dropout masks): the loss and every gradient."""
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    batch = mlm_batch()
    loss = model.loss(model(batch), batch)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters() if p.requires_grad}


def count_block_calls(model) -> list[int]:
    """A live list: how often each encoder block has been called (forward pre-hooks, which recomputation fires)."""
    blocks = [m for m in model.modules() if type(m).__name__ in BLOCKS]
    calls = [0] * len(blocks)
    for i, block in enumerate(blocks):
        block.register_forward_pre_hook(lambda module, args, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


@pytest.mark.parametrize("case", list(CASES))
def test_same_loss_and_gradients_and_every_block_recomputed(case, tokenizer):
    plain, checkpointed = build(case, tokenizer), build(case, tokenizer, activation_checkpointing=True)
    calls = count_block_calls(checkpointed)
    want_loss, want = loss_and_grads(plain)
    got_loss, got = loss_and_grads(checkpointed)
    assert calls == [2, 2, 2]  # forward, then recomputed in backward
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=ATOL)
    assert got.keys() == want.keys() and all(g is not None for g in got.values())
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=0, atol=ATOL, msg=name)
    other_seed, _ = loss_and_grads(plain, seed=2)
    assert not torch.equal(other_seed, want_loss)  # dropout is live: the masks (and their replay) matter


@pytest.mark.parametrize("case", ["flexbert_unpadded", "m2_bert"])
def test_every_nth_block_and_never_in_eval(case, tokenizer):
    model = build(case, tokenizer, activation_checkpointing=True, activation_checkpointing_every=2)
    calls = count_block_calls(model)
    loss_and_grads(model)
    assert calls == [2, 1, 2]  # blocks 0 and 2 recomputed, block 1 kept its activations
    model.eval()
    batch = mlm_batch()
    model.loss(model(batch), batch).backward()  # eval with grad: no recomputation either
    assert calls == [3, 2, 3]


def test_hf_key_stays_out_of_the_transformers_config(tokenizer):
    model = build("hf_bert", tokenizer, activation_checkpointing=True)
    assert model.model.is_gradient_checkpointing
    assert "activation_checkpointing" not in model.model.config.to_dict()
    assert not build("hf_bert", tokenizer).model.is_gradient_checkpointing


@dataclass
class _PlainConfig:
    hidden_size: int = 8


@pytest.mark.parametrize("block, message", [
    ({"name": "hf_bert", "model_type": "albert", "model_config": {"activation_checkpointing": True}},
     r"^model\.model_config: .*AlbertForMaskedLM has no gradient checkpointing in transformers; remove the key$"),
    ({"name": "flexbert", "model_config": {"activation_checkpointing": True, "activation_checkpointing_every": 0}},
     r"^model\.model_config\.activation_checkpointing_every: 0 must be >= 1$"),
    ({"name": "m2_bert", "model_config": {"activation_checkpointing": "yes"}},
     r"^model\.model_config\.activation_checkpointing: expected true or false, got 'yes'$"),
    ({"name": "plain", "model_config": {"activation_checkpointing": True}},
     r"^model\.model_config\.activation_checkpointing: unknown key; valid keys here: hidden_size$"),
])
def test_a_family_or_value_that_cannot_checkpoint_is_one_line_before_building(block, message, clean_registries):
    def build_plain(tokenizer, model_config: dict | None = None):
        raise AssertionError("validation must refuse before building")

    registry.models.register("plain", config_class=_PlainConfig)(build_plain)  # a user model without support
    with pytest.raises(ConfigError, match=message) as err:
        registry.models.validate(block, "model")
    assert "\n" not in str(err.value)
