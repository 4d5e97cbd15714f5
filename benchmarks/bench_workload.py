"""The sweep workload: 96 per-sample F-GR/B-GR runs to convergence, dln against what a user writes.

Workload (the integrator's acceptance test): α ∈ {0.02, 0.05, 0.1, 0.2} × γ ∈ {0.01, 0.02, 0.05} ×
ε ∈ {0.01, 0.02, 0.05, 0.1}, F-GR and B-GR, per-sample variant, n = 60, d = 200 (the data of
``dln sweep --n 60 --d 200``), each run to L ≤ 1e-24·L0.  Accuracy: the relative error of each limit
β∞ against a reference from SciPy's LSODA (``odeint``, exact Jacobian) at rtol = 1e-12 on the reduced
state; every side must reach ≤ 1e-7 on every run.

Sides, all timed in this process's run, one BLAS thread:

- ``dln sweep --workers 1`` end to end (``python -m dln sweep ...`` in a subprocess: interpreter
  start, imports, plan, flow, predictions, results.csv), and ``dln.integrate.flow`` in-process;
- the strongest simple peer: a loop of ``scipy.integrate.odeint`` (LSODA) per run on the reduced
  state (ν, μ) ∈ R^{2n} with the exact Jacobian, written here from docs/theory.md §7.5 — not
  calling dln's integrator;
- the naive baseline: a loop of ``solve_ivp(LSODA)`` in the 2d log coordinates without a Jacobian
  (``benchmarks.bench_lsoda``);
- JAX + diffrax (Kvaerno5, vmapped over the runs, reduced state, float64), when ``jax`` and
  ``diffrax`` are installed (``pip install .[bench]``); compile time is reported, not counted; timed
  on a subset of 8 runs and scaled to 96 (see ``run``: the full batch takes ~25 min);
- the FLOP floor: the evaluation-equivalents the SciPy loop needs (nfev + Jacobians in units of
  evaluations) × the FLOPs of one reduced evaluation (5 products of 2nd FLOPs) × 96 runs, at the
  NumPy matmul rate measured here on the evaluation's shapes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy.integrate import odeint

from benchmarks import make_row, summarize

BENCH = "workload"
ALPHAS = (0.02, 0.05, 0.1, 0.2)
GAMMAS = (0.01, 0.02, 0.05)
EPSS = (0.01, 0.02, 0.05, 0.1)
LOSS_TOL = 1e-24
ACCURACY = 1e-7
DLN_RTOL = 5e-8        # dln's tolerance: the largest limit error is ≈ rtol (docs: rtol → error)
SCIPY_RTOL = 1e-6      # the loosest odeint tolerance that meets ACCURACY on this workload
DIFFRAX_RTOL = 1e-4    # the loosest Kvaerno5 PID tolerance meeting ACCURACY on a 4-run subset (3e-8; 1e-5: 3e-9 at 1.6× the steps; 1e-6: 2e-10)
DIFFRAX_SUBSET = 8     # runs of the 96 timed with diffrax (see ``run``)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _grid(n, d, alphas, gammas, epss):
    return dict(method=["fgr", "bgr"], variant=["per-sample"], alpha=list(alphas), gamma=list(gammas),
                eps=list(epss), n=[n], d=[d], k=[5])


def _cli_args(grid, rtol, out):
    args = [sys.executable, "-m", "dln", "sweep", "--workers", "1", "--quiet", "--rtol", repr(rtol), "--out", out]
    for key, vals in grid.items():
        args += ["--" + key.replace("_", "-")] + [str(v) for v in vals]
    return args


def workload(n=60, d=200, alphas=ALPHAS, gammas=GAMMAS, epss=EPSS):
    """The sweep's plan, its problem and the runs as (alpha, gamma, signed eps) in results.csv order."""
    from dln.grid import build_plan
    from dln.workers import _problem

    grid = _grid(n, d, alphas, gammas, epss)
    plan = build_plan(grid)
    task = plan.tasks[0]
    P = _problem(task["problem"], task["data_seed"])
    runs = [(r["alpha"], r["gamma"], r["eps"] if r["method"] == "fgr" else -r["eps"]) for r in plan.runs]
    return grid, plan, P, runs


