"""``--debug`` and ``--version`` / ``-V`` are accepted anywhere on the command line, before or after
the subcommand, in-process and in real processes."""
from __future__ import annotations

import pytest

from cli_helpers import TINY, call, run_process
from dln import __version__
from dln.errors import DLNError

BAD_ALPHA = ["simulate", *TINY, "--alpha", "-1"]


@pytest.mark.parametrize("argv", [
    ["--debug", *BAD_ALPHA],
    [*BAD_ALPHA, "--debug"],
    ["simulate", "--debug", *BAD_ALPHA[1:]],
], ids=["before", "after", "middle"])
def test_debug_anywhere_reraises(argv):
    with pytest.raises(DLNError, match=r"'alpha' parameter of gf must be > 0"):
        call(argv)


def test_without_debug_one_line():
    code, out, err = call(BAD_ALPHA)
    assert code == 2 and out == "" and err.startswith("dln: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["predict", "sweep", "merge", "check", "derive", "figures"])
def test_debug_after_every_subcommand_is_accepted(command):
    """A user error after the subcommand: re-raised with --debug, never 'unrecognized arguments'."""
    bad = {"predict": ["--alpha", "-1", *TINY], "sweep": ["--alpha", "-1", "--out", "/nonexistent/x"],
           "merge": ["/nonexistent/a", "--out", "/nonexistent/b"], "check": ["--n", "0"],
           "derive": ["--only", "nothing"], "figures": ["--only", "fig42"]}[command]
    code, out, err = call([command, *bad])
    assert code == 2 and "unrecognized" not in err, err
    with pytest.raises(ValueError):  # DLNError is a ValueError, as are the figure-name errors
        call([command, *bad, "--debug"])


@pytest.mark.parametrize("argv", [["--version"], ["-V"], ["simulate", "-V"], ["simulate", *TINY, "--version"],
                                  ["sweep", "--version"], ["check", "-V"], ["figures", "-V"], ["plot", "-V"],
                                  ["--debug", "-V"]])
def test_version_anywhere(argv):
    code, out, err = call(argv)
    assert code == 0 and out == f"dln {__version__}\n" and err == "", (out, err)


def test_version_and_debug_in_real_processes():
    for argv in (["-V"], ["predict", "--version"]):
        code, out, err = run_process(argv, timeout=120)
        assert code == 0 and out == f"dln {__version__}\n", (argv, out, err)
    code, out, err = run_process([*BAD_ALPHA, "--debug"], timeout=120)
    assert code != 0 and "Traceback" in err and "DLNError" in err


@pytest.mark.parametrize("exc", [ValueError("boom"), TypeError("bad operand"), IndexError("index 3 out of range"),
                                 ZeroDivisionError("float division by zero")])
def test_an_error_from_inside_dln_is_an_internal_error(monkeypatch, exc):
    """Anything but a user error (DLNError, a bad flag, an unusable file) raised inside dln is a bug:
    exit 1 and one line asking to report it; --debug re-raises it with its traceback."""
    import importlib

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(importlib.import_module("dln.simulate"), "simulate", broken)  # the module, not dln.simulate()
    code, out, err = call(["simulate", *TINY])
    assert code == 1 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"dln: internal error: {type(exc).__name__}: {exc} — please report it at ")
    assert err.endswith(" (rerun with --debug for the traceback)\n")
    with pytest.raises(type(exc)):
        call(["simulate", *TINY, "--debug"])


def test_a_user_error_stays_a_user_error_when_raised_deep_inside(monkeypatch):
    """DLNError is a ValueError: it must still be reported as the user's (exit 2), not as a bug."""
    import importlib

    def refuses(*args, **kwargs):
        raise DLNError("The 'alpha' parameter of gf must be > 0. Got -1.0 instead.")

    monkeypatch.setattr(importlib.import_module("dln.simulate"), "simulate", refuses)
    code, out, err = call(["simulate", *TINY])
    assert code == 2 and err == "dln: error: The 'alpha' parameter of gf must be > 0. Got -1.0 instead.\n"
