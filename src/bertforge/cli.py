"""Shared command-line behaviour: user errors print one line and exit with code 2, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from bertforge.errors import UserError

USER_ERROR_EXIT_CODE = 2


def run_cli(entry: Callable[[list[str]], object], argv: list[str] | None = None) -> None:
    """Call ``entry(argv)``; a :class:`UserError` becomes ``bertforge: error: ...`` and exit code 2."""
    try:
        entry(sys.argv[1:] if argv is None else argv)
    except UserError as err:
        print(f"bertforge: error: {err}", file=sys.stderr, flush=True)
        sys.exit(USER_ERROR_EXIT_CODE)
