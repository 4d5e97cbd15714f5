"""Figure 2 — GR moves the regime (docs/theory.md §7.2–§7.5, §7.8).

Test error against α for GF, exact GR, F-GR (ε > 0) and B-GR (ε < 0), for the full-batch
penalty (γ/2)‖∇L‖² and the per-sample penalty (1/n)Σ(γ/2)‖∇ℓ_i‖².  Every method ends at
argmin Q_{α_eff}: GR shrinks α by a gain ∝ ∫g² (full batch, concentrated on the support) or
∝ Σ_i x_i²∫r_i² (per-sample, nearly uniform); only the uniform shrinkage helps sparse recovery
(§4.1), which is why the two panels differ.
"""
from __future__ import annotations

import sys

import numpy as np

from . import common as C
from .style import style

NAME = "fig2_gr_regime"
TITLE = "Gradient regularisation moves the kernel-to-rich transition"
GAMMA = 0.05
EPS = 0.1
ERR_FLOOR = 1e-14
VARIANTS = ("full", "per-sample")
METHODS = ("gr", "fgr", "bgr")


def alphas(quick: bool) -> np.ndarray:
    if quick:
        return np.array([0.01, 0.03, 0.1, 0.3, 1.0])
    return np.array([0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])


def compute(quick: bool = False) -> list[dict]:
    cfg = C.config(quick)
    al = alphas(quick)
    out = [dict(kind="meta", n=cfg.n, d=cfg.d, k=cfg.k, seeds=list(cfg.seeds), quick=quick,
                gamma=GAMMA, eps=EPS, rtol=cfg.rtol)]
    for seed in cfg.seeds:
        P = C.problem(cfg, seed)
        runs = [("gf", None, {})]
        for v in VARIANTS:
            runs += [("gr", v, dict(gamma=GAMMA)), ("fgr", v, dict(gamma=GAMMA, eps=EPS)),
                     ("bgr", v, dict(gamma=GAMMA, eps=EPS))]
        for method, variant, kw in runs:
            res = C.run(P, method, cfg, alpha=al, variant=variant or "full", **kw)
            for rec in C.records(res):
                out.append(dict(kind="run", method=method, variant=variant, seed=seed, alpha=rec["alpha"],
                                status=rec["status"], test_error=rec["test_error"], l1_norm=rec["l1_norm"]))
    return out


#: One marker (and size) per method, so that curves lying on top of each other stay apart (colour = method).
MARKERS = {"gr": ("o", 7.5), "fgr": ("^", 5.5), "bgr": ("v", 5.5)}


def plot(recs):
    m = C.meta(recs)
    seeds = tuple(m["seeds"])
    cv = C.Canvas(NAME, 2, 2, figsize=(10.0, 7.4), title=TITLE, sharex=True)
    xs, gf = C.table(recs, "test_error", "alpha", seeds, kind="run", method="gf")
    for j, v in enumerate(VARIANTS):
        ax, axr = cv.axes[0, j], cv.axes[1, j]
        pa, pr = f"{'ab'[j]}: {v} test error", f"{'cd'[j]}: {v} ratio to GF"
        mean, lo, hi = C.mean_band(gf)
        ratios = []
        cv.line(ax, pa, "GF", xs, mean, lo, hi, floor=ERR_FLOOR, zorder=1, **style("gf", marker="none"))
        axr.axhline(1.0, color=style("gf")["color"], lw=1.0)
        for meth in METHODS:
            xm, T = C.table(recs, "test_error", "alpha", seeds, kind="run", method=meth, variant=v)
            st = style(meth, v, marker=MARKERS[meth][0], ms=MARKERS[meth][1], lw=1.3)
            if v == "per-sample":
                st.update(mfc="white", mew=1.3)
            mean, lo, hi = C.mean_band(T)
            # the test errors of the three lie within the seed range of GF: one band (GF's) in (a, b)
            cv.line(ax, pa, st["label"], xm, mean, floor=ERR_FLOOR, **st)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(gf > 0, T / np.where(gf > 0, gf, 1.0), np.nan)
            gm, glo, ghi = C.mean_band(ratio)
            ratios.append(gm)
            cv.line(axr, pr, st["label"], xm, gm, glo, ghi, band_alpha=0.07, band_edges=True, **st)
        if v == "full":
            ax.text(0.03, 0.97, "GR, F-GR and B-GR lie on top of each other\n(mean ratio to GF from "
                    f"{np.nanmin(ratios):.2f} to {np.nanmax(ratios):.2f}: see (c))", transform=ax.transAxes,
                    va="top", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(r"test error $\|\beta_\infty - \beta^*\|_2^2$")
        kind = "full-batch penalty $(\\gamma/2)\\|\\nabla L\\|^2$" if v == "full" else \
            "per-sample penalty $(1/n)\\sum_i(\\gamma/2)\\|\\nabla \\ell_i\\|^2$"
        ax.set_title(f"({'ab'[j]}) {kind}")
        axr.set_ylabel("test error / test error of GF (same seed)")
        axr.set_title(f"({'cd'[j]}) relative to GF (< 1: GR helps)")
        axr.set_xscale("log")
        axr.set_xlabel(r"initialisation scale $\alpha$")
        ax.legend(loc="lower right", title="mean over seeds (band: GF's range)", title_fontsize=7.5)
        axr.legend(loc="upper right" if v == "full" else "lower right", title="mean and range over seeds",
                   title_fontsize=7.5)
    cv.note(f"γ = {m['gamma']}, |ε| = {m['eps']} (F-GR ascends by +ε, B-GR descends by ε); flows to convergence; "
            f"n = {m['n']}, d = {m['d']}, k = {m['k']}, Gaussian X, noiseless; {len(seeds)} seeds. (a, b): mean over "
            f"the seeds, band: range of GF (the GR family's ranges are as wide: the seed, not the method, sets them); "
            f"(c, d): mean and range over the seeds of the ratio to GF on the same seed, band edges drawn. "
            f"Errors < {ERR_FLOOR:g} drawn at {ERR_FLOOR:g}.")
    return cv.fig


def main(argv=None) -> int:
    return C.script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
