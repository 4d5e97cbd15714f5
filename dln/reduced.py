"""The reduced state of the depth-2 flows: 2n numbers per run instead of 2d (docs/theory.md §4, §7, §8).

Derivation (canonical D = 2, any u0, v0 > 0).  Write z = ln(u/v), ℓ = ln(u⊙v), so that
u² = e^{ℓ+z}, v² = e^{ℓ−z}, β = u² − v² = 2c⊙sinh z, m = u² + v² = 2c⊙cosh z.  Every method of
:mod:`dln.methods` has log-rates da = −2q_u, db = 2q_v (docs/theory.md §4 lemma), so

    ż = da − db = −2(q_u + q_v),        ℓ̇ = da + db = −2(q_u − q_v).

With r = Xβ − y, g = Xᵀr/n, κ_i = Σ_j x_ij² m_j and cube_i = Σ_j x_ij³ β_j (docs/theory.md §7.1, §7.5):

- full-batch F-GR with signed ε (docs/theory.md §7.3): q_u + q_v = 2(1 − k)g + 2k g̃ with k = γ/ε and
  g̃ = Xᵀ r_ε/n, r_ε = X β̃ − y = r + 4ε q₁ + 4ε² q₂, q₁ = X(m⊙g), q₂ = X(β⊙g²).  Hence
  ż = −(4/n) Xᵀ p with p = r + 4γ q₁ + 4γε q₂, and ℓ̇ = −8γ g⊙g̃;
- per-example F-GR (docs/theory.md §7.5): q_u ± q_v = 2(1 − k)g·[1 or 0] + k(2 lin or 2 quad) with
  lin = Xᵀr̃/n, quad = (X⊙X)ᵀ(2ε r⊙r̃)/n and r̃ = r(1 + 4εκ) + 4ε² r² cube.  Hence
  ż = −(4/n) Xᵀ p with p = r(1 + 4γκ) + 4γε r² cube, and ℓ̇ = −8γ (X⊙X)ᵀ(r⊙r̃)/n:
  the per-sample gain (1/n) Σ_i x_i² r_i r̃_i lies in range((X⊙X)ᵀ).

Both p are polynomial in ε, so ε = 0 gives exact GR (docs/theory.md §7.2, §7.5), γ = ε = ρ un-normalized
SAM (§8), γ = ε = 0 gradient flow (§2.1); central differences average ±ε: p = r + 4γ q₁ (full),
p = r(1 + 4γκ) (per-sample), with gain g⊙Xᵀ(r + 4ε² q₂)/n and (r² + 4ε² r³ cube)/n.  Normalized SAM
is the same with γ = ε = ρ/‖∇_w L‖ (full) or ε_i = ρ/‖∇_w ℓ_i‖ = ρ/(2|r_i|√κ_i) per example, and the
gain measured in units of ρ; flooding is GF times sign(L − b).  So for every method

    z(t) = z0 + Xᵀν(t),      ν̇ = −(4/n) p ∈ Rⁿ,
    ℓ(t) = ℓ0 − coef·(X⊙X)ᵀμ(t),   μ̇ = (1/n)(gain coefficients) ∈ Rⁿ      (per-sample variants),
    ℓ(t) = ℓ0 − coef·I(t),          İ = gain ∈ R^d                          (full variants),

with coef = 8γ (8ρ for SAM, 0 for GF and flooding), and the gain integral of docs/theory.md §7 is
I = (X⊙X)ᵀμ (per-sample) or I itself (full).  z0 = ln(u0/v0) and ℓ0 = ln(u0⊙v0) are offsets: the
reduction holds for any positive initialization.  It does not hold at depth D ≥ 3 (the mirror
variable picks up an out-of-span term, docs/theory.md §7.7), nor in discrete time; there ``flow`` keeps
the network's own coordinates (:class:`GeneralSystem` in :mod:`dln.integrate`).

In the reduced state the theorem of docs/theory.md §4 holds by construction; the general form
integrates (ln u, ln v) and is the independent check (tests, ``dln check``).

Jacobian model (the W of :mod:`dln.rosenbrock`).  Dropping the terms proportional to the residual
(they vanish at convergence, where the flow is stiffest):

    ∂ν̇/∂ν ≈ −C K̂ (per-sample),  −s(K̂ + γK̂²) (full),      K̂ = (4/n) X diag(m) Xᵀ,  C = 1 + 4γκ,
    ∂ν̇/∂μ ≈ coef·C·(4/n) X diag(β) (X⊙X)ᵀ,      ∂ν̇/∂I ≈ coef·(I + γK̂)(4/n) X diag(β),

and zero rows for μ̇ and İ (quadratic in r).  With S = C^{1/2} K̂ C^{1/2} = Q Λ Qᵀ, the ν-block is
−V diag(λ_A) V⁻¹ with V = C^{1/2}Q, so (σ − W)⁻¹ costs two n×n products per stage for any σ.
"""
from __future__ import annotations

