"""Sentence pairs for BERT's next-sentence prediction (NSP) or ALBERT's sentence-order prediction (SOP), as MDS.

``convert_dataset.py --objective nsp|sop --tokenizer T`` writes one record per pair: ``input_ids``
(``[CLS] A [SEP] B [SEP]``), ``token_type_ids`` (0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``) and
``next_sentence_label`` (NSP: 0 when B follows A, 1 when B comes from another document, the convention of
transformers' ``BertForPreTraining``; SOP: 0 in order, 1 when the two segments are swapped). With
``--static-masking`` the ids are already corrupted for masked LM and ``masked_lm_positions``/``masked_lm_ids``
hold the masked positions and their original ids (Google's ``max_predictions_per_seq`` budget).

Input: documents as convert.py reads them (``--doc-separator blank``, the default here: blank lines between
documents). Sentences (``--sentences``): ``lines``, one per line (Google's format); ``split``, the document's text
cut by :func:`split_sentences`; ``auto`` (default), lines for a document of several lines, else split.

The pairs follow Google's ``create_pretraining_data.py``: per document and per dupe, a target length
(``max_seq_len - 3``, or with probability ``short_seq_prob`` a random shorter one); sentences gather into a chunk
until it reaches the target; a random split point makes A; B is the rest of the chunk, or (NSP, half of the
pairs) sentences of a random other document, and then A's unused sentences go back to be read again; the longer
segment loses tokens at a random end until the pair fits. Two changes keep the labels at 50/50 (Google forces a
random B whenever a chunk holds one sentence): a chunk of one long sentence also takes the next sentence, and a
chunk never ends one sentence before the document does; a document's last lone sentence (and a document of one
sentence) makes no pair, though it may still serve as another document's random B.

Every (dupe, document) draws from its own generator seeded by (seed, dupe, document index), and random documents
are drawn by index from the whole split, so the output is byte-identical for any ``--num-workers``. The whole
split is held in memory as token ids, as in Google's script: convert a very large corpus in parts.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import random
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bertforge.data.mds_checks import META_FILE, PAIRS_FORMAT
from bertforge.data.wwm import WordBoundaries, replacement_ids, static_mask, word_boundaries
from bertforge.errors import UserError

OBJECTIVES = ("nsp", "sop")
SENTENCE_MODES = ("auto", "lines", "split")
COLUMNS = {"input_ids": "ndarray:int32", "token_type_ids": "ndarray:uint8", "next_sentence_label": "int8"}
MASK_COLUMNS = {"masked_lm_positions": "ndarray:int32", "masked_lm_ids": "ndarray:int32"}
DOCS_PER_TASK = 64

Document = list[list[int]]  # a document's sentences as token ids


@dataclass(frozen=True)
class PairOptions:
    """How pairs are made (see the module docstring); checked on construction, one line per problem."""

    objective: str = "nsp"
    max_seq_len: int = 128
    dupe_factor: int = 5
    short_seq_prob: float = 0.1
    sentences: str = "auto"
    static_masking: bool = False
    whole_word_mask: bool = False  # static masking: whole words; dynamic: recorded for the collator's option
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int | None = None  # static masking; None: ceil(masked_lm_prob * max_seq_len)

    def __post_init__(self) -> None:
        checks = [
            (self.objective in OBJECTIVES, f"--objective {self.objective}: expected nsp or sop"),
            (self.max_seq_len >= 8, f"--max-seq-len {self.max_seq_len}: a pair needs at least 8 tokens"),
            (self.dupe_factor >= 1, f"--dupe-factor {self.dupe_factor}: must be at least 1"),
            (0 <= self.short_seq_prob <= 1, f"--short-seq-prob {self.short_seq_prob}: must be between 0 and 1"),
            (self.sentences in SENTENCE_MODES, f"--sentences {self.sentences}: expected auto, lines or split"),
            (0 < self.masked_lm_prob < 1, f"--masked-lm-prob {self.masked_lm_prob}: must be between 0 and 1"),
            (1 <= self.max_predictions <= self.max_seq_len - 3,
             f"--max-predictions-per-seq {self.max_predictions}: a pair of --max-seq-len {self.max_seq_len} has "
             f"at most {self.max_seq_len - 3} tokens to predict; choose 1 to {self.max_seq_len - 3} (Google: 20 "
             "at 128)"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @property
    def max_predictions(self) -> int:
        """The static-masking budget cap per pair."""
        if self.max_predictions_per_seq is not None:
            return self.max_predictions_per_seq
        return math.ceil(self.masked_lm_prob * self.max_seq_len)


# ------------------------------------------------------------------------------------------------ sentences
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs etc e.g i.e cf fig no vol col gen gov lt sgt".split())


def split_sentences(text: str) -> list[str]:
    """Cut ``text`` into sentences: after ``.``, ``!`` or ``?`` (and any closing quotes or brackets) followed by
    white space and an upper-case letter, a digit or an opening quote/bracket, but not after a known abbreviation
    (Mr., Dr., e.g., ...) or a single capital (an initial: J. Smith). Line breaks count as spaces. A heuristic for
    English-like text without a dependency; give one sentence per line (``--sentences lines``) for anything else.
    """
    sentences, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        following = text[end.end():end.end() + 1]
        if not (following.isupper() or following.isdigit() or following in "\"'(\u201c\u2018["):
            continue
        before = text[start:end.start()]
        word = before.split()[-1] if before.strip() and not before[-1].isspace() else ""
        if word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper()):
            continue
        sentences.append(text[start:end.end()].strip())
        start = end.end()
    tail = text[start:].strip()
    return [s for s in sentences if s] + ([tail] if tail else [])


def document_sentences(doc: str, mode: str = "auto") -> list[str]:
    """The sentences of one document: its non-empty lines (``lines``), :func:`split_sentences` of its text
    (``split``), or ``auto``: lines when it has several, else split."""
    lines = [line.strip() for line in doc.splitlines() if line.strip()]
    if mode == "lines" or (mode == "auto" and len(lines) > 1):
        return lines
    return split_sentences(" ".join(lines))


# ------------------------------------------------------------------------------------------------ pairs
@dataclass(frozen=True)
class _Masking:
    probability: float
    max_predictions: int
    mask_token_id: int
    special_ids: np.ndarray
    replacements: np.ndarray
    words: WordBoundaries | None


class PairMaker:
    """Makes the pair records of (dupe, document) work units over one split's ``corpus`` (tokenized documents)."""

    def __init__(self, corpus: Sequence[Document], options: PairOptions, seed: int | str, cls_id: int, sep_id: int,
                 masking: _Masking | None = None):
        self.corpus, self.options, self.seed = corpus, options, seed
        self.cls_id, self.sep_id, self.masking = cls_id, sep_id, masking

    def __call__(self, task: tuple[int, int, int]) -> list[dict[str, Any]]:
        """The records of documents ``start:stop`` for dupe ``dupe`` (``task = (dupe, start, stop)``), in order."""
        dupe, start, stop = task
        records = []
        for index in range(start, stop):
            rng = random.Random(f"{self.seed}:{dupe}:{index}")
            records.extend(self.record(a, b, label, rng) for a, b, label in self.pairs(index, rng))
        return records

    def pairs(self, index: int, rng: random.Random) -> Iterator[tuple[list[int], list[int], int]]:
        """(A, B, label) for document ``index``: chunks of sentences up to a target length, split at random."""
        doc, max_tokens = self.corpus[index], self.options.max_seq_len - 3
        target = rng.randint(2, max_tokens) if rng.random() < self.options.short_seq_prob else max_tokens
        chunk: Document = []
        length = i = 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                if i + 1 < len(doc) and (len(chunk) == 1 or i + 2 == len(doc)):  # no lone A, no lone last sentence
                    i += 1
                    chunk.append(doc[i])
                if len(chunk) >= 2:
                    a, b, label, unused = self._split(chunk, index, target, rng)
                    i -= unused  # A's unused sentences are read again
                    _truncate(a, b, max_tokens, rng)
                    yield a, b, label
                chunk, length = [], 0
            i += 1

    def _split(self, chunk: Document, index: int, target: int,
               rng: random.Random) -> tuple[list[int], list[int], int, int]:
        a_end = rng.randint(1, len(chunk) - 1)
        a = [t for sentence in chunk[:a_end] for t in sentence]
        label = int(rng.random() < 0.5)
        if self.options.objective == "nsp" and label:  # B from a random other document
            other = rng.randrange(len(self.corpus) - 1)
            other += other >= index
            doc = self.corpus[other]
            b: list[int] = []
            for sentence in doc[rng.randrange(len(doc)):]:
                b.extend(sentence)
                if len(b) >= target - len(a):
                    break
            return a, b, label, len(chunk) - a_end
        b = [t for sentence in chunk[a_end:] for t in sentence]
        return (b, a, label, 0) if label else (a, b, label, 0)  # SOP label 1: the segments swapped

    def record(self, a: list[int], b: list[int], label: int, rng: random.Random) -> dict[str, Any]:
        """The MDS record of one pair (statically masked when the maker has ``masking``)."""
        ids = np.array([self.cls_id, *a, self.sep_id, *b, self.sep_id], dtype=np.int32)
        types = np.zeros(len(ids), dtype=np.uint8)
        types[len(a) + 2:] = 1
        rec = {"input_ids": ids, "token_type_ids": types, "next_sentence_label": label}
        m = self.masking
        if m is not None:
            maskable = ~np.isin(ids, m.special_ids)
            maskable[[0, len(a) + 1, len(ids) - 1]] = False
            corrupted, positions, originals = static_mask(
                ids, maskable, rng, probability=m.probability, max_predictions=m.max_predictions,
                mask_token_id=m.mask_token_id, replacements=m.replacements, words=m.words)
            rec |= {"input_ids": corrupted, "masked_lm_positions": positions.astype(np.int32),
                    "masked_lm_ids": originals.astype(np.int32)}
        return rec


