"""One call from a problem and hyper-parameters to checked results: ``dln.simulate``.

Builds the direction, runs ``flow`` or ``iterate`` on a batch, and turns the final states into
plain records (dicts, docs/design.md §6) carrying the contract keys of ``simulate --json``
(docs/design.md §5) and the columns of a sweep's ``results.csv``.
"""
from __future__ import annotations

import time as _time

import numpy as np

from . import memory
from . import methods as _methods
from .errors import check_choice, fail
from .integrate import DEFAULT_RTOL, Result, flow
from .model import initial_state
from .params import HYPER, KEY_COLUMNS, TIMES, check as check_param, check_times, default
from .problem import Problem
#: threshold on |β_i| / max|β| for support recovery (precision / recall columns)
SUPPORT_THRESHOLD = 1e-3
#: a converged run interpolates (and is compared with the closed-form limit) when L ≤ this·L(0)
INTERPOLATES = 1e-12
#: per-run step cap applied when ``max_steps`` is None (flow: accepted steps; discrete: steps);
#: ``--max-steps --help`` prints these values
MAX_STEPS = {"flow": 20_000, "discrete": 1_000_000}
#: the data and run keys of a record, named like the flags and the results.csv columns
#: (docs/design.md §5); ``run`` and ``run_id`` are sweep-only
RUN_KEYS = KEY_COLUMNS


def mirror_argmin(*args, **kwargs):
    """``analysis.predict.mirror_argmin``, imported on first use (``import dln`` does not need it)."""
    from analysis.predict import mirror_argmin as solve

    return solve(*args, **kwargs)


def mirror_argmin_batch(*args, **kwargs):
    """``analysis.predict.mirror_argmin_batch``, imported on first use."""
    from analysis.predict import mirror_argmin_batch as solve

    return solve(*args, **kwargs)


