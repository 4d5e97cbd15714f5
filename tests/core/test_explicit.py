"""dln.explicit and the explicit start of ``flow``: DOP853 on the reduced state, then ROS34PW2 once stiff.

Oracles, independent of the code under test: the Runge–Kutta order conditions (row sums, quadrature
conditions Σ b_i c_i^(q−1) = 1/q) checked on the arrays; fixed-step integrations of small nonlinear
ODEs with closed-form solutions (y' = y², y' = 1 + y², a rotation at the speed 1 + |p|²) for the
observed orders of the step and of its embedded differences; Hairer's combined error written out
here; ``flow(explicit_start=False)`` (ROS34PW2 alone, itself tested in test_integrate.py) and
analysis.predict.mirror_argmin (docs/theory.md §4) for the limits; runs integrated one at a time for
the mixed batches.
"""
import math

import numpy as np
import pytest
from scipy.integrate import DOP853

from analysis.predict import mirror_argmin
from dln import explicit as dop
from dln import methods
from dln.integrate import flow
from dln.model import initial_state
from dln.problem import Problem

from .oracles import rel, sparse_data, sparse_problem


# =============================================================================================
# 1. the tableau and the step
# =============================================================================================
class Closed:
    """A fake system for ``dop.step``: two rows of two components, each with a closed-form solution.

    Row 0: y' = y², w' = 1 + w² from (1, 0): (1/(1 − t), tan t).  Row 1: the rotation p' = −r q,
    q' = r p with r = 1 + p² + q², constant along the path: from (1, 0), (cos 2t, sin 2t).
    """

    calls = 0

    def rates(self, Y, out):
        Closed.calls += 1
        out[0, 0] = Y[0, 0] ** 2
        out[0, 1] = 1.0 + Y[0, 1] ** 2
        r = 1.0 + Y[1, 0] ** 2 + Y[1, 1] ** 2
        out[1, 0] = -r * Y[1, 1]
        out[1, 1] = r * Y[1, 0]
        return None


Y0 = np.array([[1.0, 0.0], [1.0, 0.0]])
ULP = np.finfo(np.float64).eps


def f(Y):
    out = np.empty_like(Y)
    Closed().rates(Y, out)
    return out


def exact(t):
    """The solutions at the times t (one per row)."""
    return np.array([[1.0 / (1.0 - t[0]), np.tan(t[0])], [np.cos(2.0 * t[1]), np.sin(2.0 * t[1])]])


def one_step(Y, h):
    return dop.step(Closed(), Y, f(Y), h, np.empty((dop.STAGES,) + Y.shape), np.empty_like(Y))


def slopes(errors):
    """log2 of the error ratios on halving h (rows: successive h; columns: rows of the batch)."""
    errors = np.asarray(errors)
    return np.log2(errors[:-1] / errors[1:])


def test_coefficients_are_scipys_dop853_digit_for_digit():
    """dln.explicit writes DOP853's table out (importing scipy.integrate costs 0.3-0.6 s at start-up):
    every coefficient equals SciPy's, bit for bit."""
    np.testing.assert_array_equal(dop.A, DOP853.A)
    np.testing.assert_array_equal(dop.B, DOP853.B)
    np.testing.assert_array_equal(dop.C, DOP853.C)
    np.testing.assert_array_equal(dop.E3, DOP853.E3[:-1])
    np.testing.assert_array_equal(dop.E5, DOP853.E5[:-1])


def test_tableau_satisfies_the_order_conditions_of_its_quadrature():
    """Explicit (A strictly lower triangular), Σ_j A_ij = C_i, Σ B = 1, and the quadrature conditions
    Σ_i B_i C_i^(q−1) = 1/q for q = 1 … 8 (necessary for order 8) but not for q = 9.  The error
    weights are differences of two consistent weight vectors (Σ E = 0), and the 13th (FSAL) weights
    that the module drops are 0 in SciPy's table."""
    A, B, C = dop.A, dop.B, dop.C
    assert A.shape == (dop.STAGES, dop.STAGES) and B.shape == C.shape == dop.E5.shape == dop.E3.shape == (dop.STAGES,)
    assert np.all(np.triu(A) == 0.0)
    # exact sums (fsum) of coefficients that are rounded to float64: within a few ulps of their size
    for i in range(dop.STAGES):
        assert abs(math.fsum(A[i]) - C[i]) <= 4 * ULP * np.abs(A[i]).sum(), i
    assert C[0] == 0.0 and C[-1] == 1.0
    assert abs(math.fsum(B) - 1.0) <= 4 * ULP * np.abs(B).sum()
    for q in range(1, dop.ORDER + 1):
        assert abs(math.fsum(B * C ** (q - 1)) - 1.0 / q) <= 4 * ULP * np.abs(B).sum(), q
    assert abs(math.fsum(B * C ** dop.ORDER) - 1.0 / (dop.ORDER + 1)) > 1e-6
    for E in (dop.E5, dop.E3):
        assert abs(math.fsum(E)) <= 4 * ULP * np.abs(E).sum()
    assert DOP853.E5[-1] == 0.0 and DOP853.E3[-1] == 0.0


