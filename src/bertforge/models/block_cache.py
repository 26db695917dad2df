"""Key/value caches for semi-autoregressive block decoding (Fast-dLLM's PrefixCache and DualCache): which models
have one. The sampler (generation/sampler.py) asks here, never a family's classes."""

from __future__ import annotations

import logging
from typing import Any

import torch

from bertforge.errors import UserError

log = logging.getLogger(__name__)
CACHES = ("none", "prefix", "dual")
"""'prefix': a block's later passes run the block and the canvas after it over cached keys/values of what precedes
the block; 'dual': the block alone, everything else cached."""


def build_cache(kind: str, model: torch.nn.Module, vocab_size: int | None = None) -> Any:
    """The block cache ``kind`` for ``model`` (logits cut to ``vocab_size``): FlexBERT's (FlexBERT models, and
    transformers' ModernBERT and BERT masked LMs converted to FlexBERT); None for 'none', and for any other model,
    which then decodes with full passes, said in one log line."""
    if kind not in CACHES:
        raise UserError(f"cache '{kind}': choose one of {', '.join(CACHES)}")
    if kind == "none":
        return None
    from bertforge.models.flexbert.kv_cache import BlockKVCache, as_flexbert_mlm

    try:
        return BlockKVCache(as_flexbert_mlm(model), vocab_size, recomputes_suffix=kind == "prefix")
    except UserError as err:
        log.warning("cache: %s; decoding with full forward passes", err)
        return None
