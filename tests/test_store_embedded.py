"""linkage.store.embedded: the write-ahead log copied behind the job's back (checkpoints_behind)."""
from __future__ import annotations

import sqlite3
import threading
import time

from linkage.store import EmbeddedStore
from linkage.store.embedded import AUTOCHECKPOINT_BEHIND


def _wal_pages(path) -> int:
    conn = sqlite3.connect(path)
    try:
        busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return log
    finally:
        conn.close()


def test_commits_grow_the_log_until_a_background_copy_then_close_empties_it(tmp_path):
    db = tmp_path / "s.db"
    store = EmbeddedStore(db)
    store.checkpoints_behind()
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == AUTOCHECKPOINT_BEHIND
    with store.transaction():
        store.conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                               ((f"k{i}", "x" * 3000) for i in range(3000)))  # ~3,000 pages: past 1,000
    wal = db.with_name(db.name + "-wal")
    assert wal.stat().st_size > 1000 * 4096  # not copied at commit
    store.checkpoint_behind()
    store._checkpointer.join()
    with store.transaction():
        store.set_meta("last", "1")
    store.close()
    assert not wal.exists()  # the last connection closed: everything copied, the log removed
    with EmbeddedStore(db) as again:
        assert again.count("meta", "WHERE key LIKE 'k%'") == 3000 and again.get_meta("last") == "1"


def _slow_copies(monkeypatch, before) -> None:
    """Background copies call ``before()`` first (to hold them back)."""
    real = EmbeddedStore._checkpoint

    def slow(self):
        before()
        real(self)

    monkeypatch.setattr(EmbeddedStore, "_checkpoint", slow)


def test_one_background_copy_at_a_time_and_close_waits_for_it(tmp_path, monkeypatch):
    store = EmbeddedStore(tmp_path / "s.db")
    release, started = threading.Event(), []
    _slow_copies(monkeypatch, lambda: (started.append(1), release.wait(10)))
    store.checkpoints_behind()
    store.checkpoint_behind()
    first = store._checkpointer
    while not started:
        time.sleep(0.01)
    store.checkpoint_behind()  # the first is still running: no second thread
    assert store._checkpointer is first and first.is_alive()
    release.set()
    store.close()
    assert not first.is_alive() and started == [1]


def test_a_failed_background_copy_loses_nothing(tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    store = EmbeddedStore(db)
    store.checkpoints_behind()
    with store.transaction():
        store.set_meta("kept", "yes")

    def refused(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", refused)
    store.checkpoint_behind()
    store._checkpointer.join()
    monkeypatch.undo()
    store.close()
    with EmbeddedStore(db) as again:
        assert again.get_meta("kept") == "yes"


def test_a_fork_waits_for_a_running_background_copy(tmp_path, monkeypatch):
    """A forked worker must not start while the copying thread may hold SQLite's locks: os.fork waits."""
    import os

    store = EmbeddedStore(tmp_path / "s.db")
    _slow_copies(monkeypatch, lambda: time.sleep(0.5))
    store.checkpoints_behind()
    store.checkpoint_behind()
    thread = store._checkpointer
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    alive_after_fork = thread.is_alive()
    os.waitpid(pid, 0)
    store.close()
    assert not alive_after_fork
