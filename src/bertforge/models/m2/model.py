"""M2-BERT encoder and masked-LM model (Monarch Mixer: long convolutions + block-diagonal MLPs)."""

from __future__ import annotations

import torch
from torch import nn

from bertforge.data.mlm import IGNORE_INDEX
from bertforge.kernels.ops import use_fused_norms
from bertforge.models.common.layers import PredictionTransform, run_blocks
from bertforge.models.common.mlm import MLMOutput, sparse_mlm
from bertforge.models.common.nsp import first_token_rows
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.layers import Block, Embeddings, document_layout
from bertforge.ops.padding import Unpadded, pad, positions_in_sequence, unpad, unpad_info


class M2BertModel(nn.Module):
    """The encoder: ``forward(input_ids, attention_mask)`` -> hidden states ``(batch, seqlen, hidden)``.

    Padding is removed after the embeddings; each run of equal non-zero ``attention_mask`` values
    (one per row, or one per packed document) is its own sequence for the convolutions.
    """

    def __init__(self, cfg: M2BertConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, Unpadded]:
        """Hidden states of the real tokens ``(total, hidden)`` and the unpadding bookkeeping."""
        info = unpad_info(attention_mask)
        if info.max_seqlen > self.config.max_position_embeddings:
            raise ValueError(f"M2-BERT: a sequence of {info.max_seqlen} tokens exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}; raise it or lower max_seq_len")
        total = info.indices.numel()
        docs = document_layout(info)
        types = unpad(token_type_ids, info) if token_type_ids is not None else None
        x = self.embeddings(unpad(input_ids, info), positions_in_sequence(info.cu_seqlens, total), types)  # (T, H)
        keep = pad(x.new_ones(total, 1), docs).transpose(1, 2)  # (docs, 1, L): 1 at real tokens
        return run_blocks(self.layers, x, docs, keep, checkpoint_every=self.config.checkpoint_every), info

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden, info = self.forward_tokens(input_ids, attention_mask, token_type_ids)
        return pad(hidden, info)


class M2BertForMaskedLM(nn.Module):
    """Encoder + BERT prediction transform + tied decoder; with labels, only the targets reach the head.

    Targets are the tokens with a label > 0 (``mlm_targets: positive``, as the original) or every label
    but -100 (``not_ignored``). The output also carries each row's first-token hidden state (``cls_hidden``).
    """

    def __init__(self, cfg: M2BertConfig):
        super().__init__()
        self.config = cfg
        self.model = M2BertModel(cfg)
        self.head = PredictionTransform(cfg.hidden_size, dense=True, act=cfg.head_activation, use_norm=True,
                                        norm_kind="layernorm", eps=cfg.head_norm_eps, norm_bias=True, dense_bias=True)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size)
        init_weights(self, cfg)
        self.decoder.weight = self.model.embeddings.tok_embeddings.weight
        self.fused = cfg.fused_kernels
        if self.fused:  # the LayerNorms (same parameters) and the training loss as Triton kernels
            use_fused_norms(self)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> MLMOutput:
        hidden, info = self.model.forward_tokens(input_ids, attention_mask, token_type_ids)
        cls_hidden = hidden[first_token_rows(info, unpadded=True)]  # (B, H), for a sentence-pair head
        if labels is None:
            return MLMOutput(pad(self.decoder(self.head(hidden)), info), None, None, cls_hidden=cls_hidden)
        flat_labels = unpad(labels, info)  # (T,)
        if self.config.mlm_targets == "positive":
            flat_labels = flat_labels.masked_fill(flat_labels <= 0, IGNORE_INDEX)
        return sparse_mlm(hidden, flat_labels, self.head, self.decoder, fused=self.fused)._replace(
            cls_hidden=cls_hidden)


def init_weights(module: nn.Module, cfg: M2BertConfig) -> None:
    """BERT's init for dense layers and embeddings (normal(init_std), zero bias) and norms (1, 0).

    Block-diagonal weights, the short convolutions and the skip terms ``D`` keep their own init.
    """
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=cfg.init_std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=cfg.init_std)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
