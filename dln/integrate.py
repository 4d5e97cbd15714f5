"""Integrators: ``flow`` (continuous time, stiff-capable) and ``iterate`` (discrete maps).

Both consume a :class:`~dln.methods.Direction` over a batch of B runs in log coordinates
(a, b) = (ln|u|, ln|v|), with the gain integral I = ∫ gain dt carried as extra state (docs/design.md §2).

``flow`` is a singly diagonally implicit Runge–Kutta method (SDIRK, order 4 with an embedded
order-3 error estimate, L-stable; Hairer & Wanner, Solving ODEs II, Table IV.6.5) with per-run
step sizes.  The stage equations are solved by simplified Newton iterations whose matrix
I − hγA uses the rank-n model A = U C Vᵀ of :class:`~dln.methods.Linearization`, inverted by the
Woodbury identity with one n×n matrix per run (docs/design.md §3): cost O(B(n²d + n³)) per step, not
O(B d³).  Two properties follow from the construction and are tested:

- linear invariants of the flow are preserved to round-off, whatever the step error: a + b + coef·I
  (ln(u⊙v) = ln c0 − coef·∫gain, docs/theory.md §7.2–§8) and the null-space part of z = a − b
  (z − z0 ∈ range Xᵀ, docs/theory.md §4), because UCVᵀ has no component along them;
- the method is L-stable, so once the fast modes have decayed it takes steps limited by accuracy
  on the slow modes only (docs/theory.md §2.2: t ∝ ln(1/α) and beyond).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import check_int, check_real, fail
from .methods import Direction
from .model import State, beta as beta_of
from .stopping import LOG_HUGE, LOSS_GROWTH, STATUSES, diverged as _diverged  # noqa: F401 (re-exported)

# Hairer & Wanner SDIRK4 (γ = 1/4), stiffly accurate: b = last row of A.
_G = 0.25
_A = np.array([
    [1 / 4, 0, 0, 0, 0],
    [1 / 2, 1 / 4, 0, 0, 0],
    [17 / 50, -1 / 25, 1 / 4, 0, 0],
    [371 / 1360, -137 / 2720, 15 / 544, 1 / 4, 0],
    [25 / 24, -49 / 48, 125 / 16, -85 / 12, 1 / 4],
])
_B = _A[-1].copy()
_BHAT = np.array([59 / 48, -17 / 96, 225 / 32, -85 / 12, 0.0])
_C = _A.sum(axis=1)
TABLEAU = dict(A=_A, b=_B, bhat=_BHAT, c=_C, gamma=_G)

# ROS34PW2 (Rang & Angermann 2005, BIT 45:761), a Rosenbrock-W method: order 3 for ANY matrix W
# in (I − γhW)k_i = h f(y + Σ_j a_ij k_j) + hW Σ_j g_ij k_j, stiffly accurate, L-stable;
# embedded order 2.  One linear solve and one evaluation per stage, no Newton iterations.
_RG = 4.3586652150845900e-01
_RA = np.array([
    [0.0, 0.0, 0.0, 0.0],
    [8.7173304301691801e-01, 0.0, 0.0, 0.0],
    [8.4457060015369423e-01, -1.1299064236397981e-01, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
])
_RGAM = np.array([
    [0.0, 0.0, 0.0, 0.0],
    [-8.7173304301691801e-01, 0.0, 0.0, 0.0],
    [-9.0338057013044082e-01, 5.4180672388095326e-02, 0.0, 0.0],
    [2.4212380706095346e-01, -1.2232505839045147e+00, 5.4526025533510214e-01, 0.0],
])
_RB = np.array([2.4212380706095346e-01, -1.2232505839045147e+00, 1.5452602553351023e+00, 4.3586652150845900e-01])
_RBHAT = np.array([3.7810903145819369e-01, -9.6042292212423178e-02, 0.5, 2.1793326075422950e-01])
ROS34PW2 = dict(A=_RA, Gamma=_RGAM, b=_RB, bhat=_RBHAT, gamma=_RG)
SCHEMES = ("sdirk4", "ros34pw2")

#: Default local error tolerance of ``flow``: ~1e-8 relative error of β∞ against a 1e-12 reference
#: (the exact invariants hold to round-off whatever the tolerance).
DEFAULT_RTOL = 1e-9

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
    effective α² predicted by the integrated gain (docs/theory.md §7); ``tilt`` is Φ for discrete time
    (docs/theory.md §5.1, zero in continuous time).
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
        return self.state.a + self.state.b

    @property
    def alpha_eff(self) -> np.ndarray:
        """sqrt(|u⊙v|) at the end (docs/theory.md §1)."""
        return np.exp(0.5 * self.log_c)

    @property
    def log_c_theory(self) -> np.ndarray:
        return self.log_c0 - self.direction.gain_coef * self.gain

    @property
    def z(self) -> np.ndarray:
        return self.state.a - self.state.b


# ---------------------------------------------------------------------------------------------
# Woodbury solver for (I − τA) x = r with A = U C Vᵀ (see methods.Linearization)
# ---------------------------------------------------------------------------------------------
class _Jacobian:
    """Frozen rank-n Jacobian models for all B runs, refreshed only when stale.

    For each run: the factors of U = [−diag(lu) Xᵀ; diag(lv) Xᵀ]/n and Vᵀ = X[diag(ru), −diag(rv)],
    C and KC = K·C with K = X diag(ru·lu + rv·lv) Xᵀ/n (see methods.Linearization).  Any matrix
    is a valid Newton matrix (only convergence speed depends on it), and every model keeps U in
    range(Xᵀ), so a stale model never breaks the preserved invariants.
    """

    def __init__(self, B: int, n: int, d: int, chunk: int = 4_000_000):
        self.lu = np.empty((B, d))
        self.lv = np.empty((B, d))
        self.ru = np.empty((B, d))
        self.rv = np.empty((B, d))
        self.C = np.empty((B, n, n))
        self.KC = np.empty((B, n, n))
        self.CW = np.empty((B, n, n))  # C (I + τK C)⁻¹ for the cached τ
        self.tau = np.full(B, np.nan)
        self.age = np.full(B, np.iinfo(np.int64).max // 2)
        self.chunk = chunk

    def refresh(self, direction, rows, state: State, X):
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing model fails the step
            self._refresh(direction, rows, state, X)

    def _refresh(self, direction, rows, state: State, X):
        n, d = X.shape
        lin = direction.linearization(state, rows)
        B = rows.size
        lu, lv = np.broadcast_to(lin.lu, (B, d)), np.broadcast_to(lin.lv, (B, d))
        self.lu[rows], self.lv[rows], self.ru[rows], self.rv[rows] = lu, lv, lin.ru, lin.rv
        w = lin.ru * lu + lin.rv * lv
        K = np.empty((B, n, n))
        step = max(1, self.chunk // (n * d))
        for s in range(0, B, step):  # K = X diag(w) Xᵀ / n, in blocks to bound memory
            K[s:s + step] = np.matmul(X * w[s:s + step, None, :], X.T) / n
        C = lin.scale[:, None, None] * np.eye(n) + lin.gamma_k[:, None, None] * K
        if lin.ck is not None:
            C = C + lin.ck[:, :, None] * np.eye(n)
        self.C[rows] = C
        self.KC[rows] = np.matmul(K, C)
        self.age[rows] = 0
        self.tau[rows] = np.nan

    def factor(self, rows, tau, rel=0.2):
        """Make C(I + τKC)⁻¹ available for ``rows``; a factor built for τ' within 20% of τ is
        reused (the Newton matrix then belongs to a nearby step size, which only slows Newton)."""
        with np.errstate(invalid="ignore"):
            need = ~(np.abs(self.tau[rows] / tau - 1.0) <= rel)
        r = rows[need]
        if r.size:
            n = self.C.shape[1]
            t = tau[need]
            self.CW[r] = np.matmul(self.C[r], np.linalg.inv(np.eye(n) + t[:, None, None] * self.KC[r]))
            self.tau[r] = t
        return self.tau[rows]


class _Solver:
    """(I − τA)⁻¹ by the Woodbury identity: I + τ U C (I + τ K C)⁻¹ Vᵀ, one n×n inverse per run."""

    def __init__(self, jac: _Jacobian, rows, X: np.ndarray, tau: np.ndarray):
        self.X, self.n = X, X.shape[0]
        self.tau = jac.factor(rows, tau)
        self.lu, self.lv, self.ru, self.rv = jac.lu[rows], jac.lv[rows], jac.ru[rows], jac.rv[rows]
        self.C = jac.C[rows]
        self.CW = jac.CW[rows] * self.tau[:, None, None]

    def apply(self, va, vb):
        """The model Jacobian times a vector: A v = U C Vᵀ v (zero on the gain rows)."""
        w = ((self.ru * va - self.rv * vb) @ self.X.T)[:, :, None]
        back = (np.matmul(self.C, w)[:, :, 0] @ self.X) / self.n
        return -self.lu * back, self.lv * back

    def solve(self, ra, rb, rI, idx=None):
        """Solve for the runs ``idx`` (default: all) of this solver."""
        X = self.X
        sl = slice(None) if idx is None else idx
        ru, rv, lu, lv = self.ru[sl], self.rv[sl], self.lu[sl], self.lv[sl]
        w = ((ru * ra - rv * rb) @ X.T)[:, :, None]  # Vᵀ r
        back = (np.matmul(self.CW[sl], w)[:, :, 0] @ X) / self.n
        return ra - lu * back, rb + lv * back, rI


def _rms(x, scale):
    return np.sqrt(np.mean((x / scale) ** 2, axis=-1))


def _check_common(where, rtol, max_steps, loss_tol):
    rtol = check_real("rtol", rtol, where, gt=0.0, allow_array=False)
    max_steps = check_int("max_steps", max_steps, where, ge=1)
    loss_tol = check_real("loss_tol", loss_tol, where, gt=0.0, allow_array=False)
    return rtol, max_steps, loss_tol


def _batch_size(direction: Direction, state: State, where: str) -> int:
    B = state.a.shape[0]
    if direction.batch not in (1, B):
        raise fail("state", where, f"a batch of {direction.batch} runs (one per hyper-parameter value)",
                   f"{B} runs")
    if state.a.shape[1] != direction.problem.d:
        raise fail("state", where, f"of dimension d = {direction.problem.d}", state.a.shape[1])
    return B


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


def flow(direction: Direction, state0: State, *, rtol: float = DEFAULT_RTOL, atol: float | None = None,
         loss_tol: float = 1e-24, stat_tol: float = 1e-10, max_steps: int = 20_000,
         t_max: float = math.inf, record: bool = False, jacobian_age: int | None = None,
         scheme: str = "sdirk4", progress=None) -> Result:
    """Integrate the continuous-time flow dθ/dt = −G(θ) of a batch until each run converges.

    A run stops with status

    - ``converged`` when L ≤ loss_tol·L(0) (an interpolator to sqrt(loss_tol) relative residual),
      or when it is stationary: extrapolating its last accepted step, the loss would change by
      less than stat_tol·L over the time already elapsed, or it did change by less than
      max(stat_tol, rtol)·L since half that time (:func:`_stationary`), and that time exceeds the
      plateau time 20·(1 + ln(1 + 1/c0))/(4‖g(0)‖∞) (saddle-to-saddle plateaus look stationary,
      docs/theory.md §2.2).  A stationary run need not interpolate: a regularized run whose
      coordinates collapse (u⊙v → 0) can stop at a loss > 0;
    - ``diverged`` on a non-finite or overflowing state or loss, or a loss 1e10 times the initial
      one (:func:`_diverged`; the run is frozen, the other runs go on).  A coordinate collapsing
      (u or v → 0, ln u → −∞) is not divergence: it is integrated on to the true limit;
    - ``converged`` for flooding (sign(L − b)∇L) as soon as the loss crosses the level b: the
      Filippov solution of the discontinuous flow stays on {L = b} (ẇ = 0 there, the convex
      combination of ±∇L tangent to the level set); the state is the first accepted one past b;
    - ``max_steps`` when its accepted steps reach ``max_steps``, its time reaches ``t_max``, or
      the step size has collapsed (:func:`_stalled`: a discontinuous right-hand side, as for
      normalized SAM on the interpolators; rejected steps are counted in ``Result.rejected``);
      the last state is kept.

    Parameters
    ----------
    direction : Direction
        The method (``dln.methods``).
    state0 : State
        Initial weights for B runs (continuous time keeps the signs of u and v).
    rtol, atol : float
        Local error tolerance on (ln|u|, ln|v|, gain integral); atol defaults to rtol.
    loss_tol, stat_tol : float
        Convergence thresholds (relative loss; relative loss change).
    max_steps : int
        Per-run cap on accepted steps (``Result.steps``).
    t_max : float
        Per-run time horizon.
    record : bool
        Keep the path (:class:`Trajectory`).
    jacobian_age : int, optional
        Steps a run's Jacobian model is reused before it is rebuilt (also rebuilt after a
        rejected step, or a slow Newton iteration); 1 rebuilds it every step.  Default 4
        (ros34pw2) or 8 (sdirk4).
    scheme : {"sdirk4", "ros34pw2"}
        ``sdirk4`` (default): SDIRK order 4, simplified Newton iterations on each of 5 stages —
        robust, since Newton converges to the implicit solution whatever the Jacobian model.
        ``ros34pw2``: Rosenbrock-W order 3, one evaluation and one Woodbury solve per stage, no
        Newton loop — fewer evaluations at moderate α, but its stability at very large steps
        rests on the Jacobian model: per-sample GR at α = 1e-6 stalls at a loss of ~1e-16·L0.
    progress : callable, optional
        ``progress(steps_done, running, total)``, called once per iteration of the main loop
        (batched steps so far, runs still running, B); it must be cheap (``dln.progress``).

    Returns
    -------
    Result
    """
    where = "flow"
    rtol, max_steps, loss_tol = _check_common(where, rtol, max_steps, loss_tol)
    atol = rtol if atol is None else check_real("atol", atol, where, gt=0.0, allow_array=False)
    stat_tol = check_real("stat_tol", stat_tol, where, gt=0.0, allow_array=False)
    from .errors import check_choice

    check_choice("scheme", scheme, SCHEMES, where)
    step_fn, order = (_ros_step, 3) if scheme == "ros34pw2" else (_sdirk_step, 4)
    if jacobian_age is None:
        jacobian_age = 4 if scheme == "ros34pw2" else 8
    t_max = float(t_max)
    B = _batch_size(direction, state0, where)
    d = state0.a.shape[1]
    X = direction.problem.X
    a, b = np.array(state0.a, dtype=np.float64), np.array(state0.b, dtype=np.float64)
    su, sv = state0.su.copy(), state0.sv.copy()
    I = np.zeros((B, d))
    t = np.zeros(B)
    h = np.full(B, np.nan)
    steps = np.zeros(B, dtype=np.int64)
    rejected = np.zeros(B, dtype=np.int64)
    evals = np.zeros(B, dtype=np.int64)
    status = np.full(B, "running", dtype=object)
    loss0 = np.full(B, np.nan)
    t_plateau = np.zeros(B)
    prev = np.full((B, 2), np.nan)  # (t, L) at the start of the last accepted step
    check = np.zeros((B, 2))  # (t, L) at the last stationarity checkpoint (t doubles between them)
    stall = np.zeros((B, 2))  # (attempts, t) at the last stall checkpoint (every STALL_ATTEMPTS)
    flood = direction.method == "flood"
    if flood:
        level = np.broadcast_to(direction.params["flood_level"][:, 0], (B,))
    log_c0, z0 = a + b, a - b
    traj = [] if record else None
    jac = _Jacobian(B, X.shape[0], d)

    def F(rows, ya, yb):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            R = direction(State(ya, yb, su[rows], sv[rows]), rows)
        evals[rows] += 1
        return R

    def snapshot(L_all):
        with np.errstate(over="ignore", invalid="ignore"):
            bt = beta_of(State(a, b, su, sv), direction.D)
        traj.append((t.copy(), bt, L_all.copy(), a + b))

    last_L = np.full(B, np.nan)
    loop = 0
    while True:
        rows = np.flatnonzero(status == "running")
        if rows.size == 0:
            break
        if progress is not None:
            progress(loop, rows.size, B)
        loop += 1
        ya, yb, yI = a[rows], b[rows], I[rows]
        R0 = F(rows, ya, yb)
        L = R0.loss
        last_L[rows] = L
        new = np.isnan(loss0[rows])
        if new.any():
            nr = rows[new]
            loss0[nr] = L[new]
            vmax = np.maximum(np.max(np.abs(R0.da[new]), axis=1), np.max(np.abs(R0.db[new]), axis=1))
            # ln(1 + 1/c0) without forming 1/c0, which overflows for c0 < 1e-308 (α < 1e-154)
            log_inv_c0 = np.logaddexp(0.0, -np.min(log_c0[nr], axis=1))
            t_plateau[nr] = 20.0 * (1.0 + log_inv_c0) / (2.0 * np.maximum(vmax, 1e-300))
            h[nr] = 1e-2 / np.maximum(vmax, 1e-12)
            if record and len(traj) == 0:
                snapshot(last_L)
        # -- per-run stopping rules --------------------------------------------------------------
        finite = np.isfinite(L) & np.isfinite(R0.da).all(axis=1) & np.isfinite(R0.db).all(axis=1)
        bad = _diverged(L, loss0[rows], ya, yb, direction.D, finite)
        with np.errstate(invalid="ignore"):
            conv = finite & (L <= loss_tol * loss0[rows])
            dt = t[rows] - prev[rows, 0]
            change = np.abs(prev[rows, 1] - L) * t[rows] / np.where(dt > 0, dt, np.nan)
            conv |= finite & (t[rows] > t_plateau[rows]) & (change <= stat_tol * L)
            # the same over the last doubling of t, robust to the integration noise in L
            due = t[rows] >= 2.0 * check[rows, 0]
            conv |= finite & due & (t[rows] > t_plateau[rows]) & \
                _stationary(L, check[rows, 1], max(stat_tol, rtol))
            if flood:  # the loss has reached the level: the Filippov solution stays on {L = b}
                conv |= finite & (np.sign(L - level[rows]) != np.sign(loss0[rows] - level[rows]))
        check[rows[due], 0], check[rows[due], 1] = t[rows[due]], L[due]
        conv &= ~bad
        attempts = steps[rows] + rejected[rows]
        stalled = _stalled(attempts, t[rows], stall[rows])
        ck = rows[attempts >= stall[rows, 0] + STALL_ATTEMPTS]
        stall[ck, 0], stall[ck, 1] = steps[ck] + rejected[ck], t[ck]
        over = ~bad & ~conv & ((steps[rows] >= max_steps) | (t[rows] >= t_max) | stalled)
        status[rows[bad]] = "diverged"
        status[rows[conv]] = "converged"
        status[rows[over]] = "max_steps"
        keep = ~(bad | conv | over)
        if not keep.any():
            continue
        rows, ya, yb, yI, L = rows[keep], ya[keep], yb[keep], yI[keep], L[keep]
        K0 = (R0.da[keep], R0.db[keep], R0.gain[keep])
        hh = np.minimum(h[rows], t_max - t[rows])
        stale = rows[jac.age[rows] >= jacobian_age]
        if stale.size:
            jac.refresh(direction, stale, State(a[stale], b[stale], su[stale], sv[stale]), X)
        # overflow or NaN inside a step only makes that run's step fail (err = inf), never a warning
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ok, new_y, err, slow = step_fn(rows, (ya, yb, yI), K0, hh, X, rtol, atol, F, jac)
        jac.age[rows] += 1
        acc = ok & (err <= 1.0)
        with np.errstate(divide="ignore", over="ignore"):
            fac = 0.9 * np.maximum(err, 1e-10) ** (-1.0 / order)
        fac = np.where(acc, np.clip(fac, 0.2, 5.0), np.where(ok & np.isfinite(err), np.clip(fac, 0.1, 0.9), 0.25))
        ar = rows[acc]
        prev[ar, 0], prev[ar, 1] = t[ar], L[acc]
        a[ar], b[ar], I[ar] = new_y[0][acc], new_y[1][acc], new_y[2][acc]
        t[ar] += hh[acc]
        steps[ar] += 1
        rejected[rows[~acc]] += 1
        jac.age[rows[slow | ~acc]] = jacobian_age  # rebuild the model before the next attempt
        h[rows] = hh * fac
        if record and acc.any():
            snapshot(last_L)
    state = State(a, b, su, sv)
    with np.errstate(over="ignore", invalid="ignore"):
        beta = beta_of(state, direction.D)
        loss = direction.problem.loss(beta)
    trajectory = Trajectory(*(np.array(x) for x in zip(*traj))) if record else None
    return Result(direction, state, beta, loss, status.astype(str), t, steps, evals, I, log_c0, z0,
                  np.zeros((B, d)), rejected=rejected, trajectory=trajectory)


def _ros_step(rows, y, K0, h, X, rtol, atol, F, jac):
    """One ROS34PW2 step for the runs ``rows`` from y = (a, b, I) with step sizes h (per run).

    With τ_c the step of the cached factor, the matrix used is W = (τ_c/(γh))·A: still a valid
    W-method matrix, so the order is 3 whatever the model and the reuse (THEORY-independent
    property of W-methods; tested).  Returns (ok, y_new, err, slow=False).
    """
    solver = _Solver(jac, rows, X, h * _RG)
    wscale = (solver.tau / _RG)[:, None]  # h·W v = (τ_c/γ)·A v
    hc = h[:, None]
    ks = []
    ok = np.ones(h.size, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in range(4):
            if i == 0:
                Fv = K0
            else:
                ya = y[0] + sum(_RA[i, j] * ks[j][0] for j in range(i))
                yb = y[1] + sum(_RA[i, j] * ks[j][1] for j in range(i))
                R = F(rows, ya, yb)
                Fv = (R.da, R.db, R.gain)
            rhs = [hc * Fv[k] for k in range(3)]
            if i:
                va = sum(_RGAM[i, j] * ks[j][0] for j in range(i))
                vb = sum(_RGAM[i, j] * ks[j][1] for j in range(i))
                wa, wb = solver.apply(va, vb)
                rhs[0] += wscale * wa
                rhs[1] += wscale * wb
            ks.append(solver.solve(*rhs))
        y_new = [y[k] + sum(_RB[j] * ks[j][k] for j in range(4)) for k in range(3)]
        e = [sum((_RB[j] - _RBHAT[j]) * ks[j][k] for j in range(4)) for k in range(3)]
        sc = [atol + rtol * np.maximum(np.abs(y[k]), np.abs(y_new[k])) for k in range(3)]
        err = np.sqrt((_rms(e[0], sc[0]) ** 2 + _rms(e[1], sc[1]) ** 2 + _rms(e[2], sc[2]) ** 2) / 3.0)
    ok &= np.isfinite(err)
    err = np.where(ok, err, np.inf)
    return ok, y_new, err, np.zeros(h.size, dtype=bool)


def _sdirk_step(rows, y, K0, h, X, rtol, atol, F, jac, newton_max=7, newton_tol=0.05):
    """One SDIRK4 step for the runs ``rows`` from y = (a, b, I) with step sizes h (per run).

    Returns (ok, y_new, err, slow): ok is False where Newton failed; err is the filtered, scaled
    embedded error estimate (accept where ≤ 1); slow marks runs whose Newton iterations needed
    more than 3 iterations at some stage (their Jacobian model should be rebuilt).
    """
    ya, yb, yI = y
    Bm = ya.shape[0]
    hg = h * _G
    solver = _Solver(jac, rows, X, hg)
    scale = [atol + rtol * np.abs(c) for c in y]
    hc = h[:, None]
    Ks = []
    ok = np.ones(Bm, dtype=bool)
    slow = np.zeros(Bm, dtype=bool)
    Zprev = None
    theta_est = np.full(Bm, np.nan)  # Newton contraction rate seen at earlier stages of this step
    for i in range(5):
        S = [sum(_A[i, j] * hc * Ks[j][k] for j in range(i)) if i else np.zeros_like(y[k]) for k in range(3)]
        # predictor: the explicit Euler increment at the first stage, the previous stage's after
        Z = [hc * _C[i] * K0[k] for k in range(3)] if Zprev is None else [z * (_C[i] / _C[i - 1]) for z in Zprev]
        prev_norm = np.full(Bm, np.nan)
        conv = np.zeros(Bm, dtype=bool)
        active = ok.copy()
        for it in range(newton_max):
            # Each run iterates until its own Newton test passes, then is frozen: a run's result
            # never depends on its batch companions (batched == looped).
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            R = F(rows[idx], ya[idx] + Z[0][idx], yb[idx] + Z[1][idx])
            Fv = (R.da, R.db, R.gain)
            hgi = hg[idx, None]
            res = [Z[k][idx] - S[k][idx] - hgi * Fv[k] for k in range(3)]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                dz = solver.solve(-res[0], -res[1], -res[2], idx)
                for k in range(3):
                    Z[k][idx] += dz[k]
                norm = np.sqrt((_rms(dz[0], scale[0][idx]) ** 2 + _rms(dz[1], scale[1][idx]) ** 2
                                + _rms(dz[2], scale[2][idx]) ** 2) / 3.0)
                th = theta_est[idx]
                c = (norm <= newton_tol) | ((th < 0.5) & (th / (1 - th) * norm <= newton_tol))
                theta = norm / prev_norm[idx]
                # a contraction: the remaining error θ/(1−θ)·‖Δ‖ is below the tolerance
                c |= (theta < 0.9) & (theta / (1 - theta) * norm <= newton_tol)
            failed = ((theta > 2.0) & ~c) | ~np.isfinite(norm)
            theta_est[idx] = np.where(np.isfinite(theta), theta, th)
            slow[idx] |= (it >= 2) & ~c
            conv[idx] = c
            ok[idx] &= ~failed
            prev_norm[idx] = norm
            active[idx] = ~c & ~failed
        ok &= conv
        with np.errstate(over="ignore", invalid="ignore"):  # failed runs are rejected below
            Ks.append([(Z[k] - S[k]) / hg[:, None] for k in range(3)])
        Zprev = Z
    y_new = [y[k] + Z[k] for k in range(3)]  # stiffly accurate: y_{n+1} = Y_5
    e = [sum((_B[j] - _BHAT[j]) * hc * Ks[j][k] for j in range(5)) for k in range(3)]
    with np.errstate(over="ignore", invalid="ignore"):
        e = solver.solve(*e)  # Hairer's filter: damps the estimate on stiff components
        sc = [atol + rtol * np.maximum(np.abs(y[k]), np.abs(y_new[k])) for k in range(3)]
        err = np.sqrt((_rms(e[0], sc[0]) ** 2 + _rms(e[1], sc[1]) ** 2 + _rms(e[2], sc[2]) ** 2) / 3.0)
    err = np.where(ok & np.isfinite(err), err, np.inf)
    return ok, y_new, err, slow


def __getattr__(name):
    # ``dln.integrate.iterate`` is ``dln.discrete.iterate`` (imported on first use: dln.discrete
    # imports Result and Trajectory from here)
    if name == "iterate":
        from .discrete import iterate

        return iterate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
