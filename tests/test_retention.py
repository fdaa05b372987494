"""Retention: purge cascades, active cases are kept, dry runs count exactly, a deletion record without ids."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
from typer.testing import CliRunner

import cli
from linkage.errors import InputError
from linkage.feedback.lifecycle import set_case, set_status
from linkage.feedback.messages import build_feedback, mark_sent
from linkage.resolve.judgements import record_judgement
from linkage.retention import deletions, parse_duration, purge, retention_days
from linkage.store import EmbeddedStore

NOW = dt.datetime(2025, 6, 1, 12, tzinfo=dt.timezone.utc)

# report -> (received_at, cluster)
REPORTS = {
    "R-OLD1": ("2023-01-10", "C-OLD"),     # old, cluster of old reports only -> cluster goes too
    "R-OLD2": ("2023-02-10", "C-MIX"),     # old, cluster shared with a new report -> cluster stays
    "R-OLD3": ("2023-03-10T09:00:00", "C-CASE"),  # old, but its cluster is an active case -> kept
    "R-OLD4": ("2024-05-31", None),        # 366 days before NOW -> old
    "R-NEW1": ("2025-02-01", "C-MIX"),
    "R-NEW2": ("2024-06-01", None),        # exactly 365 days -> kept
}
# mention -> (report, entity)
MENTIONS = {
    "M-1": ("R-OLD1", "E-ONLY-OLD"),
    "M-2": ("R-OLD1", "E-SHARED"),
    "M-3": ("R-OLD2", "E-SHARED"),
    "M-4": ("R-NEW1", "E-SHARED"),
    "M-5": ("R-OLD3", "E-CASE"),
    "M-6": ("R-OLD4", "E-OLD4"),
    "M-7": ("R-NEW2", "E-NEW2"),
}


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKAGE_USER", "privacy-officer")
    s = EmbeddedStore(tmp_path / "r.db")
    s.insert_rows("reports", [{"report_id": r, "received_at": d, "category": "overig", "content_hash": r,
                               "description": f"tekst over {r}"} for r, (d, _) in REPORTS.items()],
                  ["report_id", "received_at", "category", "content_hash", "description"])
    s.insert_rows("mentions", [{"mention_id": m, "report_id": r, "entity_type": "person", "name": f"Naam {m}",
                                "content_hash": m} for m, (r, _) in MENTIONS.items()],
                  ["mention_id", "report_id", "entity_type", "name", "content_hash"])
    s.insert_rows("mention_links", [{"src_mention_id": "M-1", "dst_mention_id": "M-2", "rel_type": "LIVES_AT",
                                     "report_id": "R-OLD1"},
                                    {"src_mention_id": "M-4", "dst_mention_id": "M-7", "rel_type": "USES",
                                     "report_id": "R-NEW1"}],
                  ["src_mention_id", "dst_mention_id", "rel_type", "report_id"])
    s.insert_rows("mention_entities", [{"mention_id": m, "entity_id": e, "entity_type": "person"}
                                       for m, (_, e) in MENTIONS.items()], ["mention_id", "entity_id", "entity_type"])
    entities = sorted({e for _, e in MENTIONS.values()})
    s.insert_rows("entities", [{"entity_id": e, "entity_type": "person", "label": f"label {e}"} for e in entities],
                  ["entity_id", "entity_type", "label"])
    s.insert_rows("er_pairs", [{"left_id": "M-2", "right_id": "M-4", "matched": 1},
                               {"left_id": "M-3", "right_id": "M-4", "matched": 1}],
                  ["left_id", "right_id", "matched"])
    clusters = sorted({c for _, c in REPORTS.values() if c})
    s.insert_rows("clusters", [{"cluster_id": c, "rank": i} for i, c in enumerate(clusters)], ["cluster_id", "rank"])
    s.insert_rows("report_clusters", [{"report_id": r, "cluster_id": c} for r, (_, c) in REPORTS.items() if c],
                  ["report_id", "cluster_id"])
    s.insert_rows("quarantine", [{"source_file": "m.csv", "source_row": 9, "kind": "mentions", "reason": "x",
                                  "raw": json.dumps({"report_id": "R-OLD1", "name": "Naam in quarantaine"})},
                                 {"source_file": "m.csv", "source_row": 10, "kind": "mentions", "reason": "x",
                                  "raw": json.dumps({"report_id": "R-NEW1"})}],
                  ["source_file", "source_row", "kind", "reason", "raw"])
    for rid in ("R-OLD1", "R-OLD2", "R-NEW1"):
        set_status(s, rid, "gekoppeld", note=f"notitie {rid}")
    mark_sent(s, build_feedback(s))
    record_judgement(s, "M-1", "M-7", "different", note="oude notitie")
    record_judgement(s, "M-4", "M-7", "same")
    set_case(s, "C-CASE", True, note="casus")
    set_case(s, "C-OLD", False, note="gesloten")
    yield s
    s.close()


def _ids(store, table, col):
    return sorted(r[0] for r in store.conn.execute(f"SELECT {col} FROM {table}"))


EXPECTED = {
    "reports": 3, "mentions": 4, "mention_links": 1, "mention_entities": 4, "entities": 2, "er_pairs": 2,
    "report_clusters": 2, "clusters": 1, "cluster_cases": 1, "status_history": 2, "feedback_sent": 2,
    "judgements": 1, "quarantine": 1,
}


def test_parse_duration_and_default():
    assert parse_duration("365d") == 365 and parse_duration("1y") == 365 and parse_duration("4w") == 28
    with pytest.raises(InputError):
        parse_duration("een jaar")
    assert retention_days() == 365


def test_purge_cascades(store):
    summary = purge(store, 365, now=NOW)
    assert summary.counts == EXPECTED
    assert summary.kept_active_case == 1
    assert summary.report_ids == ["R-OLD1", "R-OLD2", "R-OLD4"]
    assert _ids(store, "reports", "report_id") == ["R-NEW1", "R-NEW2", "R-OLD3"]
    assert _ids(store, "mentions", "mention_id") == ["M-4", "M-5", "M-7"]
    assert _ids(store, "entities", "entity_id") == ["E-CASE", "E-NEW2", "E-SHARED"]
    assert _ids(store, "mention_links", "src_mention_id") == ["M-4"]
    assert _ids(store, "er_pairs", "left_id") == []
    assert _ids(store, "clusters", "cluster_id") == ["C-CASE", "C-MIX"]
    assert _ids(store, "cluster_ranks", "cluster_id") == ["C-CASE", "C-MIX"]  # a purged cluster's rank goes too
    assert _ids(store, "report_clusters", "report_id") == ["R-NEW1", "R-OLD3"]
    assert _ids(store, "status_history", "report_id") == ["R-NEW1"]
    assert _ids(store, "judgements", "id_a") == ["M-4"]
    assert _ids(store, "quarantine", "source_row") == [10]
    assert _ids(store, "cluster_cases", "cluster_id") == ["C-CASE"]


def test_deletion_record_without_personal_data(store):
    summary = purge(store, 365, now=NOW)
    [rec] = deletions(store).to_dict("records")
    assert rec["id"] == summary.deletion_id and rec["actor"] == "privacy-officer"
    assert (rec["older_than_days"], rec["cutoff"]) == (365, "2024-06-01")
    assert rec["counts"]["reports"] == 3 and rec["counts"]["kept_active_case"] == 1
    text = json.dumps(store.conn.execute("SELECT * FROM deletions").fetchall())
    for gone in list(REPORTS) + list(MENTIONS) + ["Naam", "tekst", "notitie"]:
        assert gone not in text
    with pytest.raises(sqlite3.DatabaseError):
        store.conn.execute("DELETE FROM deletions")


def test_dry_run_counts_exactly_and_changes_nothing(store):
    before = {t: store.count(t) for t in EXPECTED}
    dry = purge(store, 365, now=NOW, dry_run=True)
    assert dry.counts == EXPECTED and dry.deletion_id is None
    assert {t: store.count(t) for t in EXPECTED} == before
    assert store.count("deletions") == 0


def test_hook_gets_the_ids_and_its_failure_rolls_back(store):
    seen = []
    purge(store, 365, now=NOW, dry_run=True, on_purge=seen.append)
    assert seen == []

    def broken(ids):
        raise ConnectionError("neo4j down")

    with pytest.raises(ConnectionError):
        purge(store, 365, now=NOW, on_purge=broken)
    assert store.count("reports") == len(REPORTS) and store.count("deletions") == 0
    purge(store, 365, now=NOW, on_purge=seen.append)
    assert seen == [["R-OLD1", "R-OLD2", "R-OLD4"]]


def test_neo4j_gone_during_purge_is_a_clear_error_and_deletes_nothing(store):
    """A real driver whose server is not there (closed port, no retries): the Neo4j cascade of ``purge`` fails
    with ``Neo4jUnavailable`` naming what stopped (not the driver's exception, which the CLI would call an
    internal error), and the store keeps every report."""
    from neo4j import GraphDatabase

    from linkage.errors import Neo4jUnavailable
    from linkage.store.neo4j import delete_reports

    driver = GraphDatabase.driver("bolt://127.0.0.1:9", auth=("neo4j", "x"), max_transaction_retry_time=0,
                                  connection_timeout=2)
    try:
        with pytest.raises(Neo4jUnavailable, match="Deleting purged reports from Neo4j stopped"):
            purge(store, 365, now=NOW, on_purge=lambda ids: delete_reports(ids, driver))
    finally:
        driver.close()
    assert store.count("reports") == len(REPORTS) and store.count("deletions") == 0


def test_purge_twice_deletes_nothing_more_and_closing_a_case_releases(store):
    purge(store, 365, now=NOW)
    assert sum(purge(store, 365, now=NOW).counts.values()) == 0
    set_case(store, "C-CASE", False)
    again = purge(store, 365, now=NOW)
    assert again.counts["reports"] == 1 and again.counts["clusters"] == 1
    assert _ids(store, "reports", "report_id") == ["R-NEW1", "R-NEW2"]


def test_cli_purge(store):
    db = str(store.path)
    runner = CliRunner()
    res = runner.invoke(cli.app, ["purge", "--older-than", "30d", "--dry-run", "--json", "--no-neo4j", "--store", db])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["dry_run"] is True and data["counts"]["reports"] == 5  # all but the active case (today is after 2025)
    assert store.count("reports") == len(REPORTS)
    res = runner.invoke(cli.app, ["purge", "--no-neo4j", "--store", db])  # default: [retention] days = 365
    assert res.exit_code == 0, res.output
    assert "Deleted" in res.stdout
    assert store.count("deletions") == 1 and store.count("reports") <= len(REPORTS) - 3
