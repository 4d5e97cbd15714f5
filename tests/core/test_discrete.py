"""dln.discrete and dln.stopping: discrete time as update rules, with statuses checked after the fact.

Oracles:
- the discrete loop as it was before the rewrite, frozen verbatim in ``reference_iterate.py``: the new
  ``iterate``, on its generic path (``discrete.FUSED = False``), must reproduce it bit for bit (statuses, steps, the state and its signs, β, the tilt Φ,
  the gain integral η·Σgain, recorded paths, time averages) for GD, SGD, label noise, flooding, every
  method and variant, depth 3, given sample indices;
- a 10-line NumPy heavy-ball loop on (u, v) written here with torch.optim.SGD's update
  (buf ← μ·buf + ∇_w L, w ← w − η·buf), for :class:`dln.discrete.HeavyBall`;
- the recording rule of dln.trajectory written out here (smallest power-of-two stride leaving at most
  max_points points), against the same run recorded at every step;
- hand-made cases with known answers for ``dln.stopping.status``.
"""
from __future__ import annotations

import numpy as np
import pytest

from dln import discrete, methods
from dln.discrete import HeavyBall, iterate
from dln.errors import DLNError
from dln.model import State, initial_state
from dln.stopping import CONVERGED, DIVERGED, LOG_HUGE, MAX_STEPS, RUNNING, diverged, names, status

from .oracles import random_state, rel, sparse_problem
from .reference_iterate import reference_iterate


@pytest.fixture(scope="module")
def P():
    return sparse_problem(10, 20, k=3, seed=2)


@pytest.fixture
def generic(monkeypatch):
    """The generic steps for every run (the fused GD kernel, tested in test_discrete_fused.py, is
    not bit for bit the old loop)."""
    monkeypatch.setattr(discrete, "FUSED", False)


def _same(ref: dict, res, *, trajectory=True):
    """Bit-for-bit equality of a Result with the reference loop's output (NaN == NaN)."""
    eq = lambda x, y: np.array_equal(x, y, equal_nan=True)  # noqa: E731
    assert list(res.status) == list(ref["status"])
    assert eq(res.steps, ref["steps"]) and eq(res.t, ref["t"])
    for name in ("a", "b", "su", "sv"):
        assert eq(getattr(res.state, name), getattr(ref["state"], name)), name
    assert eq(res.beta, ref["beta"]) and eq(res.loss, ref["loss"])
    assert eq(res.tilt, ref["tilt"]) and eq(res.gain, ref["gain"])
    assert eq(res.log_c0, ref["log_c0"]) and eq(res.z0, ref["z0"])
    if ref["beta_mean"] is not None:
        assert eq(res.beta_mean, ref["beta_mean"])
    if trajectory:
        if ref["trajectory"] is None:
            assert res.trajectory is None
        else:
            T = res.trajectory
            for x, y in zip((T.t, T.beta, T.loss, T.log_c), ref["trajectory"]):
                assert eq(x, y)


