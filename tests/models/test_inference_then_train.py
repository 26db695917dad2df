"""A forward under inference mode or no_grad never changes or breaks later training in the same process.

Caches that outlive a call (attention masks, backend choices) must not hand an inference tensor to a
training step. For every family and backend: one eval forward under ``torch.inference_mode()`` (or
``torch.no_grad()``), then a training forward and backward must give the loss and gradients of a model
that never ran inference, both starting from emptied caches (a fresh process's state).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, ModernBertConfig

from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.model import M2BertForMaskedLM
from bertforge.ops import fftconv_cuda
from bertforge.ops.attention import clear_mask_cache, flash_attn_available

VOCAB = 90
FLEX = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
            local_attention_window=6, global_attention_every_n_layers=2)
M2 = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, intermediate_size=48, max_position_embeddings=64,
          filter_order=16)
HF = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
          max_position_embeddings=64, pad_token_id=0)
MODES = {"inference_mode": torch.inference_mode, "no_grad": torch.no_grad}
GPU = pytest.mark.gpu
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _batch(device: str):
    """Two rows of 12 tokens, the second padded after 8 (so both varlen paths and padding run), MLM labels."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    labels = torch.where(torch.rand(ids.shape, generator=gen) < 0.3, ids, torch.full_like(ids, -100))
    labels[0, 0] = ids[0, 0]  # at least one target
    return ids.to(device), mask.to(device), labels.to(device)


def _train_step(build: Callable[[], torch.nn.Module], device: str, warmup: str | None):
    """Loss and gradients of one training step, after an optional eval forward under ``warmup``."""
    clear_mask_cache()
    torch.manual_seed(0)
    model = build().to(device)
    ids, mask, labels = _batch(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    if warmup is not None:
        model.eval()
        with MODES[warmup](), autocast:
            model(input_ids=ids, attention_mask=mask)
        model.train()
    with autocast:
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _check(build: Callable[[], torch.nn.Module], warmup: str, device: str = "cpu") -> None:
    want_loss, want_grads = _train_step(build, device, None)
    got_loss, got_grads = _train_step(build, device, warmup)
    # CPU: the same computation on the same values, so equal to float32 rounding (atol 1e-6). CUDA: bf16
    # autocast and flash-attn's non-deterministic backward, so 1e-2 relative.
    tol = dict(rtol=0, atol=1e-6) if device == "cpu" else dict(rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(got_loss, want_loss, **tol)
    assert got_grads.keys() == want_grads.keys() and len(got_grads) > 0
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, **tol, msg=lambda m, name=name: f"{name}: {m}")


FLEX_OPTIONS = {
    "rope-local-varlen": {"attention_backend": "varlen"},
    "rope-local-sdpa": {"attention_backend": "sdpa"},
    "rope-local-padded": {"unpad": False},
    "alibi-local": {"position_encoding": "alibi"},
    "alibi-global": {"position_encoding": "alibi", "local_attention_window": None},
}


@pytest.mark.parametrize("options", FLEX_OPTIONS.values(), ids=FLEX_OPTIONS)
def test_flexbert(options):
    _check(lambda: FlexBertForMaskedLM(FlexBertConfig(**{**FLEX, **options})), "inference_mode")


def test_flexbert_after_no_grad():
    _check(lambda: FlexBertForMaskedLM(FlexBertConfig(**FLEX)), "no_grad")


@pytest.mark.parametrize("backend", ["torch", "direct"])
def test_m2(backend):
    _check(lambda: M2BertForMaskedLM(M2BertConfig(**M2, fftconv_backend=backend)), "inference_mode")


@pytest.mark.parametrize("hf_config", [
    BertConfig(**HF, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="sdpa"),
    ModernBertConfig(**HF, local_attention=6, global_attn_every_n_layers=2, attn_implementation="sdpa"),
], ids=["bert", "modernbert-local"])
def test_hf_bert(hf_config):
    _check(lambda: AutoModelForMaskedLM.from_config(hf_config), "inference_mode")


@GPU
@NEEDS_CUDA
@pytest.mark.skipif(not flash_attn_available(), reason="needs flash-attn")
@pytest.mark.parametrize("window", [6, None])
def test_flexbert_flash_attn_on_gpu(window):
    config = {**FLEX, "local_attention_window": window, "attention_backend": "flash_attn"}
    _check(lambda: FlexBertForMaskedLM(FlexBertConfig(**config)), "inference_mode", "cuda")


@GPU
@NEEDS_CUDA
@pytest.mark.parametrize("backend", ["auto", pytest.param("cuda", marks=pytest.mark.skipif(
    fftconv_cuda.load_extension(False)[0] is None, reason="the fftconv kernel is not built (make kernel)"))])
def test_m2_on_gpu(backend):
    _check(lambda: M2BertForMaskedLM(M2BertConfig(**M2, fftconv_backend=backend)), "inference_mode", "cuda")
