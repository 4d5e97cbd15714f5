"""dln.methods: every direction against its definition (docs/theory.md §1, §4, §7.1–7.7, §8).

A direction returns log-rates da = u̇/u, db = v̇/v, so the velocity in w = (u, v) is
(u⊙da, v⊙db) and must equal −G(w) for the method's update direction G.  The oracles:

- gf, gr (full and per-sample; depth 3 as well): G = ∇F for an objective F written here
  (L, L + (γ/2)‖∇_w L‖², (1/n)Σ[ℓ_i + (γ/2)‖∇_w ℓ_i‖²]), ∇F by central finite differences;
- fgr, bgr, cgr, usam, sam, flood: G built from the definition with ∇L (or ∇ℓ_i) evaluated
  at perturbed points w + ε∇L (docs/theory.md §7.3, §7.5, §8, §7.9), with the analytic ∇_w L of
  oracles.py, itself checked against finite differences below;
- the gain integrands against docs/theory.md's formulas, and the identity da + db = −gain_coef·gain.

States: log u, log v ~ N(−0.5, 0.4) on n = 6, d = 9, three runs with per-run hyper-parameters.
"""
import numpy as np
import pytest

from dln import methods
from dln.errors import DLNError
from dln.model import State

from .oracles import fd_grad, grad_beta, grad_w, grad_w_example, loss_uv, random_state, rel, sparse_problem, uv

GAMMA = np.array([0.05, 0.2, 0.1])
EPS = np.array([0.1, 0.03, 0.2])
RHO = np.array([0.05, 0.1, 0.02])
FD_RTOL = 1e-7
DEF_RTOL = 1e-11

ALL = [("gf", "full"), ("gf", "per-sample"), ("gr", "full"), ("gr", "per-sample"),
       ("fgr", "full"), ("fgr", "per-sample"), ("bgr", "full"), ("bgr", "per-sample"),
       ("cgr", "full"), ("cgr", "per-sample"), ("usam", "full"), ("usam", "per-sample"),
       ("sam", "full"), ("sam", "per-sample"), ("flood", "full")]


def params_for(method, flood_level=None):
    return {"gf": {}, "gr": dict(gamma=GAMMA), "fgr": dict(gamma=GAMMA, eps=EPS),
            "bgr": dict(gamma=GAMMA, eps=EPS), "cgr": dict(gamma=GAMMA, eps=EPS),
            "usam": dict(rho=RHO), "sam": dict(rho=RHO), "flood": dict(flood_level=flood_level)}[method]


def velocity(rates, state):
    """(u̇, v̇) = (u⊙da, v⊙db) from the log-rates."""
    u, v = uv(state)
    return rates.da * u, rates.db * v


def wsplit(w, d):
    return w[:d], w[d:]


# ---------------------------------------------------------------------------------------------
# reference update directions G(w) for one run (D = 2 unless stated)
# ---------------------------------------------------------------------------------------------
def G_full_at(X, y, u, v):
    gu, gv = grad_w(X, y, u, v)
    return np.concatenate([gu, gv])


def grads_examples(X, y, u, v):
    """Rows i: ∇_w ℓ_i(w), shape (n, 2d)."""
    return np.array([np.concatenate(grad_w_example(X, y, u, v, i)) for i in range(X.shape[0])])


def grad_example_at(X, y, w, i):
    d = X.shape[1]
    return np.concatenate(grad_w_example(X, y, w[:d], w[d:], i))


