"""Export a pretraining checkpoint, whole or FSDP-sharded, as a Hugging Face folder, in one process.

    python scripts/export_hf.py runs/<run> [--checkpoint runs/<run>/checkpoints/ep0-ba600] [--out runs/<run>/hf]

The model is rebuilt from the run's ``config.yaml`` and tokenizer (``tokenizer.name``, else the run's
``tokenizer/``); the checkpoint defaults to the one ``latest-rank0.pt`` points to. A sharded
checkpoint's folder is consolidated from all its ranks' shards. Families transformers has no class for
(M2-BERT, FlexBERT presets ModernBERT cannot express) are written with bertforge's own modeling code
(load them with ``trust_remote_code=True``). Same as ``python -m bertforge.export hf``.
"""

from __future__ import annotations

import argparse
import os

from bertforge.cli import run_cli
from bertforge.export.source import export_run


def export_checkpoint(run_dir: str, checkpoint: str | None = None, out: str | None = None) -> str:
    """Load ``checkpoint`` (default: the run's latest) into the run's model and write it as a transformers folder."""
    return export_run(run_dir, out or os.path.join(run_dir, "hf"), checkpoint)


def main(argv: list[str]) -> None:
    """Parse the command line and export."""
    parser = argparse.ArgumentParser(prog="export_hf.py", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the run folder (holds config.yaml, tokenizer/, checkpoints/)")
    parser.add_argument("--checkpoint", help="a checkpoint file or a sharded checkpoint's folder")
    parser.add_argument("--out", help="output folder (default: <run_dir>/hf)")
    args = parser.parse_args(argv)
    print(export_checkpoint(args.run_dir, args.checkpoint, args.out))


if __name__ == "__main__":
    run_cli(main)
