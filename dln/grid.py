"""Sweep grids (docs/design.md §5): value lists → runs in grid order → batches (chunks) and shards.

A sweep is the product of value lists (``--method gf gr fgr --alpha 0.01 0.1 1 --gamma 0.05 --seeds 2``),
or a union of such products read from ``--grid FILE.json``.  A hyper-parameter reaches the swept
methods that use it (``dln.methods.PARAMS``): in ``--method gf gr fgr --gamma 0.05 0.1`` gf runs once
per α and seed; a value that reaches no swept method, a missing value, or any invalid value is a
user error raised before anything runs.

Grid order (the row order of ``results.csv``), outermost first::

    n, d, k, noise, design (or --data) → seed → method → variant → time → lr → batch_size
    → label_noise → momentum → alpha → gamma → eps → rho → flood_level

The value lists and their rules are the sweep axes of the parameter table (``dln.params``).

Seeding.  The data of a cell (n, d, k, noise, design, seed) comes from
``SeedSequence(root_seed, spawn_key=(0, cell_key, seed))`` where ``cell_key`` is a stable hash of the
cell's parameters (not its position in the grid): adding a grid value never changes the data of
another cell.  The mini-batch / label-noise randomness of a discrete run comes from
``SeedSequence(root_seed, spawn_key=(1, run_key))`` with ``run_key`` a stable hash of the run.

Batching.  Continuous-time runs on one dataset (cell and seed) go through ``flow`` as one
heterogeneous batch, whatever their method, variant and hyper-parameters (``dln.methods.Stack``,
docs/design.md §2); the batch is split only to bound memory (:func:`flow_chunk_limit`) or at an
explicit ``chunk_size``.  Discrete-time runs (``iterate``) are batched per method, variant, batch
size and label noise, in chunks of at most ``chunk_size`` (default :data:`DISCRETE_CHUNK` = 32).  A group is split into
near-equal chunks of consecutive runs (in grid order).  Chunks are fixed by the grid alone (not by ``--workers`` or ``--shard``):
``--shard I/N`` takes every N-th chunk.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from . import memory
from .errors import check_int, check_real, fail
from .integrate import DEFAULT_RTOL
from .methods import METHODS, PARAMS, VARIANT_METHODS
from .model import WEIGHT_MIN
from .params import (DATA_AXES, DISCRETE_ONLY, GEOM_KEYS, HYPER, KEY_COLUMNS, P as PARAMS_TABLE, check,
                     default, id_values)
from .problem import Problem, load_problem

W = "sweep"
FORMAT = "dln-sweep/1"
SETTING_DEFAULTS = {"depth": default("depth"), "rtol": DEFAULT_RTOL, "max_steps": None, "root_seed": 0,
                    "chunk_size": None}
#: the value lists of a grid: the sweep axes of the parameter table
LIST_KEYS = tuple(name for name in KEY_COLUMNS if name != "data")
#: discrete-time parameters that split batches (one sampler per batch) ...
BATCH_STEP = ("batch_size", "label_noise")
#: ... and those a batch takes per run (a vector of shape (B,) given to ``run_batch``)
PER_RUN_STEP = tuple(a for a in DISCRETE_ONLY if a not in BATCH_STEP)
#: discrete-time batches hold at most this many runs unless ``chunk_size`` says otherwise
DISCRETE_CHUNK = 32
#: memory a flow batch may use (its per-run arrays, see :func:`flow_chunk_limit`)
FLOW_MEMORY = 256 * 2**20
GRID_KEYS = frozenset(LIST_KEYS) | {f"{k}_geom" for k in GEOM_KEYS} | {"seeds", "data"} | set(SETTING_DEFAULTS)
MAX_RUNS = 10_000_000

_NAMES = {"D": "depth"}


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


def _real(name, v, **bounds):
    """A real grid value (a number, not a string or a bool) within ``bounds`` (``dln.errors.check_real``)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise fail(name, W, "a real number", v)
    v = check_real(name, v, W, allow_array=False, **bounds)
    if name == "alpha" and v < WEIGHT_MIN:  # the rule of dln.model.initial_state, checked before anything runs
        raise fail(name, W, f">= {WEIGHT_MIN:g} (smaller initial weights are outside the verified range)", v)
    return v


