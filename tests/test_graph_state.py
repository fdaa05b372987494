"""The graph state's incidence kept as a base blob plus the edits of later runs (linkage.graph.incremental:
save_state / load_state): what is read back is what was saved, a run writes only its edits while they are
small, the base is written again past INCIDENCE_EDITS_SHARE, and a state of the earlier layout still loads."""
from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linkage.graph import incremental as gi

sys.path.insert(0, str(Path(__file__).parent))
from test_incremental import _graph_world  # noqa: E402

SETTINGS = {"hub_max_reports": 6}


def _parts(conn) -> dict[str, bytes]:
    return {p: bytes(d) for p, d in conn.execute("SELECT part, data FROM graph_state").fetchall()}


def _round(rng, mentions: pd.DataFrame, step: int, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """New reports and a few mentions moved to another entity (as test_update_changed_equals_clustering_everything)."""
    new = _graph_world(rng, n_groups=6, prefix=f"N{step}-")
    moved = mentions.sample(frac=0.03, random_state=seed + step).index
    mentions = mentions.copy()
    mentions.loc[moved, "entity_id"] = [e if e.startswith("HUB") else f"E{int(rng.integers(0, 30))}-{e.split('-')[1]}"
                                        for e in mentions.loc[moved, "entity_id"]]
    mentions = pd.concat([mentions, new], ignore_index=True)
    return mentions, mentions.loc[moved, "mention_id"].tolist() + new["mention_id"].tolist()


@pytest.mark.parametrize("seed", [1, 2])
def test_runs_write_only_their_edits_and_read_back_the_same_incidence(seed, monkeypatch):
    """Over several rounds saved to and loaded from SQLite: the loaded incidence equals the one saved (rows and
    order), the clusters equal clustering everything, the base blob stays as it was while the edits are under
    their share, and is written again (with no edits) once they pass it."""
    monkeypatch.setattr(gi, "INCIDENCE_EDITS_SHARE", 0.25)
    rng = np.random.default_rng(seed)
    mentions = _graph_world(rng)
    conn = sqlite3.connect(":memory:")
    gi.save_state(conn, gi.update_clusters(None, mentions, None, seed=seed, settings=SETTINGS).state)
    first = _parts(conn)
    assert set(first) == {"incidence", "clusters", "components", "meta"}
    rewrites = 0
    for step in range(6):
        before = _parts(conn)
        state = gi.load_state(conn)[0]
        mentions, changed_ids = _round(rng, mentions, step, seed)
        changed = mentions[mentions["mention_id"].isin(changed_ids)]
        got = gi.update_changed(state, changed, changed_ids, seed=seed, settings=SETTINGS, n_resolved=len(mentions))
        want = gi.update_clusters(None, mentions, None, seed=seed, settings=SETTINGS)
        assert got is not None
        pd.testing.assert_frame_equal(got.clusters, want.clusters)
        gi.save_state(conn, got.state)
        after = _parts(conn)
        again = gi.load_state(conn)[0]
        assert again.incidence.equals(got.state.incidence)
        meta = json.loads(after["meta"])
        assert meta["version"] == gi.STATE_VERSION
        if after["incidence"] == before["incidence"]:
            assert {"incidence_removed", "incidence_added"} <= set(after)
            assert again.edits.size() <= gi.INCIDENCE_EDITS_SHARE * again.edits.base_rows
        else:
            rewrites += 1
            assert "incidence_added" not in after and again.edits.size() == 0
            assert again.edits.base_rows == again.incidence.num_rows
    assert rewrites and rewrites < 6  # some runs wrote edits only, some the base again


def test_the_incidence_in_memory_is_the_base_with_its_edits():
    """update_changed keeps the incidence as the previous one without the changed mentions' rows, then their
    new rows; the edits it carries give exactly that table from the stored base."""
    rng = np.random.default_rng(5)
    mentions = _graph_world(rng)
    conn = sqlite3.connect(":memory:")
    gi.save_state(conn, gi.update_clusters(None, mentions, None, seed=5, settings=SETTINGS).state)
    base = gi._read_incidence(_parts(conn)["incidence"])
    state = gi.load_state(conn)[0]
    for step in range(3):
        mentions, changed_ids = _round(rng, mentions, step, 5)
        changed = mentions[mentions["mention_id"].isin(changed_ids)]
        state = gi.update_changed(state, changed, changed_ids, seed=5, settings=SETTINGS).state
        assert state.edits is not None
        assert gi._apply_edits(base, state.edits).equals(state.incidence)
        # a mention is removed from the base at most once, and only base mentions are listed
        removed = state.edits.removed.to_pylist()
        assert len(removed) == len(set(removed)) and set(removed) <= set(base.column("mention_id").to_pylist())


def test_a_state_of_the_earlier_layout_loads_and_the_next_save_writes_a_base():
    """A version-3 state (the whole incidence in one blob, no edits) still loads to the same tables; saving it
    writes the version-4 layout; code that reads only version 3 would refuse that (version 4 in meta)."""
    rng = np.random.default_rng(3)
    mentions = _graph_world(rng)
    state = gi.update_clusters(None, mentions, None, seed=3, settings=SETTINGS).state
    conn = sqlite3.connect(":memory:")
    conn.execute(gi.STATE_TABLE)
    conn.execute("INSERT INTO graph_state VALUES ('incidence', ?)", (gi._incidence_blob(state.incidence),))
    for name, df in (("clusters", state.clusters), ("components", state.components)):
        conn.execute("INSERT INTO graph_state VALUES (?, ?)", (name, gi._table_blob(df)))
    old_meta = {"version": 3, "fingerprint": state.fingerprint, "columns": list(state.columns)}
    conn.execute("INSERT INTO graph_state VALUES ('meta', ?)", (json.dumps(old_meta).encode("utf-8"),))
    loaded = gi.load_state(conn)[0]
    assert loaded.edits is None and loaded.incidence.equals(state.incidence)
    pd.testing.assert_frame_equal(loaded.clusters, state.clusters)
    mentions, changed_ids = _round(rng, mentions, 0, 3)
    changed = mentions[mentions["mention_id"].isin(changed_ids)]
    got = gi.update_changed(loaded, changed, changed_ids, seed=3, settings=SETTINGS)
    assert got is not None and got.state.edits is None
    gi.save_state(conn, got.state)
    parts = _parts(conn)
    assert json.loads(parts["meta"])["version"] == 4 and "incidence_added" not in parts
    assert gi.load_state(conn)[0].incidence.equals(got.state.incidence)


def _stored_then_updated(seed: int):
    """``(connection, mentions, state)``: a state clustered from a random world and saved, then updated (not
    saved) after one round of changes, all seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    mentions = _graph_world(rng)
    conn = sqlite3.connect(":memory:")
    gi.save_state(conn, gi.update_clusters(None, mentions, None, seed=seed, settings=SETTINGS).state)
    state = gi.load_state(conn)[0]
    mentions, changed_ids = _round(rng, mentions, 0, seed)
    got = gi.update_changed(state, mentions[mentions["mention_id"].isin(changed_ids)], changed_ids, seed=seed,
                            settings=SETTINGS).state
    return conn, mentions, got


def test_edits_of_another_base_are_not_written_as_edits():
    """A state whose edits name a base other than the stored one (the state was replaced meanwhile) writes
    its whole incidence as a new base."""
    conn, mentions, got = _stored_then_updated(4)
    other = gi.update_clusters(None, mentions.head(40), None, seed=4, settings=SETTINGS).state
    gi.save_state(conn, other)  # the stored base is now another one
    gi.save_state(conn, got)
    assert "incidence_added" not in _parts(conn)
    assert gi.load_state(conn)[0].incidence.equals(got.incidence)


def test_edits_without_their_base_or_half_of_them_are_not_used(monkeypatch):
    """A state whose edits parts lack the base they apply to (or one of the two parts), or whose base has
    another row count than its meta says, is not used: the run clusters everything."""
    monkeypatch.setattr(gi, "INCIDENCE_EDITS_SHARE", 0.5)
    conn, mentions, got = _stored_then_updated(6)
    gi.save_state(conn, got)
    assert gi.load_state(conn) is not None and "incidence_added" in _parts(conn)
    meta = json.loads(_parts(conn)["meta"])
    conn.execute("UPDATE graph_state SET data = ? WHERE part = 'meta'",
                 (json.dumps({**meta, "incidence_base_rows": meta["incidence_base_rows"] + 1}).encode(),))
    assert gi.load_state(conn) is None
    conn.execute("UPDATE graph_state SET data = ? WHERE part = 'meta'",
                 (json.dumps({k: v for k, v in meta.items() if k != "incidence_base"}).encode(),))
    assert gi.load_state(conn) is None
    conn.execute("UPDATE graph_state SET data = ? WHERE part = 'meta'", (json.dumps(meta).encode(),))
    assert gi.load_state(conn)[0].incidence.equals(got.incidence)
    conn.execute("DELETE FROM graph_state WHERE part = 'incidence_removed'")
    assert gi.load_state(conn) is None


def test_half_of_a_tables_edits_or_edits_of_another_base_are_not_used():
    """A kept table saved as edits (TableEdits) reads back as base minus removed plus added; with one of its two
    edits parts missing, or a base of another row count than recorded, the state is not used."""
    rng = np.random.default_rng(8)
    mentions = _graph_world(rng)
    conn = sqlite3.connect(":memory:")
    state = gi.update_clusters(None, mentions, None, seed=8, settings=SETTINGS).state
    table = pd.DataFrame({"cluster_id": [f"c{i}" for i in range(20)], "score": list(range(20))})
    gi.save_state(conn, state, {"scores": table}, extra_keys={"scores": "cluster_id"})
    state, tables, meta = gi.load_state(conn)
    base = meta["table_bases"]["scores"][0]
    changed = pd.DataFrame({"cluster_id": ["c1", "c99"], "score": [100, 99]})
    gi.save_state(conn, state, {"scores": gi.TableEdits("cluster_id", base, tables["scores"], ["c1", "c2"], changed)},
                  extra_keys={"scores": "cluster_id"})
    assert {"scores:removed", "scores:added"} <= set(_parts(conn))
    got = gi.load_state(conn)[1]["scores"].set_index("cluster_id")["score"].to_dict()
    assert got == {**{f"c{i}": i for i in range(20) if i not in (1, 2)}, "c1": 100, "c99": 99}
    stored = _parts(conn)
    conn.execute("DELETE FROM graph_state WHERE part = 'scores:added'")
    assert gi.load_state(conn) is None
    conn.execute("INSERT INTO graph_state VALUES ('scores:added', ?)", (stored["scores:added"],))
    assert gi.load_state(conn) is not None
    conn.execute("UPDATE graph_state SET data = ? WHERE part = 'scores'",
                 (gi._table_blob(table.head(19)),))
    assert gi.load_state(conn) is None


def test_the_incidence_of_an_update_is_made_when_read_and_equals_the_whole_table():
    """update_changed leaves its incidence pending (the old rows that stay, then the new rows): its size and
    columns are known without making it; read, it is the previous incidence without the changed mentions'
    rows then their new rows; a pickled state reads the same; a whole save writes the blob of that table as
    one record batch, as a state holding the table does; and update_changed's region rows are the
    incidence's rows of the region's reports, in order."""
    import pickle

    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(7)
    mentions = _graph_world(rng)
    before = gi.update_clusters(None, mentions, None, seed=7, settings=SETTINGS).state
    mentions, changed_ids = _round(rng, mentions, 0, 7)
    changed = mentions[mentions["mention_id"].isin(changed_ids)]
    got = gi.update_changed(before, changed, changed_ids, seed=7, settings=SETTINGS, n_resolved=len(mentions))
    state = got.state
    assert isinstance(state, gi.PendingIncidenceState) and state.__dict__["pending"] is not None
    rows, columns = state.incidence_size()
    assert state.__dict__["pending"] is not None  # the size did not make it
    ids = pa.array([str(m) for m in changed_ids], pa.string())
    old = before.incidence
    want = pa.concat_tables([old.filter(pc.invert(pc.is_in(old.column("mention_id"), value_set=ids))),
                             gi.incidence(None, changed[before.columns]).cast(old.schema)])
    assert (rows, columns) == (want.num_rows, want.column_names) == (len(mentions), list(before.columns))
    again = pickle.loads(pickle.dumps(state))
    assert state.incidence.equals(want) and again.incidence.equals(want)
    assert state.__dict__["pending"] is None and state.incidence_size() == (rows, columns)
    region = pa.array(got.region.tolist(), pa.string())
    assert got.region_rows.equals(want.filter(pc.is_in(want.column("report_id"), value_set=region)))
    a, b = sqlite3.connect(":memory:"), sqlite3.connect(":memory:")
    gi.save_state(a, again)
    gi.save_state(b, gi.ClusterState(state.fingerprint, want.combine_chunks(), state.clusters, state.columns,
                                     state.components))
    assert _parts(a)["incidence"] == _parts(b)["incidence"]


@pytest.mark.parametrize("kept", [["R1", "R2"], [], ["R3", "R4", "R1", "R2"]])
def test_merged_clusters_are_the_frames_concatenated_and_sorted(kept):
    """_merge_clusters (arrow) gives what concatenating the fresh and the kept stored clusters and sorting them
    by cluster and report id with pandas gives, column types included (empty frames' object columns too)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in gi.CLUSTER_COLUMNS})
    stored = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4"], "cluster_id": ["c_b", "c_b", "c_a", "c_a"]})
    fresh = pd.DataFrame({"report_id": ["R9", "R5"], "cluster_id": ["c_0", "c_0"]})
    ids = pa.array(kept, pa.string())
    for previous in (stored, pa.table(stored).to_pandas(), empty):
        for new in (fresh, empty):
            reused = previous[pc.is_in(gi._text(previous["report_id"]), value_set=ids).to_numpy(zero_copy_only=False)]
            want = pd.concat([new, reused], ignore_index=True).sort_values(
                ["cluster_id", "report_id"], kind="stable").reset_index(drop=True)[gi.CLUSTER_COLUMNS]
            pd.testing.assert_frame_equal(gi._merge_clusters(previous, new, ids), want)
