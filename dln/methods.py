"""Training methods as batched directions (docs/design.md §2, docs/theory.md §4, §7, §8).

Each factory (:func:`gf`, :func:`gr`, :func:`fgr`, :func:`bgr`, :func:`cgr`, :func:`usam`,
:func:`sam`, :func:`flood`) returns a :class:`Direction`: a pure function of the state of a batch
of B networks.  Every method updates u and v multiplicatively (docs/theory.md §4 lemma), so a direction
returns log-rates

    da = u̇/u = d ln|u|/dt,      db = v̇/v = d ln|v|/dt,

already negated (dθ/dt = −G(θ)), plus the integrand of the method's gain integral, so that

    ln(u⊙v)(t) = ln(u0⊙v0) − gain_coef · ∫ gain dt          (docs/theory.md §7.2, §7.3, §7.5, §8).

Continuous time integrates the rates; discrete time applies u ← u⊙(1 + η·da) (GD is GF in discrete
time).  Everything is built on two primitives: the gradient ratio p = ∇_w L / w at the current
point, and the same ratio at the ascent point w + ε∇L (closed form, docs/theory.md §7.3), or its
per-example version at w + ε∇ℓ_i (docs/theory.md §7.5).  Per-run hyper-parameters are arrays of
shape (B,).

The methods themselves (rates, gain coefficient, Jacobian model, reduced-state constants) are the
specs of :mod:`dln.registry`, side by side; :class:`Direction` holds the primitives and dispatches
through its method's spec.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DLNError, check_choice, check_int, check_real, fail
from .model import State, powers
from .params import METHOD_RULES as _RULES
from .problem import Problem
from .registry import METHODS_REGISTRY, VARIANTS, MethodSpec

#: The methods, in registry order (dln.registry: one spec per method).
METHODS = tuple(METHODS_REGISTRY)
#: Hyper-parameters each method uses (names are the CLI flags and CSV columns, docs/design.md §5).
PARAMS = {name: spec.params for name, spec in METHODS_REGISTRY.items()}
#: Methods whose penalty has a per-example form (``--variant per-sample``); gf and flood take 'full' only.
VARIANT_METHODS = tuple(name for name, spec in METHODS_REGISTRY.items() if spec.per_example)


@dataclass
class Rates:
    """Output of a direction for B runs.

    Attributes
    ----------
    da, db : ndarray (B, d)
        d ln|u|/dt and d ln|v|/dt.
    gain : ndarray (B, d)
        Integrand of the gain integral (g⊙g̃, or (1/n)Σ_i x_i^2 r_i r̃_i for per-sample variants).
    loss : ndarray (B,)
        Training loss L(β) at the evaluated point, on the data the direction was given.
    """

    da: np.ndarray
    db: np.ndarray
    gain: np.ndarray
    loss: np.ndarray


@dataclass
class Linearization:
    """Low-rank model of the Jacobian of the rates, used by the implicit integrator.

    d(da, db) ≈ U C Vᵀ d(a, b) with U = [−diag(lu) Xᵀ; diag(lv) Xᵀ]/n, Vᵀ = X[diag(ru), −diag(rv)]
    and C = scale·I + gamma_k·K + diag(ck), K = X diag(ru·lu + rv·lv) Xᵀ/n.  For GF at D = 2 this is
    the exact Jacobian (ż = −4g, docs/theory.md §2.1); for the regularized methods it is the leading
    stiff part (the O(γ) terms of ż, docs/theory.md §7.2, §7.5).
    """

    lu: np.ndarray
    lv: np.ndarray
    ru: np.ndarray
    rv: np.ndarray
    scale: np.ndarray  # (B,)
    gamma_k: np.ndarray  # (B,)
    ck: np.ndarray | None  # (B, n) or None


class Data:
    """The rows a direction is evaluated on: the full problem, or per-run mini-batches.

    ``X`` is (n, d) shared by the batch, or (B, b, d) with one mini-batch per run (SGD).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X = X
        self.y = y
        self.rows = X.shape[-2]
        self._X2 = None
        self._X3 = None

    @property
    def X2(self):
        if self._X2 is None:
            self._X2 = self.X * self.X
        return self._X2

    @property
    def X3(self):
        if self._X3 is None:
            self._X3 = self.X2 * self.X
        return self._X3

    def take(self, rows):
        """The same data for a subset of runs (only per-run mini-batches depend on the run)."""
        if rows is None or self.X.ndim == 2:
            return self
        return Data(self.X[rows], self.y[rows])

    def fwd(self, A: np.ndarray, y=None) -> np.ndarray:
        """Row products X·a for a batch of vectors a (B, d) → (B, rows)."""
        return self.fwd_with(self.X, A)

    def fwd_with(self, X, A):
        if X.ndim == 2:
            return A @ X.T
        return np.einsum("bkd,bd->bk", X, A)

    def back(self, R: np.ndarray, X=None, out=None) -> np.ndarray:
        """Mean over rows of x_i r_i: Xᵀr/rows for a batch (B, rows) → (B, d) (into ``out``)."""
        X = self.X if X is None else X
        R = R / self.rows  # scale the short side: rows ≤ d in the over-parametrized setting
        if X.ndim == 2:
            return np.matmul(R, X, out=out)
        return np.einsum("bkd,bk->bd", X, R, out=out)

    def residual(self, beta: np.ndarray) -> np.ndarray:
        r = self.fwd(beta)
        r -= self.y
        return r


