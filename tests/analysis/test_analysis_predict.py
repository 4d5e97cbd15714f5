"""Predictions: mirror_argmin, min-ℓ1, min-ℓ2, weighted Lasso (docs/theory.md §2, §3.1, §9, §15).

Oracles: the KKT conditions computed here from scratch, SLSQP on the primal problem, a
brute-force vertex enumeration for ℓ1, the pseudo-inverse, L-BFGS-B on the Lasso objective.
"""

import itertools

import numpy as np
import pytest
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.potentials import asinh_ratio as analysis_asinh_ratio, bregman, grad_phi, phi
from analysis.predict import (
    interpolation_residual,
    label_noise_lasso_weights,
    min_l1,
    min_l2,
    mirror_argmin,
    mirror_argmin_batch,
    weighted_lasso,
)


def sparse_problem(n=15, d=40, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta_star = np.zeros(d)
    beta_star[:k] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(1.0, 2.0, size=k)
    return X, X @ beta_star, beta_star


def null_space_part(X, v):
    """‖P_null(X) v‖ with an SVD basis (independent of the solver's normal equations)."""
    _, sv, Vt = np.linalg.svd(X)
    rank = int(np.sum(sv > sv[0] * 1e-12))
    N = Vt[rank:]
    return np.linalg.norm(N @ v)


@pytest.mark.parametrize("c", [1e-2, 1.0, 1e2])
def test_mirror_argmin_feasible_and_kkt(c):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((10, 30))
    y = rng.standard_normal(10)
    z0 = rng.normal(0, 0.5, size=30)
    res = mirror_argmin(X, y, c, z0)
    assert res.status == "converged"
    assert np.linalg.norm(X @ res.beta - y) <= 1e-12 * np.linalg.norm(y)
    mirror = np.arcsinh(res.beta / (2 * c)) - z0
    assert null_space_part(X, mirror) <= 1e-12 * np.linalg.norm(mirror)
    assert res.primal_residual <= 1e-12 and res.kkt_residual <= 1e-12
    # the returned dual variable is the multiplier: ∇φ_c(β) − z0 = Xᵀν
    np.testing.assert_allclose(mirror, X.T @ res.nu, rtol=1e-10, atol=1e-10)


def test_mirror_argmin_matches_slsqp():
    rng = np.random.default_rng(4)
    n, d, c = 5, 20, 0.5
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    z0 = rng.normal(0, 0.3, size=d)
    res = mirror_argmin(X, y, c, z0)

    def objective(beta):
        return phi(beta, c, z0=z0)

    def gradient(beta):
        return grad_phi(beta, c) - z0

    x0 = min_l2(X, y)
    ref = scipy.optimize.minimize(
        objective, x0, jac=gradient, method="SLSQP",
        constraints=[{"type": "eq", "fun": lambda b: X @ b - y, "jac": lambda b: X}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert ref.success
    np.testing.assert_allclose(res.beta, ref.x, rtol=0, atol=1e-6 * np.linalg.norm(ref.x))
    assert objective(res.beta) <= objective(ref.x) + 1e-10


def test_small_c_approaches_min_l1():
    X, y, beta_star = sparse_problem()
    beta_l1 = min_l1(X, y)
    l1 = np.abs(beta_l1).sum()
    np.testing.assert_allclose(beta_l1, beta_star, atol=1e-12)  # unique ℓ1 solution here
    excess = [np.abs(mirror_argmin(X, y, c).beta).sum() / l1 - 1 for c in (1e-2, 1e-4, 1e-8, 1e-16)]
    assert all(a > b > 0 for a, b in zip(excess, excess[1:])), excess
    assert excess[-1] < 1e-3  # slow, log-type approach (docs/theory.md §2.2)
    res = mirror_argmin(X, y, 1e-24)
    assert res.status == "converged"
    np.testing.assert_allclose(res.beta, beta_l1, atol=1e-4)


def test_large_c_approaches_min_l2_at_rate_c_squared():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((8, 20))
    y = rng.standard_normal(8)
    beta_l2 = min_l2(X, y)
    err = {c: np.linalg.norm(mirror_argmin(X, y, c).beta - beta_l2) / np.linalg.norm(beta_l2) for c in (10.0, 100.0, 1e6)}
    ratio = err[10.0] / err[100.0]
    assert 70 < ratio < 130, ratio  # error ∝ 1/c² (docs/theory.md §2.2: α⁻⁴)
    assert err[1e6] < 1e-11


def test_bregman_form_general_initialisation():
    """docs/theory.md §3.1: argmin D_φc(β, β0) = mirror_argmin with z0 = arcsinh(β0/(2c))."""
    rng = np.random.default_rng(6)
    n, d = 6, 15
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    u0, v0 = rng.uniform(0.2, 1.5, size=(2, d))
    c = u0 * v0
    beta0 = u0**2 - v0**2
    z0 = np.log(u0 / v0)
    np.testing.assert_allclose(grad_phi(beta0, c), z0, rtol=1e-13, atol=1e-14)
    res = mirror_argmin(X, y, c, z0)
    assert res.status == "converged"
    best = bregman(res.beta, beta0, c)
    _, _, Vt = np.linalg.svd(X)
    N = Vt[n:]
    for _ in range(20):  # every feasible perturbation increases the divergence
        step = N.T @ rng.normal(size=d - n) * 10 ** rng.uniform(-4, 0)
        assert bregman(res.beta + step, beta0, c) > best


@pytest.mark.parametrize("kwargs", [{"c": 1e-24}, {"c": 1e6}, {"log_c": -1000.0}, {"c": 1e-300}])
def test_extreme_scales_converge_without_warnings(kwargs):
    X, y, _ = sparse_problem(seed=1)
    res = mirror_argmin(X, y, **kwargs)
    assert res.status == "converged"
    assert res.primal_residual < 1e-12
    assert np.all(np.isfinite(res.beta))
    if "log_c" not in kwargs:  # at ln c = −1000 off-support β underflows (documented)
        assert res.kkt_residual < 1e-12


@pytest.mark.parametrize("log_c", [-1000.0, -690.0, -300.0, -20.0, 0.0, 13.8])
def test_tiny_and_huge_scales_converge_on_many_problems(log_c):
    """The Armijo test accepts steps whose decrease is below the round-off of β·XᵀΔ: near the
    solution, with coordinates still at scale c, Δ is huge off the support and cancels on it (a
    strict Armijo test stopped 1 of 270 such solves with status 'failed')."""
    for seed in range(10):
        X, y, _ = sparse_problem(seed=seed)
        res = mirror_argmin(X, y, log_c=log_c)
        assert res.status == "converged", (seed, res.status, res.primal_residual, res.iterations)
        assert res.primal_residual < 1e-10  # the stopping test's round-off floor (~1e-11 at ln c = −1000)


@pytest.mark.parametrize("sigma", [1e-300, 1e-150, 1e-20, 1e20, 1e150, 1e300])
@pytest.mark.parametrize("log_c", [-30.0, -5.0, 3.0])
def test_solution_does_not_depend_on_the_scale_of_the_system(sigma, log_c):
    """Xβ = y and (σX)β = σy are the same constraint: same β, dual ν/σ, same relative residual,
    for σ from 1e-300 to 1e300 (the solver equilibrates X; nothing overflows or underflows)."""
    X, y, _ = sparse_problem(n=5, d=12, seed=0)
    ref = mirror_argmin(X, y, log_c=log_c)
    res = mirror_argmin(sigma * X, sigma * y, log_c=log_c)
    assert ref.status == res.status == "converged"
    np.testing.assert_allclose(res.beta, ref.beta, rtol=1e-12, atol=1e-12 * np.abs(ref.beta).max())
    np.testing.assert_allclose(res.nu * sigma, ref.nu, rtol=1e-10, atol=1e-10 * np.abs(ref.nu).max())
    assert res.primal_residual < 1e-12 and res.kkt_residual < 1e-12


@pytest.mark.parametrize("sigma", [1e-300, 1e-200, 1.0, 1e10, 1e200, 1e300])
@pytest.mark.parametrize("log_c", [-20.0, 0.0, 300.0])
def test_infeasible_system_is_never_reported_converged(sigma, log_c):
    """y ∉ range(X): no interpolator exists (ν would diverge and β grow towards e^690); it is
    recognised before any Newton step, at every scale of X (never `inf <= inf`, which once
    reported 'converged'), whatever the Newton iteration would have done."""
    X = sigma * np.array([[10.0, 1.0, -0.25, 2.5], [11.0, 1.1, -0.275, 2.75]])  # rank 1 up to round-off
    y = np.array([-0.4, 0.23])
    res = mirror_argmin(X, y, log_c=log_c)
    assert res.status == "infeasible" and res.iterations == 0
    assert interpolation_residual(X, y) > 0.1
    assert not res.primal_residual <= 1e-6
    assert np.all(np.isfinite(res.beta))


def test_zero_design():
    """X = 0: with y = 0 the minimiser of φ_c is β = 0; with y ≠ 0 nothing interpolates."""
    res = mirror_argmin(np.zeros((2, 3)), np.zeros(2), c=0.1)
    assert res.status == "converged" and np.all(res.beta == 0.0)
    res = mirror_argmin(np.zeros((2, 3)), np.ones(2), c=0.1)
    assert res.status == "infeasible" and res.primal_residual == pytest.approx(1.0)


def test_per_coordinate_c_and_zero_target():
    X, y, _ = sparse_problem(seed=2)
    c = np.geomspace(1e-6, 1e2, X.shape[1])
    res = mirror_argmin(X, y, c)
    assert res.status == "converged" and res.kkt_residual < 1e-12
    res0 = mirror_argmin(X, np.zeros(X.shape[0]), c)
    assert res0.status == "converged" and np.all(res0.beta == 0)


def test_mirror_argmin_reports_infeasible_problem():
    X = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    res = mirror_argmin(X, np.array([1.0, 2.0]), 1.0, max_iter=30)
    assert res.status == "infeasible"
    assert res.primal_residual > 1e-3
    # the distance of y from range(X) = span{(1, 1)}: |(1, 2) − (1.5, 1.5)| / |(1, 2)| (a closed form)
    assert interpolation_residual(X, np.array([1.0, 2.0])) == pytest.approx(np.sqrt(0.5) / np.sqrt(5.0), rel=1e-12)
    # a feasible system with the same rank-deficient X is not "infeasible"
    assert interpolation_residual(X, np.array([3.0, 3.0])) < 1e-15
    assert mirror_argmin(X, np.array([3.0, 3.0]), 1.0).status == "converged"


def test_mirror_argmin_batch_rows_are_the_single_solves():
    """Each row of a batch is the solve of that row alone (oracle: mirror_argmin per row, and the KKT
    conditions from an SVD): rows that converge after different numbers of Newton steps, a tilt,
    ln c = −800, and a row whose starting point is out of range ("failed") share one batch."""
    rng = np.random.default_rng(11)
    n, d = 12, 40
    X = rng.standard_normal((n, d)) * 3.0
    y = X @ np.r_[rng.standard_normal(3), np.zeros(d - 3)]
    log_c = np.stack([np.full(d, -800.0), np.log(rng.uniform(1e-4, 1e-1, d)), np.zeros(d), np.full(d, 2.0),
                      np.full(d, 689.5)])
    z0 = np.zeros_like(log_c)
    z0[1] = rng.normal(0.0, 0.7, d)
    z0[4, 0] = 1.0  # ln c + |z0| > 690: no iteration
    batch = mirror_argmin_batch(X, y, log_c, z0)
    assert [r.status for r in batch] == ["converged"] * 4 + ["failed"]
    assert len({r.iterations for r in batch[:4]}) > 1  # rows stop at different steps of the batch

    def same(got, alone, b):
        assert got.status == alone.status
        if b > 0:  # ln c = −800 walks ~45 damped steps: round-off may move its stop by a step
            assert got.iterations == alone.iterations
        scale = max(np.abs(alone.beta).max(), 1e-300)
        np.testing.assert_allclose(got.beta, alone.beta, rtol=0, atol=1e-12 * scale)

    for b, got in enumerate(batch):
        same(got, mirror_argmin(X, y, log_c=log_c[b], z0=z0[b]), b)
        if got.status == "converged":
            assert np.linalg.norm(X @ got.beta - y) <= 1e-12 * np.linalg.norm(np.abs(X) @ np.abs(got.beta))
        if b in (1, 2, 3):  # the KKT certificate (row 0: β_i underflows, see MirrorResult.kkt_residual)
            mirror = analysis_asinh_ratio(got.beta, log_c[b]) - z0[b]
            assert null_space_part(X, mirror) <= 1e-12 * np.linalg.norm(mirror)
            assert got.kkt_residual <= 1e-12
    # a row's result does not depend on its batch-mates or its position
    perm = [3, 1, 4, 0, 2]
    for b, got in zip(perm, mirror_argmin_batch(X, y, log_c[perm], z0[perm])):
        same(got, batch[b], b)


def test_mirror_argmin_batch_infeasible_and_empty():
    X = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    rows = mirror_argmin_batch(X, np.array([1.0, 2.0]), np.zeros((3, 3)))
    assert [r.status for r in rows] == ["infeasible"] * 3
    assert mirror_argmin_batch(X, np.array([1.0, 2.0]), np.zeros((0, 3))) == []
    with pytest.raises(ValueError, match=r"The 'log_c' parameter of mirror_argmin_batch must have shape \(B, 3\)"):
        mirror_argmin_batch(X, np.array([3.0, 3.0]), np.zeros(3))
    with pytest.raises(ValueError, match=r"The 'z0' parameter of mirror_argmin_batch must have the shape of log_c"):
        mirror_argmin_batch(X, np.array([3.0, 3.0]), np.zeros((2, 3)), np.zeros((1, 3)))


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((np.ones((2, 3)), np.ones(2)), {"c": -1.0}, r"The 'c' parameter of mirror_argmin must be > 0\. Got -1\.0 instead\."),
        ((np.ones(3), np.ones(3)), {"c": 1.0}, r"The 'X' parameter of mirror_argmin must be a 2-D array"),
        ((np.ones((2, 3)), np.ones(3)), {"c": 1.0}, r"The 'y' parameter of mirror_argmin must be a 1-D array of length n = 2"),
        ((np.array([[1.0, np.nan]]), np.ones(1)), {"c": 1.0}, r"The 'X' parameter of mirror_argmin must be finite\. Got nan instead\."),
        ((np.ones((2, 3)), np.ones(2)), {"c": np.ones(4)}, r"The 'c' parameter of mirror_argmin must be a scalar or have shape \(3,\)"),
        ((np.ones((2, 3)), np.ones(2)), {"c": 1.0, "log_c": 0.0}, r"Exactly one of the 'c' and 'log_c'"),
        ((np.ones((2, 3)), np.ones(2)), {"c": np.inf}, r"The 'c' parameter of mirror_argmin must be finite\. Got inf instead\."),
        ((np.ones((2, 3)), np.ones(2)), {"c": 1.0, "z0": np.ones(2)}, r"The 'z0' parameter of mirror_argmin must be a scalar"),
        ((np.ones((2, 3)), np.ones(2)), {"c": 1.0, "tol": 0.0}, r"The 'tol' parameter of mirror_argmin must be > 0"),
        ((np.ones((2, 3)), np.ones(2)), {"c": 1.0, "max_iter": 0}, r"The 'max_iter' parameter of mirror_argmin must be a positive integer"),
    ],
)
def test_mirror_argmin_validation(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mirror_argmin(*args, **kwargs)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    extra=st.integers(0, 6),
    log10_c=st.floats(-6, 3),
    z_scale=st.floats(0, 2),
    seed=st.integers(0, 2**32 - 1),
)
def test_mirror_argmin_property(n, extra, log10_c, z_scale, seed):
    d = min(n + extra, 12)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d)
    z0 = z_scale * rng.standard_normal(d)
    res = mirror_argmin(X, y, 10.0**log10_c, z0)
    assert res.status == "converged"
    assert res.primal_residual <= 1e-9
    assert res.kkt_residual <= 1e-8


