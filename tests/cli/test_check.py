"""`dln check`: the table reports every claim, and the exit code follows the rows."""
import json

import numpy as np
import pytest

from dln import check
from dln.cli import main
from dln.problem import make_problem


def test_a_failing_row_fails_the_command(monkeypatch, capsys):
    def bad(P):
        return [check._row("a claim that does not hold", "0", 1.0, 1e-9)]

    monkeypatch.setattr(check, "SECTIONS", [("fake", bad)])
    assert main(["check", "--n", "5", "--d", "8", "--k", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0/1 claims pass" in out


def test_nan_never_passes():
    assert not check._row("x", "0", float("nan"), 1.0).passed
    assert not check._row("x", "0", float("nan"), 0.0, relation=">=").passed


def test_gf_rows_on_a_small_problem():
    rows = list(check.rows_gf(make_problem(n=8, d=20, k=2, seed=1, n_test=0)))
    assert len(rows) == 4 and all(r.passed for r in rows), check.format_table(rows)
    assert max(r.measured for r in rows) < 1e-9


def test_symbolic_rows():
    rows = list(check.rows_symbolic(None))
    assert all(r.passed for r in rows), check.format_table(rows)


@pytest.mark.slow
def test_full_check_passes(capsys):
    assert main(["check", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and len(out["rows"]) >= 29
    assert all(np.isfinite(r["measured"]) for r in out["rows"])
