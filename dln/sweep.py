"""Sweeps: a grid of runs → ``results.csv`` + ``config.json`` (DESIGN.md §5), and ``dln merge``.

A sweep is the product of value lists (``--method gf gr fgr --alpha 0.01 0.1 1 --gamma 0.05 --seeds 2``),
or a union of such products read from ``--grid FILE.json``.  A hyper-parameter reaches the swept
methods that use it (``dln.methods.PARAMS``): in ``--method gf gr fgr --gamma 0.05 0.1`` gf runs once
per α and seed; a value that reaches no swept method, a missing value, or any invalid value is a
user error raised before anything runs.

Grid order (the row order of ``results.csv``), outermost first::

    n, d, k, noise, design (or --data) → seed → method → variant → time → lr → batch_size
    → label_noise → alpha → gamma → eps → rho → flood_level

Seeding.  The data of a cell (n, d, k, noise, design, seed) comes from
``SeedSequence(root_seed, spawn_key=(0, cell_key, seed))`` where ``cell_key`` is a stable hash of the
cell's parameters (not its position in the grid): adding a grid value never changes the data of
another cell.  The mini-batch / label-noise randomness of a discrete run comes from
``SeedSequence(root_seed, spawn_key=(1, run_key))`` with ``run_key`` a stable hash of the run.

Batching.  Runs that differ only in α, γ, ε, ρ, flooding level and η share a dataset and go through
the simulator as one vectorized batch, split into chunks of at most ``chunk_size`` runs.  Chunks are
fixed by the grid alone (not by ``--workers`` or ``--shard``) and are always re-run whole, so
``results.csv`` is identical byte for byte, except for the ``wall_time`` column, whatever the
number of workers, the sharding, or the interruptions and resumes.

Workers.  ``--workers N`` processes (default: the cores this process may use) each run one batch at
a time, longest first, with one BLAS thread (threadpoolctl); ``--workers 1`` runs in-process.  A
worker exits as soon as the sweep's process is gone, so a killed sweep leaves nothing running.

Safety.  The parent process is the only writer: after each chunk, its rows are appended to
``results.csv`` with one write, a flush and an ``fsync``.  A sweep killed at any moment keeps every
finished chunk; ``--resume`` drops a torn last line, keeps the complete chunks and runs the rest
(on a missing or empty folder it simply starts, so a job script can always pass it).  At the end
the file is rewritten in grid order (temporary file + ``os.replace``).  ``config.json`` holds the
command, the package versions, the root seed entropy and a fingerprint of the grid and settings:
``--resume`` and ``dln merge`` refuse folders of another grid.

Columns of ``results.csv`` (floats written with ``repr``: shortest round-trip; empty where a
column does not apply, which pandas reads as NaN):

- ``run`` (index in grid order), ``run_id`` (stable hash of the run);
- the flags: ``method variant time alpha gamma eps rho flood_level lr batch_size label_noise data
  n d k noise design seed``;
- ``status`` (converged, diverged, max_steps), ``train_loss``, ``test_error`` (‖β − β*‖² when β*
  is known, else the test MSE), ``test_mse``, ``l1_norm``;
- support recovery ``precision``, ``recall`` of {i : |β_i| > 1e-3·max|β|} against supp(β*);
- gains −ln(α_eff,i/α) (THEORY.md §1, §4.1) on and off the support: ``gain_on_mean gain_on_max
  gain_off_mean gain_off_max``, and over all coordinates ``gain_mean gain_max``;
- ``prediction_rel_error`` (β against argmin φ_{u⊙v}, THEORY.md §4), ``prediction_theory_rel_error``
  (against the integrated-gain prediction), ``kkt_residual``;
- ``steps``, ``n_evals``, ``t`` (final time), and last ``wall_time`` (seconds per run: the batch's
  time over its size; the only column that changes between two executions).

SLURM job array (one shard per array task, then one merge)::

    #SBATCH --array=1-8
    dln sweep --method gf gr fgr --alpha-geom 1e-4 10 25 --gamma 0.01 0.1 --eps 0.1 --seeds 10 \\
        --n 40 --d 100 --workers "$SLURM_CPUS_PER_TASK" --resume \\
        --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --out "runs/shard-$SLURM_ARRAY_TASK_ID"
    # afterwards (e.g. sbatch --dependency=afterok:JOBID):
    dln merge runs/shard-* --out runs/all
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import io
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import signal
import sys
import threading
import time as _time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from .errors import DLNError, check_choice, check_int, fail
from .integrate import DEFAULT_RTOL
from .methods import METHODS, PARAMS, VARIANTS
from .problem import DESIGNS, Problem, load_problem, make_problem

__all__ = ["sweep", "merge", "build_plan", "read_results", "COLUMNS", "KEY_COLUMNS", "METRIC_COLUMNS",
           "add_sweep_parser", "add_merge_parser"]

W = "sweep"
FORMAT = "dln-sweep/1"
TIMES = ("flow", "discrete")
HYPER = ("gamma", "eps", "rho", "flood_level")
DISCRETE_ONLY = ("lr", "batch_size", "label_noise")
DATA_AXES = ("n", "d", "k", "noise", "design")
#: Columns that identify a run (named like the flags, DESIGN.md §5).
KEY_COLUMNS = ("method", "variant", "time", "alpha", "gamma", "eps", "rho", "flood_level", "lr", "batch_size",
               "label_noise", "data", "n", "d", "k", "noise", "design", "seed")
#: Per-run results (``dln.simulate.records``).
METRIC_COLUMNS = ("status", "train_loss", "test_error", "test_mse", "l1_norm", "precision", "recall",
                  "gain_on_mean", "gain_on_max", "gain_off_mean", "gain_off_max", "gain_mean", "gain_max",
                  "prediction_rel_error", "prediction_theory_rel_error", "kkt_residual", "steps", "n_evals", "t")
#: Every column of results.csv, in order; ``wall_time`` (seconds per run) is last and the only
#: column that differs between two executions of the same sweep.
COLUMNS = ("run", "run_id") + KEY_COLUMNS + METRIC_COLUMNS + ("wall_time",)
INT_COLUMNS = frozenset({"run", "batch_size", "n", "d", "k", "seed", "steps", "n_evals"})
STR_COLUMNS = frozenset({"run_id", "method", "variant", "time", "data", "design", "status"})
HEADER = ",".join(COLUMNS) + "\n"

#: value lists of the grid: name → (kind, rule)
_FLOAT_RULES = {"alpha": ("gt", 0.0), "gamma": ("ge", 0.0), "eps": ("gt", 0.0), "rho": ("gt", 0.0),
                "flood_level": ("ge", 0.0), "lr": ("gt", 0.0), "label_noise": ("ge", 0.0), "noise": ("ge", 0.0)}
_INT_RULES = {"n": 1, "d": 1, "k": 1, "batch_size": 1, "seed": 0}
_CHOICES = {"method": METHODS, "variant": VARIANTS, "time": TIMES, "design": DESIGNS}
LIST_KEYS = tuple(_CHOICES) + tuple(_FLOAT_RULES) + tuple(_INT_RULES)
GEOM_KEYS = ("alpha", "gamma", "eps", "rho", "flood_level", "lr", "label_noise")
SETTING_DEFAULTS = {"depth": 2, "rtol": DEFAULT_RTOL, "max_steps": None, "root_seed": 0, "chunk_size": 32}
GRID_KEYS = frozenset(LIST_KEYS) | {f"{k}_geom" for k in GEOM_KEYS} | {"seeds", "data"} | set(SETTING_DEFAULTS)
MAX_RUNS = 10_000_000
SUPPORT_RULE = "support = {i : |beta_i| > 1e-3 * max_j |beta_j|} (dln.simulate.SUPPORT_THRESHOLD)"

_NAMES = {"D": "depth"}


# =============================================================================================
# Grid: validation and expansion
# =============================================================================================
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _as_list(name, value) -> list:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise fail(name, W, "a non-empty list of values", value)
    return values


def _distinct(name, values):
    seen = set()
    for v in values:
        if v in seen:
            raise fail(name, W, "a list of distinct values (each run once)", values)
        seen.add(v)
    return values


def _real(name, v, rule=None):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise fail(name, W, "a real number", v)
    v = float(v)
    if not math.isfinite(v):
        raise fail(name, W, "finite", v)
    if rule is not None:
        kind, bound = rule
        if kind == "gt" and not v > bound:
            raise fail(name, W, f"> {bound}", v)
        if kind == "ge" and not v >= bound:
            raise fail(name, W, f">= {bound}", v)
    return v


def _integer(name, v, ge=None):
    if isinstance(v, str):
        try:
            v = int(v)
        except ValueError:
            raise fail(name, W, "an integer", v) from None
    return check_int(name, v, W, ge=ge)


def _geom(name, value):
    """``[START, STOP, NUM]`` → NUM values geometrically spaced from START to STOP (np.geomspace)."""
    key = f"{name}_geom"
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise fail(key, W, "three values START STOP NUM", value)
    start, stop, num = value
    start = _real(key, _num(key, start), ("gt", 0.0))
    stop = _real(key, _num(key, stop), ("gt", 0.0))
    num = _integer(key, num, ge=1)
    if num > 1 and start == stop:
        raise fail(key, W, "a range with START != STOP (or NUM = 1)", list(value))
    return [float(x) for x in np.geomspace(start, stop, num)]


def _num(name, v):
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise fail(name, W, "a real number", v) from None
    return v


def _normalize(raw: dict, source: str) -> dict:
    """Check the types and ranges of one (sub-)grid's entries; return lists of clean values."""
    if not isinstance(raw, dict):
        raise fail("grid", W, "a JSON object (or a list of objects) mapping flags to values",
                   f"{type(raw).__name__} in {source}")
    out = {}
    for key, value in raw.items():
        name = _NAMES.get(key, str(key).replace("-", "_"))
        if name not in GRID_KEYS:
            raise fail("grid", W, f"made of known keys ({', '.join(sorted(GRID_KEYS))})", f"key {key!r} in {source}")
        if name in out:
            raise fail(name, W, "given once", f"{key!r} twice in {source}")
        if value is None and name not in SETTING_DEFAULTS:
            raise fail(name, W, "a value or a list of values", f"null in {source}")
        if name in _CHOICES:
            vals = _as_list(name, value)
            for v in vals:
                check_choice(name, v, _CHOICES[name], W)
            out[name] = _distinct(name, vals)
        elif name in _FLOAT_RULES:
            out[name] = _distinct(name, [_real(name, v, _FLOAT_RULES[name]) for v in _as_list(name, value)])
        elif name == "batch_size":
            out[name] = _distinct(name, [None if v is None else _integer(name, v, ge=1) for v in _as_list(name, value)])
        elif name in _INT_RULES:
            out[name] = _distinct(name, [_integer(name, v, ge=_INT_RULES[name]) for v in _as_list(name, value)])
        elif name.endswith("_geom"):
            out[name] = _geom(name[:-5], value)
        elif name == "seeds":
            out[name] = _integer(name, value, ge=1)
        elif name == "data":
            if not isinstance(value, (str, os.PathLike, Problem)):
                raise fail("data", W, "a file name (.npz or .csv)", value)
            out[name] = value if isinstance(value, Problem) else os.fspath(value)
        elif name in ("depth", "root_seed", "chunk_size"):
            out[name] = _integer(name, value, ge={"depth": 2, "root_seed": 0, "chunk_size": 1}[name])
        elif name == "max_steps":
            out[name] = None if value is None else _integer(name, value, ge=1)
        elif name == "rtol":
            out[name] = _real(name, value, ("gt", 0.0))
    for name in GEOM_KEYS:
        if f"{name}_geom" in out:
            if name in out:
                raise fail(f"{name}_geom", W, f"left unset when {_flag(name)} is given (one or the other)",
                           out[f"{name}_geom"])
            out[name] = _distinct(name, out.pop(f"{name}_geom"))
    if "seeds" in out and "seed" in out:
        raise fail("seeds", W, "left unset when --seed lists the seeds (one or the other)", out["seeds"])
    return _Normalized(out)


