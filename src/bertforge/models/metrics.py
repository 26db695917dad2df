"""Metrics shared by every model family: MLM, masked diffusion (MDLM), sentence pairs (NSP/SOP), and sequence
classification/regression."""

from __future__ import annotations

import torch
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


class MDLMNegativeELBO(Metric):
    """The masked diffusion loss over an evaluation: summed weighted masked-token cross-entropy / maskable tokens.

    With ``inverse_t`` weighting it is the negative ELBO, an upper bound on the negative log-likelihood, in nats
    per token. Updated with a batch's :class:`~bertforge.models.common.mlm.MDLMLossTerms`.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, total: torch.Tensor, tokens: torch.Tensor) -> None:
        """Add one batch's weighted cross-entropy sum and maskable-token count."""
        self.total += total.detach().to(self.total)
        self.tokens += tokens.detach().to(self.tokens)

    def compute(self) -> torch.Tensor:
        """Nats per maskable token (NaN when no MDLM batch was seen)."""
        return (self.total / self.tokens).float() if self.tokens > 0 else torch.tensor(float("nan"))


class NSPAccuracy(Metric):
    """Share of sentence pairs whose next-sentence label (0 = B follows A, 1 = random) the pair head predicts."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch's pair ``logits`` ``(B, 2)`` and ``labels`` ``(B,)``."""
        self.correct += (logits.argmax(dim=-1) == labels.to(logits.device)).sum().to(self.correct)
        self.total += labels.numel()

    def compute(self) -> torch.Tensor:
        """Accuracy in [0, 1] (NaN before any pair)."""
        return self.correct.float() / self.total if self.total > 0 else torch.tensor(float("nan"))


class SOPAccuracy(NSPAccuracy):
    """:class:`NSPAccuracy` for ALBERT's sentence-order prediction (0 = in order, 1 = swapped)."""


PAIR_METRICS = {"nsp": NSPAccuracy, "sop": SOPAccuracy}
OBJECTIVES = ("mlm", "mdlm", *PAIR_METRICS)


def lm_metrics(objective: str, train: bool = False) -> list[Metric]:
    """Fresh metrics for ``objective``: the MLM ones, plus for ``'mdlm'`` (eval) the bound, for ``'nsp'``/``'sop'``
    (train and eval) the pair accuracy."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: expected one of {', '.join(map(repr, OBJECTIVES))}")
    extra: list[Metric] = [PAIR_METRICS[objective]()] if objective in PAIR_METRICS else []
    if objective == "mdlm" and not train:
        extra.append(MDLMNegativeELBO())
    return mlm_metrics() + extra


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
