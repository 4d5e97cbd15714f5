"""Figure 1 — kernel to rich (Woodworth et al. 2020; docs/theory.md §2.2).

Gradient flow from u0 = v0 = α converges to argmin Q_α: the min-ℓ2 interpolator as α → ∞
(kernel regime) and the min-ℓ1 interpolator as α → 0 (rich regime).  Test error ‖β − β*‖² and
‖β‖₁ against α, with both interpolators as horizontal references.
"""
from __future__ import annotations

import sys

import numpy as np

from analysis.predict import min_l1, min_l2

from . import common as C
from .style import color, label, style

NAME = "fig1_kernel_rich"
TITLE = "Kernel to rich: gradient flow against the initialisation scale α"
ERR_FLOOR = 1e-14


def alphas(quick: bool) -> np.ndarray:
    return np.logspace(-3, 1, 5) if quick else np.logspace(-4, 1, 11)


def compute(quick: bool = False) -> list[dict]:
    cfg = C.config(quick)
    al = alphas(quick)
    out = [dict(kind="meta", n=cfg.n, d=cfg.d, k=cfg.k, seeds=list(cfg.seeds), quick=quick, rtol=cfg.rtol)]
    for seed in cfg.seeds:
        P = C.problem(cfg, seed)
        res = C.run(P, "gf", cfg, alpha=al)
        for rec in C.records(res):
            out.append(dict(kind="run", method="gf", seed=seed, alpha=rec["alpha"], status=rec["status"],
                            test_error=rec["test_error"], l1_norm=rec["l1_norm"]))
        for name, fn in (("min_l1", min_l1), ("min_l2", min_l2)):
            b = fn(P.X, P.y)
            out.append(dict(kind="ref", method=name, seed=seed, test_error=float(P.test_error(b)),
                            l1_norm=float(np.abs(b).sum())))
    return out


def plot(recs):
    m = C.meta(recs)
    seeds = tuple(m["seeds"])
    cv = C.Canvas(NAME, 1, 2, figsize=(9.0, 3.8), title=TITLE)
    ax_e, ax_l = cv.axes[0]
    for key, ax, panel, floor in (("test_error", ax_e, "a: test error", ERR_FLOOR),
                                  ("l1_norm", ax_l, "b: l1 norm", None)):
        xs, T = C.table(recs, key, "alpha", seeds, kind="run", method="gf")
        mean, lo, hi = C.mean_band(T)
        cv.line(ax, panel, "GF", xs, mean, lo, hi, floor=floor, **style("gf"))
        for ref, ls in (("min_l1", "--"), ("min_l2", ":")):
            vals = np.array([C.finite_or_nan(r[key]) for r in C.select(recs, kind="ref", method=ref)])
            mv, lv, hv = C.mean_band(vals)
            if floor is not None:
                mv, lv, hv = max(mv, floor), max(lv, floor), max(hv, floor)
            series = "min-l1 interpolator" if ref == "min_l1" else "min-l2 interpolator"
            cv.hline(ax, panel, series, float(mv), float(lv), float(hv), color=color(ref), ls=ls,
                     lw=1.6, label=label(ref))
        ax.set_xscale("log")
        ax.set_xlabel(r"initialisation scale $\alpha$ ($u_0 = v_0 = \alpha$)")
    ax_e.set_yscale("log")
    ax_e.set_ylabel(r"test error $\|\beta_\infty - \beta^*\|_2^2$")
    ax_e.set_title(f"(a) test error (values < {ERR_FLOOR:g} drawn at {ERR_FLOOR:g})")
    ax_l.set_ylabel(r"$\|\beta_\infty\|_1$")
    ax_l.set_title(r"(b) $\ell_1$ norm of the limit")
    ax_e.legend(loc="lower right")
    ax_l.legend(loc="lower right")
    cv.note(f"Canonical DLN, Gaussian X, n = {m['n']}, d = {m['d']}, k = {m['k']}, noiseless; "
            f"gradient flow to convergence; mean and range (band) over {len(seeds)} seeds.")
    return cv.fig


def main(argv=None) -> int:
    return C.script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