def _col(x) -> np.ndarray:
    """Per-run hyper-parameter as a column (B, 1) (or (1, 1) for a scalar)."""
    return np.asarray(x, dtype=np.float64).reshape(-1, 1)


def _take(p: np.ndarray, rows):
    return p if rows is None or p.shape[0] == 1 else p[rows]


def _pow(x: np.ndarray, k: int) -> np.ndarray:
    """x**k, without a copy for k = 1."""
    return x if k == 1 else x**k


#: Runs per block in :meth:`Direction.__call__`: the (BLOCK, d) temporaries of one block stay in
#: cache, where streaming (B, d) arrays of a large batch would be memory-bound.
BLOCK = 128


class Direction:
    """A training method evaluated on a batch of runs (docs/design.md §2).

    Call it with a :class:`~dln.model.State` (and optionally ``rows``, the indices of the runs the
    state holds, and ``data``, a mini-batch); it returns :class:`Rates`.

    Every method is written with the gradient factors k_u = ∇_u L/(u⊙g) = D u^{D−2} and
    k_v = ∇_v L/(v⊙g) = −D v^{D−2} (±2 at D = 2), so that its log-rates are

        da = −k_u ⊙ q_u,    db = −k_v ⊙ q_v,

    with q the method's "effective g" (q_u = q_v = g for GF, docs/theory.md §7.1): a combination of g
    at the current point and the effective g at an ascent point (docs/theory.md §7.3, §7.5, §8).
    """

    def __init__(self, problem: Problem, method: str, variant: str, D: int, params: dict):
        self.problem = problem
        self.method = method
        self.variant = variant
        self.D = D
        self.params = {k: _col(v) for k, v in params.items()}
        self.data = Data(problem.X, problem.y)
        size = max([1] + [p.shape[0] for p in self.params.values()])
        self.batch = size
        #: The method's :class:`~dln.registry.MethodSpec`: its rates, gain coefficient and Jacobian model.
        self.spec: MethodSpec = METHODS_REGISTRY[method]
        #: ln c(t) = ln c(0) − gain_coef·∫gain (docs/theory.md §7.2–§8); 0 where c is conserved (GF).
        self.gain_coef = self.spec.gain_coef(self.params)

    def __repr__(self):
        shown = {k: (v.ravel()[0] if v.size == 1 else f"array({v.shape[0]})") for k, v in self.params.items()}
        return f"Direction({self.method!r}, variant={self.variant!r}, D={self.D}, {shown})"

    # -- the primitives ------------------------------------------------------------------------
    def point(self, state: State, data: Data) -> dict:
        """β = u^D − v^D, r = Xβ − y, g = Xᵀr/n, the gradient factors k_u, k_v, and L(β)."""
        D = self.D
        uD, vD = powers(state.a, state.b, state.su, state.sv, D)
        beta = uD - vD
        r = data.residual(beta)
        g = data.back(r)
        # ∇_u L = D u^{D−1} g = u⊙k_u⊙g,  ∇_v L = −D v^{D−1} g = v⊙k_v⊙g
        if D == 2:
            ku, kv = 2.0, -2.0
        else:
            ku, kv = powers(state.a, state.b, state.su, state.sv, D - 2)
            ku, kv = D * ku, -D * kv
        loss = np.einsum("bk,bk->b", r, r) * (0.5 / data.rows)
        return dict(uD=uD, vD=vD, beta=beta, r=r, g=g, ku=ku, kv=kv, loss=loss)

    @staticmethod
    def m(pt: dict) -> np.ndarray:
        """m = u² + v² at D = 2 (docs/theory.md §1), computed once per point."""
        if "m" not in pt:
            pt["m"] = pt["uD"] + pt["vD"]
        return pt["m"]

    def kappa(self, pt: dict, data: Data) -> np.ndarray:
        """κ_i = Σ_j x_ij² m_j with m = u² + v² (docs/theory.md §7.5), computed once per point."""
        if "kappa" not in pt:
            pt["kappa"] = data.fwd_with(data.X2, self.m(pt))
        return pt["kappa"]

    def ascent(self, pt: dict, eps: np.ndarray, data: Data):
        """Effective g at the ascent point w̃ = w + ε∇L(w) (docs/theory.md §7.3).

        ũ = u⊙f_u, ṽ = v⊙f_v with f = 1 + ε k g (at D = 2: 1 ± 2εg), β̃ = u^D f_u^D − v^D f_v^D,
        g̃ = ∇_β L(β̃), and ∇_u L(w̃)/u = k_u⊙q_u with q_u = f_u^{D−1}⊙g̃ (likewise for v).
        Returns (q_u, q_v, g̃).
        """
        D, g = self.D, pt["g"]
        fu = 1.0 + eps * pt["ku"] * g
        fv = 1.0 + eps * pt["kv"] * g
        beta_t = pt["uD"] * fu**D - pt["vD"] * fv**D
        g_t = data.back(data.residual(beta_t))
        return _pow(fu, D - 1) * g_t, _pow(fv, D - 1) * g_t, g_t

    def ascent_per_sample(self, pt: dict, eps, data: Data):
        """The same for the mean over examples of ∇_w ℓ_i(w + ε_i∇ℓ_i(w)) (docs/theory.md §7.5, §8).

        r̃_i = r_i(1 + 4ε_iκ_i) + 4ε_i² r_i² ⟨x_i^3, β⟩ and ∇_u ℓ_i(w̃_i)/u = 2(1 + 2ε_i r_i x_i)⊙x_i r̃_i,
        so q_u = (1/n)Σ_i (1 + 2ε_i r_i x_i)⊙x_i r̃_i, q_v = (1/n)Σ_i (1 − 2ε_i r_i x_i)⊙x_i r̃_i (D = 2).
        Returns (q_u, q_v, r⊙r̃); the gain integrand is (1/n)Σ_i x_i² r_i r̃_i.
        """
        r = pt["r"]
        if "cube" not in pt:
            pt["cube"] = data.fwd_with(data.X3, pt["beta"])
        r_t = r * (1.0 + 4.0 * eps * self.kappa(pt, data)) + 4.0 * eps * eps * r * r * pt["cube"]
        lin = data.back(r_t)
        quad = data.back(2.0 * eps * r * r_t, data.X2)
        return lin + quad, lin - quad, r * r_t

    def grad_norm(self, state: State, pt: dict) -> np.ndarray:
        """‖∇_w L‖ = sqrt(Σ (u²k_u² + v²k_v²) g²) per run, shape (B, 1)."""
        u2, v2 = (pt["uD"], pt["vD"]) if self.D == 2 else (np.exp(2 * state.a), np.exp(2 * state.b))
        w2 = u2 * pt["ku"] ** 2 + v2 * pt["kv"] ** 2
        return np.sqrt(np.sum(w2 * pt["g"] ** 2, axis=-1, keepdims=True))

    # -- the methods -----------------------------------------------------------------------------
    def __call__(self, state: State, rows=None, data: Data | None = None) -> Rates:
        """Rates of the B runs of ``state``, computed in blocks of :data:`BLOCK` runs.

        Each run's rates depend on that run alone, so a block is evaluated like a smaller batch.
        """
        data = self.data.take(rows) if data is None else data
        P = {k: _take(v, rows) for k, v in self.params.items()}
        B, d = state.a.shape
        out = Rates(np.empty((B, d)), np.empty((B, d)), np.empty((B, d)), np.empty(B))
        if B <= BLOCK:
            self._rates(state, P, data, out)
            return out
        for start in range(0, B, BLOCK):
            s = slice(start, min(start + BLOCK, B))
            block = State(state.a[s], state.b[s], state.su[s], state.sv[s])
            self._rates(block, {k: _take(v, s) for k, v in P.items()}, data.take(s),
                        Rates(out.da[s], out.db[s], out.gain[s], out.loss[s]))
        return out

    def _rates(self, state: State, P: dict, data: Data, out: Rates) -> None:
        """The method's rates for one block of runs, written into ``out`` (the spec's ``rates``)."""
        pt = self.point(state, data)
        out.loss[:] = pt["loss"]
        self.spec.rates(self, state, pt, P, data, out, self.variant == "full")

    # -- Jacobian model for the implicit integrator ----------------------------------------------
    def linearization(self, state: State, rows=None) -> Linearization:
        """Leading stiff part of the Jacobian of (da, db) (see :class:`Linearization`)."""
        D = self.D
        P = {k: _take(v, rows) for k, v in self.params.items()}
        B = state.a.shape[0]
        if D == 2:
            lu = lv = np.full((1, 1), 2.0)
        else:
            lu, lv = powers(state.a, state.b, state.su, state.sv, D - 2)
            lu, lv = D * lu, D * lv
        uD, vD = powers(state.a, state.b, state.su, state.sv, D)
        ru, rv = D * uD, D * vD
        scale, weight = self.spec.jacobian(self, state, P, B)
        scale = np.ones(B) if scale is None else scale
        gamma_k = np.zeros(B)
        ck = None
        if weight is not None:  # the penalty's O(γ) part: γ_k·K (full), diag(4γ_kκ) per example (§7.5)
            if self.variant == "full":
                gamma_k = weight.copy()
            else:
                kappa = (uD + vD) @ self.data.X2.T
                ck = 4.0 * weight[:, None] * kappa
        return Linearization(lu, lv, ru, rv, scale, gamma_k, ck)


