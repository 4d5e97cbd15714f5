"""Taking over a run from another DLN code: its hyper-parameters in dln's canonical convention.

dln trains β = u⊙u − v⊙v from u(0) = v(0) = α on L = (1/2n)‖Xβ − y‖² (docs/theory.md §1).  The
public DLN codes use other parametrizations and loss scalings; each function below returns the
keyword arguments of :func:`dln.simulate.run_batch` (and of ``dln.simulate.simulate``, ``dln.sweep``,
:class:`~dln.estimator.DiagonalLinearNetwork`) that run *the same trajectory*: same β at every step
(discrete time), same β(t) after the time change of :func:`time_factor` (flow), same gain
−ln(α_eff/α).  docs/conventions.md has the table and the derivations; tests/conformance checks every
map against an independent loop written in the other convention.

- :func:`from_uv`: β = u⊙v with v(0) = 0 (Pesme et al. 2021; Even et al. 2023; Andriushchenko &
  Flammarion 2022, whose official code this module's defaults follow).  The rotation
  u_c = (u + v)/2, v_c = (u − v)/2 gives u_c² − v_c² = u⊙v, and every gradient step in (u, v) is half a
  canonical step: α = u(0)/2, η = η_P/2, ρ = ρ_P/2 (n-SAM), γ = γ_P/2, ε = ε_P/2, t = t_P/2.
- :func:`from_four_vector`: β = u₊⊙v₊ − u₋⊙v₋ (Azulay et al. 2021).  The radii
  U = |(u₊ + v₊, u₋ − v₋)|/2 and V = |(u₊ − v₊, u₋ + v₋)|/2 follow the canonical dynamics exactly with
  η = η_A/2: u(0) = U(0), v(0) = V(0); with the symmetric shape-s initialization, α = sqrt(α_A(1 + s²)/(1 − s²)).
- :func:`from_squares`: β = w₊² − w₋² (Woodworth et al. 2020): the canonical model; only the loss
  scaling may differ.

A loss L_P = s·L (``loss="1/n"``: s = 2; ``"sum"``: s = 2n; ``"1/2 sum"``: s = n; ``"1/4n"``: s = 1/2)
multiplies every gradient by s: η, γ and the un-normalized SAM radius scale by s, a flooding level by
1/s, and time by s (docs/theory.md §13 item 3).
"""
from __future__ import annotations

import math

import numpy as np

from .errors import check_choice, check_int, check_real, fail

__all__ = ["from_uv", "from_four_vector", "from_squares", "four_vector_shape_init", "time_factor", "LOSSES"]

#: Loss normalizations: L_P = s·(1/2n)‖r‖², s as a function of n.
LOSSES = {
    "1/2n": lambda n: 1.0,       # (1/2n)Σr²: dln's, A&F's, Even et al.'s, Azulay et al.'s update
    "1/n": lambda n: 2.0,        # (1/n)Σr²
    "1/2 sum": lambda n: float(n),  # ½Σr²
    "sum": lambda n: 2.0 * n,    # Σr² (Woodworth et al.)
    "1/4n": lambda n: 0.5,       # (1/4n)Σr² (HaoChen et al.)
}
_PER_EXAMPLE = ("r2", "r2/2")
W = "conventions"


def _scale(loss: str, n) -> float:
    check_choice("loss", loss, tuple(LOSSES), W)
    if loss in ("sum", "1/2 sum"):
        if n is None:
            raise fail("n", W, f"given with loss={loss!r} (the scaling depends on the number of samples)", None)
        n = check_int("n", n, W, ge=1)
    return LOSSES[loss](n)


