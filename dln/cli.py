"""Command-line interface (docs/design.md §5 contract): ``dln SUBCOMMAND ...``.

Subcommands: simulate, predict, sweep, merge, check, derive, figures, plot; every parser is built
here (the sweep axes and the simulate flags from the parameter table, ``dln.params``).  User errors
(``DLNError``, a bad flag, a file that cannot be used) print one line ``dln: error: …`` on stderr and
exit with code 2; anything else raised inside dln is a bug: one line ``dln: internal error: …``
asking to report it, exit code 1.  ``--debug`` re-raises instead (the traceback).
``--debug`` and ``--version`` / ``-V`` are accepted anywhere on the command line.

Start-up stays light: the subcommands implemented in their own modules (sweep, merge, check,
figures) are listed by ``dln --help`` without importing them; only the module of the subcommand
being run is imported.  Text output never prints a raw ``None`` or an unformatted float:
:func:`fmt` writes ``n/a`` and fixed formats.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from . import __version__
from .errors import DLNError, fail
from .integrate import DEFAULT_RTOL
from .params import DATA_AXES, GEOM_KEYS, TABLE, check as check_param, choices, default
from .problem import load_problem, make_problem
from .simulate import MAX_STEPS

#: Subcommands implemented in their own modules: name → (module, one-line help).  They are
#: registered without importing their module unless they are the subcommand being run.
OPTIONAL = {
    "sweep": ("dln.sweep", "a grid of runs -> results.csv + config.json in --out DIR"),
    "merge": ("dln.sweep", "join shard folders into one results.csv"),
    "check": ("dln.check", "verify the theory: simulations vs closed forms, symbolic vs numeric"),
    "figures": ("figures.run", "regenerate the theory figures (PNG, PDF, CSV)"),
}
#: Flags every subcommand accepts, before or after its name.
GLOBAL_FLAGS = ("--debug", "--version", "-V")


class UsageError(Exception):
    """An argparse-level error, reported like every other user error."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dln: error: …`` and exit code 2 (docs/design.md §5).

    Every negative number (``-1e-3``, ``-.5``, ``-inf``) is a value, not an option: argparse's own
    pattern (``-1``, ``-0.5``) would read ``--alpha -1e-3`` as a missing value instead of reaching
    the check that names the bad α."""

    _NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = self._NEGATIVE_NUMBER

    def error(self, message):
        raise UsageError(message)


class SubcommandParser(Parser):
    """A subcommand's parser: also takes ``--debug`` and ``--version`` / ``-V``, so that they work
    after the subcommand as well as before it (``dln simulate --debug ...``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        add_global_flags(self, subcommand=True)


def add_global_flags(p: argparse.ArgumentParser, *, subcommand: bool = False):
    """``--debug`` and ``--version`` / ``-V`` (on a subcommand the default is not set, so that
    ``dln --debug simulate`` keeps the value given before the subcommand)."""
    p.add_argument("-V", "--version", action="version", version=f"dln {__version__}",
                   help="print the version and exit")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if subcommand else False,
                   help="re-raise errors with a traceback")


def fmt(value, spec: str = ".3e") -> str:
    """A number for text output: ``n/a`` for None (or a missing value), ints as they are, floats
    with ``spec`` (``fmt(2.979413151938927e-16)`` → ``'2.979e-16'``)."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format(float(value), spec)


def _int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer. Got {text!r} instead") from None
    return value


def _float(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a real number. Got {text!r} instead") from None


_TYPES = {float: _float, int: _int, str: str}


def _parameter_help(p, multi: bool) -> str:
    """A flag's help from its table entry: the text, the rule and the default."""
    text = p.help if p.choices is not None or not p.rule else f"{p.help}; {p.rule}"
    if p.name == "max_steps":
        return f"{text} (default {MAX_STEPS['flow']} flow, {MAX_STEPS['discrete']} discrete)"
    if p.name == "rtol":
        return f"{text} (default {DEFAULT_RTOL:g})"
    return text if p.default is None else f"{text} (default {p.default})"


