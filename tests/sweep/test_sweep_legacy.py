"""A sweep folder written before a parameter was added (tests/sweep/data, written by dln at commit
ab6ec23, before the ``momentum`` column): its run ids and fingerprint are this version's, ``--resume``
finds every run done and runs nothing, a resumed or merged folder has this version's columns with the
new one at its default, and runs redone by this version equal the frozen rows."""
from __future__ import annotations

import csv
import importlib
import math
import json
import os
import shutil

import pytest

from dln.cli import main
from dln.sweep_io import COLUMNS, IDENTITY, LEGACY_COLUMNS

DATA = os.path.join(os.path.dirname(__file__), "data")
#: the commands that wrote the frozen folders (tests/sweep/data/README.md)
GRIDS = {
    "legacy-v1": ["--method", "gf", "gr", "--gamma", "0.05", "--alpha", "0.1", "1", "--time", "flow", "discrete",
                  "--lr", "0.05", "--n", "10", "--d", "20", "--k", "2", "--seeds", "2", "--max-steps", "300"],
    "legacy-v1-sgd": ["--method", "gf", "usam", "--rho", "0.05", "--alpha", "0.1", "--time", "discrete", "--lr",
                      "0.05", "--batch-size", "5", "--n", "10", "--d", "20", "--k", "2", "--seeds", "2",
                      "--max-steps", "200"],
}


def _table(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _copy(name, tmp_path):
    out = tmp_path / name
    shutil.copytree(os.path.join(DATA, name), out)
    return out


def test_the_frozen_folders_have_the_old_columns():
    """The test data is what it claims: results.csv without the momentum column, config.json saying so."""
    for name in GRIDS:
        with open(os.path.join(DATA, name, "results.csv")) as fh:
            assert fh.readline().rstrip("\n").split(",") == list(LEGACY_COLUMNS)
        with open(os.path.join(DATA, name, "config.json")) as fh:
            assert json.load(fh)["columns"] == list(LEGACY_COLUMNS)
    assert "momentum" in COLUMNS and "momentum" not in LEGACY_COLUMNS


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_resume_of_an_old_folder_finds_every_run_done(name, tmp_path, monkeypatch):
    """Same grid → same run ids and fingerprint: --resume runs nothing (run_task may not be called)
    and rewrites results.csv with this version's columns, momentum 0.0 on discrete rows, empty on flow
    rows, every other cell as it was."""
    out = _copy(name, tmp_path)
    old = _table(out / "results.csv")

    def never(task, record=False):
        raise AssertionError(f"batch {task['chunk']} was run again")

    sw = importlib.import_module("dln.sweep")  # the module (dln exports a function named sweep)
    monkeypatch.setattr(sw, "run_task", never)
    assert main(["sweep", *GRIDS[name], "--workers", "1", "--quiet", "--resume", "--out", str(out)]) == 0
    new = _table(out / "results.csv")
    assert len(new) == len(old)
    for a, b in zip(old, new):
        assert list(b) == list(COLUMNS)
        assert b["momentum"] == ("0.0" if a["time"] == "discrete" else "")
        assert {k: v for k, v in b.items() if k != "momentum"} == a
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["columns"] == list(COLUMNS) and len(cfg["resumes"]) == 1


def test_resume_reruns_missing_runs_as_the_old_version_did(tmp_path):
    """Rows deleted from the old folder are redone by this version with the same identity and status.
    Discrete runs: the same steps and evaluations, every number to 1e-9 relative (1e-10 absolute for the
    round-off-level ones: losses at convergence, prediction errors) -- this version's fused GD kernel
    rounds differently from the loop that wrote the folder, at 1e-14.  Flow runs: this version starts
    with an explicit pair (dln.explicit), so the steps, evaluations and final time t (where the stopping
    rule fired) are its own, and the numbers agree to 1e-5 relative or 1e-7 absolute at the folder's
    rtol = 1e-8: the limits to ~1e-8, the gain integrals I to ~2e-8 absolute (8γ·δI is the error of
    ln c, ~1e-8 at this rtol), which is 1e-5 of the smallest of them."""
    name = "legacy-v1"
    out = _copy(name, tmp_path)
    path = out / "results.csv"
    lines = path.read_text().splitlines(keepends=True)
    old = _table(path)
    path.write_text("".join(lines[:-6]))  # the last 6 runs: whole batches of discrete and flow runs
    assert main(["sweep", *GRIDS[name], "--workers", "1", "--quiet", "--resume", "--out", str(out)]) == 0
    new = _table(path)
    assert len(new) == len(old)
    exact = set(IDENTITY) | {"status", "steps", "n_evals"}
    flows = 0
    for a, b in zip(old, new):
        flow = a["time"] == "flow"
        flows += flow
        for column, was in a.items():
            if column == "wall_time" or (flow and column in ("steps", "n_evals", "t")):
                continue
            if column in exact or was == "":
                assert b[column] == was, (column, was, b[column])
            elif flow:
                assert math.isclose(float(b[column]), float(was), rel_tol=1e-5, abs_tol=1e-7), (column, was, b[column])
            else:
                assert math.isclose(float(b[column]), float(was), rel_tol=1e-9, abs_tol=1e-10), (column, was, b[column])
    assert 0 < flows < len(old)


def test_merge_accepts_an_old_folder(tmp_path):
    """merge reads the old folder (its grid rebuilt with this version's run ids) and writes this
    version's columns."""
    src = _copy("legacy-v1", tmp_path)
    old = _table(src / "results.csv")
    assert main(["merge", str(src), "--out", str(tmp_path / "merged"), "--quiet"]) == 0
    new = _table(tmp_path / "merged" / "results.csv")
    assert [{k: v for k, v in b.items() if k != "momentum"} for b in new] == old
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["columns"] == list(COLUMNS)
