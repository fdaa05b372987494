"""Reads done ahead: later stages' inputs read from the store in a thread, while the job works on something else.

In:  a store's path and named functions of a read-only SQLite connection (what later stages would read
     themselves).
Out: :class:`ReadAhead`, whose :meth:`~ReadAhead.result` gives what a function returned (waiting for the reads
     when needed), or, when it failed, what the caller's own read gives (so an error surfaces where it would have).

A run is mostly one core's work, with the machine's second core idle outside the resolve stage. What a later
stage reads and no earlier stage of the run writes (the resolve stage's ER state, ``er_state``, the clusters
stage's kept state, ``graph_state``, and the status stage's kept inputs, ``status_inputs``: each written only by
its own stage, and one job at a time changes a store, :mod:`linkage.runlock`) can be read on that core while the
load stage works: at 100,000 reports the kept cluster state (~25 MB of LZ4 Arrow blobs) takes ~0.1 CPU s to read
and decode, the ER state (~200 MB of blobs) ~0.2 s, off the critical path of a +1,000 run. :class:`ReadsAhead`
runs several reads in threads of their own, so that the first stage to need one need not wait for the others.

The thread has a connection of its own, opened read-only, and makes its reads in one read transaction: in WAL
mode they see one snapshot of the store, and never block the job's connection. A fork of this process waits for running reads first (as for background checkpoints,
:meth:`linkage.store.embedded.EmbeddedStore.checkpoint_behind`): no forked worker starts with SQLite's locks
held by a thread it does not have.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from linkage.forking import fork_need_not_wait, fork_waits_for
from linkage.store.embedded import read_only

class ReadAhead:
    """``reads`` (name -> function of a connection) run now, one after the other in a background thread, on a
    read-only connection to the store at ``path``, in one read transaction (one snapshot of the store).

    :meth:`result` waits for the reads and gives one's value, once; when it raised (any exception: a table not
    there yet, a damaged part) or was already taken, :meth:`result` calls the ``fallback`` it is given instead,
    so that the caller's own read decides (and raises what it raises). :meth:`close` waits without taking any
    value (call it before the store may be removed; leaving a ``with`` block does). Only for data no earlier
    stage of the job writes: the thread reads the store as it is when the reads start.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.db"
    >>> c = sqlite3.connect(p); _ = c.execute("CREATE TABLE t (x)"); _ = c.execute("INSERT INTO t VALUES (7)")
    >>> c.commit()
    >>> ahead = ReadAhead(p, {"x": lambda conn: conn.execute("SELECT x FROM t").fetchone()[0],
    ...                       "y": lambda conn: conn.execute("SELECT y FROM t")})
    >>> ahead.result("x", lambda: None), ahead.result("y", lambda: "read again"), ahead.result("x", lambda: "again")
    (7, 'read again', 'again')
    """

    def __init__(self, path: Path | str, reads: Mapping[str, Callable[[sqlite3.Connection], Any]],
                 name: str = "reads", mmap_size: int = 0) -> None:
        self.path = Path(path)
        self._mmap_size = int(mmap_size)
        self._reads = dict(reads)
        self.names = frozenset(self._reads)
        self._values: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name=f"linkage-readahead-{name}", daemon=True)
        fork_waits_for(self._thread)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = read_only(self.path)
            try:
                if self._mmap_size:  # before the transaction: SQLite sets a mapping up as one starts
                    conn.execute(f"PRAGMA mmap_size={self._mmap_size}")
                conn.execute("BEGIN")
                for key, read in self._reads.items():
                    try:
                        self._values[key] = read(conn)
                    except Exception:  # noqa: BLE001 - the caller reads again itself and meets the error there
                        pass
            finally:
                conn.close()  # ends the read transaction
        except Exception:  # noqa: BLE001 - no connection: every caller reads itself
            pass
        finally:
            self._reads.clear()
            fork_need_not_wait(threading.current_thread())

    def result(self, name: str, fallback: Callable[[], Any]) -> Any:
        """The value read for ``name`` (waiting for the reads), handed over once; ``fallback()`` when that read
        failed or was taken already."""
        self.close()
        if name not in self._values:
            return fallback()
        return self._values.pop(name)

    def reading(self) -> bool:
        """Whether the reads still go on (:meth:`result` would wait for them)."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Wait for the reads to end."""
        self._thread.join()

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReadsAhead:
    """Several :class:`ReadAhead` (each a thread and a connection of its own, so that one's reads need not wait
    for the other's) as one: :meth:`result` of a name waits only for the reads that read it (``fallback()``
    for a name none reads); :meth:`close` (and leaving a ``with`` block) waits for all of them.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.db"
    >>> c = sqlite3.connect(p); _ = c.execute("CREATE TABLE t (x)"); _ = c.execute("INSERT INTO t VALUES (7)")
    >>> c.commit()
    >>> with ReadsAhead(ReadAhead(p, {"x": lambda conn: conn.execute("SELECT x FROM t").fetchone()[0]}),
    ...                 ReadAhead(p, {"n": lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]})) as r:
    ...     r.result("n", lambda: None), r.result("x", lambda: None), r.result("y", lambda: "none reads it")
    (1, 7, 'none reads it')
    >>> r.reading("x"), r.reading("y")
    (False, False)
    """

    def __init__(self, *aheads: ReadAhead) -> None:
        self._aheads = aheads

    def result(self, name: str, fallback: Callable[[], Any]) -> Any:
        """As :meth:`ReadAhead.result`, from the reads that read ``name``."""
        for ahead in self._aheads:
            if name in ahead.names:
                return ahead.result(name, fallback)
        return fallback()

    def reading(self, name: str) -> bool:
        """Whether the reads that read ``name`` still go on (False for a name none reads)."""
        return any(ahead.reading() for ahead in self._aheads if name in ahead.names)

    def close(self) -> None:
        """Wait for every read to end."""
        for ahead in self._aheads:
            ahead.close()

    def __enter__(self) -> "ReadsAhead":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
