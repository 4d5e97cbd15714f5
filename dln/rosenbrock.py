"""The Rosenbrock-W scheme of ``flow``: ROS34PW2 and its step-size-free linear algebra.

A Rosenbrock-W method advances y' = f(y) by s linearly implicit stages

    (I − γhW) k_i = h f(y + Σ_{j<i} a_ij k_j) + hW Σ_{j<i} γ_ij k_j,      y₁ = y + Σ_i b_i k_i,

with one matrix W for all stages.  Its order conditions hold for *any* W (Steihaug & Wolfbrandt
1979; Hairer & Wanner, Solving ODEs II, §IV.7): W only decides stability, so a stale or partial
model of the Jacobian costs steps, never order.  ``flow`` relies on this twice: the model
(:mod:`dln.reduced`) drops the O(r) terms of the Jacobian, and it is refreshed only every few
steps.

ROS34PW2 (Rang & Angermann 2005, BIT 45:761): 4 stages, order 3 for any W, stiffly accurate,
L-stable, embedded order 2.  Measured on the per-sample F-GR flows of the benchmark workload
against ROS34PRw, ROS3PRL2, ROK4a, GRK4T and Ros4LStab (the last three are Rosenbrock methods,
whose order needs the exact Jacobian): ROS34PW2 took 2–9× fewer steps at equal accuracy.

Transformed stages (Hairer & Wanner §IV.7, eq. (7.25)): with u_i = Σ_{j≤i} γ_ij k_j,

    (σ − W) u_i = f(y + Σ_{j<i} â_ij u_j) + (1/h) Σ_{j<i} ĉ_ij u_j,      σ = 1/(γh),
    y₁ = y + Σ_i m_i u_i,      error estimate  Σ_i (m_i − m̂_i) u_i,

with Γ = (γ_ij), â = AΓ⁻¹, ĉ = diag(1/γ) − Γ⁻¹, m = bᵀΓ⁻¹.  No product with W is needed, only
solves with σ − W, and if W = V diag(λ) V⁻¹ is diagonalized once, (σ − W)⁻¹ = V diag(1/(σ − λ)) V⁻¹
for every step size: the linear algebra does not depend on h.
"""
from __future__ import annotations

import numpy as np

GAMMA = 4.3586652150845900e-01
#: ROS34PW2 in the form (A, Γ, b, b̂) of Rang & Angermann (2005), Table 4.
A = np.array([
    [0.0, 0.0, 0.0, 0.0],
    [8.7173304301691801e-01, 0.0, 0.0, 0.0],
    [8.4457060015369423e-01, -1.1299064236397981e-01, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
])
GAMMA_MATRIX = np.array([
    [GAMMA, 0.0, 0.0, 0.0],
    [-8.7173304301691801e-01, GAMMA, 0.0, 0.0],
    [-9.0338057013044082e-01, 5.4180672388095326e-02, GAMMA, 0.0],
    [2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01, GAMMA],
])
B = np.array([2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351023e+00, 4.3586652150845900e-01])
BHAT = np.array([3.7810903145819369e-01, -9.6042292212423178e-02, 0.5, 2.1793326075422950e-01])
ORDER = 3  # of the main formula, for any W (the step-size controller uses err^(−1/ORDER))
STAGES = 4


def transformed(A=A, Gamma=GAMMA_MATRIX, b=B, bhat=BHAT):
    """(â, ĉ, m, m − m̂) of the transformed stages (module docstring), from (A, Γ, b, b̂)."""
    Gi = np.linalg.inv(Gamma)
    a_hat = A @ Gi
    c_hat = np.diag(1.0 / np.diag(Gamma)) - Gi
    return a_hat, c_hat, b @ Gi, (b - bhat) @ Gi


A_HAT, C_HAT, M, E = transformed()
