"""Chat finetuning (SFT) data for generative BERT: conversations -> token ids + prompt length, and the ``sft``
collator, which masks response and trailing padding tokens (MDLM) but never a prompt token.

Records are alpaca-style ``{instruction, input (optional), output}`` or chat ``{messages: [{role, content}, ...]}``
whose last message is the assistant's answer (earlier turns are prompt). They are rendered with a Jinja chat
template (the tokenizer's own, or one from a file) or, without one, the plain alpaca template::

    [CLS]### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\n### Response:\\n{output}[SEP]

The last token is the end-of-answer marker (default the tokenizer's sep, else eos token). ``convert_dataset.py
--sft`` writes ``{input_ids: int32 array, prompt_len: int}`` MDS samples; an example whose prompt alone fills
``max_seq_len`` is dropped, and a response that does not fit is cut *without* the end marker (the answer does
not end there; ``--long-answers drop`` drops such examples instead); both are counted in the log and in
``bertforge_meta.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from bertforge.data.json_lines import json_lines
from bertforge.data.mdlm import MDLMCollator, Schedule, Weighting, build_mdlm_collator
from bertforge.errors import UserError
from bertforge.registry import collators

ROLES = ("system", "user", "assistant")
PLAIN_HEADERS = {"system": "", "user": "### Instruction:\n", "assistant": "### Response:\n"}
"""The plain template: each message is ``header + content + '\\n\\n'``; the prompt ends with the assistant header."""
INPUT_HEADER = "\n\n### Input:\n"
COLUMNS = {"input_ids": "ndarray:int32", "prompt_len": "int"}
UNKNOWN_WARN_SHARE = 0.005  # answers with more unknown tokens than this teach the model to write them
FIELDS_HINT = "each record needs 'instruction' and 'output' ('input' optional) or a 'messages' list of {role, content}"

log = logging.getLogger(__name__)
Message = dict[str, str]


# ----------------------------------------------------------------------------------------------- records
def _text_field(obj: dict, name: str, where: str, required: bool = True) -> str:
    if obj.get(name) is None:  # absent or null
        if not required:
            return ""
        raise UserError(f"{where}: missing field '{name}' (found: {', '.join(map(str, obj)) or 'nothing'}); "
                        f"{FIELDS_HINT}")
    if not isinstance(obj[name], str):
        raise UserError(f"{where}: field '{name}' is {type(obj[name]).__name__}, expected a string")
    return obj[name]


def to_messages(obj: Any, where: str) -> list[Message]:
    """One record as a message list ending with the assistant's answer; ``where`` names it in errors."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(obj).__name__}; {FIELDS_HINT}")
    if "messages" not in obj:
        user = _text_field(obj, "instruction", where)
        extra = _text_field(obj, "input", where, required=False)
        output = _text_field(obj, "output", where)
        return [{"role": "user", "content": user + (INPUT_HEADER + extra if extra.strip() else "")},
                {"role": "assistant", "content": output}]
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: field 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, msg in enumerate(messages):
        here = f"{where}: messages[{i}]"
        if not isinstance(msg, dict):
            raise UserError(f"{here}: expected a {{role, content}} object, found {type(msg).__name__}")
        role, content = _text_field(msg, "role", here), _text_field(msg, "content", here)
        if role not in ROLES:
            raise UserError(f"{here}: role '{role}' is not one of {', '.join(ROLES)}")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "assistant":
        raise UserError(f"{where}: the last message is '{out[-1]['role']}'; it must be the assistant's answer")
    return out


def read_sft_file(path: Path) -> Iterator[list[Message]]:
    """The conversations of a JSON list file or a JSONL file (one object a line), as :func:`to_messages` gives."""
    with path.open(encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: invalid JSON ({err.msg} at line {err.lineno}); expected a list of "
                            "records or one JSON object a line") from None
        for index, obj in enumerate(records):
            yield to_messages(obj, f"{path}: record {index}")
        return
    for index, (lineno, obj) in enumerate(json_lines(text.splitlines(), path)):
        yield to_messages(obj, f"{path}: record {index} (line {lineno})")


def dataset_conversations(label: str, ds: Any) -> Iterator[list[Message]]:
    """The conversations of a Hugging Face dataset's rows."""
    for index, row in enumerate(ds):
        yield to_messages(row, f"{label}: record {index}")