def run_batch(problem: Problem, method: str = default("method"), *, variant: str = default("variant"),
              alpha=default("alpha"), gamma=None, eps=None, rho=None, flood_level=None,
              time: str = default("time"), lr=None,
              batch_size=None, label_noise=None, momentum=None, D: int = 2, u0=None, v0=None, seed=0, seeds=None,
              sample_indices=None, rtol: float = DEFAULT_RTOL, loss_tol: float = 1e-24,
              max_steps: int | None = None, record: bool = False, progress=None,
              flood_cycle_stop: bool = True, state_form: str = "auto", explicit_start: bool = True) -> Result:
    """Run one method on a batch of B runs.

    Shapes (never guessed from the sizes, so that B = n, B = d or n = d change nothing):

    - per-run hyper-parameters ``alpha``, ``gamma``, ``eps``, ``rho``, ``flood_level``, ``lr``,
      ``momentum``: a
      scalar (every run) or a vector of shape (B,), one value per run; vectors must agree on B;
    - per-coordinate initial weights ``u0``, ``v0`` (used instead of ``alpha``): shape (d,) or
      (B, d) (:func:`dln.model.initial_state`);
    - ``seeds``: one seed per run (SGD, label noise; default: ``SeedSequence(seed).spawn(B)``);
    - ``sample_indices``: the rows of every step's mini-batch, (K, batch_size) for all runs or
      (B, K, batch_size) (:func:`dln.integrate.iterate`).

    ``momentum`` μ ∈ [0, 1) (discrete time) steps by heavy ball on (u, v), as
    ``torch.optim.SGD(momentum=μ)`` (:class:`dln.discrete.HeavyBall`); None or 0 is GD.

    ``flood_cycle_stop=False`` lets discrete flooding run on in its 2-cycle around the level
    (:func:`dln.integrate.iterate`).  ``state_form`` is passed to :func:`dln.integrate.flow`.

    Validation happens here (docs/design.md §6): a hyper-parameter that does not apply to the method
    or to the time mode is an error, and so is ``variant='per-sample'`` for gf and flood (they have
    no penalty to take per example).  ``max_steps=None`` applies :data:`MAX_STEPS` of the time mode.
    ``record`` keeps the path (``Result.trajectory``): every accepted step in continuous time; in
    discrete time every step (True), every k-th (an int k), or as a :class:`dln.discrete.Recording`
    says (thinned to a bounded number of points).  ``progress`` is passed to
    :func:`~dln.integrate.flow` / :func:`~dln.integrate.iterate` (``progress(steps_done, running,
    total)``, e.g. :func:`dln.progress.step_callback`).  ``state_form`` and ``explicit_start`` are passed to ``flow``.
    """
    where = "simulate"
    check_choice("time", time, TIMES, where)
    check_times(time, dict(lr=lr, batch_size=batch_size, label_noise=label_noise, momentum=momentum), where)
    if time == "flow":
        for name, val in (("seeds", seeds), ("sample_indices", sample_indices)):
            if val is not None:
                raise fail(name, where, "left unset with time='flow' (it applies to discrete time)", val)
        momentum = None
    elif lr is None:
        raise fail("lr", where, "given with time='discrete'", None)
    if momentum is not None:
        momentum = check_param("momentum", momentum, where)
    direction = _methods.make(method, problem, variant=variant, D=D, gamma=gamma, eps=eps, rho=rho,
                              flood_level=flood_level)
    if variant != "full" and method not in _methods.VARIANT_METHODS:
        raise fail("variant", method, f"'full' ({method} has no penalty to take per example; the variant "
                   f"applies to {', '.join(_methods.VARIANT_METHODS)})", variant)
    use_alpha = alpha is not None and u0 is None
    sizes = {direction.batch}
    for name, val in (("alpha", alpha if use_alpha else None), ("lr", lr), ("momentum", momentum)):
        if val is None:
            continue
        if name == "alpha":
            val = check_param(name, val, method)  # lr: checked by iterate
        if np.ndim(val) > 1:
            raise fail(name, where if name == "momentum" else method if name == "alpha" else "iterate",
                       "a scalar or a vector with one value per run "
                       "(shape (B,))" + ("; a per-coordinate alpha is u0 = v0 = alpha" if name == "alpha" else ""),
                       f"shape {np.shape(val)}")
        sizes.add(np.size(val) if np.ndim(val) == 1 else 1)
    if seeds is not None:
        sizes.add(len(seeds))
    sizes.discard(1)
    if len(sizes) > 1:
        raise fail("alpha", where, "of the same length as the other per-run hyper-parameters",
                   f"lengths {sorted(sizes)}")
    B = sizes.pop() if sizes else 1
    if use_alpha:
        alpha = check_param("alpha", alpha, method)
        alpha = float(np.ravel(alpha)[0]) if np.size(alpha) == 1 else alpha
        state = initial_state(problem.d, B, alpha=alpha, where=method)  # a vector is per run
    else:
        state = initial_state(problem.d, B, u0=u0, v0=v0, where=method)
    memory.check_batch(B, problem.n, problem.d, time == "flow", where)
    cap = MAX_STEPS[time] if max_steps is None else max_steps
    if time == "flow":
        result = flow(direction, state, rtol=rtol, loss_tol=loss_tol, max_steps=cap, record=bool(record),
                      progress=progress, state_form=state_form, explicit_start=explicit_start)
    else:
        from .discrete import HeavyBall, iterate  # here: a flow does not need the discrete-time module

        heavy = momentum is not None and np.any(momentum != 0.0)  # μ = 0 is GD (bit for bit)
        result = iterate(direction, state, lr, batch_size=batch_size, rule=HeavyBall(momentum) if heavy else None,
                         label_noise=0.0 if label_noise is None else label_noise, seed=seed, seeds=seeds,
                         sample_indices=sample_indices, loss_tol=loss_tol, max_steps=cap,
                         **_recording(record), progress=progress, flood_cycle_stop=flood_cycle_stop)
    if use_alpha:
        result.info["alpha"] = np.broadcast_to(alpha, (B,)).copy()
    result.info["seed"] = seed
    if time == "discrete":
        result.info["label_noise"] = label_noise  # None when not given, as in results.csv
        mu = default("momentum") if momentum is None else momentum
        result.info["momentum"] = np.broadcast_to(np.asarray(mu, dtype=np.float64), (B,)).copy()
    return result


def _recording(record) -> dict:
    """``iterate``'s recording arguments for ``run_batch(record=...)``: True (every step), an int k
    (every k-th step) or a :class:`dln.discrete.Recording` (thinned to at most ``max_points``)."""
    from .discrete import Recording

    if isinstance(record, Recording):
        return dict(record_every=record.every, max_points=record.max_points)
    return dict(record_every=int(record) if record else 0)


def predict_run(result: Result, i: int):
    """The closed-form limit for run i: argmin φ_c − ⟨z0 − 2Φ, β⟩ over Xβ = y with the run's
    measured c = |u⊙v| (docs/theory.md §4 lemma; Φ = 0 in continuous time), or None where no exact
    prediction applies (depth D ≥ 3, heavy-ball momentum μ > 0, runs that did not converge, converged runs that do not
    interpolate: L > INTERPOLATES·L(0), e.g. flooding at its level, or a regularized run whose u⊙v
    collapsed to a stationary point with a loss > 0, and y outside range(X): no β interpolates, the
    run converges to a least-squares point and the prediction does not exist).
    :func:`predict_runs` gives the same for every run of a batch in one solve."""
    if not _predictable(result, i):
        return None
    P = result.direction.problem
    z0 = mirror_tilt(result, i)
    pred = mirror_argmin(P.X, P.y, log_c=result.log_c[i], z0=z0 if np.any(z0) else None)
    return None if pred.status == "infeasible" else pred


