"""Conformance with the conventions of the public DLN codes (docs/conventions.md).

Each reference below is an independent NumPy loop written in the other code's own convention, the
way that code writes it (it does not call dln): the u⊙v model of Pesme et al. / Even et al. /
Andriushchenko & Flammarion (``tml-epfl/understanding-sam``, diagonal_linear_nets/diag_nets.py:
GD, SGD, n-SAM, 1-SAM), Azulay et al.'s four-vector model (``shaharazulay/implicit-bias``,
diagonal_linear_networks.py: symmetric shape-s initialization), Woodworth et al.'s w₊² − w₋² with an
unnormalized loss.  dln runs the same problem with the hyper-parameters of :mod:`dln.conventions`
and must follow the same trajectory: β at every step and the final gain −ln(α_eff/α) agree to
≤ 1e-12 relative.
"""
from __future__ import annotations

import numpy as np
import pytest

from dln.conventions import four_vector_shape_init, from_four_vector, from_squares, from_uv, time_factor
from dln.errors import DLNError
from dln.problem import make_problem
from dln.simulate import run_batch

K = 300
TOL = 1e-12


@pytest.fixture(scope="module")
def data():
    P = make_problem(n=10, d=20, k=3, seed=1, n_test=0)
    return P


def _path_error(dln_beta, ref_beta):
    """max over steps of ‖β_dln − β_ref‖/‖β_ref‖ (β after each step; dln's trajectory rows)."""
    num = np.linalg.norm(dln_beta - ref_beta, axis=-1)
    return float(np.max(num / np.linalg.norm(ref_beta, axis=-1)))


def _run(P, kw, steps=K, **extra):
    res = run_batch(P, time="discrete", max_steps=steps, record=True, **kw, **extra)
    assert res.status[0] == "max_steps" and res.steps[0] == steps
    gain = -0.5 * (res.log_c[0] - res.log_c0[0])
    return res.trajectory.beta[:, 0], gain


# ---------------------------------------------------------------------------------------------
# β = u⊙v, u(0) = u0, v(0) = 0, L = (1/2n)‖Xβ − y‖² (A&F's diag_nets.py)
# ---------------------------------------------------------------------------------------------
def uv_gd(X, y, u0, lr, steps):
    n, d = X.shape
    u, v = np.full(d, u0), np.zeros(d)
    path = []
    for _ in range(steps):
        Xerr = X.T @ (X @ (u * v) - y)
        u, v = u - lr * (Xerr * v) / n, v - lr * (Xerr * u) / n
        path.append(u * v)
    return np.array(path), u, v


def uv_sgd(X, y, u0, lr, rows):
    d = X.shape[1]
    u, v = np.full(d, u0), np.zeros(d)
    path = []
    for i in rows:
        Xerr = (X[i] @ (u * v) - y[i]) * X[i]
        u, v = u - lr * Xerr * v, v - lr * Xerr * u
        path.append(u * v)
    return np.array(path), u, v


def uv_n_sam(X, y, u0, lr, rho, steps, normalized=False):
    n, d = X.shape
    u, v = np.full(d, u0), np.zeros(d)
    path = []
    for _ in range(steps):
        Xerr = X.T @ (X @ (u * v) - y)
        gu, gv = Xerr * v / n, Xerr * u / n
        scale = rho / np.sqrt(gu @ gu + gv @ gv) if normalized else rho  # SAM: ρ∇/‖∇‖ over all weights
        us, vs = u + scale * gu, v + scale * gv
        Xerr = X.T @ (X @ (us * vs) - y)
        u, v = u - lr * (Xerr * vs) / n, v - lr * (Xerr * us) / n
        path.append(u * v)
    return np.array(path), u, v


def uv_one_sam(X, y, u0, lr, rho, steps):
    n, d = X.shape
    u, v = np.full(d, u0), np.zeros(d)
    path = []
    for _ in range(steps):
        r = X @ (u * v) - y
        gu, gv = np.zeros(d), np.zeros(d)
        for k in range(n):  # ascent on r_k² (no ½), as the official code
            us, vs = u + 2 * rho * r[k] * X[k] * v, v + 2 * rho * r[k] * X[k] * u
            rk = X[k] @ (us * vs) - y[k]
            gu += rk * vs * X[k] / n
            gv += rk * us * X[k] / n
        u, v = u - lr * gu, v - lr * gv
        path.append(u * v)
    return np.array(path), u, v


