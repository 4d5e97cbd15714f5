"""Helpers of the sweep tests: the small reference grid, CLI runners, CSV reading."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import dln

#: A small grid: gf (2 alphas) + gr (2 alphas x 2 gammas) = 6 runs per seed, 2 seeds = 12 runs in
#: 6 batches of 2 (n = 10, d = 20, loose tolerance: a batch takes a fraction of a second).
SMALL = ["--method", "gf", "gr", "--alpha", "0.1", "1", "--gamma", "0.05", "0.1", "--seeds", "2",
         "--n", "10", "--d", "20", "--rtol", "1e-6", "--chunk-size", "2"]
SMALL_API = dict(method=["gf", "gr"], alpha=[0.1, 1.0], gamma=[0.05, 0.1], seeds=2, n=[10], d=[20],
                 rtol=1e-6, chunk_size=2)
SMALL_RUNS = 12

#: The root of the checkout whose ``dln`` the tests import (subprocesses must use the same one).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dln.__file__)))


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_cli(args, cwd, **kw) -> subprocess.CompletedProcess:
    """``python -m dln ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "dln", *map(str, args)], cwd=cwd, env=subprocess_env(),
                          capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)


def popen_cli(args, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dln", *map(str, args)], cwd=cwd, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows(path, drop_wall=True) -> list[list[str]]:
    """results.csv as lists of fields (without the wall_time column)."""
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    if drop_wall:
        assert table[0][-1] == "wall_time"
        table = [r[:-1] for r in table]
    return table

