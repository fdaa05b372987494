"""linkage.store.embedded: the write-ahead log copied behind the job's back (checkpoints_behind); the clusters' ranks
in a table of their own (schema 2) and the upgrade of a schema 1 store."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from linkage.errors import StoreError
from linkage.store import EmbeddedStore, embedded
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


# --- schema 2: the clusters' ranks in a table of their own -------------------------------------------------------
#: The clusters table of schema 1 (the rank one of the wide row's columns).
V1_CLUSTERS = """
CREATE TABLE IF NOT EXISTS clusters (
    cluster_id TEXT PRIMARY KEY,
    rank INTEGER,
    score REAL,
    n_reports INTEGER,
    n_reporters REAL,
    categories TEXT,
    agencies TEXT,
    reason TEXT,
    signals TEXT,
    routing TEXT,
    unrouted_reason TEXT
);
"""

V1_ROWS = [("c-b", 2, 7.5, 3, 2.0, '["overig"]', '["Politie"]', "reden b", '[{"s": 1}]', "[]", None),
           ("c-gone", 9, 1.0, 2, 1.0, "[]", "[]", "weg", "[]", "[]", "geen regel"),
           ("c-a", 1, 9, 4, 3.5, '["fraude"]', "[]", "reden a", "[]", '["x"]', "geen regel"),
           ("c-unranked", None, None, 2, None, None, None, None, None, None, None),
           ("c-c", 3, 5.25, 2, 2.0, "[]", '["RIEC"]', "Één reden", "[]", "[]", None)]


def _v1_store(path):
    """A store as schema 1 wrote it (in WAL mode, as EmbeddedStore leaves a store), with rowid gaps."""
    assert embedded.CLUSTERS_SCHEMA in embedded.SCHEMA
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(embedded.SCHEMA.replace(embedded.CLUSTERS_SCHEMA, V1_CLUSTERS))
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.executemany(f"INSERT INTO clusters VALUES ({', '.join('?' * 11)})", V1_ROWS)
    conn.execute("DELETE FROM clusters WHERE cluster_id = 'c-gone'")
    conn.executemany("INSERT INTO report_clusters VALUES (?, ?)", [("R1", "c-a"), ("R2", "c-b")])
    conn.close()


def _reads(path) -> dict:
    """What readers of schema 1 read, through a read-only connection of its own."""
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        cur = conn.execute("SELECT * FROM clusters")
        return {"columns": [d[0] for d in cur.description], "rows": cur.fetchall(),
                "ranked": conn.execute("SELECT * FROM clusters ORDER BY rank, cluster_id").fetchall(),
                "types": [(r[1], r[2]) for r in conn.execute("PRAGMA table_info(clusters)")],
                "members": conn.execute("SELECT * FROM report_clusters ORDER BY report_id").fetchall(),
                "kind": conn.execute("SELECT type FROM sqlite_master WHERE name = 'clusters'").fetchone()[0],
                "version": conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]}
    finally:
        conn.close()


def test_a_schema_1_store_is_upgraded_when_opened_and_reads_the_same(tmp_path):
    path = tmp_path / "v1.db"
    _v1_store(path)
    before = _reads(path)
    assert before["kind"] == "table" and before["version"] == "1" and len(before["rows"]) == 4
    rowids = sqlite3.connect(path).execute("SELECT rowid, cluster_id FROM clusters ORDER BY rowid").fetchall()
    with EmbeddedStore(path) as s:
        frame = s.clusters()
        assert s.conn.execute("SELECT rowid, cluster_id FROM cluster_rows ORDER BY rowid").fetchall() == rowids
        assert s.conn.execute("SELECT * FROM cluster_ranks ORDER BY cluster_id").fetchall() == \
            sorted((r[0], r[1]) for r in V1_ROWS if r[0] != "c-gone")
    after = _reads(path)
    assert (after["kind"], after["version"]) == ("view", str(embedded.SCHEMA_VERSION))
    assert {k: v for k, v in after.items() if k not in ("kind", "version")} == \
        {k: v for k, v in before.items() if k not in ("kind", "version")}
    assert frame["cluster_id"].tolist() == ["c-unranked", "c-a", "c-b", "c-c"]  # NULL first, as before
    with EmbeddedStore(path) as s:  # opened again: nothing to do
        assert s.get_meta("schema_version") == str(embedded.SCHEMA_VERSION)
    assert _reads(path) == after


def test_an_upgrade_that_fails_leaves_the_schema_1_store_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "v1.db"
    _v1_store(path)
    before = _reads(path)
    real = embedded._upgrade_statements
    monkeypatch.setattr(embedded, "_upgrade_statements",  # interrupted after the last step, before the commit
                        lambda columns: real(columns) + ["INSERT INTO no_such_table VALUES (1)"])
    with pytest.raises(StoreError, match="could not bring the store from schema 1 to 2.*unchanged"):
        EmbeddedStore(path)
    assert _reads(path) == before
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "cluster_rows" not in names and "cluster_ranks" not in names
    monkeypatch.setattr(embedded, "_upgrade_statements", real)
    with EmbeddedStore(path) as s:  # the next open upgrades it
        assert s.get_meta("schema_version") == "2"
    assert _reads(path)["rows"] == before["rows"]


def test_a_schema_1_store_that_cannot_be_written_is_read_as_it_is(tmp_path, monkeypatch):
    path = tmp_path / "v1.db"
    _v1_store(path)
    before = _reads(path)
    connect = sqlite3.connect

    def read_only(database, *args, **kwargs):  # as a file the user may only read (the tests run as root)
        return connect(Path(database).resolve().as_uri() + "?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(embedded.sqlite3, "connect", read_only)
    with EmbeddedStore(path, must_exist=True) as s:
        assert s.clusters().equals(s.frame("SELECT * FROM clusters ORDER BY rank, cluster_id"))
        assert s.top_clusters(2)["cluster_id"].tolist() == ["c-unranked", "c-a"]
        assert s.get_meta("schema_version") == "1"
    monkeypatch.setattr(embedded.sqlite3, "connect", connect)
    assert _reads(path) == before


def test_readers_that_do_not_read_the_rank_do_not_read_the_ranks(tmp_path):
    """The view's LEFT JOIN on the ranks' key is left out of a query that reads no rank (the long rows are
    read as from the table of schema 1)."""
    with EmbeddedStore(tmp_path / "s.db") as s:
        def plan(sql: str) -> str:
            return " ".join(r[-1] for r in s.conn.execute("EXPLAIN QUERY PLAN " + sql, ("c",) * sql.count("?")))

        for sql in ("SELECT cluster_id, agencies FROM clusters",
                    "SELECT cluster_id, score, n_reports, n_reporters, categories, agencies FROM clusters",
                    "SELECT 1 FROM clusters WHERE cluster_id = ?"):
            assert " r " not in f" {plan(sql)} ", plan(sql)
        assert "SEARCH r USING PRIMARY KEY" in plan("SELECT * FROM clusters")


def test_writes_through_the_clusters_view_leave_what_they_left_in_the_table_of_schema_1(tmp_path):
    """INSERT (plain, OR IGNORE, OR REPLACE), UPDATE and DELETE on the view: the same rows, and the same
    errors, as on the table of schema 1."""
    old = sqlite3.connect(tmp_path / "v1.db", isolation_level=None)
    old.executescript(V1_CLUSTERS)
    new = EmbeddedStore(tmp_path / "v2.db").conn
    cols = ", ".join(embedded.CLUSTER_COLUMNS)
    steps = ["INSERT INTO clusters (cluster_id, rank, score) VALUES ('a', 1, 2.0)",
             "INSERT INTO clusters (cluster_id, score, signals) VALUES ('b', 3.0, '[]')",
             "INSERT OR IGNORE INTO clusters (cluster_id, rank, score) VALUES ('a', 7, 9.0)",
             "INSERT OR IGNORE INTO clusters (cluster_id, rank, score) VALUES ('b', 7, 9.0)",
             "INSERT OR IGNORE INTO clusters (cluster_id, rank, score) VALUES ('c', 3, 1.0)",
             "INSERT OR REPLACE INTO clusters (cluster_id, score) VALUES ('a', 5.0)",
             "INSERT OR REPLACE INTO clusters (cluster_id, rank, reason) VALUES ('b', 4, 'r')",
             "INSERT INTO clusters (cluster_id, rank) VALUES ('a', 1)",
             "UPDATE clusters SET rank = rank + 10",
             "UPDATE clusters SET score = 0, agencies = '[]' WHERE cluster_id = 'c'",
             "UPDATE clusters SET cluster_id = 'z', rank = 99 WHERE cluster_id = 'b'",
             "UPDATE clusters SET rank = NULL WHERE cluster_id = 'c'",
             "DELETE FROM clusters WHERE rank IS NULL AND cluster_id = 'a'",
             "INSERT INTO clusters (cluster_id, rank) VALUES ('a', 2)",
             "DELETE FROM clusters WHERE cluster_id = 'z'"]
    for step in steps:
        got = []
        for conn in (old, new):
            try:
                conn.execute(step)
                error = None
            except sqlite3.IntegrityError as exc:
                error = str(exc).replace("cluster_rows.", "clusters.")
            got.append((error, conn.execute(f"SELECT {cols} FROM clusters ORDER BY cluster_id").fetchall()))
        assert got[0] == got[1], step
    assert new.execute("SELECT * FROM cluster_ranks ORDER BY cluster_id").fetchall() == [("a", 2), ("c", None)]
    old.close()
    new.close()


def test_store_digests_compare_clusters_across_the_two_layouts(tmp_path):
    """bench.bench_run.store_digest hashes views too; :func:`view_rows_digest` gives ``clusters`` by its rows in
    either layout, so a schema 1 store and its upgrade say the same of every table both have."""
    import shutil

    from bench.bench_run import store_digest, view_rows_digest

    _v1_store(tmp_path / "v1.db")
    shutil.copyfile(tmp_path / "v1.db", tmp_path / "v2.db")
    EmbeddedStore(tmp_path / "v2.db").close()
    old, new = store_digest(tmp_path / "v1.db"), store_digest(tmp_path / "v2.db")
    assert "clusters (rows)" in old and {"cluster_rows", "cluster_ranks", "clusters"} <= set(new)
    old, new = view_rows_digest(old), view_rows_digest(new)
    assert old["clusters"] == new["clusters"] == [4, old["clusters"][1]]
    assert {k: v for k, v in old.items() if k != "meta"} == {k: v for k, v in new.items() if k in old and k != "meta"}


def test_insert_tuples_of_plain_values_unchecked_stores_what_checked_stores(tmp_path):
    rows = [("c1", 1, 2.5, None, "tekst"), ("c2", 2, None, 3, "Één")]
    cols = ["cluster_id", "rank", "score", "n_reports", "reason"]
    with EmbeddedStore(tmp_path / "a.db") as a, EmbeddedStore(tmp_path / "b.db") as b:
        assert a.insert_tuples("clusters", rows, cols) == b.insert_tuples("clusters", iter(rows), cols, plain=True) == 2
        sql = "SELECT * FROM clusters ORDER BY cluster_id"
        assert a.conn.execute(sql).fetchall() == b.conn.execute(sql).fetchall()


def test_a_schema_1_store_another_process_is_writing_is_read_as_it_is_by_commands_and_refused_by_runs(
        tmp_path, monkeypatch):
    """A command's open (``must_exist``) waits UPGRADE_WAIT_READING for the write lock, then reads the schema 1
    store as it is (the next open upgrades it); a run's open says that another process is writing it."""
    import time

    path = tmp_path / "v1.db"
    _v1_store(path)
    before = _reads(path)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process writing (an older linkage, say)
    monkeypatch.setattr(embedded, "UPGRADE_WAIT_READING", 0.2)
    monkeypatch.setattr(embedded, "STORE_TIMEOUT", 0.2)
    try:
        t0 = time.perf_counter()
        with EmbeddedStore(path, must_exist=True) as store:
            assert store.conn.execute("SELECT count(*) FROM clusters").fetchone()[0] == len(before["rows"])
        assert time.perf_counter() - t0 < 5
        with pytest.raises(StoreError, match="another process is writing this store") as info:
            EmbeddedStore(path)
        assert "damaged" not in str(info.value)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert _reads(path) == before  # unchanged
    EmbeddedStore(path).close()  # the lock gone: upgraded
    after = _reads(path)
    assert after["kind"] == "view" and after["rows"] == before["rows"]


