"""Command-line interface (docs/design.md §5 contract): ``dln SUBCOMMAND ...``.

Subcommands: simulate, predict, sweep, merge, check, derive, figures.  User errors print one
line ``dln: error: …`` on stderr and exit with code 2 (``--debug`` re-raises instead).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from . import __version__
from .errors import DLNError
from .integrate import DEFAULT_RTOL
from .methods import METHODS, VARIANTS
from .problem import DESIGNS, load_problem, make_problem


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


def add_data_arguments(p: argparse.ArgumentParser, *, multi: bool = False):
    """Data flags (docs/design.md §5): --data FILE, or synthetic --n --d --k --noise --design --seed."""
    g = p.add_argument_group("data")
    nargs = "+" if multi else None
    g.add_argument("--data", metavar="FILE", help=".npz with arrays X, y (optional X_test, y_test, beta_star) or .csv")
    g.add_argument("--n", type=_int, nargs=nargs, default=None, help="samples (default 40)")
    g.add_argument("--d", type=_int, nargs=nargs, default=None, help="dimension (default 100)")
    g.add_argument("--k", type=_int, nargs=nargs, default=None, help="support size of beta* (default 5)")
    g.add_argument("--noise", type=_float, nargs=nargs, default=None, help="label noise std (default 0)")
    g.add_argument("--design", choices=DESIGNS, nargs=nargs, default=None, help="design of X (default gaussian)")
    if not multi:
        g.add_argument("--seed", type=_int, default=0, help="data seed (default 0)")


def add_method_arguments(p: argparse.ArgumentParser, *, multi: bool = False):
    """Method, hyper-parameter and time flags (docs/design.md §5); ``multi`` = several values each."""
    nargs = "+" if multi else None
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=METHODS, nargs=nargs, default=None, help="training method (default gf)")
    g.add_argument("--variant", choices=VARIANTS, nargs=nargs, default=None,
                   help="GR/SAM penalty on the full-batch gradient or per example (default full)")
    g.add_argument("--alpha", type=_float, nargs=nargs, default=None, help="initialization scale u0 = v0 = A (default 0.1)")
    g.add_argument("--gamma", type=_float, nargs=nargs, default=None, help="GR strength (penalty (gamma/2)|grad L|^2)")
    g.add_argument("--eps", type=_float, nargs=nargs, default=None,
                   help="finite-difference step > 0 (fgr ascends by +eps, bgr descends by eps)")
    g.add_argument("--rho", type=_float, nargs=nargs, default=None, help="SAM radius (usam: rho*grad L, sam: rho*grad L/|grad L|)")
    g.add_argument("--flood-level", dest="flood_level", type=_float, nargs=nargs, default=None, help="flooding level b >= 0")
    t = p.add_argument_group("time")
    t.add_argument("--time", choices=("flow", "discrete"), nargs=nargs, default=None, help="continuous flow or discrete steps (default flow)")
    t.add_argument("--lr", type=_float, nargs=nargs, default=None, help="learning rate (discrete time)")
    t.add_argument("--batch-size", dest="batch_size", type=_int, nargs=nargs, default=None,
                   help="mini-batch size for SGD (discrete time)")
    t.add_argument("--label-noise", dest="label_noise", type=_float, nargs=nargs, default=None,
                   help="label-noise std for label-noise SGD (discrete time)")
    s = p.add_argument_group("solver")
    s.add_argument("--depth", dest="D", type=_int, default=2, help="depth D: beta = u^D - v^D (default 2)")
    s.add_argument("--rtol", type=_float, default=DEFAULT_RTOL, help=f"flow tolerance (default {DEFAULT_RTOL:g})")
    s.add_argument("--max-steps", dest="max_steps", type=_int, default=None,
                   help="per-run cap on steps (default 20000 flow, 1000000 discrete)")


def problem_from_args(args):
    """The Problem named by the data flags."""
    if args.data is not None:
        for flag in ("n", "d", "k", "noise", "design"):
            if getattr(args, flag) is not None:
                raise DLNError(f"The '--{flag}' flag must be left unset with --data (it describes synthetic data). "
                               f"Got {getattr(args, flag)!r} instead.")
        return load_problem(args.data)
    return make_problem(n=40 if args.n is None else args.n, d=100 if args.d is None else args.d,
                        k=5 if args.k is None else args.k, noise=0.0 if args.noise is None else args.noise,
                        design="gaussian" if args.design is None else args.design, seed=args.seed)


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x))


def cmd_simulate(args) -> int:
    from .simulate import simulate

    problem = problem_from_args(args)
    kw = dict(method=args.method or "gf", variant=args.variant or "full",
              alpha=0.1 if args.alpha is None else args.alpha, gamma=args.gamma, eps=args.eps,
              rho=args.rho, flood_level=args.flood_level, time=args.time or "flow", lr=args.lr,
              batch_size=args.batch_size, label_noise=args.label_noise, D=args.D, rtol=args.rtol,
              max_steps=args.max_steps, seed=args.seed)
    rec = simulate(problem, **kw)[0]
    pred = rec.pop("_prediction")
    out = {k: v for k, v in rec.items() if not k.startswith("_")}
    out["beta"] = rec["_beta"]
    out["alpha_eff"] = rec["_alpha_eff"]
    out["prediction"] = None if pred is None else dict(
        beta=pred.beta, rel_error=rec["prediction_rel_error"], kkt_residual=pred.kkt_residual,
        theory_rel_error=rec["prediction_theory_rel_error"], status=pred.status)
    if args.json:
        json.dump(out, sys.stdout, default=_jsonable)
        sys.stdout.write("\n")
        return 0
    hp = ", ".join(f"{k}={out[k]}" for k in ("gamma", "eps", "rho", "flood_level", "lr") if out.get(k) is not None)
    print(f"{out['method']} ({out['variant']}) alpha={out['alpha']} {hp}".rstrip())
    print(f"  status            {out['status']}  (t={out['t']:.4g}, steps={out['steps']}, evaluations={out['n_evals']})")
    print(f"  train loss        {out['train_loss']:.3e}")
    if out["test_error"] is not None:
        print(f"  test error        {out['test_error']:.6g}")
    print(f"  l1 norm           {out['l1_norm']:.6g}")
    print(f"  gain -ln(a_eff/a) mean {out['gain_mean']:.4g}, max {out['gain_max']:.4g}")
    if pred is not None:
        print(f"  prediction        rel. error {out['prediction_rel_error']:.2e} vs argmin phi_(u*v); "
              f"{out['prediction_theory_rel_error']:.2e} vs the integrated gain; KKT residual {pred.kkt_residual:.1e}")
    return 0


def _infeasible(args, problem) -> DLNError:
    """y outside range(X): no β interpolates, and the interpolators' argmin does not exist (a user error)."""
    from analysis.predict import interpolation_residual

    from .errors import fail

    r = f"least-squares residual {interpolation_residual(problem.X, problem.y):.3g} |y|"
    if args.data is not None:
        return fail("data", "predict", "a file whose labels y lie in the range of X (every prediction is an "
                    "interpolator X beta = y, and none exists)", f"{args.data}, {r}")
    return fail("noise", "predict", "0 here (with n > d, noisy labels leave the range of X: every prediction is an "
                "interpolator X beta = y, and none exists)", f"{args.noise}, n = {problem.n}, d = {problem.d}, {r}")


