"""Documents/s encoding BEIR SciFact abstracts with a base-size model of each family, through the retrieval path.

Each family's pretraining preset (BERT-base as ``hf_bert``, ModernBERT-base as ``flexbert``, M2-BERT-80M as
``m2_bert`` with its positions and filters stretched to the longest document length asked for) is built with
random weights, exported with ``bertforge.export`` and loaded as a sentence-transformers model (mean pooling);
the corpus is encoded in batches of similar token length (``bertforge.retrieval.encode``), as ``retrieval.py``
does. Random weights change no timing. Prints a markdown table and writes a CSV.

    python benchmarks/retrieval_encode.py --docs 256 --lengths 512,2048 --out bench/retrieval_encode.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

import torch

from bertforge import registry
from bertforge.config import load_config
from bertforge.data.tokenizer import load_tokenizer
from bertforge.export.sentence_transformers import to_sentence_transformer
from bertforge.models.export import export_hf
from bertforge.retrieval.beir import load_beir
from bertforge.retrieval.encode import encode_by_length, token_lengths

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FAMILIES = {  # family: (preset YAML, tokenizer folder, longest positions it has without changes)
    "hf_bert (BERT-base)": ("yamls/pretrain/hf-bert-base.yaml", "tokenizers/bert-base-uncased", 512),
    "flexbert (ModernBERT-base)": ("yamls/pretrain/modernbert-base.yaml", "tokenizers/modernbert", 8192),
    "m2_bert (M2-BERT-80M)": ("yamls/pretrain/m2-bert-80m.yaml", "tokenizers/bert-base-uncased", None),
}


def build_folder(family: str, longest: int, folder: str) -> int:
    """Export the family's preset with random weights to ``folder``; return the positions it supports."""
    yaml, tokenizer_dir, positions = FAMILIES[family]
    spec = load_config(REPO / yaml).model
    tokenizer = load_tokenizer(str(SHARED / tokenizer_dir))
    if positions is None:  # M2: a long-context variant, as the published 2k..32k retrieval checkpoints
        spec["model_config"] |= {"max_position_embeddings": longest, "filter_length": longest}
        positions = longest
    torch.manual_seed(0)
    export_hf(registry.models.build(spec, "model", tokenizer).eval(), folder)
    return positions


def measure(family: str, texts: list[str], lengths: list[int], batch_size: int) -> list[dict]:
    """docs/s, tokens/s and padding share for each document length in ``lengths``."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        positions = build_folder(family, max(lengths), folder)
        model = to_sentence_transformer(folder, pooling="mean")
        for length in lengths:
            if length > positions:
                continue
            model.max_seq_length = length
            counts = token_lengths(model.tokenizer, texts, length)
            encoded = encode_by_length(lambda batch: model.encode(batch, batch_size=len(batch)), texts, counts,
                                       batch_size)
            mean = sum(counts) / len(counts)
            rows.append({"family": family, "max_seq_length": length, "docs": len(texts), "mean_tokens": mean,
                         "longest": max(counts), "docs_per_s": encoded.texts_per_s,
                         "tokens_per_s": encoded.texts_per_s * mean, "padding": encoded.padding})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "beir" / "scifact"), help="a BEIR folder")
    parser.add_argument("--docs", type=int, default=256, help="encode the first N documents (0: all 5,183)")
    parser.add_argument("--lengths", default="512,2048", help="document lengths (max_seq_length) to measure")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated, from: " + ", ".join(FAMILIES))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="bench/retrieval_encode.csv")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    corpus = load_beir(args.data, "test").corpus
    texts = list(corpus.values())[: args.docs or None]
    lengths = [int(x) for x in args.lengths.split(",")]
    rows = [row for family in args.families.split(",") for row in measure(family, texts, lengths, args.batch_size)]
    print(f"\n{len(texts)} SciFact documents, batches of {args.batch_size} by length, "
          f"{torch.get_num_threads()} CPU threads, fp32\n")
    print("| family | max_seq_length | mean / longest tokens | docs/s | tokens/s | padding |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['family']} | {r['max_seq_length']} | {r['mean_tokens']:.0f} / {r['longest']} | "
              f"{r['docs_per_s']:.1f} | {r['tokens_per_s']:.0f} | {100 * r['padding']:.1f}% |")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
