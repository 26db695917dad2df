"""FlexBERT vs transformers ModernBertModel vs BertModel of equal size: forward tokens/s on CPU.

Same run, same weights for FlexBERT and ModernBERT (converted), BERT sized to the same parameter
count. Fixed-length batches, and variable-length batches whose lengths are token counts of real
paragraphs. Prints a markdown table with FlexBERT's speed-up and writes a CSV.

    python benchmarks/flexbert_cpu.py --seq-lens 128,512 --batch-size 16 --out bench/flexbert_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import statistics
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, ModernBertConfig, ModernBertModel

from bertforge.data.tokenizer import train_wordpiece
from bertforge.models.convert.modernbert import flexbert_config_from_modernbert
from bertforge.models.flexbert.model import FlexBertModel
from bertforge.models.params import count_params

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = [REPO.parent / "shared/data/wikitext-2/wiki.valid.tokens", REPO / "data/sample/tinyshakespeare.txt"]


def real_lengths(path: Path, vocab: int = 8192) -> list[int]:
    """Token counts of the paragraphs of ``path`` under a WordPiece tokenizer trained on it."""
    docs = [d.strip() for d in re.split(r"\n\s*\n|\n(?= = )", path.read_text()) if len(d.strip()) > 20]
    tokenizer = train_wordpiece(iter(docs), vocab)
    return [len(ids) for ids in tokenizer(docs, add_special_tokens=True)["input_ids"]]


def make_batch(lengths: list[int], seq_len: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids right-padded to ``seq_len`` with the given real lengths (clipped to seq_len)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (len(lengths), seq_len), generator=gen)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, : min(n, seq_len)] = 1
    return ids, mask


def time_forwards(models: dict, ids, mask, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per forward call of each model, under inference mode, after warm-up.

    The models take turns within each repeat, so a change in machine load hits them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in models.values():
                fn(ids, mask)
        for _ in range(repeats):
            for name, fn in models.items():
                start = time.perf_counter()
                fn(ids, mask)
                times[name].append(time.perf_counter() - start)
    return times


def build_models(hidden: int, layers: int, heads: int, inter: int, vocab: int, max_len: int) -> dict:
    """FlexBERT and ModernBERT with identical weights, and a BERT of (nearly) the same size."""
    torch.manual_seed(0)
    mcfg = ModernBertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=inter, pad_token_id=0, attn_implementation="sdpa")
    modern = ModernBertModel(mcfg).eval()
    flex = FlexBertModel(flexbert_config_from_modernbert(mcfg)).eval()
    flex.load_state_dict({k: v for k, v in modern.state_dict().items()})
    bcfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=inter * 3 // 2, max_position_embeddings=max_len, attn_implementation="sdpa")
    bert = BertModel(bcfg, add_pooling_layer=False).eval()
    return {
        "flexbert": lambda i, m: flex(i, m),
        "hf_modernbert": lambda i, m: modern(input_ids=i, attention_mask=m),
        "hf_bert": lambda i, m: bert(input_ids=i, attention_mask=m),
        "_params": {n: count_params(x)[0] for n, x in
                    (("flexbert", flex), ("hf_modernbert", modern), ("hf_bert", bert))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-lens", default="128,512")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--intermediate", type=int, default=576)
    parser.add_argument("--text", type=Path, default=next((p for p in DEFAULT_TEXT if p.exists()), DEFAULT_TEXT[-1]))
    parser.add_argument("--out", type=Path, default=Path("bench/flexbert_cpu.csv"))
    args = parser.parse_args()
    vocab = 32768
    lengths = real_lengths(args.text)
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    models = build_models(args.hidden, args.layers, args.heads, args.intermediate, vocab, max(seq_lens))
    params = models.pop("_params")
    print(f"threads={torch.get_num_threads()} text={args.text.name} docs={len(lengths)} "
          f"median_len={statistics.median(lengths)} params={ {k: round(v / 1e6, 1) for k, v in params.items()} }")
    rows = []
    for seq_len in seq_lens:
        for kind in ("fixed", "variable"):
            picks = random.Random(seq_len).sample(lengths, args.batch_size)
            lens = [seq_len] * args.batch_size if kind == "fixed" else [min(n, seq_len) for n in picks]
            ids, mask = make_batch(lens, seq_len, vocab, seed=seq_len)
            real = int(mask.sum())
            for name, times in time_forwards(models, ids, mask, args.repeats).items():
                med = statistics.median(times)
                rows.append(dict(model=name, seq_len=seq_len, inputs=kind, real_tokens=real, ms=round(med * 1e3, 1),
                                 ms_min=round(min(times) * 1e3, 1), ms_max=round(max(times) * 1e3, 1),
                                 tokens_per_s=round(real / med)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("| seq len | inputs | real tokens | FlexBERT tok/s | HF ModernBERT tok/s | HF BERT tok/s | "
          "FlexBERT / ModernBERT | FlexBERT / BERT |")
    print("|---|---|---|---|---|---|---|---|")
    for i in range(0, len(rows), 3):
        flex, modern, bert = rows[i:i + 3]
        print(f"| {flex['seq_len']} | {flex['inputs']} | {flex['real_tokens']} | {flex['tokens_per_s']} | "
              f"{modern['tokens_per_s']} | {bert['tokens_per_s']} | "
              f"{flex['tokens_per_s'] / modern['tokens_per_s']:.2f}x | "
              f"{flex['tokens_per_s'] / bert['tokens_per_s']:.2f}x |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