# ---------------------------------------------------------------------------------------------
# The peer: the reduced state with the exact Jacobian, one odeint per run (docs/theory.md §7.5)
# ---------------------------------------------------------------------------------------------
def reduced_system(X, y, alpha, gamma, eps):
    """f, Jacobian and β of per-example F-GR (signed ε) in (ν, μ): z = Xᵀν, ln c = 2 ln α − 8γ(X⊙X)ᵀμ,
    ν̇ = −(4/n)((1 − k)r + k r̃), μ̇ = r⊙r̃/n, r̃ = r(1 + 4εκ) + 4ε²r²(X⊙X⊙X)β, k = γ/ε."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    X2 = X * X
    X2T = np.ascontiguousarray(X2.T)
    X3 = X2 * X
    k, coef, l0 = gamma / eps, 8.0 * gamma, 2.0 * np.log(alpha)

    def parts(w):
        z = w[:n] @ X
        lc = l0 - coef * (w[n:] @ X2)
        u2, v2 = np.exp(lc + z), np.exp(lc - z)
        beta, m = u2 - v2, u2 + v2
        r = X @ beta - y
        kap, cube = X2 @ m, X3 @ beta
        rt = r * (1.0 + 4.0 * eps * kap) + 4.0 * eps * eps * r * r * cube
        return beta, m, r, kap, cube, rt

    def f(w, t=0.0):
        beta, m, r, kap, cube, rt = parts(w)
        return np.concatenate([-(4.0 / n) * ((1.0 - k) * r + k * rt), r * rt / n])

    def jac(w, t=0.0):
        beta, m, r, kap, cube, rt = parts(w)
        r_nu, r_mu = (X * m) @ XT, -coef * ((X * beta) @ X2T)
        k_nu, k_mu = (X2 * beta) @ XT, -coef * ((X2 * m) @ X2T)
        c_nu, c_mu = (X3 * m) @ XT, -coef * ((X3 * beta) @ X2T)
        a = (1.0 + 4.0 * eps * kap + 8.0 * eps * eps * r * cube)[:, None]
        b, c = (4.0 * eps * r)[:, None], (4.0 * eps * eps * r * r)[:, None]
        rt_nu, rt_mu = a * r_nu + b * k_nu + c * c_nu, a * r_mu + b * k_mu + c * c_mu
        J = np.empty((2 * n, 2 * n))
        J[:n, :n] = -(4.0 / n) * ((1.0 - k) * r_nu + k * rt_nu)
        J[:n, n:] = -(4.0 / n) * ((1.0 - k) * r_mu + k * rt_mu)
        J[n:, :n] = (rt[:, None] * r_nu + r[:, None] * rt_nu) / n
        J[n:, n:] = (rt[:, None] * r_mu + r[:, None] * rt_mu) / n
        return J

    return f, jac, lambda w: parts(w)[0]


def odeint_loop(P, runs, rtol, mxstep=100_000):
    """One odeint per run to t = 1e8 (LSODA's steps grow geometrically once converged)."""
    n = P.n
    ts = np.concatenate([[0.0], np.geomspace(1e-2, 1e8, 41)])
    betas, nfev, njev = [], [], []
    for alpha, gamma, eps in runs:
        f, jac, beta_of = reduced_system(P.X, P.y, alpha, gamma, eps)
        sol, info = odeint(f, np.zeros(2 * n), ts, Dfun=jac, rtol=rtol, atol=rtol * 1e-3, full_output=True,
                           mxstep=mxstep)
        if info["message"] != "Integration successful.":
            raise RuntimeError(f"odeint at rtol={rtol:g} failed on run {(alpha, gamma, eps)}: {info['message']}")
        betas.append(beta_of(sol[-1]))
        nfev.append(info["nfe"][-1])
        njev.append(info["nje"][-1])
    return np.array(betas), np.mean(nfev), np.mean(njev)


def _errors(betas, ref):
    return np.linalg.norm(betas - ref, axis=1) / np.linalg.norm(ref, axis=1)


# ---------------------------------------------------------------------------------------------
# dln
# ---------------------------------------------------------------------------------------------
def dln_in_process(plan, rtol):
    """The sweep's batch through ``dln.workers.run_task`` (flow + records), and its β in plan order."""
    from dln.integrate import flow
    from dln.workers import _problem, _run_flow
    from dln.grid import HYPER

    task = dict(plan.tasks[0], rtol=rtol)
    P = _problem(task["problem"], task["data_seed"])
    alpha = np.asarray(task["alpha"], dtype=np.float64)
    hp = {h: (None if task[h] is None else np.asarray(task[h], dtype=object)) for h in HYPER}
    t0 = time.perf_counter()
    result = _run_flow(task, P, alpha, hp, False)
    wall = time.perf_counter() - t0
    order = np.concatenate(result.info["segments"])
    beta = np.empty_like(result.beta)
    beta[order] = result.beta
    assert flow  # imported for the record: the flow is dln.integrate.flow
    return beta, wall, result


def dln_cli(grid, rtol):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.perf_counter()
        proc = subprocess.run(_cli_args(grid, rtol, os.path.join(tmp, "out")), env=env, capture_output=True,
                              text=True, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"dln sweep failed: {proc.stderr.strip()[-300:]}")
    return wall


# ---------------------------------------------------------------------------------------------
# JAX + diffrax
# ---------------------------------------------------------------------------------------------
def diffrax_loop(P, runs, rtol, t1=1e8):
    """Kvaerno5 on the reduced state, vmapped over the runs, to t1 = 1e8 (as the odeint loop); returns
    (β, steady s, compile s, steps per run)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import diffrax
    import jax.numpy as jnp

    X, y = jnp.asarray(P.X), jnp.asarray(P.y)
    n = P.n
    X2 = X * X
    X3 = X2 * X
    prm = jnp.asarray(np.array(runs, dtype=np.float64))

    def rhs(t, w, p):
        alpha, gamma, eps = p[0], p[1], p[2]
        k, coef = gamma / eps, 8.0 * gamma
        lc = 2.0 * jnp.log(alpha) - coef * (w[n:] @ X2)
        z = w[:n] @ X
        u2, v2 = jnp.exp(lc + z), jnp.exp(lc - z)
        beta, m = u2 - v2, u2 + v2
        r = X @ beta - y
        rt = r * (1.0 + 4.0 * eps * (X2 @ m)) + 4.0 * eps * eps * r * r * (X3 @ beta)
        return jnp.concatenate([-(4.0 / n) * ((1.0 - k) * r + k * rt), r * rt / n])

    def one(p):
        sol = diffrax.diffeqsolve(diffrax.ODETerm(rhs), diffrax.Kvaerno5(), t0=0.0, t1=t1, dt0=1e-3,
                                  y0=jnp.zeros(2 * n), args=p, saveat=diffrax.SaveAt(t1=True),
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol * 1e-3),
                                  max_steps=100_000)
        w = sol.ys[-1]
        lc = 2.0 * jnp.log(p[0]) - 8.0 * p[1] * (w[n:] @ X2)
        z = w[:n] @ X
        return jnp.exp(lc + z) - jnp.exp(lc - z), sol.stats["num_steps"]

    solve = jax.jit(jax.vmap(one))
    t0 = time.perf_counter()
    jax.block_until_ready(solve(prm))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    out, steps = jax.block_until_ready(solve(prm))
    steady = time.perf_counter() - t0
    return np.asarray(out), steady, max(first - steady, 0.0), np.asarray(steps)


def matmul_rate(P, B):
    """GFLOP/s of NumPy matmul on one reduced evaluation's shapes, (B×d)(d×n) and (B×n)(n×d)."""
    rng = np.random.default_rng(0)
    A, Bn = rng.standard_normal((B, P.d)), rng.standard_normal((B, P.n))
    XT = np.ascontiguousarray(P.X.T)
    reps, best = 20, np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            A @ XT
            Bn @ P.X
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * 2.0 * B * P.n * P.d / best / 1e9


# ---------------------------------------------------------------------------------------------
def run(quick: bool = False, *, smoke: bool = False) -> list[dict]:
    if smoke:
        grid, plan, P, runs = workload(10, 20, (0.1, 0.3), (0.05,), (0.1,))
    elif quick:
        grid, plan, P, runs = workload(60, 200, (0.05, 0.2), (0.02,), (0.05, 0.1))
    else:
        grid, plan, P, runs = workload()
    B = len(runs)
    ref, _, _ = odeint_loop(P, runs, 1e-12, mxstep=10_000_000)
    rows = []
    # dln in-process (flow only) and end to end (CLI), interleaved with nothing else running
    reps = 1 if smoke else 3
    ins, clis = [], []
    for _ in range(reps):
        beta, wall, res = dln_in_process(plan, DLN_RTOL)
        ins.append(wall)
        clis.append(dln_cli(grid, DLN_RTOL))
    err_dln = _errors(beta, ref)
    # the SciPy peer
    t0 = time.perf_counter()
    b_sp, nfev, njev = odeint_loop(P, runs, SCIPY_RTOL)
    t_sp = time.perf_counter() - t0
    err_sp = _errors(b_sp, ref)
    acc = f"max limit error: dln {err_dln.max():.1e}, odeint {err_sp.max():.1e} (need ≤ {ACCURACY:.0e})"
    ok = bool(err_dln.max() <= ACCURACY and err_sp.max() <= ACCURACY and np.all(res.status == "converged"))
    extra = {"runs": B, "dln_rtol": DLN_RTOL, "odeint_rtol": SCIPY_RTOL, "dln_steps_per_run": float(res.steps.mean()),
             "dln_evals_per_run": float(res.n_evals.mean()), "odeint_nfev_per_run": float(nfev),
             "odeint_njev_per_run": float(njev), "dln_in_process_s": float(np.median(ins))}
    rows.append(make_row(BENCH, f"{B} per-sample F-GR/B-GR runs, n={P.n}, d={P.d}: `dln sweep --workers 1` (CLI, "
                         "end to end) vs odeint loop on the reduced state (exact Jacobian)", unit="s",
                         ours=summarize(clis), baseline=summarize([t_sp]), baseline_name="odeint loop, reduced state",
                         ratio=t_sp / np.median(clis), target=None if smoke else 2.0, accuracy=acc,
                         accuracy_ok=ok, extra=extra))
    rows.append(make_row(BENCH, f"same, dln in-process (flow of one heterogeneous batch) vs the odeint loop",
                         unit="s", ours=summarize(ins), baseline=summarize([t_sp]),
                         baseline_name="odeint loop, reduced state", ratio=t_sp / np.median(ins), accuracy=acc,
                         accuracy_ok=ok))
    # the FLOP floor
    rate = matmul_rate(P, B)
    eval_flops = 5 * 2.0 * P.n * P.d
    jac_evals = 6 * 2.0 * P.n * P.n * P.d / eval_flops  # a Jacobian: 6 n×n×d products
    equivalents = nfev + njev * jac_evals
    floor = equivalents * eval_flops * B / (rate * 1e9)
    rows.append(make_row(BENCH, f"dln in-process vs the FLOP floor ({equivalents:.0f} evaluation-equivalents × "
                         f"{eval_flops / 1e3:.0f} kFLOP × {B} runs at {rate:.1f} GFLOP/s)", unit="s",
                         ours=summarize(ins), baseline=summarize([floor]), baseline_name="FLOP floor",
                         ratio=float(np.median(ins) / floor), ratio_name="times the floor",
                         target=None if smoke else 5.0, target_op="<=", accuracy=acc, accuracy_ok=ok,
                         extra={"matmul_gflops": rate, "evaluation_equivalents": equivalents}))
    # the naive baseline: 2d log coordinates, no Jacobian
    from benchmarks.bench_lsoda import limit_error, lsoda_run, make_rates  # noqa: F401

    sel = runs if not quick else runs[:2]
    t0 = time.perf_counter()
    b_naive = []
    for alpha, gamma, eps in sel:
        m = "fgr" if eps > 0 else "bgr"
        rates = make_rates(P.X, P.y, m, "per-sample", gamma=gamma, eps=abs(eps))
        b_naive.append(lsoda_run(P.X, P.y, rates, alpha, rtol=1e-8)["beta"])
    t_naive = (time.perf_counter() - t0) * len(runs) / len(sel)
    err_naive = _errors(np.array(b_naive), ref[:len(sel)])
    rows.append(make_row(BENCH, "`dln sweep --workers 1` (CLI) vs a loop of solve_ivp(LSODA) in the 2d log "
                         "coordinates, no Jacobian" + ("" if len(sel) == len(runs) else f" (estimated from {len(sel)} runs)"),
                         unit="s", ours=summarize(clis), baseline=summarize([t_naive]),
                         baseline_name="solve_ivp LSODA loop, (ln u, ln v)", ratio=t_naive / np.median(clis),
                         target=None if (smoke or quick) else 20.0,
                         accuracy=f"max limit error: dln {err_dln.max():.1e}, LSODA {err_naive.max():.1e}",
                         accuracy_ok=bool(err_dln.max() <= ACCURACY)))
    # JAX + diffrax
    if smoke:  # its compilation alone takes longer than the smoke test's budget
        rows.append(make_row(BENCH, "JAX + diffrax (Kvaerno5, vmapped)", status="skipped", notes="not in a smoke run"))
        return rows
    try:
        import diffrax  # noqa: F401
        import jax  # noqa: F401
    except ImportError:
        rows.append(make_row(BENCH, "JAX + diffrax (Kvaerno5, vmapped)", status="skipped",
                             notes="jax and diffrax are not installed (pip install .[bench])"))
        return rows
    # A documented subset: one vmapped diffrax solve of all 96 runs takes ~25 min on the 2-core VM (the
    # vmapped runs step in lockstep, each step costing ∝ the batch: measured 1.5 s for one run, 6.3 s
    # for four).  DIFFRAX_SUBSET runs spread over the grid are solved vmapped and the steady time is
    # scaled by 96/len(subset): a lower bound of the full batch (its lockstep steps are the maximum
    # over the runs, which can only grow with more runs).
    sub = runs[::max(1, len(runs) // DIFFRAX_SUBSET)][:DIFFRAX_SUBSET]
    b_jx, steady, compile_s, jx_steps = diffrax_loop(P, sub, DIFFRAX_RTOL)
    err_jx = _errors(b_jx, ref[::max(1, len(runs) // DIFFRAX_SUBSET)][:DIFFRAX_SUBSET])
    scaled = steady * len(runs) / len(sub)
    rows.append(make_row(BENCH, "`dln sweep --workers 1` (CLI) vs JAX + diffrax (Kvaerno5, vmapped, reduced state, "
                         f"rtol={DIFFRAX_RTOL:g}, compile time excluded; timed on {len(sub)} of the {len(runs)} runs, "
                         f"scaled by {len(runs)}/{len(sub)})", unit="s", ours=summarize(clis),
                         baseline=summarize([scaled]), baseline_name="diffrax Kvaerno5 (extrapolated)",
                         ratio=scaled / np.median(clis),
                         accuracy=f"max limit error: dln {err_dln.max():.1e}, diffrax {err_jx.max():.1e} "
                                  f"(on its {len(sub)} runs)",
                         accuracy_ok=bool(err_dln.max() <= ACCURACY and err_jx.max() <= ACCURACY),
                         extra={"diffrax_compile_s": compile_s, "diffrax_subset_s": steady,
                                "diffrax_subset_runs": len(sub), "diffrax_steps_per_run": float(jx_steps.mean())}))
    return rows
