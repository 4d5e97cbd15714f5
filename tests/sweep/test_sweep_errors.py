"""Every invalid grid, flag or folder: one line ``dln: error: …`` on stderr, exit code 2, nothing run."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from sweep_helpers import SMALL, run_cli
from dln.cli import main
from dln.errors import DLNError
from dln.sweep import sweep

BASE = ["--n", "10", "--d", "20", "--quiet"]

#: (id, extra arguments, text the message must contain)
GRID_ERRORS = [
    ("rho-with-gf-gr", ["--method", "gf", "gr", "--gamma", "0.1", "--rho", "0.1"], "'rho'"),
    ("gamma-with-gf", ["--method", "gf", "--gamma", "0.1"], "'gamma'"),
    ("eps-with-gr", ["--method", "gr", "--gamma", "0.1", "--eps", "0.1"], "'eps'"),
    ("flood-level-with-gf", ["--method", "gf", "--flood-level", "0.1"], "'flood_level'"),
    ("rho-with-usam-missing", ["--method", "usam"], "'rho'"),
    ("gamma-missing", ["--method", "gr"], "given for gr"),
    ("eps-missing", ["--method", "fgr", "--gamma", "0.1"], "'eps'"),
    ("flood-level-missing", ["--method", "gf", "flood"], "'flood_level'"),
    ("alpha-zero", ["--alpha", "0"], "> 0"),
    ("alpha-negative", ["--alpha", "0.1", "-1"], "Got -1.0"),
    ("alpha-nan", ["--alpha", "nan"], "finite"),
    ("alpha-inf", ["--alpha", "inf"], "finite"),
    ("alpha-not-a-number", ["--alpha", "abc"], "alpha"),
    ("alpha-duplicate", ["--alpha", "0.1", "0.1"], "distinct"),
    ("gamma-negative", ["--method", "gr", "--gamma", "-0.1"], ">= 0"),
    ("eps-zero", ["--method", "fgr", "--gamma", "0.1", "--eps", "0"], "'eps'"),
    ("rho-zero", ["--method", "sam", "--rho", "0"], "'rho'"),
    ("flood-level-negative", ["--method", "flood", "--flood-level", "-1"], "'flood_level'"),
    ("lr-with-flow", ["--lr", "0.1"], "'lr'"),
    ("batch-size-with-flow", ["--batch-size", "2"], "'batch_size'"),
    ("label-noise-with-flow", ["--label-noise", "0.1"], "'label_noise'"),
    ("discrete-without-lr", ["--time", "discrete"], "'lr'"),
    ("lr-zero", ["--time", "discrete", "--lr", "0"], "'lr'"),
    ("batch-size-zero", ["--time", "discrete", "--lr", "0.1", "--batch-size", "0"], "'batch_size'"),
    ("batch-size-above-n", ["--time", "discrete", "--lr", "0.1", "--batch-size", "11"], "<= n = 10"),
    ("label-noise-negative", ["--time", "discrete", "--lr", "0.1", "--label-noise", "-1"], "'label_noise'"),
    ("time-unknown", ["--time", "sometimes"], "time"),
    ("method-unknown", ["--method", "adam"], "method"),
    ("variant-unknown", ["--variant", "half"], "variant"),
    ("design-unknown", ["--design", "fancy"], "design"),
    ("flood-per-sample", ["--method", "flood", "--flood-level", "0", "--variant", "per-sample"], "'variant'"),
    ("per-sample-depth-3", ["--variant", "per-sample", "--depth", "3"], "'variant'"),
    ("depth-1", ["--depth", "1"], "'depth'"),
    ("rtol-zero", ["--rtol", "0"], "'rtol'"),
    ("max-steps-zero", ["--max-steps", "0"], "'max_steps'"),
    ("seeds-zero", ["--seeds", "0"], "'seeds'"),
    ("seeds-not-int", ["--seeds", "two"], "'seeds'"),
    ("seeds-and-seed", ["--seeds", "2", "--seed", "0", "1"], "'seeds'"),
    ("seed-negative", ["--seed", "-1"], "'seed'"),
    ("seed-duplicate", ["--seed", "1", "1"], "distinct"),
    ("n-zero", ["--n", "0"], "'n'"),
    ("d-zero", ["--d", "0"], "'d'"),
    ("k-zero", ["--k", "0"], "'k'"),
    ("k-above-d", ["--k", "21"], "'k'"),
    ("noise-negative", ["--noise", "-0.5"], "'noise'"),
    ("geom-and-list", ["--alpha", "0.1", "--alpha-geom", "0.01", "1", "3"], "'alpha_geom'"),
    ("geom-start-zero", ["--alpha-geom", "0", "1", "3"], "> 0"),
    ("geom-num-zero", ["--alpha-geom", "0.01", "1", "0"], ">= 1"),
    ("geom-num-fraction", ["--alpha-geom", "0.01", "1", "2.5"], "integer"),
    ("geom-two-values", ["--alpha-geom", "0.01", "1"], "alpha-geom"),
    ("geom-empty-range", ["--alpha-geom", "0.1", "0.1", "3"], "START != STOP"),
    ("geom-not-a-number", ["--gamma-geom", "a", "1", "3", "--method", "gr"], "'gamma_geom'"),
    ("workers-zero", ["--workers", "0"], "'workers'"),
    ("workers-not-int", ["--workers", "two"], "'workers'"),
    ("chunk-size-zero", ["--chunk-size", "0"], "'chunk_size'"),
    ("root-seed-negative", ["--root-seed", "-1"], "'root_seed'"),
    ("unknown-flag", ["--frobnicate", "3"], "unrecognized"),
    ("too-many-runs", ["--seeds", "1000000000"], "at most 10,000,000 runs"),
] + [(f"shard-{s}", ["--shard", s], "shard") for s in ("0/3", "4/3", "1/0", "3", "a/b", "1/3/4", "-1/3", "")]


@pytest.mark.parametrize("extra, text", [c[1:] for c in GRID_ERRORS], ids=[c[0] for c in GRID_ERRORS])
def test_invalid_grid_is_one_line_exit_2_and_nothing_runs(tmp_path, capsys, extra, text):
    out = tmp_path / "out"
    code = main(["sweep", *BASE, "--out", str(out), *extra])
    cap = capsys.readouterr()
    assert code == 2
    assert cap.out == ""
    lines = cap.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dln: error: "), cap.err
    assert text in lines[0]
    assert not out.exists()  # validated before anything was written


def _error(capsys, args):
    code = main(args)
    cap = capsys.readouterr()
    lines = cap.err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dln: error: "), (code, cap.err)
    return lines[0]


def test_missing_out_is_an_error(capsys):
    assert "--out" in _error(capsys, ["sweep", *BASE])


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert "'out'" in _error(capsys, ["sweep", *BASE, "--out", str(f)])
    assert "'out'" in _error(capsys, ["sweep", *BASE, "--out", str(f / "below")])


def test_out_not_writable(capsys):
    assert "writable" in _error(capsys, ["sweep", *BASE, "--out", "/proc/dln-sweep-test/out"])


def test_existing_results_need_resume(reference, tmp_path, capsys):
    out = shutil.copytree(reference, tmp_path / "out")
    before = (out / "results.csv").read_bytes()
    assert "--resume" in _error(capsys, ["sweep", *SMALL, "--quiet", "--out", str(out)])
    assert (out / "results.csv").read_bytes() == before


def test_resume_with_another_grid_or_shard(reference, tmp_path, capsys):
    out = shutil.copytree(reference, tmp_path / "out")
    before = (out / "results.csv").read_bytes()
    other = [a if a != "1" else "2" for a in SMALL]  # alpha 0.1 2 instead of 0.1 1
    assert "fingerprint" in _error(capsys, ["sweep", *other, "--quiet", "--resume", "--out", str(out)])
    assert "fingerprint" in _error(capsys, ["sweep", *SMALL, "--max-steps", "50", "--quiet", "--resume", "--out", str(out)])
    assert "'shard'" in _error(capsys, ["sweep", *SMALL, "--shard", "1/2", "--quiet", "--resume", "--out", str(out)])
    assert (out / "results.csv").read_bytes() == before


def test_resume_results_without_config(reference, tmp_path, capsys):
    out = shutil.copytree(reference, tmp_path / "out")
    os.remove(out / "config.json")
    assert "config.json" in _error(capsys, ["sweep", *SMALL, "--quiet", "--resume", "--out", str(out)])
    (out / "config.json").write_text("{not json")
    assert "config.json" in _error(capsys, ["sweep", *SMALL, "--quiet", "--resume", "--out", str(out)])


def test_resume_results_with_foreign_header(reference, tmp_path, capsys):
    out = shutil.copytree(reference, tmp_path / "out")
    (out / "results.csv").write_text("a,b,c\n1,2,3\n")
    assert "columns" in _error(capsys, ["sweep", *SMALL, "--quiet", "--resume", "--out", str(out)])


# -- data files ---------------------------------------------------------------------------------
def test_data_errors(tmp_path, capsys):
    from dln.problem import make_problem, save_problem

    good = tmp_path / "good.npz"
    save_problem(good, make_problem(n=6, d=8, k=2, seed=0))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    nan = tmp_path / "nan.npz"
    np.savez(nan, X=np.full((3, 4), np.nan), y=np.ones(3))
    out = str(tmp_path / "out")
    assert "'data'" in _error(capsys, ["sweep", "--data", str(tmp_path / "missing.npz"), "--out", out])
    assert "'data'" in _error(capsys, ["sweep", "--data", str(bad), "--out", out])
    assert "finite" in _error(capsys, ["sweep", "--data", str(nan), "--out", out])
    assert "'n'" in _error(capsys, ["sweep", "--data", str(good), "--n", "10", "--out", out])
    assert "'seeds'" in _error(capsys, ["sweep", "--data", str(good), "--seeds", "2", "--out", out])
    assert "<= n = 6" in _error(capsys, ["sweep", "--data", str(good), "--time", "discrete", "--lr", "0.1",
                                         "--batch-size", "7", "--out", out])
    assert not os.path.exists(out)


# -- grid files ---------------------------------------------------------------------------------
GRID_FILE_ERRORS = [
    ("not-json", "{alpha: [0.1]", "JSON"),
    ("empty-list", "[]", "'grid'"),
    ("a-string", '"alpha"', "'grid'"),
    ("a-list-of-numbers", "[1, 2]", "'grid'"),
    ("unknown-key", '{"alpha": [0.1], "beta": [1]}', "'beta'"),
    ("wrong-type", '{"alpha": "big"}', "'alpha'"),
    ("bool-value", '{"alpha": true}', "'alpha'"),
    ("null-value", '{"alpha": null}', "'alpha'"),
    ("empty-values", '{"alpha": []}', "'alpha'"),
    ("seeds-list", '{"seeds": [1, 2]}', "'seeds'"),
    ("key-twice", '{"flood_level": [0.1], "flood-level": [0.2], "method": "flood"}', "'flood_level'"),
    ("geom-and-list", '{"alpha": [0.1], "alpha_geom": [0.01, 1, 3]}', "'alpha_geom'"),
    ("geom-shape", '{"alpha_geom": [0.01, 1]}', "'alpha_geom'"),
    ("settings-disagree", '[{"method": "gf", "depth": 2}, {"method": "gr", "gamma": 0.1, "depth": 3}]', "'depth'"),
    ("overlapping-sub-grids", '[{"alpha": [0.1, 1]}, {"alpha": [1]}]', "distinct runs"),
    ("inapplicable-in-sub-grid", '[{"method": "gf"}, {"method": "gf", "gamma": 0.1}]', "'gamma'"),
    ("invalid-method", '{"method": ["gf", "sgd"]}', "'method'"),
    ("data-not-a-path", '{"data": 3}', "'data'"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in GRID_FILE_ERRORS], ids=[c[0] for c in GRID_FILE_ERRORS])
def test_malformed_grid_file(tmp_path, capsys, text, message):
    f = tmp_path / "grid.json"
    f.write_text(text)
    out = tmp_path / "out"
    assert message in _error(capsys, ["sweep", *BASE, "--grid", str(f), "--out", str(out)])
    assert not out.exists()


def test_grid_file_missing_or_conflicting_with_flags(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert "'grid'" in _error(capsys, ["sweep", *BASE, "--grid", str(tmp_path / "nope.json"), "--out", out])
    f = tmp_path / "grid.json"
    f.write_text(json.dumps({"alpha": [0.1, 1.0], "rtol": 1e-6}))
    assert "given once" in _error(capsys, ["sweep", *BASE, "--grid", str(f), "--alpha", "0.5", "--out", out])
    assert "given once" in _error(capsys, ["sweep", *BASE, "--grid", str(f), "--alpha-geom", "0.1", "1", "2",
                                           "--out", out])
    assert "given once" in _error(capsys, ["sweep", *BASE, "--grid", str(f), "--rtol", "1e-5", "--out", out])
    d = tmp_path / "dir.json"
    d.mkdir()
    assert "'grid'" in _error(capsys, ["sweep", *BASE, "--grid", str(d), "--out", out])


# -- merge ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("merge-errors")
    dirs = []
    for i in (1, 2):
        out = base / f"s{i}"
        assert main(["sweep", *SMALL, "--shard", f"{i}/2", "--workers", "1", "--quiet", "--out", str(out)]) == 0
        dirs.append(out)
    return base, dirs


def test_merge_errors(shards, tmp_path, capsys):
    base, (s1, s2) = shards
    out = str(tmp_path / "merged")
    assert "'dirs'" in _error(capsys, ["merge", str(tmp_path / "nope"), "--out", out])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "'dirs'" in _error(capsys, ["merge", str(s1), str(empty), "--out", out])
    assert "run" in _error(capsys, ["merge", str(s1), str(s1), "--out", out])  # overlapping
    assert "missing" in _error(capsys, ["merge", str(s1), "--out", out])
    other = tmp_path / "other"
    assert main(["sweep", *SMALL, "--root-seed", "3", "--shard", "2/2", "--workers", "1", "--quiet", "--out", str(other)]) == 0
    assert "fingerprint" in _error(capsys, ["merge", str(s1), str(other), "--out", out])
    f = tmp_path / "file"
    f.write_text("")
    assert "'out'" in _error(capsys, ["merge", str(s1), str(s2), "--out", str(f)])
    assert "'out'" in _error(capsys, ["merge", str(s1), str(s2), "--out", str(s1)])  # holds a sweep
    assert "--out" in _error(capsys, ["merge", str(s1), str(s2)])
    assert not os.path.exists(out)


# -- the Python API raises the same errors --------------------------------------------------------
@pytest.mark.parametrize("kwargs, text", [
    (dict(method="gf", rho=0.1), "'rho'"),
    (dict(method="gr"), "'gamma'"),
    (dict(alpha=[0.1, -1]), "'alpha'"),
    (dict(shard="2/1"), "'shard'"),
    (dict(workers=0), "'workers'"),
    (dict(grid={"alpha": 0.1}, alpha=1.0), "given once"),
    (dict(bogus=1), "'grid'"),
])
def test_api_errors(kwargs, text):
    with pytest.raises(DLNError, match=text):
        sweep(**{"n": 10, "d": 20, **kwargs})


def test_no_traceback_in_a_real_process(tmp_path):
    res = run_cli(["sweep", "--method", "gf", "gr", "--gamma", "0.1", "--rho", "0.1", "--out", tmp_path / "o"], cwd=tmp_path)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.startswith("dln: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli(["sweep", "--shard", "9/2", "--out", tmp_path / "o"], cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
