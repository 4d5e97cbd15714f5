"""Reliability: crash-consistent sweep folders.  Every state a kill (or a failed write) can leave in a
sweep folder is either completed by ``--resume`` or explained by a one-line error with the fix, and the
temporary files of interrupted writes are removed by the next run.

A sweep writes config.json, then the results.csv header, then appends whole rows; each file is
replaced atomically (temporary file + rename).  The states below are every prefix of that sequence, with
and without the temporary files a kill leaves at each step, plus the states earlier versions left (a
header without config.json: before, ``--resume`` refused that folder forever).
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys

import pytest

from reliability_helpers import SMALL, assert_user_error, call, count, rows_without_wall, subprocess_env
from dln.sweep_io import HEADER


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("states")
    out = base / "ref"
    code, _, err = call(["sweep", *SMALL, "--save-trajectories", "--out", out])
    assert code == 0, err
    return dict(out=out, rows=rows_without_wall(out / "results.csv"), config=(out / "config.json").read_bytes())


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _state(reference, folder, kind):
    """Build the state ``kind`` of a sweep folder in ``folder`` (an empty folder to start with)."""
    cfg, rows = reference["config"], (reference["out"] / "results.csv").read_bytes()
    half = rows[: rows.index(b"\n", len(HEADER) + 1) + 1]  # the header and the first row
    make = {
        "empty-folder": {},
        "config-only": {"config.json": cfg},
        "config-and-empty-results": {"config.json": cfg, "results.csv": b""},
        "config-and-torn-header": {"config.json": cfg, "results.csv": HEADER.encode()[:17]},
        "config-and-header": {"config.json": cfg, "results.csv": HEADER.encode()},
        "config-and-one-row": {"config.json": cfg, "results.csv": half},
        "config-and-one-row-torn": {"config.json": cfg, "results.csv": half + rows[len(half):len(half) + 30]},
        # what the previous versions left (header first, then config.json): no config, no rows
        "header-without-config": {"results.csv": HEADER.encode()},
        "empty-results-without-config": {"results.csv": b""},
        "torn-header-without-config": {"results.csv": HEADER.encode()[:5]},
        # temporary files of interrupted atomic writes, alone and with every other state
        "config-tmp-only": {"config.json.tmp-4242": cfg[:100]},
        "results-tmp-and-config": {"config.json": cfg, "results.csv": half, "results.csv.tmp-77": rows[:200]},
        "both-tmps-and-header": {"config.json": cfg, "config.json.tmp-3": b"{", "results.csv": HEADER.encode(),
                                 "results.csv.tmp-3": b""},
        "write-probe-of-an-old-version": {".dln-write-test-99": b"", "config.json": cfg},
        "trajectory-tmp": {"config.json": cfg, "results.csv": half,
                           "trajectories/chunk-00001.npz.tmp-12": b"PK\x03\x04 half a zip",
                           "trajectories/chunk-00002.npz.tmp-13.npz": b"PK\x03\x04 (an older naming)"},
        "stale-lock-file": {".dln.lock": b'{"pid": 1, "host": "gone", "started": "x", "command": "killed"}\n',
                            "config.json": cfg, "results.csv": half},
    }[kind]
    folder.mkdir()
    for name, data in make.items():
        _write(folder / name, data)


KINDS = ["empty-folder", "config-only", "config-and-empty-results", "config-and-torn-header", "config-and-header",
         "config-and-one-row", "config-and-one-row-torn", "header-without-config", "empty-results-without-config",
         "torn-header-without-config", "config-tmp-only", "results-tmp-and-config", "both-tmps-and-header",
         "write-probe-of-an-old-version", "trajectory-tmp", "stale-lock-file"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_state_a_kill_leaves_is_resumable(reference, tmp_path, kind):
    out = tmp_path / "out"
    _state(reference, out, kind)
    code, _, err = call(["sweep", *SMALL, "--save-trajectories", "--resume", "--out", out])
    assert code == 0, err
    assert rows_without_wall(out / "results.csv") == reference["rows"]
    assert sorted(os.listdir(out)) == ["config.json", "results.csv", "trajectories"], os.listdir(out)
    assert all(".tmp-" not in name for name in os.listdir(out / "trajectories"))
    count("folder states: resumed to the uninterrupted result")


@pytest.mark.parametrize("kind", ["config-only", "header-without-config", "config-and-header"])
def test_without_resume_the_error_names_the_fix(reference, tmp_path, kind):
    out = tmp_path / "out"
    _state(reference, out, kind)
    assert_user_error(*call(["sweep", *SMALL, "--out", out]), "'out'", "--resume")
    count("folder states: explained by an error with the fix")


def test_rows_without_config_are_an_error_with_the_fix(reference, tmp_path):
    """Rows that cannot be checked (their config.json is gone) are never resumed silently."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(reference["out"] / "results.csv", out / "results.csv")
    line = assert_user_error(*call(["sweep", *SMALL, "--resume", "--out", out]), "'out'", "config.json",
                             "move results.csv away")
    assert "start again" in line
    count("folder states: explained by an error with the fix")


