"""Reliability, determinism: the same command and seed give the same results.csv, byte for byte apart from the
``wall_time`` column, across executions, processes (with different hash seeds), ``--workers`` values
and shards.

tests/sweep/test_sweep_run.py checks this for a small grid of continuous-time GF/GR runs; the grid here
adds what can go wrong with randomness and batching: discrete time, mini-batch SGD and label noise
(per-run random streams), per-sample variants, normalized SAM, several seeds, a grid file with a union
of sub-grids, and batches of 3 runs.
"""
from __future__ import annotations

import json

import pytest

from reliability_helpers import call, count, run_module, subprocess_env

#: 2 seeds x (20 GD/flow runs + 8 SGD / label-noise runs) = 56 runs, in batches of at most 3 (the variant
#: reaches gr and sam only: gf runs once per cell).
GRID = [
    {"method": ["gf", "gr", "sam"], "gamma": [0.1], "rho": [0.2], "variant": ["full", "per-sample"],
     "alpha": [0.1, 1.0], "time": ["flow", "discrete"], "lr": [0.05]},
    {"method": ["gf", "fgr"], "gamma": [0.1], "eps": [0.1], "alpha": [0.5], "time": "discrete", "lr": [0.02, 0.05],
     "batch_size": [2], "label_noise": [0.0, 0.3]},
]
N_RUNS = 2 * ((1 + 2 + 2) * 2 * 2 + 2 * 2 * 2)
FLAGS = ["--n", "5", "--d", "10", "--k", "2", "--seeds", "2", "--max-steps", "40", "--rtol", "1e-6", "--chunk-size", "3",
         "--quiet"]


def _without_wall_time(path) -> list[bytes]:
    """The file's bytes, line by line, without the last field (wall_time: the only column allowed to
    differ).  No other field holds a comma, so this is exact."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data[:-1].split(b"\n")
    assert lines[0].endswith(b",wall_time")
    return [line.rsplit(b",", 1)[0] for line in lines]


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "grid.json"
    path.write_text(json.dumps(GRID))
    return path


@pytest.fixture(scope="module")
def reference(grid_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "ref"
    code, _, err = call(["sweep", "--grid", grid_file, *FLAGS, "--workers", "1", "--out", out])
    assert code == 0, err
    lines = _without_wall_time(out / "results.csv")
    assert len(lines) == 1 + N_RUNS
    text = b"\n".join(lines).decode()
    for status in ("converged", "max_steps"):
        assert status in text  # a mix of outcomes, not a trivially constant file
    return out


def test_same_command_in_fresh_processes_and_other_worker_counts(grid_file, reference, tmp_path):
    """Two more executions in new processes, with other hash seeds (set/dict order must not matter)
    and 2 or 1 workers: identical bytes."""
    want = _without_wall_time(reference / "results.csv")
    for hash_seed, workers in (("1", "2"), ("2", "1")):
        out = tmp_path / f"h{hash_seed}-w{workers}"
        res = run_module(["sweep", "--grid", grid_file, *FLAGS, "--workers", workers, "--out", out], cwd=tmp_path,
                         timeout=180, env=subprocess_env(PYTHONHASHSEED=hash_seed))
        assert res.returncode == 0, res.stderr
        assert _without_wall_time(out / "results.csv") == want
        count("determinism: identical sweeps (processes x worker counts)")


def test_shards_with_mixed_worker_counts_merge_to_the_same_bytes(grid_file, reference, tmp_path):
    dirs = []
    for i, workers in ((1, "2"), (2, "1"), (3, "2")):
        out = tmp_path / f"shard{i}"
        code, _, err = call(["sweep", "--grid", grid_file, *FLAGS, "--shard", f"{i}/3", "--workers", workers, "--out", out])
        assert code == 0, err
        dirs.append(out)
    merged = tmp_path / "merged"
    assert call(["merge", *dirs[::-1], "--out", merged, "--quiet"])[0] == 0
    assert _without_wall_time(merged / "results.csv") == _without_wall_time(reference / "results.csv")
    count("determinism: identical sweeps (processes x worker counts)")


@pytest.mark.parametrize("extra", [
    [],
    ["--method", "sam", "--variant", "per-sample", "--rho", "0.2"],
    ["--time", "discrete", "--lr", "0.05", "--batch-size", "2"],
    ["--time", "discrete", "--lr", "0.05", "--label-noise", "0.3"],
], ids=["gf-flow", "sam-per-sample", "sgd", "label-noise"])
def test_simulate_json_is_identical_for_the_same_seed(extra):
    args = ["simulate", "--n", "5", "--d", "10", "--k", "2", "--max-steps", "60", "--json", "--quiet", *extra]
    outputs = []
    for seed in ("4", "4", "5"):
        code, out, err = call([*args, "--seed", seed])
        assert code == 0 and err == "", err
        rec = json.loads(out)
        assert isinstance(rec.pop("wall_time"), float)  # the only key allowed to differ
        outputs.append(json.dumps(rec, sort_keys=True))
    assert outputs[0] == outputs[1]  # every other number, to the last bit (JSON floats are repr)
    assert json.loads(outputs[2])["beta"] != json.loads(outputs[0])["beta"]  # the seed is used
    count("determinism: identical simulate --json pairs")


def test_root_seed_changes_the_numbers_but_not_the_runs(grid_file, reference, tmp_path):
    """--root-seed is the sweep's only source of entropy: another value gives other data and so other
    numbers, for the same list of runs."""
    out = tmp_path / "root1"
    code, _, err = call(["sweep", "--grid", grid_file, *FLAGS, "--root-seed", "1", "--shard", "1/8", "--workers", "1",
                         "--out", out])
    assert code == 0, err
    got = {line.split(b",", 1)[0]: line for line in _without_wall_time(out / "results.csv")[1:]}
    want = {line.split(b",", 1)[0]: line for line in _without_wall_time(reference / "results.csv")[1:]}
    assert got and set(got) <= set(want)
    assert all(got[k].split(b",")[:20] == want[k].split(b",")[:20] for k in got)  # same run ids and keys
    assert any(got[k] != want[k] for k in got)