def G_reference(method, variant, X, y, u, v, gamma=None, eps=None, rho=None, flood_level=None):
    """The method's update direction G(w) (velocity is −G), from its definition."""
    d = X.shape[1]
    n = X.shape[0]
    w = np.concatenate([u, v])
    grad = lambda w_: G_full_at(X, y, *wsplit(w_, d))  # noqa: E731
    if method == "flood":
        return np.sign(loss_uv(X, y, u, v) - flood_level) * grad(w)
    if method in ("fgr", "bgr", "cgr", "usam", "sam"):
        if method == "usam":
            gamma = eps = rho
        if variant == "full":
            g0 = grad(w)
            if method == "sam":
                return grad(w + rho * g0 / np.linalg.norm(g0))
            if method == "cgr":
                return g0 + gamma / (2 * eps) * (grad(w + eps * g0) - grad(w - eps * g0))
            e = -eps if method == "bgr" else eps
            return (1 - gamma / e) * g0 + (gamma / e) * grad(w + e * g0)
        total = np.zeros(2 * d)
        for i in range(n):
            gi = grad_example_at(X, y, w, i)
            if method == "sam":
                total += grad_example_at(X, y, w + rho * gi / np.linalg.norm(gi), i)
            elif method == "cgr":
                total += gi + gamma / (2 * eps) * (grad_example_at(X, y, w + eps * gi, i)
                                                   - grad_example_at(X, y, w - eps * gi, i))
            else:
                e = -eps if method == "bgr" else eps
                total += (1 - gamma / e) * gi + (gamma / e) * grad_example_at(X, y, w + e * gi, i)
        return total / n
    raise AssertionError(method)


def objective(method, variant, X, y, gamma=0.0, D=2):
    """F(w) whose gradient is the direction of gf / gr."""
    d = X.shape[1]
    n = X.shape[0]

    def F(w):
        u, v = wsplit(w, d)
        if method == "gf":
            return loss_uv(X, y, u, v, D)
        if variant == "full":
            gu, gv = grad_w(X, y, u, v, D)
            return loss_uv(X, y, u, v, D) + 0.5 * gamma * (gu @ gu + gv @ gv)
        total = 0.0
        for i in range(n):
            r_i = X[i] @ (u * u - v * v) - y[i]
            gu, gv = grad_w_example(X, y, u, v, i)
            total += 0.5 * r_i * r_i + 0.5 * gamma * (gu @ gu + gv @ gv)
        return total / n
    return F


def gain_reference(method, variant, X, y, u, v, gamma=None, eps=None, rho=None):
    """Gain integrand of docs/theory.md §4 table / §7.2, §7.3, §7.5, §8 (ln c' = −coef·gain)."""
    n = X.shape[0]
    d = X.shape[1]
    beta = u * u - v * v
    r = X @ beta - y
    g = grad_beta(X, y, beta)
    if method == "flood":
        return np.zeros(d)
    if variant == "per-sample" and method in ("gf", "gr"):
        return (X * X).T @ (r * r) / n
    if variant == "full" and method in ("gf", "gr"):
        return g * g

    def beta_at(w_):
        uu, vv = wsplit(w_, d)
        return uu * uu - vv * vv

    w = np.concatenate([u, v])
    if variant == "full":
        g0 = G_full_at(X, y, u, v)
        if method == "sam":
            e = rho / np.linalg.norm(g0)
            return (e / rho) * g * grad_beta(X, y, beta_at(w + e * g0))
        if method == "usam":
            return g * grad_beta(X, y, beta_at(w + rho * g0))
        if method == "cgr":
            return g * 0.5 * (grad_beta(X, y, beta_at(w + eps * g0)) + grad_beta(X, y, beta_at(w - eps * g0)))
        e = -eps if method == "bgr" else eps
        return g * grad_beta(X, y, beta_at(w + e * g0))
    # per-sample: (1/n) Σ_i x_i² r_i r̃_i (docs/theory.md §7.5, §8), r̃_i at w + ε_i ∇ℓ_i
    total = np.zeros(d)
    for i in range(n):
        gi = grad_example_at(X, y, w, i)

        def rt(e):
            return X[i] @ beta_at(w + e * gi) - y[i]
        if method == "sam":
            e = rho / np.linalg.norm(gi)
            total += X[i] ** 2 * r[i] * rt(e) * (e / rho)
        elif method == "usam":
            total += X[i] ** 2 * r[i] * rt(rho)
        elif method == "cgr":
            total += X[i] ** 2 * r[i] * 0.5 * (rt(eps) + rt(-eps))
        else:
            total += X[i] ** 2 * r[i] * rt(-eps if method == "bgr" else eps)
    return total / n