def _hyper(method, variant, scale, half, *, lr, gamma, eps, rho, flood_level, example_loss):
    """Map the method's hyper-parameters; ``half`` is the factor of the parametrization (½ for u⊙v
    and the four-vector model: their gradient steps are half canonical steps, 1 for w₊² − w₋²)."""
    from .methods import METHODS, PARAMS, VARIANTS

    check_choice("method", method, METHODS, W)
    check_choice("variant", variant, VARIANTS, W)
    given = {k: v for k, v in dict(gamma=gamma, eps=eps, rho=rho, flood_level=flood_level).items() if v is not None}
    for name in set(given) - set(PARAMS[method]):
        raise fail(name, W, f"left unset (it does not apply to {method})", given[name])
    out = dict(method=method, variant=variant)
    if lr is not None:
        out["lr"] = half * scale * check_real("lr", lr, W, gt=0.0)
    if gamma is not None:  # penalty (γ/2)‖∇_w L‖²: both ∇L and the time step scale
        out["gamma"] = half * scale * check_real("gamma", gamma, W, ge=0.0)
    if eps is not None:  # ascent point w + ε∇_w L
        out["eps"] = half * scale * check_real("eps", eps, W, gt=0.0)
    if flood_level is not None:  # sign(L_P − b_P) = sign(L − b_P/s)
        out["flood_level"] = check_real("flood_level", flood_level, W, ge=0.0) / scale
    if rho is not None:
        rho = check_real("rho", rho, W, gt=0.0)
        if method == "sam":
            # normalized ascent ρ_P∇L/‖∇L‖ (free of the loss scaling): the other code's step R∇_P is
            # half·∇_c while ‖∇_P‖ = sqrt(half)·‖∇_c‖, so the canonical radius is ρ_P·sqrt(half)
            out["rho"] = rho * math.sqrt(half)
        elif variant == "full":  # ascent ρ_P∇L_P = s·ρ_P ∇L, then the parametrization's factor
            out["rho"] = half * scale * rho
        else:  # per-example ascent ρ_P∇ℓ_k: ℓ_k = r_k² (A&F's code) is twice dln's r_k²/2
            check_choice("example_loss", example_loss, _PER_EXAMPLE, W)
            out["rho"] = half * rho * (2.0 if example_loss == "r2" else 1.0)
    return out


def from_uv(*, u0=None, alpha=None, lr=None, method: str = "gf", variant: str = "full", gamma=None, eps=None,
            rho=None, flood_level=None, loss: str = "1/2n", n: int | None = None, example_loss: str = "r2") -> dict:
    """Canonical keyword arguments for a run of the u⊙v model (β = u⊙v, u(0) = u0, v(0) = 0).

    Parameters
    ----------
    u0 : float
        u(0) as the other code sets it (A&F's ``u0``; v(0) = 0).  Canonical α = u0/2.
    alpha : float
        Pesme et al.'s and Even et al.'s α, with u(0) = √2·α (docs/theory.md §1.1).  Canonical α = α/√2.
        Give ``u0`` or ``alpha``, not both.
    lr : float, optional
        Their step η_P (GD, SGD, SAM, flooding): canonical η = s·η_P/2.
    method, variant : str
        The canonical method the run is (dln.methods): A&F's ``n_SAM_GD`` is ``usam``/``full``,
        ``one_SAM_GD`` is ``usam``/``per-sample``; GD and SGD are ``gf`` in discrete time.
    gamma, eps, rho, flood_level : float, optional
        Their GR strength (penalty (γ_P/2)‖∇_w L‖²), finite-difference step, SAM radius, flooding
        level.  Un-normalized n-SAM (ascent w + ρ_P∇L): ρ = s·ρ_P/2; normalized SAM: ρ = ρ_P/√2.
    loss : {"1/2n", "1/n", "1/2 sum", "sum", "1/4n"}
        Their loss normalization (``n`` needed for the sums).
    example_loss : {"r2", "r2/2"}
        Per-example SAM only: the loss whose gradient is the ascent, r_k² (A&F's official code:
        ascent 2ρ·r_k x_k v, the default) or r_k²/2.  Canonical ρ = ρ_P (r²) or ρ_P/2 (r²/2).
    """
    if (u0 is None) == (alpha is None):
        raise fail("u0", W, "given, or alpha (u0 = sqrt(2)*alpha), but not both", u0)
    u0 = check_real("u0", u0, W, gt=0.0) if u0 is not None else math.sqrt(2.0) * check_real("alpha", alpha, W, gt=0.0)
    out = _hyper(method, variant, _scale(loss, n), 0.5, lr=lr, gamma=gamma, eps=eps, rho=rho,
                 flood_level=flood_level, example_loss=example_loss)
    out["alpha"] = 0.5 * u0
    return out


