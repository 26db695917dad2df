"""The eight GLUE tasks: files, columns, labels, metrics, and the leaderboard's scoring rules.

Scores are percentages. A task's score is the mean of its metrics (MRPC and QQP: F1 and
accuracy; STS-B: Pearson and Spearman). MNLI counts as two entries, matched (``mnli-m``) and
mismatched (``mnli-mm``) accuracy, as in the BERT paper's GLUE average (its 79.6 for BERT-base is
the mean of 9 entries: the 8 tasks with MNLI split in two). WNLI is left out, as BERT did.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

HUB_DATASET = "nyu-mll/glue"

METRIC_CLASSES = {
    "accuracy": "MulticlassAccuracy",
    "f1": "BinaryF1Score",
    "matthews": "MulticlassMatthewsCorrCoef",
    "pearson": "PearsonCorrCoef",
    "spearman": "SpearmanCorrCoef",
}
"""Metric name in results -> class name of the classifier's eval metric (see models/hf_classifier.py)."""


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation set of a task; ``entry`` is its column in the GLUE average."""

    entry: str
    file: str
    hub_split: str


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's data lives and how it is read and scored."""

    name: str
    folder: str
    """Folder under ``data_dir`` in the standard GLUE layout."""
    columns: tuple[str, ...]
    """Text columns (header names, or 0-based indices as strings when ``header`` is false)."""
    label_column: str
    labels: tuple[str, ...] | None
    """Label strings in the order of their ids; None for regression (STS-B)."""
    metrics: tuple[str, ...]
    evals: tuple[EvalSplit, ...]
    hub_columns: tuple[str, ...]
    header: bool = True
    train_file: str = "train.tsv"

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.labels else 1


def _dev(name: str) -> tuple[EvalSplit, ...]:
    return (EvalSplit(name, "dev.tsv", "validation"),)


TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
             ("accuracy",), (EvalSplit("mnli-m", "dev_matched.tsv", "validation_matched"),
                             EvalSplit("mnli-mm", "dev_mismatched.tsv", "validation_mismatched")),
             ("premise", "hypothesis")),
    TaskSpec("qnli", "QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment"), ("accuracy",),
             _dev("qnli"), ("question", "sentence")),
    TaskSpec("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), ("f1", "accuracy"),
             _dev("qqp"), ("question1", "question2")),
    TaskSpec("sst2", "SST-2", ("sentence",), "label", ("0", "1"), ("accuracy",), _dev("sst2"), ("sentence",)),
    TaskSpec("cola", "CoLA", ("3",), "1", ("0", "1"), ("matthews",), _dev("cola"), ("sentence",), header=False),
    TaskSpec("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"), _dev("stsb"),
             ("sentence1", "sentence2")),
    TaskSpec("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("f1", "accuracy"), _dev("mrpc"),
             ("sentence1", "sentence2")),
    TaskSpec("rte", "RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), ("accuracy",),
             _dev("rte"), ("sentence1", "sentence2")),
)}

ENTRIES = ("mnli-m", "mnli-mm", "qnli", "qqp", "sst2", "cola", "stsb", "mrpc", "rte")
"""Columns of the GLUE average, in table order."""


def entry_score(metrics: dict[str, float], task: str, entry: str) -> float:
    """Score of one entry from a job's ``{'<entry>/<metric>': value}``: the mean of the task's metrics."""
    return statistics.fmean(metrics[f"{entry}/{m}"] for m in TASKS[task].metrics)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def glue_average(entry_means: dict[str, float]) -> float | None:
    """Mean over the GLUE entries that have a score (None when none has)."""
    scores = [entry_means[e] for e in ENTRIES if e in entry_means]
    return statistics.fmean(scores) if scores else None
