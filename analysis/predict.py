"""Closed-form implicit-bias predictions as convex programs (docs/theory.md §2, §3.1, §9, §15).

- :func:`mirror_argmin`: argmin_{Xβ=y} φ_c(β) − ⟨z0, β⟩ by damped Newton on the n-dimensional
  dual, entirely in the log domain (any c with ln c + |z0| < 690, e.g. 1e-300 … 1e299, or
  ``log_c`` down to −1000 and below); :func:`mirror_argmin_batch`: many (c, z0) on one (X, y)
  in one batched iteration (the sweeps' predictions).
- :func:`min_l1` (α → 0 limit, LP), :func:`min_l2` (α → ∞ limit).
- :func:`weighted_lasso` and :func:`label_noise_lasso_weights` (label-noise SGD, §9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def _dual_increments(a, h, t, log_c, ty_step):
    """Per row b: D(ν + t_bΔ_b) − D(ν) for D(ν) = Σ 2c cosh(Xᵀν + z0) − νᵀy, with a = Xᵀν + z0 and
    h = XᵀΔ of shape (B, d), t and ty_step = t·Δᵀy of shape (B,).

    Uses cosh(a + th) − cosh(a) = 2 sinh(a + th/2)·sinh(th/2), every factor in the log
    domain, so the increment is computed without forming D (which may overflow) and
    without the cancellation of a difference of two large values. Returns (increments,
    round-off scales of the increments); +inf where a trial exponent is too large.
    """
    s = 0.5 * t[:, None] * h
    b = a + s
    abs_b, abs_s = np.abs(b), np.abs(s)
    exponent = log_c + abs_b + abs_s
    # overflows only in the rows returned as +inf (the caller ignores over and invalid)
    terms = (np.sign(b) * np.sign(s)) * np.exp(exponent) * np.expm1(-2.0 * abs_b) * np.expm1(-2.0 * abs_s)
    increment = terms.sum(axis=1) - ty_step
    noise = _EPS * (np.abs(terms).sum(axis=1) + np.abs(ty_step)) * 8.0
    if not exponent.max() <= _MAX_EXPONENT:  # one test for all rows (nan included), rows only if it fails
        too_large = exponent.max(axis=1) > _MAX_EXPONENT
        increment[too_large] = np.inf
        noise[too_large] = 0.0
    return increment, noise


def _norms(v):
    """Euclidean norms along the last axis without overflow or underflow of the squares, as BLAS
    nrm2: np.linalg.norm of (1e200, 1e200) is inf and of (1e-200, 1e-200) is 0.  The plain sum of
    squares is exact to round-off where 1e-140 < norm < 1e140 (no square overflows, and squares that
    underflow are below 1e-28 of the sum); elsewhere the rows are scaled by max|v| first.  inf or
    nan where the row holds one.  The plain path needs no np.errstate (called once per Newton
    iteration): einsum and sqrt raise no floating-point flags, an overflowed square is just inf."""
    rows = v.reshape(-1, v.shape[-1])
    out = np.sqrt(np.einsum("ij,ij->i", rows, rows)).reshape(v.shape[:-1])
    if out.size == 0 or (out.min() > 1e-140 and out.max() < 1e140):  # False if a norm is nan
        return out
    plain = (out > 1e-140) & (out < 1e140)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        v = np.abs(v)
        top = v.max(axis=-1)
        ok = (top > 0.0) & np.isfinite(top)
        scale = np.where(ok, top, 1.0)
        scaled = scale * np.sqrt(np.sum(np.square(v / scale[..., None]), axis=-1))
    return np.where(plain, out, np.where(ok, scaled, top))


def _norm(v) -> float:
    """:func:`_norms` of one vector."""
    return float(_norms(np.asarray(v, dtype=float)))


def _positive_definite(M) -> bool:
    try:
        np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return False
    return True


def _spd_solve(G, rhs):
    """G⁻¹·rhs for G positive definite (tested by a Cholesky before), rhs of shape (..., n, k); None
    if a G of the stack is singular after all (a Cholesky may pass a rank-deficient G by round-off)."""
    try:
        return np.linalg.solve(G, rhs)
    except np.linalg.LinAlgError:
        return None


def _null_space_residuals(X, V):
    """‖P_null(X) v‖ = ‖v − Xᵀ(XXᵀ)⁻¹Xv‖ for each row v of V (normal equations plus one refinement
    step; lstsq if XXᵀ is singular). O(n²d) per row, like one Newton iteration; a QR of Xᵀ would
    cost ~10×. mirror_argmin passes its equilibrated X (max|X| = 1), so XXᵀ cannot overflow.
    nan for a row that is not finite (a failed solve)."""
    finite = np.isfinite(V).all(axis=1)
    if not finite.all():
        out = np.full(V.shape[0], np.nan)
        if finite.any():
            out[finite] = _null_space_residuals(X, V[finite])
        return out
    G = X @ X.T
    coef = _spd_solve(G, X @ V.T) if _positive_definite(G) else None
    if coef is not None:
        perp = V - (X.T @ coef).T
        refine = _spd_solve(G, X @ perp.T)
        coef = None if refine is None else coef + refine
    if coef is None:
        coef = np.linalg.lstsq(X.T, V.T, rcond=None)[0]
    return _norms(V - (X.T @ coef).T)


def _interpolation_residual(X, y, y_norm) -> float:
    """min_β ‖Xβ − y‖ / ‖y‖ (0 for y = 0): round-off when y ∈ range(X), else the relative distance of
    y from range(X).  With full row rank (XXᵀ positive definite) β = Xᵀ(XXᵀ)⁻¹y interpolates and
    one Cholesky decides; otherwise a least-squares solve (SVD) measures the distance.  X has
    max|X| = 1 here (equilibrated by the callers), so XXᵀ cannot overflow, and y is finite (callers
    test ‖y‖)."""
    if y_norm == 0.0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        G = X @ X.T
        w = _spd_solve(G, y[:, None]) if _positive_definite(G) else None
        if w is not None:
            res = _norm(X @ (X.T @ w[:, 0]) - y) / y_norm
            if np.isfinite(res) and res <= INFEASIBLE:
                return res
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
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


def _newton_directions(X, log_w, grad):
    """Newton directions of B dual problems up to positive factors: returns (Δ̃, s) with the Newton
    step e^{−s_b}Δ̃_b of row b (log_w = ln(2c cosh a), grad of shapes (B, d), (B, n)); a row is not
    finite where the linear algebra broke down (call under np.errstate(over="ignore",
    invalid="ignore"); the caller tests the rows).

    The Hessian X diag(w) Xᵀ, w = 2c cosh a, is formed as e^{s}·(Ã Ãᵀ) with s = max ln w and
    Ã = X·exp((ln w − s)/2), so its entries neither underflow (ln c = −1000) nor overflow
    (mirror_argmin passes its equilibrated X, max|X| = 1). Directions whose curvature is below
    round-off (μ = eps·tr H̃: coordinates still at the tiny scale c while others are O(1)) get the
    curvature μ instead of a round-off value: the step there is large (then capped by the line
    search) rather than zero, as in exact arithmetic. Cholesky of H̃ + μI (as the test of
    positive definiteness) and a solve; if the Cholesky fails, an eigen-decomposition with
    eigenvalues clipped at μ.
    """
    B, n = grad.shape
    s = log_w.max(axis=1)
    A = X * np.exp(0.5 * (log_w - s[:, None]))[:, None, :]
    H = A @ np.swapaxes(A, 1, 2)
    mu = _EPS * np.einsum("bii->b", H)
    shifted = H.copy()
    shifted.reshape(B, n * n)[:, ::n + 1] += mu[:, None]  # H̃ + μI: the diagonal of each matrix
    rhs = -grad[:, :, None]
    solved = None
    try:
        np.linalg.cholesky(shifted)
    except np.linalg.LinAlgError:
        pass
    else:
        solved = _spd_solve(shifted, rhs)
    if solved is not None:
        delta = solved[:, :, 0]
    else:  # one matrix is not positive definite (or singular) and fails the whole stack: one by one
        delta = np.full(grad.shape, np.nan)
        for b in range(B):
            solved = _spd_solve(shifted[b], rhs[b]) if _positive_definite(shifted[b]) else None
            if solved is not None:
                delta[b] = solved[:, 0]
    if np.isfinite(delta).all():
        return delta, s
    for b in np.flatnonzero(~np.isfinite(delta).all(axis=1)):
        if not (np.all(np.isfinite(H[b])) and mu[b] > 0.0):
            continue
        eigval, eigvec = np.linalg.eigh(H[b])
        step = -eigvec @ ((eigvec.T @ grad[b]) / np.maximum(eigval, mu[b]))  # a residual near 1e300
        if np.all(np.isfinite(step)):
            delta[b] = step
    return delta, s


def _line_search(a, h, tau, log_c, ty, slope, h_noise):
    """Armijo backtracking on the dual D along each row's direction (h = XᵀΔ): halve row b's step
    τ_b (in place) until D(ν + τΔ) − D(ν) ≤ 1e-4·τ·slope + its round-off, at most 80 times.
    Returns which rows accepted a step (call under np.errstate(over="ignore", invalid="ignore"):
    a non-finite trial is rejected)."""
    accepted = np.zeros(tau.size, dtype=bool)
    left = np.arange(tau.size)
    pick = slice(None)  # the rows still searching: all of them (views, no copies) until one passes
    for _ in range(80):
        t = tau[pick]
        increment, noise = _dual_increments(a[pick], h[pick], t, log_c[pick], t * ty[pick])
        passed = np.isfinite(increment) & (increment <= 1e-4 * t * slope[pick] + noise + t * h_noise[pick])
        if passed.all():
            accepted[left] = True
            break
        accepted[left[passed]] = True
        pick = left = left[~passed]
        tau[left] *= 0.5
    return accepted


#: Rows of a batched solve whose Hessian factors (B, n, d) stay below this many elements.
_BATCH_ELEMENTS = 1 << 22


def _mirror_argmin_rows(X, y, log_c, z0, tol, max_iter) -> list:
    """The damped Newton iteration of :func:`mirror_argmin` for the rows of ``log_c`` and ``z0``
    (shape (B, d)) on one validated (X, y); rows iterate independently (each its own line search,
    test and status), the arithmetic is shared. While every row runs, rows are taken as views
    (no fancy indexing), so one row (:func:`mirror_argmin`) costs little more than 1-D code."""
    n, d = X.shape
    step = max(1, _BATCH_ELEMENTS // (n * d))
    if log_c.shape[0] > step:
        return [r for lo in range(0, log_c.shape[0], step)
                for r in _mirror_argmin_rows(X, y, log_c[lo:lo + step], z0[lo:lo + step], tol, max_iter)]
    # Equilibrate: Xβ = y ⇔ (X/σ)β = y/σ with σ = max|X|, and the dual of the scaled system is
    # ν̂ = σν, so the iteration never meets the scale of X (1e±300); β is unchanged.
    X_in, y_in = X, y
    sigma = float(np.max(np.abs(X)))
    if sigma > 0.0:
        with np.errstate(over="ignore"):  # y/σ beyond float64 is caught below
            X, y = X / sigma, y / sigma
    abs_X, abs_z0 = np.abs(X), np.abs(z0)
    with np.errstate(over="ignore"):
        y_norm = _norm(y)
    round_off = 4.0 * np.sqrt(d) * _EPS

    B = log_c.shape[0]
    nu = np.zeros((B, n))
    a = z0.copy()
    beta = np.zeros((B, d))
    status = ["max_iter"] * B
    iterations = np.zeros(B, dtype=np.int64)
    start = np.max(log_c + np.abs(a), axis=1) <= _MAX_EXPONENT
    if not np.isfinite(y_norm):
        start[:] = False
    rows = np.flatnonzero(start)  # the rows still iterating
    for b in np.flatnonzero(~start):
        status[b] = "failed"  # the starting point itself is out of range, or y/max|X| overflows
    if rows.size:
        sel = slice(None) if rows.size == B else rows
        beta[sel] = _two_c_sinh(a[sel], log_c[sel])
        if _interpolation_residual(X, y, y_norm) > INFEASIBLE:
            for b in rows:
                status[b] = "infeasible"  # the dual is unbounded: Newton would chase ν to infinity
            rows = rows[:0]
    # β may grow towards e^690 when no interpolator exists (ν diverges): the residual, its scales,
    # the direction or a trial may then overflow; every one is tested below and ends its row as
    # "failed" (never inf <= inf), so overflows are not warned about.
    with np.errstate(over="ignore", invalid="ignore"):
        while rows.size:
            sel = slice(None) if rows.size == B else rows  # a view while every row runs
            beta_r, a_r, log_c_r = beta[sel], a[sel], log_c[sel]
            grad = beta_r @ X.T - y
            # Round-off floor of Xβ − y: the products X·β, and β's sensitivity m = 2c cosh(a) to
            # the rounding of a = Xᵀν + z0 (which cancels when z0 is large and β/c small).
            log_w = _log_two_c_cosh(a_r, log_c_r)  # ln m, also the Hessian weights
            a_scale = np.abs(nu[sel]) @ abs_X + abs_z0[sel]
            b_abs = np.abs(beta_r)
            norms = _norms(np.concatenate((grad, b_abs @ abs_X.T, (b_abs + np.exp(log_w) * a_scale) @ abs_X.T)))
            res, x_beta, x_floor = norms.reshape(3, -1)
            finite = np.isfinite(norms).reshape(3, -1).all(axis=0)  # β is finite where ‖|X||β|‖ is
            scale = np.fmax(y_norm, x_beta)  # max(‖y‖, ‖|X||β|‖) (y_norm is finite)
            # A floor above 1e-6 relative means ν itself has blown up (e.g. an infeasible system,
            # where ν diverges along null(Xᵀ)): that is not convergence.
            floor = np.minimum(round_off * x_floor, _MAX_FLOOR * scale)
            converged = finite & (res <= np.fmax(tol * scale, floor))
            go = (finite ^ converged) & (iterations[sel] < max_iter)  # finite, not converged (⊂ finite)
            if not go.all():
                for b in rows[~finite]:
                    status[b] = "failed"
                for b in rows[converged]:
                    status[b] = "converged"
                rows, grad, log_w, a_r, log_c_r, b_abs = (v[go] for v in (rows, grad, log_w, a_r, log_c_r, b_abs))
                if rows.size == 0:
                    break
            direction, s = _newton_directions(X, log_w, grad)
            h = direction @ X
            slope = np.einsum("bi,bi->b", grad, direction)  # < 0: −gradᵀH̃⁻¹grad
            ty = direction @ y
            h_max = np.abs(h).max(axis=1)  # nan where the direction is
            ok = (0.0 < h_max) & (h_max < np.inf) & np.isfinite(slope) & np.isfinite(ty)
            if not ok.all():
                for b in rows[~ok]:
                    status[b] = "failed"
                rows, direction, s, h, slope, ty, h_max, b_abs, a_r, log_c_r = (
                    v[ok] for v in (rows, direction, s, h, slope, ty, h_max, b_abs, a_r, log_c_r))
                if rows.size == 0:
                    break
            # The full Newton step is e^{−s}·direction; never change an exponent by more than
            # _MAX_EXPONENT_STEP in one trial. Computed in logs: e^{−s} may overflow.
            tau = np.exp(np.minimum(-s, np.log(_MAX_EXPONENT_STEP / h_max)))
            # Round-off of h = XᵀΔ (≤ n·eps·|X|ᵀ|Δ|) enters the increment through β·h: it matters when
            # Δ is huge along coordinates still at the tiny scale c (curvature μ) and cancels in h on
            # the support, and the Armijo test must not reject a step for a decrease it cannot resolve.
            h_noise = n * _EPS * np.einsum("bj,bj->b", b_abs, np.abs(direction) @ abs_X)
            accepted = _line_search(a_r, h, tau, log_c_r, ty, slope, h_noise)
            if not accepted.all():
                for b in rows[~accepted]:
                    status[b] = "failed"
                rows, tau, direction = rows[accepted], tau[accepted], direction[accepted]
            sel = slice(None) if rows.size == B else rows
            nu[sel] += tau[:, None] * direction
            a[sel] = nu[sel] @ X + z0[sel]
            iterations[sel] += 1
            # a recomputed from ν differs from the accepted trial a + τh by the round-off of Xᵀν,
            # which is large only when ν has diverged (no interpolator): stop before e^a overflows
            exponent = log_c[sel] + np.abs(a[sel])
            if not exponent.max() <= _MAX_EXPONENT:  # one test for all rows, rows only if it fails
                out_of_range = exponent.max(axis=1) > _MAX_EXPONENT
                for b in rows[out_of_range]:
                    status[b] = "failed"
                sel = rows = rows[~out_of_range]
            beta[sel] = _two_c_sinh(a[sel], log_c[sel])

    with np.errstate(over="ignore", invalid="ignore"):  # inf after a "failed" run, reported as such
        res = _norms(beta @ X_in.T - y_in)
        y_norm = _norm(y_in)
        nu = nu / sigma if sigma > 0.0 else nu
    res = np.where(np.isfinite(res), res, np.inf)
    primal_residual = res / y_norm if y_norm > 0 else res
    mirror = asinh_ratio(beta, log_c) - z0
    with np.errstate(over="ignore", invalid="ignore"):
        kkt_residual = _null_space_residuals(X, mirror) / np.maximum(_norms(mirror), 1e-300)
    return [MirrorResult(beta=beta[b].copy(), nu=nu[b].copy(), primal_residual=float(primal_residual[b]),
                         kkt_residual=float(kkt_residual[b]), status=status[b], iterations=int(iterations[b]))
            for b in range(B)]


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
    :func:`mirror_argmin_batch` solves many (c, z0) on one (X, y) at once.

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
    _check_iteration(tol, max_iter, who)
    return _mirror_argmin_rows(X, y, log_c[None, :], z0[None, :], tol, max_iter)[0]


def mirror_argmin_batch(X, y, log_c, z0=None, *, tol=1e-13, max_iter=200) -> list:
    """:func:`mirror_argmin` for B problems on one (X, y): ``argmin_{Xβ = y} φ_{c_b}(β) − ⟨z0_b, β⟩``
    for each row b of ``log_c`` (and ``z0``), in one batched iteration (the fixed cost of B
    separate calls is paid once; each row keeps its own line search, stopping test and status).

    Parameters
    ----------
    X : array_like, shape (n, d)
    y : array_like, shape (n,)
    log_c : array_like, shape (B, d)
        ln c of each problem.
    z0 : array_like of shape (B, d), optional
        Tilt of each problem (default 0).
    tol, max_iter :
        As in :func:`mirror_argmin`.

    Returns
    -------
    list of MirrorResult
        One per row, the result :func:`mirror_argmin` gives for that row alone (the same
        iteration; batched arithmetic, so equal to round-off).
    """
    who = "mirror_argmin_batch"
    X = _as_matrix(X, who)
    n, d = X.shape
    y = _as_target(y, n, who)
    log_c = _as_rows(log_c, "log_c", d, who)
    z0 = np.zeros_like(log_c) if z0 is None else _as_rows(z0, "z0", d, who)
    if z0.shape != log_c.shape:
        raise ValueError(f"The 'z0' parameter of {who} must have the shape of log_c {log_c.shape}. "
                         f"Got shape {z0.shape} instead.")
    _check_iteration(tol, max_iter, who)
    if log_c.shape[0] == 0:
        return []
    return _mirror_argmin_rows(X, y, log_c, z0, tol, max_iter)


def _as_rows(value, name, d, who):
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != d:
        raise ValueError(f"The '{name}' parameter of {who} must have shape (B, {d}). Got shape {arr.shape} instead.")
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].flat[0]
        raise ValueError(f"The '{name}' parameter of {who} must be finite. Got {_fmt(bad)} instead.")
    return np.array(arr)


def _check_iteration(tol, max_iter, who):
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"The 'tol' parameter of {who} must be > 0. Got {_fmt(tol)} instead.")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"The 'max_iter' parameter of {who} must be a positive integer. Got {max_iter!r} instead.")




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
