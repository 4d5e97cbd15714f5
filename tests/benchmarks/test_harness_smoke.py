"""Smoke test of the benchmark harness: every bench module runs one tiny case and returns
rows with the expected fields, and the accuracy checks inside the modules pass.  No timing is
asserted here (timings never go into unit tests)."""
from __future__ import annotations

import importlib
import inspect
import math
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import limit_threads, make_row, summarize  # noqa: E402
from benchmarks import run as harness  # noqa: E402

OURS = ["lsoda", "small_step_gd", "torch", "flops", "scaling", "startup", "discrete"]
OTHERS = ["predict", "workers"]  # written elsewhere; exercised through run(smoke=True) when offered
FIELDS = {"bench", "case", "unit", "ours", "baseline", "baseline_name", "ratio", "ratio_name", "target",
          "target_op", "met", "accuracy", "accuracy_ok", "notes", "extra", "status"}


def _module(key):
    name = dict((k, m) for k, m, _ in harness.MODULES)[key]
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"benchmarks.{name}":
            return None
        raise


def _check_rows(rows, key):
    assert isinstance(rows, list) and rows
    for r in rows:
        assert FIELDS <= set(r), sorted(FIELDS - set(r))
        assert r["bench"] == key
        assert r["case"]
        if r["status"] == "skipped":
            assert r["notes"]
            continue
        assert r["status"] == "ok", r
        assert r["accuracy_ok"] is not False, (r["case"], r["accuracy"])
        for side in ("ours", "baseline"):
            s = r[side]
            if s is not None:
                assert {"median", "lo", "hi", "n"} <= set(s)
                assert s["lo"] <= s["median"] <= s["hi"]
                assert math.isfinite(s["median"]) and s["median"] > 0
        if r["ratio"] is not None:
            assert math.isfinite(r["ratio"])


@pytest.mark.parametrize("key", OURS)
def test_bench_module_smoke(key):
    mod = _module(key)
    assert mod is not None
    with limit_threads(1):
        rows = mod.run(smoke=True)
    _check_rows([harness.normalize(r, key) for r in rows], key)


def _other_params():
    out = []
    for key in OTHERS:
        mod = _module(key)
        has_smoke = mod is not None and "smoke" in inspect.signature(mod.run).parameters
        out.append(pytest.param(key, marks=() if has_smoke or mod is None else pytest.mark.slow))
    return out


@pytest.mark.parametrize("key", _other_params())
def test_other_bench_modules(key):
    mod = _module(key)
    if mod is None:
        pytest.skip(f"benchmarks/bench_{key}.py is not present")
    rows, _ = harness.run_module(key, quick=True, smoke="smoke" in inspect.signature(mod.run).parameters)
    assert rows
    for r in rows:
        assert FIELDS <= set(r)
        assert r["status"] != "error", r["notes"]


def test_torch_skips_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch → ImportError
    mod = _module("torch")
    rows = mod.run(smoke=True)
    assert len(rows) == 1 and rows[0]["status"] == "skipped" and "torch" in rows[0]["notes"]


def test_lsoda_baseline_rhs_matches_dln():
    """The baseline's independent NumPy right-hand sides are the same flows as dln's directions."""
    import numpy as np
    from benchmarks.bench_lsoda import make_rates
    from dln import methods
    from dln.model import State
    from dln.problem import make_problem

    P = make_problem(8, 15, 3, seed=1, n_test=0)
    rng = np.random.default_rng(0)
    a = np.log(0.3) + 0.5 * rng.standard_normal(15)
    b = np.log(0.3) + 0.5 * rng.standard_normal(15)
    st = State(a[None], b[None], np.ones((1, 15)), np.ones((1, 15)))
    for m, kw in [("gf", {}), ("gr", dict(gamma=0.05)), ("fgr", dict(gamma=0.05, eps=0.1)),
                  ("bgr", dict(gamma=0.05, eps=0.1)), ("usam", dict(rho=0.05))]:
        for v in ("full", "per-sample"):
            R = methods.make(m, P, variant=v, **kw)(st)
            da, db = make_rates(P.X, P.y, m, v, **kw)(a, b)
            np.testing.assert_allclose(da, R.da[0], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(db, R.db[0], rtol=1e-12, atol=1e-14)


def test_harness_writes_report(tmp_path):
    out = tmp_path / "results.md"
    assert harness.main(["--smoke", "--only", "flops", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "# Benchmark results" in text and "## Machine" in text and "blas" in text
    assert "Machine limit" in text


def test_render_tolerates_foreign_rows():
    rows = [harness.normalize({"name": "x", "median_s": 1.0, "status": "ok"}, "workers"),
            harness.normalize(make_row("flops", "y", ours=[1.0, 2.0, 3.0], ratio=0.5, target=0.4), "flops"),
            harness.normalize(make_row("lsoda", "z", status="error", notes="boom"), "lsoda")]
    assert rows[1]["met"] is True and rows[1]["ours"] == summarize([1.0, 2.0, 3.0])
    md = harness.render_markdown(rows, {"date": "today", "cpu": "cpu"}, argv=[], elapsed=1.0,
                                 module_times={}, quick=True)
    assert "| x |" in md and "error" in md
    assert "flops" in harness.text_table(rows)


def test_adapt_predict_rows():
    raw = [dict(solver="mirror_argmin", n=10, d=100, alpha=0.1, median_s=0.001, min_s=0.001, max_s=0.002,
                repeats=3, rel_error=0.0, primal_residual=1e-16, status="converged", iterations=6, speedup=None),
           dict(solver="SLSQP", n=10, d=100, alpha=0.1, median_s=1.0, min_s=1.0, max_s=1.0, repeats=1,
                rel_error=1e-11, primal_residual=1e-16, status="success", iterations=50, speedup=1000.0)]
    rows = harness.adapt_predict(raw)
    assert len(rows) == 1 and rows[0]["ratio"] == pytest.approx(1000.0) and rows[0]["target"] == 30.0
    assert rows[0]["met"] is True and rows[0]["status"] == "ok"