def _value(name, v):
    """One value of the axis ``name``, checked by its entry of the parameter table."""
    p = PARAMS_TABLE[name]
    if p.kind is float:
        return _real(name, v, gt=p.gt, ge=p.ge, lt=p.lt, le=p.le)
    if p.kind is int:
        return _integer(name, v, ge=p.ge)
    return check(name, v, W)


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
    start = _real(key, _num(key, start), gt=0.0)
    stop = _real(key, _num(key, stop), gt=0.0)
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
        if name == "batch_size":
            out[name] = _distinct(name, [None if v is None else _value(name, v) for v in _as_list(name, value)])
        elif name in LIST_KEYS:
            out[name] = _distinct(name, [_value(name, v) for v in _as_list(name, value)])
        elif name.endswith("_geom"):
            out[name] = _geom(name[:-5], value)
        elif name == "seeds":
            out[name] = _integer(name, value, ge=1)
        elif name == "data":
            if not isinstance(value, (str, os.PathLike, Problem)):
                raise fail("data", W, "a file name (.npz or .csv)", value)
            out[name] = value if isinstance(value, Problem) else _data_name(value)
        elif name in ("depth", "root_seed"):
            out[name] = _integer(name, value, ge=PARAMS_TABLE["depth"].ge if name == "depth" else 0)
        elif name == "chunk_size":
            out[name] = None if value is None else _integer(name, value, ge=1)
        elif name == "max_steps":
            out[name] = None if value is None else _integer(name, value, ge=1)
        elif name == "rtol":
            out[name] = _real(name, value, gt=PARAMS_TABLE["rtol"].gt)
    for name in GEOM_KEYS:
        if f"{name}_geom" in out:
            if name in out:
                raise fail(f"{name}_geom", W, f"left unset when {_flag(name)} is given (one or the other)",
                           out[f"{name}_geom"])
            out[name] = _distinct(name, out.pop(f"{name}_geom"))
    if "seeds" in out and "seed" in out:
        raise fail("seeds", W, "left unset when --seed lists the seeds (one or the other)", out["seeds"])
    return _Normalized(out)


