"""Fixtures of the core-simulator tests; the oracles themselves live in ``oracles.py``."""
import pytest

from .oracles import sparse_problem


@pytest.fixture
def tiny():
    """The brief's small problem for direction checks: n = 6, d = 9."""
    return sparse_problem(6, 9, k=2, seed=11)