# ------------------------------------------------------------------------------------
# min-ℓ1, min-ℓ2
# ------------------------------------------------------------------------------------

def test_min_l1_brute_force():
    rng = np.random.default_rng(7)
    n, d = 3, 7
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    best, best_value = None, np.inf
    for support in itertools.combinations(range(d), n):  # LP optimum is a vertex: |support| = n
        cols = list(support)
        beta = np.zeros(d)
        beta[cols] = np.linalg.solve(X[:, cols], y)
        if np.abs(beta).sum() < best_value:
            best, best_value = beta, np.abs(beta).sum()
    beta = min_l1(X, y)
    assert np.abs(beta).sum() == pytest.approx(best_value, rel=1e-12)
    np.testing.assert_allclose(beta, best, atol=1e-10)
    np.testing.assert_allclose(X @ beta, y, atol=1e-12)


def test_min_l1_sparse_recovery_and_min_l2():
    X, y, beta_star = sparse_problem()
    np.testing.assert_allclose(min_l1(X, y), beta_star, atol=1e-12)
    np.testing.assert_allclose(min_l2(X, y), np.linalg.pinv(X) @ y, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------
# weighted Lasso (docs/theory.md §9)
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("scalar", [True, False])
def test_weighted_lasso_kkt(scalar):
    rng = np.random.default_rng(8)
    n, d = 20, 40
    X = rng.standard_normal((n, d))
    beta_star = np.zeros(d)
    beta_star[:4] = [2.0, -1.5, 1.0, 0.7]
    y = X @ beta_star + 0.1 * rng.standard_normal(n)
    lam = 0.05 if scalar else rng.uniform(0.01, 0.1, size=d)
    beta = weighted_lasso(X, y, lam)
    lam_vec = np.broadcast_to(lam, (d,))
    rho = X.T @ (y - X @ beta) / n
    active = beta != 0
    assert active.sum() >= 3
    np.testing.assert_allclose(rho[active], lam_vec[active] * np.sign(beta[active]), atol=1e-11)
    assert np.all(np.abs(rho[~active]) <= lam_vec[~active] + 1e-11)

    def objective(b):
        return np.sum((X @ b - y) ** 2) / (2 * n) + lam_vec @ np.abs(b)

    best = objective(beta)
    for _ in range(200):  # convex: the minimiser beats every nearby point
        step = rng.standard_normal(d) * 10 ** rng.uniform(-6, -1)
        step[rng.random(d) < 0.5] = 0.0
        assert objective(beta + step) >= best - 1e-15


def test_label_noise_lasso_weights():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((7, 5))
    eta, delta = 0.01, 2.0
    np.testing.assert_allclose(label_noise_lasso_weights(X, eta, delta), eta * delta**2 * np.diag(X.T @ X) / 7, rtol=1e-14)


def test_weighted_lasso_validation():
    with pytest.raises(ValueError, match=r"The 'lam' parameter of weighted_lasso must be finite and >= 0\. Got -1\.0 instead\."):
        weighted_lasso(np.ones((2, 3)), np.ones(2), -1.0)
