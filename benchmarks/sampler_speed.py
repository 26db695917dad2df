"""Our sampler with confidence-threshold parallel decoding vs the LLaDA / dllm reference schedule.

The reference is re-implemented here from the published algorithm (LLaDA, Nie et al. 2025, "generate" with
low-confidence remasking): the answer starts as mask tokens; blocks of ``block_length`` are decoded left to right
with ``steps / blocks`` forward passes each; at every pass each row commits a fixed number of its most confident
masked positions of the current block (the block's mask count spread evenly over its steps, remainder first).
Every method decodes each prompt alone, greedily (temperature 0), without an end-of-answer stop, so all of them
produce ``max_new_tokens`` tokens. Reported per method: forward passes per generated token, tokens/s, and
agreement (fraction of equal tokens) with the one-token-per-step greedy output (the reference at
steps = max_new_tokens), over the whole canvas and over the answer alone (the baseline's tokens before its first
end-of-answer or padding token: a chat model's canvas is mostly end marker + padding, which agree trivially),
and the passes that committed answer tokens per answer token (1.0 for the baseline; the saving on real text,
where whole-canvas passes/token also count the end marker and padding, decoded in parallel for free).

    python benchmarks/sampler_speed.py --model runs/<run>/hf --base --max-new-tokens 64 --block-length 32 \\
        --steps 64,32 --thresholds 0.9,0.7 --factors 1,0.5 --cache none,prefix,dual --out bench/sampler_speed.csv

``--cache none,prefix,dual`` runs our sampler without and with Fast-dLLM's caches (a block's later passes run the
block and the canvas after it, or the block alone, over cached keys and values): their passes are cheaper, so
tokens/s is the column that shows it, and agreement shows what the approximation changes.

``--chat-prompts FILE`` (JSONL with an ``instruction`` field, e.g. ../shared/data/sft/alpaca_seed_tasks.jsonl,
which no quickstart run trains on) renders the prompts as chat finetuning did instead of tiny-shakespeare openings.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch

from bertforge.bench.report import write_rows
from bertforge.generation import SamplerConfig, encode_prompt, end_token_ids, load_masked_lm, logits_fn, sample
from bertforge.generation.cli import DTYPES
from bertforge.models.block_cache import CACHES, build_cache

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO / "data/sample/tinyshakespeare.txt"
MODERNBERT_TOKENIZER = REPO.parent / "shared/data/tokenizers/modernbert"


def reference_generate(model_fn, prompt: list[int], steps: int, gen_length: int, block_length: int,
                       mask_id: int, second_best: list[float] | None = None,
                       commit_step: torch.Tensor | None = None, device: str | None = None) -> tuple[torch.Tensor, int]:
    """The LLaDA schedule for one prompt, greedy: (answer ids (gen_length,), forward passes). ``second_best``,
    when given, receives at each pass with two or more masked positions in the block the probability of the
    second most confident one: parallel decoding with threshold p can only save a pass where it is above p.
    ``commit_step`` (gen_length,), when given, receives the pass that committed each answer position."""
    x = torch.tensor(prompt + [mask_id] * gen_length, device=device)[None]  # (1, P + N)
    start, blocks = len(prompt), gen_length // block_length
    per_block, passes = steps // blocks, 0
    for b in range(blocks):
        lo, hi = start + b * block_length, start + (b + 1) * block_length
        masked = int((x[0, lo:hi] == mask_id).sum())
        quota = [masked // per_block + (i < masked % per_block) for i in range(per_block)]  # commits per step
        for k in quota:
            is_mask = x == mask_id
            logits = model_fn(x, torch.ones_like(x)).float()  # (1, P + N, V)
            passes += 1
            logits[..., mask_id] = float("-inf")  # as in our sampler: the mask token is never a prediction
            pred = logits.argmax(-1)
            conf = logits.softmax(-1).gather(-1, pred[..., None]).squeeze(-1)
            conf[:, hi:] = float("-inf")  # nothing beyond the current block
            conf = torch.where(is_mask, conf, float("-inf"))
            if second_best is not None and int(is_mask[0, lo:hi].sum()) >= 2:
                second_best.append(float(conf[0].topk(2).values[1]))
            if k:
                pick = conf[0].topk(k).indices
                x[0, pick] = pred[0, pick]
                if commit_step is not None:
                    commit_step[pick.cpu() - start] = passes - 1
    return x[0, start:], passes


def answer_length(tokens: torch.Tensor, stops: set[int]) -> int:
    """How many tokens come before the first of ``stops`` (all of them when none occurs)."""
    return next((i for i, t in enumerate(tokens.tolist()) if t in stops), len(tokens))


def shakespeare_prompts(count: int, words: int = 6) -> list[str]:
    """The first ``words`` words of ``count`` speeches spread through tiny-shakespeare."""
    speeches = [s.strip() for s in re.split(r"\n\s*\n", SHAKESPEARE.read_text()) if len(s.split()) > words]
    stride = max(1, len(speeches) // count)
    return [" ".join(speeches[i * stride].split()[:words]) for i in range(count)]


def chat_prompts(tok, path: str, count: int) -> list[list[int]]:
    """The first ``count`` instructions without an extra input of a JSONL file, rendered as SFT rendered them."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        if any(inst.get("input") for inst in task.get("instances", [])):
            continue
        out.append(encode_prompt(tok, task["instruction"], chat=True))
        if len(out) == count:
            break
    return out


