"""Contrastive finetuning of a ColBERT retriever with PyLate (its Contrastive loss and collator on the
sentence-transformers trainer): in-batch negatives plus optional BM25-mined hard negatives."""

from __future__ import annotations

import os
from collections.abc import Sequence

from bertforge.export.source import require
from bertforge.retrieval.config import TrainSettings
from bertforge.retrieval.train_st import pairs_dataset, run_trainer


def finetune_colbert(model, pairs: Sequence[tuple[str, str]], negatives: Sequence[Sequence[str]] | None,
                     settings: TrainSettings, out_dir: str, seed: int, device: str):
    """Finetune a PyLate ``ColBERT`` model with ``pylate.losses.Contrastive``; save it to ``<out_dir>/model``."""
    losses, utils = require("pylate.losses", "pylate"), require("pylate.utils", "pylate")
    collator = utils.ColBERTCollator(tokenize_fn=model.tokenize)
    run_trainer(model, losses.Contrastive(model=model), pairs_dataset(pairs, negatives), settings, out_dir, seed,
                device, data_collator=collator)
    if settings.save_model:
        model.save(os.path.join(out_dir, "model"))
    return model