def uv_gain(u, v, u0):
    """−ln(α_eff/α) with α_eff² = |u_c v_c| = |u² − v²|/4 and α² = u0²/4 (the rotation u_c = (u + v)/2,
    v_c = (u − v)/2 of docs/theory.md §1.1)."""
    return -0.5 * np.log(np.abs((u + v) * (u - v)) / u0**2)


def assert_gain(gain, ref):
    """≤ 1e-12 relative, except for the reference's own round-off: it forms u − v by cancellation, which
    loses a factor |u/(u − v)| ~ e^{2·gain} (measured: 5e-12 at a gain of 3.6 after 300 SGD steps;
    at 1-SAM ρ_P = 0.1 the float64 loop is 1.5e-11 off a 40-digit run of itself, dln 5e-15)."""
    bound = TOL * np.abs(ref) + 1e-14 * np.sqrt(K) * np.exp(2 * np.abs(ref))
    assert np.all(np.abs(gain - ref) <= bound), np.max(np.abs(gain - ref) / bound)


U0, LR_P = 0.1, 0.2


def test_uv_gd(data):
    P = data
    ref, u, v = uv_gd(P.X, P.y, U0, LR_P, K)
    beta, gain = _run(P, from_uv(u0=U0, lr=LR_P))
    assert _path_error(beta, ref) <= TOL
    assert_gain(gain, uv_gain(u, v, U0))


def test_uv_sgd_with_the_same_sample_sequence(data):
    """SGD with batch 1: dln replays the reference's sample sequence (``sample_indices``)."""
    P = data
    rows = np.random.default_rng(5).integers(P.n, size=K)
    ref, u, v = uv_sgd(P.X, P.y, U0, LR_P, rows)
    beta, gain = _run(P, from_uv(u0=U0, lr=LR_P), sample_indices=rows[:, None])
    assert _path_error(beta, ref) <= TOL
    assert_gain(gain, uv_gain(u, v, U0))


@pytest.mark.parametrize("rho_p", [0.05, 0.3])
def test_uv_n_sam(data, rho_p):
    """n-SAM (ascent w + ρ_P∇L): canonical usam, full batch, ρ = ρ_P/2."""
    P = data
    ref, u, v = uv_n_sam(P.X, P.y, U0, LR_P, rho_p, K)
    kw = from_uv(u0=U0, lr=LR_P, method="usam", rho=rho_p)
    assert kw["rho"] == rho_p / 2
    beta, gain = _run(P, kw)
    assert _path_error(beta, ref) <= TOL
    assert_gain(gain, uv_gain(u, v, U0))


@pytest.mark.parametrize("rho_p", [0.05, 0.1])
def test_uv_one_sam(data, rho_p):
    """1-SAM (per-example ascent ρ_P∇(r_k²), the official code's): canonical usam per-sample, ρ = ρ_P.
    (At ρ_P = 0.2 the reference itself fails: u_c v_c = (u² − v²)/4 collapses below the resolution of
    u and v, u − v = 0 exactly, where dln's log coordinates carry it: docs/theory.md §8.)"""
    P = data
    ref, u, v = uv_one_sam(P.X, P.y, U0, LR_P, rho_p, K)
    kw = from_uv(u0=U0, lr=LR_P, method="usam", variant="per-sample", rho=rho_p)
    assert kw["rho"] == rho_p
    beta, gain = _run(P, kw)
    assert _path_error(beta, ref) <= TOL
    assert_gain(gain, uv_gain(u, v, U0))


