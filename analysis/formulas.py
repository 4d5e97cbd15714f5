"""NumPy closed forms of the DLN derivatives (docs/theory.md §7.1, §7.2, §7.3, §7.5).

Independent reference implementations of the formulas that :mod:`analysis.symbolic` derives
from the loss with SymPy; tests compare the two at random points. Batched over leading axes:
u, v have shape (..., d); X (n, d); y (n,).
"""

from __future__ import annotations

import numpy as np


def beta_of(u, v):
    """β = u⊙u − v⊙v (docs/theory.md §1)."""
    return u * u - v * v


def residual(beta, X, y):
    """r = Xβ − y (docs/theory.md §1)."""
    return beta @ X.T - y


def loss_grad_beta(beta, X, y):
    """g = ∇_β L = Xᵀr/n (docs/theory.md §1)."""
    return residual(beta, X, y) @ X / X.shape[0]


def M_times(vec, X):
    """M·vec with M = XᵀX/n, batched over leading axes of vec."""
    return (vec @ X.T) @ X / X.shape[0]


def grad_u(u, v, X, y):
    """∇_u L = 2u⊙g (docs/theory.md §7.1)."""
    return 2.0 * u * loss_grad_beta(beta_of(u, v), X, y)


def grad_v(u, v, X, y):
    """∇_v L = −2v⊙g (docs/theory.md §7.1)."""
    return -2.0 * v * loss_grad_beta(beta_of(u, v), X, y)


def grad_norm2(u, v, X, y):
    """‖∇_w L‖² = 4 Σ_j m_j g_j², m = u² + v² (docs/theory.md §7.1)."""
    g = loss_grad_beta(beta_of(u, v), X, y)
    return 4.0 * np.sum((u * u + v * v) * g * g, axis=-1)


def hvp_u(u, v, X, y):
    """(H∇L)_u = 4u⊙g² + 8u⊙M(m⊙g) (docs/theory.md §7.1)."""
    g = loss_grad_beta(beta_of(u, v), X, y)
    return 4.0 * u * g * g + 8.0 * u * M_times((u * u + v * v) * g, X)


def hvp_v(u, v, X, y):
    """(H∇L)_v = 4v⊙g² − 8v⊙M(m⊙g) (docs/theory.md §7.1)."""
    g = loss_grad_beta(beta_of(u, v), X, y)
    return 4.0 * v * g * g - 8.0 * v * M_times((u * u + v * v) * g, X)


def per_example_grad_norm2(u, v, X, y):
    """‖∇_w ℓ_i‖² = 4 r_i² κ_i, κ_i = Σ_j x_ij² m_j, ℓ_i = r_i²/2 (docs/theory.md §7.5). Shape (..., n)."""
    r = residual(beta_of(u, v), X, y)
    kappa = (u * u + v * v) @ (X * X).T
    return 4.0 * r * r * kappa


def gr_log_c_rate(u, v, X, y, gamma):
    """Exact GR: d ln(u⊙v)/dt = −8γ g² (docs/theory.md §7.2)."""
    g = loss_grad_beta(beta_of(u, v), X, y)
    return -8.0 * gamma * g * g


def fgr_g_tilde(u, v, X, y, eps):
    """g̃ = ∇_β L(β̃) = g + 4ε M(m⊙g) + 4ε² M(β⊙g²) (docs/theory.md §7.3)."""
    beta = beta_of(u, v)
    g = loss_grad_beta(beta, X, y)
    return g + 4.0 * eps * M_times((u * u + v * v) * g, X) + 4.0 * eps**2 * M_times(beta * g * g, X)
