"""The files of a sweep folder: ``results.csv`` (format, parsing, appending) and ``config.json``.

The parent process of a sweep is the only writer: after each chunk, its rows are appended to
``results.csv`` with one write, a flush and an ``fsync`` (:class:`_Appender`); :func:`read_results`
drops a torn last line; at the end the file is rewritten in grid order (temporary file +
``os.replace``).  ``config.json`` holds the command, the package versions, the root seed entropy and
a fingerprint of the grid and settings.

Columns of ``results.csv`` (floats written with ``repr``: shortest round-trip; empty where a
column does not apply, which pandas reads as NaN):

- ``run`` (index in grid order), ``run_id`` (stable hash of the run);
- the flags: ``method variant time alpha gamma eps rho flood_level lr batch_size label_noise data
  n d k noise design seed``;
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
import sys
from dataclasses import dataclass

import numpy as np

from .errors import fail
from .grid import FORMAT, KEY_COLUMNS, W, Plan, _problem_sha
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
