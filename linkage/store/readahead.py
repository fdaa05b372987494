"""Reads done ahead: a stage's input read from the store in a thread, while the job works on something else.

In:  a store's path and a function of a read-only SQLite connection (what a later stage would read itself).
Out: :class:`ReadAhead`, whose :meth:`~ReadAhead.result` gives what the function returned (waiting for it when
     needed), or, when it failed, what the caller's own read gives (so an error surfaces where it would have).

A run is mostly one core's work, with the machine's second core idle outside the resolve stage. What a later
stage reads and no earlier stage of the run writes (the clusters stage's kept state, ``graph_state``: only the
store stage writes it, and one job at a time changes a store, :mod:`linkage.runlock`) can be read on that core
while the load stage works: at 100,000 reports the kept cluster state (~25 MB of LZ4 Arrow blobs) takes
~0.1 CPU s to read and decode, off the critical path of a +1,000 run.

The thread has a connection of its own, opened read-only: in WAL mode it reads a snapshot and never blocks
the job's connection. A fork of this process waits for running reads first (as for background checkpoints,
:meth:`linkage.store.embedded.EmbeddedStore.checkpoint_behind`): no forked worker starts with SQLite's locks
held by a thread it does not have.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Generic, Optional, TypeVar

T = TypeVar("T")

#: Reads still running: a fork waits for them.
_RUNNING: set = set()


def _wait_for_reads() -> None:
    for thread in list(_RUNNING):
        thread.join()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_wait_for_reads)


class ReadAhead(Generic[T]):
    """``read(conn)`` run now in a background thread on a read-only connection to the store at ``path``.

    :meth:`result` waits for it and gives its value; when it raised (any exception: a store being changed
    under it, a damaged part), :meth:`result` calls the ``fallback`` it is given instead, so that the
    caller's own read decides (and raises what it raises). :meth:`close` waits without taking the value
    (call it before the store may be removed). Only for data no earlier stage of the job writes: the
    thread reads the store as it is when the read starts.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.db"
    >>> c = sqlite3.connect(p); _ = c.execute("CREATE TABLE t (x)"); _ = c.execute("INSERT INTO t VALUES (7)")
    >>> c.commit()
    >>> ReadAhead(p, lambda conn: conn.execute("SELECT x FROM t").fetchone()[0]).result(lambda: None)
    7
    >>> ReadAhead(p, lambda conn: conn.execute("SELECT y FROM t")).result(lambda: "read again")
    'read again'
    """

    def __init__(self, path: Path | str, read: Callable[[sqlite3.Connection], T], name: str = "read") -> None:
        self.path = Path(path)
        self._read = read
        self._value: Optional[T] = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=f"linkage-readahead-{name}", daemon=True)
        _RUNNING.add(self._thread)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30)
            try:
                self._value = self._read(conn)
            finally:
                conn.close()
        except BaseException:  # noqa: BLE001 - the caller reads again itself and meets the error there
            self._failed = True
        finally:
            _RUNNING.discard(threading.current_thread())

    def result(self, fallback: Callable[[], T]) -> T:
        """The read's value (waiting for it), or ``fallback()`` when the read failed."""
        self.close()
        if self._failed:
            return fallback()
        value, self._value = self._value, None  # handed over once: the caller owns it now
        return value  # type: ignore[return-value]

    def close(self) -> None:
        """Wait for the read to end."""
        self._thread.join()

    def __enter__(self) -> "ReadAhead[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
