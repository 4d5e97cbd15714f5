"""The training methods side by side: one :class:`MethodSpec` per method (docs/design.md §2).

A method is defined by four things, each a small function of the spec (docs/theory.md §4, §7, §8):

- its **rates**: the "effective g" q_u, q_v of :class:`dln.methods.Direction`, written as log-rates
  da = −k_u⊙q_u, db = −k_v⊙q_v, and the integrand of its gain integral;
- its **gain coefficient**: ln(u⊙v)(t) = ln(u0⊙v0) − gain_coef·∫gain dt (:func:`log_c_from_gain`),
  with gain_coef = 8·(the parameter named by ``gain_param``), or 0 where u⊙v is conserved;
- its **Jacobian model** for the implicit integrator: the scale s and the penalty weight γ_k of
  :class:`dln.methods.Linearization` (C = s·I + γ_k·K, or diag(4γ_kκ) per example);
- its **reduced-state coefficients** (:func:`dln.reduced.coefficients`): the constants of the
  depth-2 reduced flow (the module docstring of :mod:`dln.reduced` derives them).

:class:`dln.methods.Direction` and :func:`dln.reduced.coefficients` dispatch through
:data:`METHODS_REGISTRY`; ``METHODS``, ``PARAMS`` and ``VARIANT_METHODS`` of :mod:`dln.methods` are
views of it.

How to add a method
-------------------
Write the method's functions and its spec in this module and put the spec in ``_SPECS``.  The
direction (:func:`dln.methods.make`), its Jacobian model, the reduced flow and the gain bookkeeping
dispatch through the spec; the CLI's ``--method`` choices, the grid's parameter rules, ``run_batch``
and the records read ``METHODS``, ``PARAMS`` and ``VARIANT_METHODS``, which derive from the
registry.  A method with a *new hyper-parameter* also needs its entry in the parameter table
(docs/design.md, "Adding a parameter").  Then write the update in docs/theory.md and test the rates
against an independent oracle (the definition with ∇L at the perturbed points, or finite differences
of an objective, as in tests/core/test_methods.py) and the reduced rates against the rates
(tests/core/test_reduced.py).  A method's name is still read by the flooding stop rules of
``flow`` and ``iterate`` (a rule of flooding, not a dispatch) and by ``dln.workers``' per-method
cost estimate for scheduling (an unknown method costs 1).

Example: asymmetric finite-difference GR with the backward step half the forward one (hypothetical),

    G = ∇L + (2γ/3ε)[∇L(w + ε∇L) − ∇L(w − (ε/2)∇L)]        (= ∇L + γH∇L + O(ε)).

With the ascent primitive at +ε and −ε/2, its rates are those of central differences reweighted;
the gain, by the lemma of docs/theory.md §4, is d ln(u⊙v)/dt = −8γ g⊙[g̃(ε) + ½g̃(−ε/2)]/(3/2); and
the reduced constants follow from r_ε = r + 4εq₁ + 4ε²q₂ (:mod:`dln.reduced`) as for F-GR::

    def _agr_rates(dirn, state, pt, P, data, out, full):
        gamma, eps = P["gamma"], P["eps"]
        k = gamma / (1.5 * eps)
        ascent = _ascent(dirn, full)
        qu_p, qv_p, aux_p = ascent(pt, eps, data)
        qu_m, qv_m, aux_m = ascent(pt, -0.5 * eps, data)
        np.multiply(-pt["ku"], pt["g"] + k * (qu_p - qu_m), out=out.da)
        np.multiply(-pt["kv"], pt["g"] + k * (qv_p - qv_m), out=out.db)
        _ascent_gain(pt, (aux_p + 0.5 * aux_m) / 1.5, data, out, full)

    def _agr_reduced(co, P, full):  # p = r + 4γq₁ + 2γε q₂;  r_ε of the gain: r + 2ε q₁ + 3ε² q₂
        gamma, eps = P["gamma"], P["eps"]
        co.g4[:], co.gmod[:] = 4.0 * gamma, gamma
        co.c1[:], co.c2[:], co.c3[:] = 2.0 * gamma * eps, 2.0 * eps, 3.0 * eps * eps

    MethodSpec("agr", ("gamma", "eps"), VARIANTS, True, "gamma", _agr_rates, _penalty_jacobian("gamma"),
               _agr_reduced, "asymmetric finite-difference GR: G = ∇L + (2γ/3ε)[∇L(w + ε∇L) − ∇L(w − ε∇L/2)]")

tests/core/test_registry.py registers exactly this spec and checks it end to end (rates against the
definition, reduced rates against the rates, ``run_batch`` in both state forms).  Every
function of a spec receives ``P``, the hyper-parameters as per-run columns of shape (B, 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .model import powers

VARIANTS = ("full", "per-sample")


@dataclass(frozen=True)
class MethodSpec:
    """One training method (see the module docstring).

    Attributes
    ----------
    name : str
        The method's name (``--method``, CSV column ``method``).
    params : tuple of str
        Hyper-parameters it uses (names of the parameter table: CLI flags and CSV columns).
    variants : tuple of str
        The variants its direction accepts: ``("full", "per-sample")``, or ``("full",)`` with
        ``variant_note`` saying why in the error for another variant.
    per_example : bool
        Whether the update itself has a per-example form (docs/theory.md §7.5), i.e. ``--variant``
        is a choice of the user.  GF accepts both variants but its update is the same: its variant
        only picks which gain integral is recorded (∫g² or (1/n)Σ_i x_i²∫r_i²).
    gain_param : str or None
        The parameter p with gain_coef = 8p (docs/theory.md §7.2–§8); None where c is conserved.
    rates : callable
        ``rates(direction, state, pt, P, data, out, full)`` writes ``out.da, out.db, out.gain`` of one
        block of runs; ``pt`` is :meth:`dln.methods.Direction.point` at the state.
    jacobian : callable
        ``jacobian(direction, state, P, B) -> (scale, weight)``: s of the Jacobian model (None: 1)
        and the penalty weight γ_k (None: no penalty), arrays of shape (B,).
    reduced : callable or None
        ``reduced(co, P, full)`` sets the method's constants of :class:`dln.reduced.Coefficients`
        (other than ``coef``, which is the gain coefficient); None if the method has no reduced form.
    summary : str
        The update in one line, with its docs/theory.md section.
    variant_note : str
        Why ``variants`` is ``("full",)`` (the error message for another variant).
    """

    name: str
    params: tuple
    variants: tuple
    per_example: bool
    gain_param: str | None
    rates: Callable
    jacobian: Callable
    reduced: Callable | None
    summary: str
    variant_note: str = ""

    def gain_coef(self, P: dict) -> np.ndarray:
        """8γ (8ρ for SAM) per run, shape (B, 1); zeros((1, 1)) where c is conserved (docs/theory.md §7.2–§8)."""
        return 8.0 * P[self.gain_param] if self.gain_param else np.zeros((1, 1))


def log_c_from_gain(log_c0, gain_coef, gain):
    """ln c(t) = ln c(0) − gain_coef·I(t), I = ∫gain dt (docs/theory.md §7.2, §7.3, §7.5, §8)."""
    return log_c0 - gain_coef * gain


# -- rates ------------------------------------------------------------------------------------------
def _gf_rates(dirn, state, pt, P, data, out, full):
    """q = g (docs/theory.md §2); the gain integrand g² (full) or (1/n)Σ_i x_i² r_i² (per-sample)."""
    g = pt["g"]
    np.multiply(-pt["ku"], g, out=out.da)
    np.multiply(-pt["kv"], g, out=out.db)
    if full:
        np.multiply(g, g, out=out.gain)
    else:
        data.back(pt["r"] ** 2, data.X2, out=out.gain)


def _flood_rates(dirn, state, pt, P, data, out, full):
    """ẇ = −sign(L − b)∇L (docs/theory.md §7.9): q = sign(L − b)·g, no gain."""
    g = pt["g"]
    s = np.sign(pt["loss"] - P["flood_level"].ravel())[:, None]
    np.multiply(-s * pt["ku"], g, out=out.da)
    np.multiply(-s * pt["kv"], g, out=out.db)
    out.gain[:] = 0.0


def _gr_rates(dirn, state, pt, P, data, out, full):
    """ẇ = −(∇L + γH∇L) (docs/theory.md §7.1, §7.2, §7.7):  q_u = Q + γ(D−1)k_u⊙s,  q_v = Q + γ(D−1)k_v⊙s,

    - full:        Q = g + γD² M(m_D⊙g) = Xᵀ(r + γD² X(m_D⊙g))/n,  m_D = u^{2D−2} + v^{2D−2},  s = g²;
    - per-sample:  Q = g + γD² Xᵀ(r⊙κ)/n = Xᵀ(r⊙(1 + γD²κ))/n,  s = (1/n)Σ_i x_i² r_i²  (§7.5)

    (at D = 2: (H∇L)_u = 4u⊙g² + 8u⊙M(m⊙g)); the gain integrand is s.
    """
    g, ku, kv = pt["g"], pt["ku"], pt["kv"]
    gamma, D, r = P["gamma"], dirn.D, pt["r"]
    if full:
        mD = dirn.m(pt) if D == 2 else sum(powers(state.a, state.b, state.su, state.sv, 2 * D - 2))
        Q = data.back(r + gamma * D * D * data.fwd(mD * g))
        s = np.multiply(g, g, out=out.gain)
    else:
        Q = data.back(r * (1.0 + gamma * D * D * dirn.kappa(pt, data)))
        s = data.back(r * r, data.X2, out=out.gain)
    np.multiply(-ku, Q + gamma * (D - 1) * ku * s, out=out.da)
    np.multiply(-kv, Q + gamma * (D - 1) * kv * s, out=out.db)


def _ascent(dirn, full):
    """The ascent primitive: at w + ε∇L (full, docs/theory.md §7.3) or per example (§7.5)."""
    return dirn.ascent if full else dirn.ascent_per_sample


def _ascent_gain(pt, aux, data, out, full):
    """Gain integrand g⊙g̃ (full) or (1/n)Σ_i x_i² r_i r̃_i (per-sample), from aux = g̃ or r⊙r̃."""
    if full:
        np.multiply(pt["g"], aux, out=out.gain)
    else:
        data.back(aux, data.X2, out=out.gain)


def _finite_difference(dirn, pt, gamma, eps, data, out, full):
    """G_ε = (1 − γ/ε)∇L(w) + (γ/ε)∇L(w + ε∇L) with signed ε (docs/theory.md §7.3)."""
    g = pt["g"]
    k = gamma / eps
    qu, qv, aux = _ascent(dirn, full)(pt, eps, data)
    g0 = (1.0 - k) * g
    np.multiply(-pt["ku"], g0 + k * qu, out=out.da)
    np.multiply(-pt["kv"], g0 + k * qv, out=out.db)
    _ascent_gain(pt, aux, data, out, full)


def _fgr_rates(dirn, state, pt, P, data, out, full):
    """F-GR: ascent step +ε (docs/theory.md §7.3)."""
    _finite_difference(dirn, pt, P["gamma"], P["eps"], data, out, full)


def _bgr_rates(dirn, state, pt, P, data, out, full):
    """B-GR: F-GR with signed ε → −ε (docs/theory.md §7.3)."""
    _finite_difference(dirn, pt, P["gamma"], -P["eps"], data, out, full)


def _cgr_rates(dirn, state, pt, P, data, out, full):
    """G = ∇L + (γ/2ε)[∇L(w + ε∇L) − ∇L(w − ε∇L)] (docs/theory.md §7.3); gain from the mean of ±ε."""
    g = pt["g"]
    gamma, eps = P["gamma"], P["eps"]
    k = 0.5 * gamma / eps
    ascent = _ascent(dirn, full)
    qu_p, qv_p, aux_p = ascent(pt, eps, data)
    qu_m, qv_m, aux_m = ascent(pt, -eps, data)
    np.multiply(-pt["ku"], g + k * (qu_p - qu_m), out=out.da)
    np.multiply(-pt["kv"], g + k * (qv_p - qv_m), out=out.db)
    _ascent_gain(pt, 0.5 * (aux_p + aux_m), data, out, full)


def _sam_family(dirn, pt, rho, eps, data, out, full):
    """ẇ = −∇L(w + ε∇L): F-GR with γ = ε (docs/theory.md §8); the gain is measured in units of ρ
    (gain_coef = 8ρ), so the integrand is scaled by ε/ρ."""
    qu, qv, aux = _ascent(dirn, full)(pt, eps, data)
    np.multiply(-pt["ku"], qu, out=out.da)
    np.multiply(-pt["kv"], qv, out=out.db)
    _ascent_gain(pt, aux * (eps / rho), data, out, full)


def _usam_rates(dirn, state, pt, P, data, out, full):
    """Un-normalized SAM: ε = ρ (docs/theory.md §8)."""
    _sam_family(dirn, pt, P["rho"], P["rho"], data, out, full)


def _radius(rho, norm):
    """ρ/‖∇‖, and 0 where the gradient vanishes (SAM's guard: there the ascent is 0, docs/theory.md §8)."""
    return np.divide(np.broadcast_to(rho, norm.shape), norm, out=np.zeros_like(norm), where=norm > 0)


def _sam_eps(dirn, state, pt, rho, data, full):
    """ε = ρ/‖∇_w L‖ (full) or ε_i = ρ/‖∇_w ℓ_i‖ = ρ/(2|r_i|√κ_i) (per-sample, docs/theory.md §7.5, §8)."""
    if full:
        return _radius(rho, dirn.grad_norm(state, pt))
    return _radius(rho, 2.0 * np.abs(pt["r"]) * np.sqrt(dirn.kappa(pt, data)))


def _sam_rates(dirn, state, pt, P, data, out, full):
    """Normalized SAM: ε = ρ/‖∇L‖ (docs/theory.md §8)."""
    rho = P["rho"]
    _sam_family(dirn, pt, rho, _sam_eps(dirn, state, pt, rho, data, full), data, out, full)


# -- Jacobian models ------------------------------------------------------------------------------------
def _no_jacobian(dirn, state, P, B):
    """GF: C = I (the exact Jacobian at D = 2, docs/theory.md §2.1)."""
    return None, None


def _flood_jacobian(dirn, state, P, B):
    """Flooding: C = sign(L − b)·I."""
    pt = dirn.point(state, dirn.data)
    return np.sign(pt["loss"] - P["flood_level"].ravel()), None


def _penalty_jacobian(name):
    """The O(γ) stiff part of GR-type methods with γ_k = P[name] (docs/theory.md §7.2, §7.5)."""
    def jacobian(dirn, state, P, B):
        return None, np.broadcast_to(P[name].ravel(), (B,))
    return jacobian


def _sam_jacobian(dirn, state, P, B):
    """Normalized SAM: γ_k = ρ/‖∇_w L‖ at the state (0 where the gradient vanishes)."""
    pt = dirn.point(state, dirn.data)
    return None, _radius(P["rho"].ravel(), dirn.grad_norm(state, pt).ravel())


# -- reduced-state coefficients (dln.reduced) -------------------------------------------------------
def _no_reduced_terms(co, P, full):
    """GF: p = r, gain g² or r²/n: every constant is 0."""


def _flood_reduced(co, P, full):
    co.flood[:] = True
    co.level[:] = P["flood_level"]


def _penalty_reduced(co, gamma, eps, central=False):
    """p = r + 4γ q₁ + 4γε q₂ (full) or r(1 + 4γκ) + 4γε r² cube (per-sample), r_ε with 4ε, 4ε²
    (:mod:`dln.reduced`); central differences cancel the odd powers of ε."""
    with np.errstate(over="ignore"):  # a huge γ or ρ gives infinite rates: the run diverges
        co.g4[:] = 4.0 * gamma
        co.gmod[:] = gamma
        co.c1[:] = 0.0 if central else 4.0 * gamma * eps
        co.c2[:] = 0.0 if central else 4.0 * eps
        co.c3[:] = 4.0 * eps * eps


def _gr_reduced(co, P, full):
    _penalty_reduced(co, P["gamma"], 0.0)


def _fgr_reduced(co, P, full):
    _penalty_reduced(co, P["gamma"], P["eps"])


def _bgr_reduced(co, P, full):
    _penalty_reduced(co, P["gamma"], -P["eps"])


def _cgr_reduced(co, P, full):
    _penalty_reduced(co, P["gamma"], P["eps"], central=True)


def _usam_reduced(co, P, full):
    co.rho[:] = P["rho"]
    _penalty_reduced(co, P["rho"], P["rho"])


def _sam_reduced(co, P, full):
    co.rho[:] = P["rho"]
    co.sam[:] = True  # γ = ε is state dependent: set at every evaluation
    co.gmod[:] = P["rho"] if not full else 0.0


# -- the registry -----------------------------------------------------------------------------------
_SPECS = (
    MethodSpec("gf", (), VARIANTS, False, None, _gf_rates, _no_jacobian, _no_reduced_terms,
               "gradient flow: ẇ = −∇L (docs/theory.md §2)"),
    MethodSpec("gr", ("gamma",), VARIANTS, True, "gamma", _gr_rates, _penalty_jacobian("gamma"), _gr_reduced,
               "exact GR: ẇ = −(∇L + γH∇L) (docs/theory.md §7.1, §7.2, §7.5)"),
    MethodSpec("fgr", ("gamma", "eps"), VARIANTS, True, "gamma", _fgr_rates, _penalty_jacobian("gamma"), _fgr_reduced,
               "forward finite-difference GR: G = ∇L + (γ/ε)[∇L(w + ε∇L) − ∇L(w)] (docs/theory.md §7.3)"),
    MethodSpec("bgr", ("gamma", "eps"), VARIANTS, True, "gamma", _bgr_rates, _penalty_jacobian("gamma"), _bgr_reduced,
               "backward finite-difference GR: F-GR with ε → −ε (docs/theory.md §7.3)"),
    MethodSpec("cgr", ("gamma", "eps"), VARIANTS, True, "gamma", _cgr_rates, _penalty_jacobian("gamma"), _cgr_reduced,
               "central-difference GR: G = ∇L + (γ/2ε)[∇L(w + ε∇L) − ∇L(w − ε∇L)] (docs/theory.md §7.3)"),
    MethodSpec("usam", ("rho",), VARIANTS, True, "rho", _usam_rates, _penalty_jacobian("rho"), _usam_reduced,
               "un-normalized SAM: ẇ = −∇L(w + ρ∇L) (docs/theory.md §8)"),
    MethodSpec("sam", ("rho",), VARIANTS, True, "rho", _sam_rates, _sam_jacobian, _sam_reduced,
               "normalized SAM: ẇ = −∇L(w + ρ∇L/‖∇L‖) (docs/theory.md §8)"),
    MethodSpec("flood", ("flood_level",), ("full",), False, None, _flood_rates, _flood_jacobian, _flood_reduced,
               "flooding: ẇ = −sign(L − b)∇L (docs/theory.md §7.9)",
               variant_note="flooding acts on the full-batch loss"),
)

#: name → :class:`MethodSpec`, in the order of ``dln.methods.METHODS``.
METHODS_REGISTRY = {spec.name: spec for spec in _SPECS}
