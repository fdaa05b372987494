"""The embedded store: one SQLite file that holds everything a run needs, no server required.

In:  canonical rows from the loaders; entities, clusters and routing from later stages.
Out: the same as pandas DataFrames for the next stage, the CLI, the Neo4j writer and notebooks.

Every write happens inside a transaction (``with store.transaction():``), so an interrupted load or
run keeps what was committed and can simply be run again. Tables that record judgements, status
history, audit and deletions are append-only by convention: this module offers inserts for them, no
updates.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import pandas as pd

from linkage import model
from linkage.forking import fork_need_not_wait, fork_waits_for
from linkage.errors import StoreError

#: 2: the clusters' ranks in a table of their own (:data:`CLUSTERS_SCHEMA`); a store of schema 1 is brought
#: to 2 when opened (:meth:`EmbeddedStore._upgrade`).
SCHEMA_VERSION = 2
#: The write-ahead log's size (pages of 4 KiB) at which a connection after :meth:`EmbeddedStore.checkpoints_behind`
#: copies it into the database itself (a run's background copies normally keep it far below: 1 GiB).
AUTOCHECKPOINT_BEHIND = 262144

DEFAULT_STORE = "linkage.db"
#: Seconds a store's connection waits for another process's write lock.
STORE_TIMEOUT = 30
#: Seconds the open of an existing store (``must_exist``: the commands' opens) waits to upgrade its schema
#: while another process writes it; then it reads the store as it is (:meth:`EmbeddedStore._upgrade`).
UPGRADE_WAIT_READING = 2.0


def default_store_path() -> Path:
    """``$LINKAGE_STORE`` when set, else ``./linkage.db``."""
    return Path(os.environ.get("LINKAGE_STORE") or DEFAULT_STORE)


_VALUE_COLS = ", ".join(f"{f} TEXT" for f in model.VALUE_FIELDS + model.NORMALISED_FIELDS)

#: The columns of ``clusters`` (a view, see :data:`CLUSTERS_SCHEMA`), in order: the table of schema 1's.
CLUSTER_COLUMNS = ("cluster_id", "rank", "score", "n_reports", "n_reporters", "categories", "agencies", "reason",
                   "signals", "routing", "unrouted_reason")
#: The columns of ``cluster_rows``: those of ``clusters`` but the rank, in the same order.
CLUSTER_ROW_COLUMNS = tuple(c for c in CLUSTER_COLUMNS if c != "rank")

#: The clusters (schema 2). One wide row per cluster in ``cluster_rows`` (~2.7 KB: signals, reason, routing
#: texts), its rank in the narrow ``cluster_ranks`` (one row per cluster), and the view ``clusters`` that reads
#: as the table of schema 1 did: the same columns in the same order, the same values, and the rows of a plain
#: ``SELECT * FROM clusters`` in the same order (``cluster_rows``' rowids are the table's). Ranks are dense over
#: all clusters by score, so adding reports moves most of them (a +1,000 run on 100,000 reports moves ~9,000 of
#: ~10,300), which rewrote as many wide rows (38 MB) while the rank was one of their columns. The LEFT JOIN on
#: the ranks' primary key lets SQLite leave the ranks out of a query that does not read ``rank``.
#:
#: The pipeline writes the two tables (:func:`linkage.pipeline.store_clusters`, :func:`linkage.retention.purge`);
#: ``INSERT``, ``UPDATE`` and ``DELETE`` on the view still work, through ``INSTEAD OF`` triggers (for fixtures,
#: notebooks and tools written against schema 1: the same rows as the table gave, ``OR REPLACE`` and
#: ``OR IGNORE`` included; slower than writing the tables, and a statement's row count is 0).
CLUSTERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_rows (
    cluster_id TEXT PRIMARY KEY,
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
CREATE TABLE IF NOT EXISTS cluster_ranks (
    cluster_id TEXT PRIMARY KEY,
    rank INTEGER
) WITHOUT ROWID;
CREATE VIEW IF NOT EXISTS clusters AS
SELECT c.cluster_id AS cluster_id, r.rank AS rank, c.score AS score, c.n_reports AS n_reports,
       c.n_reporters AS n_reporters, c.categories AS categories, c.agencies AS agencies, c.reason AS reason,
       c.signals AS signals, c.routing AS routing, c.unrouted_reason AS unrouted_reason
FROM cluster_rows c LEFT JOIN cluster_ranks r ON r.cluster_id = c.cluster_id;
CREATE TRIGGER IF NOT EXISTS clusters_insert INSTEAD OF INSERT ON clusters BEGIN
    INSERT INTO cluster_rows (cluster_id, score, n_reports, n_reporters, categories, agencies, reason, signals,
                              routing, unrouted_reason)
    VALUES (NEW.cluster_id, NEW.score, NEW.n_reports, NEW.n_reporters, NEW.categories, NEW.agencies, NEW.reason,
            NEW.signals, NEW.routing, NEW.unrouted_reason);
    -- only when the row went in (not an OR IGNORE that kept the stored row); an OR REPLACE replaces the rank
    INSERT INTO cluster_ranks (cluster_id, rank) SELECT NEW.cluster_id, NEW.rank WHERE changes() > 0;
END;
CREATE TRIGGER IF NOT EXISTS clusters_update_rows INSTEAD OF UPDATE OF cluster_id, score, n_reports, n_reporters,
    categories, agencies, reason, signals, routing, unrouted_reason ON clusters BEGIN
    UPDATE cluster_rows SET cluster_id = NEW.cluster_id, score = NEW.score, n_reports = NEW.n_reports,
        n_reporters = NEW.n_reporters, categories = NEW.categories, agencies = NEW.agencies, reason = NEW.reason,
        signals = NEW.signals, routing = NEW.routing, unrouted_reason = NEW.unrouted_reason
    WHERE cluster_id IS OLD.cluster_id;
END;
CREATE TRIGGER IF NOT EXISTS clusters_update_rank INSTEAD OF UPDATE OF cluster_id, rank ON clusters BEGIN
    DELETE FROM cluster_ranks WHERE cluster_id IS OLD.cluster_id;
    INSERT INTO cluster_ranks (cluster_id, rank) VALUES (NEW.cluster_id, NEW.rank);
END;
CREATE TRIGGER IF NOT EXISTS clusters_delete INSTEAD OF DELETE ON clusters BEGIN
    DELETE FROM cluster_rows WHERE cluster_id IS OLD.cluster_id;
    DELETE FROM cluster_ranks WHERE cluster_id IS OLD.cluster_id;
END;
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS reports (
    report_id TEXT PRIMARY KEY,
    received_at TEXT NOT NULL,
    category TEXT NOT NULL,
    category_raw TEXT,
    description TEXT,
    reporter_id TEXT,
    reporter_type TEXT,
    content_hash TEXT NOT NULL,
    source_file TEXT,
    source_row INTEGER
);
CREATE TABLE IF NOT EXISTS mentions (
    mention_id TEXT PRIMARY KEY,
    report_id TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    role TEXT,
    {_VALUE_COLS},
    warnings TEXT,
    parent_mention_id TEXT,
    content_hash TEXT NOT NULL,
    source_file TEXT,
    source_row INTEGER
);
CREATE INDEX IF NOT EXISTS mentions_report ON mentions(report_id);
CREATE TABLE IF NOT EXISTS mention_links (
    src_mention_id TEXT NOT NULL,
    dst_mention_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    report_id TEXT NOT NULL,
    PRIMARY KEY (src_mention_id, dst_mention_id, rel_type)
);
CREATE TABLE IF NOT EXISTS quarantine (
    source_file TEXT NOT NULL,
    source_row INTEGER NOT NULL,
    kind TEXT NOT NULL,
    field TEXT,
    reason TEXT NOT NULL,
    raw TEXT,
    PRIMARY KEY (source_file, source_row, kind)
);
CREATE TABLE IF NOT EXISTS loads (
    load_id INTEGER PRIMARY KEY AUTOINCREMENT,
    file TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    stats TEXT
);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    entity_type TEXT NOT NULL,
    label TEXT,
    n_mentions INTEGER,
    attributes TEXT
);
CREATE TABLE IF NOT EXISTS mention_entities (
    mention_id TEXT PRIMARY KEY,
    entity_id TEXT NOT NULL,
    entity_type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mention_entities_entity ON mention_entities(entity_id);
CREATE TABLE IF NOT EXISTS er_pairs (
    left_id TEXT NOT NULL,
    right_id TEXT NOT NULL,
    entity_type TEXT,
    weight REAL,
    probability REAL,
    matched INTEGER,
    levels TEXT,
    reason TEXT,
    PRIMARY KEY (left_id, right_id)
);
{CLUSTERS_SCHEMA}CREATE TABLE IF NOT EXISTS report_clusters (
    report_id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS report_clusters_cluster ON report_clusters(cluster_id);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    stats TEXT
);
""" + """
-- Lifecycle, judgements, audit and retention (linkage.feedback, linkage.resolve.judgements,
-- linkage.audit, linkage.retention). Append-only: triggers refuse UPDATE; only retention deletes.
CREATE TABLE IF NOT EXISTS status_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    note TEXT,
    agency TEXT
);
CREATE INDEX IF NOT EXISTS status_history_report ON status_history(report_id, id);
CREATE TABLE IF NOT EXISTS feedback_sent (
    report_id TEXT NOT NULL,
    history_id INTEGER NOT NULL,
    sent_at TEXT NOT NULL,
    channel TEXT,
    PRIMARY KEY (report_id, history_id)
);
CREATE TABLE IF NOT EXISTS judgements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    id_a TEXT NOT NULL,
    id_b TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('same', 'different', 'unsure', 'withdrawn')),
    note TEXT,
    mention_a TEXT,
    mention_b TEXT
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    command TEXT NOT NULL,
    touched TEXT
);
CREATE TABLE IF NOT EXISTS deletions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    older_than_days INTEGER NOT NULL,
    cutoff TEXT NOT NULL,
    counts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    run_id INTEGER,
    cluster_id TEXT NOT NULL,
    event TEXT NOT NULL CHECK (event IN ('created', 'kept', 'merged', 'split', 'dissolved')),
    related_ids TEXT
);
CREATE INDEX IF NOT EXISTS cluster_history_cluster ON cluster_history(cluster_id, id);
CREATE TABLE IF NOT EXISTS cluster_cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster_id TEXT NOT NULL,
    active INTEGER NOT NULL,
    note TEXT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL
);
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {t}_append_only BEFORE UPDATE ON {t} "
    f"BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END;\n"
    for t in ("status_history", "judgements", "audit_log", "deletions", "cluster_history", "cluster_cases")
) + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t} "
    f"BEGIN SELECT RAISE(ABORT, '{t} is never deleted'); END;\n"
    for t in ("audit_log", "deletions")
)


def _schema_names(script: str) -> frozenset[str]:
    """The names ``script`` creates; every statement of it must be a ``CREATE ... IF NOT EXISTS`` (what
    :meth:`EmbeddedStore._schema_complete` relies on)."""
    import re

    names = set()
    for statement in _statements(script):
        found = re.match(r"(?:\s*--[^\n]*\n)*\s*CREATE (?:TABLE|(?:UNIQUE )?INDEX|VIEW|TRIGGER) IF NOT EXISTS (\w+)",
                         statement)
        if found is None:
            raise AssertionError(f"SCHEMA may hold only CREATE ... IF NOT EXISTS statements, not {statement[:60]!r}")
        names.add(found.group(1))
    return frozenset(names)


def _statements(script: str) -> list[str]:
    """The SQL statements of ``script``, one by one (:func:`sqlite3.complete_statement` decides where one ends)."""
    out, part = [], ""
    for line in script.splitlines(keepends=True):
        part += line
        if sqlite3.complete_statement(part):
            out.append(part.strip())
            part = ""
    if part.strip():
        out.append(part.strip())
    return out


def _says(exc: sqlite3.Error, primary: int, words: str) -> bool:
    """Whether ``exc`` carries the SQLite result code ``primary`` (any of its extended codes), or, where the
    driver gives no code, whether its message holds ``words``."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (code & 0xFF) == primary if isinstance(code, int) else words in str(exc)