def test_uv_normalized_sam(data):
    """Normalized SAM (ascent ρ_P∇/‖∇‖ over all weights): the radius maps to ρ_P/√2, not ρ_P/2.
    100 steps: later, as ‖∇L‖ → 0 and ρ/‖∇L‖ grows, both codes amplify round-off to 1e-3 (measured:
    1e-15 up to step 100, 3e-10 at step 120, 2e-2 at step 160)."""
    P = data
    steps = 100
    ref, u, v = uv_n_sam(P.X, P.y, U0, LR_P, 0.05, steps, normalized=True)
    kw = from_uv(u0=U0, lr=LR_P, method="sam", rho=0.05)
    assert kw["rho"] == pytest.approx(0.05 / np.sqrt(2), rel=1e-15)
    beta, gain = _run(P, kw, steps)
    assert _path_error(beta, ref) <= TOL
    assert_gain(gain, uv_gain(u, v, U0))


def test_uv_loss_without_the_half(data):
    """A loss (1/n)‖r‖² doubles every gradient: η = η_P (= 2·η_P/2)."""
    P = data
    ref, u, v = uv_gd(P.X, P.y, U0, 2 * LR_P / 2, K)  # GD on (1/n)‖r‖² with step η_P/2: gradient ×2
    beta, _ = _run(P, from_uv(u0=U0, lr=LR_P / 2, loss="1/n"))
    assert _path_error(beta, ref) <= TOL


def test_pesme_alpha_is_u0_over_sqrt2():
    """Pesme et al. / Even et al. write u(0) = √2·α (docs/theory.md §1.1): canonical α = α_P/√2, i.e.
    c = α_P²/2; the official SAM code passes u0 itself: canonical α = u0/2."""
    assert from_uv(alpha=0.1)["alpha"] == pytest.approx(0.1 / np.sqrt(2), rel=1e-15)
    assert from_uv(u0=0.1)["alpha"] == 0.05
    assert from_uv(u0=np.sqrt(2) * 0.1)["alpha"] == pytest.approx(from_uv(alpha=0.1)["alpha"], rel=1e-15)
    with pytest.raises(DLNError, match="'u0' parameter of conventions must be given, or alpha"):
        from_uv(u0=0.1, alpha=0.1)
    assert time_factor("uv") == 0.5 and time_factor("squares", loss="sum", n=7) == 14.0


# ---------------------------------------------------------------------------------------------
# Azulay et al.: β = u₊⊙v₊ − u₋⊙v₋, update = gradient of (1/2n)‖r‖²
# ---------------------------------------------------------------------------------------------
def four_vector_gd(X, y, inits, lr, steps):
    up, vp, un, vn = (np.array(w, dtype=float) for w in inits)
    n = X.shape[0]
    path = []
    for _ in range(steps):
        w = up * vp - un * vn
        gxr = X.T @ (-(X @ w - y) / n)  # their grad_r = −(y_pred − y)/n, grad_xr = x·grad_r
        up, vp, un, vn = up + lr * gxr * vp, vp + lr * gxr * up, un - lr * gxr * vn, vn - lr * gxr * un
        path.append(up * vp - un * vn)
    return np.array(path), (up, vp, un, vn)


def four_vector_radii(up, vp, un, vn):
    return 0.5 * np.hypot(up + vp, un - vn), 0.5 * np.hypot(up - vp, un + vn)


@pytest.mark.parametrize("shape", [0.0, 0.5, 0.9, 0.99])
def test_four_vector_shape(data, shape):
    """Symmetric shape-s initialization at scale α_A: canonical α = sqrt(α_A(1 + s²)/(1 − s²)), η = η_A/2."""
    P = data
    alpha_a, lr_a = 0.01, 0.2
    u0, v0 = four_vector_shape_init(alpha_a, shape)
    d = P.d
    ref, final = four_vector_gd(P.X, P.y, (np.full(d, u0), np.full(d, v0), np.full(d, u0), np.full(d, v0)), lr_a, K)
    kw = from_four_vector(alpha=alpha_a, shape=shape, lr=lr_a)
    assert kw["alpha"] == pytest.approx(np.sqrt(alpha_a * (1 + shape**2) / (1 - shape**2)), rel=1e-14)
    beta, gain = _run(P, kw)
    assert _path_error(beta, ref) <= TOL
    U, V = four_vector_radii(*final)
    np.testing.assert_allclose(gain, -0.5 * np.log(U * V / kw["alpha"] ** 2), rtol=TOL, atol=TOL)


