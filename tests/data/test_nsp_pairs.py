"""Sentence-pair builder (bertforge.data.nsp_pairs): Google's algorithm, label balance, truncation, segment ids,
SOP order, worker-count determinism, and the one-line errors and warnings on bad input."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bertforge.data.convert import convert, main
from bertforge.data.nsp_pairs import PairMaker, PairOptions, convert_pairs, split_sentences
from bertforge.errors import UserError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOKENIZER = DATA / "tokenizers" / "bert-base-uncased"
CLS, SEP = 1, 2
DOC = 100_000  # synthetic token id = DOC * (document + 1) + running position in the document


def synthetic_corpus(n_docs: int, seed: int = 0, max_sentence: int = 20) -> list[list[list[int]]]:
    """Documents of 2-30 sentences whose token ids tell their document and position apart."""
    rng = random.Random(seed)
    corpus = []
    for d in range(n_docs):
        sentences, pos = [], 0
        for _ in range(rng.randint(2, 30)):
            n = rng.randint(1, max_sentence)
            sentences.append(list(range(DOC * (d + 1) + pos, DOC * (d + 1) + pos + n)))
            pos += n
        corpus.append(sentences)
    return corpus


def make_pairs(corpus, objective: str, max_seq_len: int = 64, dupes: int = 1, **kw) -> list[dict]:
    options = PairOptions(objective=objective, max_seq_len=max_seq_len, dupe_factor=dupes, **kw)
    maker = PairMaker(corpus, options, 7, CLS, SEP)
    return [r for dupe in range(dupes) for r in maker((dupe, 0, len(corpus)))]


def segments(record: dict) -> tuple[np.ndarray, np.ndarray]:
    ids = record["input_ids"]
    seps = np.flatnonzero(ids == SEP)
    return ids[1:seps[0]], ids[seps[0] + 1:seps[1]]


def test_nsp_label_balance_segments_and_truncation():
    corpus = synthetic_corpus(300)
    records = make_pairs(corpus, "nsp", max_seq_len=64, dupes=9)
    assert len(records) >= 10_000
    share = np.mean([r["next_sentence_label"] for r in records])
    assert abs(share - 0.5) < 0.02, share  # tolerance: 2 points on >= 10k pairs (std ~0.5 points)
    for r in records:
        ids, types = r["input_ids"], r["token_type_ids"]
        assert len(ids) <= 64 and ids[0] == CLS and ids[-1] == SEP and (ids == SEP).sum() == 2
        a, b = segments(r)
        assert len(a) >= 1 and len(b) >= 1
        assert types.tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        doc_a, doc_b = set(a // DOC), set(b // DOC)
        assert len(doc_a) == 1 and len(doc_b) == 1
        if r["next_sentence_label"] == 0:  # IsNext: B comes after A in the same document
            assert doc_a == doc_b and a.max() < b.min()
        else:  # random next: another document
            assert doc_a != doc_b


def test_sop_labels_mean_swapped_segments():
    records = make_pairs(synthetic_corpus(200, seed=1), "sop", max_seq_len=48, dupes=2)
    share = np.mean([r["next_sentence_label"] for r in records])
    assert abs(share - 0.5) < 0.03, share  # ~3k pairs: std ~0.9 points
    for r in records:
        a, b = segments(r)
        assert set(a // DOC) == set(b // DOC), "SOP pairs come from one document"
        if r["next_sentence_label"] == 1:
            assert b.max() < a.min()
        else:
            assert a.max() < b.min()


def test_truncation_of_long_sentences_and_short_targets():
    corpus = synthetic_corpus(50, seed=2, max_sentence=300)
    for max_len in (8, 33):
        records = make_pairs(corpus, "nsp", max_seq_len=max_len, dupes=2, short_seq_prob=0.5)
        assert records and max(len(r["input_ids"]) for r in records) <= max_len
        assert min(min(map(len, segments(r))) for r in records) >= 1


def test_same_seed_same_pairs_and_work_split_invariance():
    corpus = synthetic_corpus(40, seed=3)
    options = PairOptions(max_seq_len=40)
    whole = PairMaker(corpus, options, 5, CLS, SEP)((0, 0, 40))
    parts = [r for s in range(0, 40, 7) for r in PairMaker(corpus, options, 5, CLS, SEP)((0, s, min(s + 7, 40)))]
    other = PairMaker(corpus, options, 6, CLS, SEP)((0, 0, 40))
    flat = [r["input_ids"].tobytes() for r in whole]
    assert flat == [r["input_ids"].tobytes() for r in parts]
    assert flat != [r["input_ids"].tobytes() for r in other]


def test_split_sentences():
    text = ('Mr. Smith met Dr. Jones in St. Louis. They talked, e.g. about J. S. Bach! "Really?" she asked. '
            "The year was 1850.\nIt rained. ok. 3 cats came")
    assert split_sentences(text) == [
        "Mr. Smith met Dr. Jones in St. Louis.", "They talked, e.g. about J. S. Bach!", '"Really?" she asked.',
        "The year was 1850.", "It rained. ok.", "3 cats came"]


def bert_text(tmp_path: Path, docs: int = 60) -> Path:
    rng = random.Random(0)
    words = "the king spoke to his people and they listened with care while rain fell on the old town".split()
    blocks = ["\n".join(" ".join(rng.choices(words, k=rng.randint(3, 15))).capitalize() + "."
                        for _ in range(rng.randint(2, 8))) for _ in range(docs)]
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def test_workers_1_and_3_write_identical_bytes(tmp_path):
    path = bert_text(tmp_path, docs=150)

    def run(out: Path, workers: int) -> dict[str, bytes]:
        options = PairOptions(max_seq_len=32, dupe_factor=2, static_masking=True, whole_word_mask=True)
        meta = convert(path, out, tokenizer=str(TOKENIZER), doc_separator="blank", shard_size="16kb",
                       num_workers=workers, pairs=options)
        assert meta["format"] == "pairs" and meta["objective"] == "nsp" and meta["max_seq_len"] == 32
        return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}

    one, three = run(tmp_path / "w1", 1), run(tmp_path / "w3", 3)
    assert len(one) > 4 and one == three


def test_cli_bad_input_one_line_each(tmp_path, capsys):
    tok = ["--tokenizer", str(TOKENIZER)]
    one_doc = tmp_path / "one.txt"
    one_doc.write_text("First sentence here.\nSecond one.\nThird.\n", encoding="utf-8")
    with pytest.raises(UserError, match="split 'train': 1 document; NSP"):
        main(["--input", str(one_doc), "--out", str(tmp_path / "o1"), "--objective", "nsp", "--splits", "train",
              *tok])
    assert "1 of 1 inputs hold one document only" in capsys.readouterr().err
    with pytest.raises(UserError, match="--max-predictions-per-seq 126: a pair of --max-seq-len 128 has at most 125"):
        main(["--input", str(one_doc), "--out", str(tmp_path / "o2"), "--objective", "nsp", "--static-masking",
              "--max-predictions-per-seq", "126", *tok])
    with pytest.raises(UserError, match="--dupe-factor: only applies with --objective"):
        main(["--input", str(one_doc), "--out", str(tmp_path / "o3"), "--dupe-factor", "3", *tok])
    with pytest.raises(UserError, match="--masked-lm-prob: only applies with --static-masking"):
        main(["--input", str(one_doc), "--out", str(tmp_path / "o4"), "--objective", "nsp", "--masked-lm-prob",
              "0.2", *tok])
    with pytest.raises(UserError, match="--objective: needs --tokenizer"):
        main(["--input", str(one_doc), "--out", str(tmp_path / "o5"), "--objective", "sop"])
    no_mask = SimpleNamespace(cls_token="[CLS]", sep_token="[SEP]", mask_token=None)
    with pytest.raises(UserError, match="no mask_token"):
        convert_pairs([], ["train"], tmp_path, no_mask, PairOptions(), seed=0, val_ratio=0.1, num_workers=1,
                      writer={}, meta={"tokenizer": "t"})


def test_one_sentence_documents_are_counted(tmp_path, capsys):
    path = bert_text(tmp_path, docs=30)
    path.write_text(path.read_text() + "\nA lone line.\n\nAnother lone line.\n", encoding="utf-8")
    meta = main(["--input", str(path), "--out", str(tmp_path / "out"), "--objective", "sop", "--max-seq-len", "32",
                 "--tokenizer", str(TOKENIZER), "--dupe-factor", "1"])
    assert meta["pairs"]["one_sentence_documents"] == 2 and meta["objective"] == "sop"
    assert "2 of 32 documents have one sentence only" in capsys.readouterr().err
