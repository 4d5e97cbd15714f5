"""Running the batches of a sweep: one chunk → records (:func:`run_task`), the worker processes
and the longest-first schedule.

``--workers N`` processes (default: the cores this process may use) each run one batch at a time,
longest first (:func:`_cost`), with one BLAS thread (threadpoolctl); ``--workers 1`` runs
in-process.  A worker exits as soon as the sweep's process is gone, so a killed sweep leaves nothing
running.  A run's results do not depend on the worker that ran it.
"""
from __future__ import annotations

import math
import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import threading
import time as _time

import numpy as np

from .errors import fail
from .grid import HYPER, PER_RUN_STEP, Plan, _sha256_file
from .problem import Problem, load_problem, make_problem
from .sweep_io import METRIC_COLUMNS

_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_OBJECTS: dict = {}
_PROBLEMS: dict = {}
_LIMITS = None


def limit_threads(*, children: bool = False):
    """One BLAS/OpenMP thread in this process: the workers are the parallelism (and results do not
    depend on the thread count).  ``children``: the processes this one starts too (environment
    variables).  Returns the threadpoolctl limiter (``restore_original_limits()`` undoes it), or None
    without threadpoolctl."""
    if children:
        os.environ.update(_ONE_THREAD)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        return None
    return threadpool_limits(limits=1)


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


def _worker_init(objects, main):
    """Worker set-up: ignore Ctrl-C (the parent stops the pool), one BLAS thread, and exit as soon
    as the sweep's process is gone, so that a killed sweep leaves no orphan behind.

    ``main`` is the sweep process's identity, (pid, start time) from :func:`_process_id`, taken by
    the sweep itself before the pool starts: a sweep killed between the fork and this initializer
    must still be recognised as gone (an identity read here would already be that of a dead
    process, and would never change).  The main process is watched by identity, not through the
    parent: with the forkserver start method the parent is the fork server."""
    global _LIMITS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if main is None or _process_id(main[0]) != main:
        os._exit(1)
    _LIMITS = limit_threads(children=True)
    _OBJECTS.update(objects)

    def watch():
        while True:
            _time.sleep(0.25)
            if _process_id(main[0]) != main:
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
            _, path, sha = spec
            P = load_problem(path)
            if _sha256_file(path) != sha:  # rewritten since the plan was made: its rows would lie
                raise fail("data", "sweep", "a file that does not change while the sweep runs",
                           f"{path} (its sha256 is no longer the one the sweep started with)")
        else:
            P = _OBJECTS[spec[1]]
        if len(_PROBLEMS) >= 8:
            _PROBLEMS.pop(next(iter(_PROBLEMS)))
        _PROBLEMS[key] = P
    return _PROBLEMS[key]


def run_task(task: dict, record: bool = False) -> dict:
    """Run one chunk and return the metric columns of each run and the chunk's wall time; with
    ``record``, also the arrays of the chunk's trajectory file (``dln.trajectory``, recorded by its
    rule; the parent adds the runs' ids and writes the file).

    Flow chunks go through ``dln.integrate.flow`` as one heterogeneous batch (a
    ``dln.methods.Stack`` of one direction per (method, variant) segment of the chunk); discrete
    chunks through ``dln.simulate.run_batch`` (per-run hyper-parameters as vectors of shape (B,); SGD
    and label noise with one seed per run, so that a run's randomness does not depend on its
    batch-mates).  Records come
    from ``dln.simulate.records``, in the chunk's run order."""
    from .simulate import MAX_STEPS, records, run_batch

    P = _problem(task["problem"], task["data_seed"])
    t0 = _time.perf_counter()
    B = len(task["runs"])
    alpha = np.asarray(task["alpha"], dtype=np.float64)
    max_steps = task["max_steps"]
    if task["time"] == "flow":
        hp = {h: (None if task[h] is None else np.asarray(task[h], dtype=object)) for h in HYPER}

        def run(rec=False):
            return _run_flow(task, P, alpha, hp, bool(rec))
    else:
        hp = {h: (None if task[h] is None else np.asarray(task[h], dtype=np.float64)) for h in HYPER}
        steps = {a: (None if task[a] is None else np.asarray(task[a], dtype=np.float64)) for a in PER_RUN_STEP}
        seeds = None
        if task["seeds"] is not None:
            seeds = [np.random.SeedSequence(root, spawn_key=(1, key)) for root, key in task["seeds"]]

        def run(rec=False):
            return run_batch(P, task["method"], variant=task["variant"], alpha=alpha, time=task["time"],
                             D=task["depth"], batch_size=task["batch_size"], label_noise=task["label_noise"],
                             seeds=seeds, rtol=task["rtol"], max_steps=max_steps, record=rec, **hp, **steps)

    if record:
        from .trajectory import record_runs

        cap = max_steps if max_steps is not None else MAX_STEPS[task["time"]]
        result = record_runs(run, time=task["time"], max_steps=cap)
    else:
        result = run()
    if task["time"] == "flow":
        # the stack's rows are the segments in order; records and files are in the chunk's order
        order = result.info.pop("segments")
        recs = [None] * B
        for part, positions in zip(result.split(), order):
            for pos, rec in zip(positions, records(part, predict=True)):
                recs[pos] = rec
        inv = np.empty(B, dtype=np.int64)
        inv[np.concatenate(order)] = np.arange(B)
        result = result.take(inv)
    else:
        recs = records(result, predict=True)
    wall = _time.perf_counter() - t0
    out = dict(chunk=task["chunk"], metrics=[{c: r[c] for c in METRIC_COLUMNS} for r in recs], wall=wall)
    if record:
        from .trajectory import trajectory_arrays

        out["arrays"] = trajectory_arrays(result, runs=recs)
    return out


