"""Mirror potentials of the diagonal linear network (docs/theory.md §1, §2.2, §2.3, §3.1).

Depth 2 (canonical, §1)::

    q(s)      = 2 − sqrt(4 + s²) + s·arcsinh(s/2)          = ∫₀^s arcsinh(t/2) dt
    φ_c(β)    = Σ_i c_i q(β_i / c_i),     ∇φ_c(β) = arcsinh(β / (2c))

Every depth-2 quantity is evaluated through the mirror coordinate w = arcsinh(β/(2c))
(computed in the log domain, so c = exp(−1000) is fine) and the identity

    c·q(β/c) = β·(w − tanh(w/2)),

which follows from sqrt(β² + 4c²) − 2c = β²/(sqrt(β² + 4c²) + 2c) = β·tanh(w/2). It has no
overflow and no cancellation for any c > 0.

Depth D ≥ 3 (§2.3): β = α^D h_D(ζ), h_D(ζ) = (1 − ζ)^{−p} − (1 + ζ)^{−p}, p = D/(D − 2), and
q_D(s) = ∫₀^s h_D^{-1}(t) dt.
"""

from __future__ import annotations

import numpy as np

_LN2 = float(np.log(2.0))
# |x| above which arcsinh(x) = ln(2|x|) + 1/(4x²) + O(x⁻⁴) is exact in float64.
_ASINH_ASYMPTOTIC_LOG = 20.0


def q(s):
    """Depth-2 scalar potential (docs/theory.md §1, §2.1).

    ``q(s) = 2 − sqrt(4 + s²) + s·arcsinh(s/2) = ∫₀^s arcsinh(t/2) dt``.

    Evaluated as ``s·(w − tanh(w/2))`` with ``w = arcsinh(s/2)``: exact for small |s| (no
    cancellation, q ≈ s²/4) and without overflow of s² for huge |s|.

    Parameters
    ----------
    s : array_like

    Returns
    -------
    ndarray or float
    """
    s = np.asarray(s, dtype=float)
    w = np.arcsinh(0.5 * s)
    return s * (w - np.tanh(0.5 * w))


def q_prime(s):
    """Derivative of :func:`q`: ``q'(s) = arcsinh(s/2)`` (docs/theory.md §1)."""
    return np.arcsinh(0.5 * np.asarray(s, dtype=float))


def _resolve_log_c(c, log_c, who):
    """ln c from exactly one of ``c`` (> 0, finite) and ``log_c`` (finite), validated."""
    if (c is None) == (log_c is None):
        raise ValueError(f"Exactly one of 'c' and 'log_c' must be given to {who}.")
    name, value = ("log_c", log_c) if log_c is not None else ("c", c)
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].flat[0]
        raise ValueError(f"The '{name}' parameter of {who} must be finite. Got {float(bad)!r} instead.")
    if name == "log_c":
        return arr
    if not np.all(arr > 0):
        bad = arr[~(arr > 0)].flat[0]
        raise ValueError(f"The 'c' parameter of {who} must be > 0. Got {float(bad)!r} instead.")
    return np.log(arr)


def asinh_ratio(beta, log_c):
    """Mirror coordinate ``w = arcsinh(β / (2c))`` with c given by ``log_c = ln c``.

    Log domain: with ℓ = ln|β/(2c)| = ln|β| − ln 2 − ln c,
    ``arcsinh = sign(β)·(ℓ + ln 2 + e^{−2ℓ}/4)`` once ℓ ≥ 20 (the neglected term is
    O(e^{−4ℓ}) < 1e-34), else the direct arcsinh of ``sign(β)·e^ℓ``. Works for any
    ln c (e.g. −1000) and any finite β; β = 0 gives 0.

    Parameters
    ----------
    beta : array_like
    log_c : array_like, broadcastable to ``beta``

    Returns
    -------
    ndarray
    """
    beta = np.asarray(beta, dtype=float)
    beta, log_c = np.broadcast_arrays(beta, np.asarray(log_c, dtype=float))
    abs_beta = np.abs(beta)
    nonzero = abs_beta > 0
    ell = np.full(beta.shape, -np.inf)
    ell[nonzero] = np.log(abs_beta[nonzero]) - _LN2 - log_c[nonzero]
    big = ell >= _ASINH_ASYMPTOTIC_LOG
    out = np.zeros(beta.shape)
    small = nonzero & ~big
    out[small] = np.arcsinh(np.exp(ell[small]))
    out[big] = ell[big] + _LN2 + 0.25 * np.exp(-2.0 * ell[big])
    out = np.sign(beta) * out
    return out if out.ndim else float(out)


def grad_phi(beta, c=None, *, log_c=None):
    """Mirror map ``∇φ_c(β) = arcsinh(β / (2c))`` (docs/theory.md §1, §2.1).

    Give either ``c`` (> 0, per coordinate or scalar) or ``log_c = ln c`` (for c below the
    float64 range, e.g. ``log_c = −1000``). See :func:`asinh_ratio` for the log-domain form.
    """
    return asinh_ratio(beta, _resolve_log_c(c, log_c, "grad_phi"))


