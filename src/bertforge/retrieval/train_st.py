"""Contrastive finetuning of a dense retriever with the sentence-transformers trainer: MultipleNegativesRanking
loss (every other document of the batch is a negative) plus optional BM25-mined hard negatives."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

from transformers import PrinterCallback, TrainerCallback

from bertforge.export.source import require
from bertforge.retrieval.config import TrainSettings
from bertforge.retrieval.distill import DistillationSet

log = logging.getLogger(__name__)


class _LogCallback(TrainerCallback):
    """Training progress (loss, learning rate) as log lines of this module instead of dicts on stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs) -> None:
        if logs and "loss" in logs:
            log.info("step %d/%d: loss %.4f, lr %.2e", state.global_step, state.max_steps, logs["loss"],
                     logs.get("learning_rate", 0.0))


def pairs_dataset(pairs: Sequence[tuple[str, str]], negatives: Sequence[Sequence[str]] | None = None):
    """A ``datasets.Dataset`` with columns anchor, positive[, negative_1, ...] (the order the losses expect)."""
    datasets = require("datasets", "datasets")
    columns = {"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]}
    for j in range(len(negatives[0]) if negatives else 0):
        columns[f"negative_{j + 1}"] = [row[j] for row in negatives]
    return datasets.Dataset.from_dict(columns)


def training_args(settings: TrainSettings, out_dir: str, seed: int, device: str):
    """sentence-transformers training arguments: no checkpoints, no reporting; for contrastive training no
    duplicate texts in a batch (a repeated query or document would be its own false negative)."""
    st = require("sentence_transformers", "sentence-transformers")
    samplers = st.training_args.BatchSamplers
    return st.SentenceTransformerTrainingArguments(
        output_dir=os.path.join(out_dir, "trainer"),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.lr,
        warmup_ratio=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        bf16=settings.bf16,
        batch_sampler=samplers.NO_DUPLICATES if settings.loss == "contrastive" else samplers.BATCH_SAMPLER,
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        report_to="none",
        logging_steps=5,
        disable_tqdm=True,
        use_cpu=device == "cpu",
        dataloader_num_workers=0,
    )


DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK")


@contextlib.contextmanager
def single_process_env() -> Iterator[None]:
    """Hide a one-process "distributed" setup (the env vars Composer leaves after training in this process) from
    transformers' Trainer, which would otherwise wrap the model for one-rank DDP and shard away its batches."""
    if os.environ.get("WORLD_SIZE", "1") != "1":
        yield
        return
    saved = {k: os.environ.pop(k) for k in DIST_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run_trainer(model, loss, dataset, settings: TrainSettings, out_dir: str, seed: int, device: str,
                data_collator=None) -> None:
    """Train ``model`` in place with ``loss`` on ``dataset``; documents truncated at ``settings.max_seq_length``."""
    st = require("sentence_transformers", "sentence-transformers")
    eval_lengths = {a: getattr(model, a) for a in ("max_seq_length", "document_length") if hasattr(model, a)}
    for attr, length in eval_lengths.items():  # ColBERT models truncate documents at document_length
        setattr(model, attr, min(settings.max_seq_length or length, length))
    extra = {"data_collator": data_collator} if data_collator is not None else {}
    with single_process_env():
        trainer = st.SentenceTransformerTrainer(model=model, args=training_args(settings, out_dir, seed, device),
                                                train_dataset=dataset, loss=loss, **extra)
        trainer.remove_callback(PrinterCallback)  # it prints to stdout, where the results table goes
        trainer.add_callback(_LogCallback())
        log.info("finetuning on %d examples (batch %d, %s)", len(dataset), settings.batch_size,
                 f"{settings.max_steps} steps" if settings.max_steps else f"{settings.epochs:g} epochs")
        trainer.train()
    for attr, length in eval_lengths.items():
        setattr(model, attr, length)


STUDENT_SCALE = 20.0
"""Student cosines are multiplied by this before the softmax (MultipleNegativesRankingLoss's default scale)."""


def scaled_cosine(a, b):
    """Row-wise cosine similarity times :data:`STUDENT_SCALE`: the dense student's logits under distillation."""
    st = require("sentence_transformers", "sentence-transformers")
    return STUDENT_SCALE * st.util.pairwise_cos_sim(a, b)


def distillation_dataset(distill: DistillationSet):
    """columns query, positive, negative_1.., label (teacher scores): the layout of DistillKLDivLoss."""
    datasets = require("datasets", "datasets")
    columns = {"query": distill.queries}
    for j in range(len(distill.documents[0])):
        columns["positive" if j == 0 else f"negative_{j}"] = [docs[j] for docs in distill.documents]
    columns["label"] = distill.scores
    return datasets.Dataset.from_dict(columns)


def finetune_dense(model, pairs: Sequence[tuple[str, str]], negatives: Sequence[Sequence[str]] | None,
                   settings: TrainSettings, out_dir: str, seed: int, device: str,
                   distill: DistillationSet | None = None):
    """Finetune a ``SentenceTransformer`` with MultipleNegativesRankingLoss, or with DistillKLDivLoss towards
    ``distill``'s teacher scores; save it to ``<out_dir>/model``."""
    st = require("sentence_transformers", "sentence-transformers")
    if distill is not None:
        loss, dataset = st.losses.DistillKLDivLoss(model, similarity_fct=scaled_cosine), distillation_dataset(distill)
    else:
        loss, dataset = st.losses.MultipleNegativesRankingLoss(model), pairs_dataset(pairs, negatives)
    run_trainer(model, loss, dataset, settings, out_dir, seed, device)
    if settings.save_model:
        model.save(os.path.join(out_dir, "model"))
    return model