def _cases(P):
    L0 = P.loss(np.zeros(P.d))
    idx = np.random.default_rng(0).integers(0, P.n, size=(400, 2))
    return {
        # GD: runs converging at different steps, sign flips (η = 0.7), a run diverging at once
        "gd": (methods.gf(P), 3, np.array([0.1, 0.7, 5.0]), {}),
        "gd-one": (methods.gf(P), 1, 0.3, dict(record_every=5)),
        "gd-record": (methods.gf(P), 3, np.array([0.1, 0.7, 5.0]), dict(record_every=3, average_from=100)),
        "gd-cap": (methods.gf(P), 2, np.array([0.1, 0.3]), dict(max_steps=131)),
        # a larger batch (its per-step sums run as a loop over steps, not ufunc.accumulate)
        "gd-12": (methods.gf(P), 12, np.r_[np.linspace(0.2, 0.8, 10), 3.0, 9.0], dict(max_steps=900, record_every=50)),
        "gd-one-step": (methods.gf(P), 2, np.array([0.1, 0.3]), dict(max_steps=1, record_every=1)),
        "sgd-1": (methods.gf(P), 3, np.array([0.02, 0.05, 0.6]), dict(batch_size=1, seeds=[1, 2, 3], max_steps=1500)),
        "sgd-3": (methods.gf(P), 2, np.array([0.05, 0.1]), dict(batch_size=3, seeds=[4, 5], record_every=7)),
        "sgd-indices": (methods.gf(P), 2, np.array([0.05, 0.1]), dict(sample_indices=idx)),
        "label-noise": (methods.gf(P), 2, np.array([0.02, 0.05]),
                        dict(batch_size=2, label_noise=0.3, seeds=[1, 2], max_steps=700, average_from=300)),
        "label-noise-full": (methods.gf(P), 2, np.array([0.02, 0.05]),
                             dict(label_noise=0.3, seed=7, max_steps=500, average_from=100)),
        "flood": (methods.flood(P, flood_level=np.array([0.0, 1e-3, 1e-2]) * L0), 3, np.array([0.1, 0.1, 0.2]),
                  dict(max_steps=3000)),
        "flood-drift": (methods.flood(P, flood_level=1e-2 * L0), 1, 0.1, dict(max_steps=400, flood_cycle_stop=False)),
        "depth-3": (methods.make("gf", P, D=3), 2, np.array([0.05, 0.5]), dict(max_steps=2000, record_every=5)),
    }


@pytest.mark.parametrize("case", ["gd", "gd-one", "gd-record", "gd-cap", "gd-12", "gd-one-step", "sgd-1", pytest.param("sgd-3", marks=pytest.mark.slow),
                                  "sgd-indices", "label-noise", "label-noise-full", "flood", "flood-drift",
                                  "depth-3"])
def test_iterate_reproduces_the_old_loop_bit_for_bit(generic, P, case):
    direction, B, lr, kw = _cases(P)[case]
    state = initial_state(P.d, B, alpha=0.1)
    ref = reference_iterate(direction, state, lr, **kw)
    res = iterate(direction, state, lr, **kw)
    _same(ref, res)
    if case == "gd":  # the case really has sign flips, and runs stopping at three different steps
        assert np.any(res.state.su < 0) or np.any(res.state.sv < 0)
        assert len(set(res.steps)) == 3


@pytest.mark.parametrize("method,variant", [(m, v) for m in ("gr", "fgr", "bgr", "cgr", "usam", "sam")
                                            for v in ("full", "per-sample")])
def test_every_method_reproduces_the_old_loop_bit_for_bit(generic, P, method, variant):
    hp = dict(gamma=np.array([0.02, 0.05]), eps=0.1, rho=np.array([0.02, 0.05]))
    direction = methods.make(method, P, variant=variant, **{k: hp[k] for k in methods.PARAMS[method]})
    lr = np.array([0.05, 0.3])  # the large step flips signs on this problem
    state = random_state(2, P.d, seed=3)
    ref = reference_iterate(direction, state, lr, max_steps=300, record_every=10)
    _same(ref, iterate(direction, state, lr, max_steps=300, record_every=10))


def test_depth_three_with_negative_initial_signs_reproduces_the_old_loop(generic, P):
    """At odd depth β = u³ − v³ carries the signs: they must flip inside a block, step by step."""
    direction = methods.make("gf", P, D=3)
    state = random_state(3, P.d, seed=5, signs=True)
    lr = np.array([0.02, 0.2, 0.4])
    ref = reference_iterate(direction, state, lr, max_steps=600, record_every=1)
    _same(ref, iterate(direction, state, lr, max_steps=600, record_every=1))


