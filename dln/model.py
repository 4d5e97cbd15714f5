"""Parametrizations and initializations of the diagonal linear network (docs/theory.md §1, §2.3, §3.1).

The network is β = u^D − v^D (D = 2 is the canonical u⊙u − v⊙v).  State is held in log
coordinates a = ln|u|, b = ln|v| (docs/design.md §2): α = 1e-12 stays representable, the effective
initialization sqrt(u⊙v) = exp((a + b)/2) and the mirror coordinate z = a − b are read off for
free.  Continuous-time flows never change the signs of u and v; discrete maps may (docs/theory.md
§5.3), so a state also carries the signs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import check_int, check_real, fail

#: Smallest initial weight (α, u0, v0) accepted.  Down to it, flows, GD and SGD reach their predicted
#: limits (GF at α = 1e-100 … 1e-200: argmin φ to 5e-13); below it, gradient flow's saddle plateaus
#: (of length ∝ ln(1/α), docs/theory.md §2.2) outlast the flow's stationarity test, which then stops
#: a run on a plateau (measured at α = 1e-250 and 1e-300).
WEIGHT_MIN = 1e-200


@dataclass
class State:
    """Weights of a batch of B networks in log coordinates.

    Attributes
    ----------
    a, b : ndarray, shape (B, d)
        ln|u| and ln|v|.
    su, sv : ndarray, shape (B, d)
        Signs of u and v (±1.0).  Always +1 in continuous time.
    """

    a: np.ndarray
    b: np.ndarray
    su: np.ndarray
    sv: np.ndarray

    @property
    def u(self) -> np.ndarray:
        return self.su * np.exp(self.a)

    @property
    def v(self) -> np.ndarray:
        return self.sv * np.exp(self.b)

    def copy(self) -> "State":
        return State(self.a.copy(), self.b.copy(), self.su.copy(), self.sv.copy())


def powers(a: np.ndarray, b: np.ndarray, su, sv, D: int):
    """u^D and v^D from log coordinates (signs only matter for odd D)."""
    uD = np.exp(D * a)
    vD = np.exp(D * b)
    if D % 2:
        uD = su * uD
        vD = sv * vD
    return uD, vD


def beta(state: State, D: int = 2) -> np.ndarray:
    """Predictor β = u^D − v^D (docs/theory.md §1, §2.3)."""
    uD, vD = powers(state.a, state.b, state.su, state.sv, D)
    return uD - vD


def log_c(state: State) -> np.ndarray:
    """ln|u⊙v| = a + b, the log of the effective α² (docs/theory.md §1, §4)."""
    return state.a + state.b


def alpha_eff(state: State) -> np.ndarray:
    """Effective initialization α_eff = sqrt(|u⊙v|) (docs/theory.md §1)."""
    return np.exp(0.5 * (state.a + state.b))


def mirror(state: State) -> np.ndarray:
    """Mirror coordinate z = ln|u/v| (docs/theory.md §1, §13 item 8)."""
    return state.a - state.b


def initial_state(d: int, batch: int = 1, *, alpha=None, u0=None, v0=None, where: str = "init") -> State:
    """Initial weights for a batch of B runs.

    Shapes are never guessed (a length-B vector and a length-d vector look alike when B = d):

    - ``alpha`` is a hyper-parameter, one value **per run**: a scalar (every run), a vector of
      shape (B,), or an array of shape (B, d) (per run and per coordinate).  u0 = v0 = α, so β(0) = 0
      and c = α² (docs/theory.md §1).  A vector is always per run, whatever d.
    - ``u0``, ``v0`` are weights, **per coordinate**: a scalar, a vector of shape (d,) shared by the
      runs, or an array (B, d).  Any positive u0, v0 is allowed (general initialization,
      docs/theory.md §3.1: c = u0⊙v0, z0 = ln(u0/v0)); a per-coordinate α is u0 = v0 = α.

    A vector of the other length is an error that says which keyword takes it.  Initial weights
    below ``WEIGHT_MIN`` = 1e-200 are refused (outside the verified range).
    """
    d = check_int("d", d, where, ge=1)
    batch = check_int("batch", batch, where, ge=1)
    if alpha is not None:
        if u0 is not None or v0 is not None:
            raise fail("alpha", where, "given without u0/v0", "both")
        alpha = _check_weight("alpha", alpha, where)
        log_a = _broadcast(np.log(alpha), d, batch, "alpha", where, per="run")
        a, b = log_a, log_a.copy()
    else:
        if u0 is None or v0 is None:
            raise fail("alpha", where, "given (or both u0 and v0)", None)
        u0 = _check_weight("u0", u0, where)
        v0 = _check_weight("v0", v0, where)
        a = _broadcast(np.log(u0), d, batch, "u0", where, per="coordinate")
        b = _broadcast(np.log(v0), d, batch, "v0", where, per="coordinate")
    ones = np.ones((batch, d))
    return State(a, b, ones, ones.copy())


def _check_weight(name, value, where):
    value = check_real(name, value, where, gt=0.0)
    small = np.asarray(value) < WEIGHT_MIN
    if np.any(small):
        raise fail(name, where, f">= {WEIGHT_MIN:g} (smaller initial weights are outside the verified range: "
                   "saddle plateaus outlast the flow's stationarity test)", np.asarray(value)[small] if small.ndim else value)
    return value


def _broadcast(x, d, batch, name, where, per: str) -> np.ndarray:
    """x as a (B, d) array: a scalar, a vector (per run or per coordinate, as ``per`` says) or (B, d)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return np.full((batch, d), float(x))
    if x.ndim == 1:
        if per == "run" and x.shape[0] == batch:
            return np.repeat(x[:, None], d, axis=1)
        if per == "coordinate" and x.shape[0] == d:
            return np.broadcast_to(x, (batch, d)).copy()
    elif x.shape == (batch, d):
        return x.copy()
    if per == "run":
        rule = (f"a scalar, one value per run (shape (B,) = ({batch},)) or of shape (B, d) = ({batch}, {d}); "
                "a per-coordinate alpha is u0 = v0 = alpha")
    else:
        rule = f"a scalar, one value per coordinate (shape (d,) = ({d},)) or of shape (B, d) = ({batch}, {d})"
    raise fail(name, where, rule, f"shape {x.shape}")
