"""``chat.py``: talk to a chat-finetuned masked-diffusion BERT, watching each answer's canvas fill in.

    python chat.py runs/<run>/hf [--max-new-tokens 64 --steps 64 --block-length 4 --show-canvas]

Every turn renders the whole conversation the way SFT training rendered it (:class:`SFTEncoder`: the
tokenizer's chat template, else the alpaca template) and decodes the answer with :func:`sample`, stopping at
the SFT end marker. ``/reset`` forgets the conversation; ``/quit`` or end of input ends the session.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from typing import Any, TextIO

import torch

from bertforge.data.sft import Message, SFTEncoder, SFTOptions
from bertforge.errors import UserError
from bertforge.generation.cli import DTYPES, Parser, add_sampling_options, sampler_config
from bertforge.generation.sampler import SamplerConfig, sample
from bertforge.generation.text import TextGenerator
from bertforge.runtime import device_name

PROMPT = "> "


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``chat.py`` (the sampling flags are those of ``generate.py``)."""
    p = Parser(description="Chat with a Hugging Face masked-LM folder finetuned on conversations (SFT).")
    p.add_argument("model", help="a chat-finetuned Hugging Face masked-LM folder (e.g. runs/<run>/hf)")
    add_sampling_options(p, block_length=4, block_help=(
        "semi-autoregressive block (default 4: SFT models are trained on answer + end marker + padding, so in one "
        "big block the confident end marker and padding are committed first and the answer ends immediately; "
        "short blocks write it left to right)"))
    p.add_argument("--chat-template", default="auto",
                   help="as convert_dataset.py --sft rendered the training data: auto, plain or a Jinja file")
    p.add_argument("--show-canvas", action=argparse.BooleanOptionalAction, default=None,
                   help="redraw the answer after every step, masks as _ (default: on when stdout is a terminal)")
    return p


def canvas_text(tokenizer: Any, tokens: list[int], open_mask: list[bool], end_ids: set[int]) -> str:
    """The answer so far as text: masked positions as ``_``, special tokens dropped, cut at the end marker."""
    special, pieces = set(tokenizer.all_special_ids), []
    for tid, is_open in zip(tokens, open_mask):
        if is_open:
            pieces.append(tokenizer.mask_token)
        elif tid in end_ids:
            break
        elif tid not in special:
            pieces.append(tokenizer.convert_ids_to_tokens(tid))
    return tokenizer.convert_tokens_to_string(pieces).replace(tokenizer.mask_token, "_").strip()


class CanvasView:
    """Shows the canvas after each step: redrawn in place on a terminal, one line a step elsewhere."""

    def __init__(self, tokenizer: Any, end_ids: set[int], out: TextIO, tty: bool):
        self.tokenizer, self.end_ids, self.out, self.tty = tokenizer, end_ids, out, tty
        self.rows = 0  # terminal rows the last redraw took

    def __call__(self, step: int, tokens: torch.Tensor, open_mask: torch.Tensor) -> None:
        text = canvas_text(self.tokenizer, tokens[0].tolist(), open_mask[0].tolist(), self.end_ids)
        line = f"[step {step + 1}] {text}"
        if not self.tty:
            self.out.write(line + "\n")
            return
        if self.rows:  # back to the start of the previous drawing, then clear to the end of the screen
            self.out.write(f"\x1b[{self.rows - 1}A" if self.rows > 1 else "")
        self.out.write("\r\x1b[J" + line)
        self.rows = -(-len(line) // max(shutil.get_terminal_size().columns, 1))  # ceil: rows the line wraps to
        self.out.flush()

    def close(self) -> None:
        """End the in-place drawing (a new line), ready for the next one."""
        if self.tty and self.rows:
            self.out.write("\n")
        self.rows = 0


class ChatSession:
    """A conversation with the model: ``reply(text)`` adds the user's turn and the model's answer."""

    def __init__(self, generator: TextGenerator, config: SamplerConfig, chat_template: str = "auto"):
        tok = generator.tokenizer
        self.generator, self.config = generator, config
        self.encoder = SFTEncoder(tok, SFTOptions(max_seq_len=generator.max_length or 1 << 30,
                                                  chat_template=chat_template))
        self.end_ids = {self.encoder.end_id}
        if tok.eos_token_id is not None and tok.eos_token_id == tok.pad_token_id:
            self.end_ids.add(tok.eos_token_id)  # dllm's BERT-Chat layout: answers end in [PAD] (eos = pad)
        self.closing = closing_text(tok)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.encoder.end_id
        self.messages: list[Message] = []

    def reset(self) -> None:
        """Forget the conversation."""
        self.messages = []

    def reply(self, text: str, on_step=None) -> str:
        """The model's answer to ``text`` after the conversation so far; both join the history. A prompt that
        no longer fits the model is a one-line error and leaves the history unchanged."""
        gen, context = self.generator, self.messages + [{"role": "user", "content": text}]
        output = sample(gen.model_fn, [self.encoder.prompt_ids(context)], self.config,
                        mask_token_id=gen.tokenizer.mask_token_id, pad_token_id=self.pad_id,
                        end_token_ids=sorted(self.end_ids), max_length=gen.max_length, device=gen.device,
                        on_step=on_step, cache=gen.cache(self.config))
        answer = gen.decode(output)[0]
        if self.closing and self.closing in answer:  # a template's closing text, e.g. dllm's [/Answer]
            answer = answer.split(self.closing, 1)[0].rstrip()
        self.messages = context + [{"role": "assistant", "content": answer}]
        return answer


def closing_text(tokenizer: Any) -> str:
    """The text a tokenizer's chat template writes right after an assistant message ('' when none or no
    template), e.g. '[/Answer]': models trained on such text write it before their end marker."""
    if not getattr(tokenizer, "chat_template", None):
        return ""
    sentinel = "\u2063bertforge\u2063"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": sentinel}], tokenize=False)
    except Exception:  # a template that cannot render this pair: no closing text to cut at
        return ""
    after = text.split(sentinel, 1)[1] if sentinel in text else ""
    specials = set(tokenizer.all_special_tokens)
    closing = after.strip().splitlines()[0].strip() if after.strip() else ""
    return "" if closing in specials else closing


def main(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> list[str]:
    """Parse ``argv``, then chat: read user lines from ``stdin`` until ``/quit`` or its end, print each answer
    to ``stdout``; return the answers."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    args = build_parser().parse_args(argv)
    config = sampler_config(args)
    device = "cuda" if device_name(args.device, "--device") == "gpu" else "cpu"
    session = ChatSession(TextGenerator.from_pretrained(args.model, device, DTYPES[args.dtype]), config,
                          args.chat_template)
    tty = stdout.isatty()
    show = tty if args.show_canvas is None else args.show_canvas
    view = CanvasView(session.generator.tokenizer, session.end_ids, stdout, tty) if show else None
    stdout.write(f"# chatting with {args.model}: /reset clears the conversation, /quit (or Ctrl-D) ends\n")
    answers = []
    while True:
        stdout.write(PROMPT)
        stdout.flush()
        line = stdin.readline()
        if not line or line.strip() == "/quit":
            stdout.write("\n" if not line else "")
            break
        text = line.strip()
        if text == "/reset":
            session.reset()
            stdout.write("# conversation cleared\n")
        elif text:
            try:
                answer = session.reply(text, on_step=view)
            except UserError as err:  # e.g. the conversation outgrew the model: say so and keep the session
                stdout.write(f"bertforge: error: {err} (/reset starts over)\n")
                continue
            finally:
                if view is not None:
                    view.close()
            answers.append(answer)
            stdout.write(f"{answer}\n")
        stdout.flush()
    return answers
