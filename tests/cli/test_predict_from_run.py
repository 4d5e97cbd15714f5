"""``dln predict --from-run RUN.json``: the closed-form limit with a run's own effective
initialization (per coordinate) and discrete-time tilt, checked against the run's simulated β
(not against simulate's ``prediction`` field, which is computed by the same solver)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli_helpers import TINY, assert_user_error, call

RUNS = {
    "gr-flow": ["--method", "gr", "--gamma", "0.05"],
    "gr-per-sample-flow": ["--method", "gr", "--variant", "per-sample", "--gamma", "0.05"],
    "gd-discrete": ["--time", "discrete", "--lr", "0.3"],
}


def simulate(tmp_path, flags, name="run.json"):
    code, out, err = call(["simulate", *flags, "--json", "--quiet"])
    assert code == 0, err
    rec = json.loads(out)
    assert rec["status"] == "converged"
    path = tmp_path / name
    path.write_text(out)
    return rec, path


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("case", list(RUNS))
def test_predict_from_run_equals_the_run(tmp_path, case):
    rec, path = simulate(tmp_path, ["--n", "10", "--d", "30", "--k", "3", "--seed", "4", *RUNS[case]])
    code, out, err = call(["predict", "--from-run", path, "--json"])
    assert code == 0, err
    pred = json.loads(out)
    assert pred["status"] == "converged" and pred["kkt_residual"] <= 1e-12
    assert rel(pred["beta"], rec["beta"]) <= 1e-10
    assert pred["run_rel_error"] == pytest.approx(rel(rec["beta"], pred["beta"]), rel=1e-6, abs=1e-15)
    # the test can fail: the nominal α (all the CLI could use before) misses the run by far more
    code, out, _ = call(["predict", "--n", "10", "--d", "30", "--k", "3", "--seed", "4", "--alpha", "0.1", "--json"])
    assert rel(json.loads(out)["beta"], rec["beta"]) > 1e-6
    if case == "gd-discrete":  # and so does the run's α_eff without the tilt
        assert np.any(np.asarray(rec["tilt"]) != 0)
        untilted = dict(rec, tilt=[0.0] * len(rec["tilt"]))
        path.write_text(json.dumps(untilted))
        code, out, _ = call(["predict", "--from-run", path, "--json"])
        assert rel(json.loads(out)["beta"], rec["beta"]) > 1e-8


def test_from_run_reads_a_data_file_beside_the_record_and_stdin(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 15))
    y = X @ np.where(np.arange(15) < 2, 1.0, 0.0)
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "d.npz", X=X, y=y)
    monkeypatch.chdir(tmp_path / "sub")
    rec, path = simulate(tmp_path / "sub", ["--data", "d.npz", "--method", "fgr", "--gamma", "0.05", "--eps", "0.1"])
    assert rec["data"] == "d.npz" and rec["n"] == 6 and rec["d"] == 15 and rec["k"] is None
    monkeypatch.chdir(tmp_path)  # the record names d.npz relative to where simulate ran: found beside the record
    code, out, err = call(["predict", "--from-run", "sub/run.json", "--json"])
    assert code == 0, err
    assert rel(json.loads(out)["beta"], rec["beta"]) <= 1e-10
    code, out, err = call(["predict", "--from-run", "-"], stdin=(tmp_path / "sub" / "run.json").read_text().replace(
        '"d.npz"', json.dumps(str(tmp_path / "sub" / "d.npz"))))
    assert code == 0, err
    assert "rel. distance to the run's beta" in out and "None" not in out


def test_text_output(tmp_path):
    _, path = simulate(tmp_path, [*TINY, *RUNS["gd-discrete"]])
    code, out, err = call(["predict", "--from-run", path])
    assert code == 0, err
    lines = out.rstrip("\n").split("\n")
    assert lines[0].startswith(f"potential q, alpha_eff and tilt of the run in {path} (gf, discrete time): "
                               "status converged, primal residual ")
    dist = float(lines[2].rsplit(" ", 1)[1])
    assert lines[2].startswith("  rel. distance to the run's beta ") and dist <= 1e-10


@pytest.mark.parametrize("flags, texts", [
    (["--alpha", "0.1"], ["'--alpha'", "--from-run", "0.1"]),
    (["--n", "6"], ["'--n'", "--from-run"]),
    (["--seed", "3"], ["'--seed'", "--from-run", "3"]),
    (["--potential", "l1"], ["'--potential'", "'l1'"]),
])
def test_from_run_with_data_or_alpha_flags_is_an_error(tmp_path, flags, texts):
    _, path = simulate(tmp_path, [*TINY, *RUNS["gr-flow"]])
    assert_user_error(*call(["predict", "--from-run", path, *flags]), *texts)


@pytest.mark.parametrize("content, texts", [
    (None, ["'--from-run'", "missing.json"]),
    ("not json", ["'--from-run'", "not JSON"]),
    ("[1, 2]", ["'--from-run'", "log_c or alpha_eff"]),
    ('{"log_c": [0.0, 1.0], "n": 6, "d": 12, "k": 2, "noise": 0.0, "design": "gaussian", "seed": 0}',
     ["'--from-run'", "'log_c'", "d = 12"]),
    ('{"log_c": [0.0], "n": 6}', ["'--from-run'", "without d, k, noise, design, seed"]),
    ('{"log_c": [0.0], "data": "nothere.npz"}', ["'data'", "nothere.npz"]),
    ('{"alpha_eff": [0.1], "data": null, "n": 6, "d": 1, "k": 1, "noise": 0.0, "design": "gaussian", "seed": 0, '
     '"time": "discrete"}', ["'--from-run'", "'tilt'"]),
])
def test_bad_run_records_exit_2(tmp_path, content, texts):
    path = tmp_path / "missing.json"
    if content is not None:
        path.write_text(content)
    assert_user_error(*call(["predict", "--from-run", path]), *texts)