def _truncate(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Drop tokens of the longer segment, from its front or back at random, until ``len(a) + len(b) <= max``."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


# ------------------------------------------------------------------------------------------------ conversion
def _documents(jobs: Sequence[tuple[str | None, Sequence[Callable[[], Iterable[str]]]]], names: Sequence[str],
               seed: int, val_ratio: float, options: PairOptions) -> tuple[dict[str, list[list[str]]], dict]:
    """Every split's documents as sentences, checked (one line each) before any tokenizing."""
    texts: dict[str, list[str]] = {n: [] for n in names}
    inputs = single = 0
    for split, readers in jobs:
        docs = []
        for read in readers:
            found = [t for t in read() if t.strip()]
            inputs, single = inputs + 1, single + (len(found) == 1)
            docs.extend(found)
        if split is not None:
            texts[split].extend(docs)
            continue
        n_val = min(len(docs) - 1, max(1, round(len(docs) * val_ratio)))  # the documents convert.py puts in val
        is_val = np.zeros(len(docs), dtype=bool)
        is_val[np.random.default_rng(seed).permutation(len(docs))[:n_val]] = True
        for doc, val in zip(docs, is_val):
            texts[names[int(val)]].append(doc)
    if single:
        _warn(f"{single} of {inputs} inputs hold one document only (no blank line between documents): sentence "
              "pairs need documents; separate them with blank lines (--doc-separator blank)")
    docs = {n: [document_sentences(t, options.sentences) for t in split_texts] for n, split_texts in texts.items()}
    for name, split_docs in docs.items():
        if options.objective == "nsp" and len(split_docs) < 2:
            raise UserError(f"split '{name}': {len(split_docs)} document; NSP takes random B segments from other "
                            "documents: separate documents with blank lines (--doc-separator blank)")
        if not any(len(d) > 1 for d in split_docs):
            raise UserError(f"split '{name}': no document has two sentences, so no pair can be made; put one "
                            "sentence per line (--sentences lines) or let them be split (--sentences split)")
    lone = sum(len(d) == 1 for split_docs in docs.values() for d in split_docs)
    total = sum(map(len, docs.values()))
    if lone:
        _warn(f"{lone} of {total} documents have one sentence only: they make no pair (only random B segments); "
              "check --sentences and --doc-separator if that is most of them")
    return docs, {"documents": total, "one_sentence_documents": lone, "single_document_inputs": single}


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _encode(tok: Any, space_prefix: bool, docs: list[list[str]]) -> list[Document]:
    """Token ids of each sentence of ``docs`` (empty sentences dropped); later sentences get the space they had
    in running text when the tokenizer keeps spaces (byte-level BPE)."""
    flat = [" " + s if space_prefix and j else s for doc in docs for j, s in enumerate(doc)]
    ids = tok(flat, add_special_tokens=False, verbose=False)["input_ids"] if flat else []
    out, k = [], 0
    for doc in docs:
        out.append([sentence for sentence in ids[k:k + len(doc)] if sentence])
        k += len(doc)
    return out


def _imap(fn: Callable[[Any], Any], tasks: Sequence[Any], num_workers: int) -> Iterator[Any]:
    """``fn`` over ``tasks`` in order, in ``num_workers`` processes (forked where possible: ``fn`` is not copied)."""
    if num_workers == 1:
        yield from map(fn, tasks)
        return
    from bertforge.data.convert import _init_worker, _worker_encode  # convert.py's worker set-up (signals, fn)

    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ctx.Pool(num_workers, initializer=_init_worker, initargs=(fn,)) as pool:
        yield from pool.imap(_worker_encode, tasks)
        pool.close()  # let the workers exit on their own, as convert.py does
        pool.join()


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)


