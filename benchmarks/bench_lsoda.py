"""Baseline 1: a per-run loop of ``scipy.integrate.solve_ivp(method="LSODA")``.

What a user would otherwise write: one right-hand side per run, the NumPy formulas of docs/theory.md
(§2.1 GF, §7.2 exact GR, §7.3 F/B-GR with signed ε, §7.5 per-example GR / F-GR, §8 USAM), in the
log coordinates (ln u, ln v) that docs/theory.md §2.2 recommends, integrated one run at a time with a
terminal event on the loss (L ≤ loss_tol·L0, the same stopping rule as ``dln.integrate.flow``).

Both sides use the same relative tolerance ``RTOL`` (atol = rtol on the log coordinates, dln's
default) and the same loss threshold.  Accuracy of the limit:
‖β − argmin Q_{α_eff}‖/‖β‖ ≤ 1e-8 with α_eff² = u⊙v measured at the end of each run
(``analysis.predict.mirror_argmin(X, y, log_c=ln(u⊙v))``), checked for every run on both sides.
In log coordinates both integrators keep z − z0 ∈ range(Xᵀ) to round-off (a linear invariant),
so the criterion holds at any rtol; as a check that both integrate the *same* flow, the rows
also report the largest difference of ln(u⊙v) between dln and LSODA relative to the gain.

Note: (u, v) coordinates were measured too (not timed here): LSODA needs rtol ≤ 1e-8 there to
reach 1e-8 (2.6e-8 at rtol 1e-6, α = 0.01), at about the same cost as log coordinates.
"""
from __future__ import annotations

import time

import numpy as np
from scipy.integrate import solve_ivp

from analysis.predict import mirror_argmin
from benchmarks import make_row, summarize
from dln.methods import VARIANT_METHODS
from dln.problem import make_problem
from dln.simulate import run_batch

RTOL = 1e-6          # common tolerance of both integrators (see module docstring)
LOSS_TOL = 1e-24     # stop when L <= LOSS_TOL * L(0) (dln's default)
ACCURACY = 1e-8      # required relative error of the limit
T_MAX = 1e12
GAMMA, EPS, RHO = 0.05, 0.1, 0.05   # per-method table
BENCH = "lsoda"


