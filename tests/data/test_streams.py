"""Dataset mixtures (``streams:``) and remote streaming: streaming's own counts, resume, packing, bad input."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bertforge.config.load import load_raw
from bertforge.config.schema import DatasetConfig, LoaderConfig, TrainConfig
from bertforge.config.validate import from_dict
from bertforge.data.streams import check_sources
from bertforge.data.text import build_text_dataloader
from bertforge.errors import ConfigError, UserError
from tests.conftest import REPO, SHARED_DATA

TOKENIZER = str(SHARED_DATA / "tokenizers" / "bert-base-uncased")
SIZES = {"a": 40, "b": 24, "c": 48}  # train documents per source; source s holds ids 1000*s + index
MAX_LEN, BATCH = 16, 4


def _write_ids(folder: Path, base: int, n: int, size_limit: int | None = None) -> None:
    """``n`` id documents (no special tokens), document i holding ``base + i`` 3 to 7 times."""
    from streaming import MDSWriter

    with MDSWriter(out=str(folder), columns={"input_ids": "ndarray:uint32"}, size_limit=size_limit) as writer:
        for i in range(n):
            writer.write({"input_ids": np.full(3 + i % 5, base + i, dtype=np.uint32)})


def _write_meta(root: Path, **meta) -> None:
    (root / "bertforge_meta.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def tok():
    from bertforge.data.tokenizer import load_tokenizer

    return load_tokenizer(TOKENIZER)


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Path:
    """Sources a, b, c (train: SIZES, val: 8 documents each); c in small shards, to be read as a remote."""
    root = tmp_path_factory.mktemp("mix")
    for number, name in enumerate(SIZES, start=1):
        limit = 300 if name == "c" else None
        _write_ids(root / name / "train", 1000 * number, SIZES[name], limit)
        _write_ids(root / name / "val", 1000 * number + 500, 8, limit)
        _write_meta(root / name, format="tokens", tokenizer=TOKENIZER, vocab_size=30522)
    return root


def _loader_cfg(streams: list[dict], packing: bool = False, **dataset) -> LoaderConfig:
    block = {"dataset": {"split": "train", "streams": streams, **dataset}, "packing": packing}
    return from_dict(LoaderConfig, block, "train_loader")


def _docs(batches) -> list[tuple[int, int]]:
    """(source, index) of every document of every batch, in order (packed rows hold several)."""
    out = []
    for batch in batches:
        ids = np.where(batch["labels"] >= 0, batch["labels"], batch["input_ids"])  # undo the masking
        for row, segments in zip(ids, batch["attention_mask"].numpy()):
            for segment in range(1, int(segments.max()) + 1):
                first = int(row[segments == segment][1])  # after [CLS]
                out.append((first // 1000, first % 1000))
    return out


def _counts(docs) -> list[int]:
    per_source = Counter(source for source, _ in docs)
    return [per_source[s] for s in sorted(per_source)]


def test_proportions_give_the_counts_streaming_computes(mix, tok, caplog):
    cfg = _loader_cfg([{"local": str(mix / "a"), "proportion": 0.75}, {"local": str(mix / "b"), "proportion": 0.25}],
                      shuffle=True)
    with caplog.at_level(logging.INFO, logger="bertforge"):
        loader = build_text_dataloader(cfg, tok, MAX_LEN, BATCH, 17, True)
    resolved = [int(s.choose) for s in loader.dataset.streams]
    assert resolved == [48, 16]  # 0.75 and 0.25 of the 64 documents of a and b
    assert _counts(_docs(loader)) == resolved
    assert f"train_loader.dataset.streams[0] {mix / 'a' / 'train'}: 48 samples per epoch of 40" in caplog.text
    assert f"train_loader.dataset.streams[1] {mix / 'b' / 'train'}: 16 samples per epoch of 24" in caplog.text


def test_repeat_and_choose(mix, tok):
    cfg = _loader_cfg([{"local": str(mix / "a"), "repeat": 0.5}, {"local": str(mix / "b"), "choose": 30}])
    loader = build_text_dataloader(cfg, tok, MAX_LEN, 5, 17, False)
    docs = _docs(loader)
    assert _counts(docs) == [int(s.choose) for s in loader.dataset.streams] == [20, 30]
    assert {i for s, i in docs if s == 2} == set(range(SIZES["b"]))  # upsampled: every b document, some twice
    assert len({i for s, i in docs if s == 1}) == 20  # downsampled: 20 distinct a documents


def test_eval_loader_streams_take_the_dataset_split(mix, tok):
    cfg = _loader_cfg([{"local": str(mix / "a")}, {"local": str(mix / "b")}], split="val")
    docs = _docs(build_text_dataloader(cfg, tok, MAX_LEN, 3, 17, False))
    assert sorted(docs) == [(s, 500 + i) for s in (1, 2) for i in range(8)]  # unweighted: each once


def test_packing_with_streams(mix, tok):
    cfg = _loader_cfg([{"local": str(mix / "a"), "proportion": 0.75}, {"local": str(mix / "b"), "proportion": 0.25}],
                      packing=True)
    loader = build_text_dataloader(cfg, tok, MAX_LEN, BATCH, 17, False)
    batches = list(loader)
    assert all(b["input_ids"].shape == (BATCH, MAX_LEN) for b in batches)
    assert len(batches) < 64 / BATCH  # several documents per row
    assert _counts(_docs(batches)) == [48, 16]


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_resume_mid_epoch_is_exact(mix, tok, packing):
    cfg = _loader_cfg([{"local": str(mix / "a"), "proportion": 0.6}, {"local": str(mix / "b"), "proportion": 0.4}],
                      packing=packing, shuffle=True)
    whole = _docs(build_text_dataloader(cfg, tok, MAX_LEN, BATCH, 17, True))
    first = build_text_dataloader(cfg, tok, MAX_LEN, BATCH, 17, True)
    batches = iter(first)
    seen = _docs([next(batches) for _ in range(3)])
    state = first.dataset.state_dict(num_samples=3 * BATCH, from_beginning=False)  # as Composer saves it
    resumed = build_text_dataloader(cfg, tok, MAX_LEN, BATCH, 17, True)
    resumed.dataset.load_state_dict(state)
    assert seen + _docs(resumed) == whole
    assert len(set(_counts(whole))) == 2  # both sources were read


def _shards(folder: Path) -> list[dict]:
    return json.loads((folder / "index.json").read_text())["shards"]


@pytest.mark.parametrize("form", ["path", "file://"])
def test_remote_streams_through_a_bounded_cache(mix, tok, tmp_path, form):
    remote = mix / "c"
    shards = _shards(remote / "train")
    biggest = max(s["raw_data"]["bytes"] for s in shards)
    indexes = sum((mix / name / "train" / "index.json").stat().st_size for name in ("b", "c"))
    limit = indexes + 6 * biggest  # streaming needs room for the shards it reads ahead (predownload below)
    assert len(shards) > 10  # more shards than the cache holds
    url = (lambda path: str(path)) if form == "path" else (lambda path: path.as_uri())
    streams = [{"local": str(tmp_path / name), "remote": url(mix / name)} for name in ("c", "b")]
    cfg = _loader_cfg(streams, cache_limit=limit, predownload=BATCH)
    check_sources(cfg.dataset, "train_loader.dataset")
    docs = _docs(build_text_dataloader(cfg, tok, MAX_LEN, BATCH, 17, False))
    assert sorted(docs) == [(s, i) for s, n in ((2, SIZES["b"]), (3, SIZES["c"])) for i in range(n)]
    cached = [p for name in ("c", "b") for p in (tmp_path / name / "train").iterdir() if p.suffix == ".mds"]
    assert 0 < len(cached) < len(shards), "no shard was evicted"
    assert sum(p.stat().st_size for p in cached) <= limit
    assert len(_shards(mix / "b" / "train")) == len(list((mix / "b" / "train").glob("*.mds")))  # remotes untouched


def test_cache_limit_below_four_shards_is_one_line(mix, tok, tmp_path):
    cfg = _loader_cfg([{"local": str(tmp_path / "cache"), "remote": str(mix / "c")}], cache_limit=400)
    with pytest.raises(ConfigError, match=r"^train_loader\.dataset\.cache_limit: .*(too low|larger than)"):
        build_text_dataloader(cfg, tok, MAX_LEN, BATCH, 17, True)


@pytest.mark.parametrize("dataset,match", [
    ({"local": "x", "streams": [{"local": "a"}]}, r"train_loader\.dataset\.local: give either streams or local"),
    ({"streams": [{"local": "a", "proportion": 1}, {"local": "b", "repeat": 2}]},
     r"train_loader\.dataset\.streams\[1\]\.repeat: streams are weighted either all by proportion"),
    ({"streams": [{"local": "a", "choose": 5}, {"local": "b", "proportion": 0.5}]},
     r"train_loader\.dataset\.streams\[1\]\.proportion: streams are weighted either all by proportion"),
    ({"streams": [{"local": "a", "proportion": 1}, {"local": "b"}]},
     r"train_loader\.dataset\.streams\[1\]\.proportion: streams are weighted"),
    ({"streams": [{"local": "a"}, {"local": "b", "proportion": 1, "choose": 3}]},
     r"train_loader\.dataset\.streams\[1\]\.choose: a stream takes at most one of proportion, repeat, choose"),
    ({"streams": [{"local": "a", "repeat": -1}]}, r"train_loader\.dataset\.streams\[0\]\.repeat: -1.0 must be >= 0"),
    ({"streams": [{"local": "a", "proportion": 0}, {"local": "b", "proportion": 0}]},
     r"train_loader\.dataset\.streams\[0\]\.proportion: the proportions sum to 0"),
    ({"streams": [{"local": "a", "repeat": 2}], "epoch_size": 10},
     r"train_loader\.dataset\.epoch_size: sets the epoch size, but streams\[0\] sets its own count by repeat"),
    ({"streams": [{"local": "a", "proportin": 0.5}]},
     r"train_loader\.dataset\.streams\[0\]\.proportin: unknown key \(did you mean 'proportion'\?\)"),
    ({"streams": [{"local": "a"}, {"local": "a/"}]}, r"train_loader\.dataset\.streams\[1\]\.local: same folder"),
    ({"streams": [{"local": "c", "remote": "s3://b/c"}, {"local": "a"}], "cache_limit": "1gb"},
     r"train_loader\.dataset\.streams\[1\]\.remote: has no remote copy of its data, but cache_limit evicts"),
    ({"local": "a", "remote": "file://a", "cache_limit": "1gb"}, r"train_loader\.dataset\.remote: has no remote"),
    ({"streams": [{"remote": "s3://b/x"}]}, r"train_loader\.dataset\.streams\[0\]\.local: required key is missing"),
    ({"split": "train"}, r"train_loader\.dataset\.local: required key is missing; give local .* or streams"),
])
def test_bad_mixture_is_one_config_line(dataset, match):
    with pytest.raises(ConfigError, match=f"^{match}") as err:
        from_dict(LoaderConfig, {"dataset": dataset}, "train_loader")
    assert "\n" not in str(err.value)


def _dataset(streams: list[dict], **extra) -> DatasetConfig:
    return from_dict(DatasetConfig, {"split": "train", "streams": streams, **extra}, "train_loader.dataset")


def test_bad_sources_are_one_line_before_work(mix, tmp_path, monkeypatch):
    import bertforge.data.streams as streams

    def refused(streams_list: list[dict], match: str, **extra) -> None:
        with pytest.raises(UserError, match=match) as err:
            check_sources(_dataset(streams_list, **extra), "train_loader.dataset")
        assert "\n" not in str(err.value)

    a, cache = str(mix / "a"), str(tmp_path / "cache")
    refused([{"local": a}, {"local": cache, "remote": "ftp://host/data"}],
            r"^train_loader\.dataset\.streams\[1\]\.remote: mosaicml-streaming cannot read 'ftp://' remotes "
            r"\(ftp://host/data\); use one of .*gs://.*s3://.*file:// or a local path")
    refused([{"local": cache, "remote": "file://host/data"}], r"streams\[0\]\.remote: file://host/data names a host")
    refused([{"local": a}, {"local": str(tmp_path / "none")}],
            r"^train_loader\.dataset\.streams\[1\]\.local: data folder not found: .*none/train")
    refused([{"local": cache, "remote": str(tmp_path / "gone")}],
            r"^train_loader\.dataset\.streams\[0\]\.remote: data folder not found")
    refused([{"local": cache, "remote": str(mix / "c")}], r"cache_limit: 'lots' is not a size",
            cache_limit="lots")
    monkeypatch.setattr(streams, "_importable", lambda module: False)
    refused([{"local": cache, "remote": "s3://bucket/c4"}],
            r"streams\[0\]\.remote: reading s3:// remotes needs the 'boto3' package: pip install boto3")


def test_sources_of_other_tokenizers_or_kinds_are_refused(mix, tmp_path):
    other = tmp_path / "other"
    _write_ids(other / "train", 3000, 4)
    _write_meta(other, format="tokens", tokenizer="answerdotai/ModernBERT-base", vocab_size=50368)
    ds = _dataset([{"local": str(mix / "a")}, {"local": str(other)}])
    with pytest.raises(UserError, match=rf"^train_loader\.dataset\.streams\[1\]: {other} holds ids of tokenizer "
                       rf"'answerdotai/ModernBERT-base' \(50368 tokens\) but train_loader\.dataset\.streams\[0\]: "
                       rf"{mix / 'a'} of '{TOKENIZER}' \(30522 tokens\)"):
        check_sources(ds, "train_loader.dataset")
    _write_meta(other, format="sft", tokenizer=TOKENIZER, vocab_size=30522)
    with pytest.raises(UserError, match=r"streams\[1\]: .* holds SFT conversations but .*streams\[0\]: .* holds "
                       "plain documents"):
        check_sources(ds, "train_loader.dataset")
    _write_meta(other, format="text", tokenizer=None)  # raw text goes with any tokenizer
    check_sources(ds, "train_loader.dataset")


def _with_streams(raw: dict, loader: str, locals_: list[Path]) -> None:
    for stream, local in zip(raw[loader]["dataset"]["streams"], locals_):
        stream["local"] = str(local)


def test_mix_quickstart_yaml_validates_and_finds_its_tokenizer(mix, tmp_path):
    from bertforge.train import build_tokenizer, validate

    raw = load_raw(REPO / "yamls/quickstart/hf-bert-tiny-mix.yaml", [f"run_dir={tmp_path / 'run'}",
                                                                      f"tokenizer.name={TOKENIZER}"])
    for loader in ("train_loader", "eval_loader"):
        _with_streams(raw, loader, [mix / "a", mix / "b"])
    cfg = from_dict(TrainConfig, raw)
    assert [s.proportion for s in cfg.train_loader.dataset.streams] == [0.75, 0.25]
    validate(cfg)
    assert len(build_tokenizer(cfg)) == 30522
    _with_streams(raw, "train_loader", [mix / "a", tmp_path / "missing"])
    with pytest.raises(UserError, match=r"train_loader\.dataset\.streams\[1\]\.local: data folder not found"):
        validate(from_dict(TrainConfig, raw))


def test_modernbert_large_sft_yaml_validates_on_tiny_sft_folders(tmp_path):
    from bertforge.train import validate

    raw = load_raw(REPO / "yamls/generative/modernbert-large-sft.yaml")
    folders = []
    for name in ("tulu", "smoltalk"):
        for split in ("train", "val"):
            _write_ids(tmp_path / name / split, 10, 2)
        _write_meta(tmp_path / name, format="sft", tokenizer="answerdotai/ModernBERT-large", vocab_size=50368)
        folders.append(tmp_path / name)
    for loader in ("train_loader", "eval_loader"):
        _with_streams(raw, loader, folders)
    cfg = from_dict(TrainConfig, raw)
    validate(cfg)
    assert cfg.train_loader.collator["name"] == "sft" and cfg.max_seq_len == 1024
    assert cfg.global_train_batch_size == 384 and cfg.optimizer["lr"] == 1.0e-4  # dllm: 8 x 48, lr 1e-4
