"""Export a pretraining checkpoint, whole or FSDP-sharded, as a Hugging Face folder, in one process.

    python scripts/export_hf.py runs/<run> [--checkpoint runs/<run>/checkpoints/ep0-ba600] [--out runs/<run>/hf]

The model is rebuilt from the run's ``config.yaml`` and tokenizer (``tokenizer.name``, else the run's
``tokenizer/``); the checkpoint defaults to the one ``latest-rank0.pt`` points to. A sharded
checkpoint's folder is consolidated from all its ranks' shards.
"""

from __future__ import annotations

import argparse
import os

from bertforge.checkpoints import latest_checkpoint, load_whole
from bertforge.cli import run_cli
from bertforge.config import load_config
from bertforge.data.tokenizer import load_tokenizer
from bertforge.errors import UserError
from bertforge.models.export import export_hf
from bertforge.train import build_model


def export_checkpoint(run_dir: str, checkpoint: str | None = None, out: str | None = None) -> str:
    """Load ``checkpoint`` (default: the run's latest) into the run's model and write it as a transformers folder."""
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    checkpoint = checkpoint or latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if checkpoint is None:
        raise UserError(f"{run_dir}/checkpoints has no latest-rank0.pt; pass --checkpoint")
    model = build_model(cfg, load_tokenizer(cfg.tokenizer.name or os.path.join(run_dir, "tokenizer")))
    model.load_state_dict(load_whole(checkpoint)["state"]["model"])
    return export_hf(model.eval(), out or os.path.join(run_dir, "hf"))


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
