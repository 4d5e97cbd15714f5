"""Reliability: interruption.  A sweep killed (SIGKILL) at several random points and resumed each time
ends with the results of the uninterrupted run: no duplicate, no gap, no lost finished row, and the CSV
is never left with a half-written row except a torn *last* line, which ``--resume`` drops.

tests/sweep/test_sweep_run.py kills a sweep once at a random moment after its first row, and truncates
the last 25 bytes of a complete file; here the kills are successive (start, kill, resume-and-kill, ...,
final resume), land anywhere (during start-up, between and inside batches, during the final rewrite),
alternate between 1 and 2 workers, and after every kill the file is checked line by line against the
uninterrupted run; the torn-line cases include a row that lacks only its newline (it would parse).

Reproduce a failing kill sequence with ``DLN_KILL_SEED=<seed printed in the failure>``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time

import pytest

from reliability_helpers import call, count, popen_module, run_module
from dln.grid import build_plan
from dln.sweep_io import HEADER, parse_line

#: 27 runs (gf: 3 α; gr: 3 α x 2 γ; 3 seeds) in 15 batches of at most 2; about 4 s of computing.
AXES = dict(method=["gf", "gr"], alpha=[0.02, 0.2, 1.0], gamma=[0.05, 0.1], seeds=3, n=[10], d=[20])
SETTINGS = dict(rtol=1e-10, chunk_size=2)
ARGS = ["--method", "gf", "gr", "--alpha", "0.02", "0.2", "1", "--gamma", "0.05", "0.1", "--seeds", "3",
        "--n", "10", "--d", "20", "--rtol", "1e-10", "--chunk-size", "2", "--quiet"]
N_RUNS = 27


def _strip(line: bytes) -> bytes:
    return line.rsplit(b",", 1)[0]  # without wall_time (the last field; no other field has a comma)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep (in-process, 1 worker): {run index: line without wall_time}."""
    out = tmp_path_factory.mktemp("interrupt") / "ref"
    code, _, err = call(["sweep", *ARGS, "--workers", "1", "--out", out])
    assert code == 0, err
    data = (out / "results.csv").read_bytes()
    lines = data[:-1].split(b"\n")
    assert lines[0] + b"\n" == HEADER.encode() and len(lines) == 1 + N_RUNS
    plan = build_plan(dict(AXES), dict(SETTINGS))
    assert json.loads((out / "config.json").read_text())["fingerprint"] == plan.fingerprint
    return dict(out=out, data=data, rows={int(l.split(b",", 1)[0]): _strip(l) for l in lines[1:]}, plan=plan)


def _snapshot(path, reference, why):
    """Check results.csv after a kill; return {run: full line} of its complete rows and the torn tail.

    Every complete line is a finished run's final row (equal to the uninterrupted run's but for
    wall_time), no run appears twice, and only the last line may be incomplete."""
    if not path.exists():
        return {}, b""
    data = path.read_bytes()
    if not data:
        return {}, b""
    parts = data.split(b"\n")
    torn = parts[-1]  # b"" when the file ends with a newline
    complete = parts[:-1]
    if not complete:  # the header itself was cut: nothing else may be there
        assert HEADER.encode().startswith(torn), why
        return {}, torn
    assert complete[0] + b"\n" == HEADER.encode(), why
    rows = {}
    for line in complete[1:]:
        rec = parse_line(line.decode())
        assert rec is not None, (why, "a complete line that does not parse", line)
        i = rec["run"]
        assert i not in rows, (why, "duplicate run", i)
        assert _strip(line) == reference["rows"][i], (why, "a row differs from the uninterrupted run", i)
        rows[i] = line
    return rows, torn


