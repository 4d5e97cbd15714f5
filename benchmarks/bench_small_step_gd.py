"""Baseline 2: small-step gradient descent, one run at a time.

How public DLN code bases approximate gradient flow: plain NumPy GD on (u, v) with a small step
η = 1e-3, one run at a time in a Python loop, stopped by a loss test (checked every
``CHECK_EVERY`` steps).  This project: ``dln.simulate.run_batch(method="gf")`` (the batched
SDIRK flow) on the same runs, with the same stopping rule L ≤ LOSS_TOL·L(0).

Accuracy — what "as accurate as ours" means here (stated in every row):

- both sides stop at the same relative loss LOSS_TOL = 1e-18, which is enough for both limits to
  be within 1e-8 of their closed forms (dln's default 1e-24 would cost GD far more steps; the
  looser threshold is generous to GD);
- dln (gradient flow): ‖β − argmin Q_{α_eff}‖/‖β‖ with α_eff² = u⊙v measured;
- GD: its limit is *not* the gradient-flow limit.  It is exactly (docs/theory.md §5.1)
  argmin_{Xβ=y} φ_c(β) + 2⟨Φ, β⟩ with c = u⊙v measured and the tilt Φ = Σ_k[artanh(2ηg_k) − 2ηg_k].
  The error vs that exact characterisation is what is checked (≤ 1e-8).  Φ is *not* negligible at
  the 1e-8 level (dropping it gives ~1e-7, also reported), and GD's limit differs from the GF limit
  by ~1e-5–1e-4 relative (reported): no number of η = 1e-3 steps reaches 1e-8 of the GF limit.
  Φ is accumulated by an *untimed* replica of the loop (same arithmetic, so the same iterates);
  the timed loop is the plain one.

Runs that would take too long (small α: GD needs ≈ t*/η steps, t* the gradient-flow time to the
loss threshold) are timed for ``CAP_S`` seconds to measure the cost per step and *estimated* as
(cost per step) × t*/η, with t* from the gradient flow (LSODA with a terminal event on the loss,
an independent integrator).  The estimator is validated on the runs that are completed
(``steps_est/steps`` in the table).  Estimated rows say so.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.integrate import solve_ivp

from analysis.predict import mirror_argmin
from benchmarks import make_row, summarize
from dln.problem import make_problem
from dln.simulate import rel_error as _rel, run_batch

ETA = 1e-3
LOSS_TOL = 1e-18
RTOL = 1e-6          # dln's flow tolerance (as in bench_lsoda)
ACCURACY = 1e-8
CHECK_EVERY = 10
BENCH = "small_step_gd"


def gd_plain(X, y, alpha, eta=ETA, loss_tol=LOSS_TOL, max_steps=10**9, time_cap=np.inf):
    """The baseline: plain NumPy GD on u, v (u ← u(1 − 2ηg), v ← v(1 + 2ηg)), one run."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    u = np.full(d, float(alpha))
    v = np.full(d, float(alpha))
    thr = loss_tol * 0.5 * (y @ y) / n
    k = 0
    t0 = time.perf_counter()
    while k < max_steps:
        r = X @ (u * u - v * v) - y
        if k % CHECK_EVERY == 0:
            if 0.5 * (r @ r) / n <= thr:
                break
            if time.perf_counter() - t0 > time_cap:
                break
        s = (2.0 * eta / n) * (XT @ r)
        u *= 1.0 - s
        v *= 1.0 + s
        k += 1
    wall = time.perf_counter() - t0
    r = X @ (u * u - v * v) - y
    return dict(u=u, v=v, steps=k, wall=wall, loss_ratio=float((r @ r) / (y @ y)),
                converged=bool(0.5 * (r @ r) / n <= thr))


