"""Memory estimates, checked before allocating: a problem too large for the machine is a one-line
user error, not a MemoryError traceback or the OOM killer.

The limit is ``DLN_MAX_MEMORY`` (bytes, or with a binary suffix: ``500M`` = 500 MiB, ``8G``,
``1.5T``, also spelled ``8GB`` or ``8GiB``; ``none`` switches the check off), by default 80 % of the memory this process may use: the smallest of the
physical memory, the cgroup limit (containers, SLURM jobs) and ``RLIMIT_AS``.

The estimates are upper bounds fitted to tracemalloc peaks (float64 throughout):

- data (:func:`problem_bytes`): X (n × d), a held-out set (n_test × d), and the generator's
  temporaries;
- one batch of B runs of the flow or of the discrete maps (:func:`batch_bytes`): about 100 arrays
  of shape (B, d) (state, stages, gains, Newton iterates) and, for the flow, the n × n Woodbury
  matrices of each run and the blocked products X·diag(w)·Xᵀ (at most 4·10⁶ entries at a time);
- a sweep's plan and records (:data:`BYTES_PER_RUN` per run).
"""
from __future__ import annotations

import os
import re

from .errors import DLNError, fail

ENV = "DLN_MAX_MEMORY"
#: Bytes a sweep holds per run of its grid (plan, rows, records), measured at about 1.4 KB + 2 KB.
BYTES_PER_RUN = 4096
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def _machine_bytes() -> int | None:
    """The memory this process may use: physical memory, cgroup limit, RLIMIT_AS (the smallest)."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text.isdigit() and int(text) < 2**60:
            sizes.append(int(text))
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            sizes.append(soft)
    except (ImportError, ValueError, OSError):  # pragma: no cover
        pass
    return min(sizes) if sizes else None


def limit() -> tuple[float, str]:
    """(limit in bytes, where it comes from); the limit is ``inf`` when the check is off."""
    text = os.environ.get(ENV)
    if text is not None and text.strip() != "":
        if text.strip().lower() in ("none", "off", "inf", "unlimited"):
            return float("inf"), f"{ENV}={text.strip()}"
        m = _SIZE.match(text)
        if not m or float(m.group(1)) <= 0:
            raise DLNError(f"The '{ENV}' environment variable must be a size in bytes, e.g. 500M, 8G or 1.5T "
                           f"(or 'none'). Got {text!r} instead.")
        return float(m.group(1)) * _UNITS[m.group(2).upper()], f"{ENV}={text.strip()}"
    machine = _machine_bytes()
    if machine is None:  # pragma: no cover
        return float("inf"), "unknown machine memory"
    return 0.8 * machine, f"80% of this machine's {human(machine)}: set {ENV} to change it"


def human(nbytes: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} B"


def check(nbytes: float, name: str, where: str, what: str, value):
    """Raise the user error "The 'name' parameter of where must be small enough to fit in memory..."
    if ``nbytes`` exceeds the limit."""
    cap, source = limit()
    if nbytes > cap:
        raise fail(name, where, f"small enough to fit in memory ({what}: about {human(nbytes)}; the limit is "
                   f"{human(cap)}, {source})", value)


def problem_bytes(n: int, d: int, n_test: int = 0) -> float:
    """Bytes of a problem's arrays: X, the test set, and the generator's temporaries."""
    return 8.0 * 2 * (n + n_test) * d


def batch_bytes(B: int, n: int, d: int, flow: bool = True) -> float:
    """Peak bytes of one batch of B runs on an n × d problem: the flow keeps an n × 3n Jacobian model
    per run and builds a few n × n matrices per refreshed run (docs/design.md §3), the discrete maps
    none."""
    woodbury = 10.0 * B * n * n + 2.0 * min(B * n * d, 4_000_000) if flow else 0.0
    return 8.0 * (100.0 * B * d + woodbury + n * d)


def check_batch(B: int, n: int, d: int, flow: bool, where: str):
    """:func:`check` for a batch of B runs, naming n or d, whichever weighs more."""
    by_n = 6.0 * B * n * n if flow else 0.0
    name, value = ("n", n) if by_n > 100.0 * B * d else ("d", d)
    check(batch_bytes(B, n, d, flow), name, where,
          f"{'a flow' if flow else 'discrete steps'} of {B} run(s) at n = {n}, d = {d}", value)
