"""The discrete-time loop of dln as it was before ``dln/discrete.py`` (verbatim, self-contained).

Kept as the oracle of tests/core/test_discrete.py: the rewritten ``iterate`` (update rules, data
sources, deferred status checks) must reproduce this loop bit for bit -- statuses, steps, the state,
ln c, the tilt Φ and the gain integral η·Σgain -- for GD, SGD, label noise, flooding and every
method.  Changes from the original: ``_check_common`` and ``_batch_size`` (shared with ``flow``) are
inlined, and the function returns a dict instead of ``dln.integrate.Result`` (whose fields another
rewrite may change).  Do not "fix" or speed up this file: it is a frozen reference.
"""
from __future__ import annotations

import numpy as np

from dln.errors import check_int, check_real, fail
from dln.methods import Data, Direction, Rates
from dln.model import State, beta as beta_of

STATUSES = ("converged", "diverged", "max_steps", "running")
#: Largest D·ln|u| (and D·ln|v|) of a run that has not diverged: u^D ≤ e^640 ≈ 1e278 leaves a factor
#: 1e30 of headroom for β, Xβ, the loss and the rates before float64 overflows (at e^709.8).
LOG_HUGE = 640.0
#: A run whose loss exceeds this multiple of its initial loss has diverged.
LOSS_GROWTH = 1e10


