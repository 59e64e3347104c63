"""benchmarks/overhead.py's confidence interval of the median (the statistics, not a boot)."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"
_spec = importlib.util.spec_from_file_location("overhead_bench", _PATH)
assert _spec is not None and _spec.loader is not None
overhead = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = overhead  # its dataclasses look their module up
_spec.loader.exec_module(overhead)


def coverage(n: int, k: int) -> float:
    return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n


@pytest.mark.parametrize(("n", "k"), [(6, 1), (11, 2), (21, 6), (31, 10)])
def test_the_widest_order_statistics_that_still_cover_95_percent(n: int, k: int) -> None:
    values = [float(v) for v in range(n)]
    random.Random(n).shuffle(values)
    assert overhead.median_interval(values) == (k - 1, n - k)
    assert coverage(n, k) >= 0.95 > coverage(n, k + 1)


def test_too_few_rounds_give_no_interval() -> None:
    assert overhead.median_interval([0.1, 0.2, 0.3, 0.4, 0.5]) is None


def test_the_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = random.Random(17)
    hits = 0
    for _ in range(2000):
        lo, hi = overhead.median_interval([rng.gauss(0.6, 0.5) for _ in range(21)])  # type: ignore[misc]
        hits += lo <= 0.6 <= hi
    assert 0.95 <= hits / 2000 <= 0.99  # 97.3 % exactly, for 21 values


def test_the_report_ends_with_the_overhead_line_and_states_pytests_own_floor() -> None:
    run = overhead.Run
    bare = [run(5.0 + i / 100, {}) for i in range(7)]
    lava = [run(5.7 + i / 100, {}) for i in range(7)]
    text = overhead.report(bare, lava, [0.52, 0.50, 0.55, 0.49, 0.51, 0.53, 0.50])
    lines = text.splitlines()
    assert lines[-1] == "overhead_s=0.70 bare_s=5.03"  # the acceptance line keeps its form, last
    assert "pytest alone (start to exit, plugin off, nothing collected): 0.51 s; the overhead beyond it: +0.19 s" \
        in lines[-2]
    assert "pytest alone" not in overhead.report(bare, lava)  # without the floor's runs: no such line
