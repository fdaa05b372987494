"""The Neo4j writer: mirrors the embedded store into a Neo4j 5 database for investigators.

In:  an :class:`~linkage.store.EmbeddedStore` after ``linkage run``, and connection settings from the
     environment (``LINKAGE_NEO4J_URI``, ``_USER``, ``_PASSWORD``, ``_DATABASE``).
Out: the graph model of ``docs/graph-model.md`` in Neo4j, and a :class:`PushSummary`.

How it writes: constraints and indexes first (idempotent), then batches of ``UNWIND $rows`` with
``MERGE`` on ids, values only as parameters (never in query text), each batch in a managed write
transaction (the driver retries transient errors). Every node and relationship written gets the
push's stamp; afterwards whatever carries an older stamp (a cluster that no longer exists, a merged
entity, a purged report) is deleted, so pushing twice leaves identical counts and a push after new
reports leaves exactly what the store holds.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import pandas as pd

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

BATCH = 5000


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
    driver = GraphDatabase.driver(config.uri, auth=(config.user, config.password))
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
    "CREATE INDEX report_stamp IF NOT EXISTS FOR (n:Report) ON (n.push_id)",
    "CREATE INDEX entity_stamp IF NOT EXISTS FOR (n:Entity) ON (n.push_id)",
    "CREATE INDEX entity_label IF NOT EXISTS FOR (n:Entity) ON (n.label)",
    "CREATE INDEX cluster_rank IF NOT EXISTS FOR (n:Cluster) ON (n.rank)",
    "CREATE INDEX report_received IF NOT EXISTS FOR (n:Report) ON (n.received_at)",
) + tuple(
    f"CREATE INDEX {label.lower()}_label IF NOT EXISTS FOR (n:{label}) ON (n.label)" for label in ENTITY_LABELS.values()
)


def ensure_schema(driver) -> None:
    """Create constraints and indexes (idempotent) and wait until they are online."""
    with _session(driver) as session:
        for stmt in SCHEMA_STATEMENTS:
            session.run(stmt).consume()
        session.run("CALL db.awaitIndexes(300)").consume()


@dataclass
class PushSummary:
    """What a push wrote: elements per kind, stale elements removed, seconds, elements per second."""

    nodes: dict[str, int] = field(default_factory=dict)
    relationships: dict[str, int] = field(default_factory=dict)
    removed: int = 0
    seconds: float = 0.0

    @property
    def elements(self) -> int:
        return sum(self.nodes.values()) + sum(self.relationships.values())

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes, "relationships": self.relationships, "removed": self.removed,
                "seconds": round(self.seconds, 2), "elements": self.elements,
                "elements_per_second": round(self.elements / self.seconds) if self.seconds else None}

    def __str__(self) -> str:
        d = self.to_dict()
        return (f"{sum(self.nodes.values())} nodes, {sum(self.relationships.values())} relationships written, "
                f"{self.removed} stale removed in {d['seconds']} s ({d['elements_per_second']} elements/s)")


def _batches(rows: Sequence[dict], size: int = BATCH) -> Iterator[list[dict]]:
    for i in range(0, len(rows), size):
        yield list(rows[i:i + size])


def _write(driver, query: str, rows: Sequence[dict], **params: Any) -> int:
    """Run ``query`` once per batch of rows, each batch in a managed (retried) write transaction."""
    def work(tx, batch):
        tx.run(query, rows=batch, **params).consume()

    with _session(driver) as session:
        for batch in _batches(rows):
            session.execute_write(work, batch)
    return len(rows)


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        return value.item()
    return value


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _clean(v) for k, v in r.items()} for r in df.to_dict("records")]


def _agencies(clusters: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Agency nodes and ROUTED_TO rows from the clusters' routing decisions."""
    names: dict[str, str] = {}
    routed: list[dict] = []
    try:
        from linkage.triage.routing import agency_names  # id -> display name, when the rules define them
        known = agency_names()
    except Exception:  # noqa: BLE001 - display names are optional
        known = {}
    for r in clusters.to_dict("records"):
        routing = r.get("routing")
        routing = json.loads(routing) if isinstance(routing, str) and routing[:1] == "[" else (routing or [])
        seen = set()
        for d in routing if isinstance(routing, list) else []:
            if not isinstance(d, dict) or not d.get("agency"):
                continue
            aid = str(d["agency"])
            names.setdefault(aid, known.get(aid, aid))
            if aid not in seen:
                routed.append({"cluster_id": r["cluster_id"], "agency_id": aid, "rule": d.get("rule"),
                               "reason": d.get("reason")})
                seen.add(aid)
        for aid in _as_list(r.get("agencies")):
            aid = str(aid)
            names.setdefault(aid, known.get(aid, aid))
            if aid not in seen:
                routed.append({"cluster_id": r["cluster_id"], "agency_id": aid, "rule": None, "reason": None})
                seen.add(aid)
    return [{"agency_id": k, "name": v} for k, v in sorted(names.items())], routed


