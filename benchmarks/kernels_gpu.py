"""Fused Triton kernels vs plain torch vs torch.compile: forward + backward of each kernel and a FlexBERT train step.

    python benchmarks/kernels_gpu.py --tokens 16384 --batch 16 --seq-len 1024 --dtype bf16 --out bench/kernels
    TRITON_INTERPRET=1 python benchmarks/kernels_gpu.py --cpu-smoke --out /tmp/kernels   # tiny CPU run of the script

Shapes are ModernBERT-base's (hidden 768, 12 heads of 64, GLU 2 x 1152, vocab 50368) on ``--tokens`` unpadded rows;
the MLM loss takes 30% of them (the masked rows). The train step is FlexBERT ModernBERT-base on ``--batch`` full rows
of ``--seq-len`` under bf16 autocast. For each case and variant: median milliseconds of forward + backward over
``--repeats`` runs after ``--warmup``, tokens/s and peak memory. Prints a markdown table, writes ``kernels.csv``.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from bertforge.kernels import fused_available
from bertforge.kernels.interpreter import interpreting
from bertforge.kernels.ops import (
    fused_glu,
    fused_rotary_qk,
    fused_token_cross_entropy,
    torch_glu,
    torch_rotary_qk,
    torch_token_cross_entropy,
    use_fused_norms,
)
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.model import FlexBertForMaskedLM
from bertforge.ops.rotary import Rotary

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BASE = dict(hidden=768, heads=12, intermediate=1152, vocab=50368, layers=22)
SMOKE = dict(hidden=48, heads=3, intermediate=40, vocab=101, layers=1)


def time_step(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> tuple[float, float | None]:
    """Median milliseconds of ``step()`` and peak memory in GiB (None on CPU)."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), (torch.cuda.max_memory_allocated() / 2**30 if cuda else None)


def kernel_cases(shape: dict, tokens: int, dtype: torch.dtype, device: torch.device) -> dict[str, tuple]:
    """Per kernel: (torch fn, fused fn, inputs factory); each fn maps the inputs to one output tensor."""
    h, heads, hd = shape["hidden"], shape["heads"], shape["hidden"] // shape["heads"]
    rand = lambda *s: torch.randn(*s, device=device, dtype=dtype)  # noqa: E731
    ln, rms = nn.LayerNorm(h, bias=False).to(device, dtype), nn.RMSNorm(h, eps=1e-5).to(device, dtype)
    ln_f, rms_f = nn.LayerNorm(h, bias=False).to(device, dtype), nn.RMSNorm(h, eps=1e-5).to(device, dtype)
    use_fused_norms(ln_f), use_fused_norms(rms_f)
    cos, sin = Rotary(hd, 160000.0).to(device).cos_sin(torch.arange(tokens, device=device) % 1024, dtype)
    decoder = nn.Linear(h, shape["vocab"]).to(device, dtype)
    masked = max(1, int(0.3 * tokens))
    targets = torch.randint(0, shape["vocab"], (masked,), device=device)
    rope = lambda fn: lambda qkv: torch.cat(fn(qkv[:, 0], qkv[:, 1], cos, sin), 1)  # noqa: E731
    mlm = lambda fn: lambda x: fn(x, decoder.weight, decoder.bias, targets).mean()  # noqa: E731
    return {
        "layernorm": (ln, ln_f, lambda: rand(tokens, h)),
        "rmsnorm": (rms, rms_f, lambda: rand(tokens, h)),
        "geglu": (lambda x: torch_glu(x, nn.GELU()), lambda x: fused_glu(x, nn.GELU()),
                  lambda: rand(tokens, 2 * shape["intermediate"])),
        "rope": (rope(torch_rotary_qk), rope(fused_rotary_qk), lambda: rand(tokens, 3, heads, hd)),
        "mlm_loss": (mlm(torch_token_cross_entropy), mlm(fused_token_cross_entropy), lambda: rand(masked, h)),
    }


def kernel_step(fn: Callable, make: Callable) -> Callable[[], None]:
    x = make().requires_grad_()
    grad = None

    def step() -> None:
        nonlocal grad
        y = fn(x)
        grad = torch.randn_like(y) if grad is None else grad
        torch.autograd.grad(y, [x], grad)

    return step


