"""SymPy derivations of the closed forms in docs/theory.md, each carrying its own check.

Every :class:`Derivation` starts from a definition (the loss, the flow, the update rule),
lets SymPy do the calculus, and checks the result against the closed form stated in
docs/theory.md by simplification to zero (or an exact series / limit). The displayed
``expressions`` are the per-coordinate closed forms; ``derived`` holds the raw SymPy results
for a small generic instance (n = 2 examples, d = 3 coordinates, all entries symbolic).

``DERIVATIONS`` is an ordered registry (name → Derivation, built on first access);
:func:`derive_all` runs every check; :func:`render` prints one; :func:`numeric` is the only
place ``sympy.lambdify`` is called, and :func:`lambdified_formulas` uses it to give NumPy
callables of the derived (not the closed-form) expressions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.printing.pretty.stringpict import prettyForm

#: Size of the generic symbolic instance: n examples, d coordinates.
SYMBOLIC_N = 2
SYMBOLIC_D = 3


@dataclass(frozen=True)
class Derivation:
    """One derivation: what is claimed, the resulting formulas, and a self-check.

    Attributes
    ----------
    name : str
        Registry key.
    title : str
        One line, with the docs/theory.md section.
    statement : str
        What is derived from what.
    expressions : dict[str, sympy.Basic]
        Closed forms (usually ``sympy.Eq``), per coordinate j / example i.
    check : callable
        ``check() -> bool``: True iff every derived quantity equals its closed form exactly.
    derived : dict[str, sympy.Basic]
        Raw SymPy results on the generic instance (for :func:`lambdified_formulas`).
    """

    name: str
    title: str
    statement: str
    expressions: dict
    check: Callable[[], bool]
    derived: dict = field(default_factory=dict)


def _is_zero(expr) -> bool:
    """Exact zero test of a scalar or matrix expression (expand, then cancel if needed)."""
    items = list(expr) if isinstance(expr, sp.MatrixBase) else [expr]
    for item in items:
        e = sp.expand(item)
        if e != 0 and sp.simplify(sp.cancel(e)) != 0:
            return False
    return True


def _ew(a, b):
    return a.multiply_elementwise(b)


# --------------------------------------------------------------------------------------
# the generic DLN instance (docs/theory.md §1)
# --------------------------------------------------------------------------------------

@functools.cache
def _dln(n: int = SYMBOLIC_N, d: int = SYMBOLIC_D):
    """Symbols and the loss of a generic n×d DLN, with SymPy gradients (cached)."""
    u = sp.Matrix(sp.symbols(f"u1:{d + 1}", positive=True))
    v = sp.Matrix(sp.symbols(f"v1:{d + 1}", positive=True))
    X = sp.Matrix(n, d, lambda i, j: sp.Symbol(f"x{i + 1}{j + 1}", real=True))
    y = sp.Matrix(sp.symbols(f"y1:{n + 1}", real=True))
    gamma = sp.Symbol("gamma", positive=True)
    eps = sp.Symbol("epsilon", real=True, nonzero=True)

    def beta(uu, vv):
        return _ew(uu, uu) - _ew(vv, vv)

    def loss(uu, vv):
        r = X * beta(uu, vv) - y
        return (r.T * r)[0] / (2 * n)

    def grads(uu, vv):
        """(∇_u L, ∇_v L) by differentiation, evaluated at (uu, vv)."""
        L = loss(u, v)
        gu = sp.Matrix([sp.diff(L, s) for s in u])
        gv = sp.Matrix([sp.diff(L, s) for s in v])
        sub = {**dict(zip(u, uu)), **dict(zip(v, vv))}
        return gu.subs(sub, simultaneous=True), gv.subs(sub, simultaneous=True)

    b = beta(u, v)
    r = X * b - y
    g = X.T * r / n
    M = X.T * X / n
    m = _ew(u, u) + _ew(v, v)
    L = loss(u, v)
    gu, gv = grads(u, v)
    return dict(n=n, d=d, u=u, v=v, X=X, y=y, gamma=gamma, eps=eps, beta=b, r=r, g=g, M=M, m=m,
                L=L, grad_u=gu, grad_v=gv, grads=grads, beta_fn=beta)


# --------------------------------------------------------------------------------------
# display symbols
# --------------------------------------------------------------------------------------

class _Quantity(sp.Symbol):
    """A named compound quantity or left-hand side that no SymPy symbol name spells
    ((M(m⊙g))_j, ‖∇_w L‖², d ln(u_j v_j)/dt, ...).

    Printed verbatim as its Unicode name by ``sympy.pretty`` (which would otherwise split the name
    at ``_`` and ``^``) and as ``tex`` by ``sympy.latex``; sorted after the ordinary symbols in a
    product (γ H∇L, not H∇L γ).
    """

    def __new__(cls, name: str, tex: str):
        obj = super().__new__(cls, name)
        obj.tex = tex
        return obj

    def __getnewargs_ex__(self):
        return (self.name, self.tex), {}

    @classmethod
    def class_key(cls):
        return 2, 1, cls.__name__  # Symbol's key is (2, 0, "Symbol")

    def _latex(self, printer, **kwargs):
        return self.tex

    def _pretty(self, printer, **kwargs):
        return prettyForm(self.name)


# per-coordinate display symbols
_j = sp.Symbol("j", integer=True)
_uj, _vj, _gj, _mj, _betaj = sp.symbols("u_j v_j g_j m_j beta_j")
_Mmg = _Quantity("(M(m⊙g))_j", r"(M(m \odot g))_{j}")
_gamma, _eps = sp.symbols("gamma epsilon")
_D3L = _Quantity("∇³L[∇L, ∇L]", r"\nabla^{3} L[\nabla L, \nabla L]")
_d_ln_c = _Quantity("d ln(u_j v_j)/dt", r"\frac{d}{d t} \ln(u_{j} v_{j})")
_dz = _Quantity("dz_j/dt", r"\frac{d z_{j}}{d t}")


def _registry_entry(builder):
    _BUILDERS[builder.__name__.removeprefix("_build_")] = builder
    return builder


_BUILDERS: dict[str, Callable[[], Derivation]] = {}


# --------------------------------------------------------------------------------------
# 1. gradient, HVP, per-example gradient norm (docs/theory.md §7.1, §7.5)
# --------------------------------------------------------------------------------------

@_registry_entry
def _build_gradient_hvp() -> Derivation:
    s = _dln()
    u, v, X, g, M, m, n = s["u"], s["v"], s["X"], s["g"], s["M"], s["m"], s["n"]
    gu, gv = s["grad_u"], s["grad_v"]
    norm2 = sum(e**2 for e in gu) + sum(e**2 for e in gv)
    hvp_u = sp.Matrix([sp.diff(norm2 / 2, t) for t in u])
    hvp_v = sp.Matrix([sp.diff(norm2 / 2, t) for t in v])
    Mmg = M * _ew(m, g)
    r = s["r"]
    per_example = []
    for i in range(n):
        ell = r[i] ** 2 / 2
        per_example.append(sum(sp.diff(ell, t) ** 2 for t in list(u) + list(v)))
    per_example = sp.Matrix(per_example)
    kappa = sp.Matrix([sum(X[i, j] ** 2 * m[j] for j in range(s["d"])) for i in range(n)])

    def check():
        return all([
            _is_zero(gu - 2 * _ew(u, g)),
            _is_zero(gv + 2 * _ew(v, g)),
            _is_zero(norm2 - 4 * sum(m[j] * g[j] ** 2 for j in range(s["d"]))),
            _is_zero(hvp_u - (4 * _ew(u, _ew(g, g)) + 8 * _ew(u, Mmg))),
            _is_zero(hvp_v - (4 * _ew(v, _ew(g, g)) - 8 * _ew(v, Mmg))),
            _is_zero(per_example - 4 * _ew(_ew(r, r), kappa)),
        ])

    ri, kappai = sp.symbols("r_i kappa_i")
    return Derivation(
        name="gradient_hvp",
        title="DLN gradient, gradient norm and HVP along the gradient (docs/theory.md §7.1, §7.5)",
        statement=("From L = (1/2n)||X(u*u - v*v) - y||^2 by differentiation: the gradient, "
                   "||grad_w L||^2, H grad L = grad_w (1/2)||grad_w L||^2, and the per-example "
                   "||grad_w l_i||^2 for l_i = r_i^2/2, with g = X^T r/n, M = X^T X/n, m = u^2 + v^2, "
                   "kappa_i = sum_j x_ij^2 m_j."),
        expressions={
            "grad_u": sp.Eq(_Quantity("(∇_u L)_j", r"(\nabla_{u} L)_{j}"), 2 * _uj * _gj),
            "grad_v": sp.Eq(_Quantity("(∇_v L)_j", r"(\nabla_{v} L)_{j}"), -2 * _vj * _gj),
            "grad_norm2": sp.Eq(_Quantity("‖∇_w L‖²", r"\|\nabla_{w} L\|^{2}"),
                                4 * sp.Sum(_mj * _gj**2, (_j, 1, sp.Symbol("d")))),
            "hvp_u": sp.Eq(_Quantity("(H∇L)_{u_j}", r"(H \nabla L)_{u_{j}}"), 4 * _uj * _gj**2 + 8 * _uj * _Mmg),
            "hvp_v": sp.Eq(_Quantity("(H∇L)_{v_j}", r"(H \nabla L)_{v_{j}}"), 4 * _vj * _gj**2 - 8 * _vj * _Mmg),
            "per_example_grad_norm2": sp.Eq(_Quantity("‖∇_w ℓ_i‖²", r"\|\nabla_{w} \ell_{i}\|^{2}"),
                                            4 * ri**2 * kappai),
        },
        check=check,
        derived={"grad_u": gu, "grad_v": gv, "hvp_u": hvp_u, "hvp_v": hvp_v,
                 "per_example_grad_norm2": per_example},
    )


# --------------------------------------------------------------------------------------
# 2. the potential (docs/theory.md §1, §2.2)
# --------------------------------------------------------------------------------------

@_registry_entry
def _build_potential() -> Derivation:
    s_, t_ = sp.symbols("s t", real=True)
    beta, c = sp.symbols("beta c", positive=True)
    q_closed = 2 - sp.sqrt(4 + s_**2) + s_ * sp.asinh(s_ / 2)
    q_int = sp.integrate(sp.asinh(t_ / 2), (t_, 0, s_))
    phi = c * q_closed.subs(s_, beta / c)
    small_c_leading = beta * sp.log(1 / c) + beta * sp.log(beta) - beta
    e = sp.Symbol("e", positive=True)  # e = 1/c
    large_c = sp.series(phi.subs(c, 1 / e), e, 0, 3).removeO()

    def check():
        return all([
            _is_zero(q_int - q_closed),
            _is_zero(sp.diff(q_closed, s_) - sp.asinh(s_ / 2)),
            _is_zero(sp.simplify(sp.diff(phi, beta) - sp.asinh(beta / (2 * c)))),
            sp.limit(phi - small_c_leading, c, 0, "+") == 0,
            sp.limit(phi / (beta * sp.log(1 / c)), c, 0, "+") == 1,
            sp.limit((phi - small_c_leading) / c, c, 0, "+") == 2,  # the remainder is O(c), not o(1) only
            _is_zero(large_c - beta**2 * e / 4),
        ])

    phi_c = _Quantity("φ_c(β)", r"\phi_{c}(\beta)")
    return Derivation(
        name="potential",
        title="Hyperbolic-entropy potential and its limits (docs/theory.md §1, §2.2)",
        statement=("q(s) = int_0^s arcsinh(t/2) dt in closed form; q' and grad phi_c; for beta > 0, "
                   "c -> 0 gives phi_c ~ ln(1/c)|beta| + |beta| ln|beta| - |beta| (weighted l1), "
                   "c -> oo gives phi_c = beta^2/(4c) + O(c^-3) (l2)."),
        expressions={
            "q": sp.Eq(sp.Function("q")(s_), q_int),
            "q_prime": sp.Eq(sp.Derivative(sp.Function("q")(s_), s_), sp.simplify(sp.diff(q_closed, s_))),
            "grad_phi": sp.Eq(_Quantity("∂φ_c/∂β", r"\frac{\partial \phi_{c}}{\partial \beta}"),
                              sp.simplify(sp.diff(phi, beta))),
            "small_c": sp.Eq(phi_c, small_c_leading + sp.Order(c, (c, 0))),
            "large_c": sp.Eq(phi_c, beta**2 / (4 * c) + sp.Order(c**-3, (c, sp.oo))),
        },
        check=check,
        derived={"q": q_int},
    )


# --------------------------------------------------------------------------------------
# 3. exact GR flow in log coordinates (docs/theory.md §7.2, §7.5)
# --------------------------------------------------------------------------------------

def _log_rates(du, dv, u, v):
    """(d ln(u v)/dt, dz/dt) per coordinate from u̇, v̇ (exact division by u, v)."""
    # Every term of the expanded u̇_j contains u_j: distributing 1/u_j over the sum cancels
    # the powers term by term, with no polynomial gcd.
    dlu = [sp.expand(sp.expand(du[j]) / u[j]) for j in range(len(u))]
    dlv = [sp.expand(sp.expand(dv[j]) / v[j]) for j in range(len(v))]
    return (sp.Matrix([a + b for a, b in zip(dlu, dlv)]), sp.Matrix([a - b for a, b in zip(dlu, dlv)]))


@_registry_entry
def _build_gr_flow() -> Derivation:
    s = _dln()
    u, v, X, g, M, m, n, d, gamma, r = (s[k] for k in ("u", "v", "X", "g", "M", "m", "n", "d", "gamma", "r"))
    gu, gv = s["grad_u"], s["grad_v"]
    penalty = (sum(e**2 for e in gu) + sum(e**2 for e in gv)) / 2
    objective = s["L"] + gamma * penalty
    du = sp.Matrix([-sp.diff(objective, t) for t in u])
    dv = sp.Matrix([-sp.diff(objective, t) for t in v])
    dlog_c, dz = _log_rates(du, dv, u, v)

    # per-example GR: (1/n) Σ_i [l_i + (γ/2)||grad_w l_i||²]
    ells = [r[i] ** 2 / 2 for i in range(n)]
    pe_obj = sum(ell + gamma / 2 * sum(sp.diff(ell, t) ** 2 for t in list(u) + list(v)) for ell in ells) / n
    du_pe = sp.Matrix([-sp.diff(pe_obj, t) for t in u])
    dv_pe = sp.Matrix([-sp.diff(pe_obj, t) for t in v])
    dlog_c_pe, dz_pe = _log_rates(du_pe, dv_pe, u, v)
    kappa = [sum(X[i, j] ** 2 * m[j] for j in range(d)) for i in range(n)]

    def check():
        pe_rate = sp.Matrix([-8 * gamma / n * sum((X[i, j] * r[i]) ** 2 for i in range(n)) for j in range(d)])
        pe_z = sp.Matrix([-4 * g[j] - 16 * gamma / n * sum(X[i, j] * r[i] * kappa[i] for i in range(n))
                          for j in range(d)])
        return all([
            _is_zero(dlog_c + 8 * gamma * _ew(g, g)),
            _is_zero(dz + 4 * (g + 4 * gamma * M * _ew(m, g))),
            _is_zero(dlog_c_pe - pe_rate),
            _is_zero(dz_pe - pe_z),
        ])

    xij, ri, kappai, nn = sp.symbols("x_ij r_i kappa_i n")
    i_ = sp.Symbol("i", integer=True)
    return Derivation(
        name="gr_flow",
        title="Exact GR flow in log coordinates (docs/theory.md §7.2, §7.5)",
        statement=("Gradient flow on L + (gamma/2)||grad_w L||^2: the scale ln(u v) moves by -8 gamma g^2 "
                   "and the mirror coordinate z = ln(u/v) stays in range(X^T). Per-example GR, "
                   "(1/n) sum_i [l_i + (gamma/2)||grad_w l_i||^2]: d ln(u v)/dt = -(8 gamma/n) sum_i (x_ij r_i)^2."),
        expressions={
            "dlog_c": sp.Eq(_d_ln_c, -8 * _gamma * _gj**2),
            "dz": sp.Eq(_dz, -4 * (_gj + 4 * _gamma * _Mmg)),
            "dlog_c_per_example": sp.Eq(_Quantity("d ln(u_j v_j)/dt [per-example]",
                                                 r"\left.\frac{d}{d t} \ln(u_{j} v_{j})\right|_{\text{per-example}}"),
                                        -8 * _gamma / nn * sp.Sum((xij * ri) ** 2, (i_, 1, nn))),
            "dz_per_example": sp.Eq(_Quantity("dz_j/dt [per-example]",
                                             r"\left.\frac{d z_{j}}{d t}\right|_{\text{per-example}}"),
                                    -4 * _gj - 16 * _gamma / nn * sp.Sum(xij * ri * kappai, (i_, 1, nn))),
        },
        check=check,
        derived={"gr_log_c_rate": dlog_c, "gr_dz": dz, "per_example_gr_log_c_rate": dlog_c_pe},
    )


# --------------------------------------------------------------------------------------
# 4. finite-difference GR and un-normalised SAM (docs/theory.md §7.3, §8)
# --------------------------------------------------------------------------------------

@functools.cache
def _fgr_quantities(n: int, d: int):
    """Ascent point, g̃ and the F-GR direction G_ε on a generic n×d instance (unexpanded)."""
    s = _dln(n, d)
    gamma, eps = s["gamma"], s["eps"]
    gu, gv = s["grad_u"], s["grad_v"]
    u_t, v_t = s["u"] + eps * gu, s["v"] + eps * gv  # ascent point w + ε∇L(w)
    gu_t, gv_t = s["grads"](u_t, v_t)
    beta_t = s["beta_fn"](u_t, v_t)
    g_t = s["X"].T * (s["X"] * beta_t - s["y"]) / n
    G_u = (1 - gamma / eps) * gu + (gamma / eps) * gu_t
    G_v = (1 - gamma / eps) * gv + (gamma / eps) * gv_t
    return dict(s, beta_t=beta_t, g_t=g_t, gu_t=gu_t, gv_t=gv_t, G_u=G_u, G_v=G_v)


@_registry_entry
def _build_fgr() -> Derivation:
    # The check expands degree-9 polynomials: a 2×2 instance keeps it to seconds.
    q = _fgr_quantities(2, 2)
    u, v, X, g, M, m, n, gamma, eps, beta = (q[k] for k in ("u", "v", "X", "g", "M", "m", "n", "gamma", "eps", "beta"))
    Mmg = M * _ew(m, g)
    g_t_closed = g + 4 * eps * Mmg + 4 * eps**2 * M * _ew(beta, _ew(g, g))

    def check():
        # ∇_u L = 2u⊙g(β) is a polynomial identity (derivation "gradient_hvp"), so at the ascent
        # point ∇_u L(w̃) = 2ũ⊙g̃ with ũ = u⊙(1 + 2εg), ṽ = v⊙(1 − 2εg) (checked below); the
        # log-rates then follow per coordinate with g_j, g̃_j as free symbols.
        uj, vj, gj, gtj = sp.symbols("u_j v_j g_j gtilde_j", positive=True)
        Gu = (1 - gamma / eps) * 2 * uj * gj + (gamma / eps) * 2 * uj * (1 + 2 * eps * gj) * gtj
        Gv = -(1 - gamma / eps) * 2 * vj * gj - (gamma / eps) * 2 * vj * (1 - 2 * eps * gj) * gtj
        dlog_c = -Gu / uj - Gv / vj + 8 * gamma * gj * gtj
        dz = -Gu / uj + Gv / vj + 4 * ((1 - gamma / eps) * gj + (gamma / eps) * gtj)
        ascent = sp.Matrix.vstack(u + eps * q["grad_u"] - _ew(u, g.applyfunc(lambda e: 1 + 2 * eps * e)),
                                  v + eps * q["grad_v"] - _ew(v, g.applyfunc(lambda e: 1 - 2 * eps * e)))
        F = sp.Matrix.vstack(q["gu_t"], q["gv_t"])
        F1 = F.diff(eps).subs(eps, 0)  # ε⁰ coefficient of (F(ε) − F(0))/ε
        hvp = sp.Matrix.vstack(4 * _ew(u, _ew(g, g)) + 8 * _ew(u, Mmg), 4 * _ew(v, _ew(g, g)) - 8 * _ew(v, Mmg))
        sam = sp.Matrix.vstack(q["G_u"], q["G_v"]).subs(gamma, eps) - F
        return all([
            _is_zero(q["beta_t"] - (beta + 4 * eps * _ew(m, g) + 4 * eps**2 * _ew(beta, _ew(g, g)))),
            _is_zero(q["g_t"] - g_t_closed),
            _is_zero(ascent),
            _is_zero(dlog_c),
            _is_zero(dz),
            _is_zero(F1 - hvp),
            _is_zero((_ew(m, g).T * M * _ew(m, g))[0] - ((X * _ew(m, g)).T * (X * _ew(m, g)))[0] / n),
            _is_zero(sam),
        ])

    gt = sp.Symbol("gtilde_j")
    Mbg2 = _Quantity("(M(β⊙g²))_j", r"(M(\beta \odot g^{2}))_{j}")
    grad_L = _Quantity("∇L", r"\nabla L")
    return Derivation(
        name="fgr",
        title="Finite-difference GR (signed eps) and un-normalised SAM (docs/theory.md §7.3, §8)",
        statement=("G_eps(w) = (1 - gamma/eps) grad L(w) + (gamma/eps) grad L(w + eps grad L(w)). "
                   "The ascent point is closed-form; d ln(u v)/dt = -8 gamma g*gtilde exactly and "
                   "dz/dt = -4[(1 - gamma/eps) g + (gamma/eps) gtilde] in range(X^T); "
                   "G_eps = grad L + gamma H grad L + O(eps); the O(eps) gain term 4 eps g*M(m*g) has m-weighted "
                   "sum 4 eps (m*g)^T M (m*g) = 4 eps ||X(m*g)||^2/n, of the sign of eps (F-GR enlarges the gain, "
                   "B-GR shrinks it); gamma = eps = rho gives un-normalised SAM grad L(w + rho grad L) exactly. "
                   "Checked on a generic 2x2 instance."),
        expressions={
            "beta_tilde": sp.Eq(sp.Symbol("betatilde_j"), _betaj + 4 * _eps * _mj * _gj + 4 * _eps**2 * _betaj * _gj**2),
            "g_tilde": sp.Eq(gt, _gj + 4 * _eps * _Mmg + 4 * _eps**2 * Mbg2),
            "dlog_c": sp.Eq(_d_ln_c, -8 * _gamma * _gj * gt),
            "gain_rate": sp.Eq(_gj * gt, _gj**2 + 4 * _eps * _gj * _Mmg + 4 * _eps**2 * _gj * Mbg2),
            "series": sp.Eq(_Quantity("G_ε", r"G_{\epsilon}"), grad_L + _gamma * _Quantity("H∇L", r"H \nabla L")
                            + _eps * _gamma / 2 * _D3L + sp.Order(_eps**2)),
            "sign": sp.Eq(sp.Sum(_mj * _gj * _Mmg, (_j, 1, sp.Symbol("d"))),
                          _Quantity("‖X(m⊙g)‖²", r"\|X(m \odot g)\|^{2}") / sp.Symbol("n")),
            "sam": sp.Eq(_Quantity("G_ε (γ = ε = ρ)", r"\left.G_{\epsilon}\right|_{\gamma = \epsilon = \rho}"),
                         _Quantity("∇L(w + ρ∇L(w))", r"\nabla L(w + \rho \nabla L(w))")),
        },
        check=check,
        derived={"fgr_g_tilde": _fgr_quantities(SYMBOLIC_N, SYMBOLIC_D)["g_t"]},
    )


# --------------------------------------------------------------------------------------
# 5. flooding two-step identity (docs/theory.md §7.9)
# --------------------------------------------------------------------------------------

@_registry_entry
def _build_flooding() -> Derivation:
    eta = sp.Symbol("eta", positive=True)
    th = sp.Matrix(sp.symbols("theta1 theta2", real=True))
    coeffs = {}
    L = 0
    for a in range(4):
        for b in range(4 - a):
            if a + b >= 1:
                coeffs[(a, b)] = sp.Symbol(f"a{a}{b}", real=True)
                L += coeffs[(a, b)] * th[0] ** a * th[1] ** b

    def grad_at(point):
        gr = sp.Matrix([sp.diff(L, t) for t in th])
        return gr.subs(dict(zip(th, point)), simultaneous=True)

    grad = grad_at(th)
    hvp = sp.Matrix([sp.diff(((grad.T * grad)[0]) / 2, t) for t in th])
    theta1 = th + eta * grad_at(th)  # ascent (L below the flood level)
    theta2 = theta1 - eta * grad_at(theta1)  # descent
    ascent_descent = sp.expand(theta2 - th)
    theta1b = th - eta * grad_at(th)
    descent_ascent = sp.expand(theta1b + eta * grad_at(theta1b) - th)

    def coefficient(vec, k):
        return sp.Matrix([sp.expand(e).coeff(eta, k) for e in vec])

    def check():
        return all([
            _is_zero(coefficient(ascent_descent, 0)),
            _is_zero(coefficient(ascent_descent, 1)),
            _is_zero(coefficient(ascent_descent, 2) + hvp),
            _is_zero(coefficient(descent_ascent, 0)),
            _is_zero(coefficient(descent_ascent, 1)),
            _is_zero(coefficient(descent_ascent, 2) + hvp),
            _is_zero(coefficient(ascent_descent, 3) + coefficient(descent_ascent, 3)),
        ])

    grad_R = _Quantity("∇(½‖∇L‖²)", r"\nabla \left(\frac{1}{2} \|\nabla L\|^{2}\right)")
    return Derivation(
        name="flooding",
        title="Flooding two-step identity (docs/theory.md §7.9)",
        statement=("For a generic cubic L on R^2: ascent then descent, theta_2 = theta_0 - eta[grad L(theta_0 + "
                   "eta grad L(theta_0)) - grad L(theta_0)] = theta_0 - eta^2 grad(1/2||grad L||^2) + O(eta^3) "
                   "(forward difference); descent then ascent has the same eta^2 term and the opposite eta^3 "
                   "term (backward difference)."),
        expressions={
            "ascent_descent": sp.Eq(_Quantity("θ_2 − θ_0", r"\theta_{2} - \theta_{0}"),
                                    -eta**2 * grad_R - eta**3 / 2 * _D3L + sp.Order(eta**4)),
            "descent_ascent": sp.Eq(_Quantity("θ_2 − θ_0 [descent first]",
                                             r"\left.(\theta_{2} - \theta_{0})\right|_{\text{descent first}}"),
                                    -eta**2 * grad_R + eta**3 / 2 * _D3L + sp.Order(eta**4)),
        },
        check=check,
        derived={"ascent_descent": ascent_descent, "descent_ascent": descent_ascent},
    )


# --------------------------------------------------------------------------------------
# 6. depth D (docs/theory.md §2.3, §7.7)
# --------------------------------------------------------------------------------------

@_registry_entry
def _build_depth() -> Derivation:
    D = sp.Symbol("D", positive=True)
    uu, vv, gg, gamma = sp.symbols("u v g gamma", positive=True)
    du = -D * uu ** (D - 1) * gg
    dv = D * vv ** (D - 1) * gg
    d_u = sp.diff(uu ** (2 - D), uu) * du
    d_v = sp.diff(vv ** (2 - D), vv) * dv

    def gr_instance(Dk, n=2, d=2):
        """Depth-D GR on a generic n×d instance: (d/dt u^{2−D}, d/dt v^{2−D}, closed forms)."""
        u = sp.Matrix(sp.symbols(f"u1:{d + 1}", positive=True))
        v = sp.Matrix(sp.symbols(f"v1:{d + 1}", positive=True))
        X = sp.Matrix(n, d, lambda i, j: sp.Symbol(f"x{i + 1}{j + 1}", real=True))
        y = sp.Matrix(sp.symbols(f"y1:{n + 1}", real=True))
        beta = sp.Matrix([u[j] ** Dk - v[j] ** Dk for j in range(d)])
        r = X * beta - y
        L = (r.T * r)[0] / (2 * n)
        grad = [sp.diff(L, t) for t in list(u) + list(v)]
        R = sum(e**2 for e in grad) / 2
        g = X.T * r / n
        M = X.T * X / n
        mD = sp.Matrix([u[j] ** (2 * Dk - 2) + v[j] ** (2 * Dk - 2) for j in range(d)])
        Mmg = M * _ew(mD, g)
        ghat = g + gamma * Dk**2 * Mmg
        rows = []
        for j in range(d):
            dRu = sp.diff(R, u[j])
            du_j = -(sp.diff(L, u[j]) + gamma * dRu)
            dv_j = -(sp.diff(L, v[j]) + gamma * sp.diff(R, v[j]))
            rate_u = (2 - Dk) * sp.expand(sp.expand(du_j) / u[j] ** (Dk - 1))
            rate_v = (2 - Dk) * sp.expand(sp.expand(dv_j) / v[j] ** (Dk - 1))
            rows.append([
                dRu - (Dk**2 * (Dk - 1) * u[j] ** (2 * Dk - 3) * g[j] ** 2 + Dk**3 * u[j] ** (Dk - 1) * Mmg[j]),
                rate_u - (Dk * (Dk - 2) * ghat[j] + gamma * Dk**2 * (Dk - 1) * (Dk - 2) * u[j] ** (Dk - 2) * g[j] ** 2),
                rate_v - (-Dk * (Dk - 2) * ghat[j] + gamma * Dk**2 * (Dk - 1) * (Dk - 2) * v[j] ** (Dk - 2) * g[j] ** 2),
            ])
        return rows

    def check():
        ok = [
            sp.simplify(d_u + d_v) == 0,
            sp.simplify(d_u - d_v - 2 * D * (D - 2) * gg) == 0,
        ]
        for Dk in (3, 4):
            ok.extend(_is_zero(e) for row in gr_instance(Dk) for e in row)
        return all(ok)

    mD = _Quantity("(M(m_D⊙g))_j", r"(M(m_{D} \odot g))_{j}")
    ghat = sp.Symbol("ghat_j")
    return Derivation(
        name="depth",
        title="Depth-D invariants and the depth-D GR out-of-span term (docs/theory.md §2.3, §7.7)",
        statement=("GF on beta = u^D - v^D (u' = -D u^(D-1) g, v' = +D v^(D-1) g) conserves u^(2-D) + v^(2-D), "
                   "and u^(2-D) - v^(2-D) moves by 2D(D-2) g in range(X^T). Under GR (checked for D = 3, 4 "
                   "on a generic 2x2 instance), u^(2-D) picks up gamma D^2(D-1)(D-2) u^(D-2) g^2, "
                   "so z_D = u^(2-D) - v^(2-D) leaves range(X^T): no exact mirror flow."),
        expressions={
            "sum_invariant": sp.Eq(_Quantity("d/dt (u^(2−D) + v^(2−D))", r"\frac{d}{d t} \left(u^{2 - D} + v^{2 - D}\right)"),
                                   sp.simplify(d_u + d_v)),
            "difference": sp.Eq(_Quantity("d/dt (u^(2−D) − v^(2−D))", r"\frac{d}{d t} \left(u^{2 - D} - v^{2 - D}\right)"),
                                sp.factor(sp.simplify(d_u - d_v))),
            "gr_penalty_grad_u": sp.Eq(_Quantity("∇_{u_j} ½‖∇L‖²", r"\nabla_{u_{j}} \frac{1}{2} \|\nabla L\|^{2}"),
                                       D**2 * (D - 1) * _uj ** (2 * D - 3) * _gj**2 + D**3 * _uj ** (D - 1) * mD),
            "gr_u": sp.Eq(_Quantity("d/dt u_j^(2−D)", r"\frac{d}{d t} u_{j}^{2 - D}"),
                          D * (D - 2) * ghat + _gamma * D**2 * (D - 1) * (D - 2) * _uj ** (D - 2) * _gj**2),
            "gr_v": sp.Eq(_Quantity("d/dt v_j^(2−D)", r"\frac{d}{d t} v_{j}^{2 - D}"),
                          -D * (D - 2) * ghat + _gamma * D**2 * (D - 1) * (D - 2) * _vj ** (D - 2) * _gj**2),
            "ghat": sp.Eq(ghat, _gj + _gamma * D**2 * mD),
        },
        check=check,
    )


# --------------------------------------------------------------------------------------
# registry, rendering, numerics
# --------------------------------------------------------------------------------------

class _Registry(Mapping):
    """Ordered name → Derivation mapping that builds each derivation on first access."""

    def __getitem__(self, name: str) -> Derivation:
        return _build(name)

    def __iter__(self):
        return iter(_BUILDERS)

    def __len__(self):
        return len(_BUILDERS)


@functools.cache
def _build(name: str) -> Derivation:
    return _BUILDERS[name]()


DERIVATIONS: Mapping[str, Derivation] = _Registry()


def derive_all() -> list[tuple[Derivation, bool]]:
    """Build every derivation in order and run its check: ``[(derivation, passed), ...]``."""
    return [(der, bool(der.check())) for der in DERIVATIONS.values()]


def to_latex(expr) -> str:
    """LaTeX of a closed form: SymPy's printer (display symbols print their own), ``\\ln`` for the
    natural logarithm and ``\\operatorname{arcsinh}`` (docs/theory.md's name; SymPy says asinh)."""
    tex = sp.latex(expr, ln_notation=True)
    return tex.replace(r"\operatorname{asinh}", r"\operatorname{arcsinh}")


def render(derivation: Derivation, latex: bool = False) -> str:
    """Title, statement and closed forms of one derivation, pretty-printed or as LaTeX.

    With ``latex=True`` every line is either a LaTeX comment (``% ...``: title, statement, the
    name of the closed form) or one LaTeX math expression (no ``$``), ready for an ``align``.
    """
    if latex:
        lines = [f"% {derivation.title}", "%", f"% {derivation.statement}", ""]
    else:
        lines = [derivation.title, "", derivation.statement, ""]
    for key, expr in derivation.expressions.items():
        if latex:
            lines.append(f"% {key}")
            lines.append(to_latex(expr))
        else:
            lines.append(f"[{key}]")
            lines.append(sp.pretty(expr, use_unicode=True))
        lines.append("")
    return "\n".join(lines)


def numeric(expr, symbols):
    """NumPy callable of a SymPy expression (the one call of ``sympy.lambdify`` in the package)."""
    return sp.lambdify(symbols, expr, modules="numpy")


def _dln_callable(exprs, extra=()):
    """Wrap derived per-coordinate expressions as f(u, v, X, y, *extra) over NumPy arrays.

    u, v : (..., d); X : (n, d); y : (n,); extra: scalars or arrays broadcastable to u[..., 0].
    Returns shape (..., len(exprs)).
    """
    s = _dln()
    args = list(s["u"]) + list(s["v"]) + list(s["X"]) + list(s["y"]) + list(extra)
    f = numeric(list(exprs), args)
    n, d = s["n"], s["d"]

    def call(u, v, X, y, *params):
        u, v, X, y = (np.asarray(a, dtype=float) for a in (u, v, X, y))
        if u.shape[-1] != d or v.shape[-1] != d or X.shape != (n, d) or y.shape != (n,):
            raise ValueError(f"lambdified DLN formulas are for the symbolic instance n = {n}, d = {d}.")
        flat = [u[..., j] for j in range(d)] + [v[..., j] for j in range(d)]
        flat += [X[i, j] for i in range(n) for j in range(d)] + list(y) + list(params)
        out = f(*flat)
        return np.stack(np.broadcast_arrays(*[np.asarray(o, dtype=float) for o in out]), axis=-1)

    return call


def lambdified_formulas() -> dict[str, Callable]:
    """NumPy callables of the SymPy-*derived* DLN quantities (generic instance n = 2, d = 3).

    All take ``(u, v, X, y, *params)`` with u, v of shape (..., 3), X (2, 3), y (2,):

    - ``grad_u``, ``grad_v``, ``hvp_u``, ``hvp_v`` → (..., 3)                       §7.1
    - ``per_example_grad_norm2`` → (..., 2): ‖∇_w ℓ_i‖², ℓ_i = r_i²/2                 §7.5
    - ``gr_log_c_rate(u, v, X, y, gamma)`` → (..., 3): d ln(u v)/dt under exact GR     §7.2
    - ``fgr_g_tilde(u, v, X, y, eps)`` → (..., 3): ∇_β L at the ascent point w + ε∇L   §7.3

    Compare with :mod:`analysis.formulas` (closed forms) or the simulator's batched code.
    """
    s = _dln()
    grad = DERIVATIONS["gradient_hvp"].derived
    gr = DERIVATIONS["gr_flow"].derived
    fgr = DERIVATIONS["fgr"].derived
    return {
        "grad_u": _dln_callable(grad["grad_u"]),
        "grad_v": _dln_callable(grad["grad_v"]),
        "hvp_u": _dln_callable(grad["hvp_u"]),
        "hvp_v": _dln_callable(grad["hvp_v"]),
        "per_example_grad_norm2": _dln_callable(grad["per_example_grad_norm2"]),
        "gr_log_c_rate": _dln_callable(gr["gr_log_c_rate"], extra=(s["gamma"],)),
        "fgr_g_tilde": _dln_callable(fgr["fgr_g_tilde"], extra=(s["eps"],)),
    }