def add_parameter_arguments(p: argparse.ArgumentParser, groups, *, multi: bool = False):
    """The flags of the parameters of ``groups`` ("data", "method", "time", "solver"), one per entry of
    the parameter table (``dln.params.TABLE``, docs/design.md §5).  With ``multi`` (``dln sweep``)
    every axis takes several values and ``--seed`` is left to the caller.  A flag not given is None
    (its default applies downstream), except the solver settings and the data seed of a single run."""
    made = {}
    for param in TABLE:
        if param.group not in groups or (multi and param.name == "seed"):
            continue
        if param.group not in made:
            made[param.group] = p.add_argument_group(param.group)
        kw = dict(help=_parameter_help(param, multi), default=None)
        if param.name == "data":
            kw["metavar"] = "FILE"
        else:
            kw.update(type=_TYPES[param.kind], choices=choices(param.name))
            if param.axis and multi:
                kw["nargs"] = "+"
        if not multi and (param.group == "solver" or param.name == "seed"):
            kw["default"] = DEFAULT_RTOL if param.name == "rtol" else param.default
        made[param.group].add_argument(param.flag, dest="D" if param.name == "depth" else param.name, **kw)


def add_data_arguments(p: argparse.ArgumentParser, *, multi: bool = False):
    """Data flags (docs/design.md §5): --data FILE, or synthetic --n --d --k --noise --design --seed."""
    add_parameter_arguments(p, ("data",), multi=multi)


def add_method_arguments(p: argparse.ArgumentParser, *, multi: bool = False):
    """Method, hyper-parameter, time and solver flags (docs/design.md §5); ``multi`` = several values each."""
    add_parameter_arguments(p, ("method", "time", "solver"), multi=multi)


def problem_from_args(args):
    """The Problem named by the data flags (unset synthetic flags at their defaults, ``dln.params``)."""
    if args.data is not None:
        for flag in DATA_AXES:
            if getattr(args, flag) is not None:
                raise DLNError(f"The '--{flag}' flag must be left unset with --data (it describes synthetic data). "
                               f"Got {getattr(args, flag)!r} instead.")
        return load_problem(args.data)
    return make_problem(**{a: default(a) if getattr(args, a) is None else getattr(args, a) for a in DATA_AXES},
                        seed=args.seed)


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x))


