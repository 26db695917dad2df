"""JSON Lines input, shared by the text and SFT readers: one JSON value a line, blank lines skipped, a line that is
not JSON one error naming the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bertforge.errors import UserError


def json_lines(lines: Iterable[str], path: Path | str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of each non-blank line of ``lines`` (the contents of ``path``, which only
    names the file in errors)."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{lineno}: invalid JSON ({err.msg}); each line must be one JSON object") from None
