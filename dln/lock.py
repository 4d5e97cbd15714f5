"""One writer per output folder: an advisory lock on ``DIR/.dln.lock`` (docs/design.md §5).

``dln sweep --out DIR`` (fresh or ``--resume``) and ``dln merge ... --out DIR`` take an exclusive
``fcntl.flock`` on the lock file before they write anything in DIR and hold it until they are done
(a sweep's worker processes never write: the parent holds the lock for them).  A second writer
fails at once with a one-line error naming the folder and the holder (pid, host, start time,
command), which the holder writes into the lock file.

- The kernel releases the lock when its holder dies (SIGKILL, OOM killer, node reboot): a lock is
  never stale, and the next ``--resume`` simply takes it.  flock works across the nodes of a
  cluster on NFSv4 (Linux emulates it with byte-range locks) and on Lustre mounted with
  ``-o flock``; where the file system has no locks (Lustre without it, NFSv3 with ``nolock``) the
  command goes on unlocked with a one-line warning on stderr.
- The lock file is removed when the lock is released.  A process that opened the old file before
  the removal and locks it afterwards holds a lock on a file no one else can see: :func:`acquire`
  therefore checks that the file it locked is still the one at the path, and starts again if not.
- Forked children (the ``fork`` worker processes) close their inherited copy of the descriptor,
  so the lock lives exactly as long as the process that took it; the descriptor is not inherited
  across ``exec``.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
import sys
import time

from .errors import fail

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock, one writer is the user's duty
    fcntl = None

LOCK_NAME = ".dln.lock"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: seconds to wait for a lock whose named holder is gone (held by a descriptor in transit)
_TRANSIT_WAIT = 5.0
_HELD: set = set()  # descriptors of the locks this process holds (closed in forked children)


def _close_in_child():
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _printable(text: str, limit: int = 200) -> str:
    """One line: control characters (newlines of a hostile file name) shown escaped, long text cut."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def holder(folder) -> str | None:
    """Who holds the lock of ``folder`` ("pid 12, host h, since T: COMMAND"), or None if no one does."""
    path = os.path.join(os.fspath(folder), LOCK_NAME)
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | _NOFOLLOW)
    except OSError:
        return None  # no lock file: no writer (a writer always has one)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return _describe(fd)
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder_gone(fd) -> bool:
    """True if the lock file names a process of this host that no longer exists.

    The lock is then held only by a descriptor in transit: a child forked by the holder that has not
    yet closed its copy (the after-fork hook runs when the child is first scheduled), or a fork
    worker of a killed sweep in the 0.25 s before its watchdog ends it."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        if info["host"] != socket.gethostname():
            return False
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return False


def _describe(fd) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return _printable(f"pid {info['pid']} on host {info['host']} since {info['started']}: {info['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet written its name"


class FolderLock:
    """An exclusive lock on ``folder`` held by this process; release with :meth:`release` (or ``with``)."""

    def __init__(self, folder, fd, path):
        self.folder, self.fd, self.path = folder, fd, path

    def release(self):
        if self.fd is None:
            return
        try:
            os.remove(self.path)  # still ours: removed while held (see the module docstring)
        except OSError:
            pass
        _HELD.discard(self.fd)
        os.close(self.fd)  # closing the last descriptor releases the lock
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def acquire(folder, *, name: str, where: str, command=None) -> FolderLock:
    """Take the exclusive lock of ``folder`` (which must exist) for parameter ``name`` of ``where``.

    Raises
    ------
    DLNError
        If another process holds it (naming the holder), or the lock file cannot be created (the
        folder is not writable).
    """
    folder = os.fspath(folder)
    path = os.path.join(folder, LOCK_NAME)
    patience = time.monotonic() + _TRANSIT_WAIT
    for _ in range(100 + int(_TRANSIT_WAIT / 0.05)):
        try:
            # never through a symlink: the holder's line would overwrite whatever file it points to
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | _NOFOLLOW, 0o644)
        except OSError as exc:
            if os.path.islink(path):
                raise fail(name, where, f"a folder whose {LOCK_NAME} is dln's lock file", f"{path} (a symlink)") from None
            raise fail(name, where, "a writable directory", f"{folder} ({exc.strerror or exc})") from None
        if fcntl is None:  # pragma: no cover
            return FolderLock(folder, fd, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                # flock not supported here (Lustre mounted without -o flock: ENOSYS; NFS without lockd:
                # ENOLCK): go on unlocked rather than refuse every sweep on such a cluster, and say so
                print(f"dln: warning: {_printable(folder)} is on a file system without file locks "
                      f"({exc.strerror or exc}): nothing stops a second command from writing it at the same time",
                      file=sys.stderr)
                return FolderLock(folder, fd, path)
            if _holder_gone(fd) and time.monotonic() < patience:
                os.close(fd)
                time.sleep(0.05)
                continue
            who = _describe(fd)
            os.close(fd)
            raise fail(name, where, "a folder no other dln command is writing (one writer per folder: wait for "
                       "it to finish, or stop it)", f"{folder}, locked by {who}") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:  # we locked a file its previous holder had removed: start again
            os.close(fd)
            continue
        info = dict(pid=os.getpid(), host=socket.gethostname(),
                    started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    command=command if command is not None else " ".join(sys.argv))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8", errors="backslashreplace"), 0)
        except OSError as exc:
            os.close(fd)
            raise fail(name, where, "a writable directory", f"{folder} ({exc.strerror or exc})") from None
        _HELD.add(fd)
        return FolderLock(folder, fd, path)
    raise fail(name, where, "a folder whose lock can be taken", f"{folder} (its lock file kept changing)")
