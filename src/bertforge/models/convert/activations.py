"""Activation names between transformers (``ACT2FN``) and FlexBERT, each pair computing the same function."""

from __future__ import annotations

# transformers name -> the FlexBERT activation with the same values (tests compare them on a grid).
# gelu_new, gelu_fast, gelu_accurate and the python tanh variant are all tanh-approximated GELU.
FROM_HF = {
    "gelu": "gelu", "gelu_python": "gelu",
    "gelu_pytorch_tanh": "gelu_tanh", "gelu_python_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh", "gelu_accurate": "gelu_tanh",
    "silu": "silu", "swish": "silu", "relu": "relu", "quick_gelu": "quick_gelu",
}
# FlexBERT name -> the transformers name written on export; covers every value the config allows.
TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "silu": "silu", "relu": "relu", "quick_gelu": "quick_gelu"}


def from_hf(name: str) -> str:
    """The FlexBERT activation computing transformers' ``name``; ValueError when FlexBERT has none."""
    if name not in FROM_HF:
        raise ValueError(f"FlexBERT has no such activation; use one of {sorted(FROM_HF)}")
    return FROM_HF[name]


def to_hf(name: str) -> str:
    """The transformers activation name for FlexBERT's ``name``; ValueError for an unknown one."""
    if name not in TO_HF:
        raise ValueError(f"no transformers activation matches it; use one of {sorted(TO_HF)}")
    return TO_HF[name]
