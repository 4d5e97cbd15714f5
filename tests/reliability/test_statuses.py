"""Reliability: honest statuses.

- Labels outside range(X) (more samples than dimensions with noise, or two equal rows of X with
  different labels): no β interpolates, so the implicit-bias prediction argmin_{Xβ=y} does not exist.
  ``dln predict`` says so (exit 2 naming the data, for every potential; before: exit 0 with a β of
  1e14, or a traceback for ``--potential l1``, or "converged" for l2), and ``simulate`` reports no
  prediction error for such a run (before: "converged" with a prediction error of 0.75 to 1.0: the
  flow rightly converges to a least-squares point, the prediction it was compared with was garbage).
- A failure of the numerics is not reported as the user's mistake, and a sweep does not advise a
  ``--resume`` that would fail the same way.
- The flow at the extremes: every method from α = 1e-200 (``dln.model.WEIGHT_MIN``) to 1e-3
  converges to its prediction; an overshooting step is rolled back, never reported ``diverged``;
  features of scale 1e9 stop at the round-off floor of the loss; an absurd design ends with a status.
"""
from __future__ import annotations

import importlib
import json
import warnings

import numpy as np
import pytest

from reliability_helpers import assert_user_error, call, count
from analysis.predict import interpolation_residual, mirror_argmin
from dln.problem import Problem, make_problem, save_problem
from dln.simulate import simulate

STATUSES = {"converged", "diverged", "max_steps"}


def _infeasible_files(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 5))  # n > d, noisy labels
    np.savez(tmp_path / "tall.npz", X=X, y=rng.standard_normal(10))
    X = rng.standard_normal((6, 20))
    X[1] = X[0]  # two equal samples with different labels
    y = rng.standard_normal(6)
    np.savez(tmp_path / "twins.npz", X=X, y=y)
    Z = np.zeros((3, 5))
    Z[:, 0] = 1.0  # one feature, three different labels
    np.savez(tmp_path / "constant.npz", X=Z, y=np.array([1.0, 2.0, 3.0]))
    return [tmp_path / f"{name}.npz" for name in ("tall", "twins", "constant")]


@pytest.mark.parametrize("potential", ["q", "l1", "l2"])
def test_predict_on_labels_outside_the_range_of_X(tmp_path, potential):
    for path in _infeasible_files(tmp_path):
        line = assert_user_error(*call(["predict", "--data", path, "--potential", potential, "--json"]), "'data'",
                                 "range of X", "least-squares residual")
        assert str(path) in line
        count("statuses: infeasible systems reported")
    assert_user_error(*call(["predict", "--n", "30", "--d", "10", "--noise", "0.1", "--potential", potential]),
                      "'noise'", "range of X")
    count("statuses: infeasible systems reported")


def test_predict_on_feasible_rank_deficient_data(tmp_path):
    """The control: equal rows with equal labels (rank-deficient, y in range(X)) are predicted."""
    P = make_problem(n=6, d=20, k=2, seed=1, n_test=0)
    X, y = P.X.copy(), P.y.copy()
    X[1], y[1] = X[0], y[0]
    np.savez(tmp_path / "twins-ok.npz", X=X, y=y)
    for potential in ("q", "l1", "l2"):
        code, out, err = call(["predict", "--data", tmp_path / "twins-ok.npz", "--potential", potential, "--json"])
        assert code == 0, err
        rec = json.loads(out)
        assert rec["status"] == "converged" and rec["primal_residual"] < 1e-9, rec


def test_simulate_gives_no_prediction_where_none_exists(tmp_path):
    for path in _infeasible_files(tmp_path):
        code, out, err = call(["simulate", "--data", path, "--max-steps", "3000", "--json"])
        assert code == 0, err
        rec = json.loads(out)
        # the flow converges to a least-squares point (a stationary loss), not to an interpolator
        assert rec["status"] == "converged" and rec["train_loss"] > 1e-4
        assert rec["prediction"] is None and rec["prediction_rel_error"] is None, rec["prediction_rel_error"]
        count("statuses: infeasible systems reported")


def test_sweep_rows_on_labels_outside_the_range_of_X(tmp_path):
    path = _infeasible_files(tmp_path)[0]
    code, _, err = call(["sweep", "--data", path, "--alpha", "0.1", "1", "--workers", "1", "--quiet",
                         "--out", tmp_path / "o"])
    assert code == 0, err
    import csv

    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["prediction_rel_error"] for r in rows] == ["", ""] and [r["kkt_residual"] for r in rows] == ["", ""]