def run_param(p, i):
    return None if p is None else (p[i] if np.ndim(p) else p)


def flood_levels(problem, state):
    """Per-run flood levels: below L (descent), above L (ascent), below L."""
    L = np.array([loss_uv(problem.X, problem.y, *[x[i] for x in uv(state)]) for i in range(3)])
    return np.array([0.0, 10.0 * L[1], 0.5 * L[2]])


# ---------------------------------------------------------------------------------------------
# the oracle's own gradient, then gf / gr against finite differences of their objectives
# ---------------------------------------------------------------------------------------------
def test_oracle_gradient_matches_finite_differences(tiny):
    X, y = tiny.X, tiny.y
    st = random_state(1, tiny.d, 7)
    u, v = [x[0] for x in uv(st)]
    w = np.concatenate([u, v])
    fd = fd_grad(objective("gf", "full", X, y), w)
    assert rel(G_full_at(X, y, u, v), fd) < FD_RTOL
    for i in range(X.shape[0]):
        def li(w_, i=i):
            uu, vv = wsplit(w_, tiny.d)
            r_i = X[i] @ (uu * uu - vv * vv) - y[i]
            return 0.5 * r_i * r_i
        assert rel(grad_example_at(X, y, w, i), fd_grad(li, w)) < FD_RTOL


@pytest.mark.parametrize("method,variant", [("gf", "full"), ("gf", "per-sample"),
                                            ("gr", "full"), ("gr", "per-sample")])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_methods_against_finite_differences(tiny, method, variant, seed):
    X, y = tiny.X, tiny.y
    st = random_state(3, tiny.d, seed)
    direction = methods.make(method, tiny, variant=variant, **params_for(method))
    rates = direction(st)
    vu, vv = velocity(rates, st)
    U, V = uv(st)
    for i in range(3):
        gamma = GAMMA[i] if method == "gr" else 0.0
        fd = fd_grad(objective(method, variant, X, y, gamma), np.concatenate([U[i], V[i]]))
        assert rel(-np.concatenate([vu[i], vv[i]]), fd) < FD_RTOL, (method, variant, i)
        assert rates.loss[i] == pytest.approx(loss_uv(X, y, U[i], V[i]), rel=1e-13)


def test_hvp_along_the_gradient_against_finite_differences(tiny):
    """(gr − gf)/γ is H∇L (docs/theory.md §7.1): compare with [∇L(w + h∇L) − ∇L(w − h∇L)]/2h."""
    X, y = tiny.X, tiny.y
    st = random_state(3, tiny.d, 5)
    vgf = velocity(methods.gf(tiny)(st), st)
    vgr = velocity(methods.gr(tiny, gamma=GAMMA)(st), st)
    U, V = uv(st)
    for i in range(3):
        hvp = -(np.concatenate([vgr[0][i], vgr[1][i]]) - np.concatenate([vgf[0][i], vgf[1][i]])) / GAMMA[i]
        w = np.concatenate([U[i], V[i]])
        g0 = G_full_at(X, y, U[i], V[i])
        h = 1e-5 / np.linalg.norm(g0)
        fd = (G_full_at(X, y, *wsplit(w + h * g0, tiny.d)) - G_full_at(X, y, *wsplit(w - h * g0, tiny.d))) / (2 * h)
        assert rel(hvp, fd) < FD_RTOL
        # and the closed form of docs/theory.md §7.1: (H∇L)_u = 4u g² + 8u M(m g), (H∇L)_v = 4v g² − 8v M(m g)
        beta = U[i] ** 2 - V[i] ** 2
        g = grad_beta(X, y, beta)
        m = U[i] ** 2 + V[i] ** 2
        Mmg = X.T @ (X @ (m * g)) / X.shape[0]
        closed = np.concatenate([4 * U[i] * g * g + 8 * U[i] * Mmg, 4 * V[i] * g * g - 8 * V[i] * Mmg])
        assert rel(closed, fd) < FD_RTOL


