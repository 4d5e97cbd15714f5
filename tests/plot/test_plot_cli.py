"""``dln plot``: the CSV of plotted numbers against independent computations, and bad input.

Oracles: results.csv read with the csv module and grouped / averaged here with plain Python
(statistics.mean, stdev, min, max), and the arrays of the trajectory file read with numpy.load.
Nothing here goes through dln.plot's own grouping.
"""
from __future__ import annotations

import csv
import math
import os
import statistics

import numpy as np
import pytest

import dln
from dln.cli import main
from dln.plot import geometric, spans_decades
from dln.simulate import run_batch
from dln.sweep_io import HEADER, format_row
from dln.trajectory import record_runs, save_trajectory

N, D, K = 10, 20, 3


def cli(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def num(text):
    return None if text == "" else float(text)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """gf and gr (γ ∈ {0.05, 0.1}) at α ∈ {0.01, 0.1, 1}, 2 seeds: 18 runs, with trajectories."""
    out = tmp_path_factory.mktemp("sweep") / "s"
    assert main(["sweep", "--method", "gf", "gr", "--gamma", "0.05", "0.1", "--alpha-geom", "0.01", "1", "3",
                 "--seeds", "2", "--n", str(N), "--d", str(D), "--k", str(K), "--rtol", "1e-6", "--workers", "1",
                 "--quiet", "--save-trajectories", "--out", str(out)]) == 0
    return out


def check_outputs(out, printed, name):
    paths = [os.path.join(str(out), f"{name}.{ext}") for ext in ("png", "pdf", "csv")]
    assert printed.split() == paths
    with open(paths[0], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(paths[1], "rb") as fh:
        assert fh.read(5) == b"%PDF-"
    return paths[2]


def group_stats(rows, keys, metric, axes, converged_only=True):
    """{key tuple: [values]} of the finite metric values of the included rows with values on the axes."""
    groups = {}
    for r in rows:
        if any(r[k] == "" for k in axes):
            continue
        if converged_only and r["status"] != "converged":
            continue
        v = num(r[metric])
        if v is None or not math.isfinite(v):
            continue
        groups.setdefault(tuple(r[k] for k in keys), []).append(v)
    return groups


# ---------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------
def test_lines_are_the_mean_and_range_over_seeds(sweep_dir, tmp_path, capsys):
    code, out, err = cli(capsys, ["plot", sweep_dir, "--out", tmp_path])
    assert code == 0, err
    plotted = read_csv(check_outputs(tmp_path, out, "test_error_vs_alpha"))  # default metric and x (3 α > 2 γ)
    want = group_stats(read_csv(sweep_dir / "results.csv"), ("method", "variant", "gamma", "alpha"), "test_error",
                        axes=("alpha",))
    assert len(want) == 3 * 3  # gf, gr γ=0.05, gr γ=0.1 at 3 α
    got = {(r["method"], r["variant"], r["gamma"], r["alpha"]): r for r in plotted}
    assert got.keys() == want.keys()
    for key, values in want.items():
        r = got[key]
        assert float(r["test_error_mean"]) == pytest.approx(statistics.mean(values), rel=1e-14)
        assert float(r["test_error_lo"]) == min(values) and float(r["test_error_hi"]) == max(values)
        assert int(r["n_used"]) == len(values) == 2 and r["band"] == "minmax"


def test_std_band_against_gamma_counts_the_runs_without_gamma(sweep_dir, tmp_path, capsys):
    code, out, err = cli(capsys, ["plot", sweep_dir / "results.csv", "--out", tmp_path, "--metric", "l1_norm",
                                  "--x", "gamma", "--band", "std", "--name", "l1"])
    assert code == 0, err
    assert "runs without gamma (6 gf)" in err  # gf has no γ: not plotted, and said so
    plotted = read_csv(check_outputs(tmp_path, out, "l1"))
    want = group_stats(read_csv(sweep_dir / "results.csv"), ("method", "alpha", "gamma"), "l1_norm",
                        axes=("gamma",))
    got = {(r["method"], r["alpha"], r["gamma"]): r for r in plotted}
    assert got.keys() == want.keys() and {k[0] for k in got} == {"gr"}
    for key, values in want.items():
        m, sd = statistics.mean(values), statistics.stdev(values)
        assert float(got[key]["l1_norm_mean"]) == pytest.approx(m, rel=1e-14)
        assert float(got[key]["l1_norm_lo"]) == pytest.approx(m - sd, rel=1e-12)
        assert float(got[key]["l1_norm_hi"]) == pytest.approx(m + sd, rel=1e-12)


def test_heatmap_cells_are_the_mean_over_seeds(sweep_dir, tmp_path, capsys):
    code, out, err = cli(capsys, ["plot", sweep_dir, "--out", tmp_path, "--x", "gamma", "--y", "alpha",
                                  "--metric", "gain_mean"])
    assert code == 0, err
    plotted = read_csv(check_outputs(tmp_path, out, "gain_mean_gamma_alpha"))
    want = group_stats(read_csv(sweep_dir / "results.csv"), ("method", "variant", "gamma", "alpha"), "gain_mean",
                        axes=("gamma", "alpha"))
    got = {(r["method"], r["variant"], r["gamma"], r["alpha"]): r for r in plotted}
    assert got.keys() == want.keys() and len(got) == 2 * 3
    for key, values in want.items():
        assert float(got[key]["gain_mean_mean"]) == pytest.approx(statistics.mean(values), rel=1e-14)
        assert int(got[key]["n_used"]) == len(values)


def _row(run, method, alpha, seed, status, value, gamma=None):
    return format_row(dict(run=run, run_id=f"r{run:016x}", method=method, variant="full", time="flow", alpha=alpha,
                           gamma=gamma, data=None, n=N, d=D, k=K, noise=0.0, design="gaussian", seed=seed,
                           status=status, train_loss=1e-30, test_error=value, l1_norm=1.0, steps=10, n_evals=20,
                           t=5.0, wall_time=0.1))


@pytest.fixture
def mixed_status(tmp_path):
    """A results.csv written in dln.sweep_io's format with diverged / max_steps runs and an inf value."""
    rows, run = [], 0
    for alpha in (0.01, 0.1, 1.0):
        for seed in range(3):
            status, value = "converged", alpha * (1 + seed)
            if (alpha, seed) == (0.01, 2):
                status, value = "diverged", 1e6
            if (alpha, seed) == (0.1, 1):
                status, value = "max_steps", 7.0
            if (alpha, seed) == (1.0, 0):
                status, value = "diverged", math.inf
            rows.append(_row(run, "gf", alpha, seed, status, value))
            run += 1
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "results.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    return folder


def test_runs_that_did_not_converge_are_excluded_and_counted(mixed_status, tmp_path, capsys):
    code, out, err = cli(capsys, ["plot", mixed_status, "--out", tmp_path / "a"])
    assert code == 0, err
    assert "means over the converged runs only" in err
    assert "excluded 3 of 9 runs not converged (2 diverged, 1 max_steps)" in err
    got = {float(r["alpha"]): r for r in read_csv(tmp_path / "a" / "test_error_vs_alpha.csv")}
    # converged values alpha·(1 + seed) for the seeds that converged
    for alpha, seeds in ((0.01, (0, 1)), (0.1, (0, 2)), (1.0, (1, 2))):
        values = [alpha * (1 + s) for s in seeds]
        assert float(got[alpha]["test_error_mean"]) == pytest.approx(statistics.mean(values), rel=1e-14)
        assert (int(got[alpha]["n_used"]), int(got[alpha]["n_excluded"])) == (2, 1)
    # --all-runs: every run with a finite value (the inf of the diverged run at α = 1 stays out)
    code, out, err = cli(capsys, ["plot", mixed_status, "--out", tmp_path / "b", "--all-runs"])
    assert code == 0, err
    assert "1 included runs have no finite test_error" in err
    got = {float(r["alpha"]): r for r in read_csv(tmp_path / "b" / "test_error_vs_alpha.csv")}
    assert float(got[0.01]["test_error_mean"]) == pytest.approx(statistics.mean([0.01, 0.02, 1e6]), rel=1e-14)
    assert float(got[0.1]["test_error_mean"]) == pytest.approx(statistics.mean([0.1, 7.0, 0.3]), rel=1e-14)
    assert float(got[1.0]["test_error_mean"]) == pytest.approx(statistics.mean([2.0, 3.0]), rel=1e-14)
    assert float(got[0.01]["test_error_hi"]) == 1e6


def test_no_run_in_a_mean_is_an_error_that_names_all_runs(tmp_path, capsys):
    folder = tmp_path / "ln"
    folder.mkdir()
    rows = [_row(i, "gf", a, 0, "max_steps", 0.5) for i, a in enumerate((0.1, 1.0))]
    (folder / "results.csv").write_text(HEADER + "".join(rows), encoding="utf-8")
    code, out, err = cli(capsys, ["plot", folder, "--out", tmp_path / "o"])
    assert code == 2 and out == "" and err.count("\n") == 1 and "--all-runs" in err


def test_axis_scale_rules():
    assert geometric([0.01, 0.1, 1.0]) and geometric([0.1, 0.2, 0.4, 0.8]) and geometric([1e-4, 1e-2])
    assert not geometric([1, 2, 3]) and not geometric([0.5, 1.0]) and not geometric([0, 1, 10, 100])
    assert not geometric([0.1, 0.3, 1.0])  # ratios 3 and 3.33: neither evenly spaced in log nor 2 decades
    assert spans_decades([1e-3, 1.0]) and not spans_decades([1e-2, 0.5]) and not spans_decades([-1, 1e3])


# ---------------------------------------------------------------------------------------------
# trajectories
# ---------------------------------------------------------------------------------------------
def _by_run_and_t(traj, rows):
    """Each CSV row with the index k of its point in the file (t is strictly increasing up to the end)."""
    for r in rows:
        i = int(r["run"])
        k = int(np.flatnonzero(traj.t[:, i] == float(r["t"]))[0])
        yield i, k, r


def test_trajectory_csv_holds_the_file_arrays(sweep_dir, tmp_path, capsys):
    path = sweep_dir / "trajectories" / "chunk-00000.npz"
    code, out, err = cli(capsys, ["plot", path, "--out", tmp_path, "--runs", "1", "0", "--others", "5"])
    assert code == 0, err
    rows = read_csv(check_outputs(tmp_path, out, "trajectory_chunk-00000"))
    with np.load(path) as z:  # the file as plain arrays
        t, beta, loss, log_c, beta_star = z["t"], z["beta"], z["loss"], z["log_c"], z["beta_star"]
    traj = dln.load_trajectory(path)
    support = np.flatnonzero(beta_star)
    assert support.size == K
    for i in (0, 1):
        mine = [r for r in rows if int(r["run"]) == i]
        # every distinct positive time of the run, once (a stopped run repeats its last point)
        assert [float(r["t"]) for r in mine] == sorted(set(t[:, i][t[:, i] > 0].tolist()))
        assert {r["run_id"] for r in mine} == {traj.runs[i]["run_id"]}
        idx = np.asarray([int(np.flatnonzero(t[:, i] == float(r["t"]))[0]) for r in mine])
        off = np.setdiff1d(np.arange(D), support)
        size = np.max(np.abs(beta[idx][:, i, off]), axis=0)
        grey = off[np.argsort(-size, kind="stable")[:5]]
        shown = set(support.tolist()) | set(grey.tolist())
        for r in mine:
            assert {c for c in range(D) if r.get(f"beta_{c}", "") != ""} == shown
    for i, k, r in _by_run_and_t(traj, rows):
        assert float(r["loss"]) == loss[k, i]
        for c in range(D):
            if r.get(f"beta_{c}", "") != "":
                assert float(r[f"beta_{c}"]) == beta[k, i, c]
                assert float(r[f"alpha_eff_{c}"]) == np.exp(0.5 * log_c[k, i, c])


def test_trajectory_range_mode_on_linear_time(sweep_dir, tmp_path, capsys):
    path = sweep_dir / "trajectories" / "chunk-00001.npz"
    code, out, err = cli(capsys, ["plot", path, "--out", tmp_path, "--runs", "0", "--alpha-eff", "range",
                                  "--xscale", "linear", "--name", "r"])
    assert code == 0, err
    rows = read_csv(check_outputs(tmp_path, out, "r"))
    traj = dln.load_trajectory(path)
    assert float(rows[0]["t"]) == 0.0  # linear time: the initial point is drawn
    assert len(rows) == len(set(traj.t[:, 0].tolist()))
    for i, k, r in _by_run_and_t(traj, rows):
        a = np.exp(0.5 * traj.log_c[k, i])
        assert float(r["alpha_eff_min"]) == a.min() and float(r["alpha_eff_max"]) == a.max()
        assert float(r["alpha_eff_mean"]) == pytest.approx(a.mean(), rel=1e-14)


def test_without_beta_star_the_largest_coordinates_are_highlighted(tmp_path, capsys):
    P0 = dln.make_problem(n=N, d=D, k=K, seed=3)
    P = dln.Problem(P0.X, P0.y)  # no beta_star
    res = run_batch(P, "gf", alpha=np.array([0.05, 0.5]), rtol=1e-6, record=True)
    path = save_trajectory(tmp_path / "nostar.npz", res)
    code, out, err = cli(capsys, ["plot", path, "--out", tmp_path, "--top", "4", "--others", "0"])
    assert code == 0, err
    assert "showing runs" not in err  # 2 runs: all shown
    rows = read_csv(tmp_path / "trajectory_nostar.csv")
    for i in (0, 1):
        top = set(np.argsort(-np.abs(res.beta[i]))[:4].tolist())
        for r in (r for r in rows if int(r["run"]) == i):
            assert {c for c in range(D) if f"beta_{c}" in r and r[f"beta_{c}"] != ""} == top


def test_a_diverged_run_is_drawn_up_to_its_last_finite_state(tmp_path, capsys):
    """η = 1e300: run 0 diverges at the first step, run 1 stops at max_steps; no warning escapes
    (filterwarnings = error) and the CSV holds run 0's initial point only (linear time)."""
    P = dln.make_problem(n=4, d=7, k=2, seed=0)
    res = record_runs(lambda rec: run_batch(P, "gf", alpha=np.array([1e-3, 0.5]), time="discrete",
                                            lr=np.array([1e300, 0.1]), max_steps=20, record=rec),
                      time="discrete", max_steps=20)
    assert res.status.tolist() == ["diverged", "max_steps"]
    path = save_trajectory(tmp_path / "div.npz", res)
    for extra in ([], ["--xscale", "linear", "--alpha-eff", "range"]):
        code, out, err = cli(capsys, ["plot", path, "--out", tmp_path, "--name", "d", *extra])
        assert code == 0, err
        assert "run 0 (gf) ended with status diverged" in err
    rows = read_csv(tmp_path / "d.csv")
    assert [float(r["t"]) for r in rows if r["run"] == "0"] == [0.0]
    assert [float(r["t"]) for r in rows if r["run"] == "1"] == [0.1 * k for k in range(21)]


# ---------------------------------------------------------------------------------------------
# bad input: exit 2, one line naming the flag
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, flag", [
    (["@missing"], "'path'"),
    (["@empty"], "'path'"),
    (["@sweep", "--metric", "accuracy"], "'metric'"),
    (["@sweep", "--metric", "status"], "'metric'"),
    (["@sweep", "--x", "eps"], "'x'"),
    (["@sweep", "--x", "seed"], "'x'"),
    (["@sweep", "--y", "alpha"], "'y'"),
    (["@sweep", "--y", "gamma", "--xscale", "log"], "'xscale'"),
    (["@sweep", "--runs", "0"], "'runs'"),
    (["@traj", "--metric", "l1_norm"], "'metric'"),
    (["@traj", "--runs", "9"], "'runs'"),
    (["@traj", "--runs", "0", "0"], "'runs'"),
    (["@traj", "--top", "0"], "'top'"),
    (["@sweep", "--band", "iqr"], "--band"),
    (["@sweep", "--dpi", "0"], "'dpi'"),
    (["@sweep", "--name", "a/b"], "'name'"),
])
def test_bad_input(sweep_dir, tmp_path, capsys, argv, flag):
    (tmp_path / "empty").mkdir()
    where = {"@missing": tmp_path / "nope", "@empty": tmp_path / "empty", "@sweep": sweep_dir,
             "@traj": sweep_dir / "trajectories" / "chunk-00000.npz"}
    argv = [where.get(a, a) for a in argv]
    code, out, err = cli(capsys, ["plot", *argv, "--out", tmp_path / "figs"])
    assert code == 2 and out == ""
    assert err.startswith("dln: error: ") and err.count("\n") == 1 and flag in err, err
    assert not (tmp_path / "figs").exists() or not os.listdir(tmp_path / "figs")


