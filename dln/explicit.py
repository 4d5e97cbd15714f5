"""The explicit start of ``flow``: the Dormand–Prince 8(5,3) pair (DOP853) on the reduced state.

The depth-2 flows are not stiff at first: the largest rate of the Jacobian, of order (4/n)‖X‖²·max m,
stays O(1) on the workloads of this project, while the time to convergence grows like ln(1/c0) and
the decaying modes of the interpolator make the tail stiff.  Most of the *accuracy* is spent early,
where the gain integral (docs/theory.md §7) accumulates and the path is curved: there an explicit
pair of order 8 takes 5–10× fewer steps than the order-3 W-method, and a step costs evaluations only
(no model, no solves).  ``flow`` therefore starts every reduced run with DOP853 and hands it to
ROS34PW2 (:mod:`dln.rosenbrock`) for good once its steps are limited by stability rather than
accuracy, detected as in Hairer's DOP853 (Hairer, Nørsett & Wanner, Solving ODEs I, §II.10, and the
code ``dop853.f``): h·|λ| ≈ h‖f(y₁) − f(Y₁₂)‖/‖y₁ − Y₁₂‖ from the last stage Y₁₂ and the new
point y₁, against the pair's stability bound (≈ 6.1 on the negative real axis).

Coefficients: Dormand & Prince (1980) with Hairer's embedded estimates of orders 5 and 3, as
tabulated by SciPy (``scipy.integrate.DOP853``).  The error estimate combines both (Hairer's code):
err = e₅²/√(e₅² + 0.01·e₃²) for the scaled norms e₅, e₃ of the two embedded differences, which
behaves like a 7th-order estimate; the step-size exponent is therefore −1/8.
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import DOP853 as _DOP853

#: Runge–Kutta matrix, weights and nodes of the 12 stages (the 13th, FSAL, is f(y₁): its error weights are 0)
A = np.array(_DOP853.A, dtype=np.float64)
B = np.array(_DOP853.B, dtype=np.float64)
C = np.array(_DOP853.C, dtype=np.float64)
E3 = np.array(_DOP853.E3[:-1], dtype=np.float64)
E5 = np.array(_DOP853.E5[:-1], dtype=np.float64)
STAGES = 12
ORDER = 8
#: order of the local error the combined estimate behaves like (step-size exponent −1/ERROR_ORDER)
ERROR_ORDER = 8
#: h·|λ| on the stability boundary of DOP853 along the negative real axis (Hairer's dop853.f)
STABILITY = 6.1
E5_MAX = 100.0


def step(system, Y, F, h, K, Ys):
    """One DOP853 step of every row of ``system`` from Y with f(Y) = F.

    ``K`` (STAGES, k, N) and ``Ys`` (k, N) are work buffers.  Returns (y₁, h·Σ E5_i K_i, h·Σ E3_i K_i,
    Y₁₂, f(Y₁₂)): the new point, the two embedded error vectors and the last stage with its rate (for
    the stiffness test of the module docstring)."""
    k, N = Y.shape
    hc = h[:, None]
    K[0] = F
    for i in range(1, STAGES):
        flat = K[:i].reshape(i, -1)
        np.multiply((A[i, :i] @ flat).reshape(k, N), hc, out=Ys)
        Ys += Y
        system.rates(Ys, K[i])
    flat = K.reshape(STAGES, -1)
    comb = (np.stack([B, E5, E3]) @ flat).reshape(3, k, N)
    comb *= hc
    return Y + comb[0], comb[1], comb[2], Ys, K[STAGES - 1]


def error(e5, e3):
    """Hairer's combined error e₅²/√(e₅² + 0.01·e₃²) of scaled norms e₅, e₃: 0 where both are 0, inf
    where either is not finite (an overflowing stage must fail the step, not make e₅²/∞ = 0)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        den = np.sqrt(e5 * e5 + 0.01 * e3 * e3)
        err = np.where(den > 0, e5 * e5 / np.where(den > 0, den, 1.0), 0.0)
    err = np.maximum(err, e5 / E5_MAX)
    return np.where(np.isfinite(e5) & np.isfinite(e3) & np.isfinite(den), err, np.inf)