def _tokenize(docs: list[list[str]], tok: Any, num_workers: int, desc: str) -> list[Document]:
    space_prefix = tok.encode(" a", add_special_tokens=False) != tok.encode("a", add_special_tokens=False)
    chunks = [docs[i:i + DOCS_PER_TASK] for i in range(0, len(docs), DOCS_PER_TASK)]
    corpus: list[Document] = []
    with _bar(len(docs), desc) as bar:
        for encoded in _imap(functools.partial(_encode, tok, space_prefix), chunks, num_workers):
            corpus.extend(doc for doc in encoded if doc)
            bar.update(len(encoded))
    return corpus


def _masking(tok: Any, options: PairOptions) -> _Masking | None:
    if not options.static_masking:
        if options.whole_word_mask:
            _warn("--whole-word-mask without --static-masking: the data holds no masks; the run masks whole words "
                  "with collator: {name: nsp, whole_word_mask: true} (recorded in bertforge_meta.json)")
        return None
    words = word_boundaries(tok, "--whole-word-mask") if options.whole_word_mask else None
    special = np.asarray(sorted(set(tok.all_special_ids)), dtype=np.int64)
    return _Masking(options.masked_lm_prob, options.max_predictions, tok.mask_token_id, special,
                    replacement_ids(len(tok), special.tolist()), words)


