"""Sweeps: a grid of runs → ``results.csv`` + ``config.json`` (docs/design.md §5), and ``dln merge``.

A sweep is the product of value lists (``--method gf gr fgr --alpha 0.01 0.1 1 --gamma 0.05 --seeds 2``),
or a union of such products read from ``--grid FILE.json``.  A hyper-parameter reaches the swept
methods that use it (``dln.methods.PARAMS``): in ``--method gf gr fgr --gamma 0.05 0.1`` gf runs once
per α and seed; a value that reaches no swept method, a missing value, or any invalid value is a
user error raised before anything runs.

Grids, seeding and batching: :mod:`dln.grid`.  Workers and scheduling: :mod:`dln.workers`.  The
files (``results.csv`` columns, ``config.json``): :mod:`dln.sweep_io`.  Chunks are fixed by the grid
alone and always re-run whole, so ``results.csv`` is identical byte for byte, except for the
``wall_time`` column, whatever the number of workers, the sharding, or the interruptions and resumes.

Safety.  After each chunk its rows are appended to ``results.csv`` with one write, a flush and an
``fsync``.  A sweep killed at any moment keeps every finished chunk; ``--resume`` drops a torn last
line, keeps the complete chunks and runs the rest (on a missing or empty folder it simply starts, so
a job script can always pass it).  ``--resume`` and ``dln merge`` refuse folders of another grid.

SLURM job array (one shard per array task, then one merge)::

    #SBATCH --array=1-8
    dln sweep --method gf gr fgr --alpha-geom 1e-4 10 25 --gamma 0.01 0.1 --eps 0.1 --seeds 10 \\
        --n 40 --d 100 --workers "$SLURM_CPUS_PER_TASK" --resume \\
        --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --out "runs/shard-$SLURM_ARRAY_TASK_ID"
    # afterwards (e.g. sbatch --dependency=afterok:JOBID):
    dln merge runs/shard-* --out runs/all
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time as _time

from . import memory
from .errors import DLNError, fail
from .grid import GEOM_KEYS, KEY_COLUMNS, LIST_KEYS, W, Plan, build_plan, _integer, load_grid, _normalize, _parse_shard
from .lock import acquire, holder
from .problem import default_n_test
from .sweep_io import (
    COLUMNS, METRIC_COLUMNS, _Appender, _atomic_write, _config, format_row, _now, parse_line, plan_identity,
    _prepare_out, _read_config, read_results, remove_temporary_files, row_identity, _versions, _write_sorted,
)
from .workers import (_OBJECTS, _cost, _default_workers, limit_threads, _mp_context, _process_id, run_task,
                      _worker_init)

__all__ = ["sweep", "merge", "build_plan", "read_results", "COLUMNS", "KEY_COLUMNS", "METRIC_COLUMNS"]


def _progress(total, initial, quiet):
    """The sweep's progress (:class:`dln.progress.Progress`): a tqdm bar on a terminal or in a
    notebook, else ``dln sweep: 37/96 runs, 0 diverged, 12.3 s elapsed, ~20 s left`` on stderr
    every 10 s.  Started after the worker processes exist (tqdm may run a monitor thread)."""
    from .progress import Progress

    return Progress("dln sweep", total, unit="run", initial=initial, quiet=quiet, counts={"diverged": 0})


def sweep(grid=None, *, out=None, workers=None, shard=None, resume: bool = False, save_trajectories: bool = False,
          quiet: bool = False, command=None, depth=None, rtol=None, max_steps=None, root_seed=None,
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
        Write ``trajectories/chunk-XXXXX.npz`` per batch: the recorded paths of its runs in the
        ``dln-trajectory/1`` format (:mod:`dln.trajectory`, read by ``dln.load_trajectory``), each
        run carrying the ``run`` and ``run_id`` of its row of results.csv.
    quiet : bool
        No progress on stderr (a tqdm bar on a terminal or in a notebook, otherwise a status line
        every 10 s) and no summary line at the end.
    depth, rtol, max_steps, root_seed, chunk_size :
        Solver depth D (2), flow tolerance (DEFAULT_RTOL), per-run step cap, root seed entropy (0), and
        at most ``chunk_size`` runs per batch (default None: the continuous-time runs of one dataset in
        one batch, split only to bound memory, :func:`dln.grid.flow_chunk_limit`; discrete-time runs in
        batches of at most :data:`dln.grid.DISCRETE_CHUNK` = 32).

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
    _check_memory(plan, workers)
    return _execute(plan, out=out, workers=workers, resume=resume, save_trajectories=save_trajectories,
                    quiet=quiet, command=command)


def _check_memory(plan: Plan, workers: int):
    """The largest batch (with its data) times the batches that run at once, plus the plan, must fit
    in memory (:mod:`dln.memory`); checked before anything runs or is written."""
    worst, shape = 0.0, None
    for j in plan.shard_chunks:
        run = plan.runs[plan.chunks[j][0]]
        n, d, B = run["n"], run["d"], len(plan.chunks[j])
        n_test = default_n_test(n, d) if run["data"] is None else 0
        need = memory.batch_bytes(B, n, d, run["time"] == "flow") + memory.problem_bytes(n, d, n_test)
        if need > worst:
            worst, shape = need, (B, n, d)
    if shape is None:
        return
    base = len(plan.runs) * memory.BYTES_PER_RUN
    B, n, d = shape
    name, value = ("chunk_size", plan.settings["chunk_size"]) if B > 1 else ("d", d)
    memory.check(base + worst, name, W, f"a batch of {B} run(s) at n = {n}, d = {d}", value)
    parallel = min(workers, len(plan.shard_chunks))
    memory.check(base + parallel * worst, "workers", W,
                 f"{parallel} batches of {B} run(s) at n = {n}, d = {d} at once", workers)


def _execute(plan: Plan, *, out, workers, resume, save_trajectories, quiet, command) -> list[dict]:
    """Run the plan; with an output folder, holding its lock (one writer per folder, :mod:`dln.lock`)."""
    if out is None:
        return _execute_locked(plan, out=None, workers=workers, resume=resume, save_trajectories=save_trajectories,
                               quiet=quiet, command=command)
    out = _prepare_out(out)
    with acquire(out, name="out", where=W, command=command):
        return _execute_locked(plan, out=out, workers=workers, resume=resume, save_trajectories=save_trajectories,
                               quiet=quiet, command=command)


def _open_folder(plan: Plan, out, *, resume, save_trajectories, command, workers, notes) -> tuple[dict, list]:
    """Bring the (locked) folder to a state the sweep can append to; return the finished rows to keep
    and the chunks still to run.

    Every state a kill can leave is resumable: the files are written in the order config.json,
    results.csv header, rows (each file atomically or by whole appended lines), so a folder holds
    nothing, config.json alone, or both; temporary files of interrupted rewrites are removed here.
    A results.csv without a single row is as good as none."""
    path, cfg_path = os.path.join(out, "results.csv"), os.path.join(out, "config.json")
    removed = remove_temporary_files(out)
    if removed:
        notes.append(f"removed {removed} temporary file(s) of an interrupted run")
    for p in (path, cfg_path):
        if os.path.lexists(p) and not os.path.isfile(p):
            raise fail("out", W, f"a folder whose {os.path.basename(p)} is a file", f"{p} (a directory or other non-file)")
    traj = os.path.join(out, "trajectories")
    if save_trajectories and os.path.lexists(traj) and not os.path.isdir(traj):
        raise fail("out", W, "a folder whose trajectories entry is a folder", traj)
    has_cfg, has_results = os.path.exists(cfg_path), os.path.exists(path)
    if (has_results or has_cfg) and not resume:
        raise fail("out", W, "a new or empty folder (or pass --resume to complete the sweep in it)",
                   f"{out} (it holds {'results.csv' if has_results else 'config.json'})")
    cfg = None
    if has_cfg:
        cfg = _read_config(cfg_path)
        if cfg["fingerprint"] != plan.fingerprint:
            raise fail("out", W, "a folder of the same grid and settings to --resume (its config.json "
                       f"fingerprint {cfg['fingerprint'][:12]} differs from {plan.fingerprint[:12]})", out)
        if cfg.get("shard") != plan.shard_label:
            raise fail("shard", W, f"the folder's shard ({cfg.get('shard') or 'none'}) to --resume it",
                       plan.shard_label)
        _check_counts(cfg, plan, cfg_path, "out", W)
    ex = None
    if has_results:
        ex = read_results(path, plan_identity(plan, _shard_runs(plan)) if has_cfg else None)
        if ex.lines and not has_cfg:
            raise fail("out", W, "a folder with the config.json of its results.csv to --resume (without it the runs "
                       "cannot be checked: move results.csv away to start again)", out)
    has_rows = ex is not None and bool(ex.lines)
    todo = plan.shard_chunks
    lines: dict = {}
    if has_rows:
        complete = {j for j in todo if all(i in ex.lines for i in plan.chunks[j])}
        chunk_of = {i: j for j in todo for i in plan.chunks[j]}
        kept = {i: line for i, line in ex.lines.items() if chunk_of[i] in complete}
        if ex.torn:
            notes.append("dropped a torn last line")
        if len(kept) < len(ex.lines):
            notes.append(f"dropped {len(ex.lines) - len(kept)} row(s) of unfinished batches")
        lines.update(kept)
        todo = [j for j in todo if j not in complete]
    # config.json first: a kill after it leaves a folder that --resume completes
    if cfg is None:
        cfg = _config(plan, command, workers)
    else:
        cfg["resumes"].append(dict(command=command, time=_now(), workers=workers))
        cfg["columns"] = list(COLUMNS)  # results.csv is rewritten below with this version's columns
    _atomic_write(cfg_path, json.dumps(cfg, indent=2, default=str) + "\n")
    _write_sorted(path, lines)
    if save_trajectories:
        os.makedirs(traj, exist_ok=True)
    return lines, todo


def _check_counts(cfg, plan: Plan, cfg_path, name, where):
    """config.json's run and batch counts must be its grid's (the fingerprint covers the grid, not them)."""
    if (cfg["n_runs"], cfg["n_chunks"]) != (len(plan.runs), len(plan.chunks)):
        raise fail(name, where, "a folder whose config.json is the one dln sweep wrote",
                   f"{cfg_path}: n_runs {cfg['n_runs']} and n_chunks {cfg['n_chunks']} contradict its fingerprint "
                   f"({len(plan.runs)} runs in {len(plan.chunks)} batches)")


def _shard_runs(plan: Plan):
    return None if plan.shard is None else {i for j in plan.shard_chunks for i in plan.chunks[j]}


def _execute_locked(plan: Plan, *, out, workers, resume, save_trajectories, quiet, command) -> list[dict]:
    todo = plan.shard_chunks
    lines: dict = {}
    notes = []
    path = appender = None
    if out is not None:
        path = os.path.join(out, "results.csv")
        lines, todo = _open_folder(plan, out, resume=resume, save_trajectories=save_trajectories, command=command,
                                   workers=workers, notes=notes)
        appender = _Appender(path)
    n_before = len(lines)
    total = sum(len(plan.chunks[j]) for j in plan.shard_chunks)
    progress = _progress(total, n_before, quiet)
    failures = []
    t0 = _time.perf_counter()

    def finish(res):
        j = res["chunk"]
        members = plan.chunks[j]
        if save_trajectories and out is not None:
            from .trajectory import write_trajectory

            write_trajectory(os.path.join(out, "trajectories", f"chunk-{j:05d}.npz"), res["arrays"],
                             runs=[dict(plan.runs[i], depth=plan.settings["depth"]) for i in members])
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
        progress.update(len(members), diverged=diverged)

    tasks = [plan.tasks[j] for j in todo]
    workers = max(1, min(workers, len(tasks)))
    try:
        if workers == 1:
            _OBJECTS.update(plan.objects)
            progress.start()
            limits = limit_threads()
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
    except BaseException as exc:  # Ctrl-C, or results.csv could not be written (disk full): the file is closed
        progress.close()
        if appender is not None:
            appender.close()
            if isinstance(exc, KeyboardInterrupt):
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
        first = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        if all(_transient(e) for _, e in failures):
            advice = "rerun with --resume to retry them"
        elif isinstance(exc, DLNError):  # a user error found while running (a data file rewritten meanwhile)
            advice = "correct what the error names before running again"
        else:  # a batch's computation is deterministic: --resume would fail the same way
            advice = ("--resume would fail the same way: this is a bug of dln for these runs (please report it "
                      "with the batch's parameters)")
        raise SweepError(f"{n_failed} run(s) in {len(failures)} batch(es) failed (first: batch {j}, {first}); "
                         f"the others are saved; {advice}", records=recs, summary=summary)
    return recs


def _transient(exc) -> bool:
    """A failure that may not recur: out of memory, a killed worker, an I/O error."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(exc, (MemoryError, OSError, BrokenProcessPool))


