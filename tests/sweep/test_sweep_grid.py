"""Grid expansion, applicability rules, grid order, chunks, shards, seeds and fingerprints."""
from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest

from dln.errors import DLNError
from dln.grid import KEY_COLUMNS, build_plan, load_grid
from dln.workers import _problem


def plan(**grid):
    settings = {k: grid.pop(k) for k in ("depth", "rtol", "max_steps", "root_seed", "chunk_size") if k in grid}
    shard = grid.pop("shard", None)
    return build_plan(grid, settings, shard)


def test_hyper_parameters_reach_only_the_methods_that_use_them():
    p = plan(method=["gf", "gr", "fgr"], alpha=[0.01, 0.1, 1], gamma=[0.05, 0.1], eps=[0.1], seeds=2, n=[20], d=[40])
    by = {}
    for r in p.runs:
        by.setdefault(r["method"], []).append(r)
    assert len(by["gf"]) == 3 * 2  # once per alpha and seed: gamma does not multiply gf
    assert len(by["gr"]) == 3 * 2 * 2
    assert len(by["fgr"]) == 3 * 2 * 1 * 2
    assert len(p.runs) == 30
    assert all(r["gamma"] is None and r["eps"] is None for r in by["gf"])
    assert all(r["gamma"] is not None and r["eps"] is None for r in by["gr"])
    assert all(r["gamma"] is not None and r["eps"] == 0.1 for r in by["fgr"])
    assert all(r[c] is None for r in p.runs for c in ("rho", "flood_level", "lr", "batch_size", "label_noise", "data"))
    assert [r["run"] for r in p.runs] == list(range(30))
    assert set(KEY_COLUMNS) <= set(p.runs[0])


def test_grid_order_is_the_nested_product():
    p = plan(method=["gr", "gf"], alpha=[1.0, 0.1], gamma=[0.2, 0.1], seed=[3, 1], n=[10], d=[20])
    got = [(r["seed"], r["method"], r["alpha"], r["gamma"]) for r in p.runs]
    want = []
    for seed, method in product([3, 1], ["gr", "gf"]):
        for alpha in [1.0, 0.1]:
            for gamma in ([0.2, 0.1] if method == "gr" else [None]):
                want.append((seed, method, alpha, gamma))
    assert got == want


def test_data_cells_are_outermost_and_time_axes_apply_to_discrete_only():
    p = plan(method=["gf"], alpha=[0.5], time=["flow", "discrete"], lr=[0.1, 0.2], batch_size=[2], label_noise=[0.0, 0.1],
             n=[10, 12], d=[20], k=[2])
    cells = [(r["n"], r["time"], r["lr"], r["batch_size"], r["label_noise"]) for r in p.runs]
    want = []
    for n in (10, 12):
        want.append((n, "flow", None, None, None))
        want += [(n, "discrete", lr, 2, ln) for lr in (0.1, 0.2) for ln in (0.0, 0.1)]
    assert cells == want


def test_gf_and_flood_run_full_only_and_variants_multiply_the_rest():
    # like a hyper-parameter, the variant reaches only the methods that use it (docs/design.md §5)
    p = plan(method=["gf", "gr", "flood"], variant=["full", "per-sample"], gamma=[0.1], flood_level=[0.0, 0.01],
             alpha=[0.1], n=[10], d=[20])
    assert [(r["method"], r["variant"], r["flood_level"]) for r in p.runs] == [
        ("gf", "full", None), ("gr", "full", None), ("gr", "per-sample", None),
        ("flood", "full", 0.0), ("flood", "full", 0.01)]
    assert len(p.runs) == 5


@pytest.mark.parametrize("grid", [dict(method=["gf"]), dict(method=["gf", "flood"], flood_level=[0.0])])
def test_per_sample_without_a_method_that_uses_it_is_an_error(grid):
    with pytest.raises(DLNError, match=r"'variant' parameter of sweep must be 'full' with gf"):
        plan(**grid, variant=["full", "per-sample"], alpha=[0.1], n=[10], d=[20])


