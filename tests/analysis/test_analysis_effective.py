"""Effective α, gains and the exact GD bookkeeping (docs/theory.md §1, §4, §5, §6, §7).

The GD oracle is a hand-rolled few-line NumPy loop on (u, v), independent of ``dln``.
"""

import numpy as np
import pytest

from analysis.effective import (
    alpha_eff,
    alpha_eff_from_log,
    gain,
    gain_from_log,
    gd_continuous_log_c,
    gd_log_c_from_steps,
    gd_log_c_increment,
    gd_tilt_from_steps,
    gd_tilt_increment,
    gr_first_order_log_c,
    log_c_from_integral,
    q_even,
    sgd_continuous_log_c,
    tilted_z0,
)
from analysis.predict import mirror_argmin


def run_gd(X, y, eta, alpha, max_steps=100000, loss_tol=1e-28):
    """Canonical GD (docs/theory.md §5.1): u ← u(1 − 2ηg), v ← v(1 + 2ηg). Returns u, v, steps xs."""
    n, d = X.shape
    u = np.full(d, alpha)
    v = np.full(d, alpha)
    xs = []
    for _ in range(max_steps):
        r = X @ (u * u - v * v) - y
        if r @ r / (2 * n) < loss_tol:
            break
        x = 2 * eta * (X.T @ r / n)
        xs.append(x)
        u, v = u * (1 - x), v * (1 + x)
    return u, v, np.array(xs)


@pytest.fixture(scope="module")
def gd_run():
    rng = np.random.default_rng(1)
    n, d, eta, alpha = 5, 12, 0.05, 0.3
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    u, v, xs = run_gd(X, y, eta, alpha)
    r = X @ (u * u - v * v) - y
    assert r @ r / (2 * n) < 1e-28
    return dict(X=X, y=y, eta=eta, alpha=alpha, u=u, v=v, xs=xs)


def test_gd_scale_bookkeeping_is_exact(gd_run):
    u, v, xs, alpha = gd_run["u"], gd_run["v"], gd_run["xs"], gd_run["alpha"]
    np.testing.assert_allclose(np.log(u * v), gd_log_c_from_steps(alpha, xs), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.log(u * v), 2 * np.log(alpha) - np.sum(q_even(xs), axis=0), rtol=0, atol=1e-12)


def test_gd_tilt_bookkeeping_is_exact(gd_run):
    """z_K = −4η Σ g_k − 2Φ_K = −2 Σ x_k − 2Φ_K, and Σ x_k ∈ range(Xᵀ) (docs/theory.md §5.1)."""
    u, v, xs, X = gd_run["u"], gd_run["v"], gd_run["xs"], gd_run["X"]
    Phi = gd_tilt_from_steps(xs)
    z = np.log(u / v)
    np.testing.assert_allclose(z, -2 * xs.sum(axis=0) - 2 * Phi, rtol=0, atol=1e-12)
    _, _, Vt = np.linalg.svd(X)
    null = Vt[X.shape[0]:]
    assert np.linalg.norm(null @ (z + 2 * Phi)) < 1e-12


def test_gd_limit_equals_tilted_prediction(gd_run):
    u, v, xs, X, y, alpha = (gd_run[k] for k in ("u", "v", "xs", "X", "y", "alpha"))
    beta_gd = u * u - v * v
    log_c = gd_log_c_from_steps(alpha, xs)
    Phi = gd_tilt_from_steps(xs)
    res = mirror_argmin(X, y, log_c=log_c, z0=tilted_z0(0.0, Phi))
    assert res.status == "converged"
    err = np.linalg.norm(res.beta - beta_gd) / np.linalg.norm(beta_gd)
    assert err < 1e-9
    # both ingredients matter: dropping the tilt, or the scale change, is visibly wrong
    no_tilt = mirror_argmin(X, y, log_c=log_c).beta
    no_scale = mirror_argmin(X, y, c=alpha**2).beta
    assert np.linalg.norm(no_tilt - beta_gd) / np.linalg.norm(beta_gd) > 1e3 * err
    assert np.linalg.norm(no_scale - beta_gd) / np.linalg.norm(beta_gd) > 1e3 * err