def _data_name(value) -> str:
    """A data file name as results.csv records it: no control characters (a newline would split its
    row) and no bytes that are not UTF-8 (results.csv is UTF-8 text)."""
    text = os.fsdecode(os.fspath(value))
    bad = [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")]
    if bad:
        raise fail("data", W, "a file name without control characters or bytes that are not UTF-8 (results.csv "
                   "records it; rename the file)", text)
    return text


class _Normalized(dict):
    """A (sub-)grid that has been through :func:`_normalize` (not checked twice)."""


def load_grid(path) -> list[dict]:
    """Read a ``--grid`` JSON file: one object mapping flags to values, or a list of such objects
    (the grid is then the union of their products).  A key given twice in one object, and nesting
    deeper than that (a list of objects of value lists), are errors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise fail("grid", W, "an existing JSON file", path)
    try:
        with open(path, encoding="utf-8-sig") as fh:  # a byte-order mark (Windows editors) is not JSON
            raw = json.load(fh, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise fail("grid", W, "a JSON file that gives each key once per object", f"{exc} in {path}") from None
    except RecursionError:
        raise fail("grid", W, f"a JSON file nested at most {MAX_GRID_DEPTH} levels deep (a list of objects of value "
                   "lists)", f"{path} (nested deeper than Python's recursion limit)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail("grid", W, "a readable JSON file", f"{path} ({exc})") from None
    depth = _depth(raw)
    if depth > MAX_GRID_DEPTH:
        raise fail("grid", W, f"a JSON file nested at most {MAX_GRID_DEPTH} levels deep (a list of objects of value "
                   "lists)", f"{path} (nested {depth} levels deep)")
    subs = raw if isinstance(raw, list) else [raw]
    if not subs:
        raise fail("grid", W, "a JSON object or a non-empty list of objects", f"[] in {path}")
    return [_normalize(s, path) for s in subs]


#: [ {"alpha": [0.1, 1]} ]: a list of objects of value lists.
MAX_GRID_DEPTH = 3


class _DuplicateKey(ValueError):
    def __str__(self):
        return f"key {self.args[0]!r} twice"


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _depth(obj) -> int:
    """Nesting depth of lists and objects (a scalar is 0), without recursion."""
    depth, level = 0, [obj]
    while True:
        containers = [x for x in level if isinstance(x, (list, dict))]
        if not containers:
            return depth
        depth += 1
        level = [v for x in containers for v in (x.values() if isinstance(x, dict) else x)]


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


def run_id(run: dict, cell_sha) -> str:
    """A run's stable id: "r" + 16 hex digits of a hash of its key columns, its data known by its
    content (``cell_sha``), not by how its path is spelled."""
    # "r" + hex: never read as a number (pandas would turn "12e4..." into a float)
    return "r%016x" % _hash([_canon(v) if not isinstance(v, list) else [v[0], _canon(v[1])]
                             for v in id_values(run)] + [cell_sha])


def synthetic_cell_sha(n, d, k, noise, design) -> int:
    """The identity of a synthetic data cell (its data seed is derived from it, not from its position)."""
    return _hash([n, d, k, repr(noise), design])


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
    methods = sub.get("method", [default("method")])
    variants = sub.get("variant", [default("variant")])
    times = sub.get("time", [default("time")])
    depth = settings["depth"]
    for name in HYPER:
        users = [m for m in methods if name in PARAMS[m]]
        if name in sub and not users:
            who = [m for m in METHODS if name in PARAMS[m]]
            raise fail(name, W, f"given only with a method that uses it ({', '.join(who)}); the swept methods are "
                       f"{', '.join(methods)}", sub[name])
        if name not in sub and users:
            raise fail(name, W, f"given for {', '.join(users)} (it has no default)", None)
    if not any(m in VARIANT_METHODS for m in methods) and any(v != "full" for v in variants):
        raise fail("variant", W, f"'full' with {', '.join(methods)} (the variant applies to "
                   f"{', '.join(VARIANT_METHODS)})", variants)
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
        len(_variants(m, variants)) * sum(per_time[t] for t in times)
        * math.prod(len(sub[h]) for h in PARAMS[m]) for m in methods)
    if size > MAX_RUNS:
        raise fail("grid", W, f"at most {MAX_RUNS:,} runs (split it into several sweeps)", f"{size:,} runs")
    memory.check(size * memory.BYTES_PER_RUN, "grid", W, f"the plan and the rows of {size:,} runs", f"{size:,} runs")
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
        for n, d, k, noise, design in product(*(sub.get(a, [default(a)]) for a in DATA_AXES)):
            if k > d:
                raise fail("k", W, f"<= d (the support size of beta* in dimension d = {d})", k)
            key = dict(data=None, n=n, d=d, k=k, noise=noise, design=design)
            cells.append(dict(key=key, spec=("synthetic", n, d, k, noise, design),
                              sha=synthetic_cell_sha(n, d, k, noise, design)))
    for cell in cells:
        for b in sub.get("batch_size", []):
            if b is not None and b > cell["key"]["n"]:
                raise fail("batch_size", W, f"<= n = {cell['key']['n']} (the number of samples)", b)
    # -- every (method, variant) once on a tiny problem: any rule of dln.methods.make ----------
    _check_methods(sub, methods, variants, depth)
    runs = []
    alphas = sub.get("alpha", [default("alpha")])
    for cell in cells:
        for seed in seeds:
            for method in methods:
                for variant in _variants(method, variants):
                    for time in times:
                        flow = time == "flow"
                        discrete_axes = [[None]] * len(DISCRETE_ONLY) if flow else \
                            [sub.get(a, [default(a)]) for a in DISCRETE_ONLY]
                        for steps in product(*discrete_axes):
                            hp = [sub[h] if h in PARAMS[method] else [None] for h in HYPER]
                            for alpha, *values in product(alphas, *hp):
                                run = dict(method=method, variant=variant, time=time, alpha=alpha,
                                           **dict(zip(HYPER, values)), **dict(zip(DISCRETE_ONLY, steps)),
                                           **cell["key"], seed=seed)
                                runs.append((run, cell))
    return runs


def _variants(method, variants):
    """The variants a method runs with: like a hyper-parameter, the variant reaches only the methods
    that use it (gf and flood run once, 'full')."""
    return variants if method in VARIANT_METHODS else ["full"]


def _check_methods(sub, methods, variants, depth):
    tiny = Problem(np.eye(2), np.ones(2))
    from .methods import make

    for method in methods:
        for variant in _variants(method, variants):
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
        rid = run_id(run, cell["sha"])
        if rid in seen:
            raise fail("grid", W, "a list of distinct runs (the sub-grids overlap)",
                       {k: v for k, v in run.items() if v is not None})
        seen[rid] = i
        runs.append(dict(run=i, run_id=rid, **run))
        cells_of.append(cell)
    # -- batches: flow runs per dataset; discrete runs per dataset, method, variant, batch size, noise -
    groups: dict = {}
    for i, run in enumerate(runs):
        if run["time"] == "flow":
            key = (cells_of[i]["sha"], run["seed"], "flow")
        else:
            key = (cells_of[i]["sha"], run["seed"], run["method"], run["variant"], run["time"],
                   *(run[a] for a in BATCH_STEP))
        groups.setdefault(key, []).append(i)
    chunks = []
    size = settings["chunk_size"]
    for key, members in groups.items():
        first = runs[members[0]]
        if size is not None:
            cap = size
        elif key[-1] == "flow":
            cap = flow_chunk_limit(first["n"], first["d"], settings["depth"])
        else:
            cap = DISCRETE_CHUNK
        m = -(-len(members) // cap)
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
        segments: dict = {}  # (method, variant) → positions in the chunk, in order of appearance
        for pos, i in enumerate(members):
            segments.setdefault((runs[i]["method"], runs[i]["variant"]), []).append(pos)
        used = {h for (meth, _) in segments for h in PARAMS[meth]}
        plan.tasks[j] = dict(
            chunk=j, runs=members, problem=cell["spec"], data_seed=(root, _cell_key(cell), first["seed"]),
            method=first["method"], variant=first["variant"], time=first["time"], batch_size=first["batch_size"],
            label_noise=first["label_noise"], segments=[(m, v, pos) for (m, v), pos in segments.items()],
            alpha=[runs[i]["alpha"] for i in members],
            **{h: ([runs[i][h] for i in members] if h in used else None) for h in HYPER},
            **{a: (None if first["time"] == "flow" else [runs[i][a] for i in members]) for a in PER_RUN_STEP},
            seeds=[(root, int(runs[i]["run_id"][1:], 16)) for i in members] if stochastic else None,
            depth=settings["depth"], rtol=settings["rtol"], max_steps=settings["max_steps"])
    return plan


def flow_chunk_limit(n: int, d: int, depth: int = 2) -> int:
    """Runs per flow batch that fit in :data:`FLOW_MEMORY`: the per-run arrays of ``flow`` are the
    n×3n Jacobian model, ~12 state-sized vectors (2n or n + d numbers; 3d in the general form at
    depth D >= 3) and ~12 temporaries of length d in an evaluation."""
    width = 3 * d if depth != 2 else n + d
    per_run = 8 * (3 * n * n + 12 * width + 12 * d + (4 * d if depth != 2 else 0))
    return max(1, int(FLOW_MEMORY // per_run))


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
