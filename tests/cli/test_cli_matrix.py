"""Every subcommand in text mode and with --json (where it has one) on a tiny problem.

``simulate`` runs every method × variant × time (flow; discrete GD, SGD with --batch-size 1,
label-noise SGD): exit 0, or the documented user error (exit 2, one line) for a combination that
is not allowed; never a traceback.  Text output must parse: each number where a number is expected,
``n/a`` where a value does not apply, never ``None`` or a raw 17-digit float, and each printed
number equals the --json value of the same run to its printed precision.  Most of it runs
in-process through ``dln.cli.main``; the README lines also run in real processes.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cli_helpers import TINY, assert_formatted, assert_user_error, call, close, number, run_process
from dln import check
from dln.methods import METHODS, VARIANT_METHODS
from dln.simulate import MAX_STEPS

HP = {"gf": [], "gr": ["--gamma", "0.05"], "fgr": ["--gamma", "0.05", "--eps", "0.1"],
      "bgr": ["--gamma", "0.05", "--eps", "0.1"], "cgr": ["--gamma", "0.05", "--eps", "0.1"],
      "usam": ["--rho", "0.05"], "sam": ["--rho", "0.05"], "flood": ["--flood-level", "0.001"]}
TIMES = {"flow": ["--rtol", "1e-6"], "gd": ["--time", "discrete", "--lr", "0.1"],
         "sgd": ["--time", "discrete", "--lr", "0.05", "--batch-size", "1"],
         "label-noise": ["--time", "discrete", "--lr", "0.05", "--label-noise", "0.1"],
         "momentum": ["--time", "discrete", "--lr", "0.05", "--momentum", "0.5"]}
CASES = [(m, v, t) for m in METHODS for v in ("full", "per-sample") for t in TIMES]
# the default run: every method and variant in flow and GD, SGD and label noise for one variant
# each; the rest with -m slow
DEFAULT = {(m, v, t) for m, v, t in CASES if t in ("flow", "gd") or v == "full"}
PARAMS = [pytest.param(*c, id="-".join(c), marks=() if c in DEFAULT else pytest.mark.slow) for c in CASES]

SIMULATE_LINES = [
    # (name, regex); every group is a number (or n/a)
    ("data", r"  data              synthetic gaussian n=\d+ d=\d+ k=\d+ noise=(\S+) seed=0"),
    ("status", r"  status            (converged|diverged|max_steps)  \(t=(\S+), steps=(\d+), evaluations=(\d+)\)"),
    ("train_loss", r"  train loss        (\S+)"),
    ("test_error", r"  test error        (\S+)"),
    ("l1_norm", r"  l1 norm           (\S+)"),
    ("gain", r"  gain -ln\(a_eff/a\) mean (\S+), max (\S+)"),
]


def parse_simulate(text: str) -> dict:
    """The summary of ``dln simulate`` → {field: value}; fails on any line it does not expect."""
    assert_formatted(text)
    lines = text.rstrip("\n").split("\n")
    head = re.fullmatch(r"(\w+) \((full|per-sample)\), (flow|discrete) time: alpha=(\S+?)((?:, \w+=\S+?)*)", lines[0])
    assert head, lines[0]
    out = dict(method=head[1], variant=head[2], time=head[3], alpha=number(head[4]))
    for item in filter(None, head[5].split(", ")):
        key, value = item.split("=")
        out[key] = number(value)
    for (name, regex), line in zip(SIMULATE_LINES, lines[1:]):
        m = re.fullmatch(regex, line)
        assert m, (name, line)
        if name == "status":
            out.update(status=m[1], t=number(m[2]), steps=int(m[3]), n_evals=int(m[4]))
        elif name == "gain":
            out.update(gain_mean=number(m[1]), gain_max=number(m[2]))
        elif name == "data":
            out["noise"] = number(m[1])
        else:
            out[name] = number(m[1])
    rest = lines[1 + len(SIMULATE_LINES):]
    m = re.fullmatch(r"  prediction        rel\. error (\S+) vs argmin phi_\(u\*v\)(?: - <z0 - 2 Phi, beta> "
                     r"\(with the tilt\))?; KKT residual (\S+)", rest[0])
    if m:
        out.update(prediction_rel_error=number(m[1]), kkt_residual=number(m[2]))
    else:
        assert re.fullmatch(r"  prediction        n/a \((the run ended (diverged|max_steps)|no closed form for this limit: .*"
                            r"|no closed form for the limit of heavy-ball momentum in this project yet)\)", rest[0]), rest[0]
        out.update(prediction_rel_error=None, kkt_residual=None)
    out["prediction_theory_rel_error"] = None
    if len(rest) > 1:
        m = re.fullmatch(r"  gain integral     rel\. error (\S+) vs argmin phi_c with c from the integrated gain",
                         rest[1])
        assert m and len(rest) == 2, rest
        out["prediction_theory_rel_error"] = number(m[1])
    return out


@pytest.mark.parametrize("method, variant, time", PARAMS)
def test_simulate_matrix(method, variant, time):
    argv = ["simulate", *TINY, "--method", method, "--variant", variant, *HP[method], *TIMES[time],
            "--max-steps", "200", "--quiet"]  # --quiet: no progress line from a slow machine (tests/cli/test_progress.py)
    code, out, err = call(argv)
    if variant == "per-sample" and method not in VARIANT_METHODS:  # the documented user error
        assert_user_error(code, out, err, "'variant'", method, "per-sample")
        assert_user_error(*call([*argv, "--json"]), "'variant'", method)
        return
    assert code == 0 and err == "", (argv, err)
    text = parse_simulate(out)
    code, js, err = call([*argv, "--json"])
    assert code == 0 and err == "", (argv, err)
    rec = json.loads(js)  # stdout is one JSON object and nothing else
    assert (text["method"], text["variant"], text["time"]) == (method, variant, "flow" if time == "flow" else "discrete")
    assert rec["status"] in ("converged", "max_steps", "diverged") and rec["status"] == text["status"]
    assert rec["steps"] <= 200
    for key in ("alpha", "t", "steps", "n_evals", "train_loss", "test_error", "l1_norm", "gain_mean", "gain_max",
                "prediction_rel_error", "kkt_residual", "prediction_theory_rel_error", "noise"):
        assert close(text[key], rec[key]), (key, text[key], rec[key])
    for key in ("gamma", "eps", "rho", "flood_level", "lr", "batch_size", "label_noise"):
        assert close(text.get(key), rec[key]), (key, text.get(key), rec[key])
    if rec["prediction"] is not None:
        assert close(text["kkt_residual"], rec["prediction"]["kkt_residual"])
    if time != "flow":  # the gain-integral prediction does not apply in discrete time
        assert rec["prediction_theory_rel_error"] is None and text["prediction_theory_rel_error"] is None


def test_simulate_text_without_test_data(tmp_path):
    """A data file without beta_star or a test set: the test error is n/a, not None."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 9))
    np.savez(tmp_path / "bare.npz", X=X, y=X @ np.eye(9)[0])
    code, out, err = call(["simulate", "--data", tmp_path / "bare.npz", "--time", "discrete", "--lr", "0.1",
                           "--max-steps", "300", "--quiet"])
    assert code == 0, err
    assert_formatted(out)
    assert re.search(r"^  test error        n/a$", out, re.M), out
    assert re.search(rf"^  data              {re.escape(str(tmp_path / 'bare.npz'))}$", out, re.M), out


