"""``dln plot``: figures of a user's own runs, each as NAME.png, NAME.pdf and NAME.csv (docs/design.md §5).

Two inputs:

- a sweep folder (or its ``results.csv``): a metric against a swept parameter, one line per
  (method, variant, other swept parameters), mean over seeds with a band (:func:`plot_sweep`);
  with ``y``, a heatmap of the mean metric over two swept parameters, one panel per line group;
- a trajectory file (``dln-trajectory/1``, :mod:`dln.trajectory`): loss, β coordinates and α_eff
  against time, one column per run (:func:`plot_trajectory`).

The CSV holds exactly the plotted numbers.  Which runs enter a mean is a stated rule: by default
only runs with status ``converged`` (a diverged run's metric is meaningless, a ``max_steps`` run is
not at its limit); ``all_runs=True`` takes every run with a finite value (e.g. label-noise SGD,
which never converges).  Excluded runs are counted in the CSV (``n_excluded``), the figure's
footnote and on stderr.

matplotlib is imported only when drawing, through ``figures.style`` (Agg backend, the project's
colours per method).
"""
from __future__ import annotations

import csv
import math
import os
import sys
import textwrap

import numpy as np

from .errors import DLNError, fail
from .methods import VARIANT_METHODS
from .params import TABLE
from .sweep_io import COLUMNS, HEADER, INT_COLUMNS, STR_COLUMNS, parse_line, read_results

W = "plot"
#: Parameters a sweep can vary along a numeric axis (results.csv columns named like the flags).
NUMERIC_PARAMS = tuple(p.name for p in TABLE if p.axis and p.kind is not str and p.name != "seed")
#: Categorical parameters: they only split lines / panels.
CATEGORICAL_PARAMS = ("time", "design", "data")
#: results.csv columns that can be plotted as a metric.
METRICS = tuple(c for c in COLUMNS if c not in STR_COLUMNS and c not in ("run",) + NUMERIC_PARAMS + ("seed",))
BANDS = ("minmax", "std")
SCALES = ("auto", "linear", "log")
ALPHA_EFF_MODES = ("coords", "range")
#: At most this many runs (columns) in one trajectory figure.
MAX_RUNS = 6
SYMBOL = {"alpha": "α", "gamma": "γ", "eps": "ε", "rho": "ρ", "flood_level": "b", "lr": "η", "batch_size": "B",
          "label_noise": "δ", "momentum": "μ", "noise": "σ"}


def _notify(text: str):
    print(f"dln plot: {text}", file=sys.stderr)