def train_step(shape: dict, kernels: str, batch: int, seq_len: int, device: torch.device, amp: torch.dtype | None,
               compiled: bool) -> Callable[[], None]:
    """One FlexBERT MLM forward + backward (parameter gradients) on random full rows, 30% of tokens masked."""
    cfg = FlexBertConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                         num_attention_heads=shape["heads"], intermediate_size=shape["intermediate"], kernels=kernels)
    model = FlexBertForMaskedLM(cfg).to(device).train()
    forward = torch.compile(model) if compiled else model
    ids = torch.randint(4, shape["vocab"], (batch, seq_len), device=device)
    mask = torch.ones_like(ids)
    labels = torch.where(torch.rand(batch, seq_len, device=device) < 0.3, ids, -100)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = forward(ids, mask, labels=labels).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    shape = SMOKE if args.cpu_smoke else BASE
    dtype = torch.float32 if args.cpu_smoke else DTYPES[args.dtype]
    tokens, batch, seq_len = (9, 1, 7) if args.cpu_smoke else (args.tokens, args.batch, args.seq_len)
    variants = ("torch", "fused") if args.cpu_smoke else ("torch", "fused", "compile")  # inductor is GPU-only here
    rows = []

    def record(case: str, variant: str, n_tokens: int, step: Callable[[], None]) -> None:
        ms, gib = time_step(step, device, args.warmup, args.repeats)
        rows.append({"case": case, "variant": variant, "dtype": str(dtype).removeprefix("torch."), "tokens": n_tokens,
                     "ms": round(ms, 4), "tokens_per_s": round(n_tokens / ms * 1e3), "peak_gib": gib})
        print(f"{case} {variant}: {ms:.3f} ms", flush=True)

    for case, (plain, fused, make) in kernel_cases(shape, tokens, dtype, device).items():
        fns = {"torch": plain, "fused": fused, "compile": torch.compile(plain) if "compile" in variants else None}
        for variant in variants:
            record(case, variant, tokens, kernel_step(fns[variant], make))
    amp = None if args.cpu_smoke else DTYPES[args.dtype]
    for variant in variants:
        kernels = "fused" if variant == "fused" else "torch"
        record("train_step", variant, batch * seq_len,
               train_step(shape, kernels, batch, seq_len, device, amp, compiled=variant == "compile"))
    return rows


def report(rows: list[dict], out: str, header: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "kernels.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    torch_ms = {r["case"]: r["ms"] for r in rows if r["variant"] == "torch"}
    print(f"\n{header}\n\n| case | variant | tokens | ms | tokens/s | vs torch | peak GiB |\n" + "|---" * 7 + "|")
    for r in rows:
        gib = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"| {r['case']} | {r['variant']} | {r['tokens']} | {r['ms']:.3f} | {r['tokens_per_s']:,} "
              f"| {torch_ms[r['case']] / r['ms']:.2f}x | {gib} |")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=16384, help="rows of the per-kernel cases")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="bench/kernels")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on CPU, Triton's interpreter")
    args = parser.parse_args(argv)
    if args.cpu_smoke and not interpreting():
        sys.exit("kernels_gpu.py --cpu-smoke: set TRITON_INTERPRET=1 so the Triton kernels run on CPU")
    if not args.cpu_smoke and not torch.cuda.is_available():
        sys.exit("kernels_gpu.py needs a CUDA GPU (or --cpu-smoke with TRITON_INTERPRET=1 for a tiny CPU check)")
    ok, reason = fused_available()
    if not ok:
        sys.exit(f"kernels_gpu.py: fused kernels unavailable: {reason}")
    if args.cpu_smoke:
        args.warmup, args.repeats = 0, 1
    rows = run(args)
    where = "CPU smoke (interpreter; times mean nothing)" if args.cpu_smoke else torch.cuda.get_device_name()
    report(rows, args.out, f"{where}; fused = {reason}; forward + backward, median of {args.repeats}")
    return rows


if __name__ == "__main__":
    main()