# ---------------------------------------------------------------------------------------------
# finite-difference methods, SAM and flooding against their definitions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,variant", [mv for mv in ALL if mv[0] not in ("gf", "gr")])
@pytest.mark.parametrize("seed", [0, 1])
def test_perturbed_point_methods_against_definitions(tiny, method, variant, seed):
    X, y = tiny.X, tiny.y
    st = random_state(3, tiny.d, seed)
    fl = flood_levels(tiny, st) if method == "flood" else None
    P = params_for(method, fl)
    direction = methods.make(method, tiny, variant=variant, **P)
    rates = direction(st)
    vu, vv = velocity(rates, st)
    U, V = uv(st)
    for i in range(3):
        Pi = {k: run_param(v, i) for k, v in P.items()}
        G = G_reference(method, variant, X, y, U[i], V[i], **Pi)
        assert rel(-np.concatenate([vu[i], vv[i]]), G) < DEF_RTOL, (method, variant, i)
        if method != "flood":
            ref_gain = gain_reference(method, variant, X, y, U[i], V[i], **Pi)
            assert rel(rates.gain[i], ref_gain) < DEF_RTOL, (method, variant, i)


def test_flood_direction_signs(tiny):
    """Flood levels below L descend (= gf), above L ascend (= −gf) (docs/theory.md §7.9)."""
    st = random_state(3, tiny.d, 4)
    fl = flood_levels(tiny, st)
    rf = methods.flood(tiny, flood_level=fl)(st)
    rg = methods.gf(tiny)(st)
    np.testing.assert_array_equal(rf.da[[0, 2]], rg.da[[0, 2]])
    np.testing.assert_array_equal(rf.da[1], -rg.da[1])
    np.testing.assert_array_equal(rf.db[1], -rg.db[1])


@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_gr_gain_integrand(tiny, variant):
    """gr gains: g² and (1/n)Σ x_i² r_i² (docs/theory.md §7.2, §7.5); the others are checked with
    their definitions above."""
    X, y = tiny.X, tiny.y
    st = random_state(3, tiny.d, 8)
    rates = methods.gr(tiny, gamma=GAMMA, variant=variant)(st)
    U, V = uv(st)
    for i in range(3):
        assert rel(rates.gain[i], gain_reference("gr", variant, X, y, U[i], V[i])) < DEF_RTOL


@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_gf_gain_integrand(tiny, variant):
    X, y = tiny.X, tiny.y
    st = random_state(2, tiny.d, 9)
    rates = methods.gf(tiny, variant=variant)(st)
    U, V = uv(st)
    for i in range(2):
        assert rel(rates.gain[i], gain_reference("gf", variant, X, y, U[i], V[i])) < DEF_RTOL
    np.testing.assert_array_equal(rates.da + rates.db, 0.0)  # GF conserves u⊙v exactly