class _Normalized(dict):
    """A (sub-)grid that has been through :func:`_normalize` (not checked twice)."""


def load_grid(path) -> list[dict]:
    """Read a ``--grid`` JSON file: one object mapping flags to values, or a list of such objects
    (the grid is then the union of their products)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise fail("grid", W, "an existing JSON file", path)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail("grid", W, "a readable JSON file", f"{path} ({exc})") from None
    subs = raw if isinstance(raw, list) else [raw]
    if not subs:
        raise fail("grid", W, "a JSON object or a non-empty list of objects", f"[] in {path}")
    return [_normalize(s, path) for s in subs]


@dataclass
class Plan:
    """A validated, expanded grid.

    Attributes
    ----------
    runs : list of dict
        One dict per run in grid order: ``run`` (index), ``run_id`` (stable hash) and the key columns.
    chunks : list of list of int
        Run indices of each batch; fixed by the grid (not by workers or shards).
    fingerprint : str
        Hash of the runs, chunks and settings: a folder is resumed or merged only with the same one.
    """

    grid: list
    settings: dict
    runs: list
    chunks: list
    fingerprint: str
    shard: tuple | None = None
    tasks: dict = field(default_factory=dict)  # chunk index → task (without the problem objects)
    objects: dict = field(default_factory=dict)  # data key → Problem given as an object
    data_files: dict = field(default_factory=dict)  # path → sha256

    @property
    def shard_chunks(self) -> list[int]:
        if self.shard is None:
            return list(range(len(self.chunks)))
        i, n = self.shard
        return [j for j in range(len(self.chunks)) if j % n == i - 1]

    @property
    def shard_label(self):
        return None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}"


def _canon(x):
    if isinstance(x, float):
        return repr(x)
    return x


def _hash(obj, bits=64) -> int:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return int(hashlib.sha256(text.encode()).hexdigest()[: bits // 4], 16)


def _sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _problem_sha(P: Problem) -> str:
    h = hashlib.sha256()
    for name in ("X", "y", "X_test", "y_test", "beta_star"):
        a = getattr(P, name)
        h.update(name.encode())
        if a is not None:
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()


def _expand(sub: dict, settings: dict, cache: dict) -> list[dict]:
    """Runs of one product grid, in grid order (validation of the combinations happens here)."""
    methods = sub.get("method", ["gf"])
    variants = sub.get("variant", ["full"])
    times = sub.get("time", ["flow"])
    depth = settings["depth"]
    for name in HYPER:
        users = [m for m in methods if name in PARAMS[m]]
        if name in sub and not users:
            who = [m for m in METHODS if name in PARAMS[m]]
            raise fail(name, W, f"given only with a method that uses it ({', '.join(who)}); the swept methods are "
                       f"{', '.join(methods)}", sub[name])
        if name not in sub and users:
            raise fail(name, W, f"given for {', '.join(users)} (it has no default)", None)
    if all(m == "flood" for m in methods) and any(v != "full" for v in variants):
        raise fail("variant", W, "'full' with flood (flooding acts on the full-batch loss)", variants)
    if depth != 2 and "per-sample" in variants:
        raise fail("variant", W, "'full' for depth D >= 3 (the per-example closed form is for D = 2)", variants)
    discrete = "discrete" in times
    for name in DISCRETE_ONLY:
        if name in sub and not discrete:
            raise fail(name, W, "given only with --time discrete (it applies to discrete time)", sub[name])
    if discrete and "lr" not in sub:
        raise fail("lr", W, "given with --time discrete", None)
    stochastic = discrete and (any(b is not None for b in sub.get("batch_size", []))
                               or any(s > 0 for s in sub.get("label_noise", [])))
    n_seeds = len(sub["seed"]) if "seed" in sub else sub.get("seeds", 1)
    n_cells = 1 if "data" in sub else math.prod(len(sub.get(a, [0])) for a in DATA_AXES)
    per_time = {"flow": 1, "discrete": math.prod(len(sub.get(a, [0])) for a in DISCRETE_ONLY)}
    size = n_cells * n_seeds * len(sub.get("alpha", [0])) * sum(
        (1 if m == "flood" else len(variants)) * sum(per_time[t] for t in times)
        * math.prod(len(sub[h]) for h in PARAMS[m]) for m in methods)
    if size > MAX_RUNS:
        raise fail("grid", W, f"at most {MAX_RUNS:,} runs (split it into several sweeps)", f"{size:,} runs")
    seeds = sub["seed"] if "seed" in sub else list(range(n_seeds))
    # -- dataset cells -----------------------------------------------------------------------
    cells = []
    if "data" in sub:
        for name in DATA_AXES:
            if name in sub:
                raise fail(name, W, "left unset with --data (it describes synthetic data)", sub[name])
        if len(seeds) > 1 and not stochastic:
            raise fail("seeds", W, "1 with --data unless runs are stochastic (--batch-size or --label-noise "
                       "> 0 with --time discrete): the data is fixed", len(seeds))
        data = sub["data"]
        if isinstance(data, Problem):
            sha = _problem_sha(data)
            label = f"problem-{sha[:12]}"
            cache.setdefault("objects", {})[sha] = data
            spec = ("object", sha)
        else:
            if data not in cache.setdefault("files", {}):
                P = load_problem(data)
                cache["files"][data] = (P, _sha256_file(data))
            P, sha = cache["files"][data]
            label, spec = data, ("file", data, sha)
            data = P
        cells.append(dict(key=dict(data=label, n=data.n, d=data.d, k=None, noise=None, design=None),
                          spec=spec, sha=sha))
    else:
        for n, d, k, noise, design in product(sub.get("n", [40]), sub.get("d", [100]), sub.get("k", [5]),
                                              sub.get("noise", [0.0]), sub.get("design", ["gaussian"])):
            if k > d:
                raise fail("k", W, f"<= d (the support size of beta* in dimension d = {d})", k)
            key = dict(data=None, n=n, d=d, k=k, noise=noise, design=design)
            cells.append(dict(key=key, spec=("synthetic", n, d, k, noise, design),
                              sha=_hash([n, d, k, repr(noise), design])))
    for cell in cells:
        for b in sub.get("batch_size", []):
            if b is not None and b > cell["key"]["n"]:
                raise fail("batch_size", W, f"<= n = {cell['key']['n']} (the number of samples)", b)
    # -- every (method, variant) once on a tiny problem: any rule of dln.methods.make ----------
    _check_methods(sub, methods, variants, depth)
    runs = []
    alphas = sub.get("alpha", [0.1])
    for cell in cells:
        for seed in seeds:
            for method in methods:
                for variant in (["full"] if method == "flood" else variants):
                    for time in times:
                        flow = time == "flow"
                        discrete_axes = [[None], [None], [None]] if flow else \
                            [sub["lr"], sub.get("batch_size", [None]), sub.get("label_noise", [None])]
                        for lr, bs, ln in product(*discrete_axes):
                            hp = [sub[h] if h in PARAMS[method] else [None] for h in HYPER]
                            for alpha, gamma, eps, rho, fl in product(alphas, *hp):
                                run = dict(method=method, variant=variant, time=time, alpha=alpha, gamma=gamma,
                                           eps=eps, rho=rho, flood_level=fl, lr=lr, batch_size=bs,
                                           label_noise=ln, **cell["key"], seed=seed)
                                runs.append((run, cell))
    return runs


def _check_methods(sub, methods, variants, depth):
    tiny = Problem(np.eye(2), np.ones(2))
    from .methods import make

    for method in methods:
        for variant in (["full"] if method == "flood" else variants):
            params = {h: sub[h][0] for h in PARAMS[method]}
            make(method, tiny, variant=variant, D=depth, **params)


def build_plan(grid, settings: dict | None = None, shard=None) -> Plan:
    """Validate and expand a grid (a dict of value lists, or a list of them: union of products).

    Raises
    ------
    DLNError
        For any invalid value or combination (before anything runs).
    """
    subs = [grid] if isinstance(grid, dict) else list(grid)
    if not subs:
        raise fail("grid", W, "a non-empty list of grids", subs)
    subs = [s if isinstance(s, _Normalized) else _normalize(s, "the grid") for s in subs]
    settings = _settings(subs, settings or {})
    shard = _parse_shard(shard)
    cache: dict = {}
    expanded = []
    for sub in subs:
        expanded.extend(_expand(sub, settings, cache))
    runs, cells_of, seen = [], [], {}
    for i, (run, cell) in enumerate(expanded):
        # identity: the key columns, with a data file known by its content (not by how its path is spelled)
        # "r" + 16 hex digits: never read as a number (pandas would turn "12e4..." into a float)
        rid = "r%016x" % _hash([_canon(run[c]) for c in KEY_COLUMNS if c != "data"] + [cell["sha"]])
        if rid in seen:
            raise fail("grid", W, "a list of distinct runs (the sub-grids overlap)",
                       {k: v for k, v in run.items() if v is not None})
        seen[rid] = i
        runs.append(dict(run=i, run_id=rid, **run))
        cells_of.append(cell)
    # -- batches: same dataset, method, variant, time, batch size and label noise ---------------
    groups: dict = {}
    for i, run in enumerate(runs):
        key = (cells_of[i]["sha"], run["seed"], run["method"], run["variant"], run["time"], run["batch_size"],
               run["label_noise"])
        groups.setdefault(key, []).append(i)
    chunks = []
    size = settings["chunk_size"]
    for members in groups.values():
        m = -(-len(members) // size)
        q, r = divmod(len(members), m)
        start = 0
        for j in range(m):
            stop = start + q + (1 if j < r else 0)
            chunks.append(members[start:stop])
            start = stop
    files = {p: sha for p, (_, sha) in cache.get("files", {}).items()}
    fingerprint = hashlib.sha256(json.dumps(
        dict(format=FORMAT, runs=[r["run_id"] for r in runs], chunks=chunks,
             settings={k: _canon(v) for k, v in settings.items()}), sort_keys=True).encode()).hexdigest()
    plan = Plan(grid=subs, settings=settings, runs=runs, chunks=chunks, fingerprint=fingerprint, shard=shard,
                objects=cache.get("objects", {}), data_files=files)
    root = settings["root_seed"]
    for j, members in enumerate(chunks):
        first, cell = runs[members[0]], cells_of[members[0]]
        stochastic = first["time"] == "discrete" and (first["batch_size"] is not None
                                                      or (first["label_noise"] or 0) > 0)
        plan.tasks[j] = dict(
            chunk=j, runs=members, problem=cell["spec"], data_seed=(root, _cell_key(cell), first["seed"]),
            method=first["method"], variant=first["variant"], time=first["time"], batch_size=first["batch_size"],
            label_noise=first["label_noise"],
            alpha=[runs[i]["alpha"] for i in members],
            **{h: ([runs[i][h] for i in members] if h in PARAMS[first["method"]] else None) for h in HYPER},
            lr=None if first["time"] == "flow" else [runs[i]["lr"] for i in members],
            seeds=[(root, int(runs[i]["run_id"][1:], 16)) for i in members] if stochastic else None,
            depth=settings["depth"], rtol=settings["rtol"], max_steps=settings["max_steps"])
    return plan


def _cell_key(cell) -> int:
    return int(cell["sha"][:16], 16) if isinstance(cell["sha"], str) else cell["sha"]


def _settings(subs, given: dict) -> dict:
    """Solver settings: from the sub-grids (all equal) or ``given`` (not both), else the defaults."""
    out = dict(SETTING_DEFAULTS)
    found = {}
    for sub in subs:
        for name in SETTING_DEFAULTS:
            if name in sub:
                value = sub.pop(name)
                if name in found and found[name] != value:
                    raise fail(name, W, "the same in every sub-grid", [found[name], value])
                found[name] = value
    for name, value in given.items():
        if value is None:
            continue
        if name in found:
            raise fail(name, W, "given once (in --grid FILE or on the command line, not both)", value)
        found[name] = value
    checked = _normalize({k: v for k, v in found.items()}, "the settings")
    out.update(checked)
    return out


_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def _parse_shard(shard):
    if shard is None:
        return None
    if isinstance(shard, (tuple, list)) and len(shard) == 2:
        i, n = shard
    else:
        m = _SHARD.match(str(shard))
        if not m:
            raise fail("shard", W, "of the form I/N with 1 <= I <= N (e.g. 2/8)", shard)
        i, n = int(m.group(1)), int(m.group(2))
    if isinstance(i, bool) or isinstance(n, bool) or not isinstance(i, (int, np.integer)) \
            or not isinstance(n, (int, np.integer)) or n < 1 or not 1 <= i <= n:
        raise fail("shard", W, "of the form I/N with 1 <= I <= N (e.g. 2/8)", f"{shard}")
    return int(i), int(n)


# =============================================================================================
# Execution (runs in the worker processes, or in-process with --workers 1)
# =============================================================================================
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_OBJECTS: dict = {}
_PROBLEMS: dict = {}
_LIMITS = None


def _limit_threads():
    """One BLAS/OpenMP thread per process: the workers are the parallelism (and results do not
    depend on the thread count)."""
    global _LIMITS
    os.environ.update(_ONE_THREAD)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        return None
    _LIMITS = threadpool_limits(limits=1)
    return _LIMITS


def _process_id(pid: int):
    """(pid, start time) of a live process, None if it is gone or a zombie (Linux: /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        try:
            os.kill(pid, 0)  # not Linux: existence only
        except ProcessLookupError:
            return None
        except OSError:
            pass
        return (pid, None)
    if fields[0] in ("Z", "X"):
        return None
    return (pid, fields[19])  # field 22 of stat: start time since boot


def _worker_init(objects, main_pid):
    """Worker set-up: ignore Ctrl-C (the parent stops the pool), one BLAS thread, and exit as soon
    as the sweep's process is gone, so that a killed sweep leaves no orphan behind.

    The main process is watched by pid (and start time), not through the parent: with the
    forkserver start method the parent is the fork server, which itself waits for its workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_threads()
    _OBJECTS.update(objects)
    ident = _process_id(main_pid)
    ppid = os.getppid()

    def watch():
        while True:
            _time.sleep(0.25)
            if os.getppid() != ppid or _process_id(main_pid) != ident:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="dln-sweep-watchdog").start()


def _problem(spec, data_seed) -> Problem:
    key = (spec, data_seed)
    if key not in _PROBLEMS:
        kind = spec[0]
        if kind == "synthetic":
            _, n, d, k, noise, design = spec
            root, cell, seed = data_seed
            ss = np.random.SeedSequence(root, spawn_key=(0, cell, seed))
            P = make_problem(n=n, d=d, k=k, noise=noise, design=design, seed=ss)
        elif kind == "file":
            P = load_problem(spec[1])
        else:
            P = _OBJECTS[spec[1]]
        if len(_PROBLEMS) >= 8:
            _PROBLEMS.pop(next(iter(_PROBLEMS)))
        _PROBLEMS[key] = P
    return _PROBLEMS[key]


def run_task(task: dict, record: bool = False) -> dict:
    """Run one chunk: ``dln.simulate.run_batch`` (flow, GD) or ``dln.integrate.iterate`` with one
    seed per run (SGD, label noise: a run's randomness must not depend on its batch-mates), then
    ``dln.simulate.records``.  Returns the metric columns of each run and the chunk's wall time."""
    from .integrate import iterate
    from .methods import make
    from .model import initial_state
    from .simulate import records, run_batch

    P = _problem(task["problem"], task["data_seed"])
    t0 = _time.perf_counter()
    B = len(task["runs"])
    alpha = np.asarray(task["alpha"], dtype=np.float64)
    hp = {h: (None if task[h] is None else np.asarray(task[h], dtype=np.float64)) for h in HYPER}
    if task["seeds"] is None:
        kw = dict(lr=None if task["lr"] is None else np.asarray(task["lr"], dtype=np.float64),
                  batch_size=task["batch_size"], label_noise=task["label_noise"])
        result = run_batch(P, task["method"], variant=task["variant"], alpha=alpha, time=task["time"], D=task["depth"],
                           rtol=task["rtol"], max_steps=task["max_steps"], record=record, **hp, **kw)
    else:
        direction = make(task["method"], P, variant=task["variant"], D=task["depth"],
                         **{h: v for h, v in hp.items() if v is not None})
        state = initial_state(P.d, B, alpha=alpha, where=task["method"])
        seeds = [np.random.SeedSequence(root, spawn_key=(1, key)) for root, key in task["seeds"]]
        result = iterate(direction, state, np.asarray(task["lr"], dtype=np.float64), batch_size=task["batch_size"],
                         label_noise=task["label_noise"] or 0.0, seeds=seeds,
                         max_steps=1_000_000 if task["max_steps"] is None else task["max_steps"],
                         record_every=1 if record else 0)
        result.info["alpha"] = alpha
    recs = records(result, predict=True)
    wall = _time.perf_counter() - t0
    out = dict(chunk=task["chunk"], metrics=[{c: r[c] for c in METRIC_COLUMNS} for r in recs], wall=wall)
    if record:
        arrays = dict(run=np.asarray(task["runs"]), beta=result.beta, alpha_eff=result.alpha_eff,
                      log_c=result.log_c, status=np.asarray(result.status, dtype=str))
        tr = result.trajectory
        if tr is not None:
            arrays.update(traj_t=tr.t, traj_beta=tr.beta, traj_loss=tr.loss, traj_log_c=tr.log_c)
        out["arrays"] = arrays
    return out


# =============================================================================================
# results.csv: formatting, reading, appending
# =============================================================================================
def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))  # shortest repr that round-trips: 'nan', 'inf', '0.1', '1e-05'
    return str(v)