def push(store: EmbeddedStore, driver=None, progress: Callable[[str, int], None] | None = None) -> PushSummary:
    """Write everything the store holds into Neo4j and remove what it no longer holds.

    Raises
    ------
    Neo4jUnavailable
        When the server cannot be reached (nothing is written).
    """
    own = driver is None
    driver = driver or connect()
    t0 = time.perf_counter()
    stamp = uuid.uuid4().hex
    summary = PushSummary()
    try:
        ensure_schema(driver)
        reports = store.frame(
            "SELECT report_id, received_at, category, category_raw, description, reporter_id, reporter_type "
            "FROM reports ORDER BY report_id")
        summary.nodes["Report"] = _write(driver, """
            UNWIND $rows AS r
            MERGE (n:Report {report_id: r.report_id})
            SET n.received_at = r.received_at, n.received_date = date(substring(r.received_at, 0, 10)),
                n.category = r.category, n.category_raw = r.category_raw, n.description = r.description,
                n.reporter_id = r.reporter_id, n.reporter_type = r.reporter_type, n.push_id = $stamp
            """, _records(reports), stamp=stamp)
        if progress:
            progress("reports", len(reports))

        entities = store.frame("SELECT entity_id, entity_type, label, n_mentions, attributes FROM entities ORDER BY entity_id")
        for etype, label in ENTITY_LABELS.items():
            part = entities[entities["entity_type"] == etype]
            if part.empty:
                continue
            # The label comes from the fixed ENTITY_LABELS table above, never from data.
            summary.nodes[label] = _write(driver, f"""
                UNWIND $rows AS r
                MERGE (n:Entity {{entity_id: r.entity_id}})
                SET n:{label}, n.entity_type = r.entity_type, n.label = r.label, n.n_mentions = r.n_mentions,
                    n.attributes = r.attributes, n.push_id = $stamp
                """, _records(part), stamp=stamp)
        if progress:
            progress("entities", len(entities))

        mentions = store.frame(
            "SELECT m.mention_id, m.report_id, m.role, me.entity_id, "
            + ", ".join(f"m.{f}" for f in model.VALUE_FIELDS)
            + " FROM mentions m JOIN mention_entities me USING (mention_id) ORDER BY m.mention_id")
        rows = []
        for r in mentions.to_dict("records"):
            given = {f: r[f] for f in model.VALUE_FIELDS if _clean(r.get(f)) is not None}
            rows.append({"mention_id": r["mention_id"], "report_id": r["report_id"], "entity_id": r["entity_id"],
                         "role": _clean(r["role"]), "as_given": json.dumps(given, ensure_ascii=False)})
        summary.relationships["MENTIONS"] = _write(driver, """
            UNWIND $rows AS r
            MATCH (a:Report {report_id: r.report_id})
            MATCH (b:Entity {entity_id: r.entity_id})
            MERGE (a)-[m:MENTIONS {mention_id: r.mention_id}]->(b)
            SET m.role = r.role, m.as_given = r.as_given, m.push_id = $stamp
            """, rows, stamp=stamp)
        if progress:
            progress("mentions", len(rows))

        links = store.frame(
            "SELECT ea.entity_id AS src, eb.entity_id AS dst, l.rel_type, l.report_id "
            "FROM mention_links l JOIN mention_entities ea ON ea.mention_id = l.src_mention_id "
            "JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id ORDER BY src, dst, rel_type, report_id")
        for rel in LINK_RELS:
            part = links[links["rel_type"] == rel]
            if part.empty:
                continue
            grouped = part.groupby(["src", "dst"], sort=True)["report_id"].apply(lambda s: sorted(set(s))).reset_index()
            recs = [{"src": r["src"], "dst": r["dst"], "report_ids": r["report_id"]} for r in grouped.to_dict("records")]
            summary.relationships[rel] = _write(driver, f"""
                UNWIND $rows AS r
                MATCH (a:Entity {{entity_id: r.src}})
                MATCH (b:Entity {{entity_id: r.dst}})
                MERGE (a)-[x:{rel}]->(b)
                SET x.report_ids = r.report_ids, x.n_reports = size(r.report_ids), x.push_id = $stamp
                """, recs, stamp=stamp)

        clusters = store.clusters()
        crow = []
        for r in clusters.to_dict("records"):
            crow.append({
                "cluster_id": r["cluster_id"], "rank": _clean(r["rank"]), "score": _clean(r["score"]),
                "n_reports": _clean(r["n_reports"]), "n_reporters": _clean(r["n_reporters"]),
                "categories": [str(c) for c in _as_list(r.get("categories"))],
                "agencies": [str(a) for a in _as_list(r.get("agencies"))],
                "reason": _clean(r.get("reason")), "signals": _clean(r.get("signals")),
                "routing": _clean(r.get("routing")), "unrouted_reason": _clean(r.get("unrouted_reason")),
            })
        summary.nodes["Cluster"] = _write(driver, """
            UNWIND $rows AS r
            MERGE (c:Cluster {cluster_id: r.cluster_id})
            SET c.rank = r.rank, c.score = r.score, c.n_reports = r.n_reports, c.n_reporters = r.n_reporters,
                c.categories = r.categories, c.agencies = r.agencies, c.reason = r.reason, c.signals = r.signals,
                c.routing = r.routing, c.unrouted_reason = r.unrouted_reason, c.push_id = $stamp
            """, crow, stamp=stamp)
        members = _records(store.report_clusters())
        summary.relationships["IN_CLUSTER"] = _write(driver, """
            UNWIND $rows AS r
            MATCH (a:Report {report_id: r.report_id})
            MATCH (c:Cluster {cluster_id: r.cluster_id})
            MERGE (a)-[x:IN_CLUSTER]->(c)
            SET x.push_id = $stamp
            """, members, stamp=stamp)
        agencies, routed = _agencies(clusters)
        summary.nodes["Agency"] = _write(driver, """
            UNWIND $rows AS r
            MERGE (a:Agency {agency_id: r.agency_id})
            SET a.name = r.name, a.push_id = $stamp
            """, agencies, stamp=stamp)
        summary.relationships["ROUTED_TO"] = _write(driver, """
            UNWIND $rows AS r
            MATCH (c:Cluster {cluster_id: r.cluster_id})
            MATCH (a:Agency {agency_id: r.agency_id})
            MERGE (c)-[x:ROUTED_TO]->(a)
            SET x.rule = r.rule, x.reason = r.reason, x.push_id = $stamp
            """, routed, stamp=stamp)
        summary.removed = remove_stale(driver, stamp)
    except Exception as exc:
        from neo4j.exceptions import Neo4jError, DriverError

        if isinstance(exc, (Neo4jError, DriverError)):
            raise Neo4jUnavailable(
                f"Neo4j push stopped ({type(exc).__name__}); what was written is consistent per batch. "
                "Check the server (make neo4j) and run 'linkage push' again: it is idempotent."
            ) from None
        raise
    finally:
        summary.seconds = time.perf_counter() - t0
        if own:
            driver.close()
    return summary


