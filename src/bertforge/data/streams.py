"""Where a loader's samples come from: one MDS folder, or a mixture of mosaicml-streaming ``Stream`` sources.

A dataset block becomes the source arguments of ``StreamingDataset`` here; its sources are checked before any
work (local folders, remote URL schemes and their client packages, one tokenizer and one sample format per
loader), and the samples per epoch that streaming resolved for each source are logged once. Sampling,
weighting, shuffling and resumption are streaming's own.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from composer.utils import dist
from streaming import Stream
from streaming.base.storage.download import DOWNLOADER_MAPPINGS
from streaming.base.util import bytes_to_int

from bertforge.data.mds_checks import check_mds_split, read_meta
from bertforge.errors import ConfigError, UserError

log = logging.getLogger(__name__)

CLIENTS = {"s3": ("boto3", "boto3"), "gs": ("google.cloud.storage", "google-cloud-storage"),
           "oci": ("oci", "oci"), "azure": ("azure.storage.blob", "azure-storage-blob"),
           "azure-dl": ("azure.storage.filedatalake", "azure-storage-file-datalake"),
           "hf": ("huggingface_hub", "huggingface_hub"), "sftp": ("paramiko", "paramiko"),
           "dbfs": ("databricks.sdk", "databricks-sdk"), "dbfs-uc": ("databricks.sdk", "databricks-sdk"),
           "alipan": ("alipcs_py", "alipcs-py")}
"""Per remote scheme: the module mosaicml-streaming imports to read it, and its pip package."""


@dataclass(frozen=True)
class Source:
    """One source of a loader: the key path of its block (``train_loader.dataset.streams[1]``) and its folders."""

    key: str
    local: str
    remote: str | None
    split: str | None

    @property
    def data_dir(self) -> str:
        """The folder holding the whole data on this machine: a local remote, else ``local``."""
        return local_path(self.remote) or self.local


def sources(ds, key: str) -> list[Source]:
    """The sources of dataset block ``ds`` (found at ``key``): each of its ``streams``, or its one folder."""
    if not ds.streams:
        return [Source(key, ds.local, ds.remote, ds.split)]
    return [Source(f"{key}.streams[{i}]", s.local, s.remote, s.split or ds.split) for i, s in enumerate(ds.streams)]


def _scheme(remote: str) -> str:
    scheme = urllib.parse.urlparse(remote).scheme
    return "dbfs-uc" if scheme == "dbfs" and remote.startswith("dbfs:/Volumes") else scheme


def local_path(remote: str | None) -> str | None:
    """The path of a remote on this machine's filesystem (a plain path or a ``file://`` URL), else None."""
    if not remote:
        return None
    parsed = urllib.parse.urlparse(remote)
    if parsed.scheme == "file":
        return parsed.path
    return remote if parsed.scheme == "" else None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def check_remote(remote: str, key: str) -> None:
    """Refuse a remote that mosaicml-streaming cannot read here: an unknown scheme or a missing client package."""
    scheme = _scheme(remote)
    if scheme == "file":
        if urllib.parse.urlparse(remote).netloc not in ("", "localhost"):
            raise ConfigError(key, f"{remote} names a host; write file:///absolute/path (three slashes)")
        return
    if scheme not in DOWNLOADER_MAPPINGS:
        known = ", ".join(f"{s}://" for s in sorted(DOWNLOADER_MAPPINGS) if s and s != "dbfs-uc")
        raise ConfigError(key, f"mosaicml-streaming cannot read '{scheme}://' remotes ({remote}); use one of "
                          f"{known}, dbfs:/Volumes/..., file:// or a local path")
    module, package = CLIENTS.get(scheme, (None, None))
    if module and not _importable(module):
        raise ConfigError(key, f"reading {scheme}:// remotes needs the '{package}' package: pip install {package}")