def predict_runs(result: Result) -> list:
    """:func:`predict_run` of every run of the batch (None where no prediction applies), solved in
    one batched :func:`analysis.predict.mirror_argmin_batch` over the runs that have one (they
    share X and y: the fixed cost of a solve is paid once, not per run)."""
    B = result.beta.shape[0]
    rows = [i for i in range(B) if _predictable(result, i)]
    out = [None] * B
    if not rows:
        return out
    P = result.direction.problem
    preds = mirror_argmin_batch(P.X, P.y, result.log_c[rows], np.stack([mirror_tilt(result, i) for i in rows]))
    for i, pred in zip(rows, preds):
        out[i] = None if pred.status == "infeasible" else pred
    return out


def _predictable(result: Result, i: int) -> bool:
    """Whether run i has an exact closed-form limit (:func:`predict_run`): depth 2, converged,
    without momentum, interpolating (L ≤ INTERPOLATES·L(0))."""
    if result.direction.D != 2 or result.status[i] != "converged" or heavy_ball(result, i):
        return False
    P = result.direction.problem
    a0 = 0.5 * (result.log_c0[i] + result.z0[i])
    b0 = 0.5 * (result.log_c0[i] - result.z0[i])
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(result.loss[i] <= INTERPOLATES * P.loss(np.exp(2 * a0) - np.exp(2 * b0)))


def heavy_ball(result: Result, i: int) -> bool:
    """Whether run i stepped with momentum μ > 0: its limit has no closed form in this project yet
    (docs/theory.md, heavy-ball momentum), so its prediction is reported as unavailable."""
    mu = result.info.get("momentum")
    return mu is not None and bool(mu[i] != 0.0)


def mirror_tilt(result: Result, i: int) -> np.ndarray:
    """The linear term z0 − 2Φ of run i's exact characterisation β∞ = argmin_{Xβ=y} φ_c(β) − ⟨z0 − 2Φ, β⟩
    (docs/theory.md §3.1 offset, §5.1 discrete tilt Φ; zero for a flow from u0 = v0)."""
    return result.z0[i] - 2.0 * result.tilt[i]


def rel_error(x, ref) -> float:
    """‖x − ref‖/‖ref‖ (2-norms), the absolute error ‖x‖ where ref = 0: the relative error of every
    record (``prediction_rel_error``, ``prediction_theory_rel_error``) and of ``dln check``."""
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(x - ref) / (den if den > 0 else 1.0))


def _data_keys(P: Problem, run_seed) -> dict:
    """``data n d k noise design seed`` of a record, from ``Problem.meta`` (as results.csv has them).

    ``seed`` is the data seed of a synthetic problem; for a data file it is the seed of the run's
    randomness (SGD mini-batches, label noise), as in a sweep over a data file."""
    meta = P.meta
    seed = meta.get("seed", run_seed)
    if isinstance(seed, np.integer) or (isinstance(seed, int) and not isinstance(seed, bool)):
        seed = int(seed)
    else:  # a SeedSequence or Generator: not a column value
        seed = None
    noise = meta.get("noise")
    return dict(data=meta.get("data"), n=int(P.n), d=int(P.d), k=meta.get("k"),
                noise=None if noise is None else float(noise), design=meta.get("design"), seed=seed)


def records(result: Result, *, predict: bool = True, wall_time: float | None = None,
            extra: dict | None = None) -> list[dict]:
    """One plain record per run: hyper-parameters, status, losses, norms, gains, prediction."""
    direction = result.direction
    P = direction.problem
    B = result.beta.shape[0]
    out = []
    support = P.support
    # a diverged run may hold β ~ 1e300 or inf: its record says so (status "diverged"), silently
    preds = predict_runs(result) if predict else [None] * B  # converged runs only
    theories = [None] * B
    rows = [i for i in range(B) if preds[i] is not None]
    if rows and result.info.get("lr") is None and result.info.get("state_form") != "reduced":
        # flow: c from the integrated gain, not from u⊙v (in the reduced state the two coincide by
        # construction, dln.reduced, and the record reuses the prediction)
        for i, theory in zip(rows, mirror_argmin_batch(P.X, P.y, result.log_c_theory[rows], result.z0[rows])):
            theories[i] = theory
    with np.errstate(over="ignore", invalid="ignore"):
        return [_record(result, i, P, support, preds[i], theories[i], wall_time, extra) for i in range(B)]


