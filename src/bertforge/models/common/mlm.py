"""The masked-LM output every family returns, and sparse prediction over the masked tokens only."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.data.mlm import IGNORE_INDEX


class MLMOutput(NamedTuple):
    """``logits`` ``(n_masked, vocab)`` with their ``labels`` when labels were given, else ``(B, L, V)``."""

    logits: torch.Tensor
    labels: torch.Tensor | None
    loss: torch.Tensor | None


def sparse_mlm(hidden: torch.Tensor, flat_labels: torch.Tensor, head: nn.Module, decoder: nn.Module) -> MLMOutput:
    """Run ``head`` and ``decoder`` on the rows of ``hidden`` ``(T, H)`` whose label is not ignored, with the loss."""
    selected = flat_labels != IGNORE_INDEX
    logits = decoder(head(hidden[selected]))  # (n_masked, V)
    targets = flat_labels[selected]
    return MLMOutput(logits, targets, F.cross_entropy(logits.float(), targets))
