"""Run by test_interpreter.py in a process with TRITON_INTERPRET=1 set before triton is imported.

A whole tiny FlexBERT (and M2-BERT) train step (forward + backward) with ``kernels: torch`` and ``kernels: fused``
gives the same loss, per-token losses, metric logits and gradients (float32, ``rtol = atol = 1e-5``), in Triton's
CPU interpreter; evaluation (no grad) likewise."""

from __future__ import annotations

import pytest
import torch

from bertforge.errors import ConfigError
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM

TOL = dict(rtol=1e-5, atol=1e-5)
TINY = dict(vocab_size=101, hidden_size=48, num_hidden_layers=1, num_attention_heads=3, intermediate_size=40,
            decoder_bias=True)
FUSED_NODES = {"LigerRopeFunctionBackward", "GLUFunctionBackward", "LigerFusedLinearCrossEntropyFunctionBackward"}


def _batch():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 101, (2, 7), generator=gen)
    mask = (torch.arange(7) < torch.tensor([[7], [4]])).long()  # a padded row: the layers see T = 11 tokens
    labels = torch.where((torch.rand(2, 7, generator=gen) < 0.5) & mask.bool(), ids, -100)
    return ids, mask, labels


def _pair(options: dict) -> tuple[FlexBertForMaskedLM, FlexBertForMaskedLM]:
    torch.manual_seed(0)
    plain = FlexBertForMaskedLM(FlexBertConfig(**TINY, **options, kernels="torch"))
    fused = FlexBertForMaskedLM(FlexBertConfig(**TINY, **options, kernels="fused"))
    fused.load_state_dict(plain.state_dict())
    assert not plain.fused and fused.fused
    return plain, fused


def _graph_nodes(out: torch.Tensor) -> set[str]:
    seen, todo = set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(n for n, _ in node.next_functions)
    return {type(n).__name__ for n in seen}


@pytest.mark.parametrize("options", [{}, {"norm_type": "rmsnorm", "hidden_activation": "silu", "unpad": False}],
                         ids=["modernbert", "rmsnorm-swiglu-padded"])
def test_train_step_matches(options):
    plain, fused = _pair(options)
    ids, mask, labels = _batch()
    want, got = plain(ids, mask, labels=labels), fused(ids, mask, labels=labels)
    assert FUSED_NODES <= _graph_nodes(got.loss)  # the kernels ran, not their fallbacks
    norm = "LigerRMSNormFunctionBackward" if options else "LigerLayerNormFunctionBackward"
    assert norm in _graph_nodes(got.loss)
    for name in ("loss", "token_loss", "logits", "labels"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), **TOL)
    assert got.logits.grad_fn is None  # the metrics' logits carry no graph
    want.loss.backward()
    got.loss.backward()
    grads = dict(fused.named_parameters())
    for name, param in plain.named_parameters():
        torch.testing.assert_close(grads[name].grad, param.grad, **TOL, msg=name)


def test_eval_matches():
    plain, fused = _pair({})
    ids, mask, labels = _batch()
    with torch.no_grad():  # eval: the fused encoder, the plain decoder and loss
        torch.testing.assert_close(fused(ids, mask, labels=labels).loss, plain(ids, mask, labels=labels).loss, **TOL)


def test_forced_fused_without_a_device_is_one_config_line(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="^kernels: fused kernels cannot run here"):
        FlexBertConfig(**TINY, kernels="fused")
    assert not FlexBertForMaskedLM(FlexBertConfig(**TINY)).fused  # auto: the torch path


def test_m2_train_step_matches():
    """M2-BERT takes the fused LayerNorms and MLM loss: same loss and gradients as the torch path."""
    from bertforge.models.m2.config import M2BertConfig
    from bertforge.models.m2.model import M2BertForMaskedLM

    tiny = dict(vocab_size=101, hidden_size=32, num_hidden_layers=1, intermediate_size=64,
                max_position_embeddings=16, filter_order=8, mlp_blocks=2, mlm_targets="not_ignored", hidden_dropout=0.0)
    torch.manual_seed(0)
    plain = M2BertForMaskedLM(M2BertConfig(**tiny, kernels="torch"))
    fused = M2BertForMaskedLM(M2BertConfig(**tiny, kernels="fused"))
    fused.load_state_dict(plain.state_dict())
    ids, mask, labels = _batch()
    want, got = plain(ids, mask, labels=labels), fused(ids, mask, labels=labels)
    nodes = _graph_nodes(got.loss)
    assert {"LigerLayerNormFunctionBackward", "LigerFusedLinearCrossEntropyFunctionBackward"} <= nodes
    torch.testing.assert_close(got.loss, want.loss, **TOL)
    want.loss.backward()
    got.loss.backward()
    grads = dict(fused.named_parameters())
    for name, param in plain.named_parameters():
        torch.testing.assert_close(grads[name].grad, param.grad, **TOL, msg=name)
