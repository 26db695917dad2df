"""Benchmark batches: full-length (``fixed``) or ``variable``-length sequences, with real-token counts.

Variable lengths come from a named distribution (``uniform`` on [8, L], ``normal``: a normal with
mean L/2 and std L/4 truncated to [8, L]) or from a real corpus: token lengths of the documents in a
text file (blank-line separated) or a local MDS split, truncated to L as training does.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass

import torch

from bertforge.errors import UserError

MIN_LEN = 8
DISTRIBUTIONS = ("uniform", "normal")
WORDS_TO_TOKENS = 1.3  # rough WordPiece tokens per whitespace word, used without a tokenizer


@dataclass
class Batch:
    """One benchmark batch on ``device`` and the real (non-pad) length of each sequence."""

    tensors: dict[str, torch.Tensor]
    lengths: list[int]

    @property
    def real_tokens(self) -> int:
        """Non-pad tokens, i.e. ``attention_mask.sum()``."""
        return int(self.tensors["attention_mask"].sum())

    @property
    def padded_tokens(self) -> int:
        """All positions the model sees, padding included."""
        return self.tensors["input_ids"].numel()


def _text_documents(path: str) -> list[str]:
    text = open(path, encoding="utf-8").read()
    docs = [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]
    if len(docs) <= 1:
        docs = [line.strip() for line in text.splitlines() if line.strip()]
    return docs


def _mds_lengths_or_texts(folder: str, limit: int) -> tuple[list[int], list[str]]:
    from streaming import LocalDataset

    dataset = LocalDataset(local=folder)
    lengths, texts = [], []
    for i in range(min(limit, len(dataset))):
        sample = dataset[i]
        if "input_ids" in sample:
            lengths.append(len(sample["input_ids"]) + 2)  # + [CLS] and [SEP]
        elif "text" in sample:
            texts.append(sample["text"])
    return lengths, texts


def corpus_lengths(path: str, tokenizer, limit: int = 5000) -> tuple[list[int], str]:
    """Token lengths ([CLS] and [SEP] included) of up to ``limit`` documents in ``path``, and a note.

    ``path`` is a text file or a local MDS split folder. Without a real ``tokenizer`` (None) lengths
    are whitespace-split word counts x 1.3, and the note says so.
    """
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "index.json")):
            raise UserError(f"--length-dist: {path} is not an MDS split (no index.json); give a text file or split")
        lengths, texts = _mds_lengths_or_texts(path, limit)
    elif os.path.isfile(path):
        lengths, texts = [], _text_documents(path)[:limit]
    else:
        raise UserError(f"--length-dist: '{path}' is neither {' nor '.join(DISTRIBUTIONS)} nor an existing file/folder")
    note = ""
    if texts and tokenizer is not None:
        lengths += [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    elif texts:
        lengths += [round(len(t.split()) * WORDS_TO_TOKENS) + 2 for t in texts]
        note = "no real tokenizer: document lengths are whitespace words x 1.3"
    if not lengths:
        raise UserError(f"--length-dist: no documents found in {path}")
    return lengths, note


class LengthSampler:
    """Draws sequence lengths for a maximum length ``L``, from a named distribution or corpus lengths."""

    def __init__(self, dist: str, corpus: list[int] | None = None, seed: int = 0):
        if dist not in DISTRIBUTIONS and not corpus:
            raise UserError(f"--length-dist: unknown distribution '{dist}'; use {', '.join(DISTRIBUTIONS)} or a path")
        self.dist = dist
        self.corpus = corpus
        self.rng = random.Random(seed)

    def sample(self, n: int, max_len: int) -> list[int]:
        """``n`` lengths in [min(8, L), L]."""
        low = min(MIN_LEN, max_len)
        if self.corpus:
            return [max(low, min(max_len, self.rng.choice(self.corpus))) for _ in range(n)]
        if self.dist == "uniform":
            return [self.rng.randint(low, max_len) for _ in range(n)]
        out = []
        while len(out) < n:  # truncated normal by rejection
            x = round(self.rng.gauss(max_len / 2, max_len / 4))
            if low <= x <= max_len:
                out.append(x)
        return out


def make_batch(lengths: list[int], max_len: int, vocab_size: int, pad_token_id: int, device: torch.device,
               with_labels: bool, pad_to: str = "longest", seed: int = 0) -> Batch:
    """A right-padded batch with random token ids (never the pad id) and MLM labels on 15% of real tokens.

    ``pad_to='longest'`` pads to the longest sequence rounded up to 8 (as the training collator does),
    ``'max'`` to ``max_len``.
    """
    width = max_len if pad_to == "max" else min(max_len, -(-max(lengths) // 8) * 8)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size - 1, (len(lengths), width), generator=gen)
    ids = ids + (ids >= pad_token_id).long()  # skip the pad id
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_token_id))
    tensors = {"input_ids": ids, "attention_mask": mask}
    if with_labels:
        chosen = (torch.rand(ids.shape, generator=gen) < 0.15) & mask.bool()
        tensors["labels"] = torch.where(chosen, ids, torch.full_like(ids, -100))
    return Batch({k: v.to(device) for k, v in tensors.items()}, list(lengths))
