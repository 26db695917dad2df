"""The retrieval YAML: typed schema, loading with ``key=value`` overrides, checks that name the bad key."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from bertforge.config.load import load_raw
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError


@dataclass
class ModelSettings:
    """Where the weights come from and how they embed text."""

    path: str
    """A sentence-transformers folder, a Hugging Face transformers folder, or a bertforge run folder."""
    kind: Literal["dense", "colbert"] = "dense"
    """dense: one vector per text (sentence-transformers); colbert: one vector per token (PyLate, MaxSim)."""
    pooling: Literal["mean", "cls"] = "mean"
    """Pooling of a dense model built from a transformers folder or a bertforge run (an ST folder keeps its own)."""
    normalize: bool = True
    """L2-normalise dense embeddings (cosine similarity) when building from a transformers folder or a run."""
    max_seq_length: int = 256
    """Longest document in tokens; capped by the model's ``max_position_embeddings`` (one log line says so)."""
    query_length: int = 32
    """Query length in tokens for ColBERT (PyLate pads queries to it with [MASK] tokens)."""
    embedding_size: int | None = None
    """Per-token dimension of the ColBERT projection added on top of an encoder that has none (null: 128, or a
    PyLate folder's own; another size for a PyLate folder is refused)."""

    def __post_init__(self) -> None:
        for name in ("max_seq_length", "query_length", "embedding_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(name, f"{getattr(self, name)} must be >= 1")


@dataclass
class DataSettings:
    """A BEIR-format folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv."""

    path: str
    train_split: str = "train"
    eval_split: str = "test"
    corpus_limit: int | None = None
    """Evaluate on a subset: every document relevant to an evaluated query plus random others up to this
    many (null: the whole corpus). Figures on a subset are not comparable with published ones."""
    query_limit: int | None = None
    """Evaluate the first N queries of the split only (null: all)."""

    def __post_init__(self) -> None:
        for name in ("corpus_limit", "query_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"{value} must be >= 1 (null: all)")


@dataclass
class TrainSettings:
    """Contrastive finetuning through the sentence-transformers trainer (PyLate's for ColBERT)."""

    epochs: float = 1.0
    batch_size: int = 32
    """Pairs per step; with in-batch negatives every other document of the batch is a negative."""
    lr: float = 3.0e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_steps: int | None = None
    """Stop after this many optimizer steps (null: run ``epochs``)."""
    max_pairs: int | None = None
    """Train on the first N (query, positive) pairs only (null: all of the train split)."""
    hard_negatives: int = 0
    """Add this many BM25-mined negatives per pair (the top BM25 documents that are not relevant)."""
    loss: Literal["contrastive", "distillation"] = "contrastive"
    """contrastive: the positive against in-batch and hard negatives (sentence-transformers'
    MultipleNegativesRankingLoss, PyLate's Contrastive). distillation: match the teacher's score distribution
    over each query's positive and ``hard_negatives`` BM25 negatives (sentence-transformers' DistillKLDivLoss,
    PyLate's Distillation)."""
    teacher: str | None = None
    """The teacher of ``loss: distillation``: a dense model folder (sentence-transformers, transformers or
    bertforge run; cosine scores) or a cross-encoder folder (``teacher_kind: cross_encoder``; its logits)."""
    teacher_kind: Literal["dense", "cross_encoder"] = "dense"
    teacher_scale: float | None = None
    """Teacher scores are multiplied by this before the softmax (null: 20 for a dense teacher's cosines, as
    MultipleNegativesRankingLoss scales them; 1 for a cross-encoder's logits)."""
    max_seq_length: int | None = None
    """Document length in tokens while training (null: ``model.max_seq_length``)."""
    bf16: bool = False
    """Train under bfloat16 autocast (fast on CPUs with AMX and on recent GPUs)."""
    save_model: bool = True
    """Write the finetuned model to ``<run_dir>/model``."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_steps", "max_pairs", "max_seq_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(name, f"{value} must be >= 1")
        if self.epochs <= 0:
            raise ConfigError("epochs", f"{self.epochs} must be > 0")
        if self.lr <= 0:
            raise ConfigError("lr", f"{self.lr} must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_ratio", f"{self.warmup_ratio} must be in [0, 1)")
        if self.hard_negatives < 0:
            raise ConfigError("hard_negatives", f"{self.hard_negatives} must be >= 0")
        if self.loss == "distillation":
            if self.teacher is None:
                raise ConfigError("teacher", "loss: distillation needs a teacher model folder (e.g. the finetuned "
                                  "model of yamls/retrieval/quickstart-st.yaml: runs/retrieval-quickstart-st/model)")
            if self.hard_negatives < 1:
                raise ConfigError("hard_negatives", "loss: distillation scores each query's positive against its "
                                  "BM25 negatives; set hard_negatives >= 1 (e.g. 7)")
        elif self.teacher is not None:
            raise ConfigError("teacher", "a teacher is only used with loss: distillation; set loss: distillation "
                              "or teacher: null")
        if self.teacher_scale is not None and self.teacher_scale <= 0:
            raise ConfigError("teacher_scale", f"{self.teacher_scale} must be > 0 (null: the default)")

    @property
    def scale(self) -> float:
        """The factor applied to the teacher's scores."""
        if self.teacher_scale is not None:
            return self.teacher_scale
        return 20.0 if self.teacher_kind == "dense" else 1.0


@dataclass
class EvalSettings:
    """What goes into the results table."""

    before: bool = True
    """Evaluate the starting model (zero-shot) before finetuning."""
    after: bool = True
    """Evaluate the finetuned model (needs a ``train`` block)."""
    bm25: bool = True
    """Add BM25 (the ``bm25s`` package) on the same data as a baseline row."""
    batch_size: int = 32
    bf16: bool = False
    """Encode under bfloat16 autocast (about 1.5-2x faster on CPUs with AMX; cosine to fp32 > 0.9999)."""
    top_k: int = 100
    """Documents retrieved per query; must be at least 100 for Recall@100."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"{self.batch_size} must be >= 1")
        if self.top_k < 100:
            raise ConfigError("top_k", f"{self.top_k} must be >= 100 (Recall@100 needs 100 documents per query)")


@dataclass
class RetrievalConfig:
    """One retrieval experiment: a model, a BEIR dataset, optional finetuning, one results table."""

    run_dir: str
    model: ModelSettings
    data: DataSettings
    train: TrainSettings | None = None
    """Null: evaluate only."""
    eval: EvalSettings = field(default_factory=EvalSettings)
    seed: int = 17
    device: str | None = None
    """cpu, cuda, ...; null: cuda when available, else cpu."""

    def __post_init__(self) -> None:
        if self.eval.after and self.train is None:
            self.eval.after = False
        if not (self.eval.before or self.eval.after or self.eval.bm25):
            raise ConfigError("eval", "nothing to evaluate: set eval.before, eval.bm25 or add a train block")


def check_paths(cfg: RetrievalConfig) -> None:
    """Check that the model and the data folders (and the qrels splits used) exist; one line names the key."""
    if not os.path.exists(cfg.model.path):
        raise ConfigError("model.path", f"{cfg.model.path} does not exist; pass a sentence-transformers, "
                          "transformers or bertforge run folder (e.g. run `make retrieval-model`)")
    root = cfg.data.path
    if not os.path.isdir(root):
        raise ConfigError("data.path", f"{root} is not a folder; pass a BEIR dataset folder (corpus.jsonl, "
                          "queries.jsonl, qrels/)")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not os.path.isfile(os.path.join(root, name)):
            raise ConfigError("data.path", f"{root} has no {name}; pass a BEIR dataset folder")
    splits = [("data.eval_split", cfg.data.eval_split)]
    if cfg.train is not None:
        splits.append(("data.train_split", cfg.data.train_split))
    if cfg.train is not None and cfg.train.teacher is not None and not os.path.exists(cfg.train.teacher):
        raise ConfigError("train.teacher", f"{cfg.train.teacher} does not exist; pass a dense model or cross-encoder "
                          "folder (e.g. run `python retrieval.py yamls/retrieval/quickstart-st.yaml` first)")
    for key, split in splits:
        qrels = os.path.join(root, "qrels", f"{split}.tsv")
        if not os.path.isfile(qrels):
            have = sorted(f[:-4] for f in os.listdir(os.path.join(root, "qrels"))) \
                if os.path.isdir(os.path.join(root, "qrels")) else []
            raise ConfigError(key, f"{qrels} not found; splits there: {', '.join(have) or 'none'}")


def load_retrieval_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> RetrievalConfig:
    """Load ``path`` with ``key=value`` overrides into a :class:`RetrievalConfig` and check its paths."""
    cfg = from_dict(RetrievalConfig, load_raw(path, overrides))
    check_paths(cfg)
    return cfg
