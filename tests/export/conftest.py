"""Tiny run folders of every family, made once per session, with their rebuilt models."""

from __future__ import annotations

import pytest

from tests.export.runs import make_run


@pytest.fixture(scope="session")
def run_of(tmp_path_factory):
    """``run_of(kind)`` -> (run folder, its Composer model rebuilt by :func:`bertforge.export.source.load_run`)."""
    from bertforge.export.source import load_run

    root, made = tmp_path_factory.mktemp("runs"), {}

    def get(kind: str):
        if kind not in made:
            run = make_run(root, kind)
            made[kind] = (run, load_run(str(run)))
        return made[kind]

    return get
