"""Figure 8 — incremental learning (saddle-to-saddle; Pesme & Flammarion 2023, Berthier 2023;
docs/theory.md §2.2, §7.2).

At small α gradient flow learns the support one coordinate at a time: each coordinate waits on a
plateau for a time ∝ ln(1/α) before it escapes, and the loss drops in steps.  GR shrinks
α_eff(t) = α·exp(−4γ∫g²) while the network sits on a plateau, so every escape that follows a
plateau starts from a smaller effective scale: the first escape comes later, and the limit is
richer.  Trajectories β_i(t) on a log time axis for GF, full-batch GR and per-sample GR (one seed).
"""
from __future__ import annotations

import sys

import numpy as np

from . import common as C
from .style import NEUTRAL, color, label

NAME = "fig8_incremental"
TITLE = "Incremental learning at small α: saddle-to-saddle plateaus under GF and GR"
ALPHA = 1e-5
GAMMA = 0.1  # one γ for both penalties, so that (b) and (c) compare the penalties, not two strengths
RUNS = (("gf", "full", {}), ("gr", "full", dict(gamma=GAMMA)), ("gr", "per-sample", dict(gamma=GAMMA)))
N_OFF = 3  # off-support coordinates shown (largest final |β_i|)


def escape_times(t, beta, final, coords):
    """First time |β_i(t)| reaches half of |β_i(∞)|, per coordinate."""
    out = []
    for i in coords:
        hit = np.flatnonzero(np.abs(beta[:, i]) >= 0.5 * abs(final[i]))
        out.append(float(t[hit[0]]) if hit.size else np.nan)
    return out


def compute(quick: bool = False) -> list[dict]:
    cfg = C.config(quick)
    seed = cfg.seeds[0]
    P = C.problem(cfg, seed)
    sup = np.flatnonzero(P.support)
    out = [dict(kind="meta", n=cfg.n, d=cfg.d, k=cfg.k, seeds=[seed], quick=quick, alpha=ALPHA,
                beta_star=P.beta_star[sup].tolist(), support=sup.tolist())]
    off = None
    for method, variant, kw in RUNS:
        res = C.run(P, method, cfg, alpha=ALPHA, variant=variant, record=True, rtol=1e-7, **kw)
        tr = res.trajectory
        t, beta, loss = tr.t[:, 0], tr.beta[:, 0, :], tr.loss[:, 0]
        keep = np.concatenate([[True], np.diff(t) > 0])
        t, beta, loss = t[keep], beta[keep], loss[keep]
        final = res.beta[0]
        if off is None:
            offs = np.setdiff1d(np.arange(P.d), sup)
            off = offs[np.argsort(-np.abs(final[offs]))[:N_OFF]]
        coords = np.concatenate([sup, off])
        out.append(dict(kind="run", method=method, variant=variant, seed=seed, gamma=kw.get("gamma"),
                        status=str(res.status[0]), t=t.tolist(), loss=loss.tolist(),
                        coords=coords.tolist(), beta=beta[:, coords].T.tolist(),
                        escape=escape_times(t, beta, final, sup), final_support=final[sup].tolist(),
                        test_error=float(P.test_error(final))))
    return out


