"""Reliability: damaged or edited sweep folders.  Everything ``--resume`` and ``dln merge`` read back is
validated before use: config.json against its schema (types, ranges, sizes), and every row of
results.csv against the grid (the run its index and run_id say, written as dln writes it, with a
status that is a status).  A mismatch is a one-line error naming the file (and the line of a row),
never a silent keep or drop, a traceback, or an exhausted memory; the refused folder is left as it was.

Before: a damaged config.json gave tracebacks (a fingerprint that is not a string, resumes that is
not a list), a huge n_runs exhausted the memory of ``merge``, a smaller one silently merged part of
the runs; ``--resume`` silently dropped rows whose values contradicted their run id, and ``merge``
accepted them, or rows pasted from another sweep.
"""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from reliability_helpers import SMALL, SMALL_RUNS, assert_user_error, call, count, folder_snapshot, rows_without_wall
from dln.problem import make_problem, save_problem
from dln.sweep_io import COLUMNS


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A full sweep, its two shards, and a sweep of another grid (other alphas), all of SMALL's shape."""
    base = tmp_path_factory.mktemp("damaged")
    out = {}
    other = [x if x != "0.5" else "0.25" for x in SMALL]
    for name, args in (("full", SMALL), ("s1", [*SMALL, "--shard", "1/2"]), ("s2", [*SMALL, "--shard", "2/2"]),
                       ("other", other)):
        code, _, err = call(["sweep", *args, "--out", base / name])
        assert code == 0, err
        out[name] = base / name
    return out


def _copy(folders, name, tmp_path):
    dst = tmp_path / name
    shutil.copytree(folders[name], dst)
    return dst


# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------
def _edit(**changes):
    def apply(cfg):
        cfg.update(changes)
        return json.dumps(cfg)
    return apply


def _drop_column(cfg):
    cfg["columns"] = cfg["columns"][:-1]
    return json.dumps(cfg)


def _duplicate_key(cfg):
    text = json.dumps(cfg)
    return text[:-1] + ', "n_runs": 3}'


#: (id, edit of the config dict → new text (or bytes), text the error names)
CONFIG_CASES = [
    ("fingerprint-a-number", _edit(fingerprint=5), "fingerprint"),
    ("fingerprint-short", _edit(fingerprint="abc"), "fingerprint"),
    ("fingerprint-null", _edit(fingerprint=None), "fingerprint"),
    ("n_runs-huge", _edit(n_runs=10**18), "n_runs"),
    ("n_runs-a-string", _edit(n_runs="8"), "n_runs"),
    ("n_runs-negative", _edit(n_runs=-1), "n_runs"),
    ("n_runs-a-bool", _edit(n_runs=True), "n_runs"),
    ("n_runs-a-float", _edit(n_runs=8.0), "n_runs"),
    ("n_chunks-zero", _edit(n_chunks=0), "n_chunks"),
    ("shard_runs-too-many", _edit(shard_runs=10**9), "shard_runs"),
    ("shard-garbage", _edit(shard="x/y"), "shard"),
    ("shard-a-number", _edit(shard=2), "shard"),
    ("resumes-a-string", _edit(resumes="none"), "resumes"),
    ("resumes-null", _edit(resumes=None), "resumes"),
    ("grid-an-object", _edit(grid={}), "grid"),
    ("grid-of-numbers", _edit(grid=[1, 2]), "grid"),
    ("settings-a-list", _edit(settings=[]), "settings"),
    ("columns-of-another-version", _drop_column, "columns"),
    ("data_sha256-bad", _edit(data_sha256={"x.npz": "nope"}), "data_sha256"),
    ("command-a-number", _edit(command=3), "command"),
    ("workers-zero", _edit(workers=0), "workers"),
    ("key-twice", _duplicate_key, "twice"),
    ("format-of-another-version", _edit(format="dln-sweep/2"), "dln sweep"),
    ("not-an-object", lambda cfg: "[]", "dln sweep"),
    ("deeply-nested", lambda cfg: "[" * 100_000 + "]" * 100_000, "nested"),
    ("not-json", lambda cfg: "{oops", "config.json"),
    ("empty", lambda cfg: "", "config.json"),
    ("not-utf8", lambda cfg: b"\xff\xfe{}", "config.json"),
    ("huge", None, "bytes"),
]