def _finished_chunks(rows, plan):
    return {j for j, members in enumerate(plan.chunks) if all(i in rows for i in members)}


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="checks for orphan workers through /proc")
def test_sigkill_at_several_random_points_then_resume(reference, tmp_path, no_process_left):
    seed = int(os.environ.get("DLN_KILL_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    why = f"DLN_KILL_SEED={seed}"
    out = tmp_path / "killed"
    path = out / "results.csv"
    plan = reference["plan"]
    kept: dict = {}  # rows of finished batches seen so far: they must survive every later kill and resume
    kills, landed = 0, []
    for attempt in range(4):
        workers = rng.choice(["1", "2"])
        before = len(_snapshot(path, reference, why)[0])
        proc = popen_module(["sweep", *ARGS, "--workers", workers, "--resume", "--out", out], cwd=tmp_path)
        try:
            if rng.random() < 0.3 or before >= N_RUNS - 4:
                # anywhere in the first 0.8 s: interpreter start-up, planning, the resume's rewrite,
                # the first batch (the whole sweep takes ~2 s at rtol = 1e-10, so this lands before the end;
                # at 1e-6 the explicit start finishes it in ~0.8 s and kills stopped landing)
                time.sleep(rng.uniform(0.0, 0.8))
            else:  # once the file holds more finished rows (leaving a few batches to do), a little later
                target = rng.randint(before + 1, N_RUNS - 4)
                deadline = time.monotonic() + 60
                while proc.poll() is None and time.monotonic() < deadline:
                    if path.exists() and path.read_bytes().count(b"\n") - 1 >= target:
                        break
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.1))
            finished_first = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
            err = proc.stderr.read()
            proc.stderr.close()
        assert "Traceback" not in err, (why, err)
        assert no_process_left(str(out)), (why, "worker processes outlived the killed sweep")
        rows, torn = _snapshot(path, reference, why)
        if finished_first:  # the sweep ended before the signal: not a kill point
            assert proc.returncode == 0, (why, err)
            continue
        kills += 1
        landed.append(len(rows))
        count("interruption: SIGKILL points")
        if torn:
            count("interruption: torn last lines left by a kill")
        for i, line in kept.items():  # never lose a finished result
            assert rows.get(i) == line, (why, f"run {i} of a finished batch was lost or changed")
        kept = {i: rows[i] for j in _finished_chunks(rows, plan) for i in plan.chunks[j]}
        if (out / "config.json").exists():
            json.loads((out / "config.json").read_text())  # written atomically: never half a file
    assert kills >= 3, (why, f"only {kills} kill(s) landed before the sweep finished")
    res = run_module(["sweep", *ARGS, "--workers", "2", "--resume", "--out", out], cwd=tmp_path, timeout=120)
    assert res.returncode == 0, (why, res.stderr)
    rows, torn = _snapshot(path, reference, why)
    assert torn == b"" and sorted(rows) == list(range(N_RUNS)), (why, "gaps", sorted(set(range(N_RUNS)) - set(rows)))
    for i, line in kept.items():
        assert rows[i] == line, (why, f"run {i} was re-run or changed by the final resume")
    data = path.read_bytes()
    assert [_strip(l) for l in data[:-1].split(b"\n")] == [_strip(l) for l in reference["data"][:-1].split(b"\n")], why
    assert sorted(os.listdir(out)) == ["config.json", "results.csv"], (why, os.listdir(out))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["fingerprint"] == plan.fingerprint, why
    print(f"{why}: kills after {landed} finished rows")


# ---------------------------------------------------------------------------------------------
# torn lines
# ---------------------------------------------------------------------------------------------
def _partial(reference, tmp_path, n_lines, tail: bytes):
    """A copy of the reference folder whose results.csv keeps the header and the first ``n_lines``
    rows, followed by ``tail`` (a torn write, without its newline)."""
    out = tmp_path / "torn"
    shutil.copytree(reference["out"], out)
    lines = reference["data"].split(b"\n")
    data = b"\n".join(lines[: 1 + n_lines]) + b"\n" + tail
    (out / "results.csv").write_bytes(data)
    return out


def _line(reference, i):
    return reference["data"].split(b"\n")[1 + i]