def test_geometric_ranges():
    p = plan(alpha_geom=[1e-4, 10, 25], n=[10], d=[20])
    assert [r["alpha"] for r in p.runs] == [float(x) for x in np.geomspace(1e-4, 10, 25)]
    assert plan(alpha_geom=[0.5, 0.5, 1], n=[10], d=[20]).runs[0]["alpha"] == 0.5


def test_union_of_sub_grids_and_the_grid_file(tmp_path):
    grid = [dict(method="gr", gamma=[0.1, 0.2], alpha=0.1), dict(method="fgr", gamma=0.1, eps=[0.01, 0.1], alpha=0.1)]
    for g in grid:
        g.update(n=10, d=20)
    p = build_plan(grid)
    assert [(r["method"], r["gamma"], r["eps"]) for r in p.runs] == [
        ("gr", 0.1, None), ("gr", 0.2, None), ("fgr", 0.1, 0.01), ("fgr", 0.1, 0.1)]
    f = tmp_path / "grid.json"
    f.write_text(json.dumps(grid))
    assert build_plan(load_grid(f)).fingerprint == p.fingerprint
    # the same grid, keys written with dashes and in another order
    f.write_text(json.dumps({"d": 20, "n": [10], "gamma": [0.05], "method": ["gr"], "max-steps": 100}))
    assert build_plan(load_grid(f)).fingerprint == plan(method=["gr"], gamma=[0.05], n=[10], d=[20],
                                                        max_steps=100).fingerprint


def test_flow_chunks_partition_the_runs_by_dataset_only():
    """Flow runs of one dataset form one heterogeneous batch (methods mixed), split into near-equal
    chunks of at most chunk_size consecutive runs; discrete runs stay per method."""
    p = plan(method=["gf", "gr"], alpha=[0.01, 0.1, 1], gamma=[0.05, 0.1, 0.2], seeds=2, n=[10], d=[20], chunk_size=4)
    seen = sorted(i for c in p.chunks for i in c)
    assert seen == list(range(len(p.runs)))
    for c in p.chunks:
        assert 1 <= len(c) <= 4
        assert len({(p.runs[i]["seed"], p.runs[i]["time"]) for i in c}) == 1
    # 12 runs per seed (3 gf + 9 gr) -> 3 chunks of 4 consecutive runs: the first mixes gf and gr
    assert sorted(len(c) for c in p.chunks) == [4] * 6
    assert p.chunks[0] == [0, 1, 2, 3] and {p.runs[i]["method"] for i in p.chunks[0]} == {"gf", "gr"}
    # without chunk_size: one batch per dataset (memory permitting)
    q = plan(method=["gf", "gr"], alpha=[0.01, 0.1, 1], gamma=[0.05, 0.1, 0.2], seeds=2, n=[10], d=[20])
    assert sorted(len(c) for c in q.chunks) == [12, 12]
    # discrete time: per method and variant, consecutive runs
    r = plan(method=["gf", "gr"], alpha=[0.01, 0.1, 1], gamma=[0.05, 0.1, 0.2], n=[10], d=[20], time=["discrete"],
             lr=[0.01], chunk_size=4)
    for c in r.chunks:
        assert len({p.runs[i]["method"] for i in c}) == 1 and c == list(range(c[0], c[0] + len(c)))


def test_flow_chunk_limit_bounds_memory():
    from dln.grid import FLOW_MEMORY, flow_chunk_limit

    assert flow_chunk_limit(60, 200) * 8 * 3 * 60 * 60 <= FLOW_MEMORY
    assert flow_chunk_limit(1000, 10_000) < flow_chunk_limit(60, 200)
    assert flow_chunk_limit(10**5, 10**6) == 1


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7, 50])
def test_shards_partition_the_chunks(n_shards):
    base = dict(method=["gf", "gr"], alpha=[0.01, 0.1, 1], gamma=[0.05, 0.1], seeds=3, n=[10], d=[20], chunk_size=2)
    full = plan(**base)
    got = []
    for i in range(1, n_shards + 1):
        s = plan(**base, shard=f"{i}/{n_shards}")
        assert s.fingerprint == full.fingerprint
        got += [r for j in s.shard_chunks for r in s.chunks[j]]
    assert sorted(got) == list(range(len(full.runs)))


