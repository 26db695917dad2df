"""Finetune and evaluate retrievers: ``python retrieval.py yamls/retrieval/quickstart-st.yaml [key=value ...]``."""

from bertforge.cli import run_cli
from bertforge.retrieval import main

if __name__ == "__main__":
    run_cli(main)
