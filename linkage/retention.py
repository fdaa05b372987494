"""Retention: delete reports past the retention period, with everything that hangs on them.

In:  a store, the retention period (``--older-than 365d``; default ``[retention] days`` in settings),
     the clusters marked as active cases (``linkage case CLUSTER --active``).
Out: the reports received before the cutoff are deleted unless they are in an active-case cluster,
     cascading to their mentions, links, mention->entity rows, entities left without mentions, ER
     pairs and the prepared records of the incremental state (``er_state``), cluster membership, clusters left without reports (and their case rows), status history,
     feedback records, judgements on deleted mentions/entities and quarantined rows of those reports.
     A ``deletions`` row records time, actor, period, cutoff and counts - never ids or values.
     ``on_purge(report_ids)`` is called before the commit (for the Neo4j graph); if it raises,
     nothing is deleted and the purge can simply be run again.

>>> parse_duration("365d"), parse_duration("52w"), parse_duration("2y"), parse_duration(30)
(365, 364, 730, 30)
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from linkage.audit import current_actor, now_iso
from linkage.errors import ConfigError, InputError
from linkage.feedback.lifecycle import active_case_clusters
from linkage.graph.incremental import drop_state as drop_cluster_state
from linkage.resolve.incremental import prune_state
from linkage.store.embedded import bump_er_generation

DEFAULT_RETENTION_DAYS = 365

_DURATION = re.compile(r"^\s*(\d+)\s*([dwy]?)\s*$", re.IGNORECASE)


def parse_duration(value: Any) -> int:
    """A retention period in days from ``365``, ``365d``, ``52w`` or ``1y`` (a year counts 365 days).

    Raises
    ------
    InputError
        When the value is not such a period.
    """
    if isinstance(value, int) and value >= 0:
        return value
    m = _DURATION.match(str(value))
    if not m:
        raise InputError(f"'{str(value)[:20]}' is not a period; use days like 365d (or 52w, 1y).")
    n, unit = int(m.group(1)), m.group(2).lower()
    return n * {"": 1, "d": 1, "w": 7, "y": 365}[unit]


def retention_days(settings=None) -> int:
    """``[retention] days`` from the settings (loaded when None), else 365.

    Raises
    ------
    ConfigError
        When the value is not a whole number of days.
    """
    if settings is None:
        from linkage.settings import load_settings

        settings = load_settings()
    value = settings.raw.get("retention", {}).get("days", DEFAULT_RETENTION_DAYS)
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{settings.source}: [retention] days must be a whole number of days (like 365).")
    return value


@dataclass
class PurgeSummary:
    """What a purge deleted (or would delete, with ``dry_run``). ``report_ids`` is not stored anywhere."""

    older_than_days: int
    cutoff: str
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    kept_active_case: int = 0
    report_ids: list[str] = field(default_factory=list, repr=False)
    deletion_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"older_than_days": self.older_than_days, "cutoff": self.cutoff, "dry_run": self.dry_run,
                "counts": dict(self.counts), "kept_active_case": self.kept_active_case,
                "deletion_id": self.deletion_id}


class _DryRun(Exception):
    """Raised inside the purge transaction to roll a dry run back."""


def _temp_ids(conn, name: str, ids: Iterable[str]) -> None:
    conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    conn.execute(f"CREATE TEMP TABLE {name} (id TEXT PRIMARY KEY)")
    conn.executemany(f"INSERT OR IGNORE INTO temp.{name} (id) VALUES (?)", ((i,) for i in ids))


def _delete(conn, sql: str) -> int:
    return conn.execute(sql).rowcount


def purge(store, older_than_days: int, now: dt.datetime | None = None, dry_run: bool = False,
          on_purge: Callable[[Sequence[str]], Any] | None = None, actor: str | None = None) -> PurgeSummary:
    """Delete reports received more than ``older_than_days`` days before ``now``, with their cascade.

    Parameters
    ----------
    now:
        The reference moment (default: now, UTC).
    dry_run:
        Count exactly what would be deleted, then roll back; no deletion record, no hook.
    on_purge:
        Called with the sorted deleted report ids inside the transaction, before the commit.

    Returns
    -------
    PurgeSummary
        Counts per table (``reports``, ``mentions``, ``entities``, ...), reports kept because their
        cluster is an active case, and the id of the ``deletions`` row.
    """
    if older_than_days < 0:
        raise InputError("The retention period cannot be negative.")
    now = now or dt.datetime.now(dt.timezone.utc)
    cutoff = (now.date() - dt.timedelta(days=older_than_days)).isoformat()
    summary = PurgeSummary(older_than_days=older_than_days, cutoff=cutoff, dry_run=dry_run)
    conn = store.conn
    try:
        with store.transaction():
            protected = active_case_clusters(store)
            old = conn.execute(
                "SELECT r.report_id, rc.cluster_id FROM reports r LEFT JOIN report_clusters rc "
                "ON rc.report_id = r.report_id WHERE substr(r.received_at, 1, 10) < ? ORDER BY r.report_id",
                (cutoff,),
            ).fetchall()
            doomed = [rid for rid, cid in old if cid not in protected]
            summary.kept_active_case = len(old) - len(doomed)
            summary.report_ids = doomed
            _temp_ids(conn, "purge_reports", doomed)
            mentions = [r[0] for r in conn.execute(
                "SELECT mention_id FROM mentions WHERE report_id IN (SELECT id FROM temp.purge_reports)")]
            _temp_ids(conn, "purge_mentions", mentions)
            clusters = [r[0] for r in conn.execute(
                "SELECT DISTINCT cluster_id FROM report_clusters WHERE report_id IN (SELECT id FROM temp.purge_reports)")]
            entities = [r[0] for r in conn.execute(
                "SELECT DISTINCT entity_id FROM mention_entities WHERE mention_id IN (SELECT id FROM temp.purge_mentions)")]
            c = summary.counts
            in_m = "(SELECT id FROM temp.purge_mentions)"
            in_r = "(SELECT id FROM temp.purge_reports)"
            c["mention_links"] = _delete(conn, f"DELETE FROM mention_links WHERE report_id IN {in_r} "
                                               f"OR src_mention_id IN {in_m} OR dst_mention_id IN {in_m}")
            c["mention_entities"] = _delete(conn, f"DELETE FROM mention_entities WHERE mention_id IN {in_m}")
            bump_er_generation(conn)
            orphans = [e for e in entities if conn.execute(
                "SELECT 1 FROM mention_entities WHERE entity_id=? LIMIT 1", (e,)).fetchone() is None]
            _temp_ids(conn, "purge_entities", orphans)
            in_e = "(SELECT id FROM temp.purge_entities)"
            c["entities"] = _delete(conn, f"DELETE FROM entities WHERE entity_id IN {in_e}")
            c["er_pairs"] = _delete(conn, f"DELETE FROM er_pairs WHERE left_id IN {in_m} OR right_id IN {in_m} "
                                          f"OR left_id IN {in_e} OR right_id IN {in_e}")
            # the scored pairs and prepared records (names, addresses) kept for incremental runs
            c["er_pairs"] += prune_state(conn, mentions)
            # the clusters and scores kept for the next run (their sentences name entities): cluster again
            drop_cluster_state(conn)
            c["judgements"] = _delete(conn, f"DELETE FROM judgements WHERE id_a IN {in_m} OR id_b IN {in_m} "
                                            f"OR id_a IN {in_e} OR id_b IN {in_e}")
            c["mentions"] = _delete(conn, f"DELETE FROM mentions WHERE mention_id IN {in_m}")
            c["report_clusters"] = _delete(conn, f"DELETE FROM report_clusters WHERE report_id IN {in_r}")
            empty = [cid for cid in clusters if conn.execute(
                "SELECT 1 FROM report_clusters WHERE cluster_id=? LIMIT 1", (cid,)).fetchone() is None]
            _temp_ids(conn, "purge_clusters", empty)
            in_c = "(SELECT id FROM temp.purge_clusters)"
            # the clusters' rows and ranks (the view clusters reads them together: linkage.store.embedded)
            c["clusters"] = _delete(conn, f"DELETE FROM cluster_rows WHERE cluster_id IN {in_c}")
            conn.execute(f"DELETE FROM cluster_ranks WHERE cluster_id IN {in_c}")
            c["cluster_cases"] = _delete(conn, f"DELETE FROM cluster_cases WHERE cluster_id IN {in_c}")
            c["status_history"] = _delete(conn, f"DELETE FROM status_history WHERE report_id IN {in_r}")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'status_inputs'").fetchone():
                # what the last status stage saw of these reports (linkage.feedback.lifecycle.advance_changed)
                conn.execute(f"DELETE FROM status_inputs WHERE report_id IN {in_r}")
            c["feedback_sent"] = _delete(conn, f"DELETE FROM feedback_sent WHERE report_id IN {in_r}")
            c["quarantine"] = _delete(
                conn, f"DELETE FROM quarantine WHERE json_valid(raw) AND "
                      f"json_extract(raw, '$.report_id') IN {in_r}")
            c["reports"] = _delete(conn, f"DELETE FROM reports WHERE report_id IN {in_r}")
            if dry_run:
                raise _DryRun
            if on_purge is not None and doomed:
                on_purge(list(doomed))
            cur = conn.execute(
                "INSERT INTO deletions (at, actor, older_than_days, cutoff, counts) VALUES (?, ?, ?, ?, ?)",
                (now_iso(now), actor or current_actor(), older_than_days, cutoff,
                 json.dumps(dict(sorted(c.items())) | {"kept_active_case": summary.kept_active_case}, sort_keys=True)),
            )
            summary.deletion_id = int(cur.lastrowid)
    except _DryRun:
        pass
    finally:
        for name in ("purge_reports", "purge_mentions", "purge_entities", "purge_clusters"):
            conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
    return summary


def deletions(store):
    """The deletion records, oldest first (counts parsed)."""
    df = store.frame("SELECT id, at, actor, older_than_days, cutoff, counts FROM deletions ORDER BY id")
    df["counts"] = [json.loads(v) for v in df["counts"]]
    return df
