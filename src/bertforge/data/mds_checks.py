"""Check an MDS split folder before streaming from it, so that bad data fails with one clear line."""

from __future__ import annotations

import json
import os

from bertforge.errors import ConfigError, UserError

META_FILE = "bertforge_meta.json"
DATA_TOKENIZER_DIR = "tokenizer"
"""Folder, beside the split folders, of the tokenizer ``convert_dataset.py --train-tokenizer`` trains."""
PAIRS_FORMAT = "pairs"
"""``format`` in the meta of sentence-pair folders (``--objective nsp|sop``), which also record ``objective``
(nsp or sop) and ``max_seq_len`` (the longest pair), plus the pair options under ``pairs``."""


def split_dir(local: str, split: str | None) -> str:
    """The folder that holds ``index.json`` for ``split`` under ``local``."""
    return os.path.join(local, split) if split else local


def check_mds_split(local: str, split: str | None, key: str) -> int:
    """Check the local MDS split: folder, index, non-empty shards whose files exist with the right size.

    Returns the number of samples. Raises :class:`UserError` naming the config ``key`` and path.
    """
    folder = split_dir(local, split)
    fix = "run convert_dataset.py to create it, or point the key at an existing MDS folder"
    if not os.path.isdir(folder):
        raise UserError(f"{key}: data folder not found: {folder}; {fix}")
    index_path = os.path.join(folder, "index.json")
    if not os.path.isfile(index_path):
        raise UserError(f"{key}: {folder} has no index.json, so it is not an MDS split; {fix}")
    try:
        with open(index_path) as f:
            shards = json.load(f)["shards"]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{key}: {index_path} is corrupt ({err}); re-run convert_dataset.py") from None
    total = sum(int(s.get("samples", 0)) for s in shards)
    if not shards or total == 0:
        raise UserError(f"{key}: {folder} holds no samples (empty shard set); {fix}")
    for shard in shards:
        data = shard.get("zip_data") or shard.get("raw_data") or {}
        path = os.path.join(folder, data.get("basename", ""))
        if not os.path.isfile(path):
            raw = os.path.join(folder, (shard.get("raw_data") or {}).get("basename", ""))
            if os.path.isfile(raw):
                continue
            raise UserError(f"{key}: shard file missing: {path}; re-run convert_dataset.py")
        if os.path.getsize(path) != data.get("bytes"):
            raise UserError(
                f"{key}: shard {path} is corrupt or truncated ({os.path.getsize(path)} bytes, "
                f"index says {data.get('bytes')}); re-run convert_dataset.py"
            )
    return total


def read_meta(local: str) -> dict:
    """The converter's sidecar metadata for an MDS folder ({} when absent)."""
    path = os.path.join(local, META_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def check_pairs_fit(local: str, max_seq_len: int, key: str = "max_seq_len") -> None:
    """Refuse, naming ``key``, a sentence-pair folder whose pairs can be longer than ``max_seq_len`` (a pair cannot
    be cut: it would lose B's end and its [SEP])."""
    meta = read_meta(local)
    if meta.get("format") == PAIRS_FORMAT and int(meta.get("max_seq_len") or 0) > max_seq_len:
        raise UserError(f"{key}: {max_seq_len} is shorter than the sentence pairs in {local} (up to "
                        f"{meta['max_seq_len']} tokens); set {key}: {meta['max_seq_len']} or convert with "
                        f"--max-seq-len {max_seq_len}")


def check_rows_fit(local: str, max_seq_len: int, key: str = "max_seq_len") -> None:
    """Refuse (one line naming ``key``) a ``max_seq_len`` that would cut the rows of a folder whose rows were made to
    a length: sentence pairs (:func:`check_pairs_fit`), SFT samples (an answer would lose its end marker) or
    ``--concat-tokens`` chunks (part of every chunk would never be trained on). Plain documents are cut as
    documented."""
    check_pairs_fit(local, max_seq_len, key)
    meta = read_meta(local)
    sft_len = int((meta.get("sft") or {}).get("max_seq_len") or 0) if meta.get("format") == "sft" else 0
    if sft_len > max_seq_len:
        raise ConfigError(key, f"{max_seq_len} is shorter than the SFT samples in {local} (up to {sft_len} tokens); "
                          f"rows would be cut and answers lose their end marker: set {key}: {sft_len} or convert "
                          f"with --max-seq-len {max_seq_len}")
    chunk = int(meta.get("concat_tokens") or 0) if meta.get("format") == "tokens" else 0
    if chunk and chunk + 2 > max_seq_len:
        raise ConfigError(key, f"{max_seq_len} cannot hold the {chunk}-token chunks of {local} plus [CLS] and [SEP]; "
                          f"every chunk would be cut: set {key}: {chunk + 2} or convert with --concat-tokens "
                          f"{max_seq_len - 2}")
