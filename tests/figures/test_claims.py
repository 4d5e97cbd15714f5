"""Each figure exists to show one qualitative claim: compute it in quick mode and assert the claim
from the records (never from stored numbers).  Every ``compute(quick=True)`` runs once per module.
The last section checks legibility on the drawn figures: what a reader must be able to tell apart.
"""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from figures import common as C
from figures import (fig1_kernel_rich as F1, fig2_gr_regime as F2, fig3_ascent_step as F3, fig4_gain_shape as F4,
                     fig5_theory_vs_sim as F5, fig6_flooding as F6, fig7_sam as F7, fig8_incremental as F8,
                     fig9_large_steps as F9)
from figures import run as R
from figures.style import METHOD_COLORS

MODULES = (F1, F2, F3, F4, F5, F6, F7, F8, F9)
_CACHE: dict = {}


def quick_records(module):
    if module.NAME not in _CACHE:
        _CACHE[module.NAME] = module.compute(quick=True)
    return _CACHE[module.NAME]


@pytest.fixture(scope="module", params=MODULES, ids=lambda m: m.NAME)
def figure(request):
    return request.param, quick_records(request.param)


def mean_over_seeds(recs, field, x, **where):
    seeds = C.seeds_of(C.select(recs, kind="run"))
    xs, T = C.table(recs, field, x, seeds, **where)
    return xs, T, C.mean_band(T)[0]


# ---------------------------------------------------------------------------------------------
# Figure 1: kernel (min-ℓ2) at large α, rich (min-ℓ1) at small α
# ---------------------------------------------------------------------------------------------
def test_fig1_gf_interpolates_between_min_l2_and_min_l1():
    recs = quick_records(F1)
    xs, T, l1 = mean_over_seeds(recs, "l1_norm", "alpha", kind="run", method="gf")
    _, E, err = mean_over_seeds(recs, "test_error", "alpha", kind="run", method="gf")
    ref = {name: {r["seed"]: r for r in C.select(recs, kind="ref", method=name)} for name in ("min_l1", "min_l2")}
    l1_min = np.mean([r["l1_norm"] for r in ref["min_l1"].values()])
    assert np.all(np.diff(l1) >= -1e-9 * l1[:-1]), "‖β_α‖₁ must grow with α (rich → kernel)"
    assert l1[0] <= 1.05 * l1_min, "smallest α: ‖β‖₁ within 5% of the min-ℓ1 interpolator"
    for r in C.select(recs, kind="run", method="gf", alpha=float(xs[-1])):
        assert r["test_error"] == pytest.approx(ref["min_l2"][r["seed"]]["test_error"], rel=1e-2)
    assert err[0] < 1e-2 * err[-1], "the rich regime generalises far better on a sparse β*"


# ---------------------------------------------------------------------------------------------
# Figure 2: per-sample GR moves towards rich (helps), full-batch GR does not
# ---------------------------------------------------------------------------------------------
def test_fig2_per_sample_gr_helps_full_batch_gr_does_not():
    recs = quick_records(F2)
    at = dict(kind="run", alpha=0.1)
    gf = {r["seed"]: r["test_error"] for r in C.select(recs, method="gf", **at)}

    def mean(method, variant):
        return np.mean([r["test_error"] for r in C.select(recs, method=method, variant=variant, **at)])

    assert mean("fgr", "per-sample") < mean("gr", "per-sample") < mean("bgr", "per-sample") < np.mean(list(gf.values()))
    for r in C.select(recs, method="gr", variant="full", **at):
        assert r["test_error"] >= gf[r["seed"]], "full-batch GR does not beat GF (support-heavy gain, §7.8)"
    for r in C.select(recs, kind="run", alpha=1.0):  # kernel end: every method agrees with GF
        gf1 = C.select(recs, kind="run", method="gf", alpha=1.0, seed=r["seed"])[0]["test_error"]
        assert r["test_error"] == pytest.approx(gf1, rel=0.05)


