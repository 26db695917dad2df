"""FlexBERT's parts: embeddings, attention, MLP and the (pre- or post-norm) block."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from bertforge.kernels.ops import fused_glu, fused_rotary_qk, torch_glu, torch_rotary_qk
from bertforge.models.common.layers import activation, norm
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.ops.alibi import alibi_slopes
from bertforge.ops.attention import AttentionBackend
from bertforge.ops.rotary import Rotary


class SeqLayout(NamedTuple):
    """How tokens are laid out for attention.

    ``cu_seqlens``/``max_seqlen``/``positions`` describe the real tokens (positions within their
    sequence, for RoPE). ``real`` is None when the layers run on real tokens only (unpadded); in
    padded execution it holds the indices of the real tokens among all ``batch * seqlen`` rows.
    ``rope`` caches the (cos, sin) tables per RoPE base for the duration of one forward.
    """

    cu_seqlens: torch.Tensor
    max_seqlen: int
    positions: torch.Tensor
    real: torch.Tensor | None
    rope: dict


def _norm(cfg: FlexBertConfig) -> nn.Module:
    return norm(cfg.norm_type, cfg.hidden_size, cfg.norm_eps, cfg.norm_bias)


class Embeddings(nn.Module):
    """Token embeddings, plus learned positions and token types when configured, then norm and dropout."""

    def __init__(self, cfg: FlexBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        learned = cfg.position_encoding == "learned"
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size) if learned else None
        types = cfg.type_vocab_size > 0
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if types else None
        self.norm = _norm(cfg) if cfg.embedding_norm else nn.Identity()
        self.drop = nn.Dropout(cfg.embedding_dropout)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor | None):
        x = self.tok_embeddings(input_ids)  # (T, H)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(positions)
        if self.token_type_embeddings is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(types)
        return self.drop(self.norm(x))


class Attention(nn.Module):
    """Fused-QKV multi-head attention on unpadded tokens; global or sliding-window, RoPE or ALiBi.

    ``backend`` (shared by all layers of a model) resolves ``attention_backend`` once per device and dtype;
    ``fused``: RoPE as a Triton kernel.
    """

    def __init__(self, cfg: FlexBertConfig, layer: int, backend: AttentionBackend | None = None, fused: bool = False):
        super().__init__()
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.Wqkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=cfg.attention_bias)
        self.Wo = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=cfg.attention_bias)
        is_global = cfg.is_global_layer(layer)
        self.window = None if is_global else cfg.local_attention_window // 2
        self.rotary = None
        if cfg.position_encoding == "rope":
            self.rotary = Rotary(cfg.head_dim, cfg.rope_theta_global if is_global else cfg.rope_theta_local)
        slopes = alibi_slopes(cfg.num_attention_heads) if cfg.position_encoding == "alibi" else None
        self.register_buffer("alibi_slopes", slopes, persistent=False)
        self.dropout = cfg.attention_dropout
        self.backend = backend if backend is not None else AttentionBackend(cfg.attention_backend)
        self.rotary_qk = fused_rotary_qk if fused else torch_rotary_qk

    def reset_buffers(self) -> None:
        """Recompute the ALiBi slopes (not saved; see modeling_bertforge's ``_init_weights``)."""
        if self.alibi_slopes is not None:
            self.alibi_slopes.copy_(alibi_slopes(self.heads))

    def project(self, x: torch.Tensor, positions: torch.Tensor, rope: dict,
                rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values ``(T, nh, hd)`` of ``x`` ``(rows, H)`` (only ``rows`` of it when given), RoPE
        applied at token ``positions`` ``(T,)``; ``rope`` caches the (cos, sin) tables per base across layers."""
        qkv = self.Wqkv(x).view(-1, 3, self.heads, self.head_dim)  # (rows, 3, nh, hd)
        if rows is not None:
            qkv = qkv[rows]
        q, k, v = qkv.unbind(1)  # views, (T, nh, hd) each
        if self.rotary is not None:
            if self.rotary.theta not in rope:  # one table per RoPE base, shared by all layers
                rope[self.rotary.theta] = self.rotary.cos_sin(positions, qkv.dtype)
            cos, sin = rope[self.rotary.theta]
            q, k = self.rotary_qk(q, k, cos, sin)
        return q, k, v

    def forward(self, x: torch.Tensor, layout: SeqLayout) -> torch.Tensor:
        # padded execution (layout.real set): attend among the real tokens only
        q, k, v = self.project(x, layout.positions, layout.rope, layout.real)
        out = self.backend(q, k, v, layout.cu_seqlens, layout.max_seqlen, window=self.window,
                           alibi_slopes=self.alibi_slopes, dropout_p=self.dropout if self.training else 0.0)
        if layout.real is not None:
            out = out.new_zeros(x.shape[0], out.shape[1]).index_copy_(0, layout.real, out)
        return self.Wo(out)  # (T, H)


class MLP(nn.Module):
    """Classic MLP (Wi -> act -> Wo) or gated GLU (Wi -> act(input) * gate -> Wo; ``fused``: one Triton kernel)."""

    def __init__(self, cfg: FlexBertConfig, fused: bool = False):
        super().__init__()
        self.glu = cfg.mlp_type == "glu"
        width = cfg.intermediate_size * (2 if self.glu else 1)
        self.Wi = nn.Linear(cfg.hidden_size, width, bias=cfg.mlp_bias)
        self.act = activation(cfg.hidden_activation)
        self.drop = nn.Dropout(cfg.mlp_dropout)
        self.Wo = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.mlp_bias)
        self.gate = fused_glu if fused else torch_glu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.Wi(x)  # (T, I) or (T, 2I)
        if self.glu:
            return self.Wo(self.drop(self.gate(hidden, self.act)))
        return self.Wo(self.drop(self.act(hidden)))


class Block(nn.Module):
    """Attention then MLP, each with a residual; norms before (pre-norm) or after (post-norm) the add."""

    def __init__(self, cfg: FlexBertConfig, layer: int, backend: AttentionBackend | None = None, fused: bool = False):
        super().__init__()
        self.postnorm = cfg.block_type == "postnorm"
        skip_first = not self.postnorm and layer == 0 and not cfg.first_layer_attn_norm
        self.attn_norm = nn.Identity() if skip_first else _norm(cfg)
        self.attn = Attention(cfg, layer, backend, fused)
        self.mlp_norm = _norm(cfg)
        self.mlp = MLP(cfg, fused)
        self.drop = nn.Dropout(cfg.hidden_dropout)

    def forward(self, x: torch.Tensor, layout: SeqLayout) -> torch.Tensor:  # (T, H) -> (T, H)
        return self.residual(x, lambda h: self.attn(h, layout))

    def residual(self, x: torch.Tensor, attend: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The block around ``attend`` (normed rows -> attention output rows): norms, residuals, MLP."""
        if self.postnorm:
            x = self.attn_norm(x + self.drop(attend(x)))
            return self.mlp_norm(x + self.drop(self.mlp(x)))
        x = x + self.drop(attend(self.attn_norm(x)))
        return x + self.drop(self.mlp(self.mlp_norm(x)))
