"""No shape ambiguity: per-run values are (B,), per-coordinate values (d,), whatever B, n and d.

The contract (dln.model.initial_state, dln.simulate.run_batch): ``alpha`` and the other
hyper-parameters take one value per run (a scalar or shape (B,)); the initial weights ``u0``, ``v0``
one value per coordinate (shape (d,)) or (B, d).  A length-B vector and a length-d vector look
alike when B = d; the code must never guess.  Until 2026-11 the SGD / label-noise path of a sweep
passed its per-run α as (B,) to ``initial_state``, which refused it when B = d: every stochastic
sweep batch of exactly d runs failed.

Oracles: the per-run values a run must have started from (ln c0 = 2 ln α_i), and "batched equals
looped" (a run in a batch of B gives what it gives alone) across run_batch, ``dln.sweep`` (in
memory, one worker) and the estimator.
"""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import dln
from dln.cli import main
from dln.errors import DLNError
from dln.estimator import DiagonalLinearNetwork
from dln.problem import make_problem
from dln.simulate import run_batch

MODES = {
    "flow": dict(time="flow"),
    "gd": dict(time="discrete"),
    "sgd": dict(time="discrete", batch_size=1),
    "label-noise": dict(time="discrete", label_noise=0.1),
}
STEPS = 12
STATUSES = {"converged", "diverged", "max_steps"}


def _rel(x, ref):
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-300))


def _mode_kwargs(mode, lr):
    kw = dict(MODES[mode])
    if mode != "flow":
        kw["lr"] = lr
    return kw


@settings(max_examples=16, deadline=None, derandomize=True, database=None)
@given(B=st.sampled_from([1, 2, 3, 4]), n=st.sampled_from([2, 3, 4]), d=st.sampled_from([2, 3, 4]),
       mode=st.sampled_from(sorted(MODES)), sweep_lr=st.booleans())
@example(B=3, n=3, d=3, mode="sgd", sweep_lr=True)  # B = n = d, the reproduction's shape of bug
@example(B=4, n=2, d=4, mode="label-noise", sweep_lr=False)  # B = d
@example(B=2, n=2, d=3, mode="gd", sweep_lr=True)  # B = n
@example(B=1, n=3, d=3, mode="flow", sweep_lr=False)  # B = 1, n = d
def test_per_run_values_are_per_run_everywhere(B, n, d, mode, sweep_lr):
    P = make_problem(n=n, d=d, k=1, seed=n * 10 + d, n_test=0)
    alphas = np.geomspace(0.3, 1.0, B)
    lrs = np.geomspace(0.02, 0.05, B)
    stochastic = mode in ("sgd", "label-noise")
    seeds = [np.random.SeedSequence(100 + i) for i in range(B)] if stochastic else None
    kw = _mode_kwargs(mode, lrs)

    # run_batch: run i starts from α_i on every coordinate, and equals run i alone
    res = run_batch(P, "gf", alpha=alphas, seeds=seeds, max_steps=STEPS, **kw)
    np.testing.assert_allclose(res.log_c0, np.repeat(2 * np.log(alphas)[:, None], d, axis=1), rtol=1e-15)
    np.testing.assert_array_equal(res.info["alpha"], alphas)
    if mode != "flow":
        np.testing.assert_array_equal(res.info["lr"], lrs)
    assert set(res.status) <= STATUSES
    for i in range(B):
        one = run_batch(P, "gf", alpha=alphas[i], seeds=None if seeds is None else [seeds[i]], max_steps=STEPS,
                        **_mode_kwargs(mode, lrs[i]))
        assert one.status[0] == res.status[i] and one.steps[0] == res.steps[i]
        # discrete maps: round-off; flow: a round-off difference may flip one Newton-iteration count,
        # moving β by up to the local tolerance (measured 1.4e-9 at n = d = 2 with rtol = 1e-9)
        assert _rel(res.beta[i], one.beta[0]) <= (1e-7 if mode == "flow" else 1e-12)

    # dln.sweep in memory: one batch of B runs (per-run α, or per-run η) equals each run swept alone
    axes = dict(MODES[mode])
    if mode == "flow" or not sweep_lr:
        axes.update(alpha=list(alphas), **({} if mode == "flow" else dict(lr=[float(lrs[0])])))
        singles = [dict(axes, alpha=[a]) for a in alphas]
    else:
        axes.update(alpha=[float(alphas[0])], lr=list(lrs))
        singles = [dict(axes, lr=[e]) for e in lrs]
    recs = dln.sweep(data=P, workers=1, max_steps=STEPS, **axes)
    assert len(recs) == B and {r["status"] for r in recs} <= STATUSES
    for i, single in enumerate(singles):
        alone = dln.sweep(data=P, workers=1, max_steps=STEPS, **single)[0]
        for key in ("status", "steps", "alpha", "lr"):
            assert recs[i][key] == alone[key], key
        tol = 1e-6 if mode == "flow" else 1e-12
        assert recs[i]["train_loss"] == pytest.approx(alone["train_loss"], rel=tol, abs=1e-300)
        if not stochastic:  # the sweep's run is the run_batch run (same data, no randomness)
            ref = run_batch(P, "gf", alpha=recs[i]["alpha"], max_steps=STEPS,
                            **_mode_kwargs(mode, recs[i]["lr"]))
            assert recs[i]["train_loss"] == pytest.approx(float(ref.loss[0]), rel=tol, abs=1e-300)

    # the estimator: one network, the run_batch run with the same seed
    est = DiagonalLinearNetwork(alpha=float(alphas[-1]), max_steps=STEPS, random_state=7,
                                **{k: (float(v) if k == "lr" else v) for k, v in _mode_kwargs(mode, lrs[-1]).items()})
    est.fit(P.X, P.y)
    ref = run_batch(P, "gf", alpha=alphas[-1], seed=7, max_steps=STEPS, **_mode_kwargs(mode, lrs[-1]))
    assert est.status_ == ref.status[0] and est.n_iter_ == ref.steps[0]
    assert _rel(est.coef_, ref.beta[0]) <= 1e-12


