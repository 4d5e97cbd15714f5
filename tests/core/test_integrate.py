"""dln.integrate and dln.rosenbrock: the W-method, flow and iterate (docs/theory.md §2.1, §3.1, §4, §5.1, §6.1, §7).

Oracles: a fixed-step W-method written from the (A, Γ, b) tableau alone, with the observed order
for arbitrary matrices W, and the stability function written out here; an independent SciPy
integration of the reduced flow (written here from docs/theory.md §7.5) for the limit accuracy
against rtol; a closed-form GF solution on an orthonormal design (derived below); plain NumPy loops of the
canonical GD / SGD maps with their own bookkeeping of ln c and the tilt Φ; the exact
characterisations of docs/theory.md (ln(u⊙v) = ln α² − 8γ∫gain, z − z0 ∈ range Xᵀ) with the
null space taken from an SVD; analysis.predict.mirror_argmin for the limits; single-run
results for the batched ones.
"""
import warnings

import numpy as np
import pytest

from analysis.predict import mirror_argmin
from dln import methods
from dln import rosenbrock as ros
from dln.errors import DLNError
from dln.integrate import flow, iterate
from dln.model import initial_state
from dln.problem import Problem

from .oracles import null_part, rel, sparse_data, sparse_problem


# =============================================================================================
# 4. batched == looped
# =============================================================================================
B_ALPHA = np.array([0.3, 0.1, 0.2])
B_GAMMA = np.array([0.02, 0.1, 0.05])
B_EPS = np.array([0.1, 0.05, 0.2])
B_RHO = np.array([0.02, 0.1, 0.05])
FLOW_CASES = [("gf", "full"), ("gf", "per-sample"), ("gr", "full"), ("gr", "per-sample"),
              ("fgr", "full"), ("fgr", "per-sample"), ("bgr", "full"), ("bgr", "per-sample"),
              ("cgr", "full"), ("cgr", "per-sample"), ("usam", "full"), ("usam", "per-sample"),
              ("sam", "full"), ("sam", "per-sample"), ("flood", "full")]
T_BATCH = 0.5


def _batch_params(method, problem):
    L0 = problem.loss(np.zeros(problem.d))
    return {"gf": {}, "gr": dict(gamma=B_GAMMA), "fgr": dict(gamma=B_GAMMA, eps=B_EPS),
            "bgr": dict(gamma=B_GAMMA, eps=B_EPS), "cgr": dict(gamma=B_GAMMA, eps=B_EPS),
            "usam": dict(rho=B_RHO), "sam": dict(rho=B_RHO),
            # levels the loss does not reach before T_BATCH: flooding's sign switch is a
            # discontinuity that would amplify round-off
            "flood": dict(flood_level=np.array([0.0, 1e-3, 1e-2]) * L0)}[method]


_flow_cache = {}


def _flow_batched_and_looped(method, variant, state_form="auto"):
    key = (method, variant, state_form)
    if key not in _flow_cache:
        P = sparse_problem(6, 12, k=2, seed=3)
        params = _batch_params(method, P)
        # normalised per-example SAM has a discontinuous right-hand side (sign r_i): keep it short
        T = 0.2 if (method, variant) == ("sam", "per-sample") else T_BATCH
        kw = dict(t_max=T, state_form=state_form)
        batched = flow(methods.make(method, P, variant=variant, **params), initial_state(P.d, 3, alpha=B_ALPHA), **kw)
        looped = [flow(methods.make(method, P, variant=variant, **{k: v[i] for k, v in params.items()}),
                       initial_state(P.d, 1, alpha=B_ALPHA[i]), **kw) for i in range(3)]
        _flow_cache[key] = (batched, looped)
    return _flow_cache[key]


def _batch_errors(batched, looped):
    eb = max(rel(looped[i].beta[0], batched.beta[i]) for i in range(3))
    ec = max(rel(looped[i].log_c[0], batched.log_c[i]) for i in range(3))
    return eb, ec


@pytest.mark.parametrize("method,variant", FLOW_CASES)
def test_flow_batched_matches_looped_within_tolerance(method, variant):
    """Per-run hyper-parameters reach the right run (an O(1) effect if mixed up); the agreement is
    only at the level of the integration error here (see the round-off test below).  Normalised
    per-example SAM, whose right-hand side jumps with sign(r_i), amplifies the batch coupling
    to ~3e-10."""
    batched, looped = _flow_batched_and_looped(method, variant)
    for i in range(3):
        assert batched.status[i] == looped[i].status[0] == "max_steps"
        assert batched.t[i] == pytest.approx(looped[i].t[0], rel=1e-14)
    eb, ec = _batch_errors(batched, looped)
    assert eb < 1e-6 and ec < 1e-6, (eb, ec)


@pytest.mark.parametrize("state_form", ["auto", "general"])
@pytest.mark.parametrize("method,variant", [(m, v) for (m, v) in FLOW_CASES if (m, v) != ("sam", "per-sample")])
def test_flow_batched_equals_looped_to_round_off(method, variant, state_form):
    """≤ 1e-12: per-run step sizes, Jacobian models and status, so a run's result depends on its
    batch-mates only through the round-off of the shared matrix products.  Not for normalised
    per-example SAM: its discontinuous right-hand side turns that round-off into ~1e-10
    differences."""
    batched, looped = _flow_batched_and_looped(method, variant, state_form)
    for i in range(3):
        assert batched.steps[i] == looped[i].steps[0]
    eb, ec = _batch_errors(batched, looped)
    assert eb <= 1e-12 and ec <= 1e-12, (eb, ec)


