"""When a run stops: the per-run status rules of both integrators (docs/design.md §3).

A run of a batch is ``running`` until one of these holds, tested in this order (the first wins):

1. ``diverged`` (:func:`diverged`): its loss or state is not finite or overflows, or its loss has
   grown ``LOSS_GROWTH``-fold; the run is frozen and the rest of the batch goes on;
2. ``converged``: its training loss is at most ``loss_tol``·L(0), or the caller's own rule says so
   (discrete flooding settled in its 2-cycle, :func:`flood_cycle`; the flow's stationarity test);
3. ``max_steps``: it has taken ``max_steps`` steps, or the caller's own cap says so (the flow's time
   horizon and step-size collapse).

:func:`status` applies the three rules to any array of (run, check) pairs: one step of a batch, or
many steps of a batch at once (``dln.discrete.iterate`` checks a block of steps after the fact).
Statuses are small integer codes (:data:`CONVERGED` … :data:`RUNNING`, indices into
:data:`STATUSES`); :func:`names` turns them into the strings of ``Result.status``.
"""
from __future__ import annotations

import numpy as np

STATUSES = ("converged", "diverged", "max_steps", "running")
CONVERGED, DIVERGED, MAX_STEPS, RUNNING = range(4)
#: Largest D·ln|u| (and D·ln|v|) of a run that has not diverged: u^D ≤ e^640 ≈ 1e278 leaves a factor
#: 1e30 of headroom for β, Xβ, the loss and the rates before float64 overflows (at e^709.8).
LOG_HUGE = 640.0
#: A run whose loss exceeds this multiple of its initial loss has diverged.
LOSS_GROWTH = 1e10
#: Consecutive steps in the 2-cycle around the flood level after which discrete flooding has settled.
FLOOD_WINDOW = 20