def _g(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else str(v)


# ---------------------------------------------------------------------------------------------
# sweeps: reading and the numbers (no matplotlib)
# ---------------------------------------------------------------------------------------------
def read_sweep(path) -> tuple[str, list[dict]]:
    """The typed rows of a sweep's results.csv (``path``: the folder or the file)."""
    path = os.fspath(path)
    csv_path = os.path.join(path, "results.csv") if os.path.isdir(path) else path
    if not os.path.isfile(csv_path):
        raise fail("path", W, "a sweep folder with a results.csv, a results.csv, or a trajectory .npz", path)
    with open(csv_path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    if header != HEADER:
        raise fail("path", W, "a results.csv written by dln sweep (its header lists run, run_id, method, ...)",
                   f"{csv_path} with header {header.strip()[:60]!r}")
    ex = read_results(csv_path)
    rows = [parse_line(ex.lines[i]) for i in sorted(ex.lines)]
    if not rows:
        raise fail("path", W, "a results.csv with at least one run", csv_path)
    return csv_path, rows


def swept(rows, names) -> dict:
    """Parameter → sorted distinct non-empty values, for the parameters with more than one."""
    out = {}
    for name in names:
        values = {r[name] for r in rows if r[name] is not None}
        if len(values) > 1:
            out[name] = sorted(values)
    return out


def geometric(values) -> bool:
    """True when positive values are ratio-spaced: ≥ 3 values whose consecutive ratios agree to 2 %
    (and are not also evenly spaced), or values spanning at least two decades."""
    v = np.asarray(sorted(values), dtype=float)
    if v.size < 2 or v[0] <= 0:
        return False
    if v[-1] / v[0] >= 100.0:
        return True
    if v.size < 3:
        return False
    r, dv = v[1:] / v[:-1], np.diff(v)
    even_ratio = np.ptp(r) <= 0.02 * r.min()
    even_diff = np.ptp(dv) <= 0.02 * dv.min()
    return bool(even_ratio and not even_diff)


def spans_decades(values, decades: float = 2.0) -> bool:
    """Positive values whose max/min exceeds 10**decades (log axis / log colour scale)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    return bool(v.size and v.min() > 0 and v.max() / v.min() > 10.0 ** decades)


def _choose_scale(flag, name, auto_log, values):
    if flag == "log":
        if any(not (v > 0) for v in values if np.isfinite(v)):
            raise fail(name, W, "'auto' or 'linear' for values that are not all positive", flag)
        return "log"
    if flag == "linear":
        return "linear"
    return "log" if auto_log else "linear"


def sweep_table(rows, *, metric: str = "test_error", x: str | None = None, y: str | None = None,
                band: str = "minmax", all_runs: bool = False) -> dict:
    """The numbers of a sweep plot: per group (method, variant, other swept parameters) and per x
    (and y) value, the mean of ``metric`` over the included runs, its band and the counts.

    Returns a dict with ``x``, ``y``, ``group_keys``, ``points`` (list of dicts: the group's
    values, ``x`` [, ``y``], ``mean``, ``lo``, ``hi``, ``n_used``, ``n_excluded``), ``status``
    (counts of excluded runs by status), ``no_value`` (included runs without a finite metric),
    ``missing_axis`` (runs without a value of x or y, by method) and ``seeds``.
    """
    if metric not in METRICS:
        raise fail("metric", W, "a numeric column of results.csv (" + ", ".join(METRICS) + ")", metric)
    if not any(r[metric] is not None for r in rows):
        raise fail("metric", W, "a column with values in this sweep (it is empty in every row)", metric)
    from .errors import check_choice

    check_choice("band", band, BANDS, W)
    numeric = swept(rows, NUMERIC_PARAMS)
    names = ", ".join(numeric) or "none: this sweep varies no numeric parameter"
    if x is None:
        if not numeric:
            raise fail("x", W, f"a swept numeric parameter (swept: {names})", x)
        x = max(numeric, key=lambda k: len(numeric[k]))  # first in column order on ties
    elif x not in numeric:
        raise fail("x", W, f"a swept numeric parameter (swept: {names})", x)
    if y is not None and (y not in numeric or y == x):
        raise fail("y", W, f"a swept numeric parameter other than --x {x} (swept: {names})", y)
    varied = swept(rows, NUMERIC_PARAMS + CATEGORICAL_PARAMS)
    others = [k for k in NUMERIC_PARAMS + CATEGORICAL_PARAMS if k not in (x, y) and k in varied and k != "time"]
    group_keys = ["method", "variant", "time"] + others
    constants = {k: rows[0][k] for k in NUMERIC_PARAMS + CATEGORICAL_PARAMS
                 if k not in varied and len({r[k] for r in rows}) == 1}
    axes = [x] if y is None else [x, y]
    missing: dict = {}
    cells: dict = {}
    for r in rows:
        if any(r[a] is None for a in axes):
            missing[r["method"]] = missing.get(r["method"], 0) + 1
            continue
        key = tuple(r[k] for k in group_keys) + tuple(r[a] for a in axes)
        cells.setdefault(key, []).append(r)
    excluded: dict = {}
    no_value = 0
    points = []
    for key in sorted(cells, key=_sort_key):
        used, n_ex = [], 0
        for r in cells[key]:
            v = r[metric]
            if not all_runs and r["status"] != "converged":
                excluded[r["status"]] = excluded.get(r["status"], 0) + 1
                n_ex += 1
            elif v is None or not math.isfinite(v):
                no_value += 1
                n_ex += 1
            else:
                used.append(v)
        p = dict(zip(group_keys, key[:len(group_keys)]))
        p.update(zip(["x", "y"], key[len(group_keys):]))
        p.update(n_used=len(used), n_excluded=n_ex)
        if used:
            a = np.asarray(used, dtype=float)
            mean = float(np.mean(a))
            if band == "std":  # sample standard deviation; a single run has a band of zero width
                sd = float(np.std(a, ddof=1)) if a.size > 1 else 0.0
                lo, hi = mean - sd, mean + sd
            else:
                lo, hi = float(a.min()), float(a.max())
            p.update(mean=mean, lo=lo, hi=hi)
        else:
            p.update(mean=None, lo=None, hi=None)
        points.append(p)
    seeds = sorted({r["seed"] for r in rows if r["seed"] is not None})
    if "time" in varied:
        others = ["time"] + others
    return dict(x=x, y=y, metric=metric, band=band, all_runs=all_runs, group_keys=group_keys, others=others,
                constants=constants,
                points=points, status=excluded, no_value=no_value, missing_axis=missing, seeds=seeds,
                n_rows=len(rows), variants=len({r["variant"] for r in rows}) > 1)


def _sort_key(key):
    """Methods in dln.methods.METHODS order, then the other values (None first)."""
    from .methods import METHODS

    head = METHODS.index(key[0]) if key[0] in METHODS else len(METHODS)
    return (head,) + tuple((0, "") if v is None else (1, v) if isinstance(v, (int, float)) else (2, str(v))
                           for v in key)


def _exclusion_text(table) -> str:
    parts = []
    n_status = sum(table["status"].values())
    rule = ("every run with a finite value" if table["all_runs"]
            else "the converged runs only")
    parts.append(f"means over {rule}")
    if n_status:
        by = ", ".join(f"{v} {k}" for k, v in sorted(table["status"].items()))
        parts.append(f"excluded {n_status} of {table['n_rows']} runs not converged ({by})")
    if table["no_value"]:
        parts.append(f"{table['no_value']} included runs have no finite {table['metric']}")
    if table["missing_axis"]:
        axes = table["x"] if table["y"] is None else f"{table['x']} or {table['y']}"
        by = ", ".join(f"{v} {k}" for k, v in sorted(table["missing_axis"].items()))
        parts.append(f"not plotted: runs without {axes} ({by})")
    return "; ".join(parts)


def _algorithm(method, time=None, batch_size=None) -> str:
    """The key of figures/style.py's colour and label tables: gf in discrete time is GD or SGD."""
    if method == "gf" and time == "discrete":
        return "gd" if batch_size is None else "sgd"
    return method


def _method_text(method, variant, time=None, batch_size=None) -> str:
    from figures import style

    key = _algorithm(method, time, batch_size)
    if key == "sgd":
        return f"SGD (batch {batch_size})"
    try:
        return style.label(key, variant)
    except KeyError:
        return str(method) + ("" if variant is None else f" ({variant})")


def _method_color(method, time=None, batch_size=None) -> str:
    from figures import style

    try:
        return style.color(_algorithm(method, time, batch_size))
    except KeyError:
        return style.NEUTRAL


def _group_label(p, table) -> str:
    bs = p.get("batch_size", table["constants"].get("batch_size"))
    text = _method_text(p["method"], p["variant"] if table["variants"] else None, p["time"], bs)
    extra = [f"{SYMBOL.get(k, k)}={_g(p[k])}" for k in table["others"] if p.get(k) is not None]
    return ", ".join([text] + extra)


# ---------------------------------------------------------------------------------------------
# sweeps: drawing
# ---------------------------------------------------------------------------------------------
def _footnote(fig, text: str):
    """A wrapped footnote under the axes (the figures' convention, figures/common.py Canvas.note)."""
    text = textwrap.fill(text, width=int(fig.get_figwidth() * 17.5))
    lines = text.count("\n") + 1
    h = (0.03 + 0.11 * lines) / fig.get_figheight()
    fig.get_layout_engine().set(rect=(0, h, 1, 1 - h))
    fig.text(0.01, 0.006, text, fontsize=7, color="#444444", ha="left", va="bottom", linespacing=1.3)


def _shade(color, j, m):
    """The j-th of m shades of a method's colour (lighter towards white): same method, same hue."""
    from matplotlib.colors import to_rgb

    if m <= 1:
        return color
    f = 0.6 * j / (m - 1)
    return tuple(c + (1.0 - c) * f for c in to_rgb(color))


def _save(fig, out, name, header, rows, dpi) -> list[str]:
    from figures.common import save

    paths = save(fig, out, dpi=dpi, name=name, formats=("png", "pdf"))
    csv_path = os.path.join(out, f"{name}.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None or (isinstance(v, float) and not math.isfinite(v))
                        else repr(float(v)) if isinstance(v, (float, np.floating)) else str(v) for v in r])
    return paths + [csv_path]


def _prepare(out):
    from .sweep_io import _prepare_out

    return _prepare_out(out, W)


def plot_sweep(path, out, *, metric: str = "test_error", x: str | None = None, y: str | None = None,
               band: str = "minmax", all_runs: bool = False, xscale: str = "auto", yscale: str = "auto",
               name: str | None = None, dpi: int = 100) -> list[str]:
    """Plot a sweep's results.csv: ``metric`` against the swept parameter ``x`` (mean over seeds,
    band min–max or ± std), or with ``y`` a heatmap of the mean over (x, y), one panel per group.

    Log axes: x when its values are geometric (:func:`geometric`); y (or the colour scale) when the
    plotted values are positive and span more than two decades.  Returns the written paths
    (NAME.png, NAME.pdf, NAME.csv)."""
    from .errors import check_choice

    for flag, v in (("xscale", xscale), ("yscale", yscale)):
        check_choice(flag, v, SCALES, W)
    if y is not None and xscale != "auto":
        raise fail("xscale", W, "'auto' with --y (a heatmap's axes list the swept values)", xscale)
    csv_path, rows = read_sweep(path)
    table = sweep_table(rows, metric=metric, x=x, y=y, band=band, all_runs=all_runs)
    if not any(p["n_used"] for p in table["points"]):
        raise DLNError(f"No run of {csv_path} enters a mean ({_exclusion_text(table)}); "
                       "pass --all-runs to include the runs that did not converge.")
    out = _prepare(out)
    if table["y"] is None:
        paths = _draw_lines(table, out, name or f"{metric}_vs_{table['x']}", xscale, yscale, dpi, csv_path)
    else:
        paths = _draw_heatmap(table, out, name or f"{metric}_{table['x']}_{table['y']}", yscale, dpi, csv_path)
    note = _exclusion_text(table)
    if sum(table["status"].values()) or table["no_value"] or table["missing_axis"]:
        _notify(note)
    return paths


def _groups(table):
    groups: dict = {}
    for p in table["points"]:
        if p["n_used"]:
            groups.setdefault(tuple(p[k] for k in table["group_keys"]), []).append(p)
    return groups


def _draw_lines(table, out, name, xscale, yscale, dpi, csv_path) -> list[str]:
    from figures import style
    import matplotlib.pyplot as plt

    x, metric = table["x"], table["metric"]
    groups = _groups(table)
    xs = sorted({p["x"] for p in table["points"]})
    values = [v for ps in groups.values() for p in ps for v in (p["mean"], p["lo"], p["hi"])]
    xscale = _choose_scale(xscale, "xscale", geometric(xs), xs)
    yscale = _choose_scale(yscale, "yscale", spans_decades(values), values)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    per_method: dict = {}
    for key in groups:
        per_method.setdefault(key[:2], []).append(key)
    header = ["series"] + table["group_keys"] + [x, f"{metric}_mean", f"{metric}_lo", f"{metric}_hi", "band",
                                                 "n_used", "n_excluded"]
    band_name = "min-max" if table["band"] == "minmax" else "mean ± std"
    band_text = "min-max" if table["band"] == "minmax" else "mean ± sample std (ddof = 1; zero width for one run)"
    out_rows = []
    for key, ps in groups.items():
        p0 = ps[0]
        siblings = per_method[key[:2]]
        j = siblings.index(key)
        base = _method_color(p0["method"], p0["time"], p0.get("batch_size", table["constants"].get("batch_size")))
        vs = style.VARIANT_STYLE.get(p0["variant"], style.VARIANT_STYLE[None])
        markers = ["o", "s", "^", "v", "D", "P", "X", "*"]
        label = _group_label(p0, table)
        xv = [p["x"] for p in ps]
        ax.plot(xv, [p["mean"] for p in ps], color=_shade(base, j, len(siblings)), ls=vs["ls"],
                marker=markers[j % len(markers)] if len(siblings) > 1 else vs["marker"], label=label)
        ax.fill_between(xv, [p["lo"] for p in ps], [p["hi"] for p in ps], color=_shade(base, j, len(siblings)),
                        alpha=0.18, lw=0)
        for p in ps:
            out_rows.append([label] + [p[k] for k in table["group_keys"]]
                            + [p["x"], p["mean"], p["lo"], p["hi"], table["band"], p["n_used"], p["n_excluded"]])
    ax.set_xscale(xscale)
    ax.set_yscale(yscale)
    ax.set_xlabel(SYMBOL.get(x, x))
    ax.set_ylabel(metric)
    ax.legend(title=f"mean; band {band_name} over seeds")
    ax.set_title(f"{metric} against {x}  ({os.path.basename(os.path.dirname(os.path.abspath(csv_path))) or csv_path})")
    seeds = table["seeds"]
    _footnote(fig, f"Lines: mean of {metric} over the seeds ({len(seeds)} seed(s)) of each point; band: "
                   f"{band_text}; {_exclusion_text(table)}. x axis {xscale}, y axis {yscale}. "
                   f"Source: {csv_path}.")
    return _save(fig, out, name, header, out_rows, dpi)


def _edges(n):
    return np.arange(n + 1) - 0.5


def _draw_heatmap(table, out, name, yscale, dpi, csv_path) -> list[str]:
    from figures import style  # noqa: F401  (Agg backend, rcParams)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    x, y, metric = table["x"], table["y"], table["metric"]
    groups = _groups(table)
    means = [p["mean"] for ps in groups.values() for p in ps]
    cscale = _choose_scale(yscale, "yscale", spans_decades(means), means)
    norm = LogNorm(min(means), max(means)) if cscale == "log" else Normalize(min(means), max(means))
    P = len(groups)
    ncols = min(3, P)
    nrows = math.ceil(P / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 0.8, 3.0 * nrows + 0.6), squeeze=False)
    header = ["panel"] + table["group_keys"] + [x, y, f"{metric}_mean", "n_used", "n_excluded"]
    out_rows = []
    mesh = None
    for ax, (key, ps) in zip(axes.flat, groups.items()):
        xs = sorted({p["x"] for p in ps})
        ys = sorted({p["y"] for p in ps})
        Z = np.full((len(ys), len(xs)), np.nan)
        label = _group_label(ps[0], table)
        for p in ps:
            Z[ys.index(p["y"]), xs.index(p["x"])] = p["mean"]
            out_rows.append([label] + [p[k] for k in table["group_keys"]]
                            + [p["x"], p["y"], p["mean"], p["n_used"], p["n_excluded"]])
        mesh = ax.pcolormesh(_edges(len(xs)), _edges(len(ys)), np.ma.masked_invalid(Z), norm=norm,
                             cmap="viridis", shading="flat")
        ax.set_facecolor("#e8e8e8")
        ax.grid(False)
        ax.set_xticks(range(len(xs)), [f"{v:.3g}" for v in xs], rotation=45 if len(xs) > 6 else 0)
        ax.set_yticks(range(len(ys)), [f"{v:.3g}" for v in ys])
        ax.set_xlabel(SYMBOL.get(x, x))
        ax.set_ylabel(SYMBOL.get(y, y))
        ax.set_title(label, fontsize=9)
    for ax in list(axes.flat)[P:]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes, label=f"mean {metric}" + (" (log scale)" if cscale == "log" else ""), shrink=0.9)
    _footnote(fig, f"Colour: mean of {metric} over the seeds ({len(table['seeds'])} seed(s)) of each cell, "
                   f"{cscale} colour scale; grey: no run; cells at the swept values (axes are categorical); "
                   f"{_exclusion_text(table)}. Source: {csv_path}.")
    return _save(fig, out, name, header, out_rows, dpi)