def gd_tilt(X, y, alpha, steps, eta=ETA):
    """Untimed replica of :func:`gd_plain` for ``steps`` steps that also accumulates the exact
    tilt Φ = Σ_k [artanh(x_k) − x_k], x_k = 2ηg_k (docs/theory.md §5.1); returns (u, v, Φ)."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    u = np.full(d, float(alpha))
    v = np.full(d, float(alpha))
    phi = np.zeros(d)
    for _ in range(steps):
        r = X @ (u * u - v * v) - y
        s = (2.0 * eta / n) * (XT @ r)
        s2 = s * s
        phi += s * s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 / 9.0)))  # artanh(s) − s, |s| ≪ 1
        u *= 1.0 - s
        v *= 1.0 + s
    return u, v, phi


def gf_time_to_threshold(X, y, alpha, loss_tol=LOSS_TOL):
    """Gradient-flow time t* at which L = loss_tol·L(0) (LSODA in log coordinates, rtol 1e-10,
    terminal event): GD with a small step needs ≈ t*/η steps."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    log_thr = np.log(loss_tol * 0.5 * (y @ y) / n)

    def f(t, w):
        g = XT @ (X @ (np.exp(2 * w[:d]) - np.exp(2 * w[d:])) - y) / n
        return np.concatenate((-2.0 * g, 2.0 * g))

    def event(t, w):
        r = X @ (np.exp(2 * w[:d]) - np.exp(2 * w[d:])) - y
        return np.log(max(0.5 * (r @ r) / n, 1e-300)) - log_thr
    event.terminal = True
    with np.errstate(over="ignore", invalid="ignore"):
        sol = solve_ivp(f, (0, 1e12), np.full(2 * d, np.log(alpha)), method="LSODA", rtol=1e-10,
                        atol=1e-10, events=event)
    return float(sol.t[-1])


