"""The trajectory file format dln-trajectory/1 (dln/trajectory.py): round trips and the recording rule.

Oracles: the JSON of ``dln simulate``, the rows of results.csv, a second run of the same batch
recorded at every step (``dln.integrate.iterate`` with record_every=1) or by ``run_batch`` directly,
the loss L(β) = (1/2n)‖Xβ − y‖² written out here, and the initial state u0 = v0 = α (β = 0,
ln c = 2 ln α).
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import dln
from dln.cli import main
from dln.errors import DLNError
from dln.integrate import iterate
from dln.methods import gf
from dln.model import initial_state
from dln.simulate import run_batch
from dln.trajectory import MAX_POINTS, record_runs, save_trajectory

N, D, K = 10, 20, 3


def loss_of(P, beta):
    """(1/2n)‖Xβ − y‖² for β of shape (..., d), written out independently of dln.problem."""
    r = np.einsum("...j,ij->...i", beta, P.X) - P.y
    return 0.5 * np.sum(r * r, axis=-1) / P.X.shape[0]


def same_loss(L1, L2) -> bool:
    """Equal losses up to the round-off of the residual r = Xβ − y (|r| ~ 1e-16 near an interpolator,
    where the relative error of ‖r‖² is large): compare ‖r‖ = sqrt(2nL) to 1e-14 absolute."""
    return bool(np.allclose(np.sqrt(L1), np.sqrt(L2), rtol=1e-10, atol=1e-14))


def cli(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# dln simulate --save-trajectory
# ---------------------------------------------------------------------------------------------
def test_simulate_flow_round_trip(tmp_path, capsys):
    path = tmp_path / "gr.npz"
    code, out, err = cli(capsys, ["simulate", "--n", N, "--d", D, "--k", K, "--method", "gr", "--gamma", 0.05,
                                  "--alpha", 0.05, "--rtol", 1e-7, "--json", "--save-trajectory", path])
    assert code == 0, err
    rec = json.loads(out)  # stdout holds the JSON object alone
    with np.load(path) as raw:  # a plain .npz, readable without dln
        assert str(raw["format"]) == "dln-trajectory/1" and raw["beta"].shape[1:] == (1, D)
    tr = dln.load_trajectory(path)
    assert tr.n_runs == 1 and tr.d == D
    # the last point is the run's end: β and α_eff of the JSON (exactly: the same float64 numbers)
    assert tr.beta[-1, 0].tolist() == rec["beta"] == tr.beta_final[0].tolist()
    assert tr.alpha_eff[0].tolist() == rec["alpha_eff"]
    assert np.array_equal(np.exp(0.5 * tr.log_c[-1, 0]), tr.alpha_eff[0])
    assert tr.status.tolist() == [rec["status"]] and tr.t[-1, 0] == rec["t"]
    # the first point is the initialization u0 = v0 = α
    assert tr.t[0, 0] == 0.0 and np.all(tr.beta[0, 0] == 0.0)
    assert np.allclose(tr.log_c[0, 0], 2 * math.log(0.05), rtol=0, atol=1e-15)
    assert np.all(np.diff(tr.t[:, 0]) >= 0)
    # the loss belongs to the β of the same point
    P = dln.make_problem(n=N, d=D, k=K, seed=0)
    assert same_loss(tr.loss[:, 0], loss_of(P, tr.beta[:, 0]))
    assert same_loss(tr.loss[-1, 0], rec["train_loss"])
    assert tr.beta_star is not None and np.array_equal(tr.beta_star, P.beta_star)
    meta = tr.runs[0]
    assert (meta["method"], meta["variant"], meta["time"], meta["alpha"], meta["gamma"]) == \
        ("gr", "full", "flow", 0.05, 0.05)
    assert (meta["n"], meta["d"], meta["k"], meta["seed"], meta["depth"], meta["run_id"]) == (N, D, K, 0, 2, None)
    # the path is run_batch's recorded path, every accepted step (fewer than MAX_POINTS here)
    ref = run_batch(P, "gr", gamma=0.05, alpha=0.05, rtol=1e-7, record=True)
    assert tr.info["record_every"] is None and tr.info["thin_every"] == 1
    assert np.array_equal(tr.t[:, 0], ref.trajectory.t[:, 0])
    assert np.array_equal(tr.beta[:, 0], ref.trajectory.beta[:, 0])
    assert np.array_equal(tr.log_c[:, 0], ref.trajectory.log_c[:, 0])


def test_simulate_text_mode_names_the_file(tmp_path, capsys):
    path = tmp_path / "gf.npz"
    code, out, err = cli(capsys, ["simulate", "--n", N, "--d", D, "--k", K, "--alpha", 0.5, "--rtol", 1e-6,
                                  "--save-trajectory", path])
    assert code == 0, err
    points = dln.load_trajectory(path).n_points
    assert f"trajectory        {points} points -> {path}" in out


def _stride(S, max_points):
    """The recording rule of dln.trajectory, written out: the smallest power of two k such that the
    steps 1, k + 1, 2k + 1, ... ≤ S (⌈S/k⌉ of them) are at most max_points."""
    k = 1
    while math.ceil(S / k) > max_points:
        k *= 2
    return k


def test_simulate_discrete_round_trip_and_thinning_rule(tmp_path, capsys):
    """GD for S ≈ 16700 steps: the recorder thins itself to k = 16 (⌈S/8⌉ > 2000 ≥ ⌈S/16⌉) while the
    batch runs, once.  The recorded points must be the states after steps 1, k + 1, 2k + 1, ... of
    the same run recorded at every step."""
    path = tmp_path / "gd.npz"
    lr, max_steps = 0.1, 100_000
    code, out, err = cli(capsys, ["simulate", "--n", N, "--d", D, "--k", K, "--alpha", 0.05, "--time", "discrete",
                                  "--lr", lr, "--max-steps", max_steps, "--json", "--save-trajectory", path])
    assert code == 0, err
    rec = json.loads(out)
    tr = dln.load_trajectory(path)
    S = rec["steps"]
    k = _stride(S, MAX_POINTS)
    assert k == 16 and math.ceil(S / MAX_POINTS) != k  # not the old rule k = ⌈S/2000⌉
    assert tr.info["record_every"] == k
    assert tr.beta[-1, 0].tolist() == rec["beta"] and tr.t[-1, 0] == pytest.approx(S * lr, rel=1e-15)
    assert tr.t[0, 0] == 0.0 and np.all(tr.beta[0, 0] == 0.0)
    assert MAX_POINTS // 2 < tr.n_points <= MAX_POINTS + 2
    # independent: the same GD recorded at every step
    P = dln.make_problem(n=N, d=D, k=K, seed=0)
    ref = iterate(gf(P), initial_state(D, 1, alpha=0.05), lr, max_steps=max_steps, record_every=1)
    assert ref.steps[0] == S
    steps = np.rint(tr.t[1:-1, 0] / lr).astype(int)
    assert np.array_equal(steps, np.arange(1, S + 1, k))
    assert np.array_equal(tr.beta[1:-1, 0], ref.trajectory.beta[steps - 1, 0])
    assert np.array_equal(tr.log_c[1:-1, 0], ref.trajectory.log_c[steps - 1, 0])
    assert same_loss(tr.loss[:, 0], loss_of(P, tr.beta[:, 0]))


@pytest.mark.parametrize("max_points", [50, 1000, 3000])
def test_record_runs_runs_once_and_thins_by_the_rule(max_points):
    """One run of the batch whatever the cap (the recorder needs neither S nor max_steps); a batch
    whose runs stop at different steps: the points are those after steps 1, k + 1, ... of the
    longest run, k by the rule, and a run that stopped repeats its final state."""
    P = dln.make_problem(n=N, d=D, k=K, seed=0)
    calls = []

    def run(rec):
        calls.append(rec)
        return run_batch(P, "gf", alpha=np.array([0.2, 0.3]), time="discrete", lr=0.1, max_steps=10**6, record=rec)

    res = record_runs(run, time="discrete", max_steps=10**6, max_points=max_points)
    assert len(calls) == 1
    S = int(res.steps.max())
    k = _stride(S, max_points)
    assert res.info["record_every"] == k
    ref = run_batch(P, "gf", alpha=np.array([0.2, 0.3]), time="discrete", lr=0.1, max_steps=10**6, record=True)
    assert np.array_equal(ref.steps, res.steps) and ref.trajectory.t.shape[0] == S
    keep = np.arange(0, S, k)
    assert np.array_equal(res.trajectory.beta, ref.trajectory.beta[keep])
    assert np.array_equal(res.trajectory.t, ref.trajectory.t[keep])
    short = int(np.argmin(res.steps))
    after = keep >= res.steps[short]
    assert after.any() and np.all(res.trajectory.beta[after, short] == res.beta[short])


def test_flow_paths_beyond_max_points_keep_every_jth_point_and_the_last(tmp_path):
    P = dln.make_problem(n=N, d=D, k=K, seed=1)
    res = run_batch(P, "gf", alpha=np.array([0.05, 1.0]), rtol=1e-9, record=True)
    Kfull = res.trajectory.t.shape[0]
    m = 20
    assert Kfull > 3 * m
    save_trajectory(tmp_path / "t.npz", res, max_points=m)
    tr = dln.load_trajectory(tmp_path / "t.npz")
    j = math.ceil((Kfull - 1) / (m - 1))
    keep = sorted(set(range(0, Kfull, j)) | {Kfull - 1})
    assert tr.info["thin_every"] == j and tr.n_points == len(keep) <= m + 1
    assert np.array_equal(tr.t, res.trajectory.t[keep])
    assert np.array_equal(tr.beta, res.trajectory.beta[keep])
    assert np.array_equal(tr.beta[-1], res.beta)


def test_diverged_run_is_saved_without_warnings(tmp_path):
    """η = 1e300 diverges at once: the file still holds its initial and final points (filterwarnings=error)."""
    P = dln.make_problem(n=4, d=7, k=2, seed=0)
    res = record_runs(lambda rec: run_batch(P, "gf", alpha=1e-3, time="discrete", lr=1e300, max_steps=20, record=rec),
                      time="discrete", max_steps=20)
    assert res.status[0] == "diverged"
    save_trajectory(tmp_path / "d.npz", res)
    tr = dln.load_trajectory(tmp_path / "d.npz")
    assert tr.status.tolist() == ["diverged"] and tr.t[0, 0] == 0.0


# ---------------------------------------------------------------------------------------------
# dln sweep --save-trajectories
# ---------------------------------------------------------------------------------------------
def _results(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["run_id"]: r for r in csv.DictReader(fh)}


@pytest.mark.parametrize("extra", [[], ["--time", "discrete", "--lr", "0.05", "--batch-size", "3",
                                        "--max-steps", "3000"]], ids=["flow", "sgd"])
def test_sweep_files_match_results_csv(tmp_path, capsys, extra):
    method = ["--method", "gf", "gr", "--gamma", "0.05"] if not extra else ["--method", "gf"]
    code, out, err = cli(capsys, ["sweep", *method, "--alpha", "0.1", "1", "--seeds", "2", "--n", N, "--d", D,
                                  "--k", K, "--rtol", "1e-6", "--chunk-size", "3", *extra, "--workers", "1",
                                  "--quiet", "--save-trajectories", "--out", tmp_path / "s"])
    assert code == 0, err
    rows = _results(tmp_path / "s" / "results.csv")
    folder = tmp_path / "s" / "trajectories"
    files = sorted(os.listdir(folder))
    assert all(f.startswith("chunk-") and f.endswith(".npz") for f in files)
    seen = []
    for f in files:
        tr = dln.load_trajectory(folder / f)
        for i, meta in enumerate(tr.runs):
            row = rows[meta["run_id"]]
            seen.append(meta["run_id"])
            assert int(row["run"]) == meta["run"] and row["status"] == tr.status[i]
            for key in ("method", "variant", "time", "design"):
                assert row[key] == meta[key]
            for key in ("alpha", "gamma", "lr", "noise"):
                assert (row[key] == "" and meta[key] is None) or float(row[key]) == meta[key]
            for key in ("seed", "n", "d", "k", "batch_size"):
                assert (row[key] == "" and meta[key] is None) or int(row[key]) == meta[key]
            assert float(row["l1_norm"]) == pytest.approx(np.abs(tr.beta_final[i]).sum(), rel=1e-14)
            assert same_loss(float(row["train_loss"]), tr.loss[-1, i])
            assert float(row["t"]) == pytest.approx(tr.t[-1, i], rel=1e-14)
            assert np.array_equal(tr.beta[-1, i], tr.beta_final[i])
            gain = -0.5 * (tr.log_c_final[i] - 2 * math.log(meta["alpha"]))  # −ln(α_eff/α), docs/theory.md §1
            assert float(row["gain_mean"]) == pytest.approx(gain.mean(), rel=1e-9, abs=1e-15)
    assert sorted(seen) == sorted(rows)  # every run in exactly one file


# ---------------------------------------------------------------------------------------------
# files of other writers, and the atomic write
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good(tmp_path_factory):
    P = dln.make_problem(n=6, d=8, k=2, seed=0)
    res = run_batch(P, "gf", alpha=0.3, rtol=1e-6, record=True)
    path = tmp_path_factory.mktemp("good") / "good.npz"
    save_trajectory(path, res)
    with np.load(path) as z:
        return path, {k: z[k] for k in z.files}


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


def test_old_sweep_chunk_file_is_a_one_line_error(tmp_path, good, capsys):
    """The format of the earlier --save-trajectories (no 'format', traj_* keys)."""
    _, a = good
    old = _write(tmp_path / "chunk-00000.npz", dict(run_id=np.asarray(["r1"]), run=np.asarray([0]),
                                                    beta=a["beta_final"], traj_t=a["t"], traj_beta=a["beta"]))
    with pytest.raises(DLNError, match=r"chunk-00000\.npz.*no 'format' key"):
        dln.load_trajectory(old)
    code, out, err = cli(capsys, ["plot", old, "--out", tmp_path / "figs"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dln: error: ") and "chunk-00000.npz" in err


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(format=np.asarray("dln-trajectory/9")), r"format 'dln-trajectory/9'"),
    (lambda a: a.pop("loss"), r"missing 'loss'"),
    (lambda a: a.update(t=a["t"][:-1]), r"inconsistent array shapes"),
    (lambda a: a.update(runs=np.asarray("[{")), r"not JSON"),
])
def test_malformed_files_name_the_file(tmp_path, good, change, message):
    a = dict(good[1])
    change(a)
    path = _write(tmp_path / "bad.npz", a)
    with pytest.raises(DLNError, match=f"bad\\.npz.*{message}"):
        dln.load_trajectory(path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DLNError, match=r"'path' parameter of load_trajectory must be an existing file.*nope\.npz"):
        dln.load_trajectory(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DLNError, match=r"text\.npz.*not a readable \.npz"):
        dln.load_trajectory(tmp_path / "text.npz")


def test_write_is_atomic(tmp_path, good, monkeypatch):
    from dln import trajectory

    _, a = good
    target = tmp_path / "t.npz"
    target.write_bytes(b"previous")

    def broken(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(trajectory.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        trajectory.write_trajectory(target, a)
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["t.npz"]


def test_save_trajectory_flag_checks_the_folder_before_running(tmp_path, capsys):
    code, out, err = cli(capsys, ["simulate", "--save-trajectory", tmp_path / "no" / "such" / "t.npz"])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "'--save-trajectory'" in err and "t.npz" in err


def test_import_dln_and_the_parser_stay_light():
    """matplotlib only when a plot is drawn (dln plot), not at `import dln` or `dln --help`."""
    code = "import sys, dln, dln.cli; dln.cli.build_parser(); print([m for m in sys.modules if 'matplotlib' in m])"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dln.__file__))))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"