def test_mirror_argmin_says_infeasible_at_once():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((8, 4))
    y = rng.standard_normal(8)
    res = mirror_argmin(X, y, c=1e-4)
    assert res.status == "infeasible" and res.iterations == 0 and np.all(np.isfinite(res.beta))
    # the oracle: the distance of y from range(X), from an orthonormal basis (QR) of range(X)
    Q = np.linalg.qr(X)[0]
    assert interpolation_residual(X, y) == pytest.approx(np.linalg.norm(y - Q @ (Q.T @ y)) / np.linalg.norm(y),
                                                         rel=1e-10)
    count("statuses: infeasible systems reported")


# ---------------------------------------------------------------------------------------------
# failures of the numerics
# ---------------------------------------------------------------------------------------------
def test_a_numerical_failure_is_not_the_users_mistake(monkeypatch):
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(importlib.import_module("dln.simulate"), "flow", broken)
    code, out, err = call(["simulate", "--n", "4", "--d", "8", "--k", "2"])
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("dln: internal error: "), (code, err)
    assert "LinAlgError: Singular matrix" in err and "please report it" in err and "--debug" in err
    with pytest.raises(np.linalg.LinAlgError):
        call(["--debug", "simulate", "--n", "4", "--d", "8", "--k", "2"])
    count("statuses: numerical failures reported as such")


def test_a_sweep_does_not_advise_a_resume_that_fails_again(monkeypatch, tmp_path):
    sweep_module = importlib.import_module("dln.sweep")  # (dln.sweep is also the function)
    real = sweep_module.run_task

    def run_task(task, record=False):
        if task["chunk"] == 1:
            raise np.linalg.LinAlgError("Singular matrix")
        return real(task, record)

    monkeypatch.setattr(sweep_module, "run_task", run_task)
    args = ["sweep", "--n", "4", "--d", "8", "--k", "2", "--alpha", "0.5", "1", "--chunk-size", "1", "--max-steps",
            "10", "--workers", "1", "--quiet", "--out", tmp_path / "o"]
    code, out, err = call(args)
    assert code == 1 and err.count("\n") == 1, err
    assert "LinAlgError" in err and "--resume would fail the same way" in err and "rerun with --resume" not in err, err

    def out_of_memory(task, record=False):
        raise MemoryError()

    monkeypatch.setattr(sweep_module, "run_task", out_of_memory)
    code, out, err = call([*args[:-1], tmp_path / "o2"])
    assert code == 1 and "rerun with --resume to retry them" in err, err
    count("statuses: numerical failures reported as such")


# ---------------------------------------------------------------------------------------------
# the flow at the extremes: tiny α (down to dln.model.WEIGHT_MIN), data of scale 1e9
# ---------------------------------------------------------------------------------------------
TINY = make_problem(n=3, d=6, k=1, seed=0, n_test=0)
ALPHAS = np.array([1e-200, 1e-100, 1e-50, 1e-12, 1e-3])
#: every method × variant of the flow but normalized SAM, whose continuous-time flow chatters on the
#: interpolators and ends ``max_steps`` by design (docs/theory.md §8)
FLOW_CASES = [("gf", "full", {}), ("flood", "full", dict(flood_level=0.0)), ("gr", "full", dict(gamma=0.05)),
              ("gr", "per-sample", dict(gamma=0.05))] + \
    [(m, v, dict(gamma=0.05, eps=0.1)) for m in ("fgr", "bgr", "cgr") for v in ("full", "per-sample")] + \
    [("usam", v, dict(rho=0.05)) for v in ("full", "per-sample")]
FAST_CASES = {("gf", "full"), ("fgr", "per-sample"), ("usam", "per-sample")}


def _assert_converged_to_prediction(recs, L0, what):
    for alpha, rec in zip(ALPHAS, recs):
        assert rec["status"] == "converged", (what, alpha, rec["status"], rec["steps"], rec["train_loss"])
        assert rec["train_loss"] <= 1e-20 * L0, (what, alpha, rec["train_loss"])
        # the oracle: argmin φ_c of the run's own c = u⊙v, by analysis.predict (an independent solver)
        assert rec["prediction_rel_error"] < 1e-6, (what, alpha, rec["prediction_rel_error"])


@pytest.mark.parametrize("state_form", ["reduced", "general"])
@pytest.mark.parametrize("method, variant, kw", [pytest.param(*c, marks=() if c[:2] in FAST_CASES else pytest.mark.slow,
                                                              id=f"{c[0]}-{c[1]}") for c in FLOW_CASES])