def test_adding_grid_values_keeps_the_data_and_ids_of_the_other_cells():
    a = plan(method=["gf"], alpha=[0.1], seeds=2, n=[10], d=[20])
    b = plan(method=["gf", "gr"], gamma=[0.1], alpha=[0.01, 0.1], seeds=3, n=[12, 10], d=[20])
    ids_b = {r["run_id"]: r for r in b.runs}
    for r in a.runs:
        assert r["run_id"] in ids_b  # the same run has the same stable id in both grids
    for seed in (0, 1):
        ta = next(t for t in a.tasks.values() if a.runs[t["runs"][0]]["seed"] == seed)
        tb = next(t for t in b.tasks.values()
                  if b.runs[t["runs"][0]]["seed"] == seed and b.runs[t["runs"][0]]["n"] == 10)
        assert ta["data_seed"] == tb["data_seed"]
        Pa, Pb = _problem(ta["problem"], ta["data_seed"]), _problem(tb["problem"], tb["data_seed"])
        assert np.array_equal(Pa.X, Pb.X) and np.array_equal(Pa.beta_star, Pb.beta_star)
    # different seeds and different cells get different data
    t0, t1 = a.tasks[0], a.tasks[1]
    assert not np.array_equal(_problem(t0["problem"], t0["data_seed"]).X, _problem(t1["problem"], t1["data_seed"]).X)


def test_root_seed_changes_the_data_and_the_fingerprint():
    a = plan(method=["gf"], n=[10], d=[20])
    b = plan(method=["gf"], n=[10], d=[20], root_seed=7)
    ta, tb = a.tasks[0], b.tasks[0]
    assert not np.array_equal(_problem(ta["problem"], ta["data_seed"]).X, _problem(tb["problem"], tb["data_seed"]).X)
    assert a.fingerprint != b.fingerprint
    assert a.runs[0]["run_id"] == b.runs[0]["run_id"]


@pytest.mark.parametrize("change", [dict(rtol=1e-7), dict(chunk_size=3), dict(max_steps=10), dict(depth=3),
                                    dict(alpha=[0.1, 2.0])])
def test_fingerprint_covers_settings_and_values(change):
    base = dict(method=["gf"], alpha=[0.1, 1.0], n=[10], d=[20])
    assert plan(**base).fingerprint != plan(**{**base, **change}).fingerprint


def test_run_ids_are_stable_across_sessions():
    # A regression guard: the id hashes the key columns (sha256), never Python's salted hash().
    p = plan(method=["gf"], alpha=[0.01], n=[20], d=[40])
    assert p.runs[0]["run_id"] == "rf4a45d902ad18732"


def test_stochastic_runs_get_one_seed_each():
    p = plan(method=["gf"], time=["discrete"], lr=[0.1, 0.2], batch_size=[2], alpha=[0.5], seeds=1, n=[10], d=[20])
    task = p.tasks[0]
    assert len(task["seeds"]) == 2 and len(set(task["seeds"])) == 2
    det = plan(method=["gf"], time=["discrete"], lr=[0.1], alpha=[0.5], n=[10], d=[20])
    assert det.tasks[0]["seeds"] is None  # plain GD: no randomness


def test_data_file_cell(tmp_path):
    from dln.problem import make_problem, save_problem

    f = tmp_path / "data.npz"
    P = make_problem(n=8, d=12, k=2, seed=3)
    save_problem(f, P)
    p = plan(method=["gf"], alpha=[0.1, 1.0], data=str(f))
    assert [(r["data"], r["n"], r["d"], r["k"], r["seed"]) for r in p.runs] == [(str(f), 8, 12, None, 0)] * 2
    assert list(p.data_files) == [str(f)]
    # with stochastic runs, seeds give independent mini-batch draws on the same data
    q = plan(method=["gf"], time=["discrete"], lr=[0.1], batch_size=[2], seeds=2, data=str(f))
    assert len(q.runs) == 2
    with pytest.raises(DLNError, match="'seeds'"):
        plan(method=["gf"], seeds=2, data=str(f))