# ---------------------------------------------------------------------------------------------
# Figure 3: per-sample F-GR improves with ε, B-GR degrades, GR below GF
# ---------------------------------------------------------------------------------------------
def test_fig3_larger_ascent_step_helps_per_sample():
    recs = quick_records(F3)
    _, _, f = mean_over_seeds(recs, "test_error", "eps", kind="run", method="fgr", variant="per-sample")
    xb, _, b = mean_over_seeds(recs, "test_error", "eps", kind="run", method="bgr", variant="per-sample")
    gr = np.mean([r["test_error"] for r in C.select(recs, kind="run", method="gr", variant="per-sample")])
    gf = np.mean([r["test_error"] for r in C.select(recs, kind="run", method="gf")])
    assert np.all(np.diff(f) < 0), "per-sample F-GR: test error decreases as ε grows"
    assert np.all(np.diff(b[np.argsort(-xb)]) > 0), "per-sample B-GR: test error increases with |ε|"
    assert f[0] < gr < b[np.argmax(xb)] and gr < gf, "F-GR < GR < B-GR near ε = 0, and GR below GF"
    grf = np.mean([r["test_error"] for r in C.select(recs, kind="run", method="gr", variant="full")])
    _, _, ff = mean_over_seeds(recs, "test_error", "eps", kind="run", method="fgr", variant="full")
    assert grf > gf and ff[-1] >= grf, "full batch: GR and F-GR slightly hurt (§7.8), shown honestly"


# ---------------------------------------------------------------------------------------------
# Figure 4: full-batch gains sit on the support, per-sample gains are nearly uniform
# ---------------------------------------------------------------------------------------------
def test_fig4_gain_shape_decides_sparse_recovery():
    recs = quick_records(F4)
    seeds = C.seeds_of(recs)

    def ratio(key):
        rs = C.select(recs, kind="run", key=key)
        return np.mean([r["gain_on"] / r["gain_off"] for r in rs])

    def rel_error(key):
        return np.mean([C.select(recs, kind="run", key=key, seed=s)[0]["test_error"]
                        / C.select(recs, kind="run", key="gf", seed=s)[0]["test_error"] for s in seeds])

    for key in ("gd", "gr-full", "fgr-full", "bgr-full"):
        assert ratio(key) > 3.0, f"{key}: gain concentrated on the support"
        assert rel_error(key) > 1.0, f"{key}: support-heavy shrinkage hurts sparse recovery"
    for key in ("gr-ps", "fgr-ps", "sgd", "1sam"):
        assert ratio(key) < 2.0, f"{key}: nearly uniform gain"
        assert rel_error(key) < 1.0, f"{key}: uniform shrinkage helps sparse recovery"
    assert min(ratio(k) for k in ("gd", "gr-full")) > 2.0 * max(ratio(k) for k in ("gr-ps", "sgd", "1sam"))


# ---------------------------------------------------------------------------------------------
# Figure 5: β∞ = argmin Q_{α_eff} exactly; the nominal α does not predict it
# ---------------------------------------------------------------------------------------------
def test_fig5_effective_alpha_predicts_every_mechanism():
    recs = quick_records(F5)
    runs = C.select(recs, kind="run")
    assert runs and all(r["status"] == "converged" for r in runs)
    for r in runs:
        assert r["measured"] < 1e-9, f"{r['key']}: argmin Q with the measured α_eff is exact"
        if r["key"] not in ("gd", "sgd"):
            assert r["theory"] < 1e-9, f"{r['key']}: the gain-integral α_eff is exact for flows"
        if r["key"] == "gf":
            assert r["naive"] < 1e-9, "GF conserves u⊙v: the nominal α is the effective one"
        else:
            assert r["naive"] > 1e-3 and r["naive"] > 1e6 * r["measured"], f"{r['key']}: nominal α is wrong"
    for r in C.select(recs, kind="run", key="gd") + C.select(recs, kind="run", key="sgd"):
        assert r["measured"] < r["theory"] < r["naive"], "discrete time: the small-step formula is O(η)"


# ---------------------------------------------------------------------------------------------
# Figure 6: two flooding steps = one F-GR step, error O(η)
# ---------------------------------------------------------------------------------------------
def test_fig6_flooding_is_finite_difference_gr():
    recs = quick_records(F6)
    m = C.meta(recs)
    for seed in m["seeds"]:
        rs = sorted(C.select(recs, kind="run", seed=seed), key=lambda r: r["eta"])
        errs = np.array([r["disp_err_median"] for r in rs])
        gains = np.array([r["gain_rel_err"] for r in rs])
        etas = np.array([r["eta"] for r in rs])
        assert np.all(errs < 0.05) and np.all(gains < 0.05)
        slope = np.diff(np.log(errs)) / np.diff(np.log(etas))
        assert np.all((slope > 0.8) & (slope < 1.2)), "two-step displacement error is O(η)"
        assert np.all(np.diff(gains) > 0), "the F-GR bookkeeping of α_eff improves as η → 0"
        assert all(r["n_pairs"] > 100 for r in rs), "flooding alternates ascent and descent at the level"
    r0 = C.select(recs, kind="run", seed=m["seeds"][0])[0]
    loss = np.asarray(r0["loss"])[r0["k_level"]:]
    assert np.all(np.abs(loss - m["level"]) < 0.1 * m["level"]), "the loss stays at the flood level"


