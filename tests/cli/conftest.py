"""Fixtures of the CLI tests (this folder is on sys.path: ``from cli_helpers import ...``)."""
from __future__ import annotations

import pytest


@pytest.fixture
def fast_progress(monkeypatch):
    """Progress status lines at once and on every update (no waiting in tests)."""
    import dln.progress

    monkeypatch.setattr(dln.progress, "INTERVAL", 0.0)
    monkeypatch.setattr(dln.progress, "DELAY", 0.0)
    return dln.progress