def _run_flow(task, P, alpha, hp, record):
    """One ``flow`` over the chunk's (method, variant) segments stacked in order; the result's
    ``info["segments"]`` holds, per segment, the positions of its runs in the chunk."""
    from .integrate import flow
    from .methods import PARAMS, make, stack
    from .model import initial_state
    from .simulate import MAX_STEPS

    members, order = [], []
    for method, variant, positions in task["segments"]:
        pos = np.asarray(positions)
        params = {h: hp[h][pos].astype(np.float64) for h in PARAMS[method]}
        members.append((make(method, P, variant=variant, D=task["depth"], **params), pos.size))
        order.append(pos)
    perm = np.concatenate(order)
    direction = members[0][0] if len(members) == 1 else stack(members)
    B = perm.size
    state = initial_state(P.d, B, alpha=np.repeat(alpha[perm][:, None], P.d, axis=1))
    result = flow(direction, state, rtol=task["rtol"], loss_tol=1e-24,
                  max_steps=MAX_STEPS["flow"] if task["max_steps"] is None else task["max_steps"], record=record)
    result.info["alpha"] = alpha[perm]
    result.info["segments"] = order
    return result


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _mp_context():
    """The start method of the worker processes.

    - "fork" on Linux when this process runs a single thread and threadpoolctl can pin the
      workers' BLAS to one thread: fastest to start;
    - otherwise a fork server (a fresh single-threaded process that imported dln once; safe in
      threaded parents such as notebooks, or a script with a thread alive), started with one BLAS
      thread in its environment;
    - "spawn" where neither exists.

    With either of the last two the workers do not import the caller's ``__main__`` (they need only
    dln: :class:`_NoMainContext`), so a script calling ``dln.sweep`` needs no
    ``if __name__ == "__main__"`` guard whatever its threads.
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1 \
            and _have_threadpoolctl():
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:  # pragma: no cover - not POSIX
        return _NoMainContext(multiprocessing.get_context("spawn"))
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
    return _NoMainContext(ctx)


_SPAWNING = threading.Lock()


def _without_main(get_preparation_data):
    """multiprocessing's preparation data minus the instruction to import the parent's ``__main__``:
    a worker runs dln's functions only, and re-running a script without a ``__main__`` guard in
    each worker would start its sweep again there (and fail every batch)."""
    def prepare(name):
        data = get_preparation_data(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data
    return prepare


def _launch_without_main(base, process_obj):
    from multiprocessing import spawn

    # the start-up reads spawn.get_preparation_data while it launches the process (one at a time,
    # under a lock); the original is restored at once
    with _SPAWNING:
        original = spawn.get_preparation_data
        spawn.get_preparation_data = _without_main(original)
        try:
            return base._Popen(process_obj)
        finally:
            spawn.get_preparation_data = original


if hasattr(multiprocessing.context, "ForkServerProcess"):  # POSIX
    class _NoMainForkServerProcess(multiprocessing.context.ForkServerProcess):
        @staticmethod
        def _Popen(process_obj):
            return _launch_without_main(multiprocessing.context.ForkServerProcess, process_obj)


class _NoMainSpawnProcess(multiprocessing.context.SpawnProcess):
    @staticmethod
    def _Popen(process_obj):
        return _launch_without_main(multiprocessing.context.SpawnProcess, process_obj)


class _NoMainContext:
    """A forkserver or spawn context whose processes do not import the parent's ``__main__``."""

    def __init__(self, ctx):
        self._ctx = ctx
        self.Process = _NoMainForkServerProcess if ctx.get_start_method() == "forkserver" else _NoMainSpawnProcess

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def _have_threadpoolctl() -> bool:
    import importlib.util

    return importlib.util.find_spec("threadpoolctl") is not None


#: Relative cost of a step per method, and the size B·n·d at which a step's array work equals its
#: fixed Python overhead.  Calibrated on flows at n·d ∈ {800, 4000}, B ∈ {4, 32} (2026-11): a
#: step costs ~3 ms + 3e-5 ms·B·n·d, GR-type methods ~1.25× GF, per-sample ~1.2× more steps.
_METHOD_COST = {"gf": 1.0, "gr": 1.25, "fgr": 1.3, "bgr": 1.3, "cgr": 1.35, "usam": 1.25, "sam": 4.0, "flood": 4.0}
_STEP_SIZE_SCALE = 100_000.0


def _cost(task: dict, plan: Plan) -> float:
    """A rough estimate of a batch's run time, to schedule the longest batches first (LPT).

    Steps grow like ln(1/α) (docs/theory.md §2.2) for the smallest α of the batch, like 1/η in discrete
    time; a step costs a fixed overhead plus O(B·n·d), and at the sizes of a sweep the overhead
    dominates, so a batch of 10 runs costs more than a third of a batch of 30."""
    run = plan.runs[task["runs"][0]]
    B = len(task["runs"])
    steps = 1.0 + max(0.0, math.log(1.0 / min(task["alpha"])))
    if task["time"] == "discrete":
        steps *= 1.0 / min(task["lr"])
    per_step = 1.0 + B * run["n"] * run["d"] / _STEP_SIZE_SCALE
    factor = max(_METHOD_COST.get(m, 1.0) * (1.2 if v == "per-sample" else 1.0) for m, v, _ in task["segments"])
    return steps * per_step * factor
