"""Figure 6 — flooding is finite-difference GR (Ishida et al. 2020; Karakida et al. 2023 §5.1;
docs/theory.md §7.1, §7.9).

Discrete flooding w ← w − η·sign(L(w) − b)∇L(w) descends until L reaches the flood level b, then
alternates ascent and descent steps.  Two consecutive steps (ascent then descent) give
w_{k+2} − w_k = −η[∇L(w_k + η∇L(w_k)) − ∇L(w_k)] = −η²H∇L(w_k) + O(η³): one forward
finite-difference step (ε = η) on ½‖∇L‖², the ∇L term cancelling (descent then ascent: the
backward difference, same leading term).  The figure checks

- the two-step displacement in (u, v) against −η²·H∇L, with (H∇L)_u = 4u⊙g² + 8u⊙M(m⊙g),
  (H∇L)_v = 4v⊙g² − 8v⊙M(m⊙g) (docs/theory.md §7.1): relative error O(η);
- the effective initialisation: while flooding, ln(u⊙v) must follow the F-GR (ε = η) bookkeeping
  of docs/theory.md §7.3, Δln c = −8γh·g⊙g̃ per pair of steps with γh = η² and
  g̃ = ∇L(β + 4ηm⊙g + 4η²β⊙g²); the final α_eff of the flooding run against this prediction.
"""
from __future__ import annotations

import sys

import numpy as np
from matplotlib.colors import LinearSegmentedColormap

from . import common as C
from .style import color

NAME = "fig6_flooding"
TITLE = "Flooding is finite-difference gradient regularisation"
ALPHA = 0.1
LEVEL = 0.01


def etas(quick: bool) -> np.ndarray:
    return np.array([0.02, 0.04]) if quick else np.array([0.01, 0.02, 0.04])


def horizon(quick: bool) -> float:
    return 20.0 if quick else 40.0


def _states(P, res):
    """Distinct recorded states (with the initial one): β, ln c, loss, and u, v > 0 from them."""
    tr = res.trajectory
    t = tr.t[:, 0]
    keep = np.concatenate([[True], np.diff(t) > 0])  # frozen runs repeat their last row
    beta = np.vstack([np.zeros((1, P.d)), tr.beta[keep, 0]])
    log_c = np.vstack([res.log_c0[:1], tr.log_c[keep, 0]])
    loss = np.concatenate([[float(P.loss(np.zeros(P.d)))], tr.loss[keep, 0]])
    c = np.exp(log_c)
    m = np.sqrt(beta * beta + 4.0 * c * c)  # u² + v²
    u = np.sqrt(0.5 * (m + beta))
    v = c / u  # = sqrt((m − β)/2) without cancellation
    return beta, log_c, loss, u, v, m


def _grad(P, beta):
    return (beta @ P.X.T - P.y) @ P.X / P.n


def analyse(P, res, eta: float, level: float) -> dict:
    """Two-step displacements against −η²H∇L and the flooding-phase gain against F-GR (ε = η)."""
    beta, log_c, loss, u, v, m = _states(P, res)
    K = beta.shape[0] - 1
    g = _grad(P, beta)
    Mmg = ((m * g) @ P.X.T) @ P.X / P.n  # M(m⊙g), M = XᵀX/n
    hu = 4.0 * u * g * g + 8.0 * u * Mmg  # (H∇L)_u, docs/theory.md §7.1
    hv = 4.0 * v * g * g - 8.0 * v * Mmg  # (H∇L)_v
    s = np.sign(loss - level)
    below = np.flatnonzero(loss <= level)
    kb = int(below[0]) if below.size else K
    ks = np.arange(kb, K - 1)
    ks = ks[s[ks] != s[ks + 1]]  # alternating pairs (ascent-descent or descent-ascent)
    du, dv = u[ks + 2] - u[ks], v[ks + 2] - v[ks]
    pu, pv = -eta * eta * hu[ks], -eta * eta * hv[ks]
    num = np.sqrt(np.sum((du - pu) ** 2, axis=1) + np.sum((dv - pv) ** 2, axis=1))
    den = np.sqrt(np.sum(pu ** 2, axis=1) + np.sum(pv ** 2, axis=1))
    err = num / den
    # flooding phase bookkeeping: non-overlapping pairs from the first crossing
    pairs = np.arange(kb, K - 1, 2)
    bt = beta[pairs] + 4.0 * eta * m[pairs] * g[pairs] + 4.0 * eta * eta * beta[pairs] * g[pairs] ** 2
    gt = _grad(P, bt)
    end = kb + 2 * pairs.size
    gain_fgr = 4.0 * eta * eta * np.sum(g[pairs] * gt, axis=0)  # −½Δln c, F-GR with γh = η², ε = η
    gain_meas = -0.5 * (log_c[end] - log_c[kb])
    return dict(t=(np.arange(K + 1) * eta).tolist(), loss=loss.tolist(), k_level=kb,
                pair_t=(ks * eta).tolist(), pair_err=err.tolist(), pair_forward=(s[ks] < 0).tolist(),
                gain_meas=gain_meas.tolist(), gain_fgr=gain_fgr.tolist(),
                alpha_eff_flood=np.exp(0.5 * log_c[end]).tolist(),
                alpha_eff_fgr=np.exp(0.5 * log_c[kb] - gain_fgr).tolist(),
                support=P.support.tolist(), max_x=float(np.max(np.abs(2 * eta * g))))