def test_chunk_size_help_states_the_defaults_the_plan_applies(capsys):
    """``dln sweep --help`` said "(default 32)" for --chunk-size although flow runs are batched one
    dataset at a time: the help must state both defaults, and the plan must apply them (40 runs:
    one flow batch; 40 discrete GD runs: two batches of 20, at most DISCRETE_CHUNK = 32 each)."""
    from dln.cli import main

    try:
        code = main(["sweep", "--help"])
    except SystemExit as exc:
        code = exc.code
    assert code in (0, None)
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 32)" not in text
    assert "continuous-time runs of one dataset in one batch" in text and "at most 32" in text
    alphas = list(np.geomspace(1e-3, 1, 40))
    flow = plan(method=["gf"], alpha=alphas, n=[10], d=[20])
    assert [len(c) for c in flow.chunks] == [40]
    gd = plan(method=["gf"], alpha=alphas, n=[10], d=[20], time=["discrete"], lr=[0.01])
    assert [len(c) for c in gd.chunks] == [20, 20]


def test_momentum_is_a_discrete_axis_with_default_zero_and_ids_hashed_only_off_it():
    """--momentum multiplies the discrete runs only (flow runs record None); a discrete run without it
    has momentum 0.0 and the run id of the same grid written before the column existed (the frozen
    folder tests/sweep/data/legacy-v1 checks those ids), and μ > 0 changes the id."""
    p = plan(method=["gf"], alpha=[0.5], time=["flow", "discrete"], lr=[0.1], momentum=[0.0, 0.9], n=[10], d=[20],
             k=[2])
    assert [(r["time"], r["momentum"]) for r in p.runs] == [("flow", None), ("discrete", 0.0), ("discrete", 0.9)]
    q = plan(method=["gf"], alpha=[0.5], time=["flow", "discrete"], lr=[0.1], n=[10], d=[20], k=[2])
    assert [r["momentum"] for r in q.runs] == [None, 0.0]
    assert [r["run_id"] for r in q.runs] == [r["run_id"] for r in p.runs[:2]]
    assert p.runs[2]["run_id"] not in {r["run_id"] for r in q.runs}
    task = p.tasks[[j for j, c in enumerate(p.chunks) if 2 in c][0]]
    assert task["momentum"] == [0.0, 0.9]  # one batch: the heavy-ball rule takes a momentum per run
    with pytest.raises(DLNError, match=r"'momentum' parameter of sweep must be given only with --time discrete"):
        plan(alpha=[0.5], momentum=[0.5], n=[10], d=[20], k=[2])
    with pytest.raises(DLNError, match=r"'momentum' parameter of sweep must be < 1.0. Got 1.0"):
        plan(alpha=[0.5], time=["discrete"], lr=[0.1], momentum=[1.0], n=[10], d=[20], k=[2])


def test_sweep_with_momentum_writes_the_column_and_equals_simulate(tmp_path):
    from dln.simulate import simulate
    from dln.sweep import sweep
    from dln.workers import _problem

    import dln

    recs = sweep(method=["gf"], alpha=[0.1], time=["discrete"], lr=[0.05], momentum=[0.0, 0.5], n=[10], d=[20],
                 k=[2], out=tmp_path / "m", workers=1, quiet=True, save_trajectories=True)
    traj = dln.load_trajectory(tmp_path / "m" / "trajectories" / "chunk-00000.npz")
    assert [r["momentum"] for r in traj.runs] == [0.0, 0.5]
    header = (tmp_path / "m" / "results.csv").read_text().splitlines()[0].split(",")
    assert "momentum" in header and [r["momentum"] for r in recs] == [0.0, 0.5]
    p = plan(method=["gf"], alpha=[0.1], time=["discrete"], lr=[0.05], momentum=[0.0, 0.5], n=[10], d=[20], k=[2])
    P = _problem(p.tasks[0]["problem"], p.tasks[0]["data_seed"])
    for r in recs:
        one, = simulate(P, "gf", alpha=0.1, time="discrete", lr=0.05, momentum=r["momentum"])
        assert one["steps"] == r["steps"] and abs(one["l1_norm"] - r["l1_norm"]) <= 1e-12 * one["l1_norm"]
