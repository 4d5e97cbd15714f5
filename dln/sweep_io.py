"""The files of a sweep folder: ``results.csv`` (format, parsing, appending) and ``config.json``.

The parent process of a sweep is the only writer: after each chunk, its rows are appended to
``results.csv`` with one write, a flush and an ``fsync`` (:class:`_Appender`); :func:`read_results`
drops a torn last line; at the end the file is rewritten in grid order (temporary file +
``os.replace``).  ``config.json`` holds the command, the package versions, the root seed entropy and
a fingerprint of the grid and settings.

Columns of ``results.csv`` (floats written with ``repr``: shortest round-trip; empty where a
column does not apply, which pandas reads as NaN):

- ``run`` (index in grid order), ``run_id`` (stable hash of the run);
- the flags: ``method variant time alpha gamma eps rho flood_level lr batch_size label_noise momentum
  data n d k noise design seed`` (the key columns of the parameter table, ``dln.params``);
- ``status`` (converged, diverged, max_steps), ``train_loss``, ``test_error`` (‖β − β*‖² when β*
  is known, else the test MSE), ``test_mse``, ``l1_norm``;
- support recovery ``precision``, ``recall`` of {i : |β_i| > 1e-3·max|β|} against supp(β*);
- gains −ln(α_eff,i/α) (docs/theory.md §1, §4.1) on and off the support: ``gain_on_mean gain_on_max
  gain_off_mean gain_off_max``, and over all coordinates ``gain_mean gain_max``;
- ``prediction_rel_error`` (β against argmin φ_{u⊙v}, docs/theory.md §4), ``prediction_theory_rel_error``
  (against the integrated-gain prediction), ``kkt_residual``;
- ``steps``, ``n_evals``, ``t`` (final time), and last ``wall_time`` (seconds per run: the batch's
  time over its size; the only column that changes between two executions).
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import re
import sys
from dataclasses import dataclass

import numpy as np

from .errors import DLNError, fail
from .grid import FORMAT, KEY_COLUMNS, MAX_RUNS, W, Plan, _parse_shard, _problem_sha, _unique_keys
from .params import P as _PARAMS, legacy_value
from .problem import Problem

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
#: The columns of results.csv before the parameters added since (``Param.since`` > 1): a folder
#: written then is read with those columns at their defaults (:func:`_upgrade`) and rewritten.
LEGACY_COLUMNS = tuple(c for c in COLUMNS if c not in _PARAMS or _PARAMS[c].since == 1)
LEGACY_HEADER = ",".join(LEGACY_COLUMNS) + "\n"
SUPPORT_RULE = "support = {i : |beta_i| > 1e-3 * max_j |beta_j|} (dln.simulate.SUPPORT_THRESHOLD)"


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


#: The statuses a row may carry (dln.integrate: a finished run is never "running").
STATUSES = frozenset({"converged", "diverged", "max_steps"})
#: Columns that identify a run: a row's must be its grid run's, character for character.
IDENTITY = ("run", "run_id") + KEY_COLUMNS


def _row_fields(line: str) -> tuple[list | None, str]:
    """The fields of a results.csv row exactly as :func:`format_row` writes them, or (None, why)."""
    try:
        fields = next(csv.reader([line], strict=True))
    except (csv.Error, StopIteration) as exc:
        return None, f"not a CSV row ({exc})"
    if len(fields) != len(COLUMNS):
        return None, f"{len(fields)} fields where results.csv has {len(COLUMNS)}"
    for c, f in zip(COLUMNS, fields):
        if f == "" or c in STR_COLUMNS:
            continue
        try:
            value = parse_value(c, f)
        except ValueError:
            return None, f"column {c} is {f!r}, not {'an integer' if c in INT_COLUMNS else 'a number'}"
        if _cell(value) != f:  # written by format_row: the shortest round-trip form, nothing else
            return None, f"column {c} is {f!r}, not as dln writes {_cell(value)!r}"
    status = fields[COLUMNS.index("status")]
    if status not in STATUSES:
        return None, f"status {status!r} is not one of {', '.join(sorted(STATUSES))}"
    if fields[0] == "" or int(fields[0]) < 0:
        return None, f"run index {fields[0]!r} is not a run"
    return fields, ""


@dataclass
class _Existing:
    lines: dict  # run index → raw line (with its newline)
    torn: int = 0  # dropped: an incomplete last line


def read_results(path, identity=None, *, name: str = "out", where: str = W) -> _Existing:
    """Read results.csv strictly: every complete row must be a well-formed row of the grid; only a
    torn last line (the mark of a crash: no newline at the end) is dropped.

    Parameters
    ----------
    identity : callable, optional
        ``identity(i, fields)`` → the identity fields (:data:`IDENTITY`) run ``i`` must have, or a
        string saying why ``i`` is not a run of this folder.  None checks the form only.

    Raises
    ------
    DLNError
        For the first bad row, named ``path:line`` with the reason: malformed, not as dln writes
        it, a status that is not a status, not the run its index and run_id say, a run twice.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    parts = data.split(b"\n")
    torn = 0
    if parts[-1] != b"":
        torn = 1  # no newline at the end: the last write was cut short
    parts = parts[:-1]
    if not parts:
        return _Existing({}, torn=torn)  # nothing, or a torn header
    legacy = parts[0] + b"\n" == LEGACY_HEADER.encode()
    if parts[0] + b"\n" != HEADER.encode() and not legacy:
        raise fail(name, where, "a folder whose results.csv has this version's columns "
                   f"({HEADER.strip()[:60]}...)", f"{path} with header {parts[0][:60].decode('utf-8', 'replace')!r}")
    out = _Existing({}, torn=torn)
    first_line: dict = {}

    def bad(lineno, why):
        return fail(name, where, "a folder whose results.csv rows are the runs of its grid, as dln wrote them "
                    "(correct or delete that line, or start a new folder)", f"{path}:{lineno}: {why}")

    for lineno, raw in enumerate(parts[1:], 2):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise bad(lineno, "not UTF-8 text") from None
        if legacy:
            line = _upgrade(line)
        fields, why = _row_fields(line)
        if fields is None:
            raise bad(lineno, why)
        i = int(fields[0])
        if identity is not None:
            want = identity(i, fields)
            if isinstance(want, str):
                raise bad(lineno, f"run {i} {want}")
            for c, got, exp in zip(IDENTITY, fields, want):
                if got != exp:
                    raise bad(lineno, f"run {i} is not the run its index and run_id say: column {c} is {got!r}, "
                              f"the grid's has {exp!r}")
        if i in out.lines:
            raise bad(lineno, f"run {i} appears twice (lines {first_line[i]} and {lineno})")
        first_line[i] = lineno
        out.lines[i] = line + "\n"
    return out


