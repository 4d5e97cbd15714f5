"""Reliability: sizes.  A problem, a data file or a sweep too large for the memory is a one-line error
naming the parameter before anything is allocated (dln/memory.py; the limit is DLN_MAX_MEMORY, by default
80% of the memory this process may use), never a MemoryError traceback or the OOM killer; and the
default synthetic test set scales with the problem (before: 1000 rows at any d, 8 GB at d = 10⁶).

The memory estimates are checked against tracemalloc's measured peaks (an upper bound, within a factor).
"""
from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from reliability_helpers import assert_user_error, call, count
from dln import memory
from dln.errors import DLNError
from dln.problem import default_n_test, load_problem, make_problem
from dln.simulate import simulate


@pytest.mark.parametrize("text, nbytes", [("123", 123), ("500M", 500 * 2**20), ("8G", 8 * 2**30), (" 1.5t ", 1.5 * 2**40),
                                          ("64KiB", 64 * 2**10), ("2GB", 2 * 2**30), ("none", float("inf"))])
def test_the_limit_is_read_from_the_environment(monkeypatch, text, nbytes):
    monkeypatch.setenv("DLN_MAX_MEMORY", text)
    assert memory.limit()[0] == nbytes


@pytest.mark.parametrize("text", ["10x", "-1G", "0", "G", "1e9", "lots", "1 2"])
def test_a_bad_limit_is_a_one_line_error(monkeypatch, text):
    monkeypatch.setenv("DLN_MAX_MEMORY", text)
    assert_user_error(*call(["simulate", "--n", "3", "--d", "4", "--k", "1", "--max-steps", "2"]), "'DLN_MAX_MEMORY'",
                      repr(text))
    count("sizes: refused before allocating")


def test_the_default_limit_is_the_machines():
    cap, source = memory.limit()
    assert 0 < cap < float("inf") and "80%" in source


def test_default_test_set_scales_with_the_problem():
    """1000 rows up to d = 10⁴ (the sizes of every figure and test: their data is unchanged), then
    TEST_SET_ENTRIES / d rows, at least n."""
    assert [default_n_test(n, d) for n, d in ((40, 100), (40, 10_000), (10, 10**6), (2, 50_000), (500, 10**6))] \
        == [1000, 1000, 10, 200, 500]
    P = make_problem(n=2, d=50_000, k=2, seed=0)
    assert P.X_test.shape == (200, 50_000)
    Q = make_problem(n=2, d=50_000, k=2, seed=0, n_test=1000)  # the same training data either way
    assert np.array_equal(P.X, Q.X) and np.array_equal(P.beta_star, Q.beta_star)
    count("sizes: default test sets")


@pytest.mark.parametrize("argv, name", [
    (["simulate", "--n", "10", "--d", "1000000", "--max-steps", "2"], "'d'"),
    (["simulate", "--n", "3000", "--d", "4", "--k", "1", "--max-steps", "2"], "'n'"),  # the flow's n x n matrices
    (["predict", "--n", "10", "--d", "3000000"], "'d'"),
    (["sweep", "--n", "10", "--d", "1000000", "--max-steps", "2", "--workers", "1"], "'d'"),
    (["sweep", "--n", "10", "--d", "20000", "--alpha", "0.1", "0.2", "0.3", "0.4", "--max-steps", "2"], "'chunk_size'"),
    (["sweep", "--n", "10", "--d", "5000", "--alpha", "0.1", "0.2", "--chunk-size", "1", "--workers", "2",
      "--max-steps", "2"], "'workers'"),
    (["sweep", "--alpha-geom", "1e-3", "1", "3000", "--seeds", "10", "--max-steps", "2"], "'grid'"),
])
def test_too_large_for_the_memory(monkeypatch, tmp_path, argv, name):
    monkeypatch.setenv("DLN_MAX_MEMORY", "100M")
    out = tmp_path / "out"
    extra = ["--out", out] if argv[0] == "sweep" else []
    assert_user_error(*call([*argv, *extra]), name, "fit in memory", "DLN_MAX_MEMORY=100M")
    assert not out.exists()
    count("sizes: refused before allocating")


def test_discrete_time_has_no_n_by_n_matrices(monkeypatch):
    """The same n = 3000 that the flow cannot afford under 100M runs in discrete time."""
    monkeypatch.setenv("DLN_MAX_MEMORY", "100M")
    code, out, err = call(["simulate", "--n", "3000", "--d", "4", "--k", "1", "--time", "discrete", "--lr", "0.01",
                           "--max-steps", "2", "--json"])
    assert code == 0, err