def test_tiny_alpha_converges_to_its_prediction(method, variant, kw, state_form):
    """Every flow at α from 1e-200 (dln.model.WEIGHT_MIN) to 1e-3 converges to its prediction.

    Before (2026-11): GF ended ``diverged`` with loss inf at α = 1e-200 and 1e-12 in the reduced form,
    at 1e-100 and 1e-12 in the general form; per-sample F-GR and 1-SAM at 1e-100 in the general form
    (loss 1e250, inf).  The cause: the local error was measured as ‖m⊙δz‖/‖m‖, which accepts a step
    that moves z by hundreds on a coordinate of tiny m = u² + v², where u² then overflows; the error
    of β there is m·(e^{|δz|} − 1) (dln.reduced.ReducedSystem.error_parts)."""
    L0 = float(TINY.loss(np.zeros(TINY.d)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recs = simulate(TINY, method, variant=variant, alpha=ALPHAS, state_form=state_form, **kw)
    _assert_converged_to_prediction(recs, L0, (method, variant, state_form))


@pytest.mark.parametrize("state_form", ["reduced", "general"])
def test_per_sample_fgr_at_alpha_1e_100(state_form):
    """The edge case found by the edges helper: per-sample F-GR at α = 1e-100 (n = 6, d = 12) ended
    ``diverged`` at step 8 (loss 3e29) or at max_steps (t ≈ 2e11)."""
    P = make_problem(n=6, d=12, k=2, seed=3)
    rec = simulate(P, "fgr", variant="per-sample", gamma=0.05, eps=0.1, alpha=1e-100, state_form=state_form)[0]
    assert rec["status"] == "converged" and rec["prediction_rel_error"] < 1e-6, (rec["status"], rec["steps"])


def test_an_overshooting_step_is_taken_back(monkeypatch):
    """The safety net of ``flow``: an accepted step whose result diverges, from a state far from
    divergence, is rolled back and retried smaller, so that ``diverged`` comes from the dynamics only.
    Blind the error estimate (every step is accepted, h grows 5× per step): GF, whose loss cannot
    grow, must still converge (without the rollback the three runs end ``diverged`` with loss NaN)."""
    import dln.reduced

    def blind(self, E, *point):
        zero = np.zeros(E.shape[0])
        return zero, zero

    monkeypatch.setattr(dln.reduced.ReducedSystem, "error_parts", blind)
    recs = simulate(TINY, "gf", alpha=np.array([1e-12, 1e-3, 0.1]), state_form="reduced")
    assert [r["status"] for r in recs] == ["converged"] * 3, [(r["status"], r["train_loss"]) for r in recs]
    assert max(r["prediction_rel_error"] for r in recs) < 1e-3  # blind steps: only roughly on the path


@pytest.mark.parametrize("state_form", ["reduced", "general"])
def test_features_of_scale_1e9_converge(state_form):
    """β ~ 1e-9 is computed as u² − v² with u² ~ α² = 0.01: its round-off eps·α² ≈ 2e-18, times
    ‖X‖ ≈ 1e9, floors the residual near 1e-9 and the loss near 1e-16·L(0) (measured: 2.2e-16), far
    above loss_tol·L(0).  Before (2026-11) the reduced form stopped at step 33, t = 2e10, when the
    jittering loss happened to pass the stationarity test, and the general form "converged" at
    step 36 with a prediction error of 37 (β drifting at round-off).  The flow now stops when the loss
    reaches its round-off floor (dln.stopping.loss_floor): converged, *not* by the loss_tol rule, and
    at the prediction to β's own round-off (≈ 2e-8 here)."""
    P0 = make_problem(n=3, d=6, k=1, seed=3, n_test=0)
    P = Problem(P0.X * 1e9, P0.y)
    L0 = float(P.loss(np.zeros(6)))
    rec = simulate(P, "gf", alpha=0.1, max_steps=2000, state_form=state_form)[0]
    assert rec["status"] == "converged", (rec["status"], rec["steps"], rec["train_loss"])
    assert rec["train_loss"] > 1e-24 * L0  # the round-off floor stopped it
    assert rec["prediction_rel_error"] < 1e-6


def test_an_absurd_design_ends_with_a_status():
    """Found by a fuzz of designs with entries in {0, ±1, ±1e±150, ±1e±300, 1e10}.  Any matrix is a
    valid Newton matrix (only convergence speed depends on it): on LinAlgError, the factor of those
    runs should fall back (e.g. to the identity, or a pseudo-inverse), or their step fail (err = inf)."""
    X = np.array([[1e10, -1.0, -1.0, 1e-300], [1e10, -1e-300, 1.0, 2.0]])
    y = np.array([1e-150, -1e-300])
    rec = simulate(Problem(X, y), "usam", rho=0.1, max_steps=100)[0]
    assert rec["status"] in STATUSES
