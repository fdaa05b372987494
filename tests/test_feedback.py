"""Terugmelden: a message per status, content rules, anonymous reporters, agency naming, idempotency."""
from __future__ import annotations

import sys
from pathlib import Path
import csv
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from lifecycle_paths import PATH_TO, bring  # noqa: E402

import cli
from linkage.errors import ConfigError, InputError
from linkage.feedback.lifecycle import STATUSES, set_status
from linkage.feedback.messages import (
    build_feedback,
    format_dutch_date,
    load_templates,
    mark_sent,
    write_messages,
)
from linkage.store import EmbeddedStore

REPORTS = [
    # report_id, received_at, reporter_id, reporter_type, description
    ("R-1001", "2025-03-03", "MW-771", "medewerker", "Geur van hennep bij Jan de Vries, Dorpsstraat 12"),
    ("R-2002", "2025-01-09T10:30:00", None, "anoniem", "Veel mensen op het adres van Piet Bakker"),
    ("R-3003", "2024-12-24", "BW-882", "bewoner", "Auto 12-ABC-3 van Karin Smit staat er elke nacht"),
]
MENTIONS = [
    ("M-1", "R-1001", "person", {"name": "Jan de Vries", "bsn": "111222333", "birth_date": "1970-01-01"}),
    ("M-2", "R-1001", "address", {"address": "Dorpsstraat 12", "postcode": "1234AB", "city": "Utrecht"}),
    ("M-3", "R-2002", "person", {"name": "Piet Bakker"}),
    ("M-4", "R-3003", "vehicle", {"plate": "12-ABC-3"}),
    ("M-5", "R-3003", "phone", {"phone": "06-12345678"}),
]


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKAGE_USER", "tester")
    s = EmbeddedStore(tmp_path / "f.db")
    s.insert_rows("reports", [
        {"report_id": r, "received_at": d, "category": "overig", "reporter_id": who, "reporter_type": kind,
         "description": desc, "content_hash": r} for r, d, who, kind, desc in REPORTS
    ], ["report_id", "received_at", "category", "reporter_id", "reporter_type", "description", "content_hash"])
    s.insert_rows("mentions", [dict(values, mention_id=m, report_id=r, entity_type=t, content_hash=m)
                               for m, r, t, values in MENTIONS],
                  ["mention_id", "report_id", "entity_type", "name", "bsn", "birth_date", "address", "postcode",
                   "city", "plate", "phone", "content_hash"])
    yield s
    s.close()


def test_dutch_dates():
    assert format_dutch_date("2025-03-03") == "3 maart 2025"
    assert format_dutch_date(dt.date(2025, 5, 1)) == "1 mei 2025"


@pytest.mark.parametrize("status", [s for s in STATUSES if s != "ontvangen"])
def test_a_message_for_each_status(store, status):
    bring(store, "R-1001", status)
    [msg] = build_feedback(store)
    templates = load_templates()
    assert msg.status == status and msg.report_id == msg.reference == "R-1001"
    assert msg.message == templates.by_status[status].format(datum="3 maart 2025", kenmerk="R-1001")
    assert msg.message.startswith("Uw melding van 3 maart 2025")


def test_ontvangen_back_after_reopen_gets_the_in_behandeling_message(store):
    bring(store, "R-1001", "niet_ontvankelijk")
    set_status(store, "R-1001", "in_behandeling", reopen=True)
    [msg] = build_feedback(store)
    assert msg.status == "in_behandeling" and "in behandeling" in msg.message


def test_no_history_no_message(store):
    assert build_feedback(store) == []


def _all_values():
    values = {v for _, _, _, vals in MENTIONS for v in vals.values()}
    values |= {desc for *_, desc in REPORTS}
    values |= {"Jan", "Vries", "Piet", "Bakker", "Dorpsstraat", "Karin", "Smit", "Utrecht"}
    return values


@pytest.mark.parametrize("name_agency", [False, True])
def test_messages_never_leak(store, name_agency):
    for rid, status in (("R-1001", "doorgezet"), ("R-2002", "gekoppeld"), ("R-3003", "afgehandeld")):
        bring(store, rid, status)
    messages = build_feedback(store, templates=load_templates(name_agency=name_agency))
    assert [m.report_id for m in messages] == ["R-1001", "R-2002", "R-3003"]
    reporters = {"MW-771", "BW-882"}
    for m in messages:
        text = m.message
        for value in _all_values():
            assert value not in text, (m.report_id, value)
        for other, *_ in REPORTS:
            if other != m.report_id:
                assert other not in text
        assert not any(r in text for r in reporters)
        assert "tester" not in text  # nor the analyst
        for other in reporters - {m.reporter_id}:
            assert other not in json.dumps(m.to_dict())


def test_anonymous_reporter_is_keyed_by_reference(store):
    bring(store, "R-2002", "gekoppeld")
    bring(store, "R-1001", "gekoppeld")
    by_id = {m.report_id: m for m in build_feedback(store)}
    assert by_id["R-2002"].reporter_id is None and by_id["R-2002"].reference == "R-2002"
    assert "kenmerk R-2002" in by_id["R-2002"].message
    assert by_id["R-1001"].reporter_id == "MW-771"