# ---------------------------------------------------------------------------------------------
# trajectories
# ---------------------------------------------------------------------------------------------
def _run_label(meta: dict) -> str:
    method = meta.get("method")
    variant = meta.get("variant") if method in VARIANT_METHODS else None
    text = _method_text(method, variant, meta.get("time"), meta.get("batch_size"))
    hp = [f"{SYMBOL.get(k, k)}={_g(meta[k])}" for k in ("alpha", "gamma", "eps", "rho", "flood_level", "lr",
                                                          "label_noise", "momentum") if meta.get(k) is not None]
    hp = [h for h in hp if h not in ("δ=0", "μ=0")]  # GD records label_noise = 0 and momentum = 0
    return text + ("\n" + ", ".join(hp) if hp else "")


#: A point whose |ln(u⊙v)| exceeds this is not drawn: twice the integrators' divergence threshold
#: |ln u| > 300 (dln.integrate), so only the state of a run that has already diverged.
LOG_C_MAX = 600.0


def plotted_points(traj, i: int, log_time: bool) -> np.ndarray:
    """Indices of the points of run i that are drawn: t strictly increasing (a stopped run repeats
    its last point while its batch goes on), t > 0 on a log time axis, and a finite state (loss,
    β finite, |ln(u⊙v)| ≤ LOG_C_MAX): a diverged run is drawn up to its last finite state."""
    t = traj.t[:, i]
    with np.errstate(invalid="ignore"):
        finite = (np.isfinite(t) & np.isfinite(traj.loss[:, i]) & np.isfinite(traj.beta[:, i]).all(axis=1)
                  & (np.abs(traj.log_c[:, i]) <= LOG_C_MAX).all(axis=1))
    keep = []
    last = -math.inf
    for k, tk in enumerate(t):
        if not finite[k] or tk <= last or (log_time and tk <= 0):
            continue
        keep.append(k)
        last = tk
    return np.asarray(keep, dtype=int)