def test_four_vector_general_initialization(data):
    """Any positive u₊, v₊, u₋, v₋ (β(0) ≠ 0): canonical u0, v0 per coordinate (docs/theory.md §3.2)."""
    P = data
    rng = np.random.default_rng(3)
    inits = [rng.uniform(0.02, 0.3, P.d) for _ in range(4)]
    ref, final = four_vector_gd(P.X, P.y, inits, 0.2, K)
    kw = from_four_vector(up0=inits[0], vp0=inits[1], un0=inits[2], vn0=inits[3], lr=0.2)
    beta, _ = _run(P, kw)
    assert _path_error(beta, ref) <= TOL


# ---------------------------------------------------------------------------------------------
# Woodworth et al.: β = w₊² − w₋², loss Σ(·)² (unnormalized)
# ---------------------------------------------------------------------------------------------
def test_squares_with_an_unnormalized_loss(data):
    P = data
    alpha, lr_w = 0.1, 0.002
    wp, wn = np.full(P.d, alpha), np.full(P.d, alpha)
    path = []
    for _ in range(K):
        grad_beta = 2 * P.X.T @ (P.X @ (wp**2 - wn**2) - P.y)  # ∇_β Σ r²
        wp, wn = wp - lr_w * 2 * wp * grad_beta, wn + lr_w * 2 * wn * grad_beta
        path.append(wp**2 - wn**2)
    kw = from_squares(alpha=alpha, lr=lr_w, loss="sum", n=P.n)
    assert kw["lr"] == 2 * P.n * lr_w
    beta, gain = _run(P, kw)
    assert _path_error(beta, np.array(path)) <= TOL
    np.testing.assert_allclose(gain, -0.5 * np.log(np.abs(wp * wn) / alpha**2), rtol=TOL, atol=TOL)


@pytest.mark.parametrize("call, match", [
    (lambda: from_uv(lr=0.1), r"'u0' parameter of conventions must be given, or alpha"),
    (lambda: from_uv(u0=0.1, loss="sum"), r"'n' parameter of conventions must be given with loss='sum'"),
    (lambda: from_uv(u0=0.1, loss="mean"), r"'loss' parameter of conventions must be one of"),
    (lambda: from_uv(u0=0.1, method="gf", rho=0.1), r"'rho' parameter of conventions must be left unset"),
    (lambda: from_uv(u0=0.1, method="usam", variant="per-sample", rho=0.1, example_loss="r"),
     r"'example_loss' parameter of conventions must be one of r2, r2/2"),
    (lambda: from_four_vector(alpha=0.1), r"'alpha' parameter of conventions must be given with shape"),
    (lambda: from_four_vector(alpha=0.1, shape=1.0), r"'shape' parameter of conventions must be < 1"),
    (lambda: from_four_vector(up0=[1.0], vp0=[1.0], un0=[1.0], vn0=[-1.0]),
     r"'up0' parameter of conventions must be such that both canonical weights are > 0"),
])
def test_conventions_validation(call, match):
    with pytest.raises(DLNError, match=match):
        call()


def test_example_loss_and_loss_scaling_of_the_radii():
    """Per-example ascent on r_k²/2 is half the official code's radius; a loss scale s multiplies η, γ, ε
    and the n-SAM radius, divides the flooding level, and leaves the normalized radius alone."""
    assert from_uv(u0=1, method="usam", variant="per-sample", rho=0.2, example_loss="r2/2")["rho"] == 0.1
    kw = from_uv(u0=1, lr=0.1, method="fgr", gamma=0.2, eps=0.4, loss="1/n")
    assert (kw["lr"], kw["gamma"], kw["eps"]) == (0.1, 0.2, 0.4)
    assert from_uv(u0=1, method="usam", rho=0.2, loss="1/n")["rho"] == 0.2
    assert from_uv(u0=1, method="flood", flood_level=0.02, loss="1/n")["flood_level"] == 0.01
    assert from_uv(u0=1, method="sam", rho=0.2, loss="sum", n=9)["rho"] == pytest.approx(0.2 / np.sqrt(2))
    assert from_squares(alpha=0.3, method="usam", variant="per-sample", rho=0.2, example_loss="r2")["rho"] == 0.4
