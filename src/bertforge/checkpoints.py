"""Checkpoint folder hygiene for autoresume after a hard kill.

Composer writes a checkpoint straight to its final name and only then moves the
``latest-rank{r}.pt`` symlink. A run killed in between leaves a partial file newer than
``latest``; Composer would refuse to resume because that file "may conflict with a future
checkpoint". We move such files aside, so the rerun resumes from the last complete checkpoint.
"""

from __future__ import annotations

import os
import re

CHECKPOINT_NAME = re.compile(r"^ep(\d+)-ba(\d+)-rank(\d+)\.pt$")


def _batch_of(name: str) -> int | None:
    match = CHECKPOINT_NAME.match(name)
    return int(match.group(2)) if match else None


def discard_incomplete_checkpoints(folder: str) -> list[str]:
    """Rename checkpoints newer than their rank's ``latest`` symlink to ``*.incomplete``; return them."""
    if not os.path.isdir(folder):
        return []
    moved = []
    names = os.listdir(folder)
    for name in names:
        batch = _batch_of(name)
        if batch is None:
            continue
        rank = CHECKPOINT_NAME.match(name).group(3)
        latest = os.path.join(folder, f"latest-rank{rank}.pt")
        target = os.readlink(latest) if os.path.islink(latest) else None
        latest_batch = _batch_of(os.path.basename(target)) if target else None
        if latest_batch is None or batch > latest_batch:
            path = os.path.join(folder, name)
            os.replace(path, path + ".incomplete")
            moved.append(path)
    return moved