# ---------------------------------------------------------------------------------------------
# predict, check, sweep, merge, derive, figures
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--alpha", "0.01"], ["--potential", "l1"], ["--potential", "l2"]],
                         ids=["q", "q-alpha", "l1", "l2"])
def test_predict_text_and_json(extra):
    code, out, err = call(["predict", *TINY, *extra])
    assert code == 0 and err == "", err
    assert_formatted(out)
    lines = out.rstrip("\n").split("\n")
    m = re.fullmatch(r"potential (q \(alpha=(\S+)\)|l1|l2): status (\w+), primal residual (\S+), KKT residual (\S+)",
                     lines[0])
    assert m, lines[0]
    m2 = re.fullmatch(r"  l1 norm (\S+), test error (\S+)", lines[1])
    assert m2 and len(lines) == 2, lines
    code, js, err = call(["predict", *TINY, *extra, "--json"])
    rec = json.loads(js)
    assert code == 0 and rec["status"] == m[3] == "converged"
    assert close(number(m[4]), rec["primal_residual"]) and close(number(m[5]), rec["kkt_residual"])
    assert close(number(m2[1]), rec["l1_norm"]) and close(number(m2[2]), rec["test_error"])
    if "--potential" in extra:  # no KKT certificate for the LP / least-norm oracles: n/a, not None
        assert m[5] == "n/a" and rec["kkt_residual"] is None


