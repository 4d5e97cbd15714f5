"""User-facing errors and the checks that raise them.

Every user mistake is reported once, at the boundary (CLI and public functions), in the format
of docs/design.md §6: "The 'alpha' parameter of fgr must be > 0. Got -1.0 instead."  Inner functions
trust their inputs.
"""
from __future__ import annotations

import math

import numpy as np


class DLNError(ValueError):
    """A user error: bad parameter, bad data, bad combination. The CLI prints it on one line."""


def _fmt(value) -> str:
    if isinstance(value, np.ndarray):
        bad = value.ravel()
        return repr(bad[0].item()) if bad.size == 1 else np.array2string(bad, threshold=6)
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    return repr(value)


def fail(name: str, where: str, rule: str, value) -> DLNError:
    """Build the canonical error "The 'name' parameter of where must be rule. Got value instead."."""
    of = f" of {where}" if where else ""
    return DLNError(f"The {name!r} parameter{of} must be {rule}. Got {_fmt(value)} instead.")


def check_real(name: str, value, where: str = "", *, gt=None, ge=None, lt=None, le=None, allow_array=True):
    """Return ``value`` as float64 (scalar or array) after checking it is finite and in range
    (``gt < value``, ``ge <= value``, ``value < lt``, ``value <= le``).  A bool is not a number.

    Raises
    ------
    DLNError
        If the value is not a finite real number (or array of them) satisfying the bound.
    """
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything unconvertible is a user error
        raise fail(name, where, "a real number", value) from None
    if arr.dtype.kind not in "iuf" or (arr.ndim > 0 and not allow_array):
        raise fail(name, where, "a real number", value)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise fail(name, where, "finite", value)
    if gt is not None and not np.all(arr > gt):
        raise fail(name, where, f"> {gt}", arr[~(arr > gt)] if arr.ndim else arr)
    if ge is not None and not np.all(arr >= ge):
        raise fail(name, where, f">= {ge}", arr[~(arr >= ge)] if arr.ndim else arr)
    if lt is not None and not np.all(arr < lt):
        raise fail(name, where, f"< {lt}", arr[~(arr < lt)] if arr.ndim else arr)
    if le is not None and not np.all(arr <= le):
        raise fail(name, where, f"<= {le}", arr[~(arr <= le)] if arr.ndim else arr)
    return arr if arr.ndim else float(arr)


def check_int(name: str, value, where: str = "", *, ge=None, le=None) -> int:
    """Return ``value`` as int after checking it is an integer in [ge, le]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise fail(name, where, "an integer", value)
    value = int(value)
    if ge is not None and value < ge:
        raise fail(name, where, f">= {ge}", value)
    if le is not None and value > le:
        raise fail(name, where, f"<= {le}", value)
    return value


def check_choice(name: str, value, choices, where: str = ""):
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise fail(name, where, "one of " + ", ".join(map(str, choices)), value)
    return value
