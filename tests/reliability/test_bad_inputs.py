"""Reliability, bad inputs: every bad input is a clear user error.

- Python API: ``pytest.raises(DLNError, match=...)`` (``DLNError`` is a ``ValueError``);
- command line: exit code 2, one line ``dln: error: …`` naming the parameter, nothing on stdout, no
  traceback (docs/design.md §5), and nothing written (a sweep's ``--out`` is not created).

Complements tests/core/test_problem.py (Problem / load_problem validation), tests/core/test_simulate_cli.py
(simulate's common flag errors) and tests/sweep/test_sweep_errors.py (the sweep grid matrix, grid files,
shard specs, output folders, --resume on another grid, merge): the matrix below runs each bad input
through every entry point that reads it (simulate, predict, sweep, and the API), and adds the cases
those files do not have.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from reliability_helpers import assert_user_error, call
from dln.errors import DLNError
from dln.problem import load_problem, make_problem, save_problem
from dln.simulate import simulate
from dln.sweep import sweep

# ---------------------------------------------------------------------------------------------
# 1. bad data files, through load_problem and every subcommand that takes --data
# ---------------------------------------------------------------------------------------------
_X = np.arange(12.0).reshape(4, 3) + np.eye(4, 3)
_Y = np.arange(4.0)


def _with(value):
    """_X with one entry replaced by ``value``."""
    X = _X.copy()
    X[1, 2] = value
    return X


def _npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _unreadable(path):
    """A file that exists but cannot be read: mode 000 for a normal user; as root (who reads
    anything) a symlink to /proc/self/mem, whose offset 0 is unmapped (EIO on read)."""
    if os.geteuid() != 0:
        _npz(path, X=_X, y=_Y)
        os.chmod(path, 0)
    else:
        os.symlink("/proc/self/mem", path)


def _single_array(path):
    with open(path, "wb") as fh:
        np.save(fh, _X)


def _truncated(path):
    _npz(path, X=_X, y=_Y)
    with open(path, "rb") as fh:
        data = fh.read()
    _write(data[: len(data) // 2])(path)


def _write(content):
    """A writer of ``content`` (str or bytes) to the path it is given."""
    def writer(path):
        with open(path, "wb") as fh:
            fh.write(content.encode() if isinstance(content, str) else content)
    return writer


#: (id, file name, writer, regex of the API message, text of the CLI line)
DATA_CASES = [
    ("missing", "missing.npz", None, r"'data' parameter must be an existing file", "'data'"),
    ("dangling-symlink", "dangling.npz", lambda p: os.symlink(p + ".nowhere", p),
     r"'data' parameter must be an existing file", "existing file"),
    ("unreadable", "unreadable.npz", _unreadable, r"'data' parameter must be a readable \.npz file", "readable"),
    ("a-directory", "folder.npz", os.mkdir, r"'data' parameter must be a file, not a directory", "directory"),
    ("text-named-npz", "text.npz", _write("X,y\n1,2\n"),
     r"'data' parameter must be a readable \.npz file", "readable .npz"),
    ("empty-file", "empty.npz", _write(b""), r"'data' parameter must be a readable \.npz file",
     "'data'"),
    ("truncated-zip", "truncated.npz", _truncated, r"'data' parameter must be a readable \.npz file", "'data'"),
    ("single-npy-array", "single.npz", _single_array, r"'data' parameter must be a readable \.npz file.*single array",
     "single array"),
    ("not-npz-or-csv", "data.txt", _write("1 2 3\n"),
     r"'data' parameter must be an \.npz or \.csv file", ".npz or .csv"),
    ("wrong-keys", "keys.npz", lambda p: _npz(p, A=_X, b=_Y), r"arrays 'X' and 'y'.*\['A', 'b'\]", "'X' and 'y'"),
    ("only-X", "onlyx.npz", lambda p: _npz(p, X=_X), r"arrays 'X' and 'y'", "'X' and 'y'"),
    ("lowercase-keys", "lower.npz", lambda p: _npz(p, x=_X, Y=_Y), r"arrays 'X' and 'y'", "'X' and 'y'"),
    ("X-1d", "x1d.npz", lambda p: _npz(p, X=np.arange(4.0), y=_Y), r"'X' parameter must be a 2-D array", "'X'"),
    ("X-3d", "x3d.npz", lambda p: _npz(p, X=np.ones((4, 3, 2)), y=_Y), r"'X' parameter must be a 2-D array", "2-D"),
    ("X-scalar", "x0d.npz", lambda p: _npz(p, X=np.float64(1.0), y=_Y[:1]), r"'X' parameter must be a 2-D array",
     "2-D"),
    ("y-too-long", "ylong.npz", lambda p: _npz(p, X=_X, y=np.arange(5.0)), r"'y' parameter must be a vector of length 4",
     "length 4"),
    ("y-too-short", "yshort.npz", lambda p: _npz(p, X=_X, y=np.arange(3.0)), r"'y' parameter must be a vector of length 4",
     "'y'"),
    ("y-matrix", "y2d.npz", lambda p: _npz(p, X=_X, y=np.ones((4, 2))), r"'y' parameter must be a vector of length 4",
     "'y'"),
    ("X-nan", "xnan.npz", lambda p: _npz(p, X=_with(np.nan), y=_Y), r"'X' parameter must be finite",
     "finite"),
    ("X-inf", "xinf.npz", lambda p: _npz(p, X=_with(np.inf), y=_Y), r"'X' parameter must be finite",
     "'X'"),
    ("X-minus-inf", "xminf.npz", lambda p: _npz(p, X=_with(-np.inf), y=_Y),
     r"'X' parameter must be finite", "'X'"),
    ("y-nan", "ynan.npz", lambda p: _npz(p, X=_X, y=np.array([0.0, np.nan, 1.0, 2.0])), r"'y' parameter must be finite",
     "'y'"),
    ("y-inf", "yinf.npz", lambda p: _npz(p, X=_X, y=np.array([0.0, np.inf, 1.0, 2.0])), r"'y' parameter must be finite",
     "finite"),
    ("X-complex", "xc.npz", lambda p: _npz(p, X=_X * (1 + 1j), y=_Y), r"'X' parameter must be a real .*complex", "complex"),
    ("y-complex", "yc.npz", lambda p: _npz(p, X=_X, y=_Y + 0j), r"'y' parameter must be a real .*complex", "'y'"),
    ("X-object", "xo.npz", lambda p: _npz(p, X=_X.astype(object), y=_Y), r"'data' parameter must be a readable \.npz",
     "'data'"),
    ("X-strings", "xs.npz", lambda p: _npz(p, X=_X.astype(str), y=_Y), r"'X' parameter must be a real .*dtype <U",
     "real"),
    ("X-datetime", "xdt.npz", lambda p: _npz(p, X=np.full((4, 3), np.datetime64("2020-01-01")), y=_Y),
     r"'X' parameter must be a real .*datetime64", "'X'"),
    ("X-structured", "xst.npz", lambda p: _npz(p, X=np.zeros((4, 3), dtype=[("a", "f8")]), y=_Y),
     r"'X' parameter must be a real", "'X'"),
    ("n-zero", "n0.npz", lambda p: _npz(p, X=np.zeros((0, 3)), y=np.zeros(0)), r"'X' parameter must be non-empty",
     "non-empty"),
    ("d-zero", "d0.npz", lambda p: _npz(p, X=np.zeros((4, 0)), y=_Y), r"'X' parameter must be non-empty", "'X'"),
    ("X_test-without-y_test", "xt.npz", lambda p: _npz(p, X=_X, y=_Y, X_test=_X),
     r"'X_test' and 'y_test' arrays must be given together", "'X_test'"),
    ("X_test-wrong-columns", "xtc.npz", lambda p: _npz(p, X=_X, y=_Y, X_test=np.ones((2, 5)), y_test=np.ones(2)),
     r"'X_test' parameter must be an array with d = 3 columns", "'X_test'"),
    ("y_test-nan", "ytn.npz", lambda p: _npz(p, X=_X, y=_Y, X_test=_X, y_test=np.array([0, 1, np.nan, 2])),
     r"'y_test' parameter must be finite", "'y_test'"),
    ("beta_star-wrong-length", "bs.npz", lambda p: _npz(p, X=_X, y=_Y, beta_star=np.ones(4)),
     r"'beta_star' parameter must be a vector of length 3", "'beta_star'"),
    ("csv-not-numeric", "bad.csv", _write("1,2,3\n4,x,6\n"),
     r"'data' parameter must be a numeric \.csv file", "'data'"),
    ("csv-ragged", "ragged.csv", _write("1,2,3\n4,5\n"),
     r"'data' parameter must be a numeric \.csv file", "'data'"),
    ("csv-one-column", "one.csv", _write("1\n2\n"), r"at least 2 columns", "2 columns"),
    ("csv-nan", "nan.csv", _write("1,2,3\n4,nan,6\n"), r"'X' parameter must be finite", "'X'"),
    ("csv-binary", "bin.csv", _write(b"\xff\xfe\x00\x81" * 8),
     r"'data' parameter must be a numeric \.csv file", "'data'"),
]
DATA_IDS = [c[0] for c in DATA_CASES]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-data")
    for _, name, writer, _, _ in DATA_CASES:
        if writer is not None:
            writer(str(base / name))
    yield base
    for _, name, writer, _, _ in DATA_CASES:  # a mode-000 file must be removable by the cleanup
        p = base / name
        if p.exists() and not p.is_symlink() and p.is_file():
            os.chmod(p, 0o644)


@pytest.mark.parametrize("name, regex", [(c[1], c[3]) for c in DATA_CASES], ids=DATA_IDS)
def test_bad_data_file_api(data_dir, name, regex):
    with pytest.raises(DLNError, match=regex):
        load_problem(data_dir / name)


@pytest.mark.parametrize("command", ["simulate", "predict", "sweep"])
@pytest.mark.parametrize("name, text", [(c[1], c[4]) for c in DATA_CASES], ids=DATA_IDS)
def test_bad_data_file_cli(data_dir, tmp_path, command, name, text):
    out = tmp_path / "out"
    extra = ["--out", out, "--workers", "1"] if command == "sweep" else []
    assert_user_error(*call([command, "--data", data_dir / name, *extra]), text)
    assert not out.exists()


def test_good_data_file_is_accepted_by_every_entry_point(tmp_path):
    """The control of the matrix above: a well-formed file goes through."""
    path = tmp_path / "good.npz"
    save_problem(path, make_problem(n=5, d=8, k=2, seed=0, n_test=10))
    assert load_problem(path).X.shape == (5, 8)
    for argv in (["simulate", "--data", path, "--max-steps", 30, "--json", "--quiet"], ["predict", "--data", path, "--json"],
                 ["sweep", "--data", path, "--max-steps", 30, "--out", tmp_path / "o", "--workers", 1, "--quiet"]):
        code, out, err = call(argv)
        assert code == 0 and err == "", (argv, err)


# ---------------------------------------------------------------------------------------------
# 2. bad hyper-parameters and flags: simulate (API and CLI)
# ---------------------------------------------------------------------------------------------
#: (id, API keyword arguments or None, API regex, CLI flags or None, CLI texts)
D = dict(time="discrete", lr=0.1)
DF = ["--time", "discrete", "--lr", "0.1"]
HP_CASES = [
    # alpha: <= 0 or not finite
    ("alpha-zero", dict(alpha=0.0), r"'alpha' parameter of gf must be > 0", ["--alpha", "0"], ["'alpha'", "> 0"]),
    ("alpha-negative", dict(alpha=-1.0), r"'alpha' parameter of gf must be > 0.*-1\.0", ["--alpha", "-1"],
     ["'alpha'", "-1.0"]),
    ("alpha-negative-tiny", dict(alpha=-1e-300), r"'alpha' .* > 0", ["--alpha=-1e-300"], ["'alpha'", "> 0"]),
    ("alpha-nan", dict(alpha=float("nan")), r"'alpha' parameter of gf must be finite", ["--alpha", "nan"],
     ["'alpha'", "finite"]),
    ("alpha-inf", dict(alpha=float("inf")), r"'alpha' parameter of gf must be finite", ["--alpha", "inf"],
     ["'alpha'", "finite"]),
    ("alpha-minus-inf", dict(alpha=-float("inf")), r"'alpha' parameter of gf must be finite", ["--alpha=-inf"],
     ["'alpha'", "finite"]),
    ("alpha-overflowing-literal", None, None, ["--alpha", "1e999"], ["'alpha'", "finite"]),
    ("alpha-not-a-number", dict(alpha="big"), r"'alpha' parameter of gf must be a real number", ["--alpha", "big"],
     ["--alpha", "real number", "big"]),
    ("alpha-per-run-one-bad", dict(method="gr", gamma=[0.1, 0.2], alpha=[0.1, -0.5]), r"'alpha' .* > 0.*-0\.5", None,
     None),
    ("alpha-complex", dict(alpha=1j), r"'alpha' parameter of gf must be a real number", None, None),
    # gamma < 0 or not finite, for every method that takes it
    *[(f"gamma-negative-{m}", dict(method=m, gamma=-0.1, **({} if m == "gr" else {"eps": 0.1})),
       rf"'gamma' parameter of {m} must be >= 0", ["--method", m, "--gamma", "-0.1", *([] if m == "gr" else ["--eps", "0.1"])],
       ["'gamma'", m, ">= 0", "-0.1"]) for m in ("gr", "fgr", "bgr", "cgr")],
    ("gamma-nan", dict(method="gr", gamma=float("nan")), r"'gamma' parameter of gr must be finite",
     ["--method", "gr", "--gamma", "nan"], ["'gamma'", "finite"]),
    ("gamma-inf", dict(method="fgr", gamma=float("inf"), eps=0.1), r"'gamma' parameter of fgr must be finite",
     ["--method", "fgr", "--gamma", "inf", "--eps", "0.1"], ["'gamma'", "finite"]),
    # eps <= 0 for fgr / bgr / cgr
    *[(f"eps-{name}-{m}", dict(method=m, gamma=0.1, eps=v), rf"'eps' parameter of {m} must be > 0",
       ["--method", m, "--gamma", "0.1", f"--eps={v}"], ["'eps'", m, "> 0"])
      for m in ("fgr", "bgr", "cgr") for name, v in (("zero", 0.0), ("negative", -0.1))],
    ("eps-nan", dict(method="bgr", gamma=0.1, eps=float("nan")), r"'eps' parameter of bgr must be finite",
     ["--method", "bgr", "--gamma", "0.1", "--eps", "nan"], ["'eps'", "finite"]),
    ("eps-inf", dict(method="cgr", gamma=0.1, eps=float("inf")), r"'eps' parameter of cgr must be finite",
     ["--method", "cgr", "--gamma", "0.1", "--eps", "inf"], ["'eps'", "finite"]),
    # rho <= 0
    *[(f"rho-{name}-{m}", dict(method=m, rho=v), rf"'rho' parameter of {m} must be > 0", ["--method", m, f"--rho={v}"],
       ["'rho'", m, "> 0"]) for m in ("sam", "usam") for name, v in (("zero", 0.0), ("negative", -1.0))],
    ("rho-nan", dict(method="sam", rho=float("nan")), r"'rho' parameter of sam must be finite",
     ["--method", "sam", "--rho", "nan"], ["'rho'", "finite"]),
    # flood level < 0
    ("flood-level-negative", dict(method="flood", flood_level=-0.1), r"'flood_level' parameter of flood must be >= 0",
     ["--method", "flood", "--flood-level=-0.1"], ["'flood_level'", ">= 0"]),
    ("flood-level-inf", dict(method="flood", flood_level=float("inf")), r"'flood_level' .* finite",
     ["--method", "flood", "--flood-level", "inf"], ["'flood_level'", "finite"]),
    # eta <= 0
    ("lr-zero", dict(time="discrete", lr=0.0), r"'lr' parameter of iterate must be > 0", ["--time", "discrete", "--lr", "0"],
     ["'lr'", "> 0"]),
    ("lr-negative", dict(time="discrete", lr=-0.1), r"'lr' parameter of iterate must be > 0",
     ["--time", "discrete", "--lr", "-0.1"], ["'lr'", "-0.1"]),
    ("lr-nan", dict(time="discrete", lr=float("nan")), r"'lr' parameter of iterate must be finite",
     ["--time", "discrete", "--lr", "nan"], ["'lr'", "finite"]),
    ("lr-inf", dict(time="discrete", lr=float("inf")), r"'lr' parameter of iterate must be finite",
     ["--time", "discrete", "--lr", "inf"], ["'lr'", "finite"]),
    ("lr-missing", dict(time="discrete"), r"'lr' parameter of simulate must be given", ["--time", "discrete"],
     ["'lr'", "given"]),
    # batch size > n or < 1 (n = 6)
    ("batch-size-above-n", dict(batch_size=7, **D), r"'batch_size' parameter of iterate must be <= 6",
     ["--batch-size", "7", *DF], ["'batch_size'", "<= 6", "7"]),
    ("batch-size-zero", dict(batch_size=0, **D), r"'batch_size' parameter of iterate must be >= 1",
     ["--batch-size", "0", *DF], ["'batch_size'", ">= 1"]),
    ("batch-size-negative", dict(batch_size=-2, **D), r"'batch_size' parameter of iterate must be >= 1",
     ["--batch-size", "-2", *DF], ["'batch_size'", "-2"]),
    ("batch-size-fraction", dict(batch_size=2.5, **D), r"'batch_size' parameter of iterate must be an integer",
     ["--batch-size", "2.5", *DF], ["--batch-size", "integer", "2.5"]),
    ("label-noise-negative", dict(label_noise=-1.0, **D), r"'label_noise' parameter of iterate must be >= 0",
     ["--label-noise=-1", *DF], ["'label_noise'", ">= 0"]),
    # unknown method, variant, time, design
    ("method-unknown", dict(method="adam"), r"'method' parameter must be one of gf, gr", ["--method", "adam"],
     ["--method", "invalid choice", "adam"]),
    ("method-wrong-case", dict(method="GF"), r"'method' parameter must be one of", ["--method", "GF"],
     ["invalid choice", "GF"]),
    ("method-empty", dict(method=""), r"'method' parameter must be one of", ["--method", ""], ["invalid choice"]),
    ("variant-unknown", dict(variant="half"), r"'variant' parameter of gf must be one of full, per-sample",
     ["--variant", "half"], ["--variant", "invalid choice", "half"]),
    ("time-unknown", dict(time="implicit"), r"'time' parameter of simulate must be one of flow, discrete",
     ["--time", "implicit"], ["--time", "invalid choice"]),
    ("design-unknown", None, None, ["--design", "uniform"], ["--design", "invalid choice"]),
    # hyper-parameters that do not apply to the chosen method / time
    *[(f"{p}-with-{m}", dict(method=m, **{p: 0.1}, **extra), rf"'{p}' parameter of {m} must be left unset",
       ["--method", m, f"--{p.replace('_', '-')}", "0.1", *sum(([f"--{k.replace('_', '-')}", str(v)]
                                                               for k, v in extra.items()), [])],
       [f"'{p}'", m, "left unset"])
      for m, p, extra in (("gf", "gamma", {}), ("gf", "eps", {}), ("gf", "rho", {}), ("gf", "flood_level", {}),
                          ("gr", "eps", {"gamma": 0.1}), ("gr", "rho", {"gamma": 0.1}),
                          ("fgr", "rho", {"gamma": 0.1, "eps": 0.1}), ("cgr", "flood_level", {"gamma": 0.1, "eps": 0.1}),
                          ("sam", "gamma", {"rho": 0.1}), ("usam", "eps", {"rho": 0.1}),
                          ("flood", "gamma", {"flood_level": 0.0}), ("flood", "rho", {"flood_level": 0.0}))],
    ("lr-with-flow", dict(lr=0.1), r"'lr' parameter of simulate must be left unset with time='flow'",
     ["--lr", "0.1"], ["'lr'", "flow"]),
    ("batch-size-with-flow", dict(batch_size=2), r"'batch_size' .* left unset with time='flow'", ["--batch-size", "2"],
     ["'batch_size'", "flow"]),
    ("label-noise-with-flow", dict(label_noise=0.1), r"'label_noise' .* left unset", ["--label-noise", "0.1"],
     ["'label_noise'"]),
    ("gamma-missing-gr", dict(method="gr"), r"'gamma' parameter of gr must be given", ["--method", "gr"],
     ["'gamma'", "given"]),
    ("eps-missing-bgr", dict(method="bgr", gamma=0.1), r"'eps' parameter of bgr must be given",
     ["--method", "bgr", "--gamma", "0.1"], ["'eps'", "given"]),
    ("flood-per-sample", dict(method="flood", flood_level=0.0, variant="per-sample"), r"'variant' parameter of flood",
     ["--method", "flood", "--flood-level", "0", "--variant", "per-sample"], ["'variant'", "flood"]),
    ("per-sample-depth-3", dict(variant="per-sample", D=3), r"'variant' parameter of gf must be 'full' for depth",
     ["--variant", "per-sample", "--depth", "3"], ["'variant'", "depth"]),
    # solver settings
    ("depth-one", dict(D=1), r"'D' parameter of gf must be >= 2", ["--depth", "1"], ["'D'", ">= 2"]),
    ("max-steps-zero", dict(max_steps=0), r"'max_steps' parameter of flow must be >= 1", ["--max-steps", "0"],
     ["'max_steps'", ">= 1"]),
    ("max-steps-negative-discrete", dict(max_steps=-5, **D), r"'max_steps' parameter of iterate must be >= 1",
     ["--max-steps", "-5", *DF], ["'max_steps'", "-5"]),
    ("rtol-zero", dict(rtol=0.0), r"'rtol' parameter of flow must be > 0", ["--rtol", "0"], ["'rtol'", "> 0"]),
    ("rtol-nan", dict(rtol=float("nan")), r"'rtol' parameter of flow must be finite", ["--rtol", "nan"],
     ["'rtol'", "finite"]),
    # synthetic data flags: n or d zero, k > d, ...
    ("n-zero", None, None, ["--n", "0"], ["'n'", ">= 1"]),
    ("d-zero", None, None, ["--d", "0"], ["'d'", ">= 1"]),
    ("k-above-d", None, None, ["--k", "11"], ["'k'", "<= d = 10", "11"]),
    ("k-zero", None, None, ["--k", "0"], ["'k'", ">= 1"]),
    ("n-fraction", None, None, ["--n", "2.5"], ["--n", "integer"]),
    ("noise-negative", None, None, ["--noise=-1"], ["'noise'", ">= 0"]),
    ("seed-negative", None, None, ["--seed=-1"], ["'seed'", ">= 0"]),
    ("data-with-synthetic-flag", None, None, ["--data", "x.npz"], ["'--n'", "--data"]),
    ("unknown-flag", None, None, ["--learning-rate", "0.1"], ["unrecognized", "--learning-rate"]),
    ("flag-without-value", None, None, ["--alpha"], ["--alpha", "expected one argument"]),
    # a negative number as its own token is a value (argparse alone reads -1e-3 as an option)
    ("alpha-negative-exponent-token", None, None, ["--alpha", "-1e-3"], ["'alpha'", "> 0", "-0.001"]),
    ("alpha-negative-dot-token", None, None, ["--alpha", "-.5"], ["'alpha'", "> 0", "-0.5"]),
    ("alpha-minus-inf-token", None, None, ["--alpha", "-inf"], ["'alpha'", "finite", "-inf"]),
    ("gamma-negative-exponent-token", None, None, ["--method", "gr", "--gamma", "-1E-2"], ["'gamma'", ">= 0", "-0.01"]),
]
HP_IDS = [c[0] for c in HP_CASES]
assert len(set(HP_IDS)) == len(HP_IDS)


@pytest.mark.parametrize("kwargs, regex", [(c[1], c[2]) for c in HP_CASES if c[1] is not None],
                         ids=[c[0] for c in HP_CASES if c[1] is not None])
def test_bad_hyper_parameter_api(small_problem, kwargs, regex):
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "gf")
    with pytest.raises(DLNError, match=regex):
        simulate(small_problem, method, **{"max_steps": 20, **kwargs})


@pytest.mark.parametrize("flags, texts", [(c[3], c[4]) for c in HP_CASES if c[3] is not None],
                         ids=[c[0] for c in HP_CASES if c[3] is not None])
def test_bad_hyper_parameter_cli(flags, texts):
    base = ["simulate", "--n", "6", "--d", "10", "--k", "2", "--max-steps", "20", "--json"]
    assert_user_error(*call([*base, *flags]), *texts)


def test_make_problem_k_above_d_api():
    with pytest.raises(DLNError, match=r"'k' parameter of make_problem must be <= d = 4. Got 5"):
        make_problem(n=3, d=4, k=5)


@pytest.mark.parametrize("flags, texts", [
    (["--alpha", "0"], ["'alpha'", "predict", "> 0"]),
    (["--alpha=-2"], ["'alpha'", "-2.0"]),
    (["--alpha", "nan"], ["'alpha'", "finite"]),
    (["--alpha", "inf"], ["'alpha'", "finite"]),
    (["--alpha", "x"], ["--alpha", "real number"]),
    (["--potential", "l1", "--alpha", "0.1"], ["'--alpha'", "l1"]),
    (["--potential", "l2", "--alpha", "1"], ["'--alpha'", "l2"]),
    (["--potential", "huber"], ["--potential", "invalid choice"]),
    (["--k", "11"], ["'k'", "<= d"]),
    (["--n", "0"], ["'n'"]),
    (["--d", "0"], ["'d'"]),
    (["--gamma", "0.1"], ["unrecognized", "--gamma"]),  # predict has no method flags
], ids=["alpha-zero", "alpha-negative", "alpha-nan", "alpha-inf", "alpha-text", "alpha-with-l1", "alpha-with-l2",
        "potential-unknown", "k-above-d", "n-zero", "d-zero", "method-flag"])
def test_bad_predict_flags(flags, texts):
    assert_user_error(*call(["predict", "--n", "6", "--d", "10", "--k", "2", *flags]), *texts)


def test_bad_derive_flags():
    assert_user_error(*call(["derive", "--only", "nonsense"]), "'--only'", "nonsense")
    assert_user_error(*call(["derive", "--latex", "--frobnicate"]), "unrecognized")


@pytest.mark.parametrize("argv, texts", [
    ([], ["required", "COMMAND"]),
    (["simulat"], ["invalid choice", "simulat"]),
    (["--alpha", "0.1"], ["invalid choice", "0.1"]),
], ids=["no-command", "misspelt-command", "flag-before-command"])
def test_bad_top_level(argv, texts):
    assert_user_error(*call(argv), *texts)


# ---------------------------------------------------------------------------------------------
# 3. sweep: the value rules through the grid (cases tests/sweep/test_sweep_errors.py leaves out)
# ---------------------------------------------------------------------------------------------
SWEEP_BASE = ["sweep", "--n", "6", "--d", "10", "--k", "2", "--max-steps", "20", "--workers", "1", "--quiet"]
SWEEP_CASES = [
    ("gamma-negative-fgr", ["--method", "fgr", "--gamma=-0.1", "--eps", "0.1"], ["'gamma'", ">= 0"]),
    ("eps-negative-bgr", ["--method", "bgr", "--gamma", "0.1", "--eps=-0.1"], ["'eps'", "> 0"]),
    ("eps-zero-cgr", ["--method", "cgr", "--gamma", "0.1", "--eps", "0"], ["'eps'", "> 0"]),
    ("eps-one-bad-of-three", ["--method", "fgr", "--gamma", "0.1", "--eps", "0.1", "0.2", "0"], ["'eps'", "0.0"]),
    ("rho-negative-usam", ["--method", "usam", "--rho=-1"], ["'rho'", "> 0"]),
    ("gamma-nan", ["--method", "gr", "--gamma", "nan"], ["'gamma'", "finite"]),
    ("lr-inf", ["--time", "discrete", "--lr", "inf"], ["'lr'", "finite"]),
    ("lr-negative", ["--time", "discrete", "--lr", "0.1", "-0.1"], ["'lr'", "> 0"]),
    ("batch-size-negative", ["--time", "discrete", "--lr", "0.1", "--batch-size=-1"], ["'batch_size'", ">= 1"]),
    ("batch-size-fraction", ["--time", "discrete", "--lr", "0.1", "--batch-size", "1.5"], ["--batch-size", "integer"]),
    ("method-wrong-case", ["--method", "gf", "GR"], ["--method", "invalid choice"]),
    ("variant-unknown-among-good", ["--variant", "full", "per_sample"], ["--variant", "invalid choice"]),
    ("flood-level-nan", ["--method", "flood", "--flood-level", "nan"], ["'flood_level'", "finite"]),
    ("eps-reaches-no-method", ["--method", "gf", "gr", "sam", "--gamma", "0.1", "--rho", "0.1", "--eps", "0.1"],
     ["'eps'", "fgr"]),
    ("k-above-one-of-the-d", ["--d", "10", "4", "--k", "5"], ["'k'", "<= d"]),
    ("seed-not-int", ["--seed", "one"], ["'seed'", "integer"]),
    ("rtol-negative", ["--rtol=-1e-6"], ["'rtol'", "> 0"]),
    ("max-steps-text", ["--max-steps", "many"], ["--max-steps", "integer"]),
    ("alpha-geom-negative-tokens", ["--alpha-geom", "-1e-3", "1", "3"], ["alpha", "-0.001"]),
    ("eps-negative-token-among-good", ["--method", "fgr", "--gamma", "0.1", "--eps", "0.1", "-2.5e-1"],
     ["'eps'", "-0.25"]),
]


@pytest.mark.parametrize("flags, texts", [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_bad_sweep_flags(tmp_path, flags, texts):
    out = tmp_path / "out"
    assert_user_error(*call([*SWEEP_BASE, "--out", out, *flags]), *texts)
    assert not out.exists()


@pytest.mark.parametrize("kwargs, regex", [
    (dict(method="bgr", gamma=0.1, eps=-0.1), r"'eps' parameter of sweep must be > 0"),
    (dict(method="flood", flood_level=-1.0), r"'flood_level' parameter of sweep must be >= 0"),
    (dict(method="gf", time="discrete", lr=0.1, batch_size=7), r"'batch_size' parameter of sweep must be <= n = 6"),
    (dict(method="gf", alpha=[0.1, float("nan")]), r"'alpha' parameter of sweep must be finite"),
    (dict(method="gf", gamma=0.1), r"'gamma' parameter of sweep must be given only with a method that uses it"),
    (dict(method="gf", variant="whole"), r"'variant' parameter of sweep must be one of full, per-sample"),
    (dict(method="gf", k=11), r"'k' parameter of sweep must be <= d"),
    (dict(method="gf", n=0), r"'n' parameter of sweep must be >= 1"),
    (dict(method="gf", shard="3/2"), r"'shard' parameter of sweep must be of the form I/N"),
], ids=["eps-negative", "flood-level-negative", "batch-size-above-n", "alpha-nan", "gamma-with-gf", "variant-unknown",
        "k-above-d", "n-zero", "shard-out-of-range"])
def test_bad_sweep_api(kwargs, regex):
    with pytest.raises(DLNError, match=regex):
        sweep(**{"n": 6, "d": 10, "k": 2, "workers": 1, **kwargs})


# -- malformed --grid files (beyond tests/sweep/test_sweep_errors.py::GRID_FILE_ERRORS) ------------
GRID_CASES = [
    ("empty-file", b"", "JSON"),
    ("binary", b"\xff\xfe\x00\x00garbage\x81", "'grid'"),
    ("truncated-json", b'{"alpha": [0.1, 1', "JSON"),
    ("top-level-number", b"42", "'grid'"),
    ("top-level-null", b"null", "'grid'"),
    ("list-with-a-non-object", b'[{"alpha": 0.1}, 3]', "'grid'"),
    ("nested-object-value", b'{"alpha": {"min": 0.1}}', "'alpha'"),
    ("nested-list-value", b'{"alpha": [[0.1, 1]]}', "'alpha'"),
    ("NaN-literal", b'{"alpha": [NaN]}', "finite"),
    ("Infinity-literal", b'{"gamma": [Infinity], "method": "gr"}', "finite"),
    ("overflowing-number", b'{"alpha": [1e999]}', "finite"),
    ("number-as-string", b'{"alpha": ["0.1"]}', "'alpha'"),
    ("n-fraction", b'{"n": [2.5]}', "'n'"),
    ("n-string", b'{"n": ["ten"]}', "'n'"),
    ("method-number", b'{"method": [3]}', "'method'"),
    ("batch-size-bool", b'{"time": "discrete", "lr": 0.1, "batch_size": [true]}', "'batch_size'"),
    ("seeds-zero", b'{"seeds": 0}', "'seeds'"),
    ("max-steps-zero", b'{"max_steps": 0}', "'max_steps'"),
    ("chunk-size-negative", b'{"chunk_size": -1}', "'chunk_size'"),
    ("depth-text", b'{"depth": "two"}', "'depth'"),
    ("rtol-negative", b'{"rtol": -1e-6}', "'rtol'"),
    ("root-seed-negative", b'{"root_seed": -3}', "'root_seed'"),
    ("k-above-d", b'{"k": 11, "d": 10, "n": 4}', "'k'"),
    ("eps-zero-for-bgr", b'{"method": "bgr", "gamma": 0.1, "eps": 0}', "'eps'"),
    ("data-missing-file", b'{"data": "nowhere.npz"}', "'data'"),
]


@pytest.mark.parametrize("content, text", [c[1:] for c in GRID_CASES], ids=[c[0] for c in GRID_CASES])
def test_malformed_grid_file(tmp_path, content, text):
    grid = tmp_path / "grid.json"
    grid.write_bytes(content)
    out = tmp_path / "out"
    # --n/--d are not given here: a grid file may not repeat a flag given on the command line
    assert_user_error(*call(["sweep", "--grid", grid, "--quiet", "--workers", "1", "--out", out]), text)
    assert not out.exists()


SHARD_CASES = ["1/2.5", "1.0/2", "+1/2", "1//2", "1/2 junk", "/", "2/", "1/0x2", "one/two", "1-2", "0/0", "∞/2"]


@pytest.mark.parametrize("spec", SHARD_CASES)
def test_malformed_shard_spec(tmp_path, spec):
    out = tmp_path / "out"
    assert_user_error(*call([*SWEEP_BASE, "--shard", spec, "--out", out]), "'shard'", "I/N")
    assert not out.exists()


# -- output folders ---------------------------------------------------------------------------------
def test_output_folder_is_a_file_or_not_writable(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("keep me")
    for out, text in ((f, "a directory"), ("/dev/null", "a directory"), (f / "below", "'out'"),
                      ("/proc/self/dln-out", "writable"), ("/sys/dln-out", "writable")):
        assert_user_error(*call([*SWEEP_BASE, "--out", out]), "'out'", text)
        with pytest.raises(DLNError, match=r"'out' parameter of sweep must be a"):
            sweep(n=6, d=10, k=2, max_steps=20, workers=1, out=str(out))
    assert f.read_text() == "keep me"


def test_output_folder_without_write_permission(tmp_path):
    """A read-only folder (mode 0o555).  Root ignores permissions: the case is then /proc above."""
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions do not apply (see the /proc and /sys cases)")
        assert_user_error(*call([*SWEEP_BASE, "--out", ro]), "'out'", "writable")
    finally:
        os.chmod(ro, 0o755)


def test_merge_output_folder_is_a_file_or_not_writable(tmp_path):
    shard = tmp_path / "s"
    assert call([*SWEEP_BASE, "--out", shard])[0] == 0
    f = tmp_path / "f"
    f.write_text("")
    other = tmp_path / "other"
    assert call([*SWEEP_BASE, "--alpha", "0.5", "--out", other])[0] == 0
    for out, text in ((f, "a directory"), ("/proc/self/dln-merge", "writable"), (other, "new or empty"),
                      (shard, "other than the merged ones")):
        assert_user_error(*call(["merge", shard, "--out", out, "--quiet"]), "'out'", text)


# -- --resume on a folder of another grid -------------------------------------------------------------
def test_resume_a_folder_of_another_grid_api_and_cli(tmp_path):
    out = tmp_path / "out"
    recs = sweep(n=6, d=10, k=2, alpha=[0.1, 1.0], max_steps=20, workers=1, out=str(out))
    assert len(recs) == 2
    before = (out / "results.csv").read_bytes()
    for kwargs in (dict(alpha=[0.1, 2.0]), dict(alpha=[0.1, 1.0], root_seed=1), dict(alpha=[0.1, 1.0], k=3),
                   dict(alpha=[0.1, 1.0], max_steps=21)):
        kw = {"n": 6, "d": 10, "k": 2, "max_steps": 20, **kwargs}
        with pytest.raises(DLNError, match=r"'out' parameter of sweep must be a folder of the same grid.*fingerprint"):
            sweep(**kw, workers=1, out=str(out), resume=True)
    assert_user_error(*call([*SWEEP_BASE, "--alpha", "0.1", "3", "--resume", "--out", out]), "'out'", "fingerprint")
    assert (out / "results.csv").read_bytes() == before
    # a config.json that is valid JSON but not a sweep's
    other = tmp_path / "other"
    shutil.copytree(out, other)
    (other / "config.json").write_text(json.dumps({"format": "something-else", "fingerprint": "0"}))
    assert_user_error(*call([*SWEEP_BASE, "--alpha", "0.1", "1", "--resume", "--out", other]), "'out'", "dln sweep")
