"""The parameters of a run, one entry each (docs/design.md §5): the single source of their rules.

Every parameter a run is defined by -- the data (``n d k noise design seed`` or ``data``), the
method and its hyper-parameters, the time mode and its step parameters, the solver settings -- is
one :class:`Param` in :data:`TABLE`: its type, bounds, default, the time modes that use it, its
help text, whether it is a sweep axis and a column of ``results.csv``.  Derived from the table:

- the flags of ``dln simulate`` and ``dln sweep`` (:func:`dln.cli.add_parameter_arguments`);
- the value lists of a sweep grid and their checks (``dln.grid``), the key columns of
  ``results.csv`` and the run id (:data:`KEY_COLUMNS`, :func:`id_values`);
- the validation of ``dln.simulate.run_batch`` (:func:`check`, :func:`check_times`);
- the parameters of ``dln.DiagonalLinearNetwork``.

Which *methods* use a hyper-parameter is not here: it is ``dln.methods.PARAMS`` (method → names).
Adding a hyper-parameter is one entry here plus its use in the method or
update rule (docs/design.md "Adding a parameter / adding a method").

Run ids stay stable when a parameter is added: a parameter with ``since`` > 1 enters a run's id only
when its value differs from its default (:func:`id_values`), so the runs of a grid written before it
existed keep their ids, and ``--resume`` of such a folder finds them done.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import check_choice, check_int, check_real, fail

#: The time modes: continuous-time flow (``dln.integrate.flow``) and discrete steps (``dln.discrete.iterate``).
TIMES = ("flow", "discrete")


@dataclass(frozen=True)
class Param:
    """One parameter of a run.

    Attributes
    ----------
    name : str
        The Python keyword, the results.csv column and (with '-' for '_') the flag.
    kind : type
        ``float``, ``int`` or ``str``.
    default :
        Its value when not given; None: no default (it must be given where it is used).
    gt, ge, lt, le : float, optional
        Bounds (``check_real`` / ``check_int`` rules).
    choices : str, optional
        Where the allowed values of a ``str`` parameter are defined ("module:NAME", read on use:
        :func:`choices`).
    times : tuple
        The time modes that use it; elsewhere it is left unset (recorded as None).
    group : str
        "data", "method", "time" or "solver": the flag group in ``--help``.
    axis : bool
        A sweep axis (several values in ``dln sweep``) and a key column of results.csv.
    geom : bool
        ``--NAME-geom START STOP NUM`` in a sweep.
    since : int
        The results.csv format version that introduced it (1: the first); see :func:`id_values`.
    help : str
        The flag's help text.
    """

    name: str
    kind: type
    default: object = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: str | None = None
    times: tuple = TIMES
    group: str = "method"
    axis: bool = True
    geom: bool = False
    since: int = 1
    help: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def rule(self) -> str:
        """The bounds in words, for help texts ("> 0", ">= 0, < 1")."""
        return ", ".join(f"{op} {b:g}" for op, b in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                         if b is not None)


_D = "discrete",
#: Every parameter, in the order of the results.csv key columns (then the settings).
TABLE = (
    Param("method", str, "gf", choices="methods:METHODS",
          help="training method"),
    Param("variant", str, "full", choices="methods:VARIANTS",
          help="GR/SAM penalty on the full-batch gradient or per example"),
    Param("time", str, "flow", choices="params:TIMES", group="time", help="continuous flow or discrete steps"),
    Param("alpha", float, 0.1, gt=0.0, geom=True, help="initialization scale u0 = v0 = A"),
    Param("gamma", float, ge=0.0, geom=True, help="GR strength (penalty (gamma/2)|grad L|^2)"),
    Param("eps", float, gt=0.0, geom=True, help="finite-difference step (fgr ascends by +eps, bgr descends by eps)"),
    Param("rho", float, gt=0.0, geom=True, help="SAM radius (usam: rho*grad L, sam: rho*grad L/|grad L|)"),
    Param("flood_level", float, ge=0.0, geom=True, help="flooding level b"),
    Param("lr", float, gt=0.0, times=_D, group="time", geom=True, help="learning rate (discrete time)"),
    Param("batch_size", int, ge=1, times=_D, group="time", help="mini-batch size for SGD (discrete time)"),
    Param("label_noise", float, ge=0.0, times=_D, group="time", geom=True,
          help="label-noise std for label-noise SGD (discrete time)"),
    Param("momentum", float, 0.0, ge=0.0, lt=1.0, times=_D, group="time", since=2,
          help="heavy-ball momentum on (u, v), as torch.optim.SGD(momentum=M) (discrete time)"),
    Param("data", str, group="data", help=".npz with arrays X, y (optional X_test, y_test, beta_star) or .csv"),
    Param("n", int, 40, ge=1, group="data", help="samples"),
    Param("d", int, 100, ge=1, group="data", help="dimension"),
    Param("k", int, 5, ge=1, group="data", help="support size of beta*"),
    Param("noise", float, 0.0, ge=0.0, group="data", help="label noise std of the synthetic data"),
    Param("design", str, "gaussian", choices="problem:DESIGNS", group="data", help="design of X"),
    Param("seed", int, 0, ge=0, group="data", help="data seed"),
    # solver settings: one value per sweep, not columns
    Param("depth", int, 2, ge=2, group="solver", axis=False, help="depth D: beta = u^D - v^D"),
    Param("rtol", float, gt=0.0, group="solver", axis=False, times=("flow",), help="flow tolerance"),
    Param("max_steps", int, ge=1, group="solver", axis=False,
          help="per-run cap on steps (flow: accepted steps; discrete: steps)"),
)
P = {p.name: p for p in TABLE}

#: Columns that identify a run, named like the flags (docs/design.md §5).
KEY_COLUMNS = tuple(p.name for p in TABLE if p.axis)
#: Hyper-parameters of the methods (``dln.methods.PARAMS`` says which method uses which): the
#: real-valued method parameters but the initialization scale.
HYPER = tuple(p.name for p in TABLE if p.group == "method" and p.kind is float and p.name != "alpha")
#: Parameters of discrete time only.
DISCRETE_ONLY = tuple(p.name for p in TABLE if p.axis and p.times == _D)
#: The parameters of a synthetic data cell (``dln.problem.make_problem``; the seed apart).
DATA_AXES = tuple(p.name for p in TABLE if p.group == "data" and p.name not in ("data", "seed"))
#: Sweep axes with a ``--NAME-geom START STOP NUM`` range.
GEOM_KEYS = tuple(p.name for p in TABLE if p.geom)
#: Bounds of the methods' hyper-parameters as (rule, bound), as ``dln.methods`` checks them.
METHOD_RULES = {p.name: (("gt", p.gt) if p.gt is not None else ("ge", p.ge)) for p in TABLE if p.name in HYPER}


def default(name: str):
    """The default of a parameter (None: none)."""
    return P[name].default


def choices(name: str) -> tuple | None:
    """The allowed values of a ``str`` parameter (``dln.methods.METHODS``, ``VARIANTS``, :data:`TIMES`,
    ``dln.problem.DESIGNS``), or None."""
    where = P[name].choices
    if where is None:
        return None
    import importlib

    module, attr = where.split(":")
    return getattr(importlib.import_module(f"dln.{module}"), attr)


def check(name: str, value, where: str = "", *, array: bool = True):
    """``value`` checked against the rules of parameter ``name`` (a float array / float, an int, a choice).

    Raises
    ------
    DLNError
        "The 'name' parameter of where must be <rule>. Got <value> instead." (docs/design.md §6).
    """
    p = P[name]
    if p.choices is not None:
        return check_choice(name, value, choices(name), where)
    if p.kind is int:
        return check_int(name, value, where, ge=p.ge, le=p.le)
    return check_real(name, value, where, gt=p.gt, ge=p.ge, lt=p.lt, le=p.le, allow_array=array)


def check_times(time: str, values: dict, where: str):
    """Every parameter in ``values`` that does not apply to ``time`` is unset (None, or its default).

    Raises
    ------
    DLNError
        Naming the first parameter given for a time mode that does not use it.
    """
    for name, value in values.items():
        p = P[name]
        if time in p.times or value is None:
            continue
        if p.default is not None and np.all(np.asarray(value) == p.default):
            continue  # e.g. momentum 0 in flow: the flow is its limit
        rule = "left unset" if p.default is None else f"{p.default!r} (or left unset)"
        raise fail(name, where, f"{rule} with time={time!r} (it applies to {' and '.join(p.times)} time)", value)


def id_values(run: dict) -> list:
    """The values of a run that its id hashes (``dln.grid.run_id``): every key column of format 1,
    and a later column only when it is not at its default (so that adding a parameter keeps the ids
    of the runs of every existing grid)."""
    out = []
    for p in TABLE:
        if not p.axis or p.name == "data":
            continue
        v = run.get(p.name)
        if p.since > 1:
            if v is None or v == p.default:
                continue
            out.append([p.name, v])
        else:
            out.append(v)
    return out


def legacy_value(name: str, time) -> object:
    """The value of a column added after format 1 for a row written before it existed: its default
    where the row's time mode uses it, else None."""
    p = P[name]
    return p.default if time in p.times else None
