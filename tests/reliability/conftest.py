"""Fixtures of the reliability tests."""
from __future__ import annotations

import pytest

from dln.problem import make_problem


@pytest.fixture(scope="session")
def small_problem():
    """n = 6, d = 12, k = 2: every run on it takes a fraction of a second."""
    return make_problem(n=6, d=12, k=2, seed=3, n_test=20)


def pytest_terminal_summary(terminalreporter):
    """How many property examples, fuzz examples and kill points the run exercised (reported in the test summary)."""
    try:
        from reliability_helpers import COUNTS
    except ImportError:  # pragma: no cover - the module was not collected
        return
    if COUNTS:
        terminalreporter.write_sep("-", "reliability counts")
        for name in sorted(COUNTS):
            terminalreporter.write_line(f"{name}: {COUNTS[name]}")