def format_row(values: dict) -> str:
    """One CSV line (with its newline) for a dict of column values."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(values.get(c)) for c in COLUMNS])
    return buf.getvalue()


def parse_value(column: str, text: str):
    if text == "":
        return None
    if column in STR_COLUMNS:
        return text
    if column in INT_COLUMNS:
        return int(text)
    return float(text)


def parse_line(line: str) -> dict | None:
    """A results.csv line → typed record, or None if it is not a well-formed row."""
    try:
        fields = next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None
    if len(fields) != len(COLUMNS):
        return None
    try:
        return {c: parse_value(c, f) for c, f in zip(COLUMNS, fields)}
    except ValueError:
        return None


@dataclass
class _Existing:
    lines: dict  # run index → raw line
    torn: int = 0  # dropped: an incomplete last line
    bad: int = 0  # dropped: malformed or foreign lines
    duplicates: int = 0


def read_results(path, plan: Plan | None = None, *, n_runs: int | None = None) -> _Existing:
    """Read results.csv, keeping only complete, well-formed lines (a torn last line from a crash
    is dropped).  With a plan, a line must also match its run (index and run_id)."""
    with open(path, "rb") as fh:
        data = fh.read()
    text = data.decode("utf-8", errors="replace")
    parts = text.split("\n")
    torn = 0
    if parts[-1] != "":
        torn = 1  # no newline at the end: the last write was cut short
    parts = parts[:-1]
    if not parts:
        if text:  # a torn header
            return _Existing({}, torn=torn)
        return _Existing({}, torn=0)
    if parts[0] + "\n" != HEADER:
        raise fail("out", W, "a folder whose results.csv has this version's columns "
                   f"({HEADER.strip()[:60]}...)", f"{path} with header {parts[0][:60]!r}")
    out = _Existing({}, torn=torn)
    for line in parts[1:]:
        rec = parse_line(line)
        if rec is None or rec["run"] is None or rec["run"] < 0:
            out.bad += 1
            continue
        i = rec["run"]
        if plan is not None and (i >= len(plan.runs) or plan.runs[i]["run_id"] != rec["run_id"]):
            out.bad += 1
            continue
        if n_runs is not None and i >= n_runs:
            out.bad += 1
            continue
        if i in out.lines:
            out.duplicates += 1
            continue
        out.lines[i] = line + "\n"
    return out


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - not supported on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_write(path, text: str):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _write_sorted(path, lines: dict):
    _atomic_write(path, HEADER + "".join(lines[i] for i in sorted(lines)))


class _Appender:
    """results.csv opened for appending; each chunk's rows go out in one write + flush + fsync."""

    def __init__(self, path):
        self.fh = open(path, "a", encoding="utf-8", newline="")

    def append(self, text: str):
        self.fh.write(text)
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self):
        self.fh.close()


