"""Loaders: every format and encoding, quarantine and reconciliation, idempotent re-load, conflicts,
derived mentions, wide exports, interrupted and streaming loads."""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import multiprocessing
import time
from pathlib import Path

import pytest

import loaders
from linkage.errors import ConfigError, InputError, LinkageError
from linkage.settings import load_settings
from linkage.store import EmbeddedStore
from loaders import load_files, quarantine_path
from loaders.readers import read_table

ROOT = Path(__file__).resolve().parents[1]
WIDE_MAPPING = ROOT / "examples" / "wide_mapping.toml"

REPORTS = """\
report_id;received_at;category;description;reporter_id;reporter_type
R1;14-03-2025;Hennep;Ramen afgeplakt, sterke lucht;W001;medewerker
R2;2025-03-15;woonfraude;Veel namen op de brievenbus;;bewoner
R3;2025-03-16T09:30:00;geluidsoverlast;Harde muziek;;
"""

MENTIONS = """\
report_id;mention_id;entity_type;role;name;birth_date;bsn;postcode;house_number;business_name;kvk;plate;phone;iban
R1;M1;person;bewoner;Jan de Vries;01-02-1980;111222333;1234 ab;12;;;;06-12345678;
R1;M2;business;;;;;;;Shisha Lounge BV;12345678;;;NL91 ABNA 0417 1643 00
R2;M3;persoon;;Piet Bakker;;;;;;;12-ABC-3;;
"""

TABLES = ("reports", "mentions", "mention_links", "quarantine")


# --- helpers ---------------------------------------------------------------------------------------
def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def settings(chunk_rows: int | None = None):
    base = load_settings()
    return dataclasses.replace(base, chunk_rows=chunk_rows) if chunk_rows else base


def load(paths, store_path: Path, **kw):
    store = EmbeddedStore(store_path)
    try:
        return load_files([str(p) for p in paths], store, kw.pop("settings", None) or settings(), **kw), dump(store)
    finally:
        store.close()