# ---------------------------------------------------------------------------------------------
# Figure 7: n-SAM / 1-SAM are F-GR with γ = ε = ρ; 1-SAM shrinks α far more and helps
# ---------------------------------------------------------------------------------------------
def test_fig7_sam_is_fgr_and_one_sam_is_richer():
    recs = quick_records(F7)
    for v in F7.VARIANTS:
        for r in C.select(recs, kind="run", key=f"usam-{v}"):
            twin = C.select(recs, kind="run", key=f"fgr-{v}", seed=r["seed"], rho=r["rho"])[0]
            assert twin["test_error"] == pytest.approx(r["test_error"], rel=1e-8, abs=1e-14)
            assert twin["gain_mean"] == pytest.approx(r["gain_mean"], rel=1e-8, abs=1e-14)
    xs, _, g_n = mean_over_seeds(recs, "gain_mean", "rho", kind="run", key="usam-full")
    _, _, g_1 = mean_over_seeds(recs, "gain_mean", "rho", kind="run", key="usam-per-sample")
    assert np.all(g_1 > 3.0 * g_n) and np.all(np.diff(g_n) > 0) and np.all(np.diff(g_1) > 0)
    _, _, e_1 = mean_over_seeds(recs, "test_error", "rho", kind="run", key="usam-per-sample")
    _, _, e_n = mean_over_seeds(recs, "test_error", "rho", kind="run", key="usam-full")
    gf = np.mean([r["test_error"] for r in C.select(recs, kind="run", key="gf")])
    assert np.all(np.diff(e_1) < 0) and e_1[-1] < 0.5 * gf, "1-SAM: larger ρ, better sparse recovery"
    assert e_n[-1] >= gf, "n-SAM (support-heavy gain) does not help"
    for r in C.select(recs, kind="run", method="sam"):
        assert r["status"] == "max_steps" and r["train_loss"] > 0, "normalised SAM never interpolates"


# ---------------------------------------------------------------------------------------------
# Figure 8: saddle-to-saddle; GR delays the first escape
# ---------------------------------------------------------------------------------------------
def test_fig8_incremental_learning_and_gr_delay():
    recs = quick_records(F8)
    runs = {(r["method"], r["variant"]): r for r in C.select(recs, kind="run")}
    gf = runs[("gf", "full")]
    esc = np.asarray(gf["escape"])
    assert np.all(np.isfinite(esc)) and esc.max() > 2.0 * esc.min(), "coordinates are learned one after another"
    for key in (("gr", "full"), ("gr", "per-sample")):
        assert np.min(runs[key]["escape"]) > np.min(esc), f"{key}: GR shrinks α_eff on the first plateau"
    for r in runs.values():
        assert r["test_error"] < 1e-6, "small α: the support is recovered"


# ---------------------------------------------------------------------------------------------
# Figure 9: large steps hurt GD, help SGD; GD ≈ GR(γ = η/2); the gain sign flips at |x| > √2
# ---------------------------------------------------------------------------------------------
def test_fig9_large_steps():
    recs = quick_records(F9)
    seeds = C.seeds_of(C.select(recs, kind="run"))
    gf = np.mean([r["test_error"] for r in C.select(recs, kind="run", key="gf")])
    for key, worse in (("gd", True), ("sgd", False)):
        xs, T = C.table(recs, "test_error", "eta", seeds, kind="run", key=key)
        ok = np.all(np.isfinite(T), axis=0)
        last = np.flatnonzero(ok)[-1]
        mean = T[:, ok].mean(axis=0)
        if worse:
            assert T[:, last].mean() > 1.5 * T[:, 0].mean() and T[:, last].mean() > gf, "large steps hurt GD"
        else:
            assert np.all(np.diff(mean) < 0) and T[:, last].mean() < 0.8 * gf, "large steps help SGD"
    xs, gd = C.table(recs, "test_error", "eta", seeds, kind="run", key="gd")
    _, gr = C.table(recs, "test_error", "eta", seeds, kind="run", key="gr-full")
    gf_s = np.array([C.select(recs, kind="run", key="gf", seed=s)[0]["test_error"] for s in seeds])
    assert np.all(np.abs(gd[:, 0] - gr[:, 0]) < 0.25 * np.abs(gd[:, 0] - gf_s)), "GD ≈ GR(γ = η/2) at small η"
    eos = C.select(recs, kind="eos")
    assert eos and max(r["max_x"] for r in eos) > math.sqrt(2.0), "some converged GD step has |2ηg| > √2"
    for s in seeds:
        rs = sorted(C.select(recs, kind="eos", seed=s), key=lambda r: r["eta"])
        assert np.all(np.diff([r["max_x"] for r in rs]) > 0)
        for r in rs:
            x = np.asarray(r["x"])
            q = -np.log(np.abs(1.0 - x * x))
            assert np.all((q < 0) == (x > math.sqrt(2.0))), "q_E < 0 exactly beyond √2"