def test_gd_increment_accuracy_and_sign_flip():
    x = np.array([1e-8, -1e-5, 0.3, -0.49, 0.51, 1.2, -3.0])
    inside = np.abs(x) < 1
    ref = np.empty_like(x)
    ref[inside] = np.log1p(-x[inside] ** 2)
    ref[~inside] = np.log(x[~inside] ** 2 - 1)
    np.testing.assert_allclose(gd_log_c_increment(x), ref, rtol=1e-14)
    assert gd_log_c_increment(1e-8) == pytest.approx(-1e-16, rel=1e-12)
    assert gd_log_c_increment(1.0) == -np.inf  # u collapses to 0 exactly
    # q_E > 0 below √2 (α shrinks), < 0 above (α grows) (docs/theory.md §5.3)
    assert q_even(1.4) > 0 > q_even(1.5) and q_even(-1.4) > 0 > q_even(-1.5)
    assert q_even(np.sqrt(2.0)) == pytest.approx(0.0, abs=1e-15)


def test_gd_tilt_increment_series_and_closed_form():
    small = np.array([1e-6, -3e-3, 0.05, 0.0999])
    series = sum(small ** (2 * k + 1) / (2 * k + 1) for k in range(1, 20))
    np.testing.assert_allclose(gd_tilt_increment(small), series, rtol=1e-14)
    mid = np.array([0.1001, 0.3, -0.7, 0.95])
    np.testing.assert_allclose(gd_tilt_increment(mid), np.arctanh(mid) - mid, rtol=1e-13)
    big = np.array([1.5, -2.0, 10.0])
    np.testing.assert_allclose(gd_tilt_increment(big), 0.5 * np.log(np.abs((1 + big) / (1 - big))) - big, rtol=1e-14)
    # continuity across the series/closed-form switch at |x| = 0.1
    edge = np.array([0.1 - 1e-12, 0.1 + 1e-12])
    np.testing.assert_allclose(gd_tilt_increment(edge), np.arctanh(edge) - edge, rtol=1e-12)
    assert gd_tilt_increment(0.0) == 0.0


def test_alpha_eff_and_gain():
    alpha = 0.3
    a = np.array([-2.0, 0.0, 0.5, 40.0])
    u, v = alpha * np.exp(-a), alpha * np.exp(a)
    np.testing.assert_allclose(alpha_eff(u, v), alpha, rtol=1e-14)
    np.testing.assert_allclose(alpha_eff(-u, v), alpha, rtol=1e-14)  # sign flips: |u v|
    np.testing.assert_allclose(alpha_eff_from_log(np.log(u), np.log(v)), alpha, rtol=1e-14)
    assert alpha_eff(1e-200, 1e-200) == pytest.approx(1e-200, rel=1e-14)  # no underflow of u v
    np.testing.assert_allclose(gain(alpha * np.exp(-a), alpha), a, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(gain_from_log(np.log(alpha) - a, np.log(alpha)), a, rtol=1e-14, atol=1e-15)
    assert gain(0.0, alpha) == np.inf


def test_log_c_formulas():
    alpha, gamma, eta = 0.1, 0.05, 0.02
    integral = np.array([0.0, 0.3, 2.0])
    expected = 2 * np.log(alpha) - 8 * gamma * integral
    np.testing.assert_allclose(gr_first_order_log_c(alpha, gamma, integral), expected, rtol=1e-15)
    np.testing.assert_allclose(log_c_from_integral(alpha, 8 * gamma, integral), expected, rtol=1e-15)
    np.testing.assert_allclose(np.exp(gr_first_order_log_c(alpha, gamma, integral) / 2), alpha * np.exp(-4 * gamma * integral))
    # GD at step η ≈ GR at γ = η/2 (docs/theory.md §5.2, §10)
    np.testing.assert_allclose(gd_continuous_log_c(alpha, eta, integral), gr_first_order_log_c(alpha, eta / 2, integral))
    np.testing.assert_allclose(sgd_continuous_log_c(alpha, eta, integral), 2 * np.log(alpha) - 4 * eta * integral)
    np.testing.assert_allclose(tilted_z0(np.ones(3), integral), 1 - 2 * integral)


def test_small_step_gd_matches_continuous_formula():
    """ln c_∞ ≈ ln α² − 4η ∫ g² with the integral taken along the run (t = ηk), error O(η²)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4, 8))
    y = rng.standard_normal(4)
    errors = []
    for eta in (0.02, 0.01):
        u, v, xs = run_gd(X, y, eta, 0.5, loss_tol=1e-20)
        integral = np.sum((xs / (2 * eta)) ** 2, axis=0) * eta
        errors.append(np.max(np.abs(np.log(u * v) - gd_continuous_log_c(0.5, eta, integral))))
    assert errors[1] < errors[0] / 3  # second order: Σ ln(1 − x²) + x² = O(Σ x⁴)
