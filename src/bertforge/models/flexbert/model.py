"""FlexBERT encoder and masked-LM model. Parameter names follow transformers' ModernBERT."""

from __future__ import annotations

import math

import torch
from torch import nn

from bertforge.kernels.ops import use_fused_norms
from bertforge.models.common.layers import PredictionTransform, norm, run_blocks
from bertforge.models.common.mlm import MLMOutput, sparse_mlm
from bertforge.models.common.nsp import first_token_rows
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.layers import Block, Embeddings, SeqLayout
from bertforge.ops.attention import AttentionBackend
from bertforge.ops.padding import Unpadded, pad, positions_in_sequence, unpad, unpad_info


class FlexBertModel(nn.Module):
    """The encoder: ``forward(input_ids, attention_mask)`` -> hidden states ``(batch, seqlen, hidden)``.

    ``fused`` (default: ``config.kernels`` resolved here) runs RoPE, the norms and the GLU as Triton kernels.
    """

    def __init__(self, cfg: FlexBertConfig, fused: bool | None = None):
        super().__init__()
        self.config = cfg
        self.fused = cfg.fused_kernels if fused is None else fused
        self.embeddings = Embeddings(cfg)
        backend = AttentionBackend(cfg.attention_backend)  # one choice of backend for all layers
        self.layers = nn.ModuleList(Block(cfg, i, backend, self.fused) for i in range(cfg.num_hidden_layers))
        self.final_norm = norm(cfg.norm_type, cfg.hidden_size, cfg.norm_eps, cfg.norm_bias) if cfg.final_norm \
            else nn.Identity()
        if self.fused:
            use_fused_norms(self)

    def forward_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, Unpadded]:
        """Hidden states of the layers' rows ``(rows, hidden)`` and the unpadding bookkeeping.

        Unpadded (``config.unpad``), the rows are the real tokens; otherwise all ``batch * seqlen``.
        """
        info = unpad_info(attention_mask)
        positions = positions_in_sequence(info.cu_seqlens, info.indices.numel())
        if self.config.unpad:
            rows, real, row_positions = unpad(input_ids, info), None, positions
            types = unpad(token_type_ids, info) if token_type_ids is not None else None
        else:
            rows, real = input_ids.flatten(), info.indices
            row_positions = positions.new_zeros(input_ids.numel()).index_copy_(0, info.indices, positions)
            types = token_type_ids.flatten() if token_type_ids is not None else None
        layout = SeqLayout(info.cu_seqlens, info.max_seqlen, positions, real, {})
        x = self.embeddings(rows, row_positions, types)
        x = run_blocks(self.layers, x, layout, checkpoint_every=self.config.checkpoint_every)
        return self.final_norm(x), info

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden, info = self.forward_tokens(input_ids, attention_mask, token_type_ids)
        if self.config.unpad:
            return pad(hidden, info)
        return hidden.view(info.batch, info.seqlen, -1) * attention_mask[..., None].to(hidden.dtype)


class FlexBertForMaskedLM(nn.Module):
    """Encoder + prediction transform + decoder; with labels, only masked tokens reach the head.

    The output also carries each row's first-token hidden state (``cls_hidden``) for a sentence-pair head. With
    fused kernels, the training loss is the fused decoder + cross-entropy (see ``sparse_mlm``).
    """

    def __init__(self, cfg: FlexBertConfig):
        super().__init__()
        self.config = cfg
        self.model = FlexBertModel(cfg)
        self.fused = self.model.fused
        self.head = PredictionTransform(cfg.hidden_size, dense=cfg.head_dense, act=cfg.head_activation,
                                        use_norm=cfg.head_norm, norm_kind=cfg.norm_type, eps=cfg.norm_eps,
                                        norm_bias=cfg.norm_bias, dense_bias=cfg.head_bias)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=cfg.decoder_bias)
        if self.fused:
            use_fused_norms(self.head)
        init_weights(self, cfg)
        if cfg.tie_word_embeddings:
            self.decoder.weight = self.model.embeddings.tok_embeddings.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> MLMOutput:
        hidden, info = self.model.forward_tokens(input_ids, attention_mask, token_type_ids)
        cls_hidden = hidden[first_token_rows(info, self.config.unpad)]  # (B, H), for a sentence-pair head
        if labels is None:
            logits = self.decoder(self.head(hidden))
            logits = pad(logits, info) if self.config.unpad else logits.view(info.batch, info.seqlen, -1)
            return MLMOutput(logits, None, None, cls_hidden=cls_hidden)
        flat_labels = unpad(labels, info) if self.config.unpad else labels.flatten()
        out = sparse_mlm(hidden, flat_labels, self.head, self.decoder, fused=self.fused)
        return out._replace(cls_hidden=cls_hidden)


def init_weights(module: nn.Module, cfg: FlexBertConfig) -> None:
    """Normal(0, init_std) weights, zero biases, unit norms; output projections depth-scaled if asked."""
    out_std = cfg.init_std / math.sqrt(2 * cfg.num_hidden_layers) if cfg.init_depth_scaled else cfg.init_std
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            std = out_std if name.endswith(("attn.Wo", "mlp.Wo")) else cfg.init_std
            nn.init.normal_(sub.weight, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=cfg.init_std)
        elif isinstance(sub, (nn.LayerNorm, nn.RMSNorm)):
            nn.init.ones_(sub.weight)
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
