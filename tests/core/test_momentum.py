"""Heavy-ball momentum through the public API (``run_batch(momentum=...)``, ``dln.simulate``, the CLI).

Oracles:
- GD itself: μ = 0 (alone or in a batch with μ > 0) is GD bit for bit;
- the 10-line NumPy heavy-ball loop on (u, v) of tests/core/test_discrete.py (torch.optim.SGD's
  update: buf ← μ·buf + ∇_w L, w ← w − η·buf) for GF, and the same loop on each method's direction
  G(w) = −w⊙(da, db) for the other methods (the loop is independent; the direction is tested against
  finite differences in test_methods.py);
- the gradient-flow limit (``flow`` at rtol 1e-10): heavy ball at step η follows GF at the effective
  time step η/(1 − μ), so its limit approaches GF's at a measured first order in η; at equal effective
  step the error grows like λ = η/(1 − μ)² (docs/theory.md §11).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from dln import methods
from dln.cli import main
from dln.errors import DLNError
from dln.model import State
from dln.problem import make_problem
from dln.simulate import run_batch, simulate

from .oracles import rel
from .test_discrete import _heavy_ball


@pytest.fixture(scope="module")
def P():
    return make_problem(n=10, d=20, k=2, seed=0)


def test_zero_momentum_is_gd_bit_for_bit_also_beside_a_momentum_run(P):
    """A batch (μ = 0, μ = 0.5) steps with the heavy-ball rule: its μ = 0 run equals the GD run of a
    batch of the same size in every array (same size: BLAS may sum a (1, n) and a (2, n) product in
    different orders)."""
    K = 3000
    gd = run_batch(P, "gr", gamma=0.05, time="discrete", lr=np.array([0.05, 0.05]), max_steps=K)
    hb = run_batch(P, "gr", gamma=0.05, time="discrete", lr=0.05, momentum=np.array([0.0, 0.5]), max_steps=K)
    assert list(hb.status) == list(gd.status) == ["max_steps"] * 2
    for x, y in ((hb.beta, gd.beta), (hb.log_c, gd.log_c), (hb.tilt, gd.tilt), (hb.gain, gd.gain)):
        assert np.array_equal(x[0], y[0])
    assert P.loss(hb.beta[1]) < 0.1 * P.loss(hb.beta[0])  # μ = 0.5 really stepped with momentum


def test_gf_with_momentum_follows_the_torch_update(P):
    mu, eta, K = np.array([0.3, 0.9]), 0.01, 400
    res = run_batch(P, "gf", time="discrete", lr=eta, momentum=mu, max_steps=K)
    for i in range(2):
        u, v = _heavy_ball(P.X, P.y, 0.1, eta, mu[i], K)
        assert rel(res.beta[i], u * u - v * v) <= 1e-12
        np.testing.assert_allclose(res.log_c[i], np.log(np.abs(u * v)), rtol=0, atol=1e-12)


def _heavy_ball_on(direction, alpha, eta, mu, steps):
    """torch.optim.SGD(momentum=μ) on (u, v) with the method's direction G(w) = −w⊙(da, db)."""
    d = direction.problem.d
    u, v = np.full((1, d), alpha), np.full((1, d), alpha)
    bu, bv = np.zeros((1, d)), np.zeros((1, d))
    for _ in range(steps):
        R = direction(State(np.log(np.abs(u)), np.log(np.abs(v)), np.sign(u), np.sign(v)))
        bu = mu * bu - u * R.da
        bv = mu * bv - v * R.db
        u, v = u - eta * bu, v - eta * bv
    return u[0], v[0]


HP = {"gr": dict(gamma=0.05), "fgr": dict(gamma=0.05, eps=0.1), "bgr": dict(gamma=0.05, eps=0.1),
      "cgr": dict(gamma=0.05, eps=0.1), "usam": dict(rho=0.05), "sam": dict(rho=0.05), "flood": dict(flood_level=1e-3)}


@pytest.mark.parametrize("method", sorted(HP))
@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_every_method_with_momentum_follows_the_torch_update(P, method, variant):
    if variant != "full" and method not in methods.VARIANT_METHODS:
        pytest.skip("no per-sample variant")
    mu, eta, K = 0.7, 0.02, 150
    res = run_batch(P, method, variant=variant, time="discrete", lr=eta, momentum=mu, max_steps=K,
                    flood_cycle_stop=False, **HP[method])
    assert res.status[0] == "max_steps"
    u, v = _heavy_ball_on(methods.make(method, P, variant=variant, **HP[method]), 0.1, eta, mu, K)
    assert rel(res.beta[0], u * u - v * v) <= 1e-12
    gd = run_batch(P, method, variant=variant, time="discrete", lr=eta, max_steps=K, flood_cycle_stop=False,
                   **HP[method])
    assert rel(res.beta[0], gd.beta[0]) > 1e-3  # the momentum is not lost on the way


