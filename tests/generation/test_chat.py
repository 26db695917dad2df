"""``chat.py``: the REPL keeps the conversation, renders it as SFT did, and shows the canvas filling in."""

from __future__ import annotations

import io

import pytest

from bertforge.data.sft import SFTEncoder, SFTOptions
from bertforge.errors import UserError
from bertforge.generation import chat
from bertforge.generation.loading import load_masked_lm

FLAGS = ["--max-new-tokens", "8", "--steps", "8"]


def run_chat(folder, lines: str, monkeypatch, *flags: str) -> tuple[list[str], str, list[list[int]]]:
    """Drive ``chat.main`` with ``lines`` on stdin: (answers, stdout text, the prompt ids sent to the sampler)."""
    prompts, real = [], chat.sample

    def recording(model_fn, ids, *args, **kwargs):
        prompts.extend(list(p) for p in ids)
        return real(model_fn, ids, *args, **kwargs)

    monkeypatch.setattr(chat, "sample", recording)
    out = io.StringIO()
    answers = chat.main([str(folder), *FLAGS, *flags], stdin=io.StringIO(lines), stdout=out)
    return answers, out.getvalue(), prompts


def test_two_turns_keep_history_and_reset_forgets(modernbert_dir, monkeypatch):
    answers, text, prompts = run_chat(modernbert_dir, "Hello there\nAnd then?\n/reset\nAgain\n/quit\nunread\n",
                                      monkeypatch, "--no-show-canvas")
    assert len(answers) == len(prompts) == 3  # /quit stopped before "unread"
    tok = load_masked_lm(str(modernbert_dir))[1]
    enc = SFTEncoder(tok, SFTOptions(max_seq_len=128))
    first = [{"role": "user", "content": "Hello there"}]
    assert prompts[0] == enc.prompt_ids(first)
    history = first + [{"role": "assistant", "content": answers[0]}, {"role": "user", "content": "And then?"}]
    assert prompts[1] == enc.prompt_ids(history)  # the second prompt carries the first turn
    assert "Hello there" in tok.decode(prompts[1])
    assert prompts[2] == enc.prompt_ids([{"role": "user", "content": "Again"}])  # after /reset: no history
    lines = text.splitlines()
    assert all(answers) and all(f"{chat.PROMPT}{a}" in lines for a in answers)  # each answer printed, own line
    assert "# conversation cleared" in text and "[step" not in text


def test_show_canvas_prints_every_step_with_masks(modernbert_dir, monkeypatch):
    answers, text, _ = run_chat(modernbert_dir, "Hi\nMore\n", monkeypatch, "--show-canvas")  # ends at EOF
    assert len(answers) == 2
    steps = [line for line in text.splitlines() if "[step " in line]
    assert steps[0].startswith(f"{chat.PROMPT}[step 1] ") and "_" in steps[0]  # 7 of 8 positions still masked
    assert sum("[step 1] " in line for line in steps) == 2  # one drawing per answer
    assert all(a in text.splitlines() for a in answers)  # each answer on its own line after its canvas
    assert 2 < len(steps) <= 16  # at most one line per forward pass (8 steps per answer)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_canvas_is_on_and_redrawn_in_place_on_a_terminal(modernbert_dir):
    out = Terminal()
    answers = chat.main([str(modernbert_dir), *FLAGS], stdin=io.StringIO("Hi\n"), stdout=out)
    text = out.getvalue()
    assert text.count("\r\x1b[J[step ") == 8 and "\n[step" not in text  # 8 redraws, no new line between them
    assert f"[step 8] {answers[0]}\n{answers[0]}\n" in text  # the finished canvas is the printed answer


def test_bad_flag_is_one_line(modernbert_dir):
    with pytest.raises(UserError, match="--block-length: 3 does not divide"):
        chat.main([str(modernbert_dir), "--block-length", "3"], stdin=io.StringIO(""), stdout=io.StringIO())
