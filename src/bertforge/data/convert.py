"""Convert plain text, JSONL or Hugging Face datasets into mosaicml-streaming MDS shards.

Text mode writes ``{'text': 'str'}``; token mode writes ``{'input_ids': 'ndarray:uint32'}`` without special
tokens (the reader adds [CLS]/[SEP]); ``--sft`` writes chat conversations as ids + prompt length (see
:mod:`bertforge.data.sft`). ``bertforge_meta.json`` next to the split folders records the settings.
``--train-tokenizer N`` (text mode) also trains an N-token WordPiece tokenizer on the train split and saves it in
``{out}/tokenizer/``, the one a run with ``tokenizer.name: null`` and the same settings would train;
``--tokenizer-also FILE`` adds the texts of other files to its training (e.g. the chat data a model pretrained here
will be finetuned on), and runs then name that tokenizer. Inputs are read by :mod:`bertforge.data.readers`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bertforge.data import nsp_pairs
from bertforge.data import sft as sft_data
from bertforge.data.mds_checks import DATA_TOKENIZER_DIR as TOKENIZER_DIR
from bertforge.data.mds_checks import META_FILE as META_NAME
from bertforge.data.readers import iter_docs, plan_jobs, quiet_hub, tokenizer_text_readers
from bertforge.errors import UserError

DOCS_PER_CHUNK = 256
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

_WORKER_ENCODE: Any = None


def _parse_splits(splits: str | Sequence[str]) -> list[str]:
    names = [s.strip() for s in splits.split(",")] if isinstance(splits, str) else [str(s) for s in splits]
    if not names or any(not _SPLIT_NAME.match(n) for n in names) or len(set(names)) != len(names):
        raise UserError(f"--splits {','.join(names)}: expected distinct comma-separated names like train,val")
    return names


def _load_tokenizer(name: str) -> Any:
    path = Path(name).expanduser()
    if name.startswith(("/", "./", "../", "~")) and not path.exists():
        raise UserError(f"--tokenizer {name}: no such folder; pass a tokenizer folder or a Hub name")
    from bertforge.data.tokenizer import load_tokenizer

    with quiet_hub():  # token ids only: no special token is required here (the run checks its own needs)
        return load_tokenizer(str(path) if path.exists() else name, key="--tokenizer", required=())


def _encode(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [np.asarray(x, dtype=np.uint32) for x in ids]


def _init_worker(encode: Callable[[list], list]) -> None:
    # A forked worker inherits the parent's signal handlers (e.g. Composer's SIGTERM -> sys.exit); restore the
    # defaults so that Pool.terminate() always ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    global _WORKER_ENCODE
    _WORKER_ENCODE = encode


def _worker_encode(docs: list) -> list:
    return _WORKER_ENCODE(docs)


def _samples(docs: Iterable[Any], encode: Callable[[list], list] | None, pool: Any) -> Iterator[Any]:
    """Documents as they are (text mode) or encoded by ``encode`` (chunk -> list), in input order."""
    if encode is None:
        yield from docs
        return
    it = iter(docs)
    chunks = iter(lambda: list(itertools.islice(it, DOCS_PER_CHUNK)), [])
    # imap keeps the chunk order, so the output does not depend on the worker count
    for encoded in pool.imap(_worker_encode, chunks) if pool else map(encode, chunks):
        yield from encoded


class _Packer:
    """Concatenate id arrays with a separator between documents; cut chunks of exactly ``size``."""

    def __init__(self, size: int, sep: int):
        self.size, self.sep = size, np.array([sep], dtype=np.uint32)
        self.buf: np.ndarray | None = None  # None until the first document

    def add(self, ids: np.ndarray) -> list[np.ndarray]:
        self.buf = ids if self.buf is None else np.concatenate([self.buf, self.sep, ids])
        full = len(self.buf) // self.size
        out = [self.buf[i * self.size:(i + 1) * self.size].copy() for i in range(full)]
        self.buf = self.buf[full * self.size:]
        return out


def _check_options(doc_separator: str, num_workers: int, tokenizer: str | None, concat_tokens: int | None,
                   shard_size: int | str, compression: str | None, train_tokenizer: int | None) -> int:
    """Validate the simple options; return the shard size limit in bytes."""
    from streaming.base.compression import get_compressions
    from streaming.base.util import bytes_to_int

    if doc_separator not in ("line", "blank"):
        raise UserError(f"--doc-separator {doc_separator}: expected 'line' or 'blank'")
    if num_workers < 1:
        raise UserError(f"--num-workers {num_workers}: must be at least 1")
    if concat_tokens is not None and (tokenizer is None or concat_tokens < 1):
        raise UserError(f"--concat-tokens {concat_tokens}: needs --tokenizer and a positive length")
    if train_tokenizer is not None and (tokenizer is not None or train_tokenizer < 32):
        raise UserError(f"--train-tokenizer {train_tokenizer}: needs text mode (no --tokenizer) and a vocabulary "
                        "size of at least 32")
    try:
        size_limit = bytes_to_int(shard_size)
    except (ValueError, TypeError, AttributeError):
        size_limit = -1
    if not 0 < size_limit < 2**32:
        raise UserError(f"--shard-size {shard_size}: expected a size like 64mb or a byte count below 4gb")
    if compression is not None and compression not in get_compressions():
        choices = ", ".join(sorted({c.split(":")[0] for c in get_compressions()}))
        raise UserError(f"--compression {compression}: unknown; choose one of {choices} (or NAME:LEVEL)")
    return size_limit


def convert(inputs: Sequence[str | Path] | str | Path | None, out: str | Path, *,
            tokenizer: str | None = None, splits: str | Sequence[str] = ("train", "val"),
            val_ratio: float = 0.05, seed: int = 17, text_field: str = "text", doc_separator: str = "line",
            concat_tokens: int | None = None, shard_size: int | str = "64mb", compression: str | None = None,
            num_workers: int = 1, overwrite: bool = False, split_inputs: dict[str, Any] | None = None,
            hf_dataset: str | None = None, hf_config: str | None = None, train_tokenizer: int | None = None,
            lowercase: bool = True, sft: sft_data.SFTOptions | None = None,
            pairs: nsp_pairs.PairOptions | None = None, tokenizer_also: Sequence[str] = ()) -> dict[str, Any]:
    """Write ``{out}/{split}/`` MDS shards plus ``{out}/bertforge_meta.json``; return the meta dict.

    ``pairs`` writes NSP/SOP sentence pairs instead (:mod:`bertforge.data.nsp_pairs`; needs ``tokenizer``).
    ``sft`` reads conversations (alpaca records or messages lists) and writes SFT samples (needs ``tokenizer``).
    ``split_inputs`` maps split names to a path or list of paths and replaces ``inputs`` and ``splits``.
    ``train_tokenizer`` (a vocabulary size) also trains a WordPiece tokenizer (``lowercase``) on the 'train'
    split (else the first) into ``{out}/tokenizer/``, and also on the texts of the ``tokenizer_also`` files (e.g.
    the chat data a model pretrained on this corpus will be finetuned on; they are not written as samples).
    """
    from streaming import MDSWriter

    inputs = [str(inputs)] if isinstance(inputs, (str, Path)) else [str(p) for p in inputs or []]
    if sum(bool(x) for x in (inputs, split_inputs, hf_dataset)) != 1:
        raise UserError("give exactly one of --input PATH, --split-input SPLIT=PATH or --hf-dataset NAME")
    if split_inputs:
        split_inputs = {str(k): [str(p) for p in ([v] if isinstance(v, (str, Path)) else v)]
                        for k, v in split_inputs.items()}
    names = _parse_splits(list(split_inputs) if split_inputs else splits)
    size_limit = _check_options(doc_separator, num_workers, tokenizer, concat_tokens, shard_size, compression,
                                train_tokenizer)
    if sft is not None and (tokenizer is None or concat_tokens):
        raise UserError("--sft: needs --tokenizer and cannot pack (drop --concat-tokens)")
    if pairs is not None and (tokenizer is None or concat_tokens or sft or train_tokenizer):
        raise UserError("--objective: needs --tokenizer, without --concat-tokens, --sft or --train-tokenizer")
    if tokenizer_also and train_tokenizer is None:
        raise UserError("--tokenizer-also: only applies to --train-tokenizer VOCAB_SIZE; add it or drop "
                        "--tokenizer-also")
    if train_tokenizer is not None and TOKENIZER_DIR in names:
        raise UserError(f"--splits: a split named '{TOKENIZER_DIR}' would hold the trained tokenizer; rename it")
    jobs = plan_jobs(inputs, split_inputs, (hf_dataset, hf_config) if hf_dataset else None,
                 names, text_field if sft is None else None, doc_separator)
    extra_texts = tokenizer_text_readers(tokenizer_also, text_field, doc_separator)
    if any(split is None for split, _ in jobs) and not 0 < val_ratio < 1:
        raise UserError(f"--val-ratio {val_ratio}: must be between 0 and 1 (exclusive)")
    out = Path(out).expanduser()
    targets = [out / n for n in names] + ([out / TOKENIZER_DIR] if train_tokenizer is not None else [])
    for target in targets:
        if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
            raise UserError(f"{target}: output exists and is not empty; pass --overwrite to replace it")
    tok = _load_tokenizer(tokenizer) if tokenizer else None
    sep = None
    if tok is not None and concat_tokens:
        sep = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        if sep is None:
            raise UserError(f"--concat-tokens: tokenizer {tokenizer} has no sep/eos token to join documents")

    if hf_dataset:
        sources = [f"hf:{hf_dataset}" + (f":{hf_config}" if hf_config else "")]
    else:
        sources = inputs or [f"{k}={p}" for k, v in (split_inputs or {}).items() for p in v]
    counts = [sum(1 for _ in iter_docs(readers)) for _, readers in jobs]  # first pass: count, validate
    if sum(counts) == 0:
        raise UserError(f"no documents found in {', '.join(sources)}; "
                        "check the path, --text-field and --doc-separator")
    for (split, _), count in zip(jobs, counts):
        if split is not None and count == 0:
            raise UserError(f"split '{split}': no documents found in its input; check --split-input {split}=")
        if split is None and count < 2:
            raise UserError(f"only {count} document in {', '.join(sources)}: too few for "
                            f"--splits {','.join(names)}; add data or use --splits {names[0]}")
    if extra_texts and sum(1 for _ in iter_docs(extra_texts)) == 0:  # reads them all: bad records fail here
        raise UserError(f"--tokenizer-also {', '.join(tokenizer_also)}: no texts found; check the paths and "
                        "--text-field")

    for target in targets:
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if pairs is not None:  # sentence pairs: nsp_pairs reads the documents, builds the pairs and writes all
        meta = {"tokenizer": tokenizer, "text_field": text_field, "doc_separator": doc_separator, "inputs": sources}
        return nsp_pairs.convert_pairs(jobs, names, out, tok, pairs, seed=seed, val_ratio=val_ratio,
                                       num_workers=num_workers, meta=meta,
                                       writer={"compression": compression, "size_limit": size_limit})
    encode = None if tok is None else sft_data.SFTEncoder(tok, sft) if sft else functools.partial(_encode, tok)
    stats = sft_data.SFTStats(encode) if sft else None
    columns = sft_data.COLUMNS if sft else {"input_ids": "ndarray:uint32"} if tok is not None else {"text": "str"}
    written = dict.fromkeys(names, 0)
    pool = None
    with contextlib.ExitStack() as stack:
        if tok is not None and num_workers > 1:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            fork = "fork" in multiprocessing.get_all_start_methods()  # fork: no re-import per worker
            ctx = multiprocessing.get_context("fork" if fork else None)
            pool = stack.enter_context(ctx.Pool(num_workers, initializer=_init_worker, initargs=(encode,)))
        writers = {n: stack.enter_context(MDSWriter(out=str(out / n), columns=columns,
                                                    compression=compression, size_limit=size_limit))
                   for n in names}
        packers = {n: _Packer(concat_tokens, sep) for n in names} if concat_tokens else {}
        bar = stack.enter_context(tqdm(total=sum(counts), unit="doc", desc="converting", file=sys.stderr,
                                       mininterval=0.5, dynamic_ncols=True))
        for (split, readers), count in zip(jobs, counts):
            is_val = None
            if split is None:  # seeded shuffle of document indices, then cut off the val share
                n_val = min(count - 1, max(1, round(count * val_ratio)))
                is_val = np.zeros(count, dtype=bool)
                is_val[np.random.default_rng(seed).permutation(count)[:n_val]] = True
            for index, sample in enumerate(_samples(iter_docs(readers), encode, pool)):
                bar.update(1)
                name = split if is_val is None else names[int(is_val[index])]
                if tok is None:
                    items = [{"text": sample}]
                elif stats is not None:
                    items = stats.items(sample)
                elif len(sample) == 0:
                    continue
                elif concat_tokens:
                    items = [{"input_ids": chunk} for chunk in packers[name].add(sample)]
                else:
                    items = [{"input_ids": sample}]
                for item in items:
                    writers[name].write(item)
                written[name] += len(items)
        if pool is not None:  # let the workers finish and exit on their own (no terminate signal needed)
            pool.close()
            pool.join()

    from bertforge.data.tokenizer import vocab_fingerprint

    meta = {"format": "sft" if sft else "tokens" if tok is not None else "text", "tokenizer": tokenizer,
            "vocab_size": len(tok) if tok is not None else None,
            "tokenizer_fingerprint": vocab_fingerprint(tok) if tok is not None else None, "text_field": text_field,
            "doc_separator": doc_separator, "concat_tokens": concat_tokens, "inputs": sources,
            "splits": written, "trained_tokenizer": None} | ({"sft": stats.meta()} if stats else {})
    if train_tokenizer is not None:
        meta["trained_tokenizer"] = _train_tokenizer(out, "train" if "train" in names else names[0],
                                                     train_tokenizer, lowercase, extra_texts, tokenizer_also)
    (out / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def _train_tokenizer(out: Path, split: str, vocab_size: int, lowercase: bool, extra_texts: list,
                     also: Sequence[str]) -> dict[str, Any]:
    """Train the WordPiece tokenizer on the written ``split`` as a run would (plus ``extra_texts``, read from the
    ``also`` paths); return its meta record."""
    from bertforge.data.tokenizer import MDSTexts, data_tokenizer_meta, train_wordpiece

    print(f"training a {vocab_size}-token WordPiece tokenizer on {out / split}"
          + "".join(f" + {p}" for p in also), file=sys.stderr)
    tok = train_wordpiece(itertools.chain(MDSTexts(str(out / split)), iter_docs(extra_texts)), vocab_size, lowercase)
    tok.save_pretrained(str(out / TOKENIZER_DIR))
    return data_tokenizer_meta(split, vocab_size, lowercase) | ({"also": list(also)} if also else {})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def _parse_split_inputs(values: list[str] | None) -> dict[str, list[str]] | None:
    if not values:
        return None
    result: dict[str, list[str]] = {}
    for value in values:
        name, eq, path = value.partition("=")
        if not eq or not name.strip() or not path.strip():
            raise UserError(f"--split-input {value}: expected SPLIT=PATH, e.g. train=data/train.txt")
        result.setdefault(name.strip(), []).append(path.strip())
    return result


def main(argv: list[str]) -> dict[str, Any]:
    """Parse command-line arguments and run :func:`convert`; return the meta dict."""
    p = _Parser(prog="convert_dataset.py", description="Convert text/JSONL/HF datasets to MDS shards.")
    p.add_argument("--input", action="append", default=[], metavar="PATH",
                   help="text/JSONL file, a folder of them, or a save_to_disk folder (repeatable)")
    p.add_argument("--split-input", action="append", metavar="SPLIT=PATH", help="input of one split")
    p.add_argument("--hf-dataset", metavar="NAME", help="Hugging Face Hub dataset name (needs network)")
    p.add_argument("--hf-config", metavar="CONFIG", help="Hub dataset config name")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder; one subfolder per split")
    p.add_argument("--tokenizer", metavar="NAME_OR_PATH", help="store token ids (no special tokens)")
    p.add_argument("--splits", default=None, help="comma-separated split names (default: train,val)")
    p.add_argument("--val-ratio", type=float, default=0.05, help="share of documents for the 2nd split")
    p.add_argument("--seed", type=int, default=17, help="seed of the train/val split")
    p.add_argument("--text-field", default="text", help="JSONL key / dataset column holding the text")
    p.add_argument("--doc-separator", choices=("line", "blank"),
                   help="text files: one document per line (default), or blank-line separated documents")
    p.add_argument("--concat-tokens", type=int, metavar="N", help="pack token ids into chunks of exactly N")
    p.add_argument("--shard-size", default="64mb", help="shard size limit, e.g. 64mb or a byte count")
    p.add_argument("--compression", default=None, help="shard compression, e.g. zstd")
    p.add_argument("--num-workers", type=int, default=1, help="tokenizer processes")
    p.add_argument("--overwrite", action="store_true", help="replace existing output split folders")
    p.add_argument("--train-tokenizer", type=int, metavar="VOCAB_SIZE",
                   help="also train a WordPiece tokenizer on the train split into OUT/tokenizer (text mode)")
    p.add_argument("--cased", action="store_true", help="--train-tokenizer: keep case (default: lowercase)")
    p.add_argument("--tokenizer-also", action="append", default=[], metavar="PATH",
                   help="--train-tokenizer: also learn from this file's texts, e.g. the SFT data a model "
                   "pretrained here will be finetuned on (text, JSONL --text-field, or chat records; repeatable)")
    sft_data.add_sft_arguments(p)
    nsp_pairs.add_pair_arguments(p)
    args = p.parse_args(argv)
    pairs = nsp_pairs.pair_options(args)
    if args.cased and args.train_tokenizer is None:
        raise UserError("--cased: only applies to --train-tokenizer VOCAB_SIZE; add it or drop --cased")
    split_inputs = _parse_split_inputs(args.split_input)
    if split_inputs and args.splits is not None and _parse_splits(args.splits) != list(split_inputs):
        raise UserError(f"--splits {args.splits}: with --split-input the splits are "
                        f"{','.join(split_inputs)}; drop --splits")
    meta = convert(args.input, args.out, tokenizer=args.tokenizer, splits=args.splits or "train,val",
                   val_ratio=args.val_ratio, seed=args.seed, text_field=args.text_field,
                   doc_separator=args.doc_separator or ("blank" if pairs else "line"), concat_tokens=args.concat_tokens,
                   shard_size=args.shard_size, compression=args.compression, num_workers=args.num_workers,
                   overwrite=args.overwrite, split_inputs=split_inputs, hf_dataset=args.hf_dataset,
                   hf_config=args.hf_config, train_tokenizer=args.train_tokenizer, lowercase=not args.cased,
                   sft=None if pairs else sft_data.sft_options(args), pairs=pairs,
                   tokenizer_also=args.tokenizer_also)
    counts = ", ".join(f"{k}={v}" for k, v in meta["splits"].items())
    print(f"wrote {args.out} ({meta['format']}): {counts}", file=sys.stderr)
    return meta