# =============================================================================================
# Output folder and config.json
# =============================================================================================
def _prepare_out(out: str, where: str = W) -> str:
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise fail("out", where, "a directory (a file has that name)", out)
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".dln-write-test-{os.getpid()}")
        with open(probe, "w") as fh:
            fh.write("")
        os.remove(probe)
    except OSError as exc:
        raise fail("out", where, "a writable directory", f"{out} ({exc.strerror or exc})") from None
    return out


def _versions() -> dict:
    import scipy

    dln = sys.modules.get("dln")
    return {"dln": getattr(dln, "__version__", None), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "platform": platform.platform()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable_grid(grid):
    out = []
    for sub in grid:
        s = {}
        for k, v in sub.items():
            if isinstance(v, Problem):
                v = f"problem-{_problem_sha(v)[:12]}"
            s[k] = v
        out.append(s)
    return out


def _config(plan: Plan, command, workers) -> dict:
    return dict(
        format=FORMAT, command=command, created=_now(), versions=_versions(),
        grid=_jsonable_grid(plan.grid), settings=plan.settings,
        root_seed_entropy=plan.settings["root_seed"],
        seeding=("data of a cell: SeedSequence(root_seed, spawn_key=(0, cell_key, seed)); SGD/label noise of a "
                 "run: SeedSequence(root_seed, spawn_key=(1, int(run_id[1:], 16)))"),
        support_rule=SUPPORT_RULE, data_sha256=plan.data_files,
        n_runs=len(plan.runs), n_chunks=len(plan.chunks), fingerprint=plan.fingerprint,
        shard=plan.shard_label, shard_runs=sum(len(plan.chunks[j]) for j in plan.shard_chunks),
        columns=list(COLUMNS), workers=workers, resumes=[])


def _read_config(path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail("out", W, "a folder with a readable config.json", f"{path} ({exc})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "fingerprint" not in cfg:
        raise fail("out", W, f"a folder written by dln sweep ({FORMAT})", path)
    return cfg


# =============================================================================================
# The sweep
# =============================================================================================
def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _mp_context():
    """The start method of the worker processes.

    - "fork" on Linux when this process runs a single thread and threadpoolctl can pin the
      workers' BLAS to one thread: fastest to start, and no re-import of the caller's script
      (a script calling ``dln.sweep`` needs no ``if __name__ == "__main__"`` guard);
    - otherwise a fork server (a fresh single-threaded process that imported dln once; safe in
      threaded parents such as notebooks), started with one BLAS thread in its environment;
    - "spawn" where neither exists.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1 \
            and _have_threadpoolctl():
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:  # pragma: no cover - not POSIX
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["dln.sweep", "dln.simulate"])
    from multiprocessing import forkserver

    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)
    try:
        forkserver.ensure_running()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return ctx


def _have_threadpoolctl() -> bool:
    import importlib.util

    return importlib.util.find_spec("threadpoolctl") is not None


class _Progress:
    """tqdm bar on stderr (runs, runs/s, ETA, diverged), only when stderr is a terminal.

    Started after the worker processes (tqdm runs a monitor thread; workers fork before it)."""

    def __init__(self, total, initial, quiet):
        self.bar = None
        self.diverged = 0
        self.args = dict(total=total, initial=initial)
        self.show = not quiet and sys.stderr is not None and sys.stderr.isatty()

    def start(self):
        if self.show and self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(**self.args, unit="run", file=sys.stderr, dynamic_ncols=True, smoothing=0.05,
                            desc="dln sweep")

    def update(self, n, diverged):
        self.diverged += diverged
        if self.bar is not None:
            self.bar.set_postfix(diverged=self.diverged, refresh=False)
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def sweep(grid=None, *, out=None, workers=None, shard=None, resume: bool = False, save_trajectories: bool = False,
          quiet: bool = True, command=None, depth=None, rtol=None, max_steps=None, root_seed=None,
          chunk_size=None, **axes) -> list[dict]:
    """Run a grid of simulations; return one record per run (the columns of results.csv), in grid order.

    Parameters
    ----------
    grid : dict, list of dict, or path to a JSON file, optional
        Value lists keyed like the flags (``{"method": ["gf", "gr"], "alpha": [0.01, 0.1], "gamma": 0.05}``);
        a list of such dicts is the union of their products.  ``alpha_geom=[start, stop, num]`` etc. give
        geometric ranges.
    **axes
        The same keys as keyword arguments: ``method``, ``variant``, ``alpha``, ``gamma``, ``eps``, ``rho``,
        ``flood_level``, ``time``, ``lr``, ``batch_size``, ``label_noise``, ``n``, ``d``, ``k``, ``noise``,
        ``design``, ``seeds`` (K datasets per cell) or ``seed`` (a list), ``data`` (a file or a
        :class:`~dln.problem.Problem`), ``*_geom``.  A key may not be both in ``grid`` and here.
    out : path, optional
        Folder for results.csv, config.json (and trajectories/); None keeps everything in memory.
    workers : int, optional
        Processes (default: the machine's cores); 1 runs in this process.
    shard : "I/N" or (I, N), optional
        Run the deterministic I-th of N parts of the grid (join them with :func:`merge`).
    resume : bool
        Complete the sweep in ``out`` (same grid), skipping its finished runs.
    save_trajectories : bool
        Write ``trajectories/chunk-XXXXX.npz`` per batch (final β, α_eff and the path).
    depth, rtol, max_steps, root_seed, chunk_size :
        Solver depth D (2), flow tolerance (DEFAULT_RTOL), per-run step cap, root seed entropy (0), runs per batch (32).

    Returns
    -------
    list of dict
        One record per run of the (shard of the) grid, typed (None where a column does not apply).
    """
    if isinstance(grid, (str, os.PathLike)):
        subs = load_grid(grid)
    elif grid is None:
        subs = [{}]
    elif isinstance(grid, dict):
        subs = [_normalize(grid, "the grid")]
    else:
        subs = [_normalize(g, "the grid") for g in grid]
        if not subs:
            raise fail("grid", W, "a non-empty list of grids", grid)
    given = _normalize({k: v for k, v in axes.items() if v is not None}, "the arguments")
    for sub in subs:
        for key, value in given.items():
            if key in sub:
                raise fail(key, W, "given once (in the grid or as an argument, not both)", value)
        sub.update(given)
    settings = dict(depth=depth, rtol=rtol, max_steps=max_steps, root_seed=root_seed, chunk_size=chunk_size)
    plan = build_plan(subs, settings, shard)
    for name, value in (("resume", resume), ("save_trajectories", save_trajectories)):
        if value and out is None:
            raise fail(name, W, "False without an output folder (out=None keeps the results in memory)", value)
    if workers is None:
        workers = _default_workers()
    workers = _integer("workers", workers, ge=1)
    return _execute(plan, out=out, workers=workers, resume=resume, save_trajectories=save_trajectories,
                    quiet=quiet, command=command)


def _execute(plan: Plan, *, out, workers, resume, save_trajectories, quiet, command) -> list[dict]:
    todo = plan.shard_chunks
    lines: dict = {}
    notes = []
    path = appender = None
    cfg = None
    if out is not None:
        out = _prepare_out(out)
        path = os.path.join(out, "results.csv")
        cfg_path = os.path.join(out, "config.json")
        has_results, has_cfg = os.path.exists(path), os.path.exists(cfg_path)
        if (has_results or has_cfg) and not resume:
            raise fail("out", W, "a new or empty folder (or pass --resume to complete the sweep in it)",
                       f"{out} (it holds {'results.csv' if has_results else 'config.json'})")
        if has_results and not has_cfg:
            raise fail("out", W, "a folder with the config.json of its results.csv to --resume", out)
        if has_cfg:
            cfg = _read_config(cfg_path)
            if cfg["fingerprint"] != plan.fingerprint:
                raise fail("out", W, "a folder of the same grid and settings to --resume (its config.json "
                           f"fingerprint {cfg['fingerprint'][:12]} differs from {plan.fingerprint[:12]})", out)
            if cfg.get("shard") != plan.shard_label:
                raise fail("shard", W, f"the folder's shard ({cfg.get('shard') or 'none'}) to --resume it",
                           plan.shard_label)
        if has_results:
            ex = read_results(path, plan)
            chunk_of = {i: j for j in todo for i in plan.chunks[j]}
            complete = {j for j in todo if all(i in ex.lines for i in plan.chunks[j])}
            kept = {i: line for i, line in ex.lines.items() if chunk_of.get(i) in complete}
            dropped = len(ex.lines) - len(kept)
            if ex.torn:
                notes.append("dropped a torn last line")
            if ex.bad or dropped or ex.duplicates:
                notes.append(f"dropped {ex.bad + dropped + ex.duplicates} incomplete or duplicate row(s)")
            lines.update(kept)
            todo = [j for j in todo if j not in complete]
            _write_sorted(path, lines)
        else:
            _atomic_write(path, HEADER)
        if cfg is None:
            cfg = _config(plan, command, workers)
        else:
            cfg.setdefault("resumes", []).append(dict(command=command, time=_now(), workers=workers))
        _atomic_write(cfg_path, json.dumps(cfg, indent=2, default=str) + "\n")
        appender = _Appender(path)
        if save_trajectories:
            os.makedirs(os.path.join(out, "trajectories"), exist_ok=True)
    n_before = len(lines)
    total = sum(len(plan.chunks[j]) for j in plan.shard_chunks)
    progress = _Progress(total, n_before, quiet)
    failures = []
    t0 = _time.perf_counter()

    def finish(res):
        j = res["chunk"]
        members = plan.chunks[j]
        if save_trajectories and out is not None:
            tpath = os.path.join(out, "trajectories", f"chunk-{j:05d}.npz")
            tmp = tpath + f".tmp-{os.getpid()}.npz"
            np.savez(tmp, run_id=np.asarray([plan.runs[i]["run_id"] for i in members]), **res["arrays"])
            os.replace(tmp, tpath)
        wall = res["wall"] / len(members)
        text = []
        diverged = 0
        for i, metrics in zip(members, res["metrics"]):
            line = format_row({**plan.runs[i], **metrics, "wall_time": wall})
            lines[i] = line
            text.append(line)
            diverged += metrics["status"] == "diverged"
        if appender is not None:
            appender.append("".join(text))
        progress.update(len(members), diverged)

    tasks = [plan.tasks[j] for j in todo]
    workers = max(1, min(workers, len(tasks)))
    try:
        if workers == 1:
            _OBJECTS.update(plan.objects)
            progress.start()
            limits = _limit_threads_here()
            try:
                for task in tasks:
                    try:
                        res = run_task(task, save_trajectories)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as exc:  # noqa: BLE001 - reported, the other chunks go on
                        failures.append((task["chunk"], exc))
                        continue
                    finish(res)
            finally:
                if limits is not None:
                    limits.restore_original_limits()
        elif tasks:
            # longest first (LPT): the workers finish together; the rows are sorted at the end
            tasks.sort(key=lambda t: -_cost(t, plan))
            _run_pool(plan, tasks, workers, save_trajectories, finish, failures, progress.start)
    except KeyboardInterrupt:
        progress.close()
        if appender is not None:
            appender.close()
            print(f"dln sweep: interrupted; {len(lines)} finished runs are in {path} "
                  "(run the same command with --resume to complete it)", file=sys.stderr)
        raise
    progress.close()
    if appender is not None:
        appender.close()
        _write_sorted(path, lines)
    elapsed = _time.perf_counter() - t0
    recs = [parse_line(lines[i]) for i in sorted(lines)]
    summary = _summary(plan, recs, total, len(lines) - n_before, n_before, elapsed, failures, notes, path)
    if not quiet:
        print(summary)
    if failures:
        j, exc = failures[0]
        n_failed = sum(len(plan.chunks[j]) for j, _ in failures)
        raise SweepError(f"{n_failed} run(s) in {len(failures)} batch(es) failed (first: batch {j}, "
                         f"{type(exc).__name__}: {exc}); the others are saved; rerun with --resume",
                         records=recs, summary=summary)
    return recs


class SweepError(RuntimeError):
    """Some batches raised; the finished runs are saved (``records``) and --resume retries the rest."""

    def __init__(self, message, records=None, summary=None):
        super().__init__(message)
        self.records = records
        self.summary = summary


#: Relative cost of a step per method, and the size B·n·d at which a step's array work equals its
#: fixed Python overhead.  Calibrated on flows at n·d ∈ {800, 4000}, B ∈ {4, 32} (2026-11): a
#: step costs ~3 ms + 3e-5 ms·B·n·d, GR-type methods ~1.25× GF, per-sample ~1.2× more steps.
_METHOD_COST = {"gf": 1.0, "gr": 1.25, "fgr": 1.3, "bgr": 1.3, "cgr": 1.35, "usam": 1.25, "sam": 4.0, "flood": 4.0}
_STEP_SIZE_SCALE = 100_000.0


def _cost(task: dict, plan: Plan) -> float:
    """A rough estimate of a batch's run time, to schedule the longest batches first (LPT).

    Steps grow like ln(1/α) (THEORY.md §2.2) for the smallest α of the batch, like 1/η in discrete
    time; a step costs a fixed overhead plus O(B·n·d), and at the sizes of a sweep the overhead
    dominates, so a batch of 10 runs costs more than a third of a batch of 30."""
    run = plan.runs[task["runs"][0]]
    B = len(task["runs"])
    steps = 1.0 + max(0.0, math.log(1.0 / min(task["alpha"])))
    if task["time"] == "discrete":
        steps *= 1.0 / min(task["lr"])
    per_step = 1.0 + B * run["n"] * run["d"] / _STEP_SIZE_SCALE
    factor = _METHOD_COST.get(task["method"], 1.0) * (1.2 if task["variant"] == "per-sample" else 1.0)
    return steps * per_step * factor


def _limit_threads_here():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return None
    return threadpool_limits(limits=1)


def _run_pool(plan, tasks, workers, record, finish, failures, started):
    ctx = _mp_context()
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(plan.objects, os.getpid()))
    try:
        pending = {ex.submit(run_task, task, record): task for task in tasks}
        started()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                task = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    failures.append((task["chunk"], exc))
                else:
                    finish(fut.result())
    except BaseException:
        for proc in list(getattr(ex, "_processes", {}).values()):
            if proc.is_alive():
                proc.terminate()
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _summary(plan, recs, total, new, before, elapsed, failures, notes, path) -> str:
    counts: dict = {}
    for r in recs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    status = ", ".join(f"{counts[s]} {s}" for s in sorted(counts)) or "no runs"
    shard = f" (shard {plan.shard_label} of {len(plan.runs)})" if plan.shard else ""
    text = (f"dln sweep: {len(recs)}/{total} runs{shard} ({new} new, {before} resumed) in {elapsed:.1f} s: {status}")
    if failures:
        text += f"; {sum(len(plan.chunks[j]) for j, _ in failures)} failed"
    if notes:
        text += "; " + "; ".join(notes)
    if path is not None:
        text += f" -> {path}"
    return text


# =============================================================================================
# merge
# =============================================================================================
def merge(dirs, out, *, partial: bool = False, quiet: bool = True, command=None) -> list[dict]:
    """Join shard folders (same grid) into one results.csv equal to the unsharded sweep's.

    Raises
    ------
    DLNError
        If a folder is not a sweep output, the grids differ, a run appears twice, or (unless
        ``partial``) a run is missing.
    """
    where = "merge"
    dirs = [os.fspath(d) for d in dirs]
    if not dirs:
        raise fail("dirs", where, "one or more sweep folders", dirs)
    base = None
    lines: dict = {}
    origin: dict = {}
    torn = 0
    for d in dirs:
        if not os.path.isdir(d):
            raise fail("dirs", where, "existing sweep folders", d)
        cfg_path, res_path = os.path.join(d, "config.json"), os.path.join(d, "results.csv")
        if not os.path.isfile(cfg_path) or not os.path.isfile(res_path):
            raise fail("dirs", where, "sweep folders with config.json and results.csv", d)
        try:
            cfg = _read_config(cfg_path)
        except DLNError:
            raise fail("dirs", where, f"sweep folders with a config.json written by dln sweep ({FORMAT})", d) from None
        if base is None:
            base = cfg
        elif cfg["fingerprint"] != base["fingerprint"]:
            raise fail("dirs", where, "folders of one grid (same config.json fingerprint)",
                       f"{dirs[0]} ({base['fingerprint'][:12]}) and {d} ({cfg['fingerprint'][:12]})")
        ex = read_results(res_path, n_runs=int(base["n_runs"]))
        torn += ex.torn
        for i, line in ex.lines.items():
            if i in lines:
                raise fail("dirs", where, "folders without a run in common (shards of one sweep)",
                           f"run {i} in both {origin[i]} and {d}")
            lines[i] = line
            origin[i] = d
    n_runs = int(base["n_runs"])
    missing = [i for i in range(n_runs) if i not in lines]
    if missing and not partial:
        raise fail("dirs", where, f"all the shards of the sweep ({n_runs} runs; or pass --partial)",
                   f"{len(missing)} missing run(s), e.g. run {missing[0]}")
    out = _prepare_out(out, where)
    path = os.path.join(out, "results.csv")
    if os.path.exists(path) or os.path.exists(os.path.join(out, "config.json")):
        raise fail("out", where, "a new or empty folder", f"{out} (it holds a sweep)")
    _write_sorted(path, lines)
    cfg = dict(base)
    cfg.update(command=command, created=_now(), shard=None, shard_runs=n_runs, merged_from=dirs, resumes=[],
               versions=_versions())
    _atomic_write(os.path.join(out, "config.json"), json.dumps(cfg, indent=2, default=str) + "\n")
    recs = [parse_line(lines[i]) for i in sorted(lines)]
    if not quiet:
        note = f", {len(missing)} missing" if missing else ""
        print(f"dln merge: {len(recs)}/{n_runs} runs from {len(dirs)} folder(s){note} -> {path}")
    return recs


# =============================================================================================
# Command line
# =============================================================================================
RECIPE = """\
SLURM job array (one shard per array task; --resume lets a requeued task continue):
  sbatch --array=1-8 --cpus-per-task=4 --wrap 'dln sweep GRID-FLAGS --workers 4 --quiet --resume \\
      --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --out runs/shard-$SLURM_ARRAY_TASK_ID'
  sbatch --dependency=afterok:JOBID --wrap 'dln merge runs/shard-* --out runs/all'
"""


def add_sweep_parser(sub):
    """Register ``dln sweep`` (DESIGN.md §5)."""
    from .cli import add_data_arguments, add_method_arguments

    p = sub.add_parser("sweep", help="a grid of runs -> results.csv + config.json in --out DIR",
                       description="Run the product of the given values (and --seeds K datasets per cell) in batches "
                                   "over --workers processes; results.csv gets one row per run as batches finish.",
                       epilog=RECIPE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, multi=True)
    add_method_arguments(p, multi=True)
    p.set_defaults(D=None, rtol=None)  # None = not given (the grid file may give them)
    g = p.add_argument_group("grid")
    g.add_argument("--seeds", metavar="K", default=None, help="K datasets per cell: seeds 0..K-1 (default 1)")
    g.add_argument("--seed", metavar="S", nargs="+", default=None, help="explicit data seeds (instead of --seeds)")
    g.add_argument("--grid", metavar="FILE.json", default=None,
                   help="the grid as JSON: an object mapping flags to values (or a list of objects: union)")
    for name in GEOM_KEYS:
        g.add_argument(f"--{name.replace('_', '-')}-geom", dest=f"{name}_geom", nargs=3,
                       metavar=("START", "STOP", "NUM"),
                       default=None, help=f"NUM values of {name} from START to STOP, geometrically spaced")
    g.add_argument("--root-seed", dest="root_seed", metavar="INT", default=None,
                   help="entropy of the root SeedSequence (default 0)")
    g.add_argument("--chunk-size", dest="chunk_size", metavar="B", default=None,
                   help="at most B runs per batch (default 32)")
    r = p.add_argument_group("execution")
    r.add_argument("--out", metavar="DIR", required=True, help="output folder (results.csv, config.json)")
    r.add_argument("--workers", metavar="N", default=None, help="processes (default: the machine's cores)")
    r.add_argument("--shard", metavar="I/N", default=None, help="run the I-th of N deterministic parts of the grid")
    r.add_argument("--resume", action="store_true", help="complete the sweep in --out, skipping finished runs")
    r.add_argument("--save-trajectories", dest="save_trajectories", action="store_true",
                   help="write trajectories/chunk-XXXXX.npz per batch")
    r.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(func=cmd_sweep)
    return p


def _command(args, name: str) -> str:
    """The command line, rebuilt from the parsed arguments (what ran, whoever called cli.main)."""
    parts = ["dln", name]
    for key, value in vars(args).items():
        if key in ("func", "command", "debug") or value is None or value is False:
            continue
        if key == "dirs":
            parts += [str(v) for v in value]
            continue
        flag = "--depth" if key == "D" else "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_sweep(args) -> int:
    axes = {}
    for name in LIST_KEYS:
        if name == "seed":
            continue
        value = getattr(args, name, None)
        if value is not None:
            axes[name] = value
    for name in GEOM_KEYS:
        value = getattr(args, f"{name}_geom")
        if value is not None:
            axes[f"{name}_geom"] = value
    if args.seeds is not None:
        axes["seeds"] = _integer("seeds", args.seeds, ge=1)
    if args.seed is not None:
        axes["seed"] = [_integer("seed", s, ge=0) for s in args.seed]
    if args.data is not None:
        axes["data"] = args.data
    settings = dict(depth=args.D, rtol=args.rtol, max_steps=args.max_steps,
                    root_seed=None if args.root_seed is None else _integer("root_seed", args.root_seed, ge=0),
                    chunk_size=None if args.chunk_size is None else _integer("chunk_size", args.chunk_size, ge=1))
    workers = None if args.workers is None else _integer("workers", args.workers, ge=1)
    command = _command(args, "sweep")
    try:
        sweep(args.grid, out=args.out, workers=workers, shard=args.shard, resume=args.resume,
              save_trajectories=args.save_trajectories, quiet=args.quiet, command=command, **settings, **axes)
    except SweepError as exc:
        print(f"dln: error: {exc}", file=sys.stderr)
        return 1
    return 0


def add_merge_parser(sub):
    """Register ``dln merge DIR... --out DIR``."""
    p = sub.add_parser("merge", help="join shard folders into one results.csv",
                       description="Join the folders of `dln sweep --shard I/N` into the results.csv an unsharded "
                                   "sweep writes.", epilog=RECIPE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="shard folders")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--partial", action="store_true", help="write what there is even if runs are missing")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=cmd_merge)
    return p


def cmd_merge(args) -> int:
    command = _command(args, "merge")
    merge(args.dirs, args.out, partial=args.partial, quiet=args.quiet, command=command)
    return 0
