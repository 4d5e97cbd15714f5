"""Shared helpers of the figure scripts: sizes, seeds, runs, mean/band, and the plotted-data table.

Every figure module exposes

- ``NAME`` (file stem), ``TITLE``;
- ``compute(quick=False) -> list[dict]``: pure, plain records (no matplotlib);
- ``plot(records) -> Figure``: draws through a :class:`Canvas`, which keeps the exact numbers it
  plots in ``fig.dln_rows`` (long format: figure, panel, series, x, y, lo, hi);
- ``main(argv)``: ``python -m figures.figN_... --out DIR [--quick] [--dpi N]``.

:func:`save` writes ``NAME.png``, ``NAME.pdf`` and ``NAME.csv`` (docs/design.md §6).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import textwrap
import time
from dataclasses import dataclass

import numpy as np

from . import style  # noqa: F401  (Agg backend before pyplot)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter  # noqa: E402

from dln.problem import make_problem  # noqa: E402
from dln.simulate import records as _records, run_batch  # noqa: E402

CSV_COLUMNS = ("figure", "panel", "series", "x", "y", "lo", "hi")


# ---------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Problem size, seeds and integrator tolerance of one figure run.

    Full: the default problem (canonical DLN, Gaussian design, n = 40, d = 100, k = 5,
    unit-norm β*, noiseless), 5 seeds.  Quick: n = 20, d = 50, k = 3, 2 seeds.
    ``rtol`` is the flow's local tolerance: the exact invariants (ln(u⊙v) + coef·∫gain and the
    null-space part of z) are kept to round-off whatever the tolerance (dln.integrate), so a loose
    one changes β∞ only through the gain integral (1e-7 → test errors to ~1e-10).
    """

    quick: bool
    n: int
    d: int
    k: int
    seeds: tuple
    rtol: float


def config(quick: bool = False, seeds: int | None = None) -> Config:
    if quick:
        return Config(True, 20, 50, 3, tuple(range(seeds or 2)), 1e-5)
    return Config(False, 40, 100, 5, tuple(range(seeds or 5)), 1e-7)


def problem(cfg: Config, seed: int):
    """The default synthetic problem of the figures (no held-out set: test error = ‖β − β*‖²)."""
    return make_problem(cfg.n, cfg.d, cfg.k, noise=0.0, design="gaussian", seed=seed, n_test=0)


def run(P, method: str, cfg: Config, **kwargs):
    """``dln.simulate.run_batch`` with the figure's tolerance; overflow of diverged runs is silent."""
    kwargs.setdefault("rtol", cfg.rtol)
    if kwargs.get("time") == "discrete":
        kwargs.pop("rtol")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return run_batch(P, method, **kwargs)


