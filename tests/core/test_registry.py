"""dln.registry: the method specs, the public views derived from them, and a new method added by its spec alone.

The new method is the hypothetical one of the registry's "How to add a method" (asymmetric
finite-difference GR, G = ∇L + (2γ/3ε)[∇L(w + ε∇L) − ∇L(w − (ε/2)∇L)]), registered here as that text
says.  Oracles: G from its definition with the analytic ∇_w L (and ∇_w ℓ_i) of oracles.py at the
perturbed points; the lemma d ln(u⊙v)/dt = −8γ·gain with the gain written out from g̃ at the two
points; the network's own coordinates (flow ``state_form="general"``) for the reduced flow.
"""
import numpy as np
import pytest

from dln import methods, registry
from dln.model import State
from dln.reduced import ReducedSystem, coefficients
from dln.registry import METHODS_REGISTRY, VARIANTS, MethodSpec
from dln.simulate import run_batch

from .oracles import grad_beta, grad_w, grad_w_example, random_state, rel, sparse_problem, uv

GAMMA = np.array([0.05, 0.2, 0.1])
EPS = np.array([0.1, 0.03, 0.2])


def test_views_are_the_contract():
    """METHODS (in this order), PARAMS and VARIANT_METHODS are the names of docs/design.md §5."""
    assert methods.METHODS == ("gf", "gr", "fgr", "bgr", "cgr", "usam", "sam", "flood")
    assert methods.PARAMS == {"gf": (), "gr": ("gamma",), "fgr": ("gamma", "eps"), "bgr": ("gamma", "eps"),
                              "cgr": ("gamma", "eps"), "usam": ("rho",), "sam": ("rho",), "flood": ("flood_level",)}
    assert methods.VARIANT_METHODS == ("gr", "fgr", "bgr", "cgr", "usam", "sam")
    assert methods.VARIANTS == VARIANTS == ("full", "per-sample")


@pytest.mark.parametrize("name", list(METHODS_REGISTRY))
def test_specs_are_consistent(name):
    spec = METHODS_REGISTRY[name]
    assert spec.name == name
    assert spec.gain_param is None or spec.gain_param in spec.params
    assert set(spec.variants) <= set(VARIANTS) and "full" in spec.variants
    assert not spec.per_example or "per-sample" in spec.variants
    assert spec.variants == VARIANTS or spec.variant_note
    assert "docs/theory.md §" in spec.summary


# ---------------------------------------------------------------------------------------------
# a new method: its spec, as in the registry's docstring
# ---------------------------------------------------------------------------------------------
def _agr_rates(dirn, state, pt, P, data, out, full):
    gamma, eps = P["gamma"], P["eps"]
    k = gamma / (1.5 * eps)
    ascent = registry._ascent(dirn, full)
    qu_p, qv_p, aux_p = ascent(pt, eps, data)
    qu_m, qv_m, aux_m = ascent(pt, -0.5 * eps, data)
    np.multiply(-pt["ku"], pt["g"] + k * (qu_p - qu_m), out=out.da)
    np.multiply(-pt["kv"], pt["g"] + k * (qv_p - qv_m), out=out.db)
    registry._ascent_gain(pt, (aux_p + 0.5 * aux_m) / 1.5, data, out, full)


def _agr_reduced(co, P, full):
    gamma, eps = P["gamma"], P["eps"]
    co.g4[:], co.gmod[:] = 4.0 * gamma, gamma
    co.c1[:], co.c2[:], co.c3[:] = 2.0 * gamma * eps, 2.0 * eps, 3.0 * eps * eps


AGR = MethodSpec("agr", ("gamma", "eps"), VARIANTS, True, "gamma", _agr_rates, registry._penalty_jacobian("gamma"),
                 _agr_reduced, "asymmetric finite-difference GR: G = ∇L + (2γ/3ε)[∇L(w + ε∇L) − ∇L(w − ε∇L/2)] "
                 "(hypothetical, docs/theory.md §7.3)")


@pytest.fixture
def agr(monkeypatch):
    """The registry with AGR in ``_SPECS`` (the views are derived when dln.methods is imported, so
    they are extended here as that derivation would have extended them)."""
    monkeypatch.setitem(METHODS_REGISTRY, "agr", AGR)
    monkeypatch.setattr(methods, "METHODS", methods.METHODS + ("agr",))
    monkeypatch.setitem(methods.PARAMS, "agr", AGR.params)
    monkeypatch.setattr(methods, "VARIANT_METHODS", methods.VARIANT_METHODS + ("agr",))
    return "agr"


def _G_agr(X, y, u, v, gamma, eps, variant):
    """G(w) of AGR from its definition; per-sample: the mean over examples of the same with ∇ℓ_i."""
    d, n = X.shape[1], X.shape[0]
    w = np.concatenate([u, v])

    def combine(grad, g0):
        return g0 + 2 * gamma / (3 * eps) * (grad(w + eps * g0) - grad(w - 0.5 * eps * g0))
    if variant == "full":
        grad = lambda w_: np.concatenate(grad_w(X, y, w_[:d], w_[d:]))  # noqa: E731
        return combine(grad, grad(w))
    total = np.zeros(2 * d)
    for i in range(n):
        grad_i = lambda w_, i=i: np.concatenate(grad_w_example(X, y, w_[:d], w_[d:], i))  # noqa: E731
        total += combine(grad_i, grad_i(w))
    return total / n


