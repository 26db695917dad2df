"""Run by test_interpreter.py in a process with TRITON_INTERPRET=1 set before triton is imported.

Each fused kernel against the plain torch op it replaces, on CPU in Triton's interpreter.

Tolerance: float32, ``rtol = atol = 1e-5`` on outputs and on every gradient. Sizes are odd on purpose (hidden 48
and 72, 37 rows, vocab 101, head dim 24) and rows are the unpadded ``(T, H)`` layout the models use.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bertforge.errors import ConfigError
from bertforge.kernels import fused_available, resolve_kernels
from bertforge.kernels.ops import (
    FusedLayerNorm,
    FusedRMSNorm,
    fused_glu,
    fused_rotary_qk,
    fused_token_cross_entropy,
    torch_glu,
    torch_rotary_qk,
    torch_token_cross_entropy,
    use_fused_norms,
)
from bertforge.ops.rotary import Rotary

TOL = dict(rtol=1e-5, atol=1e-5)
ROWS = 37


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], seed: int = 1) -> list[torch.Tensor]:
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))  # a loss with every path weighted
    return list(torch.autograd.grad((out * weight).sum(), inputs))


def _close_with_grads(ref: torch.Tensor, got: torch.Tensor, inputs: list[torch.Tensor]) -> None:
    torch.testing.assert_close(got, ref, **TOL)
    for want, have in zip(_grads(ref, inputs), _grads(got, inputs), strict=True):
        torch.testing.assert_close(have, want, **TOL)


def test_selection(monkeypatch):
    assert resolve_kernels("torch") == "torch"
    assert fused_available()[0] and resolve_kernels("auto") == resolve_kernels("fused") == "fused"
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, reason = fused_available()
    assert not ok and "no CUDA device" in reason
    assert resolve_kernels("auto") == "torch"
    with pytest.raises(ConfigError, match="kernels: fused kernels cannot run here: no CUDA device") as err:
        resolve_kernels("fused")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="'triton' is not one of auto, torch, fused"):
        resolve_kernels("triton")


@pytest.mark.parametrize("kind, hidden, bias", [("layernorm", 48, False), ("layernorm", 72, True),
                                                ("rmsnorm", 48, False), ("rmsnorm", 72, False)])
def test_norms(kind, hidden, bias):
    torch.manual_seed(0)
    ref = nn.LayerNorm(hidden, eps=1e-5, bias=bias) if kind == "layernorm" else nn.RMSNorm(hidden, eps=1e-5)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    x = torch.randn(ROWS, hidden, requires_grad=True)
    want = ref(x)
    assert use_fused_norms(ref) == 1  # the same module, now fused
    assert type(ref) is (FusedLayerNorm if kind == "layernorm" else FusedRMSNorm)
    _close_with_grads(want, ref(x), [x, *ref.parameters()])
    assert "Liger" in type(ref(x).grad_fn).__name__  # the kernel ran, not the fallback


@pytest.mark.parametrize("act", [nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU()], ids=["gelu", "tanh", "silu"])
@pytest.mark.parametrize("width", [72, 1100])  # 1100: more than one 1024-column block per row
def test_glu(act, width):
    torch.manual_seed(0)
    hidden = (2 * torch.randn(ROWS if width < 1000 else 3, 2 * width)).requires_grad_()
    got = fused_glu(hidden, act)
    assert type(got.grad_fn).__name__ == "GLUFunctionBackward"
    _close_with_grads(torch_glu(hidden, act), got, [hidden])


@pytest.mark.parametrize("heads, head_dim", [(3, 16), (3, 24)])
def test_rotary(heads, head_dim):
    torch.manual_seed(0)
    qkv = torch.randn(ROWS, 3, heads, head_dim, requires_grad=True)  # Wqkv's output: q and k are strided views
    q, k, _ = qkv.unbind(1)
    positions = torch.cat([torch.arange(20), torch.arange(17)])  # two unpadded sequences
    cos, sin = Rotary(head_dim, 10000.0).cos_sin(positions, torch.float32)
    want, got = torch_rotary_qk(q, k, cos, sin), fused_rotary_qk(q, k, cos, sin)
    _close_with_grads(torch.cat(want, 1), torch.cat(got, 1), [qkv])


@pytest.mark.parametrize("bias", [True, False])
def test_fused_linear_cross_entropy(bias):
    torch.manual_seed(0)
    x = torch.randn(ROWS, 48, requires_grad=True)
    decoder = nn.Linear(48, 101, bias=bias)
    targets = torch.randint(0, 101, (ROWS,))
    params = [x, *decoder.parameters()]
    got = fused_token_cross_entropy(x, decoder.weight, decoder.bias, targets)
    assert got.dtype == torch.float32 and got.shape == (ROWS,)
    _close_with_grads(torch_token_cross_entropy(x, decoder.weight, decoder.bias, targets), got, params)


def test_fallback_outside_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")  # CPU tensors without the interpreter: the torch ops, same values
    hidden = torch.randn(5, 8, requires_grad=True)
    assert fused_glu(hidden, nn.GELU()).grad_fn.name() == torch_glu(hidden, nn.GELU()).grad_fn.name()