def four_vector_shape_init(alpha, shape):
    """Azulay et al.'s symmetric initialization of shape s ∈ [0, 1) and scale α_A:
    u₊ = u₋ = sqrt(α_A(1 − s)/(1 + s)), v₊ = v₋ = sqrt(α_A(1 + s)/(1 − s)) (so u⊙v = α_A).  Returns (u0, v0)."""
    alpha = check_real("alpha", alpha, W, gt=0.0)
    shape = check_real("shape", shape, W, ge=0.0)
    if np.any(np.asarray(shape) >= 1.0):
        raise fail("shape", W, "< 1", shape)
    return np.sqrt(alpha * (1 - shape) / (1 + shape)), np.sqrt(alpha * (1 + shape) / (1 - shape))


def from_four_vector(*, alpha=None, shape=None, up0=None, vp0=None, un0=None, vn0=None, lr=None, method: str = "gf",
                     variant: str = "full", gamma=None, eps=None, rho=None, flood_level=None, loss: str = "1/2n",
                     n: int | None = None, example_loss: str = "r2") -> dict:
    """Canonical keyword arguments for a run of Azulay et al.'s model β = u₊⊙v₊ − u₋⊙v₋.

    Initialization: ``alpha`` and ``shape`` (their symmetric shape-s init, :func:`four_vector_shape_init`),
    giving canonical α = sqrt(α_A(1 + s²)/(1 − s²)); or the four initial vectors ``up0, vp0, un0,
    vn0``, giving per-coordinate canonical u0 = |(u₊ + v₊, u₋ − v₋)|/2 and v0 = |(u₊ − v₊, u₋ + v₋)|/2
    (keywords ``u0``, ``v0`` of run_batch; with u₊ = u₋ and v₊ = v₋ this is α = sqrt((u₀² + v₀²)/2)).
    Their update is the gradient of (1/2n)‖r‖² (the code *reports* (1/n)‖r‖²): ``loss="1/2n"``.
    The hyper-parameters map as in :func:`from_uv` (η = η_A/2, …).
    """
    out = _hyper(method, variant, _scale(loss, n), 0.5, lr=lr, gamma=gamma, eps=eps, rho=rho,
                 flood_level=flood_level, example_loss=example_loss)
    vectors = (up0, vp0, un0, vn0)
    if alpha is not None or shape is not None:
        if any(v is not None for v in vectors) or alpha is None or shape is None:
            raise fail("alpha", W, "given with shape (or the four vectors up0, vp0, un0, vn0 instead)", alpha)
        u, v = four_vector_shape_init(alpha, shape)
        out["alpha"] = np.sqrt((u * u + v * v) / 2.0)
        if np.ndim(out["alpha"]) == 0:
            out["alpha"] = float(out["alpha"])
        return out
    if any(v is None for v in vectors):
        raise fail("up0", W, "given with vp0, un0, vn0 (or alpha and shape)", up0)
    up, vp, un, vn = (np.asarray(check_real(nm, v, W), dtype=np.float64)
                      for nm, v in zip(("up0", "vp0", "un0", "vn0"), vectors))
    U = 0.5 * np.hypot(up + vp, un - vn)
    V = 0.5 * np.hypot(up - vp, un + vn)
    if np.any(U <= 0) or np.any(V <= 0):
        raise fail("up0", W, "such that both canonical weights are > 0 on every coordinate "
                   "(u+ + v+, u- - v- not both 0, and u+ - v+, u- + v- not both 0)", up)
    out["u0"], out["v0"] = U, V
    return out


def from_squares(*, alpha=None, lr=None, method: str = "gf", variant: str = "full", gamma=None, eps=None,
                 rho=None, flood_level=None, loss: str = "1/2n", n: int | None = None,
                 example_loss: str = "r2/2") -> dict:
    """Canonical keyword arguments for β = w₊² − w₋², w±(0) = α (Woodworth et al. 2020; Karakida et
    al. 2023): the canonical model itself, so only the loss scaling s maps (η = s·η_P, …)."""
    out = _hyper(method, variant, _scale(loss, n), 1.0, lr=lr, gamma=gamma, eps=eps, rho=rho,
                 flood_level=flood_level, example_loss=example_loss)
    if alpha is not None:
        out["alpha"] = check_real("alpha", alpha, W, gt=0.0)
    return out


def time_factor(convention: str, loss: str = "1/2n", n: int | None = None) -> float:
    """Canonical flow time per unit of the other code's time: t = factor·t_P (½·s for u⊙v and the
    four-vector model, s for w₊² − w₋²)."""
    check_choice("convention", convention, ("uv", "four-vector", "squares"), W)
    return (1.0 if convention == "squares" else 0.5) * _scale(loss, n)