def _damage_config(folder, edit):
    path = folder / "config.json"
    if edit is None:  # a sparse file larger than any config.json dln writes
        with open(path, "r+b") as fh:
            fh.truncate(65 * 2**20)
        return
    text = edit(json.loads(path.read_text()))
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.mark.parametrize("edit, text", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_damaged_config_on_resume(folders, tmp_path, edit, text):
    out = _copy(folders, "full", tmp_path)
    _damage_config(out, edit)
    before = folder_snapshot(out)
    assert_user_error(*call(["sweep", *SMALL, "--resume", "--out", out]), "'out'", "config.json", text)
    assert folder_snapshot(out) == before
    count("damaged: config.json refused (resume)")


@pytest.mark.parametrize("edit, text", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_damaged_config_on_merge(folders, tmp_path, edit, text):
    s1 = _copy(folders, "s1", tmp_path)
    _damage_config(s1, edit)
    merged = tmp_path / "merged"
    # the damaged shard comes second: its config.json is checked even when the first one is sound
    assert_user_error(*call(["merge", folders["s2"], s1, "--out", merged, "--quiet"]), "'dirs'", "config.json", text)
    assert not (merged / "results.csv").exists()
    count("damaged: config.json refused (merge)")


def test_a_smaller_n_runs_is_not_a_smaller_sweep(folders, tmp_path):
    """A well-typed but edited n_runs: --resume sees it contradict the fingerprint, and merge finds
    the rows beyond it (before: merge silently kept the first n_runs runs)."""
    out = _copy(folders, "full", tmp_path)
    _damage_config(out, _edit(n_runs=3, n_chunks=3, shard_runs=3))
    assert_user_error(*call(["sweep", *SMALL, "--resume", "--out", out]), "'out'", "n_runs 3", "contradict")
    assert_user_error(*call(["merge", out, "--out", tmp_path / "m", "--quiet"]), "'dirs'", "n_runs 3", "contradict")
    count("damaged: config.json refused (resume)")
    count("damaged: config.json refused (merge)")


# ---------------------------------------------------------------------------------------------
# rows of results.csv
# ---------------------------------------------------------------------------------------------
def _fields(line):
    return line.split(",")


def _set(column, value, row=2):
    """Row ``row`` (1-based line number of the file) with ``column`` set to ``value``."""
    k = COLUMNS.index(column)

    def edit(lines, other):
        f = _fields(lines[row - 1])
        f[k] = value
        lines[row - 1] = ",".join(f)
        return lines
    return edit


def _swap_run_ids(lines, other):
    a, b = _fields(lines[1]), _fields(lines[2])
    a[1], b[1] = b[1], a[1]
    lines[1], lines[2] = ",".join(a), ",".join(b)
    return lines


def _row_of_another_grid(lines, other):
    lines[1] = other[1]  # run 0 of a sweep of other alphas: a well-formed row, another run
    return lines


def _append(text):
    def edit(lines, other):
        return lines + [text]
    return edit


def _insert(text, at=2):
    def edit(lines, other):
        return lines[:at] + [text] + lines[at:]
    return edit


def _reformat(column):
    """A value rewritten as an editor (or pandas) would: same number, other spelling."""
    k = COLUMNS.index(column)

    def edit(lines, other):
        f = _fields(lines[1])
        f[k] = f[k] + "0" if "." in f[k] else f[k] + ".0"
        lines[1] = ",".join(f)
        return lines
    return edit


def _padded_int(lines, other):
    f = _fields(lines[1])
    f[COLUMNS.index("steps")] = "0" + f[COLUMNS.index("steps")]
    lines[1] = ",".join(f)
    return lines


#: (id, edit of the lines (header first, without newlines), text the error names)
ROW_CASES = [
    ("alpha-edited", _set("alpha", "0.75"), "column alpha"),
    ("method-edited", _set("method", "fgr"), "column method"),
    ("seed-edited", _set("seed", "7"), "column seed"),
    ("n-edited", _set("n", "5"), "column n"),
    ("run-id-of-another-run", _swap_run_ids, "column run_id"),
    ("row-of-another-grid", _row_of_another_grid, "column run_id"),
    ("index-beyond-the-grid", _set("run", "999"), "not a run of this folder's grid"),
    ("index-negative", _set("run", "-1"), "run index"),
    ("index-empty", _set("run", ""), "run index"),
    ("status-not-a-status", _set("status", "ok"), "status 'ok'"),
    ("status-running", _set("status", "running"), "status 'running'"),
    ("status-empty", _set("status", ""), "status ''"),
    ("metric-not-a-number", _set("train_loss", "abc"), "column train_loss"),
    ("float-respelled", _reformat("l1_norm"), "column l1_norm"),
    ("int-respelled", _padded_int, "column steps"),
    ("int-as-float", _set("steps", "3.0"), "column steps"),
    ("extra-field", lambda lines, other: [lines[0], lines[1] + ",x", *lines[2:]], "fields"),
    ("missing-field", lambda lines, other: [lines[0], lines[1].rsplit(",", 1)[0], *lines[2:]], "fields"),
    ("duplicate-row", lambda lines, other: lines + [lines[1]], "appears twice"),
    ("garbage-line-in-the-middle", _insert("garbage,line"), "fields"),
    ("blank-line-in-the-middle", _insert(""), "fields"),
    ("nul-bytes-in-the-middle", _insert("\x00" * 40), "fields"),
    ("unbalanced-quote", _insert('"' + "a" * 10), "CSV"),
    ("complete-garbage-last-line", _append("42,foo"), "fields"),
]


def _damage_rows(folder, other, edit, raw=None):
    path = folder / "results.csv"
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    other_lines = (other / "results.csv").read_text(encoding="utf-8").split("\n")[:-1]
    path.write_text("\n".join(edit(lines, other_lines)) + "\n", encoding="utf-8")


@pytest.mark.parametrize("edit, text", [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES])
def test_damaged_row_on_resume(folders, tmp_path, edit, text):
    out = _copy(folders, "full", tmp_path)
    _damage_rows(out, folders["other"], edit)
    before = folder_snapshot(out)
    line = assert_user_error(*call(["sweep", *SMALL, "--resume", "--out", out]), "'out'", "results.csv:", text)
    assert "delete that line" in line
    assert folder_snapshot(out) == before
    count("damaged: rows refused (resume)")


@pytest.mark.parametrize("edit, text", [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES])
def test_damaged_row_on_merge(folders, tmp_path, edit, text):
    full = _copy(folders, "full", tmp_path)
    _damage_rows(full, folders["other"], edit)
    merged = tmp_path / "merged"
    assert_user_error(*call(["merge", full, "--out", merged, "--quiet"]), "'dirs'", "results.csv:", text)
    assert not (merged / "results.csv").exists()
    count("damaged: rows refused (merge)")


def test_not_utf8_row(folders, tmp_path):
    out = _copy(folders, "full", tmp_path)
    path = out / "results.csv"
    data = path.read_bytes().split(b"\n")
    data[2] = data[2].replace(b",g", b",\xffg", 1)  # before the method name (gf or gr) of the second run
    assert b"\xff" in data[2]
    path.write_bytes(b"\n".join(data))
    assert_user_error(*call(["sweep", *SMALL, "--resume", "--out", out]), "'out'", "results.csv:3", "UTF-8")
    assert_user_error(*call(["merge", out, "--out", tmp_path / "m", "--quiet"]), "'dirs'", "results.csv:3", "UTF-8")
    count("damaged: rows refused (resume)")
    count("damaged: rows refused (merge)")


def test_a_row_of_the_other_shard(folders, tmp_path):
    """A shard folder holding a run of the other shard (copied over by hand)."""
    s1 = _copy(folders, "s1", tmp_path)
    foreign = (folders["s2"] / "results.csv").read_text().split("\n")[1]
    with open(s1 / "results.csv", "a", encoding="utf-8") as fh:
        fh.write(foreign + "\n")
    assert_user_error(*call(["sweep", *SMALL, "--shard", "1/2", "--resume", "--out", s1]), "'out'", "shard 1/2")
    assert_user_error(*call(["merge", s1, "--out", tmp_path / "m", "--partial", "--quiet"]), "'dirs'", "shard 1/2")
    count("damaged: rows refused (resume)")
    count("damaged: rows refused (merge)")


@pytest.mark.parametrize("tail", [b"3,r00", b"\x00" * 64, b"garbage without newline"],
                         ids=["cut-row", "nul-blocks", "garbage"])
def test_only_a_torn_last_line_is_dropped(folders, tmp_path, tail):
    """The mark of a crash (no newline at the end: a cut write, or NUL blocks after a power loss) is
    dropped, and the run re-run; that is the only line ever dropped."""
    out = _copy(folders, "full", tmp_path)
    path = out / "results.csv"
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:-2]) + b"\n" + tail)  # the last row replaced by a torn tail
    code, stdout, err = call(["sweep", *[a for a in SMALL if a != "--quiet"], "--resume", "--out", out])
    assert code == 0 and "dropped a torn last line" in stdout, (err, stdout)
    assert rows_without_wall(path) == rows_without_wall(folders["full"] / "results.csv")
    count("damaged: torn last lines dropped")


