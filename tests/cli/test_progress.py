"""Progress (dln.progress): a status line on stderr when it is not a terminal, nothing when quiet,
result lines streamed as they finish, and stdout of --json commands still pure JSON."""
from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest

import dln
from cli_helpers import TINY, call
from dln import check, progress
from dln.integrate import flow, iterate
from dln.methods import make
from dln.model import initial_state

STATUS = re.compile(r"dln sweep: (\d+)/(\d+) runs, (\d+) diverged, \d+\.\d s elapsed(, ~\d+ s left)?")


def test_status_line_format():
    buf = io.StringIO()
    p = progress.Progress("dln sweep", 96, unit="run", interval=0.0, stream=buf, counts={"diverged": 0}).start()
    p.update(37, diverged=1)
    p.update(0)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and all(STATUS.fullmatch(ln) for ln in lines), lines
    m = STATUS.fullmatch(lines[0])
    assert (m[1], m[2], m[3]) == ("37", "96", "1") and m[4]  # a time-left estimate while runs remain


def test_status_lines_are_throttled():
    buf = io.StringIO()
    p = progress.Progress("dln sweep", 10, interval=3600.0, stream=buf).start()
    for _ in range(10):
        p.update(1)
    assert buf.getvalue() == ""  # the interval has not passed: nothing yet


def test_quiet_prints_nothing():
    buf = io.StringIO()
    p = progress.Progress("dln sweep", 10, interval=0.0, stream=buf, quiet=True).start()
    p.update(5)
    p.close()
    assert buf.getvalue() == ""
    assert progress.step_callback(quiet=True) is None


def test_bar_on_a_terminal_like_stream():
    buf = io.StringIO()
    with progress.Progress("dln check", 3, unit="section", stream=buf, bar=True) as p:
        p.update(1)
        p.update(2)
    assert "dln check" in buf.getvalue() and "3/3" in buf.getvalue()


def test_step_callback_waits_for_its_delay():
    buf = io.StringIO()
    cb = progress.step_callback(delay=3600.0, interval=0.0, stream=buf)
    for k in range(100):
        cb(k, 1, 1)
    assert buf.getvalue() == ""
    cb = progress.step_callback(delay=0.0, interval=0.0, stream=buf)
    cb(12, 2, 3)
    assert re.fullmatch(r"dln simulate: 12 steps, 2/3 runs running, \d+\.\d s elapsed\n", buf.getvalue())


# ---------------------------------------------------------------------------------------------
# the integrators call progress(steps_done, running, total) once per main-loop iteration
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("time", ["flow", "discrete"])
def test_integrators_call_progress(time):
    P = dln.make_problem(n=6, d=12, k=2, seed=0)
    calls = []
    direction = make("gr", P, gamma=np.array([0.01, 0.05, 0.1]))
    state = initial_state(P.d, 3, alpha=0.1)
    if time == "flow":
        res = flow(direction, state, rtol=1e-6, max_steps=300, progress=lambda *a: calls.append(a))
        attempted = res.steps + res.rejected
    else:
        res = iterate(direction, state, 0.1, max_steps=300, progress=lambda *a: calls.append(a))
        attempted = res.steps
    assert len(calls) >= attempted.max()
    done, running, total = map(np.array, zip(*calls))
    assert np.all(total == 3) and np.all(np.diff(done) >= 0)
    assert np.all((running >= 1) & (running <= 3)) and np.all(np.diff(running) <= 0)


def test_simulate_passes_progress_and_short_runs_print_nothing():
    P = dln.make_problem(n=6, d=12, k=2, seed=0)
    calls = []
    dln.simulate(P, "gf", time="discrete", lr=0.1, max_steps=7, progress=lambda *a: calls.append(a))
    assert len(calls) >= 7
    code, out, err = call(["simulate", *TINY, "--time", "discrete", "--lr", "0.1", "--max-steps", "5"])
    assert code == 0 and err == ""  # under the 2 s delay: no status line


