"""GLUE data: read a task's TSV files (or the datasets Hub copy), tokenize once into a cache, batch.

The local layout is the standard GLUE one (``MNLI/train.tsv``, ``CoLA/dev.tsv``, ...). Files are
read with ``csv`` and ``QUOTE_NONE`` (GLUE quote characters are literal), ``utf-8-sig`` (MRPC starts
with a byte-order mark), and CoLA has no header row. Any problem is one line naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import DataCollatorWithPadding

from bertforge.errors import UserError
from bertforge.glue.tasks import HUB_DATASET, TaskSpec

csv.field_size_limit(2**31 - 1)


@dataclass
class Examples:
    """Texts (one tuple per example) and labels (class ids, or floats for regression)."""

    texts: list[tuple[str, ...]]
    labels: list[float] | list[int]
    source: str
    """What was read: a file path or 'hub:<config>/<split>' (names the data in errors and cache keys)."""


def _column_index(header: list[str] | None, name: str, path: str) -> int:
    if header is None:
        return int(name)
    if name not in header:
        raise UserError(f"{path}: no '{name}' column in the header {header}; is this the right GLUE file?")
    return header.index(name)


def _parse_label(value: str, spec: TaskSpec, where: str) -> float | int:
    if spec.labels is None:
        try:
            return float(value)
        except ValueError:
            raise UserError(f"{where}: label {value!r} is not a number") from None
    if value not in spec.labels:
        raise UserError(f"{where}: unknown label {value!r}; expected one of {list(spec.labels)}")
    return spec.labels.index(value)


def read_tsv(path: str, spec: TaskSpec) -> Examples:
    """Read one GLUE TSV file of ``spec``'s task; a missing or malformed file fails naming it."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: GLUE file not found; check data_dir (standard layout: <data_dir>/{spec.folder}/)")
    texts, labels = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None) if spec.header else None
        if spec.header and header is None:
            raise UserError(f"{path}: empty file")
        text_cols = [_column_index(header, c, path) for c in spec.columns]
        label_col = _column_index(header, spec.label_column, path)
        width = max(text_cols + [label_col]) + 1
        for line, row in enumerate(rows, start=2 if spec.header else 1):
            if not row:
                continue
            if len(row) < width:
                raise UserError(f"{path}:{line}: {len(row)} columns, expected at least {width}")
            texts.append(tuple(row[i] for i in text_cols))
            labels.append(_parse_label(row[label_col], spec, f"{path}:{line}"))
    if not texts:
        raise UserError(f"{path}: no examples")
    return Examples(texts, labels, path)


def read_hub(spec: TaskSpec, split: str) -> Examples:
    """The task's split from the datasets Hub copy of GLUE (needs network or datasets' local cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(HUB_DATASET, spec.name, split=split)
    except Exception as err:  # connection, missing cache, unknown split: one line
        raise UserError(f"data_dir is null and {HUB_DATASET}/{spec.name} ({split}) cannot be loaded: "
                        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}; set data_dir") from None
    texts = list(zip(*(ds[c] for c in spec.hub_columns)))
    return Examples(texts, list(ds["label"]), f"hub:{spec.name}/{split}")


def subset(examples: Examples, n: int | None) -> Examples:
    """A fixed random subset of ``n`` examples (the same for every seed), in file order."""
    if n is None or n >= len(examples.texts):
        return examples
    keep = sorted(random.Random(0).sample(range(len(examples.texts)), n))
    return Examples([examples.texts[i] for i in keep], [examples.labels[i] for i in keep],
                    f"{examples.source}[{n}]")


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of the tokenizer's vocabulary and rules (fast tokenizers: their JSON, less the per-call
    truncation and padding state that tokenizing changes)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        text = json.dumps({k: v for k, v in state.items() if k not in ("truncation", "padding")}, sort_keys=True)
    else:
        text = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _file_digest(source: str) -> str:
    if not os.path.isfile(source):
        return source
    with open(source, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def tokenize_cached(examples: Examples, tokenizer, max_len: int, cache_dir: str) -> list[dict]:
    """Token ids per example, cached in ``cache_dir`` by tokenizer, max length and the data's content."""
    key = hashlib.sha256(
        f"{tokenizer_fingerprint(tokenizer)}|{max_len}|{_file_digest(examples.source)}|{examples.source}".encode()
    ).hexdigest()[:24]
    path = os.path.join(cache_dir, f"{key}.pt")
    if os.path.isfile(path):
        return torch.load(path, weights_only=True)
    columns = list(zip(*examples.texts))
    enc = tokenizer(*columns, truncation=True, max_length=max_len)
    rows = [{name: enc[name][i] for name in enc.keys()} for i in range(len(examples.texts))]
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(rows, tmp)
    os.replace(tmp, path)
    return rows


class TokenizedDataset(Dataset):
    """Tokenized examples with their labels (float for regression, else class ids)."""

    def __init__(self, rows: list[dict], labels: list, regression: bool):
        self.rows, self.labels, self.regression = rows, labels, regression

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        label = float(self.labels[i]) if self.regression else int(self.labels[i])
        return {**self.rows[i], "labels": label}


def make_loader(dataset: TokenizedDataset, tokenizer, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """Dynamic-padding batches; the train order depends only on ``seed``."""
    collate: Callable = DataCollatorWithPadding(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)
