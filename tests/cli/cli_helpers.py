"""Running ``dln`` in-process and in real processes, and reading its text output."""
from __future__ import annotations

import contextlib
import io
import math
import os
import pathlib
import re
import subprocess
import sys

from dln.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: a tiny problem: every run on it takes a fraction of a second
TINY = ["--n", "6", "--d", "12", "--k", "2"]
#: a number as the text output prints it (fixed formats), or n/a
NUMBER = r"(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|inf|-inf|nan|n/a)"


def call(argv, stdin: str | None = None):
    """``dln.cli.main(argv)`` in-process → (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def env() -> dict:
    """The environment of a real ``python -m dln``: this checkout first on the path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def run_process(argv, timeout: float = 300, cwd=None, stdin: str | None = None):
    """``python -m dln ARGV`` in a real process → (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "dln", *[str(a) for a in argv]], capture_output=True, text=True,
                          timeout=timeout, env=env(), cwd=cwd, input=stdin)
    return proc.returncode, proc.stdout, proc.stderr


def number(text: str):
    """A printed number → float, or None for n/a; anything else fails the test."""
    assert re.fullmatch(NUMBER, text), f"not a formatted number: {text!r}"
    return None if text == "n/a" else float(text)


def assert_formatted(text: str):
    """No raw None and no unformatted float (17 significant digits) anywhere in a text output."""
    assert "None" not in text, text
    assert not re.search(r"\d\.\d{9,}", text), f"unformatted float in {text!r}"


def close(printed, exact, rel: float = 2e-3) -> bool:
    """A printed (rounded) value agrees with the exact one from --json."""
    if printed is None or exact is None:
        return printed is None and exact is None
    if math.isnan(exact):
        return math.isnan(printed)
    return abs(printed - exact) <= rel * abs(exact) + 1e-300


def assert_user_error(code, out, err, *texts):
    """docs/design.md §5: exit 2, nothing on stdout, one line ``dln: error: …`` naming what is wrong."""
    assert code == 2, (code, out, err)
    assert out == "", out
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dln: error: "), err
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return lines[0]
