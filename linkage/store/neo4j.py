"""The Neo4j writer: mirrors the embedded store into a Neo4j 5 database for investigators.

In:  an :class:`~linkage.store.EmbeddedStore` after ``linkage run``, and connection settings from the
     environment (``LINKAGE_NEO4J_URI``, ``_USER``, ``_PASSWORD``, ``_DATABASE``).
Out: the graph model of ``docs/graph-model.md`` in Neo4j, and a :class:`PushSummary`.

How it writes: constraints and indexes first (idempotent), then batches of ``UNWIND $rows`` with
``MERGE`` on ids, values only as parameters (never in query text), each batch in a managed write
transaction (the driver retries transient errors). Where nothing can exist yet it writes with
``CREATE`` instead, which costs the server far less than ``MERGE``: a node whose id the graph did not
hold when the push began (the uniqueness constraint makes a node that appeared meanwhile an error,
never a duplicate), and a relationship with an endpoint that this push created (no relationship can
have reached that node before). A push that stopped halfway leaves committed batches; the next push
reads what exists again, so those nodes and their relationships go through ``MERGE``.

How it finds endpoints: every node write returns the internal ids of the nodes it wrote, and a
relationship between two nodes written by the same push finds them by those ids (a seek without
index or lock) rather than through the uniqueness indexes; the query counts only rows whose endpoints
still hold their keys, and a batch that falls short (an id deleted and reused meanwhile) is rolled
back and written by key. Relationships to nodes this push did not write go by key. While a
background thread writes one kind, the calling thread prepares the rows of the next (SQLite reads
and hashing), so client and server work at the same time; within a kind the batches are pipelined
over two sessions (the next batch is sent while the previous one commits), and a kind is finished
(every batch committed) before the next kind is written, so relationships always find their nodes.
A batch that fails names its kind, its number and rows, and the batches that were committed.
Python's cyclic garbage collector is paused during a push (its full collections walked every row
list held).

How it stays in sync: every node and relationship carries ``push_hash``, a 64-bit hash of exactly the
values the push wrote to it. A push first reads the hashes already in Neo4j (one list per label or
relationship type), then writes only the rows whose hash is missing or different, and deletes what
the store no longer holds: nodes whose id is gone, relationships whose hash is gone (a relationship
whose content changed is deleted and merged again). So pushing twice leaves identical counts and the
second push writes nothing; a push after new reports leaves exactly what the store holds (clusters
that no longer exist are removed). ``push(..., full=True)`` rewrites every row through ``MERGE``
regardless of the hashes, for a graph edited by hand.
"""
from __future__ import annotations

import gc
import hashlib
import itertools
import json
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NoReturn, Sequence

from linkage import model
from linkage.errors import ConfigError, Neo4jUnavailable
from linkage.pipeline import _as_list
from linkage.store.embedded import EmbeddedStore

#: Entity type -> Neo4j label (fixed vocabulary: labels never come from data).
ENTITY_LABELS: dict[str, str] = {
    "person": "Person",
    "address": "Address",
    "business": "Business",
    "vehicle": "Vehicle",
    "phone": "Phone",
    "bank_account": "BankAccount",
    "email": "Email",
}
#: Relationship types a stated link can have (fixed vocabulary).
LINK_RELS: tuple[str, ...] = ("LIVES_AT", "LOCATED_AT", "OWNER_OF", "DIRECTOR_OF", "USES", "RELATED_TO")

#: Rows per write transaction.
BATCH = 10_000
#: Sessions of the pipelined writer (:func:`_write`): with 2, batch k+1 is packed, sent and run while
#: batch k commits (at most one batch in its query phase at a time), where one session left the server
#: idle while the client packed and sent each batch and the client idle while the server committed.
#: Free-running sessions (each sending its next batch whenever it liked) were tried before and cost
#: server CPU (lock waits, two queries at once on two cores); the gated pipeline did not (see
#: docs/neo4j.md). ``LINKAGE_NEO4J_WRITERS`` or ``push(..., writers=)`` changes it; 1 is the serial writer.
WRITERS = 2
#: Part of every ``push_hash``: bump it when the properties a push writes change, so that the next
#: push rewrites every element once.
MODEL_VERSION = 2
#: Query options in front of every batched write. ``replan=skip`` keeps the cached plan while the graph
#: grows: by default the server discards a plan once the counts it was made for have changed by 75 %
#: (at least 10 s after it was made), which a first push into an empty graph triggers for every query,
#: again and again (about 20 times per push of 100,000 reports), and every new plan brings new generated
#: code that the JVM runs slowly until it has compiled it again. These plans cannot get better with new
#: counts: every node is found by its uniqueness index or by internal id. Investigators' queries are
#: replanned as usual. (Session 6, fresh server, load 7-10: Bolt worker 45.7 against 51.1 CPU s, JIT
#: compiler threads 13.3 against 15.9, server 65.6 against 74.2 for the first push of 100,000 reports.)
WRITE_OPTIONS = "CYPHER replan=skip "

