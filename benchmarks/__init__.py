"""Benchmark harness of ``dln``: this project against what a user would otherwise write.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``); ``--quick`` for a smoke run,
``--only NAME`` for one module.  Each module ``benchmarks/bench_NAME.py`` has
``run(quick=False) -> list[dict]`` (and, in the modules of this package that support it, a
keyword ``smoke=True`` for the tiny sizes the unit test uses).  Timings never go into unit tests.

Row schema (plain dicts; every key optional except ``bench`` and ``case``; :func:`make_row`
builds one):

=================  ==========================================================================
key                meaning
=================  ==========================================================================
bench              module key (``"lsoda"``, ``"torch"``, ...)
case               what was measured (workload, sizes)
unit               unit of ``ours`` / ``baseline`` (e.g. ``"s"``, ``"runs/s"``)
ours               summary dict ``{"median", "lo", "hi", "n"}`` of this project's measurement
baseline           the same for the baseline (``None`` when there is none)
baseline_name      e.g. ``"LSODA loop"``
ratio              the number compared with the target (speed-up, fraction, exponent, GiB)
ratio_name         e.g. ``"speed-up"``, ``"fraction of matmul rate"``
target             the target value of ``ratio``; ``target_op`` is ``">="`` or ``"<="``
met                ``True`` / ``False`` / ``None`` (no target)
accuracy           short text: the accuracy both sides reached (checked inside the module)
accuracy_ok        ``True`` when every accuracy check of the row passed
notes              free text (estimates, caveats)
extra              dict of further numbers (evaluations, steps, per-run times, ...)
status             ``"ok"`` (default), ``"skipped"`` or ``"error"``
=================  ==========================================================================

Spread: ``lo``/``hi`` are the minimum and maximum over the ``n`` repeats (for single-pass
baseline loops, ``n = 1`` and the per-run distribution is in ``extra``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

__all__ = ["make_row", "summarize", "timeit", "interleaved", "limit_threads", "machine_info",
           "fmt_value", "THREADS"]

#: BLAS / torch threads used by every timing (set by run.py; the comparisons are made with the
#: same setting on both sides).  1 by default: the machine is shared, and multi-threaded BLAS on
#: the baselines' tiny matrices collapses under oversubscription (measured: LSODA on a 200-state
#: stiff system took 21 s with 2 OpenBLAS threads under load vs 0.34 s with 1).
THREADS = int(os.environ.get("DLN_BENCH_THREADS", "1"))


def summarize(samples) -> dict:
    """Median and spread (min, max) of a list of measurements."""
    xs = [float(x) for x in samples]
    if not xs:
        return {"median": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    return {"median": statistics.median(xs), "lo": min(xs), "hi": max(xs), "n": len(xs)}


def scaled(summary: dict | None, factor: float, invert: bool = False) -> dict | None:
    """A summary of x·factor (or factor/x, which swaps lo and hi)."""
    if summary is None:
        return None
    if invert:
        return {"median": factor / summary["median"], "lo": factor / summary["hi"],
                "hi": factor / summary["lo"], "n": summary["n"]}
    return {k: (v * factor if k != "n" else v) for k, v in summary.items()}


def make_row(bench: str, case: str, *, unit: str = "", ours=None, baseline=None,
             baseline_name: str = "", ratio: float | None = None, ratio_name: str = "speed-up",
             target: float | None = None, target_op: str = ">=", accuracy: str = "",
             accuracy_ok: bool | None = None, notes: str = "", extra: dict | None = None,
             status: str = "ok") -> dict:
    """One result row (see the module docstring).  ``ours``/``baseline`` are summaries or lists
    of samples; ``met`` is computed from ``ratio``, ``target`` and ``accuracy_ok``."""
    if ours is not None and not isinstance(ours, dict):
        ours = summarize(ours)
    if baseline is not None and not isinstance(baseline, dict):
        baseline = summarize(baseline)
    met = None
    if target is not None and ratio is not None and status == "ok":
        met = ratio >= target if target_op == ">=" else ratio <= target
        if accuracy_ok is False:
            met = False
    return dict(bench=bench, case=case, unit=unit, ours=ours, baseline=baseline,
                baseline_name=baseline_name, ratio=ratio, ratio_name=ratio_name, target=target,
                target_op=target_op, met=met, accuracy=accuracy, accuracy_ok=accuracy_ok,
                notes=notes, extra=extra or {}, status=status)


def timeit(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.0, number: int | None = None):
    """Seconds per call of ``fn`` for each of ``repeats`` repeats (after one warm-up call).

    With ``number=None`` each repeat loops until ``min_time`` has passed (at least one call).
    """
    fn()
    out = []
    for _ in range(repeats):
        k = 0
        t0 = time.perf_counter()
        while True:
            fn()
            k += 1
            el = time.perf_counter() - t0
            if (number is not None and k >= number) or (number is None and el >= min_time):
                break
        out.append(el / k)
    return out


def interleaved(fns: dict, repeats: int = 5, min_time: float = 0.0) -> dict:
    """Time several callables in alternating order (A B A B ...), so that load changes on a
    shared machine hit both sides alike.  Returns {name: [seconds per call, ...]}."""
    for fn in fns.values():
        fn()  # warm-up
    out = {k: [] for k in fns}
    for rep in range(repeats):
        names = list(fns) if rep % 2 == 0 else list(fns)[::-1]
        for name in names:
            out[name].extend(timeit(fns[name], repeats=1, min_time=min_time) if min_time else
                             [_once(fns[name])])
    return out


def _once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextlib.contextmanager
def limit_threads(n: int | None = None):
    """Limit BLAS (threadpoolctl) and torch intra-op threads to ``n`` (default THREADS)."""
    n = THREADS if n is None else n
    torch_prev = None
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch_prev = torch.get_num_threads()
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is in the bench extra
        threadpool_limits = None
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=n):
                yield
    finally:
        if torch_prev is not None:
            sys.modules["torch"].set_num_threads(torch_prev)


def _read(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def machine_info() -> dict:
    """Cores, CPU, caches, memory, BLAS, library versions, load and the code revision."""
    info = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "platform": platform.platform()}
    info["cores"] = os.cpu_count()
    try:
        info["cores_available"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        info["cores_available"] = os.cpu_count()
    cpu = [ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines()
           if ln.startswith("model name")]
    info["cpu"] = cpu[0] if cpu else platform.processor()
    flags = [ln for ln in _read("/proc/cpuinfo").splitlines() if ln.startswith("flags")]
    if flags:
        fl = set(flags[0].split())
        info["simd"] = ",".join(x for x in ("avx2", "fma", "avx512f") if x in fl)
    caches = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    if os.path.isdir(base):
        for idx in sorted(os.listdir(base)):
            lvl = _read(f"{base}/{idx}/level").strip()
            typ = _read(f"{base}/{idx}/type").strip()
            size = _read(f"{base}/{idx}/size").strip()
            if lvl and size and typ != "Instruction":
                caches.append(f"L{lvl} {size}")
    info["caches"] = ", ".join(caches)
    mem = [ln for ln in _read("/proc/meminfo").splitlines() if ln.startswith("MemTotal")]
    if mem:
        info["memory_gib"] = round(int(mem[0].split()[1]) / 2**20, 1)
    import numpy
    import scipy
    info["numpy"] = numpy.__version__
    info["scipy"] = scipy.__version__
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, "
                f"{p.get('num_threads')} threads by default, {p.get('threading_layer')})"
                for p in threadpool_info() if p.get("user_api") == "blas"]
        info["blas"] = "; ".join(blas) or "unknown"
    except ImportError:
        try:
            cfg = numpy.show_config(mode="dicts")
            b = cfg["Build Dependencies"]["blas"]
            info["blas"] = f"{b.get('name')} {b.get('version')} (numpy.show_config)"
        except Exception:  # pragma: no cover
            info["blas"] = "unknown (install threadpoolctl)"
    try:
        import torch  # noqa: F401
        info["torch"] = sys.modules["torch"].__version__
    except ImportError:
        info["torch"] = "not installed"
    info["threads"] = THREADS
    try:
        info["load_average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        info["load_average"] = "n/a"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:  # read-only git queries
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["revision"] = (rev + (" (with uncommitted changes)" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        info["revision"] = "unknown"
    return info


def fmt_value(x, digits: int = 3) -> str:
    """Compact number formatting for tables."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if x != x:
        return "nan"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e5 or ax < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}"
    if ax >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def fmt_summary(s: dict | None, digits: int = 3) -> str:
    """``median (lo–hi, n=k)``."""
    if s is None:
        return "–"
    if not isinstance(s, dict):
        return fmt_value(s, digits)
    if s.get("n", 1) <= 1 or s["lo"] == s["hi"]:
        return fmt_value(s["median"], digits) + (f" (n={s['n']})" if s.get("n") else "")
    return f"{fmt_value(s['median'], digits)} ({fmt_value(s['lo'], 2)}–{fmt_value(s['hi'], 2)}, n={s['n']})"