def convert_pairs(jobs: Sequence[tuple[str | None, Sequence[Callable[[], Iterable[str]]]]], names: Sequence[str],
                  out: Path, tok: Any, options: PairOptions, *, seed: int, val_ratio: float, num_workers: int,
                  writer: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``{out}/{split}/`` pair shards and ``{out}/bertforge_meta.json``; return the meta dict.

    ``jobs`` are convert.py's (split, readers): split None cuts the documents into ``names`` by ``val_ratio`` as
    convert.py does. ``writer``: MDSWriter keyword arguments; ``meta``: convert.py's fields to record.
    """
    from streaming import MDSWriter

    missing = [t for t in ("cls_token", "sep_token", "mask_token") if tok is None or getattr(tok, t) is None]
    if missing:
        raise UserError(f"--tokenizer {meta.get('tokenizer')}: sentence pairs need [CLS], [SEP] and [MASK] tokens; "
                        f"this tokenizer has no {', '.join(missing)}")
    if num_workers > 1:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    masking = _masking(tok, options)
    docs, stats = _documents(jobs, names, seed, val_ratio, options)
    written, random_b = {}, {}
    for name in names:
        corpus = _tokenize(docs[name], tok, num_workers, f"tokenizing {name}")
        if options.objective == "nsp" and len(corpus) < 2:
            raise UserError(f"split '{name}': fewer than 2 documents hold any token; NSP needs other documents")
        maker = PairMaker(corpus, options, f"{seed}:{name}", tok.cls_token_id, tok.sep_token_id, masking)
        tasks = [(dupe, start, min(start + DOCS_PER_TASK, len(corpus)))
                 for dupe in range(options.dupe_factor) for start in range(0, len(corpus), DOCS_PER_TASK)]
        count = ones = 0
        columns = COLUMNS | (MASK_COLUMNS if masking else {})
        with MDSWriter(out=str(out / name), columns=columns, **writer) as mds, \
                _bar(len(corpus) * options.dupe_factor, f"pairs {name}") as bar:
            for (_, start, stop), records in zip(tasks, _imap(maker, tasks, num_workers)):
                for record in records:
                    mds.write(record)
                    ones += record["next_sentence_label"]
                count += len(records)
                bar.update(stop - start)
        written[name], random_b[name] = count, round(ones / max(count, 1), 4)
    from bertforge.data.tokenizer import vocab_fingerprint

    meta = meta | {"format": PAIRS_FORMAT, "vocab_size": len(tok), "tokenizer_fingerprint": vocab_fingerprint(tok),
                   "concat_tokens": None, "splits": written,
                   "trained_tokenizer": None, "objective": options.objective, "max_seq_len": options.max_seq_len,
                   "pairs": asdict(options) | {"max_predictions_per_seq": options.max_predictions, "seed": seed,
                                               "label_1_share": random_b, **stats}}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


# ------------------------------------------------------------------------------------------------ command line
_FLAGS = {"dupe_factor": "--dupe-factor", "short_seq_prob": "--short-seq-prob", "sentences": "--sentences",
          "static_masking": "--static-masking", "whole_word_mask": "--whole-word-mask",
          "masked_lm_prob": "--masked-lm-prob", "max_predictions_per_seq": "--max-predictions-per-seq"}


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--objective nsp|sop`` options of ``convert_dataset.py``."""
    g = parser.add_argument_group("sentence pairs (BERT's next-sentence / ALBERT's sentence-order prediction)")
    g.add_argument("--objective", choices=OBJECTIVES, help="write [CLS] A [SEP] B [SEP] pairs with their label "
                   "(needs --tokenizer; --max-seq-len defaults to 128, --doc-separator to blank)")
    g.add_argument("--dupe-factor", type=int, help="passes over the data, each with new pairs and masks (default 5)")
    g.add_argument("--short-seq-prob", type=float, help="share of pairs with a random shorter length (default 0.1)")
    g.add_argument("--sentences", choices=SENTENCE_MODES,
                   help="one sentence per line (lines), split the text (split), or by document (auto, default)")
    g.add_argument("--static-masking", action="store_true", help="store masked-LM masks in the data (Google's way)")
    g.add_argument("--whole-word-mask", action="store_true", help="--static-masking: mask whole words")
    g.add_argument("--masked-lm-prob", type=float, help="--static-masking: share of tokens to mask (default 0.15)")
    g.add_argument("--max-predictions-per-seq", type=int,
                   help="--static-masking: most masked tokens per pair (default ceil(masked-lm-prob * max-seq-len))")


def pair_options(args: argparse.Namespace) -> PairOptions | None:
    """:class:`PairOptions` from parsed arguments (None without ``--objective``); stray pair options are errors."""
    given = {key: getattr(args, key) for key in _FLAGS if getattr(args, key) not in (None, False)}
    if args.objective is None:
        if given:
            raise UserError(f"{_FLAGS[next(iter(given))]}: only applies with --objective nsp|sop; add it or drop it")
        return None
    if args.sft:
        raise UserError("--objective: cannot be combined with --sft; convert pairs and chat data separately")
    from bertforge.data.sft import sft_options

    sft_options(argparse.Namespace(**(vars(args) | {"max_seq_len": None})))  # other --sft options are errors
    if not args.static_masking:
        stray = [_FLAGS[k] for k in ("masked_lm_prob", "max_predictions_per_seq") if k in given]
        if stray:
            raise UserError(f"{stray[0]}: only applies with --static-masking (dynamic masking uses the run's "
                            "mlm_probability); add --static-masking or drop it")
    return PairOptions(args.objective, args.max_seq_len or 128, **given)