@pytest.mark.parametrize("method,variant", ALL)
def test_gain_identity(tiny, method, variant):
    """d ln(u⊙v)/dt = da + db = −gain_coef·gain for every method (docs/theory.md §4 lemma)."""
    st = random_state(3, tiny.d, 12)
    fl = flood_levels(tiny, st) if method == "flood" else None
    direction = methods.make(method, tiny, variant=variant, **params_for(method, fl))
    rates = direction(st)
    lhs = rates.da + rates.db
    rhs = -direction.gain_coef * rates.gain
    scale = np.max(np.abs(rates.da)) + np.max(np.abs(rates.db))
    assert np.max(np.abs(lhs - rhs)) <= 1e-13 * scale
    expected_coef = {"gf": 0 * GAMMA, "flood": 0 * GAMMA, "usam": 8 * RHO, "sam": 8 * RHO}.get(method, 8 * GAMMA)
    np.testing.assert_allclose(np.broadcast_to(direction.gain_coef, (3, 1))[:, 0], expected_coef, rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# depth 3 (docs/theory.md §2.3, §7.7)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gf", "gr"])
@pytest.mark.parametrize("signs", [False, True])
def test_depth3_against_finite_differences(tiny, method, signs):
    X, y = tiny.X, tiny.y
    st = random_state(3, tiny.d, 21, signs=signs)
    direction = methods.make(method, tiny, D=3, **params_for(method))
    rates = direction(st)
    vu, vv = velocity(rates, st)
    U, V = uv(st)
    for i in range(3):
        gamma = GAMMA[i] if method == "gr" else 0.0
        fd = fd_grad(objective(method, "full", X, y, gamma, D=3), np.concatenate([U[i], V[i]]))
        assert rel(-np.concatenate([vu[i], vv[i]]), fd) < FD_RTOL
        assert rates.loss[i] == pytest.approx(loss_uv(X, y, U[i], V[i], D=3), rel=1e-13)


def test_depth3_gr_penalty_gradient_formula_of_theory(tiny):
    """docs/theory.md §7.7: ∇_u ½‖∇L‖² = D²(D−1)u^{2D−3}g² + D³u^{D−1}M(m_D g), v mirrored, vs FD."""
    X, y = tiny.X, tiny.y
    n, d, D = tiny.n, tiny.d, 3
    st = random_state(1, d, 22, signs=True)
    u, v = [x[0] for x in uv(st)]

    def half_sq(w):
        uu, vv = wsplit(w, d)
        gu, gv = grad_w(X, y, uu, vv, D)
        return 0.5 * (gu @ gu + gv @ gv)
    fd = fd_grad(half_sq, np.concatenate([u, v]))
    g = grad_beta(X, y, u**D - v**D)
    mD = u ** (2 * D - 2) + v ** (2 * D - 2)
    Mmg = X.T @ (X @ (mD * g)) / n
    formula = np.concatenate([D * D * (D - 1) * u ** (2 * D - 3) * g * g + D**3 * u ** (D - 1) * Mmg,
                              D * D * (D - 1) * v ** (2 * D - 3) * g * g - D**3 * v ** (D - 1) * Mmg])
    assert rel(formula, fd) < FD_RTOL
    # and the code's gr at D = 3 is ∇L + γ·this
    rates = methods.gr(tiny, gamma=0.3, D=3)(st)
    vu, vv = velocity(rates, st)
    grad = np.concatenate(grad_w(X, y, u, v, D))
    assert rel(-np.concatenate([vu[0], vv[0]]), grad + 0.3 * formula) < 1e-12


@pytest.mark.parametrize("method", ["fgr", "usam", "sam"])
def test_depth3_perturbed_point_methods(tiny, method):
    """F-GR / SAM at depth 3: ∇L at w + ε∇L with the depth-3 gradient (definition, docs/theory.md §7.3)."""
    X, y = tiny.X, tiny.y
    d = tiny.d
    st = random_state(3, d, 23, signs=True)
    P = params_for(method)
    rates = methods.make(method, tiny, D=3, **P)(st)
    vu, vv = velocity(rates, st)
    U, V = uv(st)
    grad = lambda w_: np.concatenate(grad_w(X, y, *wsplit(w_, d), 3))  # noqa: E731
    for i in range(3):
        w = np.concatenate([U[i], V[i]])
        g0 = grad(w)
        if method == "fgr":
            G = (1 - GAMMA[i] / EPS[i]) * g0 + GAMMA[i] / EPS[i] * grad(w + EPS[i] * g0)
        elif method == "usam":
            G = grad(w + RHO[i] * g0)
        else:
            G = grad(w + RHO[i] * g0 / np.linalg.norm(g0))
        assert rel(-np.concatenate([vu[i], vv[i]]), G) < DEF_RTOL


# ---------------------------------------------------------------------------------------------
# finite-difference GR → exact GR (docs/theory.md §7.3), usam = fgr(γ = ε = ρ) (§8)
# ---------------------------------------------------------------------------------------------
EPS_GRID = np.array([1e-2, 5e-3, 2.5e-3])


def _rates_vec(direction, st):
    R = direction(st)
    return np.concatenate([R.da[0], R.db[0]]), R


@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_fd_gr_converges_to_gr_with_rates_1_1_2(tiny, variant):
    st = random_state(1, tiny.d, 31)
    gamma = 0.1
    ref, _ = _rates_vec(methods.gr(tiny, gamma, variant=variant), st)
    err = {m: [] for m in ("fgr", "bgr", "cgr")}
    diffs = {m: [] for m in ("fgr", "bgr")}
    for e in EPS_GRID:
        for m in err:
            vec, _ = _rates_vec(methods.make(m, tiny, variant=variant, gamma=gamma, eps=e), st)
            err[m].append(np.linalg.norm(vec - ref))
            if m in diffs:
                diffs[m].append(vec - ref)
    slope = {m: np.polyfit(np.log(EPS_GRID), np.log(err[m]), 1)[0] for m in err}
    assert 0.95 < slope["fgr"] < 1.05, slope
    assert 0.95 < slope["bgr"] < 1.05, slope
    assert 1.9 < slope["cgr"] < 2.1, slope
    for k in range(len(EPS_GRID)):
        f, b = diffs["fgr"][k], diffs["bgr"][k]
        # opposite O(ε) deviations: cos ≈ −1 and the sum is O(ε²), i.e. O(ε) relative to each
        cos = f @ b / (np.linalg.norm(f) * np.linalg.norm(b))
        assert cos < -0.99
        assert np.linalg.norm(f + b) < 20 * EPS_GRID[k] * np.linalg.norm(f)


@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_fgr_gain_exceeds_gr_exceeds_bgr_m_weighted(tiny, variant):
    """docs/theory.md §7.3 / §7.5: the O(ε) gain correction has the sign of ε (F > GR > B)."""
    st = random_state(1, tiny.d, 32)
    u, v = [x[0] for x in uv(st)]
    m = u * u + v * v
    gain = {}
    for meth in ("gr", "fgr", "bgr"):
        kw = dict(gamma=0.1) if meth == "gr" else dict(gamma=0.1, eps=0.05)
        gain[meth] = methods.make(meth, tiny, variant=variant, **kw)(st).gain[0]
    if variant == "full":
        F, G, B = (m @ gain[k] for k in ("fgr", "gr", "bgr"))
        assert F > G > B
    else:  # coordinate-wise, no condition (κ_i > 0)
        assert np.all(gain["fgr"] >= gain["gr"]) and np.all(gain["gr"] >= gain["bgr"])


@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_usam_equals_fgr_with_gamma_eq_eps_eq_rho(tiny, variant):
    st = random_state(3, tiny.d, 33)
    ru = methods.usam(tiny, rho=RHO, variant=variant)(st)
    dir_f = methods.fgr(tiny, gamma=RHO, eps=RHO, variant=variant)
    rf = dir_f(st)
    for x, y_ in ((ru.da, rf.da), (ru.db, rf.db)):
        assert np.max(np.abs(x - y_)) <= 1e-13 * np.max(np.abs(y_))
    dir_u = methods.usam(tiny, rho=RHO, variant=variant)
    np.testing.assert_allclose(dir_u.gain_coef * ru.gain, dir_f.gain_coef * rf.gain, rtol=1e-12, atol=1e-300)


# ---------------------------------------------------------------------------------------------
# edge cases and validation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_sam_at_a_stationary_point_is_zero_without_warnings(variant):
    """Where ∇L = 0 the normalised ascent is 0 (the guard), no division warning escapes."""
    from dln.problem import Problem
    X = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    P = Problem(X, np.zeros(2))
    st = State(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3)), np.ones((2, 3)))  # u = v = 1, β = 0
    R = methods.sam(P, rho=np.array([0.1, 0.2]), variant=variant)(st)
    for arr in (R.da, R.db, R.gain):
        assert np.all(np.isfinite(arr))
        np.testing.assert_array_equal(arr, 0.0)