def _upgrade(line: str) -> str:
    """A row of a results.csv with :data:`LEGACY_COLUMNS` as :func:`format_row` writes it now: the
    columns added since at their defaults for the row's time mode (``dln.params.legacy_value``).
    A row that is not well-formed is returned as it is (and reported by the caller)."""
    try:
        fields = next(csv.reader([line], strict=True))
    except (csv.Error, StopIteration):
        return line
    if len(fields) != len(LEGACY_COLUMNS):
        return line
    old = dict(zip(LEGACY_COLUMNS, fields))
    time = old.get("time")
    cells = [old[c] if c in old else _cell(legacy_value(c, time)) for c in COLUMNS]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


def plan_identity(plan: Plan, runs=None):
    """:func:`read_results`' identity check against a plan: run i must be ``plan.runs[i]`` (and one
    of ``runs``, e.g. the runs of a shard)."""
    def identity(i, fields):
        if i >= len(plan.runs) or (runs is not None and i not in runs):
            return (f"is not a run of this folder's grid ({len(plan.runs)} runs"
                    + (f", shard {plan.shard_label})" if plan.shard else ")"))
        run = plan.runs[i]
        return [_cell(run[c]) for c in IDENTITY]
    return identity


def row_identity(n_runs: int, data_sha: dict):
    """:func:`read_results`' identity check without the plan: run i < n_runs, and its run_id is the
    hash of its own key columns (:func:`dln.grid.run_id`; a data file known by its recorded sha256)."""
    from .grid import run_id, synthetic_cell_sha

    def identity(i, fields):
        if i >= n_runs:
            return f"is not a run of this folder's grid ({n_runs} runs)"
        run = {c: parse_value(c, f) for c, f in zip(COLUMNS, fields) if c in KEY_COLUMNS}
        if run["data"] is None:
            try:
                sha = synthetic_cell_sha(run["n"], run["d"], run["k"], run["noise"], run["design"])
            except TypeError:
                return "lacks the n, d, k, noise or design of its synthetic data"
        elif run["data"] in data_sha:
            sha = data_sha[run["data"]]
        else:
            return f"names data {run['data']!r}, which is not a dataset of this folder's grid"
        return [fields[0], run_id(run, sha)] + fields[2:len(IDENTITY)]
    return identity


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


def _atomic_write(path, text: str, name: str = "out", where: str = W):
    """Write ``path`` all at once (temporary file + fsync + os.replace): a kill leaves the old file or
    the new one, and a failure (disk full, file-size limit) leaves the old one and no temporary."""
    tmp = f"{path}{TMP_MARK}{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise fail(name, where, "a folder where dln can write its files", f"{path} ({exc.strerror or exc})") from None
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _write_sorted(path, lines: dict, name: str = "out", where: str = W):
    _atomic_write(path, HEADER + "".join(lines[i] for i in sorted(lines)), name, where)


#: Marks the temporary files of atomic writes: ``results.csv.tmp-PID``, ``trajectories/chunk-00003.npz.tmp-PID.npz``.
TMP_MARK = ".tmp-"
_TEMPORARY = re.compile(r"^(results\.csv|config\.json)\.tmp-\d+$|^\.dln-write-test-\d+$")
_TEMPORARY_TRAJECTORY = re.compile(r"^chunk-\d+\.npz\.tmp-\d+(\.npz)?$")