class Stack:
    """A heterogeneous batch: several directions on one problem, their runs stacked in order.

    ``Stack([(direction, size), ...])`` holds ``size`` runs of each direction (a direction with
    per-run hyper-parameters must have ``batch`` equal to its size, or 1).  It is called like a
    :class:`Direction` (the rows of each member go to that member), so ``flow`` integrates runs of
    different methods, variants and hyper-parameters as one array (docs/design.md §2); each run's
    rates depend on that run alone.
    """

    def __init__(self, members):
        members = [(d, int(k)) for d, k in members]
        if not members:
            raise DLNError("The 'members' parameter of Stack must be a non-empty list. Got [] instead.")
        first = members[0][0]
        for d, k in members:
            if d.problem is not first.problem:
                raise fail("members", "Stack", "directions on one problem", "directions on different problems")
            if d.D != first.D:
                raise fail("members", "Stack", f"directions of one depth D = {first.D}", f"D = {d.D}")
            if k < 1 or d.batch not in (1, k):
                raise fail("members", "Stack", f"sizes equal to the directions' batches", f"size {k} for {d!r}")
        self.members = members
        self.problem = first.problem
        self.D = first.D
        self.data = first.data
        self.offsets = np.cumsum([0] + [k for _, k in members])
        self.batch = int(self.offsets[-1])
        self.gain_coef = np.concatenate([np.broadcast_to(d.gain_coef, (k, 1)) for d, k in members])

    def __repr__(self):
        return "Stack(" + ", ".join(f"{d!r} x {k}" for d, k in self.members) + ")"

    def parts(self, rows=None):
        """(member index, direction, positions in ``rows`` (or in the batch), member-local rows)."""
        glob = np.arange(self.batch) if rows is None else np.asarray(rows)
        which = np.searchsorted(self.offsets, glob, side="right") - 1
        out = []
        for j, (d, k) in enumerate(self.members):
            pos = np.flatnonzero(which == j)
            if pos.size:
                local = glob[pos] - self.offsets[j]
                out.append((j, d, pos, None if d.batch == 1 else local))
        return out

    def __call__(self, state: State, rows=None, data: Data | None = None) -> Rates:
        B, d = state.a.shape
        out = Rates(np.empty((B, d)), np.empty((B, d)), np.empty((B, d)), np.empty(B))
        for _, member, pos, local in self.parts(rows):
            sub = State(state.a[pos], state.b[pos], state.su[pos], state.sv[pos])
            R = member(sub, local, None if data is None else data.take(pos))
            out.da[pos], out.db[pos], out.gain[pos], out.loss[pos] = R.da, R.db, R.gain, R.loss
        return out

    def linearization(self, state: State, rows=None) -> Linearization:
        B, d = state.a.shape
        lin = dict(lu=np.empty((B, d)), lv=np.empty((B, d)), ru=np.empty((B, d)), rv=np.empty((B, d)),
                   scale=np.empty(B), gamma_k=np.empty(B), ck=None)
        n = self.problem.n
        for _, member, pos, local in self.parts(rows):
            sub = State(state.a[pos], state.b[pos], state.su[pos], state.sv[pos])
            L = member.linearization(sub, local)
            for name in ("lu", "lv", "ru", "rv"):
                lin[name][pos] = np.broadcast_to(getattr(L, name), (pos.size, d))
            lin["scale"][pos] = L.scale
            lin["gamma_k"][pos] = L.gamma_k
            if L.ck is not None:
                if lin["ck"] is None:
                    lin["ck"] = np.zeros((B, n))
                lin["ck"][pos] = L.ck
        return Linearization(**lin)