# --------------------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class SFTOptions:
    """How ``convert_dataset.py --sft`` renders conversations."""

    max_seq_len: int
    """Longest sample in tokens (prompt + response + end marker); use the run's ``max_seq_len``."""
    chat_template: str = "auto"
    """'auto' (the tokenizer's chat template when it has one, else plain), 'plain', or a Jinja template file."""
    end_marker: str | None = None
    """Token that ends every answer; None: the tokenizer's sep token, else its eos token."""
    long_answers: str = "cut"
    """An answer that does not fit: 'cut' it (without end marker) or 'drop' the example."""

    def __post_init__(self) -> None:
        if self.max_seq_len < 2:
            raise UserError(f"--max-seq-len {self.max_seq_len}: must be at least 2")
        if self.long_answers not in ("cut", "drop"):
            raise UserError(f"--long-answers {self.long_answers}: expected 'cut' or 'drop'")
        if self.chat_template not in ("auto", "plain") and not Path(self.chat_template).expanduser().is_file():
            raise UserError(f"--chat-template {self.chat_template}: not 'auto', 'plain' or an existing Jinja file")


class SFTExample(NamedTuple):
    """One encoded conversation: all token ids, the number of prompt tokens, whether the response was cut."""

    input_ids: np.ndarray
    prompt_len: int
    truncated: bool


@dataclass
class SFTEncoder:
    """Renders and tokenizes conversations (picklable, so convert's worker processes can run it)."""

    tokenizer: Any
    options: SFTOptions
    template: str | None = field(init=False)
    end_id: int = field(init=False)
    prefix: list[int] = field(init=False)

    def __post_init__(self) -> None:
        tok, name = self.tokenizer, self.options.chat_template
        if name == "auto":
            self.template = getattr(tok, "chat_template", None) or None
        else:
            self.template = None if name == "plain" else Path(name).expanduser().read_text(encoding="utf-8")
        marker = self.options.end_marker or tok.sep_token or tok.eos_token
        if marker is None:
            raise UserError("--sft: the tokenizer has no sep or eos token to end answers; pass --end-marker TOKEN")
        self.end_id = tok.convert_tokens_to_ids(marker)
        if self.end_id is None or (self.end_id == tok.unk_token_id and marker != tok.unk_token):
            raise UserError(f"--end-marker {marker}: not a token of this tokenizer; give one of its tokens")
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        self.prefix = [] if start is None else [start]

    def describe(self) -> str:
        """Which template renders the prompts: 'plain', 'tokenizer' or the template file."""
        name = self.options.chat_template
        return "plain" if self.template is None else ("tokenizer" if name == "auto" else name)

    def _texts(self, messages: Sequence[Message]) -> tuple[str, str]:
        """(prompt text, response text) of a conversation ending with the assistant's answer."""
        context, answer = list(messages[:-1]), messages[-1]["content"]
        prompt = self.prompt_text(context)
        if self.template is None:
            return prompt, answer
        full = self.tokenizer.apply_chat_template(list(messages), chat_template=self.template, tokenize=False)
        if not full.startswith(prompt):
            raise UserError(f"chat template '{self.describe()}' renders the prompt differently inside the whole "
                            "conversation, so the answer cannot be split off; use --chat-template plain")
        return prompt, full[len(prompt):]

    def prompt_text(self, context: Sequence[Message]) -> str:
        """The prompt for the next assistant answer after ``context`` (text, without the start token)."""
        if self.template is None:
            body = "".join(f"{PLAIN_HEADERS[m['role']]}{m['content']}\n\n" for m in context)
            return body + PLAIN_HEADERS["assistant"]
        return self.tokenizer.apply_chat_template(list(context), chat_template=self.template, tokenize=False,
                                                  add_generation_prompt=True)

    def prompt_ids(self, context: Sequence[Message]) -> list[int]:
        """Token ids of the prompt for the next answer after ``context``, as training saw them."""
        return self._with_prefix(self._tokenize([self.prompt_text(context)])[0])

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]

    def _with_prefix(self, ids: list[int]) -> list[int]:
        return ids if ids[:len(self.prefix)] == self.prefix else self.prefix + ids

    def encode(self, prompt: list[int], response: list[int]) -> SFTExample | None:
        """Join prompt and response ids (+ end marker) within ``max_seq_len``; None when the prompt fills it
        (or, with ``long_answers='drop'``, when the response does not fit)."""
        prompt = self._with_prefix(prompt)
        room = self.options.max_seq_len - len(prompt)
        if room <= 0:
            return None
        if response[-1:] != [self.end_id]:
            response = response + [self.end_id]
        truncated = len(response) > room
        if truncated and self.options.long_answers == "drop":
            return None
        if truncated:  # the cut answer does not end here: the end marker (the last token) falls off
            response = response[:room]
        return SFTExample(np.asarray(prompt + response, dtype=np.int32), len(prompt), truncated)

    def __call__(self, conversations: list[list[Message]]) -> list[SFTExample | None]:
        """Encode a chunk of conversations (one tokenizer call for all their texts)."""
        texts = [t for conv in conversations for t in self._texts(conv)]
        ids = self._tokenize(texts)
        return [self.encode(ids[2 * i], ids[2 * i + 1]) for i in range(len(conversations))]


