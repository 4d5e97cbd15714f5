"""Closed-form implicit-bias predictions as convex programs (docs/theory.md §2, §3.1, §9, §15).

- :func:`mirror_argmin`: argmin_{Xβ=y} φ_c(β) − ⟨z0, β⟩ by damped Newton on the n-dimensional
  dual, entirely in the log domain (any c with ln c + |z0| < 690, e.g. 1e-300 … 1e299, or
  ``log_c`` down to −1000 and below).
- :func:`min_l1` (α → 0 limit, LP), :func:`min_l2` (α → ∞ limit).
- :func:`weighted_lasso` and :func:`label_noise_lasso_weights` (label-noise SGD, §9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from analysis.potentials import asinh_ratio

_EPS = float(np.finfo(float).eps)
# Exponents above this are rejected by the line search before exponentiating (e^690·d stays
# finite for any realistic d), so no trial point can overflow.
_MAX_EXPONENT = 690.0
# Largest change of any exponent a = Xᵀν + z0 attempted in one step: keeps the first trial of
# a far-away Newton step (tiny c) sensible instead of backtracking from e^{10^20}.
_MAX_EXPONENT_STEP = 64.0
# The round-off stopping floor is accepted only up to this relative level.
_MAX_FLOOR = 1e-6
# y is "not in range(X)" when its least-squares residual exceeds this fraction of ‖y‖.
INFEASIBLE = 1e-6


@dataclass
class MirrorResult:
    """Result of :func:`mirror_argmin`.

    Attributes
    ----------
    beta : ndarray, shape (d,)
        ``β = 2c ⊙ sinh(Xᵀν + z0)``; satisfies the stationarity condition by construction.
    nu : ndarray, shape (n,)
        Dual variable.
    primal_residual : float
        ``‖Xβ − y‖ / ‖y‖`` (absolute ``‖Xβ‖`` if y = 0). Its attainable floor is about
        eps·‖|X||β|‖/‖y‖, which is large only when the tilt makes β huge in null(X) (e.g.
        c = 1e6 with |z0| ~ 5 gives |β| ~ 2c sinh|z0| ~ 1e8).
    kkt_residual : float
        Relative distance of the tilted mirror map from the row space:
        ``‖P_null(X)(arcsinh(β/(2c)) − z0)‖ / max(‖arcsinh(β/(2c)) − z0‖, 1e-300)``,
        with arcsinh(β/(2c)) recomputed from the returned β (docs/theory.md §15 "Certificate").
        It is ~1e-15 at a solution, except where β_i underflows (ln c + |a_i| < −745, only
        possible for ln c < −700): there β_i = 0 cannot carry its mirror coordinate.
    status : str
        ``"converged"`` (residual test met), ``"max_iter"``, ``"failed"`` (line search
        or linear algebra broke down, or ‖Xβ − y‖ overflowed, before convergence), or
        ``"infeasible"``: y is not in range(X) (its least-squares residual exceeds
        1e-6·‖y‖, :func:`interpolation_residual`), so no β interpolates and the problem has
        no solution; β is then the starting point 2c⊙sinh(z0) and no iteration is made.
    iterations : int
        Newton iterations performed.
    """

    beta: np.ndarray
    nu: np.ndarray
    primal_residual: float
    kkt_residual: float
    status: str
    iterations: int


# --------------------------------------------------------------------------------------
# validation (public boundary)
# --------------------------------------------------------------------------------------

def _fmt(value):
    return repr(float(value))


def _as_matrix(X, who):
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"The 'X' parameter of {who} must be a 2-D array. Got shape {X.shape} instead.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"The 'X' parameter of {who} must be non-empty. Got shape {X.shape} instead.")
    if not np.all(np.isfinite(X)):
        bad = X[~np.isfinite(X)].flat[0]
        raise ValueError(f"The 'X' parameter of {who} must be finite. Got {_fmt(bad)} instead.")
    return X


def _as_target(y, n, who):
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(
            f"The 'y' parameter of {who} must be a 1-D array of length n = {n} (rows of X). "
            f"Got shape {y.shape} instead."
        )
    if not np.all(np.isfinite(y)):
        bad = y[~np.isfinite(y)].flat[0]
        raise ValueError(f"The 'y' parameter of {who} must be finite. Got {_fmt(bad)} instead.")
    return y


def _as_coordinate_vector(value, name, d, who, *, positive=False):
    arr = np.asarray(value, dtype=float)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != d):
        raise ValueError(
            f"The '{name}' parameter of {who} must be a scalar or have shape ({d},). "
            f"Got shape {arr.shape} instead."
        )
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].flat[0]
        raise ValueError(f"The '{name}' parameter of {who} must be finite. Got {_fmt(bad)} instead.")
    if positive and not np.all(arr > 0):
        bad = arr[~(arr > 0)].flat[0]
        raise ValueError(f"The '{name}' parameter of {who} must be > 0. Got {_fmt(bad)} instead.")
    return np.broadcast_to(arr, (d,)).astype(float)


# --------------------------------------------------------------------------------------
# log-domain hyperbolic functions (docs/theory.md §13 item 9, §15)
# --------------------------------------------------------------------------------------

def _two_c_sinh(a, log_c):
    """2c·sinh(a) = sign(a)·exp(ln c + |a|)·(1 − e^{−2|a|})."""
    abs_a = np.abs(a)
    return np.sign(a) * np.exp(log_c + abs_a) * -np.expm1(-2.0 * abs_a)


def _log_two_c_cosh(a, log_c):
    """ln(2c·cosh(a)) = ln c + |a| + ln(1 + e^{−2|a|}) (Hessian weights m = 2c cosh a)."""
    abs_a = np.abs(a)
    return log_c + abs_a + np.log1p(np.exp(-2.0 * abs_a))


def _dual_increment(a, h, t, log_c, ty_step):
    """D(ν + tΔ) − D(ν) for D(ν) = Σ 2c cosh(Xᵀν + z0) − νᵀy, with a = Xᵀν + z0, h = XᵀΔ.

    Uses cosh(a + th) − cosh(a) = 2 sinh(a + th/2)·sinh(th/2), every factor in the log
    domain, so the increment is computed without forming D (which may overflow) and
    without the cancellation of a difference of two large values. Returns (increment,
    round-off scale of the increment); +inf if a trial exponent is too large.
    """
    b = a + 0.5 * t * h
    s = 0.5 * t * h
    abs_b, abs_s = np.abs(b), np.abs(s)
    exponent = log_c + abs_b + abs_s
    if exponent.max() > _MAX_EXPONENT:
        return np.inf, 0.0
    terms = (np.sign(b) * np.sign(s)) * np.exp(exponent) * np.expm1(-2.0 * abs_b) * np.expm1(-2.0 * abs_s)
    increment = terms.sum() - ty_step
    noise = _EPS * (np.abs(terms).sum() + abs(ty_step)) * 8.0
    return increment, noise


def _norm(v) -> float:
    """Euclidean norm without overflow or underflow of the squares (BLAS nrm2 scales as it goes):
    np.linalg.norm of (1e200, 1e200) is inf and of (1e-200, 1e-200) is 0."""
    return float(scipy.linalg.norm(v, check_finite=False))


def _null_space_residual(X, v):
    """‖P_null(X) v‖ = ‖v − Xᵀ(XXᵀ)⁻¹Xv‖ (normal equations plus one refinement step; lstsq
    if XXᵀ is singular). O(n²d), like one Newton iteration; a QR of Xᵀ would cost ~10×.
    mirror_argmin passes its equilibrated X (max|X| = 1), so XXᵀ cannot overflow."""
    G = X @ X.T
    try:
        factor = scipy.linalg.cho_factor(G, check_finite=False)
        coef = scipy.linalg.cho_solve(factor, X @ v, check_finite=False)
        perp = v - X.T @ coef
        coef = coef + scipy.linalg.cho_solve(factor, X @ perp, check_finite=False)
    except np.linalg.LinAlgError:
        coef = np.linalg.lstsq(X.T, v, rcond=None)[0]
    return _norm(v - X.T @ coef)


def _interpolation_residual(X, y, y_norm) -> float:
    """min_β ‖Xβ − y‖ / ‖y‖ (0 for y = 0): round-off when y ∈ range(X), else the relative distance of
    y from range(X).  With full row rank (XXᵀ positive definite) β = Xᵀ(XXᵀ)⁻¹y interpolates and
    one Cholesky decides; otherwise a least-squares solve (SVD) measures the distance.  X has
    max|X| = 1 here (equilibrated by the callers), so XXᵀ cannot overflow."""
    if y_norm == 0.0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            factor = scipy.linalg.cho_factor(X @ X.T, check_finite=False)
            w = scipy.linalg.cho_solve(factor, y, check_finite=False)
            res = _norm(X @ (X.T @ w) - y) / y_norm
            if np.isfinite(res) and res <= INFEASIBLE:
                return res
        except np.linalg.LinAlgError:
            pass
        beta = scipy.linalg.lstsq(X, y, check_finite=False)[0]
        res = _norm(X @ beta - y) / y_norm
    return res if np.isfinite(res) else np.inf


def interpolation_residual(X, y) -> float:
    """Relative least-squares residual min_β ‖Xβ − y‖ / ‖y‖: about 1e-16 when some β interpolates
    (y ∈ range(X)), the relative distance of y from range(X) otherwise (e.g. n > d with noisy
    labels, or two equal rows of X with different labels).  Above :data:`INFEASIBLE` (1e-6) the
    implicit-bias problems argmin_{Xβ=y} (docs/theory.md §2, §15) have no solution."""
    who = "interpolation_residual"
    X = _as_matrix(X, who)
    y = _as_target(y, X.shape[0], who)
    sigma = float(np.max(np.abs(X)))
    if sigma > 0.0:
        with np.errstate(over="ignore"):
            X, y = X / sigma, y / sigma
    with np.errstate(over="ignore"):
        y_norm = _norm(y)
    if not np.isfinite(y_norm):
        return np.inf
    return _interpolation_residual(X, y, y_norm)


def _newton_direction(X, a, log_c, grad):
    """Newton direction up to a positive factor: returns (Δ̃, s) with the Newton step e^{−s}Δ̃.

    The Hessian X diag(w) Xᵀ, w = 2c cosh a, is formed as e^{s}·(Ã Ãᵀ) with s = max ln w and
    Ã = X·exp((ln w − s)/2), so its entries neither underflow (ln c = −1000) nor overflow
    (mirror_argmin passes its equilibrated X, max|X| = 1). Directions whose curvature is below
    round-off (μ = eps·tr H̃: coordinates still at the tiny scale c while others are O(1)) get the
    curvature μ instead of a round-off value: the step there is large (then capped by the line
    search) rather than zero, as in exact arithmetic. Cholesky of H̃ + μI; if even that fails, an
    eigen-decomposition with eigenvalues clipped at μ.
    """
    log_w = _log_two_c_cosh(a, log_c)
    s = float(log_w.max())
    A = X * np.exp(0.5 * (log_w - s))
    H = A @ A.T
    mu = _EPS * float(np.trace(H))
    try:
        factor = scipy.linalg.cho_factor(H + mu * np.eye(H.shape[0]), check_finite=False)
        delta = scipy.linalg.cho_solve(factor, -grad, check_finite=False)
        if np.all(np.isfinite(delta)):
            return delta, s
    except np.linalg.LinAlgError:
        pass
    if not (np.all(np.isfinite(H)) and mu > 0.0):
        return None, s
    eigval, eigvec = np.linalg.eigh(H)
    with np.errstate(over="ignore", invalid="ignore"):  # a residual near 1e300: checked below
        delta = -eigvec @ ((eigvec.T @ grad) / np.maximum(eigval, mu))
    return (delta if np.all(np.isfinite(delta)) else None), s


def mirror_argmin(X, y, c=None, z0=None, *, log_c=None, tol=1e-13, max_iter=200):
    """Minimise the tilted hyperbolic-entropy potential over the interpolating set.

    ``β* = argmin_{Xβ = y}  φ_c(β) − ⟨z0, β⟩``,
    ``φ_c(β) = Σ_i [β_i arcsinh(β_i/(2c_i)) − sqrt(β_i² + 4c_i²) + 2c_i]`` (docs/theory.md §1, §15).

    KKT: ``β = 2c ⊙ sinh(Xᵀν + z0)`` and ``Xβ = y``. The dual
    ``D(ν) = Σ_i 2c_i cosh((Xᵀν + z0)_i) − νᵀy`` (convex, n unknowns) has gradient
    ``Xβ(ν) − y`` and Hessian ``X diag(2c cosh(Xᵀν + z0)) Xᵀ``. Damped Newton from ν = 0 with
    Armijo backtracking on D; every hyperbolic function is evaluated in the log domain
    (``2c sinh a = sign(a) e^{ln c + |a|}(1 − e^{−2|a|})``) and D only through stable
    increments, so nothing overflows for any c. Cost per iteration O(n²d + n³).

    Uses (§15): Woodworth c = α²; general init c = u0⊙v0, z0 = ln(u0/v0); GD/SGD exact
    c = exp(ln c_∞), z0 = −2Φ (:func:`analysis.effective.tilted_z0`).

    Parameters
    ----------
    X : array_like, shape (n, d)
    y : array_like, shape (n,)
    c : float or array_like of shape (d,), optional
        Scale c_i > 0 (c = α² for u0 = v0 = α). Give either ``c`` or ``log_c``.
    z0 : float or array_like of shape (d,), optional
        Tilt (default 0).
    log_c : float or array_like of shape (d,), optional
        ln c, for scales outside the float64 range (e.g. −1000).
    tol : float
        Stop when ``‖Xβ − y‖ ≤ tol·max(‖y‖, ‖|X||β|‖)``, or when it is below the round-off
        floor ``4√d·eps·‖|X|(|β| + m⊙(|X|ᵀ|ν| + |z0|))‖`` of evaluating Xβ(ν) − y
        (m = 2c cosh(Xᵀν + z0) = dβ/da amplifies the rounding of a = Xᵀν + z0, which cancels
        when z0 is large and β/c small), capped at 1e-6·max(‖y‖, ‖|X||β|‖).
    max_iter : int
        Maximum Newton iterations.

    Returns
    -------
    MirrorResult
        Never raises on non-convergence; see ``status``.

    Raises
    ------
    ValueError
        On malformed inputs (non-2-D or non-finite X, wrong length y, c ≤ 0, ...).
    """
    who = "mirror_argmin"
    X = _as_matrix(X, who)
    n, d = X.shape
    y = _as_target(y, n, who)
    if (c is None) == (log_c is None):
        raise ValueError(f"Exactly one of the 'c' and 'log_c' parameters of {who} must be given.")
    if log_c is None:
        log_c = np.log(_as_coordinate_vector(c, "c", d, who, positive=True))
    else:
        log_c = _as_coordinate_vector(log_c, "log_c", d, who)
    z0 = np.zeros(d) if z0 is None else _as_coordinate_vector(z0, "z0", d, who)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"The 'tol' parameter of {who} must be > 0. Got {_fmt(tol)} instead.")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"The 'max_iter' parameter of {who} must be a positive integer. Got {max_iter!r} instead.")

    # Equilibrate: Xβ = y ⇔ (X/σ)β = y/σ with σ = max|X|, and the dual of the scaled system is
    # ν̂ = σν, so the iteration never meets the scale of X (1e±300); β is unchanged.
    X_in, y_in = X, y
    sigma = float(np.max(np.abs(X)))
    if sigma > 0.0:
        with np.errstate(over="ignore"):  # y/σ beyond float64 is caught below
            X, y = X / sigma, y / sigma
    abs_X = np.abs(X)
    with np.errstate(over="ignore"):
        y_norm = _norm(y)
    round_off = 4.0 * np.sqrt(d) * _EPS

    nu = np.zeros(n)
    a = z0.copy()
    status = "max_iter"
    iterations = 0
    if np.max(log_c + np.abs(a)) > _MAX_EXPONENT or not np.isfinite(y_norm):
        status = "failed"  # the starting point itself is out of range, or y/max|X| overflows
        beta = np.zeros(d)
    else:
        beta = _two_c_sinh(a, log_c)
        if _interpolation_residual(X, y, y_norm) > INFEASIBLE:
            status = "infeasible"  # the dual is unbounded: Newton would chase ν to infinity
    while status == "max_iter":
        # β may grow towards e^690 when no interpolator exists (ν diverges): the residual and its
        # scales may then overflow, which ends the iteration as "failed" (never inf <= inf).
        with np.errstate(over="ignore", invalid="ignore"):
            grad = X @ beta - y
            res = _norm(grad)
            # Round-off floor of Xβ − y: the products X·β, and β's sensitivity m = 2c cosh(a) to
            # the rounding of a = Xᵀν + z0 (which cancels when z0 is large and β/c small).
            m = np.exp(_log_two_c_cosh(a, log_c))
            a_scale = abs_X.T @ np.abs(nu) + np.abs(z0)
            scale = max(y_norm, _norm(abs_X @ np.abs(beta)))
            floor = round_off * _norm(abs_X @ (np.abs(beta) + m * a_scale))
        if not (np.isfinite(res) and np.isfinite(scale) and np.isfinite(floor)):
            status = "failed"
            break
        # A floor above 1e-6 relative means ν itself has blown up (e.g. an infeasible system,
        # where ν diverges along null(Xᵀ)): that is not convergence.
        floor = min(floor, _MAX_FLOOR * scale)
        if res <= max(tol * scale, floor):
            status = "converged"
            break
        if iterations >= max_iter:
            break
        direction, s = _newton_direction(X, a, log_c, grad)
        if direction is None:
            status = "failed"
            break
        with np.errstate(over="ignore", invalid="ignore"):
            # These overflow only far outside the representable range (no interpolator with
            # |β| < e^690, where ν diverges); that ends the iteration as "failed".
            h = X.T @ direction
            slope = float(grad @ direction)  # < 0: −gradᵀH̃⁻¹grad
            ty = float(direction @ y)
        h_max = float(np.max(np.abs(h)))
        if not (0.0 < h_max < np.inf and np.isfinite(slope) and np.isfinite(ty)):
            status = "failed"
            break
        # The full Newton step is e^{−s}·direction; never change an exponent by more than
        # _MAX_EXPONENT_STEP in one trial. Computed in logs: e^{−s} may overflow.
        tau = float(np.exp(min(-s, np.log(_MAX_EXPONENT_STEP / h_max))))
        # Round-off of h = XᵀΔ (≤ n·eps·|X|ᵀ|Δ|) enters the increment through β·h: it matters when
        # Δ is huge along coordinates still at the tiny scale c (curvature μ) and cancels in h on
        # the support, and the Armijo test must not reject a step for a decrease it cannot resolve.
        with np.errstate(over="ignore", invalid="ignore"):
            h_noise = n * _EPS * float(np.abs(beta) @ (abs_X.T @ np.abs(direction)))
        accepted = False
        for _ in range(80):
            with np.errstate(over="ignore", invalid="ignore"):  # a non-finite trial is rejected
                increment, noise = _dual_increment(a, h, tau, log_c, tau * ty)
                bound = 1e-4 * tau * slope + noise + tau * h_noise
            if np.isfinite(increment) and increment <= bound:
                accepted = True
                break
            tau *= 0.5
        if not accepted:
            status = "failed"
            break
        nu = nu + tau * direction
        a = X.T @ nu + z0
        iterations += 1
        if np.max(log_c + np.abs(a)) > _MAX_EXPONENT:
            # a recomputed from ν differs from the accepted trial a + τh by the round-off of Xᵀν,
            # which is large only when ν has diverged (no interpolator): stop before e^a overflows
            status = "failed"
            break
        beta = _two_c_sinh(a, log_c)

    with np.errstate(over="ignore", invalid="ignore"):  # inf after a "failed" run, reported as such
        res = _norm(X_in @ beta - y_in)
        y_norm = _norm(y_in)
        nu = nu / sigma if sigma > 0.0 else nu
    res = res if np.isfinite(res) else np.inf
    primal_residual = res / y_norm if y_norm > 0 else res
    mirror = asinh_ratio(beta, log_c) - z0
    mirror_norm = _norm(mirror)
    kkt_residual = _null_space_residual(X, mirror) / max(mirror_norm, 1e-300)
    return MirrorResult(
        beta=beta,
        nu=nu,
        primal_residual=primal_residual,
        kkt_residual=kkt_residual,
        status=status,
        iterations=iterations,
    )


# --------------------------------------------------------------------------------------
# limits: min-ℓ1 and min-ℓ2 interpolators (docs/theory.md §2.2)
# --------------------------------------------------------------------------------------

def min_l1(X, y):
    """Minimum-ℓ1 interpolator ``argmin ‖β‖₁ s.t. Xβ = y`` (the α → 0 limit, docs/theory.md §2.2).

    Linear program over β = p − q, p, q ≥ 0 (``scipy.optimize.linprog``, HiGHS), then a
    polish: the vertex found is re-solved exactly on its support by least squares (kept only
    if it stays feasible with the same signs and no larger ℓ1 norm).

    Returns
    -------
    ndarray, shape (d,)

    Raises
    ------
    ValueError
        Malformed inputs.
    RuntimeError
        If the LP fails (e.g. y not in range(X)).
    """
    who = "min_l1"
    X = _as_matrix(X, who)
    n, d = X.shape
    y = _as_target(y, n, who)
    import scipy.optimize  # here, not at import time: it is the slowest part of scipy to import

    result = scipy.optimize.linprog(
        np.ones(2 * d),
        A_eq=np.hstack([X, -X]),
        b_eq=y,
        bounds=(0, None),
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if result.status != 0:
        raise RuntimeError(f"min_l1: linprog failed: {result.message}")
    beta = result.x[:d] - result.x[d:]
    support = np.abs(beta) > 1e-9 * max(float(np.abs(beta).max()), 1e-300)
    if 0 < support.sum() <= n:
        beta_s = np.linalg.lstsq(X[:, support], y, rcond=None)[0]
        polished = np.zeros(d)
        polished[support] = beta_s
        same_signs = np.all(np.sign(beta_s) == np.sign(beta[support]))
        tighter = np.linalg.norm(X @ polished - y) <= np.linalg.norm(X @ beta - y)
        if same_signs and tighter and np.abs(polished).sum() <= np.abs(beta).sum() * (1 + 1e-9):
            beta = polished
    return beta


def min_l2(X, y):
    """Minimum-ℓ2 interpolator ``X⁺y`` (the α → ∞ limit, docs/theory.md §2.2), via lstsq."""
    who = "min_l2"
    X = _as_matrix(X, who)
    y = _as_target(y, X.shape[0], who)
    return np.linalg.lstsq(X, y, rcond=None)[0]


# --------------------------------------------------------------------------------------
# weighted Lasso (docs/theory.md §9)
# --------------------------------------------------------------------------------------

def label_noise_lasso_weights(X, eta, delta):
    """Per-coordinate Lasso weights of label-noise SGD: ``λ_j = η δ² M_jj``, M = XᵀX/n (docs/theory.md §9)."""
    X = _as_matrix(X, "label_noise_lasso_weights")
    return float(eta) * float(delta) ** 2 * np.mean(X * X, axis=0)


def lasso_kkt_violation(X, y, beta, lam):
    """Largest violation of the weighted-Lasso subgradient conditions (docs/theory.md §9).

    With ``ρ = Xᵀ(y − Xβ)/n``: ``ρ_j = λ_j sign(β_j)`` if β_j ≠ 0 and ``|ρ_j| ≤ λ_j`` if β_j = 0.
    Returns ``max_j`` of the violation (0 at the exact minimiser).
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    lam = np.broadcast_to(np.asarray(lam, dtype=float), (d,))
    rho = X.T @ (np.asarray(y, dtype=float) - X @ beta) / n
    active = beta != 0
    viol = np.where(active, np.abs(rho - lam * np.sign(beta)), np.maximum(np.abs(rho) - lam, 0.0))
    return float(viol.max())