def phi(beta, c=None, *, log_c=None, z0=None):
    """Hyperbolic-entropy potential with a linear tilt (docs/theory.md §1, §3.1, §15).

    ``φ_c(β) − ⟨z0, β⟩ = Σ_i [β_i arcsinh(β_i/(2c_i)) − sqrt(β_i² + 4c_i²) + 2c_i] − ⟨z0, β⟩``

    computed as ``Σ_i β_i (w_i − tanh(w_i/2)) − ⟨z0, β⟩`` with ``w = arcsinh(β/(2c))``
    (see the module docstring), so tiny c (``log_c`` down to −1000) and huge c both work.

    Parameters
    ----------
    beta : array_like, shape (..., d)
    c : array_like, optional
        c_i > 0, scalar or broadcastable to ``beta``.
    log_c : array_like, optional
        ln c, instead of ``c``.
    z0 : array_like, optional
        Linear tilt (default 0).

    Returns
    -------
    float or ndarray, shape (...)
        Sum over the last axis.
    """
    beta = np.asarray(beta, dtype=float)
    w = asinh_ratio(beta, _resolve_log_c(c, log_c, "phi"))
    value = np.sum(beta * (w - np.tanh(0.5 * w)), axis=-1)
    if z0 is not None:
        value = value - np.sum(np.asarray(z0, dtype=float) * beta, axis=-1)
    return value


def bregman(beta, beta0, c=None, *, log_c=None):
    """Bregman divergence of φ_c (docs/theory.md §3.1).

    ``D_{φ_c}(β, β0) = φ_c(β) − φ_c(β0) − ⟨∇φ_c(β0), β − β0⟩
                     = Σ_i [β_i (w_i − w0_i) − (m_i − m0_i)]``,

    with ``w = arcsinh(β/(2c))``, ``m = sqrt(β² + 4c²)``, and ``m − m0`` evaluated as
    ``(β − β0)(β + β0)/(m + m0)`` (no cancellation). Minimising it over {Xβ = y} is
    ``argmin φ_c(β) − ⟨arcsinh(β0/(2c)), β⟩``.

    Returns
    -------
    float or ndarray, shape (...)
        Sum over the last axis; ≥ 0.
    """
    beta = np.asarray(beta, dtype=float)
    beta0 = np.asarray(beta0, dtype=float)
    log_c = _resolve_log_c(c, log_c, "bregman")
    w = asinh_ratio(beta, log_c)
    w0 = asinh_ratio(beta0, log_c)
    two_c = np.exp(_LN2 + log_c)  # underflow to 0 is harmless: m → |β|
    m = np.hypot(beta, two_c)
    m0 = np.hypot(beta0, two_c)
    m_sum = m + m0
    dm = np.zeros(np.broadcast(beta, beta0, m_sum).shape)
    positive = np.broadcast_to(m_sum > 0, dm.shape)
    num = np.broadcast_to((beta - beta0) * (beta + beta0), dm.shape)
    den = np.broadcast_to(m_sum, dm.shape)
    dm[positive] = num[positive] / den[positive]
    return np.sum(beta * (w - w0) - dm, axis=-1)


# --------------------------------------------------------------------------------------
# Depth D ≥ 3 (docs/theory.md §2.3)
# --------------------------------------------------------------------------------------

def _check_depth(D):
    D = float(D)
    if not D > 2:
        raise ValueError(f"The 'D' parameter of the depth-D potential must be > 2. Got {D!r} instead.")
    return D


def h_D(zeta, D):
    """Depth-D link ``h_D(ζ) = (1 − ζ)^{−p} − (1 + ζ)^{−p}``, ``p = D/(D − 2)``, ζ ∈ (−1, 1).

    β = α^D h_D(ζ) with ζ = −(α^{D−2}/2)(u^{2−D} − v^{2−D}) (docs/theory.md §2.3). Odd and
    increasing, h_D'(0) = 2p.
    """
    p = _check_depth(D) / (float(D) - 2.0)
    return _h(np.asarray(zeta, dtype=float), p)


def _h(zeta, p):
    # expm1/log1p: the two terms have opposite signs near 0, so h ≈ 2pζ keeps full
    # relative precision for tiny ζ (the plain difference of powers would cancel).
    return np.expm1(-p * np.log1p(-zeta)) - np.expm1(-p * np.log1p(zeta))