def remove_temporary_files(out) -> int:
    """Remove what interrupted writes left in a sweep folder (call it holding the folder's lock): the
    temporary files of atomic rewrites and trajectory saves.  Returns how many were removed."""
    removed = 0
    for folder, pattern in ((out, _TEMPORARY), (os.path.join(out, "trajectories"), _TEMPORARY_TRAJECTORY)):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for entry in names:
            path = os.path.join(folder, entry)
            if pattern.match(entry) and os.path.isfile(path) and not os.path.islink(path):
                try:
                    os.remove(path)
                    removed += 1
                except OSError:
                    pass
    return removed


class _Appender:
    """results.csv opened for appending; each chunk's rows go out in one write + flush + fsync."""

    def __init__(self, path):
        self.path = path
        self.fh = open(path, "a", encoding="utf-8", newline="")

    def append(self, text: str):
        try:
            self.fh.write(text)
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as exc:  # a full disk or a file-size limit: what was written is a torn last line
            raise fail("out", W, "a folder where dln can write its files (free some space, then --resume)",
                       f"{self.path} ({exc.strerror or exc})") from None

    def close(self):
        try:
            self.fh.close()
        except OSError:  # the flush of a failed append: already reported
            pass


def _prepare_out(out, where: str = W) -> str:
    """Create the output folder (and its parents) if needed; whether it is writable is checked by
    taking its lock (:func:`dln.lock.acquire`)."""
    out = os.fspath(out)
    if out == "":
        raise fail("out", where, "a folder name", out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise fail("out", where, "a directory (a file has that name)", out)
    try:
        os.makedirs(out, exist_ok=True)
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
        support_rule=SUPPORT_RULE,
        data_sha256={**plan.data_files, **{f"problem-{sha[:12]}": sha for sha in plan.objects}},
        n_runs=len(plan.runs), n_chunks=len(plan.chunks), fingerprint=plan.fingerprint,
        shard=plan.shard_label, shard_runs=sum(len(plan.chunks[j]) for j in plan.shard_chunks),
        columns=list(COLUMNS), workers=workers, resumes=[])


#: config.json larger than this is not one dln wrote (a grid of 10⁷ runs needs a few MB).
MAX_CONFIG_BYTES = 64 * 2**20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _read_config(path, name: str = "out", where: str = W) -> dict:
    """Read and validate config.json (types, ranges and sizes of every entry dln uses) before use.

    Raises
    ------
    DLNError
        Naming the file and the first bad entry: not readable, not JSON, not a dln sweep's, or damaged.
    """
    def bad(why):
        return fail(name, where, f"a folder whose config.json is the one dln sweep wrote ({FORMAT})", f"{path}: {why}")

    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise bad(f"{size} bytes, more than the {MAX_CONFIG_BYTES} of any dln config.json")
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh, object_pairs_hook=_unique_keys)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, DLNError):
            raise
        what = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise fail(name, where, "a folder with a readable config.json", f"{path} ({what})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or "fingerprint" not in cfg:
        raise fail(name, where, f"a folder written by dln sweep ({FORMAT})", path)

    def integer(key, lo, hi, optional=False):
        v = cfg.get(key)
        if v is None and optional:
            return
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise bad(f"{key} is {_short(v)} (an integer from {lo} to {hi:,} expected)")

    def kind(key, types, what, optional=True):
        v = cfg.get(key)
        if (v is None and optional) or isinstance(v, types):
            return
        raise bad(f"{key} is {_short(v)} ({what} expected)")

    if not isinstance(cfg["fingerprint"], str) or not _SHA256.match(cfg["fingerprint"]):
        raise bad(f"fingerprint is {_short(cfg['fingerprint'])} (64 hexadecimal digits expected)")
    integer("n_runs", 1, MAX_RUNS)
    integer("n_chunks", 1, cfg["n_runs"])
    integer("shard_runs", 0, cfg["n_runs"])
    integer("workers", 1, 2**31, optional=True)
    if cfg.get("shard") is not None:
        try:
            i, n = _parse_shard(cfg["shard"]) if isinstance(cfg["shard"], str) else (None, None)
        except DLNError:
            i = n = None
        if n is None:
            raise bad(f"shard is {_short(cfg['shard'])} (I/N with 1 <= I <= N expected)")
    for key, what in (("command", "a string"), ("created", "a string")):
        kind(key, str, what)
    kind("resumes", list, "a list", optional=False)
    kind("merged_from", list, "a list")
    kind("grid", list, "a list of sub-grids", optional=False)
    if not all(isinstance(g, dict) for g in cfg["grid"]):
        raise bad("grid is not a list of objects")
    kind("settings", dict, "an object", optional=False)
    if cfg.get("columns") not in (list(COLUMNS), list(LEGACY_COLUMNS)):
        raise bad("columns differ from this version's results.csv columns")
    data = cfg.get("data_sha256", {})
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and _SHA256.match(v)
                                            for k, v in data.items()):
        raise bad("data_sha256 is not an object mapping data names to sha256 digests")
    return cfg


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