def random_modernbert_base(folder: Path) -> Path:
    """A randomly initialised ModernBERT-base-shaped masked LM with the ModernBERT tokenizer, saved to ``folder``."""
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertForMaskedLM

    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        if MODERNBERT_TOKENIZER.is_dir():
            tok = AutoTokenizer.from_pretrained(MODERNBERT_TOKENIZER)
        else:  # e.g. on the GPU machine, which has the repository but not ../shared: a WordPiece of the sample text
            from bertforge.data.tokenizer import train_wordpiece

            print(f"no {MODERNBERT_TOKENIZER}: the random model gets a 4096-token WordPiece of {SHAKESPEARE.name}")
            tok = train_wordpiece(SHAKESPEARE.read_text().split("\n\n"), 4096)
        config = ModernBertConfig(vocab_size=50368, hidden_size=768, num_hidden_layers=22, num_attention_heads=12,
                                  intermediate_size=1152, local_attention=128, global_attn_every_n_layers=3,
                                  max_position_embeddings=8192, pad_token_id=tok.pad_token_id)
        ModernBertForMaskedLM(config).save_pretrained(folder)
        tok.save_pretrained(folder)
    return folder


def run_model(folder: str, args) -> list[dict]:
    """Every method on one model: one row per (method, steps, threshold)."""
    device = "cuda" if args.device == "gpu" else "cpu"
    model, tok = load_masked_lm(folder, device, DTYPES[args.dtype])
    fn = logits_fn(model, len(tok))
    if args.chat_prompts:
        prompts = chat_prompts(tok, args.chat_prompts, args.prompts)
    else:
        prompts = [encode_prompt(tok, p) for p in shakespeare_prompts(args.prompts)]
    n, mask = args.max_new_tokens, tok.mask_token_id
    warm = torch.tensor([prompts[0]], device=device)
    fn(warm, torch.ones_like(warm))  # warm-up

    def timed(method: str, steps: int, threshold: float | None, decode) -> tuple[dict, list, list]:
        """Decode every prompt alone; the row of figures, the outputs and the pass that committed each token. The
        time is the fastest of ``--repeats`` rounds (each gives the same tokens: greedy)."""
        best = float("inf")
        for _ in range(args.repeats):
            outs, commits, passes, start = [], [], 0, time.perf_counter()
            for p in prompts:
                ids, calls, committed = decode(p)
                outs.append(ids)
                commits.append(committed)
                passes += calls
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        seconds = best
        row = {"model": folder, "method": method, "steps": steps, "threshold": threshold or "",
               "passes_per_token": passes / (n * len(prompts)), "tokens_per_s": n * len(prompts) / seconds}
        return row, outs, commits

    def reference(steps: int):
        def decode(p):
            committed = torch.full((n,), -1)
            ids, calls = reference_generate(fn, p, steps, n, args.block_length, mask,
                                            seconds if steps == n else None, committed, device)
            return ids, calls, committed
        return decode

    caches = {kind: build_cache(kind, model, len(tok)) for kind in args.cache}

    def ours(steps: int, threshold: float | None, factor: float | None = None, cache: str = "none"):
        config = SamplerConfig(max_new_tokens=n, steps=steps, block_length=args.block_length, threshold=threshold,
                               factor=factor, cache=cache)

        def decode(p):
            out = sample(fn, [p], config, mask_token_id=mask, pad_token_id=tok.pad_token_id, cache=caches[cache],
                         device=device)
            return out.tokens[0], out.forward_passes, out.commit_step[0]
        return decode

    rows, baseline, seconds = [], None, []
    stops = set(end_token_ids(tok)) | {tok.pad_token_id}
    with torch.inference_mode():
        for steps in args.steps:
            runs = [("reference (LLaDA schedule)", steps, None, reference(steps))]
            for kind in args.cache:
                cached = "" if caches[kind] is None else f", {kind} cache"
                runs += [("ours, no threshold" + cached, steps, None, ours(steps, None, None, kind))]
                runs += [("ours, threshold" + cached, steps, t, ours(steps, t, None, kind)) for t in args.thresholds]
                runs += [("ours, factor" + cached, steps, f, ours(steps, None, f, kind)) for f in args.factors]
            for method, s, t, decode in runs:
                row, outs, commits = timed(method, s, t, decode)
                if baseline is None:  # the first run: the reference at the largest budget (one token per step)
                    baseline = outs
                same = sum(int((a == b).sum()) for a, b in zip(outs, baseline))
                row["agreement"] = same / (n * len(prompts))
                cuts = [answer_length(b, stops) for b in baseline]
                same = sum(int((a[:c] == b[:c]).sum()) for a, b, c in zip(outs, baseline, cuts))
                row["answer_agreement"] = same / max(sum(cuts), 1)
                answer_passes = sum(len(set(c[:cut].tolist())) for c, cut in zip(commits, cuts))
                row["answer_passes_per_token"] = answer_passes / max(sum(cuts), 1)
                rows.append(row)
                print(f"{Path(folder).name:>28} {method:>40} steps={s:<4} thr={t or '-':<5} "
                      f"passes/token={row['passes_per_token']:.3f} tokens/s={row['tokens_per_s']:.1f} "
                      f"agreement={row['agreement']:.3f} answer={row['answer_agreement']:.3f} "
                      f"answer passes/token={row['answer_passes_per_token']:.3f} ({sum(cuts)} answer tokens)",
                      flush=True)
    # every timing round of the baseline appended the same values: keep the first round's
    report_readiness(folder, seconds[:len(seconds) // args.repeats], [0.9, 0.7, 0.5] + args.thresholds)
    return rows


def report_readiness(folder: str, seconds: list[float], thresholds: list[float]) -> None:
    """How often the one-token-per-step decode had a second masked position above each threshold: the most passes
    threshold decoding can save on this model (whatever the sampler does, it needs this confidence)."""
    if not seconds:
        return
    values = torch.tensor(seconds)
    shares = ", ".join(f">= {t:g}: {float((values >= t).float().mean()):.1%}" for t in sorted(set(thresholds)))
    print(f"{Path(folder).name}: second most confident masked position over {len(seconds)} passes: mean "
          f"{float(values.mean()):.3f}, max {float(values.max()):.3f}; share of passes with it {shares}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="Hugging Face masked-LM folder (repeatable)")
    p.add_argument("--base", action="store_true", help="also a random ModernBERT-base-shaped model")
    p.add_argument("--base-folder", default="bench/random-modernbert-base")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--block-length", type=int, default=32)
    p.add_argument("--steps", default="64,32", help="comma list; the first must equal --max-new-tokens")
    p.add_argument("--thresholds", default="0.9,0.7")
    p.add_argument("--factors", default="", help="Fast-dLLM factor rule values, e.g. 1,0.5 (column 'threshold')")
    p.add_argument("--cache", default="none", help="comma list of block caches for our sampler: none, prefix, "
                   "dual (Fast-dLLM's; the agreement column shows what the approximation changes)")
    p.add_argument("--chat-prompts", default=None, help="JSONL of instructions: chat prompts instead of Shakespeare")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--repeats", type=int, default=1, help="time each method this often; tokens/s from the fastest")
    p.add_argument("--out", default="bench/sampler_speed.csv")
    args = p.parse_args()
    args.steps = [int(s) for s in args.steps.split(",")]
    args.thresholds = [float(t) for t in args.thresholds.split(",") if t]
    args.factors = [float(f) for f in args.factors.split(",") if f]
    args.cache = [c for c in args.cache.split(",") if c]
    if not args.cache or any(c not in CACHES for c in args.cache):
        p.error(f"--cache: a comma list of {', '.join(CACHES)}")
    if args.steps[0] != args.max_new_tokens:
        p.error("--steps: the first budget must equal --max-new-tokens (it is the one-token-per-step baseline)")
    if args.threads:
        torch.set_num_threads(args.threads)
    folders = list(args.model) + ([str(random_modernbert_base(Path(args.base_folder)))] if args.base else [])
    rows = [row for folder in folders for row in run_model(folder, args)]
    write_rows(rows, args.out)
    print("\n| model | method | steps | threshold / factor | passes/token | tokens/s | agreement | answer agreement "
          "| answer passes/token |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {Path(r['model']).name} | {r['method']} | {r['steps']} | {r['threshold'] or '-'} | "
              f"{r['passes_per_token']:.3f} | {r['tokens_per_s']:.1f} | {r['agreement']:.1%} | "
              f"{r['answer_agreement']:.1%} | {r['answer_passes_per_token']:.3f} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