def _npz_with_header(path, shape, compress=False, real=None):
    """An .npz whose X.npy header claims ``shape`` but holds the data of a 2 x 3 array."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ones((2, 3)) if real is None else real)
    raw = bytearray(buf.getvalue())
    hlen = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + hlen].decode("latin1")
    new = header.replace("(2, 3)", str(shape)).rstrip("\n").rstrip(" ")
    raw[10:10 + hlen] = (new + " " * (hlen - len(new) - 1) + "\n").encode("latin1")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("X.npy", bytes(raw))
        b = io.BytesIO()
        np.lib.format.write_array(b, np.ones(2))
        z.writestr("y.npy", b.getvalue())


@pytest.mark.parametrize("shape", [(10**6, 10**6), (10**12, 1), (2, 4), (3, 3)])
@pytest.mark.parametrize("compress", [False, True], ids=["stored", "deflated"])
def test_an_npz_whose_header_claims_more_than_it_holds(tmp_path, shape, compress):
    """Before: numpy allocated what the header claimed (7 TB: a MemoryError traceback)."""
    path = tmp_path / "forged.npz"
    _npz_with_header(path, shape, compress)
    with pytest.raises(DLNError, match=r"'data' parameter must be a readable \.npz file.*claims shape"):
        load_problem(path)
    assert_user_error(*call(["simulate", "--data", path]), "'data'", "claims shape")
    count("sizes: refused before allocating")


def test_data_files_above_the_limit(monkeypatch, tmp_path):
    npz, csv = tmp_path / "big.npz", tmp_path / "big.csv"
    X = np.random.default_rng(0).standard_normal((200, 300))
    np.savez(npz, X=X, y=X[:, 0])
    np.savetxt(csv, np.column_stack([X, X[:, 0]]), delimiter=",")
    monkeypatch.setenv("DLN_MAX_MEMORY", "500K")
    for path in (npz, csv):
        with pytest.raises(DLNError, match=r"'data' parameter must be small enough to fit in memory"):
            load_problem(path)
        assert_user_error(*call(["predict", "--data", path]), "'data'", "fit in memory", str(path))
        count("sizes: refused before allocating")
    monkeypatch.setenv("DLN_MAX_MEMORY", "none")
    assert load_problem(npz).X.shape == load_problem(csv).X.shape == (200, 300)


def test_make_problem_api(monkeypatch):
    monkeypatch.setenv("DLN_MAX_MEMORY", "10M")
    with pytest.raises(DLNError, match=r"'d' parameter of make_problem must be small enough to fit in memory"):
        make_problem(n=100, d=20_000)
    with pytest.raises(DLNError, match=r"'n' parameter of make_problem must be small enough"):
        make_problem(n=200_000, d=10, n_test=0)
    count("sizes: refused before allocating", 2)


#: (method, variant, time, B, n, d): the (B, d) state arrays dominate, or the n x n matrices, or X·diag(w)·Xᵀ
SHAPES = [("gf", "full", "flow", 8, 30, 600), ("gr", "per-sample", "flow", 1, 150, 150),
          ("fgr", "per-sample", "flow", 16, 5, 2000), ("usam", "full", "discrete", 8, 30, 600),
          ("cgr", "per-sample", "discrete", 4, 60, 300)]
HP = {"gf": {}, "gr": {"gamma": 0.1}, "fgr": {"gamma": 0.1, "eps": 0.1}, "cgr": {"gamma": 0.1, "eps": 0.1},
      "usam": {"rho": 0.1}}


@pytest.mark.parametrize("method, variant, time_, B, n, d", SHAPES)
def test_the_estimates_bound_the_measured_peaks(method, variant, time_, B, n, d):
    """tracemalloc's peak over make_problem + a few steps of a batch stays below the estimate, and
    within a factor 12 of it (an estimate that is useless as a guard would be caught)."""
    tracemalloc.start()
    try:
        P = make_problem(n=n, d=d, k=3, seed=0)
        extra = dict(lr=0.01) if time_ == "discrete" else {}
        simulate(P, method, variant=variant, alpha=np.full(B, 0.1), time=time_, max_steps=12, **HP[method], **extra)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = memory.batch_bytes(B, n, d, time_ == "flow") + memory.problem_bytes(n, d, default_n_test(n, d))
    assert peak <= estimate <= 12 * peak, (peak, estimate)
    count("sizes: estimates checked against measured peaks")
