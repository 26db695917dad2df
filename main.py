"""Pretrain a BERT-family encoder: ``composer main.py yamls/pretrain/<x>.yaml [key=value ...]``."""

from bertforge.cli import run_cli
from bertforge.train import main

if __name__ == "__main__":
    run_cli(main)
