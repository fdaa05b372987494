"""EmbeddedStore's per-open and per-run costs: count() remembers a whole table's count only while nothing can have
changed it; an open of a complete store skips the schema script, an incomplete one gets what it lacks."""
from __future__ import annotations

import sqlite3

from linkage.store import EmbeddedStore


def _add(conn, *ids):
    conn.executemany("INSERT INTO reports (report_id, received_at, category, content_hash) VALUES (?, 'd', 'c', 'h')",
                     [(i,) for i in ids])


def test_count_is_remembered_until_the_store_changes(tmp_path, monkeypatch):
    store = EmbeddedStore(tmp_path / "s.db")
    _add(store.conn, "R1", "R2")
    assert store.count("reports") == 2
    asked = []
    real = store.conn

    class Spy:  # counts the COUNT(*) statements that reach SQLite
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *a):
            if sql.startswith("SELECT COUNT(*)"):
                asked.append(sql)
            return real.execute(sql, *a)

    monkeypatch.setattr(store, "conn", Spy())
    assert store.count("reports") == 2 and asked == []  # remembered
    assert store.count("reports", "WHERE report_id = ?", ("R1",)) == 1 and len(asked) == 1  # never remembered
    _add(real, "R3")  # a write through this connection
    assert store.count("reports") == 3 and len(asked) == 2
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    _add(other, "R4")  # a commit by another connection
    assert store.count("reports") == 4 and len(asked) == 3
    assert store.count("reports") == 4 and len(asked) == 3
    real.execute("DELETE FROM reports WHERE report_id = 'none'")  # no row changed: still valid
    assert store.count("reports") == 4 and len(asked) == 3
    other.close()
    store.close()


def test_count_inside_a_transaction_that_rolls_back_is_not_kept(tmp_path):
    store = EmbeddedStore(tmp_path / "s.db")
    _add(store.conn, "R1")
    store.conn.execute("BEGIN")
    _add(store.conn, "R2")
    assert store.count("reports") == 2
    store.conn.execute("ROLLBACK")
    assert store.count("reports") == 1
    # a remembered count is used inside a later transaction while nothing changed, and not once it has
    store.conn.execute("BEGIN")
    assert store.count("reports") == 1
    _add(store.conn, "R3")
    assert store.count("reports") == 2
    store.conn.execute("ROLLBACK")
    assert store.count("reports") == 1
    store.close()


def test_count_after_a_schema_change(tmp_path):
    store = EmbeddedStore(tmp_path / "s.db")
    store.conn.execute("CREATE TABLE extra (a)")
    store.conn.execute("INSERT INTO extra VALUES (1)")
    assert store.count("extra") == 1
    total = store.conn.total_changes
    store.conn.execute("DROP TABLE extra")
    store.conn.execute("CREATE TABLE extra (a)")
    assert store.conn.total_changes == total  # sqlite3 counts no rows for these: the schema version tells
    assert store.count("extra") == 0
    store.close()


def test_open_runs_the_schema_only_when_something_is_missing(tmp_path, monkeypatch):
    from linkage.store import embedded

    EmbeddedStore(tmp_path / "s.db").close()
    scripts = []
    real = sqlite3.Connection.executescript

    class Conn(sqlite3.Connection):
        def executescript(self, script):
            scripts.append(script)
            return real(self, script)

    connect = sqlite3.connect
    monkeypatch.setattr(embedded.sqlite3, "connect", lambda *a, **k: connect(*a, factory=Conn, **k))
    EmbeddedStore(tmp_path / "s.db").close()
    assert scripts == []
    raw = connect(tmp_path / "s.db", isolation_level=None)
    raw.execute("DROP INDEX mentions_report")
    raw.execute("DROP TRIGGER audit_log_no_delete")
    raw.close()
    store = EmbeddedStore(tmp_path / "s.db")
    assert scripts == [embedded.SCHEMA]
    names = {n for (n,) in store.conn.execute("SELECT name FROM sqlite_master")}
    assert {"mentions_report", "audit_log_no_delete"} <= names and embedded._SCHEMA_NAMES <= names
    store.close()


def test_count_of_an_attached_table_is_not_remembered(tmp_path):
    """PRAGMA data_version covers only the main file: a table of an attached one is counted every time."""
    import sqlite3

    other = tmp_path / "z.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (1)")
    with EmbeddedStore(tmp_path / "s.db") as s:
        s.conn.execute(f"ATTACH '{other}' AS aux")
        assert s.count("aux.t") == 1
        with sqlite3.connect(other) as c:
            c.execute("INSERT INTO t VALUES (2)")
        assert s.count("aux.t") == 2
