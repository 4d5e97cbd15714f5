"""dln: a diagonal linear network theory simulator (see README.md, docs/theory.md, docs/design.md).

Python API (docs/design.md §5 names):

- ``dln.simulate(problem, method, ...)``: one batch of runs → list of records;
- ``dln.sweep(...)`` / ``dln.merge(...)``: grids of runs, as ``dln sweep`` / ``dln merge``;
- ``dln.DiagonalLinearNetwork``: a scikit-learn-compatible estimator;
- ``dln.make_problem``, ``dln.load_problem``, ``dln.methods``, ``dln.integrate``;
- ``dln.load_trajectory(path)``: a file of ``simulate --save-trajectory`` / ``sweep
  --save-trajectories`` (format ``dln-trajectory/1``, see ``dln.trajectory``).

``dln.simulate`` and ``dln.sweep`` are the functions; their modules are imported with
``from dln.simulate import run_batch`` or ``from dln.sweep import build_plan``.
"""
from . import methods
from .errors import DLNError
from .model import State, initial_state
from .problem import Problem, load_problem, make_problem, save_problem
from .simulate import simulate
from .sweep import merge, sweep

__version__ = "0.1.0"

#: Names imported on first use (PEP 562): a sweep or a simulation does not need their modules.
_LAZY = {"DiagonalLinearNetwork": "estimator", "load_trajectory": "trajectory"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["DLNError", "DiagonalLinearNetwork", "Problem", "State", "initial_state", "load_problem",
           "load_trajectory", "make_problem", "merge", "methods", "save_problem", "simulate", "sweep"]