def plot(recs):
    m = C.meta(recs)
    sup = m["support"]
    bstar = m["beta_star"]
    cv = C.Canvas(NAME, 2, 2, figsize=(10.0, 7.4), title=TITLE)
    axes = [cv.axes[0, 0], cv.axes[0, 1], cv.axes[1, 0]]
    ax_l = cv.axes[1, 1]
    runs = C.select(recs, kind="run")
    t_hi = 4.0 * max(np.nanmax(r["escape"]) for r in runs)  # a little after the last escape
    t_lo = 0.5
    gf = runs[0]
    for ax, r, letter in zip(axes, runs, "abc"):
        meth, var = r["method"], r["variant"]
        name = label(meth, var if meth != "gf" else None)
        if r.get("gamma") is not None:
            name += f", γ = {r['gamma']:g}"
        t = np.asarray(r["t"])
        show = (t >= t_lo) & (t <= t_hi * 1.5)
        B = np.asarray(r["beta"])
        col = color(meth)
        for j, i in enumerate(r["coords"]):
            on = i in sup
            kw = dict(color=col, lw=1.6) if on else dict(color=NEUTRAL, lw=1.0)
            if meth == "gr" and var == "per-sample":
                kw["ls"] = "--"
            cv.line(ax, f"{letter}: {name}", f"beta_{i}" + (" (support)" if on else " (off support)"),
                    t[show], B[j][show], **kw)
        for val in bstar:
            ax.axhline(val, color="#777777", lw=0.6, ls=":")
        if r is not gf:  # GF's support coordinates underneath, for comparison
            tg = np.asarray(gf["t"])
            sg = (tg >= t_lo) & (tg <= t_hi * 1.5)
            for j, i in enumerate(gf["coords"]):
                if i in sup:
                    cv.line(ax, f"{letter}: {name}", f"GF beta_{i} (reference)", tg[sg], np.asarray(gf["beta"][j])[sg],
                            color=color("gf"), lw=0.8, alpha=0.35, zorder=1)
            ax.plot([], [], color=color("gf"), lw=0.8, alpha=0.35, label="GF (for comparison)")
        esc = np.asarray(r["escape"])
        half = 0.5 * np.asarray(r["final_support"])
        cv.scatter(ax, f"{letter}: {name}", "escape time (|beta_i| = |beta_i(inf)|/2)", esc, half, s=22,
                   facecolor="white", edgecolor=col, zorder=3, label="escape: half of the final value")
        ax.set_xscale("log")
        ax.set_xlim(t_lo, t_hi * 1.5)
        ax.set_xlabel("time t (flow time)")
        ax.set_ylabel(r"$\beta_i(t)$")
        ax.set_title(f"({letter}) {name}: first escape at t = {np.nanmin(esc):.1f}")
        ax.plot([], [], color=col, ls="--" if var == "per-sample" else "-",
                label="support coordinates (dotted: β*)")
        ax.plot([], [], color=NEUTRAL, label=f"largest {len(r['coords']) - len(sup)} off-support coordinates")
        ax.legend(loc="upper left", fontsize=6.8)
    for r in runs:
        meth, var = r["method"], r["variant"]
        name = label(meth, var if meth != "gf" else None)
        if r.get("gamma") is not None:
            name += f", γ = {r['gamma']:g}"
        t, loss = np.asarray(r["t"]), np.asarray(r["loss"])
        show = (t >= t_lo) & (t <= t_hi * 1.5) & (loss > 0)
        cv.line(ax_l, "d: training loss", name, t[show], loss[show], color=color(meth),
                ls="--" if var == "per-sample" else "-", label=name)
    ax_l.set_xscale("log")
    ax_l.set_yscale("log")
    ax_l.set_xlim(t_lo, t_hi * 1.5)
    ax_l.set_xlabel("time t (flow time)")
    ax_l.set_ylabel(r"training loss $L(\beta(t))$")
    ax_l.set_title("(d) the loss drops in steps: one per learned coordinate")
    ax_l.legend(loc="lower left")
    gammas = sorted({r["gamma"] for r in runs if r.get("gamma") is not None})
    cv.note(f"α = {m['alpha']:g}, GR γ = {', '.join(f'{g:g}' for g in gammas)} (both penalties), one seed "
            f"({m['seeds'][0]}); flows to convergence; time axis cut at 4× the last "
            f"escape (the loss then decays slowly while the off-support coordinates settle). n = {m['n']}, d = {m['d']}, k = {m['k']}, Gaussian X, noiseless.")
    return cv.fig


def main(argv=None) -> int:
    return C.script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
