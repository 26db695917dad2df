"""Finetune on GLUE: ``python glue.py yamls/finetune-glue/<model>.yaml [tasks=[rte,mrpc] seeds=[17,42] ...]``."""

from bertforge.cli import run_cli
from bertforge.glue import main

if __name__ == "__main__":
    run_cli(main)