def cmd_simulate(args) -> int:
    from .progress import step_callback
    from .simulate import simulate

    problem = problem_from_args(args)
    kw = {p.name: default(p.name) if getattr(args, p.name) is None else getattr(args, p.name)
          for p in TABLE if p.group in ("method", "time")}
    kw.update(D=args.D, rtol=args.rtol, max_steps=args.max_steps, seed=args.seed)
    progress = step_callback("dln simulate", quiet=args.quiet)
    try:
        if args.save_trajectory is None:
            rec = simulate(problem, progress=progress, **kw)[0]
        else:
            rec = _simulate_saving_trajectory(problem, kw, args, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    out = simulate_json(rec)
    if args.json:
        json.dump(out, sys.stdout, default=_jsonable)
        sys.stdout.write("\n")
        return 0
    lines = simulate_text(out)
    if args.save_trajectory is not None:
        lines.append(f"  trajectory        {rec['_trajectory_points']} points -> {args.save_trajectory}")
    print("\n".join(lines))
    return 0


def _infeasible(args, problem, residual=None) -> DLNError:
    """y outside range(X): no β interpolates, and the interpolators' argmin does not exist (a user error)."""
    from analysis.predict import interpolation_residual

    from .errors import fail

    if residual is None:
        residual = interpolation_residual(problem.X, problem.y)
    r = f"least-squares residual {residual:.3g} |y|"
    if getattr(args, "from_run", None) is not None:
        return fail("--from-run", "predict", "a run whose data has labels y in the range of X (every prediction is "
                    "an interpolator X beta = y, and none exists)", f"{args.from_run}, {r}")
    if args.data is not None:
        return fail("data", "predict", "a file whose labels y lie in the range of X (every prediction is an "
                    "interpolator X beta = y, and none exists)", f"{args.data}, {r}")
    return fail("noise", "predict", "0 here (with n > d, noisy labels leave the range of X: every prediction is an "
                "interpolator X beta = y, and none exists)", f"{args.noise}, n = {problem.n}, d = {problem.d}, {r}")


def simulate_json(rec: dict) -> dict:
    """The ``simulate --json`` object of a record of :func:`dln.simulate.simulate`: the record's keys
    (those of results.csv, docs/design.md §5), then ``beta``, ``alpha_eff`` (sqrt(u⊙v)), ``log_c``
    (ln(u⊙v), exact where α_eff under- or overflows) and ``tilt`` (z0 − 2Φ: the linear term of the
    exact characterisation argmin_{Xβ=y} φ_c(β) − ⟨tilt, β⟩, docs/theory.md §4, §5.1), which
    ``dln predict --from-run`` reads back, and ``prediction``."""
    pred = rec["_prediction"]
    out = {k: v for k, v in rec.items() if not k.startswith("_")}
    out["beta"] = rec["_beta"]
    out["alpha_eff"] = rec["_alpha_eff"]
    out["log_c"] = rec["_log_c"]
    out["tilt"] = rec["_tilt"]
    out["prediction"] = None if pred is None else dict(
        beta=pred.beta, rel_error=rec["prediction_rel_error"], kkt_residual=pred.kkt_residual,
        theory_rel_error=rec["prediction_theory_rel_error"], status=pred.status)
    return out


def simulate_text(out: dict) -> list[str]:
    """The human-readable summary of a ``simulate --json`` object (every number formatted; n/a
    where a value does not apply)."""
    shown = [p.name for p in TABLE if p.axis and p.group in ("method", "time") and p.kind is not str and p.name != "alpha"]
    hp = ", ".join(f"{k}={fmt(out[k], 'g')}" for k in shown
                   if out.get(k) is not None and not (k == "momentum" and out[k] == default(k)))
    head = f"{out['method']} ({out['variant']}), {out['time']} time: alpha={fmt(out['alpha'], 'g')}"
    lines = [head + (f", {hp}" if hp else "")]
    data = out["data"] if out.get("data") is not None else (
        f"synthetic {out['design']} n={out['n']} d={out['d']} k={out['k']} noise={fmt(out['noise'], 'g')} seed={out['seed']}")
    lines.append(f"  data              {data}")
    lines.append(f"  status            {out['status']}  (t={fmt(out['t'], '.4g')}, steps={fmt(out['steps'])}, "
                 f"evaluations={fmt(out['n_evals'])})")
    lines.append(f"  train loss        {fmt(out['train_loss'])}")
    lines.append(f"  test error        {fmt(out['test_error'])}")
    lines.append(f"  l1 norm           {fmt(out['l1_norm'], '.6g')}")
    lines.append(f"  gain -ln(a_eff/a) mean {fmt(out['gain_mean'])}, max {fmt(out['gain_max'])}")
    pred = out["prediction"]
    if pred is None:
        why = (f"the run ended {out['status']}" if out["status"] != "converged" else
               "no closed form for the limit of heavy-ball momentum in this project yet" if out.get("momentum") else
               "no closed form for this limit: depth D >= 3, or a limit that does not interpolate the data")
        lines.append(f"  prediction        n/a ({why})")
    else:
        what = "argmin phi_(u*v)" if out["time"] == "flow" else "argmin phi_(u*v) - <z0 - 2 Phi, beta> (with the tilt)"
        lines.append(f"  prediction        rel. error {fmt(pred['rel_error'])} vs {what}; KKT residual "
                     f"{fmt(pred['kkt_residual'])}")
        if pred.get("theory_rel_error") is not None:
            lines.append(f"  gain integral     rel. error {fmt(pred['theory_rel_error'])} vs argmin phi_c with c from "
                         "the integrated gain")
    return lines


def _read_run(path: str) -> dict:
    """The JSON object written by ``dln simulate --json`` (a file, or ``-`` for stdin)."""
    rule = "a JSON file written by dln simulate --json"
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail("--from-run", "predict", rule, f"{path} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        rec = json.loads(text)
    except ValueError:
        raise fail("--from-run", "predict", rule, f"{path} (not JSON)") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("log_c", rec.get("alpha_eff")), list):
        raise fail("--from-run", "predict", rule + " (an object with log_c or alpha_eff)", path)
    return rec


def _run_problem(rec: dict, path: str):
    """The problem a run record names: its data file (as given to simulate, or beside the record),
    or its synthetic data n, d, k, noise, design, seed."""
    data = rec.get("data")
    if data is not None:
        if not os.path.exists(data) and not os.path.isabs(data) and path != "-":
            beside = os.path.join(os.path.dirname(os.path.abspath(path)), data)
            data = beside if os.path.exists(beside) else data
        return load_problem(data)
    keys = ("n", "d", "k", "noise", "design", "seed")
    missing = [k for k in keys if rec.get(k) is None]
    if missing:
        raise fail("--from-run", "predict", "a run record naming its data (data, or n, d, k, noise, design, seed)",
                   f"{path} without {', '.join(missing)}")
    return make_problem(**{k: rec[k] for k in keys})


def _run_vector(rec: dict, key: str, d: int, path: str) -> np.ndarray:
    try:
        v = np.asarray(rec[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("--from-run", "predict", f"a run record whose {key!r} is a list of numbers", path) from None
    if v.shape != (d,) or not np.all(np.isfinite(v)):
        raise fail("--from-run", "predict", f"a run record whose {key!r} holds d = {d} finite numbers",
                   f"{path} ({key} of shape {v.shape}{'' if np.all(np.isfinite(v)) else ', not finite'})")
    return v


def prediction_from_run(path: str):
    """(problem, log_c, tilt, record) of a ``simulate --json`` record: the exact prediction of the
    run is argmin_{Xβ=y} φ_c(β) − ⟨tilt, β⟩ with c = exp(log_c) (docs/theory.md §4, §5.1).  A record
    without ``log_c`` uses 2·ln(alpha_eff); without ``tilt``, only a flow run (tilt 0) is accepted."""
    rec = _read_run(path)
    if rec.get("momentum") not in (None, 0, 0.0):
        raise fail("--from-run", "predict", "a run without heavy-ball momentum (its limit has no closed form in this "
                   "project yet, docs/theory.md §5.5)", f"{path} (momentum {rec['momentum']!r})")
    problem = _run_problem(rec, path)
    if "log_c" in rec:
        log_c = _run_vector(rec, "log_c", problem.d, path)
    else:
        alpha_eff = _run_vector(rec, "alpha_eff", problem.d, path)
        if np.any(alpha_eff <= 0):
            raise fail("--from-run", "predict", "a run record whose 'alpha_eff' is > 0", path)
        log_c = 2.0 * np.log(alpha_eff)
    if "tilt" in rec:
        tilt = _run_vector(rec, "tilt", problem.d, path)
    elif rec.get("time", "flow") == "flow":
        tilt = np.zeros(problem.d)
    else:
        raise fail("--from-run", "predict", "a discrete-time run record with its 'tilt' (z0 - 2 Phi)", path)
    return problem, log_c, tilt, rec


def cmd_predict(args) -> int:
    """Exit 0 with the prediction; labels outside range(X) (no interpolator exists) are a user error
    (exit 2): the prediction does not exist, for any potential."""
    from analysis.predict import INFEASIBLE, interpolation_residual, min_l1, min_l2, mirror_argmin

    run = None
    if args.from_run is not None:
        given = [(k, getattr(args, k)) for k in ("data", "n", "d", "k", "noise", "design", "seed", "alpha")
                 if getattr(args, k) is not None] + ([("potential", args.potential)] if args.potential != "q" else [])
        if given:
            name, value = given[0]
            raise DLNError(f"The '--{name}' flag must be left unset with --from-run (the run record gives the data "
                           f"and the effective initialization). Got {value!r} instead.")
        problem, log_c, tilt, run = prediction_from_run(args.from_run)
    else:
        args.seed = 0 if args.seed is None else args.seed
        problem = problem_from_args(args)
    if args.potential == "q":
        if run is None:
            alpha = check_param("alpha", default("alpha") if args.alpha is None else args.alpha, "predict")
            log_c, tilt = 2.0 * np.log(alpha) * np.ones(problem.d), np.zeros(problem.d)
        res = mirror_argmin(problem.X, problem.y, log_c=log_c, z0=tilt if np.any(tilt) else None)
        if res.status == "infeasible":
            raise _infeasible(args, problem)
        beta, kkt, status = res.beta, res.kkt_residual, res.status
        primal = res.primal_residual
    else:
        if args.alpha is not None:
            raise DLNError(f"The '--alpha' flag must be left unset with --potential {args.potential}. Got {args.alpha!r} instead.")
        residual = interpolation_residual(problem.X, problem.y)
        if residual > INFEASIBLE:
            raise _infeasible(args, problem, residual)
        beta = min_l1(problem.X, problem.y) if args.potential == "l1" else min_l2(problem.X, problem.y)
        primal = float(np.linalg.norm(problem.X @ beta - problem.y) / max(np.linalg.norm(problem.y), 1e-300))
        kkt, status = None, "converged"
    out = dict(beta=beta, kkt_residual=kkt, primal_residual=primal, status=status, potential=args.potential,
               alpha=args.alpha, l1_norm=float(np.abs(beta).sum()), test_error=problem.test_error(beta))
    if run is not None:
        out["from_run"] = args.from_run
        run_beta = run.get("beta")
        out["run_rel_error"] = None
        if isinstance(run_beta, list) and len(run_beta) == problem.d:
            diff = np.linalg.norm(np.asarray(run_beta, dtype=np.float64) - beta)
            out["run_rel_error"] = float(diff / max(np.linalg.norm(beta), 1e-300))
    if args.json:
        json.dump(out, sys.stdout, default=_jsonable)
        sys.stdout.write("\n")
        return 0
    if run is not None:
        what = f"q, alpha_eff and tilt of the run in {args.from_run} ({run.get('method', '?')}, {run.get('time', 'flow')} time)"
    elif args.potential == "q":
        what = f"q (alpha={fmt(default('alpha') if args.alpha is None else args.alpha, 'g')})"
    else:
        what = args.potential
    print(f"potential {what}: status {status}, primal residual {fmt(primal)}, KKT residual {fmt(kkt)}")
    print(f"  l1 norm {fmt(out['l1_norm'], '.6g')}, test error {fmt(out['test_error'])}")
    if run is not None:
        print(f"  rel. distance to the run's beta {fmt(out['run_rel_error'])}")
    return 0


def cmd_derive(args) -> int:
    from analysis.symbolic import DERIVATIONS, render

    names = list(DERIVATIONS.keys())
    if args.only is not None and args.only not in names:
        raise DLNError(f"The '--only' flag must be one of {', '.join(names)}. Got {args.only!r} instead.")
    failed = 0
    for name in names:
        if args.only is not None and name != args.only:
            continue
        der = DERIVATIONS[name]
        print(render(der, latex=args.latex))
        ok = bool(der.check())
        failed += not ok
        # in LaTeX mode every non-formula line is a comment, so the whole output can be pasted
        print(f"{'% ' if args.latex else ''}check: {'PASS' if ok else 'FAIL'}\n")
    return 1 if failed else 0


def build_parser(argv=None) -> Parser:
    """The ``dln`` parser.  With ``argv``, only the module of the subcommand in it is imported (the
    other optional subcommands are listed with their help but not built); without, all of them."""
    p = Parser(prog="dln", description="Diagonal linear network theory simulator (docs/theory.md, docs/design.md).")
    add_global_flags(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=SubcommandParser)
    sub.required = True

    s = sub.add_parser("simulate", help="one run: summary, or --json")
    add_data_arguments(s)
    add_method_arguments(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--quiet", action="store_true", help="no progress status (shown on stderr after 2 s)")
    _add_save_trajectory_flag(s)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("predict", help="closed-form prediction for data and alpha, or for a run's alpha_eff",
                       description="The closed-form limit argmin_{X beta = y} phi_c(beta) - <tilt, beta> "
                                   "(docs/theory.md §4, §15) with c = alpha^2 (--alpha), or with the per-coordinate "
                                   "c = u*v and the tilt z0 - 2 Phi of a run (--from-run): "
                                   "'dln simulate --method gr --gamma 0.05 --json > run.json; "
                                   "dln predict --from-run run.json' checks a GR limit.")
    add_data_arguments(s)
    s.set_defaults(seed=None)  # None = not given (0 for synthetic data; an error with --from-run)
    s.add_argument("--alpha", type=_float, default=None,
                   help=f"initialization scale (potential q; default {default('alpha')})")
    s.add_argument("--from-run", dest="from_run", metavar="RUN.json", default=None,
                   help="use the data, alpha_eff (log_c) and tilt of a run saved by 'dln simulate --json' "
                        "('-' reads stdin); reports the relative distance to the run's beta")
    s.add_argument("--potential", choices=("q", "l1", "l2"), default="q",
                   help="q: argmin Q_alpha (default); l1: min-l1 interpolator; l2: min-l2 interpolator")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("derive", help="print the SymPy derivations with their checks")
    s.add_argument("--latex", action="store_true", help="LaTeX instead of pretty text")
    s.add_argument("--only", default=None, help="one derivation by name")
    s.set_defaults(func=cmd_derive)

    # built here; each command's module (dln.sweep, dln.check, dln.plot) is imported only when it runs
    _add_sweep_parser(sub)
    _add_merge_parser(sub)
    _add_check_parser(sub)
    command = None if argv is None else _command_name(argv)
    _register_optional(sub, "figures", build=argv is None or command == "figures")
    _add_plot_parser(sub)
    return p


def _run(module: str, name: str):
    """A subcommand's ``func``: ``module.name(args)``, the module imported when the command runs."""
    def func(args):
        import importlib

        return getattr(importlib.import_module(module), name)(args)
    func.__name__ = name
    return func


RECIPE = """\
SLURM job array (one shard per array task; --resume lets a requeued task continue):
  sbatch --array=1-8 --cpus-per-task=4 --wrap 'dln sweep GRID-FLAGS --workers 4 --quiet --resume \\
      --shard "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --out runs/shard-$SLURM_ARRAY_TASK_ID'
  sbatch --dependency=afterok:JOBID --wrap 'dln merge runs/shard-* --out runs/all'
"""


def _add_sweep_parser(sub):
    """``dln sweep`` (docs/design.md §5): every axis of the parameter table takes several values."""
    p = sub.add_parser("sweep", help=OPTIONAL["sweep"][1],
                       description="Run the product of the given values (and --seeds K datasets per cell) in batches "
                                   "over --workers processes; results.csv gets one row per run as batches finish.",
                       epilog=RECIPE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(p, multi=True)
    add_method_arguments(p, multi=True)
    g = p.add_argument_group("grid")
    g.add_argument("--seeds", metavar="K", default=None, help="K datasets per cell: seeds 0..K-1 (default 1)")
    g.add_argument("--seed", metavar="S", nargs="+", default=None, help="explicit data seeds (instead of --seeds)")
    g.add_argument("--grid", metavar="FILE.json", default=None,
                   help="the grid as JSON: an object mapping flags to values (or a list of objects: union)")
    for name in GEOM_KEYS:
        g.add_argument(f"--{name.replace('_', '-')}-geom", dest=f"{name}_geom", nargs=3,
                       metavar=("START", "STOP", "NUM"),
                       default=None, help=f"NUM values of {name} from START to STOP, geometrically spaced")
    g.add_argument("--root-seed", dest="root_seed", metavar="INT", default=None,
                   help="entropy of the root SeedSequence (default 0)")
    from .grid import DISCRETE_CHUNK, FLOW_MEMORY

    g.add_argument("--chunk-size", dest="chunk_size", metavar="B", default=None,
                   help=f"at most B runs per batch (default: the continuous-time runs of one dataset in one "
                        f"batch, split only to stay within {FLOW_MEMORY // 2**20} MiB; discrete-time runs in "
                        f"batches of at most {DISCRETE_CHUNK})")
    r = p.add_argument_group("execution")
    r.add_argument("--out", metavar="DIR", required=True, help="output folder (results.csv, config.json)")
    r.add_argument("--workers", metavar="N", default=None, help="processes (default: the machine's cores)")
    r.add_argument("--shard", metavar="I/N", default=None, help="run the I-th of N deterministic parts of the grid")
    r.add_argument("--resume", action="store_true", help="complete the sweep in --out, skipping finished runs")
    r.add_argument("--save-trajectories", dest="save_trajectories", action="store_true",
                   help="write trajectories/chunk-XXXXX.npz per batch")
    r.add_argument("--quiet", action="store_true",
                   help="no progress (a bar on a terminal, else a status line on stderr every 10 s), no summary")
    p.set_defaults(func=_run("dln.sweep", "cmd_sweep"))
    return p


def _add_merge_parser(sub):
    """``dln merge DIR... --out DIR``."""
    p = sub.add_parser("merge", help=OPTIONAL["merge"][1],
                       description="Join the folders of `dln sweep --shard I/N` into the results.csv an unsharded "
                                   "sweep writes.", epilog=RECIPE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="shard folders")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--partial", action="store_true", help="write what there is even if runs are missing")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=_run("dln.sweep", "cmd_merge"))
    return p


def _add_check_parser(sub):
    """``dln check``: the theory verified on one problem."""
    p = sub.add_parser("check", help=OPTIONAL["check"][1],
                       description="Verify the theory: each row simulates on one problem (default n=20, d=50, "
                                   "k=3) and compares with a closed form; rows are printed as they finish, then "
                                   "the count of passing claims.  Exit code 0 only if every claim passes.")
    add_data_arguments(p)
    p.add_argument("--json", action="store_true", help="print the table as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress status on stderr")
    p.set_defaults(func=_run("dln.check", "cmd_check"))
    return p


def _command_name(argv):
    """The subcommand of a command line: its first token that is not a global flag."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token
    return None


# ---------------------------------------------------------------------------------------------
# trajectories (simulate --save-trajectory) and `dln plot`
# ---------------------------------------------------------------------------------------------
def _add_save_trajectory_flag(p):
    p.add_argument("--save-trajectory", dest="save_trajectory", metavar="FILE.npz", default=None,
                   help="record the path and save it in the dln-trajectory/1 format (read by dln.load_trajectory; "
                        "plot it with dln plot FILE.npz)")


def _simulate_saving_trajectory(problem, kw: dict, args, progress=None) -> dict:
    """``simulate`` with the path recorded by dln.trajectory's rule and saved to --save-trajectory;
    returns the run's record (the same keys as ``dln.simulate.simulate``)."""
    import time

    from .simulate import records, run_batch
    from .trajectory import record_runs, trajectory_arrays, write_trajectory

    target = args.save_trajectory
    folder = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(target) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise DLNError(f"The '--save-trajectory' flag must be a file path in an existing, writable folder. "
                       f"Got {target!r} instead.")
    cap = kw["max_steps"] if kw["max_steps"] is not None else MAX_STEPS[kw["time"]]
    t0 = time.perf_counter()
    result = record_runs(lambda rec: run_batch(problem, record=rec, progress=progress, **kw), time=kw["time"], max_steps=cap)
    rec = records(result, wall_time=time.perf_counter() - t0)[0]
    spec = dict(problem.meta, data=args.data, n=problem.n, d=problem.d,
                seed=None if args.data is not None else args.seed, time=kw["time"], depth=kw["D"])
    arrays = trajectory_arrays(result, runs=[{**rec, **spec}])
    write_trajectory(target, arrays)
    rec["_trajectory_points"] = int(arrays["t"].shape[0])
    return rec


def _add_plot_parser(sub):
    """Register ``dln plot PATH --out DIR`` (docs/design.md §5)."""
    p = sub.add_parser("plot", help="plot a sweep folder's results.csv or a trajectory file: PNG + PDF + CSV",
                       description="PATH is a sweep folder (or its results.csv): a metric against a swept parameter, "
                                   "mean over seeds with a band (or with --y a heatmap over two swept parameters); "
                                   "or a trajectory file (dln simulate --save-trajectory, dln sweep "
                                   "--save-trajectories): loss, beta and alpha_eff against time. Each plot is "
                                   "NAME.png, NAME.pdf and NAME.csv (the plotted numbers) in --out.")
    p.add_argument("path", metavar="PATH", help="sweep folder, results.csv, or trajectory .npz")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--name", default=None, help="file stem (default from the plot: e.g. test_error_vs_alpha)")
    p.add_argument("--dpi", type=_int, default=100, help="PNG resolution (default 100)")
    p.add_argument("--xscale", choices=("auto", "linear", "log"), default=None,
                   help="sweep: log when the values are geometric (auto); trajectory: log time (auto) or linear")
    g = p.add_argument_group("sweep")
    g.add_argument("--metric", default=None, help="numeric results.csv column (default test_error)")
    g.add_argument("--x", default=None, help="swept parameter on the x axis (default: the one with the most values)")
    g.add_argument("--y", default=None, help="second swept parameter: a heatmap (one panel per method/variant)")
    g.add_argument("--band", choices=("minmax", "std"), default=None,
                   help="band over seeds: min-max (default) or mean +- std")
    g.add_argument("--all-runs", dest="all_runs", action="store_true",
                   help="average every run with a finite value (default: converged runs only)")
    g.add_argument("--yscale", choices=("auto", "linear", "log"), default=None,
                   help="metric axis / colour scale (auto: log when positive and spanning > 2 decades)")
    t = p.add_argument_group("trajectory")
    t.add_argument("--runs", type=_int, nargs="+", default=None, metavar="I",
                   help="runs of the file to plot, one column each (default: the first 4)")
    t.add_argument("--top", type=_int, default=None,
                   help="without beta* in the file: highlight the K largest coordinates (default 5)")
    t.add_argument("--others", type=_int, default=None,
                   help="grey coordinates besides the highlighted ones (default 20)")
    t.add_argument("--alpha-eff", dest="alpha_eff", choices=("coords", "range"), default=None,
                   help="alpha_eff per coordinate (default) or min/mean/max over coordinates")
    p.set_defaults(func=cmd_plot)
    return p


def cmd_plot(args) -> int:
    from .plot import plot

    options = {k: getattr(args, k) for k in ("metric", "x", "y", "band", "yscale", "runs", "top", "others",
                                             "alpha_eff", "xscale", "name", "dpi")}
    options["all_runs"] = args.all_runs or None
    for path in plot(args.path, args.out, **options):
        print(path)
    return 0


def _register_optional(sub, name, build: bool = True):
    """Subcommands implemented in their own modules, each exposing add_<name>_parser(subparsers).

    Without ``build`` the subcommand is only listed (help text from :data:`OPTIONAL`), and its module
    (dln.check, figures.run: analysis, matplotlib, SymPy) is not imported."""
    import importlib

    module, text = OPTIONAL[name]
    if build:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
        else:
            return getattr(mod, f"add_{name}_parser")(sub)
    return sub.add_parser(name, help=text, add_help=False)


def _flag_of(args, filename) -> str | None:
    """The flag whose value is ``filename`` (or a folder holding it), to name it in an OS error."""
    if args is None or not filename:
        return None
    filename = os.fspath(filename)
    for key, value in vars(args).items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, (str, os.PathLike)) and os.fspath(v) and (
                    filename == os.fspath(v) or filename.startswith(os.path.join(os.fspath(v), ""))):
                return "dirs" if key == "dirs" else "--" + key.replace("_", "-")
    return None


def _os_error(exc: OSError, args) -> str:
    """An OS error as one line naming the flag (when one names the file) and the file."""
    what = exc.strerror or type(exc).__name__
    if exc.filename is None:
        return str(exc)
    flag = _flag_of(args, exc.filename)
    where = f" of {args.command}" if args is not None and getattr(args, "command", None) else ""
    if flag is None:
        return f"The file {os.fspath(exc.filename)!r} cannot be used: {what}."
    return f"The {flag!r} parameter{where} must be a file or folder dln can use. Got {os.fspath(exc.filename)!r} ({what}) instead."


def _lenient_streams():
    """Characters the terminal's encoding lacks (a non-UTF-8 locale, a file name with undecodable
    bytes) are printed escaped instead of raising UnicodeEncodeError while reporting."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a detached or closed stream
                pass


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("\r", " ").strip()


def report_url() -> str:
    """Where to report a bug: the project URL of the installed package's metadata (setup.cfg ``url``
    or ``project_urls``), else the project's issue tracker named in words."""
    try:
        from importlib.metadata import metadata

        meta = metadata("dln")
        urls = [u.split(",", 1)[-1].strip() for u in meta.get_all("Project-URL") or []] + [meta.get("Home-page")]
    except Exception:  # noqa: BLE001 - no metadata (a source checkout): the words below
        urls = []
    urls = [u for u in urls if u and u != "UNKNOWN"]
    return urls[0] if urls else "the dln issue tracker"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv[:argv.index("--")] if "--" in argv else "--debug" in argv
    args = None
    _lenient_streams()
    try:
        try:
            args = build_parser(argv).parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return 0 if exc.code is None else int(exc.code)
        if not hasattr(args, "func"):  # a listed subcommand whose module is not installed
            raise DLNError(f"The {args.command!r} subcommand needs the module {OPTIONAL[args.command][0]}, "
                           "which is not installed. Got an installation without it instead.")
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `dln simulate --json | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except (UsageError, DLNError, OSError) as exc:  # the user's input or files: one line, exit 2
        if debug:
            raise
        message = _os_error(exc, args) if isinstance(exc, OSError) else str(exc)
        message = message.replace("\n", " ").replace("\r", " ").strip() or type(exc).__name__
        print(f"dln: error: {message}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        if debug:
            raise
        print(f"dln: error: out of memory (see DLN_MAX_MEMORY in the README) ({_one_line(exc)})", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - anything else raised inside dln is a bug, not the user's mistake
        if debug:
            raise
        print(f"dln: internal error: {_one_line(exc)} — please report it at {report_url()} (rerun with --debug "
              "for the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dln: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
