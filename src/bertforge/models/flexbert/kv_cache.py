"""Block decoding with cached keys and values, Fast-dLLM's PrefixCache and DualCache (Wu et al. 2025), for FlexBERT
masked LMs.

Semi-autoregressive decoding changes only the current block's tokens between two passes. At the first pass of a
block, :meth:`BlockKVCache.refresh` runs the whole canvas and keeps every layer's keys and values; the block's later
passes (:meth:`BlockKVCache.block_logits`) run only some tokens: their queries attend to their own fresh keys and
values and to the cached ones of every other position. ``dual`` runs the block's tokens alone (the prompt and
finished blocks before it and the masked suffix after it come from the cache); ``prefix`` runs the block and the
suffix (only what precedes the block comes from the cache). A pass then costs those tokens instead of the whole
sequence.

The cached entries are exact for the canvas they were computed on; after the block's tokens change, the prompt's
and suffix's deeper-layer keys and values would change too in a full forward (attention is bidirectional). That is
Fast-dLLM's approximation: ``benchmarks/sampler_speed.py --cache none,prefix,dual`` measures its agreement with
full recomputation next to the speed. Right after a refresh, block logits equal the full forward's (tested).

Any FlexBERT masked LM works (ours, or an exported folder's ``BertforgeForMaskedLM``); transformers' ModernBERT
and BERT masked LMs are converted to FlexBERT in memory with the same converters as ``pretrained_model_name``
(the same function; a config FlexBERT cannot express is refused there, and decoding falls back to full passes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bertforge.errors import UserError
from bertforge.models.convert.rules import load_exact
from bertforge.models.flexbert.build import HF_IMPORTERS
from bertforge.models.flexbert.layers import Attention
from bertforge.models.flexbert.model import FlexBertForMaskedLM, FlexBertModel


class BlockKVCache:
    """Per-layer keys and values of the canvas at the last refresh, for one FlexBERT masked LM (``mlm``: any
    module with ``model`` (a :class:`FlexBertModel`), ``head`` and ``decoder``, as ``FlexBertForMaskedLM``).
    ``recomputes_suffix``: the sampler passes the block and the canvas after it to :meth:`block_logits` (prefix
    cache), else the block alone (dual cache).

    Rows are right-padded, real tokens from column 0 (the sampler's layout), so a token's column is its position.
    """

    def __init__(self, mlm: torch.nn.Module, vocab_size: int | None = None, recomputes_suffix: bool = False):
        self.recomputes_suffix = recomputes_suffix
        self.encoder: FlexBertModel = mlm.model
        self.vocab_size = vocab_size  # logits cut to the tokenizer's (padded vocabulary rows never win)
        self.head, self.decoder = mlm.head, mlm.decoder
        self.keys: list[torch.Tensor] = []  # per layer (B, nh, W, hd)
        self.values: list[torch.Tensor] = []
        self.key_valid = torch.zeros(0, 0, dtype=torch.bool)  # (B, W)
        self.rows = torch.zeros(0, dtype=torch.long)  # (B,) the caller's ids of the cached rows, ascending

    @torch.no_grad()
    def refresh(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, W, V)`` of the whole canvas ``input_ids`` ``(B, W)``; keeps its keys and values. ``rows``
        ``(B,)`` (ascending) names the rows for later :meth:`block_logits` calls (default 0..B-1)."""
        batch, width = input_ids.shape
        positions = torch.arange(width, device=input_ids.device).expand(batch, width)  # (B, W)
        self.key_valid = attention_mask.bool()
        self.rows = torch.arange(batch, device=input_ids.device) if rows is None else rows
        self.keys, self.values, masks = [], [], {}

        def attend(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            self.keys.append(k)
            self.values.append(v)
            return _attention(attn, q, k, v, positions, self.key_valid, masks)

        return self._run(input_ids, positions, attend)

    @torch.no_grad()
    def block_logits(self, rows: torch.Tensor, block_ids: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Logits ``(R, L, V)`` of the tokens ``block_ids`` ``(R, L)`` at columns ``cols`` ``(R, L)`` of the cached
        rows ``rows`` ``(R,)``, every other position's keys and values taken from the cache."""
        index = torch.searchsorted(self.rows, rows)
        if index.max() >= self.rows.numel() or not torch.equal(self.rows[index], rows):
            raise RuntimeError("block cache: block_logits asked for rows that the last refresh did not run")
        key_valid, masks = self.key_valid[index], {}
        layer = iter(range(len(self.keys)))

        def attend(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            i = next(layer)
            where = cols[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])  # (R, nh, L, hd)
            keys = self.keys[i][index].scatter(2, where, k)
            values = self.values[i][index].scatter(2, where, v)
            return _attention(attn, q, keys, values, cols, key_valid, masks)

        return self._run(block_ids, cols, attend)

    def _run(self, ids: torch.Tensor, positions: torch.Tensor,
             attend: Callable[[Attention, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The masked LM on the tokens ``ids`` ``(R, L)`` at ``positions`` ``(R, L)``, with ``attend(attn, q, k, v)``
        (heads ``(R, nh, L, hd)``) in place of each layer's attention over the sequence."""
        rows, length = ids.shape
        flat_positions, rope = positions.flatten(), {}

        def layer_attention(attn: Attention, hidden: torch.Tensor) -> torch.Tensor:
            q, k, v = (t.view(rows, length, attn.heads, attn.head_dim).transpose(1, 2)
                       for t in attn.project(hidden, flat_positions, rope))
            out = attend(attn, q, k, v)  # (R, nh, L, hd)
            return attn.Wo(out.transpose(1, 2).reshape(rows * length, -1))

        enc = self.encoder
        x = enc.embeddings(ids.flatten(), flat_positions, None)  # (R * L, H)
        for block in enc.layers:
            x = block.residual(x, lambda hidden, attn=block.attn: layer_attention(attn, hidden))
        logits = self.decoder(self.head(enc.final_norm(x))).view(rows, length, -1)
        return logits[..., :self.vocab_size] if self.vocab_size else logits


def _attention(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_positions: torch.Tensor,
               key_valid: torch.Tensor, masks: dict) -> torch.Tensor:
    """SDPA of queries at ``q_positions`` ``(R, Lq)`` over keys at columns 0..Lk-1 (``key_valid`` ``(R, Lk)``), with
    the layer's sliding window and ALiBi as the model's attention backends apply them; ``masks`` keeps each kind of
    mask for the other layers of the same pass."""
    kind = (attn.window, attn.alibi_slopes is not None)
    if kind not in masks:
        masks[kind] = _mask(attn, q, k, q_positions, key_valid)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=masks[kind])


def _mask(attn: Attention, q: torch.Tensor, k: torch.Tensor, q_positions: torch.Tensor,
          key_valid: torch.Tensor) -> torch.Tensor:
    """The additive mask ``(R, 1|nh, Lq, Lk)``: -inf on padding keys and outside the window, ALiBi's bias. A query
    always sees its own column, so a padding query (which no real token reads) never has an empty row."""
    k_positions = torch.arange(k.shape[2], device=q.device)
    distance = (q_positions[:, :, None] - k_positions[None, None, :]).abs()  # (R, Lq, Lk)
    blocked = ~key_valid[:, None, :]  # (R, 1, Lk) -> (R, Lq, Lk) below
    if attn.window is not None:
        blocked = blocked | (distance > attn.window)
    blocked = (blocked & (distance != 0))[:, None]  # (R, 1, Lq, Lk)
    if attn.alibi_slopes is not None:
        bias = -attn.alibi_slopes.to(q.dtype)[None, :, None, None] * distance[:, None].to(q.dtype)
    else:
        bias = torch.zeros(blocked.shape, dtype=q.dtype, device=q.device)
    return bias.masked_fill(blocked, float("-inf"))


def as_flexbert_mlm(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` itself when it is a FlexBERT masked LM (ours or an exported folder's), else transformers'
    ModernBERT / BERT masked LM converted to an equal :class:`FlexBertForMaskedLM` (same device and dtype). Other
    models, and configs FlexBERT cannot express, raise :class:`UserError` naming why."""
    if isinstance(getattr(model, "model", None), FlexBertModel) and hasattr(model, "head"):
        return model
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in HF_IMPORTERS:
        raise UserError(f"{type(model).__name__} has no block cache: it works for FlexBERT models and transformers' "
                        f"{' and '.join(HF_IMPORTERS)} masked LMs (converted to FlexBERT)")
    to_config, to_state = HF_IMPORTERS[model_type]
    param = next(model.parameters())
    mlm = FlexBertForMaskedLM(to_config(model.config))
    load_exact(mlm, to_state(model.state_dict(), mlm.config), type(model).__name__)
    return mlm.to(device=param.device, dtype=param.dtype).eval()
