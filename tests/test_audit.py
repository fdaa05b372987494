"""Audit log: an entry for each command that reads or changes personal data; never the data itself."""
from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

import cli
from linkage import audit
from linkage.errors import NotFoundError
from linkage.store import EmbeddedStore

REPORTS_CSV = """report_id,received_at,category,description,reporter_id,reporter_type
R-1001,2025-03-03,hennepteelt,Geur bij Jan de Vries,MW-771,medewerker
R-2002,2023-01-09,woonfraude,Veel mensen bij Piet Bakker,,anoniem
"""
MENTIONS_CSV = """report_id,mention_id,entity_type,name,bsn,postcode,house_number
R-1001,M-1,person,Jan de Vries,111222333,1234AB,12
R-2002,M-2,person,Piet Bakker,,1234AB,12
"""
PERSONAL = ["Jan de Vries", "Piet Bakker", "111222333", "1234AB", "Geur", "Veel mensen"]


@pytest.fixture()
def loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKAGE_USER", "auditor")
    (tmp_path / "reports.csv").write_text(REPORTS_CSV, encoding="utf-8")
    (tmp_path / "mentions.csv").write_text(MENTIONS_CSV, encoding="utf-8")
    db = tmp_path / "a.db"
    res = CliRunner().invoke(cli.app, ["load", str(tmp_path / "reports.csv"), str(tmp_path / "mentions.csv"),
                                       "--store", str(db)])
    assert res.exit_code == 0, res.output
    return db


def _log(db):
    with EmbeddedStore(db) as s:
        return audit.audit_log(s)


def test_actor_from_environment(monkeypatch):
    monkeypatch.setenv("LINKAGE_USER", "ana")
    assert audit.current_actor() == "ana"
    monkeypatch.delenv("LINKAGE_USER")
    assert audit.current_actor()  # the OS user (or 'unknown')


def test_touched_holds_ids_and_counts_only():
    long_text = "Jan de Vries woont op de Dorpsstraat 12 en heeft een auto met kenteken 12-ABC-3, al jaren."
    cleaned = audit.clean_touched({"report_ids": ["R-1"] * 1500, "rows": 3, "stats": {"new": 2, "x": long_text},
                                   "note": long_text, "obj": object()})
    assert len(cleaned["report_ids"]) == audit.MAX_IDS and cleaned["report_ids_total"] == 1500
    assert cleaned["stats.new"] == 2 and cleaned["stats.x"] == "<str>" and cleaned["note"] == "<str>"
    assert cleaned["obj"] == "<object>"


def test_every_command_is_audited_without_personal_data(loaded, tmp_path):
    db = str(loaded)
    runner = CliRunner()
    with EmbeddedStore(loaded) as s:
        s.insert_rows("report_clusters", [{"report_id": "R-1001", "cluster_id": "C-1"}], ["report_id", "cluster_id"])
    commands = [
        ["status", "R-1001"],
        ["status", "R-1001", "--set", "in_behandeling", "--note", "Jan de Vries gebeld"],
        ["feedback", "--out", str(tmp_path / "f.csv")],
        ["judge", "M-1", "M-2", "--different", "--note", "Piet Bakker is iemand anders"],
        ["judgements"],
        ["case", "C-1", "--active"],
        ["purge", "--older-than", "365d", "--dry-run"],
    ]
    for args in commands:
        res = runner.invoke(cli.app, args + ["--store", db])
        assert res.exit_code == 0, (args, res.output)
    log = _log(loaded)
    assert log["command"].tolist() == ["load", "status", "status", "feedback", "judge", "judgements", "case", "purge"]
    assert set(log["actor"]) == {"auditor"}
    assert log.iloc[0]["touched"] == {"files": 2, "rows_read": 4, "loaded": 4, "quarantined": 0}
    assert log.iloc[2]["touched"]["report_id"] == "R-1001"
    assert log.iloc[3]["touched"]["report_ids"] == ["R-1001"]
    assert log.iloc[4]["touched"]["ids"] == ["M-1", "M-2"]
    with sqlite3.connect(loaded) as conn:
        text = json.dumps(conn.execute("SELECT * FROM audit_log").fetchall())
    for value in PERSONAL + ["gebeld", "iemand anders"]:
        assert value not in text


def test_failed_command_still_audited_via_decorator(loaded):
    @audit.audited("probe")
    def probe(store=None, fail=False):
        audit.touch(report_ids=["R-1001"], rows=1)
        if fail:
            raise NotFoundError("nope")
        return "ok"

    assert probe(store=loaded) == "ok"
    with pytest.raises(NotFoundError):
        probe(store=loaded, fail=True)
    log = _log(loaded)
    probes = log[log["command"] == "probe"]["touched"].tolist()
    assert probes == [{"report_ids": ["R-1001"], "rows": 1},
                      {"report_ids": ["R-1001"], "rows": 1, "outcome": "error:NotFoundError"}]
    audit.touch(x=1)  # outside a command: harmless


def test_decorator_keeps_the_typer_signature(loaded):
    import typer

    app = typer.Typer()

    @app.command()
    @audit.audited("hello")
    def hello(name: str, store: cli.StoreOpt = None) -> None:
        """Say hello."""
        audit.touch(n=1)

    res = CliRunner().invoke(app, ["x", "--store", str(loaded)])
    assert res.exit_code == 0, res.output
    assert _log(loaded)["command"].tolist()[-1] == "hello"


def test_no_store_no_record(tmp_path):
    assert audit.record_at(tmp_path / "missing.db", "x", {}) is None
    assert not (tmp_path / "missing.db").exists()


def test_audit_log_cannot_be_changed(loaded):
    with EmbeddedStore(loaded) as s:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            s.conn.execute("UPDATE audit_log SET actor='someone'")
        with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
            s.conn.execute("DELETE FROM audit_log")


def test_cli_audit_since_and_command(loaded):
    runner = CliRunner()
    res = runner.invoke(cli.app, ["audit", "--store", str(loaded), "--json"])
    assert [r["command"] for r in json.loads(res.stdout)] == ["load"]
    res = runner.invoke(cli.app, ["audit", "--store", str(loaded), "--json", "--since", "2999-01-01"])
    assert json.loads(res.stdout) == []
    res = runner.invoke(cli.app, ["audit", "--store", str(loaded), "--command", "load"])
    assert res.exit_code == 0 and "auditor" in res.stdout
