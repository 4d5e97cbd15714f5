"""How cost grows: time against B, d and n; work against α; peak memory.

1. Exponents.  Time of one batched direction evaluation and of one step of ``flow`` (per-sample
   F-GR, α = 0.1, a fixed number of attempted steps) while one of B, d, n varies and the others
   stay fixed; the exponent is the least-squares slope of log(time) against log(size).  The goal
   is cost linear in B·n·d (exponent ≤ 1.15 for each; the Woodbury solve of ``flow`` has an
   O(B·n²·d + B·n³) part, so its n-exponent is expected above 1).
2. α from 1 to 1e-6 (single runs, GF and per-sample GR, n = 40, d = 100, rtol 1e-6): steps and
   direction evaluations to convergence.  The flow should need about log(1/α) more work, not 1/α:
   the target is a power-law exponent of evaluations against 1/α of at most 0.2 (1/α grows 10⁶×);
   the slope of evaluations against ln(1/α) is reported as well.  (Measured while writing this:
   per-sample GR at α = 1e-7 does not converge within 20 000 steps — the loss dithers between
   1e-24 and 1e-16 with half the steps rejected — so the range stops at 1e-6 as the issue asks.)
3. Peak memory of ``flow`` for B = 1000, d = 1000, n = 100 (per-sample F-GR, two steps, in a fresh
   subprocess): peak RSS (VmHWM) and tracemalloc peak of NumPy allocations; target < 2 GiB.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from analysis.predict import mirror_argmin
from benchmarks import THREADS, make_row, summarize, timeit
from dln import methods
from dln.integrate import flow
from dln.model import State, initial_state
from dln.problem import make_problem
from dln.simulate import run_batch

BENCH = "scaling"
GAMMA, EPS = 0.05, 0.1
FLOW_STEPS = 3


def _state(B, d, rng):
    a = np.log(0.1) + 0.5 * rng.standard_normal((B, d))
    b = np.log(0.1) + 0.5 * rng.standard_normal((B, d))
    return State(a, b, np.ones((B, d)), np.ones((B, d)))


def _fit(xs, ts):
    p = np.polyfit(np.log(xs), np.log(ts), 1)
    return float(p[0])


def exponent_rows(grid, repeats, min_time):
    """grid: {'B': [..], 'd': [..], 'n': [..], 'base': (B, n, d)}."""
    rows = []
    rng = np.random.default_rng(0)
    B0, n0, d0 = grid["base"]
    for what in ("direction", "flow step"):
        for var in ("B", "d", "n"):
            xs, med, samples = [], [], []
            for x in grid[var]:
                B, n, d = (x if var == "B" else B0), (x if var == "n" else n0), (x if var == "d" else d0)
                P = make_problem(n, d, min(5, n), seed=0, n_test=0)
                if what == "direction":
                    D = methods.make("fgr", P, variant="per-sample", gamma=GAMMA, eps=EPS)
                    st = _state(B, d, rng)
                    ts = timeit(lambda: D(st), repeats=repeats, min_time=min_time)
                else:
                    D = methods.make("fgr", P, variant="per-sample", gamma=GAMMA * np.ones(B), eps=EPS)
                    s0 = initial_state(d, B, alpha=0.1)
                    ts = timeit(lambda: flow(D, s0, max_steps=FLOW_STEPS, rtol=1e-6), repeats=max(1, repeats - 1),
                                number=1)
                    ts = [t / FLOW_STEPS for t in ts]
                xs.append(x)
                med.append(float(np.median(ts)))
                samples.append(summarize(ts))
            k = _fit(xs, med)
            tgt = 1.15
            rows.append(make_row(
                BENCH, f"{what} time vs {var} ∈ {{{', '.join(str(x) for x in xs)}}} "
                f"(others B={B0}, n={n0}, d={d0}; per-sample F-GR)",
                unit="s", ours=samples[-1], ratio=k, ratio_name=f"exponent in {var}", target=tgt,
                target_op="<=",
                notes=("Woodbury part O(B(n²d + n³)) per step" if (what == "flow step" and var == "n") else ""),
                extra={f"t[{var}={x}]": m for x, m in zip(xs, med)}))
    return rows


def alpha_rows(alphas, methods_=("gf", "gr")):
    P = make_problem(40, 100, 5, seed=0)
    rows = []
    for m in methods_:
        kw = dict(gamma=GAMMA) if m == "gr" else {}
        variant = "per-sample" if m == "gr" else "full"  # gf has no per-example penalty
        evals, steps, walls, errs, stat = [], [], [], [], []
        for a in alphas:
            t0 = time.perf_counter()
            res = run_batch(P, m, variant=variant, alpha=a, rtol=1e-6, **kw)
            walls.append(time.perf_counter() - t0)
            evals.append(int(res.n_evals[0]))
            steps.append(int(res.steps[0]))
            stat.append(str(res.status[0]))
            ref = mirror_argmin(P.X, P.y, log_c=res.log_c[0]).beta
            errs.append(float(np.linalg.norm(res.beta[0] - ref) / np.linalg.norm(res.beta[0])))
        inv = 1.0 / np.asarray(alphas)
        p = _fit(inv, evals)
        slope = float(np.polyfit(np.log(inv), evals, 1)[0])
        conv = all(s == "converged" for s in stat)
        rows.append(make_row(
            BENCH, f"{m} {variant}: work vs α ∈ [{min(alphas):g}, {max(alphas):g}] (n=40, d=100, single runs)",
            unit="evals", ours=summarize([evals[-1]]), ratio=p, ratio_name="exponent of evals in 1/α",
            target=0.2, target_op="<=", accuracy=f"max err {max(errs):.1e}" + ("" if conv else "; NOT ALL CONVERGED"),
            accuracy_ok=conv and max(errs) <= 1e-8,
            notes=f"evals ≈ {slope:.0f}·ln(1/α) + c; evals ×{evals[-1] / evals[0]:.1f} while 1/α ×{inv[-1] / inv[0]:.0e}",
            extra={**{f"evals[α={a:g}]": e for a, e in zip(alphas, evals)},
                   **{f"steps[α={a:g}]": s for a, s in zip(alphas, steps)},
                   **{f"s[α={a:g}]": w for a, w in zip(alphas, walls)}}))
    return rows


_MEM_CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
from threadpoolctl import threadpool_limits
from dln import methods
from dln.integrate import flow
from dln.model import initial_state
from dln.problem import make_problem
B, n, d, steps, threads = map(int, sys.argv[1:6])
P = make_problem(n, d, 5, seed=0, n_test=0)
D = methods.make("fgr", P, variant="per-sample", gamma=0.05 * np.ones(B), eps=0.1)
s0 = initial_state(d, B, alpha=0.1)
def hwm_kib():  # peak RSS of this address space (ru_maxrss may carry the parent's over exec)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
base = hwm_kib()
with threadpool_limits(threads):
    tracemalloc.start()
    t0 = time.perf_counter()
    r = flow(D, s0, max_steps=steps, rtol=1e-6)
    wall = time.perf_counter() - t0
    cur, peak = tracemalloc.get_traced_memory()
print(json.dumps(dict(rss_kib=hwm_kib(), rss_before_kib=base,
                      traced_peak=peak, wall=wall, steps=int(r.steps.max() + r.rejected.max()))))
"""