def cmd_predict(args) -> int:
    """Exit 0 with the prediction; labels outside range(X) (no interpolator exists) are a user error
    (exit 2): the prediction does not exist, for any potential."""
    from analysis.predict import INFEASIBLE, interpolation_residual, min_l1, min_l2, mirror_argmin

    from .errors import check_real

    problem = problem_from_args(args)
    if args.potential == "q":
        alpha = check_real("alpha", 0.1 if args.alpha is None else args.alpha, "predict", gt=0.0)
        res = mirror_argmin(problem.X, problem.y, log_c=2.0 * np.log(alpha) * np.ones(problem.d))
        if res.status == "infeasible":
            raise _infeasible(args, problem)
        beta, kkt, status = res.beta, res.kkt_residual, res.status
        primal = res.primal_residual
    else:
        if args.alpha is not None:
            raise DLNError(f"The '--alpha' flag must be left unset with --potential {args.potential}. Got {args.alpha!r} instead.")
        if interpolation_residual(problem.X, problem.y) > INFEASIBLE:
            raise _infeasible(args, problem)
        beta = min_l1(problem.X, problem.y) if args.potential == "l1" else min_l2(problem.X, problem.y)
        primal = float(np.linalg.norm(problem.X @ beta - problem.y) / max(np.linalg.norm(problem.y), 1e-300))
        kkt, status = None, "converged"
    out = dict(beta=beta, kkt_residual=kkt, primal_residual=primal, status=status, potential=args.potential,
               alpha=args.alpha, l1_norm=float(np.abs(beta).sum()), test_error=problem.test_error(beta))
    if args.json:
        json.dump(out, sys.stdout, default=_jsonable)
        sys.stdout.write("\n")
    else:
        print(f"potential {args.potential}: status {status}, primal residual {primal:.2e}, KKT residual {kkt}")
        print(f"  l1 norm {out['l1_norm']:.6g}" + ("" if out["test_error"] is None else f", test error {out['test_error']:.6g}"))
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
        print(f"check: {'PASS' if ok else 'FAIL'}\n")
    return 1 if failed else 0


