"""Metrics shared by every model family: MLM, and sequence classification/regression (GLUE)."""

from __future__ import annotations

from composer.metrics import LanguageCrossEntropy, LanguagePerplexity, MaskedAccuracy
from composer.metrics.nlp import BinaryF1Score
from torchmetrics import MatthewsCorrCoef, Metric, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import MulticlassAccuracy

from bertforge.data.mlm import IGNORE_INDEX


def mlm_metrics() -> list:
    """Fresh MLM metrics: cross-entropy (the MLM loss), masked-token accuracy and perplexity."""
    return [
        LanguageCrossEntropy(ignore_index=IGNORE_INDEX),
        MaskedAccuracy(ignore_index=IGNORE_INDEX),
        LanguagePerplexity(ignore_index=IGNORE_INDEX),
    ]


def classification_metrics(num_labels: int) -> list[Metric]:
    """Fresh torchmetrics/Composer metrics for ``num_labels`` classes (1 = regression)."""
    if num_labels == 1:
        return [PearsonCorrCoef(), SpearmanCorrCoef()]
    metrics: list[Metric] = [
        MulticlassAccuracy(num_classes=num_labels, average="micro"),
        MatthewsCorrCoef(task="multiclass", num_classes=num_labels),
    ]
    if num_labels == 2:
        metrics.append(BinaryF1Score())
    return metrics
