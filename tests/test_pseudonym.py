"""Pseudonymised BSNs: keyed hashes only, equal numbers still match exactly, the plain number is not stored."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkage.errors import ConfigError
from linkage.pseudonym import (
    PREFIX,
    RAW_PREFIX,
    check_key,
    is_pseudonym,
    pseudonymise_bsn,
    pseudonymise_mention,
)
from linkage.store import EmbeddedStore

KEY = b"gemeente-geheim"


@pytest.mark.parametrize("left,right", [
    ("111222333", "1112.22.333"),
    ("111222333", " 111 222 333 "),
    ("012345672", "12345672"),
    ("012345672", 12345672),
])
def test_spellings_of_one_bsn_match(left, right):
    assert pseudonymise_bsn(left, KEY) == pseudonymise_bsn(right, KEY)


def test_different_numbers_and_keys_differ():
    assert pseudonymise_bsn("111222333", KEY) != pseudonymise_bsn("123456782", KEY)
    assert pseudonymise_bsn("111222333", KEY) != pseudonymise_bsn("111222333", b"andere-sleutel")


@given(st.from_regex(r"\A[0-9]{9}\Z"))
def test_property_deterministic_prefixed_and_hiding(bsn):
    hashed = pseudonymise_bsn(bsn, KEY)
    assert hashed == pseudonymise_bsn(bsn, KEY) and hashed.startswith(PREFIX) and is_pseudonym(hashed)
    assert bsn not in hashed and len(hashed) == len(PREFIX) + 64
    assert pseudonymise_bsn(hashed, KEY) == hashed  # idempotent


def test_mention_record_loses_the_plain_number():
    rec = pseudonymise_mention({"name": "Jan", "bsn": "1112.22.333", "bsn_norm": "111222333"}, KEY)
    assert rec["bsn"] == rec["bsn_norm"] == pseudonymise_bsn("111222333", KEY)
    assert rec["name"] == "Jan"
    odd = pseudonymise_mention({"bsn": "12-AB", "bsn_norm": None}, KEY)
    assert odd["bsn"].startswith(RAW_PREFIX) and odd["bsn_norm"] is None
    assert pseudonymise_mention({"bsn": None, "bsn_norm": None}, KEY) == {"bsn": None, "bsn_norm": None}


def test_without_key_nothing_changes(monkeypatch):
    monkeypatch.delenv("LINKAGE_PSEUDONYM_KEY", raising=False)
    rec = {"bsn": "111222333", "bsn_norm": "111222333"}
    assert pseudonymise_mention(dict(rec)) == rec
    assert pseudonymise_bsn("111222333") == "111222333"


MENTIONS_CSV = """report_id,mention_id,entity_type,name,bsn
R-1,M-1,person,Jan de Vries,111222333
R-2,M-2,person,J. de Vries,1112.22.333
R-3,M-3,person,Piet Bakker,123456782
"""
REPORTS_CSV = """report_id,received_at,category
R-1,2025-03-03,woonfraude
R-2,2025-03-04,woonfraude
R-3,2025-03-05,woonfraude
"""


def _load(tmp_path, db):
    from linkage.pipeline import load_stage

    (tmp_path / "reports.csv").write_text(REPORTS_CSV, encoding="utf-8")
    (tmp_path / "mentions.csv").write_text(MENTIONS_CSV, encoding="utf-8")
    return load_stage([tmp_path / "reports.csv", tmp_path / "mentions.csv"], db)


def test_loader_stores_only_hashes_that_still_match(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", KEY.decode())
    db = tmp_path / "p.db"
    _load(tmp_path, db)
    with EmbeddedStore(db) as s:
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = dict(s.conn.execute("SELECT mention_id, bsn_norm FROM mentions").fetchall())
        raw = dict(s.conn.execute("SELECT mention_id, bsn FROM mentions").fetchall())
    assert rows["M-1"] == rows["M-2"] != rows["M-3"]
    assert all(is_pseudonym(v) for v in rows.values()) and raw == rows
    data = db.read_bytes()
    for plain in (b"111222333", b"1112.22.333", b"123456782"):
        assert plain not in data
    # loading again with the same key changes nothing (same hashes, same content hashes)
    again = _load(tmp_path, db)
    assert again.files[1].unchanged == 3 and again.files[1].conflicts == 0


def test_check_key_guards_mixed_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("LINKAGE_PSEUDONYM_KEY", raising=False)
    with EmbeddedStore(tmp_path / "k.db") as s:
        check_key(s)  # no key, fresh store: fine
        check_key(s, KEY)  # first key is recorded
        check_key(s, KEY)
        with pytest.raises(ConfigError, match="differs"):
            check_key(s, b"other")
        with pytest.raises(ConfigError, match="set LINKAGE_PSEUDONYM_KEY"):
            check_key(s)
    db = tmp_path / "plain.db"
    _load(tmp_path, db)
    with EmbeddedStore(db) as s, pytest.raises(ConfigError, match="plain BSNs"):
        check_key(s, KEY)


def test_derived_ids_and_quarantine_never_hold_the_plain_bsn(tmp_path, monkeypatch):
    """With a key, a mention without mention_id gets an id that is no hash of the plain BSN, and a
    quarantined row keeps only the pseudonym."""
    import hashlib

    from loaders import load_files, quarantine_path
    from linkage.settings import load_settings

    monkeypatch.setenv("LINKAGE_PSEUDONYM_KEY", KEY.decode())
    (tmp_path / "r.csv").write_text("report_id,received_at,category\nR1,2025-01-01,woonfraude\n", encoding="utf-8")
    (tmp_path / "m.csv").write_text("report_id,entity_type,bsn\nR1,person,111222333\nR9,person,123456782\n",
                                    encoding="utf-8")
    db = tmp_path / "q.db"
    with EmbeddedStore(db) as s:
        summary = load_files([tmp_path / "r.csv", tmp_path / "m.csv"], s, load_settings())
        ids = [r[0] for r in s.conn.execute("SELECT mention_id FROM mentions")]
    assert summary.quarantined == 1 and len(ids) == 1
    from linkage import model

    plain_id = "m_" + model.stable_hash("R1", "person", "", [("bsn", "111222333")], 0)
    assert ids[0] != plain_id
    text = quarantine_path(db).read_text(encoding="utf-8")
    assert "123456782" not in text and "R9" in text
    assert hashlib.sha1(b"123456782").hexdigest() not in text
