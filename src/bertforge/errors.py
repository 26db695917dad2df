"""User-facing errors: one clear line that names the key or path and the fix, never a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """An error caused by the user's input (config, paths, data); shown as one line, exit code 2."""


class ConfigError(UserError):
    """A bad config key or value; the message names the full key path."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def join_key(prefix: str, key: str | int) -> str:
    """Join a parent key path and a child key: ('a.b', 'c') -> 'a.b.c', ('a', 0) -> 'a[0]'."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)
