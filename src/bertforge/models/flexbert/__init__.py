"""FlexBERT: one configurable encoder (ModernBERT, MosaicBERT and classic BERT are presets of it)."""
