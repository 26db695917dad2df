"""The sentence-pair head every family shares: BERT's next sentence prediction (NSP) or ALBERT's sentence-order
prediction (SOP), a pooler (dense + tanh on the first token's final hidden state) and a 2-way classifier.

A family exposes the first token's hidden state as ``MLMOutput.cls_hidden`` (:func:`first_token_rows` picks it
from padded or unpadded rows); the Composer wrappers own the head, so its state-dict names are the same in every
family (``nsp_head.pooler.*``, ``nsp_head.classifier.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertforge.errors import UserError
from bertforge.ops.padding import Unpadded

PAIR_OBJECTIVES = ("nsp", "sop")
# Batch keys of the pair label, as transformers names them: 0 = B follows A (in order), 1 = random (swapped).
PAIR_LABEL_KEYS = ("next_sentence_label", "sentence_order_label")


class NSPHead(nn.Module):
    """Pooler (``Linear(H, H)`` + tanh) and classifier (``Linear(H, 2)``), normal(``init_std``) weights, zero bias.

    The names map one to one onto transformers' ``BertForPreTraining``: ``pooler`` is ``bert.pooler.dense``,
    ``classifier`` is ``cls.seq_relationship``.
    """

    def __init__(self, hidden_size: int, init_std: float):
        super().__init__()
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.classifier = nn.Linear(hidden_size, 2)
        for layer in (self.pooler, self.classifier):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, cls_hidden: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, 2)
        return self.classifier(torch.tanh(self.pooler(cls_hidden)))


def first_token_rows(info: Unpadded, unpadded: bool) -> torch.Tensor:
    """``(batch,)`` row index, among the encoder's rows, of each batch row's first real token.

    ``unpadded``: the rows are the real tokens back to back (``info.indices`` order), else all ``batch * seqlen``
    positions. Packed rows still give one first token per batch row (a pair head needs one pair per row).
    """
    starts = torch.arange(info.batch, device=info.indices.device) * info.seqlen  # (B,) flat start of each row
    first = torch.searchsorted(info.indices, starts).clamp(max=max(info.indices.numel() - 1, 0))  # (B,)
    return first if unpadded else info.indices[first]


def first_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, H)`` hidden state of each row's first real token, from dense ``hidden`` ``(B, L, H)``."""
    first = (attention_mask != 0).int().argmax(dim=1)  # (B,) 0 with right padding
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def pair_labels(batch: dict, objective: str) -> torch.Tensor:
    """The batch's ``(B,)`` pair labels; one line naming the keys and the collator when they are missing."""
    for key in PAIR_LABEL_KEYS:
        if key in batch:
            return batch[key]
    raise UserError(f"objective '{objective}': the batch has no {' or '.join(PAIR_LABEL_KEYS)}; use the nsp "
                    f"collator (pairs written by convert_dataset --objective nsp)")


def nsp_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the pair ``logits`` ``(B, 2)`` against ``labels`` ``(B,)``, mean over pairs, float32."""
    return F.cross_entropy(logits.float(), labels.to(logits.device).long())