def _read_only(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the database cannot be written (``SQLITE_READONLY``)."""
    return _says(exc, 8, "readonly")


def _busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds the lock (``SQLITE_BUSY``)."""
    return _says(exc, 5, "locked")


def _upgrade_statements(columns: Sequence[str]) -> list[str]:
    """The statements that bring a store of schema 1, whose ``clusters`` table has ``columns``, to schema 2
    (:meth:`EmbeddedStore._upgrade` runs them in one transaction)."""
    if any(c not in CLUSTER_COLUMNS for c in columns):
        raise sqlite3.DatabaseError(f"its clusters table has columns {', '.join(sorted(set(columns) - set(CLUSTER_COLUMNS)))} "
                                    "that schema 1 does not have")
    kept = ", ".join(c for c in CLUSTER_ROW_COLUMNS if c in columns)
    tables, view = _statements(CLUSTERS_SCHEMA)[:2], _statements(CLUSTERS_SCHEMA)[2:]
    out = [t.replace("IF NOT EXISTS ", "") for t in tables]  # a table of that name already there: fail, change nothing
    out.append(f"INSERT INTO cluster_rows (rowid, {kept}) SELECT rowid, {kept} FROM clusters ORDER BY rowid")
    out.append(f"INSERT INTO cluster_ranks (cluster_id, rank) SELECT cluster_id, {'rank' if 'rank' in columns else 'NULL'} "
               "FROM clusters WHERE cluster_id IS NOT NULL ORDER BY cluster_id")  # one rank row per cluster
    out.append("DROP TABLE clusters")
    out.extend(view)
    out.append(f"INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')")
    return out


_SCHEMA_NAMES = _schema_names(SCHEMA)


class EmbeddedStore:
    """A linkage store in one SQLite file.

    Parameters
    ----------
    path:
        The SQLite file; created (with its folder) when missing unless ``must_exist``.
    must_exist:
        Raise :class:`StoreError` instead of creating a new store (for read-only commands).

    >>> import tempfile, pathlib
    >>> s = EmbeddedStore(pathlib.Path(tempfile.mkdtemp()) / "t.db")
    >>> s.count("reports")
    0
    """

    def __init__(self, path: Path | str, must_exist: bool = False) -> None:
        self.path = Path(path)
        self._checkpointer: Optional[threading.Thread] = None
        self._counts: dict[str, tuple[tuple[int, int, int], int]] = {}  # table -> (store version, rows): count()
        if must_exist and not self.path.exists():
            raise StoreError(
                f"No store at {self.path}. Load reports first (linkage load FILE) or point --store "
                "(or LINKAGE_STORE) at an existing store."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=STORE_TIMEOUT)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=OFF")
            if self._upgrade(wait=UPGRADE_WAIT_READING if must_exist else None) and not self._schema_complete():
                self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a linkage store or is damaged ({exc}).") from None
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer linkage (schema {version}); upgrade linkage.")

    def _upgrade(self, wait: Optional[float] = None) -> bool:
        """Bring a store of schema 1 to :data:`SCHEMA_VERSION` before the schema is applied; False when it is
        of schema 1 and cannot be written (a read-only file or folder), or, with ``wait`` (seconds; the opens of
        commands on an existing store, ``must_exist``), when another process holds the store's write lock longer
        than that (readers then read it as it is instead of waiting; the next open upgrades it). Without
        ``wait`` (a run or load) the connection's own timeout holds, then a clear error. Only a linkage store
        (a ``meta`` table saying schema 1, or none yet) is upgraded: another file with a ``clusters`` table is
        left alone.

        Schema 1 kept each cluster's rank in its wide ``clusters`` row. Here, in one transaction, the rows go
        into ``cluster_rows`` (same rowids, same values but the rank), the ranks into ``cluster_ranks``, the
        table is dropped and the view ``clusters`` created in its place: ``SELECT * FROM clusters`` reads the
        same rows as before (:data:`CLUSTERS_SCHEMA`). Interrupted or failed, the store stays as it was (schema
        1, its table intact) and the next open tries again. A store that cannot be written is read as it is
        (its ``clusters`` table reads as the view does); writing clusters into it fails as any write does."""
        def layout() -> Optional[str]:
            found = self.conn.execute("SELECT type FROM sqlite_master WHERE name = 'clusters'").fetchone()
            return found[0] if found else None

        if layout() != "table" or not self._schema_1():
            return True
        if wait is not None:
            self.conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _read_only(exc):
                return False
            if _busy(exc):
                if wait is not None:
                    return False
                raise StoreError(f"{self.path}: another process is writing this store, so it could not be brought "
                                 f"from schema 1 to {SCHEMA_VERSION}; it is unchanged. Try again when that "
                                 "process is done.") from None
            raise
        finally:
            if wait is not None:
                self.conn.execute(f"PRAGMA busy_timeout={int(STORE_TIMEOUT * 1000)}")
        try:
            if layout() == "table":  # still (another process may have brought it up while this one waited)
                have = [r[1] for r in self.conn.execute("PRAGMA table_info(clusters)")]
                for statement in _upgrade_statements(have):
                    self.conn.execute(statement)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _read_only(exc):
                return False
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"{self.path}: could not bring the store from schema 1 to {SCHEMA_VERSION} ({exc}); "
                                 "it is unchanged.") from None
            raise
        return True

    def _schema_complete(self) -> bool:
        """Whether every table, index, view and trigger of :data:`SCHEMA` is there already (all of its statements
        are ``CREATE ... IF NOT EXISTS``: running it would change nothing, so an open of an existing store skips
        parsing its ~40 statements)."""
        names = {name for (name,) in self.conn.execute("SELECT name FROM sqlite_master")}
        return _SCHEMA_NAMES <= names

    def _schema_1(self) -> bool:
        """Whether the store's ``meta`` table says schema 1 (or no schema yet: the first linkage stores)."""
        if self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
            return False
        found = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return found is None or str(found[0]) == "1"

    # --- write-ahead log ---------------------------------------------------------------------------
    def checkpoints_behind(self) -> None:
        """From now on, copy the write-ahead log into the database file behind this connection's back.

        SQLite commits into the write-ahead log (``<store>-wal``) and, once it holds 1,000 pages, the commit
        that passed that copies the log into the database file and waits for the disk (``fsync``: ~0.3 s for
        the ~35 MB a +1,000 run writes in the resolve stage, on our machines). After this call this connection
        leaves the log to grow (up to :data:`AUTOCHECKPOINT_BEHIND` pages, then it copies as before), and
        :meth:`checkpoint_behind` copies it in a thread of its own, with a connection of its own, while the job
        goes on (a fork of this process waits for that copy first). Nothing is less safe: with ``synchronous=NORMAL`` a commit never waited for the disk; a
        committed transaction is in the log, which SQLite reads (and recovers after a crash) as before."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_BEHIND}")

    def checkpoint_behind(self) -> None:
        """Start copying what the write-ahead log holds now into the database file, in a background thread
        (a ``PASSIVE`` checkpoint: it never blocks this connection's readers or writers). One at a time: when
        one is still running this does nothing. :meth:`close` waits for it."""
        if self._checkpointer is not None and self._checkpointer.is_alive():
            return
        self._checkpointer = threading.Thread(target=self._checkpoint, name="linkage-checkpoint", daemon=True)
        fork_waits_for(self._checkpointer)  # no forked worker starts with SQLite's locks held by this thread
        self._checkpointer.start()

    def _checkpoint(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:  # nothing is lost: what was not copied stays in the log, the next copy takes it
            pass
        finally:
            fork_need_not_wait(threading.current_thread())

    # --- plumbing ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Everything inside commits together or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        """Wait for a background checkpoint (:meth:`checkpoint_behind`), then close; closing the last
        connection copies the rest of the write-ahead log into the database file and removes the log."""
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        self.conn.close()

    def __enter__(self) -> "EmbeddedStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def count(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        """Row count of one of the store's tables (``table`` is a fixed name, never user input).

        A whole table's count (no ``where``) is remembered while the store does not change: asked again before
        any write through this connection (sqlite3's ``total_changes``), commit by another connection (``PRAGMA
        data_version``) or schema change (``PRAGMA schema_version``), it is not counted again (a ``COUNT(*)``
        walks a whole index: ~4 ms over the 400,000 mentions of a 100,000-report store; a run's load stage and
        its resolve stage both ask). Counts made inside a transaction are not remembered (it may roll back)."""
        if where or params or "." in table:  # a table of an attached file: data_version covers only main
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {table} {where}", params).fetchone()[0])
        version = self._version()
        known = self._counts.get(table)
        if known is not None and known[0] == version:
            return known[1]
        n = int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        if not self.conn.in_transaction:
            self._counts[table] = (version, n)
        return n

    def _version(self) -> tuple[int, int, int]:
        """What changes whenever a table's rows may have: see :meth:`count`."""
        conn = self.conn
        return (conn.total_changes, conn.execute("PRAGMA data_version").fetchone()[0],
                conn.execute("PRAGMA schema_version").fetchone()[0])

    def frame(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """A query's result as a DataFrame (None stays None; no type guessing on ids)."""
        cur = self.conn.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=cols)

    def insert_rows(self, table: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str], mode: str = "INSERT") -> int:
        """Insert dict rows into ``table`` (``mode`` may be ``INSERT OR REPLACE`` / ``INSERT OR IGNORE``)."""
        columns = list(columns)
        return self.insert_tuples(table, (tuple(map(r.get, columns)) for r in rows), columns, mode)

    def insert_tuples(self, table: str, rows: Iterable[tuple], columns: Sequence[str], mode: str = "INSERT",
                      plain: bool = False) -> int:
        """Insert rows given as tuples in ``columns`` order (inside the caller's transaction, in their order);
        values are stored as :func:`_sql_value` makes them (NaN -> NULL, numpy scalars -> Python, lists and
        dicts -> JSON). Returns the number of rows.

        Most rows hold only text, integers, floats and None, which SQLite binds as they are: those skip
        :func:`_sql_value` (floats only when none is NaN). ``plain=True``: the caller vouches that every value
        is one of those (no NaN), as :func:`linkage.pipeline._sqlite_values` makes them; rows go in unchecked."""
        sql = f"{mode} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        if plain:
            rows = rows if isinstance(rows, list) else list(rows)
            with _binding_none():
                self.conn.executemany(sql, rows)
            return len(rows)
        plain, with_float = _PLAIN_TYPES, _PLAIN_OR_FLOAT
        count = 0

        def bound(rows: Iterable[tuple]) -> Iterator[tuple]:
            nonlocal count
            for row in rows:
                if not plain.issuperset(map(type, row)) and (
                        not with_float.issuperset(map(type, row)) or any(v != v for v in row if type(v) is float)):
                    row = tuple(_sql_value(v) for v in row)
                count += 1
                yield row

        with _binding_none():
            self.conn.executemany(sql, bound(rows))
        return count

    # --- reads for the stages ----------------------------------------------------------------------
    def reports(self) -> pd.DataFrame:
        return self.frame(
            "SELECT report_id, received_at, category, category_raw, description, reporter_id, reporter_type "
            "FROM reports ORDER BY report_id"
        )

    def mentions(self) -> pd.DataFrame:
        cols = ", ".join(model.STORED_MENTION_FIELDS)
        return self.frame(f"SELECT {cols} FROM mentions ORDER BY mention_id")

    def mention_type_counts(self, max_rowid: int | None = None) -> dict[str, int]:
        """Mentions per entity type (only those with ``rowid <= max_rowid`` when given)."""
        where, params = ("WHERE rowid <= ?", (max_rowid,)) if max_rowid is not None else ("", ())
        return dict(self.conn.execute(f"SELECT entity_type, COUNT(*) FROM mentions {where} GROUP BY entity_type",
                                      params).fetchall())

    def links(self) -> pd.DataFrame:
        return self.frame(
            "SELECT src_mention_id, dst_mention_id, rel_type, report_id FROM mention_links "
            "ORDER BY src_mention_id, dst_mention_id, rel_type"
        )

    def entities(self) -> pd.DataFrame:
        return self.frame("SELECT entity_id, entity_type, label, n_mentions, attributes FROM entities ORDER BY entity_id")

    def mention_entities(self) -> pd.DataFrame:
        return self.frame("SELECT mention_id, entity_id, entity_type FROM mention_entities ORDER BY mention_id")

    def clusters(self) -> pd.DataFrame:
        return self.frame("SELECT * FROM clusters ORDER BY rank, cluster_id")

    def top_clusters(self, top: int) -> pd.DataFrame:
        """``clusters().head(top)``: the same rows, columns and values, found by rank alone before the rows'
        long texts are read. A column with no value in those rows gets the type the whole column gives it: a
        TEXT column from one stored value (say text with NaN where ``unrouted_reason`` is NULL), another column
        by reading it whole. Not covered: a number column with values in these rows but NULL further down
        (``clusters()`` reads it as float, this as int); the pipeline never writes NULL ranks or counts.

        >>> import tempfile, pathlib
        >>> s = EmbeddedStore(pathlib.Path(tempfile.mkdtemp()) / "t.db")
        >>> _ = s.conn.executemany("INSERT INTO clusters (cluster_id, rank, unrouted_reason) VALUES (?, ?, ?)",
        ...                        [("c1", 1, None), ("c2", 2, "no rule matched")])
        >>> s.top_clusters(1).equals(s.clusters().head(1)), s.top_clusters(1)["unrouted_reason"].dtype == object
        (True, False)
        >>> _ = s.conn.execute("UPDATE clusters SET unrouted_reason = NULL")
        >>> s.top_clusters(1).equals(s.clusters().head(1)), s.top_clusters(1)["unrouted_reason"].dtype == object
        (True, True)
        """
        order = "ORDER BY rank, cluster_id"
        head = self.frame(f"SELECT * FROM clusters WHERE cluster_id IN (SELECT cluster_id FROM clusters {order} "
                          f"LIMIT ?) {order}", (max(int(top), 0),))
        if not len(head):
            return self.clusters().head(0)
        declared = {r[1]: str(r[2]).upper() for r in self.conn.execute("PRAGMA table_info(clusters)")}
        for c in head.columns:
            if not head[c].isna().all():
                continue
            if declared.get(c) == "TEXT":  # every stored value is text: one of them decides the column's type
                found = self.conn.execute(f'SELECT "{c}" FROM clusters WHERE "{c}" IS NOT NULL LIMIT 1').fetchone()
                if found is None:
                    continue  # NULL throughout: as read
                column = pd.DataFrame.from_records([(None,)] * len(head) + [found], columns=[c])[c]
            else:
                column = self.frame(f'SELECT "{c}" FROM clusters {order}')[c]
            head[c] = column.head(len(head)).reset_index(drop=True)
        return head

    def report_clusters(self) -> pd.DataFrame:
        """Every ``report_clusters`` row (``report_id, cluster_id``), sorted by report id
        (:func:`read_report_clusters`)."""
        return read_report_clusters(self.conn)

    # --- writes of whole stage results -------------------------------------------------------------
    def bulk_replace(self, table: str, df: pd.DataFrame, columns: Sequence[str], key: str) -> int:
        """Replace all of ``table`` (a fixed name) with ``df[columns]`` (plain str/int values, no NaN), fast:
        rows go in ordered by ``key`` (the primary key: B-tree appends) and the table's secondary indexes are
        dropped before and built again after (one sort instead of 400,000 random inserts). Inside the
        caller's transaction; the table ends exactly as row-by-row inserts leave it. Returns the rows written.
        """
        indexes = self.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                    "AND sql IS NOT NULL ORDER BY name", (table,)).fetchall()
        self.conn.execute(f"DELETE FROM {table}")
        for name, _sql in indexes:
            self.conn.execute(f'DROP INDEX "{name}"')
        if len(df):
            rows = df.sort_values(key, kind="stable")
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
            with _binding_none():
                self.conn.executemany(sql, zip(*(rows[c].tolist() for c in columns)))
        for _name, sql in indexes:
            self.conn.execute(sql)
        return len(df)