def test_merge_checks_rows_against_their_run_id_when_the_grid_cannot_be_rebuilt(tmp_path):
    """A sweep of a data file that is gone when merging: the grid cannot be rebuilt, the rows are
    checked against their own run ids (a changed alpha is caught), and the merge says so."""
    data = tmp_path / "data.npz"
    save_problem(data, make_problem(n=4, d=8, k=2, seed=1, n_test=5))
    args = ["--data", data, "--alpha", "0.5", "1", "2", "--chunk-size", "1", "--max-steps", "10", "--workers", "1",
            "--quiet"]
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    for s, k in ((s1, "1/2"), (s2, "2/2")):
        assert call(["sweep", *args, "--shard", k, "--out", s])[0] == 0
    os.remove(data)
    code, out, err = call(["merge", s1, s2, "--out", tmp_path / "m"])
    assert code == 0 and "checked against their own run ids" in out, (out, err)
    assert len(rows_without_wall(tmp_path / "m" / "results.csv")) == 1 + 3
    _damage_rows(s2, s2, _set("alpha", "0.75"))
    assert_user_error(*call(["merge", s1, s2, "--out", tmp_path / "m2", "--quiet"]), "'dirs'", "results.csv:2",
                      "column run_id")
    count("damaged: rows refused (merge)")


