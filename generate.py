"""Sample text from a masked-diffusion BERT: ``python generate.py runs/<run>/hf --prompt "ROMEO:" [options]``."""

from bertforge.cli import run_cli
from bertforge.generation.cli import main

if __name__ == "__main__":
    run_cli(main)
