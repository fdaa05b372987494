"""Reads and look-ups of the stages after the resolve stage made in two halves at once (a thread for the second):
each gives what the one-piece way gives, and falls back to it when a half cannot be made so."""
from __future__ import annotations

import sqlite3

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import linkage.graph.incremental as incremental
import linkage.pipeline as pipeline
from linkage.generate import generate
from linkage.pipeline import run
from linkage.store import EmbeddedStore


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen")
    generate(400, 3, folder)
    store = tmp_path_factory.mktemp("run") / "s.db"
    run([folder / "reports.csv", folder / "mentions.csv"], store)
    return store


def _one_piece(monkeypatch):
    monkeypatch.setattr(pipeline, "SPLIT_READ_IDS", 10 ** 9)


def _halves(monkeypatch):
    monkeypatch.setattr(pipeline, "SPLIT_READ_IDS", 2)


def test_graph_mentions_in_halves_are_the_rows_of_the_one_query(ran, monkeypatch):
    """The changed mentions' graph rows read in two halves: the same frame (rows, order, values, types) as one
    query, with ids given twice, ids the store lacks and a mention without an entity."""
    with EmbeddedStore(ran) as store:
        ids = [r[0] for r in store.conn.execute("SELECT mention_id FROM mentions ORDER BY random() LIMIT 300")]
        store.conn.execute("UPDATE mention_entities SET entity_id = '' WHERE mention_id = ?", (ids[0],))
        store.conn.commit()
        asked = ids + ids[:40] + ["M-none", "zzz", ""]
        _one_piece(monkeypatch)
        want = pipeline._graph_mentions(store, "mention_id", asked)
        _halves(monkeypatch)
        got = pipeline._graph_mentions(store, "mention_id", asked)
        pd.testing.assert_frame_equal(got, want)
        assert len(got) == 300 and got["mention_id"].is_monotonic_increasing
        assert (got["entity_id"] == "").sum() == 1
        # by report ids: never in halves (its rows are ordered by mention id, not by the ids asked)
        reports = sorted(set(got["report_id"]))
        pd.testing.assert_frame_equal(pipeline._graph_mentions(store, "report_id", reports),
                                      store.frame(pipeline._graph_mentions_sql(
                                          "WHERE m.report_id IN (SELECT value FROM json_each(?))"),
                                          (pd.Series(reports).to_json(orient="values"),)))
        # nothing found, and one id
        for few in (["M-none", "M-other"], ids[:1]):
            _one_piece(monkeypatch)
            want = pipeline._graph_mentions(store, "mention_id", few)
            _halves(monkeypatch)
            pd.testing.assert_frame_equal(pipeline._graph_mentions(store, "mention_id", few), want)


def test_mention_links_in_halves_are_the_rows_of_the_one_query(ran, monkeypatch):
    with EmbeddedStore(ran) as store:
        ids = [r[0] for r in store.conn.execute("SELECT DISTINCT src_mention_id FROM mention_links")]
        assert len(ids) > 20
        asked = ids[::2] + ids[:10] + ["M-none"]
        _one_piece(monkeypatch)
        want = pipeline.mention_links(store, asked)
        _halves(monkeypatch)
        got = pipeline.mention_links(store, asked)
        pd.testing.assert_frame_equal(got, want)
        assert len(got) and pipeline.mention_links(store, []).empty


