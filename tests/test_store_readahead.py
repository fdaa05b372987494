"""linkage.store.readahead: a stage's input read in a thread while the job goes on, and the run that uses it."""
from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from linkage.store.readahead import ReadAhead

sys.path.insert(0, str(Path(__file__).parent))


def _store(path):
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (7)")
    return path


def test_the_read_runs_in_a_thread_of_its_own_on_a_read_only_connection(tmp_path):
    seen = {}

    def read(conn):
        seen["thread"] = threading.current_thread().name
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("INSERT INTO t VALUES (8)")
        return conn.execute("SELECT x FROM t").fetchall()

    ahead = ReadAhead(_store(tmp_path / "s.db"), read, "test")
    assert ahead.result(lambda: pytest.fail("the read did not fail")) == [(7,)]
    assert seen["thread"] == "linkage-readahead-test" != threading.current_thread().name
    with sqlite3.connect(tmp_path / "s.db") as c:
        assert c.execute("SELECT x FROM t").fetchall() == [(7,)]


def test_a_failed_read_gives_what_the_callers_own_read_gives(tmp_path):
    ahead = ReadAhead(_store(tmp_path / "s.db"), lambda conn: conn.execute("SELECT nope FROM t").fetchall())
    assert ahead.result(lambda: "read here") == "read here"
    # no store at all: the caller's own read meets the error where it belongs
    missing = ReadAhead(tmp_path / "missing.db", lambda conn: 1)
    with pytest.raises(FileNotFoundError):
        missing.result(lambda: open(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()  # read-only: nothing made


def test_a_store_path_with_uri_characters_is_read(tmp_path):
    odd = tmp_path / "odd?#%41 dir"
    odd.mkdir()
    ahead = ReadAhead(_store(odd / "s.db"), lambda conn: conn.execute("SELECT x FROM t").fetchone()[0])
    assert ahead.result(lambda: "fell back") == 7


def test_a_fork_waits_for_a_running_read(tmp_path):
    """A forked worker must not start while the reading thread may hold SQLite's locks: os.fork waits."""
    def slow(conn):
        time.sleep(0.5)
        return conn.execute("SELECT x FROM t").fetchone()[0]

    ahead = ReadAhead(_store(tmp_path / "s.db"), slow)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    alive_after_fork = ahead._thread.is_alive()
    os.waitpid(pid, 0)
    assert not alive_after_fork
    assert ahead.result(lambda: None) == 7


def test_leaving_waits_for_the_read(tmp_path):
    done = []

    def slow(conn):
        time.sleep(0.2)
        done.append(True)

    with ReadAhead(_store(tmp_path / "s.db"), slow):
        pass
    assert done == [True]


# --- the run: the kept cluster state read ahead ---------------------------------------------------------
@pytest.fixture(scope="module")
def two_parts(tmp_path_factory):
    from linkage.generate import generate
    from test_pipeline import _split

    folder = tmp_path_factory.mktemp("gen")
    generate(900, 3, folder)
    return _split(folder, folder / "parts", 700)


def _clusters(store):
    with sqlite3.connect(store) as c:
        return c.execute("SELECT report_id, cluster_id FROM report_clusters ORDER BY report_id").fetchall()


def test_an_incremental_run_takes_the_kept_cluster_state_read_ahead(two_parts, tmp_path, monkeypatch):
    """The clusters stage uses the state the thread read (not read again here), and the run ends as one that
    reads it itself; a read ahead that fails makes the stage read the state itself, with the same result."""
    import linkage.graph.incremental as gi
    from linkage.pipeline import run

    first, second = two_parts
    base = tmp_path / "base.db"
    run(first, base)
    real = gi.load_state
    callers = []

    def spied(conn):
        callers.append(threading.current_thread().name)
        return real(conn)

    results = {}
    for case in ("ahead", "failing", "plain"):
        store = tmp_path / f"{case}.db"
        store.write_bytes(base.read_bytes())
        callers.clear()
        monkeypatch.setattr(gi, "load_state", spied)
        if case == "failing":
            monkeypatch.setattr(ReadAhead, "_run", lambda self: setattr(self, "_failed", True))
        if case == "plain":
            monkeypatch.setattr("linkage.pipeline.kept_cluster_state", lambda store, full=False: _null())
        summary = run(second, store)
        assert summary.counts["components_reclustered"] < summary.counts["components"]  # incremental
        results[case] = (_clusters(store), callers.copy())
        monkeypatch.undo()
    assert results["ahead"][1] == ["linkage-readahead-cluster-state"]
    assert results["failing"][1] == ["MainThread"] == results["plain"][1]
    assert results["ahead"][0] == results["failing"][0] == results["plain"][0]


def _null():
    from contextlib import nullcontext

    return nullcontext(None)
