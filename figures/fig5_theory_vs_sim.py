"""Figure 5 — theory against simulation (docs/theory.md §4 lemma, §5.1, §6.1, §7.2–§7.5, §8, §15).

For every exact mechanism the simulated limit β∞ equals argmin_{Xβ=y} φ_{c∞}(β) − ⟨z0 − 2Φ, β⟩
with c∞ = u⊙v measured at the end (α_eff = sqrt(c∞); Φ is the discrete-time tilt of GD/SGD, zero
for flows).  Three predictions are compared with β∞:

1. measured α_eff (and the exact tilt): ``mirror_argmin(X, y, log_c=ln(u⊙v), z0=−2Φ)`` — exact;
2. the α_eff of the theory formula: ln c = ln α² − coef·∫gain (Result.log_c_theory: exact for
   the flows, docs/theory.md §7–§8); for GD/SGD the small-step formula ln c ≈ ln α² − 4η∫g² with Φ
   dropped (§5.2, §6.2: an O(η) approximation);
3. naive: argmin Q_α with the nominal α (what one would predict ignoring the mechanism).
"""
from __future__ import annotations

import sys

import numpy as np
from matplotlib.patches import Patch

from analysis.effective import gd_continuous_log_c
from analysis.predict import mirror_argmin
from dln.simulate import rel_error as _rel

from . import common as C
from .style import NEUTRAL, VARIANT_STYLE, color

NAME = "fig5_theory_vs_sim"
TITLE = "Theory against simulation: β∞ = argmin Q with the effective α"
ALPHA = 0.1
GAMMA = 0.05
EPS = 0.1
RHO = 0.05
LR_GD = 0.5
LR_SGD = 0.05
LR_SGD_QUICK = 0.1  # fewer SGD steps in quick mode
FLOOR = 1e-16


def lr_sgd(quick: bool) -> float:
    return LR_SGD_QUICK if quick else LR_SGD


def mechanisms(quick: bool):
    """(key, method, variant, kwargs, label, colour key) of every exact mechanism shown."""
    lr = lr_sgd(quick)
    return (
        ("gf", "gf", "full", {}, "GF", "gf"),
        ("gr-full", "gr", "full", dict(gamma=GAMMA), "GR full", "gr"),
        ("gr-ps", "gr", "per-sample", dict(gamma=GAMMA), "GR per-sample", "gr"),
        ("fgr-full", "fgr", "full", dict(gamma=GAMMA, eps=EPS), "F-GR full", "fgr"),
        ("fgr-ps", "fgr", "per-sample", dict(gamma=GAMMA, eps=EPS), "F-GR per-sample", "fgr"),
        ("bgr-full", "bgr", "full", dict(gamma=GAMMA, eps=EPS), "B-GR full", "bgr"),
        ("bgr-ps", "bgr", "per-sample", dict(gamma=GAMMA, eps=EPS), "B-GR per-sample", "bgr"),
        ("cgr-full", "cgr", "full", dict(gamma=GAMMA, eps=EPS), "C-GR full", "cgr"),
        ("nsam", "usam", "full", dict(rho=RHO), "n-SAM", "usam"),
        ("1sam", "usam", "per-sample", dict(rho=RHO), "1-SAM", "usam"),
        ("gd", "gf", "full", dict(time="discrete", lr=LR_GD), f"GD η={LR_GD}", "gd"),
        ("sgd", "gf", "full", dict(time="discrete", lr=lr, batch_size=1), f"SGD η={lr:g}", "sgd"),
    )
#: (record key, CSV series, legend label, hatch)
PREDICTIONS = (("measured", "measured alpha_eff = sqrt(u*v) (+ tilt)",
                r"measured $\alpha_{\mathrm{eff}}=\sqrt{u\odot v}$ (+ tilt)", None),
               ("theory", "alpha_eff from the gain integral", r"$\alpha_{\mathrm{eff}}$ from the gain integral", "//"),
               ("naive", "naive: nominal alpha", r"naive: nominal $\alpha$", None))