def test_halves_fall_back_to_one_query(ran, monkeypatch):
    """In an open transaction (another connection would not see its rows), with a value JSON cannot hold (a
    blob) or when the thread's half fails, the rows are read in one piece: the same frame."""
    _halves(monkeypatch)
    with EmbeddedStore(ran) as store:
        ids = [r[0] for r in store.conn.execute("SELECT mention_id FROM mentions LIMIT 50")]
        sql = pipeline._graph_mentions_sql("WHERE m.mention_id IN (SELECT value FROM json_each(?))")
        assert pipeline._rows_in_halves(store, sql, sorted(ids)) is not None
        store.conn.execute("BEGIN")
        store.conn.execute("UPDATE mention_entities SET entity_id = 'E-new' WHERE mention_id = ?", (ids[1],))
        assert pipeline._rows_in_halves(store, sql, sorted(ids)) is None
        got = pipeline._graph_mentions(store, "mention_id", ids)
        assert "E-new" in got["entity_id"].tolist()  # this connection's own change is seen
        store.conn.rollback()
        store.conn.execute("UPDATE mention_entities SET entity_id = ? WHERE mention_id = ?", (b"\x00blob", ids[2]))
        store.conn.commit()
        try:
            assert pipeline._rows_in_halves(store, sql, sorted(ids)) is None
            got = pipeline._graph_mentions(store, "mention_id", ids)
            _one_piece(monkeypatch)
            pd.testing.assert_frame_equal(got, pipeline._graph_mentions(store, "mention_id", ids))
            assert b"\x00blob" in got["entity_id"].tolist()
        finally:
            store.conn.execute("UPDATE mention_entities SET entity_id = 'E-x' WHERE mention_id = ?", (ids[2],))
            store.conn.commit()
        _halves(monkeypatch)

        def broken(conn, sql, keys):
            if conn is not store.conn:
                raise sqlite3.OperationalError("no")
            return real(conn, sql, keys)
        real = pipeline._json_rows
        monkeypatch.setattr(pipeline, "_json_rows", broken)
        assert pipeline._rows_in_halves(store, sql, sorted(ids)) is None
        got = pipeline._graph_mentions(store, "mention_id", ids)
        monkeypatch.setattr(pipeline, "_json_rows", real)
        _one_piece(monkeypatch)
        pd.testing.assert_frame_equal(got, pipeline._graph_mentions(store, "mention_id", ids))


def test_stored_cluster_ids_are_the_tables_ids(tmp_path):
    conn = sqlite3.connect(tmp_path / "c.db")
    conn.execute("CREATE TABLE cluster_rows (cluster_id TEXT PRIMARY KEY, score REAL)")
    assert pipeline._stored_cluster_ids(conn) == []
    conn.executemany("INSERT INTO cluster_rows VALUES (?, 1)", [("c_b",), ("c_a",), ("é\"\\x",), (7,), (None,)])
    rows = [r[0] for r in conn.execute("SELECT cluster_id FROM cluster_rows")]
    assert pipeline._stored_cluster_ids(conn) == rows and "7" in rows and None in rows
    conn.execute("INSERT INTO cluster_rows VALUES (?, 1)", (b"\x01",))  # JSON cannot hold it: read row by row
    assert pipeline._stored_cluster_ids(conn) == [r[0] for r in conn.execute("SELECT cluster_id FROM cluster_rows")]


@pytest.mark.parametrize("n", [0, 1, 7, 64, 65])
def test_is_in_in_halves_is_arrows_is_in(monkeypatch, n):
    """The look-up in two halves gives Arrow's mask of the whole array: nulls, a value set with a null,
    chunked arrays (looked up whole), a half boundary inside a bit-packed byte."""
    monkeypatch.setattr(incremental, "SPLIT_IS_IN_ROWS", 2)
    values = pa.array([None if i % 11 == 3 else f"v{i % 13}" for i in range(n)], type=pa.large_string())
    for value_set in (pa.array(["v1", "v5", "zz"]), pa.array(["v2", None]), pa.array([], pa.string())):
        want = pc.is_in(values, value_set=value_set)
        got = incremental._is_in(values, value_set)
        assert got.equals(want)
        chunked = pa.chunked_array([values.slice(0, n // 2), values.slice(n // 2)], type=pa.large_string())
        assert incremental._is_in(chunked, value_set).equals(pc.is_in(chunked, value_set=value_set))


def test_is_in_in_halves_raises_what_arrow_raises(monkeypatch):
    monkeypatch.setattr(incremental, "SPLIT_IS_IN_ROWS", 2)
    with pytest.raises(pa.ArrowNotImplementedError):
        incremental._is_in(pa.array([[1], [2], [3]]), pa.array([[1]]))