def test_iterate_gd_batched_equals_looped():
    P = sparse_problem(8, 16, k=2, seed=4)
    lr = np.array([0.05, 0.2, 0.1])
    al = np.array([0.2, 0.1, 0.3])
    for direction, single in ((methods.gf(P), lambda i: methods.gf(P)),
                              (methods.gr(P, gamma=B_GAMMA), lambda i: methods.gr(P, gamma=B_GAMMA[i])),
                              (methods.flood(P, flood_level=np.array([0.0, 1e-3, 1e-2]) * P.loss(np.zeros(16))),
                               lambda i: methods.flood(P, flood_level=[0.0, 1e-3, 1e-2][i] * P.loss(np.zeros(16))))):
        rb = iterate(direction, initial_state(16, 3, alpha=al), lr, max_steps=400)
        for i in range(3):
            ri = iterate(single(i), initial_state(16, 1, alpha=al[i]), lr[i], max_steps=400)
            assert rb.status[i] == ri.status[0] and rb.steps[i] == ri.steps[0]
            assert rel(rb.beta[i], ri.beta[0]) <= 1e-12
            assert rel(rb.log_c[i], ri.log_c[0]) <= 1e-12
            assert np.max(np.abs(rb.tilt[i] - ri.tilt[0])) <= 1e-12 * max(1.0, np.max(np.abs(ri.tilt[0])))


@pytest.mark.parametrize("batch_size,label_noise", [(1, 0.0), (3, 0.0), (1, 0.5), (None, 0.3)])
def test_iterate_sgd_and_label_noise_batched_equals_looped(batch_size, label_noise):
    P = sparse_problem(8, 16, k=2, seed=5)
    lr = np.array([0.02, 0.05, 0.03])
    al = np.array([0.2, 0.1, 0.3])
    seeds = [11, 22, 33]
    kw = dict(batch_size=batch_size, label_noise=label_noise, max_steps=600)
    rb = iterate(methods.gf(P), initial_state(16, 3, alpha=al), lr, seeds=seeds, **kw)
    for i in range(3):
        ri = iterate(methods.gf(P), initial_state(16, 1, alpha=al[i]), lr[i], seeds=[seeds[i]], **kw)
        assert rb.status[i] == ri.status[0] and rb.steps[i] == ri.steps[0]
        assert rel(rb.beta[i], ri.beta[0]) <= 1e-12
        assert rel(rb.log_c[i], ri.log_c[0]) <= 1e-12
    # the seeds matter: another seed gives another path
    other = iterate(methods.gf(P), initial_state(16, 1, alpha=al[0]), lr[0], seeds=[99], **kw)
    assert rel(other.beta[0], rb.beta[0]) > 1e-6


# =============================================================================================
# 6. gradient flow: conservation, closed form on an orthonormal design, limits
# =============================================================================================
def test_gf_conserves_uv_and_z_stays_in_row_space_and_limit():
    """docs/theory.md §2.1 and §3.1 (general init): along the whole path c = u0⊙v0 to 1e-10, at the end
    z − z0 ∈ range Xᵀ and β_∞ = argmin_{Xβ=y} φ_c(β) − ⟨z0, β⟩."""
    P = sparse_problem(10, 30, k=3, seed=6)
    rng = np.random.default_rng(6)
    u0 = np.vstack([np.full(30, 0.1), rng.uniform(0.05, 0.4, 30)])
    v0 = np.vstack([np.full(30, 0.1), rng.uniform(0.05, 0.4, 30)])
    # in the network's coordinates: conservation and the row-space property are checked, not built in
    res = flow(methods.gf(P), initial_state(30, 2, u0=u0, v0=v0), rtol=1e-8, record=True, state_form="general")
    assert list(res.status) == ["converged", "converged"]
    lc0 = np.log(u0 * v0)
    drift = np.max(np.abs(res.trajectory.log_c - lc0[None]))
    assert drift <= 1e-10
    assert len(res.trajectory.t) > 10
    for i in range(2):
        dz = res.z[i] - np.log(u0[i] / v0[i])
        assert null_part(P.X, dz) <= 1e-10 * max(1.0, np.linalg.norm(dz))
        z0 = np.log(u0[i] / v0[i])
        pred = mirror_argmin(P.X, P.y, c=u0[i] * v0[i], z0=None if i == 0 else z0)
        assert pred.status == "converged"
        assert rel(res.beta[i], pred.beta) <= 1e-9
        assert P.loss(res.beta[i]) <= 1e-24 * P.loss(np.zeros(30)) * 1.0001


def _orthonormal_gf_closed_form(t, bvec, alpha):
    """GF on XᵀX/n = I: z_i = ln(u_i/v_i) solves ż = −4(A sinh z − b), A = 2α², z(0) = 0.

    With s = e^z: ds/((A/2)s² − bs − A/2) = −4 dt, roots s± = (b ± R)/A, R = sqrt(b² + A²), so
    (s − s+)/(s − s−) = K0 e^{−4Rt} with K0 = (1 − s+)/(1 − s−); then β = A sinh z = (A/2)(s − 1/s).
    """
    A = 2.0 * alpha**2
    R = np.sqrt(bvec**2 + A**2)
    sp, sm = (bvec + R) / A, (bvec - R) / A
    K = (1.0 - sp) / (1.0 - sm) * np.exp(-4.0 * R * t)
    s = (sp - K * sm) / (1.0 - K)
    return 0.5 * A * (s - 1.0 / s)


