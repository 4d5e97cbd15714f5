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

Coefficients: Dormand & Prince (1980) with Hairer's embedded estimates of orders 5 and 3, written out
here from SciPy's table (``scipy.integrate.DOP853``; the tests compare them digit for digit): importing
``scipy.integrate`` costs 0.3–0.6 s, more than ``dln --version`` takes in all.  The 13th stage of the
pair, f(y₁), has zero error weights, so it is the next step's first stage (FSAL).

The error estimate combines both embedded differences (Hairer's code): err = e₅²/√(e₅² + 0.01·e₃²)
for their scaled norms e₅, e₃, which behaves like a 7th-order estimate; the step-size exponent is
therefore −1/8 (guarded by ``E5_MAX``, see :func:`error`).
"""
from __future__ import annotations

import numpy as np


def _lower(rows):
    out = np.zeros((len(rows), len(rows)))
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


#: Runge–Kutta matrix: row i holds a_i0 … a_i,i−1 (``_lower`` pads it with zeros)
A = _lower([
    [],
    [0.05260015195876773],
    [0.0197250569845379, 0.0591751709536137],
    [0.02958758547680685, 0.0, 0.08876275643042054],
    [0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792],
    [0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242],
    [0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125],
    [0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402,
     0.008273789163814023],
    [0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671, 20.154067550477894,
     -43.48988418106996],
    [0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843, 21.230051448181193,
     15.279233632882423, -33.28821096898486, -0.020331201708508627],
    [-0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927, -18.52006565999696,
     22.739487099350505, 2.4936055526796523, -3.0467644718982196],
    [2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188, 27.94888452941996,
     -2.8589982771350235, -8.87285693353063, 12.360567175794303, 0.6433927460157636],
])
B = np.array([0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
              0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259])
C = np.array([0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726, 0.3333333333333333,
              0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571, 1.0])
E3 = np.array([-0.18980075407240762, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
               -0.4226823213237919, -0.1521609496625161, 0.20136540080403034, 0.02265179219836082])
E5 = np.array([0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502, 1.6643771824549864,
               -0.35032884874997366, 0.3341791187130175, 0.08192320648511571, -0.022355307863886294])
STAGES = 12
ORDER = 8
#: order of the local error the combined estimate behaves like (step-size exponent −1/ERROR_ORDER)
ERROR_ORDER = 8
#: h·|λ| on the stability boundary of DOP853 along the negative real axis (Hairer's dop853.f)
STABILITY = 6.1
#: An accepted step's 5th-order estimate stays below 72 (scaled) on the benchmark workload down to
#: rtol = 1e-10; an unstable step has e₃ ≫ e₅ ≫ 1, where Hairer's combination ≈ 10e₅²/e₃ can be tiny
#: (a B-GR run accepted a blow-up that way): the error is taken as at least e₅/E5_MAX.
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