def compute(quick: bool = False) -> list[dict]:
    cfg = C.config(quick)
    T = horizon(quick)
    out = [dict(kind="meta", n=cfg.n, d=cfg.d, k=cfg.k, seeds=list(cfg.seeds), quick=quick, alpha=ALPHA,
                level=LEVEL, horizon=T, etas=etas(quick).tolist())]
    for seed in cfg.seeds:
        P = C.problem(cfg, seed)
        for eta in etas(quick):
            res = C.run(P, "flood", cfg, alpha=ALPHA, flood_level=LEVEL, time="discrete", lr=float(eta),
                        max_steps=int(round(T / eta)), record=True, flood_cycle_stop=False)
            a = analyse(P, res, float(eta), LEVEL)
            gm, gp = np.asarray(a["gain_meas"]), np.asarray(a["gain_fgr"])
            rec = dict(kind="run", seed=seed, eta=float(eta), status=str(res.status[0]),
                       disp_err_median=float(np.median(a["pair_err"])) if a["pair_err"] else np.nan,
                       gain_rel_err=float(np.linalg.norm(gm - gp) / np.linalg.norm(gp)) if np.any(gp) else np.nan,
                       n_pairs=len(a["pair_err"]), k_level=a["k_level"], max_x=a["max_x"])
            if seed == cfg.seeds[0]:
                rec.update(a)
            out.append(rec)
    return out


def thin(values, most: int = 600):
    """Every k-th point of a long path (always keeping the last), at most about ``most`` points."""
    a = np.asarray(values, dtype=float)
    step = max(1, int(np.ceil(a.size / most)))
    idx = np.unique(np.concatenate([np.arange(0, a.size, step), [a.size - 1]])) if a.size else np.arange(0)
    return a[idx]


#: Line style and marker per learning rate (with the colours of eta_colors).
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = "o^sD"


def eta_colors(etas) -> dict:
    """Distinct colours for the learning rates: light to dark through the flooding hue (style.py)."""
    cmap = LinearSegmentedColormap.from_list("flood", ["#7fe0ea", color("flood"), "#0a4a52"])
    return {eta: cmap(t) for eta, t in zip(etas, np.linspace(0.0, 1.0, len(etas)))}