def test_momentum_is_a_swept_axis_not_a_metric(tmp_path, capsys):
    """A momentum sweep plots test error against momentum (the default x: the axis with the most values),
    each point the mean over seeds of results.csv's rows; momentum is refused as a metric."""
    out = tmp_path / "m"
    code, _, err = cli(capsys, ["sweep", "--time", "discrete", "--lr", "0.05", "--momentum", "0", "0.3", "0.6", "--n", N,
                                "--d", D, "--k", K, "--seeds", 2, "--out", out, "--workers", 1, "--quiet"])
    assert code == 0, err
    code, printed, err = cli(capsys, ["plot", out, "--out", tmp_path / "p"])
    assert code == 0, err
    rows = read_csv(tmp_path / "p" / "test_error_vs_momentum.csv")
    runs = read_csv(out / "results.csv")
    for row in rows:
        mine = [float(r["test_error"]) for r in runs if float(r["momentum"]) == float(row["momentum"])]
        assert len(mine) == 2 and math.isclose(float(row["test_error_mean"]), statistics.mean(mine), rel_tol=1e-12)
    assert [float(r["momentum"]) for r in rows] == [0.0, 0.3, 0.6]
    code, _, err = cli(capsys, ["plot", out, "--out", tmp_path / "q", "--metric", "momentum"])
    assert code == 2 and "'metric'" in err
