"""Tests for the MDS dataset converter (bertforge.data.convert and convert_dataset.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bertforge.data.convert import META_NAME, convert, main
from bertforge.errors import UserError

REPO = Path(__file__).resolve().parents[2]

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHAKESPEARE = DATA / "tinyshakespeare" / "input.txt"
TOKENIZER = DATA / "tokenizers" / "bert-base-uncased"



def line_docs() -> list[str]:
    return [line for line in SHAKESPEARE.read_text(encoding="utf-8").split("\n") if line.strip()]


def blank_docs() -> list[str]:
    docs, block = [], []
    for line in SHAKESPEARE.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            block.append(line)
        elif block:
            docs.append("\n".join(block))
            block = []
    return docs + (["\n".join(block)] if block else [])


def read_split(out: Path, split: str, column: str = "text") -> list:
    from streaming import LocalDataset

    ds = LocalDataset(str(out), split)
    return [ds[i][column] for i in range(len(ds))]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


@pytest.fixture(scope="module")
def small_text(tmp_path_factory) -> tuple[Path, list[str]]:
    """The first 400 blank-separated Shakespeare documents, for the token-mode tests."""
    docs = blank_docs()[:400]
    path = tmp_path_factory.mktemp("small") / "small.txt"
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path, docs


def test_text_line_mode_roundtrip(tmp_path):
    meta = convert(SHAKESPEARE, tmp_path / "out", splits="train")
    docs = line_docs()
    assert read_split(tmp_path / "out", "train") == docs
    assert meta["splits"] == {"train": len(docs)}
    assert meta["format"] == "text" and meta["tokenizer"] is None and meta["vocab_size"] is None
    assert json.loads((tmp_path / "out" / META_NAME).read_text()) == meta


def test_text_blank_mode_roundtrip(tmp_path):
    meta = convert([str(SHAKESPEARE)], tmp_path / "out", splits=["train"], doc_separator="blank")
    docs = blank_docs()
    assert len(docs) > 7000
    assert read_split(tmp_path / "out", "train") == docs
    assert meta["doc_separator"] == "blank" and meta["splits"] == {"train": len(docs)}


def test_jsonl_custom_field_and_sorted_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "b.jsonl", [{"body": "second file", "id": 3}])
    rows = [{"body": "first doc", "id": 1}, {"body": "   "}, {"body": "with\nnewline"}]
    write_jsonl(folder / "a.jsonl", rows)
    (folder / "c.txt").write_text("plain line\n\nother line\n", encoding="utf-8")
    (folder / ".hidden.txt").write_text("ignored\n", encoding="utf-8")
    meta = convert(folder, tmp_path / "out", splits="train", text_field="body")
    expected = ["first doc", "with\nnewline", "second file", "plain line", "other line"]
    assert read_split(tmp_path / "out", "train") == expected
    assert meta["text_field"] == "body" and meta["splits"]["train"] == 5


def test_saved_dataset_and_dataset_dict(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["alpha", "", "beta", "gamma"], "label": [0, 1, 2, 3]})
    ds.save_to_disk(str(tmp_path / "single"))
    convert(tmp_path / "single", tmp_path / "out1", splits="train")
    assert read_split(tmp_path / "out1", "train") == ["alpha", "beta", "gamma"]

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"content": ["t1", "t2", "t3"]}),
                               "validation": datasets.Dataset.from_dict({"content": ["v1"]})})
    dd.save_to_disk(str(tmp_path / "dict"))
    meta = convert(tmp_path / "dict", tmp_path / "out2", text_field="content")
    assert read_split(tmp_path / "out2", "train") == ["t1", "t2", "t3"]
    assert read_split(tmp_path / "out2", "val") == ["v1"]
    assert meta["splits"] == {"train": 3, "val": 1}


def test_token_mode_matches_tokenizer(tmp_path, small_text, tokenizer):
    path, docs = small_text
    meta = convert(path, tmp_path / "out", tokenizer=str(TOKENIZER), splits="train", doc_separator="blank")
    ids = read_split(tmp_path / "out", "train", "input_ids")
    expected = tokenizer(docs, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(expected) == len(docs)
    assert all(a.dtype == np.uint32 and a.tolist() == b for a, b in zip(ids, expected))
    assert meta["format"] == "tokens" and meta["vocab_size"] == len(tokenizer)
    assert tokenizer.cls_token_id not in ids[0].tolist()


def test_concat_tokens_exact_chunks(tmp_path, small_text, tokenizer):
    path, docs = small_text
    n = 100
    meta = convert(path, tmp_path / "out", tokenizer=str(TOKENIZER), splits="train",
                   doc_separator="blank", concat_tokens=n)
    chunks = read_split(tmp_path / "out", "train", "input_ids")
    stream: list[int] = []
    for i, doc_ids in enumerate(tokenizer(docs, add_special_tokens=False)["input_ids"]):
        stream += ([tokenizer.sep_token_id] if i else []) + doc_ids
    assert len(chunks) == len(stream) // n == meta["splits"]["train"]
    assert {len(c) for c in chunks} == {n}
    assert np.concatenate(chunks).tolist() == stream[: len(chunks) * n]


def test_val_split_reproducible_and_disjoint(tmp_path):
    docs = blank_docs()
    convert(SHAKESPEARE, tmp_path / "a", doc_separator="blank", val_ratio=0.05, seed=17)
    convert(SHAKESPEARE, tmp_path / "b", doc_separator="blank", val_ratio=0.05, seed=17)
    meta = convert(SHAKESPEARE, tmp_path / "c", doc_separator="blank", val_ratio=0.05, seed=5)
    train, val = read_split(tmp_path / "a", "train"), read_split(tmp_path / "a", "val")
    assert len(val) == round(len(docs) * 0.05) and len(train) + len(val) == len(docs)
    assert Counter(train) + Counter(val) == Counter(docs)
    assert read_split(tmp_path / "b", "val") == val and read_split(tmp_path / "b", "train") == train
    assert read_split(tmp_path / "c", "val") != val and meta["splits"]["val"] == len(val)

    unique = [f"document number {i}" for i in range(200)]
    write_jsonl(tmp_path / "u.jsonl", [{"text": t} for t in unique])
    convert(tmp_path / "u.jsonl", tmp_path / "u", val_ratio=0.1)
    train, val = read_split(tmp_path / "u", "train"), read_split(tmp_path / "u", "val")
    assert len(val) == 20 and not set(train) & set(val) and sorted(train + val) == sorted(unique)
    assert train == [t for t in unique if t in set(train)]  # source order kept inside a split


def test_explicit_split_files(tmp_path):
    write_jsonl(tmp_path / "tr.jsonl", [{"text": "train one"}, {"text": "train two"}])
    (tmp_path / "va.txt").write_text("val one\n", encoding="utf-8")
    meta = main(["--split-input", f"train={tmp_path / 'tr.jsonl'}", "--split-input",
                 f"val={tmp_path / 'va.txt'}", "--out", str(tmp_path / "out"), "--shard-size", "1000000"])
    assert read_split(tmp_path / "out", "train") == ["train one", "train two"]
    assert read_split(tmp_path / "out", "val") == ["val one"]
    assert meta["splits"] == {"train": 2, "val": 1} and len(meta["inputs"]) == 2


def test_zstd_compression_readable(tmp_path):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    docs = blank_docs()[:1500]
    (tmp_path / "in.txt").write_text("\n\n".join(docs), encoding="utf-8")
    convert(tmp_path / "in.txt", tmp_path / "out", splits="train", doc_separator="blank",
            compression="zstd", shard_size="32kb")
    index = json.loads((tmp_path / "out" / "train" / "index.json").read_text())
    assert len(index["shards"]) > 1 and {s["compression"] for s in index["shards"]} == {"zstd"}
    ds = StreamingDataset(local=str(tmp_path / "out"), split="train", shuffle=False, batch_size=1)
    assert [ds[i]["text"] for i in range(ds.num_samples)] == docs


def test_num_workers_same_output(tmp_path, small_text):
    path, _ = small_text

    def run(out: Path, workers: int) -> dict[str, bytes]:
        convert(path, out, tokenizer=str(TOKENIZER), doc_separator="blank", concat_tokens=64,
                shard_size="16kb", num_workers=workers)
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}

    one, two = run(tmp_path / "w1", 1), run(tmp_path / "w2", 2)
    assert len(one) > 4 and one == two


def test_errors_are_user_errors(tmp_path, monkeypatch):
    missing = tmp_path / "nope.txt"
    with pytest.raises(UserError, match="nope.txt"):
        convert(missing, tmp_path / "out")
    (tmp_path / "empty.txt").write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no documents found in .*empty.txt"):
        convert(tmp_path / "empty.txt", tmp_path / "out")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"body": "no text"}])
    with pytest.raises(UserError, match=r"bad\.jsonl:2: no field 'text'"):
        convert(bad, tmp_path / "out")
    with pytest.raises(UserError, match="--splits"):
        convert(SHAKESPEARE, tmp_path / "out", splits="train,,val")
    with pytest.raises(UserError, match="--split-input"):
        main(["--split-input", "trainonly", "--out", str(tmp_path / "out")])
    with pytest.raises(UserError, match="--tokenizer"):
        convert(SHAKESPEARE, tmp_path / "out", tokenizer=str(tmp_path / "no_tokenizer"))

    convert(SHAKESPEARE, tmp_path / "done", splits="train")
    with pytest.raises(UserError, match=r"done.*--overwrite"):
        convert(SHAKESPEARE, tmp_path / "done", splits="train")
    meta = convert(SHAKESPEARE, tmp_path / "done", splits="train", doc_separator="blank", overwrite=True)
    assert read_split(tmp_path / "done", "train") == blank_docs() and meta["splits"]["train"] > 7000

    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="--hf-dataset some/name.*network"):
        convert(None, tmp_path / "hub", hf_dataset="some/name")


def test_cli_missing_input_one_line_exit_2(tmp_path):
    missing = tmp_path / "does_not_exist.txt"
    proc = subprocess.run([sys.executable, "convert_dataset.py", "--input", str(missing),
                           "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "Traceback" not in proc.stderr


def test_train_tokenizer_beside_the_splits(tmp_path, small_text):
    path, _ = small_text
    out = tmp_path / "out"
    meta = main(["--input", str(path), "--doc-separator", "blank", "--out", str(out), "--splits", "val,train",
                 "--train-tokenizer", "200", "--cased"])
    assert meta["format"] == "text" and meta["tokenizer"] is None
    assert meta["trained_tokenizer"] == {"path": "tokenizer", "split": "train", "vocab_size": 200, "lowercase": False}
    assert json.loads((out / META_NAME).read_text()) == meta
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    assert len(tok) == 200 and "R" in tok.tokenize("Romeo")[0]  # cased
    with pytest.raises(UserError, match=r"tokenizer.*--overwrite"):
        convert(path, out, doc_separator="blank", train_tokenizer=200)
    with pytest.raises(UserError, match="--train-tokenizer 200: needs text mode"):
        convert(path, tmp_path / "ids", tokenizer=str(TOKENIZER), train_tokenizer=200)
    with pytest.raises(UserError, match="--cased: only applies to --train-tokenizer"):
        main(["--input", str(path), "--out", str(tmp_path / "x"), "--cased"])


def test_tokenizer_also_learns_the_finetuning_texts(tmp_path, small_text):
    """A tokenizer trained on Shakespeare alone writes [UNK] for digits and '#' (the SFT quickstart's answers
    were [UNK] runs); with --tokenizer-also it learns the chat records' text too, without writing them as samples."""
    from transformers import AutoTokenizer

    from bertforge.data.tokenizer import data_tokenizer

    path, docs = small_text
    answer = "Step 1: mix 250 grams of flour. ### Done"
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"instruction": "How do I bake bread?", "input": "", "output": answer}] * 30))
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"body": "Quantum computing at 99% fidelity."}) + "\n")
    plain, both = tmp_path / "plain", tmp_path / "both"
    convert(path, plain, doc_separator="blank", train_tokenizer=300)
    meta = main(["--input", str(path), "--doc-separator", "blank", "--out", str(both), "--train-tokenizer", "300",
                 "--tokenizer-also", str(chat), "--tokenizer-also", str(notes), "--text-field", "body"])
    assert meta["trained_tokenizer"]["also"] == [str(chat), str(notes)]
    assert sum(meta["splits"].values()) == len(docs)  # the extra texts are not samples
    unk = "[UNK]"
    assert unk in AutoTokenizer.from_pretrained(str(plain / "tokenizer")).tokenize(answer)
    tok = AutoTokenizer.from_pretrained(str(both / "tokenizer"))
    assert unk not in tok.tokenize(answer + " quantum 99%") and len(tok) == 300
    # a run with tokenizer.name null trains on the split alone, so it does not take this one unasked
    assert data_tokenizer(str(both), str(both / "train"), 300, True, None) is None
    assert data_tokenizer(str(plain), str(plain / "train"), 300, True, None) == str(plain / "tokenizer")
    with pytest.raises(UserError, match=r"^--tokenizer-also .*missing.json: no such file"):
        convert(path, tmp_path / "x", doc_separator="blank", train_tokenizer=300,
                tokenizer_also=[str(tmp_path / "missing.json")])
    with pytest.raises(UserError, match=r"^--tokenizer-also: only applies to --train-tokenizer"):
        convert(path, tmp_path / "y", tokenizer_also=[str(chat)])
    chat.write_text(json.dumps([{"instruction": "no answer"}]))
    with pytest.raises(UserError, match=r"record 0: missing field 'output'"):
        convert(path, tmp_path / "z", doc_separator="blank", train_tokenizer=300, tokenizer_also=[str(chat)])
    assert not (tmp_path / "z").exists()  # refused before any work
