"""Potentials: q, φ_c, ∇φ_c, Bregman, depth D (docs/theory.md §1, §2.2, §2.3, §3.1).

Oracles: numerical quadrature of the defining integrals, finite differences, the direct
formula of docs/theory.md §1 where it is finite and well conditioned, asymptotic expansions.
"""

import numpy as np
import pytest
from scipy.integrate import quad

from analysis.potentials import bregman, grad_phi, h_D, h_D_inv, phi, phi_D, q, q_D, q_prime


def direct_phi_terms(beta, c):
    """docs/theory.md §1 literally: β arcsinh(β/(2c)) − sqrt(β² + 4c²) + 2c."""
    return beta * np.arcsinh(beta / (2 * c)) - np.sqrt(beta**2 + 4 * c**2) + 2 * c


@pytest.mark.parametrize("s", [1e-3, 0.3, 2.0, -5.0, 40.0, -300.0])
def test_q_is_integral_of_arcsinh(s):
    ref = quad(lambda t: np.arcsinh(t / 2), 0, s, epsabs=0, epsrel=1e-13, limit=200)[0]
    assert q(s) == pytest.approx(ref, rel=1e-13)


def test_q_small_and_huge_arguments():
    s = 1e-8
    assert q(s) == pytest.approx(s**2 / 4 - s**4 / 192, rel=1e-14)
    for s in [1e200, -1e200, 1e300]:
        # sqrt(4 + s²) = |s| exactly in float64 here
        ref = s * np.arcsinh(s / 2) - abs(s) + 2
        assert np.isfinite(q(s)) and q(s) == pytest.approx(ref, rel=1e-14)
    assert q(0.0) == 0.0


