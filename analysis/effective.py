"""Effective initialisation, gains and discrete-time tilts (docs/theory.md §1, §4–§8).

Every algorithm of docs/theory.md §4 changes only the scale c = u⊙v (and, in discrete time, adds a
known out-of-span tilt Φ); the limit is then ``mirror_argmin(X, y, log_c=ln c_∞, z0=z0 − 2Φ)``.
Each function below is one formula; its docstring names the section.
"""

from __future__ import annotations

import numpy as np

# |x| below which the tilt artanh(x) − x is summed as a series (the closed form cancels).
_TILT_SERIES_RADIUS = 0.1


def alpha_eff(u, v):
    """Effective initialisation ``α_eff = sqrt(|u ⊙ v|)`` (docs/theory.md §1).

    Computed as sqrt|u|·sqrt|v|, so the product never underflows before the square root.
    """
    return np.sqrt(np.abs(np.asarray(u, dtype=float))) * np.sqrt(np.abs(np.asarray(v, dtype=float)))


def alpha_eff_from_log(log_u, log_v):
    """``α_eff = exp((ln|u| + ln|v|)/2)`` from log-magnitudes (docs/theory.md §1)."""
    return np.exp(0.5 * (np.asarray(log_u, dtype=float) + np.asarray(log_v, dtype=float)))


def gain(alpha_eff, alpha):
    """Gain ``−ln(α_eff/α)`` per coordinate; > 0 means "richer" (docs/theory.md §1, §4.1).

    α_eff = 0 gives +inf (u or v hit exactly 0, e.g. a GD step with |2ηg| = 1).
    """
    # ln(0) = −inf is the genuine value for a collapsed coordinate; no warning wanted.
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(alpha, dtype=float)) - np.log(np.asarray(alpha_eff, dtype=float))


def gain_from_log(log_alpha_eff, log_alpha):
    """Gain ``ln α − ln α_eff`` from logs (docs/theory.md §1, §4.1)."""
    return np.asarray(log_alpha, dtype=float) - np.asarray(log_alpha_eff, dtype=float)


def log_c_from_integral(alpha, coef, integral):
    """Scale of an exact continuous-time mechanism: ``ln c_∞ = ln α² − coef · I`` (docs/theory.md §4).

    ============================  ============  =========================================  =====
    method                        ``coef``      ``integral`` I (per coordinate)            §
    ============================  ============  =========================================  =====
    exact GR (γ)                  8γ            ∫ g⊙g dt                                   7.2
    F-GR / B-GR (γ, signed ε)     8γ            ∫ g⊙g̃ dt,  g̃ = ∇L(β + 4εm⊙g + 4ε²β⊙g²)    7.3
    per-example GR (γ)            8γ            (1/n) Σ_i x_i⊙x_i ∫ r_i² dt                7.5
    per-example F/B-GR (γ, ε)     8γ            (1/n) Σ_i x_i⊙x_i ∫ r_i r̃_i dt             7.5
    n-SAM / USAM (ρ)              8ρ            ∫ g⊙g̃ dt with ε = ρ                        8
    1-SAM (ρ)                     8ρ            (1/n) Σ_i x_i⊙x_i ∫ r_i r̃_i dt, ε = ρ      8
    GD, small step (η)            4η            ∫ g⊙g dt  (t = ηk)                         5.2
    SGD batch 1, small step (η)   4η            (1/n) Σ_i x_i⊙x_i ∫ r_i² dt                6.2
    ============================  ============  =========================================  =====

    GR, F-GR, B-GR, SAM rows are exact identities (ln(u v) along the flow); GD/SGD rows are
    the small-step approximations (exact discrete forms: :func:`gd_log_c_from_steps`).
    ``α_eff = α·exp(−coef·I/2)``.
    """
    return 2.0 * np.log(np.asarray(alpha, dtype=float)) - np.asarray(coef, dtype=float) * np.asarray(integral, dtype=float)


def gr_first_order_log_c(alpha, gamma, integral_g2):
    """Small-γ GR prediction ``ln c = ln α² − 8γ ∫ g² dt`` with ∫g² taken on the γ = 0 (GF)
    path, i.e. ``α_GR ≈ α·exp(−4γ ∫ g²)`` (docs/theory.md §7.2)."""
    return log_c_from_integral(alpha, 8.0 * np.asarray(gamma, dtype=float), integral_g2)


