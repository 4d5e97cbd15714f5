"""Reliability: concurrent writers.  One writer per output folder (dln/lock.py): a second ``dln sweep``
(fresh or ``--resume``) or ``dln merge --out`` on a folder that a command is writing is refused with one
line naming the folder and the holder, and nothing the first one writes is lost.

The deterministic cases hold the lock in this process (as a running sweep would) or freeze a running
sweep with SIGSTOP while a second command tries the folder; one case starts two sweeps of different
grids together, as two users (or two job-array tasks with the same --out) would.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from reliability_helpers import (
    SMALL, SMALL_RUNS, assert_user_error, call, count, folder_snapshot, popen_module, rows_without_wall, run_concurrently,
    run_module, subprocess_env,
)
from dln.errors import DLNError
from dln.lock import LOCK_NAME, acquire, holder
from dln.sweep import sweep

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="advisory locks are POSIX")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("conc") / "ref"
    code, _, err = call(["sweep", *SMALL, "--out", out])
    assert code == 0, err
    return rows_without_wall(out / "results.csv")


def _held_by_me(line):
    assert f"pid {os.getpid()}" in line and socket.gethostname() in line and "since " in line, line


def test_a_sweep_into_a_folder_another_command_writes_is_refused(tmp_path, reference):
    """The folder is locked (as by a running sweep that has not written yet): a fresh sweep, a
    --resume, a merge --out are refused without touching it; once the lock is released, they work."""
    out = tmp_path / "out"
    out.mkdir()
    shard = tmp_path / "shard"
    assert call(["sweep", *SMALL, "--out", shard])[0] == 0
    with acquire(out, name="out", where="test", command="dln sweep --test-holder"):
        before = folder_snapshot(out)
        for argv in (["sweep", *SMALL, "--out", out], ["sweep", *SMALL, "--resume", "--out", out],
                     ["merge", shard, "--out", out, "--quiet"]):
            line = assert_user_error(*call(argv), "'out'", str(out), "locked by", "dln sweep --test-holder")
            _held_by_me(line)
            assert folder_snapshot(out) == before
            count("concurrency: second writers refused")
        with pytest.raises(DLNError, match=r"'out' parameter of sweep must be a folder no other dln command is writing"):
            sweep(method="gf", n=4, d=8, k=2, max_steps=5, workers=1, out=str(out))
    assert not (out / LOCK_NAME).exists()
    assert call(["sweep", *SMALL, "--resume", "--out", out])[0] == 0
    assert rows_without_wall(out / "results.csv") == reference
    assert sorted(os.listdir(out)) == ["config.json", "results.csv"]  # the lock file goes with its holder


def test_merge_refuses_a_shard_that_a_sweep_is_writing(tmp_path):
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    for s, k in ((s1, "1/2"), (s2, "2/2")):
        assert call(["sweep", *SMALL, "--shard", k, "--out", s])[0] == 0
    with acquire(s2, name="out", where="test", command="dln sweep --resume (still running)"):
        line = assert_user_error(*call(["merge", s1, s2, "--out", tmp_path / "m", "--quiet"]), "'dirs'", str(s2),
                                 "locked by", "still running")
        _held_by_me(line)
        assert holder(s2) is not None and holder(s1) is None
    assert not (tmp_path / "m" / "results.csv").exists()
    assert call(["merge", s1, s2, "--out", tmp_path / "m", "--quiet"])[0] == 0
    count("concurrency: second writers refused")


def test_resume_while_a_sweep_runs_loses_nothing(tmp_path):
    """A sweep (2 workers) is frozen (SIGSTOP) after its first rows; ``--resume`` on its folder is refused
    (before: it rewrote results.csv and the first sweep went on appending to the unlinked file: rows
    lost); the first sweep, continued, ends with every row."""
    args = ["--method", "gf", "--alpha-geom", "0.3", "1", "12", "--seeds", "2", "--n", "4", "--d", "8", "--k", "2",
            "--chunk-size", "1", "--max-steps", "20", "--quiet"]
    out = tmp_path / "out"
    path = out / "results.csv"
    first = popen_module(["sweep", *args, "--workers", "2", "--out", out], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            if path.exists() and path.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)
        if first.poll() is not None or path.read_bytes().count(b"\n") - 1 >= 24:
            pytest.fail("the first sweep finished before it could be frozen")
        second = run_module(["sweep", *args, "--workers", "1", "--resume", "--out", out], cwd=tmp_path)
        assert second.returncode == 2, second.stderr
        line = second.stderr.strip()
        assert line.startswith("dln: error: ") and "\n" not in line and f"pid {first.pid}" in line, line
        count("concurrency: second writers refused")
    finally:
        first.send_signal(signal.SIGCONT)
        first.wait(timeout=120)
        err = first.stderr.read()
        first.stderr.close()
    assert first.returncode == 0, err
    rows = rows_without_wall(path)
    assert len(rows) == 1 + 24 and [int(r.split(",", 1)[0]) for r in rows[1:]] == list(range(24))


def test_two_fresh_sweeps_of_different_grids_into_one_folder(tmp_path):
    """Started together: one wins, the other is refused (locked, or the folder already holds a sweep);
    the folder holds exactly the winner's grid, complete (before: both could exit 0, one grid's rows
    lost or the two mixed)."""
    out = tmp_path / "out"
    a = ["sweep", *SMALL, "--out", out]
    b = ["sweep", *[x if x != "0.5" else "0.25" for x in SMALL], "--out", out]
    results = run_concurrently([a, b], tmp_path, timeout=120, parallel=2)
    codes = [r[0] for r in results]
    assert sorted(codes) == [0, 2], results
    loser = results[codes.index(2)]
    assert loser[2].startswith("dln: error: The 'out' parameter of sweep") and loser[2].count("\n") == 1, loser
    assert "locked by" in loser[2] or "new or empty folder" in loser[2], loser
    winner = [a, b][codes.index(0)]
    ref = tmp_path / "ref"
    assert call([*winner[:-1], ref])[0] == 0
    assert rows_without_wall(out / "results.csv") == rows_without_wall(ref / "results.csv")
    cfg, ref_cfg = (json.loads((p / "config.json").read_text()) for p in (out, ref))
    assert cfg["fingerprint"] == ref_cfg["fingerprint"]
    count("concurrency: second writers refused")


_HOLD = """
import os, sys, time
from dln.lock import acquire
lock = acquire(sys.argv[1], name="out", where="test", command="holder")
if sys.argv[2] == "fork":
    if os.fork() == 0:  # a forked child (like a fork worker) outlives its parent
        time.sleep(60)
        os._exit(0)