@dataclass
class SFTStats:
    """Counts what :class:`SFTEncoder` dropped (long prompts, or long answers with ``long_answers='drop'``) or cut
    while writing, and turns examples into MDS items."""

    encoder: SFTEncoder
    dropped: int = 0
    truncated: int = 0
    answer_tokens: int = 0
    unknown_answer_tokens: int = 0

    def items(self, example: SFTExample | None) -> list[dict]:
        """The MDS samples of one encoded conversation (none when dropped)."""
        if example is None:
            self.dropped += 1
            return []
        self.truncated += example.truncated
        answer = example.input_ids[example.prompt_len:]
        self.answer_tokens += len(answer)
        self.unknown_answer_tokens += int((answer == self.encoder.tokenizer.unk_token_id).sum())
        return [{"input_ids": example.input_ids, "prompt_len": example.prompt_len}]

    def _unknown_share(self) -> float:
        """The share of answer tokens the tokenizer could not write (its unknown token)."""
        return round(self.unknown_answer_tokens / max(self.answer_tokens, 1), 4)

    def _warn_unknown(self) -> None:
        """One warning each when the tokenizer cannot write the template's own text or a share of the answers: a
        model trained on such data learns to write the unknown token."""
        tok, encoder = self.encoder.tokenizer, self.encoder
        if tok.unk_token_id is None:
            return
        template_ids = encoder.prompt_ids([{"role": "user", "content": ""}])
        if tok.unk_token_id in template_ids:
            log.warning("sft: the chat template's own text (%r) has characters the tokenizer cannot write (%s); "
                        "use a tokenizer that covers them or another --chat-template",
                        encoder.prompt_text([{"role": "user", "content": ""}]), tok.unk_token)
        if self._unknown_share() > UNKNOWN_WARN_SHARE:
            log.warning("sft: %.1f%% of answer tokens are %s (the tokenizer cannot write them); the model will learn "
                        "to write %s: use a tokenizer trained on text like this (convert_dataset.py "
                        "--train-tokenizer)", 100 * self._unknown_share(), tok.unk_token, tok.unk_token)

    def meta(self) -> dict:
        """The ``sft`` record of ``bertforge_meta.json``; logs the dropped and cut counts."""
        n = self.encoder.options.max_seq_len
        if self.dropped:
            what = "whose prompt alone has" if self.encoder.options.long_answers == "cut" else "that do not fit in"
            log.warning("sft: dropped %d examples %s %d tokens (--max-seq-len)", self.dropped, what, n)
        if self.truncated:
            log.warning("sft: cut %d responses to fit %d tokens (no end marker after a cut answer)",
                        self.truncated, n)
        self._warn_unknown()
        return {"chat_template": self.encoder.describe(), "template_text": self.encoder.template,
                "unknown_answer_share": self._unknown_share(), "end_marker_id": self.encoder.end_id,
                "max_seq_len": n, "long_answers": self.encoder.options.long_answers, "dropped": self.dropped,
                "truncated_responses": self.truncated}


def data_template(sft_meta: dict) -> tuple[bool, str | None]:
    """(known, Jinja text) of the chat template an SFT folder was rendered with (text None: the plain template);
    folders converted before ``template_text`` was recorded are read from the template file when it is there."""
    if "template_text" in sft_meta:
        return True, sft_meta["template_text"]
    name = sft_meta.get("chat_template")
    if name == "plain":
        return True, None
    path = Path(str(name)).expanduser()
    return (True, path.read_text(encoding="utf-8")) if name != "tokenizer" and path.is_file() else (False, None)


