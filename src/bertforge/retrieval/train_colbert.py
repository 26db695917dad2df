"""Finetuning of a ColBERT retriever with PyLate on the sentence-transformers trainer: its Contrastive loss
(in-batch negatives plus optional BM25-mined hard negatives) or its Distillation loss (KL towards a teacher's
scores over each query's candidates)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from bertforge.export.source import require
from bertforge.retrieval.config import TrainSettings
from bertforge.retrieval.distill import DistillationSet
from bertforge.retrieval.train_st import pairs_dataset, run_trainer


def distillation_dataset(distill: DistillationSet):
    """columns query, documents (lists, positive first), scores: the layout of PyLate's Distillation loss."""
    datasets = require("datasets", "datasets")
    return datasets.Dataset.from_dict({"query": distill.queries, "documents": distill.documents,
                                       "scores": distill.scores})


def finetune_colbert(model, pairs: Sequence[tuple[str, str]], negatives: Sequence[Sequence[str]] | None,
                     settings: TrainSettings, out_dir: str, seed: int, device: str,
                     distill: DistillationSet | None = None):
    """Finetune a PyLate ``ColBERT`` model with ``pylate.losses.Contrastive``, or ``pylate.losses.Distillation``
    towards ``distill``'s teacher scores; save it to ``<out_dir>/model``."""
    losses, utils = require("pylate.losses", "pylate"), require("pylate.utils", "pylate")
    collator = utils.ColBERTCollator(tokenize_fn=model.tokenize)
    if distill is not None:
        loss, dataset = losses.Distillation(model=model), distillation_dataset(distill)
    else:
        loss, dataset = losses.Contrastive(model=model), pairs_dataset(pairs, negatives)
    run_trainer(model, loss, dataset, settings, out_dir, seed, device, data_collator=collator)
    if settings.save_model:
        model.save(os.path.join(out_dir, "model"))
    return model
