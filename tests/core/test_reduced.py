"""dln.reduced: the reduced state of the depth-2 flows (docs/theory.md §4, §7, §8) and heterogeneous batches.

Oracles: the directions of ``dln.methods`` in the network's own coordinates (themselves checked
against finite differences and definitions in test_methods.py); finite differences of the reduced
rates for the Jacobian model; ``flow(state_form="general")``, which integrates (ln u, ln v) with
its own Jacobian model and checks the invariants instead of building them in; runs integrated
one at a time for the batches.
"""
import numpy as np
import pytest

from analysis.predict import mirror_argmin
from dln import methods
from dln.errors import DLNError
from dln.integrate import flow
from dln.model import State, initial_state
from dln.reduced import ReducedSystem, coefficients, stack_coefficients

from .oracles import null_part, rel, sparse_problem

GAMMA = np.array([0.05, 0.2, 0.1])
EPS = np.array([0.1, 0.03, 0.2])
RHO = np.array([0.05, 0.1, 0.02])
REDUCIBLE = [("gf", "full"), ("gf", "per-sample"), ("gr", "full"), ("gr", "per-sample"),
             ("fgr", "full"), ("fgr", "per-sample"), ("bgr", "full"), ("bgr", "per-sample"),
             ("cgr", "full"), ("cgr", "per-sample"), ("usam", "full"), ("usam", "per-sample"),
             ("sam", "full"), ("sam", "per-sample"), ("flood", "full")]


def params_for(method, problem):
    L0 = problem.loss(np.zeros(problem.d))
    return {"gf": {}, "gr": dict(gamma=GAMMA), "fgr": dict(gamma=GAMMA, eps=EPS), "bgr": dict(gamma=GAMMA, eps=EPS),
            "cgr": dict(gamma=GAMMA, eps=EPS), "usam": dict(rho=RHO), "sam": dict(rho=RHO),
            "flood": dict(flood_level=np.array([0.0, 0.3, 2.0]) * L0)}[method]


def reduced_system(direction, state0):
    B = state0.a.shape[0]
    co = coefficients(direction.method, direction.variant, direction.params, B)
    return ReducedSystem(direction.problem, direction.variant, co, state0)