#: batches (dln.grid.build_plan): [0, 1], [2], [3, 4], ..., [20], [21, 22], [23, 24], [25, 26]
TORN = {
    # kind: (complete rows kept before the torn line, the torn tail)
    "cut-inside-a-field": lambda ref: (21, _line(ref, 21)[: len(_line(ref, 21)) // 2]),
    "cut-after-a-comma": lambda ref: (23, _line(ref, 23)[: _line(ref, 23).index(b",", 40) + 1]),
    "only-the-newline-missing": lambda ref: (23, _line(ref, 23)),  # it would parse as a complete row
    "one-byte": lambda ref: (25, b"2"),
    "second-row-of-a-batch": lambda ref: (22, _line(ref, 22)[:30]),  # batch [21, 22]: 21 whole, 22 torn
    "last-row-of-the-file": lambda ref: (N_RUNS - 1, _line(ref, N_RUNS - 1)[:-3]),
    # (a torn header cannot happen: the header is written with the atomic temporary-file + os.replace)
}


@pytest.mark.parametrize("kind", list(TORN))
def test_torn_last_line_is_dropped_on_resume(reference, tmp_path, kind):
    n_lines, tail = TORN[kind](reference)
    out = _partial(reference, tmp_path, n_lines, tail)
    plan = reference["plan"]
    before = _snapshot(out / "results.csv", reference, kind)[0]
    kept = {i: before[i] for j in _finished_chunks(before, plan) for i in plan.chunks[j]}
    code, stdout, err = call(["sweep", *[a for a in ARGS if a != "--quiet"], "--workers", "1", "--resume", "--out", out])
    assert code == 0, err
    assert "dropped a torn last line" in stdout, stdout
    count("interruption: torn lines injected and dropped")
    rows, torn = _snapshot(out / "results.csv", reference, kind)
    assert torn == b"" and sorted(rows) == list(range(N_RUNS))
    for i, line in kept.items():  # the complete batches were kept as they were, not re-run
        assert rows[i] == line
    data = (out / "results.csv").read_bytes()
    assert [_strip(l) for l in data[:-1].split(b"\n")] == [_strip(l) for l in reference["data"][:-1].split(b"\n")]


def test_appends_are_whole_lines_flushed_and_fsynced(tmp_path, monkeypatch):
    """White-box check of the writer: each batch's rows reach results.csv in one write of whole lines,
    followed by flush and fsync, before the next batch starts."""
    import importlib

    sw = importlib.import_module("dln.sweep")
    events = []
    real_fsync = os.fsync

    class Spy(sw._Appender):
        def __init__(self, p):
            super().__init__(p)
            real_write, real_flush = self.fh.write, self.fh.flush
            self.fh = _Proxy(self.fh, events, real_write, real_flush)

    class _Proxy:
        def __init__(self, fh, ev, write, flush):
            self._fh, self._ev, self._write, self._flush = fh, ev, write, flush

        def write(self, text):
            self._ev.append(("write", text))
            return self._write(text)

        def flush(self):
            self._ev.append(("flush", None))
            return self._flush()

        def __getattr__(self, name):
            return getattr(self._fh, name)

    def fsync(fd):
        events.append(("fsync", fd))
        return real_fsync(fd)

    monkeypatch.setattr(sw, "_Appender", Spy)
    monkeypatch.setattr(sw.os, "fsync", fsync)
    out = tmp_path / "spy"
    code, _, err = call(["sweep", *ARGS, "--seeds", "1", "--workers", "1", "--out", out])
    assert code == 0, err
    writes = [i for i, (kind, _) in enumerate(events) if kind == "write"]
    assert len(writes) == 5  # one per batch (seed 0: gf 2 batches, gr 3 batches)
    for i in writes:
        text = events[i][1]
        assert text.endswith("\n") and all(parse_line(line) for line in text.splitlines())
        assert [k for k, _ in events[i + 1:i + 3]] == ["flush", "fsync"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="process identity through /proc")
def test_a_worker_whose_sweep_died_before_its_initializer_exits():
    """A sweep killed between forking a worker and the worker's initializer: the identity the worker
    checks is the one the sweep took of itself before the pool started, so the orphan exits at once
    (it used to read the identity of an already dead process, None, which never changed: the worker
    waited for work forever)."""
    import subprocess
    import sys

    from reliability_helpers import subprocess_env

    code = ("import os, sys\n"
            "from dln.workers import _process_id, _worker_init\n"
            "me = _process_id(os.getpid())\n"
            "dead = (me[0], str(int(me[1]) - 1))  # this pid with another start time: a process that is gone\n"
            "_worker_init({}, me)\n"
            "print('alive', flush=True)\n"
            "_worker_init({}, dead if sys.argv[1] == 'dead' else None)\n"
            "print('still alive', flush=True)\n")
    for arg in ("dead", "none"):
        proc = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, timeout=60,
                              env=subprocess_env())
        assert proc.stdout.split() == ["alive"] and proc.returncode == 1, (arg, proc.stdout, proc.stderr)
