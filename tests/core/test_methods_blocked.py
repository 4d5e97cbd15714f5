"""dln.methods: the blocked evaluation of a direction (``Direction.__call__`` loops over row blocks).

A batch larger than ``methods.BLOCK`` is evaluated block by block into preallocated outputs.
Each run's rates depend on that run alone, so the result must equal evaluating every run on its
own, to round-off, for every method — with per-run hyper-parameters, a ``rows`` subset, per-run
mini-batches (3-D ``X``), depth 3, and a last block shorter than the others.
"""
import numpy as np
import pytest

from dln import methods
from dln.methods import Data
from dln.model import State

from .oracles import random_state

B = 11          # with BLOCK = 4: blocks of 4, 4, 3
RTOL = 1e-12

CASES = [("gf", "full"), ("gf", "per-sample"), ("gr", "full"), ("gr", "per-sample"),
         ("fgr", "full"), ("fgr", "per-sample"), ("bgr", "full"), ("bgr", "per-sample"),
         ("cgr", "full"), ("cgr", "per-sample"), ("usam", "full"), ("usam", "per-sample"),
         ("sam", "full"), ("sam", "per-sample"), ("flood", "full")]


def per_run_params(method, size, seed=0):
    rng = np.random.default_rng(seed)
    spread = lambda lo, hi: rng.uniform(lo, hi, size)  # noqa: E731
    return {"gf": {}, "gr": dict(gamma=spread(0.01, 0.2)), "fgr": dict(gamma=spread(0.01, 0.2), eps=spread(0.02, 0.2)),
            "bgr": dict(gamma=spread(0.01, 0.2), eps=spread(0.02, 0.2)),
            "cgr": dict(gamma=spread(0.01, 0.2), eps=spread(0.02, 0.2)),
            "usam": dict(rho=spread(0.01, 0.1)), "sam": dict(rho=spread(0.01, 0.1)),
            "flood": dict(flood_level=spread(0.0, 0.2))}[method]


def one(state, i):
    return State(*(x[i:i + 1] for x in (state.a, state.b, state.su, state.sv)))


def assert_rates_close(R, single, i):
    for name in ("da", "db", "gain"):
        got, want = getattr(R, name)[i], getattr(single, name)[0]
        scale = max(np.max(np.abs(want)), 1e-300)
        assert np.max(np.abs(got - want)) <= RTOL * scale, name
    np.testing.assert_allclose(R.loss[i], single.loss[0], rtol=RTOL, atol=1e-300)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(methods, "BLOCK", 4)


@pytest.mark.parametrize("method,variant", CASES)
def test_blocked_equals_one_run_at_a_time(tiny, small_blocks, method, variant):
    params = per_run_params(method, B)
    st = random_state(B, tiny.d, 7)
    R = methods.make(method, tiny, variant=variant, **params)(st)
    assert R.da.shape == R.db.shape == R.gain.shape == (B, tiny.d) and R.loss.shape == (B,)
    for i in range(B):
        single = methods.make(method, tiny, variant=variant, **{k: v[i] for k, v in params.items()})(one(st, i))
        assert_rates_close(R, single, i)


@pytest.mark.parametrize("method", ["gf", "gr", "fgr", "cgr", "sam"])
def test_blocked_depth3_with_signs(tiny, small_blocks, method):
    params = per_run_params(method, B, seed=1)
    st = random_state(B, tiny.d, 8, signs=True)
    R = methods.make(method, tiny, D=3, **params)(st)
    for i in range(B):
        single = methods.make(method, tiny, D=3, **{k: v[i] for k, v in params.items()})(one(st, i))
        assert_rates_close(R, single, i)


def test_blocked_matches_a_single_block(tiny, monkeypatch):
    """The same batch in blocks of 4 and in one block (BLOCK ≥ B)."""
    params = per_run_params("fgr", B, seed=2)
    st = random_state(B, tiny.d, 9)
    direction = methods.make("fgr", tiny, variant="per-sample", **params)
    whole = direction(st)
    monkeypatch.setattr(methods, "BLOCK", 4)
    blocked = direction(st)
    for i in range(B):
        assert_rates_close(blocked, Rates1(whole, i), i)


def Rates1(R, i):
    return methods.Rates(R.da[i:i + 1], R.db[i:i + 1], R.gain[i:i + 1], R.loss[i:i + 1])


def test_blocked_rows_and_per_run_minibatches(tiny, small_blocks):
    """``rows`` picks the runs' hyper-parameters and ``data`` holds one mini-batch per run."""
    params = per_run_params("gr", 15, seed=3)
    rows = np.array([14, 2, 7, 0, 9, 3, 11, 5, 1, 12])
    st = random_state(rows.size, tiny.d, 10)
    rng = np.random.default_rng(4)
    idx = np.stack([rng.choice(tiny.n, 3, replace=False) for _ in rows])
    data = Data(tiny.X[idx], tiny.y[idx])
    for variant in ("full", "per-sample"):
        direction = methods.make("gr", tiny, variant=variant, **params)
        R = direction(st, rows, data)
        for i, row in enumerate(rows):
            single = methods.make("gr", tiny, variant=variant, gamma=params["gamma"][row])
            assert_rates_close(R, single(one(st, i), None, Data(tiny.X[idx[i:i + 1]], tiny.y[idx[i:i + 1]])), i)


def test_empty_batch(tiny):
    st = random_state(1, tiny.d, 0)
    empty = State(*(x[:0] for x in (st.a, st.b, st.su, st.sv)))
    R = methods.gr(tiny, gamma=0.1)(empty)
    assert R.da.shape == (0, tiny.d) and R.loss.shape == (0,)
