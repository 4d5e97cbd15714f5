"""One record, three places: ``simulate --json``, ``dln.simulate()`` and a sweep's results.csv have the
same keys (docs/design.md §5), and the run and data keys hold the same values for the same run."""
from __future__ import annotations

import json

import numpy as np
import pytest

import dln
from cli_helpers import TINY, assert_user_error, call
from dln.errors import DLNError
from dln.grid import KEY_COLUMNS
from dln.simulate import RUN_KEYS
from dln.sweep_io import COLUMNS

SWEEP_ONLY = {"run", "run_id"}
#: simulate --json adds the arrays (contract keys beta, alpha_eff, prediction; log_c and tilt for
#: dln predict --from-run)
JSON_ONLY = {"beta", "alpha_eff", "prediction", "log_c", "tilt"}


def public(rec):
    return [k for k in rec if not k.startswith("_")]


@pytest.mark.parametrize("flags", [["--method", "gr", "--gamma", "0.05"],
                                   ["--time", "discrete", "--lr", "0.1", "--batch-size", "2"]], ids=["flow", "sgd"])
def test_key_sets_agree(flags):
    code, out, err = call(["simulate", *TINY, "--seed", "3", *flags, "--json", "--quiet"])
    assert code == 0, err
    js = json.loads(out)
    P = dln.make_problem(n=6, d=12, k=2, seed=3)
    kw = dict(zip(flags[::2], flags[1::2]))
    rec = dln.simulate(P, kw.get("--method", "gf"), gamma=float(kw["--gamma"]) if "--gamma" in kw else None,
                       time=kw.get("--time", "flow"), lr=float(kw["--lr"]) if "--lr" in kw else None,
                       batch_size=int(kw["--batch-size"]) if "--batch-size" in kw else None, seed=3)[0]
    assert public(rec) == [c for c in COLUMNS if c not in SWEEP_ONLY]  # same keys, same order
    assert set(js) == set(public(rec)) | JSON_ONLY
    assert set(RUN_KEYS) == set(KEY_COLUMNS)
    # the CLI run is the Python run: same data (seed 3), same record
    for key in public(rec):
        if key != "wall_time":
            assert js[key] == rec[key], key
    np.testing.assert_array_equal(js["beta"], rec["_beta"])
    np.testing.assert_array_equal(js["log_c"], rec["_log_c"])
    assert (js["n"], js["d"], js["k"], js["noise"], js["design"], js["seed"], js["data"]) == (6, 12, 2, 0.0, "gaussian",
                                                                                              3, None)


def test_run_keys_hold_the_values_results_csv_has(tmp_path):
    """A one-run sweep and simulate() on the same settings write the same run and data keys."""
    grid = dict(method="fgr", gamma=0.05, eps=0.1, alpha=0.2, time="discrete", lr=0.1, batch_size=2, n=6, d=12,
                k=2, noise=0.01, design="rademacher", seed=[0])
    swept = dln.sweep(grid, workers=1, quiet=True, max_steps=20)
    assert len(swept) == 1
    P = dln.make_problem(n=6, d=12, k=2, noise=0.01, design="rademacher", seed=0)
    rec = dln.simulate(P, "fgr", gamma=0.05, eps=0.1, alpha=0.2, time="discrete", lr=0.1, batch_size=2,
                       max_steps=20)[0]
    for key in RUN_KEYS:
        assert rec[key] == swept[0][key], (key, rec[key], swept[0][key])
    assert set(public(rec)) == set(swept[0]) - SWEEP_ONLY


def test_data_file_keys(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 8))
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=X[:, 0])
    rec = dln.simulate(dln.load_problem(path), "gf", time="discrete", lr=0.1, label_noise=0.1, seed=7, max_steps=5)[0]
    assert (rec["data"], rec["n"], rec["d"], rec["k"], rec["noise"], rec["design"]) == (str(path), 5, 8, None, None, None)
    assert rec["seed"] == 7  # with a data file, the seed of the run's randomness (as in a sweep over a file)
    assert rec["label_noise"] == 0.1 and rec["batch_size"] is None


def test_label_noise_is_none_unless_given():
    P = dln.make_problem(n=6, d=12, k=2, seed=0)
    rec = dln.simulate(P, "gf", time="discrete", lr=0.1, max_steps=5)[0]
    assert rec["label_noise"] is None and rec["time"] == "discrete"


@pytest.mark.parametrize("method, extra", [("gf", {}), ("flood", dict(flood_level=0.01))])
def test_per_sample_variant_is_an_error_where_it_does_not_apply(method, extra):
    P = dln.make_problem(n=6, d=12, k=2, seed=0)
    with pytest.raises(DLNError, match=rf"'variant' parameter of {method} must be 'full'"):
        dln.simulate(P, method, variant="per-sample", max_steps=5, **extra)
    with pytest.raises(DLNError, match=r"'variant' parameter of gf must be 'full'"):
        dln.DiagonalLinearNetwork(variant="per-sample", max_steps=5).fit(P.X, P.y)
    flags = ["--flood-level", "0.01"] if extra else []
    assert_user_error(*call(["simulate", *TINY, "--method", method, "--variant", "per-sample", *flags]),
                      "'variant'", method, "per-sample")
