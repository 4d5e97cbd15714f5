"""Shared oracles for the core-simulator tests (dln.problem, model, methods, integrate, simulate, cli).

Everything here is written from docs/theory.md, independently of the code under test: the data are
drawn with NumPy directly, the loss and its gradients are plain NumPy in (u, v), gradients of
objectives come from central finite differences, null-space projections from an SVD.
"""
from __future__ import annotations

import numpy as np

from dln.model import State
from dln.problem import Problem


# ---------------------------------------------------------------------------------------------
# data (not from dln.problem.make_problem, so that a change of its generator cannot move the
# regimes, e.g. the GD step sizes with sign flips, that tests rely on)
# ---------------------------------------------------------------------------------------------
def sparse_data(n, d, k=3, seed=0):
    """Gaussian X (n, d), unit-norm k-sparse β*, y = Xβ* (noiseless)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta_star = np.zeros(d)
    support = rng.choice(d, size=k, replace=False)
    beta_star[support] = rng.standard_normal(k)
    beta_star /= np.linalg.norm(beta_star)
    return X, X @ beta_star, beta_star


def sparse_problem(n, d, k=3, seed=0):
    X, y, beta_star = sparse_data(n, d, k, seed)
    return Problem(X, y, beta_star=beta_star)


# ---------------------------------------------------------------------------------------------
# states
# ---------------------------------------------------------------------------------------------
def random_state(B, d, seed, *, signs=False):
    """log u, log v ~ N(−0.5, 0.4) (the brief's random states); optional random signs."""
    rng = np.random.default_rng(seed)
    a = rng.normal(-0.5, 0.4, size=(B, d))
    b = rng.normal(-0.5, 0.4, size=(B, d))
    if signs:
        su = rng.choice([-1.0, 1.0], size=(B, d))
        sv = rng.choice([-1.0, 1.0], size=(B, d))
    else:
        su, sv = np.ones((B, d)), np.ones((B, d))
    return State(a, b, su, sv)


def uv(state):
    """(u, v) as plain arrays from a State (computed here, not through State.u / State.v)."""
    return state.su * np.exp(state.a), state.sv * np.exp(state.b)


# ---------------------------------------------------------------------------------------------
# the loss in (u, v) and its analytic pieces (docs/theory.md §1, §7.1)
# ---------------------------------------------------------------------------------------------
def residual(X, y, u, v, D=2):
    return X @ (u**D - v**D) - y


def loss_uv(X, y, u, v, D=2):
    r = residual(X, y, u, v, D)
    return 0.5 * np.mean(r * r)


def grad_beta(X, y, beta):
    """g = ∇_β L = Xᵀ(Xβ − y)/n."""
    return X.T @ (X @ beta - y) / X.shape[0]


def grad_w(X, y, u, v, D=2):
    """∇_w L = (D u^{D−1} g, −D v^{D−1} g)."""
    g = grad_beta(X, y, u**D - v**D)
    return D * u ** (D - 1) * g, -D * v ** (D - 1) * g


def grad_w_example(X, y, u, v, i):
    """∇_w ℓ_i for ℓ_i = r_i²/2 (D = 2): (2u x_i r_i, −2v x_i r_i)."""
    r_i = X[i] @ (u * u - v * v) - y[i]
    return 2.0 * u * X[i] * r_i, -2.0 * v * X[i] * r_i


# ---------------------------------------------------------------------------------------------
# numerical oracles
# ---------------------------------------------------------------------------------------------
def fd_grad(f, w, h=1e-5):
    """Central finite differences of a scalar function f at w (1-D array)."""
    w = np.asarray(w, dtype=float)
    out = np.empty_like(w)
    for j in range(w.size):
        e = np.zeros_like(w)
        e[j] = h
        out[j] = (f(w + e) - f(w - e)) / (2.0 * h)
    return out


def null_basis(X):
    """Orthonormal basis (rows) of null(X) from an SVD."""
    _, s, Vt = np.linalg.svd(X)
    rank = int(np.sum(s > s[0] * 1e-12))
    return Vt[rank:]


def null_part(X, v):
    """‖P_null(X) v‖."""
    return float(np.linalg.norm(null_basis(X) @ v))


def rel(x, ref):
    return float(np.linalg.norm(np.asarray(x) - np.asarray(ref)) / max(np.linalg.norm(ref), 1e-300))
