"""Progress of long computations (sweeps, ``dln check``, ``dln figures``, long ``simulate`` runs).

One object, three behaviours, chosen once when it is made:

- ``quiet``: nothing at all;
- a tqdm.auto bar (a widget in a notebook, a text bar on a terminal) when stderr is a terminal or
  the code runs in a Jupyter kernel;
- otherwise (a log file, a pipe, a batch job) a one-line status on stderr every ``interval``
  seconds, e.g. ``dln sweep: 37/96 runs, 0 diverged, 12.3 s elapsed, ~20 s left``.

``delay`` holds everything back for that many seconds, so that short computations print nothing
extra.  Updates are cheap (a clock read and a comparison): ``dln.integrate`` calls its ``progress``
callback once per iteration of its main loop and the object throttles itself.
"""
from __future__ import annotations

import sys
import time

#: seconds between two status lines when stderr is not a terminal (tests shorten it)
INTERVAL = 10.0
#: seconds of silence before a long simulation shows its progress (short runs print nothing extra)
DELAY = 2.0


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tqdm.auto draws a widget)."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


class Progress:
    """Progress of ``total`` items (or of an open-ended count when ``total`` is None).

    Parameters
    ----------
    desc : str
        Prefix of every line, e.g. ``"dln sweep"``.
    total : int, optional
        Number of items; None for a plain counter (integration steps).
    unit : str
        Singular name of an item (``"run"``, ``"step"``, ``"figure"``); the lines use the plural.
    initial : int
        Items already done before this object started (a resumed sweep): they do not count
        towards the rate behind the time-left estimate.
    quiet : bool
        Print nothing.
    interval : float, optional
        Seconds between two status lines (default :data:`INTERVAL`).
    delay : float
        Print nothing before this many seconds have passed; the first status line comes after
        ``delay`` seconds (or ``interval`` when ``delay`` is 0), the next ones every ``interval``.
    stream : file, optional
        Where to write (default: ``sys.stderr`` at the time of the call).
    bar : bool, optional
        Force (True) or forbid (False) the tqdm bar; default: terminal or notebook.
    counts : dict, optional
        Named counters shown from the start (``{"diverged": 0}``).
    """

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "run", initial: int = 0,
                 quiet: bool = False, interval: float | None = None, delay: float = 0.0, stream=None,
                 bar: bool | None = None, counts: dict | None = None):
        self.desc, self.total, self.unit = desc, total, unit
        self.done = self.initial = int(initial)
        self.counts: dict = dict(counts or {})
        self.interval = INTERVAL if interval is None else float(interval)
        self.delay = float(delay)
        self.stream = sys.stderr if stream is None else stream
        self.quiet = bool(quiet) or self.stream is None  # no stderr at all (pythonw): nowhere to write
        if bar is None:
            bar = self.stream is not None and (_is_terminal(self.stream) or in_notebook())
        self.use_bar = bar and not self.quiet and self.stream is not None
        self._bar = None
        self.t0 = time.monotonic()
        self._next = self.t0 + (self.delay or self.interval)
        self.lines = 0  # status lines written

    # -- feeding ----------------------------------------------------------------------------------
    def start(self) -> "Progress":
        """Restart the clock (and create the bar).  A sweep calls it after its worker processes
        exist: tqdm may start a monitor thread, and a fork should not copy a running thread."""
        self.t0 = time.monotonic()
        self._next = self.t0 + (self.delay or self.interval)
        if self.use_bar and self._bar is None:
            kwargs = dict(total=self.total, initial=self.initial, desc=self.desc, unit=self.unit, file=self.stream,
                          dynamic_ncols=True, smoothing=0.05, delay=self.delay, leave=self.total is not None)
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(**kwargs)
            except ImportError:  # a notebook without ipywidgets: the text bar
                from tqdm import tqdm

                self._bar = tqdm(**kwargs)
        return self

    def update(self, n: int = 1, **counts) -> None:
        """``n`` more items done; ``counts`` are added to named counters (``diverged=1``)."""
        self.done += n
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value
        self._show(n)

    def set(self, done: int, **state) -> None:
        """Absolute position ``done``; ``state`` replaces named values (``running="3/8"``)."""
        step = done - self.done
        self.done = done
        self.counts.update(state)
        self._show(step)

    def write(self, line: str, file=None) -> None:
        """Print a result line (on ``file``, default stdout) without breaking a bar."""
        file = sys.stdout if file is None else file
        if self._bar is not None:
            self._bar.write(line, file=file)
        else:
            print(line, file=file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # -- output -------------------------------------------------------------------------------------
    def _show(self, step: int) -> None:
        if self.quiet:
            return
        if self.use_bar:
            if self._bar is None:
                self.start()
            if self.counts:
                self._bar.set_postfix({k: v for k, v in self.counts.items()}, refresh=False)
            self._bar.update(step)
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            self.stream.write(self.status(now) + "\n")
            self.stream.flush()
            self.lines += 1

    def status(self, now: float | None = None) -> str:
        """The one-line status: ``dln sweep: 37/96 runs, 0 diverged, 12.3 s elapsed, ~20 s left``."""
        now = time.monotonic() if now is None else now
        elapsed = now - self.t0
        plural = self.unit + ("" if self.unit.endswith("s") else "s")
        head = f"{self.done}/{self.total} {plural}" if self.total is not None else f"{self.done} {plural}"
        parts = [head] + [f"{value} {key}" for key, value in self.counts.items()]
        parts.append(f"{elapsed:.1f} s elapsed")
        new = self.done - self.initial
        if self.total is not None and 0 < new and self.done < self.total:
            parts.append(f"~{elapsed / new * (self.total - self.done):.0f} s left")
        return f"{self.desc}: " + ", ".join(parts)


def step_callback(desc: str = "dln simulate", *, quiet: bool = False, delay: float | None = None,
                  interval: float | None = None, stream=None):
    """A ``progress(steps_done, running, total)`` callable for :func:`dln.integrate.flow` and
    :func:`dln.integrate.iterate`, which call it once per iteration of their main loop.  It prints
    nothing during the first ``delay`` seconds (default :data:`DELAY`: short runs stay silent), then e.g.
    ``dln simulate: 12000 steps, 1/1 runs running, 5.2 s elapsed``.  None when ``quiet``."""
    if quiet:
        return None
    bar = Progress(desc, None, unit="step", delay=DELAY if delay is None else delay, interval=interval, stream=stream)

    def progress(steps_done: int, running: int, total: int) -> None:
        bar.set(steps_done, **{"runs running": f"{running}/{total}"})

    progress.close = bar.close
    progress.bar = bar
    return progress
