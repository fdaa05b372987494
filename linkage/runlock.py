"""One writer job per store: ``linkage run``, ``load`` and ``purge`` take an exclusive lock on the store.

In:  the store path and the command taking the lock.
Out: :func:`exclusive` is a context manager; while it is held, a second one on the same store raises
     :class:`~linkage.errors.StoreError` at once, naming the command and process that hold it.

Why: a run is many transactions (resolve, clusters, score, store, status), each atomic on its own. Two runs
on one store at the same time would each read the other's half-written state between transactions (for
example both keep the same earlier score rows). Commands that change one thing in one transaction
(``judge``, ``status``, ``feedback``) and readers (``clusters``, ``export``, notebooks) do not need the lock:
SQLite's write-ahead log gives each transaction a consistent view.

The lock is an operating-system lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on a file beside the
store, ``<store>.lock``, holding ``pid command started``. The operating system drops it when the process
dies, so a crashed run never leaves a store locked; the file is removed when the lock is released. Processes
forked while it is held (the load, resolve and scoring workers) close their copy of the lock's descriptor
at once: a ``flock`` lasts while any copy is open, so a worker left behind by a killed run would otherwise
keep the store locked.

>>> import pathlib, tempfile
>>> db = pathlib.Path(tempfile.mkdtemp()) / "s.db"
>>> with exclusive(db, "run"):
...     try:
...         with exclusive(db, "purge"):
...             pass
...     except StoreError as err:
...         print(str(err).split(":")[0].endswith("s.db"))
True
>>> (db.parent / "s.db.lock").exists()
False
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path
from typing import Iterator

from linkage.errors import StoreError

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # pragma: no cover - Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


_HELD: set[int] = set()  # descriptors of the locks this process holds


def _close_in_child() -> None:
    """In a forked child: close the inherited lock descriptors (the parent keeps its lock)."""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def lock_path(store_path: Path | str) -> Path:
    """The lock file of a store: ``<store>.lock`` beside it."""
    return Path(str(store_path) + ".lock")


def _holder(path: Path) -> str:
    """Who holds the lock, as written in the lock file ("" when unreadable)."""
    try:
        words = path.read_text(encoding="utf-8").split()
    except OSError:
        return ""
    if len(words) >= 3:
        return f" ('linkage {words[1]}', process {words[0]}, started {words[2]})"
    return ""


@contextlib.contextmanager
def exclusive(store_path: Path | str, command: str) -> Iterator[None]:
    """Hold the store's writer lock for the body; :class:`StoreError` when another job holds it.

    The error names the store and the holder's command, process id and start time (never data).
    """
    path = lock_path(store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise StoreError(f"{store_path}: another linkage job is changing this store{_holder(path)}; "
                             f"wait until it ends, then run 'linkage {command}' again.")
        # the holder before us may have removed the file between our open and our lock: then the lock is
        # on a file nobody else will find, so take it again on the file now at ``path``
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        _unlock(fd)
        os.close(fd)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {command} {started}\n".encode("utf-8"))
    _HELD.add(fd)
    try:
        yield
    finally:
        _HELD.discard(fd)
        # remove the file while still holding the lock, so that no one can lock it after we let go
        with contextlib.suppress(OSError):
            os.unlink(path)
        with contextlib.suppress(OSError):
            _unlock(fd)
        os.close(fd)
