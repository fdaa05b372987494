"""linkage.store.readahead: a stage's input read in a thread while the job goes on, and the run that uses it."""
from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from linkage.settings import DEFAULT_SETTINGS
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
        assert conn.in_transaction  # the reads share one snapshot
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("INSERT INTO t VALUES (8)")
        return conn.execute("SELECT x FROM t").fetchall()

    ahead = ReadAhead(_store(tmp_path / "s.db"), {"t": read}, "test")
    assert ahead.result("t", lambda: pytest.fail("the read failed")) == [(7,)]
    assert seen["thread"] == "linkage-readahead-test" != threading.current_thread().name
    with sqlite3.connect(tmp_path / "s.db") as c:
        assert c.execute("SELECT x FROM t").fetchall() == [(7,)]


def test_a_failed_read_gives_what_the_callers_own_read_gives_and_the_others_are_read(tmp_path):
    ahead = ReadAhead(_store(tmp_path / "s.db"), {"bad": lambda conn: conn.execute("SELECT nope FROM t").fetchall(),
                                                  "good": lambda conn: conn.execute("SELECT x FROM t").fetchall()})
    assert ahead.result("bad", lambda: "read here") == "read here"
    assert ahead.result("good", lambda: "read here") == [(7,)]
    assert ahead.result("good", lambda: "taken already") == "taken already"
    assert ahead.result("unknown", lambda: "never read") == "never read"
    # no store at all: the caller's own read meets the error where it belongs
    missing = ReadAhead(tmp_path / "missing.db", {"x": lambda conn: 1})
    with pytest.raises(FileNotFoundError):
        missing.result("x", lambda: open(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()  # read-only: nothing made


def test_a_store_path_with_uri_characters_is_read(tmp_path):
    odd = tmp_path / "odd?#%41 dir"
    odd.mkdir()
    ahead = ReadAhead(_store(odd / "s.db"), {"x": lambda conn: conn.execute("SELECT x FROM t").fetchone()[0]})
    assert ahead.result("x", lambda: "fell back") == 7


def test_a_fork_waits_for_a_running_read(tmp_path):
    """A forked worker must not start while the reading thread may hold SQLite's locks: os.fork waits."""
    def slow(conn):
        time.sleep(0.5)
        return conn.execute("SELECT x FROM t").fetchone()[0]

    ahead = ReadAhead(_store(tmp_path / "s.db"), {"x": slow})
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    alive_after_fork = ahead._thread.is_alive()
    os.waitpid(pid, 0)
    assert not alive_after_fork
    assert ahead.result("x", lambda: None) == 7


def test_leaving_waits_for_the_read(tmp_path):
    done = []

    def slow(conn):
        time.sleep(0.2)
        done.append(True)

    with ReadAhead(_store(tmp_path / "s.db"), {"x": slow}):
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


def test_an_incremental_run_takes_what_was_read_ahead(two_parts, tmp_path, monkeypatch):
    """The clusters and status stages use the kept cluster state and status inputs the thread read (not read
    again here), and the run ends as one that reads them itself; reads ahead that fail make the stages read
    themselves, with the same result."""
    import linkage.feedback.lifecycle as lifecycle
    import linkage.graph.incremental as gi
    from linkage.pipeline import run

    first, second = two_parts
    base = tmp_path / "base.db"
    run(first, base)
    callers = []

    def spy(module, name):
        real = getattr(module, name)

        def spied(conn):
            callers.append((name, threading.current_thread().name))
            return real(conn)
        monkeypatch.setattr(module, name, spied)

    results = {}
    for case in ("ahead", "failing", "plain"):
        store = tmp_path / f"{case}.db"
        store.write_bytes(base.read_bytes())
        callers.clear()
        spy(gi, "load_state")
        spy(lifecycle, "read_kept_inputs")
        if case == "failing":
            monkeypatch.setattr(ReadAhead, "_run", _read_nothing)
        if case == "plain":
            monkeypatch.setattr("linkage.pipeline.read_ahead", lambda store, full=False: _null())
        summary = run(second, store)
        assert summary.counts["components_reclustered"] < summary.counts["components"]  # incremental
        results[case] = (_rows(store), sorted(callers))
        monkeypatch.undo()
    assert results["ahead"][1] == [("load_state", "linkage-readahead-run"),
                                   ("read_kept_inputs", "linkage-readahead-run")]
    assert results["failing"][1] == [("load_state", "MainThread"), ("read_kept_inputs", "MainThread")] \
        == results["plain"][1]
    assert results["ahead"][0] == results["failing"][0] == results["plain"][0]


def _read_nothing(self) -> None:
    """A ReadAhead thread that reads nothing (every value then comes from the caller's own read)."""
    from linkage.forking import fork_need_not_wait

    fork_need_not_wait(threading.current_thread())


def _rows(store):
    """What the clusters and status stages wrote (the history without its times)."""
    with sqlite3.connect(store) as c:
        return (c.execute("SELECT report_id, cluster_id FROM report_clusters ORDER BY report_id").fetchall(),
                c.execute("SELECT * FROM status_inputs ORDER BY report_id").fetchall(),
                c.execute("SELECT id, report_id, from_status, to_status, agency FROM status_history ORDER BY id")
                .fetchall())


def _forking_settings(tmp_path) -> Path:
    """Settings under which every stage that can fork a worker does, however small the run."""
    path = tmp_path / "forked.toml"
    path.write_text(Path(DEFAULT_SETTINGS).read_text().replace("parallel_min_mentions = 20000", "parallel_min_mentions = 0")
                    .replace("parallel_min_clusters = 2000", "parallel_min_clusters = 0"))
    return path


def _null():
    from contextlib import nullcontext

    return nullcontext(None)


def test_an_incremental_run_takes_the_memberships_read_while_it_clusters(two_parts, tmp_path, monkeypatch):
    """The score and store stages compare the stored memberships, and the clusters stage takes the newest
    report's date, that the thread started after the resolve stage read (not read again here); that thread is
    not running at any fork of the run (the resolve and scoring stages here fork their workers); a run ends
    the same when those reads fail or are not made, and a full run reads nothing ahead."""
    import linkage.forking as forking
    import linkage.pipeline as pipeline
    import linkage.store.embedded as embedded
    from linkage.pipeline import run

    real_newest = pipeline._newest_report
    newest_callers = []

    def newest_spied(conn):
        newest_callers.append(threading.current_thread().name)
        return real_newest(conn)

    first, second = two_parts
    base = tmp_path / "base.db"
    run(first, base)
    forked = _forking_settings(tmp_path)
    callers = []
    real = embedded.read_report_clusters

    def spied(conn):
        callers.append(threading.current_thread().name)
        return real(conn)

    threads_at_fork = []
    real_wait = forking._wait_before_fork

    def noting_wait():
        threads_at_fork.append([t.name for t in forking._FORK_WAITS_FOR if t.is_alive()])
        real_wait()

    results = {}
    for case in ("ahead", "failing", "plain", "full"):
        store = tmp_path / f"{case}.db"
        store.write_bytes(base.read_bytes())
        callers.clear()
        newest_callers.clear()
        threads_at_fork.clear()
        monkeypatch.setattr(embedded, "read_report_clusters", spied)
        monkeypatch.setattr(pipeline, "_newest_report", newest_spied)
        monkeypatch.setattr(forking, "_wait_before_fork", noting_wait)
        if case == "failing":
            monkeypatch.setattr(ReadAhead, "_run", _read_nothing)
        if case == "plain":
            monkeypatch.setattr("linkage.pipeline.read_later", lambda store, full=False: _null())
        summary = run(second, store, full=case == "full", settings_path=forked)
        if case != "full":
            assert summary.counts["components_reclustered"] < summary.counts["components"]  # incremental
        results[case] = (_rows(store), list(callers), list(newest_callers))
        assert len(threads_at_fork) >= 2  # the resolve stage's worker and the scoring stage's
        assert not any("linkage-readahead-score" in alive for alive in threads_at_fork)
        monkeypatch.undo()
    assert results["ahead"][1] == ["linkage-readahead-score"]
    assert results["failing"][1] == ["MainThread"] == results["plain"][1]
    assert results["full"][1] == ["MainThread"]  # store_clusters' own read
    assert results["ahead"][2] == ["linkage-readahead-score"]
    assert results["failing"][2] == ["MainThread"] == results["plain"][2]
    assert results["full"][2] == []  # a full run clusters everything: it reads the reports whole
    assert results["ahead"][0] == results["failing"][0] == results["plain"][0]


def test_a_run_that_clusters_everything_drops_the_memberships_read_ahead(two_parts, tmp_path, monkeypatch):
    """Without a kept cluster state (removed) the run clusters everything: the memberships read ahead are not
    used (store_clusters reads them itself after the scoring), and the result is the same as without the read."""
    import linkage.store.embedded as embedded
    from linkage.pipeline import run

    first, second = two_parts
    base = tmp_path / "base.db"
    run(first, base)
    c = sqlite3.connect(base)
    c.execute("DELETE FROM graph_state")
    c.commit()
    c.close()  # the last connection: the log is copied into the file, which is copied below
    callers = []
    real = embedded.read_report_clusters

    def spied(conn):
        callers.append(threading.current_thread().name)
        return real(conn)

    results = {}
    for case in ("ahead", "plain"):
        store = tmp_path / f"{case}.db"
        store.write_bytes(base.read_bytes())
        callers.clear()
        monkeypatch.setattr(embedded, "read_report_clusters", spied)
        if case == "plain":
            monkeypatch.setattr("linkage.pipeline.read_later", lambda store, full=False: _null())
        summary = run(second, store)
        assert summary.counts["components_reclustered"] == summary.counts["components"]
        results[case] = (_rows(store), sorted(callers))
        monkeypatch.undo()
    assert results["ahead"][1] == ["MainThread", "linkage-readahead-score"]
    assert results["plain"][1] == ["MainThread"]
    assert results["ahead"][0] == results["plain"][0]


def test_reading_is_true_while_the_reads_go_on_and_false_once_they_ended(tmp_path):
    """:meth:`ReadAhead.reading` says whether :meth:`~ReadAhead.result` would wait; :class:`ReadsAhead` asks
    only the reads that read the name."""
    from linkage.store.readahead import ReadsAhead

    path = _store(tmp_path / "s.db")
    go = threading.Event()

    def slow(conn):
        go.wait(10)
        return conn.execute("SELECT x FROM t").fetchone()[0]
    blocked = ReadAhead(path, {"x": slow})
    quick = ReadAhead(path, {"n": lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]})
    both = ReadsAhead(blocked, quick)
    try:
        quick.close()
        assert blocked.reading() and both.reading("x")
        assert not quick.reading() and not both.reading("n") and not both.reading("nobody reads it")
    finally:
        go.set()
        both.close()
    assert not blocked.reading() and not both.reading("x")
    assert both.result("x", lambda: None) == 7


def test_the_resolve_stage_waits_while_the_reads_or_a_thread_every_fork_waits_for_go_on(monkeypatch):
    """``_waiting``: the reads ahead going on, or (only when the types go to two processes) a thread a fork would
    wait for; a live thread forks do not wait for counts for nothing."""
    import linkage.forking as forking
    from linkage.resolve.incremental import _waiting

    monkeypatch.setattr(forking, "_FORK_WAITS_FOR", set())
    go = threading.Event()
    thread = threading.Thread(target=go.wait, args=(10,))
    thread.start()
    try:
        assert not _waiting(None, True)()  # alive, but no fork waits for it
        forking.fork_waits_for(thread)
        assert _waiting(None, True)() and not _waiting(None, False)()
        assert _waiting(lambda: True, False)() and not _waiting(lambda: False, False)()
    finally:
        go.set()
        thread.join()
    assert not _waiting(None, True)()