def stack(members) -> Stack:
    """A heterogeneous batch (:class:`Stack`) from ``[(direction, size), ...]``."""
    return Stack(members)


def _params(method: str, where: str, batch_check=True, **values) -> dict:
    out = {}
    for name in PARAMS[method]:
        val = values.get(name)
        if val is None:
            raise fail(name, method, "given", None)
        kind, bound = _RULES[name]
        out[name] = check_real(name, val, method, **{kind: bound})
        if np.ndim(out[name]) > 1:
            raise fail(name, method, "a scalar or a vector with one value per run", f"shape {np.shape(val)}")
    sizes = {np.size(v) for v in out.values() if np.ndim(v) == 1 and np.size(v) > 1}
    if len(sizes) > 1:
        raise DLNError(f"The per-run hyper-parameters of {method} must have the same length. Got lengths {sorted(sizes)} instead.")
    return out


def make(method: str, problem: Problem, *, variant: str = "full", D: int = 2, **params) -> Direction:
    """Build the direction of ``method`` with its hyper-parameters.

    A hyper-parameter that the method does not use is an error (docs/design.md §5), as is a missing one.
    """
    check_choice("method", method, METHODS)
    check_choice("variant", variant, VARIANTS, method)
    D = check_int("D", D, method, ge=2)
    spec = METHODS_REGISTRY[method]
    given = {k for k, v in params.items() if v is not None}
    extra = given - set(spec.params)
    if extra:
        name = sorted(extra)[0]
        raise fail(name, method, f"left unset (it does not apply to {method}; {method} uses "
                   f"{', '.join(PARAMS[method]) or 'no hyper-parameter'})", params[name])
    if variant == "per-sample" and D != 2:
        raise fail("variant", method, "'full' for depth D >= 3 (the per-example closed form is for D = 2)", variant)
    if variant not in spec.variants:
        raise fail("variant", method, f"'full' ({spec.variant_note})", variant)
    return Direction(problem, method, variant, D, _params(method, method, **params))


