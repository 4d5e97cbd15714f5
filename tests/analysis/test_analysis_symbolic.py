"""SymPy derivations: every check passes; lambdified derived expressions equal the NumPy
closed forms of analysis.formulas at random points; rendering; the single lambdify site."""

import pathlib
import re

import numpy as np
import pytest
import sympy as sp

import analysis
from analysis import formulas
from analysis.symbolic import (
    DERIVATIONS,
    SYMBOLIC_D,
    SYMBOLIC_N,
    Derivation,
    _is_zero,
    derive_all,
    lambdified_formulas,
    numeric,
    render,
)

EXPECTED = ["gradient_hvp", "potential", "gr_flow", "fgr", "flooding", "depth"]


def test_registry_order_and_types():
    assert list(DERIVATIONS) == EXPECTED
    for name in EXPECTED:
        der = DERIVATIONS[name]
        assert isinstance(der, Derivation) and der.name == name
        assert "docs/theory.md §" in der.title
        assert der.expressions and all(isinstance(e, sp.Basic) for e in der.expressions.values())


def test_every_derivation_check_passes():
    results = derive_all()
    assert [der.name for der, _ in results] == EXPECTED
    failed = [der.name for der, ok in results if not ok]
    assert not failed, f"derivation checks failed: {failed}"


def test_zero_test_can_fail():
    x, y = sp.symbols("x y")
    assert _is_zero((x + y) ** 2 - x**2 - 2 * x * y - y**2)
    assert not _is_zero((x + y) ** 2 - x**2 - y**2)
    assert not _is_zero(sp.Matrix([0, x - y]))


@pytest.fixture(scope="module")
def random_point():
    rng = np.random.default_rng(11)
    u = rng.uniform(0.2, 1.5, size=(4, SYMBOLIC_D))  # a batch of 4 points
    v = rng.uniform(0.2, 1.5, size=(4, SYMBOLIC_D))
    X = rng.standard_normal((SYMBOLIC_N, SYMBOLIC_D))
    y = rng.standard_normal(SYMBOLIC_N)
    return u, v, X, y


@pytest.mark.parametrize(
    "name, params",
    [
        ("grad_u", ()),
        ("grad_v", ()),
        ("hvp_u", ()),
        ("hvp_v", ()),
        ("per_example_grad_norm2", ()),
        ("gr_log_c_rate", (0.07,)),
        ("fgr_g_tilde", (-0.15,)),
        ("fgr_g_tilde", (0.3,)),
    ],
)
def test_lambdified_equals_numpy_closed_form(random_point, name, params):
    u, v, X, y = random_point
    derived = lambdified_formulas()[name](u, v, X, y, *params)
    closed = getattr(formulas, name)(u, v, X, y, *params)
    assert derived.shape == closed.shape
    np.testing.assert_allclose(derived, closed, rtol=1e-12, atol=1e-13)


def test_hvp_against_finite_differences(random_point):
    """Independent of both: H∇L = ∇(½‖∇L‖²) by central differences of formulas.grad_norm2."""
    u, v, X, y = (a[0] if a.ndim == 2 and a.shape[0] == 4 else a for a in random_point)
    h = 1e-6
    fd_u = np.array([(formulas.grad_norm2(u + h * e, v, X, y) - formulas.grad_norm2(u - h * e, v, X, y)) / (4 * h)
                     for e in np.eye(SYMBOLIC_D)])
    np.testing.assert_allclose(formulas.hvp_u(u, v, X, y), fd_u, rtol=1e-7, atol=1e-9)


def test_lambdified_rejects_other_sizes():
    f = lambdified_formulas()["grad_u"]
    with pytest.raises(ValueError, match="symbolic instance"):
        f(np.ones(5), np.ones(5), np.ones((2, 5)), np.ones(2))


def test_render_text_and_latex():
    der = DERIVATIONS["potential"]
    text = render(der)
    assert der.title in text and "asinh" in text
    tex = render(der, latex=True)
    assert "\\operatorname{asinh}" in tex


def test_numeric():
    x, y = sp.symbols("x y")
    f = numeric(x * sp.exp(y), [x, y])
    assert f(2.0, 0.0) == pytest.approx(2.0)


def test_lambdify_is_called_in_exactly_one_function():
    root = pathlib.Path(analysis.__file__).parent
    sites = []
    for path in root.glob("*.py"):
        for line in path.read_text().splitlines():
            if re.search(r"lambdify\s*\(", line) and not line.lstrip().startswith("#"):
                sites.append((path.name, line.strip()))
    assert len(sites) == 1 and sites[0][0] == "symbolic.py", sites
    src = (root / "symbolic.py").read_text()
    body = src[src.index("def numeric("):]
    body = body[: body.index("\ndef ", 1)]
    assert "lambdify(" in body