@dataclass(frozen=True)
class Neo4jConfig:
    """Where and how to connect. The password is never printed (see ``__repr__``)."""

    uri: str
    user: str
    password: str = field(repr=False)
    database: str | None

    @classmethod
    def from_env(cls) -> "Neo4jConfig":
        """Read ``LINKAGE_NEO4J_*``; the password falls back to the local dev server's ``.neo4j/password``.

        Raises
        ------
        ConfigError
            When no password is set and no local password file exists.
        """
        uri = os.environ.get("LINKAGE_NEO4J_URI", "bolt://127.0.0.1:7687")
        user = os.environ.get("LINKAGE_NEO4J_USER", "neo4j")
        password = os.environ.get("LINKAGE_NEO4J_PASSWORD")
        if not password:
            pw_file = Path(os.environ.get("LINKAGE_NEO4J_PASSWORD_FILE", ".neo4j/password"))
            if pw_file.exists():
                password = pw_file.read_text(encoding="utf-8").strip()
        if not password:
            raise ConfigError(
                "No Neo4j password: set LINKAGE_NEO4J_PASSWORD (never pass it on the command line), or start "
                "the local server with 'make neo4j', which stores one in .neo4j/password."
            )
        database = os.environ.get("LINKAGE_NEO4J_DATABASE") or None
        return cls(uri, user, password, database)


def connect(config: Neo4jConfig | None = None):
    """An open, verified driver. Supports ``bolt://``, ``neo4j://`` and ``neo4j+s://`` (Aura, clusters).

    Raises
    ------
    Neo4jUnavailable
        When the server cannot be reached or refuses the credentials (the message has no password).
    """
    from neo4j import GraphDatabase
    from neo4j.exceptions import AuthError, ServiceUnavailable

    config = config or Neo4jConfig.from_env()
    # Notifications (deprecations, unknown labels in a count) would go to stderr through logging;
    # library code stays quiet.
    driver = GraphDatabase.driver(config.uri, auth=(config.user, config.password), notifications_min_severity="OFF")
    try:
        driver.verify_connectivity()
    except AuthError:
        driver.close()
        raise Neo4jUnavailable(f"Neo4j at {config.uri} refused user '{config.user}': check LINKAGE_NEO4J_PASSWORD.") from None
    except (ServiceUnavailable, OSError) as exc:
        driver.close()
        raise Neo4jUnavailable(
            f"Cannot reach Neo4j at {config.uri} ({type(exc).__name__}). Start the local server with 'make neo4j' "
            "or set LINKAGE_NEO4J_URI."
        ) from None
    driver._linkage_database = config.database  # remembered for sessions
    return driver


def _session(driver):
    return driver.session(database=getattr(driver, "_linkage_database", None))


SCHEMA_STATEMENTS: tuple[str, ...] = (
    "CREATE CONSTRAINT report_id IF NOT EXISTS FOR (n:Report) REQUIRE n.report_id IS UNIQUE",
    "CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.entity_id IS UNIQUE",
    "CREATE CONSTRAINT cluster_id IF NOT EXISTS FOR (n:Cluster) REQUIRE n.cluster_id IS UNIQUE",
    "CREATE CONSTRAINT agency_id IF NOT EXISTS FOR (n:Agency) REQUIRE n.agency_id IS UNIQUE",
    "CREATE INDEX cluster_rank IF NOT EXISTS FOR (n:Cluster) ON (n.rank)",
    "CREATE INDEX report_received IF NOT EXISTS FOR (n:Report) ON (n.received_at)",
) + tuple(
    f"CREATE INDEX {label.lower()}_label IF NOT EXISTS FOR (n:{label}) ON (n.label)" for label in ENTITY_LABELS.values()
)
#: Indexes of earlier versions of this writer, dropped because every write paid for them.
OBSOLETE_INDEXES: tuple[str, ...] = ("report_stamp", "entity_stamp", "entity_label")


def ensure_schema(driver) -> None:
    """Create constraints and indexes (idempotent), drop obsolete ones, wait until they are online."""
    with _session(driver) as session:
        for name in OBSOLETE_INDEXES:
            session.run(f"DROP INDEX {name} IF EXISTS").consume()
        for stmt in SCHEMA_STATEMENTS:
            session.run(stmt).consume()
        session.run("CALL db.awaitIndexes(300)").consume()


@dataclass
class PushSummary:
    """What a push did.

    ``nodes`` and ``relationships``: elements per label / type that match the store after the push
    (written now or found unchanged); ``written``: how many of them this push wrote; ``removed``:
    stale elements deleted; ``seconds``; ``elements_per_second`` = elements in sync per second.
    """

    nodes: dict[str, int] = field(default_factory=dict)
    relationships: dict[str, int] = field(default_factory=dict)
    written: int = 0
    removed: int = 0
    seconds: float = 0.0

    @property
    def elements(self) -> int:
        return sum(self.nodes.values()) + sum(self.relationships.values())

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "relationships": self.relationships, "written": self.written,
                "removed": self.removed, "seconds": round(self.seconds, 2), "elements": self.elements,
                "elements_per_second": round(self.elements / self.seconds) if self.seconds else None}

    def __str__(self) -> str:
        d = self.to_dict()
        return (f"{sum(self.nodes.values())} nodes, {sum(self.relationships.values())} relationships in sync "
                f"({self.written} written, {self.elements - self.written} unchanged), {self.removed} stale removed "
                f"in {d['seconds']} s ({d['elements_per_second']} elements/s)")


