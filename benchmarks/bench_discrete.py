"""Discrete time: the per-step cost of ``dln.discrete.iterate`` against a plain NumPy GD loop.

1. Single run, GD (method gf, full batch, D = 2) at (n, d) = (20, 30) and (40, 100), a fixed number
   of steps K (a small step: no run stops early).  Baselines, written here independently and timed
   interleaved with ``iterate`` in the same process:

   - **plain loop**: GD on the weights, u ← u⊙(1 − 2ηg), v ← v⊙(1 + 2ηg), g = Xᵀ(Xβ − y)/n — the
     15-line loop of public DLN codes, with no status test, no bookkeeping, no sign handling;
   - **plain log loop**: the same update in log coordinates, ln|u| += ln|1 − 2ηg| (what ``iterate``
     computes per step, without its status tests, tilt Φ, gain integral or sign tracking).

   The ratio is iterate's time per step over the plain loop's (target ≤ 1).  Both reach the same β
   after K steps (checked to 1e-12 relative).  ``iterate`` takes its fused GD kernel here
   (``dln.discrete._GFKernel``); ``extra`` splits its step into the kernel's steps (``block`` timed
   alone on blocks as long as iterate's, from the same state) and the rest (the deferred block
   checks: statuses, Φ, the gain, signs), and gives the generic path's time per step
   (``dln.discrete.FUSED = False``: the rates of ``dln.methods.Direction`` and the GD rule).
2. Cost per step against the batch size B = 1, 4, 16, 64, 256 (GD, runs with different α and η,
   n = 20, d = 30): time per step and per run-step, and the least-squares exponent of the time per
   step against B over B ≥ 16 (linear cost: exponent ≤ 1; below 1 while per-call overheads are still
   being amortized).  Each batch's first run must equal the same run alone to 1e-12.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks import interleaved, make_row, summarize
from dln import discrete
from dln.discrete import iterate
from dln.methods import gf
from dln.model import initial_state
from dln.problem import make_problem
from dln.simulate import rel_error as _rel

BENCH = "discrete"
ALPHA = 0.1


def plain_gd(X, y, alpha, eta, steps):
    """GD on (u, v) for β = u⊙u − v⊙v, L = (1/2n)‖Xβ − y‖²: the baseline loop."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    u = np.full(d, alpha)
    v = np.full(d, alpha)
    for _ in range(steps):
        r = X @ (u * u - v * v) - y
        x = (2.0 * eta / n) * (XT @ r)  # x = 2ηg
        u *= 1.0 - x
        v *= 1.0 + x
    return u * u - v * v