def gf(problem, *, variant="full", D=2):
    """Gradient flow: ẇ = −∇L (docs/theory.md §2). ``variant`` picks which gain integral is recorded
    (∫g² or the per-example (1/n)Σ_i x_i²∫r_i²) for first-order predictions; c is conserved."""
    return make("gf", problem, variant=variant, D=D)


def gr(problem, gamma, *, variant="full", D=2):
    """Exact GR: ẇ = −(∇L + γH∇L), the gradient of L + (γ/2)‖∇_w L‖² by double back-propagation.

    Full: (H∇L)_u = 4u⊙g² + 8u⊙M(m⊙g), (H∇L)_v = 4v⊙g² − 8v⊙M(m⊙g) (docs/theory.md §7.1–§7.2);
    per-sample: penalty (1/n)Σ_i (γ/2)‖∇_w ℓ_i‖² with ‖∇_w ℓ_i‖² = 4r_i²κ_i (docs/theory.md §7.5).
    Gain: d ln(u⊙v)/dt = −8γ g² (full), −(8γ/n)Σ_i (x_i r_i)² (per-sample).
    """
    return make("gr", problem, gamma=gamma, variant=variant, D=D)


def fgr(problem, gamma, eps, *, variant="full", D=2):
    """Forward finite-difference GR (ascent step +ε, docs/theory.md §7.3):
    G = ∇L + (γ/ε)[∇L(w + ε∇L) − ∇L(w)];  d ln(u⊙v)/dt = −8γ g⊙g̃."""
    return make("fgr", problem, gamma=gamma, eps=eps, variant=variant, D=D)


