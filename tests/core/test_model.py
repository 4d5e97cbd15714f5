"""dln.model: initial states and the read-outs β, α_eff, z (docs/theory.md §1, §2.3, §3.1).

Oracles: the definitions u0 = v0 = α, c = u0⊙v0, z0 = ln(u0/v0), and the identities
β = 2c⊙sinh(z), m = u² + v² = sqrt(β² + 4c²) for u, v > 0 (docs/theory.md §1).
"""
import numpy as np
import pytest

from dln.errors import DLNError
from dln.model import State, alpha_eff, beta, initial_state, log_c, mirror

from .oracles import random_state, uv


def test_scalar_alpha():
    st = initial_state(7, 3, alpha=0.3)
    for arr in (st.a, st.b):
        assert arr.shape == (3, 7)
        np.testing.assert_allclose(arr, np.log(0.3), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(st.su, 1.0)
    np.testing.assert_array_equal(st.sv, 1.0)
    np.testing.assert_allclose(st.u, 0.3, rtol=1e-15)
    np.testing.assert_allclose(st.v, 0.3, rtol=1e-15)
    np.testing.assert_array_equal(beta(st), 0.0)
    np.testing.assert_allclose(alpha_eff(st), 0.3, rtol=1e-15)
    np.testing.assert_array_equal(mirror(st), 0.0)


def test_default_batch_is_one_run():
    st = initial_state(4, alpha=0.5)
    assert st.a.shape == (1, 4)


def test_per_run_alpha():
    al = np.array([0.1, 0.2, 0.5])
    st = initial_state(6, 3, alpha=al)
    np.testing.assert_allclose(st.u, np.repeat(al[:, None], 6, axis=1), rtol=1e-15)
    np.testing.assert_allclose(alpha_eff(st), np.repeat(al[:, None], 6, axis=1), rtol=1e-15)
    np.testing.assert_allclose(log_c(st), 2 * np.log(np.repeat(al[:, None], 6, axis=1)), rtol=1e-15)


def test_per_coordinate_alpha_is_u0_equal_v0():
    """A per-coordinate α (docs/theory.md §1: u(0) = v(0) = α_i) goes through u0 = v0 (shape (d,))."""
    al = np.linspace(0.05, 1.0, 5)
    st = initial_state(5, 2, u0=al, v0=al)
    np.testing.assert_allclose(st.u, np.broadcast_to(al, (2, 5)), rtol=1e-15)
    np.testing.assert_allclose(st.v, np.broadcast_to(al, (2, 5)), rtol=1e-15)
    np.testing.assert_array_equal(beta(st), 0.0)
    st1 = initial_state(5, 1, u0=al, v0=al)
    np.testing.assert_allclose(st1.u[0], al, rtol=1e-15)


@pytest.mark.parametrize("B, d", [(3, 3), (1, 1), (4, 4), (2, 5), (5, 2)])
def test_a_vector_is_never_guessed(B, d):
    """alpha (B,) is per run and u0 (d,) per coordinate, whatever B and d (B = d included)."""
    runs = np.linspace(0.1, 0.9, B)
    coords = np.linspace(0.2, 2.0, d)
    st = initial_state(d, B, alpha=runs)
    np.testing.assert_allclose(st.u, np.repeat(runs[:, None], d, axis=1), rtol=1e-15)
    st = initial_state(d, B, u0=coords, v0=coords)
    np.testing.assert_allclose(st.u, np.broadcast_to(coords, (B, d)), rtol=1e-15)
    if B != d:  # the other length is refused, with the keyword that takes it
        with pytest.raises(DLNError, match=r"one value per run \(shape \(B,\) = \(%d,\)\).*u0 = v0 = alpha" % B):
            initial_state(d, B, alpha=coords)
        with pytest.raises(DLNError, match=r"one value per coordinate \(shape \(d,\) = \(%d,\)\)" % d):
            initial_state(d, B, u0=runs, v0=runs)


def test_full_alpha_array_and_independent_copies():
    al = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    st = initial_state(3, 2, alpha=al)
    np.testing.assert_allclose(st.u, al, rtol=1e-15)
    st.a[0, 0] = 5.0  # a and b must not alias
    assert st.b[0, 0] == pytest.approx(np.log(0.1))


def test_tiny_alpha_is_representable_in_log_coordinates():
    st = initial_state(3, 1, alpha=1e-200)
    np.testing.assert_allclose(log_c(st), 2 * np.log(1e-200), rtol=1e-15)
    assert np.all(np.isfinite(st.a))


def test_general_u0_v0():
    rng = np.random.default_rng(0)
    d = 6
    u0 = rng.uniform(0.1, 2.0, d)
    v0 = rng.uniform(0.1, 2.0, d)
    st = initial_state(d, 2, u0=u0, v0=v0)
    np.testing.assert_allclose(st.u, np.broadcast_to(u0, (2, d)), rtol=1e-15)
    np.testing.assert_allclose(st.v, np.broadcast_to(v0, (2, d)), rtol=1e-15)
    np.testing.assert_allclose(beta(st), np.broadcast_to(u0**2 - v0**2, (2, d)), rtol=1e-14)
    np.testing.assert_allclose(log_c(st), np.broadcast_to(np.log(u0 * v0), (2, d)), rtol=1e-14)
    np.testing.assert_allclose(alpha_eff(st), np.broadcast_to(np.sqrt(u0 * v0), (2, d)), rtol=1e-14)
    np.testing.assert_allclose(mirror(st), np.broadcast_to(np.log(u0 / v0), (2, d)), rtol=1e-14, atol=1e-15)
    # per-run (B, d)
    U0 = rng.uniform(0.1, 2.0, (2, d))
    st2 = initial_state(d, 2, u0=U0, v0=v0)
    np.testing.assert_allclose(st2.u, U0, rtol=1e-15)


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=0.0), r"'alpha' parameter of init must be > 0"),
    (dict(alpha=-1.0), r"'alpha' parameter of init must be > 0"),
    (dict(alpha=np.array([0.1, -0.2, 0.3])), r"'alpha' parameter of init must be > 0"),
    (dict(alpha=np.nan), r"'alpha' parameter of init must be finite"),
    (dict(alpha=np.ones(4)), r"'alpha' parameter of init must be a scalar, one value per run"),
    (dict(alpha=np.ones(5)), r"'alpha' parameter of init must be a scalar, one value per run"),
    (dict(u0=np.ones(3), v0=np.ones(3)), r"'u0' parameter of init must be a scalar, one value per coordinate"),
    (dict(alpha=0.1, u0=np.ones(5), v0=np.ones(5)), r"'alpha' parameter of init must be given without u0/v0"),
    (dict(), r"'alpha' parameter of init must be given \(or both u0 and v0\)"),
    (dict(u0=np.ones(5)), r"'alpha' parameter of init must be given \(or both u0 and v0\)"),
    (dict(u0=np.ones(5), v0=np.zeros(5)), r"'v0' parameter of init must be > 0"),
    (dict(u0=-np.ones(5), v0=np.ones(5)), r"'u0' parameter of init must be > 0"),
])
def test_initial_state_validation(kwargs, match):
    with pytest.raises(DLNError, match=match):
        initial_state(5, 3, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beta_equals_2c_sinh_z_and_m_identity(seed):
    st = random_state(4, 9, seed)
    u, v = uv(st)
    b = beta(st)
    np.testing.assert_allclose(b, u * u - v * v, rtol=1e-13, atol=1e-15)
    c = np.exp(log_c(st))
    z = mirror(st)
    np.testing.assert_allclose(c, u * v, rtol=1e-14)
    np.testing.assert_allclose(z, np.log(u / v), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(b, 2 * c * np.sinh(z), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(u * u + v * v, np.sqrt(b * b + 4 * c * c), rtol=1e-13)
    np.testing.assert_allclose(alpha_eff(st), np.sqrt(u * v), rtol=1e-14)


def test_signs_and_depth():
    st = random_state(2, 7, 3, signs=True)
    u, v = uv(st)
    np.testing.assert_allclose(st.u, u, rtol=1e-15)
    np.testing.assert_allclose(st.v, v, rtol=1e-15)
    # even depth: signs do not matter; odd depth: they do
    np.testing.assert_allclose(beta(st), u**2 - v**2, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(beta(st, D=3), u**3 - v**3, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(beta(st, D=4), u**4 - v**4, rtol=1e-13, atol=1e-15)
    # |u v| and ln|u/v| with signs (docs/theory.md §13 item 8)
    np.testing.assert_allclose(alpha_eff(st), np.sqrt(np.abs(u * v)), rtol=1e-14)
    np.testing.assert_allclose(mirror(st), np.log(np.abs(u / v)), rtol=1e-13, atol=1e-15)


def test_state_copy_is_deep():
    st = random_state(1, 3, 0, signs=True)
    cp = st.copy()
    cp.a[0, 0] += 1.0
    cp.su[0, 0] *= -1.0
    assert st.a[0, 0] != cp.a[0, 0] and st.su[0, 0] != cp.su[0, 0]
    assert isinstance(cp, State)
