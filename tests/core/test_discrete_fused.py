"""The fused GD kernel of dln.discrete (gradient flow at depth 2, the GD rule, the full batch).

Oracles:
- the generic path of ``iterate`` (``discrete.FUSED = False``: the rates of dln.methods, the GD rule,
  ln|f| step by step), itself bit for bit the frozen old loop (test_discrete.py), on a seeded grid
  of α ∈ {1e-200, 1e-12, 0.1, 2} with step sizes that converge, flip signs (|2ηg| > 1), collapse
  coordinates (ln|u| far below the float64 range), stop at max_steps and diverge: one run, each
  α's runs as a batch, and all of them in one batch of 130;
- a plain NumPy GD loop on (u, v) written here, with the tilt of docs/theory.md §5.1 accumulated
  by its closed form Σ[½ ln|(1 + x)/(1 − x)| − x], x = 2ηg, and the gain η·Σ g².

The two paths round differently (the kernel forms g from c·r with c = 2η/n, and f = 1 ± 2ηg as
one product), so they agree to round-off, not bit for bit.  Statuses, step counts and signs are
equal; β, ln|u⊙v|, the gain and averages agree to 1e-12 relative (measured ≤ 7e-14); the tilt
Φ = Σ_k (term of step k), whose terms each carry a rounding of 1 ± x (about 2^-52 absolute), to
1e-12 relative plus 4K·2^-52 absolute after K steps (measured ≤ 1.6K·2^-52); the last state of a
diverged run, on its way to overflow, to 1e-10 (measured ≤ 5e-12); recorded mid-run points of
the oscillating runs to 1e-11 (measured ≤ 1.1e-12).  Runs whose dynamics amplify round-off
(edge-of-stability oscillation, e.g. η = 0.5, 0.7 at α = 1e-12 on this problem: a 1-ulp change
of α moves the generic path's own β by 1e-4 … 0.6) are left out of the grid: there no two
roundings of the same run agree.
"""
from __future__ import annotations

import numpy as np
import pytest

from dln import discrete, methods
from dln.discrete import HeavyBall, iterate
from dln.model import initial_state

from .oracles import sparse_problem

EPS = np.finfo(float).eps
#: Step sizes per α on ``P`` whose runs do not amplify round-off (see the module docstring), with
#: the statuses they reach within MAX_STEPS: converged, sign flips, max_steps, diverged.
STEPS = {
    1e-200: [0.3, 0.003, 0.1, 1.2, 2.0, 5.0],
    1e-12: [0.003, 0.1, 0.3, 1.2, 2.0, 5.0],
    0.1: [0.003, 0.1, 0.5, 0.7, 1.2, 5.0],
    2.0: [0.003, 0.03, 0.5, 5.0],
}
MAX_STEPS = 2000


@pytest.fixture(scope="module")
def P():
    return sparse_problem(10, 20, k=3, seed=2)


def _rel(x, ref):
    """Per-run relative difference ‖x − ref‖/‖ref‖ along the last axis (0 where both vanish)."""
    num = np.linalg.norm(np.asarray(x) - ref, axis=-1)
    den = np.linalg.norm(ref, axis=-1)
    return np.where(num == 0, 0.0, num / np.where(den > 0, den, 1.0))


def _both(monkeypatch, direction, state, lr, **kw):
    """The same call on the fused path and on the generic path."""
    monkeypatch.setattr(discrete, "FUSED", True)
    fused = iterate(direction, state, lr, **kw)
    monkeypatch.setattr(discrete, "FUSED", False)
    generic = iterate(direction, state, lr, **kw)
    monkeypatch.setattr(discrete, "FUSED", True)
    return fused, generic


