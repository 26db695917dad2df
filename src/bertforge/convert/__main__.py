"""``python -m bertforge.convert {m2-original,to-m2-original} ...``: see each subcommand's ``--help``."""

from __future__ import annotations

import argparse

from bertforge.cli import run_cli
from bertforge.convert.m2 import export_m2_original, import_m2_original


def main(argv: list[str]) -> None:
    """Parse the command line and run one conversion; prints what was written and what was not converted."""
    parser = argparse.ArgumentParser(prog="python -m bertforge.convert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("m2-original", help="original M2-BERT weights (HF pytorch_model.bin or a Composer .pt) "
                                             "-> a bertforge run folder")
    imp.add_argument("weights", help="pytorch_model.bin / model.safetensors / Composer checkpoint, or a folder")
    imp.add_argument("--config", help="the original's config.json, or its training YAML (model.model_config); "
                                      "default: config.json beside the weights")
    imp.add_argument("--out", required=True, help="run folder to write (config.yaml, tokenizer/, checkpoints/)")
    imp.add_argument("--tokenizer", default="bert-base-uncased",
                     help="tokenizer saved with the run: a Hub name or a local folder (default: bert-base-uncased, "
                          "the published checkpoints' tokenizer)")
    exp = sub.add_parser("to-m2-original", help="a m2_bert run -> the original's pytorch_model.bin + config.json")
    exp.add_argument("run", help="run folder (config.yaml, checkpoints/latest-rank0.pt)")
    exp.add_argument("--checkpoint", help="a checkpoint file (default: the run's latest)")
    exp.add_argument("--out", required=True, help="folder to write pytorch_model.bin and config.json to")
    args = parser.parse_args(argv)
    if args.command == "m2-original":
        report = import_m2_original(args.weights, args.out, args.config, args.tokenizer)
        print(report)
    else:
        print(export_m2_original(args.run, args.out, args.checkpoint))


if __name__ == "__main__":
    run_cli(main)