def test_agency_named_only_when_configured(store):
    bring(store, "R-1001", "doorgezet")
    [plain] = build_feedback(store)
    assert "juiste instantie" in plain.message and "olitie" not in plain.message
    [named] = build_feedback(store, templates=load_templates(name_agency=True))
    assert "naar de politie" in named.message


def test_agency_naming_from_settings(store, tmp_path):
    from linkage.settings import DEFAULT_SETTINGS, load_settings

    path = tmp_path / "settings.toml"
    path.write_text(DEFAULT_SETTINGS.read_text(encoding="utf-8").replace("name_agency = false", "name_agency = true"),
                    encoding="utf-8")
    bring(store, "R-1001", "doorgezet")
    [msg] = build_feedback(store, templates=load_templates(settings=load_settings(path)))
    assert "naar de politie" in msg.message


def test_marking_sent_is_idempotent(store):
    bring(store, "R-1001", "gekoppeld")
    bring(store, "R-2002", "gekoppeld")
    first = build_feedback(store)
    assert mark_sent(store, first) == 2
    assert mark_sent(store, first) == 0
    assert build_feedback(store) == []
    set_status(store, "R-1001", "doorgezet", agency="Politie")
    [again] = build_feedback(store)
    assert (again.report_id, again.status) == ("R-1001", "doorgezet")


def test_same_status_again_sends_nothing_new(store):
    bring(store, "R-1001", "doorgezet")
    mark_sent(store, build_feedback(store))
    set_status(store, "R-1001", "doorgezet", agency="FIOD")
    assert build_feedback(store) == []
    [named] = build_feedback(store, templates=load_templates(name_agency=True))
    assert "de FIOD" in named.message and "politie" not in named.message


def test_since(store):
    set_status(store, "R-1001", "gekoppeld", now=dt.datetime(2025, 3, 1, 12))
    set_status(store, "R-2002", "gekoppeld", now=dt.datetime(2025, 4, 1, 12))
    assert [m.report_id for m in build_feedback(store, since="2025-03-15")] == ["R-2002"]
    with pytest.raises(InputError):
        build_feedback(store, since="vorige week")


def test_templates_may_not_use_other_placeholders(tmp_path):
    from linkage.feedback.messages import DEFAULT_TEMPLATES

    text = DEFAULT_TEMPLATES.read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("is afgehandeld.", "is afgehandeld: {description}."), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\{description\}"):
        load_templates(bad)
    bad.write_text(text.replace("{datum} (kenmerk {kenmerk}) is ontvangen", "{instantie} is ontvangen"), encoding="utf-8")
    with pytest.raises(ConfigError, match="instantie"):
        load_templates(bad)
    bad.write_text(text.replace("\nafgehandeld =", "\n# afgehandeld ="), encoding="utf-8")
    with pytest.raises(ConfigError, match="no template for afgehandeld"):
        load_templates(bad)


def test_write_csv_and_json(store, tmp_path):
    bring(store, "R-2002", "gekoppeld")
    messages = build_feedback(store)
    rows = list(csv.DictReader(write_messages(messages, tmp_path / "m.csv").open(encoding="utf-8")))
    assert rows[0]["reference"] == "R-2002" and rows[0]["reporter_id"] == ""
    data = json.loads(write_messages(messages, tmp_path / "m.json").read_text(encoding="utf-8"))
    assert data[0]["reporter_id"] is None and data[0]["status"] == "gekoppeld"
    with pytest.raises(InputError):
        write_messages(messages, tmp_path / "m.xlsx")


def test_cli_feedback(store, tmp_path):
    bring(store, "R-1001", "doorgezet")
    bring(store, "R-2002", "gekoppeld")
    runner = CliRunner()
    db = str(store.path)
    res = runner.invoke(cli.app, ["feedback", "--store", db])  # preview: nothing marked
    assert res.exit_code == 0, res.output
    assert "Dry run" in res.stdout and store.count("feedback_sent") == 0
    res = runner.invoke(cli.app, ["feedback", "--store", db, "--out", str(tmp_path / "f.json"), "--dry-run"])
    assert res.exit_code == 0 and store.count("feedback_sent") == 0
    res = runner.invoke(cli.app, ["feedback", "--store", db, "--out", str(tmp_path / "f.csv")])
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader((tmp_path / "f.csv").open(encoding="utf-8")))) == 2
    res = runner.invoke(cli.app, ["feedback", "--store", db, "--out", str(tmp_path / "g.csv"), "--json"])
    assert json.loads(res.stdout)["messages"] == []
    assert list(csv.DictReader((tmp_path / "g.csv").open(encoding="utf-8"))) == []


def test_agency_names_ignore_case_and_join_in_dutch():
    text = load_templates(name_agency=True).render("doorgezet", "2025-03-03", "R-1001", ["politie", "FIOD", "Gemeente X"])
    assert "naar de politie, de FIOD en Gemeente X." in text
