"""Benchmark: start-up of the command line, ``python -m dln --version``, against the floor any
NumPy/SciPy program pays, ``python -c "import numpy, scipy"``.

Both are fresh interpreter processes, timed end to end (wall clock, fork to exit) and interleaved
(A B B A ...) so that load changes on a shared machine hit both.  ``python -m dln --help`` is
timed too (it lists every subcommand without importing the heavy ones).  Target: ≤ 3× the
baseline (``import dln`` imports neither scikit-learn, pandas, matplotlib nor SymPy).

    python benchmarks/bench_startup.py [--quick]
    from benchmarks.bench_startup import run
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import make_row, summarize  # noqa: E402

BENCH = "startup"
TARGET = 3.0
ROOT = pathlib.Path(__file__).resolve().parents[1]
BASELINE = [sys.executable, "-c", "import numpy, scipy"]
COMMANDS = {"python -m dln --version": [sys.executable, "-m", "dln", "--version"],
            "python -m dln --help": [sys.executable, "-m", "dln", "--help"]}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _time(argv, env) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return elapsed


def _heavy_modules(env) -> list[str]:
    """Which of scikit-learn, pandas, matplotlib, SymPy ``python -m dln --version`` loads (none expected)."""
    probe = ("import runpy, sys\nsys.argv = ['dln', '--version']\ntry:\n    runpy.run_module('dln', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "print('@@', *sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'pandas', 'matplotlib', "
             "'sympy'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300).stdout
    return [ln for ln in out.splitlines() if ln.startswith("@@")][-1].split()[1:]


def run(quick: bool = False, smoke: bool = False, repeats: int | None = None) -> list[dict]:
    """Median wall time of each command over ``repeats`` fresh processes, against the baseline."""
    env = _env()
    repeats = repeats if repeats is not None else (1 if smoke else 5 if quick else 15)
    names = ["baseline", *COMMANDS]
    argvs = {"baseline": BASELINE, **COMMANDS}
    times = {name: [] for name in names}
    for name in names:  # warm the file cache once, outside the timing
        _time(argvs[name], env)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(_time(argvs[name], env))
    heavy = _heavy_modules(env)
    base = summarize(times["baseline"])
    rows = []
    for name in COMMANDS:
        ours = summarize(times[name])
        ratio = ours["median"] / base["median"]
        print(f"{name}: {ours['median'] * 1e3:.0f} ms vs {base['median'] * 1e3:.0f} ms for import numpy, scipy "
              f"-> {ratio:.2f}x (target <= {TARGET}); heavy modules loaded: {', '.join(heavy) or 'none'}")
        rows.append(make_row(BENCH, f"{name} vs python -c 'import numpy, scipy' (fresh processes)", unit="s",
                             ours=ours, baseline=base, baseline_name="import numpy, scipy", ratio=ratio,
                             ratio_name="time ratio", target=None if smoke else TARGET, target_op="<=",
                             accuracy=f"heavy modules at start-up: {', '.join(heavy) or 'none'}",
                             accuracy_ok=not heavy, notes=f"{repeats} interleaved repeats",
                             extra={"ours_s": times[name], "baseline_s": times["baseline"]}))
    return rows


if __name__ == "__main__":
    run(quick="--quick" in sys.argv[1:])
