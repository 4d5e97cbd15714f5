"""Benchmark: ``analysis.predict.mirror_argmin`` (dual Newton, n unknowns) against
``scipy.optimize.minimize(method="SLSQP")`` on the primal problem (d unknowns) with the
analytic gradient of φ_c and the constraint Jacobian X (docs/theory.md §15).

Accuracy is measured against a reference solution (ours at tol = 1e-14); both solvers are
asked for their tightest accuracy, and the achieved relative error of each is reported next
to its time. The baseline runs in the same process, on the same data.

    python benchmarks/bench_predict.py [--quick]
    from benchmarks.bench_predict import run
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
import scipy.optimize

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from analysis.potentials import grad_phi, phi  # noqa: E402
from analysis.predict import min_l2, mirror_argmin  # noqa: E402


def _problem(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    beta_star = np.zeros(d)
    k = max(1, n // 5)
    beta_star[rng.choice(d, size=k, replace=False)] = rng.choice([-1.0, 1.0], size=k) * rng.uniform(1, 2, size=k)
    return X, X @ beta_star


def _time(fn, repeats):
    """Wall-clock times (perf_counter) and CPU times (process_time, all threads) per repeat."""
    times, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, (times, cpu)


def _slsqp(X, y, c, maxiter):
    def objective(beta):
        return phi(beta, c)

    def jac(beta):
        return grad_phi(beta, c)

    return scipy.optimize.minimize(
        objective, min_l2(X, y), jac=jac, method="SLSQP",
        constraints=[{"type": "eq", "fun": lambda b: X @ b - y, "jac": lambda b: X}],
        # ftol = 1e-14 is the tightest setting at which SLSQP still reports success here; its
        # β then plateaus at ~1e-7 relative error (ftol acts on φ, i.e. on ‖Δβ‖²).
        options={"ftol": 1e-14, "maxiter": maxiter},
    )


def _row(solver, n, d, alpha, timing, rel_error, primal_residual, status, iterations):
    times, cpu = timing
    return {
        "solver": solver, "n": n, "d": d, "alpha": alpha,
        "median_s": float(np.median(times)), "min_s": float(np.min(times)), "max_s": float(np.max(times)),
        "cpu_median_s": float(np.median(cpu)), "repeats": len(times), "rel_error": float(rel_error), "primal_residual": float(primal_residual),
        "status": status, "iterations": int(iterations), "speedup": None,
    }


# SLSQP's QP step is O(d³) in unblocked Fortran (~1–3 s per iteration at d = 1000): there it
# runs once, at α = 0.1, capped at 30 iterations, so the speed-up is a lower bound (the row's
# status and rel err say what the cap cost; uncapped it was still running after 30 minutes).
SLSQP_MAXITER = {100: 1000, 1000: 30}


def run(quick: bool = False, log=None) -> list[dict]:
    """Time both solvers; returns one record per (solver, size, α).

    quick: fewer repeats and only the smallest SLSQP size (SLSQP is O(d³) per iteration).
    log: optional callable receiving each record as soon as it is measured.
    """
    rows = []
    emit = log or (lambda row: None)
    sizes = [(10, 100), (100, 1000)]
    for n, d in sizes:
        for alpha in (0.1, 0.01):
            c = alpha**2
            X, y = _problem(n, d, seed=n + d)
            reference = mirror_argmin(X, y, c, tol=1e-14).beta
            ref_norm = np.linalg.norm(reference)
            repeats = 3 if (quick or d >= 1000) else 7

            ours, times = _time(lambda: mirror_argmin(X, y, c), repeats)
            rows.append(_row("mirror_argmin", n, d, alpha, times,
                             np.linalg.norm(ours.beta - reference) / ref_norm,
                             ours.primal_residual, ours.status, ours.iterations))
            emit(rows[-1])
            if d >= 1000 and (quick or alpha != 0.1):
                continue
            base, times = _time(lambda: _slsqp(X, y, c, SLSQP_MAXITER[d]), 1 if d >= 1000 else repeats)
            rows.append(_row("SLSQP", n, d, alpha, times,
                             np.linalg.norm(base.x - reference) / ref_norm,
                             np.linalg.norm(X @ base.x - y) / np.linalg.norm(y),
                             "success" if base.success else f"fail: {base.message}", base.nit))
            rows[-1]["speedup"] = rows[-1]["median_s"] / rows[-2]["median_s"]
            emit(rows[-1])

    n, d, alpha = 1000, 10_000, 1e-6
    X, y = _problem(n, d, seed=0)
    ours, times = _time(lambda: mirror_argmin(X, y, alpha**2), 1 if quick else 3)
    rows.append(_row("mirror_argmin", n, d, alpha, times, np.nan, ours.primal_residual, ours.status, ours.iterations))
    emit(rows[-1])
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'solver':<14}{'n':>6}{'d':>7}{'alpha':>8}{'median s':>11}{'min s':>10}{'max s':>10}{'cpu s':>10}"
            f"{'rel err':>10}{'resid':>10}{'iter':>6}{'speedup':>9}  status")
    lines = [head, "-" * len(head)]
    for r in rows:
        speed = f"{r['speedup']:.1f}x" if r["speedup"] else ""
        lines.append(
            f"{r['solver']:<14}{r['n']:>6}{r['d']:>7}{r['alpha']:>8.0e}{r['median_s']:>11.4f}{r['min_s']:>10.4f}"
            f"{r['max_s']:>10.4f}{r['cpu_median_s']:>10.4f}{r['rel_error']:>10.1e}{r['primal_residual']:>10.1e}{r['iterations']:>6}{speed:>9}  {r['status']}"
        )
    lines.append("speedup = SLSQP median / mirror_argmin median (wall); cpu s = median process time (all threads);")
    lines.append("rel err = ||beta - ref|| / ||ref||, ref = mirror_argmin(tol=1e-14); resid = ||X beta - y|| / ||y||.")
    return "\n".join(lines)


if __name__ == "__main__":
    records = run(quick="--quick" in sys.argv[1:], log=lambda row: print(row, flush=True))
    print(format_table(records))
