"""The loader's fast paths give exactly what the plain definitions give: content hashes, identifier
checks, CSV rows keyed by canonical names, SQLite writes of None, and the garbage collector restored."""
from __future__ import annotations

import gc
import random
import sqlite3

import numpy as np
import pytest
from stdnum.nl import bsn as stdnum_bsn

from linkage import model
from linkage.normalise import identifiers
from linkage.settings import load_settings
from linkage.store import EmbeddedStore
from loaders import load_files
from loaders.canonical import Origin, _mention_hash, _report_hash, canonical_column, validate_mention
from loaders.readers import read_table

TRICKY = ["", "a", "it's", 'say "hi"', "back\\slash", "tab\there", "new\nline", "\x00", "é ü ß", "\u2028",
          "\ud800", "emoji \U0001F600", "'both' \"quotes\"", "  spaced  "]


@pytest.mark.parametrize("value", TRICKY + [12, 3.5, True, np.str_("R1"), np.str_("x'y")])
def test_content_hash_equals_the_model(value):
    record = {"mention_id": "M1", "report_id": value, "role": None, "name": value, "bsn_norm": value}
    assert _mention_hash(record) == model.content_hash(record, model.STORED_MENTION_FIELDS[:-1])
    report = {"report_id": value, "description": value, "category": None}
    assert _report_hash(report) == model.content_hash(report, model.REPORT_FIELDS)


def test_validated_mentions_carry_the_model_hash():
    row = {"report_id": "R1", "mention_id": "M'1", "entity_type": "persoon", "name": 'Jan "de" Vries',
           "bsn": "111222333", "postcode": "1234 ab", "phone": "06-12345678"}
    mentions, _, _ = validate_mention(row, load_settings(), Origin("m.csv", 2))
    assert len(mentions) == 3
    for m in mentions:
        assert m["content_hash"] == model.content_hash(m, model.STORED_MENTION_FIELDS[:-1])


def test_identifier_check_equals_normalise_and_is_valid():
    rng = random.Random(3)
    values = [None, "", "000000000", "12345672", 111222333, 12345672.0, "NL91 ABNA 0417 1643 00", "12-ABC-3",
              "a@b.nl", "1234 SS", "06-12345678", "+31 (0)6 1234 5678", "kvk 1234 5678"]
    values += ["".join(rng.choice("0123456789 -.ABNLX@") for _ in range(rng.randint(1, 20))) for _ in range(3000)]
    for kind in identifiers.IDENTIFIER_KINDS:
        normalise = getattr(identifiers, f"normalise_{kind}")
        is_valid = getattr(identifiers, f"is_valid_{kind}")
        for v in values:
            checked = identifiers.check(kind, v)
            if not identifiers._text(v):
                assert checked == (None, None)
            else:
                assert checked.normalised == normalise(v)
                assert (checked.problem is None) == is_valid(v)


def test_elfproef_agrees_with_stdnum():
    rng = random.Random(5)
    numbers = ["%09d" % rng.randrange(10**9) for _ in range(20000)] + ["111222333", "123456782", "000000000"]
    for n in numbers:
        assert identifiers.is_valid_bsn(n) == (n != "000000000" and stdnum_bsn.is_valid(n)), n