class _Rows(list):
    """A batch of rows whose ``repr`` is short.

    The driver formats every RUN message for its debug log, parameters included, whether or not
    debug logging is on (neo4j 6.4: ``" ".join(map(repr, fields))``); for a batch of 10,000 rows that
    cost about as much client CPU as packing it (15 of 31 ms), on the path where the server waits.
    A list subclass packs like a list.

    >>> _Rows([[1, "a"], [2, "b"]])
    <2 rows>
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


def _batches(rows: Sequence, size: int = BATCH) -> Iterator[_Rows]:
    for i in range(0, len(rows), size):
        yield _Rows(rows[i:i + size])


class _Unmatched(Exception):
    """A batch addressed by internal ids found fewer endpoints than rows (an id no longer means its node)."""


class BatchFailed(Exception):
    """A batch of a push failed (after the driver's own retries); names the kind and the batch.

    Batches and rows are numbered from 1 within one write (one query over one list of rows; a kind can
    take several: new and changed rows, by internal id or by key). ``committed`` lists the other batches
    of the same write that were committed:
    with the pipelined writer a later batch can have committed while this one failed.
    """

    def __init__(self, what: str, number: int, total: int, first_row: int, last_row: int,
                 committed: Sequence[int], cause: BaseException) -> None:
        self.what, self.number, self.total, self.committed, self.cause = what, number, total, list(committed), cause
        super().__init__(f"{what or 'write'}: batch {number} of {total} (rows {first_row}-{last_row}) failed "
                         f"({type(cause).__name__}); batches committed: {_ranges(committed) or 'none'}")


def _raise_driver_error(exc: BaseException, what: str, advice: str) -> NoReturn:
    """Re-raise ``exc`` for the user: a driver or server error (also inside a ``BatchFailed``) becomes
    ``Neo4jUnavailable("<what> (<error type>)[ at <batch>]; <advice>")``, without the server's message (it can
    quote values); any other error is raised as itself, with the failed batch added as a note.
    """
    from neo4j.exceptions import DriverError, Neo4jError

    cause = exc.cause if isinstance(exc, BatchFailed) else exc
    if isinstance(cause, (Neo4jError, DriverError)):
        where = f" at {exc}" if isinstance(exc, BatchFailed) else ""
        raise Neo4jUnavailable(f"{what} ({type(cause).__name__}){where}; {advice}") from None
    if isinstance(exc, BatchFailed):  # not the driver's: the error itself, with where it happened
        cause.add_note(str(exc))
        raise cause.with_traceback(cause.__traceback__) from None
    raise exc


def _ranges(numbers: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``.

    >>> _ranges([5, 1, 2, 3])
    '1-3, 5'
    """
    out: list[str] = []
    for _, group in itertools.groupby(enumerate(sorted(numbers)), lambda p: p[1] - p[0]):
        g = [n for _, n in group]
        out.append(f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]))
    return ", ".join(out)


def _write(driver, query: str, rows: Sequence, writers: int = 1, fallback: str | None = None,
           what: str = "", **params: Any) -> tuple[int, list[int]]:
    """Run ``query`` once per batch of rows, each batch in a managed (retried) write transaction.

    The query returns one record with ``n``, the rows it wrote, and optionally ``ids``, the internal
    ids of the nodes it wrote in row order. Returns the sum of ``n`` and the ids of all batches in row
    order. With ``fallback``, a batch whose ``n`` falls short of its rows is rolled back and run again
    with ``fallback`` (the same write addressing nodes by key instead of internal id).

    ``writers`` > 1 pipelines the batches over that many sessions: a batch is sent as soon as the
    previous one has its result and is committing, so the client packs and sends batch k+1 and the
    server runs its query while batch k commits; at most one batch is in its query phase at a time
    (not ``writers`` free-running sessions, whose transactions competed for the server's CPU and
    locks). Every batch is still one managed transaction; the batches of one call must be independent
    of each other (rows of one kind), and the call returns only when all have committed, so the
    next call may depend on them.

    Raises
    ------
    BatchFailed
        When a batch fails after the driver's retries; it names ``what``, the batch and its rows, and
        the batches that committed. No batch is started after a failure.
    """
    import threading

    def work(tx, batch, q, strict, on_result):
        record = tx.run(q, rows=batch, **params).single()
        on_result()  # the query is done; what is left is the commit
        if strict and record["n"] != len(batch):
            raise _Unmatched  # the managed transaction rolls back
        return record["n"], (record["ids"] if "ids" in record.keys() else [])

    def one(session, batch, on_result=lambda: None):
        try:
            return session.execute_write(work, batch, query, fallback is not None, on_result)
        except _Unmatched:
            return session.execute_write(work, batch, fallback, False, on_result)

    batches = list(_batches(rows, BATCH))
    results: list[tuple[int, list[int]] | None] = [None] * len(batches)

    def failed(i: int, exc: BaseException) -> BatchFailed:
        return BatchFailed(what, i + 1, len(batches), i * BATCH + 1, min((i + 1) * BATCH, len(rows)),
                           [j + 1 for j, r in enumerate(results) if r is not None], exc)

    if writers <= 1 or len(batches) <= 1:
        with _session(driver) as session:
            for i, batch in enumerate(batches):
                try:
                    results[i] = one(session, batch)
                except Exception as exc:
                    raise failed(i, exc) from exc
    else:
        from concurrent.futures import ThreadPoolExecutor

        turn = threading.Semaphore(1)  # held from sending a batch until its result is back
        lock = threading.Lock()
        todo = iter(enumerate(batches))
        errors: list[BatchFailed] = []

        def worker() -> None:
            with _session(driver) as session:
                while True:
                    turn.acquire()
                    released = False

                    def release() -> None:
                        nonlocal released
                        if not released:
                            released = True
                            turn.release()

                    try:
                        with lock:
                            item = None if errors else next(todo, None)
                        if item is None:
                            return
                        try:
                            results[item[0]] = one(session, item[1], release)
                        except Exception as exc:
                            with lock:
                                errors.append(failed(item[0], exc))
                            return
                    finally:
                        release()

        with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="neo4j-batch") as pool:
            for future in [pool.submit(worker) for _ in range(writers)]:
                future.result()
        if errors:
            first = min(errors, key=lambda e: e.number)
            raise failed(first.number - 1, first.cause) from first.cause
    done = [r for r in results if r is not None]
    return sum(n for n, _ in done), [i for _, ids in done for i in ids]