print("locked", flush=True)
if sys.argv[2] == "fork":
    os._exit(0)  # the parent dies without releasing
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["sigkill", "fork"])
def test_the_lock_dies_with_its_holder(tmp_path, how):
    """Killed (SIGKILL: no cleanup), or gone while a forked child still runs: the folder is free at
    once (the kernel drops the lock; forked children close their copy), so --resume never waits for
    a stale lock."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out), how], env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        if how == "sigkill":
            assert holder(out) is not None and f"pid {proc.pid}" in holder(out)
            proc.kill()
        proc.wait(timeout=30)
        with acquire(out, name="out", where="test"):
            count("concurrency: locks freed by their holder's death")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the forked child, if any
        except ProcessLookupError:
            pass
        proc.stdout.close()


def test_a_lock_file_that_is_not_a_file(tmp_path):
    out = tmp_path / "out"
    (out / LOCK_NAME).mkdir(parents=True)
    assert_user_error(*call(["sweep", *SMALL, "--out", out]), "'out'", str(out))
    count("concurrency: second writers refused")


def test_a_lock_file_that_is_a_symlink_is_never_followed(tmp_path):
    """A hostile .dln.lock pointing at another file: refused, and the target is untouched (the holder's
    line would have overwritten it)."""
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("do not touch")
    (out / LOCK_NAME).symlink_to(target)
    assert_user_error(*call(["sweep", *SMALL, "--out", out]), "'out'", "symlink")
    assert target.read_text() == "do not touch"
    count("concurrency: second writers refused")


def test_a_file_system_without_locks_warns_and_goes_on(monkeypatch, tmp_path, reference):
    """flock unsupported (Lustre without -o flock: ENOSYS): the sweep runs, with one warning line."""
    import errno

    import dln.lock

    class NoFlock:
        LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN = 2, 4, 1, 8

        @staticmethod
        def flock(fd, op):
            raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(dln.lock, "fcntl", NoFlock)
    out = tmp_path / "out"
    code, _, err = call(["sweep", *SMALL, "--out", out])
    assert code == 0 and err.count("\n") == 1 and err.startswith("dln: warning: ") and "file locks" in err, err
    assert rows_without_wall(out / "results.csv") == reference
    assert sorted(os.listdir(out)) == ["config.json", "results.csv"]
