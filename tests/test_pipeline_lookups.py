"""Look-ups and reads of the stages after the resolve stage made with less work (Arrow's look-up in two halves at
once; the stored cluster ids as one JSON text; a pandas text column's own Arrow array): each gives what the plain
way gives, and falls back to it where it cannot be used."""
from __future__ import annotations

import sqlite3

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import linkage.graph.incremental as incremental
import linkage.pipeline as pipeline


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


def test_arrow_text_of_a_text_column_with_any_index_is_its_values():
    """A pandas text column is taken as its own Arrow array whatever its index (a filtered or re-indexed frame):
    the same values and missing values as converting them one by one."""
    import numpy as np

    from linkage.arrays import arrow_text

    frame = pd.DataFrame({"r": [f"R{i}" for i in range(9)], "c": ["a", None, "b", "é", "", "a", None, "z", "q"]})
    for s in (frame["c"], frame.set_index("r")["c"], frame[frame.index % 2 == 0]["c"], frame.set_index("r").index,
              frame["c"].astype("string[python]").set_axis(range(10, 19)), frame["c"].astype("string[pyarrow]")):
        want = pa.array(np.asarray(s, dtype=object), type=pa.large_string(), from_pandas=True)
        assert arrow_text(s).equals(want)


def test_graph_counts_behind_counts_the_resolved_and_all_mentions(tmp_path):
    """_graph_counts_behind gives (mentions with an entity, stored mentions), counted through a connection of its
    own; nothing when the store's connection holds an open transaction (another connection would not see it)."""
    from linkage.store import EmbeddedStore

    with EmbeddedStore(tmp_path / "s.db") as s:
        s.conn.executemany("INSERT INTO mentions (mention_id, report_id, entity_type, content_hash) "
                           "VALUES (?, 'R1', 'person', ?)", [(f"m{i}", f"h{i}") for i in range(7)])
        s.conn.executemany("INSERT INTO mention_entities (mention_id, entity_id, entity_type) VALUES (?, ?, 'person')",
                           [("m0", "e1"), ("m1", "e1"), ("m2", ""), ("m3", "e2"), ("m4", "e3")])
        if s.conn.in_transaction:
            s.conn.commit()
        counting = pipeline._graph_counts_behind(s)
        assert counting is not None and counting() == (4, 7)
        assert counting() == (pipeline._resolved_count(s), s.count("mentions"))
        s.conn.execute("BEGIN")
        s.conn.execute("DELETE FROM mention_entities WHERE mention_id = 'm4'")
        assert pipeline._graph_counts_behind(s) is None
        s.conn.rollback()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the interrupt, as planted
def test_graph_counts_behind_gives_nothing_when_its_thread_was_interrupted(tmp_path, monkeypatch):
    """A counting thread ended by an exception that is not an ``Exception`` (an interrupt) gives None, as a
    failed count does: the caller then counts in place."""
    import linkage.store.embedded as embedded
    from linkage.store import EmbeddedStore

    def interrupted(path):
        raise KeyboardInterrupt

    with EmbeddedStore(tmp_path / "s.db") as s:
        if s.conn.in_transaction:
            s.conn.commit()
        monkeypatch.setattr(embedded, "read_only", interrupted)
        counting = pipeline._graph_counts_behind(s)
        assert counting is not None and counting() is None