def _gain_agr(X, y, u, v, eps, variant):
    """Gain integrand: g⊙[g̃(ε) + ½g̃(−ε/2)]/(3/2) (full), (1/n)Σ_i x_i² r_i [r̃_i(ε) + ½r̃_i(−ε/2)]/(3/2)."""
    d, n = X.shape[1], X.shape[0]
    w = np.concatenate([u, v])
    beta = lambda w_: w_[:d] ** 2 - w_[d:] ** 2  # noqa: E731
    r = X @ beta(w) - y
    if variant == "full":
        g0 = np.concatenate(grad_w(X, y, u, v))
        gt = lambda e: grad_beta(X, y, beta(w + e * g0))  # noqa: E731
        return grad_beta(X, y, beta(w)) * (gt(eps) + 0.5 * gt(-0.5 * eps)) / 1.5
    total = np.zeros(d)
    for i in range(n):
        gi = np.concatenate(grad_w_example(X, y, u, v, i))
        rt = lambda e: X[i] @ beta(w + e * gi) - y[i]  # noqa: E731
        total += X[i] ** 2 * r[i] * (rt(eps) + 0.5 * rt(-0.5 * eps)) / 1.5
    return total / n


@pytest.mark.parametrize("variant", VARIANTS)
def test_new_method_rates_are_its_definition(tiny, agr, variant):
    """The direction of the registered spec moves w with velocity −G(w), and d ln(u⊙v)/dt = −8γ·gain
    with the gain written out (docs/theory.md §4 lemma)."""
    X, y = tiny.X, tiny.y
    st = random_state(3, tiny.d, 4)
    direction = methods.make(agr, tiny, variant=variant, gamma=GAMMA, eps=EPS)
    R = direction(st)
    U, V = uv(st)
    for i in range(3):
        G = _G_agr(X, y, U[i], V[i], GAMMA[i], EPS[i], variant)
        assert rel(-np.concatenate([R.da[i] * U[i], R.db[i] * V[i]]), G) < 1e-11, i
        assert rel(R.gain[i], _gain_agr(X, y, U[i], V[i], EPS[i], variant)) < 1e-11, i
    np.testing.assert_allclose(direction.gain_coef[:, 0], 8 * GAMMA, rtol=1e-15)
    np.testing.assert_allclose(R.da + R.db, -direction.gain_coef * R.gain, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("variant", VARIANTS)
def test_new_method_reduced_rates_are_its_rates(agr, variant):
    """The reduced constants of the spec give the direction's rates, mapped back from (ν̇, μ̇ or İ)."""
    P = sparse_problem(6, 9, k=2, seed=11)
    direction = methods.make(agr, P, variant=variant, gamma=GAMMA, eps=EPS)
    rng = np.random.default_rng(5)
    state0 = State(rng.normal(-0.7, 0.4, (3, 9)), rng.normal(-0.7, 0.4, (3, 9)), np.ones((3, 9)), np.ones((3, 9)))
    system = ReducedSystem(P, variant, coefficients(agr, variant, direction.params, 3), state0)
    Y = 0.3 * rng.standard_normal((3, system.N))
    F = np.empty_like(Y)
    _, _, _, A, Bv = system.rates(Y, F)
    R = direction(State(0.5 * A, 0.5 * Bv, np.ones((3, 9)), np.ones((3, 9))))
    da, db = system.rates_ab(F)
    gain = F[:, P.n:] @ system.X2 if variant == "per-sample" else F[:, P.n:]
    for i in range(3):
        assert rel(da[i], R.da[i]) < 1e-12 and rel(db[i], R.db[i]) < 1e-12, i
        assert rel(gain[i], R.gain[i]) < 1e-12, i


@pytest.mark.parametrize("variant", VARIANTS)
def test_new_method_runs_in_both_state_forms(agr, variant):
    """run_batch takes the new method by name; its reduced flow and its flow in (ln u, ln v) reach
    the same interpolator, and the gain integral predicts the measured ln(u⊙v)."""
    P = sparse_problem(8, 20, k=2, seed=2)
    kw = dict(variant=variant, alpha=0.1, gamma=np.array([0.02, 0.1]), eps=0.05, rtol=1e-9)
    red = run_batch(P, agr, state_form="reduced", **kw)
    gen = run_batch(P, agr, state_form="general", **kw)
    assert list(red.status) == list(gen.status) == ["converged", "converged"]
    for i in range(2):
        assert rel(red.beta[i], gen.beta[i]) < 1e-6, i
        assert np.max(np.abs(gen.log_c[i] - gen.log_c_theory[i])) < 1e-8
    assert np.max(np.abs(P.X @ red.beta.T - P.y[:, None])) < 1e-6
    # the penalty moved c: a larger γ gives a smaller effective α (docs/theory.md §7)
    assert np.all(red.log_c[1] < red.log_c[0])
    assert np.all(red.log_c[0] < 2 * np.log(0.1))
