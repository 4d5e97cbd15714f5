"""Helpers of the reliability tests: CLI runners, the one-line error contract, CSV reading.

The suite is self-contained (it does not import the helpers of tests/sweep), so that
``python -m pytest tests/reliability`` runs on its own.
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys

import dln
from dln.cli import main

#: The root of the checkout whose ``dln`` the tests import (subprocesses must use the same one).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dln.__file__)))


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_module(args, cwd, timeout=120, env=None) -> subprocess.CompletedProcess:
    """``python -m dln ARGS`` in a subprocess, with a wall-clock guard (``timeout`` seconds)."""
    return subprocess.run([sys.executable, "-m", "dln", *map(str, args)], cwd=cwd, env=env or subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


def popen_module(args, cwd, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dln", *map(str, args)], cwd=cwd, env=env or subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_concurrently(arglists, cwd, timeout=60, parallel=2) -> list[tuple[int, str, str]]:
    """``python -m dln ARGS`` for each argument list, ``parallel`` processes at a time: a list of
    (exit code, stdout, stderr).  A process still running ``timeout`` seconds after its start is
    killed and fails the test: the wall-clock guard (pytest-timeout is not installed)."""
    import time

    import pytest

    results = [None] * len(arglists)
    pending = list(enumerate(arglists))
    running = []
    while pending or running:
        while pending and len(running) < parallel:
            i, args = pending.pop(0)
            proc = subprocess.Popen([sys.executable, "-m", "dln", *map(str, args)], cwd=cwd, env=subprocess_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            running.append((i, args, proc, time.monotonic()))
        i, args, proc, start = running.pop(0)
        try:
            out, err = proc.communicate(timeout=max(0.1, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            for _, _, other, _ in running:
                other.kill()
                other.communicate()
            pytest.fail(f"hung: `python -m dln {' '.join(map(str, args))}` still running after {timeout} s")
        results[i] = (proc.returncode, out, err)
    return results


def call(argv) -> tuple[int, str, str]:
    """``dln.cli.main(argv)`` in-process: (exit code, stdout, stderr).

    argparse's ``--help`` / ``--version`` leave through ``SystemExit``: its code is returned.
    Any other exception propagates (that is a failure of the CLI contract)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code
    return code, out.getvalue(), err.getvalue()


def assert_user_error(code, out, err, *texts):
    """docs/design.md §5: exit code 2, nothing on stdout, one line ``dln: error: …`` on stderr, no traceback,
    and the line names what went wrong (each of ``texts`` is in it)."""
    assert code == 2, (code, out, err)
    assert out == "", out
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dln: error: "), err
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def csv_rows(path, drop_wall=True) -> list[list[str]]:
    """results.csv as lists of fields, without the ``wall_time`` column (the only one that may
    differ between two executions of the same sweep)."""
    with open(path, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    if drop_wall:
        assert table[0][-1] == "wall_time", table[0]
        table = [r[:-1] for r in table]
    return table


#: A sweep of 8 runs (gf and gr, 2 alphas, 2 seeds) in 8 batches of 1: well under a second in-process.
SMALL = ["--method", "gf", "gr", "--alpha", "0.5", "1", "--gamma", "0.1", "--seeds", "2", "--n", "4", "--d", "8",
         "--k", "2", "--chunk-size", "1", "--max-steps", "20", "--workers", "1", "--quiet"]
SMALL_RUNS = 8


def rows_without_wall(path) -> list[str]:
    """The lines of a results.csv without their last field (wall_time, the only one that may differ
    between two executions of a sweep)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return [line.rsplit(",", 1)[0] for line in fh.read().split("\n") if line]


def folder_snapshot(folder) -> dict:
    """{relative path: bytes} of every file under ``folder``: a refused command must leave it as it was."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


# ---------------------------------------------------------------------------------------------
# hypothesis settings shared by the property and fuzz tests
# ---------------------------------------------------------------------------------------------
#: ``DLN_RELIABILITY_EXPLORE=N`` multiplies every example budget by N and draws fresh random
#: examples (default: the fixed, derandomized examples of the default run, no example database).
EXPLORE = int(os.environ.get("DLN_RELIABILITY_EXPLORE", "0") or 0)


def budget(max_examples: int):
    """``hypothesis.settings`` for a property test with ``max_examples`` examples in the default run."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples * max(EXPLORE, 1), deadline=None, derandomize=not EXPLORE,
                    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


#: Counters of what the suite exercised (printed by the ``reliability_counts`` hook in conftest.py).
COUNTS: dict = {}


def count(name: str, k: int = 1):
    COUNTS[name] = COUNTS.get(name, 0) + k


# ---------------------------------------------------------------------------------------------
# known bugs (each pinned by a strict xfail test): the fuzz and property tests tolerate exactly
# these warnings, and count them; remove an entry when its xfail test starts to pass
# ---------------------------------------------------------------------------------------------
def _where(w) -> str:
    return w.filename.replace("\\", "/")


def known_bug(w, *, stochastic: bool, discrete: bool, record: bool) -> str | None:
    """The name of the known bug a caught warning belongs to, or None.

    Empty today: the two bugs it tolerated (the record of a diverged SGD run, the recorded path of a
    diverged discrete run, both overflowing) are fixed, and test_extremes.py tests them as plain tests.
    A new entry goes with a strict xfail test that reproduces it, e.g.::

        if stochastic and discrete and "overflow" in str(w.message) and _where(w).endswith("dln/problem.py"):
            return "diverged SGD record overflow"
    """
    if not issubclass(w.category, RuntimeWarning):
        return None
    return None