def _fake_section(P):
    assert P.n == 6 and P.d == 12  # the data flags reach the sections
    yield check._row("an exact claim", "2.1", 3.0e-13, 1e-9, "converged")
    yield check._row("a margin", "7.3", 0.0123, 0.0, "means 1 > 2", relation=">=")
    yield check._row("a claim that does not hold", "0", 1.0, 1e-9)
    yield check._row("a NaN never passes", "0", float("nan"), 1.0)


def test_check_text_and_json(monkeypatch):
    """The table format on fake rows (the real rows: tests/cli/test_check.py)."""
    monkeypatch.setattr(check, "SECTIONS", [("fake", _fake_section), ("fake again", _fake_section)])
    code, out, err = call(["check", *TINY, "--quiet"])
    assert code == 1, err  # the fake row fails
    assert_formatted(out)
    lines = out.rstrip("\n").split("\n")
    assert lines[0].split() == ["claim", "theory", "measured", "tolerance", "result"]
    rows = [re.fullmatch(r"(.+?)\s+§(\S+)\s+(\S+)\s+(<=|>=)\s+(\S+)\s+(PASS|FAIL)(?:  \((.*)\))?", ln) for ln in lines[1:-1]]
    assert all(rows) and len(rows) == 8, lines
    assert re.fullmatch(r"4/8 claims pass in \d+\.\d s", lines[-1]), lines[-1]
    code, js, err = call(["check", *TINY, "--json", "--quiet"])
    rec = json.loads(js)
    assert code == 1 and not rec["passed"] and len(rec["rows"]) == 8
    for m, row in zip(rows, rec["rows"]):
        assert m[1] == row["claim"] and (m[6] == "PASS") == row["passed"]
        assert close(number(m[3]), row["measured"], rel=6e-3) and close(number(m[5]), row["tolerance"], rel=6e-2)


