"""Convert text / JSONL / Hugging Face datasets to MDS shards: ``python convert_dataset.py --help``."""

from bertforge.cli import run_cli
from bertforge.data.convert import main

if __name__ == "__main__":
    run_cli(main)