import copy

import numpy as np

from .model import State
from .registry import METHODS_REGISTRY
from .stopping import loss_floor

#: a refresh builds X diag(w) Xᵀ for all runs at once from the d×n² products x_j x_jᵀ when they fit
_PAIR_LIMIT = 4_000_000


class Coefficients:
    """Per-run constants of the reduced rates (columns of shape (B, 1), see the module docstring).

    ``g4`` multiplies κ (per-sample) or q₁ (full) in p; ``c1`` the cube (per-sample) or q₂ (full)
    term of p; ``c2, c3`` (per-sample) the κ and cube terms of the gain coefficients, (full) the
    q₁, q₂ terms of r_ε in g̃; ``gmod`` the γ of the Jacobian model; ``coef`` = 8γ.
    """

    NAMES = ("g4", "c1", "c2", "c3", "gmod", "coef", "rho", "level")

    def __init__(self, B):
        for name in self.NAMES:
            setattr(self, name, np.zeros((B, 1)))
        self.sam = np.zeros(B, dtype=bool)
        self.flood = np.zeros(B, dtype=bool)

    def take(self, keep):
        out = Coefficients.__new__(Coefficients)
        for name in self.NAMES:
            setattr(out, name, getattr(self, name)[keep])
        out.sam, out.flood = self.sam[keep], self.flood[keep]
        return out


def coefficients(method: str, variant: str, params: dict, size: int) -> Coefficients:
    """The constants of ``size`` runs of one method (params: name → array broadcastable to (size, 1)):
    ``coef`` is the method's gain coefficient, the others are set by its spec's ``reduced``
    (:mod:`dln.registry`)."""
    spec = METHODS_REGISTRY[method]
    co = Coefficients(size)
    P = {k: np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1, 1), (size, 1)) for k, v in params.items()}
    with np.errstate(over="ignore"):  # a huge γ or ρ gives infinite rates: the run diverges
        co.coef[:] = spec.gain_coef(P)
    spec.reduced(co, P, variant == "full")
    return co


def stack_coefficients(parts) -> Coefficients:
    """Concatenate the constants of consecutive blocks of runs."""
    B = sum(p.g4.shape[0] for p in parts)
    out = Coefficients(B)
    for name in Coefficients.NAMES:
        setattr(out, name, np.concatenate([getattr(p, name) for p in parts]))
    out.sam = np.concatenate([p.sam for p in parts])
    out.flood = np.concatenate([p.flood for p in parts])
    return out


