"""M2-BERT settings that follow the original code (HazyResearch/m2, bert/src): each against a float64 re-derivation.

References are written from the original's formulas (``hyena_utils.PositionalEmbedding``,
``ExponentialModulation``, ``Sin``; ``BertPredictionHeadTransform``; ``BertForMaskedLM.forward``'s
``labels > 0``; ``BertForSequenceClassification``'s dropout), not from our modules.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bertforge.errors import ConfigError
from bertforge.models.m2.build import build_m2_bert_classifier
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.filter import LongConv
from bertforge.models.m2.model import M2BertForMaskedLM, M2BertModel

TINY = dict(vocab_size=90, hidden_size=16, num_hidden_layers=1, intermediate_size=32, max_position_embeddings=32,
            filter_order=8)


@pytest.fixture
def float64():
    """Build and run in float64 (the reference's precision); restores the default dtype afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def reference_filters(conv: LongConv, l_max: int, w_mod: float, length: int) -> torch.Tensor:
    """The original HyenaFilter.filter(length) with ``conv``'s weights: ``(C, length)``, float64."""
    emb_dim = conv.fwd.layers[0].in_features
    t = torch.linspace(0, 1, l_max, dtype=torch.float64)[:, None]  # PositionalEmbedding: t_f = 1 at l_max - 1
    bands = (emb_dim - 1) // 2
    w = 2 * math.pi * torch.arange(l_max, dtype=torch.float64)[:, None] / l_max
    f = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64)[None]
    z = torch.exp(-1j * f * w)  # complex exponential bands
    z = torch.cat([t, z.real, z.imag], dim=-1)[:length]
    h = z
    for layer in conv.fwd.layers:  # Linear then Sin(w_mod * freq * x), the activation shared by every layer
        h = torch.sin(w_mod * conv.sine.freq * (h @ layer.weight.T + layer.bias))
    h = h @ conv.fwd.out.weight.T
    channels = h.shape[-1]
    target, fast, slow = 1e-2, 0.3, 1.5  # ExponentialModulation defaults
    deltas = torch.linspace(math.log(target) / slow, math.log(target) / fast, channels, dtype=torch.float64)
    return (h * torch.exp(-t[:length] * deltas.abs())).T


@pytest.mark.parametrize("options", [{}, {"filter_length": 48}, {"filter_length": 20},
                                     {"filter_sine_freq_mod": 2.5}, {"filter_length": 40, "filter_sine_freq_mod": 0.5}])
def test_filters_follow_filter_length_and_sine_mod_as_the_original(float64, options):
    """Filters are laid out on ``filter_length`` positions (long_conv_l_max) and use sin(mod * freq * x) (hyena_w_mod).

    Tolerance 1e-12 in float64 (complex exp vs cos/sin differ in the last bits).
    """
    torch.manual_seed(0)
    cfg = M2BertConfig(**TINY, **options)
    conv = M2BertModel(cfg).layers[0].mixer.long_conv
    l_max = options.get("filter_length", cfg.max_position_embeddings)
    w_mod = options.get("filter_sine_freq_mod", 1.0)
    assert conv.z.shape[0] == l_max
    length = min(l_max, 17)
    with torch.no_grad():
        k, _ = conv.filters(length)
        torch.testing.assert_close(k, reference_filters(conv, l_max, w_mod, length), rtol=0, atol=1e-12)
        if options:  # the setting changes the function: the published values give other filters
            published = reference_filters(conv, cfg.max_position_embeddings, 1.0, length)
            assert (k - published).abs().max() > 1e-3
        with pytest.raises(ValueError, match=f"exceeds the filter length {l_max}; raise model_config.filter_length"):
            conv.filters(l_max + 1)


def test_sequences_are_limited_by_the_shorter_of_positions_and_filter_length():
    torch.manual_seed(0)
    model = M2BertModel(M2BertConfig(**TINY, filter_length=12)).eval()
    ok = model(torch.randint(4, 90, (1, 12)), torch.ones(1, 12, dtype=torch.long))
    assert ok.shape == (1, 12, 16)
    with pytest.raises(ValueError, match="exceeds the filter length 12"):
        model(torch.randint(4, 90, (1, 13)), torch.ones(1, 13, dtype=torch.long))
    with pytest.raises(ConfigError, match="filter_length: 0 must be >= 1"):
        M2BertConfig(filter_length=0)
    with pytest.raises(ConfigError, match="filter_sine_freq_mod: 0.0 must be > 0"):
        M2BertConfig(filter_sine_freq_mod=0.0)