def _record(result, i, P, support, pred, theory, wall_time, extra) -> dict:
    direction = result.direction
    if True:
        beta = result.beta[i]
        lr = result.info.get("lr")
        rec = dict(method=direction.method, variant=direction.variant, time="flow" if lr is None else "discrete")
        alpha = result.info.get("alpha")
        rec["alpha"] = None if alpha is None or not np.isfinite(alpha[i]) else float(alpha[i])
        for name in HYPER:
            p = direction.params.get(name)
            rec[name] = None if p is None else float(p[i if p.shape[0] > 1 else 0, 0])
        rec["lr"] = None if lr is None else float(lr[i])
        rec["batch_size"] = result.info.get("batch_size")
        rec["label_noise"] = result.info.get("label_noise")
        mu = result.info.get("momentum")
        rec["momentum"] = None if mu is None else float(mu[i])
        rec.update(_data_keys(P, result.info.get("seed")))
        rec["status"] = str(result.status[i])
        rec["train_loss"] = float(result.loss[i])
        te = P.test_error(beta)
        rec["test_error"] = None if te is None else float(te)
        mse = P.test_mse(beta)
        rec["test_mse"] = None if mse is None else float(mse)
        rec["l1_norm"] = float(np.sum(np.abs(beta)))
        gain = -0.5 * (result.log_c[i] - result.log_c0[i])  # −ln(α_eff/α) per coordinate
        if support is not None:
            thr = SUPPORT_THRESHOLD * max(np.max(np.abs(beta)), 1e-300)
            found = np.abs(beta) > thr
            tp = np.count_nonzero(found & support)
            rec["precision"] = float(tp / max(np.count_nonzero(found), 1))
            rec["recall"] = float(tp / max(np.count_nonzero(support), 1))
            rec["gain_on_mean"] = float(np.mean(gain[support]))
            rec["gain_on_max"] = float(np.max(gain[support]))
            off = ~support
            rec["gain_off_mean"] = float(np.mean(gain[off])) if off.any() else None
            rec["gain_off_max"] = float(np.max(gain[off])) if off.any() else None
        else:
            rec.update(precision=None, recall=None, gain_on_mean=None, gain_on_max=None,
                       gain_off_mean=float(np.mean(gain)), gain_off_max=float(np.max(gain)))
        rec["gain_mean"] = float(np.mean(gain))
        rec["gain_max"] = float(np.max(gain))
        rec["prediction_rel_error"] = None
        rec["prediction_theory_rel_error"] = None
        rec["kkt_residual"] = None
        rec["_prediction"] = pred
        if pred is not None:
            rec["prediction_rel_error"] = rel_error(beta, pred.beta)
            rec["kkt_residual"] = float(pred.kkt_residual)
            if result.info.get("lr") is None:  # flow: c from the integrated gain, not from u⊙v
                if result.info.get("state_form") == "reduced":
                    # ln(u⊙v) = ln c0 − coef·gain by construction (dln.reduced): the same prediction
                    rec["prediction_theory_rel_error"] = rec["prediction_rel_error"]
                elif theory is not None:
                    rec["prediction_theory_rel_error"] = rel_error(beta, theory.beta)
        rec["steps"] = int(result.steps[i])
        rec["n_evals"] = int(result.n_evals[i])
        rec["t"] = float(result.t[i])
        rec["wall_time"] = wall_time
        rec["_beta"] = beta
        rec["_alpha_eff"] = result.alpha_eff[i]
        rec["_log_c"] = result.log_c[i]
        rec["_tilt"] = mirror_tilt(result, i)
        if extra:
            rec.update(extra)
    return rec


def simulate(problem: Problem, method: str = "gf", *, predict: bool = True, **kwargs) -> list[dict]:
    """Simulate a batch and return one record per run (see :func:`run_batch` for the arguments).

    Each record has the keys of results.csv but ``run`` and ``run_id`` (docs/design.md §5): the run
    and data keys :data:`RUN_KEYS` (method, variant, time, hyper-parameters, data, n, d, k, noise,
    design, seed), ``status``, ``train_loss``, ``test_error``, ``l1_norm``, support recovery, gains
    −ln(α_eff/α) on and off the support, the prediction error against argmin φ_{u⊙v}
    (``prediction_rel_error``) and against the gain-integral prediction
    (``prediction_theory_rel_error``, continuous time only: in discrete time the exact bookkeeping
    is u⊙v itself), steps, evaluations, final time and ``wall_time``; plus the arrays ``_beta``,
    ``_alpha_eff``, ``_log_c`` (ln u⊙v), ``_tilt`` (z0 − 2Φ, :func:`mirror_tilt`) and the
    ``_prediction`` object.
    """
    t0 = _time.perf_counter()
    result = run_batch(problem, method, **kwargs)
    wall = _time.perf_counter() - t0
    B = result.beta.shape[0]
    return records(result, predict=predict, wall_time=wall / B)