def random_reduced_state(system, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((system.B, system.N))


# ---------------------------------------------------------------------------------------------
# the derivation: reduced rates = the network's rates
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,variant", REDUCIBLE)
def test_reduced_rates_are_the_networks_rates(method, variant):
    """At random reduced states (ν, μ or I) with random offsets z0, ln c0 (arbitrary u0, v0): the
    reduced rates mapped back, da = (ż + ℓ̇)/2, db = (ℓ̇ − ż)/2 with ż = Xᵀν̇, ℓ̇ = −coef·(X⊙X)ᵀμ̇ (or
    −coef·İ), and the gain (X⊙X)ᵀμ̇ (or İ), equal the direction's da, db, gain evaluated at the same
    weights: ż ∈ range Xᵀ and ℓ̇ ∈ range (X⊙X)ᵀ (per-sample) hold for every method."""
    P = sparse_problem(6, 9, k=2, seed=11)
    direction = methods.make(method, P, variant=variant, **params_for(method, P))
    rng = np.random.default_rng(5)
    state0 = State(rng.normal(-0.7, 0.4, (3, 9)), rng.normal(-0.7, 0.4, (3, 9)), np.ones((3, 9)), np.ones((3, 9)))
    system = reduced_system(direction, state0)
    Y = random_reduced_state(system, 1)
    F = np.empty_like(Y)
    loss, beta, m, A, Bv = system.rates(Y, F)
    state = State(0.5 * A, 0.5 * Bv, np.ones((3, 9)), np.ones((3, 9)))
    R = direction(state)
    da, db = system.rates_ab(F)
    gain = F[:, P.n:] @ system.X2 if variant == "per-sample" else F[:, P.n:]
    for i in range(3):
        assert rel(da[i], R.da[i]) < 1e-12, (i, rel(da[i], R.da[i]))
        assert rel(db[i], R.db[i]) < 1e-12
        if method != "flood":
            assert rel(gain[i], R.gain[i]) < 1e-12
        else:
            assert np.all(gain[i] == 0) and np.all(R.gain[i] == 0)
    np.testing.assert_allclose(loss, R.loss, rtol=1e-13)
    u2, v2 = np.exp(A), np.exp(Bv)
    np.testing.assert_allclose(beta, u2 - v2, rtol=1e-14)
    np.testing.assert_allclose(m, u2 + v2, rtol=1e-14)


def test_reduced_offsets_are_the_initial_weights():
    """Y = 0 is the initial state: (2a, 2b) = (2 ln u0, 2 ln v0)."""
    P = sparse_problem(6, 9, k=2, seed=11)
    rng = np.random.default_rng(2)
    u0, v0 = rng.uniform(0.1, 0.5, (2, 9)), rng.uniform(0.1, 0.5, (2, 9))
    direction = methods.fgr(P, gamma=0.1, eps=0.1, variant="per-sample")
    system = reduced_system(direction, initial_state(9, 2, u0=u0, v0=v0))
    A, Bv = system.expand(np.zeros((2, system.N)))
    np.testing.assert_allclose(A, 2 * np.log(u0), rtol=1e-15)
    np.testing.assert_allclose(Bv, 2 * np.log(v0), rtol=1e-15)


@pytest.mark.parametrize("variant", ["full", "per-sample"])
def test_jacobian_model_is_the_jacobian_at_an_interpolator(variant):
    """At an interpolating point (r = 0) the terms the model drops vanish: the ν-block of W
    (−V diag(λ) V⁻¹) and the coupling ∂ν̇/∂(μ or I) equal the finite-difference Jacobian of the rates."""
    P = sparse_problem(5, 8, k=2, seed=4)
    direction = methods.fgr(P, gamma=0.1, eps=0.2, variant=variant)
    res = flow(direction, initial_state(8, 1, alpha=0.3), rtol=1e-10)
    assert res.status[0] == "converged"
    # the reduced state of the converged run, from a reduced flow of the same run
    system = reduced_system(direction, initial_state(8, 1, alpha=0.3))
    n = P.n
    # recover (ν, μ) by least squares from z and ln c of the converged state
    z, lc = res.z[0], res.log_c[0]
    nu = np.linalg.lstsq(P.X.T, z, rcond=None)[0]
    if variant == "per-sample":
        mu = np.linalg.lstsq(-system.co.coef[0, 0] * system.X2.T, lc - 2 * np.log(0.3), rcond=None)[0]
    else:
        mu = (2 * np.log(0.3) - lc) / system.co.coef[0, 0]
    Y = np.concatenate([nu, mu])[None, :]
    F0 = np.empty_like(Y)
    loss, *_ = system.rates(Y, F0)
    assert loss[0] < 1e-20
    system.refresh(np.array([0]), Y)
    V, L = system.Rm[0], system.Lm[0]
    A_model = -V @ np.diag(system.lam[0]) @ L[:, :n]
    h = 1e-6
    J = np.empty((n, system.N))
    for j in range(system.N):
        e = np.zeros_like(Y)
        e[0, j] = h
        Fp, Fm = np.empty_like(Y), np.empty_like(Y)
        system.rates(Y + e, Fp)
        system.rates(Y - e, Fm)
        J[:, j] = (Fp[0, :n] - Fm[0, :n]) / (2 * h)
    np.testing.assert_allclose(A_model, J[:, :n], rtol=1e-6, atol=1e-8 * np.abs(J[:, :n]).max())
    # the coupling: L[:, n:] = V⁻¹ ∂ν̇/∂μ (per-sample); for full it multiplies (4/n) X(β⊙·)
    if variant == "per-sample":
        coupling = V @ L[:, n:]
        np.testing.assert_allclose(coupling, J[:, n:], rtol=1e-6, atol=1e-8 * np.abs(J[:, n:]).max())
    else:
        beta = system.betaW[0]
        coupling = V @ L[:, n:] @ (P.X * beta)  # ∂ν̇/∂I = V L₂ X diag(β)
        np.testing.assert_allclose(coupling, J[:, n:], rtol=1e-6, atol=1e-8 * np.abs(J[:, n:]).max())


# ---------------------------------------------------------------------------------------------
# reduced and general forms reach the same limit
# ---------------------------------------------------------------------------------------------
EXACT = [(m, v) for m, v in REDUCIBLE if m not in ("sam", "flood")]


def _pair(method, variant, rtol, alpha=np.array([0.1, 0.3, 0.2]), gen_rtol=None, **kw):
    P = sparse_problem(8, 20, k=3, seed=7)
    direction = methods.make(method, P, variant=variant, **params_for(method, P))
    red = flow(direction, initial_state(20, 3, alpha=alpha), rtol=rtol, state_form="reduced", **kw)
    gen = flow(direction, initial_state(20, 3, alpha=alpha), rtol=rtol if gen_rtol is None else gen_rtol,
               state_form="general", **kw)
    return P, red, gen


@pytest.mark.slow
@pytest.mark.parametrize("method,variant", EXACT)
def test_reduced_and_general_forms_reach_the_same_limit(method, variant):
    """≤ 1e-10 relative at rtol = 1e-11 for every method × variant that reduces (the general form at
    rtol = 1e-12: its ROS34PW2 path alone is ~1.5e-10 off in ln c at 1e-11, while the reduced form's
    explicit start is ~3e-12 off — both against the general form at 1e-13); the general form
    checks the theorem on its own: ln(u⊙v) + coef·I constant and z − z0 ∈ range Xᵀ to round-off,
    and its limit is argmin φ_{u⊙v}."""
    P, red, gen = _pair(method, variant, 1e-11, gen_rtol=1e-12)
    assert list(red.status) == list(gen.status) == ["converged"] * 3
    assert red.info["state_form"] == "reduced" and gen.info["state_form"] == "general"
    for i in range(3):
        assert rel(red.beta[i], gen.beta[i]) <= 1e-10, (i, rel(red.beta[i], gen.beta[i]))
        assert np.max(np.abs(red.log_c[i] - gen.log_c[i])) <= 1e-10
        assert np.max(np.abs(gen.log_c[i] - gen.log_c_theory[i])) <= 1e-10
        dz = gen.z[i] - gen.z0[i]
        assert null_part(P.X, dz) <= 1e-10 * max(1.0, np.linalg.norm(dz))
        pred = mirror_argmin(P.X, P.y, log_c=gen.log_c[i])
        assert rel(gen.beta[i], pred.beta) <= 1e-10


@pytest.mark.parametrize("method,variant", [("fgr", "per-sample"), ("gr", "full"), ("usam", "per-sample")])
def test_reduced_and_general_forms_agree_fast(method, variant):
    """The default-run version of the test above (three cases, rtol = 1e-9: agreement ≤ 1e-8)."""
    P, red, gen = _pair(method, variant, 1e-9)
    for i in range(3):
        assert rel(red.beta[i], gen.beta[i]) <= 1e-8


@pytest.mark.parametrize("method,variant", [("sam", "full"), ("sam", "per-sample"), ("flood", "full")])
def test_reduced_and_general_forms_agree_on_discontinuous_flows_over_a_short_horizon(method, variant):
    """Normalized SAM and flooding switch sign or blow up their step (docs/theory.md §7.9, §8); over a
    horizon before the switches both forms integrate the same path (per-example SAM: before any r_i
    changes sign, where its ascent ρ/‖∇ℓ_i‖ jumps)."""
    P, red, gen = _pair(method, variant, 1e-10, t_max=0.02 if variant == "per-sample" else 0.2)
    for i in range(3):
        assert rel(red.beta[i], gen.beta[i]) <= 1e-7, (i, rel(red.beta[i], gen.beta[i]))


def test_arbitrary_initialization_reduces():
    """u0 ≠ v0 (docs/theory.md §3.1): z0 and ln c0 are offsets; both forms agree and the limit is the
    Bregman projection argmin φ_c − ⟨z0, β⟩ with c = u⊙v measured."""
    P = sparse_problem(8, 20, k=3, seed=7)
    rng = np.random.default_rng(3)
    u0, v0 = rng.uniform(0.05, 0.4, (2, 20)), rng.uniform(0.05, 0.4, (2, 20))
    direction = methods.fgr(P, gamma=0.05, eps=0.1, variant="per-sample")
    red = flow(direction, initial_state(20, 2, u0=u0, v0=v0), rtol=1e-10, state_form="reduced")
    gen = flow(direction, initial_state(20, 2, u0=u0, v0=v0), rtol=1e-10, state_form="general")
    for i in range(2):
        assert rel(red.beta[i], gen.beta[i]) <= 1e-9
        z0 = np.log(u0[i] / v0[i])
        pred = mirror_argmin(P.X, P.y, log_c=gen.log_c[i], z0=z0)
        assert rel(gen.beta[i], pred.beta) <= 1e-10


def test_reduced_state_form_needs_depth_two():
    P = sparse_problem(5, 8, k=2, seed=0)
    with pytest.raises(DLNError, match=r"'state_form' parameter of flow must be 'general' or 'auto' at depth"):
        flow(methods.gf(P, D=3), initial_state(8, 1, alpha=0.3), state_form="reduced")
    with pytest.raises(DLNError, match=r"'state_form' parameter of flow must be one of auto, reduced, general"):
        flow(methods.gf(P), initial_state(8, 1, alpha=0.3), state_form="tiny")
    res = flow(methods.gf(P, D=3), initial_state(8, 1, alpha=0.3), t_max=0.5)
    assert res.info["state_form"] == "general"


# ---------------------------------------------------------------------------------------------
# heterogeneous batches
# ---------------------------------------------------------------------------------------------
MIX = [("gf", "full", {}), ("fgr", "per-sample", dict(gamma=np.array([0.05, 0.2]), eps=np.array([0.1, 0.05]))),
       ("gr", "full", dict(gamma=0.1)), ("bgr", "per-sample", dict(gamma=0.1, eps=0.2)),
       ("usam", "full", dict(rho=np.array([0.05, 0.02]))), ("cgr", "per-sample", dict(gamma=0.05, eps=0.1))]
SIZES = [1, 2, 1, 1, 2, 1]


@pytest.mark.parametrize("state_form", ["reduced", pytest.param("general", marks=pytest.mark.slow)])
def test_stack_equals_its_members_run_alone(state_form):
    """Methods, variants and hyper-parameters mixed in one flow: each run's result equals the run
    integrated alone (to round-off: a run depends on its batch-mates only through the round-off of
    the shared matrix products), and ``Result.split`` hands each member its rows."""
    P = sparse_problem(6, 12, k=2, seed=3)
    members = [(methods.make(m, P, variant=v, **kw), k) for (m, v, kw), k in zip(MIX, SIZES)]
    stack = methods.stack(members)
    B = sum(SIZES)
    alpha = np.linspace(0.1, 0.4, B)
    res = flow(stack, initial_state(12, B, alpha=np.repeat(alpha[:, None], 12, axis=1)), rtol=1e-9,
               state_form=state_form)
    parts = res.split()
    assert [p.direction for p in parts] == [d for d, _ in members]
    row = 0
    for (m, v, kw), k, part in zip(MIX, SIZES, parts):
        for j in range(k):
            one = {h: (x[j] if np.ndim(x) else x) for h, x in kw.items()}
            alone = flow(methods.make(m, P, variant=v, **one), initial_state(12, 1, alpha=alpha[row]), rtol=1e-9,
                         state_form=state_form)
            assert part.status[j] == alone.status[0] == "converged"
            assert part.steps[j] == alone.steps[0], (m, v, j)
            assert rel(part.beta[j], alone.beta[0]) <= 1e-12
            assert rel(part.log_c[j], alone.log_c[0]) <= 1e-12
            assert rel(part.gain[j], alone.gain[0]) <= 1e-12
            np.testing.assert_array_equal(part.log_c0[j], res.log_c0[row])
            row += 1
    np.testing.assert_allclose(res.log_c_theory, res.log_c0 - stack.gain_coef * res.gain, rtol=0, atol=0)


def test_stack_validation():
    P, Q = sparse_problem(6, 12, k=2, seed=3), sparse_problem(6, 12, k=2, seed=4)
    with pytest.raises(DLNError, match="directions on one problem"):
        methods.stack([(methods.gf(P), 1), (methods.gf(Q), 1)])
    with pytest.raises(DLNError, match="directions of one depth"):
        methods.stack([(methods.gf(P), 1), (methods.gf(P, D=3), 1)])
    with pytest.raises(DLNError, match="sizes equal to the directions' batches"):
        methods.stack([(methods.gr(P, gamma=np.array([0.1, 0.2])), 3)])
    with pytest.raises(DLNError, match="non-empty"):
        methods.stack([])


def test_stack_rates_and_coefficients_concatenate_the_members():
    P = sparse_problem(6, 12, k=2, seed=3)
    members = [(methods.make(m, P, variant=v, **kw), k) for (m, v, kw), k in zip(MIX, SIZES)]
    stack = methods.stack(members)
    rng = np.random.default_rng(0)
    B = stack.batch
    state = State(rng.normal(-0.5, 0.4, (B, 12)), rng.normal(-0.5, 0.4, (B, 12)), np.ones((B, 12)), np.ones((B, 12)))
    R = stack(state)
    row = 0
    for d, k in members:
        sub = State(*(x[row:row + k] for x in (state.a, state.b, state.su, state.sv)))
        Rm = d(sub)
        np.testing.assert_allclose(R.da[row:row + k], Rm.da, rtol=1e-14, atol=0)
        np.testing.assert_allclose(R.gain[row:row + k], Rm.gain, rtol=1e-14, atol=0)
        row += k
    rows = np.array([5, 1, 2])
    Rr = stack(State(*(x[rows] for x in (state.a, state.b, state.su, state.sv))), rows)
    np.testing.assert_allclose(Rr.db, R.db[rows], rtol=1e-14, atol=0)
    co = stack_coefficients([coefficients(d.method, d.variant, d.params, k) for d, k in members])
    assert co.coef.shape == (B, 1)
    np.testing.assert_allclose(co.coef, stack.gain_coef, rtol=1e-15)