def test_step_has_order_8():
    """Fixed steps over [0, T] (T = 0.9 near the blow-up of 1/(1 − t); T = 6 for the rotation, a
    different h per row): the global error drops by ≈ 2^8 when h halves."""
    T = np.array([0.9, 6.0])
    errors = []
    for N in (32, 64, 128):
        Y = Y0.copy()
        for _ in range(N):
            Y = one_step(Y, T / N)[0]
        errors.append(np.max(np.abs(Y - exact(T)), axis=1))
    p = slopes(errors)
    assert np.all((p >= 7.5) & (p <= 8.7)), (p, errors)


def test_embedded_differences_are_the_local_errors_of_orders_5_and_3():
    """One step of h, h/2, …: h·Σ E5_i K_i = O(h⁶) and h·Σ E3_i K_i = O(h⁴) (the local errors of the
    embedded 5th- and 3rd-order formulas), and they are not zero."""
    H = np.array([0.1, 0.2])
    e5, e3 = [], []
    for j in range(5):
        _, d5, d3, _, _ = one_step(Y0, H / 2 ** j)
        e5.append(np.linalg.norm(d5, axis=1))
        e3.append(np.linalg.norm(d3, axis=1))
    p5, p3 = slopes(e5), slopes(e3)
    assert np.all((p5 >= 5.6) & (p5 <= 6.5)), p5
    assert np.all((p3 >= 3.7) & (p3 <= 4.4)), p3
    # the 5th-order estimate is the smaller one where both are asymptotic
    assert np.all(np.asarray(e5)[1:] < np.asarray(e3)[1:])


def test_step_returns_the_stage_at_c_1_and_its_rate():
    """The 4th and 5th returned arrays: a stage Y12 that approximates y(t + h) (its error drops by
    ≥ 2^4.5 when h halves: the stage at c = 1; any other node would leave an O(h) error) and exactly
    f(Y12), recomputed here.  It is not the new point y1 (a different, lower-order formula)."""
    H = np.array([0.1, 0.2])
    errors = []
    for j in range(1, 5):
        h = H / 2 ** j
        y1, _, _, Y12, F12 = one_step(Y0, h)
        np.testing.assert_array_equal(F12, f(Y12))
        assert np.any(Y12 != y1)
        errors.append(np.linalg.norm(Y12 - exact(h), axis=1))
    p = slopes(errors)
    assert np.all(p >= 4.5), p


def test_step_evaluates_the_rates_eleven_times():
    """12 stages with K_1 = f(Y) given: 11 new evaluations per step (what ``flow`` counts in n_evals)."""
    Closed.calls = 0
    one_step(Y0, np.array([0.1, 0.1]))
    assert Closed.calls == 1 + dop.STAGES - 1  # f(Y0) in one_step, then the stages


# =============================================================================================
# 2. the combined error estimate
# =============================================================================================
def hairer(e5, e3):
    """e5²/√(e5² + 0.01·e3²) (Hairer's dop853.f), written out in the safe form e5·(e5/hypot(e5, e3/10))."""
    return e5 * (e5 / np.hypot(e5, 0.1 * e3))


def test_error_is_zero_for_zero_differences():
    assert dop.error(np.array([0.0]), np.array([0.0]))[0] == 0.0
    np.testing.assert_array_equal(dop.error(np.zeros(3), np.array([0.0, 1.0, 1e100])), np.zeros(3))


@pytest.mark.parametrize("e5,e3", [(np.nan, 1.0), (1.0, np.nan), (np.inf, 1.0), (1.0, np.inf), (np.inf, np.inf),
                                   (0.0, np.inf), (1e200, 1e200)])
def test_error_is_inf_when_a_difference_is_not_finite_or_overflows(e5, e3):
    """A failed stage must fail the step: e5²/∞ = 0 would accept it.  An overflowing e5² + 0.01e3²
    (1e200 each) too."""
    assert dop.error(np.array([e5]), np.array([e3]))[0] == np.inf


