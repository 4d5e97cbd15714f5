"""Figure 3 — the ascent step ε (Karakida et al. 2023's DLN claim; docs/theory.md §7.3, §7.5, §7.8).

Test error against the signed finite-difference step at fixed γ and α: F-GR (ascent w + ε∇L)
for ε > 0, B-GR (w − |ε|∇L) for ε < 0, with exact GR (the ε → 0 limit) and GF as horizontal
lines, for the full-batch and the per-sample penalty.  The gain is α ⊙ exp(−4γ∫g⊙g̃): the ascent
enlarges it and the descent shrinks it.  With the per-sample penalty the gain is nearly uniform,
so a larger ascent step gives a better (sparser) limit; with the full-batch penalty the gain sits
on the support and GR, and F-GR more so, slightly hurts (§7.8).
"""
from __future__ import annotations

import sys

import numpy as np

from . import common as C
from .style import color, label, style

NAME = "fig3_ascent_step"
TITLE = "The ascent step ε of finite-difference GR"
ALPHA = 0.1
GAMMA = 0.05
VARIANTS = ("full", "per-sample")


def epsilons(quick: bool) -> np.ndarray:
    return np.array([0.05, 0.2, 0.4]) if quick else np.array([0.025, 0.05, 0.1, 0.2, 0.3, 0.4])


def compute(quick: bool = False) -> list[dict]:
    cfg = C.config(quick)
    eps = epsilons(quick)
    out = [dict(kind="meta", n=cfg.n, d=cfg.d, k=cfg.k, seeds=list(cfg.seeds), quick=quick,
                alpha=ALPHA, gamma=GAMMA, rtol=cfg.rtol)]
    for seed in cfg.seeds:
        P = C.problem(cfg, seed)

        def add(res, method, variant, signed):
            for rec, e in zip(C.records(res), signed):
                out.append(dict(kind="run", method=method, variant=variant, seed=seed, eps=float(e),
                                status=rec["status"], test_error=rec["test_error"],
                                gain_on=rec["gain_on_mean"], gain_off=rec["gain_off_mean"]))

        add(C.run(P, "gf", cfg, alpha=ALPHA), "gf", None, [0.0])
        for v in VARIANTS:
            add(C.run(P, "gr", cfg, alpha=ALPHA, gamma=GAMMA, variant=v), "gr", v, [0.0])
            add(C.run(P, "fgr", cfg, alpha=ALPHA, gamma=GAMMA, eps=eps, variant=v), "fgr", v, eps)
            add(C.run(P, "bgr", cfg, alpha=ALPHA, gamma=GAMMA, eps=eps, variant=v), "bgr", v, -eps)
    return out


def plot(recs):
    m = C.meta(recs)
    seeds = tuple(m["seeds"])
    cv = C.Canvas(NAME, 2, 2, figsize=(9.5, 6.6), title=TITLE, sharex=True)
    _, gf = C.table(recs, "test_error", "eps", seeds, kind="run", method="gf")
    gf = gf[:, :1]
    for j, v in enumerate(VARIANTS):
        ax, axr = cv.axes[0, j], cv.axes[1, j]
        pa, pr = f"{'ab'[j]}: {v} test error", f"{'cd'[j]}: {v} ratio to GF"
        _, gr = C.table(recs, "test_error", "eps", seeds, kind="run", method="gr", variant=v)
        gr = gr[:, :1]
        for axis, panel, ref in ((ax, pa, 1.0), (axr, pr, gf)):
            mv, lv, hv = C.mean_band(gf / ref)
            cv.hline(axis, panel, "GF", float(mv[0]), color=color("gf"), ls="-", label=label("gf"))
            mv, lv, hv = C.mean_band(gr / ref)
            cv.hline(axis, panel, label("gr", v), float(mv[0]), color=color("gr"), ls=style("gr", v)["ls"],
                     label=label("gr", v) + r" ($\epsilon \to 0$)")
            for meth in ("bgr", "fgr"):
                xs, T = C.table(recs, "test_error", "eps", seeds, kind="run", method=meth, variant=v)
                mean, lo, hi = C.mean_band(T / ref)
                cv.line(axis, panel, label(meth, v), xs, mean, lo, hi, **style(meth, v))
            axis.axvline(0.0, color="#888888", lw=0.8)
        ax.set_ylabel(r"test error $\|\beta_\infty - \beta^*\|_2^2$")
        axr.set_ylabel("test error / test error of GF (same seed)")
        axr.set_xlabel(r"signed finite-difference step $\epsilon$  (< 0: B-GR, > 0: F-GR)")
        what = "full-batch penalty" if v == "full" else "per-sample penalty"
        hint = "GR and F-GR slightly hurt" if v == "full" else "a larger ascent step helps"
        ax.set_title(f"({'ab'[j]}) {what}: {hint}")
        axr.set_title(f"({'cd'[j]}) {what}, relative to GF (< 1: better than GF)")
        ax.legend(loc="best")
    cv.note(f"α = {m['alpha']}, γ = {m['gamma']}; flows to convergence; n = {m['n']}, d = {m['d']}, "
            f"k = {m['k']}, Gaussian X, noiseless; lines: mean over {len(seeds)} seeds; bands: range over "
            f"seeds (top: absolute error, which varies with the seed; bottom: paired ratio to GF on the same seed).")
    return cv.fig


def main(argv=None) -> int:
    return C.script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