def _agree(fused, generic):
    assert list(fused.status) == list(generic.status)
    assert np.array_equal(fused.steps, generic.steps)
    assert np.array_equal(fused.state.su, generic.state.su) and np.array_equal(fused.state.sv, generic.state.sv)
    # a diverged run's last state is on its way to overflow, whose growth amplifies the rounding of
    # each factor: 1e-10 there (measured up to 5e-12), 1e-12 elsewhere
    tol = np.where(generic.status == "diverged", 1e-10, 1e-12)
    assert np.all(_rel(fused.beta, generic.beta) <= tol)
    assert np.all(_rel(fused.log_c, generic.log_c) <= tol)
    assert np.all(_rel(fused.gain, generic.gain) <= tol)
    scale = np.abs(generic.tilt).max(axis=1)
    assert np.all(np.abs(fused.tilt - generic.tilt) <= (tol * scale + 4 * generic.steps * EPS)[:, None])
    if generic.beta_mean is not None:
        assert np.all(_rel(fused.beta_mean, generic.beta_mean) <= tol)
    if generic.trajectory is not None:
        T, G = fused.trajectory, generic.trajectory
        assert np.array_equal(T.t, G.t)
        # (mid-run points of the oscillating, sign-flipping runs: measured up to 1.1e-12)
        assert np.all(_rel(T.beta, G.beta) <= 1e-11) and np.all(_rel(T.log_c, G.log_c) <= 1e-11)


@pytest.mark.parametrize("alpha", sorted(STEPS))
def test_fused_gd_agrees_with_the_generic_path(P, monkeypatch, alpha):
    """Each α with its step sizes, one run and a batch: every regime of the grid."""
    lr = np.array(STEPS[alpha])
    kw = dict(max_steps=MAX_STEPS, record_every=7, average_from=50)
    for B in (1, len(lr)):
        fused, generic = _both(monkeypatch, methods.gf(P), initial_state(P.d, B, alpha=alpha), lr[:B], **kw)
        _agree(fused, generic)
    assert "diverged" in generic.status  # the grid really has the regimes it claims
    if alpha != 2.0:
        assert np.any(generic.state.su < 0) or np.any(generic.state.sv < 0)
    if alpha == 1e-200:  # collapsed coordinates: u = e^a underflows to 0 in float64
        assert generic.state.a.min() < -746 and "converged" in generic.status


def test_fused_gd_agrees_with_the_generic_path_on_a_large_batch(P, monkeypatch):
    """B = 130 runs of every (α, η) of the grid in one batch: blocks of a few steps, many rewinds."""
    pairs = [(a, eta) for a in sorted(STEPS) for eta in STEPS[a]]
    alpha, lr = (np.array(x) for x in zip(*(pairs * 6)[:130]))
    fused, generic = _both(monkeypatch, methods.gf(P), initial_state(P.d, 130, alpha=alpha), lr,
                           max_steps=MAX_STEPS, record_every=50, average_from=50)
    assert len(set(generic.status)) == 3 and len(set(generic.steps)) > 10
    _agree(fused, generic)


def test_fused_per_sample_gain_and_runs_stopping_inside_blocks(P, monkeypatch):
    """gf(variant='per-sample') records (1/n)Σ_i x_i² r_i²; runs stop at many different steps, so
    blocks are rewound (the kernel re-syncs the weights from the log-domain path)."""
    lr = np.geomspace(0.02, 0.2, 9)
    fused, generic = _both(monkeypatch, methods.gf(P, variant="per-sample"), initial_state(P.d, 9, alpha=0.5),
                           lr, max_steps=MAX_STEPS, record_every=3, loss_tol=1e-20)
    assert len(set(generic.steps)) == 9 and set(generic.status) == {"converged"}
    _agree(fused, generic)


@pytest.mark.parametrize("block", [1, 3, 64])
def test_fused_results_do_not_depend_on_the_block_length_beyond_round_off(P, monkeypatch, block):
    lr = np.array([0.1, 0.7, 5.0])
    kw = dict(max_steps=MAX_STEPS, record_every=3, average_from=100)
    monkeypatch.setattr(discrete, "MAX_BLOCK", block)
    res = iterate(methods.gf(P), initial_state(P.d, 3, alpha=0.1), lr, **kw)
    monkeypatch.setattr(discrete, "MAX_BLOCK", 5)
    other = iterate(methods.gf(P), initial_state(P.d, 3, alpha=0.1), lr, **kw)
    _agree(res, other)