def test_error_is_hairers_estimate_in_the_normal_regime():
    rng = np.random.default_rng(0)
    e5 = 10.0 ** rng.uniform(-12, 2, 200)
    e3 = e5 * 10.0 ** rng.uniform(-3, 2.9, 200)  # e3/e5 < 10·E5_MAX: the guard does not bind
    np.testing.assert_allclose(dop.error(e5, e3), hairer(e5, e3), rtol=1e-14, atol=0)
    # e3 = 0: the 5th-order estimate itself
    np.testing.assert_allclose(dop.error(e5, np.zeros_like(e5)), e5, rtol=1e-15, atol=0)


def test_error_is_never_below_e5_over_E5_MAX():
    """Where e3 ≫ e5 the combined estimate e5²/(0.1·e3) vanishes; the guard keeps e5/E5_MAX (the
    5th-order estimate cannot be more than E5_MAX times too pessimistic)."""
    rng = np.random.default_rng(1)
    e5 = 10.0 ** rng.uniform(-12, 2, 200)
    e3 = e5 * 10.0 ** rng.uniform(-3, 30, 200)
    err = dop.error(e5, e3)
    assert np.all(err >= e5 / dop.E5_MAX)
    np.testing.assert_allclose(err, np.maximum(hairer(e5, e3), e5 / dop.E5_MAX), rtol=1e-14, atol=0)
    big = e3 > 1e4 * e5
    np.testing.assert_allclose(err[big], e5[big] / dop.E5_MAX, rtol=1e-15, atol=0)


def test_error_rejects_the_blow_up_case():
    """A blowing-up stage can give e5 = 1e40 with e3 = 1e92: Hairer's formula says 1e-11 (accept), the
    guard says 1e38 (reject)."""
    assert hairer(1e40, 1e92) < 1.0
    assert dop.error(np.array([1e40]), np.array([1e92]))[0] > 1.0


# =============================================================================================
# 3. flow: both starts reach the same limit; who starts explicitly
# =============================================================================================
GAMMA = np.array([0.05, 0.2, 0.1])
EPS = np.array([0.1, 0.03, 0.2])
RHO = np.array([0.05, 0.1, 0.02])
ALPHA = np.array([0.1, 0.3, 0.2])
SMOOTH = [("gf", "full"), ("gr", "full"), ("gr", "per-sample"), ("fgr", "full"), ("fgr", "per-sample"),
          ("bgr", "full"), ("bgr", "per-sample"), ("cgr", "full"), ("cgr", "per-sample"), ("usam", "full"),
          ("usam", "per-sample")]
FAST = [("gf", "full"), ("fgr", "per-sample"), ("usam", "full")]
RTOL = 1e-10


def params_for(method, problem):
    L0 = problem.loss(np.zeros(problem.d))
    return {"gf": {}, "gr": dict(gamma=GAMMA), "fgr": dict(gamma=GAMMA, eps=EPS), "bgr": dict(gamma=GAMMA, eps=EPS),
            "cgr": dict(gamma=GAMMA, eps=EPS), "usam": dict(rho=RHO), "sam": dict(rho=RHO),
            "flood": dict(flood_level=np.array([0.0, 0.3, 2.0]) * L0)}[method]


def both_starts(method, variant, **kw):
    P = sparse_problem(6, 12, k=2, seed=3)
    direction = methods.make(method, P, variant=variant, **params_for(method, P))
    runs = [flow(direction, initial_state(P.d, 3, alpha=ALPHA), explicit_start=ex, **kw) for ex in (True, False)]
    return P, runs


@pytest.mark.parametrize("method,variant", [pytest.param(m, v, marks=() if (m, v) in FAST else pytest.mark.slow)
                                            for m, v in SMOOTH])
def test_explicit_start_reaches_the_limit_of_the_w_method(method, variant):
    """rtol = 1e-10: both starts converge, to the same β∞ within a few rtol, the explicit one to the
    mirror-descent limit argmin φ_c of its own ln c (docs/theory.md §4); the explicit start was used
    (explicit_steps > 0) and left (explicit_steps < steps: the tail of a converging run is stiff);
    ROS34PW2 alone takes no explicit step.  ln c∞ is compared more loosely: its local errors (a few
    rtol per step) add up along the path (measured ≤ 2.4e-9 here), while β∞ is insensitive to ln c
    on the coordinates where β is small."""
    P, (ex, ros) = both_starts(method, variant, rtol=RTOL)
    assert list(ex.status) == list(ros.status) == ["converged"] * 3
    assert np.all(ex.info["explicit_steps"] > 0)
    assert np.all(ex.info["explicit_steps"] < ex.steps)
    np.testing.assert_array_equal(ros.info["explicit_steps"], 0)
    for i in range(3):
        assert rel(ex.beta[i], ros.beta[i]) <= 5 * RTOL, (i, rel(ex.beta[i], ros.beta[i]))
        assert np.max(np.abs(ex.log_c[i] - ros.log_c[i])) <= 100 * RTOL
        pred = mirror_argmin(P.X, P.y, log_c=ex.log_c[i])
        assert rel(ex.beta[i], pred.beta) <= 5 * RTOL