def gd_continuous_log_c(alpha, eta, integral_g2):
    """Small-step GD: ``ln c_∞ ≈ ln α² − 4η ∫₀^∞ g² dt`` (t = ηk), i.e.
    ``α_∞ ≈ α·exp(−2η ∫ g²)``, the same as exact GR with γ = η/2 (docs/theory.md §5.2, §10)."""
    return log_c_from_integral(alpha, 4.0 * np.asarray(eta, dtype=float), integral_g2)


def sgd_continuous_log_c(alpha, eta, per_example_integral):
    """Small-step batch-1 SGD: ``ln c_∞ ≈ ln α² − 4η (1/n) Σ_i x_i² ∫ r_i² dt`` (docs/theory.md §6.2).

    ``per_example_integral`` is the vector (1/n) Σ_i x_i⊙x_i ∫ r_i(t)² dt (t = ηk).
    """
    return log_c_from_integral(alpha, 4.0 * np.asarray(eta, dtype=float), per_example_integral)


# --------------------------------------------------------------------------------------
# exact discrete bookkeeping (docs/theory.md §4 lemma, §5.1, §6.1)
# --------------------------------------------------------------------------------------

def gd_log_c_increment(x):
    """One GD/SGD step's change of ln c: ``ln|1 − x²|`` with x = 2ηg (docs/theory.md §5.1).

    From u ← u(1 − x), v ← v(1 + x). Evaluated as log1p(−x²) for |x| < 1/2 (accurate for small
    steps). |x| = 1 gives −inf (u or v becomes exactly 0).
    """
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < 0.5
    # ln 0 = −inf is the genuine value at |x| = 1 (collapsed coordinate); no warning wanted.
    with np.errstate(divide="ignore"):
        large = np.log(np.abs((1.0 - x) * (1.0 + x)))
    return np.where(small, np.log1p(-np.minimum(x * x, 0.25)), large)


def q_even(x):
    """Even et al.'s ``q_E(x) = −½ ln((1 − x²)²) = −ln|1 − x²|`` (docs/theory.md §5.1, §5.3).

    Positive (α shrinks) for |x| < √2, negative for |x| > √2. α_K = α·exp(−½ Σ_k q_E(x_k)).
    """
    return -gd_log_c_increment(x)


def gd_tilt_increment(x):
    """One GD/SGD step's out-of-span tilt: ``½ ln|(1 + x)/(1 − x)| − x`` (docs/theory.md §5.1).

    Equals artanh(x) − x = x³/3 + x⁵/5 + … for |x| < 1 (summed as a series for
    |x| < 0.1, where the closed form would cancel); valid with absolute values for |x| > 1.
    """
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < _TILT_SERIES_RADIUS
    xs = np.where(small, x, 0.0)
    x2 = xs * xs
    series = np.zeros_like(xs)
    power = xs * x2
    for k in range(1, 15):  # x^{2k+1}/(2k+1); 0.1^31 is far below round-off of x³/3
        series = series + power / (2 * k + 1)
        power = power * x2
    xl = np.where(small, 0.5, x)
    # |x| = 1 gives ±inf genuinely (u or v collapses to 0); no warning wanted.
    with np.errstate(divide="ignore"):
        closed = 0.5 * (np.log(np.abs(1.0 + xl)) - np.log(np.abs(1.0 - xl))) - xl
    return np.where(small, series, closed)


def gd_log_c_from_steps(alpha, xs):
    """Exact discrete scale ``ln c_K = ln α² + Σ_k ln|1 − x_k²|`` (docs/theory.md §5.1, §6.1).

    Parameters
    ----------
    alpha : float or array_like (d,)
    xs : array_like, shape (K, d)
        Steps x_k = 2η g_k (GD) or 2η g_{B_k} (SGD).
    """
    return 2.0 * np.log(np.asarray(alpha, dtype=float)) + np.sum(gd_log_c_increment(xs), axis=0)


def gd_tilt_from_steps(xs):
    """Exact discrete tilt ``Φ_K = Σ_k [½ ln|(1 + x_k)/(1 − x_k)| − x_k]`` (docs/theory.md §5.1, §6.1).

    xs : array_like, shape (K, d). The GD limit is argmin φ_{c_K}(β) + 2⟨Φ_K, β⟩.
    """
    return np.sum(gd_tilt_increment(xs), axis=0)


def tilted_z0(z0, Phi):
    """Tilt passed to ``mirror_argmin`` for a discrete run: ``z0 − 2Φ`` (docs/theory.md §4 lemma, §15)."""
    return np.asarray(z0, dtype=float) - 2.0 * np.asarray(Phi, dtype=float)