def test_a_file_that_is_not_a_linkage_store_keeps_its_clusters_table(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE clusters (cluster_id TEXT, rank INTEGER)")
        conn.execute("INSERT INTO clusters VALUES ('x', 1)")
    with pytest.raises(StoreError):  # the view cannot take the table's name: not used as a store, not changed
        EmbeddedStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'clusters'").fetchone()[0] == "table"
        assert conn.execute("SELECT * FROM clusters").fetchall() == [("x", 1)]


def test_numpy_scalars_and_missing_values_in_object_columns_are_stored_as_plain_values(tmp_path):
    """The cluster writes bind rows unchecked (insert_tuples(plain=True)): _sqlite_values makes every value
    plain first (a numpy integer would otherwise be stored as a BLOB of its bytes)."""
    import numpy as np
    import pandas as pd

    from linkage.pipeline import _sqlite_values

    df = pd.DataFrame({"cluster_id": ["c1", "c2"], "n_reports": pd.Series([np.int64(2), pd.NA], dtype=object),
                       "score": pd.Series([np.float64(1.5), np.nan], dtype=object),
                       "flag": pd.Series([np.bool_(True), None], dtype=object)})
    rows = _sqlite_values(df, list(df.columns))
    assert rows == [("c1", 2, 1.5, True), ("c2", None, None, None)]
    assert [type(v) for v in rows[0]] == [str, int, float, bool]
    with EmbeddedStore(tmp_path / "s.db") as store:
        store.insert_tuples("cluster_rows", [r[:3] for r in rows], ["cluster_id", "n_reports", "score"], plain=True)
        assert store.conn.execute("SELECT typeof(n_reports), typeof(score) FROM cluster_rows ORDER BY cluster_id"
                                  ).fetchall() == [("integer", "real"), ("null", "null")]


def _memberships_by_rows(store: EmbeddedStore):
    """The memberships as the row-by-row query gives them (what read_report_clusters must equal)."""
    return store.frame(embedded.REPORT_CLUSTERS_SQL)


@pytest.mark.parametrize("rows", [
    [("R2", "c_1"), ("R10", "c_1"), ("R1", "c_2"), ("é", "c_3"), ("z", "c_3"), ("", "c_4")],  # byte order, ''
    [("R1", "c\x1f1"), ("R2", "c_2")],   # a field separator inside a value: read row by row
    [("R1\x1eR3", "c_1"), ("R2", "c_2")],  # a row separator inside a value: read row by row
    [],                                    # no memberships
])
def test_memberships_read_as_one_text_equal_the_rows_read_one_by_one(tmp_path, rows):
    import pandas as pd

    store = EmbeddedStore(tmp_path / "s.db")
    with store.transaction():
        store.conn.executemany("INSERT INTO report_clusters (report_id, cluster_id) VALUES (?, ?)", rows)
    got = store.report_clusters()
    want = _memberships_by_rows(store)
    pd.testing.assert_frame_equal(got, want)
    assert got["report_id"].tolist() == sorted(r for r, _ in rows)
    # through a read-only connection of its own (as a read-ahead thread reads them)
    conn = embedded.read_only(store.path)
    try:
        pd.testing.assert_frame_equal(embedded.read_report_clusters(conn), want)
    finally:
        conn.close()
    store.close()


def test_memberships_past_the_longest_text_are_read_row_by_row(tmp_path):
    import pandas as pd

    store = EmbeddedStore(tmp_path / "s.db")
    with store.transaction():
        store.conn.executemany("INSERT INTO report_clusters (report_id, cluster_id) VALUES (?, ?)",
                               [(f"R{i}", f"c_{i % 7}") for i in range(500)])
    store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)  # the joined text is longer: SQLite refuses it
    got = store.report_clusters()
    store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000_000)
    pd.testing.assert_frame_equal(got, _memberships_by_rows(store))
    store.close()


def test_memberships_with_a_null_and_a_value_holding_both_separators_are_read_row_by_row():
    """A NULL drops its row from the joined text and a value holding both separators adds one: the counts
    would agree, so NULLs alone send the read row by row (a table that allows them; the store's does not)."""
    import pandas as pd

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE report_clusters (report_id TEXT, cluster_id TEXT)")
    conn.executemany("INSERT INTO report_clusters VALUES (?, ?)", [(None, "c"), ("x\x1fy\x1ez", "w")])
    cur = conn.execute(embedded.REPORT_CLUSTERS_SQL)
    want = pd.DataFrame.from_records(cur.fetchall(), columns=[d[0] for d in cur.description])
    got = embedded.read_report_clusters(conn)
    assert got.values.tolist() == want.values.tolist()
    assert len(got) == 2 and got["cluster_id"].tolist() == want["cluster_id"].tolist()