@pytest.mark.parametrize("block", [pytest.param(1, marks=pytest.mark.slow), 5, 64])
def test_results_do_not_depend_on_the_block_length(generic, P, monkeypatch, block):
    """Checking statuses per block after the fact is exact: any block length gives the same bits."""
    direction, B, lr, kw = _cases(P)["gd-record"]
    monkeypatch.setattr(discrete, "MAX_BLOCK", block)
    res = iterate(direction, initial_state(P.d, B, alpha=0.1), lr, **kw)
    monkeypatch.setattr(discrete, "MAX_BLOCK", 3)
    other = iterate(direction, initial_state(P.d, B, alpha=0.1), lr, **kw)
    for x, y in ((res.state.a, other.state.a), (res.tilt, other.tilt), (res.gain, other.gain),
                 (res.trajectory.beta, other.trajectory.beta), (res.steps, other.steps)):
        assert np.array_equal(x, y)


def test_integrate_iterate_is_the_discrete_one():
    from dln import integrate

    assert integrate.iterate is discrete.iterate


# ---------------------------------------------------------------------------------------------
# heavy-ball momentum
# ---------------------------------------------------------------------------------------------
def _heavy_ball(X, y, alpha, eta, mu, steps):
    """torch.optim.SGD(momentum=μ) on (u, v) for L = (1/2n)‖X(u² − v²) − y‖² (buf = ∇ at step 1)."""
    n, d = X.shape
    u, v = np.full(d, alpha), np.full(d, alpha)
    bu, bv = np.zeros(d), np.zeros(d)
    for _ in range(steps):
        g = X.T @ (X @ (u * u - v * v) - y) / n
        bu = mu * bu + 2 * u * g
        bv = mu * bv - 2 * v * g
        u, v = u - eta * bu, v - eta * bv
    return u, v


def test_heavy_ball_with_zero_momentum_is_gd_bit_for_bit(generic, P):
    lr = np.array([0.1, 0.7, 5.0])  # converging, flipping signs, diverging
    gd = iterate(methods.gf(P), initial_state(P.d, 3, alpha=0.1), lr, record_every=4)
    hb = iterate(methods.gf(P), initial_state(P.d, 3, alpha=0.1), lr, record_every=4, rule=HeavyBall(0.0))
    assert list(hb.status) == list(gd.status) and np.array_equal(hb.steps, gd.steps)
    for x, y in ((hb.state.a, gd.state.a), (hb.state.b, gd.state.b), (hb.state.su, gd.state.su),
                 (hb.tilt, gd.tilt), (hb.gain, gd.gain), (hb.trajectory.beta, gd.trajectory.beta)):
        assert np.array_equal(x, y)


def test_heavy_ball_follows_the_torch_update(P):
    """Per-run momenta in one batch, each against its own NumPy heavy-ball loop on (u, v)."""
    mu = np.array([0.0, 0.5, 0.9])
    eta, K = 0.01, 500
    res = iterate(methods.gf(P), initial_state(P.d, 3, alpha=0.1), eta, max_steps=K, rule=HeavyBall(mu))
    assert list(res.status) == ["max_steps"] * 3
    for i in range(3):
        u, v = _heavy_ball(P.X, P.y, 0.1, eta, mu[i], K)
        assert rel(res.state.u[i], u) <= 1e-12 and rel(res.state.v[i], v) <= 1e-12
        np.testing.assert_allclose(res.log_c[i], np.log(np.abs(u * v)), rtol=0, atol=1e-12)
    # momentum matters: μ = 0.9 is far from GD after K steps
    assert rel(res.beta[2], res.beta[0]) > 1e-2


def test_heavy_ball_stops_like_gd_and_batches_like_single_runs(P):
    """A converging and a diverging momentum run in one batch, each equal to its run alone."""
    mu, lr = np.array([0.9, 0.9]), np.array([0.02, 3.0])
    res = iterate(methods.gf(P), initial_state(P.d, 2, alpha=0.1), lr, rule=HeavyBall(mu))
    assert list(res.status) == ["converged", "diverged"]
    for i in range(2):
        one = iterate(methods.gf(P), initial_state(P.d, 1, alpha=0.1), lr[i], rule=HeavyBall(mu[i]))
        assert one.status[0] == res.status[i] and one.steps[0] == res.steps[i]
        assert rel(one.beta[0], res.beta[i]) <= 1e-12
    assert P.loss(res.beta[0]) <= 1e-24 * P.loss(np.zeros(P.d))