def _limit_file_size(nbytes):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_failed_config_write_leaves_a_resumable_folder(reference, tmp_path):
    """config.json cannot be written (file-size limit: EFBIG; a full disk is the same): one line naming
    the file, no temporary file left, and the same command with --resume completes the sweep (before:
    the results.csv header was already there, so --resume refused the folder forever)."""
    out = tmp_path / "out"
    size = len(reference["config"])
    res = subprocess.run([sys.executable, "-m", "dln", "sweep", *SMALL, "--out", str(out)], cwd=tmp_path,
                         env=subprocess_env(), capture_output=True, text=True, timeout=300,
                         preexec_fn=_limit_file_size(size // 2))
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith("dln: error: ") and "\n" not in line and "config.json" in line and "'out'" in line, line
    assert sorted(os.listdir(out)) in ([], ["config.json"]), os.listdir(out)
    code, _, err = call(["sweep", *SMALL, "--resume", "--out", out])
    assert code == 0, err
    assert rows_without_wall(out / "results.csv") == reference["rows"]
    assert sorted(os.listdir(out)) == ["config.json", "results.csv"]
    count("folder states: explained by an error with the fix")


def test_results_csv_or_config_json_that_is_a_folder(reference, tmp_path):
    for name in ("results.csv", "config.json"):
        out = tmp_path / name.replace(".", "-")
        (out / name).mkdir(parents=True)
        assert_user_error(*call(["sweep", *SMALL, "--resume", "--out", out]), "'out'", name, "a file")
        count("folder states: explained by an error with the fix")
    out = tmp_path / "traj"
    out.mkdir()
    (out / "trajectories").write_text("")
    assert_user_error(*call(["sweep", *SMALL, "--save-trajectories", "--out", out]), "'out'", "trajectories")
    count("folder states: explained by an error with the fix")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_rows_that_cannot_be_appended(reference, tmp_path):
    """results.csv stops growing in the middle of the sweep (file-size limit; a full disk is the same):
    one line naming results.csv, the file closed, and --resume completes the sweep."""
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "dln", "sweep", *SMALL, "--out", str(out)], cwd=tmp_path,
                         env=subprocess_env(), capture_output=True, text=True, timeout=300,
                         preexec_fn=_limit_file_size(len(reference["config"]) + 300))
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.startswith("dln: error: ") and "\n" not in line and "results.csv" in line and "--resume" in line, line
    assert 0 < len(rows_without_wall(out / "results.csv")) < len(reference["rows"])
    code, _, err = call(["sweep", *SMALL, "--resume", "--out", out])
    assert code == 0, err
    assert rows_without_wall(out / "results.csv") == reference["rows"]
    count("folder states: explained by an error with the fix")


def test_an_interrupted_merge_is_merged_again(tmp_path):
    """A merge killed between its two files leaves config.json alone: merging again completes it; a
    folder holding another grid's config.json is still refused."""
    shards = []
    for k in ("1/2", "2/2"):
        shards.append(tmp_path / f"s{k[0]}")
        assert call(["sweep", *SMALL, "--shard", k, "--out", shards[-1]])[0] == 0
    m = tmp_path / "m"
    assert call(["merge", *shards, "--out", m, "--quiet"])[0] == 0
    want = rows_without_wall(m / "results.csv")
    os.remove(m / "results.csv")
    assert call(["merge", *shards, "--out", m, "--quiet"])[0] == 0
    assert rows_without_wall(m / "results.csv") == want
    other = tmp_path / "other"
    assert call(["sweep", *[x if x != "0.5" else "0.25" for x in SMALL], "--out", other])[0] == 0
    os.remove(other / "results.csv")
    assert_user_error(*call(["merge", *shards, "--out", other, "--quiet"]), "'out'", "new or empty")
    count("folder states: resumed to the uninterrupted result")