def plot(recs):
    m = C.meta(recs)
    seeds = tuple(m["seeds"])
    eta_list = m["etas"]
    cv = C.Canvas(NAME, 2, 2, figsize=(10.0, 7.8), title=TITLE)
    (ax_l, ax_e), (ax_g, ax_s) = cv.axes
    colours = eta_colors(eta_list)
    styles = dict(zip(eta_list, LINESTYLES))
    markers = dict(zip(eta_list, MARKERS))
    seed0 = seeds[0]
    for r in C.select(recs, kind="run", seed=seed0):
        eta = r["eta"]
        kw = dict(color=colours[eta], ls=styles[eta])
        t, loss = thin(r["t"]), thin(r["loss"])
        cv.line(ax_l, "a: training loss", f"flooding eta={eta:g}", t, loss, lw=1.5,
                label=f"flooding, η = {eta:g}", **kw)
        cv.line(ax_e, "b: two-step displacement relative error", f"eta={eta:g}", thin(r["pair_t"]),
                thin(r["pair_err"]), lw=1.5, label=f"η = {eta:g}", **kw)
        gm, gp = np.asarray(r["gain_meas"]), np.asarray(r["gain_fgr"])
        sup = np.asarray(r["support"])
        cv.scatter(ax_g, "c: flooding-phase gain per coordinate", f"eta={eta:g} off support", gp[~sup],
                   gm[~sup], s=10, marker=markers[eta], color=colours[eta], alpha=0.8, lw=0,
                   label=f"η = {eta:g}")
        cv.scatter(ax_g, "c: flooding-phase gain per coordinate", f"eta={eta:g} support", gp[sup], gm[sup],
                   s=42, marker=markers[eta], facecolor=colours[eta], edgecolor="k", lw=0.9, zorder=3)
    ax_g.scatter([], [], s=42, marker="o", facecolor="white", edgecolor="k", lw=0.9,
                 label=r"on the support of $\beta^*$ (large, black edge)")
    ax_l.axhline(m["level"], color="#555555", lw=0.8, ls="--", label=f"flood level b = {m['level']:g}")
    ax_l.set_yscale("log")
    ax_l.set_xlabel(r"time $t = \eta k$")
    ax_l.set_ylabel(r"training loss $L(\beta_k)$")
    ax_l.set_title("(a) descent to the level, then ascent/descent alternation")
    ax_l.legend(loc="upper right")
    ax_e.set_yscale("log")
    C.log_ticks(ax_e)
    ax_e.set_xlabel(r"time $t = \eta k$ of the first step of the pair")
    ax_e.set_ylabel(r"$\|w_{k+2} - w_k + \eta^2 H\nabla L(w_k)\| \,/\, \|\eta^2 H\nabla L(w_k)\|$")
    ax_e.set_title(r"(b) two steps = one F-GR step: $w_{k+2}-w_k \approx -\eta^2 H\nabla L$")
    # the curves are nearly flat: the legend goes into the widest vertical gap between them
    y0, y1 = np.log(ax_e.get_ylim())
    levels = sorted([0.0, 1.0] + [(np.log(np.median(r["pair_err"])) - y0) / (y1 - y0)
                                  for r in C.select(recs, kind="run", seed=seed0) if r["pair_err"]])
    gap = int(np.argmax(np.diff(levels)))
    ax_e.legend(loc="center right", bbox_to_anchor=(1.0, 0.5 * (levels[gap] + levels[gap + 1])))
    lo = min((min(x for x in np.asarray(r["gain_fgr"]) if x > 0) for r in C.select(recs, kind="run", seed=seed0)
              if "gain_fgr" in r), default=1e-6)
    hi = max((max(max(r["gain_fgr"]), max(r["gain_meas"])) for r in C.select(recs, kind="run", seed=seed0)
              if "gain_fgr" in r), default=1.0)
    ax_g.plot([lo / 2, hi * 2], [lo / 2, hi * 2], color="#555555", lw=0.8, ls="--", zorder=0)
    ax_g.set_xscale("log")
    ax_g.set_yscale("log")
    ax_g.set_xlabel(r"F-GR ($\epsilon=\eta$) prediction $4\eta^2\sum_{\mathrm{pairs}} g\odot\tilde g$")
    ax_g.set_ylabel(r"flooding: measured $-\ln(\alpha_{\mathrm{eff},i}^{\mathrm{end}}/\alpha_{\mathrm{eff},i}^{\mathrm{level}})$")
    ax_g.set_title("(c) gain while flooding, per coordinate (large: support)")
    ax_g.legend(loc="upper left")
    # (d) errors against η over seeds
    for key, series, meth, mk in (("disp_err_median", "median two-step displacement error", "flood", "o"),
                                  ("gain_rel_err", "flooding-phase gain vs F-GR", "fgr", "s")):
        xs, T = C.table(recs, key, "eta", seeds, kind="run")
        mean, lo_, hi_ = C.geo_mean_band(T)
        cv.line(ax_s, "d: relative errors vs eta", series, xs, mean, lo_, hi_, color=color(meth), marker=mk,
                label=series)
    xs = np.asarray(eta_list, dtype=float)
    ref = C.select(recs, kind="run", seed=seed0, eta=eta_list[0])[0]["disp_err_median"]
    ax_s.plot(xs, 0.6 * ref * xs / xs[0], color="#555555", lw=1.0, ls=":", label=r"slope 1 ($\propto\eta$)")
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    ax_s.set_xlabel(r"learning rate $\eta$ (= finite-difference step $\epsilon$)")
    ax_s.set_ylabel("relative error")
    ax_s.set_title(f"(d) both errors are O(η) ({len(seeds)} seeds)")
    ax_s.legend(loc="upper left")
    cv.note(f"Discrete flooding, α = {m['alpha']}, level b = {m['level']:g}, run for time {m['horizon']:g} "
            f"(steps = time/η); (a)-(c) seed {seed0}, paths in (a, b) drawn every few steps; u, v recovered from the recorded β and ln(u⊙v) "
            f"(u² = (m + β)/2, v = c/u). In (c) the F-GR prediction is the ln c bookkeeping of F-GR with ε = η "
            f"and γ·h = η² per ascent/descent pair; the final α_eff of flooding is α_eff at the level times "
            f"exp(−gain). n = {m['n']}, d = {m['d']}, k = {m['k']}, Gaussian X, noiseless.")
    return cv.fig


def main(argv=None) -> int:
    return C.script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
