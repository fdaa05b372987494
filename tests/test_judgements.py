"""Analyst judgements: append-only, latest per pair wins, withdrawals, entity ids mapped to mentions."""
from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

import cli
from linkage.errors import NotFoundError
from linkage.resolve.judgements import (
    JudgementError,
    current_judgements,
    folded_judgements,
    judgement_log,
    judgements_for,
    record_judgement,
)
from linkage.store import EmbeddedStore


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKAGE_USER", "ana")
    s = EmbeddedStore(tmp_path / "j.db")
    s.insert_rows("mentions", [{"mention_id": m, "report_id": "R-1", "entity_type": "person", "content_hash": m}
                               for m in ("M-1", "M-2", "M-3", "M-4", "M-5")],
                  ["mention_id", "report_id", "entity_type", "content_hash"])
    s.insert_rows("mention_entities", [{"mention_id": m, "entity_id": e, "entity_type": "person"}
                                       for m, e in (("M-1", "E-a"), ("M-2", "E-a"), ("M-3", "E-b"), ("M-4", "E-b"),
                                                    ("M-5", "E-c"))],
                  ["mention_id", "entity_id", "entity_type"])
    yield s
    s.close()


@pytest.mark.parametrize("log,expected", [
    ([("M-1", "M-3", "same")], [("M-1", "M-3", "same")]),
    ([("M-3", "M-1", "different")], [("M-1", "M-3", "different")]),
    ([("M-1", "M-3", "same"), ("M-3", "M-1", "different")], [("M-1", "M-3", "different")]),
    ([("M-1", "M-3", "same"), ("M-1", "M-3", "unsure")], []),
    ([("M-1", "M-3", "same"), ("M-3", "M-1", "withdrawn")], []),
    ([("M-1", "M-3", "same"), ("M-1", "M-3", "withdrawn"), ("M-1", "M-3", "different")], [("M-1", "M-3", "different")]),
    ([("M-1", "M-3", "same"), ("M-4", "M-5", "different")], [("M-1", "M-3", "same"), ("M-4", "M-5", "different")]),
])
def test_folding(store, log, expected):
    for a, b, verdict in log:
        record_judgement(store, a, b, verdict)
    assert current_judgements(store) == expected
    assert len(judgement_log(store)) == len(log)  # nothing is ever edited away


def test_entity_ids_map_to_a_representative_mention(store):
    record_judgement(store, "E-b", "E-a", "different", note="vader en zoon")
    assert current_judgements(store) == [("M-1", "M-3", "different")]
    row = judgement_log(store).iloc[0]
    assert (row["actor"], row["mention_a"], row["mention_b"], row["note"]) == ("ana", "M-3", "M-1", "vader en zoon")


def test_entity_and_mention_mixed(store):
    record_judgement(store, "E-c", "M-2", "same")
    assert current_judgements(store) == [("M-2", "M-5", "same")]


def test_judgement_survives_entity_renumbering(store):
    record_judgement(store, "E-a", "E-b", "different")
    # a later run renames the entities; the judgement still binds the mentions judged on
    store.conn.execute("UPDATE mention_entities SET entity_id = 'E-new-' || entity_id")
    assert current_judgements(store) == [("M-1", "M-3", "different")]


def test_pairs_that_no_longer_resolve_are_dropped(store):
    record_judgement(store, "M-1", "M-3", "same")
    store.conn.execute("DELETE FROM mentions WHERE mention_id='M-3'")
    store.conn.execute("DELETE FROM mention_entities WHERE mention_id='M-3'")
    assert current_judgements(store) == []


def test_refusals(store):
    with pytest.raises(JudgementError, match="against itself"):
        record_judgement(store, "M-1", "M-1", "same")
    with pytest.raises(JudgementError, match="not a verdict"):
        record_judgement(store, "M-1", "M-2", "maybe")
    with pytest.raises(NotFoundError):
        record_judgement(store, "M-1", "M-999", "same")
    with pytest.raises(JudgementError, match="to withdraw"):
        record_judgement(store, "M-1", "M-2", "withdrawn")
    assert store.count("judgements") == 0


def test_log_is_append_only(store):
    record_judgement(store, "M-1", "M-2", "same")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("UPDATE judgements SET verdict='different'")


def test_judgements_for_explain(store):
    record_judgement(store, "M-1", "M-3", "same")
    record_judgement(store, "M-4", "M-5", "unsure")
    assert judgements_for(store, ["E-a"])["verdict"].tolist() == ["same"]
    assert judgements_for(store, ["M-5"])["verdict"].tolist() == ["unsure"]
    assert len(folded_judgements(store)) == 2


def test_cli_judge_and_list(store):
    runner = CliRunner()
    db = str(store.path)
    res = runner.invoke(cli.app, ["judge", "M-1", "M-3", "--store", db])
    assert res.exit_code == 2  # exactly one verdict flag
    res = runner.invoke(cli.app, ["judge", "M-1", "M-3", "--same", "--different", "--store", db])
    assert res.exit_code == 2
    res = runner.invoke(cli.app, ["judge", "M-1", "M-3", "--different", "--note", "twee personen", "--store", db])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli.app, ["judge", "M-3", "M-1", "--withdraw", "--store", db])
    assert res.exit_code == 0, res.output
    standing = json.loads(runner.invoke(cli.app, ["judgements", "--store", db, "--json"]).stdout)
    full = json.loads(runner.invoke(cli.app, ["judgements", "--all", "--store", db, "--json"]).stdout)
    assert standing == [] and [r["verdict"] for r in full] == ["different", "withdrawn"]
    assert full[0]["actor"] == "ana"