def test_closed_form_solves_the_mirror_ode():
    """The oracle itself: β(t) above satisfies β̇ = −4 sqrt(β² + 4α⁴)(β − b) (central differences)."""
    bvec = np.array([1.3, -0.7, 0.05, 0.0, -2.0])
    alpha = np.array([0.1, 0.3, 0.05, 0.2, 0.15])
    for t in (0.0, 0.3, 2.0, 7.0):
        h = 1e-6
        beta = _orthonormal_gf_closed_form(t, bvec, alpha)
        if t == 0.0:
            np.testing.assert_allclose(beta, 0.0, atol=1e-15)
            continue
        deriv = (_orthonormal_gf_closed_form(t + h, bvec, alpha) - _orthonormal_gf_closed_form(t - h, bvec, alpha)) / (2 * h)
        rhs = -4.0 * np.sqrt(beta**2 + 4 * alpha**4) * (beta - bvec)
        np.testing.assert_allclose(deriv, rhs, rtol=1e-6, atol=1e-8)
    # the limit is b (an interpolator)
    np.testing.assert_allclose(_orthonormal_gf_closed_form(1e3, bvec, alpha), bvec, atol=1e-12)


@pytest.mark.parametrize("state_form", ["reduced", "general"])
def test_gf_on_orthonormal_design_matches_closed_form_along_the_path(state_form):
    rng = np.random.default_rng(5)
    n = d = 8
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    X = np.sqrt(n) * Q
    beta_star = rng.normal(size=d) * np.array([1, 1, 0.3, 0, 0.05, 2, 0, 1])
    P = Problem(X, X @ beta_star)
    bvec = X.T @ P.y / n
    alpha = np.linspace(0.05, 0.3, d)  # per-coordinate α
    res = flow(methods.gf(P), initial_state(d, 1, u0=alpha, v0=alpha), rtol=1e-10, record=True, t_max=15.0,
               state_form=state_form)
    T = res.trajectory
    assert len(T.t) > 20
    assert T.t[-1, 0] == pytest.approx(15.0, rel=1e-12) or res.status[0] == "converged"
    scale = np.max(np.abs(bvec))
    for k in range(len(T.t)):
        expected = _orthonormal_gf_closed_form(T.t[k, 0], bvec, alpha)
        assert np.max(np.abs(T.beta[k, 0] - expected)) <= 1e-7 * scale, T.t[k, 0]
    # and the trajectory really moves through the transition (not only the end points)
    assert np.min(np.abs(T.beta[len(T.t) // 3, 0][np.abs(bvec) > 0.5] / bvec[np.abs(bvec) > 0.5])) < 0.999


# =============================================================================================
# 7. exact mechanisms: GR, F-GR, B-GR, C-GR, n-SAM / 1-SAM (docs/theory.md §4, §7.2, §7.3, §7.5, §8)
# =============================================================================================
EXACT = [("gr", "full"), ("gr", "per-sample"), ("fgr", "full"), ("fgr", "per-sample"),
         ("bgr", "full"), ("bgr", "per-sample"), ("cgr", "full"), ("cgr", "per-sample"),
         ("usam", "full"), ("usam", "per-sample")]
EXACT_PARAMS = {"gr": dict(gamma=np.array([0.05, 0.2])),
                "fgr": dict(gamma=np.array([0.05, 0.2]), eps=np.array([0.1, 0.05])),
                "bgr": dict(gamma=np.array([0.05, 0.2]), eps=np.array([0.1, 0.05])),
                "cgr": dict(gamma=np.array([0.05, 0.2]), eps=np.array([0.1, 0.05])),
                "usam": dict(rho=np.array([0.05, 0.02]))}


@pytest.mark.parametrize("method,variant", EXACT)
def test_exact_mechanisms_effective_alpha_and_limit(method, variant):
    """In the network's coordinates (state_form='general'), where the theorem is not built in."""
    P = sparse_problem(8, 20, k=3, seed=7)
    alpha = np.array([0.1, 0.2])
    direction = methods.make(method, P, variant=variant, **EXACT_PARAMS[method])
    # the identities below are exact for the numerical solution whatever its accuracy (they are
    # preserved linear invariants of the scheme plus the KKT conditions); accuracy is checked
    # against an independent solver in test_simulate_cli.py
    res = flow(direction, initial_state(P.d, 2, alpha=alpha), rtol=1e-8, state_form="general")
    assert list(res.status) == ["converged", "converged"]
    coef = 8.0 * np.asarray(EXACT_PARAMS[method].get("gamma", EXACT_PARAMS[method].get("rho")))
    for i in range(2):
        # ln(u⊙v) = ln α² − 8γ·∫gain, the integral integrated along (Result.log_c vs log_c_theory)
        expected = 2 * np.log(alpha[i]) - coef[i] * res.gain[i]
        assert np.max(np.abs(res.log_c[i] - expected)) <= 1e-8
        assert np.max(np.abs(res.log_c[i] - res.log_c_theory[i])) <= 1e-8
        assert np.max(res.log_c0[i] - res.log_c[i]) > 1e-4  # the effect is really there
        # the mirror coordinate moved only inside range Xᵀ
        dz = res.z[i] - res.z0[i]
        assert null_part(P.X, dz) <= 1e-10 * max(1.0, np.linalg.norm(dz))
        # the limit: argmin Q_{α_eff}
        pred = mirror_argmin(P.X, P.y, log_c=res.log_c[i])
        assert pred.status == "converged"
        assert rel(res.beta[i], pred.beta) <= 1e-9


def test_gr_gains_are_nonnegative_and_ordered_in_gamma():
    """ln c decreases coordinate-wise for exact GR (gain g² ≥ 0), more for larger γ (§7.2)."""
    P = sparse_problem(8, 20, k=3, seed=7)
    res = flow(methods.gr(P, gamma=np.array([0.05, 0.2])), initial_state(P.d, 2, alpha=0.1), rtol=1e-6)
    assert np.all(res.gain >= 0)
    assert np.all(res.log_c <= res.log_c0 + 1e-12)
    assert np.sum(res.log_c0[1] - res.log_c[1]) > np.sum(res.log_c0[0] - res.log_c[0])


# =============================================================================================
# 9. discrete GD and SGD: exact characterisation (docs/theory.md §5.1, §5.3, §6.1)
# =============================================================================================
def _gd_loop(X, y, alpha, eta, K=None, loss_rel=1e-24):
    """The canonical GD map u ← u(1 − x), v ← v(1 + x), x = 2ηg, with its own bookkeeping."""
    n, d = X.shape
    u = np.full(d, alpha)
    v = np.full(d, alpha)
    log_c = np.full(d, 2 * np.log(alpha))
    Phi = np.zeros(d)
    flips = 0
    L0 = 0.5 * np.mean(y * y)
    k = 0
    while True:
        r = X @ (u * u - v * v) - y
        if K is None and 0.5 * np.mean(r * r) <= loss_rel * L0:
            break
        if K is not None and k == K:
            break
        g = X.T @ r / n
        x = 2 * eta * g
        flips += int(np.sum(np.abs(x) > 1))
        log_c += np.log(np.abs(1 - x * x))  # c_{k+1} = c_k |1 − x_k²|
        Phi += 0.5 * np.log(np.abs((1 + x) / (1 - x))) - x
        u = u * (1 - x)
        v = v * (1 + x)
        k += 1
        assert k < 100_000
    return dict(u=u, v=v, beta=u * u - v * v, log_c=log_c, Phi=Phi, flips=flips, steps=k)


GD_ETAS = np.array([0.1, 0.7])  # 0.7 makes |2ηg| > 1 (sign flips) on this problem, and converges


@pytest.fixture(scope="module")
def gd_problem():
    X, y, bs = sparse_data(10, 30, 3, seed=2)
    return Problem(X, y, beta_star=bs)


def test_gd_first_steps_match_the_canonical_map(gd_problem):
    P = gd_problem
    K = 300
    res = iterate(methods.gf(P), initial_state(P.d, 2, alpha=0.1), GD_ETAS, max_steps=K)
    assert list(res.status) == ["max_steps", "max_steps"]
    np.testing.assert_array_equal(res.steps, [K, K])
    for i, eta in enumerate(GD_ETAS):
        ref = _gd_loop(P.X, P.y, 0.1, eta, K=K)
        assert rel(res.beta[i], ref["beta"]) <= 1e-12
        # c_{k+1} = c_k |1 − 4η²g_k²| exactly (and the state's own |u v|)
        assert np.max(np.abs(res.log_c[i] - ref["log_c"])) <= 1e-12 * max(1.0, np.max(np.abs(ref["log_c"])))
        assert np.max(np.abs(res.log_c[i] - np.log(np.abs(ref["u"] * ref["v"])))) <= 1e-11
        assert np.max(np.abs(res.tilt[i] - ref["Phi"])) <= 1e-12 * max(1.0, np.max(np.abs(ref["Phi"])))
        # signs of u and v follow the map
        np.testing.assert_array_equal(res.state.su[i], np.sign(ref["u"]))
        np.testing.assert_array_equal(res.state.sv[i], np.sign(ref["v"]))
        # the tilt identity: z_K + 2Φ_K − z0 ∈ range Xᵀ
        w = res.z[i] + 2 * res.tilt[i] - res.z0[i]
        assert null_part(P.X, w) <= 1e-10 * max(1.0, np.linalg.norm(w))
    assert _gd_loop(P.X, P.y, 0.1, GD_ETAS[1], K=K)["flips"] > 0  # the large step really flips signs


def test_gd_limit_is_the_tilted_mirror_argmin(gd_problem):
    P = gd_problem
    res = iterate(methods.gf(P), initial_state(P.d, 2, alpha=0.1), GD_ETAS)
    assert list(res.status) == ["converged", "converged"]
    for i, eta in enumerate(GD_ETAS):
        ref = _gd_loop(P.X, P.y, 0.1, eta)
        assert res.steps[i] == ref["steps"]
        assert rel(res.beta[i], ref["beta"]) <= 1e-11
        if i == 1:
            assert ref["flips"] > 0
        # from the code's bookkeeping and from the loop's: β_∞ = argmin φ_c − ⟨−2Φ, β⟩
        for lc, Phi in ((res.log_c[i], res.tilt[i]), (ref["log_c"], ref["Phi"])):
            pred = mirror_argmin(P.X, P.y, log_c=lc, z0=-2 * Phi)
            assert pred.status == "converged"
            assert rel(res.beta[i], pred.beta) <= 1e-9
        w = res.z[i] + 2 * res.tilt[i] - res.z0[i]
        assert null_part(P.X, w) <= 1e-10 * max(1.0, np.linalg.norm(w))
    # the tilt matters at the large step: dropping it is visibly wrong
    no_tilt = mirror_argmin(P.X, P.y, log_c=res.log_c[1])
    assert rel(res.beta[1], no_tilt.beta) > 1e-6


def test_sgd_batch1_steps_are_single_example_steps_with_exact_bookkeeping(gd_problem):
    """Reconstruct from the recorded path which example each step used (the only one whose
    canonical update reproduces the step), then redo the bookkeeping of §6.1 independently."""
    P = gd_problem
    X, y = P.X, P.y
    n = P.n
    eta, alpha, K = 0.05, 0.1, 300
    res = iterate(methods.gf(P), initial_state(P.d, 1, alpha=alpha), eta, batch_size=1, seeds=[123],
                  max_steps=K, record_every=1)
    T = res.trajectory
    assert T.beta.shape[0] == K
    u = np.full(P.d, alpha)
    v = np.full(P.d, alpha)
    log_c = np.full(P.d, 2 * np.log(alpha))
    Phi = np.zeros(P.d)
    used = []
    for k in range(K):
        beta = u * u - v * v
        r = X @ beta - y
        cands = []
        for i in range(n):
            x = 2 * eta * X[i] * r[i]
            nb = (u * (1 - x)) ** 2 - (v * (1 + x)) ** 2
            cands.append(np.max(np.abs(nb - T.beta[k, 0])))
        i = int(np.argmin(cands))
        assert cands[i] <= 1e-12 * max(1.0, np.max(np.abs(T.beta[k, 0])))
        used.append(i)
        x = 2 * eta * X[i] * r[i]
        log_c += np.log(np.abs(1 - x * x))
        Phi += 0.5 * np.log(np.abs((1 + x) / (1 - x))) - x
        u, v = u * (1 - x), v * (1 + x)
        np.testing.assert_allclose(T.log_c[k, 0], log_c, rtol=0, atol=1e-12)
    assert len(set(used)) > n // 2  # really stochastic
    np.testing.assert_allclose(res.log_c[0], log_c, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.tilt[0], Phi, rtol=0, atol=1e-12)


def test_sgd_batch1_limit_is_the_tilted_mirror_argmin(gd_problem):
    P = gd_problem
    res = iterate(methods.gf(P), initial_state(P.d, 1, alpha=0.1), 0.05, batch_size=1, seeds=[123])
    assert res.status[0] == "converged"
    assert P.loss(res.beta[0]) <= 1e-24 * P.loss(np.zeros(P.d))
    w = res.z[0] + 2 * res.tilt[0] - res.z0[0]
    assert null_part(P.X, w) <= 1e-10 * max(1.0, np.linalg.norm(w))
    pred = mirror_argmin(P.X, P.y, log_c=res.log_c[0], z0=-2 * res.tilt[0])
    assert pred.status == "converged"
    assert rel(res.beta[0], pred.beta) <= 1e-9
    assert np.all(res.log_c[0] < res.log_c0[0])  # |1 − x²| < 1 at this step size: c shrinks


# =============================================================================================
# 10. divergence and caps
# =============================================================================================
def test_gd_batch_with_a_diverging_run(gd_problem):
    P = gd_problem
    lr = np.array([0.2, 5.0, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning may escape (also setup.cfg's default)
        res = iterate(methods.gf(P), initial_state(P.d, 3, alpha=0.1), lr)
    assert list(res.status) == ["converged", "diverged", "converged"]
    for i in (0, 2):
        single = iterate(methods.gf(P), initial_state(P.d, 1, alpha=0.1), lr[i])
        assert single.status[0] == "converged" and single.steps[0] == res.steps[i]
        # round-off only: the batch is evaluated with 2-row instead of 1-row matrix products
        assert rel(res.beta[i], single.beta[0]) <= 1e-12
        assert rel(res.log_c[i], single.log_c[0]) <= 1e-12
    # the diverged run stopped early and kept a finite state
    assert res.steps[1] < res.steps[0]
    assert np.all(np.isfinite(res.state.a[1])) and np.all(np.isfinite(res.state.b[1]))


def test_flow_batch_with_a_diverging_run():
    """Flooding above the divergence threshold is gradient ascent: that run blows up (at t ≈ 0.1),
    the others (b = 0: GF) go on as if alone."""
    P = sparse_problem(6, 12, k=2, seed=8)
    L0 = P.loss(np.zeros(12))
    levels = np.array([0.0, 1e12 * L0, 0.0])  # above the divergence threshold 1e10·L0
    T = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = flow(methods.flood(P, flood_level=levels), initial_state(12, 3, alpha=np.array([0.3, 1.0, 0.2])),
                   max_steps=3000, t_max=T)
    assert list(res.status) == ["max_steps", "diverged", "max_steps"]
    np.testing.assert_allclose(res.t[[0, 2]], T, rtol=1e-14)
    assert res.t[1] < T
    for i, al in ((0, 0.3), (2, 0.2)):
        # flooding runs (non-smooth rates) skip the explicit start: compare with the same scheme;
        # strict equality is the subject of test_flow_batched_equals_looped_to_round_off
        single = flow(methods.gf(P), initial_state(12, 1, alpha=al), max_steps=3000, t_max=T, explicit_start=False)
        assert rel(res.beta[i], single.beta[0]) <= 1e-7
        assert rel(res.log_c[i], single.log_c[0]) <= 1e-12  # GF: c is conserved exactly anyway
    assert res.loss[1] > 1e10 * L0 or np.max(np.abs(res.state.a[1])) > 300
    assert np.all(np.isfinite(res.state.a[1]))


def test_flow_huge_alpha_is_flagged_diverged_without_warnings():
    P = sparse_problem(6, 12, k=2, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = flow(methods.gf(P), initial_state(12, 2, alpha=np.array([0.3, 1e140])), max_steps=3000, t_max=2.0)
    assert list(res.status) == ["max_steps", "diverged"]
    assert res.steps[1] == 0 and res.t[1] == 0.0  # frozen at once (ln α = 322 > 300)


def test_iterate_max_steps_keeps_last_state(gd_problem):
    P = gd_problem
    res = iterate(methods.gf(P), initial_state(P.d, 1, alpha=0.1), 0.1, max_steps=17)
    assert res.status[0] == "max_steps" and res.steps[0] == 17
    ref = _gd_loop(P.X, P.y, 0.1, 0.1, K=17)
    assert rel(res.beta[0], ref["beta"]) <= 1e-13
    assert res.t[0] == pytest.approx(17 * 0.1)


def test_flow_max_steps_keeps_last_state():
    P = sparse_problem(6, 12, k=2, seed=9)
    capped = flow(methods.gr(P, gamma=0.05), initial_state(12, 1, alpha=0.2), max_steps=15)
    longer = flow(methods.gr(P, gamma=0.05), initial_state(12, 1, alpha=0.2), max_steps=40, record=True)
    assert capped.status[0] == "max_steps"
    assert capped.steps[0] == 15  # the cap counts accepted steps, the number reported
    k = capped.steps[0]
    # the same first steps: the capped state is the k-th accepted point of the longer run
    np.testing.assert_allclose(capped.beta[0], longer.trajectory.beta[k, 0], rtol=1e-13, atol=1e-15)
    assert capped.t[0] == pytest.approx(longer.trajectory.t[k, 0], rel=1e-14)
    # the returned arrays describe the returned state
    u, v = capped.state.u[0], capped.state.v[0]
    np.testing.assert_allclose(capped.beta[0], u * u - v * v, rtol=1e-13, atol=1e-16)
    assert capped.loss[0] == pytest.approx(P.loss(capped.beta[0]), rel=1e-13)
    assert capped.loss[0] > 1e-6 * P.loss(np.zeros(12))


def test_flow_t_max_stops_exactly_at_the_horizon():
    P = sparse_problem(6, 12, k=2, seed=9)
    res = flow(methods.gf(P), initial_state(12, 2, alpha=np.array([0.1, 0.3])), t_max=0.37)
    assert list(res.status) == ["max_steps", "max_steps"]
    np.testing.assert_allclose(res.t, 0.37, rtol=1e-14)


# =============================================================================================
# validation at the integrators' boundary
# =============================================================================================
@pytest.mark.parametrize("call,match", [
    (lambda P, d: flow(d, initial_state(P.d, 2, alpha=0.1), rtol=0.0), r"'rtol' parameter of flow must be > 0"),
    (lambda P, d: flow(d, initial_state(P.d, 2, alpha=0.1), max_steps=0), r"'max_steps' parameter of flow must be >= 1"),
    (lambda P, d: flow(d, initial_state(P.d + 1, 2, alpha=0.1)), r"'state' parameter of flow must be of dimension"),
    (lambda P, d: iterate(d, initial_state(P.d, 2, alpha=0.1), 0.0), r"'lr' parameter of iterate must be > 0"),
    (lambda P, d: iterate(d, initial_state(P.d, 2, alpha=0.1), 0.1, batch_size=P.n + 1), r"'batch_size' parameter of iterate must be <= "),
    (lambda P, d: iterate(d, initial_state(P.d, 2, alpha=0.1), 0.1, batch_size=1, seeds=[1]), r"'seeds' parameter of iterate must be one seed per run"),
    (lambda P, d: iterate(d, initial_state(P.d, 2, alpha=0.1), 0.1, label_noise=-1.0), r"'label_noise' parameter of iterate must be >= 0"),
])
def test_integrator_validation(call, match):
    P = sparse_problem(5, 8, k=2, seed=0)
    with pytest.raises(DLNError, match=match):
        call(P, methods.gf(P))


def test_batch_size_mismatch_between_direction_and_state():
    P = sparse_problem(5, 8, k=2, seed=0)
    with pytest.raises(DLNError, match=r"'state' parameter of flow must be a batch of 3 runs"):
        flow(methods.gr(P, gamma=B_GAMMA), initial_state(8, 2, alpha=0.1))




# =============================================================================================
# 11. the Rosenbrock-W scheme (dln.rosenbrock): order for any W, transformed stages, stability
# =============================================================================================
def _w_step(f, W, y, h, b):
    """One step of the W-method written from the tableau alone:
    (I − γhW) k_i = h f(y + Σ_{j<i} a_ij k_j) + hW Σ_{j<i} γ_ij k_j,   y₁ = y + Σ b_i k_i."""
    A_, G_, g_ = ros.A, ros.GAMMA_MATRIX, ros.GAMMA
    M = np.eye(y.size) - g_ * h * W
    ks = []
    for i in range(ros.STAGES):
        Y = y + sum((A_[i, j] * ks[j] for j in range(i)), np.zeros_like(y))
        v = sum((G_[i, j] * ks[j] for j in range(i)), np.zeros_like(y))
        ks.append(np.linalg.solve(M, h * f(Y) + h * W @ v))
    return y + sum(b[i] * ks[i] for i in range(ros.STAGES))


def _nonlinear():
    def f(y):
        return np.array([-y[0] * y[1] + np.sin(y[1]), y[0] ** 2 - 0.5 * y[1], np.cos(y[0]) - y[2]])

    def J(y):
        return np.array([[-y[1], -y[0] + np.cos(y[1]), 0], [2 * y[0], -0.5, 0], [-np.sin(y[0]), 0, -1]])
    return f, J, np.array([1.0, 0.5, 0.2])


def _observed_orders(W, b, Ns=(20, 40, 80)):
    from scipy.integrate import solve_ivp

    f, J, y0 = _nonlinear()
    ref = solve_ivp(lambda t, y: f(y), (0, 1), y0, method="DOP853", rtol=1e-13, atol=1e-14).y[:, -1]
    errs = []
    for N in Ns:
        y = y0.copy()
        for _ in range(N):
            y = _w_step(f, W(y, y0, J), y, 1.0 / N, b)
        errs.append(np.linalg.norm(y - ref))
    return np.log2(np.array(errs[:-1]) / np.array(errs[1:]))


W_MODELS = {"exact": lambda y, y0, J: J(y), "zero": lambda y, y0, J: np.zeros((3, 3)),
            "frozen": lambda y, y0, J: J(y0) + 0.3, "diagonal": lambda y, y0, J: np.diag(np.diag(J(y)))}


@pytest.mark.parametrize("which", list(W_MODELS))
def test_ros34pw2_is_third_order_for_any_matrix(which):
    """The property ``flow`` relies on when it reuses a stale or partial Jacobian model: the observed
    order on a nonlinear ODE is 3 with the exact Jacobian and with arbitrary matrices."""
    orders = _observed_orders(W_MODELS[which], ros.B)
    assert np.all(np.abs(orders - 3.0) < 0.15), orders


@pytest.mark.parametrize("which", ["exact", "frozen"])
def test_embedded_formula_is_second_order(which):
    """b̂ is a genuine lower-order estimate: order 2, not 3."""
    orders = _observed_orders(W_MODELS[which], ros.BHAT)
    assert np.all(np.abs(orders - 2.0) < 0.2), orders


def test_transformed_stages_equal_the_original_stages():
    """The u-form of flow, (σ − W)u_i = f(y + Σ â_ij u_j) + Σ ĉ_ij u_j/h with σ = 1/(γh), gives the
    same step and the same error estimate as the (A, Γ, b, b̂) form."""
    rng = np.random.default_rng(1)
    f, J, y = _nonlinear()
    W = rng.standard_normal((3, 3))
    h = 0.07
    sigma = 1.0 / (ros.GAMMA * h)
    U = []
    for i in range(ros.STAGES):
        Y = y + sum((ros.A_HAT[i, j] * U[j] for j in range(i)), np.zeros(3))
        rhs = f(Y) + sum((ros.C_HAT[i, j] * U[j] for j in range(i)), np.zeros(3)) / h
        U.append(np.linalg.solve(sigma * np.eye(3) - W, rhs))
    y1 = y + sum(ros.M[i] * U[i] for i in range(ros.STAGES))
    est = sum(ros.E[i] * U[i] for i in range(ros.STAGES))
    np.testing.assert_allclose(y1, _w_step(f, W, y, h, ros.B), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(est, _w_step(f, W, y, h, ros.B) - _w_step(f, W, y, h, ros.BHAT), rtol=1e-12, atol=1e-15)


def _R(z, b=ros.B):
    """Stability function with W = J: R(z) = 1 + z bᵀ(I − z(A + Γ))⁻¹1 (Hairer & Wanner IV.7)."""
    return 1.0 + z * b @ np.linalg.solve(np.eye(ros.STAGES) - z * (ros.A + ros.GAMMA_MATRIX), np.ones(ros.STAGES))


def test_tableau_structure_and_stiff_accuracy():
    assert np.allclose(np.triu(ros.A), 0.0) and np.allclose(np.triu(ros.GAMMA_MATRIX, 1), 0.0)
    np.testing.assert_array_equal(np.diag(ros.GAMMA_MATRIX), ros.GAMMA)
    assert ros.B.sum() == pytest.approx(1.0, abs=1e-15) and ros.BHAT.sum() == pytest.approx(1.0, abs=1e-15)
    # stiffly accurate: b is the last row of A + Γ
    np.testing.assert_allclose(ros.B, (ros.A + ros.GAMMA_MATRIX)[-1], atol=1e-15)


def test_stability_function_order_and_l_stability():
    zs = np.array([0.2, 0.1, 0.05])
    for sign in (1.0, -1.0, 1j):
        err = [abs(_R(sign * z) - np.exp(sign * z)) for z in zs]
        slope = np.polyfit(np.log(zs), np.log(err), 1)[0]
        assert 3.7 < slope < 4.3, (sign, slope)  # R(z) − e^z = O(z⁴): order 3
    vals = [abs(_R(-x)) for x in (1e4, 1e6, 1e8)]
    assert vals[-1] < 1e-6 and vals[0] > vals[1] > vals[2]  # R(−∞) = 0
    ys = np.concatenate([-np.logspace(-4, 8, 400), np.logspace(-4, 8, 400)])
    assert max(abs(_R(1j * y)) for y in ys) <= 1.0 + 1e-12  # A-stable on the imaginary axis
    rng = np.random.default_rng(0)
    zs = -rng.exponential(10, 400) + 1j * rng.normal(0, 30, 400)
    assert max(abs(_R(z)) for z in zs) <= 1.0 + 1e-12


# =============================================================================================
# 12. the tolerance means what it says: limit error ≈ rtol
# =============================================================================================
def _fgr_ps_log_rates(X, y, gamma, eps):
    """(ln u, ln v) ↦ (d ln u/dt, d ln v/dt) of per-example F-GR, written from docs/theory.md §7.5:
    G = (1 − γ/ε)∇L + (γ/ε)(1/n)Σ_i ∇ℓ_i(w + ε∇ℓ_i), ∇_u ℓ_i = 2u x_i r_i, ∇_v ℓ_i = −2v x_i r_i."""
    n = X.shape[0]

    def rates(w):
        d = w.size // 2
        u, v = np.exp(w[:d]), np.exp(w[d:])
        r = X @ (u * u - v * v) - y
        gu = np.zeros(d)
        gv = np.zeros(d)
        for i in range(n):
            ut = u + eps * 2 * u * X[i] * r[i]
            vt = v - eps * 2 * v * X[i] * r[i]
            rt = X[i] @ (ut * ut - vt * vt) - y[i]
            gu += 2 * ut * X[i] * rt / n
            gv += -2 * vt * X[i] * rt / n
        g = X.T @ r / n
        Gu = (1 - gamma / eps) * 2 * u * g + (gamma / eps) * gu
        Gv = (1 - gamma / eps) * (-2 * v * g) + (gamma / eps) * gv
        return np.concatenate([-Gu / u, -Gv / v])
    return rates


@pytest.fixture(scope="module")
def tolerance_case():
    """Per-sample F-GR (n = 8, d = 20) at two α; the reference limits from SciPy's LSODA on the
    network's coordinates at rtol = 1e-13 (an independent integrator and right-hand side)."""
    from scipy.integrate import solve_ivp

    P = sparse_problem(8, 20, k=3, seed=7)
    gamma, eps, alphas = 0.1, 0.1, np.array([0.05, 0.3])
    rates = _fgr_ps_log_rates(P.X, P.y, gamma, eps)
    L0 = P.loss(np.zeros(20))
    refs = []
    for a in alphas:
        def event(t, w):
            return np.log(max(P.loss(np.exp(2 * w[:20]) - np.exp(2 * w[20:])), 1e-300)) - np.log(1e-28 * L0)
        event.terminal = True
        sol = solve_ivp(lambda t, w: rates(w), (0, 1e9), np.full(40, np.log(a)), method="LSODA", rtol=1e-13,
                        atol=1e-13, events=event)
        assert sol.status == 1
        w = sol.y[:, -1]
        refs.append(np.exp(2 * w[:20]) - np.exp(2 * w[20:]))
    return P, gamma, eps, alphas, np.array(refs)


def _limit_errors(case, rtol, state_form="auto"):
    P, gamma, eps, alphas, refs = case
    res = flow(methods.fgr(P, gamma=gamma, eps=eps, variant="per-sample"), initial_state(20, 2, alpha=alphas),
               rtol=rtol, state_form=state_form)
    assert list(res.status) == ["converged", "converged"]
    return np.array([rel(res.beta[i], refs[i]) for i in range(2)])


def test_reference_limits_are_the_flow_limits(tolerance_case):
    """The oracle itself: dln's general form (the network's coordinates, its own Jacobian model) at
    rtol = 1e-11 lands within 1e-10 of the LSODA limits."""
    assert np.max(_limit_errors(tolerance_case, 1e-11, "general")) <= 1e-10


@pytest.mark.parametrize("rtol", [1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10])
def test_limit_error_is_within_ten_times_rtol(tolerance_case, rtol):
    """The tolerance is on the limit β∞ (DEFAULT_RTOL, LOG_C_TOL): its relative error is within a
    factor 10 of rtol, and not orders of magnitude below it (steps would be wasted)."""
    errs = _limit_errors(tolerance_case, rtol)
    assert np.max(errs) <= 10 * rtol, errs
    assert np.max(errs) >= rtol / 300, errs


# =============================================================================================
# 12. the recorded path
# =============================================================================================
@pytest.mark.parametrize("state_form", ["reduced", "general"])
@pytest.mark.parametrize("method, variant, kw", [("gf", "full", {}), ("fgr", "per-sample", dict(gamma=0.05, eps=0.1)),
                                                 ("flood", "full", dict(flood_level=0.02))])
def test_recorded_loss_is_the_loss_of_the_recorded_beta(method, variant, kw, state_form):
    """Trajectory.loss[k] = L(Trajectory.beta[k]) at every row, by the problem's own formula (the old
    flow recorded L(β[k−1]): one step late); the first row is the initial point at t = 0, the last
    the returned state, and t never decreases (a rolled-back step is not recorded)."""
    from dln.simulate import run_batch

    P = sparse_problem(6, 12, k=2, seed=8)
    res = run_batch(P, method, variant=variant, alpha=np.array([0.3, 0.05]), state_form=state_form, record=True,
                    **kw)
    tr = res.trajectory
    assert tr.beta.shape[0] > 20
    L0 = P.loss(np.zeros(12))
    for k in range(tr.beta.shape[0]):  # (to round-off: the flow evaluates r = Xβ − y by its own products)
        np.testing.assert_allclose(tr.loss[k], P.loss(tr.beta[k]), rtol=1e-9, atol=1e-22 * L0)
    np.testing.assert_array_equal(tr.t[0], 0.0)
    np.testing.assert_allclose(tr.loss[0], P.loss(np.zeros(12)), rtol=1e-12)
    np.testing.assert_allclose(tr.beta[-1], res.beta, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(tr.t[-1], res.t)
    assert np.all(np.diff(tr.t, axis=0) >= 0)