def _read_list(driver, query: str, **params: Any) -> list:
    """One ``collect(...) AS c`` list (one record is far cheaper to read than a record per element)."""
    with _session(driver) as session:
        return session.execute_read(lambda tx: tx.run(query, **params).single()["c"])


def _hasher(kind: str) -> Callable[[tuple], int]:
    """The hash function of one kind of row: ``values -> signed 64-bit blake2b`` of
    ``"{MODEL_VERSION}\x1f{kind}\x1f{values!r}"`` in UTF-8 (stable across runs and machines).

    The prefix is encoded once per kind rather than once per row (about 10 % of the hashing).

    >>> _hasher("Agency")(("politie", "Politie")) == _hash("Agency", ("politie", "Politie"))
    True
    """
    prefix = f"{MODEL_VERSION}\x1f{kind}\x1f".encode("utf-8", "surrogatepass")
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes

    def hash_values(values: tuple) -> int:
        return from_bytes(blake2b(prefix + repr(values).encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big", signed=True)

    return hash_values


def _hash(kind: str, values: tuple) -> int:
    """A signed 64-bit hash of the values a row writes (stable across runs and machines)."""
    text = f"{MODEL_VERSION}\x1f{kind}\x1f{values!r}"
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big", signed=True)


# --- what the graph holds, read straight from the store ------------------------------------------------
# Every row is a list [push_hash, key..., values...]; the queries address its items by position.

@dataclass(frozen=True)
class _NodeKind:
    name: str  # summary key
    labels: str  # fixed label expression, e.g. "Entity:Person"
    key: str  # id property
    fields: tuple[str, ...]  # properties after the key, in row order
    extra: str = ""  # further SET items computed by Cypher

    def query(self) -> str:
        """``MERGE`` on the id, then ``SET`` every property; returns ``n`` and the nodes' internal ``ids``."""
        sets = "".join(f", n.{f} = r[{i + 2}]" for i, f in enumerate(self.fields))
        return (f"{WRITE_OPTIONS}UNWIND $rows AS r MERGE (n:{self.labels} {{{self.key}: r[1]}}) "
                f"SET n.push_hash = r[0]{sets}{self.extra} RETURN count(*) AS n, collect(id(n)) AS ids")

    def create_query(self) -> str:
        """For ids the graph did not hold when the push began: ``CREATE`` (the uniqueness constraint turns
        a node that appeared meanwhile into an error, never into a duplicate)."""
        props = "".join(f", {f}: r[{i + 2}]" for i, f in enumerate(self.fields))
        # ", n.p = expr, n.q = expr" -> ", p: expr, q: expr": every property in the one CREATE
        extra = "".join(f", {item.strip().replace(' = ', ': ', 1)}" for item in self.extra.split(", n.")[1:])
        return (f"{WRITE_OPTIONS}UNWIND $rows AS r CREATE (n:{self.labels} {{{self.key}: r[1], push_hash: r[0]{props}{extra}}}) "
                "RETURN count(*) AS n, collect(id(n)) AS ids")


@dataclass(frozen=True)
class _RelKind:
    name: str  # relationship type (fixed vocabulary)
    src: tuple[str, str]  # (label, id property)
    dst: tuple[str, str]
    fields: tuple[str, ...]  # properties, in row order after [hash, src id, dst id]
    merge_key: bool = False  # the first field identifies the relationship (MERGE on it)

    def _ends(self, by_id: bool) -> str:
        """Find both endpoints: by key through the uniqueness constraints' indexes, or (``by_id``) by the
        internal ids appended to the row (a seek without index or lock)."""
        (sl, sk), (dl, dk) = self.src, self.dst
        if not by_id:
            return f"MATCH (a:{sl} {{{sk}: r[1]}}) MATCH (b:{dl} {{{dk}: r[2]}})"
        i = 3 + len(self.fields)
        return f"MATCH (a:{sl}) WHERE id(a) = r[{i}] MATCH (b:{dl}) WHERE id(b) = r[{i + 1}]"

    def _written(self, by_id: bool) -> str:
        """``n``: the rows written. By id, only rows whose endpoints still hold their keys count, so a
        stale id (a node deleted and its id reused meanwhile) shows as a shortfall and :func:`_write`
        rolls the batch back and writes it by key. (The check sits here, after the write, because a
        key predicate next to the id would make the planner seek the index instead.)"""
        (_, sk), (_, dk) = self.src, self.dst
        if not by_id:
            return "count(*) AS n"
        return f"sum(CASE WHEN a.{sk} = r[1] AND b.{dk} = r[2] THEN 1 ELSE 0 END) AS n"

    def query(self, by_id: bool = False) -> str:
        key = f" {{{self.fields[0]}: r[3]}}" if self.merge_key else ""
        sets = "".join(f", x.{f} = r[{i + 3}]" for i, f in enumerate(self.fields) if not (self.merge_key and i == 0))
        return (f"{WRITE_OPTIONS}UNWIND $rows AS r {self._ends(by_id)} "
                f"MERGE (a)-[x:{self.name}{key}]->(b) SET x.push_hash = r[0]{sets} RETURN {self._written(by_id)}")

    def create_query(self, by_id: bool = False) -> str:
        """For relationships that cannot exist yet (an endpoint was created by this push): ``CREATE``."""
        props = "".join(f", {f}: r[{i + 3}]" for i, f in enumerate(self.fields))
        return (f"{WRITE_OPTIONS}UNWIND $rows AS r {self._ends(by_id)} "
                f"CREATE (a)-[x:{self.name} {{push_hash: r[0]{props}}}]->(b) RETURN {self._written(by_id)}")


REPORT = _NodeKind("Report", "Report", "report_id",
                   ("received_at", "category", "category_raw", "description", "reporter_id", "reporter_type"),
                   ", n.received_date = date(substring(r[2], 0, 10))")
CLUSTER = _NodeKind("Cluster", "Cluster", "cluster_id",
                    ("rank", "score", "n_reports", "n_reporters", "categories", "agencies", "reason", "reasons",
                     "signal_names", "signals", "routing", "unrouted_reason"))
AGENCY = _NodeKind("Agency", "Agency", "agency_id", ("name",))
ENTITY_FIELDS = ("entity_type", "label", "n_mentions", "attributes")
ENTITY_KINDS = {etype: _NodeKind(label, f"Entity:{label}", "entity_id", ENTITY_FIELDS)
                for etype, label in ENTITY_LABELS.items()}
OTHER_ENTITY = _NodeKind("Entity", "Entity", "entity_id", ENTITY_FIELDS)
MENTIONS = _RelKind("MENTIONS", ("Report", "report_id"), ("Entity", "entity_id"),
                    ("mention_id", "role", "as_given"), merge_key=True)
LINK_KINDS = {rel: _RelKind(rel, ("Entity", "entity_id"), ("Entity", "entity_id"), ("report_ids", "n_reports"))
              for rel in LINK_RELS}
IN_CLUSTER = _RelKind("IN_CLUSTER", ("Report", "report_id"), ("Cluster", "cluster_id"), ())
ROUTED_TO = _RelKind("ROUTED_TO", ("Cluster", "cluster_id"), ("Agency", "agency_id"), ("rule", "rules", "reasons"))

#: Node labels whose ids are compared against the store (every node a push writes has one of them).
KEYED_LABELS: dict[str, str] = {"Report": "report_id", "Entity": "entity_id", "Cluster": "cluster_id",
                                "Agency": "agency_id"}


def _rows(kind: str, tuples: Iterable[tuple]) -> list[list]:
    h = _hasher(kind)
    return [[h(t), *t] for t in tuples]


def _report_rows(store: EmbeddedStore) -> list[list]:
    return _rows("Report", store.conn.execute(
        "SELECT report_id, received_at, category, category_raw, description, reporter_id, reporter_type "
        "FROM reports ORDER BY report_id"))


def _entity_rows(store: EmbeddedStore) -> dict[str, list[list]]:
    out: dict[str, list[list]] = {}
    h = _hasher("Entity")
    for etype, *rest in store.conn.execute(
            "SELECT entity_type, entity_id, entity_type, label, n_mentions, attributes FROM entities ORDER BY entity_id"):
        t = tuple(rest)
        out.setdefault(etype, []).append([h(t), *t])
    return out


def _mention_rows(store: EmbeddedStore) -> list[list]:
    # json_patch('{}', ...) drops the NULL members: as_given holds the values the report gave, verbatim.
    given = ", ".join(f"'{f}', m.{f}" for f in model.VALUE_FIELDS)
    return _rows("MENTIONS", store.conn.execute(
        f"SELECT m.report_id, me.entity_id, m.mention_id, m.role, json_patch('{{}}', json_object({given})) "
        "FROM mentions m JOIN mention_entities me USING (mention_id) ORDER BY m.mention_id"))


def _link_rows(store: EmbeddedStore) -> dict[str, list[list]]:
    out: dict[str, list[list]] = {}
    for src, dst, rel, ids in store.conn.execute(
            "SELECT src, dst, rel_type, json_group_array(report_id) FROM ("
            " SELECT DISTINCT ea.entity_id AS src, eb.entity_id AS dst, l.rel_type, l.report_id"
            " FROM mention_links l JOIN mention_entities ea ON ea.mention_id = l.src_mention_id"
            " JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id) "
            "GROUP BY src, dst, rel_type ORDER BY rel_type, src, dst"):
        if rel not in LINK_KINDS:  # relationship types come from the fixed vocabulary only
            continue
        report_ids = sorted(json.loads(ids))
        t = (src, dst, report_ids, len(report_ids))
        out.setdefault(rel, []).append([_hash(rel, t), *t])
    return out


def _fired(signals: Any) -> tuple[list[str], list[str]]:
    """Names and sentences of the signals that added points (from the stored JSON)."""
    try:
        items = json.loads(signals) if isinstance(signals, str) else []
    except json.JSONDecodeError:
        return [], []
    items = [s for s in items if isinstance(s, dict) and (s.get("points") or 0) > 0]
    return [str(s.get("name")) for s in items], [str(s.get("sentence")) for s in items if s.get("sentence")]


def _cluster_rows(store: EmbeddedStore) -> tuple[list[list], list[list], list[list]]:
    """Cluster rows, Agency rows and ROUTED_TO rows."""
    clusters, agencies, routed = [], {}, []
    for (cid, rank, score, n_reports, n_reporters, categories, agency_ids, reason, signals, routing,
         unrouted) in store.conn.execute(
            "SELECT cluster_id, rank, score, n_reports, n_reporters, categories, agencies, reason, signals, "
            "routing, unrouted_reason FROM clusters ORDER BY rank, cluster_id"):
        names, sentences = _fired(signals)
        agency_ids = [str(a) for a in _as_list(agency_ids)]
        t = (cid, rank, score, n_reports, n_reporters, [str(c) for c in _as_list(categories)], agency_ids,
             reason, sentences, names, signals, routing, unrouted)
        clusters.append([_hash("Cluster", t), *t])
        try:
            decisions = json.loads(routing) if isinstance(routing, str) else []
        except json.JSONDecodeError:
            decisions = []
        per_agency: dict[str, tuple[list[str], list[str]]] = {}
        for d in decisions if isinstance(decisions, list) else []:
            if not isinstance(d, dict) or not d.get("agency"):
                continue
            aid = str(d["agency"])
            if d.get("agency_name"):
                agencies.setdefault(aid, str(d["agency_name"]))
            rules, reasons = per_agency.setdefault(aid, ([], []))
            if d.get("rule") is not None and str(d["rule"]) not in rules:
                rules.append(str(d["rule"]))
            if d.get("reason") is not None and str(d["reason"]) not in reasons:
                reasons.append(str(d["reason"]))
        for aid in agency_ids:
            per_agency.setdefault(aid, ([], []))
        for aid, (rules, reasons) in per_agency.items():
            agencies.setdefault(aid, aid)
            t = (cid, aid, rules[0] if rules else None, rules, reasons)
            routed.append([_hash("ROUTED_TO", t), *t])
    agency_rows = _rows("Agency", sorted(agencies.items()))
    return clusters, agency_rows, routed


def _member_rows(store: EmbeddedStore) -> list[list]:
    return _rows("IN_CLUSTER", store.conn.execute("SELECT report_id, cluster_id FROM report_clusters ORDER BY report_id"))


class _Jobs:
    """Runs jobs one after another in one background thread, in the order they were submitted.

    The push prepares rows (SQLite reads and hashing: client CPU) in the calling thread while this
    thread waits for the server to write the previous ones, so that client and server work at once (the
    writes of one kind are themselves pipelined over the push's sessions, see :func:`_write`). After a job
    fails, the jobs queued behind it do not run.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neo4j-push")
        self._futures: list = []
        self._failed = False

    def submit(self, fn: Callable[..., Any], *args: Any):
        """Queue ``fn(*args)``; returns its future. Raises the error of a job that already failed."""
        def job() -> Any:
            if self._failed:
                return None
            try:
                return fn(*args)
            except BaseException:
                self._failed = True
                raise

        self.raise_failure()
        future = self._pool.submit(job)
        self._futures.append(future)
        return future

    def raise_failure(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def finish(self) -> None:
        """Wait for every job; raises the first error."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self.close()

    def close(self) -> None:
        """Stop: jobs not yet started are dropped, the running one is waited for."""
        self._failed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a push runs (it is switched on again afterwards).

    A push of 100,000 reports holds about a million row lists at once, and every full collection walks
    all of them: about 2.5 of the 14-17 client CPU seconds of preparing its rows (measured at load 5-6).
    The rows hold no reference cycles, so pausing the collector frees nothing later than it would have.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_existing(driver) -> tuple[dict[str, dict[str, int]], dict[str, Counter]]:
    """What the graph holds now: per keyed label ``{id: push_hash}``, per relationship type a Counter of
    ``push_hash`` values."""
    nodes = {label: dict(_read_list(driver, f"MATCH (n:{label}) WHERE n.{key} IS NOT NULL "
                                            f"RETURN collect([n.{key}, n.push_hash]) AS c"))
             for label, key in KEYED_LABELS.items()}
    rel_types = ("MENTIONS",) + LINK_RELS + ("IN_CLUSTER", "ROUTED_TO")
    rels = {rel: Counter(_read_list(driver, f"MATCH ()-[x:{rel}]->() RETURN collect(x.push_hash) AS c"))
            for rel in rel_types}
    return nodes, rels


# --- the push ------------------------------------------------------------------------------------------

def push(store: EmbeddedStore, driver=None, progress: Callable[[str, int], None] | None = None,
         full: bool = False, writers: int | None = None) -> PushSummary:
    """Make the Neo4j graph hold exactly what the store holds; write only what changed.

    Parameters
    ----------
    store:
        The embedded store after ``linkage run``.
    driver:
        An open driver (default: :func:`connect` from the environment, closed afterwards).
    progress:
        Called as ``progress(kind, rows)`` after each node label / relationship type is written (from
        the push's background writer thread).
    full:
        Rewrite every row (``MERGE`` + ``SET``) even where the stored hash says it is unchanged.
    writers:
        Sessions the batches of a kind are pipelined over: batch k+1 is sent while batch k commits, at most
        one batch in its query phase (default :data:`WRITERS`, or ``LINKAGE_NEO4J_WRITERS``; 1 = serial).

    Returns
    -------
    PushSummary
        Elements in sync per label and type, how many were written, how many stale ones removed.

    Raises
    ------
    Neo4jUnavailable
        When the server cannot be reached, refuses the credentials, or fails during the push (what was
        written is consistent per batch; pushing again completes it).
    """
    own = driver is None
    driver = driver or connect()
    if writers is None:
        writers = int(os.environ.get("LINKAGE_NEO4J_WRITERS") or WRITERS)
    t0 = time.perf_counter()
    summary = PushSummary()
    jobs = _Jobs()
    # Internal ids of the nodes this push wrote, per label group, as the node writes return them; a
    # relationship between two of them is written by id, any other by key. Used by the writer thread only.
    node_ids: dict[str, dict[str, int]] = {label: {} for label in KEYED_LABELS}

    def write_nodes(kind: _NodeKind, group: str, rows: list[list], new: list[list], changed: list[list]) -> None:
        written = 0
        for query, part in ((kind.create_query(), new), (kind.query(), changed)):
            if not part:
                continue
            n, ids = _write(driver, query, part, writers, what=kind.name)
            if len(ids) == len(part):
                node_ids[group].update(zip((r[1] for r in part), ids))
            written += n
        summary.nodes[kind.name] = summary.nodes.get(kind.name, 0) + len(rows) - len(new) - len(changed) + written
        summary.written += written
        if progress:
            progress(kind.name, len(rows))

    def write_rels(kind: _RelKind, rows: list[list], todo: list[list], new: list[list], changed: list[list],
                   stale: list[int], with_null: bool) -> None:
        summary.removed += _delete_rels(driver, kind.name, stale, with_null=with_null)
        src_ids, dst_ids = node_ids[kind.src[0]], node_ids[kind.dst[0]]
        written = 0
        for make, part in ((kind.create_query, new), (kind.query, changed)):
            by_id, by_key = [], []
            for r in part:
                s, d = src_ids.get(r[1]), dst_ids.get(r[2])
                if s is None or d is None:
                    by_key.append(r)
                else:
                    by_id.append([*r, s, d])
            if by_id:
                written += _write(driver, make(by_id=True), by_id, writers, fallback=make(by_id=False),
                                  what=kind.name)[0]
            if by_key:
                written += _write(driver, make(by_id=False), by_key, writers, what=kind.name)[0]
        if rows or kind.name not in LINK_RELS:
            summary.relationships[kind.name] = len(rows) - len(todo) + written
        summary.written += written
        if progress:
            progress(kind.name, len(rows))

    with _gc_paused():
        try:
            ensure_schema(driver)
            # Read before preparing rows, not alongside: a thread receiving a large result while the other
            # computes gets the GIL back only every switch interval, which made the read several times slower.
            existing, have_rels = _read_existing(driver)

            wanted: dict[str, set[str]] = {label: set() for label in KEYED_LABELS}
            # ids this push CREATEs, per label group: a relationship with such an endpoint cannot exist yet
            created: dict[str, set[str]] = {label: set() for label in KEYED_LABELS}
            routed: list[list] = []

            def node_plan() -> Iterator[tuple[_NodeKind, list[list]]]:
                # built one kind at a time, while the writer thread writes the previous one
                for etype, rows in sorted(_entity_rows(store).items()):
                    yield ENTITY_KINDS.get(etype, OTHER_ENTITY), rows
                clusters, agencies, routed[:] = _cluster_rows(store)
                yield CLUSTER, clusters
                yield AGENCY, agencies

            report_rows = _report_rows(store)
            # 1. nodes: write what is new or changed (stale nodes go last, with their relationships)
            for kind, rows in itertools.chain([(REPORT, report_rows)], node_plan()):
                group = kind.labels.split(":")[0]
                have = existing[group]
                wanted[group].update(r[1] for r in rows)
                new = [] if full else [r for r in rows if r[1] not in have]
                changed = rows if full else [r for r in rows if r[1] in have and have[r[1]] != r[0]]
                created[group].update(r[1] for r in new)
                jobs.submit(write_nodes, kind, group, rows, new, changed)

            # 2. relationships: delete those whose content is gone, then write the missing ones
            links = _link_rows(store)
            rel_plan: list[tuple[_RelKind, Callable[[], list[list]]]] = [(MENTIONS, lambda: _mention_rows(store))]
            rel_plan += [(LINK_KINDS[rel], lambda rel=rel: links.get(rel, [])) for rel in LINK_RELS]
            rel_plan += [(IN_CLUSTER, lambda: _member_rows(store)), (ROUTED_TO, lambda: routed)]
            for kind, make_rows in rel_plan:
                rows = make_rows()
                have = have_rels[kind.name]
                wanted_hashes = {r[0] for r in rows}
                stale = [h for h, n in have.items() if h is not None and (h not in wanted_hashes or n > 1)]
                todo = rows if full else [r for r in rows if have.get(r[0]) != 1]
                src_new, dst_new = created[kind.src[0]], created[kind.dst[0]]
                new = [r for r in todo if r[1] in src_new or r[2] in dst_new]
                changed = [r for r in todo if not (r[1] in src_new or r[2] in dst_new)] if new else todo
                jobs.submit(write_rels, kind, rows, todo, new, changed, stale, None in have)

            # 3. nodes the store no longer holds (merged entities, dissolved clusters, purged reports)
            for label, key in KEYED_LABELS.items():
                gone = sorted(set(existing[label]) - wanted[label])
                if gone:
                    jobs.submit(lambda label=label, key=key, gone=gone: setattr(
                        summary, "removed", summary.removed + _delete_nodes(driver, label, key, gone)))
            jobs.finish()
        except Exception as exc:
            jobs.close()
            _raise_driver_error(exc, "Neo4j push stopped", "what was written is consistent per batch. Check the "
                                "server (make neo4j) and run 'linkage push' again: it is idempotent.")
        finally:
            summary.seconds = time.perf_counter() - t0
            if own:
                driver.close()
    return summary


def _delete_rels(driver, rel: str, hashes: Sequence[int], with_null: bool = False, chunk: int = BATCH) -> int:
    """Delete relationships of type ``rel`` whose ``push_hash`` is in ``hashes`` (or missing, ``with_null``)."""
    if not hashes and not with_null:
        return 0
    removed = 0
    query = (f"MATCH ()-[x:{rel}]->() WHERE x.push_hash IN $hashes OR ($nulls AND x.push_hash IS NULL) "
             "WITH x LIMIT $chunk DELETE x RETURN count(*) AS n")
    with _session(driver) as session:
        while True:
            n = session.execute_write(lambda tx: tx.run(query, hashes=list(hashes), nulls=with_null,
                                                         chunk=chunk).single()["n"])
            removed += n
            if n < chunk:
                return removed


def _delete_nodes(driver, label: str, key: str, ids: Sequence[str]) -> int:
    """DETACH DELETE the nodes of ``label`` with these ids (``label``/``key`` from the fixed vocabulary)."""
    if not ids:
        return 0
    return _write(driver, f"UNWIND $rows AS id MATCH (n:{label} {{{key}: id}}) DETACH DELETE n RETURN count(*) AS n",
                  ids, what=f"delete {label}")[0]


def remove_stale(store: EmbeddedStore, driver=None) -> int:
    """Delete from Neo4j the nodes the store no longer holds, with their relationships; writes nothing else.

    Returns the number of nodes deleted. (``push`` does this too, and also removes stale relationships.)
    """
    own = driver is None
    driver = driver or connect()
    try:
        wanted = {
            "Report": [r[0] for r in store.conn.execute("SELECT report_id FROM reports")],
            "Entity": [r[0] for r in store.conn.execute("SELECT entity_id FROM entities")],
            "Cluster": [r[0] for r in store.conn.execute("SELECT cluster_id FROM clusters")],
            "Agency": [r[1] for r in _cluster_rows(store)[1]],
        }
        removed = 0
        for label, key in KEYED_LABELS.items():
            have = _read_list(driver, f"MATCH (n:{label}) WHERE n.{key} IS NOT NULL RETURN collect(n.{key}) AS c")
            removed += _delete_nodes(driver, label, key, sorted(set(have) - set(wanted[label])))
        return removed
    except Exception as exc:
        _raise_driver_error(exc, "Removing stale nodes from Neo4j stopped",
                            "what was deleted stays deleted. Check the server (make neo4j) and run again.")
    finally:
        if own:
            driver.close()


def delete_reports(report_ids: Iterable[str], driver=None) -> int:
    """Remove purged reports from Neo4j, with what hangs on them only; for ``linkage purge``.

    Each stated link loses the purged reports from its ``report_ids`` (and goes when none is left);
    then entities without mentions, clusters without reports and agencies without clusters go.
    Returns the number of reports deleted.
    """
    ids = sorted(set(report_ids))
    if not ids:
        return 0
    own = driver is None
    driver = driver or connect()
    rels = "|".join(LINK_RELS)
    try:
        with _session(driver) as session:
            n = 0
            for batch in _batches(ids):
                n += session.execute_write(lambda tx, b: tx.run(
                    f"""UNWIND $ids AS id
                    MATCH (r:Report {{report_id: id}})
                    CALL {{
                        WITH r, id
                        MATCH (r)-[:MENTIONS]->(:Entity)-[x:{rels}]-(:Entity)
                        WHERE id IN x.report_ids
                        WITH DISTINCT x, [i IN x.report_ids WHERE i <> id] AS left
                        SET x.report_ids = left, x.n_reports = size(left), x.push_hash = null
                        WITH x, left WHERE size(left) = 0
                        DELETE x
                    }}
                    DETACH DELETE r
                    RETURN count(*) AS n""", ids=b).single()["n"], batch)
            for stmt in ("MATCH (e:Entity) WHERE NOT (e)<-[:MENTIONS]-() DETACH DELETE e",
                         "MATCH (c:Cluster) WHERE NOT (c)<-[:IN_CLUSTER]-() DETACH DELETE c",
                         "MATCH (a:Agency) WHERE NOT (a)<-[:ROUTED_TO]-() DETACH DELETE a"):
                session.execute_write(lambda tx, q=stmt: tx.run(q).consume())
        return n
    except Exception as exc:
        _raise_driver_error(exc, "Deleting purged reports from Neo4j stopped",
                            "nothing was deleted from the store. Check the server (make neo4j) and run the purge "
                            "again: reports already deleted from Neo4j are skipped.")
    finally:
        if own:
            driver.close()


def counts(driver) -> dict[str, int]:
    """Node counts per label and relationship counts per type (for tests and ``linkage push --json``)."""
    out: dict[str, int] = {}
    with _session(driver) as session:
        for label in ("Report", "Entity", "Cluster", "Agency") + tuple(ENTITY_LABELS.values()):
            out[label] = session.run(f"MATCH (n:{label}) RETURN count(n) AS n").single()["n"]
        for rel in ("MENTIONS", "IN_CLUSTER", "ROUTED_TO") + LINK_RELS:
            out[rel] = session.run(f"MATCH ()-[x:{rel}]->() RETURN count(x) AS n").single()["n"]
    return out