@pytest.mark.parametrize("mu,match", [(1.0, r"'momentum' parameter of HeavyBall must be < 1"),
                                      (-0.1, r"'momentum' parameter of HeavyBall must be >= 0"),
                                      (np.nan, r"'momentum' parameter of HeavyBall must be finite")])
def test_heavy_ball_validation(mu, match):
    with pytest.raises(DLNError, match=match):
        HeavyBall(mu)


# ---------------------------------------------------------------------------------------------
# recording with a thinning buffer
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("every,max_points", [(1, 40), (3, 40), (1, 10_000)])
def test_thinned_recording_keeps_the_rule_s_points(P, every, max_points):
    lr = np.array([0.1, 0.3])
    full = iterate(methods.gf(P), initial_state(P.d, 2, alpha=0.1), lr, record_every=1)
    thin = iterate(methods.gf(P), initial_state(P.d, 2, alpha=0.1), lr, record_every=every, max_points=max_points)
    S = int(full.steps.max())
    k = every
    while len(range(0, S, k)) > max_points:  # the rule, written out: stride every·2^j
        k *= 2
    assert thin.info["record_every"] == k
    keep = np.arange(0, S, k)
    assert np.array_equal(thin.trajectory.t, full.trajectory.t[keep])
    assert np.array_equal(thin.trajectory.beta, full.trajectory.beta[keep])
    assert np.array_equal(thin.trajectory.log_c, full.trajectory.log_c[keep])
    assert np.array_equal(thin.state.a, full.state.a)  # recording does not change the run


# ---------------------------------------------------------------------------------------------
# dln.stopping
# ---------------------------------------------------------------------------------------------
def test_status_rules_and_their_order():
    d = 3
    a = np.zeros((5, d))
    a[1, 0] = np.nan                      # run 1: a NaN state, and a loss below the tolerance
    a[3, 2] = LOG_HUGE / 2 + 1            # run 3: u² would overflow
    loss0 = np.ones(5)
    loss = np.array([1e-30, 1e-30, 0.5, 0.5, 2e10])  # run 4: the loss grew 2e10-fold
    steps = np.array([10, 10, 10, 99, 10])
    code = status(loss, loss0, a, a.copy(), steps, max_steps=10, loss_tol=1e-24)
    # converged beats max_steps; diverged beats everything
    assert names(code).tolist() == ["converged", "diverged", "max_steps", "diverged", "diverged"]
    code = status(loss, loss0, a, a.copy(), np.zeros(5, int), max_steps=10, loss_tol=None)
    assert code.tolist() == [RUNNING, DIVERGED, RUNNING, DIVERGED, DIVERGED]  # no convergence by the loss
    # the caller's rules: its own convergence (flooding) and cap (the flow's horizon)
    code = status(np.full(2, 0.5), np.ones(2), np.zeros((2, d)), np.zeros((2, d)), 0, max_steps=10,
                  converged=np.array([True, False]), capped=np.array([True, True]))
    assert code.tolist() == [CONVERGED, MAX_STEPS]


def test_status_of_unevaluated_losses_and_of_blocks():
    """Where the loss was not evaluated (SGD between epochs) only the state is tested; a block of K
    checks of B runs gives, row by row, the statuses of K separate checks."""
    rng = np.random.default_rng(0)
    K, B, d = 6, 4, 5
    a = rng.normal(size=(K, B, d))
    a[2, 1, 0] = np.inf
    loss = rng.uniform(0, 1, size=(K, B))
    loss[4, 2] = np.nan
    loss[5, 3] = 1e-30
    evaluated = np.array([True, True, True, False, False, True])[:, None]
    code = status(loss, np.ones(B), a, a, np.arange(K)[:, None] + 5, max_steps=10, loss_tol=1e-24,
                  evaluated=evaluated)
    for k in range(K):
        row = status(loss[k] if evaluated[k, 0] else np.zeros(B), np.ones(B), a[k], a[k], k + 5, max_steps=10,
                     loss_tol=1e-24 if evaluated[k, 0] else None)
        assert code[k].tolist() == row.tolist()
    assert code[2, 1] == DIVERGED and code[4, 2] == RUNNING and code[5, 3] == CONVERGED
    assert np.all(code[5] != RUNNING)  # step 10 = max_steps


