"""One call from a problem and hyper-parameters to checked results: ``dln.simulate``.

Builds the direction, runs ``flow`` or ``iterate`` on a batch, and turns the final states into
plain records (dicts, docs/design.md §6) carrying the contract keys of ``simulate --json``
(docs/design.md §5) and the columns of a sweep's ``results.csv``.
"""
from __future__ import annotations

import time as _time

import numpy as np

from analysis.predict import mirror_argmin

from . import methods as _methods
from .errors import check_choice, check_real, fail
from .integrate import DEFAULT_RTOL, Result, flow, iterate
from .model import initial_state
from .problem import Problem

TIMES = ("flow", "discrete")
#: threshold on |β_i| / max|β| for support recovery (precision / recall columns)
SUPPORT_THRESHOLD = 1e-3


def run_batch(problem: Problem, method: str = "gf", *, variant: str = "full", alpha=0.1,
              gamma=None, eps=None, rho=None, flood_level=None, time: str = "flow", lr=None,
              batch_size=None, label_noise=None, D: int = 2, u0=None, v0=None, seed=0,
              rtol: float = DEFAULT_RTOL, loss_tol: float = 1e-24, max_steps: int | None = None,
              record: bool = False, state_form: str = "auto") -> Result:
    """Run one method on a batch: hyper-parameters may be scalars or per-run arrays of equal length.

    Validation happens here (docs/design.md §6): a hyper-parameter that does not apply to the method
    or to the time mode is an error.  ``state_form`` is passed to ``flow`` (continuous time).
    """
    where = "simulate"
    check_choice("time", time, TIMES, where)
    if time == "flow":
        for name, val in (("lr", lr), ("batch_size", batch_size), ("label_noise", label_noise)):
            if val is not None:
                raise fail(name, where, "left unset with time='flow' (it applies to discrete time)", val)
    elif lr is None:
        raise fail("lr", where, "given with time='discrete'", None)
    direction = _methods.make(method, problem, variant=variant, D=D, gamma=gamma, eps=eps, rho=rho,
                              flood_level=flood_level)
    sizes = {direction.batch}
    if alpha is not None and np.ndim(alpha) == 1 and np.size(alpha) > 1:
        sizes.add(np.size(alpha))
    if lr is not None and np.ndim(lr) == 1 and np.size(lr) > 1:
        sizes.add(np.size(lr))
    sizes.discard(1)
    if len(sizes) > 1:
        raise fail("alpha", where, "of the same length as the other per-run hyper-parameters",
                   f"lengths {sorted(sizes)}")
    B = sizes.pop() if sizes else 1
    if alpha is not None and u0 is None:
        alpha = check_real("alpha", alpha, method, gt=0.0)
        per_run = np.ndim(alpha) == 1 and np.size(alpha) == B and B > 1
        # one value per run, passed as (B, d) so that B = d is not read as per-coordinate
        state = initial_state(problem.d, B, where=method,
                              alpha=np.repeat(alpha[:, None], problem.d, axis=1) if per_run else alpha)
    else:
        state = initial_state(problem.d, B, u0=u0, v0=v0, where=method)
    if time == "flow":
        result = flow(direction, state, rtol=rtol, loss_tol=loss_tol,
                      max_steps=20_000 if max_steps is None else max_steps, record=record, state_form=state_form)
    else:
        result = iterate(direction, state, lr, batch_size=batch_size,
                         label_noise=0.0 if label_noise is None else label_noise, seed=seed,
                         loss_tol=loss_tol, max_steps=1_000_000 if max_steps is None else max_steps,
                         record_every=1 if record else 0)
    if alpha is not None and u0 is None:
        result.info["alpha"] = np.broadcast_to(np.asarray(alpha, dtype=np.float64).reshape(-1) if np.ndim(alpha) <= 1
                                               and np.size(alpha) in (1, B) else np.nan, (B,))
    return result


