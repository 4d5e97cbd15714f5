"""Integrators: ``flow`` (continuous time, stiff-capable) and ``iterate`` (discrete maps).

``flow`` integrates a batch of runs by the Rosenbrock-W method ROS34PW2 (:mod:`dln.rosenbrock`)
with per-run step sizes, per-run Jacobian models and per-run status; in the reduced state, runs with
smooth rates start with the explicit pair DOP853 (:mod:`dln.explicit`: the start is not stiff, and
most of the accuracy is spent there) and switch to ROS34PW2 for good once stiff (``_integrate``):

- at depth 2 (``state_form="reduced"``, the default) in the reduced state of :mod:`dln.reduced`:
  z = z0 + Xᵀν and ln(u⊙v) = ln c0 − coef·(X⊙X)ᵀμ, 2n numbers per run (per-sample variants) or
  n + d (full-batch variants, ln c ∈ R^d), a theorem of docs/theory.md §4 that holds for every method;
- in the network's own coordinates (a, b) = (ln|u|, ln|v|) with the gain integral I = ∫gain dt as
  extra state (``state_form="general"``, docs/design.md §2, and always at depth D ≥ 3).  There the
  invariants of docs/theory.md §7 (ln(u⊙v) + coef·I constant, z − z0 ∈ range Xᵀ) are *checked*: the
  Jacobian model never acts along them, so they hold to round-off whatever the step error.

The W of the method is a model of the stiff part of the Jacobian, n×n per run, diagonalized when it
is rebuilt (every ``jacobian_age`` steps and after a rejected step), so that (σ − W)⁻¹ is two n×n
products for any step size.  The local error is measured where it matters, in β: for a state error
(δz, δℓ), |δβ| ≤ m⊙(e^{|δz|} − 1) + |β⊙δℓ| to first order in δℓ, relative to ‖m‖ (m = u² + v²;
docs/theory.md §1), so tiny off-support weights (m ≈ 2c) do not drive the steps, yet a step cannot
move z by hundreds where m is tiny (u² would overflow); the tolerance is scaled so that the
relative error of the limit β∞ is about ``rtol`` (measured: README, "How it integrates").

``iterate`` (discrete maps: GD, SGD, label noise, in log coordinates) lives in :mod:`dln.discrete`;
it is importable from here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import model
from . import explicit as dop
from . import rosenbrock as ros
from . import stopping
from .errors import check_choice, check_int, check_real, fail
from .methods import Direction, Stack
from .model import State, beta as beta_of, powers
from .reduced import ReducedSystem, coefficients, stack_coefficients
from .stepsize import Controller
from .stopping import LOG_HUGE, LOSS_GROWTH, STATUSES, diverged as _diverged  # noqa: F401 (re-exported)

#: Default tolerance of ``flow``: the relative error of the limit β∞ it aims at.
DEFAULT_RTOL = 1e-8
#: The local error test (module docstring): RMS(δ ln c) ≤ LOG_C_TOL·rtol and ‖m⊙δz‖/‖m‖ ≤ Z_TOL·rtol,
#: combined in quadrature.  The limit depends on the path only through c (docs/theory.md §4): errors of
#: ln c stay and add up along the path, errors of z are forgotten at convergence.  Calibrated on the
#: benchmark workload so that the largest relative error of β∞ is ≈ rtol (README: rtol → measured error).
#: At loose tolerances a large z error feeds back into ln c: both are capped (Z_TOL_MAX = 3e-4 let the
#: explicit start reach 10.3·rtol at rtol = 1e-5 on that workload; 1e-4 keeps it ≤ 2.6·rtol for 1e-4 … 1e-6).
LOG_C_TOL = 3.0
Z_TOL = 300.0
Z_TOL_MAX = 1e-4
LOG_C_TOL_MAX = 3e-5
#: Steps a run's Jacobian model is reused before it is rebuilt (and after a rejected step, unless the
#: model is younger than _REJECT_REFRESH_AGE steps).
JACOBIAN_AGE = 30
STATE_FORMS = ("auto", "reduced", "general")

_REJECT_REFRESH_AGE = 4
#: the first model is built after this many steps (the flows start slow: W = 0 until then)
_FIRST_REFRESH = 4

#: An accepted step whose result diverges (``dln.stopping.diverged``) from a state far from divergence
#: (loss ≤ _HEALTHY_LOSS·L(0), D·ln|u|, D·ln|v| ≤ LOG_HUGE/2) is taken back and retried 10× smaller, at
#: most _MAX_ROLLBACKS times in a row: an overshooting step, not the dynamics (which cross that margin
#: on the way to divergence, and are then reported ``diverged``).
_HEALTHY_LOSS = 1e5
_MAX_ROLLBACKS = 8
#: Flooding: a step may end past the level b by at most _LEVEL_TOL·rtol·b, else it is retried shorter.
_LEVEL_TOL = 100.0
#: The round-off floor of the loss (``dln.stopping.loss_floor``) is computed for runs whose loss is
#: below this multiple of L(0), or at the stationarity checkpoints.
_FLOOR_CHECK = 1e-8

#: A run leaves the explicit pair (:mod:`dln.explicit`) after STIFF_HITS accepted steps in a row with
#: h|λ| above STIFF_BOUND times the pair's stability bound.
STIFF_BOUND = 0.7
STIFF_HITS = 2
#: … or once it has had STIFF_REJECTS rejected steps (an explicit pair that keeps failing is
#: stability-bound), or STIFF_STEPS accepted ones (the smooth start is over: a discontinuous right-hand
#: side, e.g. normalized SAM on the interpolators, is left to the W-method and its stall rule).
STIFF_REJECTS = 10
STIFF_STEPS = 100

#: Attempted steps between two checks of ``flow``'s stall rule (:func:`_stalled`).
STALL_ATTEMPTS = 200


def _stalled(attempts, t, checkpoint) -> np.ndarray:
    """True where ``STALL_ATTEMPTS`` attempted steps since the last checkpoint (attempts, t) advanced
    the time by at most 1e-4·t (a mean step below 5e-7·t): the step size has collapsed on a
    discontinuity of the right-hand side (normalized SAM's ρ∇L/‖∇L‖ on the interpolators, measured
    ~2e-8·t per attempt, docs/theory.md §8), where the flow cannot be followed further.  ``flow``
    then stops the run with status ``max_steps``.  Smooth flows, saddle escapes at α = 1e-100
    included, take steps of 1e-5·t or more."""
    return (attempts >= checkpoint[:, 0] + STALL_ATTEMPTS) & (t - checkpoint[:, 1] <= 1e-4 * t)


def _stationary(loss, loss_then, tol) -> np.ndarray:
    """True where the loss has changed by at most tol·L since the last checkpoint, at half the
    current time (``flow``'s second stationarity test).  ``tol`` is at least the local error
    tolerance: the loss is not resolved better than that, and on a collapsed run (u⊙v → 0, the loss
    at a non-interpolating stationary value) the step-to-step change is that noise."""
    with np.errstate(invalid="ignore"):
        return np.abs(loss - loss_then) <= tol * loss


@dataclass
class Trajectory:
    """Recorded path: one row per accepted step of the batch (frozen runs repeat their last value).

    Attributes
    ----------
    t : ndarray (K, B)
    beta : ndarray (K, B, d)
    loss : ndarray (K, B)
    log_c : ndarray (K, B, d)
    """

    t: np.ndarray
    beta: np.ndarray
    loss: np.ndarray
    log_c: np.ndarray


@dataclass
class Result:
    """Final state and bookkeeping of a batch of runs (continuous or discrete time).

    ``log_c`` is the measured ln|u⊙v| = a + b; ``log_c_theory`` is ln c0 − gain_coef·gain, the
    effective α² predicted by the integrated gain (docs/theory.md §7; in the reduced state of ``flow``
    both are the same number by construction); ``tilt`` is Φ for discrete time (docs/theory.md §5.1,
    zero in continuous time).
    """

    direction: Direction
    state: State
    beta: np.ndarray
    loss: np.ndarray
    status: np.ndarray
    t: np.ndarray
    steps: np.ndarray
    n_evals: np.ndarray
    gain: np.ndarray
    log_c0: np.ndarray
    z0: np.ndarray
    tilt: np.ndarray
    rejected: np.ndarray | None = None
    trajectory: Trajectory | None = None
    beta_mean: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def log_c(self) -> np.ndarray:
        """ln|u⊙v| at the end (:func:`dln.model.log_c`)."""
        return model.log_c(self.state)

    @property
    def alpha_eff(self) -> np.ndarray:
        """sqrt(|u⊙v|) at the end (:func:`dln.model.alpha_eff`, docs/theory.md §1)."""
        return model.alpha_eff(self.state)

    @property
    def log_c_theory(self) -> np.ndarray:
        from .registry import log_c_from_gain

        return log_c_from_gain(self.log_c0, self.direction.gain_coef, self.gain)

    @property
    def z(self) -> np.ndarray:
        """z = ln|u/v| at the end (:func:`dln.model.mirror`)."""
        return model.mirror(self.state)

    def _rows(self, rows, direction, info) -> "Result":
        """The runs ``rows`` (an index array or a slice) as a Result of ``direction``."""
        tr = self.trajectory
        if tr is not None:
            tr = Trajectory(t=tr.t[:, rows], beta=tr.beta[:, rows], loss=tr.loss[:, rows], log_c=tr.log_c[:, rows])
        st = State(self.state.a[rows], self.state.b[rows], self.state.su[rows], self.state.sv[rows])
        return Result(direction=direction, state=st, beta=self.beta[rows], loss=self.loss[rows],
                      status=self.status[rows], t=self.t[rows], steps=self.steps[rows], n_evals=self.n_evals[rows],
                      gain=self.gain[rows], log_c0=self.log_c0[rows], z0=self.z0[rows], tilt=self.tilt[rows],
                      rejected=None if self.rejected is None else self.rejected[rows], trajectory=tr,
                      beta_mean=None if self.beta_mean is None else self.beta_mean[rows], info=info)

    def _info(self, rows) -> dict:
        B = self.beta.shape[0]
        return {k: (v[rows] if isinstance(v, np.ndarray) and v.shape[:1] == (B,) else v) for k, v in self.info.items()}

    def take(self, rows) -> "Result":
        """The runs ``rows`` (in that order), with the same direction (for a Stack: to put the runs in
        another order, e.g. a sweep chunk's)."""
        return self._rows(rows, self.direction, self._info(rows))

    def split(self) -> list:
        """One :class:`Result` per member of a :class:`~dln.methods.Stack` (views, in order)."""
        if not isinstance(self.direction, Stack):
            return [self]
        return [self._rows(slice(int(lo), int(hi)), d, self._info(slice(int(lo), int(hi))))
                for (d, _), lo, hi in zip(self.direction.members, self.direction.offsets[:-1], self.direction.offsets[1:])]


# ---------------------------------------------------------------------------------------------
# The network's own coordinates: (a, b, I) with the rank-n model of methods.Linearization
# ---------------------------------------------------------------------------------------------
class GeneralSystem:
    """Y = (ln|u|, ln|v|, I) ∈ R^{3d}; the rates are the direction's (docs/design.md §2).

    W = [[U C Vᵀ, 0], [0, 0]] with the model U C Vᵀ of :class:`~dln.methods.Linearization`;
    (σ − UCVᵀ)⁻¹ = σ⁻¹[I + U C(σ + K C)⁻¹ Vᵀ] (Woodbury, VᵀU = −K), and K C is diagonalized once per
    refresh: with D = 1 + ck, S = D^{1/2} K D^{1/2} = QΛQᵀ, C(σ + KC)⁻¹ = D^{1/2}Q diag(ω/(σ + μ)) QᵀD^{1/2},
    μ = sλ + γλ², ω = s + γλ.  U has no component along a + b or null(X) in a − b, so the linear
    invariants of the flow are preserved to round-off.
    """

    def __init__(self, direction, state0: State, rows):
        self.direction = direction
        self.X = direction.problem.X
        n, d = self.X.shape
        self.n, self.d = n, d
        self.N = 3 * d
        self.D = direction.D
        self.rows = np.asarray(rows)
        self.su, self.sv = state0.su[self.rows], state0.sv[self.rows]
        self.coef = np.broadcast_to(direction.gain_coef, (direction.batch, 1))
        self.coef = self.coef[self.rows] if self.coef.shape[0] > 1 else np.broadcast_to(self.coef, (self.rows.size, 1))
        self.B = self.rows.size
        for name in ("lu", "lv", "ru", "rv"):
            setattr(self, name, np.zeros((self.B, d)))
        self.Lm = np.zeros((self.B, n, n))
        self.Rm = np.zeros((self.B, n, n))
        self.mu = np.zeros((self.B, n))
        self.omega = np.zeros((self.B, n))
        self.inv = np.zeros((self.B, n))

    def y0(self, state0):
        r = self.rows
        return np.hstack([state0.a[r], state0.b[r], np.zeros((r.size, self.d))]).astype(np.float64)

    def take(self, keep):
        for name in ("rows", "su", "sv", "coef", "lu", "lv", "ru", "rv", "Lm", "Rm", "mu", "omega", "inv"):
            setattr(self, name, getattr(self, name)[keep])
        self.B = self.rows.size

    def _sel(self, rows):
        return None if self.direction.batch == 1 else self.rows[rows]

    def rates(self, Y, out, sub=None):
        d = self.d
        sub = np.arange(self.B) if sub is None else sub
        st = State(Y[:, :d], Y[:, d:2 * d], self.su[sub], self.sv[sub])
        R = self.direction(st, self._sel(sub))
        out[:, :d], out[:, d:2 * d], out[:, 2 * d:] = R.da, R.db, R.gain
        uD, vD = powers(st.a, st.b, st.su, st.sv, self.D)
        return R.loss, (uD - vD, uD, vD, Y[:, :d], Y[:, d:2 * d], Y)

    def refresh(self, rows, Y):
        d, n = self.d, self.n
        X = self.X
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            st = State(Y[:, :d], Y[:, d:2 * d], self.su[rows], self.sv[rows])
            lin = self.direction.linearization(st, self._sel(rows))
            k = rows.size
            lu, lv = np.broadcast_to(lin.lu, (k, d)), np.broadcast_to(lin.lv, (k, d))
            self.lu[rows], self.lv[rows], self.ru[rows], self.rv[rows] = lu, lv, lin.ru, lin.rv
            w = lin.ru * lu + lin.rv * lv
            K = np.matmul(X * w[:, None, :], X.T) / n
            D = np.ones((k, n)) if lin.ck is None else 1.0 + lin.ck
            sq = np.sqrt(D)
            S = sq[:, :, None] * K * sq[:, None, :]
            bad = ~np.isfinite(S).all(axis=(1, 2))
            S[bad] = 0.0
            lam, Q = np.linalg.eigh(S)
            s, g = lin.scale[:, None], lin.gamma_k[:, None]
            self.mu[rows] = s * lam + g * lam * lam
            self.omega[rows] = s + g * lam
            self.Lm[rows] = np.swapaxes(Q, 1, 2) * sq[:, None, :]
            self.Rm[rows] = sq[:, :, None] * Q

    def prepare(self, sigma):
        np.add(self.mu, sigma[:, None], out=self.inv)
        np.divide(self.omega, self.inv, out=self.inv)

    def solve(self, rhs, sigma, out):
        d, n = self.d, self.n
        ra, rb = rhs[:, :d], rhs[:, d:2 * d]
        p = (self.ru * ra - self.rv * rb) @ self.X.T
        w = np.matmul(self.Lm, p[:, :, None])[:, :, 0] * self.inv
        back = (np.matmul(self.Rm, w[:, :, None])[:, :, 0] @ self.X) / n
        inv_s = 1.0 / sigma[:, None]
        out[:, :d] = (ra - self.lu * back) * inv_s
        out[:, d:2 * d] = (rb + self.lv * back) * inv_s
        out[:, 2 * d:] = rhs[:, 2 * d:] * inv_s

    def error_parts(self, E, pt):
        """(‖m⊙δz‖/‖m‖, RMS of (δ ln c, coef·δI)) with m = u^D + v^D (docs/theory.md §1 at D = 2)."""
        d = self.d
        _, uD, vD = pt[:3]
        lm = np.logaddexp(self.D * pt[3], self.D * pt[4])  # ln m: m underflows at α ~ 1e-200
        m = np.exp(lm - np.max(lm, axis=1, keepdims=True))
        ez = np.expm1(np.abs(E[:, :d] - E[:, d:2 * d])) * m  # |δβ| ≤ m(e^{|δz|} − 1) (dln.reduced)
        ez = np.sqrt(np.einsum("bd,bd->b", ez, ez) / np.einsum("bd,bd->b", m, m))
        el = E[:, :d] + E[:, d:2 * d]
        ei = self.coef * E[:, 2 * d:]
        return ez, np.sqrt((np.einsum("bd,bd->b", el, el) + np.einsum("bd,bd->b", ei, ei)) / d)

    def loss_floor(self, rows, pt):
        """Round-off floor of the loss of the runs ``rows`` at their points (:func:`dln.stopping.loss_floor`)."""
        _, uD, vD, a, b, _ = pt
        return stopping.loss_floor(self.X, self.direction.problem.y, np.abs(uD) + np.abs(vD),
                                   self.D * (np.abs(a) + np.abs(b)))

    @staticmethod
    def log_uv(pt):
        """(ln|u|, ln|v|) at the evaluated point."""
        return pt[3], pt[4]

    @staticmethod
    def observe(pt):
        """β, ln c, ln|u|, ln|v| at the evaluated point."""
        beta, _, _, a, b, _ = pt
        return beta, a + b, a, b

    def gain(self, Y):
        return Y[:, 2 * self.d:]

    def rates_ab(self, F):
        d = self.d
        return F[:, :d], F[:, d:2 * d]


class _Reduced:
    """Adapter of :class:`~dln.reduced.ReducedSystem` to the engine's interface."""

    def __init__(self, system: ReducedSystem):
        self.s = system
        self.N = system.N

    @property
    def B(self):
        return self.s.B

    def y0(self, state0):
        return np.zeros((self.s.B, self.s.N))

    def take(self, keep):
        self.s.take(keep)

    def view(self, lo, hi):
        return _Reduced(self.s.view(lo, hi))

    def smooth(self):
        """Per run: whether its rates are smooth (not normalized SAM's ρ/‖∇L‖, not flooding's sign(L − b))."""
        return ~(self.s.co.sam | self.s.co.flood)

    def rates(self, Y, out, sub=None):
        loss, beta, m, A, Bv = self.s.rates(Y, out)
        return loss, (beta, m, A, Bv)

    def refresh(self, rows, Y):
        self.s.refresh(rows, Y)

    def prepare(self, sigma):
        self.s.prepare(sigma)

    def solve(self, rhs, sigma, out):
        self.s.solve(rhs, sigma, out)

    def error_parts(self, E, pt):
        return self.s.error_parts(E, *pt)

    def loss_floor(self, rows, pt):
        return self.s.loss_floor(rows, *pt)

    @staticmethod
    def log_uv(pt):
        return 0.5 * pt[2], 0.5 * pt[3]

    @staticmethod
    def observe(pt):
        beta, _, A, Bv = pt
        return beta, 0.5 * (A + Bv), 0.5 * A, 0.5 * Bv

    def gain(self, Y):
        return self.s.gain(Y)

    def rates_ab(self, F):
        return self.s.rates_ab(F)


# ---------------------------------------------------------------------------------------------
# The W-method loop
# ---------------------------------------------------------------------------------------------
class _Out:
    """Per-run results of one group, filled as runs stop."""

    def __init__(self, B, d):
        self.a = np.zeros((B, d))
        self.b = np.zeros((B, d))
        self.gain = np.zeros((B, d))
        self.beta = np.zeros((B, d))
        self.loss = np.full(B, np.nan)
        self.status = np.full(B, "running", dtype=object)
        self.t = np.zeros(B)
        self.steps = np.zeros(B, dtype=np.int64)
        self.rejected = np.zeros(B, dtype=np.int64)
        self.evals = np.zeros(B, dtype=np.int64)
        self.explicit_steps = np.zeros(B, dtype=np.int64)
        self.traj = []
        self.loops = 0


def _step(system, Y, F, hh, U, Ys):
    """One ROS34PW2 step of every row from Y (F = f(Y), overwritten): (Y₁, error estimate) (docs of
    :mod:`dln.rosenbrock`, transformed stages; the model W of ``system`` is the one last refreshed)."""
    k, N = Y.shape
    s = ros.STAGES
    sigma = 1.0 / (ros.GAMMA * hh)
    system.prepare(sigma)
    inv_h = (1.0 / hh)[:, None]
    system.solve(F, sigma, U[0])
    for i in range(1, s):
        flat = U[:i].reshape(i, -1)
        np.add(Y, (ros.A_HAT[i, :i] @ flat).reshape(k, N), out=Ys)
        system.rates(Ys, F)
        F += (ros.C_HAT[i, :i] @ flat).reshape(k, N) * inv_h
        system.solve(F, sigma, U[i])
    comb = np.stack([ros.M, ros.E]) @ U.reshape(s, -1)
    return Y + comb[0].reshape(k, N), comb[1].reshape(k, N)


def _integrate(system, Y, log_c0_min, *, rtol, atol, loss_tol, stat_tol, max_steps, t_max, record, jacobian_age,
               d, D=2, level=None, report=None, explicit=True) -> _Out:
    """Integrate the runs of ``system`` from Y until each stops (see :func:`flow` for the rules).

    With ``explicit`` (and a system that has views: the reduced state), every run starts with the
    explicit pair of :mod:`dln.explicit` and switches to ROS34PW2 once stiff.  The rows are kept
    ordered, explicit runs first, so that each scheme works on a contiguous block (views, no copies)."""
    B, N = Y.shape
    out = _Out(B, d)
    idx = np.arange(B)                      # group index of each running row
    h = np.full(B, np.nan)
    t = np.zeros(B)
    steps = np.zeros(B, dtype=np.int64)
    rej = np.zeros(B, dtype=np.int64)
    evals = np.zeros(B, dtype=np.int64)
    n_explicit = np.zeros(B, dtype=np.int64)  # accepted DOP853 steps
    age = np.full(B, jacobian_age - min(jacobian_age, _FIRST_REFRESH))  # W = 0 for the first steps
    loss0 = np.full(B, np.nan)
    t_plateau = np.zeros(B)
    prev_t = np.full(B, np.nan)             # (t, L) at the start of the last accepted step
    prev_L = np.full(B, np.nan)
    check_t = np.zeros(B)                   # (t, L) at the last stationarity checkpoint (t doubles)
    check_L = np.zeros(B)
    stall_n = np.zeros(B)                   # (attempts, t) at the last stall checkpoint
    stall_t = np.zeros(B)
    level = np.full(B, np.nan) if level is None else np.asarray(level, dtype=np.float64).copy()
    flood = ~np.isnan(level)
    # rollback (:func:`_overshot`): the state before the last accepted step, that step's size, whether
    # that state was far from divergence, and the rollbacks since the last step that was kept
    Y_prev = np.empty_like(Y)
    h_prev = np.zeros(B)
    moved = np.zeros(B, dtype=bool)
    healthy = np.zeros(B, dtype=bool)
    rollbacks = np.zeros(B, dtype=np.int64)
    last_beta = np.zeros((B, d)) if record else None
    last_logc = np.zeros((B, d)) if record else None
    last_L = np.full(B, np.nan) if record else None
    # at loose tolerances a large z error feeds back into ln c: z's tolerance is capped
    z_tol, l_tol = min(Z_TOL * rtol, Z_TOL_MAX) + atol, min(LOG_C_TOL * rtol, LOG_C_TOL_MAX) + atol
    control = Controller(ros.ORDER)
    control_ex = Controller(dop.ERROR_ORDER, grow=(0.2, 10.0), shrink=(0.2, 0.9))
    # True: ROS34PW2, False: DOP853 (smooth right-hand sides only: normalized SAM and flooding are not)
    stiff = ~system.smooth() if explicit and hasattr(system, "view") else np.ones(B, dtype=bool)
    hits = np.zeros(B, dtype=np.int64)      # consecutive stability-limited explicit steps
    Y_last = np.empty_like(Y)               # last stage of the last explicit step, and its rate
    F_last = np.empty_like(Y)
    U = np.empty((ros.STAGES, B, N))
    F = np.empty((B, N))
    Ys = np.empty((B, N))
    first = True
    snap = record
    loop = 0
    per_run = (h, t, steps, rej, evals, age, loss0, t_plateau, prev_t, prev_L, check_t, check_L, stall_n, stall_t,
               level, flood, h_prev, moved, healthy, rollbacks, stiff, hits, n_explicit)
    while idx.size:
        k = idx.size
        if report is not None:
            report(loop, k)
        loop += 1
        out.loops = loop
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            L, pt = system.rates(Y, F)
        evals[:k] += 1
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(L) & np.isfinite(F).all(axis=1)
        if not first:
            # -- an accepted step that overshot into divergence is taken back and retried smaller --
            la, lb = system.log_uv(pt)
            over = moved[:k] & stopping.diverged(L, loss0[:k], la, lb, D, finite)
            back = over & healthy[:k]
            # flooding: a step that crossed the level b by more than _LEVEL_TOL·rtol·b is retried with
            # the secant's step, so that the run stops on {L = b} (flow's docstring)
            frac = np.full(k, 0.1)
            if flood[:k].any():
                with np.errstate(invalid="ignore", divide="ignore"):
                    lev = level[:k]
                    cross = moved[:k] & flood[:k] & ~over & (np.sign(L - lev) != np.sign(prev_L[:k] - lev)) \
                        & (np.abs(L - lev) > _LEVEL_TOL * rtol * lev)
                    frac = np.where(cross, np.clip((prev_L[:k] - lev) / (prev_L[:k] - L), 0.05, 0.95), frac)
                back |= cross
            back = np.flatnonzero(back & (rollbacks[:k] < _MAX_ROLLBACKS))
            if back.size:
                Y[back] = Y_prev[back]
                t[back] = prev_t[back]
                steps[back] -= 1
                n_explicit[back] -= ~stiff[back]  # the step taken back was explicit if the run still is
                rej[back] += 1
                rollbacks[back] += 1
                h[back] = frac[back] * h_prev[back]
                age[back] = jacobian_age
                prev_t[back] = prev_L[back] = np.nan
                moved[back] = False
                snap = snap and bool(moved[:k].any())  # the rolled-back runs' state is recorded already
                continue
            rollbacks[np.flatnonzero(moved[:k])] = 0
            # -- stiffness of the explicit runs (dln.explicit): h|λ| ≈ h‖f(y₁) − f(Y₁₂)‖/‖y₁ − Y₁₂‖ --------
            ex = np.flatnonzero(moved[:k] & ~stiff[:k])
            if ex.size:
                with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                    num = np.linalg.norm(F[ex] - F_last[ex], axis=1)
                    den = np.linalg.norm(Y[ex] - Y_last[ex], axis=1)
                    limited = h_prev[ex] * num > STIFF_BOUND * dop.STABILITY * den
                hits[ex] = np.where(limited, hits[ex] + 1, 0)
                sw = ex[(hits[ex] >= STIFF_HITS) | (rej[ex] >= STIFF_REJECTS) | (steps[ex] >= STIFF_STEPS)]
                stiff[sw] = True
                age[sw] = jacobian_age  # build the model before the first W-step
        moved[:k] = False
        if first:
            with np.errstate(over="ignore", invalid="ignore"):
                da, db = system.rates_ab(F)
                vmax = np.maximum(np.max(np.abs(da), axis=1), np.max(np.abs(db), axis=1))
            loss0[:] = L
            # ln(1 + 1/c0) without forming 1/c0, which overflows for c0 < 1e-308 (α < 1e-154)
            # (c0 relative to the scale β must reach, log_c0_min carries it: see ``flow``)
            log_inv_c0 = np.logaddexp(0.0, -log_c0_min)
            t_plateau[:] = 20.0 * (1.0 + log_inv_c0) / (2.0 * np.maximum(vmax, 1e-300))
            h[:] = 1e-2 / np.maximum(vmax, 1e-12)
            first = False
        if snap:
            beta, logc, _, _ = system.observe(pt)
            last_beta[idx], last_logc[idx], last_L[idx] = beta, logc, L
            out.traj.append((_scatter(out.t, idx, t[:k]), last_beta.copy(), last_L.copy(), last_logc.copy()))
        # -- per-run stopping rules (dln.stopping.status), with the flow's own --------------------------
        with np.errstate(invalid="ignore"):
            dt = t[:k] - prev_t[:k]
            change = np.abs(prev_L[:k] - L) * t[:k] / np.where(dt > 0, dt, np.nan)
            past = finite & (t[:k] > t_plateau[:k])
            conv = past & (change <= stat_tol * L)
            # the same over the last doubling of t, robust to the integration noise in L
            due = t[:k] >= 2.0 * check_t[:k]
            conv |= past & due & _stationary(L, check_L[:k], max(stat_tol, rtol))
            # flooding: the loss has reached the level, the Filippov solution stays on {L = b}
            fl = flood[:k]
            conv |= finite & fl & (np.sign(L - level[:k]) != np.sign(loss0[:k] - level[:k]))
            # the loss has reached its round-off floor (it cannot be resolved below: docs/theory.md §1)
            near = np.flatnonzero(finite & ~conv & (due | (L <= _FLOOR_CHECK * loss0[:k])))
            if near.size:
                conv[near] |= L[near] <= system.loss_floor(near, tuple(x[near] for x in pt))
        dd = np.flatnonzero(due)
        check_t[dd], check_L[dd] = t[dd], L[dd]
        attempts = steps[:k] + rej[:k]
        stalled = _stalled(attempts, t[:k], np.column_stack([stall_n[:k], stall_t[:k]]))
        ck = np.flatnonzero(attempts >= stall_n[:k] + STALL_ATTEMPTS)
        stall_n[ck], stall_t[ck] = attempts[ck], t[ck]
        code = stopping.status(L, loss0[:k], *system.log_uv(pt), steps[:k], max_steps=max_steps, loss_tol=loss_tol,
                               D=D, finite=finite, converged=conv, capped=(t[:k] >= t_max) | stalled)
        stop = code != stopping.RUNNING
        unordered = bool(np.any(stiff[:k - 1] & ~stiff[1:k]))  # a run switched: explicit rows first again
        if stop.any() or unordered:
            j = np.flatnonzero(stop)
            gi = idx[j]
            out.status[gi] = stopping.names(code[j])
            with np.errstate(over="ignore", invalid="ignore"):
                beta, _, la, lb = system.observe(tuple(x[j] for x in pt))
                out.a[gi], out.b[gi], out.beta[gi] = la, lb, beta
                out.gain[gi] = system.gain(Y[j])
            out.loss[gi], out.t[gi], out.steps[gi], out.rejected[gi], out.evals[gi], out.explicit_steps[gi] = \
                L[j], t[j], steps[j], rej[j], evals[j], n_explicit[j]
            keep = np.flatnonzero(~stop)
            if keep.size == 0:
                break
            keep = keep[np.argsort(stiff[keep], kind="stable")]
            idx = idx[keep]
            k = idx.size
            Y = Y[keep]
            L, F, Y_prev, Y_last, F_last = L[keep], F[keep], Y_prev[keep], Y_last[keep], F_last[keep]
            pt = tuple(x[keep] for x in pt)
            for arr in per_run:
                arr[:k] = arr[keep]
            system.take(keep)
            U, Ys = np.empty((ros.STAGES, k, N)), np.empty((k, N))
        # -- one step per run: DOP853 on the rows [0, ne), ROS34PW2 on [ne, k) ---------------------------
        ne = k - int(np.count_nonzero(stiff[:k]))
        hh = np.minimum(h[:k], t_max - t[:k])
        Ynew = np.empty_like(Y)
        err = np.empty(k)
        acc = np.empty(k, dtype=bool)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if ne:
                sub = system if ne == k else system.view(0, ne)
                pe = tuple(x[:ne] for x in pt)
                Ynew[:ne], e5, e3, Y_last[:ne], F_last[:ne] = dop.step(sub, Y[:ne], F[:ne], hh[:ne],
                                                                       np.empty((dop.STAGES, ne, N)), Ys[:ne])
                evals[:ne] += dop.STAGES - 1
                err[:ne] = dop.error(_scaled(sub.error_parts(e5, pe), z_tol, l_tol),
                                     _scaled(sub.error_parts(e3, pe), z_tol, l_tol))
            if ne < k:
                sub = system if ne == 0 else system.view(ne, k)
                stale = np.flatnonzero(age[ne:k] >= jacobian_age)
                if stale.size:
                    sub.refresh(stale, Y[ne + stale])
                    age[ne + stale] = 0
                Ynew[ne:], E = _step(sub, Y[ne:], F[ne:], hh[ne:], U[:, ne:] if ne else U, Ys[ne:])
                evals[ne:k] += ros.STAGES - 1
                err[ne:] = _scaled(sub.error_parts(E, tuple(x[ne:] for x in pt)), z_tol, l_tol)
                age[ne:k] += 1
        err = np.where(np.isfinite(Ynew).all(axis=1), err, np.inf)
        if ne:
            acc[:ne], h[:ne] = control_ex.propose(err[:ne], hh[:ne])
        if ne < k:
            acc[ne:], h[ne:k] = control.propose(err[ne:], hh[ne:])
        a = np.flatnonzero(acc)
        prev_t[a], prev_L[a] = t[a], L[a]
        la, lb = system.log_uv(pt)
        healthy[a] = (L[a] <= _HEALTHY_LOSS * loss0[a]) & (D * np.maximum(np.max(la[a], axis=1), np.max(lb[a], axis=1))
                                                        <= 0.5 * stopping.LOG_HUGE)
        Y_prev[a] = Y[a]
        h_prev[a] = hh[a]
        moved[a] = True
        Y[a] = Ynew[a]
        t[a] += hh[a]
        steps[a] += 1
        n_explicit[a[a < ne]] += 1
        rj = np.flatnonzero(~acc)
        rej[rj] += 1
        # a rejected step rebuilds a model older than a few steps before the next attempt
        age[rj] = np.where(age[rj] >= _REJECT_REFRESH_AGE, jacobian_age, age[rj])
        snap = record and a.size > 0
    return out


def _scaled(parts, z_tol, l_tol):
    """The scalar local error of (‖δz‖-part, δℓ-part) against their tolerances, combined in quadrature."""
    ez, el = parts
    return np.sqrt((ez / z_tol) ** 2 + (el / l_tol) ** 2)


def _scatter(full, idx, values):
    out = full.copy()
    out[idx] = values
    return out


def _check_common(where, rtol, max_steps, loss_tol):
    rtol = check_real("rtol", rtol, where, gt=0.0, allow_array=False)
    max_steps = check_int("max_steps", max_steps, where, ge=1)
    loss_tol = check_real("loss_tol", loss_tol, where, gt=0.0, allow_array=False)
    return rtol, max_steps, loss_tol


def _batch_size(direction: Direction, state0: State, where: str) -> int:
    B = state0.a.shape[0]
    if direction.batch not in (1, B):
        raise fail("state", where, f"a batch of {direction.batch} runs (one per hyper-parameter value)",
                   f"{B} runs")
    if state0.a.shape[1] != direction.problem.d:
        raise fail("state", where, f"of dimension d = {direction.problem.d}", state0.a.shape[1])
    return B


def _flood_levels(direction, B: int) -> np.ndarray:
    """Per run: the flooding level b, NaN for the other methods."""
    members = direction.members if isinstance(direction, Stack) else [(direction, B)]
    out = []
    for d, k in members:
        lev = d.params["flood_level"][:, 0] if d.method == "flood" else np.nan
        out.append(np.broadcast_to(np.asarray(lev, dtype=np.float64), (k,)))
    return np.concatenate(out)


def _log_beta_scale(problem) -> float:
    """ln max(1, ‖y‖/‖X‖_F): a lower estimate of the scale of the interpolators, ‖β‖ ≥ ‖y‖/σ_max(X)
    ≥ ‖y‖/‖X‖_F.  The plateau time of ``flow`` uses ln(1 + scale/c0): a saddle-to-saddle plateau
    lasts ∝ ln(scale/c0), not ln(1/c0) (docs/theory.md §2.2) — labels of scale 1e150, or a design of
    scale 1e-150, at α = 0.1 are runs from c̃ = 1e-152 on the plain problem.  Never below 1, so that
    ordinary problems keep the plateau time of ln(1 + 1/c0)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ly = np.log(np.linalg.norm(problem.y / np.max(np.abs(problem.y)))) + np.log(np.max(np.abs(problem.y)))
        lx = np.log(np.linalg.norm(problem.X / np.max(np.abs(problem.X)))) + np.log(np.max(np.abs(problem.X)))
        value = ly - lx
    return float(value) if np.isfinite(value) and value > 0 else 0.0


def _groups(direction, state0: State, B: int, state_form: str):
    """(system, rows of the batch) per group: one general system, or one reduced system per variant."""
    general = state_form == "general" or (state_form == "auto" and direction.D != 2)
    if general:
        return [(GeneralSystem(direction, state0, np.arange(B)), np.arange(B))]
    if isinstance(direction, Stack):
        parts = [(d.variant, coefficients(d.method, d.variant, d.params, k), np.arange(lo, lo + k))
                 for (d, k), lo in zip(direction.members, direction.offsets[:-1])]
    else:
        parts = [(direction.variant, coefficients(direction.method, direction.variant, direction.params, B),
                  np.arange(B))]
    out = []
    for variant in ("per-sample", "full"):
        mine = [p for p in parts if p[0] == variant]
        if not mine:
            continue
        rows = np.concatenate([p[2] for p in mine])
        sub = State(*(x[rows] for x in (state0.a, state0.b, state0.su, state0.sv)))
        system = ReducedSystem(direction.problem, variant, stack_coefficients([p[1] for p in mine]), sub)
        out.append((_Reduced(system), rows))
    return out


def flow(direction: Direction, state0: State, *, rtol: float = DEFAULT_RTOL, atol: float = 0.0,
         loss_tol: float = 1e-24, stat_tol: float = 1e-10, max_steps: int = 20_000,
         t_max: float = math.inf, record: bool = False, jacobian_age: int | None = None,
         state_form: str = "auto", explicit_start: bool = True, progress=None) -> Result:
    """Integrate the continuous-time flow dθ/dt = −G(θ) of a batch until each run converges.

    A run stops with status

    - ``converged`` when L ≤ loss_tol·L(0) (an interpolator to sqrt(loss_tol) relative residual),
      or L is at most its round-off floor (:func:`dln.stopping.loss_floor`: β = u² − v² is not
      resolved better; e.g. features of scale 1e9), or when it is stationary: extrapolating its last accepted step, the loss would change by
      less than stat_tol·L over the time already elapsed, or it did change by less than
      max(stat_tol, rtol)·L since half that time (:func:`_stationary`), and that time exceeds the
      plateau time 20·(1 + ln(1 + s/c0))/(4‖g(0)‖∞), s = max(1, ‖y‖/‖X‖_F) the scale of the
      interpolators (:func:`_log_beta_scale`; saddle-to-saddle plateaus look stationary,
      docs/theory.md §2.2).  A stationary run need not interpolate: a regularized run whose
      coordinates collapse (u⊙v → 0) can stop at a loss > 0;
    - ``diverged`` on a non-finite or overflowing state or loss, or a loss 1e10 times the initial
      one (:func:`dln.stopping.diverged`; the run is frozen, the other runs go on).  An accepted step
      that lands there from a state far from divergence is an overshoot, not the dynamics: it is
      rolled back and retried 10× shorter (up to 8 times in a row).  A coordinate collapsing
      (u or v → 0, ln u → −∞) is not divergence: it is integrated on to the true limit;
    - ``converged`` for flooding (sign(L − b)∇L) as soon as the loss crosses the level b: the
      Filippov solution of the discontinuous flow stays on {L = b} (ẇ = 0 there, the convex
      combination of ±∇L tangent to the level set); the state is the first accepted one past b,
      within 100·rtol·b of it (a step that crosses further is retried with the secant's step);
    - ``max_steps`` when its accepted steps reach ``max_steps``, its time reaches ``t_max``, or
      the step size has collapsed (:func:`_stalled`: a discontinuous right-hand side, as for
      normalized SAM on the interpolators; rejected steps are counted in ``Result.rejected``);
      the last state is kept.

    Parameters
    ----------
    direction : Direction or Stack
        The method (``dln.methods``), or a heterogeneous batch of methods (``dln.methods.stack``).
    state0 : State
        Initial weights for B runs (continuous time keeps the signs of u and v).
    rtol : float
        Target relative error of the limit β∞ (see the module docstring).
    atol : float
        Absolute floor added to both local error tolerances (module docstring), 0 by default.
    loss_tol, stat_tol : float
        Convergence thresholds (relative loss; relative loss change).
    max_steps : int
        Per-run cap on accepted steps (``Result.steps``).
    t_max : float
        Per-run time horizon.
    record : bool
        Keep the path (:class:`Trajectory`).
    jacobian_age : int, optional
        Steps a run's Jacobian model is reused before it is rebuilt (also rebuilt after a rejected
        step); 1 rebuilds it every step.  Default :data:`JACOBIAN_AGE`.
    state_form : {"auto", "reduced", "general"}
        ``reduced``: the reduced state of :mod:`dln.reduced` (depth 2 only); ``general``: the network's
        coordinates (ln|u|, ln|v|) and the gain integral, where the theorems of docs/theory.md §4, §7
        are checked rather than built in; ``auto`` (default): reduced at depth 2, else general.
    explicit_start : bool
        Start each run of the reduced state with the explicit pair DOP853 (:mod:`dln.explicit`) and
        switch it to ROS34PW2 once stiff (default); False: ROS34PW2 from the start.  The general form
        always uses ROS34PW2.
    progress : callable, optional
        ``progress(steps_done, running, total)``, called once per iteration of the main loop
        (batched steps so far, runs still running, B); it must be cheap (``dln.progress``).

    Returns
    -------
    Result
        ``info["explicit_steps"]``: per run, the accepted steps of the explicit start (the others are
        ROS34PW2's); ``info["state_form"]``: "reduced" or "general".
    """
    where = "flow"
    rtol, max_steps, loss_tol = _check_common(where, rtol, max_steps, loss_tol)
    atol = check_real("atol", atol, where, ge=0.0, allow_array=False)
    stat_tol = check_real("stat_tol", stat_tol, where, gt=0.0, allow_array=False)
    check_choice("state_form", state_form, STATE_FORMS, where)
    jacobian_age = JACOBIAN_AGE if jacobian_age is None else check_int("jacobian_age", jacobian_age, where, ge=1)
    t_max = float(t_max)
    B = _batch_size(direction, state0, where)
    if state_form == "reduced" and direction.D != 2:
        raise fail("state_form", where, "'general' or 'auto' at depth D >= 3 (the reduction is for D = 2, "
                   "docs/theory.md §7.7)", state_form)
    d = state0.a.shape[1]
    a0 = np.array(state0.a, dtype=np.float64)
    b0 = np.array(state0.b, dtype=np.float64)
    log_c0, z0 = a0 + b0, a0 - b0
    a, b, gain, beta = a0.copy(), b0.copy(), np.zeros((B, d)), np.zeros((B, d))
    loss = np.full(B, np.nan)
    status = np.full(B, "running", dtype=object)
    t = np.zeros(B)
    steps = np.zeros(B, dtype=np.int64)
    rejected = np.zeros(B, dtype=np.int64)
    evals = np.zeros(B, dtype=np.int64)
    explicit_steps = np.zeros(B, dtype=np.int64)
    traj = None
    if record:
        with np.errstate(over="ignore", invalid="ignore"):
            cur_beta = beta_of(State(a0, b0, state0.su, state0.sv), direction.D)
            cur = [np.zeros(B), cur_beta, direction.problem.loss(cur_beta), log_c0.copy()]
        traj = []
    kw = dict(rtol=rtol, atol=atol, loss_tol=loss_tol, stat_tol=stat_tol, max_steps=max_steps, t_max=t_max,
              record=record, jacobian_age=jacobian_age, d=d, explicit=bool(explicit_start))
    groups = _groups(direction, state0, B, state_form)
    log_scale = _log_beta_scale(direction.problem)
    form = "general" if isinstance(groups[0][0], GeneralSystem) else "reduced"
    done = [0, 0]  # loop iterations of the groups before; their runs (all stopped)

    def report(loop, running):
        if progress is not None:
            progress(done[0] + loop, running + B - done[1] - len(rows), B)

    for system, rows in groups:
        Y = system.y0(State(*(x[rows] for x in (a0, b0, state0.su, state0.sv))))
        o = _integrate(system, Y, np.min(log_c0[rows], axis=1) - log_scale, D=direction.D, level=_flood_levels(direction, B)[rows],
                       report=report, **kw)
        done[0] += o.loops
        done[1] += len(rows)
        a[rows], b[rows], gain[rows], beta[rows], loss[rows] = o.a, o.b, o.gain, o.beta, o.loss
        status[rows], t[rows], steps[rows], rejected[rows], evals[rows] = o.status, o.t, o.steps, o.rejected, o.evals
        explicit_steps[rows] = o.explicit_steps
        if record:
            for snap in o.traj:
                for c, v in zip(cur, snap):
                    c[rows] = v
                traj.append(tuple(c.copy() for c in cur))
    state = State(a, b, state0.su.copy(), state0.sv.copy())
    with np.errstate(over="ignore", invalid="ignore"):
        loss = direction.problem.loss(beta)  # the loss of the returned β, by the problem's own formula
    trajectory = Trajectory(**dict(zip(("t", "beta", "loss", "log_c"), (np.array(x) for x in zip(*traj))))) \
        if record else None
    return Result(direction=direction, state=state, beta=beta, loss=loss, status=status.astype(str), t=t, steps=steps,
                  n_evals=evals, gain=gain, log_c0=log_c0, z0=z0, tilt=np.zeros((B, d)), rejected=rejected,
                  trajectory=trajectory, info=dict(state_form=form, explicit_steps=explicit_steps))


def __getattr__(name):
    # ``dln.integrate.iterate`` is ``dln.discrete.iterate`` (imported on first use: dln.discrete
    # imports Result and Trajectory from here)
    if name == "iterate":
        from .discrete import iterate

        return iterate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