def test_q_prime_is_derivative_of_q():
    s = np.linspace(-30, 30, 61) + 0.37
    h = 1e-5
    fd = (q(s + h) - q(s - h)) / (2 * h)
    np.testing.assert_allclose(q_prime(s), fd, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(q_prime(s), np.arcsinh(s / 2), rtol=1e-15)


def test_phi_matches_direct_formula_and_log_c():
    rng = np.random.default_rng(0)
    c = 10 ** rng.uniform(-3, 3, size=50)
    beta = c * rng.normal(0, 3, size=50)  # β ~ c: the direct formula is well conditioned
    ref = direct_phi_terms(beta, c).sum()
    assert phi(beta, c) == pytest.approx(ref, rel=1e-12)
    assert phi(beta, log_c=np.log(c)) == pytest.approx(ref, rel=1e-12)
    z0 = rng.normal(size=50)
    assert phi(beta, c, z0=z0) == pytest.approx(ref - z0 @ beta, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("c", [1e-3, 0.5, 7.0])
def test_phi_is_integral_of_grad_phi(c):
    beta = np.array([-3.0, 0.2, 1.7, 12.0])
    ref = sum(quad(lambda t: np.arcsinh(t / (2 * c)), 0, b, epsabs=0, epsrel=1e-13, limit=200)[0] for b in beta)
    assert phi(beta, c) == pytest.approx(ref, rel=1e-12)


def test_grad_phi_finite_differences():
    rng = np.random.default_rng(1)
    c = 10 ** rng.uniform(-2, 1, size=8)
    beta = rng.normal(0, 2, size=8)
    h = 1e-6
    for j in range(8):
        e = np.zeros(8)
        e[j] = h
        fd = (phi(beta + e, c) - phi(beta - e, c)) / (2 * h)
        assert grad_phi(beta, c)[j] == pytest.approx(fd, rel=1e-7, abs=1e-8)


def test_log_domain_tiny_c_no_warnings_and_asymptotics():
    beta = np.array([0.0, 1e-300, 1e-5, -2.0, 3.5, 1e250])
    log_c = -1000.0
    w = grad_phi(beta, log_c=log_c)
    nz = beta != 0
    # arcsinh(β/(2c)) = sign(β)(ln|β| − ln c) + O(c²/β²)
    np.testing.assert_allclose(w[nz], np.sign(beta[nz]) * (np.log(np.abs(beta[nz])) - log_c), rtol=1e-15)
    assert w[0] == 0.0
    # φ_c(β) = ln(1/c)|β| + |β| ln|β| − |β| + O(c) (docs/theory.md §2.2, §4.1)
    b = beta[1:5]
    ref = np.sum(np.abs(b) * (-log_c) + np.abs(b) * np.log(np.abs(b)) - np.abs(b))
    assert phi(b, log_c=log_c) == pytest.approx(ref, rel=1e-14)
    for value in (phi(beta, c=1e-300), phi(beta, log_c=-1000.0), phi(beta, c=1e300)):
        assert np.isfinite(value)
    assert np.all(np.isfinite(grad_phi(beta, c=1e-300)))


def test_large_c_is_quadratic():
    beta = np.array([0.3, -1.0, 2.0])
    c = 1e6
    assert phi(beta, c) == pytest.approx(np.sum(beta**2) / (4 * c), rel=1e-11)


def test_bregman_definition_and_nonnegativity():
    rng = np.random.default_rng(2)
    c = 10 ** rng.uniform(-1, 1, size=6)
    for _ in range(5):
        beta, beta0 = rng.normal(0, 2, size=(2, 6))
        ref = phi(beta, c) - phi(beta0, c) - grad_phi(beta0, c) @ (beta - beta0)
        assert bregman(beta, beta0, c) == pytest.approx(ref, rel=1e-10, abs=1e-13)
        assert bregman(beta, beta0, c) > 0
    assert bregman(beta, beta, c) == pytest.approx(0.0, abs=1e-15)
    assert np.isfinite(bregman(beta, beta0, log_c=-1000.0))


def test_potential_validation_messages():
    with pytest.raises(ValueError, match=r"The 'c' parameter of phi must be > 0\. Got -1\.0 instead\."):
        phi(np.ones(3), c=-1.0)
    with pytest.raises(ValueError, match=r"The 'log_c' parameter of grad_phi must be finite"):
        grad_phi(np.ones(3), log_c=np.nan)
    with pytest.raises(ValueError, match="Exactly one of 'c' and 'log_c'"):
        phi(np.ones(3))
    with pytest.raises(ValueError, match=r"The 'D' parameter .* must be > 2"):
        h_D(0.1, 2)


# ------------------------------------------------------------------------------------
# depth D (docs/theory.md §2.3)
# ------------------------------------------------------------------------------------

DEPTHS = [3, 4, 5.5]


@pytest.mark.parametrize("D", DEPTHS)
def test_h_D_inverse_roundtrip(D):
    zeta = np.array([-0.999, -0.9, -1e-10, 1e-300, 1e-6, 0.3, 0.5, 0.7, 0.99, 1 - 1e-9])
    back = h_D_inv(h_D(zeta, D), D)
    np.testing.assert_allclose(back, zeta, rtol=1e-14, atol=0)
    assert h_D_inv(0.0, D) == 0.0
    assert 0.999 < h_D_inv(1e300, D) <= 1.0  # 1 − ζ ~ 1e-300^{(D−2)/D} may round to 0
    assert q_D(1e300, D) == pytest.approx(1e300, rel=1e-10)  # q_D(s) = |s| − O(|s|^{2/D})


@pytest.mark.parametrize("D", DEPTHS)
def test_h_D_matches_definition(D):
    p = D / (D - 2)
    zeta = np.linspace(-0.95, 0.95, 39)
    np.testing.assert_allclose(h_D(zeta, D), (1 - zeta) ** (-p) - (1 + zeta) ** (-p), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("D", DEPTHS)
@pytest.mark.parametrize("s", [1e-4, 0.5, 3.0, -40.0, 1000.0])
def test_q_D_is_integral_of_h_D_inverse(D, s):
    ref = quad(lambda t: h_D_inv(t, D), 0, s, epsabs=0, epsrel=1e-12, limit=200)[0]
    assert q_D(s, D) == pytest.approx(ref, rel=1e-11)


@pytest.mark.parametrize("D", DEPTHS)
def test_q_D_derivative_is_h_D_inverse(D):
    s = np.array([-50.0, -2.0, -0.1, 0.05, 0.7, 3.0, 80.0])
    h = 1e-5 * np.maximum(1.0, np.abs(s))
    fd = (q_D(s + h, D) - q_D(s - h, D)) / (2 * h)
    np.testing.assert_allclose(fd, h_D_inv(s, D), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("D", DEPTHS)
def test_phi_D_limits(D):
    beta = np.array([0.5, -1.2, 2.0, 0.0])
    l1 = np.abs(beta).sum()
    gaps = [abs(phi_D(beta, alpha, D) / l1 - 1) for alpha in (1e-1, 1e-2, 1e-4)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-2  # → ‖β‖₁, no log factor
    alpha = 30.0
    quad_form = (D - 2) / (4 * D * alpha**D) * np.sum(beta**2)
    assert phi_D(beta, alpha, D) == pytest.approx(quad_form, rel=1e-6)
