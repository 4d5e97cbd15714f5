"""Reliability: CLI fuzzing.  Hypothesis draws argument lists for every subcommand (valid and invalid
flags and values, junk tokens) and runs them through ``dln.cli.main`` in-process; each ends with exit
code 0 or 2 (argparse's --help / --version leave through SystemExit(0)), never an uncaught exception:

- exit 2: nothing on stdout, one line ``dln: error: …`` on stderr, no traceback;
- exit 0: ``simulate --json`` / ``predict --json`` print one JSON object (with a status);
- no warning escapes (the known bugs of reliability_helpers.known_bug are tolerated, and counted).

Sizes are kept tiny (n, d ≤ 11, at most 16 runs per sweep, --max-steps ≤ 30) so that an example takes a
fraction of a second; ``check`` and ``figures`` are left out (minutes each), ``derive`` is fuzzed on
its cheap derivations only.  A few subprocess runs of ``python -m dln`` confirm "no traceback" in a
real process.  ``DLN_RELIABILITY_EXPLORE=N`` runs N times more examples with fresh randomness.
"""
from __future__ import annotations

import itertools
import json
import math
import shutil
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reliability_helpers import budget, call, count, known_bug, run_concurrently
from dln.methods import METHODS, VARIANTS
from dln.problem import DESIGNS, make_problem, save_problem

STATUSES = {"converged", "diverged", "max_steps"}

# -- value pools: (valid values, invalid values); a drawn value is invalid one time in four -----------
FLOATS = (["0.1", "1", "0.5", "1e-3", "3", "1e-12", "1e3", "0", " 0.5", "1_000"],
          ["-1", "nan", "inf", "-inf", "1e999", "abc", "", "0x10", "١", "--", "1,5", "-1e-3"])
SMALL_INTS = (["1", "2", "3"], ["0", "-1", "2.5", "x", "", "1e3", "١", "99999999999999999999"])
STEPS = (["1", "5", "30"], ["0", "-3", "x", "1.5"])
N_VALUES = (["1", "2", "4", "6"], ["0", "-2", "x"])
D_SIM = (["1", "3", "8"], ["0", "x"])
D_SWEEP = (["2", "3", "7"], ["0", "x"])  # 2, 3: batches of d runs (test_extremes.py::test_per_run_alpha_when_batch_equals_d)
K_VALUES = (["1", "2", "3"], ["0", "12", "x"])
JUNK = ["--", "-", "--json=1", "--alpha=", "-n", "--n=3", "—alpha", "--ALPHA", "--alp", "--s", "%s", "\x00",
        "🙂", "--help", "simulate", "-h"]


def choice(pool, extra_valid=(), extra_invalid=()):
    """A value of ``pool`` = (valid, invalid): valid three times in four."""
    valid, invalid = [*pool[0], *extra_valid], [*pool[1], *extra_invalid]
    return st.one_of(st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(valid), st.sampled_from(invalid))


def several(pool, max_size=2):
    return st.lists(choice(pool), min_size=0, max_size=max_size)


def const(*values):
    return (list(values), [])


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    """Data files, grid files and sweep folders the fuzzed arguments may name."""
    base = tmp_path_factory.mktemp("fuzz")
    save_problem(base / "good.npz", make_problem(n=4, d=10, k=2, seed=0, n_test=8))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 10))
    np.savetxt(base / "good.csv", np.column_stack([X, X @ rng.standard_normal(10)]), delimiter=",")
    (base / "text.npz").write_text("not a zip")
    np.savez(base / "nan.npz", X=np.full((3, 4), np.nan), y=np.ones(3))
    np.savez(base / "keys.npz", A=np.ones((3, 4)))
    (base / "ragged.csv").write_text("1,2,3\n4,5\n")
    (base / "folder").mkdir()
    (base / "grid-ok.json").write_text(json.dumps({"method": ["gf", "gr"], "gamma": 0.1, "alpha": [0.1, 1.0]}))
    (base / "grid-union.json").write_text(json.dumps([{"method": "gf"}, {"method": "usam", "rho": [0.1]}]))
    (base / "grid-bad.json").write_text('{"alpha": [0.1,')
    (base / "grid-key.json").write_text('{"beta": 1}')
    sweep = ["sweep", "--n", "4", "--d", "7", "--k", "2", "--alpha", "0.1", "1", "--seeds", "2", "--chunk-size", "1",
             "--max-steps", "20", "--quiet", "--workers", "1"]
    for name, extra in (("s1", ["--shard", "1/2"]), ("s2", ["--shard", "2/2"]), ("full", []),
                        ("other", ["--root-seed", "9"])):
        code, _, err = call([*sweep, *extra, "--out", base / name])
        assert code == 0, err
    shutil.copytree(base / "full", base / "torn")
    data = (base / "torn" / "results.csv").read_bytes()
    (base / "torn" / "results.csv").write_bytes(data[:-20])
    (base / "a-file").write_text("")
    return base


