"""Baseline 3: PyTorch autograd, batched with ``torch.func.vmap`` on CPU.

What a PyTorch user would write: the loss L(w) = (1/2n)‖X(u⊙u − v⊙v) − y‖² on w = (u, v);
exact GR as the gradient of L + (γ/2)‖∇_w L‖² by double back-propagation
(``grad(lambda w: L(w) + γ/2·‖grad(L)(w)‖²)``), F-GR by two gradient evaluations
(∇L(w) + (γ/ε)[∇L(w + ε∇L(w)) − ∇L(w)]), both vmapped over the batch of B runs, float64.
This project: the batched ``dln.methods.Direction`` (full variant) on a ``State`` of B runs.

Metric: direction evaluations per second (runs × evaluations / s) at B ∈ {1, 64, 1024},
n = 40, d = 100, both sides interleaved in the same process with the same thread count.  The two
sides compute the same direction: dln's log-rates equal −(∇_w G)/w of torch's output (checked to
round-off in every row).  torch is optional (``pip install '.[bench]'``); without it the rows
say "skipped".
"""
from __future__ import annotations

import numpy as np

from benchmarks import THREADS, interleaved, make_row, summarize
from dln import methods
from dln.model import State
from dln.problem import make_problem

GAMMA, EPS = 0.05, 0.1
BENCH = "torch"


def _state(B, d, seed=0):
    rng = np.random.default_rng(seed)
    a = np.log(0.1) + 0.5 * rng.standard_normal((B, d))
    b = np.log(0.1) + 0.5 * rng.standard_normal((B, d))
    return State(a, b, np.ones((B, d)), np.ones((B, d)))


def torch_directions(X, y, gamma=GAMMA, eps=EPS):
    """The torch baseline: {'gr': f, 'fgr': f} mapping w (B, 2d) ↦ ∇_w of the method (B, 2d)."""
    import torch
    from torch.func import grad, vmap

    n, d = X.shape
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)

    def loss(w):
        u, v = w[:d], w[d:]
        r = Xt @ (u * u - v * v) - yt
        return 0.5 * (r @ r) / n

    grad_loss = grad(loss)

    def gr_objective(w):  # L + (γ/2)‖∇_w L‖², differentiated again: double back-propagation
        gw = grad_loss(w)
        return loss(w) + 0.5 * gamma * (gw @ gw)

    def fgr(w):
        g0 = grad_loss(w)
        g1 = grad_loss(w + eps * g0)
        return g0 + (gamma / eps) * (g1 - g0)

    return {"gr": vmap(grad(gr_objective)), "fgr": vmap(fgr)}


def run(quick: bool = False, *, smoke: bool = False) -> list[dict]:
    try:
        import torch
    except ImportError:
        return [make_row(BENCH, "PyTorch autograd baseline", status="skipped",
                         notes="torch is not installed: pip install '.[bench]' (or torch) to run it")]
    torch.set_num_threads(THREADS)
    if smoke:
        P = make_problem(10, 20, 3, seed=0, n_test=0)
        Bs, repeats, min_time = [1, 8], 1, 0.0
    else:
        P = make_problem(40, 100, 5, seed=0)
        Bs, repeats, min_time = [1, 64, 1024], (3 if quick else 7), (0.05 if quick else 0.25)
    X, y = P.X, P.y
    d = P.d
    tdirs = torch_directions(X, y)
    ours = {"gr": methods.make("gr", P, gamma=GAMMA), "fgr": methods.make("fgr", P, gamma=GAMMA, eps=EPS)}
    rows = []
    for name, label in (("gr", "exact GR (double backprop)"), ("fgr", "F-GR (two gradients)")):
        for B in Bs:
            st = _state(B, d)
            w = torch.tensor(np.concatenate([np.exp(st.a), np.exp(st.b)], axis=1))
            D, T = ours[name], tdirs[name]
            # same direction: da = −(∇_u G)/u, db = −(∇_v G)/v
            R = D(st)
            G = T(w).numpy()
            u, v = np.exp(st.a), np.exp(st.b)
            err = max(np.abs(R.da + G[:, :d] / u).max() / np.abs(R.da).max(),
                      np.abs(R.db + G[:, d:] / v).max() / np.abs(R.db).max())
            with torch.no_grad():
                t = interleaved({"ours": lambda: D(st), "torch": lambda: T(w)}, repeats=repeats,
                                min_time=min_time)
            ours_s = summarize([B / x for x in t["ours"]])
            base_s = summarize([B / x for x in t["torch"]])
            rows.append(make_row(
                BENCH, f"{label}, B={B}, n={P.n}, d={d}", unit="run-evals/s", ours=ours_s, baseline=base_s,
                baseline_name="torch.func.vmap autograd", ratio=ours_s["median"] / base_s["median"],
                target=None if smoke else 10.0, accuracy=f"same direction to {err:.1e}",
                accuracy_ok=bool(err <= 1e-10),
                extra={"us_per_run_eval_ours": 1e6 / ours_s["median"],
                       "us_per_run_eval_torch": 1e6 / base_s["median"], "torch": torch.__version__}))
    return rows
