"""MLM metrics shared by every model family (Composer's own torchmetrics classes)."""

from __future__ import annotations

from composer.metrics import LanguageCrossEntropy, LanguagePerplexity, MaskedAccuracy

from bertforge.data.mlm import IGNORE_INDEX


def mlm_metrics() -> list:
    """Fresh MLM metrics: cross-entropy (the MLM loss), masked-token accuracy and perplexity."""
    return [
        LanguageCrossEntropy(ignore_index=IGNORE_INDEX),
        MaskedAccuracy(ignore_index=IGNORE_INDEX),
        LanguagePerplexity(ignore_index=IGNORE_INDEX),
    ]