def compute(quick: bool = False) -> list[dict]:
    cfg = C.config(quick)
    out = [dict(kind="meta", n=cfg.n, d=cfg.d, k=cfg.k, seeds=list(cfg.seeds), quick=quick, alpha=ALPHA,
                gamma=GAMMA, eps=EPS, rho=RHO, lr_gd=LR_GD, lr_sgd=lr_sgd(quick), rtol=cfg.rtol,
                mechanisms=[[mm[0], mm[4], mm[5]] for mm in mechanisms(quick)])]
    for seed in cfg.seeds:
        P = C.problem(cfg, seed)
        naive = mirror_argmin(P.X, P.y, c=ALPHA ** 2).beta
        for key, method, variant, kw, _, _ in mechanisms(quick):
            kw = dict(kw)
            discrete = kw.get("time") == "discrete"
            if discrete:
                kw["max_steps"] = 200_000
            if "batch_size" in kw:
                kw["seed"] = seed
            res = C.run(P, method, cfg, alpha=ALPHA, variant=variant, **kw)
            beta = res.beta[0]
            rec = dict(kind="run", key=key, seed=seed, status=str(res.status[0]))
            if res.status[0] == "converged":
                z0 = res.z0[0] - 2.0 * res.tilt[0]
                meas = mirror_argmin(P.X, P.y, log_c=res.log_c[0], z0=z0 if np.any(z0) else None).beta
                if discrete:  # small-step formula, tilt dropped (docs/theory.md §5.2, §6.2)
                    log_c = gd_continuous_log_c(ALPHA, kw["lr"], res.gain[0])
                else:  # exact integrated gain (docs/theory.md §7–§8)
                    log_c = res.log_c_theory[0]
                theo = mirror_argmin(P.X, P.y, log_c=log_c).beta
                rec.update(measured=_rel(beta, meas), theory=_rel(beta, theo), naive=_rel(beta, naive))
                if seed == cfg.seeds[0]:
                    rec.update(beta=beta.tolist(), beta_measured=meas.tolist(), beta_naive=naive.tolist())
            out.append(rec)
    return out