def diverged(loss, loss0, a, b, D: int = 2, finite=True) -> np.ndarray:
    """The divergence test of both integrators, per run.

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
    loss, loss0 : ndarray (...)
        Current and initial losses (broadcastable; e.g. (B,), or (K, B) for K steps of B runs).
    a, b : ndarray (..., d)
        ln|u| and ln|v|; or ``a`` (..., 2, d) holding both, with ``b`` None.
    D : int
        Depth (β = u^D − v^D).
    finite : bool or ndarray (...)
        False where the caller found its rates or step non-finite.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.asarray(finite, dtype=bool) | ~np.isfinite(loss)
        bad = bad | ~(loss <= LOSS_GROWTH * np.maximum(loss0, 1e-300))
        if b is None:
            top, fin = np.max(a, axis=(-2, -1)), np.isfinite(a).all(axis=(-2, -1))
        else:
            top = np.maximum(np.max(a, axis=-1), np.max(b, axis=-1))
            fin = np.isfinite(a).all(axis=-1) & np.isfinite(b).all(axis=-1)
        bad = bad | ~fin | ~(D * top <= LOG_HUGE)
    return bad


def loss_floor(X, y, m, scale) -> np.ndarray:
    """The round-off floor of the training loss L = ‖Xβ − y‖²/(2n) at a state, per run.

    β = u^D − v^D is computed from log coordinates known to an absolute error ε·scale (ε the float64
    machine epsilon; ``scale`` ~ the magnitudes of the terms they are summed from), so β_j has an
    error up to ε·m_j·(1 + scale_j) with m = |u^D| + |v^D|, and the residual r_i an error up to
    δr_i = ε·(|y_i| + Σ_j |x_ij|·m_j·(1 + scale_j)).  A loss at or below (1/2n)‖δr‖² is round-off:
    integrating on cannot lower it (with features of scale 1e9 it floors near 1e-16·L(0), far above
    any loss_tol·L(0); docs/theory.md §1).

    Parameters
    ----------
    X, y : ndarray (n, d), (n,)
        The design and the labels.
    m, scale : ndarray (B, d)
        |u^D| + |v^D| and the magnitude of the log coordinates' terms, per run.
    """
    eps = np.finfo(np.float64).eps
    with np.errstate(over="ignore", invalid="ignore"):
        dr = eps * (np.abs(y) + (m * (1.0 + scale)) @ np.abs(X).T)
        return np.einsum("bi,bi->b", dr, dr) * (0.5 / X.shape[0])


def status(loss, loss0, a, b, steps, *, max_steps, loss_tol=None, D: int = 2, finite=True,
           evaluated=True, converged=False, capped=False) -> np.ndarray:
    """Status codes of runs after a check (see the module docstring for the rules and their order).

    Parameters
    ----------
    loss, loss0 : ndarray (...)
        Training loss at the checked state and at the start.
    a, b : ndarray (..., d)
        ln|u|, ln|v| of the checked state; or ``a`` (..., 2, d) holding both, with ``b`` None.
    steps : int or ndarray (...)
        Steps taken when the state was checked.
    max_steps : int
        The step cap.
    loss_tol : float or None
        Converged when loss ≤ loss_tol·loss0; None: never by the loss (label-noise SGD, whose loss
        never vanishes, docs/theory.md §9).
    D : int
        Depth, for the overflow test.
    finite : bool or ndarray (...)
        False where the caller found its rates or its next step non-finite.
    evaluated : bool or ndarray (...)
        False where ``loss`` was not evaluated (SGD evaluates the full loss every epoch only): there
        the state alone is tested for divergence, and the run cannot converge.
    converged, capped : bool or ndarray (...)
        The caller's own convergence rule and step cap (applied after divergence).

    Returns
    -------
    ndarray of int8 (...)
        :data:`CONVERGED`, :data:`DIVERGED`, :data:`MAX_STEPS` or :data:`RUNNING`.
    """
    evaluated = np.asarray(evaluated, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):  # LOSS_GROWTH·L(0) overflows for labels ~1e150
        loss_t, loss0_t = loss, loss0
        if not evaluated.all():
            loss_t = np.where(evaluated, loss, 0.0)
            loss0_t = np.where(evaluated, loss0, 1.0)
        shape = np.broadcast_shapes(np.shape(loss_t), np.shape(a)[:-1 if b is not None else -2], np.shape(steps))
        if _none_stops(loss_t, loss0_t, a, b, steps, max_steps, loss_tol, loss0, D, finite, evaluated,
                       converged, capped):
            return np.full(shape, RUNNING, dtype=np.int8)
        bad = diverged(loss_t, loss0_t, a, b, D, finite)
        conv = np.asarray(converged, dtype=bool)
        if loss_tol is not None:
            conv = conv | (evaluated & (loss_t <= loss_tol * loss0))
    conv = conv & ~bad
    over = ~bad & ~conv & ((np.asarray(steps) >= max_steps) | np.asarray(capped, dtype=bool))
    code = np.full(shape, RUNNING, dtype=np.int8)
    code[over] = MAX_STEPS
    code[conv] = CONVERGED
    code[bad] = DIVERGED
    return code


def _none_stops(loss, loss0, a, b, steps, max_steps, loss_tol, loss0_raw, D, finite, evaluated, converged,
                capped) -> bool:
    """True when no rule of :func:`status` fires anywhere, decided from whole-array reductions (a few
    calls, where the per-run rules reduce every row): the usual case, a batch in mid-run.

    Every run passes the state tests of :func:`diverged` exactly when min(a, b) > −∞ and
    D·max(a, b) ≤ LOG_HUGE over the whole array (NaN fails both comparisons)."""
    if np.any(converged) or np.any(capped) or not np.all(finite) or np.max(steps) >= max_steps:
        return False
    lo, hi = np.min(a), np.max(a)
    if b is not None:  # (np.minimum and np.maximum propagate NaN)
        lo, hi = np.minimum(lo, np.min(b)), np.maximum(hi, np.max(b))
    if not (lo > -np.inf and D * hi <= LOG_HUGE):
        return False
    ok = np.isfinite(loss) & (loss <= LOSS_GROWTH * np.maximum(loss0, 1e-300))
    if loss_tol is not None:
        ok &= ~(evaluated & (loss <= loss_tol * loss0_raw))
    return bool(np.all(ok))


def names(codes) -> np.ndarray:
    """Status strings (``Result.status``) of integer codes."""
    return np.asarray(STATUSES)[np.asarray(codes, dtype=np.intp)]


def flood_cycle(loss, level, hist, count):
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