def test_limit_approaches_the_gradient_flow_limit_at_first_order(P):
    """At equal effective steps h = η/(1 − μ) = 0.08, 0.04, 0.02 the heavy-ball limit's distance to
    the GF limit falls like h^p with a fitted p ≈ 1, takes the same number of steps as GD at step h
    (within 2 %), and is ~1/(1 − μ) times GD's (λ = h/(1 − μ), docs/theory.md §11)."""
    gf = run_batch(P, "gf", rtol=1e-10)
    assert gf.status[0] == "converged"
    h, mu = np.array([0.08, 0.04, 0.02]), 0.5
    hb = run_batch(P, "gf", time="discrete", lr=h * (1 - mu), momentum=mu)
    gd = run_batch(P, "gf", time="discrete", lr=h)
    assert list(hb.status) == ["converged"] * 3 and list(gd.status) == ["converged"] * 3
    err = np.array([rel(hb.beta[i], gf.beta[0]) for i in range(3)])
    err_gd = np.array([rel(gd.beta[i], gf.beta[0]) for i in range(3)])
    order = np.polyfit(np.log(h), np.log(err), 1)[0]
    assert 0.85 <= order <= 1.15, (order, err)
    assert np.all(np.abs(hb.steps / gd.steps - 1) <= 0.02), (hb.steps, gd.steps)
    assert np.all((1.5 <= err / err_gd) & (err / err_gd <= 3.0)), err / err_gd


def test_records_and_prediction(P):
    rec, = simulate(P, "gf", time="discrete", lr=0.05, momentum=0.5)
    assert rec["momentum"] == 0.5 and rec["status"] == "converged"
    assert rec["_prediction"] is None and rec["prediction_rel_error"] is None  # no closed form: unavailable
    gd, = simulate(P, "gf", time="discrete", lr=0.05)
    assert gd["momentum"] == 0.0 and gd["prediction_rel_error"] < 1e-8
    flow, = simulate(P, "gf", rtol=1e-6)
    assert flow["momentum"] is None


@pytest.mark.parametrize("kw, match", [
    (dict(momentum=0.5), r"^The 'momentum' parameter of simulate must be 0.0 \(or left unset\) with time='flow'"),
    (dict(time="discrete", lr=0.1, momentum=1.0), r"^The 'momentum' parameter of simulate must be < 1.0. Got 1.0"),
    (dict(time="discrete", lr=0.1, momentum=-0.1), r"^The 'momentum' parameter of simulate must be >= 0.0"),
    (dict(time="discrete", lr=0.1, momentum=[[0.1]]), r"^The 'momentum' parameter of simulate must be a scalar"),
])
def test_bad_momentum(P, kw, match):
    with pytest.raises(DLNError, match=match):
        run_batch(P, "gf", **kw)


def test_cli_momentum_zero_is_gd_and_flow_refuses_momentum(capsys):
    base = ["simulate", "--n", "10", "--d", "20", "--k", "2", "--time", "discrete", "--lr", "0.05", "--json"]
    outs = []
    for extra in ([], ["--momentum", "0"], ["--momentum", "0.5"]):
        assert main(base + extra) == 0
        outs.append(json.loads(capsys.readouterr().out))
    gd, hb0, hb = outs
    assert hb0["beta"] == gd["beta"] and hb0["steps"] == gd["steps"] and hb0["momentum"] == gd["momentum"] == 0.0
    assert hb["momentum"] == 0.5 and hb["prediction"] is None and hb["steps"] < gd["steps"]
    assert main(["simulate", "--n", "10", "--d", "20", "--k", "2", "--momentum", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dln: error: The 'momentum' parameter of simulate")


def test_predict_from_a_momentum_run_is_refused(tmp_path, capsys):
    """The tilt of a heavy-ball run is measured, not predicted: ``predict --from-run`` says so (exit 2)
    instead of printing a prediction that is an identity; a GD record of the same data is accepted."""
    base = ["simulate", "--n", "10", "--d", "20", "--k", "2", "--time", "discrete", "--lr", "0.05", "--json"]
    for extra, code in ((["--momentum", "0.5"], 2), ([], 0)):
        assert main(base + extra) == 0
        path = tmp_path / "run.json"
        path.write_text(capsys.readouterr().out)
        assert main(["predict", "--from-run", str(path)]) == code
        err = capsys.readouterr().err
        assert (err.startswith("dln: error: The '--from-run' parameter of predict must be a run without heavy-ball "
                               "momentum") and err.count("\n") == 1) if code else err == ""