def highlighted(traj, i: int, top: int) -> tuple[np.ndarray, str]:
    """Coordinates of run i to highlight: the support of β* when the file has it, else the ``top``
    largest |β_i| at the end."""
    if traj.beta_star is not None and np.any(traj.beta_star != 0):
        return np.flatnonzero(traj.beta_star != 0), "support of β*"
    b = np.abs(np.nan_to_num(traj.beta_final[i], nan=0.0, posinf=0.0, neginf=0.0))
    idx = np.argsort(-b, kind="stable")[:top]
    return np.sort(idx), f"{len(idx)} largest |β_i| at the end"


def plot_trajectory(path, out, *, runs=None, top: int = 5, others: int = 20, alpha_eff: str = "coords",
                    xscale: str = "auto", name: str | None = None, dpi: int = 100) -> list[str]:
    """Plot a trajectory file: loss, β coordinates and α_eff against time, one column per run.

    β: highlighted coordinates (support of β*, else the ``top`` largest at the end) in colour, and
    in grey the ``others`` remaining coordinates with the largest max_t |β_i(t)|.  α_eff: the same
    coordinates (``"coords"``) or min / mean / max over all d coordinates (``"range"``).  Time on a
    log axis (t > 0) unless ``xscale="linear"``.  Returns the written paths."""
    from .errors import check_choice, check_int
    from .trajectory import load_trajectory

    check_choice("alpha_eff", alpha_eff, ALPHA_EFF_MODES, W)
    check_choice("xscale", xscale, SCALES, W)
    top = check_int("top", top, W, ge=1)
    others = check_int("others", others, W, ge=0)
    traj = load_trajectory(path)
    B = traj.n_runs
    if runs is None:
        runs = list(range(min(B, 4)))
        if B > len(runs):
            _notify(f"showing runs 0-{len(runs) - 1} of the {B} in {traj.path} (select others with --runs)")
    else:
        runs = [check_int("runs", r, W, ge=0) for r in runs]
        bad = [r for r in runs if r >= B]
        if bad:
            raise fail("runs", W, f"run indices in 0..{B - 1} (the file holds {B} runs)", bad[0])
        if not runs or len(runs) > MAX_RUNS or len(set(runs)) != len(runs):
            raise fail("runs", W, f"1 to {MAX_RUNS} distinct run indices", runs)
    out = _prepare(out)
    log_time = xscale != "linear"
    for i in runs:
        if traj.status[i] != "converged":
            _notify(f"run {i} ({traj.runs[i].get('method')}) ended with status {traj.status[i]}")
    return _draw_trajectory(traj, runs, out, name or f"trajectory_{_stem(traj.path)}", top, others, alpha_eff,
                            log_time, dpi)


