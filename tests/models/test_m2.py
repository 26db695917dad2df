"""M2-BERT: padding and packing never change real tokens' outputs, published sizes, parts behave as documented."""

from __future__ import annotations

import pytest
import torch

from bertforge.errors import ConfigError
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.layers import BlockDiagLinear
from bertforge.models.m2.model import M2BertForMaskedLM, M2BertModel

TINY = dict(vocab_size=90, hidden_size=32, num_hidden_layers=2, intermediate_size=48, max_position_embeddings=64,
            filter_order=16)
LENGTHS = [9, 4, 13]


def _batch(pad_to: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 90, (3, pad_to), generator=gen)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(LENGTHS):
        mask[row, :n] = 1
        ids[row, n:] = 7  # junk in the padding must not matter
    return ids, mask


@pytest.mark.parametrize("options", [{}, {"bidirectional": False, "residual_long_conv": False},
                                     {"mlp_type": "mlp", "mlp_blocks": 1, "type_vocab_size": 0}])
def test_padding_does_not_change_real_token_outputs(options):
    torch.manual_seed(0)
    model = M2BertModel(M2BertConfig(**TINY, **options)).eval()
    ids, mask = _batch(40)
    with torch.no_grad():
        batched = model(ids, mask)
        for row, n in enumerate(LENGTHS):
            alone = model(ids[row : row + 1, :n], mask[row : row + 1, :n])[0]  # no padding at all
            torch.testing.assert_close(batched[row, :n], alone, rtol=0, atol=1e-5)
    assert batched[~mask.bool()].abs().max() == 0
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 64"):
        model(torch.ones(1, 65, dtype=torch.long), torch.ones(1, 65, dtype=torch.long))


def test_packed_documents_equal_separate_rows():
    torch.manual_seed(0)
    model = M2BertModel(M2BertConfig(**TINY)).eval()
    ids, mask = _batch(13)
    packed = torch.cat([ids[0, :9], ids[1, :4], torch.tensor([0, 0])])[None]
    segments = torch.tensor([[1] * 9 + [2] * 4 + [0, 0]])
    with torch.no_grad():
        out = model(packed, segments)[0]
        rows = model(ids, mask)
    torch.testing.assert_close(out[:9], rows[0, :9], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[9:13], rows[1, :4], rtol=0, atol=1e-5)


def test_sparse_mlm_loss_matches_dense_logits_and_trains():
    torch.manual_seed(0)
    model = M2BertForMaskedLM(M2BertConfig(**TINY)).eval()
    ids, mask = _batch(16)
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[2, 7] = 11, 12
    with torch.no_grad():
        dense = model(ids, mask).logits
    sparse = model(ids, mask, labels=labels)
    assert sparse.logits.shape == (2, 90) and sparse.labels.tolist() == [11, 12]
    torch.testing.assert_close(sparse.logits, dense[labels != -100], rtol=0, atol=1e-5)
    sparse.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in ("mixer.long_conv.fwd.out.weight", "mixer.long_conv.rev.out.weight", "mixer.residual_conv.D",
                 "mlp.Wi.weight", "mixer.long_conv.z"):
        grad = grads[f"model.layers.0.{name}"]
        assert grad is not None and grad.abs().sum() > 0, name


def test_filters_do_not_depend_on_the_batch_length():
    torch.manual_seed(0)
    conv = M2BertModel(M2BertConfig(**TINY)).layers[0].mixer.long_conv
    k_long, rev_long = conv.filters(40)
    k_short, rev_short = conv.filters(11)
    torch.testing.assert_close(k_long[:, :11], k_short, rtol=0, atol=1e-6)
    torch.testing.assert_close(rev_long[:, :11], rev_short, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="exceeds the filter length 64"):  # filter_length null: max positions
        conv.filters(65)


def test_filter_parameters_carry_their_optimizer_tags():
    model = M2BertForMaskedLM(M2BertConfig(**TINY))
    tags = {n: getattr(p, "_optim", None) for n, p in model.named_parameters()}
    assert tags["model.layers.1.mixer.long_conv.fwd.layers.0.weight"] == {"weight_decay": 0.1, "lr": 1e-3}
    assert tags["model.layers.1.mixer.residual_conv.rev.out.weight"] == {"weight_decay": 0.1, "lr": 1e-3}
    assert tags["model.layers.1.mixer.long_conv.sine.freq"] == {"weight_decay": 0.1, "lr": 1e-3}
    assert tags["model.layers.1.mixer.long_conv.z"] == {"lr": 1e-5, "weight_decay": 0.0}
    assert tags["model.layers.1.mixer.long_conv.D"] is None and tags["model.layers.1.mlp.Wi.weight"] is None
    frozen = M2BertForMaskedLM(M2BertConfig(**TINY, pos_features_lr=0.0))
    assert "model.layers.0.mixer.long_conv.z" in dict(frozen.named_buffers())


def test_block_diagonal_linear_is_a_block_diagonal_matrix():
    torch.manual_seed(0)
    layer = BlockDiagLinear(12, 8, blocks=4)
    dense = torch.block_diag(*layer.weight)  # (8, 12)
    x = torch.randn(5, 3, 12)
    torch.testing.assert_close(layer(x), x @ dense.T + layer.bias)


def test_bad_config_values_name_the_key():
    with pytest.raises(ConfigError, match="mlp_blocks: hidden_size 30 is not divisible by mlp_blocks 4"):
        M2BertConfig(hidden_size=30)
    with pytest.raises(ConfigError, match="filter_emb_dim: 4 must be odd"):
        M2BertConfig(filter_emb_dim=4)
    with pytest.raises(ConfigError, match="hidden_dropout"):
        M2BertConfig(hidden_dropout=1.0)
    with pytest.raises(ConfigError, match="filter_lr"):
        M2BertConfig(filter_lr=-1.0)


class _StandInTokenizer:
    """Only the length matters for sizing: BERT's 30522 tokens."""

    def __len__(self) -> int:
        return 30522


@pytest.mark.parametrize("preset, published", [("80m", 80e6), ("110m", 115.6e6), ("260m", 260e6), ("341m", 341e6)])
def test_presets_print_published_sizes(preset, published):
    """The published 960-dim config builds 115.6M parameters although it is named "110M" (see docs/m2.md)."""
    from bertforge import registry
    from bertforge.config import load_config
    from bertforge.models.params import describe_parameters
    from tests.conftest import REPO

    cfg = load_config(REPO / "yamls" / "pretrain" / f"m2-bert-{preset}.yaml")
    with torch.device("meta"):  # sizes only: no memory, no init time
        model = registry.models.build(cfg.model, "model", _StandInTokenizer())
    total = float(describe_parameters(model).split("M")[0]) * 1e6
    assert abs(total / published - 1) < 0.01, (preset, total)
