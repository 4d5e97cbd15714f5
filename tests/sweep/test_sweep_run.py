"""Running sweeps: outputs, determinism across workers and shards, merge, resume after SIGKILL,
torn lines, trajectories, the Python API."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import signal
import time

import numpy as np
import pytest

from sweep_helpers import SMALL, SMALL_API, SMALL_RUNS, popen_cli, rows, run_cli
import dln
from dln.cli import main
from dln.sweep import COLUMNS, KEY_COLUMNS, METRIC_COLUMNS, parse_line, sweep


def test_results_csv_and_config(reference):
    table = rows(reference / "results.csv", drop_wall=False)
    assert table[0] == list(COLUMNS)
    body = table[1:]
    assert len(body) == SMALL_RUNS
    assert [int(r[0]) for r in body] == list(range(SMALL_RUNS))  # grid order
    col = {c: i for i, c in enumerate(COLUMNS)}
    for r in body:
        assert r[col["status"]] == "converged"
        assert float(r[col["wall_time"]]) > 0
        if r[col["method"]] == "gf":
            assert r[col["gamma"]] == "" and r[col["eps"]] == ""  # not applicable: empty (NaN in pandas)
        else:
            assert float(r[col["gamma"]]) in (0.05, 0.1)
        for c in ("train_loss", "test_error", "l1_norm", "precision", "recall", "gain_on_mean", "gain_off_max",
                  "prediction_rel_error"):
            assert math.isfinite(float(r[col[c]]))
        assert float(r[col["prediction_rel_error"]]) < 1e-3
    cfg = json.loads((reference / "config.json").read_text())
    assert cfg["command"].startswith("dln sweep ") and "--alpha 0.1 1" in cfg["command"]
    assert {"dln", "python", "numpy", "scipy"} <= set(cfg["versions"])
    assert cfg["root_seed_entropy"] == 0 and cfg["n_runs"] == SMALL_RUNS and cfg["shard"] is None
    assert cfg["columns"] == list(COLUMNS) and len(cfg["fingerprint"]) == 64
    assert "1e-3" in cfg["support_rule"]


def test_readable_by_pandas_without_options(reference):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(reference / "results.csv")
    assert list(df.columns) == list(COLUMNS) and len(df) == SMALL_RUNS
    assert df["alpha"].dtype.kind == "f" and df["steps"].dtype.kind == "i"
    assert df.loc[df["method"] == "gf", "gamma"].isna().all()
    assert df["run_id"].str.match(r"^r[0-9a-f]{16}$").all()


def test_records_parse_back_typed(reference):
    with open(reference / "results.csv", encoding="utf-8") as fh:
        lines = fh.readlines()[1:]
    recs = [parse_line(line) for line in lines]
    assert recs[0]["run"] == 0 and isinstance(recs[0]["alpha"], float) and isinstance(recs[0]["steps"], int)
    assert recs[0]["gamma"] is None and recs[0]["data"] is None and recs[0]["seed"] == 0


def test_workers_do_not_change_a_byte(reference, tmp_path):
    out = tmp_path / "w2"
    assert main(["sweep", *SMALL, "--out", str(out), "--workers", "2", "--quiet"]) == 0
    assert rows(out / "results.csv") == rows(reference / "results.csv")


def test_threaded_parent_uses_a_fork_server(reference, tmp_path):
    """In a process with other threads (a notebook, a GUI), workers come from a fork server."""
    import threading

    from dln.workers import _mp_context

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        assert _mp_context().get_start_method() == "forkserver"
        out = tmp_path / "fs"
        assert main(["sweep", *SMALL, "--out", str(out), "--workers", "2", "--quiet"]) == 0
    finally:
        stop.set()
        thread.join()
    assert rows(out / "results.csv") == rows(reference / "results.csv")


def test_shards_then_merge_equal_the_unsharded_sweep(reference, tmp_path, capsys):
    dirs = []
    seen = []
    for i in (1, 2, 3):
        out = tmp_path / f"shard{i}"
        assert main(["sweep", *SMALL, "--shard", f"{i}/3", "--out", str(out), "--workers", "1", "--quiet"]) == 0
        part = rows(out / "results.csv")[1:]
        assert part  # 6 batches over 3 shards
        seen += [r[0] for r in part]
        dirs.append(str(out))
        assert json.loads((out / "config.json").read_text())["shard"] == f"{i}/3"
    assert sorted(seen, key=int) == [str(i) for i in range(SMALL_RUNS)]  # a partition of the grid
    merged = tmp_path / "merged"
    assert main(["merge", *dirs[::-1], "--out", str(merged)]) == 0
    assert "12/12 runs from 3 folder(s)" in capsys.readouterr().out
    assert rows(merged / "results.csv") == rows(reference / "results.csv")
    cfg = json.loads((merged / "config.json").read_text())
    assert cfg["shard"] is None and cfg["merged_from"] == dirs[::-1]
    # the merged folder is a complete sweep of the same grid: --resume has nothing left to do
    before = (merged / "results.csv").read_bytes()
    assert main(["sweep", *SMALL, "--out", str(merged), "--resume", "--quiet"]) == 0
    assert (merged / "results.csv").read_bytes() == before


def test_merge_partial(tmp_path, capsys):
    s1 = tmp_path / "s1"
    assert main(["sweep", *SMALL, "--shard", "1/2", "--out", str(s1), "--workers", "1", "--quiet"]) == 0
    merged = tmp_path / "m"
    assert main(["merge", str(s1), "--partial", "--quiet", "--out", str(merged)]) == 0
    assert rows(merged / "results.csv") == rows(s1 / "results.csv")
    # then complete the merged folder with --resume (same grid, no shard)
    assert main(["sweep", *SMALL, "--out", str(merged), "--resume", "--quiet", "--workers", "1"]) == 0
    assert len(rows(merged / "results.csv")) == SMALL_RUNS + 1


def _resume_and_compare(out, reference):
    assert main(["sweep", *SMALL, "--out", str(out), "--resume", "--workers", "1", "--quiet"]) == 0
    got, want = rows(out / "results.csv"), rows(reference / "results.csv")
    ids = [r[1] for r in got[1:]]
    assert len(ids) == len(set(ids)) == SMALL_RUNS  # no duplicate, no missing run
    assert got == want


def test_torn_last_line_is_dropped_on_resume(reference, tmp_path):
    out = shutil.copytree(reference, tmp_path / "out")
    path = out / "results.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-25])  # a crash in the middle of the last line
    _resume_and_compare(out, reference)


def test_resume_reruns_incomplete_batches_only(reference, tmp_path, capsys):
    out = shutil.copytree(reference, tmp_path / "out")
    path = out / "results.csv"
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    # keep the header, batch 0 (runs 0-1) and one run of batch 1 (run 2), in a shuffled order
    # (as appended by workers); a duplicate or a foreign line is an error (tests/reliability/test_damaged.py)
    kept = [lines[0], lines[3], lines[2], lines[1]]
    path.write_text("".join(kept))
    assert main(["sweep", *SMALL, "--out", str(out), "--resume", "--workers", "1"]) == 0
    summary = capsys.readouterr().out
    assert "(10 new, 2 resumed)" in summary, summary
    with open(path, encoding="utf-8") as fh:
        new = fh.readlines()
    assert new[1:3] == lines[1:3]  # batch 0 was kept as it was (same wall_time: not re-run)
    assert rows(path) == rows(reference / "results.csv")


def test_resume_of_a_complete_sweep_does_nothing(reference, tmp_path, capsys):
    out = shutil.copytree(reference, tmp_path / "out")
    before = (out / "results.csv").read_bytes()
    assert main(["sweep", *SMALL, "--out", str(out), "--resume"]) == 0
    assert "(0 new, 12 resumed)" in capsys.readouterr().out
    assert (out / "results.csv").read_bytes() == before
    cfg = json.loads((out / "config.json").read_text())
    assert len(cfg["resumes"]) == 1


def test_resume_in_an_empty_folder_starts_the_sweep(tmp_path):
    out = tmp_path / "new"
    out.mkdir()
    assert main(["sweep", *SMALL, "--chunk-size", "12", "--alpha", "1", "--out", str(out), "--resume", "--quiet",
                 "--workers", "1"]) == 0
    assert len(rows(out / "results.csv")) == 1 + 6


def _kill_and_resume(args, reference_rows, tmp_path, seed, workers, no_process_left):
    """Start a sweep in a subprocess, SIGKILL it at a random moment after the first row, resume."""
    rng = random.Random(seed)
    out = tmp_path / "killed"
    proc = popen_cli(["sweep", *args, "--out", out, "--workers", workers, "--quiet"], cwd=tmp_path)
    path = out / "results.csv"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    n_before = path.read_bytes().count(b"\n") - 1
    assert no_process_left(str(tmp_path)), "worker processes outlived the killed sweep"
    res = run_cli(["sweep", *args, "--out", out, "--workers", workers, "--resume", "--quiet"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    got = rows(path)
    ids = [r[1] for r in got[1:]]
    assert len(ids) == len(set(ids)) == len(reference_rows) - 1, "duplicate or missing runs"
    assert got[0] == reference_rows[0]
    col = {c: i for i, c in enumerate(got[0])}
    for a, b in zip(got[1:], reference_rows[1:]):
        for c in ("run", "run_id") + KEY_COLUMNS + ("status", "steps"):
            assert a[col[c]] == b[col[c]], c
        for c in METRIC_COLUMNS:
            if c in ("status", "steps", "n_evals"):
                continue
            x, y = a[col[c]], b[col[c]]
            assert (x == y == "") or math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=1e-12), (c, x, y)
    assert got == reference_rows  # in fact identical (whole batches are re-run)
    return n_before


def test_sigkill_at_a_random_moment_then_resume(reference, tmp_path, no_process_left):
    seed = random.randrange(10**6)
    n_before = _kill_and_resume(SMALL, rows(reference / "results.csv"), tmp_path, seed, 2, no_process_left)
    assert 0 <= n_before <= SMALL_RUNS, f"seed {seed}"


@pytest.mark.slow
def test_sigkill_54_runs_n20_d40(tmp_path, no_process_left):
    """The acceptance test of sweeps: a 3x3x3 grid with 2 seeds (54 runs, n = 20, d = 40)."""
    args = ["--method", "gr", "fgr", "bgr", "--alpha", "0.01", "0.1", "1", "--gamma", "0.02", "0.05", "0.1",
            "--eps", "0.1", "--seeds", "2", "--n", "20", "--d", "40"]
    ref = tmp_path / "ref"
    res = run_cli(["sweep", *args, "--out", ref, "--quiet"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(rows(ref / "results.csv")) == 55
    for k, workers in enumerate((1, 2)):
        sub = tmp_path / f"k{k}"
        sub.mkdir()
        _kill_and_resume(args, rows(ref / "results.csv"), sub, random.randrange(10**6), workers, no_process_left)


def test_save_trajectories(tmp_path):
    out = tmp_path / "t"
    recs = sweep(method="gf", alpha=[0.1, 1.0], n=8, d=12, rtol=1e-6, out=str(out), workers=1,
                 save_trajectories=True)
    files = sorted(os.listdir(out / "trajectories"))
    assert files == ["chunk-00000.npz"]
    traj = dln.load_trajectory(out / "trajectories" / files[0])  # format: tests/plot/test_trajectory.py
    assert [r["run"] for r in traj.runs] == [0, 1] and traj.run_ids == [r["run_id"] for r in recs]
    assert traj.beta_final.shape == (2, 12) and traj.alpha_eff.shape == (2, 12)
    assert traj.beta.shape[1:] == (2, 12) and traj.t.shape[1] == 2


def test_api_in_memory_equals_the_cli(reference):
    recs = sweep(**SMALL_API, workers=1)
    with open(reference / "results.csv", encoding="utf-8") as fh:
        want = [parse_line(line) for line in fh.readlines()[1:]]
    assert len(recs) == SMALL_RUNS
    for a, b in zip(recs, want):
        a, b = dict(a), dict(b)
        a.pop("wall_time")
        b.pop("wall_time")
        assert a == b


def test_api_grid_argument_and_problem_object(tmp_path):
    from dln.problem import make_problem

    P = make_problem(n=6, d=10, k=2, seed=1)
    recs = sweep({"method": ["gf", "gr"], "gamma": 0.1}, data=P, alpha=[0.5], rtol=1e-6, workers=1, chunk_size=1)
    assert [(r["method"], r["gamma"], r["n"], r["d"]) for r in recs] == [("gf", None, 6, 10), ("gr", 0.1, 6, 10)]
    assert recs[0]["data"].startswith("problem-")
    # a Problem object travels to worker processes too (same chunks: the same bytes; a run's result
    # depends on its batch-mates only through the round-off of the matrix products)
    recs2 = sweep({"method": ["gf", "gr"], "gamma": 0.1}, data=P, alpha=[0.5], rtol=1e-6, workers=2, chunk_size=1)
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in recs] == \
        [{k: v for k, v in r.items() if k != "wall_time"} for r in recs2]


def test_discrete_sgd_runs_do_not_depend_on_their_batch(tmp_path):
    grid = dict(method="gf", time="discrete", lr=[0.05, 0.1], batch_size=[4], alpha=[1.0], n=8, d=12,
                max_steps=300)
    a = sweep(grid, chunk_size=1, workers=1)
    b = sweep(grid, chunk_size=2, workers=1)
    assert [r["run_id"] for r in a] == [r["run_id"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["steps"] == rb["steps"]
        assert math.isclose(ra["train_loss"], rb["train_loss"], rel_tol=1e-9)
    c = sweep({**grid, "lr": [0.1]}, workers=1)  # the same run alone: the same mini-batches
    assert math.isclose(c[0]["train_loss"], a[1]["train_loss"], rel_tol=1e-9)


def test_summary_line_and_quiet(tmp_path, capsys):
    args = ["sweep", "--alpha", "1", "--n", "6", "--d", "8", "--k", "2", "--rtol", "1e-6", "--workers", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    cap = capsys.readouterr()
    # stderr is not a terminal: no bar, at most a status line every 10 s (dln.progress)
    assert all(line.startswith("dln sweep: ") and " elapsed" in line for line in cap.err.splitlines()), cap.err
    lines = cap.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dln sweep: 1/1 runs (1 new, 0 resumed)") and "1 converged" in lines[0]
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


def test_failed_batches_are_reported_and_retried(tmp_path, capsys, monkeypatch):
    import importlib

    sw = importlib.import_module("dln.sweep")  # the module, even if dln exports a function named sweep

    real = sw.run_task

    def flaky(task, record=False):
        if task["chunk"] == 1:
            raise FloatingPointError("boom")
        return real(task, record)

    monkeypatch.setattr(sw, "run_task", flaky)
    out = tmp_path / "f"
    args = ["sweep", "--alpha", "0.5", "1", "--seeds", "2", "--n", "6", "--d", "8", "--k", "2", "--rtol", "1e-6",
            "--workers", "1", "--quiet", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("dln: error: 2 run(s) in 1 batch(es) failed") and "boom" in err
    assert len(rows(out / "results.csv")) == 3
    monkeypatch.setattr(sw, "run_task", real)
    assert main([*args, "--resume"]) == 0
    assert len(rows(out / "results.csv")) == 5


def test_csv_module_reads_every_row(reference):
    with open(reference / "results.csv", newline="", encoding="utf-8") as fh:
        recs = list(csv.DictReader(fh))
    assert len(recs) == SMALL_RUNS and set(recs[0]) == set(COLUMNS)