#: ``meta`` key of the entity-resolution generation (:func:`bump_er_generation`).
ER_GENERATION = "er_generation"


def bump_er_generation(conn: sqlite3.Connection) -> None:
    """Count one more write of ``mention_entities`` (call it inside the transaction that writes them).

    The clusters stage keeps the generation its state was built from; a state that is not exactly one
    resolve write behind (a run interrupted after resolving, before the clusters were saved) is not patched
    with the last write's changes but rebuilt (:func:`linkage.pipeline.communities_stage`).
    """
    conn.execute(f"INSERT INTO meta(key, value) VALUES ('{ER_GENERATION}', '1') "
                 "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1")


def er_generation(conn: sqlite3.Connection) -> int:
    """How many times ``mention_entities`` were written (0 for a store from before the counter)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (ER_GENERATION,)).fetchone()
    return int(row[0]) if row else 0


#: The query :func:`read_report_clusters` gives the rows of (its row-by-row form).
REPORT_CLUSTERS_SQL = "SELECT report_id, cluster_id FROM report_clusters ORDER BY report_id"


def read_report_clusters(conn: sqlite3.Connection) -> pd.DataFrame:
    """The rows of :data:`REPORT_CLUSTERS_SQL` (every report's cluster, sorted by report id) as
    :meth:`EmbeddedStore.frame` makes them (text columns), read through ``conn`` (the job's connection, or a
    read-ahead's: :mod:`linkage.store.readahead`).

    Read as one text (``group_concat`` with separators no id holds: ids with control characters are quarantined
    on load) and cut and sorted in Arrow (report ids are the table's key: no ties; Arrow compares UTF-8 bytes,
    as SQLite's BINARY order does): 40,000 rows in ~0.03 s against ~0.07 as Python tuples, and SQLite builds the
    text without holding Python's GIL (a read-ahead thread hardly slows the job's own thread). When a piece
    count does not add up (a separator inside a value), a value is NULL, the table is empty or the
    text would be longer than SQLite allows, the rows are read one by one as the query gives them. (The store
    writes both columns as text; a BLOB value would come back as text here, and in text order.)

    >>> conn = sqlite3.connect(":memory:")
    >>> _ = conn.execute("CREATE TABLE report_clusters (report_id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL)")
    >>> _ = conn.executemany("INSERT INTO report_clusters VALUES (?, ?)", [("R2", "c_1"), ("R10", "c_1"), ("R1", "c_2")])
    >>> read_report_clusters(conn).values.tolist()
    [['R1', 'c_2'], ['R10', 'c_1'], ['R2', 'c_1']]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def by_rows() -> pd.DataFrame:
        cur = conn.execute(REPORT_CLUSTERS_SQL)
        return pd.DataFrame.from_records(cur.fetchall(), columns=[d[0] for d in cur.description])

    try:
        count, ids, clusters, text = conn.execute(
            "SELECT count(*), count(report_id), count(cluster_id), "
            "group_concat(report_id || char(31) || cluster_id, char(30)) FROM report_clusters").fetchone()
    except sqlite3.DataError:  # longer than SQLite's longest text (tens of millions of reports)
        return by_rows()
    # a NULL id drops its row from the text: then a value holding both separators could even the count out
    if not count or ids != count or clusters != count or not isinstance(text, str):
        return by_rows()
    rows = pc.split_pattern(pa.array([text], type=pa.large_string()), "\x1e").flatten()
    if len(rows) != count:
        return by_rows()
    fields = pc.split_pattern(rows, "\x1f")
    if not pc.all(pc.equal(pc.list_value_length(fields), 2)).as_py():
        return by_rows()
    flat = fields.flatten()
    table = pa.table({"report_id": flat[0::2], "cluster_id": flat[1::2]})
    table = table.take(pc.sort_indices(table, sort_keys=[("report_id", "ascending")]))
    out = table.to_pandas()
    like = _text_pair_dtypes()
    return out if out.dtypes.equals(like) else out.astype(like.to_dict())


@functools.lru_cache(maxsize=1)
def _text_pair_dtypes() -> pd.Series:
    """The column types :meth:`EmbeddedStore.frame` gives two text columns (pandas' default text type)."""
    return pd.DataFrame.from_records([("a", "b")], columns=["report_id", "cluster_id"]).dtypes


def read_only(path: Path | str) -> sqlite3.Connection:
    """A read-only connection of its own to the store file at ``path`` (safe in a forked process while the
    parent holds the store open: it never uses the parent's connection). The path goes into the URI
    percent-encoded, so a ``?``, ``#`` or ``%`` in it stays part of the file name.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "odd?#%41 dir"
    >>> folder.mkdir()
    >>> sqlite3.connect(folder / "s.db").execute("CREATE TABLE t (x)").connection.commit()
    >>> read_only(folder / "s.db").execute("SELECT count(*) FROM t").fetchone()
    (0,)
    """
    return sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, timeout=30)


def entity_labels(path: Path | str, entity_ids: Sequence[str]) -> dict[str, str]:
    """``{entity_id: label}`` of those of ``entity_ids`` the store at ``path`` holds, read through a
    connection of its own (:func:`read_only`; for a forked scoring process)."""
    conn = read_only(path)
    try:
        return dict(conn.execute("SELECT entity_id, label FROM entities WHERE entity_id IN "
                                 "(SELECT value FROM json_each(?))", (json.dumps(list(entity_ids)),)).fetchall())
    finally:
        conn.close()


def mentions_of_type(path: Path | str, entity_type: str, max_rowid: int | None = None,
                     columns: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """The mentions of one entity type in the store at ``path``, the rows :meth:`EmbeddedStore.mentions` gives
    (all its columns unless ``columns`` narrows them; sorted by ``mention_id``), read through a connection of its own: safe in a forked process
    while the parent holds the store open (each entity type can be read by the process that resolves it).
    ``max_rowid`` leaves out mentions written after the caller took its snapshot of the store (a load running
    at the same time), so every process resolves the same mentions.

    ``columns`` (per entity type, e.g. :data:`linkage.resolve.features.INPUT_COLUMNS`): read only those
    stored columns of a listed type (``mention_id`` always), as plain Python values (object columns, None
    for NULL) instead of typed columns: what a reader that cleans every value itself needs, at a fraction
    of the cost (the person mentions of 100,000 reports: 29 columns converted to Arrow strings and back)."""
    wanted = None if columns is None else columns.get(entity_type)
    fields = model.STORED_MENTION_FIELDS if wanted is None else \
        ("mention_id",) + tuple(c for c in dict.fromkeys(wanted) if c in model.STORED_MENTION_FIELDS and c != "mention_id")
    conn = read_only(path)
    try:
        bound = "" if max_rowid is None else f" AND rowid <= {int(max_rowid)}"
        cur = conn.execute(f"SELECT {', '.join(fields)} FROM mentions WHERE entity_type = ?"
                           f"{bound} ORDER BY mention_id", (entity_type,))
        cols = [d[0] for d in cur.description]
        if wanted is None:
            return pd.DataFrame.from_records(cur.fetchall(), columns=cols)
        rows = cur.fetchall()
        return pd.DataFrame(rows if rows else None, columns=cols, dtype=object)
    finally:
        conn.close()


_NONE_KEY = (type(None), sqlite3.PrepareProtocol)


@contextlib.contextmanager
def _binding_none() -> Iterator[None]:
    """Bind None as NULL without sqlite3's adapter search.

    sqlite3 looks for an adapter for every parameter that is not int, float, str or bytes; for None
    that search fails through two attribute lookups that raise and format an AttributeError, which
    made up most of the cost of writing wide, mostly empty rows. An adapter registered for None
    (which returns None, so the stored value is still NULL) ends the search at once. The registry is
    process-wide: an adapter someone else registered is left alone, and ours is removed afterwards.
    """
    ours = _NONE_KEY not in sqlite3.adapters
    if ours:
        sqlite3.adapters[_NONE_KEY] = _NO_VALUE.get
    try:
        yield
    finally:
        if ours:
            sqlite3.adapters.pop(_NONE_KEY, None)


_NO_VALUE: dict = {}  # _NO_VALUE.get(None) is None: a C-level adapter that returns NULL for None

#: Types whose values :func:`_sql_value` returns unchanged (exact types: subclasses take the long way).
_PLAIN_TYPES = frozenset({str, int, bytes, type(None)})
_PLAIN_OR_FLOAT = _PLAIN_TYPES | {float}


def _sql_value(value: Any) -> Any:
    """Python/pandas values into what SQLite stores (NaN -> NULL, lists/dicts -> JSON)."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (AttributeError, ValueError):
            return value
    if value is pd.NA or value is pd.NaT:
        return None
    return value
