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
    assert "\\operatorname{arcsinh}" in tex and "\\operatorname{asinh}" not in tex


def _latex_lines(text):
    """The math lines of ``--latex`` output: everything but comments, blanks and check lines."""
    return [line for line in text.splitlines()
            if line.strip() and not line.startswith("%")]


def _mathtext_error(expr):
    """None if matplotlib's mathtext (a parser independent of SymPy) accepts ``$expr$``."""
    from matplotlib.mathtext import MathTextParser

    try:
        MathTextParser("path").parse(f"${expr}$")
    except ValueError as exc:
        return str(exc)
    return None


def _nesting_error(expr):
    """None if (), [] and {} nest properly (mathtext checks braces only: "(grad_{u L) j}" passes it)."""
    stripped = re.sub(r"\\[{}|]|\\left\.|\\right\.", " ", expr)  # \{, \}, \|, invisible delimiters
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for pos, ch in enumerate(stripped):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return f"unmatched {ch!r} at {pos}"
    return f"unclosed {stack}" if stack else None


def _top_level(expr):
    """``expr`` without its brace groups."""
    while True:
        inner = re.sub(r"\{[^{}]*\}", "", expr)
        if inner == expr:
            return expr
        expr = inner


def _bare_words(expr):
    """Runs of two or more letters in math mode that are not a command, an upright name
    (\\text, \\operatorname, \\mathrm) or the double index ij: LaTeX typesets them as a
    product of italic single-letter variables ("grad" = g·r·a·d)."""
    stripped = re.sub(r"\\(text|operatorname|mathrm)\{[^{}]*\}", " ", expr)
    stripped = re.sub(r"\\[A-Za-z]+", " ", stripped)
    return [w for w in re.findall(r"[A-Za-z]{2,}", stripped) if w != "ij"]


def test_latex_lint_catches_the_old_output():
    """The two oracles reject what ``dln derive --latex`` printed before SymPy got proper symbols."""
    assert _bare_words(r"(grad_{u L) j} = 2 g_{j} u_{j}") == ["grad"]
    assert _bare_words(r"d ln(u_{j v j)/dt} = - 8 g_{j}^{2} \gamma") == ["ln", "dt"]
    assert _bare_words(r"\phi_{c(beta), c->0} = - \beta") == ["beta"]
    assert _bare_words(r"\frac{d}{d t} \ln(u_{j} v_{j}) = \operatorname{arcsinh}{x_{ij}}") == []
    assert _mathtext_error(r"\frac{d}{d t} \ln(u_{j} v_{j})") is None
    assert _mathtext_error(r"\frac{d}{d t} \ln(u_{j} v_{j})}") is not None  # unbalanced brace
    assert _nesting_error(r"(grad_{u L) j}") and _nesting_error(r"d ln(u_{j v j)/dt}")
    assert _nesting_error(r"\left.(\theta_{2} - \theta_{0})\right|_{x} = \|\nabla L\|^{2} \{\}") is None
    assert _mathtext_error(r"\lVert x \rVert") is not None  # a command mathtext lacks


@pytest.mark.parametrize("name", EXPECTED)
def test_latex_of_every_closed_form_parses(name):
    """Every emitted LaTeX expression is accepted by matplotlib's mathtext and names its
    quantities with commands (\\nabla, \\ln, \\frac{d}{d t}, \\tilde{g}), not letter strings."""
    der = DERIVATIONS[name]
    lines = _latex_lines(render(der, latex=True))
    assert len(lines) == len(der.expressions)
    for line in lines:
        assert _mathtext_error(line) is None, (line, _mathtext_error(line))
        assert _nesting_error(line) is None, (line, _nesting_error(line))
        assert not _bare_words(line), (line, _bare_words(line))
        assert _top_level(line).count("=") == 1, line  # one equation (not counting j=1 in a sum's limits)


def test_q_prime_is_simplified():
    """q'(s) = arcsinh(s/2) (docs/theory.md §1), as the expression itself, not merely equal to it."""
    q_prime = DERIVATIONS["potential"].expressions["q_prime"]
    (s,) = q_prime.rhs.free_symbols
    assert q_prime.rhs == sp.asinh(s / 2)
    assert q_prime.lhs == sp.Derivative(sp.Function("q")(s), s)


def test_text_mode_prints_every_derivation_and_its_check(monkeypatch, capsys):
    """``dln derive`` (text) prints each title, each closed form under its name, and each check's
    verdict, and exits 1 if one fails; the checks are stubbed here (the real ones run in
    test_every_derivation_check_passes), one of them failing."""
    import dataclasses

    import analysis.symbolic as symbolic
    from dln.cli import main

    real_build = symbolic._build
    monkeypatch.setattr(symbolic, "_build", lambda name: dataclasses.replace(
        real_build(name), check=lambda: name != "flooding"))
    assert main(["derive"]) == 1
    out = capsys.readouterr().out
    blocks = out.split("check: ")
    assert len(blocks) == len(EXPECTED) + 1
    for name, block, verdict in zip(EXPECTED, blocks[:-1], blocks[1:]):
        der = DERIVATIONS[name]
        assert der.title in block and der.statement in block
        positions = [block.index(f"[{key}]") for key in der.expressions]
        assert positions == sorted(positions)
        assert verdict.startswith("FAIL" if name == "flooding" else "PASS")
    # display names are printed as written: pretty printing used to turn ||grad_w L||^2 into ||grad_w L||__2
    assert not re.search(r"[^_\s]__[^_\s]", out) and "‖∇_w L‖²" in out and "(M(m⊙g))_j" in out


@pytest.mark.slow
def test_cli_latex_end_to_end():
    """``python -m dln derive --latex`` as a user runs it: every check passes and every math line parses."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dln", "derive", "--latex"], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).resolve().parents[2], timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("check: PASS") == len(EXPECTED)
    lines = _latex_lines(proc.stdout)
    assert len(lines) == sum(len(DERIVATIONS[name].expressions) for name in EXPECTED)
    for line in lines:
        assert _mathtext_error(line) is None and _nesting_error(line) is None and not _bare_words(line), line


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
