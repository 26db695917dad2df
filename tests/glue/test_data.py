"""GLUE readers on the real shared files (row counts as in SOURCES.md), malformed files, the token cache."""

from __future__ import annotations

import os

import pytest

from bertforge.errors import UserError
from bertforge.glue.data import read_tsv, subset, tokenize_cached
from bertforge.glue.tasks import TASKS
from tests.glue.conftest import GLUE_DIR


@pytest.mark.parametrize("task,file,rows,labels", [
    ("cola", "CoLA/train.tsv", 8551, {0, 1}),        # no header row
    ("cola", "CoLA/dev.tsv", 1043, {0, 1}),          # no trailing newline
    ("mrpc", "MRPC/train.tsv", 3668, {0, 1}),        # starts with a byte-order mark
    ("mrpc", "MRPC/dev.tsv", 408, {0, 1}),
    ("rte", "RTE/train.tsv", 2490, {0, 1}),
    ("rte", "RTE/dev.tsv", 277, {0, 1}),
    ("sst2", "SST-2/dev.tsv", 872, {0, 1}),
    ("qnli", "QNLI/dev.tsv", 5463, {0, 1}),
    ("mnli", "MNLI/kshot-16-42/train.tsv", 48, {0, 1, 2}),
    ("qqp", "QQP/kshot-16-42/train.tsv", 32, {0, 1}),
])
def test_reader_row_counts(task, file, rows, labels):
    examples = read_tsv(str(GLUE_DIR / file), TASKS[task])
    assert len(examples.texts) == len(examples.labels) == rows
    assert set(examples.labels) == labels
    assert all(len(t) == len(TASKS[task].columns) for t in examples.texts)


def test_mrpc_quotes_are_literal_and_stsb_is_regression():
    mrpc = read_tsv(str(GLUE_DIR / "MRPC/train.tsv"), TASKS["mrpc"])
    assert mrpc.texts[0][0].startswith('Amrozi accused his brother, whom he called "the witness"')
    stsb = read_tsv(str(GLUE_DIR / "STS-B/train.tsv"), TASKS["stsb"])
    assert len(stsb.texts) == 5749 and stsb.labels[:2] == [5.0, 3.8]


@pytest.mark.parametrize("content,message", [
    ("index\tsentence1\tlabel\n0\ta\tentailment\n", r"bad\.tsv: no 'sentence2' column"),
    ("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", r"bad\.tsv:2: unknown label 'maybe'"),
    ("index\tsentence1\tsentence2\tlabel\n0\ta\n", r"bad\.tsv:2: 2 columns, expected at least 4"),
    ("", r"bad\.tsv: empty file"),
])
def test_malformed_file_is_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_tsv(str(path), TASKS["rte"])


def test_missing_file_names_it(tmp_path):
    with pytest.raises(UserError, match=r"nope\.tsv: GLUE file not found"):
        read_tsv(str(tmp_path / "nope.tsv"), TASKS["rte"])


def test_subset_is_fixed_and_in_file_order():
    examples = read_tsv(str(GLUE_DIR / "RTE/dev.tsv"), TASKS["rte"])
    a, b = subset(examples, 50), subset(examples, 50)
    assert a.texts == b.texts and len(a.texts) == 50
    positions = [examples.texts.index(t) for t in a.texts]
    assert positions == sorted(positions)


def test_tokenize_once_then_cache(tmp_path, tokenizer):
    examples = subset(read_tsv(str(GLUE_DIR / "RTE/dev.tsv"), TASKS["rte"]), 20)
    rows = tokenize_cached(examples, tokenizer, 32, str(tmp_path))
    files = os.listdir(tmp_path)
    assert len(files) == 1 and len(rows) == 20
    assert all(len(r["input_ids"]) <= 32 and r["input_ids"][0] == tokenizer.cls_token_id for r in rows)
    assert tokenize_cached(examples, tokenizer, 32, str(tmp_path)) == rows
    tokenize_cached(examples, tokenizer, 48, str(tmp_path))  # another max length: another entry
    assert len(os.listdir(tmp_path)) == 2


def test_hub_copy_uses_the_hub_column_names(monkeypatch):
    import datasets

    from bertforge.glue.data import read_hub

    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [2, 0]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    examples = read_hub(TASKS["mnli"], "validation_mismatched")
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert examples.texts == [("a", "c"), ("b", "d")] and examples.labels == [2, 0]

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match=r"nyu-mll/glue/rte \(train\) cannot be loaded: no network; set data_dir"):
        read_hub(TASKS["rte"], "train")