def plain_log_gd(X, y, alpha, eta, steps):
    """The same GD in log coordinates a = ln|u|, b = ln|v| (u, v > 0 at these small steps)."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    a = np.full(d, np.log(alpha))
    b = a.copy()
    for _ in range(steps):
        r = X @ (np.exp(2.0 * a) - np.exp(2.0 * b)) - y
        x = (2.0 * eta / n) * (XT @ r)
        a += np.log(np.abs(1.0 - x))
        b += np.log(np.abs(1.0 + x))
    return np.exp(2.0 * a) - np.exp(2.0 * b)


def single_run_rows(sizes, steps, eta, repeats):
    rows = []
    for n, d in sizes:
        P = make_problem(n, d, 3, seed=0, n_test=0)
        direction = gf(P)
        state = initial_state(d, 1, alpha=ALPHA)
        out = {}

        def ours():
            out["res"] = iterate(direction, state, eta, max_steps=steps)

        def plain():
            out["plain"] = plain_gd(P.X, P.y, ALPHA, eta, steps)

        def plain_log():
            out["log"] = plain_log_gd(P.X, P.y, ALPHA, eta, steps)

        kernel = discrete._GFKernel(direction)
        kb = min(steps, discrete._block(1, d, kernel.block_scale))
        kernel.setup(kb, 1, np.full((1, 1), eta))
        ab = np.stack([state.a, state.b], axis=1)
        F = np.empty((kb, 1, 2, d))

        def kernel_steps():  # the fused steps alone, in blocks as iterate takes them
            for _ in range(steps // kb):
                kernel.block(ab, F, kb)

        def generic():
            discrete.FUSED = False
            try:
                out["generic"] = iterate(direction, state, eta, max_steps=steps)
            finally:
                discrete.FUSED = True

        times = interleaved({"ours": ours, "plain": plain, "log": plain_log, "kernel": kernel_steps,
                             "generic": generic}, repeats=repeats)
        per = {k: [t / steps for t in v] for k, v in times.items()}
        per["kernel"] = [t * steps / (steps // kb * kb) for t in per["kernel"]]
        res = out["res"]
        ok_run = res.status[0] == "max_steps" and res.steps[0] == steps
        e_plain, e_log = _rel(res.beta[0], out["plain"]), _rel(res.beta[0], out["log"])
        e_gen = _rel(res.beta[0], out["generic"].beta[0])
        acc_ok = bool(ok_run and e_plain <= 1e-12 and e_log <= 1e-12 and e_gen <= 1e-12)
        ours_s, plain_s, log_s = summarize(per["ours"]), summarize(per["plain"]), summarize(per["log"])
        kernel_med = summarize(per["kernel"])["median"]
        generic_med = summarize(per["generic"])["median"]
        ratio = ours_s["median"] / plain_s["median"]
        rows.append(make_row(
            BENCH, f"GD, one run, n={n}, d={d}, {steps} steps: time per step vs plain NumPy GD loop",
            unit="µs/step", ours=[t * 1e6 for t in per["ours"]], baseline=[t * 1e6 for t in per["plain"]],
            baseline_name="plain NumPy GD loop on (u, v)", ratio=ratio, ratio_name="time ratio (ours/plain)",
            target=1.0, target_op="<=",
            accuracy=(f"same β after {steps} steps: rel. diff {e_plain:.1e} (plain), {e_log:.1e} (plain log), "
                      f"{e_gen:.1e} (generic path)"),
            accuracy_ok=acc_ok,
            notes=(f"plain log-domain loop {log_s['median'] * 1e6:.1f} µs/step (ratio "
                   f"{ours_s['median'] / log_s['median']:.2f}); of iterate's step, the fused kernel's steps take "
                   f"{kernel_med * 1e6:.1f} µs, the block checks the rest; the generic path "
                   f"{generic_med * 1e6:.1f} µs/step"),
            extra={"plain_log_us_per_step": log_s["median"] * 1e6,
                   "ratio_vs_plain_log": ours_s["median"] / log_s["median"],
                   "kernel_us_per_step": kernel_med * 1e6,
                   "block_check_us_per_step": (ours_s["median"] - kernel_med) * 1e6,
                   "generic_us_per_step": generic_med * 1e6,
                   "ratio_generic_vs_plain": generic_med / plain_s["median"]}))
    return rows


def scaling_rows(Bs, steps_of, eta, repeats, n=20, d=30):
    P = make_problem(n, d, 3, seed=0, n_test=0)
    direction = gf(P)
    single = iterate(direction, initial_state(d, 1, alpha=ALPHA), eta, max_steps=steps_of(1))
    rows, per_step, per_run = [], [], []
    for B in Bs:
        K = steps_of(B)
        alpha = ALPHA * (1.0 + np.arange(B) / B)  # distinct runs
        lr = eta * (1.0 - 0.5 * np.arange(B) / B)
        lr[0] = eta
        state = initial_state(d, B, alpha=alpha)
        out = {}

        def ours():
            out["res"] = iterate(direction, state, lr, max_steps=K)

        ts = [t / K for t in interleaved({"ours": ours}, repeats=repeats)["ours"]]
        res = out["res"]
        same = True
        if K == steps_of(1):
            same = _rel(res.beta[0], single.beta[0]) <= 1e-12
        s = summarize([t * 1e6 for t in ts])
        per_step.append(s["median"])
        per_run.append(s["median"] / B)
        rows.append(make_row(BENCH, f"  GD batch B={B}, n={n}, d={d}: time per step", unit="µs/step", ours=s,
                             accuracy="" if K != steps_of(1) else "run 0 = the run alone to 1e-12",
                             accuracy_ok=bool(same and np.all(res.steps == K)),
                             extra={"us_per_run_step": s["median"] / B, "steps": K}))
    big = [i for i, B in enumerate(Bs) if B >= 16]
    if len(big) >= 2:
        slope = float(np.polyfit(np.log([Bs[i] for i in big]), np.log([per_step[i] for i in big]), 1)[0])
        rows.insert(0, make_row(
            BENCH, f"GD batch, time per step against B ∈ {{{', '.join(str(Bs[i]) for i in big)}}} (n={n}, d={d})",
            unit="exponent", ratio=slope, ratio_name="exponent of time/step in B", target=1.05, target_op="<=",
            notes=f"per run-step: {per_run[0]:.1f} µs at B={Bs[0]} … {per_run[-1]:.2f} µs at B={Bs[-1]}",
            extra={f"us_per_run_step_B{B}": v for B, v in zip(Bs, per_run)}))
    return rows


def run(quick: bool = False, *, smoke: bool = False) -> list[dict]:
    if smoke:
        return (single_run_rows([(5, 10)], steps=40, eta=1e-3, repeats=1)
                + scaling_rows([1, 16, 32], lambda B: 20, 1e-3, repeats=1, n=5, d=10))
    if quick:
        return (single_run_rows([(20, 30), (40, 100)], steps=1000, eta=1e-3, repeats=3)
                + scaling_rows([1, 4, 16, 64], lambda B: 500 if B <= 16 else 200, 1e-3, repeats=2))
    return (single_run_rows([(20, 30), (40, 100)], steps=4000, eta=1e-3, repeats=11)
            + scaling_rows([1, 4, 16, 64, 256], lambda B: 2000 if B <= 16 else 500, 1e-3, repeats=5))
