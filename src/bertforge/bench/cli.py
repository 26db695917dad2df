"""``benchmark_fwd.py``: forward / train-step throughput and memory per sequence length, models side by side.

    python benchmark_fwd.py yamls/pretrain/hf-bert-base.yaml max_seq_len=2048 device_train_microbatch_size=16
    python benchmark_fwd.py --sweep yamls/pretrain/a.yaml yamls/pretrain/b.yaml --seq-lens 128,512 --out bench/
"""

from __future__ import annotations

import argparse
import logging
import os

import torch

from bertforge.bench.report import comparison_table, markdown_table, write_all
from bertforge.bench.runner import Settings, run_model
from bertforge.errors import UserError

log = logging.getLogger(__name__)
MODES = ("forward", "train")
SWITCH = ("off", "on")
INPUTS = ("fixed", "variable")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2 through run_cli
        raise UserError(f"{message} (see --help)")


def _choices(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise UserError(f"{flag}: {','.join(bad) or text!r} not understood; use a comma list of {', '.join(allowed)}")
    return items


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a comma list of integers, e.g. 128,512") from None
    if not values or min(values) < 1:
        raise UserError(f"{flag}: {text!r} needs positive integers")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = _Parser(prog="benchmark_fwd.py", description=__doc__.split("\n")[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("args", nargs="+", metavar="YAML|key=value",
                   help="one YAML (several with --sweep) and key=value overrides applied to each")
    p.add_argument("--sweep", action="store_true", help="benchmark several YAMLs side by side")
    p.add_argument("--seq-lens", help="comma list of sequence lengths (default: the YAML's max_seq_len)")
    p.add_argument("--inputs", default="fixed,variable", help="fixed (full length) and/or variable lengths")
    p.add_argument("--mode", default="forward", help="forward (eval, inference_mode) and/or train (fwd+bwd+step)")
    p.add_argument("--activation-checkpointing", default="off", metavar="off,on",
                   help="measure with activation checkpointing off and/or on (sets model.model_config."
                        "activation_checkpointing); with both, a comparison table follows")
    p.add_argument("--compile", default="off", metavar="off,on",
                   help="measure eagerly and/or with torch.compile (as compile_model: true); each case first "
                        "compiles on one untimed batch")
    p.add_argument("--batch-size", help="sequences per batch, or 'auto' (default: device_train_microbatch_size)")
    p.add_argument("--max-batch-size", type=int, help="cap of --batch-size auto (default: 1024 GPU, 8 CPU)")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats (median, min, max reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs")
    p.add_argument("--precision", choices=("fp32", "amp_bf16"), help="default: the YAML's, else bf16 on GPU")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: the YAML's, else gpu when available")
    p.add_argument("--length-dist", default="uniform",
                   help="variable lengths: uniform, normal, or a text file / MDS split to take document lengths from")
    p.add_argument("--pad-to", choices=("longest", "max"), default="longest",
                   help="pad variable batches to their longest sequence (as training does) or to the length")
    p.add_argument("--peak-tflops", type=float, help="peak TFLOP/s for MFU (default: table of known GPUs)")
    p.add_argument("--vocab-size", type=int, help="vocabulary of the stand-in tokenizer when the real one is absent")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/bench", help="folder for bench.csv, bench.png and bench.md")
    return p


def settings_from_args(ns: argparse.Namespace) -> Settings:
    """Checked benchmark settings from parsed arguments."""
    size = ns.batch_size
    if size is not None and size != "auto":
        size = _ints(size, "--batch-size")[0]
    if ns.repeats < 1 or ns.warmup < 0:
        raise UserError("--repeats must be >= 1 and --warmup >= 0")
    return Settings(
        seq_lens=_ints(ns.seq_lens, "--seq-lens") if ns.seq_lens else [],
        modes=_choices(ns.mode, MODES, "--mode"), inputs=_choices(ns.inputs, INPUTS, "--inputs"),
        batch_size=size, max_auto_batch=ns.max_batch_size, repeats=ns.repeats, warmup=ns.warmup,
        precision=ns.precision, device=ns.device, pad_to=ns.pad_to, peak_tflops=ns.peak_tflops,
        vocab_size=ns.vocab_size, seed=ns.seed, length_dist=ns.length_dist,
        checkpointing=_choices(ns.activation_checkpointing, SWITCH, "--activation-checkpointing"),
        compile=_choices(ns.compile, SWITCH, "--compile"),
    )


def split_args(args: list[str], sweep: bool) -> tuple[list[str], list[str]]:
    """(YAML paths, key=value overrides) from the positional arguments."""
    overrides = [a for a in args if "=" in a and not os.path.isfile(a)]
    yamls = [a for a in args if a not in overrides]
    if not yamls:
        raise UserError("no YAML given; e.g. benchmark_fwd.py yamls/quickstart/hf-bert-tiny.yaml")
    if len(yamls) > 1 and not sweep:
        raise UserError(f"{len(yamls)} YAMLs given ({', '.join(yamls)}); pass --sweep to benchmark several")
    for path in yamls:
        if not os.path.isfile(path):
            raise UserError(f"config file not found: {path}")
    return yamls, overrides


def main(argv: list[str]) -> list[dict]:
    """Run the benchmark, write CSV/PNG/markdown, print the markdown table (stdout); return the rows."""
    ns = build_parser().parse_intermixed_args(argv)
    yamls, overrides = split_args(ns.args, ns.sweep)
    settings = settings_from_args(ns)
    if ns.threads:
        torch.set_num_threads(ns.threads)
    rows: list[dict] = []
    for yaml in yamls:
        rows += run_model(yaml, overrides, settings)
    paths = write_all(rows, ns.out)
    print(markdown_table(rows), flush=True)  # the program's output, on stdout
    if comparison_table(rows):
        print("\n" + comparison_table(rows), flush=True)
    log.info("wrote %s, %s and %s", paths["csv"], paths["png"], paths["md"])
    return rows
