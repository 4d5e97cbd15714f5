"""Figure 9 — large steps and stochasticity (Even et al. 2023; Barrett & Dherin 2021; Smith et al.
2021; docs/theory.md §5, §6, §10).

GD is GF in discrete time: u ← u(1 − x), v ← v(1 + x) with x = 2ηg, so ln c gains ln|1 − x²| per
step and α_∞ = α·exp(−½Σ_k q_E(x_k)), q_E(x) = −ln|1 − x²|.  For small steps this is GR with
γ = η/2 (Barrett & Dherin: full-batch GR for GD; per-sample GR for SGD, Smith et al.).  GD's gain
∝ ∫g² sits on the support and hurts sparse recovery; SGD's is nearly uniform and helps, the more
the larger the step (Even et al.).  Near divergence single steps reach |x| > √2, where q_E < 0:
the gain flips sign and α grows (edge of stability, §5.3).
"""
from __future__ import annotations

import sys

import numpy as np

from analysis.effective import q_even

from . import common as C
from .style import color, label

NAME = "fig9_large_steps"
TITLE = "Large steps and stochasticity: test error against the learning rate"
ALPHA = 0.1
LOSS_TOL = 1e-14  # discrete runs stop at L ≤ LOSS_TOL·L(0) (SGD near its edge converges slowly)
EOS_FROM = 0.4  # record GD paths (for the per-step x = 2ηg) from this η on
MAX_POINTS = 2500  # per-step events shown in panel (b) (subsampled, deterministic)


def gd_etas(quick: bool) -> np.ndarray:
    if quick:
        return np.array([0.1, 0.3, 0.6, 1.0, 1.5])
    return np.array([0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 2.0])


def sgd_etas(quick: bool) -> np.ndarray:
    if quick:
        return np.array([0.05, 0.08, 0.12])
    return np.array([0.03, 0.05, 0.07, 0.09, 0.11, 0.13])


def compute(quick: bool = False) -> list[dict]:
    cfg = C.config(quick)
    ge, se = gd_etas(quick), sgd_etas(quick)
    gd_max, sgd_max = 20_000, (12_000 if quick else 30_000)
    out = [dict(kind="meta", n=cfg.n, d=cfg.d, k=cfg.k, seeds=list(cfg.seeds), quick=quick, alpha=ALPHA,
                gd_max_steps=gd_max, sgd_max_steps=sgd_max, eos_from=EOS_FROM, rtol=cfg.rtol, loss_tol=LOSS_TOL)]
    for seed in cfg.seeds:
        P = C.problem(cfg, seed)
        rec = C.records(C.run(P, "gf", cfg, alpha=ALPHA))[0]
        out.append(dict(kind="run", key="gf", seed=seed, eta=0.0, status=rec["status"], test_error=rec["test_error"]))

        def add(res, key, xs):
            for r, g, x in zip(C.records(res), C.gains(res), xs):
                out.append(dict(kind="run", key=key, seed=seed, eta=float(x), status=r["status"],
                                test_error=r["test_error"] if r["status"] == "converged" else np.nan,
                                gain_on=r["gain_on_mean"], gain_off=r["gain_off_mean"], steps=r["steps"]))

        gd = C.run(P, "gf", cfg, alpha=ALPHA, time="discrete", lr=ge, max_steps=gd_max, loss_tol=LOSS_TOL)
        add(gd, "gd", ge)
        add(C.run(P, "gf", cfg, alpha=ALPHA, time="discrete", lr=se, batch_size=1, seed=seed, max_steps=sgd_max,
                  loss_tol=LOSS_TOL), "sgd", se)
        add(C.run(P, "gr", cfg, alpha=ALPHA, gamma=ge / 2), "gr-full", ge)
        add(C.run(P, "gr", cfg, alpha=ALPHA, gamma=se / 2, variant="per-sample"), "gr-ps", se)
        # per-step x = 2ηg of the converged large-step GD runs (edge of stability)
        ok = (gd.status == "converged") & (ge >= EOS_FROM)
        if ok.any():
            sel = ge[ok]
            res = C.run(P, "gf", cfg, alpha=ALPHA, time="discrete", lr=sel, max_steps=int(gd.steps[ok].max()),
                        loss_tol=LOSS_TOL, record=True)
            beta = res.trajectory.beta  # (K, B, d): the state after each step (frozen runs repeat)
            x = np.empty_like(beta)
            for j, eta in enumerate(sel):
                x[:, j] = 2.0 * eta * ((beta[:, j] @ P.X.T - P.y) @ P.X / P.n)
            # the first step uses g(0) = −Xᵀy/n (β(0) = 0); every recorded state but the last is the
            # start of a step, frozen repeats excepted
            x0 = 2.0 * sel[:, None] * (-(P.y @ P.X) / P.n)[None, :]
            for j, eta in enumerate(sel):
                K = int(res.steps[j])
                xs = np.abs(np.vstack([x0[j][None, :], x[: K - 1, j]]))
                big = xs[xs > 0.2]
                out.append(dict(kind="eos", seed=seed, eta=float(eta), max_x=float(xs.max()),
                                n_flip=int(np.count_nonzero(xs > np.sqrt(2.0))),
                                n_sign=int(np.count_nonzero(xs > 1.0)), n_events=int(xs.size),
                                x=np.sort(big)[-MAX_POINTS:].tolist()))
    return out


