"""``dln simulate`` end to end: an independent integration of docs/theory.md's flows, and the CLI contract.

8. The right-hand sides of docs/theory.md §2.1, §7.2, §7.3, §7.5, §8 are written here in (u, v) plus the
   gain accumulator and integrated by scipy's LSODA at rtol 1e-11 until L < 1e-26·L0; β and
   α_eff must agree with ``dln simulate --json`` to 1e-6.
12. The JSON keys of docs/design.md §5, and user errors: exit code 2, one ``dln: error:`` line naming the
   parameter, no traceback.
"""
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from analysis.predict import mirror_argmin
from dln.cli import main
from dln.errors import DLNError
from dln.simulate import run_batch, simulate

from .oracles import rel, sparse_data, sparse_problem

ALPHA, GAMMA, EPS, RHO = 0.1, 0.05, 0.1, 0.05


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    X, y, beta_star = sparse_data(10, 30, 3, seed=0)
    path = tmp_path_factory.mktemp("data") / "p.npz"
    np.savez(path, X=X, y=y, beta_star=beta_star)
    return path, X, y, beta_star


def run_cli(capsys, argv):
    """main(argv) in-process → (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# the reference right-hand side (docs/theory.md), in (u, v, I)
# ---------------------------------------------------------------------------------------------
def reference_rhs(X, y, method, variant):
    n, d = X.shape
    X2, X3 = X * X, X * X * X

    def rhs(t, w):
        u, v = w[:d], w[d:2 * d]
        beta = u * u - v * v
        m = u * u + v * v
        r = X @ beta - y
        g = X.T @ r / n
        if method == "gf":
            du, dv = -2 * g, 2 * g
            gain = g * g if variant == "full" else X2.T @ (r * r) / n
        elif method == "gr" and variant == "full":  # §7.2
            Mmg = X.T @ (X @ (m * g)) / n
            du = -(2 * g + 8 * GAMMA * Mmg + 4 * GAMMA * g * g)
            dv = 2 * g + 8 * GAMMA * Mmg - 4 * GAMMA * g * g
            gain = g * g
        elif method == "gr":  # §7.5: (1/n)Σ[ℓ_i + (γ/2)·4r_i²κ_i]
            kappa = X2 @ m
            lin = X.T @ (r * kappa) / n
            sq = X2.T @ (r * r) / n
            du = -(2 * g + 8 * GAMMA * lin + 4 * GAMMA * sq)
            dv = 2 * g + 8 * GAMMA * lin - 4 * GAMMA * sq
            gain = sq
        else:  # fgr / bgr (signed ε), usam (γ = ε = ρ): §7.3, §7.5, §8
            gam, eps = (RHO, RHO) if method == "usam" else (GAMMA, EPS if method == "fgr" else -EPS)
            k = gam / eps
            if variant == "full":
                bt = beta + 4 * eps * m * g + 4 * eps**2 * beta * g * g
                gt = X.T @ (X @ bt - y) / n
                du = -2 * ((1 - k) * g + k * (1 + 2 * eps * g) * gt)
                dv = 2 * ((1 - k) * g + k * (1 - 2 * eps * g) * gt)
                gain = g * gt
            else:
                kappa = X2 @ m
                rt = r * (1 + 4 * eps * kappa) + 4 * eps**2 * r * r * (X3 @ beta)
                lin = X.T @ rt / n
                quad = X2.T @ (r * rt) / n
                du = -((1 - k) * 2 * g + k * 2 * (lin + 2 * eps * quad))
                dv = (1 - k) * 2 * g + k * 2 * (lin - 2 * eps * quad)
                gain = quad
        return np.concatenate([u * du, v * dv, gain])
    return rhs


def reference_solution(X, y, method, variant):
    n, d = X.shape
    L0 = 0.5 * np.mean(y * y)

    def small_loss(t, w):
        r = X @ (w[:d] ** 2 - w[d:2 * d] ** 2) - y
        return np.log(0.5 * np.mean(r * r)) - np.log(1e-26 * L0)
    small_loss.terminal = True
    small_loss.direction = -1
    w0 = np.concatenate([np.full(2 * d, ALPHA), np.zeros(d)])
    sol = solve_ivp(reference_rhs(X, y, method, variant), (0.0, 1e6), w0, method="LSODA",
                    rtol=1e-11, atol=1e-14, events=small_loss)
    assert sol.status == 1, sol.message  # stopped by the event
    u, v, I = sol.y[:d, -1], sol.y[d:2 * d, -1], sol.y[2 * d:, -1]
    return u * u - v * v, np.sqrt(u * v), I


FLAGS = {"gf": [], "gr": ["--gamma", GAMMA], "fgr": ["--gamma", GAMMA, "--eps", EPS],
         "bgr": ["--gamma", GAMMA, "--eps", EPS], "usam": ["--rho", RHO]}
COEF = {"gf": 0.0, "gr": 8 * GAMMA, "fgr": 8 * GAMMA, "bgr": 8 * GAMMA, "usam": 8 * RHO}
# each case takes 1.5–5 s on the shared 2-core machine: one variant per method runs by default,
# the other with -m slow (the whole default run must stay under ~90 s)
slow = pytest.mark.slow
CASES = [("gf", "full"),
         pytest.param("gr", "full", marks=slow), ("gr", "per-sample"),
         ("fgr", "full"), pytest.param("fgr", "per-sample", marks=slow),
         pytest.param("bgr", "full", marks=slow), ("bgr", "per-sample"),
         ("usam", "full"), pytest.param("usam", "per-sample", marks=slow)]


@pytest.mark.parametrize("method,variant", CASES)
def test_simulate_matches_an_independent_integration(capsys, data_file, method, variant):
    path, X, y, _ = data_file
    beta_ref, alpha_ref, I_ref = reference_solution(X, y, method, variant)
    # the reference's own bookkeeping: α_eff = α·exp(−(coef/2)·∫gain) (docs/theory.md §7)
    np.testing.assert_allclose(alpha_ref, ALPHA * np.exp(-0.5 * COEF[method] * I_ref), rtol=1e-8)
    code, out, err = run_cli(capsys, ["simulate", "--data", path, "--method", method, "--variant", variant,
                                      "--alpha", ALPHA, *FLAGS[method], "--json"])
    assert code == 0, err
    rec = json.loads(out)
    assert rec["status"] == "converged"
    assert rel(rec["beta"], beta_ref) <= 1e-6
    assert rel(rec["alpha_eff"], alpha_ref) <= 1e-6
    if method != "gf":
        assert rel(alpha_ref, np.full(30, ALPHA)) > 1e-3  # the regulariser really acted


# ---------------------------------------------------------------------------------------------
# 12. the CLI contract
# ---------------------------------------------------------------------------------------------
def test_json_keys_and_values_synthetic(capsys):
    code, out, err = run_cli(capsys, ["simulate", "--n", 6, "--d", 12, "--k", 2, "--seed", 3,
                                      "--method", "gr", "--gamma", 0.05, "--alpha", 0.2, "--json"])
    assert code == 0, err
    assert out.count("\n") == 1  # one JSON object on one line
    rec = json.loads(out)
    for key in ("beta", "alpha_eff", "status", "train_loss", "test_error", "prediction"):
        assert key in rec, key
    for key in ("beta", "rel_error", "kkt_residual"):
        assert key in rec["prediction"], key
    beta = np.array(rec["beta"])
    assert beta.shape == (12,) and len(rec["alpha_eff"]) == 12
    assert rec["status"] == "converged"
    from dln.problem import make_problem
    P = make_problem(n=6, d=12, k=2, seed=3)  # the CLI's data: same flags, same seed
    r = P.X @ beta - P.y
    assert rec["train_loss"] == pytest.approx(0.5 * np.mean(r * r), rel=1e-9, abs=1e-30)
    assert rec["test_error"] == pytest.approx(np.sum((beta - P.beta_star) ** 2), rel=1e-12)
    # the prediction is argmin Q_{α_eff} (docs/theory.md §4), computed here from the JSON's α_eff
    alpha_eff = np.array(rec["alpha_eff"])
    assert np.all(alpha_eff < 0.2)  # GR shrinks c
    pred = mirror_argmin(P.X, P.y, log_c=2 * np.log(alpha_eff))
    assert rel(rec["prediction"]["beta"], pred.beta) <= 1e-9
    assert rec["prediction"]["rel_error"] == pytest.approx(rel(beta, rec["prediction"]["beta"]), rel=1e-6, abs=1e-15)
    assert rec["prediction"]["rel_error"] <= 1e-9
    assert rec["prediction"]["kkt_residual"] <= 1e-10


def test_json_without_ground_truth_or_test_set(capsys, tmp_path):
    X, y, _ = sparse_data(5, 10, 2, seed=1)
    path = tmp_path / "bare.npz"
    np.savez(path, X=X, y=y)
    code, out, err = run_cli(capsys, ["simulate", "--data", path, "--alpha", 0.3, "--json"])
    assert code == 0, err
    rec = json.loads(out)
    assert rec.get("test_error") is None
    assert rec["status"] == "converged"
    pred = mirror_argmin(X, y, c=0.09)  # GF: argmin Q_α (docs/theory.md §2.1)
    assert rel(rec["beta"], pred.beta) <= 1e-9
    np.testing.assert_allclose(rec["alpha_eff"], 0.3, rtol=1e-10)


def test_json_discrete_time_with_tilted_prediction(capsys, data_file):
    path, X, y, _ = data_file
    code, out, err = run_cli(capsys, ["simulate", "--data", path, "--time", "discrete", "--lr", 0.3,
                                      "--alpha", 0.1, "--json"])
    assert code == 0, err
    rec = json.loads(out)
    assert rec["status"] == "converged"
    # the CLI's prediction includes the tilt Φ: it must agree with the run (docs/theory.md §5.1)
    assert rec["prediction"]["rel_error"] <= 1e-9
    # and the untilted Q_{α_eff} is measurably different at this step size
    untilted = mirror_argmin(X, y, log_c=2 * np.log(np.array(rec["alpha_eff"])))
    assert rel(rec["beta"], untilted.beta) > 1e-7


def test_human_readable_summary(capsys):
    # --quiet: a loaded machine may take over 2 s, after which a progress line goes to stderr
    code, out, err = run_cli(capsys, ["simulate", "--n", 5, "--d", 10, "--k", 2, "--alpha", 0.3, "--quiet"])
    assert code == 0, err
    assert "status" in out and "converged" in out and "train loss" in out
    assert err == ""


@pytest.mark.parametrize("argv,names", [
    (["--method", "gf", "--gamma", 0.1], ["'gamma'", "gf", "0.1"]),
    (["--method", "gf", "--rho", 0.1], ["'rho'", "gf"]),
    (["--method", "gr", "--gamma", 0.1, "--eps", 0.1], ["'eps'", "gr"]),
    (["--method", "gr"], ["'gamma'", "gr", "given"]),
    (["--method", "fgr", "--gamma", 0.1], ["'eps'", "fgr", "given"]),
    (["--lr", 0.1], ["'lr'", "flow"]),
    (["--batch-size", 2], ["'batch_size'", "flow"]),
    (["--label-noise", 0.1], ["'label_noise'", "flow"]),
    (["--time", "discrete"], ["'lr'", "discrete"]),
    (["--time", "discrete", "--lr", -0.1], ["'lr'", "> 0", "-0.1"]),
    (["--alpha", 0], ["'alpha'", "> 0", "0.0"]),
    (["--alpha", -1], ["'alpha'", "> 0", "-1.0"]),
    (["--alpha", "nan"], ["'alpha'", "finite"]),
    (["--method", "gr", "--gamma", -0.1], ["'gamma'", "gr", ">= 0", "-0.1"]),
    (["--method", "fgr", "--gamma", 0.1, "--eps", 0], ["'eps'", "fgr", "> 0"]),
    (["--method", "bgr", "--gamma", 0.1, "--eps", -0.1], ["'eps'", "bgr", "> 0", "-0.1"]),
    (["--method", "cgr", "--gamma", 0.1, "--eps", 0], ["'eps'", "cgr", "> 0"]),
    (["--method", "usam", "--rho", 0], ["'rho'", "usam", "> 0"]),
    (["--method", "sam", "--rho", -1], ["'rho'", "sam", "> 0"]),
    (["--method", "flood", "--flood-level", -1], ["'flood_level'", "flood", ">= 0"]),
    (["--method", "flood", "--flood-level", 0.1, "--variant", "per-sample"], ["'variant'", "flood"]),
    (["--method", "gf", "--variant", "per-sample"], ["'variant'", "gf", "'full'", "per-sample"]),
    (["--method", "newton"], ["invalid choice", "newton"]),
    (["--alpha", "abc"], ["real number", "abc"]),
    (["--n", 0], ["'n'", ">= 1"]),
    (["--k", 20], ["'k'", "<= d"]),
])
def test_user_errors_exit_2_with_one_line(capsys, argv, names):
    code, out, err = run_cli(capsys, ["simulate", "--n", 5, "--d", 10, "--k", 2, *argv])
    assert code == 2
    assert out == ""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("dln: error: ")
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0], (name, lines[0])


@pytest.mark.parametrize("kind", ["missing", "not_zip", "wrong_keys", "nan", "with_synthetic_flags"])
def test_data_file_errors_exit_2(capsys, tmp_path, kind):
    path = tmp_path / "d.npz"
    extra = []
    if kind == "not_zip":
        path.write_text("hello")
    elif kind == "wrong_keys":
        np.savez(path, A=np.ones((3, 2)), b=np.ones(3))
    elif kind == "nan":
        np.savez(path, X=np.array([[1.0, np.nan], [0.0, 1.0]]), y=np.ones(2))
    elif kind == "with_synthetic_flags":
        np.savez(path, X=np.ones((3, 2)), y=np.ones(3))
        extra = ["--n", 5]
    code, out, err = run_cli(capsys, ["simulate", "--data", path, *extra])
    assert code == 2 and out == ""
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("dln: error: ") and "Traceback" not in err
    expected = {"missing": "'data'", "not_zip": "'data'", "wrong_keys": "'X' and 'y'", "nan": "'X'",
                "with_synthetic_flags": "'--n'"}[kind]
    assert expected in lines[0]


def test_debug_reraises(tmp_path):
    with pytest.raises(DLNError, match=r"'alpha' parameter of gf must be > 0"):
        main(["--debug", "simulate", "--n", "5", "--d", "10", "--k", "2", "--alpha", "-1"])


def test_python_dash_m_dln_reports_user_errors_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "dln", "simulate", "--n", "5", "--d", "10", "--k", "2",
                           "--method", "gf", "--gamma", "0.1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("dln: error: ") and "'gamma'" in lines[0]


# ---------------------------------------------------------------------------------------------
# the Python API behind the CLI
# ---------------------------------------------------------------------------------------------
def test_simulate_records_per_run():
    P = sparse_problem(6, 12, k=2, seed=2)
    recs = simulate(P, "gr", gamma=np.array([0.05, 0.2]), alpha=0.2)
    assert len(recs) == 2
    assert [r["gamma"] for r in recs] == [0.05, 0.2]
    for r in recs:
        assert r["status"] == "converged"
        assert r["prediction_rel_error"] <= 1e-9
        assert r["prediction_theory_rel_error"] <= 1e-8
    # larger γ, larger gain (docs/theory.md §7.2)
    assert recs[1]["gain_mean"] > recs[0]["gain_mean"] > 0


def test_run_batch_validation():
    P = sparse_problem(5, 8, k=2, seed=0)
    with pytest.raises(DLNError, match=r"'alpha' parameter of simulate must be of the same length"):
        run_batch(P, "gr", gamma=np.array([0.1, 0.2]), alpha=np.array([0.1, 0.2, 0.3]))
    with pytest.raises(DLNError, match=r"'time' parameter of simulate must be one of"):
        run_batch(P, "gf", time="implicit")


def test_records_batched_predictions_are_the_per_run_ones():
    """records() solves the predictions of a batch in one batched call; oracle: predict_run per run
    and mirror_argmin per run on the integrated-gain ln c (general state form: the theory prediction
    is a second solve).  A diverged run in the batch has none, its batch-mates keep theirs, and the
    discrete-time rows carry their tilt z0 − 2Φ."""
    from dln.simulate import predict_run, records, rel_error

    P = sparse_problem(6, 12, k=2, seed=2)
    flow_result = run_batch(P, "gr", gamma=np.array([0.05, 0.2, 0.1]), alpha=np.array([0.2, 0.1, 0.5]),
                            state_form="general")
    gd_result = run_batch(P, "gf", time="discrete", lr=np.array([0.05, 50.0, 0.1]), alpha=0.3)
    assert list(gd_result.status) == ["converged", "diverged", "converged"]
    for result in (flow_result, gd_result):
        for i, rec in enumerate(records(result)):
            alone = predict_run(result, i)
            if alone is None:
                assert rec["_prediction"] is None and rec["prediction_rel_error"] is None
                continue
            np.testing.assert_allclose(rec["_prediction"].beta, alone.beta, rtol=1e-12)
            assert rec["prediction_rel_error"] == pytest.approx(rel_error(result.beta[i], alone.beta), abs=1e-13)
            assert rec["kkt_residual"] <= 1e-12
            if result is flow_result:
                theory = mirror_argmin(P.X, P.y, log_c=result.log_c_theory[i], z0=result.z0[i])
                assert rec["prediction_theory_rel_error"] == pytest.approx(rel_error(result.beta[i], theory.beta),
                                                                           abs=1e-13)
    assert np.any(gd_result.tilt[0])  # the tilted prediction is exercised