def test_keyed_csv_rows_equal_renamed_rows(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("Report ID;Naam;name;Kenteken;x\nR1;Jan;Piet;12-ABC-3;1\n\n;;;;\nR2;Kees\nR3;a;b;c;d;e;\n",
                    encoding="utf-8")
    table = read_table(path)
    renamed = [(n, {canonical_column(k) if not k.startswith("__") else k: v for k, v in r.items()})
               for n, r in table.rows]
    table = read_table(path)
    keyed = list(table.keyed_rows([canonical_column(c) for c in table.columns]))
    assert keyed == renamed
    assert [n for n, _ in keyed] == [2, 5, 6]
    assert keyed[1][1]["plate"] is None and keyed[2][1]["__extra__"] == 1


def test_insert_rows_binds_none_as_null_and_leaves_sqlite_as_it_was(tmp_path):
    key = (type(None), sqlite3.PrepareProtocol)
    assert key not in sqlite3.adapters
    with EmbeddedStore(tmp_path / "s.db") as store:
        with store.transaction():
            store.insert_rows("meta", [{"key": "a", "value": None}, {"key": "b", "value": float("nan")},
                                       {"key": "c", "value": [1, 2]}, {"key": "d"}], ["key", "value"])
        rows = store.conn.execute("SELECT key, value, typeof(value) FROM meta WHERE key IN ('a','b','c','d') "
                                  "ORDER BY key").fetchall()
    assert rows == [("a", None, "null"), ("b", None, "null"), ("c", "[1, 2]", "text"), ("d", None, "null")]
    assert key not in sqlite3.adapters


def test_load_restores_the_garbage_collector(tmp_path):
    reports = tmp_path / "r.csv"
    reports.write_text("report_id,received_at,category\nR1,2025-03-14,hennep\n", encoding="utf-8")
    assert gc.isenabled()
    with EmbeddedStore(tmp_path / "s.db") as store:
        load_files([reports], store)
    assert gc.isenabled()
    gc.disable()
    try:
        with EmbeddedStore(tmp_path / "t.db") as store:
            load_files([reports], store)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_chunks_handed_to_workers_come_back_as_they_were():
    from loaders import _pack, _unpack

    keys = ["a", "b", "c"]
    plain = [(2, ["x", "", "y z"], 0, 0), (3, ["", "", "é"], 2, 1)]
    packed = _pack(("mentions", "f.csv", keys, plain))
    assert isinstance(packed[3], tuple) and _unpack(packed) == ("mentions", "f.csv", keys, plain)
    for odd in ([(2, ["x", None, None], 0, 0)], [(2, ["x\x1fy", "", ""], 0, 0)], [(2, ["x\x1e", "", ""], 0, 0)]):
        task = ("mentions", "f.csv", keys, odd)
        assert _pack(task) is task and _unpack(task) == task
    one = ("reports", "r.csv", ["a"], [(2, [""], 0, 0), (3, ["q"], 0, 0)])
    assert _unpack(_pack(one)) == one


def test_content_hash_templates_equal_the_model_on_random_records():
    """The hasher's spliced templates (per set of present fields) and its general path give the model's digest
    for records in any key order, with quotes, backslashes, unprintable characters and other types mixed in."""
    rng = random.Random(11)
    fields = model.STORED_MENTION_FIELDS[:-1]
    values = TRICKY + ["plain", "Jan de Vries", "1234AB", 7, 2.5, None]
    for _ in range(20000):
        keys = rng.sample(fields, rng.randint(0, 9))
        if rng.random() < 0.6:
            keys = [f for f in fields if f in keys]  # the usual case: in field order
        record = {k: rng.choice(values) for k in keys}
        if rng.random() < 0.2:
            record["content_hash"] = "not hashed"
        assert _mention_hash(record) == model.content_hash(record, fields), record
        report = {k: v for k, v in record.items() if k in model.REPORT_FIELDS}
        assert _report_hash(report) == model.content_hash(report, model.REPORT_FIELDS), report


@pytest.mark.parametrize("value", [12, 3.5, True, "  x  ", "0"])
def test_checked_records_hold_only_text_and_none(value):
    """The loader binds the checker's records as they are (no per-value conversion): every value is text or
    None, whatever type the reader gave (Excel and JSON give numbers and booleans)."""
    from loaders.canonical import validate_report

    settings = load_settings()
    row = {"report_id": value, "mention_id": value, "entity_type": "persoon", "role": value, "name": value,
           "bsn": value, "postcode": value, "house_number": value, "phone": value, "plate": value, "birth_date": value}
    mentions, links, _ = validate_mention(row, settings, Origin("m.csv", 2))
    report, _ = validate_report({"report_id": value, "received_at": "2025-01-02", "category": value,
                                 "description": value, "reporter_id": value, "reporter_type": value},
                                settings, Origin("r.csv", 2))
    for record in mentions + links + [report]:
        assert {type(v) for v in record.values()} <= {str, type(None)}, record


def test_mentions_go_in_by_layout_with_the_rowids_of_one_by_one_inserts(tmp_path):
    """Mention rows are inserted per layout (entity type) with explicit rowids: the table is the one inserting
    them one by one in order gives, rowids included, also after deleted rows (the top one among them) and for a
    row in the all-columns layout."""
    import loaders

    rows = []
    for i, etype in enumerate(["person", "address", "person", "vehicle", "business", "phone", "person"]):
        record = {"mention_id": f"M{i}", "report_id": "R1", "entity_type": etype, "role": None,
                  model.TYPE_FIELDS[etype][0]: f"v{i}", "content_hash": f"h{i}", "warnings": None,
                  "parent_mention_id": None}
        rows.append(loaders._mention_tuple(record, "m.csv", i + 2))
    odd = {"mention_id": "MX", "report_id": "R1", "entity_type": "person", "name": "a", "plate": "b",
           "content_hash": "hx"}
    rows.insert(3, loaders._mention_tuple(odd, "m.csv", 9))
    assert len(rows[3]) == len(loaders._MENTION_COLUMNS) and len(rows[0]) < len(rows[3])
    assert {r[loaders._MENTION_HASH_AT] for r in rows} == {f"h{i}" for i in range(7)} | {"hx"}
    tables = []
    for grouped in (True, False):
        store = EmbeddedStore(tmp_path / f"{grouped}.db")
        with store.transaction():
            store.conn.executemany("INSERT INTO mentions (mention_id, report_id, entity_type, content_hash) "
                                   "VALUES (?, 'R0', 'person', 'h')", [(f"A{i}",) for i in range(5)])
            store.conn.execute("DELETE FROM mentions WHERE mention_id IN ('A1', 'A4')")
            if grouped:
                loaders._insert_mentions(store.conn, rows)
            else:
                store.conn.executemany(loaders._MENTION_INSERT, map(loaders._full_row, rows))
        tables.append(store.conn.execute("SELECT rowid, * FROM mentions ORDER BY rowid").fetchall())
        store.close()
    assert tables[0] == tables[1]
    assert [r[0] for r in tables[0]] == [1, 3, 4] + list(range(5, 13))  # after the largest left: 4