# ---------------------------------------------------------------------------------------------
# the commands
# ---------------------------------------------------------------------------------------------
def test_simulate_json_stdout_stays_pure_json(fast_progress):
    code, out, err = call(["simulate", *TINY, "--time", "discrete", "--lr", "0.1", "--max-steps", "50", "--json"])
    assert code == 0
    assert json.loads(out)["steps"] <= 50 and out.count("\n") == 1
    lines = err.splitlines()
    assert lines and all(re.fullmatch(r"dln simulate: \d+ steps, 1/1 runs running, \d+\.\d s elapsed", ln)
                         for ln in lines), err
    code, out, err = call(["simulate", *TINY, "--time", "discrete", "--lr", "0.1", "--max-steps", "50", "--json",
                           "--quiet"])
    assert code == 0 and err == ""


GRID = dict(method=["gf", "gr"], gamma=0.05, alpha=[0.1, 1.0], n=6, d=12, k=2, max_steps=50, chunk_size=1)


def test_python_sweep_shows_progress_by_default(fast_progress, capsys):
    recs = dln.sweep(**GRID, workers=1)
    out, err = capsys.readouterr()
    assert len(recs) == 4
    lines = err.splitlines()
    assert len(lines) >= 4 and all(STATUS.fullmatch(ln) for ln in lines), err
    assert STATUS.fullmatch(lines[-1])[1] == "4"
    assert out.startswith("dln sweep: 4/4 runs")  # the summary
    dln.sweep(**GRID, workers=1, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_cli_sweep_progress_and_quiet(fast_progress, tmp_path):
    argv = ["sweep", "--method", "gf", "gr", "--gamma", "0.05", "--alpha", "0.1", "1", *TINY, "--max-steps", "50",
            "--workers", "2", "--chunk-size", "1"]
    code, out, err = call([*argv, "--out", tmp_path / "a"])
    assert code == 0
    assert err and all(STATUS.fullmatch(ln) for ln in err.splitlines()), err
    assert out.startswith("dln sweep: 4/4 runs")
    code, out, err = call([*argv, "--out", tmp_path / "b", "--quiet"])
    assert code == 0 and out == "" and err == ""


def test_check_streams_rows(monkeypatch, fast_progress):
    """Each row is on stdout before the next one is computed."""
    seen = []
    buf = io.StringIO()

    def section(P):
        yield check._row("the first claim", "0", 0.0, 1.0)
        seen.append(buf.getvalue())  # computing the second row: what has the user seen?
        yield check._row("the second claim", "0", 0.0, 1.0)

    monkeypatch.setattr(check, "SECTIONS", [("one", section), ("two", section)])
    err = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        assert dln.cli.main(["check", *TINY]) == 0
    assert "the first claim" in seen[0] and "the second claim" not in seen[0]
    assert re.search(r"^4/4 claims pass in \d+\.\d s$", buf.getvalue(), re.M), buf.getvalue()
    assert re.search(r"dln check: 1/2 sections, 0 failed", err.getvalue()), err.getvalue()
    code, out, err = call(["check", *TINY, "--json"])
    assert code == 0 and json.loads(out)["passed"] and re.search(r"dln check: 2/2 sections", err)
    code, out, err = call(["check", *TINY, "--json", "--quiet"])
    assert code == 0 and err == ""


def test_figures_print_a_line_per_figure_as_it_finishes(monkeypatch, tmp_path, fast_progress):
    from figures import run as R

    order = []

    def fake(name, quick, out, dpi, gallery=None):
        order.append(("start", name))
        return dict(name=name, compute=0.1, compute_cpu=0.1, plot=0.2, plot_cpu=0.2, paths=[])

    monkeypatch.setattr(R, "_one", fake)
    lines = []
    R.run(["1", "2"], out=str(tmp_path), workers=1, log=lambda s: (lines.append(s), order.append(("line", s))))
    assert [o[0] for o in order] == ["start", "line", "start", "line"]
    assert lines[0].startswith("fig1_kernel_rich") and lines[1].startswith("fig2_gr_regime")
    code, out, err = call(["figures", "--out", tmp_path, "--only", "1", "2", "--workers", "1"])
    assert code == 0 and re.search(r"^fig2_gr_regime\s+compute\s+0\.1 s", out, re.M)
    assert re.search(r"dln figures: 2/2 figures", err), err
    code, out, err = call(["figures", "--out", tmp_path, "--only", "1", "--jobs", "1", "--quiet"])
    assert code == 0 and out == "" and err == ""