class SweepError(RuntimeError):
    """Some batches raised; the finished runs are saved (``records``) and --resume retries the rest."""

    def __init__(self, message, records=None, summary=None):
        super().__init__(message)
        self.records = records
        self.summary = summary


def _run_pool(plan, tasks, workers, record, finish, failures, started):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait  # here: --workers 1 needs no pool

    ctx = _mp_context()
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(plan.objects, _process_id(os.getpid())))
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


def merge(dirs, out, *, partial: bool = False, quiet: bool = True, command=None) -> list[dict]:
    """Join shard folders (same grid) into one results.csv equal to the unsharded sweep's.

    Every row is checked before anything is written: against the grid rebuilt from config.json
    (the run its index says, in its folder's shard), or, when the grid cannot be rebuilt (its data
    file is gone or changed, or the data was a Problem object), against its own run_id.

    Raises
    ------
    DLNError
        If a folder is not a sweep output or is being written, a config.json or a row is damaged,
        the grids differ, a run appears twice, the output folder is one of the inputs or is being
        written, or (unless ``partial``) a run is missing.
    """
    where = "merge"
    dirs = [os.fspath(d) for d in dirs]
    if not dirs:
        raise fail("dirs", where, "one or more sweep folders", dirs)
    base = None
    lines: dict = {}
    origin: dict = {}
    notes = []
    plan = None
    for d in dirs:
        if not os.path.isdir(d):
            raise fail("dirs", where, "existing sweep folders", d)
        who = holder(d)
        if who is not None:
            raise fail("dirs", where, "folders no sweep is writing (wait for it to finish)", f"{d}, locked by {who}")
        cfg_path, res_path = os.path.join(d, "config.json"), os.path.join(d, "results.csv")
        if not os.path.isfile(cfg_path) or not os.path.isfile(res_path):
            raise fail("dirs", where, "sweep folders with config.json and results.csv", d)
        cfg = _read_config(cfg_path, "dirs", where)
        if base is None:
            base = cfg
            plan = _rebuild_plan(cfg)
            if plan is None:
                notes.append("rows checked against their own run ids (the grid could not be rebuilt from "
                             f"{cfg_path}: its data is not at hand)")
        elif cfg["fingerprint"] != base["fingerprint"]:
            raise fail("dirs", where, "folders of one grid (same config.json fingerprint)",
                       f"{dirs[0]} ({base['fingerprint'][:12]}) and {d} ({cfg['fingerprint'][:12]})")
        if plan is not None:
            _check_counts(cfg, plan, cfg_path, "dirs", where)
            shard = None if cfg.get("shard") is None else _parse_shard(cfg["shard"])
            view = Plan(grid=plan.grid, settings=plan.settings, runs=plan.runs, chunks=plan.chunks,
                        fingerprint=plan.fingerprint, shard=shard)
            identity = plan_identity(view, _shard_runs(view))
        else:
            identity = row_identity(base["n_runs"], base.get("data_sha256", {}))
        ex = read_results(res_path, identity, name="dirs", where=where)
        for i, line in ex.lines.items():
            if i in lines:
                raise fail("dirs", where, "folders without a run in common (shards of one sweep)",
                           f"run {i} in both {origin[i]} and {d}")
            lines[i] = line
            origin[i] = d
    n_runs = base["n_runs"]
    missing = [i for i in range(n_runs) if i not in lines]
    if missing and not partial:
        raise fail("dirs", where, f"all the shards of the sweep ({n_runs} runs; or pass --partial)",
                   f"{len(missing)} missing run(s), e.g. run {missing[0]}")
    out = _prepare_out(out, where)
    if any(os.path.samefile(out, d) for d in dirs):
        raise fail("out", where, "a folder other than the merged ones", out)
    with acquire(out, name="out", where=where, command=command):
        remove_temporary_files(out)
        path, cfg_path = os.path.join(out, "results.csv"), os.path.join(out, "config.json")
        if os.path.lexists(path) or (os.path.lexists(cfg_path) and not _config_of(cfg_path, base)):
            raise fail("out", where, "a new or empty folder", f"{out} (it holds a sweep)")
        cfg = dict(base)
        cfg.update(command=command, created=_now(), shard=None, shard_runs=n_runs, merged_from=dirs, resumes=[],
                   columns=list(COLUMNS),
                   versions=_versions())
        # config.json first, as a sweep does: a kill between the two leaves config.json alone, which
        # merging again (or --resume) completes
        _atomic_write(cfg_path, json.dumps(cfg, indent=2, default=str) + "\n", "out", where)
        _write_sorted(path, lines, "out", where)
    recs = [parse_line(lines[i]) for i in sorted(lines)]
    if not quiet:
        note = f", {len(missing)} missing" if missing else ""
        extra = "".join(f"; {n}" for n in notes)
        print(f"dln merge: {len(recs)}/{n_runs} runs from {len(dirs)} folder(s){note}{extra} -> {path}")
    return recs


def _config_of(cfg_path, base) -> bool:
    """Whether cfg_path is a sound config.json of the same grid as ``base`` (an interrupted merge's)."""
    try:
        return _read_config(cfg_path)["fingerprint"] == base["fingerprint"]
    except DLNError:
        return False


def _rebuild_plan(cfg) -> Plan | None:
    """The plan of a config.json's grid and settings, if it can be rebuilt with the same fingerprint."""
    try:
        plan = build_plan([dict(g) for g in cfg["grid"]], dict(cfg["settings"]))
    except (DLNError, KeyError, TypeError, ValueError, RecursionError):
        return None
    return plan if plan.fingerprint == cfg["fingerprint"] else None


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


def cmd_merge(args) -> int:
    command = _command(args, "merge")
    merge(args.dirs, args.out, partial=args.partial, quiet=args.quiet, command=command)
    return 0
