"""Fused CUDA FFT convolution vs the torch.fft backend: forward + backward time per length, same run.

    python benchmarks/fftconv_gpu.py --seq-lens 2048,8192 --batch 16 --channels 768 --dtypes fp32,bf16

For each length and dtype: the median (min, max) milliseconds of forward + backward over ``--repeats``
runs after ``--warmup``, timed with CUDA events, for both backends on the same inputs, their ratio
and peak memory. ``(batch, channels)`` rows of ``L`` tokens with bidirectional filters, as one M2
long convolution of a batch. Writes ``fftconv.csv`` and prints a markdown table. The full-model
figure (M2-BERT-80M vs FlexBERT forward tokens/s) comes from benchmark_fwd.py; see docs/m2.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys

import torch

from bertforge.ops import fftconv_cuda
from bertforge.ops.fftconv import torch_fft_conv

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def time_fwd_bwd(conv, u: torch.Tensor, k: torch.Tensor, k_rev: torch.Tensor, warmup: int, repeats: int):
    """Milliseconds of ``conv(u, k, k_rev)`` forward + backward (median, min, max) and peak memory in GiB."""
    dy = torch.randn_like(u)
    leaves = [t.detach().requires_grad_() for t in (u, k, k_rev)]

    def step() -> None:
        y = conv(*leaves)
        torch.autograd.grad(y, leaves, dy)

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), min(times), max(times), torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-lens", default="512,1024,2048,4096,8192")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="bench/fftconv")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/fftconv_gpu.py needs a CUDA GPU")
    ext, how = fftconv_cuda.load_extension(True)
    if ext is None:
        sys.exit(f"fused kernel unavailable: {how}")
    fused = lambda u, k, k_rev: fftconv_cuda.fused_fft_conv(ext, u, k, k_rev)  # noqa: E731
    rows = []
    for name in args.dtypes.split(","):
        for length in (int(x) for x in args.seq_lens.split(",")):
            g = torch.Generator(device="cuda").manual_seed(length)
            u = torch.randn(args.batch, args.channels, length, device="cuda", generator=g).to(DTYPES[name])
            k = torch.randn(args.channels, length, device="cuda", generator=g) / length**0.5
            k_rev = torch.randn(args.channels, length, device="cuda", generator=g) / length**0.5
            ref = time_fwd_bwd(torch_fft_conv, u, k, k_rev, args.warmup, args.repeats)
            ours = time_fwd_bwd(fused, u, k, k_rev, args.warmup, args.repeats)
            rows.append({"dtype": name, "seq_len": length, "batch": args.batch, "channels": args.channels,
                         "torch_ms": ref[0], "torch_min": ref[1], "torch_max": ref[2], "torch_gib": ref[3],
                         "kernel_ms": ours[0], "kernel_min": ours[1], "kernel_max": ours[2], "kernel_gib": ours[3],
                         "speedup": ref[0] / ours[0]})
            print(f"{name} L={length}: torch {ref[0]:.3f} ms, kernel {ours[0]:.3f} ms, x{ref[0] / ours[0]:.2f}",
                  flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "fftconv.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\n{torch.cuda.get_device_name()}, batch {args.batch} x {args.channels} channels, "
          f"forward + backward, median of {args.repeats} ({how} build)\n")
    print("| dtype | L | torch.fft ms | kernel ms | speedup | torch GiB | kernel GiB |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['seq_len']} | {r['torch_ms']:.3f} | {r['kernel_ms']:.3f} | {r['speedup']:.2f}x "
              f"| {r['torch_gib']:.2f} | {r['kernel_gib']:.2f} |")


if __name__ == "__main__":
    main()
