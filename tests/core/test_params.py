"""dln.params: one table, and every place that is derived from it agrees with it.

Oracles: the parsers (what argparse actually accepts), the files (results.csv columns), and the
error messages of the grid and of ``run_batch`` on values just outside each bound written here from
the table's numbers."""
from __future__ import annotations

import pytest

from dln.cli import build_parser
from dln.errors import DLNError
from dln.grid import build_plan
from dln.methods import METHODS, PARAMS
from dln.params import KEY_COLUMNS, TABLE, P, choices
from dln.problem import make_problem
from dln.simulate import RUN_KEYS, run_batch
from dln.sweep_io import COLUMNS


def _flags(command):
    sub = build_parser([command])._subparsers._group_actions[0].choices[command]
    return {opt for action in sub._actions for opt in action.option_strings}


def test_every_parameter_is_a_flag_of_simulate_and_every_axis_a_flag_of_sweep():
    assert {p.flag for p in TABLE} <= _flags("simulate")
    assert {p.flag for p in TABLE if p.axis} <= _flags("sweep")
    assert {f"--{p.name.replace('_', '-')}-geom" for p in TABLE if p.geom} <= _flags("sweep")


def test_columns_and_record_keys_are_the_axes_in_table_order():
    assert KEY_COLUMNS == tuple(p.name for p in TABLE if p.axis) == RUN_KEYS
    assert COLUMNS[2:2 + len(KEY_COLUMNS)] == KEY_COLUMNS
    assert choices("method") == METHODS and choices("time") == ("flow", "discrete")


def _context(name, value):
    """A grid / run_batch call that uses parameter ``name`` with ``value``."""
    user = next((m for m in METHODS if name in PARAMS[m]), "gf")
    kw = {h: 0.1 for h in PARAMS[user]}
    if P[name].times == ("discrete",) or name in ("lr",):
        kw.update(time="discrete", lr=0.1)
    kw[name] = value
    return user, kw


BOUNDS = [(p.name, op, bound) for p in TABLE if p.axis and p.kind is float
          for op, bound in (("gt", p.gt), ("ge", p.ge), ("lt", p.lt)) if bound is not None]


@pytest.mark.parametrize("name, op, bound", BOUNDS, ids=[f"{n}-{o}" for n, o, _ in BOUNDS])
def test_each_bound_is_enforced_by_the_grid_and_by_run_batch_with_one_message(name, op, bound):
    bad = {"gt": bound, "ge": bound - 1.0, "lt": bound}[op]
    rule = {"gt": ">", "ge": ">=", "lt": "<"}[op] + f" {bound}"
    method, kw = _context(name, bad)
    grid = {k: [v] for k, v in kw.items()}
    with pytest.raises(DLNError, match=rf"^The '{name}' parameter of sweep must be {rule}\. Got {bad!r} instead\."):
        build_plan(dict(grid, method=[method], n=[4], d=[6], k=[2]))
    if name in ("noise",):
        return  # a data parameter: make_problem's own check
    with pytest.raises(DLNError, match=rf"^The '{name}' parameter of \w+ must be {rule}\. Got {bad!r} instead\."):
        run_batch(make_problem(n=4, d=6, k=2), method, **kw)