def predict_run(result: Result, i: int):
    """The closed-form limit for run i: argmin φ_c − ⟨z0 − 2Φ, β⟩ over Xβ = y with the run's
    measured c = |u⊙v| (docs/theory.md §4 lemma; Φ = 0 in continuous time), or None where no exact
    prediction applies (depth D ≥ 3, runs that did not converge)."""
    if result.direction.D != 2 or result.status[i] != "converged":
        return None
    P = result.direction.problem
    z0 = result.z0[i] - 2.0 * result.tilt[i]
    return mirror_argmin(P.X, P.y, log_c=result.log_c[i], z0=z0 if np.any(z0) else None)


def _rel(x, ref):
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(x - ref) / (den if den > 0 else 1.0))


def records(result: Result, *, predict: bool = True, wall_time: float | None = None,
            extra: dict | None = None) -> list[dict]:
    """One plain record per run: hyper-parameters, status, losses, norms, gains, prediction."""
    direction = result.direction
    P = direction.problem
    B = result.beta.shape[0]
    out = []
    support = P.support
    # a diverged run may hold β ~ 1e300 or inf: its record says so (status "diverged"), silently
    preds = [predict_run(result, i) if predict else None for i in range(B)]  # converged runs only
    with np.errstate(over="ignore", invalid="ignore"):
        return [_record(result, i, P, support, preds[i], wall_time, extra) for i in range(B)]


def _record(result, i, P, support, pred, wall_time, extra) -> dict:
    direction = result.direction
    if True:
        beta = result.beta[i]
        rec = dict(method=direction.method, variant=direction.variant)
        for name in ("gamma", "eps", "rho", "flood_level"):
            p = direction.params.get(name)
            rec[name] = None if p is None else float(p[i if p.shape[0] > 1 else 0, 0])
        alpha = result.info.get("alpha")
        rec["alpha"] = None if alpha is None or not np.isfinite(alpha[i]) else float(alpha[i])
        lr = result.info.get("lr")
        rec["lr"] = None if lr is None else float(lr[i])
        rec["batch_size"] = result.info.get("batch_size")
        rec["label_noise"] = result.info.get("label_noise")
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
            rec["prediction_rel_error"] = _rel(beta, pred.beta)
            rec["kkt_residual"] = float(pred.kkt_residual)
            if result.info.get("lr") is None:  # flow: c from the integrated gain, not from u⊙v
                if result.info.get("state_form") == "reduced":
                    # ln(u⊙v) = ln c0 − coef·gain by construction (dln.reduced): the same prediction
                    rec["prediction_theory_rel_error"] = rec["prediction_rel_error"]
                else:
                    theory = mirror_argmin(P.X, P.y, log_c=result.log_c_theory[i],
                                           z0=result.z0[i] if np.any(result.z0[i]) else None)
                    rec["prediction_theory_rel_error"] = _rel(beta, theory.beta)
        rec["steps"] = int(result.steps[i])
        rec["n_evals"] = int(result.n_evals[i])
        rec["t"] = float(result.t[i])
        rec["wall_time"] = wall_time
        rec["_beta"] = beta
        rec["_alpha_eff"] = result.alpha_eff[i]
        if extra:
            rec.update(extra)
    return rec


def simulate(problem: Problem, method: str = "gf", *, predict: bool = True, **kwargs) -> list[dict]:
    """Simulate a batch and return one record per run (see :func:`run_batch` for the arguments).

    Each record holds the hyper-parameters, ``status``, ``train_loss``, ``test_error``, ``l1_norm``,
    support recovery, gains −ln(α_eff/α) on and off the support, the prediction error against
    argmin φ_{u⊙v} (``prediction_rel_error``) and against the gain-integral prediction
    (``prediction_theory_rel_error``, continuous time only: in discrete time the exact bookkeeping
    is u⊙v itself), plus the arrays ``_beta``, ``_alpha_eff``, ``_prediction``.
    """
    t0 = _time.perf_counter()
    result = run_batch(problem, method, **kwargs)
    wall = _time.perf_counter() - t0
    B = result.beta.shape[0]
    return records(result, predict=predict, wall_time=wall / B)
