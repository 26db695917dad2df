"""Metric and score rules: the classifier's torchmetrics, task scores, the GLUE average, the table."""

from __future__ import annotations

import pytest
import torch

from bertforge.glue.report import summarize, to_markdown
from bertforge.glue.tasks import entry_score, glue_average
from bertforge.models.metrics import classification_metrics


def _compute(num_labels: int, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    out = {}
    for metric in classification_metrics(num_labels):
        metric.update(outputs, target)
        out[type(metric).__name__] = float(metric.compute())
    return out


def test_classification_metrics_from_logits():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 2.0]])  # predicts 0 1 1 0 1
    target = torch.tensor([0, 1, 0, 0, 1])
    got = _compute(2, logits, target)
    assert got["MulticlassAccuracy"] == pytest.approx(0.8)
    assert got["BinaryF1Score"] == pytest.approx(0.8)  # tp 2, fp 1, fn 0
    assert got["MulticlassMatthewsCorrCoef"] == pytest.approx(4 / 6)  # (2*2-1*0)/sqrt(3*2*3*2)


def test_regression_metrics():
    preds, target = torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0.0, 0.5, 0.3, 1.0])
    got = _compute(1, preds, target)
    assert got["SpearmanCorrCoef"] == pytest.approx(1.0)
    assert 0.9 < got["PearsonCorrCoef"] < 1.0


def test_task_score_is_mean_of_metrics():
    assert entry_score({"mrpc/f1": 90.0, "mrpc/accuracy": 86.0}, "mrpc", "mrpc") == 88.0
    assert entry_score({"stsb/pearson": 89.0, "stsb/spearman": 88.0}, "stsb", "stsb") == 88.5
    assert entry_score({"cola/matthews": 55.0}, "cola", "cola") == 55.0


def test_glue_average_counts_mnli_m_and_mm_separately():
    # BERT-base test scores from the BERT paper (Table 1): its average 79.6 is the mean of these 9 entries
    bert_base = {"mnli-m": 84.6, "mnli-mm": 83.4, "qqp": 71.2, "qnli": 90.5, "sst2": 93.5, "cola": 52.1,
                 "stsb": 85.8, "mrpc": 88.9, "rte": 66.4}
    assert glue_average(bert_base) == pytest.approx(79.6, abs=0.05)
    assert glue_average({"rte": 60.0, "mrpc": 80.0}) == 70.0
    assert glue_average({}) is None


def _record(task, seed, metrics, status="ok", error=None):
    return {"task": task, "seed": seed, "status": status, "metrics": metrics, "error": error, "seconds": 1.0}


def test_summary_and_markdown_table():
    records = [
        _record("mrpc", 17, {"mrpc/f1": 90.0, "mrpc/accuracy": 86.0}),
        _record("mrpc", 42, {"mrpc/f1": 92.0, "mrpc/accuracy": 88.0}),
        _record("mnli", 17, {"mnli-m/accuracy": 84.0, "mnli-mm/accuracy": 83.0}),
        _record("rte", 17, {}, "failed", "UserError: RTE/train.tsv: GLUE file not found"),
    ]
    summary = summarize(["mnli", "mrpc", "rte"], records)
    mrpc = summary["entries"]["mrpc"]
    assert mrpc["scores"] == {17: 88.0, 42: 90.0} and mrpc["mean"] == 89.0
    assert mrpc["std"] == pytest.approx(2 ** 0.5)
    assert summary["average_over"] == ["mnli-m", "mnli-mm", "mrpc"]
    assert summary["glue_average"] == pytest.approx((84 + 83 + 89) / 3)
    text = to_markdown(summary, [17, 42])
    assert "| mrpc | score | 88.00 | 90.00 | 89.00 ± 1.41 |" in text
    assert "| mnli-mm | accuracy | 83.00 | – | 83.00 ± 0.00 |" in text
    assert "- rte/seed17: UserError: RTE/train.tsv: GLUE file not found" in text
