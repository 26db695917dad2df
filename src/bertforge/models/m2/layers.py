"""M2-BERT's parts: embeddings, block-diagonal (Monarch) linear and MLP, the sequence mixer, the block.

Layers work on unpadded rows ``(T, H)`` (the real tokens back to back). Only the convolutions
need a sequence axis: they scatter the rows into a zero-padded ``(documents, max_len, C)`` layout
(``docs``, an :class:`~bertforge.ops.padding.Unpadded` whose rows are documents), so a packed row's
documents never see each other and padding is zero before every convolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bertforge.models.common.layers import activation
from bertforge.models.m2.config import M2BertConfig
from bertforge.models.m2.filter import LongConv
from bertforge.ops.padding import Unpadded, pad, positions_in_sequence, sequence_ids, unpad


def document_layout(info: Unpadded) -> Unpadded:
    """Bookkeeping to scatter unpadded rows into ``(documents, max_seqlen)``: one row per sequence of ``info``."""
    total = info.indices.numel()
    docs = len(info.cu_seqlens) - 1
    index = sequence_ids(info.cu_seqlens, total) * info.max_seqlen + positions_in_sequence(info.cu_seqlens, total)
    return Unpadded(index, info.cu_seqlens, info.max_seqlen, docs, info.max_seqlen)


class Embeddings(nn.Module):
    """Token + learned absolute position + token-type embeddings, LayerNorm, dropout (as BERT)."""

    def __init__(self, cfg: M2BertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        types = cfg.type_vocab_size > 0
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if types else None
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                token_type_ids: torch.Tensor | None) -> torch.Tensor:  # (T,) -> (T, H)
        x = self.tok_embeddings(input_ids) + self.position_embeddings(positions)
        if self.token_type_embeddings is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(types)
        return self.drop(self.norm(x))


class BlockDiagLinear(nn.Module):
    """A linear map whose weight is block-diagonal: ``blocks`` independent ``(out/b, in/b)`` matrices.

    Each block starts like ``nn.Linear`` on its own fan-in; ``blocks=1`` is a dense layer.
    """

    def __init__(self, in_features: int, out_features: int, blocks: int, bias: bool = True):
        super().__init__()
        self.blocks, self.in_features, self.out_features = blocks, in_features, out_features
        self.weight = nn.Parameter(torch.empty(blocks, out_features // blocks, in_features // blocks))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in_features // self.blocks)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        rows = x.reshape(-1, self.blocks, self.in_features // self.blocks).transpose(0, 1)  # (b, T, in/b)
        y = torch.bmm(rows, self.weight.transpose(1, 2)).transpose(0, 1)  # (T, b, out/b)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y


class MonarchMLP(nn.Module):
    """GLU (GELU gate) or plain GELU MLP with block-diagonal weights; dropout after the activation."""

    def __init__(self, cfg: M2BertConfig):
        super().__init__()
        self.glu = cfg.mlp_type == "glu"
        width = cfg.intermediate_size
        self.Wi = BlockDiagLinear(cfg.hidden_size, 2 * width if self.glu else width, cfg.mlp_blocks, bias=False)
        self.act = activation("gelu")
        self.drop = nn.Dropout(cfg.hidden_dropout)
        self.Wo = BlockDiagLinear(width, cfg.hidden_size, cfg.mlp_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, H) -> (T, H)
        if self.glu:
            gate, value = self.Wi(x).chunk(2, dim=-1)
            return self.Wo(self.drop(self.act(gate) * value))
        return self.Wo(self.drop(self.act(self.Wi(x))))


class MonarchMixer(nn.Module):
    """The attention replacement: project to 3 streams, short causal conv, gate, long conv, gate, project.

    ``y = Wo(long_conv(v * g1) * g2 [+ residual_conv(x)])`` where ``g1, g2, v`` are the short-conv'd
    projections (with ``mixer_input_norm``, ``x`` is LayerNorm'd first). Padded positions are zeroed before
    every convolution (unlike the original code), so real-token outputs do not depend on how much padding
    follows them.
    """

    def __init__(self, cfg: M2BertConfig):
        super().__init__()
        hidden = cfg.hidden_size
        self.input_norm = nn.LayerNorm(hidden, eps=1e-5) if cfg.mixer_input_norm else None
        self.Win = nn.Linear(hidden, 3 * hidden)
        self.short_conv = nn.Conv1d(3 * hidden, 3 * hidden, cfg.short_conv_kernel, groups=3 * hidden,
                                    padding=cfg.short_conv_kernel - 1)
        self.long_conv = LongConv(cfg, hidden)
        self.residual_conv = LongConv(cfg, hidden) if cfg.residual_long_conv else None
        self.Wo = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, docs: Unpadded, keep: torch.Tensor) -> torch.Tensor:
        """``x`` ``(T, H)`` rows; ``keep`` ``(docs, 1, L)`` is 1 at real tokens. Returns ``(T, H)``."""
        length = docs.seqlen
        x = self.input_norm(x) if self.input_norm is not None else x  # legacy: feeds Win and the residual conv
        streams = pad(self.Win(x), docs).transpose(1, 2)  # (N, 3H, L), zero at padding
        streams = self.short_conv(streams)[..., :length]  # causal: only earlier (real) tokens
        gate_in, gate_out, v = streams.chunk(3, dim=1)  # (N, H, L) each
        y = self.long_conv(v * gate_in * keep) * gate_out
        if self.residual_conv is not None:
            y = y + self.residual_conv(pad(x, docs).transpose(1, 2))
        return self.Wo(unpad(y.transpose(1, 2), docs))


class Block(nn.Module):
    """``x = mixer(x)``, then ``x = mlp_norm(x + mlp(x))``: the published M2-BERT layer (post-norm MLP).

    As published, the mixer has no residual add or norm of its own; its residual long convolution
    carries the input forward.
    """

    def __init__(self, cfg: M2BertConfig):
        super().__init__()
        self.mixer = MonarchMixer(cfg)
        self.mlp = MonarchMLP(cfg)
        self.mlp_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, docs: Unpadded, keep: torch.Tensor) -> torch.Tensor:  # (T, H) -> (T, H)
        x = self.mixer(x, docs, keep)
        return self.mlp_norm(x + self.mlp(x))