def memory_row(B, n, d, steps=2, target=True):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in sys.path if p]))
    proc = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(B), str(n), str(d), str(steps), str(THREADS)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=1800)
    if proc.returncode != 0:
        return make_row(BENCH, f"peak memory B={B}, d={d}, n={n}", status="error",
                        notes=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    gib = out["rss_kib"] / 2**20
    return make_row(
        BENCH, f"peak memory of flow, B={B}, d={d}, n={n} (per-sample F-GR, {steps} steps)",
        unit="GiB", ours=summarize([gib]), ratio=gib, ratio_name="peak RSS [GiB]",
        target=2.0 if target else None, target_op="<=",
        notes=f"tracemalloc peak {out['traced_peak'] / 2**30:.2f} GiB; RSS before the run "
              f"{out['rss_before_kib'] / 2**20:.2f} GiB; {out['wall']:.1f} s for {out['steps']} steps",
        extra={"tracemalloc_peak_gib": out["traced_peak"] / 2**30, "rss_before_gib": out["rss_before_kib"] / 2**20,
               "s_per_step": out["wall"] / max(out["steps"], 1)})


def run(quick: bool = False, *, smoke: bool = False) -> list[dict]:
    if smoke:
        grid = {"B": [4, 8], "d": [20, 40], "n": [5, 10], "base": (4, 5, 20)}
        rows = exponent_rows(grid, repeats=1, min_time=0.0)
        rows += alpha_rows([1.0, 0.1], methods_=("gf",))
        rows.append(memory_row(8, 10, 50, steps=1, target=False))
        return rows
    if quick:
        grid = {"B": [64, 256], "d": [100, 400], "n": [20, 40], "base": (64, 20, 100)}
        rows = exponent_rows(grid, repeats=2, min_time=0.02)
        rows += alpha_rows([1.0, 1e-2, 1e-4, 1e-6], methods_=("gf",))
        rows.append(memory_row(100, 100, 1000, steps=1, target=False))
        return rows
    grid = {"B": [64, 256, 1024], "d": [100, 400, 1600], "n": [10, 40, 160], "base": (256, 40, 400)}
    rows = exponent_rows(grid, repeats=3, min_time=0.1)
    rows += alpha_rows([1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6])
    rows.append(memory_row(1000, 100, 1000, steps=2))
    return rows
