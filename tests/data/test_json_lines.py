"""JSON Lines input: blank lines skipped, line numbers kept, a line that is not JSON one error naming file and line
(for the text reader and the SFT reader alike)."""

from __future__ import annotations

import re

import pytest

from bertforge.data.json_lines import json_lines
from bertforge.data.sft import read_sft_file
from bertforge.errors import UserError


def test_values_keep_their_line_numbers_and_blank_lines_are_skipped():
    assert list(json_lines(['{"a": 1}', "", "  ", "[2]"], "f.jsonl")) == [(1, {"a": 1}), (4, [2])]


def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text('{"instruction": "hi", "output": "hello"}\n\n{"instruction": "x",\n', encoding="utf-8")
    expected = rf"^{re.escape(str(path))}:3: invalid JSON \(.*\); each line must be one JSON object$"
    with pytest.raises(UserError, match=expected):
        list(read_sft_file(path))