def _stem(path):
    base = os.path.basename(path)
    return base[:-4] if base.endswith(".npz") else base


def _log_if_positive(ax, values):
    """A log y axis when some drawn value is positive (matplotlib cannot log-scale nothing).  Values
    equal to round-off (α_eff of gradient flow is conserved, docs/theory.md §2) get a range of a
    factor 3 around them instead of an autoscaled axis that magnifies the last bits."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size:
        ax.set_yscale("log")
        if v.max() <= v.min() * (1.0 + 1e-9):
            ax.set_ylim(v.min() / 3.0, v.max() * 3.0)


def _draw_run(col_axes, traj, i, idx, hi, grey, what, aeff, alpha_eff, log_time, cycle, style, mcolor):
    """One column: loss, β coordinates and α_eff of run i at the points idx."""
    ax_l, ax_b, ax_a = col_axes
    t = traj.t[idx, i]
    loss = traj.loss[idx, i]
    ax_l.plot(t, np.where(loss > 0, loss, np.nan), color=mcolor)
    _log_if_positive(ax_l, loss)
    for c in grey:
        ax_b.plot(t, traj.beta[idx, i, c], color=style.NEUTRAL, lw=0.6)
    for n_c, c in enumerate(hi):
        ax_b.plot(t, traj.beta[idx, i, c], color=cycle[n_c % len(cycle)], lw=1.3, label=f"i={c}" if n_c < 10 else None)
    if alpha_eff == "coords":
        for c in grey:
            ax_a.plot(t, aeff[idx, i, c], color=style.NEUTRAL, lw=0.6)
        for n_c, c in enumerate(hi):
            ax_a.plot(t, aeff[idx, i, c], color=cycle[n_c % len(cycle)], lw=1.3)
    else:
        a = aeff[idx, i, :]
        ax_a.fill_between(t, a.min(axis=1), a.max(axis=1), color=mcolor, alpha=0.18, lw=0, label="min–max over i")
        ax_a.plot(t, a.mean(axis=1), color=mcolor, label="mean over i")
        ax_a.legend(fontsize=6)
    _log_if_positive(ax_a, aeff[idx, i, :])
    for ax in col_axes:
        ax.set_xscale("log" if log_time else "linear")
    if len(hi) <= 10:
        ax_b.legend(title=what, fontsize=6, title_fontsize=6, ncol=2 if len(hi) > 5 else 1)


def _draw_trajectory(traj, runs, out, name, top, others, alpha_eff, log_time, dpi) -> list[str]:
    from figures import style
    import matplotlib.pyplot as plt

    ncols = len(runs)
    fig, axes = plt.subplots(3, ncols, figsize=(3.3 * ncols + 0.6, 7.6), squeeze=False, sharex="col")
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    with np.errstate(over="ignore", invalid="ignore"):
        aeff = traj.alpha_eff_path
    per_run = []
    coords_union: set = set()
    for col, i in enumerate(runs):
        idx = plotted_points(traj, i, log_time)
        hi, what = highlighted(traj, i, top)
        rest = np.setdiff1d(np.arange(traj.d), hi)
        if others and rest.size:
            b = np.abs(traj.beta[idx][:, i, rest])
            size = np.where(np.isfinite(b), b, -1.0).max(axis=0, initial=-1.0)  # a diverged run: NaN/inf
            grey = np.sort(rest[np.argsort(-size, kind="stable")[:others]])
        else:
            grey = np.array([], dtype=int)
        shown = np.sort(np.r_[hi, grey]).astype(int)
        coords_union.update(shown.tolist())
        per_run.append((i, idx, hi, grey, shown, what))
        meta = traj.runs[i]
        col_axes = axes[:, col]
        col_axes[0].set_title(f"run {i}: {_run_label(meta)}\nstatus {traj.status[i]}", fontsize=8)
        col_axes[2].set_xlabel("$t$" if meta.get("time") != "discrete" else r"$t$ = steps$\cdot\eta$")
        if col == 0:
            col_axes[0].set_ylabel(r"training loss $L(\beta)$")
            col_axes[1].set_ylabel(r"$\beta_i$")
            col_axes[2].set_ylabel(r"$\alpha_{\mathrm{eff},i} = \sqrt{u_i v_i}$")
        if idx.size == 0:
            for ax in col_axes:
                ax.text(0.5, 0.5, "no finite point to draw", transform=ax.transAxes, ha="center", va="center")
            continue
        _draw_run(col_axes, traj, i, idx, hi, grey, what, aeff, alpha_eff, log_time, cycle, style,
                  _method_color(meta.get("method"), meta.get("time"), meta.get("batch_size")))
    # the CSV: one row per plotted point of each run, the plotted coordinates as columns
    cols = sorted(coords_union)
    header = ["run", "run_id", "t", "loss"] + [f"beta_{c}" for c in cols]
    header += [f"alpha_eff_{c}" for c in cols] if alpha_eff == "coords" else \
        ["alpha_eff_min", "alpha_eff_mean", "alpha_eff_max"]
    rows = []
    for i, idx, hi, grey, shown, what in per_run:
        sel = set(shown.tolist())
        for k in idx:
            loss = traj.loss[k, i]
            r = [i, traj.runs[i].get("run_id") or "", traj.t[k, i], loss if loss > 0 else None]
            r += [traj.beta[k, i, c] if c in sel else None for c in cols]
            if alpha_eff == "coords":
                r += [aeff[k, i, c] if c in sel else None for c in cols]
            else:
                a = aeff[k, i, :]
                r += [a.min(), a.mean(), a.max()]
            rows.append(r)
    info = traj.info
    rule = ("every accepted step" if info.get("record_every") is None
            else f"every {info.get('record_every')}-th step")
    if info.get("thin_every", 1) > 1:
        rule += f", then every {info['thin_every']}-th point"
    _footnote(fig, f"File {traj.path}: {traj.n_runs} run(s), {traj.n_points} recorded points ({rule}). "
                   f"Coloured: {per_run[0][5]}; grey: up to {others} other coordinates with the largest "
                   f"max_t |β_i(t)|. α_eff: {'per coordinate' if alpha_eff == 'coords' else 'min, mean, max over the d coordinates'}. "
                   f"Time axis {'log (t > 0)' if log_time else 'linear'}; a run that stopped is drawn up to its end, a "
                   f"diverged one up to its last finite state.")
    return _save(fig, out, name, header, rows, dpi)


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
SWEEP_ONLY = ("metric", "x", "y", "band", "all_runs", "yscale")
TRAJECTORY_ONLY = ("runs", "top", "others", "alpha_eff")


def kind_of(path) -> str:
    """``"sweep"`` (a folder or a .csv) or ``"trajectory"`` (a .npz)."""
    spath = os.fspath(path)
    if os.path.isdir(spath) or spath.endswith(".csv"):
        return "sweep"
    if spath.endswith(".npz"):
        return "trajectory"
    raise fail("path", W, "a sweep folder, its results.csv, or a trajectory .npz", spath)


def plot(path, out, **options) -> list[str]:
    """Plot a sweep folder / results.csv (:func:`plot_sweep`) or a trajectory file
    (:func:`plot_trajectory`); options of the other kind are an error."""
    kind = kind_of(path)
    if not os.path.exists(os.fspath(path)):
        raise fail("path", W, "an existing sweep folder, results.csv or trajectory .npz", os.fspath(path))
    wrong = TRAJECTORY_ONLY if kind == "sweep" else SWEEP_ONLY
    for key in wrong:
        if options.get(key) not in (None, False):
            raise fail(key, W, f"left unset for a {kind} (it applies to a "
                       f"{'trajectory file' if kind == 'sweep' else 'sweep'})", options[key])
    options = {k: v for k, v in options.items() if v is not None and k not in wrong}
    if "dpi" in options:
        from .errors import check_int

        options["dpi"] = check_int("dpi", options["dpi"], W, ge=1, le=2400)
    name = options.get("name")
    if name is not None and (not name or os.sep in name or (os.altsep and os.altsep in name)):
        raise fail("name", W, "a file stem without a folder (the files go to --out)", name)
    return plot_sweep(path, out, **options) if kind == "sweep" else plot_trajectory(path, out, **options)