def build_parser() -> Parser:
    p = Parser(prog="dln", description="Diagonal linear network theory simulator (docs/theory.md, docs/design.md).")
    p.add_argument("--version", action="version", version=f"dln {__version__}")
    p.add_argument("--debug", action="store_true", help="re-raise errors with a traceback")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    s = sub.add_parser("simulate", help="one run: summary, or --json")
    add_data_arguments(s)
    add_method_arguments(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("predict", help="closed-form prediction for data and alpha")
    add_data_arguments(s)
    s.add_argument("--alpha", type=_float, default=None, help="initialization scale (potential q; default 0.1)")
    s.add_argument("--potential", choices=("q", "l1", "l2"), default="q",
                   help="q: argmin Q_alpha (default); l1: min-l1 interpolator; l2: min-l2 interpolator")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("derive", help="print the SymPy derivations with their checks")
    s.add_argument("--latex", action="store_true", help="LaTeX instead of pretty text")
    s.add_argument("--only", default=None, help="one derivation by name")
    s.set_defaults(func=cmd_derive)

    for name in ("sweep", "merge", "check", "figures"):
        _register_optional(sub, name)
    return p


def _register_optional(sub, name):
    """Subcommands implemented in their own modules, each exposing add_parser(subparsers)."""
    import importlib

    module = {"sweep": "dln.sweep", "merge": "dln.sweep", "check": "dln.check", "figures": "figures.run"}[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        return
    getattr(mod, f"add_{name}_parser")(sub)


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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    args = None
    _lenient_streams()
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `dln simulate --json | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except (np.linalg.LinAlgError, MemoryError, RecursionError) as exc:
        # not the user's mistake: one line that says so (exit 1), the traceback with --debug
        if debug:
            raise
        what = "out of memory (see DLN_MAX_MEMORY in the README)" if isinstance(exc, MemoryError) else \
            "the computation failed on this input: a bug of dln, please report it (--debug shows the traceback)"
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
        print(f"dln: error: {what} ({message})", file=sys.stderr)
        return 1
    except (UsageError, DLNError, ValueError, OSError) as exc:
        if debug:
            raise
        message = _os_error(exc, args) if isinstance(exc, OSError) else str(exc)
        message = message.replace("\n", " ").replace("\r", " ").strip() or type(exc).__name__
        print(f"dln: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dln: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