def test_collapse_is_not_divergence():
    a = np.array([[-1e6, 0.0], [-np.inf, 0.0]])
    b = np.zeros((2, 2))
    assert diverged(np.ones(2), np.ones(2), a, b).tolist() == [False, True]


def _status_by_hand(loss, loss0, a, b, steps, max_steps, loss_tol, D, finite, evaluated, converged, capped):
    """The rules of dln.stopping's docstring, one run at a time in plain Python."""
    out = []
    for i in range(len(loss)):
        state = np.concatenate([a[i], b[i]])
        if evaluated[i]:
            L, L0 = loss[i], loss0[i]
        else:
            L, L0 = 0.0, 1.0
        bad = (not finite[i] or not np.isfinite(L) or not L <= 1e10 * max(L0, 1e-300)
               or not np.all(np.isfinite(state)) or not D * np.max(state) <= LOG_HUGE)
        conv = not bad and (converged[i] or (evaluated[i] and loss_tol is not None and loss[i] <= loss_tol * loss0[i]))
        over = not bad and not conv and (steps[i] >= max_steps or capped[i])
        out.append("diverged" if bad else "converged" if conv else "max_steps" if over else "running")
    return out


@pytest.mark.parametrize("seed", range(40))
def test_status_follows_the_rules_on_random_batches(seed):
    """Random batches with NaN, ±inf and huge entries at rates p = 0, 1%, 5% (at p = 0 nothing stops,
    which the whole-array shortcut of dln.stopping decides; the others go through the per-run rules)."""
    rng = np.random.default_rng(seed)
    p = (0.0, 0.01, 0.05)[seed % 3]
    B, d, D = 7, 4, int(rng.choice([2, 3]))
    a, b = rng.normal(size=(B, d)), rng.normal(size=(B, d))
    loss0 = rng.uniform(0.5, 2.0, size=B)
    loss = rng.uniform(0.0, 1.0, size=B)
    rare = lambda: rng.random() < p  # noqa: E731
    for arr in (a, b):
        for i, j in np.ndindex(arr.shape):
            if rare():
                arr[i, j] = rng.choice([np.nan, np.inf, -np.inf, 400.0, -1e300])
    for i in range(B):
        if rare():
            loss[i] = rng.choice([np.nan, np.inf, 1e-30, 1e11])
    finite = rng.random(B) >= p
    evaluated = rng.random(B) > 0.2
    converged, capped = rng.random(B) < p, rng.random(B) < p
    steps = rng.integers(0, 10 if p == 0 else 12, size=B)
    loss_tol = None if rng.random() < 0.3 else 1e-24
    kw = dict(max_steps=10, loss_tol=loss_tol, D=D, finite=finite, evaluated=evaluated, converged=converged,
              capped=capped)
    expected = _status_by_hand(loss, loss0, a, b, steps, 10, loss_tol, D, finite, evaluated, converged, capped)
    assert names(status(loss, loss0, a, b, steps, **kw)).tolist() == expected
    assert p > 0 or expected == ["running"] * B
    stacked = np.stack([a, b], axis=1)  # (B, 2, d) with b None: the same statuses
    assert names(status(loss, loss0, stacked, None, steps, **kw)).tolist() == expected
    assert diverged(loss, loss0, stacked, None, D, finite).tolist() == diverged(loss, loss0, a, b, D, finite).tolist()
