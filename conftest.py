"""Fixtures shared by every test folder.

At the repository root, not in tests/: pytest puts a conftest's folder on sys.path, and tests/
holds folders named like the packages (tests/analysis, tests/figures, tests/benchmarks) that
would then shadow them as namespace packages."""
from __future__ import annotations

import os
import time

import pytest


def _no_process_left(marker: str, timeout: float = 10.0) -> bool:
    """True once no process has ``marker`` (a killed sweep's folder) in its command line, False if
    one still does after ``timeout`` seconds: the killed sweep's workers and fork server carry the
    folder in their command line and must exit with it (Linux /proc; elsewhere: not checked)."""
    if not os.path.isdir("/proc/self"):
        return True
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if marker.encode() in fh.read():
                        left.append(pid)
            except OSError:
                continue
        if not left or time.monotonic() > deadline:
            return not left
        time.sleep(0.05)


@pytest.fixture
def no_process_left():
    """``no_process_left(marker, timeout=10.0) -> bool``: no orphan of a killed sweep is left."""
    return _no_process_left