class Paths:
    """Symbolic paths in the drawn arguments, resolved against the fixture's folder at run time."""

    counter = itertools.count()

    def __init__(self, base):
        self.base = base

    def resolve(self, token):
        if isinstance(token, str) and "@" in token:  # "@name" or "--flag=@name"
            head, name = token.split("@", 1)
            if name == "fresh":
                return head + str(self.base / "out" / f"o{next(self.counter)}")
            return head + str(self.base / name)
        return token


DATA = (["@good.npz", "@good.csv"], ["@text.npz", "@nan.npz", "@keys.npz", "@ragged.csv", "@folder", "@missing.npz", ""])
GRIDS = (["@grid-ok.json", "@grid-union.json"], ["@grid-bad.json", "@grid-key.json", "@missing.json", "@folder"])
DIRS = ["@s1", "@s2", "@full", "@other", "@torn", "@folder", "@a-file", "@missing"]
OUTS = (["@fresh"], ["@full", "@a-file", "@folder", "/proc/self/x", ""])

METHOD_FLAGS = {
    "--method": choice((list(METHODS), ["adam", "GF", ""])), "--variant": choice((list(VARIANTS), ["half"])),
    "--alpha": choice(FLOATS), "--gamma": choice(FLOATS), "--eps": choice(FLOATS), "--rho": choice(FLOATS),
    "--flood-level": choice(FLOATS), "--time": choice((["flow", "discrete"], ["later"])),
    "--lr": choice(FLOATS), "--batch-size": choice(SMALL_INTS), "--label-noise": choice(FLOATS),
    "--depth": choice((["2", "3"], ["1", "x"])), "--rtol": choice(FLOATS), "--max-steps": choice(STEPS),
}
DATA_FLAGS = {"--n": choice(N_VALUES), "--d": choice(D_SIM), "--k": choice(K_VALUES), "--noise": choice(FLOATS),
              "--design": choice((list(DESIGNS), ["uniform"])), "--seed": choice(SMALL_INTS), "--data": choice(DATA)}


@st.composite
def flag_args(draw, flags: dict, booleans=(), max_flags=6):
    """Some of ``flags`` with drawn values, some boolean flags, maybe a junk token, in drawn order."""
    names = draw(st.lists(st.sampled_from(sorted(flags)), max_size=max_flags, unique=True)) if flags else []
    parts = []
    for name in names:
        value = draw(flags[name])
        values = value if isinstance(value, list) else [value]
        if values and draw(st.integers(0, 9)) == 0:
            parts.append([f"{name}={values[0]}", *values[1:]])  # the --flag=value spelling
        else:
            parts.append([name, *values])
    parts += [[b] for b in draw(st.lists(st.sampled_from(list(booleans)), max_size=3, unique=True))] if booleans else []
    if draw(st.integers(0, 5)) == 0:
        parts.insert(draw(st.integers(0, len(parts))), [draw(st.sampled_from(JUNK))])
    order = draw(st.permutations(range(len(parts)))) if parts else []
    return [tok for i in order for tok in parts[i]]


def _simulate_args():
    return st.builds(lambda synthetic, rest: ["simulate", *synthetic, "--max-steps", "30", *rest],
                     st.sampled_from([["--n", "4", "--d", "8", "--k", "2"], ["--n", "3", "--d", "5", "--k", "1"], []]),
                     flag_args({**DATA_FLAGS, **METHOD_FLAGS}, booleans=("--json", "--json")))


def _predict_args():
    flags = {**DATA_FLAGS, "--alpha": choice(FLOATS), "--potential": choice((["q", "l1", "l2"], ["huber"]))}
    return st.builds(lambda synthetic, rest: ["predict", *synthetic, *rest],
                     st.sampled_from([["--n", "4", "--d", "8", "--k", "2"], []]), flag_args(flags, booleans=("--json",)))


