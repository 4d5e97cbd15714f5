"""Make the repository's ``figures`` package importable when the editable install predates it."""
import importlib.util
import os
import sys

if importlib.util.find_spec("figures") is None:  # pragma: no cover - depends on the install
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)))