def _soft_threshold(x, t):
    return np.sign(x) * max(abs(x) - t, 0.0)


def _lasso_polish(M, b, lam, beta):
    """Solve the KKT system exactly on the current support with the current signs."""
    support = beta != 0
    if not support.any():
        return np.zeros_like(beta)
    signs = np.sign(beta[support])
    sol = np.linalg.lstsq(M[np.ix_(support, support)], b[support] - lam[support] * signs, rcond=None)[0]
    if not np.all(np.sign(sol) == signs):
        return None
    out = np.zeros_like(beta)
    out[support] = sol
    return out


def weighted_lasso(X, y, lam, *, tol=1e-12, max_iter=100000):
    """Weighted Lasso ``argmin_β (1/2n)‖Xβ − y‖² + Σ_j λ_j |β_j|`` (docs/theory.md §9).

    Cyclic coordinate descent on the Gram form (M = XᵀX/n, b = Xᵀy/n), followed by an exact
    solve of the KKT system on the detected support and signs; the polished point is kept
    when it satisfies the subgradient conditions (:func:`lasso_kkt_violation`) to
    ``tol·max(1, ‖b‖_∞)``.

    Parameters
    ----------
    X : array_like, shape (n, d)
    y : array_like, shape (n,)
    lam : float or array_like of shape (d,), ≥ 0
        Per-coordinate weights (e.g. :func:`label_noise_lasso_weights`).
    tol : float
        KKT tolerance, relative to ``max(1, ‖Xᵀy/n‖_∞)``.
    max_iter : int
        Maximum coordinate-descent sweeps.

    Returns
    -------
    ndarray, shape (d,)
    """
    who = "weighted_lasso"
    X = _as_matrix(X, who)
    n, d = X.shape
    y = _as_target(y, n, who)
    lam = np.asarray(lam, dtype=float)
    if lam.ndim > 1 or (lam.ndim == 1 and lam.shape[0] != d):
        raise ValueError(f"The 'lam' parameter of {who} must be a scalar or have shape ({d},). Got shape {lam.shape} instead.")
    if not np.all(np.isfinite(lam)) or not np.all(lam >= 0):
        bad = lam[~(np.isfinite(lam) & (lam >= 0))].flat[0] if lam.ndim else lam
        raise ValueError(f"The 'lam' parameter of {who} must be finite and >= 0. Got {_fmt(bad)} instead.")
    lam = np.broadcast_to(lam, (d,)).astype(float)

    M = X.T @ X / n
    b = X.T @ y / n
    diag = np.diag(M).copy()
    threshold = tol * max(1.0, float(np.abs(b).max()))
    beta = np.zeros(d)
    M_beta = np.zeros(d)
    for sweep in range(int(max_iter)):
        for j in range(d):
            if diag[j] <= 0:
                continue
            z = b[j] - M_beta[j] + diag[j] * beta[j]
            new = _soft_threshold(z, lam[j]) / diag[j]
            step = new - beta[j]
            if step != 0.0:
                beta[j] = new
                M_beta += M[:, j] * step
        if sweep % 5 == 4 or sweep == max_iter - 1:
            polished = _lasso_polish(M, b, lam, beta)
            if polished is not None and lasso_kkt_violation(X, y, polished, lam) <= threshold:
                return polished
            if lasso_kkt_violation(X, y, beta, lam) <= threshold:
                return beta
    return beta
