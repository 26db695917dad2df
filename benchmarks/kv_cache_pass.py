"""What one sampler pass costs with and without a block key/value cache, by canvas length.

For each length L the canvas is a random sequence of L tokens; the block under decoding is the 32 tokens at L/2.
Timed per pass: the model's own full forward (transformers' or ours: the reference a sampler without a cache pays
every step), a cache refresh (a block's first pass), a prefix-cache pass (the block and the canvas after it) and a
dual-cache pass (the block alone). Prints a table and writes a CSV; the ratios are full / cached pass.

    python benchmarks/kv_cache_pass.py --model runs/<run>/hf --lengths 128,512,2048 --out bench/kv_cache_pass.csv
    python benchmarks/kv_cache_pass.py --base --lengths 256,1024 --threads 2   # random ModernBERT-base shape
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bertforge.bench.report import write_rows
from bertforge.generation import load_masked_lm
from bertforge.generation.cli import DTYPES
from bertforge.models.block_cache import build_cache

BLOCK = 32


def per_pass_ms(fn, repeats: int, device: str) -> float:
    """Milliseconds of the fastest of ``repeats`` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def measure(folder: str, lengths: list[int], repeats: int, device: str, dtype: torch.dtype) -> list[dict]:
    """One row per length for the model in ``folder``."""
    model, tok = load_masked_lm(folder, device, dtype)
    prefix, dual = build_cache("prefix", model, len(tok)), build_cache("dual", model, len(tok))
    if dual is None:
        raise SystemExit(f"{folder}: this model has no block cache (see the log line above)")
    rows = []
    with torch.inference_mode():
        for length in lengths:
            row = {"model": Path(folder).name, "length": length,
                   **time_passes(model, prefix, dual, len(tok), length, repeats, device)}
            row["full_over_prefix"] = row["full_ms"] / row["prefix_ms"]
            row["full_over_dual"] = row["full_ms"] / row["dual_ms"]
            rows.append(row)
            print(f"{row['model']} L={length}: full {row['full_ms']:.1f} ms, refresh {row['refresh_ms']:.1f} ms, "
                  f"prefix {row['prefix_ms']:.1f} ms ({row['full_over_prefix']:.2f}x), dual {row['dual_ms']:.1f} ms "
                  f"({row['full_over_dual']:.2f}x)", flush=True)
    return rows


def time_passes(model, prefix, dual, vocab: int, length: int, repeats: int, device: str) -> dict[str, float]:
    """Milliseconds per full, refresh, prefix-cache and dual-cache pass on a random canvas of ``length`` tokens."""
    torch.manual_seed(0)
    ids = torch.randint(vocab // 4, vocab // 2, (1, length), device=device)
    mask, one = torch.ones_like(ids), torch.zeros(1, dtype=torch.long, device=device)
    lo = length // 2
    block = torch.arange(lo, lo + BLOCK, device=device)[None]
    after = torch.arange(lo, length, device=device)[None]
    prefix.refresh(ids, mask, one)
    dual.refresh(ids, mask, one)
    return {"full_ms": per_pass_ms(lambda: model(input_ids=ids, attention_mask=mask), repeats, device),
            "refresh_ms": per_pass_ms(lambda: dual.refresh(ids, mask, one), repeats, device),
            "prefix_ms": per_pass_ms(lambda: prefix.block_logits(one, ids.gather(1, after), after), repeats, device),
            "dual_ms": per_pass_ms(lambda: dual.block_logits(one, ids.gather(1, block), block), repeats, device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="Hugging Face masked-LM folder (repeatable)")
    p.add_argument("--base", action="store_true", help="also a random ModernBERT-base-shaped model")
    p.add_argument("--base-folder", default="bench/random-modernbert-base")
    p.add_argument("--lengths", default="128,512,2048", help="comma list of canvas lengths (each >= 64)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--out", default="bench/kv_cache_pass.csv")
    args = p.parse_args()
    lengths = [int(n) for n in args.lengths.split(",") if n]
    if not lengths or min(lengths) < 2 * BLOCK:
        p.error(f"--lengths: each must be at least {2 * BLOCK} (a block of {BLOCK} sits at the middle)")
    if args.threads:
        torch.set_num_threads(args.threads)
    folders = list(args.model)
    if args.base:
        from sampler_speed import random_modernbert_base

        folders.append(str(random_modernbert_base(Path(args.base_folder))))
    if not folders:
        p.error("give --model FOLDER and/or --base")
    device = "cuda" if args.device == "gpu" else "cpu"
    rows = [row for folder in folders for row in measure(folder, lengths, args.repeats, device, DTYPES[args.dtype])]
    write_rows(rows, args.out)
    print("\n| model | length | full pass ms | refresh ms | prefix pass ms | dual pass ms | full / prefix "
          "| full / dual |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['length']} | {r['full_ms']:.1f} | {r['refresh_ms']:.1f} | {r['prefix_ms']:.1f} | "
              f"{r['dual_ms']:.1f} | {r['full_over_prefix']:.2f}x | {r['full_over_dual']:.2f}x |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