def test_estimator_refuses_vectors():
    """The estimator fits one network: a vector hyper-parameter is an error, before anything runs."""
    P = make_problem(n=3, d=3, k=1, seed=0, n_test=0)
    for kw in (dict(alpha=[0.1, 0.2, 0.3]), dict(time="discrete", lr=np.array([0.1, 0.2]))):
        with pytest.raises(DLNError, match=r"parameter of DiagonalLinearNetwork must be a scalar \(the estimator fits "
                                           r"one network"):
            DiagonalLinearNetwork(**kw).fit(P.X, P.y)


def test_run_batch_refuses_a_per_coordinate_alpha():
    P = make_problem(n=3, d=4, k=1, seed=0, n_test=0)
    with pytest.raises(DLNError, match=r"'alpha' parameter of gf must be a scalar or a vector with one value per run "
                                       r"\(shape \(B,\)\); a per-coordinate alpha is u0 = v0 = alpha"):
        run_batch(P, alpha=np.full((1, 4), 0.1))
    al = np.linspace(0.1, 0.4, 4)  # B = d: per coordinate through u0 = v0
    res = run_batch(P, u0=al, v0=al, max_steps=3)
    np.testing.assert_allclose(res.log_c0[0], 2 * np.log(al), rtol=1e-15)


def _sweep_cli(args):
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue()


def test_stochastic_sweep_with_as_many_runs_as_coordinates(tmp_path):
    """The reproduction: 30 learning rates at d = 30, SGD with batch 1 (exited 1: "alpha must be of
    shape (B, d) when B = d")."""
    code, err = _sweep_cli(["sweep", "--n", 20, "--d", 30, "--k", 3, "--method", "gf", "--time", "discrete",
                            "--alpha", 0.07, "--lr-geom", 0.005, 0.05, 30, "--batch-size", 1, "--max-steps", 100,
                            "--workers", 1, "--quiet", "--out", tmp_path / "sw"])
    assert code == 0, err
    with open(tmp_path / "sw" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 30
    assert sorted(float(r["lr"]) for r in rows) == pytest.approx(np.geomspace(0.005, 0.05, 30), rel=1e-12)
    assert {r["status"] for r in rows} <= STATUSES and all(float(r["alpha"]) == 0.07 for r in rows)
