"""Fixtures of the sweep tests: one small reference sweep, shared by the modules."""
from __future__ import annotations

import pytest

from sweep_helpers import SMALL


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """The SMALL sweep, unsharded, --workers 1, uninterrupted."""
    from dln.cli import main

    out = tmp_path_factory.mktemp("reference") / "out"
    assert main(["sweep", *SMALL, "--out", str(out), "--workers", "1", "--quiet"]) == 0
    return out
