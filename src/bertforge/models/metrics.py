"""Metrics shared by every model family: MLM, masked diffusion (MDLM), and sequence classification/regression."""

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


def lm_metrics(objective: str, train: bool = False) -> list[Metric]:
    """Fresh metrics for ``objective`` ``'mlm'`` or ``'mdlm'``: the MLM ones, plus for MDLM (eval) the bound."""
    if objective not in ("mlm", "mdlm"):
        raise ValueError(f"objective {objective!r}: expected 'mlm' or 'mdlm'")
    return mlm_metrics() + ([MDLMNegativeELBO()] if objective == "mdlm" and not train else [])


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