@pytest.mark.parametrize("method,variant,t_max", [("sam", "full", 0.5), ("sam", "per-sample", 0.02),
                                                  ("flood", "full", 0.5)])
def test_discontinuous_flows_never_start_explicitly(method, variant, t_max):
    """Normalized SAM (ρ∇L/‖∇L‖) and flooding (sign(L − b)) are not smooth: an order-8 pair would
    step across their switches; they go to ROS34PW2 from the start, and the result is the one of
    explicit_start=False bit for bit."""
    _, (ex, ros) = both_starts(method, variant, rtol=1e-8, t_max=t_max)
    np.testing.assert_array_equal(ex.info["explicit_steps"], 0)
    assert np.all(ex.steps > 0)
    np.testing.assert_array_equal(ex.beta, ros.beta)
    np.testing.assert_array_equal(ex.steps, ros.steps)


@pytest.mark.parametrize("D,state_form", [(2, "general"), (3, "auto"), (3, "general")])
def test_general_form_never_starts_explicitly(D, state_form):
    P = sparse_problem(6, 12, k=2, seed=3)
    direction = methods.fgr(P, gamma=0.05, eps=0.1, D=D)
    res = flow(direction, initial_state(P.d, 2, alpha=np.array([0.1, 0.3])), rtol=1e-8, t_max=1.0,
               state_form=state_form)
    assert res.info["state_form"] == "general"
    assert np.all(res.steps > 0)
    np.testing.assert_array_equal(res.info["explicit_steps"], 0)


def test_explicit_steps_counts_only_the_steps_kept(monkeypatch):
    """With the switch to ROS34PW2 disabled, every accepted step is explicit: explicit_steps == steps,
    also when ``flow`` takes back overshooting steps (provoked as in tests/reliability/test_statuses.py
    by a blind error estimate: every step is accepted and h grows 10× per step)."""
    import dln.integrate
    import dln.reduced

    def blind(self, E, *point):
        zero = np.zeros(E.shape[0])
        return zero, zero

    monkeypatch.setattr(dln.reduced.ReducedSystem, "error_parts", blind)
    for name in ("STIFF_HITS", "STIFF_REJECTS", "STIFF_STEPS"):
        monkeypatch.setattr(dln.integrate, name, 10 ** 9)
    P = sparse_problem(6, 12, k=2, seed=3)
    res = flow(methods.gf(P), initial_state(P.d, 3, alpha=np.array([1e-3, 0.1, 1.0])), rtol=1e-8, max_steps=200)
    assert np.all(res.rejected > 0)  # steps were taken back
    np.testing.assert_array_equal(res.info["explicit_steps"], res.steps)


# =============================================================================================
# 4. mixed batches: the explicit-first reordering keeps each run its own
# =============================================================================================
def test_mixed_batch_equals_the_runs_alone():
    """A stack that starts with normalized SAM (ROS34PW2 throughout), then smooth runs of both
    variants that leave DOP853 at different steps: in each variant's group the rows are reordered
    explicit-first at the start and again at each switch.  Every run equals the run integrated alone,
    with the same status, steps, rejected steps and explicit steps (sam is cut by max_steps, the
    others converge): the smooth runs to round-off; the sam runs to 1e-10, because their
    discontinuous right-hand side amplifies the round-off of the shared products (they differ by as
    much with explicit_start=False, where nothing is reordered).  A mixed-up row would be off by O(1)."""
    P = sparse_problem(6, 12, k=2, seed=3)
    spec = [("sam", "full", dict(rho=np.array([0.05, 0.02])), [0.2, 0.1]),
            ("gf", "full", {}, [0.15]),
            ("fgr", "per-sample", dict(gamma=np.array([0.2, 0.05, 0.1]), eps=np.array([0.03, 0.1, 0.2])),
             [0.1, 0.4, 0.2]),
            ("fgr", "full", dict(gamma=0.1, eps=0.1), [0.25]),
            ("usam", "full", dict(rho=0.05), [0.3])]
    members = [(methods.make(m, P, variant=v, **kw), len(al)) for m, v, kw, al in spec]
    alpha = np.concatenate([al for *_, al in spec])
    kw = dict(rtol=1e-9, max_steps=600)
    res = flow(methods.stack(members), initial_state(P.d, alpha.size, alpha=alpha), **kw)
    row = 0
    for m, v, hp, al in spec:
        for j, a in enumerate(al):
            one = {k: (x[j] if np.ndim(x) else x) for k, x in hp.items()}
            alone = flow(methods.make(m, P, variant=v, **one), initial_state(P.d, 1, alpha=a), **kw)
            assert res.status[row] == alone.status[0] == ("max_steps" if m == "sam" else "converged"), (m, j)
            assert res.steps[row] == alone.steps[0] and res.rejected[row] == alone.rejected[0], (m, j)
            assert res.info["explicit_steps"][row] == alone.info["explicit_steps"][0], (m, j)
            assert (alone.info["explicit_steps"][0] == 0) == (m == "sam")
            tol = 1e-10 if m == "sam" else 1e-12
            assert rel(res.beta[row], alone.beta[0]) <= tol, (m, j, rel(res.beta[row], alone.beta[0]))
            assert rel(res.log_c[row], alone.log_c[0]) <= tol, (m, j)
            row += 1
    # the smooth runs switched at different steps: the reorders after the first switch mattered
    ex = res.info["explicit_steps"][res.info["explicit_steps"] > 0]
    assert ex.size == alpha.size - 2 and np.unique(ex).size > 1


