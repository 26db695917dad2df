"""``generate.py``: sample text from a masked-diffusion (or any masked-LM) Hugging Face folder.

    python generate.py runs/<run>/hf --prompt "ROMEO:" --max-new-tokens 64 --steps 64 --block-length 32
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from bertforge.errors import ConfigError, UserError
from bertforge.generation.sampler import CACHES, REMASKING, SamplerConfig
from bertforge.generation.text import TextGenerator
from bertforge.runtime import device_name

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (exit code 2 through run_cli)."""

    def error(self, message: str):
        raise UserError(f"{message} (see --help)")


def add_sampling_options(p: argparse.ArgumentParser, block_length: int | None = None,
                         block_help: str = "semi-autoregressive block (default: one block)") -> None:
    """The sampler, device and dtype flags shared by ``generate.py`` and ``chat.py``."""
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="forward-pass budget (default: max-new-tokens)")
    p.add_argument("--block-length", type=int, default=block_length, help=block_help)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy and deterministic")
    p.add_argument("--remasking", choices=REMASKING, default="low_confidence")
    p.add_argument("--threshold", type=float, default=None,
                   help="also commit every position whose probability exceeds this (parallel decoding)")
    p.add_argument("--factor", type=float, default=None,
                   help="Fast-dLLM's factor rule (about 1): also commit the top n while the n-th probability "
                        ">= 1 - factor / (n + 1)")
    p.add_argument("--cache", choices=CACHES, default="none",
                   help="a block's later passes run its tokens alone (dual) or them and the canvas after them "
                        "(prefix) over cached keys/values, as Fast-dLLM's caches (FlexBERT, ModernBERT and BERT "
                        "models; an approximation: see the README)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "gpu"), default=None)
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``generate.py``."""
    p = Parser(description="Sample text by iterative unmasking from a Hugging Face masked-LM folder.")
    p.add_argument("model", help="a Hugging Face masked-LM folder (e.g. runs/<run>/hf) or Hub name")
    p.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for a batch")
    add_sampling_options(p)
    p.add_argument("--chat", action="store_true",
                   help="render each prompt as SFT data was: the tokenizer's chat template, else the plain alpaca one")
    p.add_argument("--end-token", action="append", default=None,
                   help="end-of-answer token (repeatable; default: the tokenizer's eos, else sep)")
    p.add_argument("--no-stop", action="store_true", help="do not stop at an end token")
    return p


def sampler_config(args: argparse.Namespace) -> SamplerConfig:
    """The sampler settings from the parsed flags; a bad one is one line naming its flag."""
    try:
        return SamplerConfig(max_new_tokens=args.max_new_tokens, steps=args.steps, block_length=args.block_length,
                             temperature=args.temperature, remasking=args.remasking, threshold=args.threshold,
                             factor=args.factor, seed=args.seed, cache=args.cache)
    except ConfigError as err:
        flag = "--" + err.key.replace("_", "-")
        raise UserError(f"{flag}{str(err)[len(err.key):]}") from None


def main(argv: list[str]) -> list[str]:
    """Parse ``argv``, sample, print each prompt with its answer; return the answers."""
    args = build_parser().parse_args(argv)
    config = sampler_config(args)
    device = "cuda" if device_name(args.device, "--device") == "gpu" else "cpu"
    generator = TextGenerator.from_pretrained(args.model, device, DTYPES[args.dtype])
    start = time.perf_counter()
    output = generator.run(args.prompt, config, chat=args.chat, end_tokens=[] if args.no_stop else args.end_token)
    seconds = time.perf_counter() - start
    answers = generator.decode(output)
    for prompt, answer in zip(args.prompt, answers):
        print(f"> {prompt}\n{answer}\n" if args.chat else f"{prompt} {answer}\n")  # a chat answer on its own line
    tokens = sum(len(a) for a in output.answers)
    print(f"# {len(answers)} prompt(s), {tokens} answer tokens, {output.forward_passes} forward passes, "
          f"{seconds:.2f} s", flush=True)
    return answers
