"""Runs that stop: discrete flooding in its 2-cycle, flooding and normalized SAM in continuous time.

Until 2026-11 ``dln simulate --method flood --flood-level 0.01 --time discrete --lr 0.05`` took 10⁶
steps (4 min) to end ``max_steps``, and the flows of normalized SAM and flooding chattered on their
discontinuity (sign flips of ∇L/‖∇L‖ or of L − b) until 20,000 attempted steps.

Oracles: docs/theory.md §7.9 (in the 2-cycle, two steps move the weights by −η²H∇L + O(η³), with
(H∇L)_u = 4u⊙g² + 8u⊙M(m⊙g), (H∇L)_v = 4v⊙g² − 8v⊙M(m⊙g), §7.1, written out here); the Filippov
solution of ẇ = −sign(L − b)∇L, which is gradient flow until L = b and then stays on {L = b}.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from dln.integrate import flow, iterate
from dln.model import initial_state
from dln.problem import make_problem
from dln.simulate import run_batch
from dln import methods

LEVEL = 0.01


@pytest.fixture(scope="module")
def default_problem():
    return make_problem(n_test=0)  # the CLI's default problem: n = 40, d = 100, k = 5


def _hvp(P, u, v):
    """(H∇L)_u, (H∇L)_v at (u, v) (docs/theory.md §7.1)."""
    beta, m = u * u - v * v, u * u + v * v
    g = P.X.T @ (P.X @ beta - P.y) / P.n
    Mmg = P.X.T @ (P.X @ (m * g)) / P.n
    return 4 * u * g * g + 8 * u * Mmg, 4 * v * g * g - 8 * v * Mmg


@pytest.mark.parametrize("eta", [0.02, 0.05, 0.1])
def test_discrete_flooding_settles_in_its_two_cycle(default_problem, eta):
    """The brief's run stops within a few hundred steps (was: 10⁶ steps, max_steps), ``converged``, in
    the 2-cycle: the next steps keep alternating around b, and two steps move (u, v) by −η²H∇L to
    relative O(η) (measured 0.11·η)."""
    P = default_problem
    res = run_batch(P, "flood", flood_level=LEVEL, alpha=0.1, time="discrete", lr=eta)
    assert res.status[0] == "converged" and res.steps[0] < 1000
    more = iterate(res.direction, res.state, eta, max_steps=20, record_every=1, flood_cycle_stop=False)
    losses = np.concatenate([res.loss, more.trajectory.loss[:, 0]])
    side = np.sign(losses - LEVEL)
    # alternates around the level (a slow beat slips one step now and then: two descents in a row)
    assert np.count_nonzero(side[1:] != side[:-1]) >= 17
    assert np.all(np.abs(losses - LEVEL) <= np.abs(np.diff(losses)).max())  # inside the oscillation band
    two = iterate(res.direction, res.state, eta, max_steps=2, flood_cycle_stop=False)
    u0, v0 = res.state.u[0], res.state.v[0]
    hu, hv = _hvp(P, u0, v0)
    err = np.hypot(np.linalg.norm(two.state.u[0] - u0 + eta**2 * hu), np.linalg.norm(two.state.v[0] - v0 + eta**2 * hv))
    assert err <= 0.3 * eta * eta**2 * np.hypot(np.linalg.norm(hu), np.linalg.norm(hv))


def test_discrete_flooding_can_follow_its_drift(default_problem):
    """``flood_cycle_stop=False`` keeps the old behaviour: the run follows the slow implicit-GR drift
    along the level set to max_steps (figure 6 studies it)."""
    res = run_batch(default_problem, "flood", flood_level=LEVEL, alpha=0.1, time="discrete", lr=0.05,
                    max_steps=400, flood_cycle_stop=False)
    assert res.status[0] == "max_steps" and res.steps[0] == 400


def test_flow_flooding_stops_on_the_level(default_problem):
    """In continuous time flooding is gradient flow until L = b, where the Filippov solution stays: the
    run ends ``converged`` on the level, at the GF state of the same time."""
    P = default_problem
    t0 = time.monotonic()
    res = run_batch(P, "flood", flood_level=np.array([LEVEL, 0.1]), alpha=0.1, max_steps=5000)
    assert time.monotonic() - t0 < 20
    assert list(res.status) == ["converged", "converged"]
    np.testing.assert_allclose(res.loss, [LEVEL, 0.1], rtol=1e-5)
    for i in range(2):
        gf = flow(methods.gf(P), initial_state(P.d, 1, alpha=0.1), t_max=res.t[i], max_steps=5000)
        assert np.linalg.norm(gf.beta[0] - res.beta[i]) <= 3e-5 * np.linalg.norm(gf.beta[0])  # the path accuracy of flow (z: 300·rtol)


def test_flow_normalized_sam_stops_in_seconds(default_problem):
    """Normalized SAM's flow reaches the interpolators, where ρ∇L/‖∇L‖ flips direction and the step
    size collapses (it chattered to 20,000 attempted steps, 3.5 min): it now stops with ``max_steps``
    once the time no longer advances, keeping its state on the interpolators."""
    P = default_problem
    t0 = time.monotonic()
    res = run_batch(P, "sam", rho=0.05, alpha=0.1)
    assert time.monotonic() - t0 < 60
    # the reduced-state W-method reaches the interpolators and stops there by the loss or
    # stationarity rule (converged); the old SDIRK stalled (max_steps)
    assert res.status[0] in ("max_steps", "converged") and res.steps[0] < 2000
    assert res.loss[0] < 1e-12 * P.loss(np.zeros(P.d))


def test_flow_cap_counts_accepted_steps(default_problem):
    """``max_steps`` caps the steps the result reports (accepted ones); rejected ones are separate."""
    res = run_batch(default_problem, "sam", rho=np.array([0.05, 0.2]), alpha=0.1, max_steps=37)
    assert list(res.steps) == [37, 37] and list(res.status) == ["max_steps", "max_steps"]
    assert np.all(res.rejected >= 0)


def test_the_same_stops_through_simulate_sweep_and_the_estimator():
    """The rules live in the integrators: ``dln.simulate``, ``dln.sweep`` and the estimator report the
    same status and step count for discrete flooding, flow flooding and flow normalized SAM."""
    import dln
    from dln.estimator import DiagonalLinearNetwork
    from dln.simulate import simulate

    P = make_problem(n=10, d=20, k=2, seed=4, n_test=0)
    cases = [dict(method="flood", flood_level=0.02, time="discrete", lr=0.05),
             dict(method="flood", flood_level=0.02), dict(method="sam", rho=0.05)]
    for kw in cases:
        rec = simulate(P, alpha=0.1, **kw)[0]
        swept = dln.sweep(data=P, workers=1, alpha=[0.1], **{k: ([v] if k != "method" else v) for k, v in kw.items()})[0]
        est = DiagonalLinearNetwork(alpha=0.1, **kw).fit(P.X, P.y)
        assert rec["status"] == swept["status"] == est.status_, kw
        assert rec["steps"] == swept["steps"] == est.n_iter_, kw
        assert rec["status"] in (("max_steps", "converged") if kw["method"] == "sam" else ("converged",))


# ---------------------------------------------------------------------------------------------
# the flow's round-off floor of the loss, and its step-size controller
# ---------------------------------------------------------------------------------------------
def test_loss_floor_bounds_the_loss_of_an_exact_interpolator_under_round_off():
    """The oracle: β* with y = Xβ* exactly (in extended precision), represented by log coordinates
    perturbed at the level of their round-off (ε·scale, random signs); the loss of the represented β
    computed in float64 must not exceed :func:`dln.stopping.loss_floor`, and the floor must not be
    loose by more than a few orders of magnitude (it decides when a run stops)."""
    from dln.stopping import loss_floor

    rng = np.random.default_rng(5)
    n, d, B = 8, 30, 200
    X = rng.standard_normal((n, d)) * 1e6
    a = rng.normal(-3.0, 2.0, (B, d))
    b = rng.normal(-3.0, 2.0, (B, d))
    eps = np.finfo(float).eps
    beta_exact = np.exp(2 * a[0].astype(np.longdouble)) - np.exp(2 * b[0].astype(np.longdouble))
    y = np.asarray(X.astype(np.longdouble) @ beta_exact, dtype=np.float64)
    scale = np.abs(2 * a[0]) + np.abs(2 * b[0])
    A = 2 * a[0] + eps * scale * rng.choice([-1.0, 1.0], (B, d))
    Bv = 2 * b[0] + eps * scale * rng.choice([-1.0, 1.0], (B, d))
    beta = np.exp(A) - np.exp(Bv)
    loss = 0.5 * np.mean((beta @ X.T - y) ** 2, axis=1)
    floor = loss_floor(X, y, np.exp(A) + np.exp(Bv), np.broadcast_to(scale, (B, d)))
    assert np.all(loss <= floor)
    assert np.median(floor / loss) < 1e4


def test_step_size_controller():
    """Kept iff err ≤ 1; a rejected step always shrinks h, by at least 10% and at most 10×; a kept
    step changes h by a factor in [0.2, 5] that decreases with err; a failed step (inf, NaN) is
    rejected and retried at h/4 (the rules of the elementary controller, Hairer–Nørsett–Wanner §II.4)."""
    from dln.stepsize import Controller

    c = Controller(3)
    err = np.array([0.0, 1e-12, 0.01, 0.5, 1.0, 1.0 + 1e-12, 2.0, 1e6, np.inf, np.nan])
    h = np.full(err.size, 2.0)
    accept, h_new = c.propose(err, h)
    assert list(accept) == [True] * 5 + [False] * 5
    assert np.all(np.isfinite(h_new))
    np.testing.assert_allclose(h_new[:2], 10.0)                       # capped growth 5×
    np.testing.assert_allclose(h_new[2], 2.0 * 0.9 * 0.01 ** (-1 / 3))  # the optimal step, safety 0.9
    assert np.all(np.diff(h_new[:5]) <= 0) and np.all(h_new[:5] >= 0.4 - 1e-15)
    assert np.all(h_new[5:8] <= 0.9 * 2.0 + 1e-15) and np.all(h_new[5:8] >= 0.2 - 1e-15)
    np.testing.assert_allclose(h_new[8:], 0.5)