def records(result, predict: bool = False) -> list[dict]:
    """``dln.simulate.records`` without floating-point warnings for diverged runs."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _records(result, predict=predict)


def gains(result) -> np.ndarray:
    """Per-coordinate gain −ln(α_eff,i/α) of every run, shape (B, d) (docs/theory.md §1)."""
    return -0.5 * (result.log_c - result.log_c0)


def finite_or_nan(x) -> float:
    x = float(x) if x is not None else math.nan
    return x if math.isfinite(x) else math.nan


def mean_band(values, axis: int = 0):
    """Mean and [min, max] over seeds, ignoring NaN (diverged or missing runs) without warnings.

    Returns three arrays; entries with no finite value are NaN.
    """
    a = np.asarray(values, dtype=float)
    ok = np.isfinite(a)
    cnt = ok.sum(axis=axis)
    s = np.where(ok, a, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)
    lo = np.where(cnt > 0, np.where(ok, a, np.inf).min(axis=axis), np.nan)
    hi = np.where(cnt > 0, np.where(ok, a, -np.inf).max(axis=axis), np.nan)
    return mean, lo, hi


def geo_mean_band(values, axis: int = 0):
    """Geometric mean and [min, max] of positive values (for log axes)."""
    a = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(a > 0, np.log(np.where(a > 0, a, 1.0)), np.nan)
    m, lo, hi = mean_band(la, axis=axis)
    return np.exp(m), np.exp(lo), np.exp(hi)


def select(recs, /, **where) -> list[dict]:
    """Records whose keys equal the given values."""
    return [r for r in recs if all(r.get(k) == v for k, v in where.items())]


def table(recs, field: str, x: str, seeds, /, **where):
    """Array (len(seeds), len(xs)) of ``field`` over seeds and the sorted distinct values of ``x``."""
    sub = select(recs, **where)
    xs = sorted({r[x] for r in sub})
    out = np.full((len(seeds), len(xs)), np.nan)
    si = {s: i for i, s in enumerate(seeds)}
    xi = {v: j for j, v in enumerate(xs)}
    for r in sub:
        if r["seed"] in si:
            out[si[r["seed"]], xi[r[x]]] = finite_or_nan(r[field])
    return np.asarray(xs, dtype=float), out


def seeds_of(recs) -> tuple:
    return tuple(sorted({r["seed"] for r in recs if "seed" in r}))


def meta(recs) -> dict:
    """The record with kind == 'meta' (problem size, seeds, settings)."""
    for r in recs:
        if r.get("kind") == "meta":
            return r
    raise ValueError("The records must contain one record with kind 'meta'. Got none instead.")


# ---------------------------------------------------------------------------------------------
# drawing with a record of the plotted numbers
# ---------------------------------------------------------------------------------------------
class Canvas:
    """A figure whose drawing calls also append the plotted numbers to ``fig.dln_rows``."""

    def __init__(self, name: str, nrows: int = 1, ncols: int = 1, *, figsize=(6.4, 4.0),
                 title: str | None = None, **kw):
        self.name = name
        self.fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, **kw)
        self.axes = axes
        self.rows: list[dict] = []
        self.fig.dln_rows = self.rows
        self.fig.dln_name = name
        if title:
            self.fig.suptitle(title, fontsize=11)

    def _add(self, panel, series, x, y, lo=None, hi=None):
        n = len(y)
        lo = [None] * n if lo is None else list(lo)
        hi = [None] * n if hi is None else list(hi)
        for xi, yi, l, h in zip(x, y, lo, hi):
            self.rows.append(dict(figure=self.name, panel=panel, series=series, x=xi, y=yi, lo=l, hi=h))

    def line(self, ax, panel, series, x, y, lo=None, hi=None, *, floor=None, band_alpha=0.18, band_edges=False,
             **kw):
        """Line (with markers from ``kw``) and an optional shaded band [lo, hi] (``band_edges``: with
        its two edges drawn as thin lines in the line's colour and style, for overlapping bands).

        Non-finite points are left out (not drawn, not written).  ``floor`` clips values from
        below, for log axes (the clipped values are the ones written).
        """
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        lo = None if lo is None else np.asarray(lo, dtype=float)
        hi = None if hi is None else np.asarray(hi, dtype=float)
        if floor is not None:
            y = np.maximum(y, floor)
            lo = None if lo is None else np.maximum(lo, floor)
            hi = None if hi is None else np.maximum(hi, floor)
        ok = np.isfinite(x) & np.isfinite(y)
        if lo is not None:
            ok &= np.isfinite(lo) & np.isfinite(hi)
        x, y = x[ok], y[ok]
        lo = None if lo is None else lo[ok]
        hi = None if hi is None else hi[ok]
        if x.size == 0:
            return None
        (ln,) = ax.plot(x, y, **kw)
        if lo is not None and band_alpha:
            ax.fill_between(x, lo, hi, color=ln.get_color(), alpha=band_alpha, lw=0)
        if lo is not None and band_edges:
            for edge in (lo, hi):
                ax.plot(x, edge, color=ln.get_color(), ls=ln.get_linestyle(), lw=0.6, alpha=0.7)
        self._add(panel, series, x, y, lo, hi)
        return ln

    def hline(self, ax, panel, series, y, lo=None, hi=None, band_alpha=0.12, **kw):
        """Horizontal reference line at y (with an optional band)."""
        kw.setdefault("lw", 1.2)
        ln = ax.axhline(y, **kw)
        if lo is not None and band_alpha and np.isfinite(lo) and np.isfinite(hi):
            ax.axhspan(lo, hi, color=ln.get_color(), alpha=band_alpha, lw=0)
        self._add(panel, series, [math.nan], [y], None if lo is None else [lo], None if hi is None else [hi])
        return ln

    def vline(self, ax, panel, series, x, **kw):
        ln = ax.axvline(x, **kw)
        self._add(panel, series, [x], [math.nan])
        return ln

    def scatter(self, ax, panel, series, x, y, **kw):
        x = np.asarray(x, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
        ok = np.isfinite(x) & np.isfinite(y)
        if "c" in kw and np.ndim(kw["c"]) == 1 and len(kw["c"]) == len(ok):
            kw["c"] = np.asarray(kw["c"])[ok]
        art = ax.scatter(x[ok], y[ok], **kw)
        self._add(panel, series, x[ok], y[ok])
        return art

    def bars(self, ax, panel, series, pos, y, lo=None, hi=None, *, categories=None, width=0.25,
             **kw):
        """Bars at ``pos`` (with [lo, hi] whiskers); the CSV x column holds ``categories``."""
        pos = np.asarray(pos, dtype=float)
        y = np.asarray(y, dtype=float)
        ok = np.isfinite(y)
        yerr = None
        if lo is not None:
            lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
            ok &= np.isfinite(lo) & np.isfinite(hi)
            yerr = np.vstack([y - lo, hi - y])[:, ok]
        art = ax.bar(pos[ok], y[ok], width=width, yerr=yerr, capsize=2,
                     error_kw=dict(lw=0.8), **kw)
        cats = list(categories) if categories is not None else list(pos)
        self._add(panel, series, [c for c, o in zip(cats, ok) if o], y[ok],
                  None if lo is None else lo[ok], None if hi is None else hi[ok])
        return art

    def legend_axes(self, axes):
        """Replace the axes ``axes`` (one row of the grid) by one axes across the row, blank (for a
        legend; ``ax.axis("on")`` for a wide panel)."""
        gs = axes[0].get_subplotspec()
        for ax in axes:
            ax.remove()
        ax = self.fig.add_subplot(gs.get_gridspec()[gs.rowspan.start, :])
        ax.axis("off")
        return ax

    def annotate(self, ax, panel, series, x, y, value, text, **kw):
        """Text ``text`` at (x, y) (e.g. a count beside a marker); the CSV row holds (x, value)."""
        ax.annotate(text, (x, y), **kw)
        self._add(panel, series, [x], [value])

    def note(self, text: str):
        """A footnote under the axes (settings, what was done), wrapped to the figure width.

        NOTE_FONTSIZE points at the saved size, so also legible in the gallery PNGs.
        """
        fs = NOTE_FONTSIZE
        width_pt = 72.0 * self.fig.get_figwidth() - 14.0  # a margin of 7 pt on either side
        text = textwrap.fill(text, width=int(width_pt / (NOTE_CHAR_EM * fs)))
        lines = text.count("\n") + 1
        h = (6.0 + lines * fs * NOTE_LINESPACING) / (72.0 * self.fig.get_figheight())
        self.fig.get_layout_engine().set(rect=(0, h, 1, 1 - h))
        self.fig.dln_note = self.fig.text(7.0 / (72.0 * self.fig.get_figwidth()), 0.004, text, fontsize=fs,
                                          color="#333333", ha="left", va="bottom", linespacing=NOTE_LINESPACING)


#: Footnote font size (points) and line spacing; NOTE_CHAR_EM is a generous mean character width
#: of the default font (DejaVu Sans: about 0.55 em for this prose), used to wrap the footnote.
NOTE_FONTSIZE = 8.0
NOTE_LINESPACING = 1.3
NOTE_CHAR_EM = 0.6


def log_ticks(ax, subs=(1.0, 2.0, 3.0, 5.0)):
    """Labelled ticks at subs × 10^k on the (log) y axis of ``ax``, with limits widened to the ticks
    just outside the data, so that a narrow range (less than a decade) still shows several labels."""
    lo, hi = ax.dataLim.intervaly
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        return
    grid = np.array([s * 10.0 ** k for k in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
                     for s in subs])
    ax.set_ylim(grid[grid <= lo].max() / 1.03, grid[grid >= hi].min() * 1.03)
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    every = (np.inf, np.inf)  # label every tick of the locator, whatever the number of decades
    ax.yaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=every))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(v) else f"{float(v):.10g}"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def write_csv(rows, path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in CSV_COLUMNS])


#: Resolution of the README gallery PNGs (the figures are 9.5–10 in wide: about 1000 px).
GALLERY_DPI = 110


def save(fig, out, dpi: int = 100, name: str | None = None, gallery: str | None = None,
         formats=("png", "pdf", "csv")) -> list[str]:
    """Write NAME.png (at ``dpi``), NAME.pdf and NAME.csv (the plotted numbers) into ``out``;
    with ``gallery``, also a PNG at GALLERY_DPI for the README into that folder."""
    name = name or fig.dln_name
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, f"{name}.{ext}") for ext in formats]
    for path, ext in zip(paths, formats):
        if ext == "csv":
            write_csv(fig.dln_rows, path)
        else:
            fig.savefig(path, dpi=dpi if ext == "png" else None)
            # keep the layout computed for the first image (constrained layout is slow)
            fig.set_layout_engine("none")
    if gallery:
        os.makedirs(gallery, exist_ok=True)
        paths.append(os.path.join(gallery, f"{name}.png"))
        fig.savefig(paths[-1], dpi=GALLERY_DPI)
    plt.close(fig)
    return paths


def make_figure(module, quick: bool = False, out: str | None = None, dpi: int = 100,
                gallery: str | None = None) -> dict:
    """compute → plot → save for one figure module; returns timings and paths."""
    t0, c0 = time.perf_counter(), time.process_time()
    recs = module.compute(quick=quick)
    t1, c1 = time.perf_counter(), time.process_time()
    fig = module.plot(recs)
    paths = save(fig, out, dpi=dpi, name=module.NAME, gallery=gallery) if out else []
    if not out:
        plt.close(fig)
    t2, c2 = time.perf_counter(), time.process_time()
    return dict(name=module.NAME, compute=t1 - t0, plot=t2 - t1, compute_cpu=c1 - c0, plot_cpu=c2 - c1,
                paths=paths)


def script_main(module, argv=None) -> int:
    """``main(argv)`` of a figure module."""
    p = argparse.ArgumentParser(prog=f"python -m figures.{module.NAME}", description=module.TITLE)
    p.add_argument("--out", default=os.path.join("figures", "out"), help="output folder (default figures/out)")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--dpi", type=int, default=100, help="PNG resolution (default 100)")
    args = p.parse_args(argv)
    info = make_figure(module, quick=args.quick, out=args.out, dpi=args.dpi)
    print(f"{info['name']}: compute {info['compute']:.1f} s (CPU {info['compute_cpu']:.1f} s), "
          f"plot {info['plot']:.1f} s -> {args.out}")
    return 0