# ---------------------------------------------------------------------------------------------
# every figure: plot from the records, write PNG/PDF/CSV, one colour per method
# ---------------------------------------------------------------------------------------------
def test_plot_draws_and_writes_the_plotted_numbers(figure, tmp_path):
    module, recs = figure
    fig = module.plot(recs)
    paths = C.save(fig, tmp_path, dpi=30, formats=("png", "csv"))  # PDF: see the CLI test
    assert [p.rsplit(".", 1)[1] for p in paths] == ["png", "csv"]
    assert all((tmp_path / f"{module.NAME}.{ext}").stat().st_size > 0 for ext in ("png", "csv"))
    with open(paths[1], newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == C.CSV_COLUMNS
    assert len(rows) > 1 and all(r[0] == module.NAME for r in rows[1:])
    assert all(r[4] == "" or math.isfinite(float(r[4])) for r in rows[1:])
    assert len({r[2] for r in rows[1:]}) >= 2, "several series"


def test_one_colour_per_method():
    colours = list(METHOD_COLORS.values())
    assert len(set(colours)) == len(colours)


def test_figures_cli_selects_and_rejects(tmp_path, capsys):
    assert R.resolve(["3", "fig7", "fig1_kernel_rich"]) == ["fig3_ascent_step", "fig7_sam", "fig1_kernel_rich"]
    with pytest.raises(ValueError, match="'only' parameter of figures"):
        R.resolve(["fig42"])
    from dln.cli import main

    assert main(["figures", "--out", str(tmp_path), "--only", "fig10"]) == 2
    assert "dln: error:" in capsys.readouterr().err
    assert main(["figures", "--out", str(tmp_path), "--quick", "--only", "1", "--jobs", "1", "--dpi", "40"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{F1.NAME}.{e}" for e in ("csv", "pdf", "png")]


# ---------------------------------------------------------------------------------------------
# legibility: what a reader of the gallery must be able to tell apart (drawn from quick records)
# ---------------------------------------------------------------------------------------------
def panel(fig, letter):
    """The axes whose title starts with "(letter)"."""
    hits = [ax for ax in fig.axes if ax.get_title().startswith(f"({letter})")]
    assert len(hits) == 1, [ax.get_title() for ax in fig.axes]
    return hits[0]


_DRAWN: dict = {}


def drawn(module):
    """The figure of the quick records, drawn once per module and shared by the tests below."""
    if module.NAME not in _DRAWN:
        fig = module.plot(quick_records(module))
        fig.canvas.draw()
        C.plt.close(fig)  # out of pyplot's registry; the Figure stays usable for inspection
        _DRAWN[module.NAME] = fig
    return _DRAWN[module.NAME]


def test_footnote_is_legible_and_wrapped(figure):
    module, recs = figure
    fig = drawn(module)
    note = fig.dln_note
    assert note.get_fontsize() >= 8.0, "footnote at least 8 pt at the saved size"
    box = note.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, "footnote wrapped inside the figure"
    axes_bottom = min(ax.get_tightbbox().y0 for ax in fig.axes if ax.get_visible())
    assert box.y1 <= axes_bottom + 1.0, "footnote below every panel, not over one"


def test_gallery_resolution(tmp_path):
    assert C.GALLERY_DPI >= 100
    fig = C.plt.figure(figsize=(5.0, 2.0))
    fig.dln_rows = []
    paths = C.save(fig, tmp_path / "out", name="blank", gallery=str(tmp_path / "gallery"), formats=("png",))
    from matplotlib.image import imread

    assert imread(paths[-1]).shape[1] == round(5.0 * C.GALLERY_DPI)


def legends(fig):
    return [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)


def test_fig9_legend_outside_the_data():
    """The legend of (a) (nine entries) sits outside the panel, not over its curves and bands."""
    fig = drawn(F9)
    (legend,) = [lg for lg in legends(fig) if "SGD (batch 1)" in [t.get_text() for t in lg.get_texts()]]
    assert not legend.get_window_extent().overlaps(panel(fig, "a").get_window_extent())


def test_fig2_methods_differ_by_marker_where_curves_coincide():
    fig = drawn(F2)
    for letter in "abcd":
        lines = [ln for ln in panel(fig, letter).get_lines() if ln.get_label().split(" ")[0] in ("GR", "F-GR", "B-GR")]
        assert len(lines) == 3
        assert len({ln.get_marker() for ln in lines}) == 3, f"({letter}): one marker per method"


def test_fig5_full_and_per_sample_differ_by_marker_and_fill():
    scatters = {c.get_label(): c for c in panel(drawn(F5), "a").collections}
    for full, per_sample in (("GR full", "GR per-sample"), ("F-GR full", "F-GR per-sample"),
                             ("B-GR full", "B-GR per-sample"), ("n-SAM", "1-SAM")):
        a, b = scatters[full], scatters[per_sample]
        assert not np.array_equal(a.get_paths()[0].vertices, b.get_paths()[0].vertices), (full, "marker shape")
        assert a.get_facecolor()[0][3] > 0, (full, "full batch: filled")
        assert len(b.get_facecolor()) == 0 or b.get_facecolor()[0][3] == 0, (per_sample, "per-sample: open")
        assert np.allclose(a.get_facecolor()[0][:3], b.get_edgecolor()[0][:3]), "one colour per method"


def test_fig6_etas_distinct_ticks_and_support_legend():
    fig = drawn(F6)
    lines = [ln for ln in panel(fig, "a").get_lines() if ln.get_label().startswith("flooding")]
    rgb = {tuple(np.round(C.plt.matplotlib.colors.to_rgb(ln.get_color()), 3)) for ln in lines}
    assert len(lines) >= 2 and len(rgb) == len(lines), "(a): one colour (not one shade of a colour) per η"
    assert len({str(ln.get_linestyle()) for ln in lines}) == len(lines), "(a): one line style per η"
    ax = panel(fig, "b")
    lo, hi = ax.get_ylim()
    labelled = [t for t in ax.get_yticklabels() if t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(labelled) >= 3, "(b): at least three labelled ticks"
    assert any("support" in t.get_text() for t in panel(fig, "c").get_legend().get_texts()), \
        "(c): the support markers are in the legend"


def _only_legend(fig):
    (legend,) = legends(fig)
    return legend


def test_fig7_names_as_the_cli_spells_them():
    from dln.methods import METHODS

    texts = [t.get_text() for t in _only_legend(drawn(F7)).get_texts()]
    for text in texts:
        words = text.replace(",", " ").split()
        assert words[0] in METHODS, text
        if words[0] != "gf":
            assert words[1] in ("full", "per-sample"), text
    assert {"usam, full (n-SAM)", "usam, per-sample (1-SAM)", "sam, full (normalised SAM)"} <= set(texts)


def test_fig7_seed_count_beside_each_incomplete_point():
    """Drop seeds of 1-SAM at the largest ρ as if they had diverged: the point shows 'k/n'."""
    import copy

    recs = copy.deepcopy(quick_records(F7))
    seeds = C.meta(recs)["seeds"]
    rho_max = max(r["rho"] for r in C.select(recs, kind="run", key="usam-per-sample"))
    for r in C.select(recs, kind="run", key="usam-per-sample", rho=rho_max):
        if r["seed"] != seeds[0]:
            r.update(status="diverged", test_error=np.nan, gain_mean=np.nan)
    kept = 1
    fig = F7.plot(recs)
    C.plt.close(fig)
    for letter in "ab":
        counts = [t for t in panel(fig, letter).texts if "/" in t.get_text()]
        assert [t.get_text() for t in counts] == [f"{kept}/{len(seeds)}"], letter
        assert counts[0].xy[0] == pytest.approx(rho_max)
    rows = [r for r in fig.dln_rows if r["series"].endswith("seeds behind the point")]
    assert [(r["x"], r["y"]) for r in rows] == [(rho_max, kept)] * 2
    # every seed converged in the quick records: no count is drawn
    assert not [t for ax in drawn(F7).axes for t in ax.texts if "/" in t.get_text()]


def test_fig8_one_gamma_stated_in_each_panel():
    gammas = {r["gamma"] for r in C.select(quick_records(F8), kind="run", method="gr")}
    assert len(gammas) == 1, "one γ for both penalties"
    (gamma,) = gammas
    for letter in "bc":
        assert f"γ = {gamma:g}" in panel(drawn(F8), letter).get_title()