def test_sweep_and_merge_text(tmp_path):
    grid = ["--method", "gf", "gr", "--gamma", "0.05", "--alpha", "0.1", "1", *TINY, "--max-steps", "200",
            "--workers", "1"]
    for i in (1, 2):
        code, out, err = call(["sweep", *grid, "--shard", f"{i}/2", "--out", tmp_path / f"s{i}", "--quiet"])
        assert code == 0 and out == "" and err == "", (out, err)
    code, out, err = call(["merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "all"])
    assert code == 0, err
    assert_formatted(out)
    assert re.fullmatch(r"dln merge: 4/4 runs from 2 folder\(s\) -> \S+results\.csv\n", out), out
    code, out, err = call(["plot", tmp_path / "all", "--out", tmp_path / "plots"])  # prints the files it wrote
    assert code == 0, err
    assert out and all((tmp_path / "plots" / p.rsplit("/", 1)[-1]).is_file() for p in out.split()), out
    code, out, err = call(["sweep", *grid, "--out", tmp_path / "one"])
    assert code == 0, err
    assert_formatted(out)
    m = re.fullmatch(r"dln sweep: 4/4 runs \(4 new, 0 resumed\) in \d+\.\d s: (.+) -> \S+results\.csv\n", out)
    assert m, out
    counts = [re.fullmatch(r"(\d+) (converged|max_steps|diverged)", part) for part in m[1].split(", ")]
    assert all(counts) and sum(int(c[1]) for c in counts) == 4, m[1]


@pytest.mark.parametrize("latex", [False, True], ids=["text", "latex"])
def test_derive_text(latex):
    from analysis.symbolic import DERIVATIONS

    name = next(iter(DERIVATIONS))
    code, out, err = call(["derive", "--only", name, *(["--latex"] if latex else [])])
    assert code == 0 and err == "", err
    assert "None" not in out and out.rstrip().endswith("check: PASS")


@pytest.mark.slow
def test_figures_text(tmp_path):
    code, out, err = call(["figures", "--out", tmp_path, "--quick", "--only", "1", "--workers", "1", "--dpi", "30"])
    assert code == 0, err
    lines = out.rstrip("\n").split("\n")
    assert lines[0] == f"dln figures: 1 figure(s), quick size, 1 worker(s) -> {tmp_path}"
    assert re.fullmatch(r"fig1_kernel_rich\s+compute\s+\d+\.\d s \(CPU\s+\d+\.\d s\)\s+plot\s+\d+\.\d s "
                        r"\(CPU\s+\d+\.\d s\)", lines[1]), lines[1]
    assert lines[2].startswith("done in ")


# ---------------------------------------------------------------------------------------------
# the README lines, in real processes
# ---------------------------------------------------------------------------------------------
def test_readme_sgd_line_in_a_real_process():
    """The line that used to crash: ``dln simulate --method gf --time discrete --lr 0.05 --batch-size 1``."""
    code, out, err = run_process(["simulate", "--method", "gf", "--time", "discrete", "--lr", "0.05",
                                  "--batch-size", "1", "--quiet"])
    assert code == 0 and err == "", err
    rec = parse_simulate(out)
    assert rec["status"] == "converged" and rec["batch_size"] == 1
    assert rec["prediction_rel_error"] < 1e-9 and rec["prediction_theory_rel_error"] is None


def test_readme_predict_lines_in_real_processes():
    code, out, err = run_process(["predict", "--alpha", "0.01", "--json"])
    assert code == 0 and err == ""
    rec = json.loads(out)
    assert rec["status"] == "converged" and rec["kkt_residual"] < 1e-10 and len(rec["beta"]) == 100
    code, out, err = run_process(["predict", "--potential", "l1"])
    assert code == 0 and err == "", err
    assert_formatted(out)
    assert re.search(r"KKT residual n/a$", out.split("\n")[0]), out


def test_readme_gr_run_then_predict_from_run_in_real_processes(tmp_path):
    code, out, err = run_process(["simulate", *TINY, "--method", "gr", "--gamma", "0.05", "--json"], cwd=tmp_path)
    assert code == 0, err
    (tmp_path / "run.json").write_text(out)
    code, out, err = run_process(["predict", "--from-run", "run.json", "--json"], cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out)["run_rel_error"] < 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["simulate", "--method", "fgr", "--variant", "per-sample", "--alpha", "0.1", "--gamma", "0.05", "--eps", "0.1"],
    ["simulate", "--method", "gr", "--gamma", "0.05", "--json"],
    ["check"],
])
def test_readme_lines_full_size(argv):
    code, out, err = run_process(argv, timeout=1800)
    assert code == 0, err
    if "--json" in argv:
        assert json.loads(out)["status"] == "converged"
        return
    assert_formatted(out)
    if argv[0] == "simulate":
        assert parse_simulate(out)["status"] == "converged"


def test_max_steps_help_is_the_applied_cap(monkeypatch):
    code, out, _ = call(["simulate", "--help"])
    help_text = " ".join(out.split())
    assert code == 0 and f"default {MAX_STEPS['flow']} flow, {MAX_STEPS['discrete']} discrete" in help_text
    # the help and the run read one constant: lower it and both follow
    monkeypatch.setitem(MAX_STEPS, "flow", 3)
    monkeypatch.setitem(MAX_STEPS, "discrete", 4)
    code, out, _ = call(["simulate", "--help"])
    assert "default 3 flow, 4 discrete" in " ".join(out.split())
    for extra, cap in (([], 3), (["--time", "discrete", "--lr", "0.01"], 4)):
        code, out, err = call(["simulate", *TINY, *extra, "--json"])
        rec = json.loads(out)
        assert code == 0 and rec["status"] == "max_steps" and rec["steps"] <= cap, (rec["status"], rec["steps"])