def remove_stale(driver, stamp: str) -> int:
    """Delete relationships and nodes not written by the push ``stamp`` (in batches)."""
    removed = 0
    with _session(driver) as session:
        for rel in ("MENTIONS", "IN_CLUSTER", "ROUTED_TO") + LINK_RELS:
            while True:
                rec = session.run(
                    f"MATCH ()-[x:{rel}]->() WHERE x.push_id IS NULL OR x.push_id <> $stamp "
                    "WITH x LIMIT 10000 DELETE x RETURN count(*) AS n", stamp=stamp).single()
                removed += rec["n"]
                if rec["n"] < 10000:
                    break
        for label in ("Report", "Entity", "Cluster", "Agency"):
            while True:
                rec = session.run(
                    f"MATCH (n:{label}) WHERE n.push_id IS NULL OR n.push_id <> $stamp "
                    "WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS n", stamp=stamp).single()
                removed += rec["n"]
                if rec["n"] < 10000:
                    break
    return removed


def delete_reports(report_ids: Iterable[str], driver=None) -> int:
    """Remove purged reports (and entities left without mentions) from Neo4j; for ``linkage purge``."""
    ids = sorted(set(report_ids))
    if not ids:
        return 0
    own = driver is None
    driver = driver or connect()
    try:
        with _session(driver) as session:
            n = 0
            for batch in _batches([{"id": i} for i in ids]):
                n += session.execute_write(lambda tx, b: tx.run(
                    "UNWIND $rows AS r MATCH (x:Report {report_id: r.id}) DETACH DELETE x RETURN count(*) AS n",
                    rows=b).single()["n"], batch)
            session.run("MATCH (e:Entity) WHERE NOT (e)<-[:MENTIONS]-() DETACH DELETE e").consume()
            session.run("MATCH (c:Cluster) WHERE NOT (c)<-[:IN_CLUSTER]-() DETACH DELETE c").consume()
        return n
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