def test_scalar_and_per_run_hyper_parameters_agree(tiny):
    st = random_state(3, tiny.d, 40)
    batched = methods.fgr(tiny, gamma=GAMMA, eps=EPS)(st)
    for i in range(3):
        single = methods.fgr(tiny, gamma=GAMMA[i], eps=EPS[i])(State(*(x[i:i + 1] for x in (st.a, st.b, st.su, st.sv))))
        np.testing.assert_allclose(single.da[0], batched.da[i], rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(single.gain[0], batched.gain[i], rtol=1e-14, atol=1e-300)


def test_rows_argument_selects_the_runs_hyper_parameters(tiny):
    st = random_state(3, tiny.d, 41)
    direction = methods.gr(tiny, gamma=GAMMA)
    full = direction(st)
    sub = direction(State(st.a[[2, 0]], st.b[[2, 0]], st.su[[2, 0]], st.sv[[2, 0]]), rows=np.array([2, 0]))
    np.testing.assert_allclose(sub.da, full.da[[2, 0]], rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("call,match", [
    (lambda P: methods.make("gf", P, gamma=0.1), r"'gamma' parameter of gf must be left unset"),
    (lambda P: methods.make("gr", P, gamma=0.1, eps=0.1), r"'eps' parameter of gr must be left unset"),
    (lambda P: methods.make("usam", P, rho=0.1, gamma=0.1), r"'gamma' parameter of usam must be left unset"),
    (lambda P: methods.make("gr", P), r"'gamma' parameter of gr must be given"),
    (lambda P: methods.make("fgr", P, gamma=0.1), r"'eps' parameter of fgr must be given"),
    (lambda P: methods.gr(P, gamma=-0.1), r"'gamma' parameter of gr must be >= 0"),
    (lambda P: methods.fgr(P, gamma=0.1, eps=0.0), r"'eps' parameter of fgr must be > 0"),
    (lambda P: methods.bgr(P, gamma=0.1, eps=-0.1), r"'eps' parameter of bgr must be > 0"),
    (lambda P: methods.usam(P, rho=0.0), r"'rho' parameter of usam must be > 0"),
    (lambda P: methods.sam(P, rho=np.nan), r"'rho' parameter of sam must be finite"),
    (lambda P: methods.flood(P, flood_level=-1.0), r"'flood_level' parameter of flood must be >= 0"),
    (lambda P: methods.make("flood", P, flood_level=0.1, variant="per-sample"), r"'variant' parameter of flood must be 'full'"),
    (lambda P: methods.make("newton", P), r"'method' parameter must be one of"),
    (lambda P: methods.make("gr", P, gamma=0.1, variant="batch"), r"'variant' parameter of gr must be one of"),
    (lambda P: methods.make("gr", P, gamma=0.1, variant="per-sample", D=3), r"'variant' parameter of gr must be 'full' for depth"),
    (lambda P: methods.make("gf", P, D=1), r"'D' parameter of gf must be >= 2"),
    (lambda P: methods.fgr(P, gamma=[0.1, 0.2], eps=[0.1, 0.2, 0.3]), r"per-run hyper-parameters of fgr must have the same length"),
    (lambda P: methods.gr(P, gamma=np.ones((2, 2))), r"'gamma' parameter of gr must be a scalar or a vector"),
])
def test_make_validation(tiny, call, match):
    with pytest.raises(DLNError, match=match):
        call(tiny)


def test_direction_on_a_second_problem_instance_is_independent():
    """Directions hold their own problem: two problems give different rates at the same state."""
    P1, P2 = sparse_problem(6, 9, seed=1), sparse_problem(6, 9, seed=2)
    st = random_state(1, 9, 50)
    assert not np.allclose(methods.gf(P1)(st).da, methods.gf(P2)(st).da)
