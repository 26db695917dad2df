"""Sizing a model's vocabulary from its tokenizer, shared by every family."""

from __future__ import annotations

from bertforge.errors import UserError


def padded_vocab_size(tokenizer, multiple: int) -> int:
    """``len(tokenizer)`` rounded up to ``multiple`` (tensor-core friendly embedding tables)."""
    return -(-len(tokenizer) // multiple) * multiple


def check_vocab(tokenizer, vocab_size: int, key: str) -> None:
    """Fail before training when the tokenizer can emit ids beyond the model's embedding table."""
    if vocab_size < len(tokenizer):
        raise UserError(
            f"model: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {vocab_size}; "
            f"set {key} >= {len(tokenizer)} or use the model's own tokenizer"
        )