SWEEP_LISTS = {
    "--method": several((list(METHODS), ["adam"])), "--variant": several((list(VARIANTS), ["half"])),
    "--alpha": several(FLOATS), "--gamma": several(FLOATS), "--eps": several(FLOATS), "--rho": several(FLOATS),
    "--flood-level": several(FLOATS), "--time": several((["flow", "discrete"], ["later"])), "--lr": several(FLOATS),
    "--batch-size": several(SMALL_INTS), "--label-noise": several(FLOATS), "--n": several(N_VALUES, 1),
    "--d": several(D_SWEEP, 1), "--k": several((["1", "2"], ["0", "8"]), 1), "--noise": several(FLOATS, 1),
    "--design": several((list(DESIGNS), ["uniform"]), 1), "--seed": several(SMALL_INTS),
    "--alpha-geom": st.one_of(st.just(["0.1", "1", "2"]), st.lists(choice((["0.1", "1", "2"], ["0", "x", "-1"])),
                                                                      min_size=2, max_size=4)),
    "--gamma-geom": st.lists(choice((["0.01", "0.1", "2", "1"], ["0"])), min_size=3, max_size=3),
}
SWEEP_SINGLE = {
    "--seeds": choice((["1", "2"], ["0", "x", "1e9"])), "--grid": choice(GRIDS), "--data": choice(DATA),
    "--root-seed": choice((["0", "5"], ["-1", "x"])), "--chunk-size": choice((["1", "2"], ["0", "x"])),
    "--workers": choice((["1"], ["0", "x"])), "--shard": choice((["1/2", "2/2", "1/1"], ["0/1", "3/2", "x", "1/"])),
    "--out": choice(OUTS), "--depth": choice((["2", "3"], ["1"])), "--rtol": choice((["1e-6"], ["0", "x"])),
    "--max-steps": choice((["5", "20"], ["0", "x"])),
}


@st.composite
def _valid_grid(draw):
    """A grid that passes validation (methods with their hyper-parameters, discrete time with lr), so
    that the fuzz also reaches the execution paths."""
    from dln.methods import PARAMS, VARIANT_METHODS

    methods = draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=2, unique=True))
    args = ["--method", *methods]
    for name in sorted({p for m in methods for p in PARAMS[m]}):
        values = draw(st.lists(st.sampled_from(["0", "0.05", "0.1"] if name in ("gamma", "flood_level")
                                               else ["0.05", "0.1", "1"]), min_size=1, max_size=2, unique=True))
        args += ["--" + name.replace("_", "-"), *values]
    args += ["--alpha", *draw(st.lists(st.sampled_from(["1e-3", "0.1", "1"]), min_size=1, max_size=2, unique=True))]
    if draw(st.booleans()):
        args += ["--time", *draw(st.sampled_from([["discrete"], ["flow", "discrete"]])), "--lr",
                 draw(st.sampled_from(["0.01", "0.1", "10"]))]
        if draw(st.booleans()):
            args += ["--batch-size", draw(st.sampled_from(["1", "2"]))]
        if draw(st.booleans()):
            args += ["--label-noise", draw(st.sampled_from(["0", "0.5"]))]
    if any(m in VARIANT_METHODS for m in methods) and draw(st.booleans()):
        args += ["--variant", *draw(st.sampled_from([["per-sample"], ["full", "per-sample"]]))]
    return args


def _sweep_args():
    base = ["sweep", "--n", "4", "--d", "7", "--k", "2", "--max-steps", "20", "--workers", "1", "--out", "@fresh"]
    wild = flag_args({**SWEEP_LISTS, **SWEEP_SINGLE}, booleans=("--resume", "--save-trajectories"), max_flags=7)
    mild = st.builds(lambda grid, rest: [*grid, *rest], _valid_grid(),
                     flag_args({**SWEEP_SINGLE, "--seed": SWEEP_LISTS["--seed"]},
                               booleans=("--resume", "--save-trajectories"), max_flags=2))
    return st.builds(lambda rest, quiet: [*base, *rest, *(["--quiet"] if quiet else [])], st.one_of(wild, mild),
                     st.booleans())


def _merge_args():
    dirs = st.one_of(st.sampled_from([["@s1", "@s2"], ["@s2", "@s1"], ["@full"], ["@s1"], ["@torn"]]),
                     st.lists(st.sampled_from(DIRS), max_size=3))
    return st.builds(lambda dirs, out, rest: ["merge", *dirs, *(["--out", out] if out else []), *rest], dirs,
                     st.one_of(choice(OUTS), st.just(None)), flag_args({}, booleans=("--partial", "--quiet")))


