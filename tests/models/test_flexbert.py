"""FlexBERT behaviour: padding never changes real tokens' outputs, presets' sizes, options build and run."""

from __future__ import annotations

import pytest
import torch

from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM, FlexBertModel

TINY = dict(vocab_size=90, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
            local_attention_window=6, global_attention_every_n_layers=2)


def _batch(pad_to: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lengths = [9, 4, 13]
    ids = torch.randint(4, 90, (3, 13), generator=gen)
    ids = torch.cat([ids, torch.zeros(3, pad_to - 13, dtype=torch.long)], dim=1)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids, mask


@pytest.mark.parametrize("options", [
    {}, {"unpad": False}, {"attention_backend": "sdpa"}, {"position_encoding": "alibi", "block_type": "postnorm"},
    {"position_encoding": "learned", "type_vocab_size": 2, "mlp_type": "mlp", "norm_type": "rmsnorm"},
])
def test_padding_does_not_change_real_token_outputs(options):
    torch.manual_seed(0)
    model = FlexBertModel(FlexBertConfig(**TINY, **options)).eval()
    ids, mask = _batch(13)
    ids_long, mask_long = _batch(40)
    ids_long[:, 13:] = 7  # junk in the padding must not matter either
    with torch.no_grad():
        short = model(ids, mask)
        long = model(ids_long, mask_long)
    torch.testing.assert_close(long[:, :13][mask.bool()], short[mask.bool()], rtol=0, atol=1e-5)


def test_sparse_mlm_loss_matches_dense_logits():
    torch.manual_seed(0)
    model = FlexBertForMaskedLM(FlexBertConfig(**TINY)).eval()
    ids, mask = _batch(16)
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[2, 7] = 11, 12
    with torch.no_grad():
        sparse = model(ids, mask, labels=labels)
        dense = model(ids, mask).logits
    assert sparse.logits.shape == (2, 90) and sparse.labels.tolist() == [11, 12]
    torch.testing.assert_close(sparse.logits, dense[labels != -100], rtol=0, atol=1e-5)
    want = torch.nn.functional.cross_entropy(dense[labels != -100], labels[labels != -100])
    torch.testing.assert_close(sparse.loss, want)


def test_published_parameter_counts():
    base = FlexBertForMaskedLM(FlexBertConfig(vocab_size=50368))
    large = FlexBertForMaskedLM(FlexBertConfig(vocab_size=50368, num_hidden_layers=28, hidden_size=1024,
                                               num_attention_heads=16, intermediate_size=2624))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731  (tied decoder counted once)
    assert abs(count(base) / 149e6 - 1) < 0.01, count(base)
    assert abs(count(large) / 395e6 - 1) < 0.01, count(large)


def test_bad_config_values_name_the_key():
    from bertforge.errors import ConfigError

    with pytest.raises(ConfigError, match="num_attention_heads: hidden_size 30 is not divisible"):
        FlexBertConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ConfigError, match="attention_dropout"):
        FlexBertConfig(attention_dropout=1.5)


@pytest.mark.parametrize("preset, published", [("modernbert-base", 149e6), ("modernbert-large", 395e6),
                                               ("mosaic-bert-base", 137e6)])
def test_presets_print_published_sizes(preset, published):
    from transformers import AutoTokenizer

    from bertforge import registry
    from bertforge.config import load_config
    from bertforge.models.params import describe_parameters
    from tests.conftest import REPO, SHARED_DATA

    cfg = load_config(REPO / "yamls" / "pretrain" / f"{preset}.yaml")
    name = "modernbert" if "modernbert" in preset else "bert-base-uncased"
    tokenizer = AutoTokenizer.from_pretrained(SHARED_DATA / "tokenizers" / name)
    model = registry.models.build(cfg.model, "model", tokenizer)
    total = float(describe_parameters(model).split("M")[0]) * 1e6
    assert abs(total / published - 1) < 0.01, (preset, total)