def _plain_gd(X, y, alpha, eta, steps):
    """GD on (u, v) with the §5.1 bookkeeping: Φ = Σ[½ ln|(1 + x)/(1 − x)| − x], x = 2ηg; gain η·Σ g²."""
    n, d = X.shape
    u, v = np.full(d, alpha), np.full(d, alpha)
    tilt, gain = np.zeros(d), np.zeros(d)
    for _ in range(steps):
        g = X.T @ (X @ (u * u - v * v) - y) / n
        x = 2.0 * eta * g
        tilt += 0.5 * np.log(np.abs((1.0 + x) / (1.0 - x))) - x
        gain += eta * g * g
        u, v = u * (1.0 - x), v * (1.0 + x)
    return u, v, tilt, gain


@pytest.mark.parametrize("eta", [0.05, 0.7])  # 0.7: signs flip (|2ηg| > 1 at the first steps)
def test_fused_gd_follows_a_plain_numpy_loop(P, eta):
    K = 400
    res = iterate(methods.gf(P), initial_state(P.d, 1, alpha=0.1), eta, max_steps=K)
    assert res.status[0] == "max_steps"
    u, v, tilt, gain = _plain_gd(P.X, P.y, 0.1, eta, K)
    # (η = 0.7: factors 1 ± x near 0 at the flips amplify the rounding; measured 1.3e-12)
    tol = 1e-12 if eta < 0.5 else 1e-11
    assert _rel(res.beta[0], u * u - v * v) <= tol
    assert _rel(res.log_c[0], np.log(np.abs(u * v))) <= tol
    assert np.array_equal(res.state.su[0], np.sign(u)) and np.array_equal(res.state.sv[0], np.sign(v))
    assert np.all(np.abs(res.tilt[0] - tilt) <= tol * np.abs(tilt).max() + 4 * K * EPS)
    assert _rel(res.gain[0], gain) <= tol
    if eta == 0.7:
        assert np.any(u < 0) or np.any(v < 0)


def test_progress_sees_every_step_once_on_both_paths(P, monkeypatch):
    calls = {}
    for fused in (True, False):
        monkeypatch.setattr(discrete, "FUSED", fused)
        seen = []
        iterate(methods.gf(P), initial_state(P.d, 3, alpha=0.1), np.array([0.1, 0.7, 5.0]), max_steps=300,
                progress=lambda k, m, B: seen.append((k, m, B)))
        calls[fused] = seen
    for seen in calls.values():  # every step once, in order (step 300 is evaluated: it may converge)
        assert [k for k, _, _ in seen] == list(range(301)) and {B for _, _, B in seen} == {3}
        running = [m for _, m, _ in seen]  # (a block's steps are reported before its check)
        assert running == sorted(running, reverse=True) and running[0] == 3 and running[-1] == 2


def test_the_kernel_runs_exactly_where_it_applies(P, monkeypatch):
    """GF, D = 2, the GD rule, the full batch: fused; SGD, label noise, momentum, D = 3, other
    methods and stacks: generic."""
    used = []
    block = discrete._GFKernel.block
    monkeypatch.setattr(discrete._GFKernel, "block", lambda self, *a: used.append(1) or block(self, *a))
    state = initial_state(P.d, 2, alpha=0.1)
    lr = np.array([0.05, 0.1])

    def fused(direction, **kw):
        used.clear()
        iterate(direction, state, lr, max_steps=20, **kw)
        return bool(used)

    assert fused(methods.gf(P)) and fused(methods.gf(P, variant="per-sample"))
    assert not fused(methods.gf(P), batch_size=3, seeds=[1, 2])
    assert not fused(methods.gf(P), label_noise=0.1)
    assert not fused(methods.gf(P), rule=HeavyBall(0.5))
    assert not fused(methods.make("gf", P, D=3))
    assert not fused(methods.gr(P, gamma=0.01))
    assert not fused(methods.flood(P, flood_level=1e-3))
    assert not fused(methods.stack([(methods.gf(P), 1), (methods.gr(P, gamma=0.01), 1)]))
    monkeypatch.setattr(discrete, "FUSED", False)
    assert not fused(methods.gf(P))
