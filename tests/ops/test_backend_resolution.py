"""Backends are chosen once per model (per device and dtype), not per forward; flash_attn fails at config time."""

from __future__ import annotations

import copy
import logging
import time

import pytest
import torch

from bertforge.errors import ConfigError
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from bertforge.ops import attention as attention_ops
from bertforge.ops import fftconv
from bertforge.ops.attention import AttentionBackend, resolve_backend
from bertforge.ops.fftconv import FFTConv, torch_fft_conv

TINY = dict(vocab_size=90, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
            local_attention_window=6, global_attention_every_n_layers=2)


def _counting(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a wrapper that records each call's arguments; return the record."""
    calls, real = [], getattr(module, name)

    def wrapper(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_flexbert_resolves_its_attention_backend_once_per_dtype(monkeypatch):
    calls = _counting(monkeypatch, attention_ops, "resolve_backend")
    torch.manual_seed(0)
    model = FlexBertForMaskedLM(FlexBertConfig(**TINY))
    ids, mask = torch.randint(4, 90, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    assert calls == []  # nothing is resolved before the device and dtype are known
    model(ids, mask, labels=ids).loss.backward()
    with torch.inference_mode():
        model.eval()(ids, mask)
    model.train()(ids[:, :7], mask[:, :7])
    assert calls == [("auto", torch.device("cpu"), torch.float32)]  # 3 layers, 3 forwards: one choice
    model.double()(ids, mask)
    assert len(calls) == 2 and calls[1][2] == torch.float64  # a new dtype is resolved once more


def test_copies_share_one_backend_between_layers_and_forget_choices():
    model = FlexBertForMaskedLM(FlexBertConfig(**TINY))
    ids, mask = torch.randint(4, 90, (2, 10)), torch.ones(2, 10, dtype=torch.long)
    model(ids, mask)
    clone = copy.deepcopy(model)
    backends = {id(block.attn.backend) for block in clone.model.layers}
    assert len(backends) == 1 and clone.model.layers[0].attn.backend._chosen == {}
    torch.testing.assert_close(clone(ids, mask).logits, model(ids, mask).logits, rtol=0, atol=0)


def test_fallbacks_log_one_line(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="bertforge")
    assert resolve_backend("auto", torch.device("cpu"), torch.float32) == "varlen"
    assert caplog.records == []  # the CPU default is a choice, not a fallback
    assert resolve_backend("flash_attn", torch.device("cpu"), torch.float32) == "varlen"
    monkeypatch.setattr(attention_ops, "flash_attn_missing", lambda: "the flash-attn package is not installed")
    assert resolve_backend("auto", torch.device("cuda"), torch.bfloat16) == "sdpa"
    monkeypatch.setattr(attention_ops, "flash_attn_missing", lambda: None)
    assert resolve_backend("auto", torch.device("cuda"), torch.float32) == "sdpa"
    assert resolve_backend("auto", torch.device("cuda"), torch.bfloat16) == "flash_attn"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and all(r.name == "bertforge" for r in caplog.records)
    assert "inputs are on cpu" in messages[0] and "not installed; using sdpa" in messages[1]
    assert "torch.float32" in messages[2]


def test_unknown_backend_fails_at_construction():
    with pytest.raises(ValueError, match="unknown attention backend 'cudnn'"):
        AttentionBackend("cudnn")
    with pytest.raises(ValueError, match="unknown fft_conv backend 'cufft'"):
        FFTConv("cufft")


@pytest.mark.parametrize("missing", ["no CUDA GPU is visible", "the flash-attn package is not installed"])
def test_flash_attn_without_it_fails_when_the_config_is_built(monkeypatch, missing):
    monkeypatch.setattr(attention_ops, "flash_attn_missing", lambda: missing)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        FlexBertConfig(attention_backend="flash_attn")
    assert time.perf_counter() - start < 2.0
    message = str(err.value)
    assert message.startswith("attention_backend: ") and missing in message and "\n" not in message
    assert "pip install -e .[gpu]" in message and "auto, sdpa or varlen" in message


def test_flash_attn_config_builds_where_flash_attn_can_run(monkeypatch):
    monkeypatch.setattr(attention_ops, "flash_attn_missing", lambda: None)
    assert FlexBertConfig(attention_backend="flash_attn").attention_backend == "flash_attn"


def test_fftconv_resolves_once_per_device_type(monkeypatch):
    calls = _counting(monkeypatch, fftconv, "resolve")
    conv = FFTConv("auto")
    gen = torch.Generator().manual_seed(0)
    u, k, k_rev = torch.randn(2, 3, 16, generator=gen), torch.randn(3, 16, generator=gen), torch.randn(3, 16)
    for _ in range(3):
        torch.testing.assert_close(conv(u, k, k_rev), torch_fft_conv(u, k, k_rev), rtol=0, atol=0)
    assert calls == [("auto", torch.device("cpu"))]
    clone = copy.deepcopy(conv)
    assert clone.backend == "auto" and clone._chosen == {}