def carry_chat_template(tokenizer: Any, folders: Sequence[tuple[str, dict]]) -> None:
    """Give the run's tokenizer the chat template its SFT data (``(folder, bertforge_meta)`` pairs) was rendered
    with, none for the plain template, so ``chat.py``, ``generate.py --chat``, lm-eval and the exported folder
    prompt the model as it was trained. Sources rendered with different templates are refused in one line."""
    used = {}
    for folder, meta in folders:
        if meta.get("sft"):
            known, text = data_template(meta["sft"])
            if not known:
                log.warning("sft: %s does not record its chat template; the tokenizer's is kept", folder)
                continue
            used[folder] = text
    if len(set(used.values())) > 1:
        raise UserError(f"train_loader: the SFT sources {', '.join(used)} were rendered with different chat "
                        "templates; convert them with one --chat-template, so the model is prompted one way")
    if used:
        text = next(iter(used.values()))
        if text != getattr(tokenizer, "chat_template", None):
            log.info("tokenizer: chat template set to the one the SFT data was rendered with (%s)",
                     "the plain template" if text is None else "from bertforge_meta.json")
            tokenizer.chat_template = text


def add_sft_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--sft`` options of ``convert_dataset.py``."""
    parser.add_argument("--sft", action="store_true", help="chat finetuning data: alpaca JSON/JSONL or messages "
                        "lists -> input_ids + prompt_len (needs --tokenizer and --max-seq-len)")
    parser.add_argument("--max-seq-len", type=int, metavar="N", help="--sft: longest sample (the run's max_seq_len)")
    parser.add_argument("--chat-template", default="auto", metavar="auto|plain|FILE",
                        help="--sft: the tokenizer's chat template (auto), the plain alpaca one, or a Jinja file")
    parser.add_argument("--end-marker", metavar="TOKEN", help="--sft: token ending each answer (default sep/eos)")
    parser.add_argument("--long-answers", choices=("cut", "drop"), default="cut",
                        help="--sft: an answer that does not fit: cut it (no end marker) or drop the example")


def sft_options(args: argparse.Namespace) -> SFTOptions | None:
    """:class:`SFTOptions` from parsed arguments (None without ``--sft``); stray SFT options are errors."""
    if not args.sft:
        stray = [f for f, v in (("--max-seq-len", args.max_seq_len), ("--end-marker", args.end_marker),
                                ("--chat-template", args.chat_template != "auto"),
                                ("--long-answers", args.long_answers != "cut")) if v]
        if stray:
            raise UserError(f"{stray[0]}: only applies with --sft; add --sft or drop it")
        return None
    if args.max_seq_len is None:
        raise UserError("--sft: needs --max-seq-len N (the run's max_seq_len)")
    return SFTOptions(args.max_seq_len, args.chat_template, args.end_marker, args.long_answers)


# ---------------------------------------------------------------------------------------------- collator
@dataclass
class SFTCollator:
    """Pads SFT samples and masks them for the MDLM objective; prompt tokens are never masked.

    A sample is ``{'input_ids', 'prompt_len', 'pad_to' (optional)}``; every row is padded with [PAD] to the
    largest ``pad_to`` (the loader's ``max_seq_len``), or without one to the longest sample. The padding is real
    input (attention 1) and a target like the response (special tokens included), so the model learns where an
    answer ends. Masking rates, weights and eval determinism are those of ``mdlm`` (its builder's options).
    """

    objective: ClassVar[str] = "mdlm"
    """What the model should score (``model.set_objective``): MDLM, as the ``mdlm`` collator."""
    uses_mlm_probability: ClassVar[bool] = False
    """It draws a masking rate per sequence; a loader's ``mlm_probability`` is refused."""

    mdlm: MDLMCollator

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        if any("prompt_len" not in s for s in samples):
            raise UserError("collator 'sft': samples have no prompt_len; convert the data with convert_dataset.py "
                            "--sft, or use another collator for plain text")
        m = self.mdlm
        width = max(max(len(s["input_ids"]) for s in samples), max(s.get("pad_to", 0) for s in samples))
        input_ids = torch.full((len(samples), width), m.pad_token_id, dtype=torch.long)  # (B, L)
        for row, sample in enumerate(samples):
            input_ids[row, :len(sample["input_ids"])] = torch.as_tensor(sample["input_ids"], dtype=torch.long)
        prompt_len = torch.tensor([int(s["prompt_len"]) for s in samples])  # (B,)
        maskable = torch.arange(width)[None, :] >= prompt_len[:, None]  # (B, L)
        return m.corrupt(input_ids, torch.ones_like(input_ids), maskable)


@collators.register("sft")
def build_sft_collator(tokenizer, mlm_probability: float, deterministic: bool, schedule: Schedule = "linear",
                       weighting: Weighting = "inverse_t", eps: float = 1e-3) -> SFTCollator:
    """MDLM masking of chat data (convert_dataset.py --sft): the response and trailing padding, never the prompt."""
    return SFTCollator(build_mdlm_collator(tokenizer, mlm_probability, deterministic, schedule, weighting, eps))
