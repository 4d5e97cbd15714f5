"""One look for every figure: the Agg backend, font sizes, and ONE colour per method (docs/design.md §6).

Import this module before pyplot anywhere in ``figures`` (it selects the Agg backend, so no
display and no LaTeX installation are needed: labels use matplotlib's built-in mathtext).

A method keeps its colour in every figure; the two GR variants of a method differ by line style
and marker (``VARIANT_STYLE``), never by colour.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

#: The single colour table (method name → colour).  Keys are the simulator's method names
#: (``dln.methods.METHODS``) plus the discrete-time algorithms and the reference solutions.
METHOD_COLORS = {
    "gf": "#000000",       # gradient flow
    "gd": "#8c564b",       # gradient descent (discrete gf)
    "sgd": "#e377c2",      # SGD, batch 1
    "gr": "#1f77b4",       # exact GR (double back-prop)
    "fgr": "#2ca02c",      # forward finite-difference GR (ascent, ε > 0)
    "bgr": "#d62728",      # backward finite-difference GR (ε < 0)
    "cgr": "#bcbd22",      # central-difference GR
    "usam": "#9467bd",     # un-normalised SAM (n-SAM full, 1-SAM per-sample)
    "sam": "#ff7f0e",      # normalised SAM
    "flood": "#17becf",    # flooding
    "min_l1": "#7f7f7f",   # min-ℓ1 interpolator (α → 0)
    "min_l2": "#bdbdbd",   # min-ℓ2 interpolator (α → ∞)
    "naive": "#c7c7c7",    # prediction with the nominal α
}

METHOD_LABELS = {
    "gf": "GF", "gd": "GD", "sgd": "SGD (batch 1)", "gr": "GR", "fgr": "F-GR", "bgr": "B-GR",
    "cgr": "C-GR", "usam": "n-SAM", "sam": "SAM (normalised)", "flood": "flooding",
    "min_l1": r"min-$\ell_1$ interpolator", "min_l2": r"min-$\ell_2$ interpolator",
    "naive": r"naive: nominal $\alpha$",
}

#: Line style and marker per variant (same colour).
VARIANT_STYLE = {
    None: dict(ls="-", marker="o"),
    "full": dict(ls="-", marker="o"),
    "per-sample": dict(ls="--", marker="s"),
}

#: Hatch for per-sample bars.
VARIANT_HATCH = {None: None, "full": None, "per-sample": "///"}

#: Off-support coordinates, trajectories of non-highlighted coordinates.
NEUTRAL = "#b0b0b0"

plt.rcParams.update({
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.framealpha": 0.85,
    "text.usetex": False,
    "svg.fonttype": "none",
    "figure.constrained_layout.use": True,
})


def color(method: str) -> str:
    """The colour of ``method`` (KeyError for an unknown one: add it to METHOD_COLORS)."""
    return METHOD_COLORS[method]


#: What the SAM methods are called in the papers, per variant (docs/theory.md §8).
SAM_ALIASES = {
    ("usam", "full"): "n-SAM", ("usam", "per-sample"): "1-SAM",
    ("sam", "full"): "normalised SAM", ("sam", "per-sample"): "normalised 1-SAM",
}


def label(method: str, variant: str | None = None) -> str:
    """Legend label: the method name, with the variant when one is given.

    The SAM methods are spelled as on the command line, with the papers' name in brackets:
    ``usam, full (n-SAM)``, ``usam, per-sample (1-SAM)``, ``sam, full (normalised SAM)``
    (``--method usam|sam --variant full|per-sample``, docs/theory.md §8); without a variant,
    ``usam (un-normalised SAM)`` / ``sam (normalised SAM)``.
    """
    if method in ("usam", "sam"):
        if variant is None:  # the variant is not known (or not varied): no paper name
            return f"{method} ({'un-normalised' if method == 'usam' else 'normalised'} SAM)"
        return f"{method}, {variant} ({SAM_ALIASES[method, variant]})"
    base = METHOD_LABELS[method]
    if variant in ("full", "per-sample"):
        return f"{base} ({'full batch' if variant == 'full' else 'per-sample'})"
    return base


def style(method: str, variant: str | None = None, **extra) -> dict:
    """Keyword arguments for ``ax.plot`` of one method/variant."""
    kw = dict(color=color(method), label=label(method, variant), **VARIANT_STYLE[variant])
    kw.update(extra)
    return kw