def run(quick: bool = False, *, smoke: bool = False) -> list[dict]:
    if smoke:
        P = make_problem(10, 20, 3, seed=0, n_test=0)
        alphas, cap, repeats = [1.0], 5.0, 1
    elif quick:
        P = make_problem(40, 100, 5, seed=0)
        alphas, cap, repeats = [1.0, 0.3], 3.0, 1
    else:
        P = make_problem(40, 100, 5, seed=0)
        alphas, cap, repeats = [0.3, 0.1, 0.03, 0.01], 12.0, 3
    X, y = P.X, P.y
    alphas = np.asarray(alphas, dtype=float)

    def ours():
        t0 = time.perf_counter()
        res = run_batch(P, "gf", alpha=alphas, rtol=RTOL, loss_tol=LOSS_TOL)
        return res, time.perf_counter() - t0

    # -- interleaved: dln, GD run 1, dln, GD run 2, ... (the GD loop is one pass) --------------
    ours_t = []
    res, w = ours()
    ours_t.append(w)
    per_alpha = []
    for i, a in enumerate(alphas):
        t_star = gf_time_to_threshold(X, y, a)
        steps_est = t_star / ETA
        probe = gd_plain(X, y, a, max_steps=min(2000, int(steps_est)))   # cost per step
        per_step = probe["wall"] / max(probe["steps"], 1)
        if per_step * steps_est <= cap:
            g = gd_plain(X, y, a)
            u, v, phi = gd_tilt(X, y, a, g["steps"])
            same = np.array_equal(u, g["u"]) and np.array_equal(v, g["v"])
            beta = u * u - v * v
            log_c = np.log(u * v)
            err_tilt = _rel(beta, mirror_argmin(X, y, log_c=log_c, z0=-2.0 * phi).beta)
            err_notilt = _rel(beta, mirror_argmin(X, y, log_c=log_c).beta)
            err_gf = _rel(beta, res.beta[i])
            per_alpha.append(dict(alpha=a, wall=g["wall"], steps=g["steps"], steps_est=steps_est,
                                  estimated=False, converged=g["converged"] and same,
                                  err_tilt=err_tilt, err_notilt=err_notilt, err_gf=err_gf,
                                  per_step=g["wall"] / max(g["steps"], 1), t_star=t_star))
        else:
            g = gd_plain(X, y, a, time_cap=cap)
            ps = g["wall"] / max(g["steps"], 1)
            per_alpha.append(dict(alpha=a, wall=ps * steps_est, steps=g["steps"], steps_est=steps_est,
                                  estimated=True, converged=None, err_tilt=None, err_notilt=None,
                                  err_gf=None, per_step=ps, t_star=t_star))
        if len(ours_t) < repeats:
            res2, w = ours()
            ours_t.append(w)
    while len(ours_t) < repeats:
        ours_t.append(ours()[1])
    B = len(alphas)
    err_ours = [_rel(res.beta[i], mirror_argmin(X, y, log_c=res.log_c[i]).beta) for i in range(B)]
    conv_ours = bool(np.all(res.status == "converged"))
    done = [p for p in per_alpha if not p["estimated"]]
    gd_ok = all(p["converged"] and p["err_tilt"] <= ACCURACY for p in done)
    acc_ok = conv_ours and max(err_ours) <= ACCURACY and gd_ok
    n_est = sum(p["estimated"] for p in per_alpha)
    gd_total = sum(p["wall"] for p in per_alpha)
    rows = []
    acc = (f"dln max err vs argmin Q_α_eff {max(err_ours):.1e}; GD (completed runs) vs its exact tilted "
           f"limit ≤ {max([p['err_tilt'] for p in done], default=float('nan')):.1e}, without Φ ≤ "
           f"{max([p['err_notilt'] for p in done], default=float('nan')):.1e}, vs the GF limit ≤ "
           f"{max([p['err_gf'] for p in done], default=float('nan')):.1e}")
    ours_s = summarize(ours_t)
    rows.append(make_row(
        BENCH, f"GF, {B} runs α∈{{{', '.join(f'{a:g}' for a in alphas)}}}, n={P.n}, d={P.d}, "
        f"stop at L≤{LOSS_TOL:.0e}·L0; GD η={ETA:g}",
        unit="s (all runs)", ours=ours_s, baseline=summarize([gd_total]),
        baseline_name="NumPy GD loop, η=1e-3", ratio=gd_total / ours_s["median"], target=100.0,
        accuracy=acc, accuracy_ok=acc_ok,
        notes=(f"{n_est} of {B} GD runs estimated (timed {cap:g} s each, cost/step × t*/η)" if n_est else
               "all GD runs completed") + "; GD limit ≠ GF limit (see accuracy)",
        extra={"dln_evals_per_run": float(res.n_evals.mean()), "dln_steps_per_run": float(res.steps.mean()),
               "gd_steps_total": int(sum(p["steps"] if not p["estimated"] else p["steps_est"] for p in per_alpha))}))
    for i, p in enumerate(per_alpha):
        rows.append(make_row(
            BENCH, f"  α={p['alpha']:g}: one GD run vs dln batch/{B}" + (" (GD estimated)" if p["estimated"] else ""),
            unit="s/run", ours=summarize([ours_s["median"] / B]), baseline=summarize([p["wall"]]),
            baseline_name="NumPy GD loop", ratio=p["wall"] / (ours_s["median"] / B),
            accuracy=("" if p["estimated"] else
                      f"GD vs tilted limit {p['err_tilt']:.1e}, no-Φ {p['err_notilt']:.1e}, vs GF {p['err_gf']:.1e}; "
                      f"dln {err_ours[i]:.1e}"),
            accuracy_ok=None if p["estimated"] else bool(p["converged"] and p["err_tilt"] <= ACCURACY),
            extra={"gd_steps": int(p["steps"]), "gd_steps_est": float(p["steps_est"]),
                   "steps_est_over_steps": (None if p["estimated"] else p["steps_est"] / max(p["steps"], 1)),
                   "gd_us_per_step": p["per_step"] * 1e6, "gf_t_star": p["t_star"],
                   "dln_evals": int(res.n_evals[i]), "dln_steps": int(res.steps[i])}))
    return rows