def dump(store: EmbeddedStore) -> dict[str, list[tuple]]:
    """Every row of the loader's tables, sorted: two stores with equal dumps hold the same data."""
    return {t: sorted(store.conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


def table(store_path: Path, sql: str, params=()) -> list[dict]:
    with EmbeddedStore(store_path) as s:
        cur = s.conn.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def reconciles(summary) -> None:
    assert summary.reconciles
    for f in summary.files:
        assert f.rows_read == f.loaded + f.quarantined == f.new + f.unchanged + f.quarantined, f.file
        assert f.to_dict()["reconciles"] is True


@pytest.fixture
def good(tmp_path):
    return write(tmp_path / "reports.csv", REPORTS), write(tmp_path / "mentions.csv", MENTIONS)


# --- formats and encodings -------------------------------------------------------------------------
def test_good_files_load_and_reconcile(tmp_path, good):
    summary, _ = load(good, tmp_path / "s.db")
    reconciles(summary)
    by_kind = {f.kind: f for f in summary.files}
    assert (by_kind["reports"].rows_read, by_kind["reports"].new) == (3, 3)
    assert (by_kind["mentions"].rows_read, by_kind["mentions"].new) == (3, 3)
    assert summary.quarantine_file is None and not quarantine_path(tmp_path / "s.db").exists()
    reports = {r["report_id"]: r for r in table(tmp_path / "s.db", "SELECT * FROM reports")}
    assert reports["R1"]["received_at"] == "2025-03-14"
    assert reports["R1"]["category"] == "hennepteelt" and reports["R1"]["category_raw"] == "Hennep"
    assert reports["R3"]["received_at"] == "2025-03-16T09:30:00"
    assert reports["R3"]["category"] == "overig"  # unknown label: kept as overig with a warning
    assert reports["R3"]["reporter_type"] == "anoniem" and reports["R2"]["reporter_type"] == "bewoner"
    assert ("category", "unknown category label 'geluidsoverlast' recorded as 'overig'.") in by_kind["reports"].warnings
    m = {r["mention_id"]: r for r in table(tmp_path / "s.db", "SELECT * FROM mentions")}
    assert m["M1"]["bsn_norm"] == "111222333" and m["M1"]["birth_date_norm"] == "1980-02-01"
    assert m["M1~address"]["postcode_norm"] == "1234AB" and m["M1~phone"]["phone_norm"] == "+31612345678"
    assert m["M2"]["kvk_norm"] == "12345678" and m["M2~bank_account"]["iban_norm"] == "NL91ABNA0417164300"
    assert m["M3"]["entity_type"] == "person" and m["M3~vehicle"]["plate_norm"] == "12ABC3"


@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
def test_csv_delimiters(tmp_path, good, delimiter):
    def convert(src: Path, dst: Path) -> Path:
        with open(src, newline="", encoding="utf-8") as fh:
            data = list(csv.reader(fh, delimiter=";"))
        with open(dst, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh, delimiter=delimiter).writerows(data)
        return dst

    reference, ref_dump = load(good, tmp_path / "ref.db")
    (tmp_path / "d").mkdir()
    paths = [convert(good[0], tmp_path / "d" / "reports.csv"), convert(good[1], tmp_path / "d" / "mentions.csv")]
    summary, got = load(paths, tmp_path / "s.db")
    reconciles(summary)
    assert {f.delimiter for f in summary.files} == {delimiter}
    strip = lambda d: {t: [tuple(str(c).replace(str(tmp_path / "d"), str(tmp_path)) for c in r) for r in v] for t, v in d.items()}
    assert strip(got) == strip(ref_dump)


NAMES = ["José Müller", "Eva van Ëlsen", "Zoë de Bruijn"]


@pytest.mark.parametrize("encoding,expected", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252")])
def test_encodings(tmp_path, encoding, expected):
    reports = write(tmp_path / "r.csv", REPORTS, encoding)
    body = "report_id;mention_id;entity_type;name\n" + "".join(f"R1;P{i};person;{n}\n" for i, n in enumerate(NAMES))
    mentions = write(tmp_path / "m.csv", body, encoding)
    if encoding == "utf-8-sig":
        assert mentions.read_bytes().startswith(b"\xef\xbb\xbf")
    summary, _ = load([reports, mentions], tmp_path / "s.db")
    reconciles(summary)
    assert summary.files[1].encoding == expected
    assert summary.files[0].encoding == ("utf-8" if encoding == "cp1252" else expected)  # REPORTS is plain ASCII
    assert sum(f.new for f in summary.files) == 3 + 3  # the BOM does not break the first column name
    got = [r["name"] for r in table(tmp_path / "s.db", "SELECT name FROM mentions ORDER BY mention_id")]
    assert got == NAMES


def test_cp1252_far_down_a_large_file_is_detected(tmp_path):
    lines = ["report_id;mention_id;entity_type;name"] + [f"R1;P{i};person;Jan Jansen" for i in range(20000)]
    lines.append("R1;PX;person;Renée Ëlsen")
    path = write(tmp_path / "m.csv", "\n".join(lines) + "\n", "cp1252")
    t = read_table(path)
    assert t.encoding == "cp1252"
    assert list(t.rows)[-1][1]["name"] == "Renée Ëlsen"


def test_bytes_undefined_in_cp1252_do_not_crash_the_load(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"report_id;received_at;category;description\nR1;2025-03-14;hennep;caf\xe9 \x81\x9d\n")
    summary, _ = load([path], tmp_path / "s.db")
    reconciles(summary)
    assert summary.files[0].encoding == "cp1252" and summary.loaded == 1
    assert table(tmp_path / "s.db", "SELECT description FROM reports")[0]["description"] == "café \ufffd\ufffd"


def test_xlsx(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Report ID", "Ontvangen", "Categorie", "Omschrijving", None])
    ws.append(["R1", dt.datetime(2025, 3, 14), "hennep", "Ramen afgeplakt", None])
    ws.append([None, None, None, None, None])  # blank row: not a row
    ws.append(["R2", dt.datetime(2025, 3, 15, 9, 30), "Woonfraude", None, None])
    ws.append(["R3", "31-02-2025", "woonfraude", None, None])  # not a date: quarantined, row 5
    wb.save(tmp_path / "reports.xlsx")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["report_id", "entity_type", "mention_id", "naam", "geboortedatum", "bsn", "kvk"])
    ws.append(["R1", "person", "M1", "José Müller", dt.date(1980, 2, 1), 12345672, None])
    ws.append(["R1", "business", "M2", None, None, None, 12345678])
    wb.save(tmp_path / "mentions.xlsx")

    summary, _ = load([tmp_path / "mentions.xlsx", tmp_path / "reports.xlsx"], tmp_path / "s.db")
    reconciles(summary)
    assert [f.kind for f in summary.files] == ["reports", "mentions"]  # reports first, whatever the order given
    assert {f.format for f in summary.files} == {"xlsx"}
    assert [(f.rows_read, f.loaded, f.quarantined) for f in summary.files] == [(3, 2, 1), (2, 2, 0)]
    reports = {r["report_id"]: r["received_at"] for r in table(tmp_path / "s.db", "SELECT * FROM reports")}
    assert reports == {"R1": "2025-03-14", "R2": "2025-03-15T09:30:00"}
    q = table(tmp_path / "s.db", "SELECT * FROM quarantine")
    assert [(Path(r["source_file"]).name, r["source_row"], r["field"]) for r in q] == [("reports.xlsx", 5, "received_at")]
    m = {r["mention_id"]: r for r in table(tmp_path / "s.db", "SELECT * FROM mentions")}
    assert m["M1"]["name"] == "José Müller" and m["M1"]["birth_date_norm"] == "1980-02-01"
    assert m["M1"]["bsn"] == "12345672" and m["M1"]["bsn_norm"] == "012345672"  # numbers are not floats
    assert m["M2"]["kvk"] == "12345678"


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_lines_and_json_array(tmp_path, suffix):
    reports = [
        {"report_id": "R1", "received_at": "2025-03-14", "category": "hennep", "description": "Lucht; ramen\nafgeplakt"},
        {"report_id": "R2", "received_at": "15-03-2025", "category": "woonfraude"},
        {"report_id": "R3", "received_at": "nooit", "category": "woonfraude"},
    ]
    mentions = [
        {"report_id": "R1", "mention_id": "M1", "entity_type": "person", "name": "Zoë", "bsn": 111222333, "extra": [1]},
        {"report_id": "R2", "mention_id": "M2", "entity_type": "vehicle", "plate": "AB-123-C"},
    ]
    if suffix == ".jsonl":
        write(tmp_path / f"r{suffix}", "\n".join(json.dumps(r, ensure_ascii=False) for r in reports) + "\n\n")
        write(tmp_path / f"m{suffix}", "\n".join(json.dumps(r, ensure_ascii=False) for r in mentions) + "\n")
    else:
        write(tmp_path / f"r{suffix}", json.dumps(reports, ensure_ascii=False, indent=2))
        write(tmp_path / f"m{suffix}", json.dumps(mentions, ensure_ascii=False))
    summary, _ = load([tmp_path / f"r{suffix}", tmp_path / f"m{suffix}"], tmp_path / "s.db")
    reconciles(summary)
    assert {f.format for f in summary.files} == {suffix[1:]}
    assert [(f.rows_read, f.loaded, f.quarantined) for f in summary.files] == [(3, 2, 1), (2, 2, 0)]
    q = table(tmp_path / "s.db", "SELECT source_row, field FROM quarantine")
    assert q == [{"source_row": 3, "field": "received_at"}]  # line 3 / third element
    db = tmp_path / "s.db"
    assert table(db, "SELECT description FROM reports WHERE report_id='R1'")[0]["description"] == "Lucht; ramen\nafgeplakt"
    m = {r["mention_id"]: r for r in table(db, "SELECT * FROM mentions")}
    assert m["M1"]["bsn_norm"] == "111222333" and m["M1"]["name"] == "Zoë"
    assert m["M2"]["plate_norm"] == "AB123C"
    assert summary.files[1].ignored_columns == ["extra"]


def test_jsonl_bad_lines_are_quarantined_with_their_line_number(tmp_path):
    write(tmp_path / "r.csv", REPORTS)
    write(tmp_path / "m.jsonl", '{"report_id": "R1", "entity_type": "person", "name": "Jan"}\n'
                                '{"report_id": "R1", "entity_type": "person", "name": \n'
                                '\n'
                                '["not", "an", "object"]\n')
    summary, _ = load([tmp_path / "r.csv", tmp_path / "m.jsonl"], tmp_path / "s.db")
    reconciles(summary)
    q = table(tmp_path / "s.db", "SELECT source_row, kind, reason FROM quarantine ORDER BY source_row")
    assert [r["source_row"] for r in q] == [2, 4]
    assert "not valid JSON" in q[0]["reason"] and "must be an object" in q[1]["reason"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_lone_surrogates_are_quarantined_naming_the_field(tmp_path, suffix):
    """JSON may escape a lone UTF-16 surrogate, which is no text (no store can hold it): the row is quarantined
    with the field named and the surrogate kept as its escape; the others load (it was an internal error)."""
    rows = ['{"report_id": "R1", "received_at": "2025-03-14", "category": "hennep", "description": "a \\ud800 b"}',
            '{"report_id": "R2", "received_at": "2025-03-15", "category": "hennep", "description": "gewoon"}',
            '{"report_id": "R3", "received_at": "2025-03-16", "category": "hennep", "\\udc80": "x"}']
    write(tmp_path / f"r{suffix}", "\n".join(rows) + "\n" if suffix == ".jsonl" else "[" + ",\n".join(rows) + "]")
    summary, _ = load([tmp_path / f"r{suffix}"], tmp_path / "s.db")
    reconciles(summary)
    assert [(f.rows_read, f.loaded, f.quarantined) for f in summary.files] == [(3, 1, 2)]
    q = table(tmp_path / "s.db", "SELECT source_row, field, reason, raw FROM quarantine ORDER BY source_row")
    assert [(r["source_row"], r["field"]) for r in q] == [(1, "description"), (3, "\\udc80")]
    assert all("lone surrogate" in r["reason"] for r in q)
    assert json.loads(q[0]["raw"])["description"] == "a \\ud800 b"  # kept, as its escape


def test_quoted_fields_newlines_and_blank_lines(tmp_path):
    text = (
        "report_id,received_at,category,description\n"
        "\n"
        'R1,2025-03-14,hennep,"Sterke lucht, ramen afgeplakt; ""zoemend"" geluid\nook \'s nachts"\n'
        "  ,  , \n"
        "R2,,woonfraude,geen datum\n"
        "\n"
        "R3,2025-03-16,woonfraude,\n"
    )
    write(tmp_path / "r.csv", text)
    summary, _ = load([tmp_path / "r.csv"], tmp_path / "s.db")
    reconciles(summary)
    f = summary.files[0]
    assert f.delimiter == "," and (f.rows_read, f.loaded, f.quarantined) == (3, 2, 1)
    desc = table(tmp_path / "s.db", "SELECT description FROM reports WHERE report_id='R1'")[0]["description"]
    assert desc == 'Sterke lucht, ramen afgeplakt; "zoemend" geluid\nook \'s nachts'
    # Row numbers as a person sees them: the header is row 1, blank lines count, a quoted line break does not.
    q = table(tmp_path / "s.db", "SELECT source_row, field FROM quarantine")
    assert q == [{"source_row": 5, "field": "received_at"}]
    assert table(tmp_path / "s.db", "SELECT source_row FROM reports WHERE report_id='R3'")[0]["source_row"] == 7


def test_header_case_spaces_and_dutch_aliases(tmp_path):
    write(tmp_path / "r.csv", " Report ID ;ONTVANGEN;Categorie;Omschrijving;Melder;Melder Type;Opmerking\n"
                              "R1;14-03-2025;Hennep;lucht;W1;Medewerker;x\n")
    write(tmp_path / "m.csv", "Meldingnummer;Type;Rol;Naam;Geboortedatum;BSN;Postcode;Huisnummer;Woonplaats;Kenteken;"
                              "Telefoonnummer;Rekeningnummer;E-mail;KvK-nummer;Handelsnaam\n"
                              "R1;Persoon;bewoner;Jan;1-2-1980;111222333;1234AB;12;Utrecht;12-ABC-3;0612345678;"
                              "NL91ABNA0417164300;Jan@Example.nl;12345678;Jan BV\n")
    summary, _ = load([tmp_path / "r.csv", tmp_path / "m.csv"], tmp_path / "s.db")
    reconciles(summary)
    assert [f.new for f in summary.files] == [1, 1]
    assert summary.files[0].ignored_columns == ["Opmerking"]
    assert summary.files[1].ignored_columns == []
    rep = table(tmp_path / "s.db", "SELECT * FROM reports")[0]
    assert (rep["reporter_id"], rep["reporter_type"], rep["description"]) == ("W1", "medewerker", "lucht")
    m = {r["entity_type"]: r for r in table(tmp_path / "s.db", "SELECT * FROM mentions")}
    assert set(m) == {"person", "address", "vehicle", "phone", "bank_account", "email", "business"}
    assert m["person"]["birth_date_norm"] == "1980-02-01" and m["person"]["role"] == "bewoner"
    assert m["address"]["city"] == "Utrecht" and m["address"]["house_number"] == "12"
    assert m["email"]["email_norm"] == "jan@example.nl" and m["business"]["kvk_norm"] == "12345678"


def test_unknown_columns_are_a_classification_error_naming_the_file(tmp_path):
    path = write(tmp_path / "export_juni.csv", "kolom_a;kolom_b\n1;2\n")
    with EmbeddedStore(tmp_path / "s.db") as store:
        with pytest.raises(InputError) as exc:
            load_files([path], store, settings())
        assert store.count("reports") == 0
    msg = str(exc.value)
    assert "export_juni.csv" in msg and "report_id" in msg and "entity_type" in msg and "--mapping" in msg


def test_missing_file_xls_and_unknown_type(tmp_path, good):
    with EmbeddedStore(tmp_path / "s.db") as store:
        with pytest.raises(InputError, match="nergens.csv: file not found"):
            load_files([good[0], tmp_path / "nergens.csv"], store, settings())
        assert store.count("reports") == 0  # nothing is loaded when one file cannot be opened
        (tmp_path / "oud.xls").write_bytes(b"\xd0\xcf\x11\xe0")
        with pytest.raises(InputError, match=r"oud\.xls.*\.xlsx"):
            load_files([tmp_path / "oud.xls"], store, settings())
        (tmp_path / "x.pdf").write_bytes(b"%PDF")
        with pytest.raises(InputError, match="unknown file type"):
            load_files([tmp_path / "x.pdf"], store, settings())
        write(tmp_path / "leeg.csv", "\n")
        with pytest.raises(InputError, match="leeg.csv: the file is empty"):
            load_files([tmp_path / "leeg.csv"], store, settings())


# --- quarantine and reconciliation -----------------------------------------------------------------
BAD_REPORTS = """\
report_id;received_at;category
R1;14-03-2025;hennep
;2025-03-14;hennep
R3;31-02-2025;woonfraude
R4;2025-03-14;
R5;2025-03-14;woonfraude;extra cel
"""

BAD_MENTIONS = """\
report_id;entity_type;mention_id;name;bsn;postcode;phone
R1;person;M1;Jan;111222334;1234 SS;999
R1;ufo;M2;Jan;;;
R9;person;M3;Piet;123456782;;
R3;person;M4;Klaas;;;
R1;person;M5;;;;
;person;M6;Kees;;;
R5;address;M7;;;1234AB;
"""


def test_quarantine_content_and_reconciliation_on_mixed_data(tmp_path):
    r = write(tmp_path / "r.csv", BAD_REPORTS)
    m = write(tmp_path / "m.csv", BAD_MENTIONS)
    db = tmp_path / "s.db"
    summary, _ = load([m, r], db)
    reconciles(summary)
    assert [(f.kind, f.rows_read, f.loaded, f.quarantined) for f in summary.files] == [
        ("reports", 5, 2, 3), ("mentions", 7, 2, 5)]
    assert summary.rows_read == 12 and summary.loaded == 4 and summary.quarantined == 8

    q = table(db, "SELECT * FROM quarantine ORDER BY source_file DESC, source_row")
    got = [(Path(x["source_file"]).name, x["source_row"], x["kind"], x["field"]) for x in q]
    assert got == [
        ("r.csv", 3, "report", "report_id"),
        ("r.csv", 4, "report", "received_at"),
        ("r.csv", 5, "report", "category"),
        ("m.csv", 3, "mention", "entity_type"),
        ("m.csv", 4, "mention", "report_id"),  # R9 is not a report
        ("m.csv", 5, "mention", "report_id"),  # R3 was quarantined, so its mentions are too
        ("m.csv", 6, "mention", "person"),  # a person row without any person field
        ("m.csv", 7, "mention", "report_id"),
    ]
    reasons = {(Path(x["source_file"]).name, x["source_row"]): x["reason"] for x in q}
    assert "not a date" in reasons[("r.csv", 4)] and "2025-03-14 or 14-03-2025" in reasons[("r.csv", 4)]
    assert "not among the loaded reports" in reasons[("m.csv", 4)]
    assert "person row needs at least one of" in reasons[("m.csv", 6)]
    # The offending identifier values never appear in reasons (raw keeps the row for fixing it).
    for x in q:
        for value in ("111222334", "123456782", "31-02-2025", "1234 SS"):
            assert value not in x["reason"]
    assert json.loads(reasons and q[4]["raw"])["bsn"] == "123456782"

    # Invalid identifiers on an otherwise good row are warnings: kept as given, never quoted.
    m1 = table(db, "SELECT * FROM mentions WHERE mention_id='M1'")[0]
    assert (m1["bsn"], m1["bsn_norm"]) == ("111222334", "111222334")
    assert "not a valid BSN" in m1["warnings"] and "111222334" not in m1["warnings"]
    addr = table(db, "SELECT * FROM mentions WHERE mention_id='M1~address'")[0]
    assert "postcode" in addr["warnings"] and "1234 SS" not in addr["warnings"]
    phone = table(db, "SELECT * FROM mentions WHERE mention_id='M1~phone'")[0]
    assert phone["phone_norm"] is None and "999" not in phone["warnings"]
    fields = {field for field, _ in summary.files[1].warnings}
    assert fields == {"bsn", "postcode", "phone"}
    assert all("111222334" not in msg for _, msg in summary.files[1].warnings)
    assert any(field == "" and "more cells than the header" in msg for field, msg in summary.files[0].warnings)

    # The quarantine file next to the store mirrors the table: file, row, kind, field, reason, raw.
    qfile = quarantine_path(db)
    assert summary.quarantine_file == qfile and qfile.name == "s.quarantine.csv"
    with open(qfile, newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["file", "row", "kind", "field", "reason", "raw"]
    assert len(lines) == 1 + 8
    assert sorted((Path(a).name, int(b)) for a, b, *_ in lines[1:]) == sorted((g[0], g[1]) for g in got)


def test_every_row_of_a_file_bad_still_reconciles(tmp_path):
    write(tmp_path / "r.csv", "report_id;received_at;category\n;;;opmerking\nR1;x;\n")
    summary, _ = load([tmp_path / "r.csv"], tmp_path / "s.db")
    reconciles(summary)
    assert (summary.rows_read, summary.loaded, summary.quarantined) == (2, 0, 2)
    problems = table(tmp_path / "s.db", "SELECT field FROM quarantine WHERE source_row=2")[0]["field"]
    assert problems == "category,received_at,report_id"  # every problem of the row, collected at once


# --- idempotence and conflicts ---------------------------------------------------------------------
def test_reload_is_idempotent(tmp_path):
    r = write(tmp_path / "r.csv", BAD_REPORTS)
    m = write(tmp_path / "m.csv", BAD_MENTIONS + "R1;person;;Anna;;1234AB;\nR1;person;;Anna;;1234AB;\n")
    db = tmp_path / "s.db"
    first, before = load([r, m], db)
    second, after = load([r, m], db)
    reconciles(first)
    reconciles(second)
    assert after == before
    for f1, f2 in zip(first.files, second.files):
        assert f2.new == 0 and f2.conflicts == 0
        assert f2.unchanged == f1.loaded and f2.quarantined == f1.quarantined
    assert sum(f.mentions_added for f in second.files) == 0
    assert quarantine_path(db).exists()


def test_conflicting_report_is_quarantined_and_stored_row_kept(tmp_path):
    db = tmp_path / "s.db"
    load([write(tmp_path / "r.csv", REPORTS)], db)
    before = table(db, "SELECT * FROM reports WHERE report_id='R1'")
    changed = REPORTS.replace("Ramen afgeplakt, sterke lucht", "Iets anders")
    summary, _ = load([write(tmp_path / "r2.csv", changed)], db)
    reconciles(summary)
    f = summary.files[0]
    assert (f.rows_read, f.unchanged, f.new, f.quarantined, f.conflicts) == (3, 2, 0, 1, 1)
    assert table(db, "SELECT * FROM reports WHERE report_id='R1'") == before
    q = table(db, "SELECT * FROM quarantine")
    assert [(Path(x["source_file"]).name, x["source_row"], x["field"]) for x in q] == [("r2.csv", 2, "report_id")]
    assert q[0]["reason"].startswith("conflict:")


def test_conflict_within_one_file(tmp_path):
    text = REPORTS + "R1;14-03-2025;Hennep;Andere tekst;W001;medewerker\nR2;2025-03-15;woonfraude;Veel namen op de brievenbus;;bewoner\n"
    summary, _ = load([write(tmp_path / "r.csv", text)], tmp_path / "s.db")
    reconciles(summary)
    f = summary.files[0]
    assert (f.rows_read, f.new, f.unchanged, f.conflicts, f.quarantined) == (5, 3, 1, 1, 1)
    q = table(tmp_path / "s.db", "SELECT source_row, reason FROM quarantine")
    assert [x["source_row"] for x in q] == [5] and "conflict" in q[0]["reason"]


def test_conflicting_mention_is_quarantined_and_stored_row_kept(tmp_path, good):
    db = tmp_path / "s.db"
    load(good, db)
    before = dump_of(db)
    changed = MENTIONS.replace("Piet Bakker", "P. Bakker")
    summary, _ = load([write(tmp_path / "m2.csv", changed)], db)
    reconciles(summary)
    f = summary.files[0]
    assert (f.unchanged, f.new, f.conflicts, f.quarantined) == (2, 0, 1, 1)
    after = dump_of(db)
    assert {t: after[t] for t in ("reports", "mentions", "mention_links")} == \
           {t: before[t] for t in ("reports", "mentions", "mention_links")}
    q = table(db, "SELECT * FROM quarantine")
    assert [(x["source_row"], x["field"]) for x in q] == [(4, "mention_id")]


def test_row_that_gained_fields_under_a_known_id_is_a_conflict_not_dropped(tmp_path):
    db = tmp_path / "s.db"
    load([write(tmp_path / "r.csv", REPORTS), write(tmp_path / "m1.csv", "report_id;mention_id;entity_type;name\nR1;M1;person;Jan\n")], db)
    summary, after = load([write(tmp_path / "m2.csv", "report_id;mention_id;entity_type;name;postcode\nR1;M1;person;Jan;1234AB\n")], db)
    reconciles(summary)
    f = summary.files[0]
    assert (f.unchanged, f.new, f.conflicts, f.quarantined) == (0, 0, 1, 1)  # not silently "unchanged"
    assert [r[0] for r in after["mentions"]] == ["M1"]
    assert [(Path(r[0]).name, r[1]) for r in after["quarantine"]] == [("m2.csv", 2)]


def test_reloading_a_fixed_file_clears_its_quarantine_entries(tmp_path):
    db = tmp_path / "s.db"
    path = write(tmp_path / "r.csv", BAD_REPORTS)
    first, _ = load([path], db)
    assert first.quarantined == 3 and quarantine_path(db).exists()
    fixed = BAD_REPORTS.replace(";2025-03-14;hennep", "R2;2025-03-14;hennep").replace("31-02-2025", "28-02-2025")
    summary, after = load([write(path, fixed)], db)
    reconciles(summary)
    assert (summary.files[0].new, summary.files[0].unchanged, summary.quarantined) == (2, 2, 1)
    assert [(r[1], r[3]) for r in after["quarantine"]] == [(5, "category")]  # rows 3 and 4 are loaded now
    fixed = fixed.replace("R4;2025-03-14;", "R4;2025-03-14;drugs")
    summary, after = load([write(path, fixed)], db)
    assert summary.quarantined == 0 and after["quarantine"] == []
    assert summary.quarantine_file is None and not quarantine_path(db).exists()


def dump_of(db: Path) -> dict:
    with EmbeddedStore(db) as s:
        return dump(s)


# --- derived mentions and links --------------------------------------------------------------------
def test_derived_mentions_and_links(tmp_path):
    write(tmp_path / "r.csv", REPORTS)
    write(tmp_path / "m.csv", (
        "report_id;mention_id;entity_type;role;name;postcode;house_number;business_name;kvk;plate;phone;email\n"
        "R1;M1;person;bewoner;Jan;1234AB;12;;;;;\n"
        "R1;M2;person;bestuurder;Piet;;;Shisha BV;12345678;;;\n"
        "R1;M3;person;Eigenaar;Kees;;;Nagel BV;;AB-123-C;0612345678;kees@example.nl\n"
        "R1;M4;business;;;1234AB;14;Carwash BV;;;;\n"
        "R1;M5;address;;Anna;1234AB;16;;;;;\n"
        "R1;M6;person;Directeur;Els;;;Els Holding;;;;\n"
    ))
    db = tmp_path / "s.db"
    summary, _ = load([tmp_path / "r.csv", tmp_path / "m.csv"], db)
    reconciles(summary)
    links = {(x["src_mention_id"], x["dst_mention_id"]): x["rel_type"] for x in table(db, "SELECT * FROM mention_links")}
    assert links == {
        ("M1", "M1~address"): "LIVES_AT",
        ("M2", "M2~business"): "DIRECTOR_OF",
        ("M3", "M3~business"): "OWNER_OF",
        ("M3", "M3~vehicle"): "USES",
        ("M3", "M3~phone"): "USES",
        ("M3", "M3~email"): "USES",
        ("M4", "M4~address"): "LOCATED_AT",
        ("M5", "M5~person"): "RELATED_TO",  # an address row carrying a person: no specific relationship
        ("M6", "M6~business"): "DIRECTOR_OF",
    }
    m = {x["mention_id"]: x for x in table(db, "SELECT * FROM mentions")}
    assert m["M1~address"]["entity_type"] == "address" and m["M1~address"]["parent_mention_id"] == "M1"
    assert m["M1~address"]["name"] is None and m["M1"]["postcode"] is None  # each mention holds its own fields
    assert m["M1~address"]["role"] is None and m["M1"]["role"] == "bewoner"
    assert m["M2~business"]["kvk_norm"] == "12345678"
    assert summary.files[1].mentions_added == len(m) == 6 + 9
    assert all(x["report_id"] == "R1" for x in table(db, "SELECT * FROM mention_links"))


MENTIONS_NO_IDS = """\
report_id;entity_type;role;name;postcode;house_number
R1;person;bewoner;Jan;1234AB;12
R1;person;bewoner;Jan;1234AB;12
R1;person;bewoner;Jan;1234AB;12
R2;person;bewoner;Jan;1234AB;12
R1;person;;Jan;1234AB;12
R1;address;;;1234AB;12
"""


def test_derived_mention_ids_are_deterministic(tmp_path):
    r = write(tmp_path / "r.csv", REPORTS)
    m = write(tmp_path / "m.csv", MENTIONS_NO_IDS)
    ids = []
    for name, chunk in [("a", None), ("b", None), ("c", 1), ("d", 4)]:
        load([r, m], tmp_path / f"{name}.db", settings=settings(chunk))
        ids.append(table(tmp_path / f"{name}.db", "SELECT mention_id, parent_mention_id FROM mentions ORDER BY 1"))
    assert ids[0] == ids[1] == ids[2] == ids[3]  # the same in fresh stores, whatever the chunk size
    top = [x["mention_id"] for x in ids[0] if x["parent_mention_id"] is None]
    assert len(top) == 6 and all(i.startswith("m_") for i in top)  # three identical rows stay three mentions
    derived = [x["mention_id"] for x in ids[0] if x["parent_mention_id"]]
    assert len(derived) == 5 and all(i.endswith("~address") for i in derived)


# --- wide exports ----------------------------------------------------------------------------------
WIDE = """\
meldingnummer;datum;soort;omschrijving;melder;persoon;geboortedatum;adres;bedrijf;kvk;kenteken;telefoon;iban
W1;14-03-2025;Hennepkwekerij;Lucht bij de garage;M-17;José Ëlsen;01-02-1980;Kerkstraat 1, 1234 AB Utrecht;Café Zoë;12345678;12-ABC-3;06-12345678;NL91ABNA0417164300
W2;15-03-2025;onderverhuur;;;;;;;;;;
W3;;woonfraude;geen datum;;Piet;;;;;;;
W4;16-03-2025;witwas;Auto;;;;;;;AB-123-C;;
"""


def test_wide_export_with_mapping(tmp_path):
    assert WIDE_MAPPING.exists()
    path = write(tmp_path / "wide.csv", WIDE, "cp1252")
    db = tmp_path / "s.db"
    summary, before = load([path], db, mapping=WIDE_MAPPING)
    reconciles(summary)
    f = summary.files[0]
    assert (f.kind, f.encoding, f.delimiter) == ("wide", "cp1252", ";")
    assert (f.rows_read, f.loaded, f.quarantined) == (4, 3, 1)
    reports = {x["report_id"]: x for x in table(db, "SELECT * FROM reports")}
    assert set(reports) == {"W1", "W2", "W4"}
    assert reports["W1"]["category"] == "hennepteelt" and reports["W1"]["reporter_id"] == "M-17"
    assert reports["W2"]["category"] == "illegale_onderverhuur" and reports["W4"]["category"] == "witwassen"
    m = {x["mention_id"]: x for x in table(db, "SELECT * FROM mentions")}
    assert set(m) == {"W1-persoon", "W1-persoon~address", "W1-persoon~phone", "W1-persoon~bank_account",
                      "W1-bedrijf", "W1-voertuig", "W4-voertuig"}
    assert m["W1-persoon"]["name"] == "José Ëlsen" and m["W1-persoon"]["role"] == "betrokkene"
    assert m["W1-bedrijf"]["business_name"] == "Café Zoë" and m["W1-bedrijf"]["kvk_norm"] == "12345678"
    assert m["W1-voertuig"]["plate_norm"] == "12ABC3" and m["W1-voertuig"]["role"] == "gezien"
    assert m["W1-persoon~address"]["address"] == "Kerkstraat 1, 1234 AB Utrecht"
    links = {(x["src_mention_id"], x["dst_mention_id"], x["rel_type"]) for x in table(db, "SELECT * FROM mention_links")}
    assert links == {("W1-persoon", "W1-persoon~address", "LIVES_AT"), ("W1-persoon", "W1-persoon~phone", "USES"),
                     ("W1-persoon", "W1-persoon~bank_account", "USES")}
    q = table(db, "SELECT * FROM quarantine")
    assert [(x["source_row"], x["kind"], x["field"]) for x in q] == [(4, "wide", "received_at")]
    # Idempotent for wide files too.
    again, after = load([path], db, mapping=WIDE_MAPPING)
    reconciles(again)
    assert (again.files[0].unchanged, again.files[0].new) == (3, 0) and after == before


def test_wide_row_about_an_address_without_a_person_keeps_the_address(tmp_path):
    text = WIDE.splitlines()[0] + "\nW5;17-03-2025;hennep;Lucht;;;;Kerkstraat 1, Utrecht;;;;;\n"
    db = tmp_path / "s.db"
    summary, _ = load([write(tmp_path / "wide.csv", text)], db, mapping=WIDE_MAPPING)
    reconciles(summary)
    assert (summary.loaded, summary.quarantined) == (1, 0)  # the melding is not rejected for lack of a name
    m = table(db, "SELECT mention_id, entity_type, address, parent_mention_id FROM mentions")
    assert m == [{"mention_id": "W5-persoon~address", "entity_type": "address", "address": "Kerkstraat 1, Utrecht",
                  "parent_mention_id": None}]
    assert table(db, "SELECT * FROM mention_links") == []


def test_wide_row_whose_mention_conflicts_leaves_its_report_unloaded(tmp_path):
    """A wide row is one report with its mentions: when a mention conflicts, the whole row is quarantined
    (naming mention_id), and its report counts as not loaded, so a later mention of it is quarantined too
    instead of loading as an orphan."""
    first = write(tmp_path / "r.csv", "report_id;received_at;category\nR1;2024-01-01;drugs\n")
    taken = write(tmp_path / "m.csv", "report_id;mention_id;entity_type;name\nR1;R9-persoon;person;Jan Jansen\n")
    db = tmp_path / "s.db"
    load([first, taken], db)
    wide = WIDE.splitlines()[0] + "\nR9;2024-01-02;drugs;x;M1;Piet Pietersen;;;;;;;\n"
    later = write(tmp_path / "m9.csv", "report_id;mention_id;entity_type;name\nR9;R9-x;person;Kees Klaassen\n")
    summary, _ = load([write(tmp_path / "w.csv", wide), later], db, mapping=WIDE_MAPPING)
    reconciles(summary)
    assert [(f.new, f.quarantined, f.conflicts) for f in summary.files] == [(0, 1, 1), (0, 1, 0)]
    assert table(db, "SELECT report_id FROM reports") == [{"report_id": "R1"}]
    assert table(db, "SELECT mention_id FROM mentions") == [{"mention_id": "R9-persoon"}]
    reasons = {r["field"]: r["reason"] for r in table(db, "SELECT field, reason FROM quarantine")}
    assert sorted(reasons) == ["mention_id", "report_id"]
    assert reasons["mention_id"].startswith("conflict") and "not among the loaded reports" in reasons["report_id"]


def test_wide_file_without_mapping_names_the_option(tmp_path):
    path = write(tmp_path / "wide.csv", WIDE, "cp1252")
    with EmbeddedStore(tmp_path / "s.db") as store:
        with pytest.raises(InputError, match=r"wide\.csv.*--mapping"):
            load_files([path], store, settings())


@pytest.mark.parametrize("text,needle", [
    ("[report\nreport_id = 'x'\n", "line"),  # not TOML
    ("[[mention]]\nname = 'p'\nentity_type = 'person'\n", "[report]"),
    ("[report]\nreport_id = 'a'\nreceived_at = 'b'\n", "category"),
    ("[report]\nreport_id = 'a'\nreceived_at = 'b'\ncategory = 'c'\nprioriteit = 'd'\n", "prioriteit"),
    ("[report]\nreport_id = 'a'\nreceived_at = 'b'\ncategory = 'c'\n[[mention]]\nname = 'p'\nentity_type = 'ufo'\n"
     "[mention.fields]\nname = 'x'\n", "entity_type"),
    ("[report]\nreport_id = 'a'\nreceived_at = 'b'\ncategory = 'c'\n[[mention]]\nname = 'p'\nentity_type = 'person'\n"
     "[mention.fields]\nschoenmaat = 'x'\n", "schoenmaat"),
    ("[report]\nreport_id = 'a'\nreceived_at = 'b'\ncategory = 'c'\n[[mention]]\nentity_type = 'person'\n"
     "[mention.fields]\nname = 'x'\n", "unique 'name'"),
])
def test_malformed_mapping_is_a_config_error_naming_the_file(tmp_path, text, needle):
    mapping = tmp_path / "mijn_mapping.toml"
    mapping.write_text(text, encoding="utf-8")
    path = write(tmp_path / "wide.csv", WIDE, "cp1252")
    with EmbeddedStore(tmp_path / "s.db") as store:
        with pytest.raises(ConfigError) as exc:
            load_files([path], store, settings(), mapping=mapping)
        assert store.count("reports") == 0
    assert "mijn_mapping.toml" in str(exc.value) and needle in str(exc.value)


def test_missing_mapping_file(tmp_path):
    with EmbeddedStore(tmp_path / "s.db") as store:
        with pytest.raises(ConfigError, match="geen.toml: file not found"):
            load_files([write(tmp_path / "wide.csv", WIDE, "cp1252")], store, settings(), mapping=tmp_path / "geen.toml")


# --- interrupted and streaming loads ---------------------------------------------------------------
class Interrupt(Exception):
    pass


def interrupt_after(n: int):
    calls = {"n": 0}

    def on_commit():
        calls["n"] += 1
        if calls["n"] == n:
            raise Interrupt

    return on_commit


def interrupted_then_rerun(files: list[Path], tmp_path: Path, small, stop_after: int, clean_dump: dict) -> Path:
    """Load ``files`` into a new store, interrupted after ``stop_after`` commits, then again to the end: the
    first leaves part of the rows (and no worker process), the second the store of one clean load."""
    db = tmp_path / "halfway.db"
    with EmbeddedStore(db) as store:
        with pytest.raises(Interrupt):
            load_files(files, store, small, mapping=WIDE_MAPPING, on_commit=interrupt_after(stop_after))
        halfway = dump(store)
    # exactly the chunks committed before the interruption are in the store
    assert sum(len(v) for v in halfway.values()) < sum(len(v) for v in clean_dump.values())
    assert multiprocessing.active_children() == []  # the workers (if any) were stopped
    rerun, rerun_dump = load(files, db, settings=small, mapping=WIDE_MAPPING)
    reconciles(rerun)
    assert rerun_dump == clean_dump
    return db


@pytest.mark.parametrize("stop_after", [1, 2, 4, 7])
def test_interrupted_load_rerun_equals_one_clean_run(tmp_path, stop_after):
    r = write(tmp_path / "r.csv", BAD_REPORTS + "R1;14-03-2025;hennep;\nR1;15-03-2025;hennep\nR6;2025-03-17;drugs\n")
    m = write(tmp_path / "m.csv", BAD_MENTIONS)
    m2 = write(tmp_path / "m2.csv", MENTIONS_NO_IDS + "R6;person;;Jan;1234AB;12\nR6;person;;Jan;1234AB;12\n")
    w = write(tmp_path / "wide.csv", WIDE, "cp1252")
    files = [m2, r, m, w]
    small = settings(chunk_rows=2)

    clean, clean_dump = load(files, tmp_path / "clean.db", settings=small, mapping=WIDE_MAPPING)
    reconciles(clean)
    assert clean_dump["quarantine"] and clean_dump["mention_links"]

    db = interrupted_then_rerun(files, tmp_path, small, stop_after, clean_dump)
    assert quarantine_path(db).read_text(encoding="utf-8") == quarantine_path(tmp_path / "clean.db").read_text(encoding="utf-8")
    # And a clean run with the default chunk size gives the same store.
    _, big_dump = load(files, tmp_path / "big.db", mapping=WIDE_MAPPING)
    assert big_dump == clean_dump


def test_streaming_load_of_a_large_file(tmp_path):
    n = 50_000
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("report_id;received_at;category;description\n")
        for i in range(n):
            date = "31-02-2025" if i % 1000 == 7 else f"{1 + i % 28:02d}-03-2025"
            fh.write(f"R{i:06d};{date};{'hennep' if i % 2 else 'woonfraude'};melding {i}\n")
    commits = []
    start = time.process_time()  # CPU time: other work on the machine does not make this flaky
    with EmbeddedStore(tmp_path / "s.db") as store:
        summary = load_files([path], store, settings(chunk_rows=5000), on_commit=lambda: commits.append(1))
        assert store.count("reports") == n - 50
        assert store.count("quarantine") == 50
    elapsed = time.process_time() - start
    reconciles(summary)
    assert (summary.rows_read, summary.loaded, summary.quarantined) == (n, n - 50, 50)
    assert len(commits) == 10
    assert elapsed < 10, f"loading {n} rows took {elapsed:.1f}s of CPU"  # about 3.5 s on a laptop core


# --- validation in worker processes ----------------------------------------------------------------
def parallel(chunk_rows: int, workers: int = 2):
    """Settings that validate every chunk in ``workers`` forked processes (0: all in this process)."""
    return dataclasses.replace(load_settings(), chunk_rows=chunk_rows, load_workers=workers, load_parallel_min_rows=0)


def mixed_files(tmp_path: Path, encoding: str, sep: str) -> list[Path]:
    """Bad, duplicate, conflicting and id-less rows, in one encoding and separator."""
    def conv(text: str) -> str:
        return text.replace(";", sep) if sep != ";" else text

    reports = BAD_REPORTS + "R1;14-03-2025;hennep;\nR1;15-03-2025;hennep\nR6;2025-03-17;drugs\nR7;2025-03-18;Zoë\n"
    m_ids = MENTIONS_NO_IDS + "R6;person;;José;1234AB;12\nR6;person;;José;1234AB;12\nR7;persoon;;Ëlsen;;\n"
    return [write(tmp_path / f"r-{encoding}.csv", conv(reports), encoding),
            write(tmp_path / f"m-{encoding}.csv", conv(BAD_MENTIONS), encoding),
            write(tmp_path / f"m2-{encoding}.csv", conv(m_ids), encoding),
            write(tmp_path / "wide.csv", WIDE, "cp1252")]


@pytest.mark.parametrize("encoding,sep", [("utf-8", ";"), ("cp1252", ","), ("utf-8-sig", "\t")])
def test_workers_give_the_store_of_a_serial_load(tmp_path, encoding, sep):
    files = mixed_files(tmp_path, encoding, sep)
    serial, serial_dump = load(files, tmp_path / "serial.db", settings=parallel(3, workers=0), mapping=WIDE_MAPPING)
    for workers in (1, 2):
        db = tmp_path / f"workers{workers}.db"
        summary, dumped = load(files, db, settings=parallel(3, workers), mapping=WIDE_MAPPING)
        reconciles(summary)
        assert dumped == serial_dump
        assert summary.to_dict()["files"] == serial.to_dict()["files"]
        assert quarantine_path(db).read_bytes() == quarantine_path(tmp_path / "serial.db").read_bytes()
        with EmbeddedStore(db) as a, EmbeddedStore(tmp_path / "serial.db") as b:  # same insertion order too
            for t in ("reports", "mentions", "mention_links"):
                assert a.conn.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid").fetchall() == \
                    b.conn.execute(f"SELECT rowid, * FROM {t} ORDER BY rowid").fetchall()
    # loading again with workers: every row unchanged or a conflict, as serially
    again = load(files, tmp_path / "serial.db", settings=parallel(3, 2), mapping=WIDE_MAPPING)[0]
    assert again.to_dict()["files"] != serial.to_dict()["files"] and again.loaded == serial.loaded
    assert sum(f.new for f in again.files) == 0


def test_workers_start_with_the_first_chunk_of_a_file_expected_to_pass_parallel_min_rows(tmp_path, monkeypatch):
    rows = "".join(f"R{i};2025-03-14;hennep\n" for i in range(40))
    big = write(tmp_path / "big.csv", "report_id;received_at;category\n" + rows)
    small = write(tmp_path / "small.csv", "report_id;received_at;category\n" + rows[:200])
    here = []  # chunks validated in this process (a worker's calls are counted in its own copy)
    validate = loaders._validate
    monkeypatch.setattr(loaders, "_validate", lambda *a: here.append(1) or validate(*a))
    settings = dataclasses.replace(load_settings(), chunk_rows=5, load_workers=2, load_parallel_min_rows=12)
    serial, serial_dump = load([big], tmp_path / "serial.db", settings=parallel(5, workers=0))
    here.clear()
    summary, dumped = load([big], tmp_path / "big.db", settings=settings)
    assert here == [] and dumped == serial_dump  # 40 rows > 12: every chunk in the workers, the same store
    assert summary.to_dict()["files"][0]["loaded"] == serial.to_dict()["files"][0]["loaded"] == 40
    load([small], tmp_path / "small.db", settings=settings)
    assert len(here) == 2  # ~10 rows: validated here, no workers started


def test_workers_read_json_lines_too(tmp_path):
    rows = [{"report_id": f"R{i}", "received_at": "2025-03-14" if i % 7 else "gisteren", "category": "hennep"}
            for i in range(40)]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{kapot\n", encoding="utf-8")
    serial = load([path], tmp_path / "a.db", settings=parallel(4, 0))
    par = load([path], tmp_path / "b.db", settings=parallel(4, 2))
    assert par[1] == serial[1] and par[0].to_dict()["files"] == serial[0].to_dict()["files"]
    assert par[0].quarantined == 7


@pytest.mark.parametrize("stop_after", [1, 3, 6])
def test_interrupted_load_with_workers_rerun_equals_one_clean_run(tmp_path, stop_after):
    files = mixed_files(tmp_path, "utf-8", ";")
    small = parallel(2, 2)
    clean, clean_dump = load(files, tmp_path / "clean.db", settings=small, mapping=WIDE_MAPPING)
    interrupted_then_rerun(files, tmp_path, small, stop_after, clean_dump)


_VALIDATE_TASK = loaders._validate_task


def _die_on_chunk_with_r3(task):  # in the worker: the process ends as if killed (out of memory, SIGKILL)
    import os

    if "R3" in str(task[-1]):
        os._exit(3)
    return _VALIDATE_TASK(task)


def test_a_worker_that_dies_stops_the_load_with_a_clear_error(tmp_path, monkeypatch):
    files = mixed_files(tmp_path, "utf-8", ";")
    monkeypatch.setattr(loaders, "_validate_task", _die_on_chunk_with_r3)
    with EmbeddedStore(tmp_path / "s.db") as store:
        with pytest.raises(LinkageError, match=r"r-utf-8\.csv: a row-checking worker process stopped unexpectedly"):
            load_files(files, store, parallel(2, 2), mapping=WIDE_MAPPING)
    assert multiprocessing.active_children() == []


def test_a_worker_found_dead_when_handing_out_a_chunk_names_the_chunk_it_was_checking(tmp_path, monkeypatch):
    """The pool can break before a later chunk is handed out (submit raises): the error is still the clear one,
    naming the rows of the chunk the dead worker had, and the chunks before it are written."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class DeadAfterFirst:
        """A pool whose worker dies on the second chunk; it is found broken when the third is handed out."""
        def __init__(self):
            self.n = 0

        def submit(self, fn, *args):
            self.n += 1
            if self.n > 2:
                raise BrokenProcessPool("a process in the pool was terminated abruptly")
            future = Future()
            if self.n == 1:
                future.set_result(fn(*args))
            else:
                future.set_exception(BrokenProcessPool("a process in the pool was terminated abruptly"))
            return future

        def shutdown(self, *args, **kwargs):
            pass

    def start(workers, settings, mapping):
        monkeypatch.setitem(loaders._FORKED, "settings", settings)
        monkeypatch.setitem(loaders._FORKED, "mapping", mapping)
        return DeadAfterFirst()

    monkeypatch.setattr(loaders, "_start_pool", start)
    files = mixed_files(tmp_path, "utf-8", ";")
    with EmbeddedStore(tmp_path / "s.db") as store:
        with pytest.raises(LinkageError, match=r"r-utf-8\.csv: a row-checking worker process stopped unexpectedly "
                                               r"\(killed, or out of memory\?\) while checking rows 4-5;"):
            load_files(files, store, parallel(2, 2), mapping=WIDE_MAPPING)
        assert store.count("reports") + store.count("quarantine") > 0  # the first chunk was written


def test_load_workers_setting_is_checked(tmp_path):
    path = write(tmp_path / "s.toml", (ROOT / "linkage" / "settings.toml").read_text(encoding="utf-8")
                 .replace("workers = 2", "workers = -1"))
    with pytest.raises(ConfigError, match=r"\[loading\] workers"):
        load_settings(path)
    path.write_text(path.read_text(encoding="utf-8").replace("workers = -1", 'workers = "two"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[loading\] workers = 'two' must be a whole number"):
        load_settings(path)
    assert load_settings().load_workers >= 0


def test_a_table_empty_before_the_load_is_not_asked_for_ids(tmp_path, monkeypatch):
    files = mixed_files(tmp_path, "utf-8", ";")
    asked: list[str] = []
    real = loaders._Loader._existing

    def spy(self, table, key, ids):
        asked.append(table)
        return real(self, table, key, ids)

    monkeypatch.setattr(loaders._Loader, "_existing", spy)
    first, first_dump = load(files, tmp_path / "s.db", settings=parallel(3, 0), mapping=WIDE_MAPPING)
    assert asked == []  # every id this load stored is one it remembers
    again = load(files, tmp_path / "s.db", settings=parallel(3, 0), mapping=WIDE_MAPPING)[0]
    assert set(asked) == {"reports", "mentions"}  # a store with rows is asked
    assert sum(f.new for f in again.files) == 0 and again.loaded == first.loaded
    reconciles(first)
    reconciles(again)


def test_workers_take_the_next_files_rows_before_the_last_chunks_are_written(tmp_path, monkeypatch):
    files = mixed_files(tmp_path, "utf-8", ";")
    events: list[tuple[str, str]] = []
    submit, apply = loaders._Loader._submit, loaders._Loader._apply

    def spy_submit(self, task, summary, read):
        events.append(("submit", task[1]))
        return submit(self, task, summary, read)

    def spy_apply(self, task, staged, summary):
        events.append(("write", task[1]))
        return apply(self, task, staged, summary)

    monkeypatch.setattr(loaders._Loader, "_submit", spy_submit)
    monkeypatch.setattr(loaders._Loader, "_apply", spy_apply)
    serial, serial_dump = load(files, tmp_path / "serial.db", settings=parallel(3, 0), mapping=WIDE_MAPPING)
    # serially each chunk is written before the next is read
    assert all(a[0] != b[0] for a, b in zip(events, events[1:]))
    events.clear()
    par, par_dump = load(files, tmp_path / "par.db", settings=parallel(3, 2), mapping=WIDE_MAPPING)
    first_of_second = next(i for i, e in enumerate(events) if e[1] != events[0][1])
    assert events[first_of_second][0] == "submit"
    assert ("write", events[0][1]) in events[first_of_second:]  # the first file still had chunks to write
    writes = [e[1] for e in events if e[0] == "write"]
    submitted = list(dict.fromkeys(e[1] for e in events if e[0] == "submit"))  # files in load order
    assert writes == sorted(writes, key=submitted.index)  # written file by file, in that order
    assert par_dump == serial_dump and par.to_dict()["files"] == serial.to_dict()["files"]
    assert quarantine_path(tmp_path / "par.db").read_bytes() == quarantine_path(tmp_path / "serial.db").read_bytes()


def test_later_mentions_load_looks_up_only_the_reports_it_names(tmp_path):
    """A mentions file loaded into a store that already holds reports finds them by look-up (the ids its rows
    name, chunk by chunk), never by reading every stored report id; unknown reports are still quarantined."""
    db = tmp_path / "s.db"
    load([write(tmp_path / "r.csv", REPORTS)], db)
    later = write(tmp_path / "m.csv", MENTIONS + "R9;M9;person;;Kees Jansen;;;;;;;;;\nR3;M10;person;;Ans Smit;;;;;;;;;\n")
    statements: list[str] = []
    store = EmbeddedStore(db)
    store.conn.set_trace_callback(statements.append)
    try:
        summary = load_files([str(later)], store, settings(chunk_rows=2))
    finally:
        store.close()
    reconciles(summary)
    assert (summary.files[0].loaded, summary.files[0].quarantined) == (4, 1)
    assert not [s for s in statements if s.strip().upper().startswith("SELECT REPORT_ID FROM REPORTS")
                and "WHERE" not in s.upper()]
    reasons = {x["source_row"]: x["reason"] for x in table(db, "SELECT * FROM quarantine")}
    assert list(reasons) == [5] and "not among the loaded reports" in reasons[5]


def test_ids_with_control_characters_are_quarantined_naming_the_field(tmp_path):
    """An id holding a NUL, tab or line break is a damaged cell: the row goes to quarantine (ids reach SQL as
    JSON texts, which would cut them at a NUL), and the message names the field, never the id."""
    rows = [{"report_id": "R\x001", "received_at": "2025-03-14", "category": "hennep"},
            {"report_id": "R\t2", "received_at": "2025-03-14", "category": "hennep"},
            {"report_id": "R3", "received_at": "2025-03-14", "category": "hennep"}]
    mentions = [{"report_id": "R3", "mention_id": "M\x001", "entity_type": "person", "name": "Jan de Vries"},
                {"report_id": "R\x003", "mention_id": "M2", "entity_type": "person", "name": "Jan de Vries"},
                {"report_id": "R3", "mention_id": "M3", "entity_type": "person", "name": "Jan de Vries"}]
    r = tmp_path / "reports.json"
    r.write_text(json.dumps(rows))
    m = tmp_path / "mentions.json"
    m.write_text(json.dumps(mentions))
    summary, dumped = load([r, m], tmp_path / "s.db")
    reconciles(summary)
    assert [row[0] for row in dumped["reports"]] == ["R3"]
    assert [row[0] for row in dumped["mentions"]] == ["M3"]
    assert summary.quarantined == 4
    text = quarantine_path(tmp_path / "s.db").read_text(encoding="utf-8")
    assert text.count("contains a control character") == 4
    assert "report_id contains" in text and "mention_id contains" in text