def check_sources(ds, key: str) -> None:
    """Check dataset block ``ds`` before any work: each source's remote (scheme, client package) and, where the
    data is on this machine, its MDS split (:func:`check_mds_split`); one tokenizer and one sample format for all
    sources; a ``cache_limit`` streaming can parse. Raises :class:`UserError` naming the key."""
    found = sources(ds, key)
    for src in found:
        if src.remote is not None:
            check_remote(src.remote, f"{src.key}.remote")
        if local_path(src.remote) is not None:
            check_mds_split(src.data_dir, src.split, f"{src.key}.remote")
        elif src.remote is None:
            check_mds_split(src.local, src.split, f"{src.key}.local")
    if ds.cache_limit is not None:
        try:
            bytes_to_int(ds.cache_limit)
        except ValueError:
            raise ConfigError(f"{key}.cache_limit", f"{ds.cache_limit!r} is not a size; write e.g. '50gb', "
                              "'500mb' or a number of bytes") from None
    check_same_data_format(found)


def _tokenizer_id(name: str | None) -> str | None:
    return os.path.realpath(name) if name and os.path.isdir(name) else name


def check_same_data_format(found: list[Source]) -> None:
    """Refuse a mixture whose sources hold ids of different tokenizers (or vocabulary sizes), or that mixes SFT
    conversations with plain documents (one collator reads them all). Raw-text sources go with any tokenizer."""
    metas = [(src, read_meta(src.data_dir)) for src in found]
    with_ids = [(src, meta) for src, meta in metas if meta.get("tokenizer")]
    for src, meta in with_ids[1:]:
        first, first_meta = with_ids[0]
        ours = (_tokenizer_id(meta["tokenizer"]), meta.get("vocab_size"))
        theirs = (_tokenizer_id(first_meta["tokenizer"]), first_meta.get("vocab_size"))
        if ours != theirs:
            raise UserError(f"{src.key}: {src.data_dir} holds ids of tokenizer '{meta['tokenizer']}' "
                            f"({meta.get('vocab_size')} tokens) but {first.key}: {first.data_dir} of "
                            f"'{first_meta['tokenizer']}' ({first_meta.get('vocab_size')} tokens); convert every "
                            "source of a loader with the same --tokenizer")
    sft = [(src, meta.get("format") == "sft") for src, meta in metas if meta.get("format")]
    for src, is_sft in sft[1:]:
        if is_sft != sft[0][1]:
            kinds = {True: "SFT conversations", False: "plain documents"}
            raise UserError(f"{src.key}: {src.data_dir} holds {kinds[is_sft]} but {sft[0][0].key}: "
                            f"{sft[0][0].data_dir} holds {kinds[sft[0][1]]}; mix sources of one kind per loader")


def streaming_sources(ds) -> dict[str, Any]:
    """The source arguments of ``StreamingDataset`` for dataset block ``ds``: ``local``/``remote``/``split``, or
    ``streams`` (one ``Stream`` each, ``file://`` remotes as paths), with the download settings."""
    common = {"split": ds.split, "epoch_size": ds.epoch_size, "download_retry": ds.download_retry,
              "download_timeout": ds.download_timeout, "validate_hash": ds.validate_hash}
    if not ds.streams:
        return {"local": ds.local, "remote": _readable(ds.remote), **common}
    streams = [Stream(local=s.local, remote=_readable(s.remote), split=s.split, proportion=s.proportion,
                      repeat=s.repeat, choose=s.choose, download_retry=s.download_retry,
                      download_timeout=s.download_timeout) for s in ds.streams]
    return {"streams": streams, **common}


def _readable(remote: str | None) -> str | None:
    """``remote`` as streaming reads it: streaming takes plain paths, not ``file://`` URLs."""
    return local_path(remote) or remote


def log_mixture(dataset, ds, key: str) -> None:
    """On rank 0, one line per source of a ``streams`` mixture: its samples per epoch as streaming resolved them."""
    if not ds.streams or dist.get_global_rank() != 0:
        return
    for i, (src, stream) in enumerate(zip(sources(ds, key), dataset.streams)):
        where = os.path.join(src.remote or src.local, src.split or "")
        log.info("%s %s: %d samples per epoch of %d (proportion %.3f, repeat %.3f)", src.key, where,
                 int(stream.choose), int(dataset.samples_per_stream[i]), float(stream.proportion),
                 float(stream.repeat))
    log.info("%s: %d samples per epoch from %d sources", key, int(dataset.epoch_size), len(dataset.streams))
