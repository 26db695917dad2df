"""benchmarks/unigram_baseline.py: the context-free baseline the MDLM quickstart's README figures compare with."""

from __future__ import annotations

import importlib.util
import math
from collections import Counter

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("unigram_baseline", REPO / "benchmarks" / "unigram_baseline.py")
baseline = importlib.util.module_from_spec(spec)
spec.loader.exec_module(baseline)


def test_entropy_and_smoothed_cross_entropy_by_hand():
    uniform = Counter({0: 5, 1: 5, 2: 5, 3: 5})
    assert math.isclose(baseline.entropy(uniform), math.log(4))
    held_out, train = Counter({0: 1, 1: 3}), Counter({0: 2, 1: 6, 2: 0})
    # add-one over a 4-id vocabulary: p(0) = 3/12, p(1) = 7/12
    want = -(1 * math.log(3 / 12) + 3 * math.log(7 / 12)) / 4
    assert math.isclose(baseline.cross_entropy(held_out, train, 4), want)
    assert baseline.cross_entropy(held_out, train, 4) > baseline.entropy(held_out)  # never below its own entropy