def _reference_head(head, x: torch.Tensor, act: str, eps: float) -> torch.Tensor:
    """BertPredictionHeadTransform: dense, ACT2FN[hidden_act], LayerNorm(eps) (weights from ``head``)."""
    y = x @ head.dense.weight.T + head.dense.bias
    y = {"gelu": lambda v: 0.5 * v * (1 + torch.erf(v / math.sqrt(2))),
         "gelu_tanh": lambda v: 0.5 * v * (1 + torch.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
         "relu": lambda v: v.clamp(min=0)}[act](y)
    mean, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
    return (y - mean) / torch.sqrt(var + eps) * head.norm.weight + head.norm.bias


@pytest.mark.parametrize("act, eps", [("gelu", 1e-12), ("gelu_tanh", 0.5), ("relu", 1e-3)])
def test_mlm_head_activation_and_eps_are_their_own_keys(float64, act, eps):
    """The head's eps does not follow ``norm_eps`` (the original fixes 1e-12); tolerance 1e-12 in float64."""
    torch.manual_seed(0)
    model = M2BertForMaskedLM(M2BertConfig(**TINY, norm_eps=1e-5, head_activation=act, head_norm_eps=eps))
    assert model.model.embeddings.norm.eps == 1e-5 and model.head.norm.eps == eps
    x = torch.randn(7, 16) * 0.05  # small activations: the eps matters
    with torch.no_grad():
        out = model.head(x)
        torch.testing.assert_close(out, _reference_head(model.head, x, act, eps), rtol=0, atol=1e-12)
        if (act, eps) != ("gelu", 1e-12):
            assert (out - _reference_head(model.head, x, "gelu", 1e-12)).abs().max() > 1e-3


def test_mlm_targets_positive_drops_label_zero_as_the_original():
    """``positive`` predicts labels > 0 only (``labels > 0`` in BertForMaskedLM); the loss changes only when
    a label is 0 (bertforge's collator never selects special tokens, so BERT's [PAD] = 0 never is one).
    Float32: the targets' logits equal the dense logits' rows to 1e-5, the loss their cross-entropy to 1e-6."""
    torch.manual_seed(0)
    ids = torch.randint(4, 90, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 1], labels[0, 4], labels[1, 2], labels[1, 5] = 0, 33, 12, 0
    losses = {}
    for rule in ("positive", "not_ignored"):
        torch.manual_seed(0)
        model = M2BertForMaskedLM(M2BertConfig(**TINY, mlm_targets=rule)).eval()
        with torch.no_grad():
            dense = model(ids, mask).logits  # (B, L, V)
            out = model(ids, mask, labels=labels)
        chosen = labels > 0 if rule == "positive" else labels != -100
        assert out.labels.tolist() == labels[chosen].tolist()
        torch.testing.assert_close(out.logits, dense[chosen], rtol=0, atol=1e-5)
        torch.testing.assert_close(out.loss, F.cross_entropy(dense[chosen], labels[chosen]), rtol=0, atol=1e-6)
        losses[rule] = out.loss.item()
        labels_no_zero = labels.masked_fill(labels == 0, -100)
        with torch.no_grad():
            losses[rule + " without zeros"] = model(ids, mask, labels=labels_no_zero).loss.item()
    assert abs(losses["positive"] - losses["not_ignored"]) > 1e-3  # label 0 present: the rules differ
    assert losses["positive without zeros"] == losses["not_ignored without zeros"]  # same rows, same arithmetic


class _Tokenizer:
    def __len__(self) -> int:
        return 90


@pytest.mark.parametrize("model_config, classifier_dropout, expected", [
    ({}, None, 0.1), ({"hidden_dropout": 0.3}, None, 0.3), ({"hidden_dropout": 0.3}, 0.0, 0.0)])
def test_classifier_dropout_defaults_to_hidden_dropout(model_config, classifier_dropout, expected):
    """BertForSequenceClassification: ``classifier_dropout`` if set, else ``hidden_dropout_prob``."""
    built = build_m2_bert_classifier(_Tokenizer(), 3, {**TINY, **model_config}, classifier_dropout=classifier_dropout)
    drops = [m.p for m in built.model.head.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [expected]
    with pytest.raises(ConfigError, match=r"model.classifier_dropout: 1.0 must be in \[0, 1\)"):
        build_m2_bert_classifier(_Tokenizer(), 3, dict(TINY), classifier_dropout=1.0)