def test_batch_of_runs_switching_one_after_another_equals_the_runs_alone():
    """Ten F-GR runs whose γ spreads their switches over many steps: at each switch the rows behind
    the switched one move up, with their per-run state (step size, Jacobian age, the count of
    consecutive stability-limited steps, …).  Each equals its run alone to round-off, with the same
    steps and explicit steps."""
    P = sparse_problem(6, 12, k=2, seed=3)
    gamma = np.geomspace(0.02, 0.3, 10)
    res = flow(methods.fgr(P, gamma=gamma, eps=0.1, variant="per-sample"), initial_state(P.d, 10, alpha=0.2),
               rtol=1e-9)
    assert np.unique(res.info["explicit_steps"]).size > 3
    for i, g in enumerate(gamma):
        alone = flow(methods.fgr(P, gamma=g, eps=0.1, variant="per-sample"), initial_state(P.d, 1, alpha=0.2),
                     rtol=1e-9)
        assert res.status[i] == alone.status[0] == "converged"
        assert res.steps[i] == alone.steps[0] and res.info["explicit_steps"][i] == alone.info["explicit_steps"][0], i
        assert rel(res.beta[i], alone.beta[0]) <= 1e-12, i


# =============================================================================================
# 5. runs that are stiff from the start
# =============================================================================================
X_BASE, Y_BASE, _ = sparse_data(6, 12, k=2, seed=3)
NORMAL = Problem(X_BASE, Y_BASE)
SCALED = Problem(30.0 * X_BASE, Y_BASE)  # features ×30: rates 900× faster, the interpolators 30× smaller


@pytest.mark.parametrize("problem,alpha,method,variant", [
    (SCALED, 0.1, "gf", "full"), pytest.param(SCALED, 0.1, "fgr", "full", marks=pytest.mark.slow),
    (NORMAL, 3.0, "gf", "per-sample"), (NORMAL, 3.0, "fgr", "per-sample"), (NORMAL, 10.0, "usam", "full")])
def test_stiff_runs_switch_early_and_reach_their_limit(problem, alpha, method, variant):
    """Large features or a large α (the lazy regime, where the flow is nearly linear and its fast
    modes decay at once): the run leaves the explicit pair within a few dozen steps (a run of
    NORMAL at α ≤ 0.3 takes 25–65) and still converges to argmin φ_c of its own ln c
    (docs/theory.md §4), as ROS34PW2 alone does."""
    hp = dict(gamma=0.05, eps=0.1) if method == "fgr" else dict(rho=0.05) if method == "usam" else {}
    direction = methods.make(method, problem, variant=variant, **hp)
    res = flow(direction, initial_state(problem.d, 1, alpha=alpha), rtol=RTOL)
    assert res.status[0] == "converged"
    assert 0 < res.info["explicit_steps"][0] <= 40 and res.info["explicit_steps"][0] < res.steps[0]
    pred = mirror_argmin(problem.X, problem.y, log_c=res.log_c[0])
    assert rel(res.beta[0], pred.beta) <= 5 * RTOL
    ros = flow(direction, initial_state(problem.d, 1, alpha=alpha), rtol=RTOL, explicit_start=False)
    assert rel(res.beta[0], ros.beta[0]) <= 10 * RTOL