class ReducedSystem:
    """The reduced flow of a batch of depth-2 runs of one variant, for :func:`dln.integrate.flow`.

    State Y = (ν, μ) ∈ R^{2n} (``variant='per-sample'``) or (ν, I) ∈ R^{n+d} (``'full'``), zero at
    t = 0; offsets 2a0 = ℓ0 + z0 and 2b0 = ℓ0 − z0 from the initial weights (docstring above).
    The arrays of the running runs are kept compact: :meth:`take` drops the finished ones.
    """

    def __init__(self, problem, variant: str, co: Coefficients, state0: State):
        self.X = problem.X
        self.y = problem.y
        n, d = self.X.shape
        self.n, self.d = n, d
        self.full = variant == "full"
        self.N = n + (d if self.full else n)
        self.XT = np.ascontiguousarray(self.X.T)
        self.X2 = self.X * self.X
        self.X2T = np.ascontiguousarray(self.X2.T)
        self.X3T = np.ascontiguousarray((self.X2 * self.X).T)
        self.XX3T = np.ascontiguousarray(np.hstack([self.XT, self.X3T]))  # r and cube in one product
        self.co = co
        self.a2 = 2.0 * np.asarray(state0.a, dtype=np.float64)  # 2a0 = ℓ0 + z0
        self.b2 = 2.0 * np.asarray(state0.b, dtype=np.float64)
        self.B = self.a2.shape[0]
        self._flags()
        self._pairs_cache = {}  # shared by the views
        # Jacobian model per run (see ``refresh``)
        # W = 0 until the first refresh (the flow starts non-stiff): V = I, λ = 0
        self.Lm = np.zeros((self.B, n, 2 * n))
        self.Lm[:, :, :n] = np.eye(n)
        self.Rm = np.broadcast_to(np.eye(n), (self.B, n, n)).copy()
        self.lam = np.zeros((self.B, n))
        self.betaW = np.zeros((self.B, d)) if self.full else None
        self.inv = np.zeros((self.B, n))

    def _flags(self):
        co = self.co
        self.any_coef = bool(np.any(co.coef))
        self.any_sam = bool(np.any(co.sam))
        self.any_flood = bool(np.any(co.flood))
        self.sam_rows = np.flatnonzero(co.sam)
        self.flood_rows = np.flatnonzero(co.flood)
        if self.full:
            self.need_q1 = bool(np.any(co.g4) or np.any(co.c2)) or self.any_sam
            self.need_q2 = bool(np.any(co.c1) or np.any(co.c3)) or self.any_sam
        else:
            self.need_kappa = bool(np.any(co.g4) or np.any(co.c2)) or self.any_sam
            self.need_cube = bool(np.any(co.c1) or np.any(co.c3)) or self.any_sam

    def take(self, keep):
        """Keep only the runs ``keep`` (indices into the current rows)."""
        self.co = self.co.take(keep)
        self.a2, self.b2 = self.a2[keep], self.b2[keep]
        self.Lm, self.Rm, self.lam, self.inv = self.Lm[keep], self.Rm[keep], self.lam[keep], self.inv[keep]
        if self.full:
            self.betaW = self.betaW[keep]
        self.B = self.a2.shape[0]
        self._flags()

    def view(self, lo, hi):
        """The runs lo … hi−1 as a system of their own whose per-run arrays are views of this one's
        (a refresh of the view updates this system's model; nothing is copied)."""
        out = copy.copy(self)
        rows = slice(lo, hi)
        out.co = self.co.take(rows)
        out.a2, out.b2 = self.a2[rows], self.b2[rows]
        out.Lm, out.Rm, out.lam, out.inv = self.Lm[rows], self.Rm[rows], self.lam[rows], self.inv[rows]
        if self.full:
            out.betaW = self.betaW[rows]
        out.B = hi - lo
        out._flags()
        return out

    # -- the point -------------------------------------------------------------------------
    def expand(self, Y, a2=None, b2=None, co=None):
        """(2 ln u, 2 ln v) of the reduced state: 2a = ℓ0 + z0 + Xᵀν − coef·G, 2b = ℓ0 − z0 − Xᵀν − coef·G,
        with G = (X⊙X)ᵀμ (per-sample) or I (full)."""
        a2 = self.a2 if a2 is None else a2
        b2 = self.b2 if b2 is None else b2
        co = self.co if co is None else co
        n = self.n
        zp = Y[:, :n] @ self.X
        A = a2 + zp
        Bv = b2 - zp
        if self.any_coef:
            lp = (Y[:, n:] @ self.X2) if not self.full else Y[:, n:]
            lp = lp * co.coef
            A -= lp
            Bv -= lp
        return A, Bv

    def point(self, Y):
        """β, m, (2a, 2b) at Y (overflow gives inf/nan, which fails the step, never a warning)."""
        A, Bv = self.expand(Y)
        u2 = np.exp(A)
        v2 = np.exp(Bv)
        return u2 - v2, u2 + v2, A, Bv

    # -- the rates -------------------------------------------------------------------------
    def rates(self, Y, out):
        """f(Y) into ``out``; returns (loss, β, m, 2a, 2b) at Y."""
        beta, m, A, Bv = self.point(Y)
        if self.full:
            loss = self._rates_full(beta, m, out)
        else:
            loss = self._rates_ps(beta, m, out)
        return loss, beta, m, A, Bv

    def _rates_ps(self, beta, m, out):
        co, n = self.co, self.n
        if self.need_cube:
            rc = beta @ self.XX3T
            r, cube = rc[:, :n], rc[:, n:]
            r -= self.y
        else:
            r = beta @ self.XT
            r -= self.y
        loss = np.einsum("bk,bk->b", r, r) * (0.5 / n)
        nu_dot, mu_dot = out[:, :n], out[:, n:]
        r2 = r * r
        if self.need_kappa:
            kappa = m @ self.X2T
            np.multiply(co.g4, kappa, out=nu_dot)
            nu_dot += 1.0
            nu_dot *= r
            np.multiply(co.c2, kappa, out=mu_dot)
            mu_dot += 1.0
            mu_dot *= r2
        else:
            np.copyto(nu_dot, r)
            np.copyto(mu_dot, r2)
        if self.need_cube:
            t = r2 * cube
            nu_dot += co.c1 * t
            t *= r
            mu_dot += co.c3 * t
        if self.any_sam:  # ε_i = ρ/‖∇_w ℓ_i‖ = ρ/(2|r_i|√κ_i) per example (docs/theory.md §7.5, §8)
            s = self.sam_rows
            rs, ks, cs, rho = r[s], kappa[s], cube[s], co.rho[s]
            den = 2.0 * np.abs(rs) * np.sqrt(ks)
            eps = np.divide(np.broadcast_to(rho, den.shape), den, out=np.zeros_like(den), where=den > 0)
            rt = rs * (1.0 + 4.0 * eps * ks) + 4.0 * eps * eps * rs * rs * cs
            nu_dot[s] = rt
            mu_dot[s] = (eps / rho) * rs * rt
        nu_dot *= -4.0 / n
        mu_dot *= 1.0 / n
        return loss

    def _rates_full(self, beta, m, out):
        co, n = self.co, self.n
        r = beta @ self.XT
        r -= self.y
        loss = np.einsum("bk,bk->b", r, r) * (0.5 / n)
        g = r @ self.X
        g *= 1.0 / n
        nu_dot, gain = out[:, :n], out[:, n:]
        g4, c1, c2, c3 = co.g4, co.c1, co.c2, co.c3
        if self.any_sam:  # γ = ε = ρ/‖∇_w L‖, ‖∇_w L‖² = 4Σ m g² (docs/theory.md §7.1, §8)
            s = self.sam_rows
            norm = 2.0 * np.sqrt(np.einsum("bd,bd->b", m[s], g[s] * g[s]))[:, None]
            eps = np.divide(co.rho[s], norm, out=np.zeros_like(norm), where=norm > 0)
            g4, c1, c2, c3 = g4.copy(), c1.copy(), c2.copy(), c3.copy()
            g4[s], c1[s], c2[s], c3[s] = 4.0 * eps, 4.0 * eps * eps, 4.0 * eps, 4.0 * eps * eps
        np.copyto(nu_dot, r)
        rt = r
        if self.need_q1 or self.need_q2:
            mg = m * g
            if self.need_q2:
                q = np.concatenate([mg, beta * g * g]) @ self.XT
                q1, q2 = q[:self.B], q[self.B:]
            else:
                q1, q2 = mg @ self.XT, None
            nu_dot += g4 * q1
            rt = r + c2 * q1
            if q2 is not None:
                nu_dot += c1 * q2
                rt += c3 * q2
        if rt is r:
            np.multiply(g, g, out=gain)
        else:
            gt = rt @ self.X
            gt *= 1.0 / n
            np.multiply(g, gt, out=gain)
        if self.any_sam:
            s = self.sam_rows
            gain[s] *= eps / co.rho[s]
        if self.any_flood:  # ẇ = −sign(L − b)∇L (docs/theory.md §7.9): no gain
            f = self.flood_rows
            nu_dot[f] *= np.sign(loss[f] - co.level[f, 0])[:, None]
            gain[f] = 0.0
        nu_dot *= -4.0 / n
        return loss

    # -- the Jacobian model ------------------------------------------------------------------
    def _pairs(self, which):
        """The d × n² products x_j x_jᵀ (``"XX"``) or x_j (x_j²)ᵀ (``"XX2"``), scaled by 4/n, when
        they fit in memory (then a Gram matrix of every run is one matrix product), else None."""
        if self.d * self.n * self.n > _PAIR_LIMIT:
            return None
        if which not in self._pairs_cache:
            Xr = self.X if which == "XX" else self.X2
            P = np.einsum("id,jd->dij", self.X, Xr).reshape(self.d, self.n * self.n)
            self._pairs_cache[which] = P * (4.0 / self.n)
        return self._pairs_cache[which]

    def _gram(self, w, which):
        """(4/n) X diag(w) Xᵀ (``"XX"``) or (4/n) X diag(w) (X⊙X)ᵀ (``"XX2"``) per row of w → (B, n, n)."""
        B, n = w.shape[0], self.n
        P = self._pairs(which) if B >= 16 else None
        if P is not None:
            return (w @ P).reshape(B, n, n)
        Xr = self.X if which == "XX" else self.X2
        out = np.empty((B, n, n))
        step = max(1, _PAIR_LIMIT // (self.n * self.d))
        for s in range(0, B, step):
            np.matmul(self.X * w[s:s + step, None, :], Xr.T, out=out[s:s + step])
        out *= 4.0 / n
        return out

    def refresh(self, rows, Y):
        """Rebuild the model W of the runs ``rows`` at their states Y (len(rows) × N)."""
        co = self.co.take(rows)
        n = self.n
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            A, Bv = self.expand(Y, self.a2[rows], self.b2[rows], co)
            u2, v2 = np.exp(A), np.exp(Bv)
            beta, m = u2 - v2, u2 + v2
            K = self._gram(m, "XX")
            if self.full:
                c = np.ones((rows.size, n))
                gmod = co.gmod.copy()
                if self.any_sam and co.sam.any():  # the model's γ = ρ/‖∇_w L‖ at this point
                    s = np.flatnonzero(co.sam)
                    r = beta[s] @ self.XT - self.y
                    g = (r @ self.X) / n
                    norm = 2.0 * np.sqrt(np.einsum("bd,bd->b", m[s], g * g))[:, None]
                    gmod[s] = np.divide(co.rho[s], norm, out=np.zeros_like(norm), where=norm > 0)
                sign = np.ones((rows.size, 1))
                if co.flood.any():
                    f = np.flatnonzero(co.flood)
                    r = beta[f] @ self.XT - self.y
                    sign[f, 0] = np.sign(0.5 * np.mean(r * r, axis=1) - co.level[f, 0])
            else:
                kappa = m @ self.X2T
                c = 1.0 + 4.0 * np.where(co.sam[:, None], co.rho, co.gmod) * kappa
                gmod = np.zeros((rows.size, 1))
                sign = np.ones((rows.size, 1))
            sq = np.sqrt(c)
            S = sq[:, :, None] * K * sq[:, None, :]
            bad = ~np.isfinite(S).all(axis=(1, 2))
            S[bad] = 0.0
            lam, Q = np.linalg.eigh(S)
            # eigenvalues of −∂ν̇/∂ν: s(λ + γλ²) (full), λ (per-sample)
            self.lam[rows] = sign * (lam + gmod * lam * lam)
            QT = np.swapaxes(Q, 1, 2)
            self.Rm[rows] = sq[:, :, None] * Q           # V = C^{1/2} Q
            L = np.zeros((rows.size, n, 2 * n))
            L[:, :, :n] = QT / sq[:, None, :]             # V⁻¹ = Qᵀ C^{−1/2}
            if self.any_coef:
                if self.full:
                    # V⁻¹ ∂ν̇/∂I u = coef·s·(1 + γλ) Qᵀ (4/n) X(β⊙u): the last factor is taken per stage
                    L[:, :, n:] = (co.coef * sign)[:, :, None] * (1.0 + gmod * lam)[:, :, None] * QT * (4.0 / n)
                    self.betaW[rows] = beta
                else:
                    Kb = self._gram(beta, "XX2")
                    L[:, :, n:] = co.coef[:, :, None] * np.matmul(QT * sq[:, None, :], Kb)
            L[bad] = 0.0
            self.Lm[rows] = L
        return rows

    def prepare(self, sigma):
        """Per step: the diagonal 1/(σ − λ_A) = 1/(σ + λ) of (σ − W)⁻¹ in the eigenbasis."""
        np.add(self.lam, sigma[:, None], out=self.inv)
        np.reciprocal(self.inv, out=self.inv)

    def solve(self, rhs, sigma, out):
        """out = (σ − W)⁻¹ rhs (W = [[A, B], [0, 0]] of the module docstring)."""
        n = self.n
        v = np.empty((rhs.shape[0], 2 * n))
        np.divide(rhs[:, n:], sigma[:, None], out=out[:, n:])  # the gain block: u = rhs/σ
        v[:, :n] = rhs[:, :n]
        if self.full:
            np.matmul(out[:, n:] * self.betaW, self.XT, out=v[:, n:])
        else:
            v[:, n:] = out[:, n:]
        w = np.matmul(self.Lm, v[:, :, None])
        w *= self.inv[:, :, None]
        out[:, :n] = np.matmul(self.Rm, w)[:, :, 0]

    # -- error norm and the network's coordinates ---------------------------------------------
    def error_parts(self, E, beta, m, A=None, Bv=None):
        """(‖m⊙δz‖/‖m‖, RMS of δℓ) for a state error E: δz = Xᵀδν, δℓ = −coef·(X⊙X)ᵀδμ or −coef·δI.

        δβ = m⊙δz + β⊙δℓ; the limit β∞ = argmin φ_c depends on the path only through c = e^ℓ (docs/theory.md
        §4), so δℓ errors stay while δz errors are forgotten (see :func:`dln.integrate.flow`)."""
        n = self.n
        if A is None:
            w = m / np.max(m, axis=1, keepdims=True)
        else:  # m/max m in the log domain: m itself underflows at α ~ 1e-200, ‖m‖² at 1e-100
            lm = np.logaddexp(A, Bv)
            w = np.exp(lm - np.max(lm, axis=1, keepdims=True))
        # δβ_j = u_j²(e^{δz_j} − 1) − v_j²(e^{−δz_j} − 1), |δβ_j| ≤ m_j·(e^{|δz_j|} − 1): the linear
        # m⊙δz would accept a step that moves z by hundreds on a coordinate of tiny m, where u² then
        # overflows (GF at α = 1e-12 … 1e-200 on the interpolator's tail)
        ez = np.expm1(np.abs(E[:, :n] @ self.X)) * w
        ez = np.sqrt(np.einsum("bd,bd->b", ez, ez) / np.einsum("bd,bd->b", w, w))
        if not self.any_coef:
            return ez, np.zeros_like(ez)
        dl = (E[:, n:] @ self.X2) if not self.full else E[:, n:]
        dl = self.co.coef * dl
        return ez, np.sqrt(np.einsum("bd,bd->b", dl, dl) / self.d)

    def loss_floor(self, rows, beta, m, A, Bv):
        """The round-off floor of the loss of the runs ``rows`` at the point (β, m, 2a, 2b)
        (:func:`dln.stopping.loss_floor`): 2a = 2a0 + z − z0 − ℓ-drift is summed from terms of size up to
        |2a0| + |2b0| + |2a| + |2b|."""
        scale = np.abs(self.a2[rows]) + np.abs(self.b2[rows]) + np.abs(A) + np.abs(Bv)
        return loss_floor(self.X, self.y, m, scale)

    def gain(self, Y):
        """The gain integral I of docs/theory.md §7 at Y: (X⊙X)ᵀμ or I."""
        return Y[:, self.n:].copy() if self.full else Y[:, self.n:] @ self.X2

    def rates_ab(self, F):
        """(da, db) of rates F in the reduced coordinates: da = (ż + ℓ̇)/2, db = (ℓ̇ − ż)/2."""
        n = self.n
        zd = F[:, :n] @ self.X
        ld = -self.co.coef * ((F[:, n:] @ self.X2) if not self.full else F[:, n:])
        return 0.5 * (zd + ld), 0.5 * (ld - zd)