def _h_D_inv_parts(t, p):
    """Solve h_D(ζ) = |t| for ζ ≥ 0; return (ζ, δ = 1 − ζ) both to full relative precision.

    h is convex increasing on [0, 1). For |t| ≤ h(1/2) Newton in ζ starts at
    min(t/(2p), 1/2) ≥ root (h(ζ) ≥ 2pζ) and decreases monotonically. Otherwise Newton in
    δ = 1 − ζ on f(δ) = δ^{−p} − (2 − δ)^{−p} − t (convex, decreasing on (0, 1]) starts at
    (1 + t)^{−1/p} ≤ root (h ≥ δ^{−p} − 1) and increases monotonically; the step is scaled
    by δ^{p+1} (with t·δ^p ≈ 1 formed first) so nothing overflows or underflows for t ~ 1e300.
    """
    t = np.abs(np.asarray(t, dtype=float))
    zeta = np.zeros(t.shape)
    delta = np.ones(t.shape)
    t_half = 2.0**p - (2.0 / 3.0) ** p  # h(1/2)
    lo = (t > 0) & (t <= t_half)
    hi = t > t_half

    if lo.any():
        tl = t[lo]
        z = np.minimum(tl / (2.0 * p), 0.5)
        for _ in range(100):
            f = _h(z, p) - tl
            fp = p * ((1.0 - z) ** (-p - 1.0) + (1.0 + z) ** (-p - 1.0))
            step = f / fp
            z = z - step
            if np.all(np.abs(step) <= 4e-16 * z):
                break
        zeta[lo] = z
        delta[lo] = 1.0 - z

    if hi.any():
        th = t[hi]
        dlt = (1.0 + th) ** (-1.0 / p)
        for _ in range(200):
            dp = dlt**p  # ≈ 1/t: representable whenever t is
            num = dlt * (1.0 - dp * (2.0 - dlt) ** (-p) - th * dp)
            den = p * (1.0 + dp * dlt * (2.0 - dlt) ** (-p - 1.0))
            step = num / den  # = −f/f' ≥ 0
            dlt = dlt + step
            if np.all(np.abs(step) <= 4e-16 * dlt):
                break
        delta[hi] = dlt
        zeta[hi] = 1.0 - dlt
    return zeta, delta


def h_D_inv(t, D):
    """Inverse of :func:`h_D`: the ζ ∈ (−1, 1) with h_D(ζ) = t (docs/theory.md §2.3).

    Safeguarded, monotonically convergent Newton iteration (vectorised); accurate to a few
    ulps in ζ, for |t| up to ~1e300.
    """
    p = _check_depth(D) / (float(D) - 2.0)
    t = np.asarray(t, dtype=float)
    zeta, _ = _h_D_inv_parts(t, p)
    out = np.sign(t) * zeta
    return out if out.ndim else float(out)


def _H_D(zeta, delta, D):
    """Antiderivative H(ζ) = ∫₀^ζ h_D = ((D − 2)/2)[(1 − ζ)^{a} + (1 + ζ)^{a} − 2], a = −2/(D − 2),
    for ζ ≥ 0 given with δ = 1 − ζ; a binomial series Σ_k 2·C(a, 2k) ζ^{2k} for ζ < 1/4
    (the closed form cancels catastrophically there)."""
    a = -2.0 / (D - 2.0)
    out = np.empty(zeta.shape)
    small = zeta < 0.25
    zs = zeta[small]
    series = np.zeros(zs.shape)
    coef = 1.0  # C(a, j)
    z2k = np.ones(zs.shape)
    for j in range(0, 60):
        coef = coef * (a - j) / (j + 1)  # now C(a, j + 1)
        if j % 2 == 1:  # j + 1 even
            z2k = z2k * zs * zs
            series = series + 2.0 * coef * z2k
    out[small] = 0.5 * (D - 2.0) * series
    zb = zeta[~small]
    out[~small] = 0.5 * (D - 2.0) * (delta[~small] ** a + (1.0 + zb) ** a - 2.0)
    return out


def q_D(s, D):
    """Depth-D scalar potential ``q_D(s) = ∫₀^s h_D^{-1}(t) dt`` (docs/theory.md §2.3).

    With the substitution t = h_D(ζ) and ζ_s = h_D^{-1}(s):
    ``q_D(s) = s·ζ_s − ∫₀^{ζ_s} h_D = s·ζ_s − H(ζ_s)``, where
    ``H(ζ) = ((D − 2)/2)[(1 − ζ)^{−2/(D−2)} + (1 + ζ)^{−2/(D−2)} − 2]``.
    q_D is even; q_D(s) ≈ (D − 2)s²/(4D) for small s and ≈ |s| − O(|s|^{2/D}) for large s.
    For large s, s·ζ_s is evaluated as s − s·δ with δ = 1 − ζ_s (no precision loss).
    """
    D = _check_depth(D)
    p = D / (D - 2.0)
    s = np.asarray(s, dtype=float)
    a = np.abs(s)
    zeta, delta = _h_D_inv_parts(a, p)
    out = np.where(zeta < 0.5, a * zeta, a - a * delta) - _H_D(zeta, delta, D)
    return out if out.ndim else float(out)


def phi_D(beta, alpha, D):
    """Depth-D potential ``Q^D_α(β) = α^D Σ_i q_D(β_i / α^D)`` (docs/theory.md §2.3).

    Limits: α → 0 gives ‖β‖₁ (no log factor); α → ∞ gives ((D − 2)/(4Dα^D))‖β‖₂².

    Parameters
    ----------
    beta : array_like, shape (..., d)
    alpha : float or array_like broadcastable to ``beta``, > 0
    D : float, > 2

    Returns
    -------
    float or ndarray, shape (...)
    """
    D = _check_depth(D)
    scale = np.asarray(alpha, dtype=float) ** D
    beta = np.asarray(beta, dtype=float)
    return np.sum(scale * q_D(beta / scale, D), axis=-1)
