"""Benchmark outputs: a CSV of every row, a PNG of real tokens/s against sequence length, a markdown table."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

COLUMNS = (
    "model", "act_ckpt", "compiled", "mode", "seq_len", "inputs", "batch_size", "precision", "device", "cpu_threads",
    "status",
    "ms_median", "ms_min", "ms_max", "real_tokens_per_batch", "padded_tokens_per_batch", "tokens_per_s",
    "seqs_per_s", "peak_mem_mib", "mem_kind", "params", "params_nonembedding", "tflops_per_s", "mfu",
    "yaml", "note",
)


VARIANTS = (("act_ckpt", "+ckpt"), ("compiled", "+compile"))  # row key, mark in the model label when "on"


def model_label(row: dict) -> str:
    """The model name, marked ``+ckpt`` (activation checkpointing) and/or ``+compile`` for those variants."""
    return " ".join([row["model"], *(mark for key, mark in VARIANTS if row.get(key) == "on")])


def write_csv(rows: Sequence[dict], path: str) -> None:
    """All rows, one column per ``COLUMNS`` entry (empty where a row has no value, e.g. OOM)."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})


def write_rows(rows: Sequence[dict], path: str) -> None:
    """``rows`` as a CSV at ``path`` (its folder made), one column per key of the first row."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_plot(rows: Sequence[dict], path: str) -> None:
    """Real tokens/s against sequence length: one panel per mode, one colour per model,
    solid lines for fixed-length inputs and dashed for variable-length ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    modes = list(dict.fromkeys(r["mode"] for r in rows))
    models = list(dict.fromkeys(model_label(r) for r in rows))
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        for i, model in enumerate(models):
            for kind, style in (("fixed", "-"), ("variable", "--")):
                points = sorted((r["seq_len"], r["tokens_per_s"]) for r in rows if r["mode"] == mode
                                and model_label(r) == model and r["inputs"] == kind and r["status"] == "ok")
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, marker="o", color=f"C{i}", label=f"{model} ({kind})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["seq_len"] for r in rows}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel("real tokens / s")
        ax.set_title(f"{mode} ({rows[0]['device']}, {rows[0]['precision']})")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def markdown_table(rows: Sequence[dict]) -> str:
    """A markdown table of the rows: time as median [min-max], real tokens/s, sequences/s, memory,
    achieved model TFLOP/s and MFU (n/a when the device's peak is unknown, e.g. on CPU)."""
    lines = [
        "| model | mode | seq len | inputs | batch | ms/batch median [min-max] | real tok/s | seq/s "
        "| real/padded tokens | peak mem MiB | params (non-emb) | TFLOP/s | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {model_label(r)} | {r['mode']} | {r['seq_len']} | {r['inputs']} | {r['batch_size']} "
        if r["status"] != "ok":
            lines.append(head + f"| {r['status'].upper()} | | | | | | | |")
            continue
        ratio = r["real_tokens_per_batch"] / r["padded_tokens_per_batch"]
        params = f"{r['params'] / 1e6:.1f}M ({r['params_nonembedding'] / 1e6:.1f}M)"
        lines.append(
            head + f"| {r['ms_median']:.1f} [{r['ms_min']:.1f}-{r['ms_max']:.1f}] | {r['tokens_per_s']:,.0f} "
            f"| {r['seqs_per_s']:,.1f} | {ratio:.0%} | {_num(r['peak_mem_mib'], '.0f')} | {params} "
            f"| {r['tflops_per_s']:.3g} | {_num(r['mfu'], '.1%') or 'n/a'} |"
        )
    return "\n".join(lines)


def comparison_table(rows: Sequence[dict]) -> str:
    """Each variant row (activation checkpointing and/or compile on) against the same case without either:
    time and peak memory side by side with their ratios; empty when the sweep has no variants."""
    case = lambda r: (r["model"], r["mode"], r["seq_len"], r["inputs"], r["batch_size"])  # noqa: E731
    plain = {case(r): r for r in rows if all(r.get(k, "off") == "off" for k, _ in VARIANTS) and r["status"] == "ok"}
    lines = []
    for r in rows:
        base = plain.get(case(r))
        if base is None or r is base or r["status"] != "ok":
            continue
        mem = f"{base['peak_mem_mib']:.0f} / {r['peak_mem_mib']:.0f}"
        mem_ratio = f"{r['peak_mem_mib'] / base['peak_mem_mib']:.2f}" if base["peak_mem_mib"] else "n/a"
        lines.append(f"| {model_label(r)} | {r['mode']} | {r['seq_len']} | {r['inputs']} | {r['batch_size']} "
                     f"| {base['ms_median']:.1f} / {r['ms_median']:.1f} | {r['ms_median'] / base['ms_median']:.2f} "
                     f"| {mem} | {mem_ratio} |")
    if not lines:
        return ""
    return "\n".join([
        "| variant | mode | seq len | inputs | batch | ms/batch median without / with | time ratio "
        "| peak mem MiB without / with | memory ratio |",
        "|---|---|---|---|---|---|---|---|---|", *lines])


def write_all(rows: Sequence[dict], out_dir: str) -> dict[str, str]:
    """Write ``bench.csv``, ``bench.png`` and ``bench.md`` into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"bench.{k}") for k in ("csv", "png", "md")}
    write_csv(rows, paths["csv"])
    write_plot(rows, paths["png"])
    with open(paths["md"], "w") as f:
        f.write(markdown_table(rows) + "\n")
        if comparison_table(rows):
            f.write("\n" + comparison_table(rows) + "\n")
    return paths