def _diverged(loss, loss0, a, b, D: int = 2, finite=True) -> np.ndarray:
    """The divergence test of both integrators, per run (``flow`` and ``iterate`` share it).

    A run has diverged when its loss is not finite or exceeds ``LOSS_GROWTH``·L(0), when its state is
    not finite, or when it overflows: D·ln|u| or D·ln|v| > ``LOG_HUGE`` (u^D would soon overflow).
    ``finite`` carries the caller's own finiteness test (its rates, or its next step).

    There is deliberately no lower bound on ln|u|, ln|v|.  A coordinate whose u or v (or both)
    shrinks towards 0 *collapses*; it does not diverge: in log coordinates a, b = ln|u|, ln|v| go to
    −∞ at no cost, exp(2a) underflowing to 0 is harmless for β = e^{2a} − e^{2b}, and the run
    reaches its true limit (e.g. 1-SAM at large ρ drives ln u below −300 while the loss keeps
    falling, docs/theory.md §8).

    Parameters
    ----------
    loss, loss0 : ndarray (B,)
        Current and initial losses.
    a, b : ndarray (B, d)
        ln|u| and ln|v|.
    D : int
        Depth (β = u^D − v^D).
    finite : bool or ndarray (B,)
        False where the caller found its rates or step non-finite.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.asarray(finite, dtype=bool) | ~np.isfinite(loss)
        bad = bad | ~(loss <= LOSS_GROWTH * np.maximum(loss0, 1e-300))
        top = np.maximum(np.max(a, axis=1), np.max(b, axis=1))
        bad = bad | ~np.isfinite(a).all(axis=1) | ~np.isfinite(b).all(axis=1) | ~(D * top <= LOG_HUGE)
    return bad




#: Consecutive steps in the 2-cycle around the flood level after which discrete flooding has settled.
FLOOD_WINDOW = 20


def _flood_cycle(loss, level, hist, count):
    """The stopping rule of discrete (full-batch) flooding, θ ← θ − η·sign(L − b)∇L (docs/theory.md §7.9).

    Once the loss reaches b the steps alternate, ascent and descent, in a 2-cycle around b: a step
    is *in the cycle* when L − b changes sign, the loss two steps apart differs by less than a
    tenth of the one-step oscillation |L_k − L_{k−1}| (the two-step map is near the identity: it
    moves θ by −η²H∇L, an F-GR step, §7.9) and that oscillation does not grow.  The run has
    settled (``iterate`` reports ``converged``) after ``FLOOD_WINDOW`` consecutive steps in the
    cycle; what remains is the O(η²)-per-pair implicit-GR drift along the level set, which flooding
    follows for ever.  Level b = 0 is plain GD (never in a cycle).

    Parameters
    ----------
    loss, level : ndarray (m,)
        L at the current step and b, for the m runs tested.
    hist : ndarray (m, 3)
        Losses of the three previous steps, newest first (NaN before there are three).
    count : ndarray (m,)
        Consecutive steps in the cycle so far.

    Returns
    -------
    hist, count, settled : the updated history and count, and where count ≥ FLOOD_WINDOW.
    """
    L1, L2, L3 = hist[:, 0], hist[:, 1], hist[:, 2]
    with np.errstate(invalid="ignore"):
        amp = np.abs(loss - L1)
        cycle = (level > 0) & (np.sign(loss - level) * np.sign(L1 - level) < 0) & \
            (np.abs(loss - L2) <= 0.1 * amp) & (amp <= 1.01 * np.abs(L2 - L3))
    count = np.where(cycle, count + 1, 0)
    return np.column_stack([loss, L1, L2]), count, count >= FLOOD_WINDOW


def _check_indices(idx, B: int, n: int, batch_size, where: str) -> np.ndarray:
    """``sample_indices`` as an int array (B, K, b) of rows in [0, n)."""
    arr = np.asarray(idx)
    if arr.dtype.kind not in "iu" or arr.ndim not in (2, 3) or arr.size == 0 or \
            (arr.ndim == 3 and arr.shape[0] != B):
        raise fail("sample_indices", where, f"an integer array of shape (K, b) or (B, K, b) with B = {B}",
                   f"shape {arr.shape}, dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n:
        raise fail("sample_indices", where, f"row indices in [0, n) = [0, {n})", arr[(arr < 0) | (arr >= n)])
    if batch_size is not None and arr.shape[-1] != batch_size:
        raise fail("batch_size", where, f"the number of indices per step of sample_indices ({arr.shape[-1]})",
                   batch_size)
    arr = np.broadcast_to(arr, (B,) + arr.shape[-2:])
    # one more row: the loop draws step K's batch before its stopping test ends the run at K steps
    return np.concatenate([arr, arr[:, -1:]], axis=1)


def reference_iterate(direction: Direction, state0: State, lr, *, max_steps: int = 100_000,
                      batch_size: int | None = None, label_noise: float = 0.0, seed=0, seeds=None,
                      sample_indices=None, loss_tol: float = 1e-24, record_every: int = 0,
                      average_from: int | None = None, progress=None, flood_cycle_stop: bool = True) -> dict:
    """Discrete time: w ← w − η·G(w) for a batch of runs (GD is GF in discrete time).

    In log coordinates the step is exact and sign-aware (docs/theory.md §4 lemma, §13 item 8):
    ln|u| += ln|1 + η·da|, sign(u) *= sign(1 + η·da), and likewise for v.  The exact discrete
    bookkeeping is recorded: ln|u⊙v| = a + b, and the tilt

        Φ_K = Σ_k −½[Δz_k − η(da_k − db_k)],

    the out-of-span part of the mirror coordinate (for GD, Φ = Σ[½ ln|(1+x)/(1−x)| − x] with
    x = 2ηg, docs/theory.md §5.1), so that β_∞ = argmin φ_c − ⟨z0 − 2Φ, β⟩ (docs/theory.md §4).
    The gain integral is accumulated as η·Σ gain (the continuous-time approximation).

    Parameters
    ----------
    lr : float or array (B,)
        Learning rate η > 0.
    batch_size : int, optional
        Mini-batch size for SGD (sampled without replacement at each step, per run); None = GD.
    label_noise : float
        Std δ of Gaussian noise added to the labels of every step's batch (label-noise SGD,
        docs/theory.md §9); runs with δ > 0 never reach zero loss and stop at ``max_steps``.
    seed, seeds : int, or one seed per run
        Randomness for SGD and label noise; run i uses ``seeds[i]`` or SeedSequence(seed).spawn(B)[i].
    sample_indices : int array, optional
        A given sample sequence instead of the sampler: the rows of step k's mini-batch are
        ``sample_indices[k]`` (shape (K, b), every run) or ``sample_indices[i, k]`` (shape (B, K, b),
        run i).  b is the batch size (``batch_size``, if given, must equal it); a run that has taken
        K steps stops with status ``max_steps``.  For replaying another code's SGD run.
    record_every : int
        Keep β every so many steps (0: no trajectory).
    average_from : int, optional
        Also return the mean of β over steps ≥ this index (``beta_mean``; label noise).
    progress : callable, optional
        ``progress(steps_done, running, total)``, called once per step (see :func:`flow`).
    flood_cycle_stop : bool
        Full-batch flooding (b > 0) stops with status ``converged`` once it has settled in the
        2-cycle around b (:func:`_flood_cycle`); False follows its slow drift along the level set
        to ``max_steps`` (docs/theory.md §7.9).

    A run stops with status ``converged`` when L ≤ loss_tol·L(0) (not with label noise) or, for
    flooding, in the 2-cycle; ``diverged`` by :func:`_diverged` (collapse, ln|u| → −∞, is not
    divergence); ``max_steps`` after ``max_steps`` steps.
    """
    where = "iterate"
    max_steps = check_int("max_steps", max_steps, where, ge=1)
    loss_tol = check_real("loss_tol", loss_tol, where, gt=0.0, allow_array=False)
    B = state0.a.shape[0]
    lr = check_real("lr", lr, where, gt=0.0)
    eta = np.broadcast_to(np.asarray(lr, dtype=np.float64).reshape(-1, 1), (B, 1)).copy()
    n, d = direction.problem.n, direction.problem.d
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, where, ge=1, le=n)
    label_noise = check_real("label_noise", label_noise, where, ge=0.0, allow_array=False)
    if sample_indices is not None:
        sample_indices = _check_indices(sample_indices, B, n, batch_size, where)
        batch_size = sample_indices.shape[2]
        max_steps = min(max_steps, sample_indices.shape[1] - 1)
    stochastic = batch_size is not None or label_noise > 0
    if label_noise > 0 or (stochastic and sample_indices is None):
        if seeds is None:
            seeds = np.random.SeedSequence(seed).spawn(B)
        if len(seeds) != B:
            raise fail("seeds", where, f"one seed per run ({B})", len(seeds))
        rngs = [np.random.default_rng(s) for s in seeds]
    bs = n if batch_size is None else batch_size
    X, y = direction.problem.X, direction.problem.y
    a, b = np.array(state0.a, dtype=np.float64), np.array(state0.b, dtype=np.float64)
    su, sv = state0.su.astype(np.float64).copy(), state0.sv.astype(np.float64).copy()
    log_c0, z0 = a + b, a - b
    I = np.zeros((B, d))
    Phi = np.zeros((B, d))
    steps = np.zeros(B, dtype=np.int64)
    status = np.full(B, "running", dtype=object)
    loss0 = direction.problem.loss(beta_of(State(a, b, su, sv), direction.D))
    beta_sum = np.zeros((B, d)) if average_from is not None else None
    beta_cnt = np.zeros(B)
    traj = []
    chunk = 256
    check_every = 1 if batch_size is None else max(1, n // bs)
    flooding = direction.method == "flood" and not stochastic and flood_cycle_stop
    if flooding:
        level = np.broadcast_to(direction.params["flood_level"][:, 0], (B,))
        cycle_hist = np.full((B, 3), np.nan)  # the losses of the last 3 steps, newest first
        cycle_count = np.zeros(B, dtype=np.int64)

    buf = {}

    def minibatch(rows, k):
        # Active runs step in lockstep (all started at step 0), so step k is the same for all;
        # each run draws a chunk of steps at a time from its own stream (batched == looped).
        pos = k % chunk
        if pos == 0:
            if sample_indices is not None:
                buf["idx"] = sample_indices[:, k:k + chunk]
            elif batch_size is None:
                buf["idx"] = np.broadcast_to(np.arange(n), (B, chunk, n))
            elif bs == 1:
                buf["idx"] = np.stack([g.integers(0, n, size=(chunk, 1)) for g in rngs])
            else:
                base = np.broadcast_to(np.arange(n), (chunk, n))
                buf["idx"] = np.stack([g.permuted(base, axis=1)[:, :bs] for g in rngs])
            if label_noise > 0:
                buf["xi"] = label_noise * np.stack([g.standard_normal((chunk, bs)) for g in rngs])
        idx = buf["idx"][rows, pos]
        yb = y[idx]
        if label_noise > 0:
            yb = yb + buf["xi"][rows, pos]
        return Data(X[idx], yb)

    k_global = 0
    while True:
        rows = np.flatnonzero(status == "running")
        if rows.size == 0:
            break
        if progress is not None:
            progress(k_global, rows.size, B)
        # all runs active (the common case): slices, so that every update below is in place
        sel = slice(None) if rows.size == B else rows
        st = State(a[sel], b[sel], su[sel], sv[sel])
        data = minibatch(rows, k_global) if stochastic else None
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            R = direction(st, None if rows.size == B else rows, data)
            if stochastic and k_global % check_every == 0:
                L = direction.problem.loss(beta_of(st, direction.D))
            elif not stochastic:
                L = R.loss
            else:
                L = None
            e = eta[sel]
            fa, fb = 1.0 + e * R.da, 1.0 + e * R.db
            da_new, db_new = np.log(np.abs(fa)), np.log(np.abs(fb))
        finite = np.isfinite(da_new).all(axis=1) & np.isfinite(db_new).all(axis=1)
        if L is not None:
            bad = _diverged(L, loss0[sel], st.a, st.b, direction.D, finite)
            with np.errstate(invalid="ignore"):
                conv = ~bad & (L <= loss_tol * loss0[sel]) & (label_noise == 0)
            if flooding:
                cycle_hist[sel], cycle_count[sel], settled = _flood_cycle(L, level[sel], cycle_hist[sel],
                                                                          cycle_count[sel])
                conv |= ~bad & settled
        else:
            bad = _diverged(np.zeros(rows.size), 1.0, st.a, st.b, direction.D, finite)
            conv = np.zeros(rows.size, dtype=bool)
        conv &= ~bad
        over = ~bad & ~conv & (steps[sel] >= max_steps)
        go = ~(bad | conv | over)
        if not go.all():
            status[rows[bad]] = "diverged"
            status[rows[conv]] = "converged"
            status[rows[over]] = "max_steps"
            sel = rows[go]
            e, fa, fb = e[go], fa[go], fb[go]
            da_new, db_new, R = da_new[go], db_new[go], Rates(R.da[go], R.db[go], R.gain[go], None)
        if isinstance(sel, np.ndarray) and sel.size == 0:
            k_global += 1
            continue
        # exact bookkeeping (docs/theory.md §4 lemma): z moves by Δz, of which η(da − db) is in range(Xᵀ)
        Phi[sel] += -0.5 * ((da_new - db_new) - e * (R.da - R.db))
        a[sel] += da_new
        b[sel] += db_new
        if (fa < 0).any() or (fb < 0).any():
            su[sel] *= np.sign(fa)
            sv[sel] *= np.sign(fb)
        I[sel] += e * R.gain
        steps[sel] += 1
        if beta_sum is not None:
            r = np.arange(B)[sel]
            avg = r[steps[r] > average_from]
            if avg.size:
                beta_sum[avg] += beta_of(State(a[avg], b[avg], su[avg], sv[avg]), direction.D)
                beta_cnt[avg] += 1
        if record_every and k_global % record_every == 0:
            with np.errstate(over="ignore", invalid="ignore"):  # diverged runs are frozen, not warned
                bt = beta_of(State(a, b, su, sv), direction.D)
                traj.append((steps * eta[:, 0], bt, direction.problem.loss(bt), a + b))
        k_global += 1
    state = State(a, b, su, sv)
    with np.errstate(over="ignore", invalid="ignore"):
        beta = beta_of(state, direction.D)
        loss = direction.problem.loss(beta)
    trajectory = tuple(np.array(x) for x in zip(*traj)) if traj else None  # (t, beta, loss, log_c)
    beta_mean = None
    if beta_sum is not None:
        beta_mean = beta_sum / np.maximum(beta_cnt, 1)[:, None]
    return dict(state=state, beta=beta, loss=loss, status=status.astype(str), t=steps * eta[:, 0], steps=steps,
                gain=I, log_c0=log_c0, z0=z0, tilt=Phi, trajectory=trajectory, beta_mean=beta_mean)