def _derive_args():
    """Always with --only: the full derivation set takes 15 s (the cheap ones are cached after once)."""
    return st.builds(lambda only, rest: ["derive", "--only", only, *rest],
                     choice((["flooding", "potential"], ["nonsense", "", "FLOODING"])),
                     flag_args({}, booleans=("--latex",)))


def _top_args():
    return st.lists(st.sampled_from(["--version", "--help", "-h", "bogus", "simulate", "--n", "x", "check", "figures",
                                     "--debug", "merge", "sweep", "derive", "predict", "--"]), max_size=3) \
        .filter(lambda a: a[:1] not in (["check"], ["figures"]) and "--debug" not in a
                and not (a[:1] == ["derive"] and len(a) == 1))


def _run(paths, argv, name):
    argv = [paths.resolve(a) for a in argv]
    count(f"fuzz examples: {name}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = call(argv)
    discrete = "discrete" in argv or any("discrete" in a for a in argv)
    stochastic = any(a.startswith(("--batch-size", "--label-noise")) for a in argv)
    record = "--save-trajectories" in argv
    known = [w for w in caught if known_bug(w, stochastic=stochastic, discrete=discrete, record=record)]
    for bug in sorted({known_bug(w, stochastic=stochastic, discrete=discrete, record=record) for w in known}):
        count(f"fuzz examples: hit a known bug, tolerated ({bug})")
    unexpected = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught if w not in known]
    assert not unexpected, (argv, unexpected)
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        count(f"fuzz examples: {name}, exit 2")
        assert out == "", (argv, out)
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("dln: error: ") and len(lines[0]) > len("dln: error: "), (argv, err)
    else:
        count(f"fuzz examples: {name}, exit 0")
        if argv[:1] in (["simulate"], ["predict"]) and any(a.startswith("--json") for a in argv) \
                and not any(a in ("--help", "-h") for a in argv):
            rec = json.loads(out)
            assert rec["status"] in STATUSES | {"max_iter", "failed"}, rec["status"]
            if argv[0] == "simulate" and rec["status"] != "diverged":
                assert all(math.isfinite(v) for v in rec["beta"]), argv
    return code


@budget(150)
@given(argv=_simulate_args())
def test_fuzz_simulate(fuzz_dir, argv):
    _run(Paths(fuzz_dir), argv, "simulate")


@budget(80)
@given(argv=_predict_args())
def test_fuzz_predict(fuzz_dir, argv):
    _run(Paths(fuzz_dir), argv, "predict")


@budget(120)
@given(argv=_sweep_args())
def test_fuzz_sweep(fuzz_dir, argv):
    _run(Paths(fuzz_dir), argv, "sweep")


@budget(50)
@given(argv=_merge_args())
def test_fuzz_merge(fuzz_dir, argv):
    _run(Paths(fuzz_dir), argv, "merge")


@budget(10)
@given(argv=_derive_args())
def test_fuzz_derive(fuzz_dir, argv):
    _run(Paths(fuzz_dir), argv, "derive")


@budget(30)
@given(argv=_top_args())
def test_fuzz_top_level(fuzz_dir, argv):
    _run(Paths(fuzz_dir), argv, "top level")


def test_help_of_every_subcommand_exits_0():
    for sub in ("simulate", "predict", "derive", "sweep", "merge", "check", "figures"):
        code, out, err = call([sub, "--help"])
        assert code == 0 and out.startswith("usage: dln " + sub), (sub, err)
    code, out, _ = call(["--version"])
    assert code == 0 and out.startswith("dln ")


def test_no_traceback_in_real_processes(fuzz_dir, tmp_path):
    """``python -m dln`` in real processes (two at a time): every subcommand's user errors are one line
    on stderr, exit code 2, no traceback; --help and --version exit 0."""
    cases = [
        (["simulate", "--n", "4", "--d", "8", "--k", "2", "--method", "sam", "--rho=-1"], 2),
        (["predict", "--data", fuzz_dir / "nan.npz", "--alpha", "nan"], 2),
        (["sweep", "--grid", fuzz_dir / "grid-bad.json", "--out", tmp_path / "o"], 2),
        (["merge", fuzz_dir / "s1", fuzz_dir / "other", "--out", tmp_path / "m"], 2),
    ]
    results = run_concurrently([args for args, _ in cases], tmp_path, timeout=60, parallel=2)
    for (args, want), (code, out, err) in zip(cases, results):
        assert code == want, (args, code, err)
        assert "Traceback" not in err, (args, err)
        if want == 2:
            assert out == "" and err.count("\n") == 1 and err.startswith("dln: error: "), (args, err)
        count("fuzz: subprocess runs of python -m dln")