def test_a_changed_data_file_is_another_grid(tmp_path):
    """The data file was rewritten between a sweep and its --resume: another grid (fingerprint)."""
    data = tmp_path / "data.npz"
    save_problem(data, make_problem(n=4, d=8, k=2, seed=1, n_test=5))
    args = ["sweep", "--data", data, "--alpha", "0.5", "1", "--max-steps", "10", "--workers", "1", "--quiet"]
    assert call([*args, "--out", tmp_path / "o"])[0] == 0
    P = make_problem(n=4, d=8, k=2, seed=1, n_test=5)
    np.savez(data, X=P.X, y=P.y + 1e-3)
    assert_user_error(*call([*args, "--resume", "--out", tmp_path / "o"]), "'out'", "fingerprint")
    count("damaged: config.json refused (resume)")


def test_a_complete_folder_with_every_check_passes(folders, tmp_path):
    """The control: untouched folders resume (nothing to do) and merge."""
    out = _copy(folders, "full", tmp_path)
    assert call(["sweep", *SMALL, "--resume", "--out", out])[0] == 0
    code, _, err = call(["merge", folders["s2"], folders["s1"], "--out", tmp_path / "m", "--quiet"])
    assert code == 0, err
    assert rows_without_wall(tmp_path / "m" / "results.csv") == rows_without_wall(folders["full"] / "results.csv")
    assert len(rows_without_wall(out / "results.csv")) == 1 + SMALL_RUNS


def test_a_data_file_rewritten_while_the_sweep_runs(monkeypatch, tmp_path):
    """The workers load the data file by its path: one rewritten after the sweep started (its sha256 is
    in config.json and in every run_id) fails its batches with an error naming it, instead of rows
    computed on other data than their run ids say."""
    import importlib

    data = tmp_path / "data.npz"
    P = make_problem(n=4, d=8, k=2, seed=1, n_test=5)
    save_problem(data, P)
    sweep_module = importlib.import_module("dln.sweep")
    real = sweep_module._check_memory

    def rewrite_then_check(plan, workers):  # between the plan and the first batch
        np.savez(data, X=P.X, y=P.y + 1e-3)
        return real(plan, workers)

    monkeypatch.setattr(sweep_module, "_check_memory", rewrite_then_check)
    code, out, err = call(["sweep", "--data", data, "--alpha", "0.5", "1", "--max-steps", "5", "--workers", "1",
                           "--quiet", "--out", tmp_path / "o"])
    assert code == 1 and err.count("\n") == 1, err
    assert "'data'" in err and "does not change while the sweep runs" in err and "bug" not in err, err
    assert len(rows_without_wall(tmp_path / "o" / "results.csv")) == 1  # the header: no row of the changed data
    count("damaged: data files rewritten during a sweep")