def plot(recs):
    m = C.meta(recs)
    seeds = tuple(m["seeds"])
    cv = C.Canvas(NAME, 3, 2, figsize=(10.0, 9.0), title=TITLE, gridspec_kw=dict(height_ratios=[1.0, 0.2, 1.0]))
    ax_e = cv.legend_axes(cv.axes[0])  # (a) across the top row ...
    ax_e.axis("on")
    ax_k = cv.legend_axes(cv.axes[1])  # ... its legend in the row below
    ax_q, ax_x = cv.axes[2]
    # (a) test error against η, up to the first divergence
    _, gf = C.table(recs, "test_error", "eta", seeds, kind="run", key="gf")
    mv, lv, hv = C.mean_band(gf[:, 0])
    cv.hline(ax_e, "a: test error", "GF", float(mv), color=color("gf"), label=label("gf") + " (η → 0)")
    first_div = {}
    partial_labelled = False
    for key, meth, var, text in (("gd", "gd", None, "GD"), ("sgd", "sgd", None, "SGD (batch 1)"),
                                 ("gr-full", "gr", "full", "GR γ = η/2, full batch (≈ GD)"),
                                 ("gr-ps", "gr", "per-sample", "GR γ = η/2, per-sample (≈ SGD)")):
        xs, T = C.table(recs, "test_error", "eta", seeds, kind="run", key=key)
        n_ok = np.isfinite(T).sum(axis=0)
        show = n_ok >= (len(seeds) + 1) // 2  # mean over the converged seeds while at least half converged
        if key in ("gd", "sgd"):
            bad = np.flatnonzero(n_ok < len(seeds))
            if bad.size:
                first_div[key] = xs[bad[0]]
            if np.any(~show):
                show[np.flatnonzero(~show)[0]:] = False
        mean, lo, hi = C.mean_band(T[:, show])
        st = dict(color=color(meth), ls="--" if var == "per-sample" else "-",
                  marker="o" if key in ("gd", "sgd") else "none")
        if key.startswith("gr"):
            st["ls"] = (0, (4, 2)) if var == "full" else (0, (1, 1.5))
        cv.line(ax_e, "a: test error", text, xs[show], mean, lo, hi, label=text, **st)
        part = (n_ok[show] < len(seeds))
        if key in ("gd", "sgd") and part.any():
            cv.scatter(ax_e, "a: test error", f"{text}: not every seed converged (mean over those that did)",
                       xs[show][part], mean[part], s=30, facecolor="white", edgecolor=color(meth), zorder=4,
                       label=None if partial_labelled else "open marker: some seeds did not converge")
            partial_labelled = True
    for key, xdiv in first_div.items():
        meth = "gd" if key == "gd" else "sgd"
        cv.vline(ax_e, "a: test error", f"{key.upper()} first divergence or no convergence (some seed)", xdiv,
                 color=color(meth), lw=1.0, ls=":", label=f"{key.upper()}: first η where a seed fails")
    ax_e.set_xscale("log")
    ax_e.set_yscale("log")
    ax_e.set_xlabel(r"learning rate $\eta$")
    ax_e.set_ylabel(r"test error $\|\beta_\infty - \beta^*\|_2^2$")
    ax_e.set_title("(a) large steps hurt GD and help SGD")
    ax_e.set_ylim(top=ax_e.get_ylim()[1] * 1.5)
    ax_k.legend(*ax_e.get_legend_handles_labels(), loc="center", ncol=3, fontsize=8)
    # (b) q_E(x) with the observed per-step |x| of large-step GD
    xx = np.linspace(0.0, 2.0, 401)
    xx = xx[np.abs(np.abs(xx) - 1.0) > 1e-3]
    q = q_even(xx)
    cv.line(ax_q, "b: q_E(x)", "q_E(x) = -ln|1 - x^2|", xx[xx < 1], q[xx < 1], color="#444444", lw=1.2,
            label=r"$q_E(x) = -\ln|1 - x^2|$")
    cv.line(ax_q, "b: q_E(x)", "q_E(x) = -ln|1 - x^2| (|x| > 1)", xx[xx > 1], q[xx > 1], color="#444444", lw=1.2)
    ax_q.axvline(np.sqrt(2.0), color="#888888", lw=0.8, ls="--")
    ax_q.axhline(0.0, color="#888888", lw=0.8)
    ax_q.axvspan(np.sqrt(2.0), 2.0, color=color("bgr"), alpha=0.08, lw=0)
    ax_q.text(np.sqrt(2.0) + 0.03, 2.6, "|x| > √2:\ngain < 0\n(α grows)", fontsize=7.5, va="top")
    eos = C.select(recs, kind="eos")
    etas = sorted({r["eta"] for r in eos})
    shades = dict(zip(etas, np.linspace(0.3, 1.0, max(len(etas), 1))))
    seed0 = seeds[0]
    for r in C.select(recs, kind="eos", seed=seed0):
        xs = np.asarray(r["x"])
        if xs.size:
            cv.scatter(ax_q, "b: per-step events", f"GD eta={r['eta']:g} (seed {seed0})", xs, q_even(xs), s=9,
                       color=color("gd"), alpha=shades[r["eta"]], label=f"GD η = {r['eta']:g}: steps with |x| > 0.2")
    ax_q.set_xlim(0.0, 2.0)
    ax_q.set_ylim(-2.0, 3.0)
    ax_q.set_xlabel(r"$|x| = |2\eta g_i|$ of one step and coordinate")
    ax_q.set_ylabel(r"$q_E(x)$ = twice the gain of the step")
    ax_q.set_title(f"(b) per-step gain $q_E$ (GD, seed {seed0})")
    ax_q.legend(loc="lower left", fontsize=7)
    # (c) largest |x| over the run against η
    xs, T = C.table(recs, "max_x", "eta", seeds, kind="eos")
    mean, lo, hi = C.mean_band(T)
    cv.line(ax_x, "c: max |x|", "GD max |2 eta g| over steps and coordinates", xs, mean, lo, hi, color=color("gd"),
            marker="o", label=r"GD: $\max_{k,i}|2\eta g_{k,i}|$")
    ax_x.axhline(1.0, color="#888888", lw=0.8, ls=":", label="|x| = 1: u or v changes sign")
    ax_x.axhline(np.sqrt(2.0), color=color("bgr"), lw=0.8, ls="--", label="|x| = √2: gain changes sign")
    if "gd" in first_div:
        ax_x.axvline(first_div["gd"], color=color("gd"), lw=1.0, ls=":", label="first divergence (some seed)")
    ax_x.set_xlabel(r"learning rate $\eta$ (converged GD runs)")
    ax_x.set_ylabel("largest |x| over the run")
    ax_x.set_title("(c) edge of stability: |x| near √2")
    ax_x.legend(loc="upper left", fontsize=7)
    cv.note(f"α = {m['alpha']}; GD (max {m['gd_max_steps']} steps) and SGD (batch 1, max {m['sgd_max_steps']} steps) "
            f"in discrete time, converged when L ≤ {m['loss_tol']:g}·L(0); GR with γ = η/2 are flows. (a): mean and range over the seeds that converged, drawn "
            f"while at least half of the {len(seeds)} seeds converge (open markers: not all did; dotted line: first "
            f"such η). (b, c): per-step x = 2ηg_k recomputed from "
            f"the recorded GD path, for converged runs with η ≥ {m['eos_from']}; the gain of a step is "
            f"½q_E(x) (α_K = α·exp(−½Σq_E)). n = {m['n']}, d = {m['d']}, k = {m['k']}, Gaussian X, noiseless.")
    return cv.fig


def main(argv=None) -> int:
    return C.script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
