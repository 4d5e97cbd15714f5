"""Baseline 4: the machine's limit — achieved FLOP rate of the batched direction vs NumPy matmul.

For a batched ``dln.methods.Direction`` at large B, count the matrix products one evaluation
makes (by wrapping the ``Data`` products ``fwd``/``fwd_with``/``back`` of the direction during one
untimed call: each is a (B×d)·(d×n) or (B×n)·(n×d) product, 2·B·n·d flops), then compare

    achieved rate  = matmul flops / (time of one direction evaluation)
    machine limit  = the same flops / (time of the same matrix products alone, NumPy matmul on
                     the same shapes, preallocated inputs and outputs, measured in the same run)

The ratio is the fraction of the evaluation spent in matrix products (target ≥ 0.5 for
B ≥ 256); everything else (exp, element-wise algebra, temporaries) is overhead.
"""
from __future__ import annotations

import numpy as np

from benchmarks import interleaved, make_row, summarize
from dln import methods
from dln.model import State
from dln.problem import make_problem

BENCH = "flops"
GAMMA, EPS = 0.05, 0.1
CASES = {"gr": ("gr", "full", dict(gamma=GAMMA)),
         "fgr-ps": ("fgr", "per-sample", dict(gamma=GAMMA, eps=EPS))}


def count_products(direction, state):
    """Matrix products of one evaluation: list of ('fwd' | 'back', B, n, d)."""
    data = direction.data
    n, d = data.X.shape[-2:]
    calls = []

    def wrap(name, kind):
        f = getattr(data, name)

        def counted(*args, **kw):
            out = f(*args, **kw)
            B = int(np.prod(out.shape[:-1]))
            calls.append((kind, B, n, d))
            return out
        return counted
    try:
        for name, kind in (("fwd", "fwd"), ("fwd_with", "fwd"), ("back", "back")):
            setattr(data, name, wrap(name, kind))
        direction(state)
    finally:
        for name in ("fwd", "fwd_with", "back"):
            data.__dict__.pop(name, None)
    return calls


def matmul_only(calls, X, rng):
    """A callable doing the same products with plain NumPy matmul (preallocated in/out)."""
    n, d = X.shape
    XT = np.ascontiguousarray(X.T)
    bufs = []
    for kind, B, _, _ in calls:
        if kind == "fwd":
            bufs.append((rng.standard_normal((B, d)), XT, np.empty((B, n))))
        else:
            bufs.append((rng.standard_normal((B, n)), X, np.empty((B, d))))

    def f():
        for A, M, out in bufs:
            np.matmul(A, M, out=out)
    return f


def run(quick: bool = False, *, smoke: bool = False) -> list[dict]:
    if smoke:
        shapes, Bs, repeats, min_time = [(10, 20)], [16], 1, 0.0
    elif quick:
        shapes, Bs, repeats, min_time = [(40, 100)], [256, 1024], 3, 0.05
    else:
        shapes, Bs, repeats, min_time = [(40, 100), (100, 1000)], [256, 1024, 4096], 5, 0.2
    rows = []
    rng = np.random.default_rng(0)
    for n, d in shapes:
        P = make_problem(n, d, 3, seed=0, n_test=0)
        for key, (m, variant, kw) in CASES.items():
            D = methods.make(m, P, variant=variant, **kw)
            for B in Bs:
                a = np.log(0.1) + 0.5 * rng.standard_normal((B, d))
                b = np.log(0.1) + 0.5 * rng.standard_normal((B, d))
                st = State(a, b, np.ones((B, d)), np.ones((B, d)))
                calls = count_products(D, st)
                flops = sum(2.0 * Bc * nc * dc for _, Bc, nc, dc in calls)
                mm = matmul_only(calls, P.X, rng)
                t = interleaved({"dir": lambda: D(st), "mm": mm}, repeats=repeats, min_time=min_time)
                rate = summarize([flops / x / 1e9 for x in t["dir"]])
                peak = summarize([flops / x / 1e9 for x in t["mm"]])
                frac = rate["median"] / peak["median"]
                rows.append(make_row(
                    BENCH, f"{m} {variant}, B={B}, n={n}, d={d}: {len(calls)} products/eval",
                    unit="GFLOP/s", ours=rate, baseline=peak, baseline_name="NumPy matmul, same shapes",
                    ratio=frac, ratio_name="fraction of matmul rate",
                    target=0.5 if (B >= 256 and not smoke) else None,
                    accuracy="" if calls else "no products counted (Data API changed?)",
                    accuracy_ok=bool(calls) or None,
                    extra={"mflop_per_eval": flops / 1e6, "us_per_eval": float(np.median(t["dir"]) * 1e6),
                           "us_matmul_only": float(np.median(t["mm"]) * 1e6),
                           "us_per_run_eval": float(np.median(t["dir"]) * 1e6 / B)}))
    return rows