# ---------------------------------------------------------------------------------------------
# The baseline's right-hand sides: independent NumPy transcriptions of docs/theory.md, one run each
# ---------------------------------------------------------------------------------------------
def make_rates(X, y, method, variant, gamma=None, eps=None, rho=None):
    """(a, b) ↦ (da, db) = (d ln u/dt, d ln v/dt) for one run (docs/theory.md §2, §7, §8)."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    X2 = X * X
    X2T = np.ascontiguousarray(X2.T)
    X3 = X2 * X
    full = variant == "full"

    def point(a, b):
        u2, v2 = np.exp(2.0 * a), np.exp(2.0 * b)
        beta = u2 - v2
        r = X @ beta - y
        return u2, v2, beta, r, XT @ r / n

    if method == "gf":
        def rates(a, b):
            g = point(a, b)[4]
            return -2.0 * g, 2.0 * g
        return rates
    if method == "gr":
        if full:  # §7.2: u̇/u = −[2g + 8γM(m⊙g) + 4γg²], v̇/v = 2g + 8γM(m⊙g) − 4γg²
            def rates(a, b):
                u2, v2, beta, r, g = point(a, b)
                Mmg = XT @ (X @ ((u2 + v2) * g)) / n
                return -(2.0 * g + gamma * (4.0 * g * g + 8.0 * Mmg)), 2.0 * g - gamma * (4.0 * g * g - 8.0 * Mmg)
            return rates

        def rates(a, b):  # §7.5: penalty (γ/2n)Σ‖∇_w ℓ_i‖², ‖∇_w ℓ_i‖² = 4r_i²κ_i
            u2, v2, beta, r, g = point(a, b)
            kappa = X2 @ (u2 + v2)
            lin = 8.0 * (XT @ (r * kappa)) / n
            sq = 4.0 * (X2T @ (r * r)) / n
            return -(2.0 * g + gamma * (lin + sq)), 2.0 * g + gamma * (lin - sq)
        return rates
    # finite differences (§7.3, §7.5) and USAM (§8): signed ascent e, weight k = γ/e
    if method == "usam":
        e, k = rho, 1.0
    elif method == "fgr":
        e, k = eps, gamma / eps
    elif method == "bgr":
        e, k = -eps, -gamma / eps
    else:
        raise ValueError(f"no baseline right-hand side for method {method!r}")
    if full:
        def rates(a, b):
            u2, v2, beta, r, g = point(a, b)
            fu, fv = 1.0 + 2.0 * e * g, 1.0 - 2.0 * e * g
            g_t = XT @ (X @ (u2 * fu * fu - v2 * fv * fv) - y) / n   # g̃ = ∇L(β̃)
            tu, tv = 2.0 * fu * g_t, -2.0 * fv * g_t
            return -(2.0 * g + k * (tu - 2.0 * g)), -(-2.0 * g + k * (tv + 2.0 * g))
        return rates

    def rates(a, b):
        u2, v2, beta, r, g = point(a, b)
        kappa = X2 @ (u2 + v2)
        r_t = r * (1.0 + 4.0 * e * kappa) + 4.0 * e * e * r * r * (X3 @ beta)   # r̃_i
        lin = XT @ r_t / n
        quad = X2T @ (e * r * r_t) / n
        tu, tv = 2.0 * (lin + 2.0 * quad), -2.0 * (lin - 2.0 * quad)
        return -(2.0 * g + k * (tu - 2.0 * g)), -(-2.0 * g + k * (tv + 2.0 * g))
    return rates


def lsoda_run(X, y, rates, alpha, rtol=RTOL, loss_tol=LOSS_TOL, t_max=T_MAX) -> dict:
    """One run of the baseline; returns the final state, counts and wall time."""
    n, d = X.shape
    log_thr = np.log(loss_tol * 0.5 * np.mean(y * y))

    def f(t, w):
        da, db = rates(w[:d], w[d:])
        return np.concatenate((da, db))

    def event(t, w):
        r = X @ (np.exp(2.0 * w[:d]) - np.exp(2.0 * w[d:])) - y
        return np.log(max(0.5 * (r @ r) / n, 1e-300)) - log_thr
    event.terminal = True
    w0 = np.full(2 * d, np.log(alpha))
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sol = solve_ivp(f, (0.0, t_max), w0, method="LSODA", rtol=rtol, atol=rtol, events=event)
    wall = time.perf_counter() - t0
    a, b = sol.y[:d, -1], sol.y[d:, -1]
    return dict(a=a, b=b, beta=np.exp(2 * a) - np.exp(2 * b), wall=wall, nfev=int(sol.nfev),
                njev=int(sol.njev), steps=len(sol.t) - 1, t=float(sol.t[-1]),
                converged=bool(sol.status == 1))


def limit_error(X, y, beta, log_c) -> float:
    """‖β − argmin Q_{α_eff}‖/‖β‖ with α_eff² = u⊙v measured (the accuracy criterion of the comparison)."""
    ref = mirror_argmin(X, y, log_c=log_c)
    return float(np.linalg.norm(beta - ref.beta) / max(np.linalg.norm(beta), 1e-300))


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------
def workload(size: str):
    """Groups (method, per-run hyper-parameters) of the issue-6 workload: α ∈ [0.01, 0.3] × γ × ε.

    full: 32 GR (8 α × 4 γ) + 32 F-GR + 32 B-GR (4 α × 2 γ × 4 ε) = 96 runs.
    """
    if size == "full":
        A, G = np.meshgrid(np.geomspace(0.01, 0.3, 8), [0.01, 0.02, 0.05, 0.1], indexing="ij")
        groups = [("gr", dict(alpha=A.ravel(), gamma=G.ravel()))]
        A, G, E = np.meshgrid(np.geomspace(0.01, 0.3, 4), [0.02, 0.05], [0.05, 0.1, 0.2, 0.4], indexing="ij")
        for m in ("fgr", "bgr"):
            groups.append((m, dict(alpha=A.ravel(), gamma=G.ravel(), eps=E.ravel())))
        return groups
    alphas = np.array([0.01, 0.3]) if size == "quick" else np.array([0.1])
    one = np.ones_like(alphas)
    return [("gr", dict(alpha=alphas, gamma=0.05 * one)),
            ("fgr", dict(alpha=alphas, gamma=0.05 * one, eps=0.1 * one)),
            ("bgr", dict(alpha=alphas, gamma=0.05 * one, eps=0.1 * one))]


def _params_of(kw, i):
    return {k: float(v[i]) for k, v in kw.items() if k != "alpha"}


def _dln(P, method, variant, kw, rtol):
    t0 = time.perf_counter()
    res = run_batch(P, method, variant=variant, rtol=rtol, loss_tol=LOSS_TOL, **kw)
    return res, time.perf_counter() - t0


def compare_group(P, method, variant, kw, rtol, repeats):
    """dln batch (``repeats`` times, interleaved with the one LSODA pass) vs the LSODA loop."""
    X, y = P.X, P.y
    B = len(kw["alpha"])
    times = []
    res, w = _dln(P, method, variant, kw, rtol)
    times.append(w)
    base = []
    for i in range(B):
        rates = make_rates(X, y, method, variant, **_params_of(kw, i))
        base.append(lsoda_run(X, y, rates, float(kw["alpha"][i]), rtol=rtol))
    for _ in range(repeats - 1):
        res, w = _dln(P, method, variant, kw, rtol)
        times.append(w)
    err_ours = [limit_error(X, y, res.beta[i], res.log_c[i]) for i in range(B)]
    err_base = [limit_error(X, y, r["beta"], r["a"] + r["b"]) for r in base]
    gain = np.abs(res.log_c - res.log_c0).max()
    dlogc = max(np.abs(res.log_c[i] - (r["a"] + r["b"])).max() for i, r in enumerate(base))
    return dict(times=times, base=base, res=res, err_ours=err_ours, err_base=err_base,
                conv_ours=int(np.sum(res.status == "converged")), conv_base=sum(r["converged"] for r in base),
                B=B, dlogc=float(dlogc), gain=float(gain))


def _acc_text(err_o, err_b):
    return f"max err ours {max(err_o):.1e}, LSODA {max(err_b):.1e} (need ≤{ACCURACY:.0e})"


def throughput_rows(P, size, variants, repeats, rtol=RTOL, tag=""):
    rows = []
    for variant in variants:
        groups = [compare_group(P, m, variant, kw, rtol, repeats) for m, kw in workload(size)]
        runs = sum(g["B"] for g in groups)
        ours_t = [sum(g["times"][k] for g in groups) for k in range(repeats)]
        base_runs = [r for g in groups for r in g["base"]]
        base_t = sum(r["wall"] for r in base_runs)
        ours = summarize([runs / t for t in ours_t])
        baseline = summarize([runs / base_t])
        err_o = [e for g in groups for e in g["err_ours"]]
        err_b = [e for g in groups for e in g["err_base"]]
        conv_ok = all(g["conv_ours"] == g["B"] and g["conv_base"] == g["B"] for g in groups)
        acc_ok = conv_ok and max(err_o) <= ACCURACY and max(err_b) <= ACCURACY
        per_run = [r["wall"] for r in base_runs]
        evals = np.concatenate([g["res"].n_evals for g in groups])
        extra = {
            "runs": runs, "rtol": rtol,
            "dln_s_per_batch": " + ".join(f"{m} {np.median(g['times']):.2f}" for (m, _), g in zip(workload(size), groups)),
            "dln_evals_per_run": float(np.mean(evals)),
            "dln_steps_per_run": float(np.mean(np.concatenate([g["res"].steps for g in groups]))),
            "lsoda_s_total": base_t,
            "lsoda_s_per_run_median": float(np.median(per_run)),
            "lsoda_s_per_run_max": float(np.max(per_run)),
            "lsoda_nfev_per_run": float(np.mean([r["nfev"] for r in base_runs])),
            "lsoda_njev_per_run": float(np.mean([r["njev"] for r in base_runs])),
            "max_dlogc_vs_lsoda": max(g["dlogc"] for g in groups),
            "max_gain_lnc": max(g["gain"] for g in groups),
        }
        methods = "/".join(m.upper().replace("FGR", "F-GR").replace("BGR", "B-GR") for m, _ in workload(size))
        rows.append(make_row(
            BENCH, f"{runs} runs {variant} {methods}, α∈[0.01,0.3]×γ×ε, n={P.n}, d={P.d}, rtol={rtol:.0e}{tag}",
            unit="runs/s", ours=ours, baseline=baseline, baseline_name="solve_ivp LSODA loop",
            ratio=ours["median"] / baseline["median"], target=20.0 if not tag else None,
            accuracy=_acc_text(err_o, err_b) + ("" if conv_ok else "; NOT ALL CONVERGED"), accuracy_ok=acc_ok,
            notes=f"|Δln(u⊙v)| dln vs LSODA ≤ {extra['max_dlogc_vs_lsoda']:.1e} (gain up to {extra['max_gain_lnc']:.2g})",
            extra=extra))
    return rows


def method_table(P, alphas, variants, methods=("gf", "gr", "fgr", "bgr", "usam"), rtol=RTOL):
    """Per-method evaluations and wall time per run, dln flow vs the LSODA loop (for the lead)."""
    X, y = P.X, P.y
    rows = []
    params = dict(gr=dict(gamma=GAMMA), fgr=dict(gamma=GAMMA, eps=EPS), bgr=dict(gamma=GAMMA, eps=EPS),
                  usam=dict(rho=RHO), gf={})
    for variant in variants:
        for m in methods:
            if variant != "full" and m not in VARIANT_METHODS:  # gf has no per-example penalty
                continue
            kw = dict(alpha=np.asarray(alphas, dtype=float), **params[m])
            res, w = _dln(P, m, variant, kw, rtol)
            base = [lsoda_run(X, y, make_rates(X, y, m, variant, **params[m]), float(a), rtol=rtol) for a in alphas]
            err_o = [limit_error(X, y, res.beta[i], res.log_c[i]) for i in range(len(alphas))]
            err_b = [limit_error(X, y, r["beta"], r["a"] + r["b"]) for r in base]
            conv = bool(np.all(res.status == "converged")) and all(r["converged"] for r in base)
            B = len(alphas)
            base_wall = float(np.mean([r["wall"] for r in base]))
            jac_f = 2 * P.d * np.mean([r["njev"] for r in base])
            extra = {"dln_evals": float(res.n_evals.mean()), "dln_steps": float(res.steps.mean()),
                     "dln_rejected": float(res.rejected.mean()), "dln_s_per_run": w / B,
                     "dln_evals_per_step": float(res.n_evals.sum() / max(1, (res.steps + res.rejected).sum())),
                     "lsoda_nfev": float(np.mean([r["nfev"] for r in base])),
                     "lsoda_nfev_jacobian": float(jac_f),
                     "lsoda_steps": float(np.mean([r["steps"] for r in base])),
                     "lsoda_s_per_run": base_wall}
            rows.append(make_row(
                BENCH, f"per-method: {m} {variant}, α∈{{{', '.join(f'{a:g}' for a in alphas)}}}, rtol={rtol:.0e}",
                unit="s/run", ours=summarize([w / B]), baseline=summarize([base_wall]),
                baseline_name="solve_ivp LSODA loop", ratio=base_wall / (w / B),
                accuracy=_acc_text(err_o, err_b) + ("" if conv else "; NOT ALL CONVERGED"),
                accuracy_ok=conv and max(err_o) <= ACCURACY and max(err_b) <= ACCURACY,
                notes="LSODA nfev includes its finite-difference Jacobians (2d evaluations each)",
                extra=extra))
    return rows


def _profile(fn):
    import cProfile
    import pstats
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    out = fn()
    prof.disable()
    wall = time.perf_counter() - t0
    return out, pstats.Stats(prof).stats, wall


def _cum(stats, pred):
    """Cumulative time of the functions matching pred(file, name), counting only calls from
    functions outside that set (so nested matches, e.g. _Solver.__init__ → factor, count once)."""
    sel = {k for k in stats if pred(k[0].replace("\\", "/"), k[2])}
    total = 0.0
    for k in sel:
        callers = stats[k][4]
        if not callers:
            total += stats[k][3]
        total += sum(v[3] for c, v in callers.items() if c not in sel)
    return total


def profile_rows(P, method="fgr", variant="per-sample", rtol=RTOL, size="full"):
    """Where the time goes (cProfile, so Python overhead is inflated): dln's flow on one workload
    group, and the LSODA loop on two of its runs."""
    kw = dict(workload(size))[method]
    res, st, wall = _profile(lambda: run_batch(P, method, variant=variant, rtol=rtol, loss_tol=LOSS_TOL, **kw))
    total = _cum(st, lambda f, n: f.endswith("dln/integrate.py") and n == "flow")
    red = lambda f: f.endswith("dln/reduced.py")  # noqa: E731
    parts = {
        "direction_evals": _cum(st, lambda f, n: red(f) and n == "rates"),
        # the Jacobian model: Gram matrices and the eigendecomposition of each refreshed run
        "jacobian_model_and_factor": _cum(st, lambda f, n: red(f) and n == "refresh"),
        "eigen_solves": _cum(st, lambda f, n: red(f) and n == "solve"),
        "error_norms": _cum(st, lambda f, n: red(f) and n == "error_parts"),
    }
    ncalls = sum(v[1] for (f, _, n), v in st.items() if red(f.replace("\\", "/")) and n == "rates")
    nsteps = sum(v[1] for (f, _, n), v in st.items() if red(f.replace("\\", "/")) and n == "error_parts")
    extra = {f"{k}_%": 100.0 * v / total for k, v in parts.items()}
    extra["other_integrator_%"] = 100.0 - sum(extra.values())
    extra["batched_direction_calls"] = ncalls
    extra["batched_steps"] = nsteps
    extra["calls_per_step"] = ncalls / max(nsteps, 1)
    extra["us_per_direction_call"] = 1e6 * parts["direction_evals"] / max(ncalls, 1)
    B = len(kw["alpha"])
    rows = [make_row(BENCH, f"profile: dln flow, {method} {variant}, {B} runs, rtol={rtol:.0e} (cProfile)",
                     unit="s", ours=summarize([wall]), ratio_name="", notes="shares of flow() time", extra=extra)]
    X, y = P.X, P.y
    idx = [0, B - 1]
    lst = {"rhs": 0.0, "lsoda": 0.0, "event": 0.0, "total": 0.0, "nfev": 0, "njev": 0}
    for i in idx:
        rates = make_rates(X, y, method, variant, **_params_of(kw, i))
        r, st2, w2 = _profile(lambda: lsoda_run(X, y, rates, float(kw["alpha"][i]), rtol=rtol))
        lst["total"] += w2
        lst["rhs"] += _cum(st2, lambda f, n: f.endswith("bench_lsoda.py") and n == "rates")
        lst["event"] += _cum(st2, lambda f, n: f.endswith("bench_lsoda.py") and n == "event")
        lst["nfev"] += r["nfev"]
        lst["njev"] += r["njev"]
    lst["lsoda"] = lst["total"] - lst["rhs"] - lst["event"]
    rows.append(make_row(
        BENCH, f"profile: LSODA loop, {method} {variant}, runs α={kw['alpha'][idx[0]]:g} and {kw['alpha'][idx[1]]:g} (cProfile)",
        unit="s", ours=None, baseline=summarize([lst["total"]]), baseline_name="solve_ivp LSODA loop", ratio_name="",
        notes="RHS share includes the finite-difference Jacobian columns (2d evaluations per Jacobian)",
        extra={"rhs_%": 100 * lst["rhs"] / lst["total"], "event_%": 100 * lst["event"] / lst["total"],
               "lsoda_internal_%": 100 * lst["lsoda"] / lst["total"],
               "nfev_per_run": lst["nfev"] / len(idx), "jacobian_fev_per_run": 2 * P.d * lst["njev"] / len(idx)}))
    return rows


def run(quick: bool = False, *, smoke: bool = False) -> list[dict]:
    if smoke:
        P = make_problem(10, 20, 3, seed=0, n_test=0)
        rows = throughput_rows(P, "smoke", ["per-sample"], repeats=1)
        rows += method_table(P, [0.2], ["full"], methods=("gf", "usam"))
        return rows
    P = make_problem(40, 100, 5, seed=0)
    if quick:
        rows = throughput_rows(P, "quick", ["per-sample"], repeats=1)
        rows += method_table(P, [0.1], ["per-sample", "full"])
        rows += profile_rows(P, size="quick")
        return rows
    rows = throughput_rows(P, "full", ["per-sample", "full"], repeats=3)
    rows += method_table(P, [0.01, 0.1, 0.3], ["per-sample", "full"])
    rows += profile_rows(P)
    for rtol in (1e-3, 1e-9):  # how the ratio depends on the common tolerance (no target)
        rows += throughput_rows(P, "quick", ["per-sample"], repeats=3, rtol=rtol, tag=" (rtol sweep, 6 runs)")
    return rows