def plot(recs):
    m = C.meta(recs)
    seeds = tuple(m["seeds"])
    cv = C.Canvas(NAME, 2, 2, figsize=(10.0, 8.4), title=TITLE, gridspec_kw=dict(height_ratios=[1.0, 1.0]))
    gs = cv.axes[1, 0].get_gridspec()
    cv.axes[1, 0].remove()
    cv.axes[1, 1].remove()
    ax_s, ax_n = cv.axes[0]
    ax_b = cv.fig.add_subplot(gs[1, :])
    seed0 = seeds[0]
    variant = {mm[0]: mm[2] for mm in mechanisms(m["quick"])}
    lo_all, hi_all = np.inf, 0.0
    for key, text, ck in m["mechanisms"]:
        r = C.select(recs, kind="run", key=key, seed=seed0)
        if not r or "beta" not in r[0]:
            continue
        r = r[0]
        b, bm, bn = (np.maximum(np.abs(np.asarray(r[k])), FLOOR) for k in ("beta", "beta_measured", "beta_naive"))
        lo_all = min(lo_all, b.min(), bm.min(), bn.min())
        hi_all = max(hi_all, b.max(), bm.max(), bn.max())
        # colour = method; full batch: filled marker, per-sample: open square (style.VARIANT_STYLE)
        v = variant.get(key) if ck in ("gr", "fgr", "bgr", "cgr", "usam") else None
        marker = VARIANT_STYLE[v]["marker"]
        fill = dict(facecolor="none", edgecolor=color(ck), lw=0.9, s=14) if v == "per-sample" else \
            dict(color=color(ck), lw=0, s=10)
        cv.scatter(ax_s, f"a: |simulated| vs |measured-alpha prediction| (seed {seed0})", text, bm, b,
                   marker=marker, label=text, alpha=0.85, **fill)
        cv.scatter(ax_n, f"b: |simulated| vs |naive prediction| (seed {seed0})", text, bn, b,
                   marker=marker, alpha=0.85, **fill)
    lims = (lo_all / 3, hi_all * 3) if np.isfinite(lo_all) else (1e-6, 1.0)
    for ax in (ax_s, ax_n):
        ax.plot(lims, lims, color="#555555", lw=0.8, ls="--", zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(*lims)
        ax.set_ylim(*lims)
        ax.set_aspect("equal")
        ax.set_ylabel(r"simulated $|\beta_{\infty,i}|$")
    ax_s.set_xlabel(r"prediction $|\mathrm{argmin}\, Q_{\alpha_{\mathrm{eff}}}|_i$ (measured $\alpha_{\mathrm{eff}}$)")
    ax_n.set_xlabel(r"naive prediction $|\mathrm{argmin}\, Q_\alpha|_i$ (nominal $\alpha$)")
    ax_s.set_title(f"(a) exact: every coordinate on the diagonal (seed {seed0})")
    ax_n.set_title("(b) naive α: small coordinates off the diagonal")
    ax_s.legend(loc="upper left", fontsize=7, ncol=2, markerscale=1.6, title="filled: full batch, open: per-sample",
                title_fontsize=7)
    # (c) bars of relative errors
    keys = [mm[0] for mm in m["mechanisms"]]
    texts = [mm[1] for mm in m["mechanisms"]]
    pos = np.arange(len(keys))
    w = 0.27
    handles = []
    for j, (pk, series, plabel, hatch) in enumerate(PREDICTIONS):
        vals = np.full((len(seeds), len(keys)), np.nan)
        for si, s in enumerate(seeds):
            for kk, key in enumerate(keys):
                r = C.select(recs, kind="run", key=key, seed=s)
                if r and pk in r[0]:
                    vals[si, kk] = max(r[0][pk], FLOOR)
        gm, lo, hi = C.geo_mean_band(vals)
        cols = [color(mm[2]) for mm in m["mechanisms"]] if pk != "naive" else NEUTRAL
        cv.bars(ax_b, "c: relative error", series, pos + (j - 1) * w, gm, lo, hi, categories=texts,
                width=w, color=cols, hatch=hatch, edgecolor="k", lw=0.4,
                alpha=1.0 if pk == "measured" else 0.75)
        handles.append(Patch(facecolor="#777777" if pk != "naive" else NEUTRAL, hatch=hatch, edgecolor="k",
                             lw=0.4, label=plabel))
    ax_b.set_yscale("log")
    ax_b.set_xticks(pos, [t.replace(" ", "\n", 1) for t in texts], fontsize=7.5)
    ax_b.set_ylabel(r"$\|\beta_\infty - \hat\beta\|_2 / \|\beta_\infty\|_2$")
    ax_b.set_title("(c) relative error of each prediction (left: measured α_eff, middle: gain integral, "
                   "right: naive α)")
    ax_b.legend(handles=handles, loc="upper left", fontsize=7, ncol=3)
    ax_b.set_ylim(top=ax_b.get_ylim()[1] * 30)
    cv.note(f"α = {m['alpha']}; GR family γ = {m['gamma']}, |ε| = {m['eps']}; SAM ρ = {m['rho']}; GD η = {m['lr_gd']}, "
            f"SGD batch 1 η = {m['lr_sgd']} (exact prediction with the discrete tilt Φ; gain-integral bar: the "
            f"small-step formula ln c ≈ ln α² − 4η∫g², O(η)). Flooding and normalised SAM do not converge to an "
            f"interpolator and are not shown. Bars: geometric mean and range over {len(seeds)} seeds "
            f"(values floored at {FLOOR:g}); (a, b): absolute values of the d coordinates; n = {m['n']}, d = {m['d']}, k = {m['k']}, Gaussian X, noiseless.")
    return cv.fig


def main(argv=None) -> int:
    return C.script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
