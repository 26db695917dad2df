"""Chat with a chat-finetuned masked-diffusion BERT: ``python chat.py runs/<run>/hf [options]`` (interactive)."""

from bertforge.cli import run_cli
from bertforge.generation.chat import main

if __name__ == "__main__":
    run_cli(main)
