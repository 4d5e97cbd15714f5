"""Reliability: smaller hostile cases.

- ``--grid`` files: a key given twice (before: the last value silently kept), nesting deep enough to
  overflow the recursion (before: a traceback), a byte-order mark (Windows editors);
- ``dln.sweep(workers=2)`` from a script without an ``if __name__ == "__main__"`` guard while another
  thread is alive (before: every batch failed, the workers re-ran the script);
- data file names that results.csv cannot hold (a newline or carriage return split the row and broke
  ``--resume``; bytes that are not UTF-8), and names it can (commas, quotes, spaces, accents);
- one-line errors that name the parameter or file: ``figures --out FILE``, a stdout that cannot encode
  a path (before: a finished sweep exited 2 on its summary line), a non-UTF-8 file name.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from reliability_helpers import SMALL, assert_user_error, call, count, rows_without_wall, subprocess_env
from dln.problem import make_problem, save_problem


# -- grid files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, texts", [
    ('{"alpha": [0.1], "alpha": [1.0]}', ["'grid'", "'alpha' twice"]),
    ('{"method": "gf", "n": 4, "n": 6}', ["'grid'", "'n' twice"]),
    ('[{"method": "gf"}, {"method": "gr", "gamma": 0.1, "gamma": 0.2}]', ["'grid'", "'gamma' twice"]),
    ("[" * 100_000 + "]" * 100_000, ["'grid'", "nested"]),
    ('{"alpha": ' + "[" * 5000 + "0.1" + "]" * 5000 + "}", ["'grid'", "nested"]),
    ('[[{"alpha": [0.1]}]]', ["'grid'", "nested 4 levels"]),
], ids=["key-twice", "key-twice-int", "key-twice-in-a-union", "deep-list", "deep-value", "list-of-lists"])
def test_grid_file_rules(tmp_path, content, texts):
    grid = tmp_path / "grid.json"
    grid.write_text(content)
    assert_user_error(*call(["sweep", "--grid", grid, "--workers", "1", "--quiet", "--out", tmp_path / "o"]), *texts)
    assert not (tmp_path / "o").exists()
    count("misc: hostile inputs refused with a one-line error")


def test_grid_file_with_a_byte_order_mark(tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_bytes(b"\xef\xbb\xbf" + json.dumps({"alpha": [0.5, 1.0], "n": 4, "d": 8, "k": 2, "max_steps": 5}).encode())
    code, _, err = call(["sweep", "--grid", grid, "--workers", "1", "--quiet", "--out", tmp_path / "o"])
    assert code == 0, err
    count("misc: hostile inputs accepted correctly")


# -- a script without a __main__ guard ------------------------------------------------------------------
SCRIPT = """
import threading
import dln

stop = threading.Event()
if {thread}:
    threading.Thread(target=stop.wait, daemon=True).start()  # e.g. a progress monitor, a server thread
records = dln.sweep(method="gf", alpha=[0.3, 0.5, 0.7, 1.0], seeds=2, n=4, d=8, k=2, workers=2, chunk_size=1,
                    max_steps=10)
stop.set()
print("RUNS", len(records), sorted({{r["status"] for r in records}}))
"""


@pytest.mark.parametrize("thread", [True, False], ids=["a-thread-alive", "single-threaded"])
def test_a_script_without_a_main_guard(tmp_path, thread):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(thread=thread)))
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("RUNS 8") == 1, res.stdout  # once: the workers did not re-run the script
    count("misc: hostile inputs accepted correctly")


# -- data file names ----------------------------------------------------------------------------------
def _data(tmp_path, name):
    path = os.fsdecode(os.path.join(os.fsencode(tmp_path), name)) if isinstance(name, bytes) else str(tmp_path / name)
    save_problem(path, make_problem(n=4, d=8, k=2, seed=0, n_test=5))
    return path


@pytest.mark.parametrize("name", ["new\nline.npz", "carriage\rreturn.npz", "tab\there.npz", b"not-utf8-\xff.npz"],
                         ids=["newline", "carriage-return", "tab", "not-utf8"])
def test_data_names_results_csv_cannot_hold(tmp_path, name):
    path = _data(tmp_path, name)
    assert_user_error(*call(["sweep", "--data", path, "--workers", "1", "--quiet", "--out", tmp_path / "o"]),
                      "'data'", "rename the file")
    assert not (tmp_path / "o").exists()
    code, out, err = call(["simulate", "--data", path, "--max-steps", "5", "--json"])  # no file written: fine
    assert code == 0 and json.loads(out)["status"], err
    count("misc: hostile inputs refused with a one-line error")


@pytest.mark.parametrize("name", ['comma,and"quote.npz', "spaces and ünïcode.npz", "'single'.npz"],
                         ids=["comma-quote", "spaces-unicode", "single-quotes"])
def test_data_names_results_csv_can_hold_survive_a_resume(tmp_path, name):
    path = _data(tmp_path, name)
    args = ["sweep", "--data", path, "--alpha", "0.5", "1", "--chunk-size", "1", "--max-steps", "5", "--workers", "1",
            "--quiet", "--out", tmp_path / "o"]
    assert call(args)[0] == 0
    first = rows_without_wall(tmp_path / "o" / "results.csv")
    results = tmp_path / "o" / "results.csv"
    results.write_text(results.read_text().rsplit("\n", 2)[0] + "\n")  # drop the last row: --resume redoes it
    code, _, err = call([*args, "--resume"])
    assert code == 0, err
    assert rows_without_wall(results) == first
    import pandas as pd

    assert list(pd.read_csv(results)["data"]) == [path, path]
    count("misc: hostile inputs accepted correctly")


# -- errors that name what went wrong -------------------------------------------------------------------
def test_figures_out_is_a_file(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("keep")
    code, _, err = call(["figures", "--out", f, "--quick", "--only", "fig1"])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "'--out'" in err and str(f) in err, err  # before: "[Errno 17] File exists: ..."
    assert f.read_text() == "keep"
    count("misc: hostile inputs refused with a one-line error")


def test_a_stdout_that_cannot_encode_the_path(tmp_path):
    """PYTHONIOENCODING=ascii (or a latin-1 terminal): the summary line escapes what it cannot print."""
    out = tmp_path / "résultats"
    env = subprocess_env(PYTHONIOENCODING="ascii")
    args = [a for a in SMALL if a != "--quiet"]
    res = subprocess.run([sys.executable, "-m", "dln", "sweep", *args, "--out", str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "r\\xe9sultats" in res.stdout and res.stderr == "", (res.stdout, res.stderr)
    missing = str(tmp_path / "dätä.npz")
    res = subprocess.run([sys.executable, "-m", "dln", "simulate", "--data", missing], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "'data'" in res.stderr, res.stderr
    count("misc: hostile inputs refused with a one-line error")


def test_an_empty_out_and_merging_a_folder_with_itself(tmp_path):
    assert_user_error(*call(["sweep", *SMALL, "--out", ""]), "'out'")
    s = tmp_path / "s"
    assert call(["sweep", *SMALL, "--out", s])[0] == 0
    assert_user_error(*call(["merge", s, s, "--out", tmp_path / "m", "--quiet"]), "'dirs'", "in both")
    link = tmp_path / "link"
    link.symlink_to(s)
    assert_user_error(*call(["merge", s, "--out", link, "--quiet"]), "'out'", "other than the merged ones")
    count("misc: hostile inputs refused with a one-line error", 3)