def bgr(problem, gamma, eps, *, variant="full", D=2):
    """Backward finite-difference GR (descent step −ε, docs/theory.md §7.3): F-GR with signed ε → −ε."""
    return make("bgr", problem, gamma=gamma, eps=eps, variant=variant, D=D)


def cgr(problem, gamma, eps, *, variant="full", D=2):
    """Central-difference GR: G = ∇L + (γ/2ε)[∇L(w + ε∇L) − ∇L(w − ε∇L)], O(ε²) from exact GR."""
    return make("cgr", problem, gamma=gamma, eps=eps, variant=variant, D=D)


def usam(problem, rho, *, variant="full", D=2):
    """Un-normalized SAM: ẇ = −∇L(w + ρ∇L), i.e. F-GR with γ = ε = ρ (docs/theory.md §8).
    Per-sample (1-SAM): ẇ = −(1/n)Σ_i ∇ℓ_i(w + ρ∇ℓ_i)."""
    return make("usam", problem, rho=rho, variant=variant, D=D)


def sam(problem, rho, *, variant="full", D=2):
    """Normalized SAM: ẇ = −∇L(w + ρ∇L/‖∇L‖); F-GR with γ_t = ε_t = ρ/‖∇L‖ (docs/theory.md §8).
    Where ∇L = 0 the ascent is 0 (the guard)."""
    return make("sam", problem, rho=rho, variant=variant, D=D)


def flood(problem, flood_level, *, D=2):
    """Flooding: ẇ = −sign(L − b)∇L (docs/theory.md §7.9)."""
    return make("flood", problem, flood_level=flood_level, D=D)
