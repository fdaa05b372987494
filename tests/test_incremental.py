"""Incremental resolution: new mentions against the stored state give what a full run with the same model gives,
while only the touched entities and the new pairs are written."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linkage.blocking import block, block_involving
from linkage.er_settings import BlockingRule
from linkage.generate import generate
from linkage.pipeline import load_stage, resolve_stage
from linkage.resolve import resolve_mentions
from linkage.resolve.judgements import record_judgement
from linkage.resolve.incremental import (
    block_key_hashes, load_state, narrowed_blocking, resolve_new, rules_digest, state_from_resolution,
)
from linkage.settings import load_settings
from linkage.store import EmbeddedStore
sys.path.insert(0, str(Path(__file__).parent))
from test_resolve import MIXED  # noqa: E402


def _partition(s: pd.Series) -> list[list[str]]:
    return sorted(sorted(g.index) for _, g in s.groupby(s))


def test_block_involving_gives_the_pairs_of_a_full_blocking():
    rng = np.random.default_rng(5)
    n = 600
    df = pd.DataFrame({
        "mention_id": [f"m{i:04d}" for i in range(n)],
        "s": rng.choice(["jansen", "janssen", "jansens", "vries", "visser", "", "bakker"], n),
        "i": rng.choice(["a", "b", ""], n),
        "y": rng.choice(["1980", "1981", ""], n),
        "o": rng.choice(list("pqrstu"), n),
    })
    rules = [BlockingRule("sy", ("s", "y"), max_block=20, window=4, order_by=("o",)),
             BlockingRule("fuzzy", ("i",), fuzzy_key="s", max_pairs=400),
             BlockingRule("blank", ("s",), pair_with_empty="i", max_pairs=300)]
    involving = np.zeros(n, dtype=bool)
    involving[rng.choice(n, 40, replace=False)] = True
    full, _ = block(df, rules, "x", 10, involving)
    # the same records in another order: ties break on the given order (the mention ids), as in a full run
    perm = rng.permutation(n)
    shuffled = df.iloc[perm].reset_index(drop=True)
    inc, _ = block_involving(shuffled, rules, involving[perm], shuffled["mention_id"].to_numpy(object))
    left, right = perm[inc.left], perm[inc.right]
    key = np.minimum(left, right) * n + np.maximum(left, right)
    order = np.argsort(key)
    assert np.array_equal(key[order], full.left * n + full.right)
    assert np.array_equal(inc.rule_mask[order], full.rule_mask)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_block_involving_finds_every_fuzzy_neighbour_per_block_key(seed):
    """The fuzzy rules look only at the records whose (block key, value) is one deletion from an involved
    record's: over many random one-edit neighbours (and caps that bite) the pairs are still a full blocking's."""
    rng = np.random.default_rng(seed)
    n = 800
    stems = ["jan", "vri", "bak", "vis", "dam"]
    names = [st + "".join(rng.choice(list("aeéns"), rng.integers(0, 3))) for st in rng.choice(stems, n)]
    df = pd.DataFrame({"mention_id": [f"m{i:04d}" for i in range(n)], "s": names,
                       "i": rng.choice(["a", "b", "c", ""], n), "o": rng.choice(list("pq"), n)})
    rules = [BlockingRule("fuzzy", ("i",), fuzzy_key="s", max_pairs=150),
             BlockingRule("everyone", (), fuzzy_key="s", max_pairs=300)]
    involving = np.zeros(n, dtype=bool)
    involving[rng.choice(n, 30, replace=False)] = True
    full, _ = block(df, rules, "x", 10, involving)
    order = df["mention_id"].to_numpy(object)
    for hashes in (None, block_key_hashes(df, rules)):
        inc, _ = block_involving(df, rules, involving, order, hashes=hashes)
        assert np.array_equal(inc.left * n + inc.right, full.left * n + full.right)
        assert np.array_equal(inc.rule_mask, full.rule_mask)


def _blocking_case(seed: int = 5, n: int = 600):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "mention_id": [f"m{i:04d}" for i in range(n)],
        "s": rng.choice(["jansen", "janssen", "jansens", "vries", "visser", "", "bakker"], n),
        "i": rng.choice(["a", "b", ""], n),
        "y": rng.choice(["1980", "1981", ""], n),
        "o": rng.choice(list("pqrstu"), n),
    })
    rules = [BlockingRule("sy", ("s", "y"), max_block=20, window=4, order_by=("o",)),
             BlockingRule("fuzzy", ("i",), fuzzy_key="s", max_pairs=400),
             BlockingRule("blank", ("s",), pair_with_empty="i", max_pairs=300),
             BlockingRule("everyone", (), fuzzy_key="s", max_pairs=400)]
    involving = np.zeros(n, dtype=bool)
    involving[rng.choice(n, 40, replace=False)] = True
    return df, rules, involving


@pytest.mark.parametrize("filter_from", [2_000, 0])
@pytest.mark.parametrize("collide", [False, True])
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_narrowed_blocking_gives_the_pairs_of_block_involving(collide, seed, filter_from, monkeypatch):
    """The fuzzy rule with keys looks only at fuzzy_groups (not whole blocks) and finds the same pairs (also with
    fuzzy_groups' filter by (variant hash, hash) on these few values)."""
    from linkage.resolve import incremental

    monkeypatch.setattr(incremental, "_VARIANT_FILTER_FROM", filter_from)
    df, rules, involving = _blocking_case(seed, n=600 + 200 * (seed - 5))
    order = df["mention_id"].to_numpy(object)
    want, _ = block_involving(df, rules, involving, order)
    hashes = block_key_hashes(df, rules)
    if collide:  # every non-empty key of a rule shares one hash: each rule sees all its keyed records
        hashes = np.where(hashes != 0, np.uint64(7), np.uint64(0))
    left, right = narrowed_blocking(df, rules, hashes, involving, order)
    assert np.array_equal(left, want.left) and np.array_equal(right, want.right)


@pytest.mark.parametrize("filter_from", [2_000, 0])
@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzy_groups_keeps_every_group_sharing_a_variant_with_an_involved_record_under_its_hash(seed, filter_from,
                                                                                               monkeypatch):
    """fuzzy_groups (numbered variants) against its definition, record by record; also with the filter by
    (variant hash, hash) that many distinct values take (_variant_hash_groups) for these few."""
    from linkage.blocking import deletion_variants
    from linkage.resolve import incremental
    from linkage.resolve.incremental import fuzzy_groups

    monkeypatch.setattr(incremental, "_VARIANT_FILTER_FROM", filter_from)
    rng = np.random.default_rng(seed)
    n = 400
    stems = ["jan", "vri", "bak", "ja", "j"]
    values = pd.Series([st + "".join(rng.choice(list("aens"), rng.integers(0, 3))) if rng.random() > 0.1 else ""
                        for st in rng.choice(stems, n)])
    hashes = rng.choice(np.array([0, 3, 5, 9], dtype=np.uint64), n)
    involving = rng.random(n) < 0.05
    got = fuzzy_groups(values, hashes, involving)
    new = [i for i in range(n) if involving[i] and hashes[i] and values[i]]
    want = [i for i in range(n) if values[i] and hashes[i] and any(
        hashes[r] == hashes[i] and set(deletion_variants(values[r])) & set(deletion_variants(values[i])) for r in new)]
    assert got.tolist() == want and len(want)


@pytest.mark.parametrize("seed", [3, 4])
def test_fuzzy_groups_filtered_by_variant_and_hash_over_many_values_is_its_definition(seed):
    """Over more distinct values than _VARIANT_FILTER_FROM (the filter by (variant hash, hash) runs), with
    values one edit apart under other hashes than the involved records' (which the filter by variant alone
    kept), fuzzy_groups is its definition record by record."""
    from linkage.blocking import deletion_variants
    from linkage.resolve.incremental import _VARIANT_FILTER_FROM, fuzzy_groups

    rng = np.random.default_rng(seed)
    n = 6_000
    letters = np.array(list("abdeijknrsv"))
    values = pd.Series(["".join(rng.choice(letters, rng.integers(2, 6))) if rng.random() > 0.05 else ""
                        for _ in range(n)])
    assert values.nunique() > _VARIANT_FILTER_FROM
    hashes = rng.choice(np.array([0, 3, 5, 9, 1 << 40, (1 << 40) + 3], dtype=np.uint64), n)
    involving = rng.random(n) < 0.01
    got = fuzzy_groups(values, hashes, involving)
    reach: dict[int, set] = {}
    for r in range(n):
        if involving[r] and hashes[r] and values[r]:
            reach.setdefault(int(hashes[r]), set()).update(deletion_variants(values[r]))
    want = [i for i in range(n) if values[i] and hashes[i]
            and not reach.get(int(hashes[i]), set()).isdisjoint(deletion_variants(values[i]))]
    assert got.tolist() == want and len(want) > 100
    # some of the values one edit from an involved one under another hash only: left out
    everywhere = set().union(*reach.values())
    assert any(values[i] and hashes[i] and not everywhere.isdisjoint(deletion_variants(values[i]))
               and i not in set(want) for i in range(n))


def test_position_in_is_searchsorted_for_values_among_the_wanted():
    from linkage.resolve.incremental import _position_in

    rng = np.random.default_rng(0)
    wanted = np.unique(rng.integers(0, 1 << 62, 40, dtype=np.int64).astype(np.uint64))
    values = rng.choice(wanted, 1_000)
    assert _position_in(wanted, values).tolist() == np.searchsorted(wanted, values).tolist()
    # low bits that never tell them apart (all multiples of 2**20): searched
    wanted = np.arange(1, 6, dtype=np.uint64) << np.uint64(20)
    assert _position_in(wanted, wanted[[4, 0, 2]]).tolist() == [4, 0, 2]


def test_block_key_hashes_equal_exactly_for_equal_keys():
    df, rules, _ = _blocking_case()
    from linkage.blocking import block_keys

    h = block_key_hashes(df, rules)
    assert not h[:, 3].any()  # a rule without keys: no hash
    for j, rule in enumerate(rules[:3]):
        keys = block_keys(df, rule).to_numpy(object)
        assert ((h[:, j] == 0) == (keys == "")).all()
        codes = pd.factorize(pd.Series(keys))[0]
        assert len(set(zip(codes.tolist(), h[:, j].tolist()))) == len(set(codes.tolist()))  # no collision here
    # the hashes of a part are those of the whole (the state appends new records' hashes)
    assert np.array_equal(block_key_hashes(df.iloc[100:], rules), h[100:])


def test_resolve_new_equals_a_full_run_with_the_same_model():
    df = pd.DataFrame(MIXED).sort_values("mention_id").reset_index(drop=True)
    model = resolve_mentions(df).model
    new_ids = {"p02", "p10", "x0007", "x0100", "v2", "ph1"}
    judgements = [("p05", "p06", "different")]
    old = df[~df["mention_id"].isin(new_ids)]
    first = resolve_mentions(old, model=model, judgements=judgements, keep_records=True)
    state = state_from_resolution(first, first.diagnostics["records"], model, judgements)
    result = resolve_new(state, df[df["mention_id"].isin(new_ids)], model, judgements)
    full = resolve_mentions(df, model=model, judgements=judgements)
    got = first.assignments.set_index("mention_id")["entity_id"].copy()
    for upd in result.updates:
        got = got.drop(upd.touched_old)
        got = pd.concat([got, upd.assignments.set_index("mention_id")["entity_id"]])
    want = full.assignments.set_index("mention_id")["entity_id"]
    assert _partition(got.sort_index()) == _partition(want.sort_index())
    # a touched or new mention's entity is named as in the full run
    for upd in result.updates:
        mine = upd.assignments.set_index("mention_id")["entity_id"]
        assert (mine == want[mine.index]).all()
    # every pair a full run scores involving a new mention is scored, with the same weight
    new_pairs = pd.concat([u.new_pairs.frame() for u in result.updates if u.new_pairs is not None])
    fp = full.pairs
    fp = fp[fp["left_id"].isin(new_ids) | fp["right_id"].isin(new_ids)]
    key = lambda p: sorted(zip(p[["left_id", "right_id"]].min(axis=1), p[["left_id", "right_id"]].max(axis=1),
                               p["match_weight"].round(9)))
    assert key(new_pairs) == key(fp)


def test_compact_pairs_round_trip_through_existing_pairs():
    df = pd.DataFrame(MIXED)
    people = df[df["entity_type"] == "person"]
    frozen = resolve_mentions(df).model
    old = people[~people["mention_id"].isin({"p02", "p10"})]
    first = resolve_mentions(old, model=frozen)
    by_table = resolve_mentions(people, model=frozen, new_mention_ids={"p02", "p10"}, existing_pairs=first.pairs)
    by_compact = resolve_mentions(people, model=frozen, new_mention_ids={"p02", "p10"}, existing_pairs=first.scored)
    assert by_table.assignments.equals(by_compact.assignments)
    assert by_table.pairs.equals(by_compact.pairs)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from test_pipeline import _split

    folder = tmp_path_factory.mktemp("gen")
    generate(1200, 11, folder)
    return _split(folder, folder / "parts", 1000)


def _two_runs(first, second, store: Path, drop_state: bool = False, between=None) -> dict:
    settings = load_settings(None)
    load_stage(first, store)
    with EmbeddedStore(store) as s:
        resolve_stage(s, settings)
    if between:
        between(store)
    load_stage(second, store)
    with EmbeddedStore(store) as s:
        if drop_state:
            s.conn.execute("DELETE FROM meta WHERE key = 'er_state'")
        return resolve_stage(s, settings)


def _tables(store: Path):
    from linkage.report.explore import er_pairs

    with EmbeddedStore(store) as s:
        assert s.count("er_pairs") == 0  # the scored pairs are kept in the state only
        return (s.mention_entities(), s.entities(), er_pairs(s))


def _assert_same_tables(a: Path, b: Path) -> None:
    """The two stores hold the same mention_entities, entities and scored pairs."""
    for x, y in zip(_tables(a), _tables(b)):
        pd.testing.assert_frame_equal(x, y)


def test_store_incremental_equals_the_pair_table_path(parts, tmp_path):
    first, second = parts
    counts = _two_runs(first, second, tmp_path / "state.db")
    assert 0 < counts["touched_mentions"] < counts["mentions"]
    assert counts["new_mentions"] > 0
    reread = _two_runs(first, second, tmp_path / "pairs.db", drop_state=True)
    assert "touched_mentions" not in reread
    _assert_same_tables(tmp_path / "state.db", tmp_path / "pairs.db")
    with EmbeddedStore(tmp_path / "state.db") as s:
        model = json.loads(s.get_meta("er_model"))
        state = load_state(s.conn, model)
        assert state is not None and state.n_mentions() == counts["mentions"]
        # the block-key hashes were kept by the first run and appended to by the second
        from linkage.resolve.engine import _settings

        for etype, ts in state.types.items():
            if ts.keys is not None:
                rules = _settings(None).policy(etype).blocking
                assert ts.key_rules == rules_digest(rules)
                assert np.array_equal(ts.keys, block_key_hashes(ts.records, rules))
        assert state.types["person"].keys is not None


def test_the_new_mentions_are_read_from_the_newest_rows_and_from_all_when_they_are_not_there(parts, tmp_path):
    """_new_mentions reads the k newest rows when they are the k mentions without an entity, and every mention when
    one without an entity sits among older rows (or assignments and mentions disagree): the frame is the same."""
    from linkage import model as schema
    from linkage.resolve.incremental import _new_mentions

    store = tmp_path / "s.db"
    _two_runs(parts[0], parts[1], store, between=lambda st: None)
    cols = ", ".join(schema.STORED_MENTION_FIELDS)
    full = f"SELECT {cols} FROM mentions WHERE mention_id NOT IN (SELECT mention_id FROM mention_entities) ORDER BY mention_id"
    with EmbeddedStore(store) as s:
        assert s.count("mention_entities") == s.count("mentions")
        newest = s.conn.execute("SELECT mention_id FROM mentions ORDER BY rowid DESC LIMIT 5").fetchall()
        older = s.conn.execute("SELECT mention_id FROM mentions ORDER BY rowid LIMIT 3").fetchall()
        for unassigned in (newest, older + newest[:2], newest[1:]):
            with s.transaction() as conn:
                conn.execute("SAVEPOINT t")
                conn.executemany("DELETE FROM mention_entities WHERE mention_id = ?", unassigned)
                new, n, resolved = _new_mentions(s, cols)
                pd.testing.assert_frame_equal(new, s.frame(full))
                assert len(new) == len(unassigned) == n - resolved
                conn.execute("ROLLBACK TO t")


def test_only_the_changed_components_of_a_region_are_clustered_again(parts, tmp_path, monkeypatch):
    """A region without judgements or name-only links is clustered again only in the components of strong
    links that a new mention reaches (cluster_changed_components): the same tables as clustering the whole
    region, with fewer mentions touched."""
    import linkage.resolve.incremental as incremental

    first, second = parts
    calls = []
    real = incremental.cluster_changed_components

    def counted(*args, **kwargs):
        got = real(*args, **kwargs)
        calls.append(None if got is None else (len(got[1]), int(got[1].sum())))
        return got

    monkeypatch.setattr(incremental, "cluster_changed_components", counted)
    parts_run = _two_runs(first, second, tmp_path / "parts.db")
    assert any(c is not None and c[1] < c[0] for c in calls)  # some region kept part of its entities
    monkeypatch.setattr(incremental, "stored_entities", lambda store: None)  # every region clustered whole
    whole_run = _two_runs(first, second, tmp_path / "whole.db")
    assert parts_run["touched_mentions"] < whole_run["touched_mentions"]
    _assert_same_tables(tmp_path / "parts.db", tmp_path / "whole.db")


def test_a_state_made_under_another_clustering_policy_is_not_used(parts, tmp_path):
    """The model dict holds no clustering policy (anchors, candidate probability, ambiguity margin,
    ``unplaced``): a state decided under another one is not used, so the full path re-clusters everything
    instead of applying the new policy only where new mentions land (an upgraded store)."""
    import dataclasses

    from linkage.resolve.engine import _settings

    first, second = parts
    _two_runs(first, second, tmp_path / "policy.db")
    cfg = _settings(None)
    other = dataclasses.replace(cfg, types={**cfg.types, "address": dataclasses.replace(cfg.types["address"],
                                                                                          unplaced=())})
    with EmbeddedStore(tmp_path / "policy.db") as s:
        model = json.loads(s.get_meta("er_model"))
        assert load_state(s.conn, model) is not None
        assert load_state(s.conn, model, cfg) is not None
        assert load_state(s.conn, model, other) is None


def test_pairs_made_under_other_blocking_rules_are_scored_again(parts, tmp_path):
    """Stored pairs hold what the blocking rules of their run made: after a change of a rule's caps the state
    is not used and the stored pairs are not re-used either (they would keep pairs the new rules do not
    make); every candidate pair is scored again with the stored model, and the new rules are recorded."""
    import dataclasses

    from linkage.resolve.engine import _settings
    from linkage.resolve.incremental import blocking_digest

    cfg = _settings(None)
    rule = cfg.types["person"].blocking[0]
    other = dataclasses.replace(cfg, types={**cfg.types, "person": dataclasses.replace(
        cfg.types["person"], blocking=(dataclasses.replace(rule, max_block=rule.max_block + 1),)
        + cfg.types["person"].blocking[1:])})
    assert blocking_digest(other) != blocking_digest(cfg)
    first, second = parts
    same = _two_runs(first, second, tmp_path / "same.db", drop_state=True)
    assert same["new_mentions"] < same["mentions"]  # same rules: stored pairs re-used, only new ones scored

    def made_by_other_rules(store: Path) -> None:
        with EmbeddedStore(store) as s:
            model = json.loads(s.get_meta("er_model"))
            assert load_state(s.conn, model, cfg) is not None
            assert load_state(s.conn, model, other) is None
            s.set_meta("er_blocking", blocking_digest(other))

    # (the state is dropped too, as load_state refuses it under other rules: the stored pairs alone remain)
    again = _two_runs(first, second, tmp_path / "again.db", drop_state=True, between=made_by_other_rules)
    assert again["new_mentions"] == again["mentions"] and "touched_mentions" not in again
    with EmbeddedStore(tmp_path / "again.db") as s:
        assert s.get_meta("er_blocking") == blocking_digest(cfg)


def test_a_state_without_block_key_hashes_makes_them_and_gives_the_same_result(parts, tmp_path):
    first, second = parts

    def forget_keys(store: Path):
        with EmbeddedStore(store) as s:
            s.conn.execute("DELETE FROM er_state WHERE part = 'keys'")

    counts = _two_runs(first, second, tmp_path / "nokeys.db", between=forget_keys)
    assert "touched_mentions" in counts  # still incremental
    _two_runs(first, second, tmp_path / "keys.db")
    _assert_same_tables(tmp_path / "nokeys.db", tmp_path / "keys.db")
    with EmbeddedStore(tmp_path / "nokeys.db") as s:
        state = load_state(s.conn, json.loads(s.get_meta("er_model")))
        assert state.types["person"].keys is not None and len(state.types["person"].keys) == len(state.types["person"].records)


def test_records_an_earlier_version_kept_as_parquet_are_read(parts, tmp_path):
    """A store whose state keeps its records as parquet (as versions before the Arrow IPC chunks did) gives
    the same incremental result; the new chunk is appended in the current format."""
    import io

    first, second = parts

    def as_parquet(store: Path):
        from linkage.resolve.incremental import _records_chunk

        with EmbeddedStore(store) as s:
            rows = s.conn.execute("SELECT rowid, data FROM er_state WHERE part = 'records'").fetchall()
            for rowid, blob in rows:
                buf = io.BytesIO()
                _records_chunk(blob).to_parquet(buf, index=False)
                s.conn.execute("UPDATE er_state SET data = ? WHERE rowid = ?", (buf.getvalue(), rowid))

    counts = _two_runs(first, second, tmp_path / "parquet.db", between=as_parquet)
    assert "touched_mentions" in counts  # still incremental
    _two_runs(first, second, tmp_path / "ipc.db")
    _assert_same_tables(tmp_path / "parquet.db", tmp_path / "ipc.db")
    with EmbeddedStore(tmp_path / "parquet.db") as s:
        magic = {bytes(b[:4]) for (b,) in s.conn.execute("SELECT data FROM er_state WHERE part = 'records'")}
    assert magic == {b"PAR1", b"ARRO"}


def test_a_new_judgement_is_applied_incrementally(parts, tmp_path):
    first, second = parts

    def judge(store: Path):
        with EmbeddedStore(store) as s:
            from linkage.report.explore import er_pairs

            pairs = er_pairs(s)
            pairs = pairs[pairs["matched"] & (pairs["entity_type"] == "person")].head(2).reset_index(drop=True)
            record_judgement(s, pairs.left_id[0], pairs.right_id[0], "different", actor="test")
            record_judgement(s, pairs.left_id[1], pairs.right_id[1], "different", actor="test")

    _two_runs(first, second, tmp_path / "state.db", between=judge)
    _two_runs(first, second, tmp_path / "pairs.db", drop_state=True, between=judge)
    _assert_same_tables(tmp_path / "state.db", tmp_path / "pairs.db")


def test_deleted_mentions_fall_back_to_the_full_path(parts, tmp_path):
    first, second = parts

    def delete_one(store: Path):
        with EmbeddedStore(store) as s:
            mid = s.frame("SELECT mention_id FROM mentions ORDER BY mention_id LIMIT 1").mention_id[0]
            s.conn.execute("DELETE FROM mentions WHERE mention_id = ?", (mid,))

    counts = _two_runs(first, second, tmp_path / "s.db", between=delete_one)
    assert "touched_mentions" not in counts
    with EmbeddedStore(tmp_path / "s.db") as s:
        assert s.count("mention_entities") == s.count("mentions")


def test_state_stored_in_small_chunks_gives_the_same_result(parts, tmp_path, monkeypatch):
    # SQLite refuses blobs over 1 GB (1M mentions of one type score > 30 M pairs): the state is chunked
    import linkage.resolve.incremental as inc

    first, second = parts
    expected = _two_runs(first, second, tmp_path / "whole.db")
    monkeypatch.setattr(inc, "PAIRS_PER_CHUNK", 97)
    monkeypatch.setattr(inc, "RECORDS_PER_CHUNK", 53)
    chunked = _two_runs(first, second, tmp_path / "chunked.db")
    assert chunked == expected
    with EmbeddedStore(tmp_path / "chunked.db") as s:
        n_chunks = s.conn.execute("SELECT COUNT(*) FROM er_state WHERE part = 'pairs'").fetchone()[0]
        assert n_chunks > 10
        state = load_state(s.conn, json.loads(s.get_meta("er_model")))
        assert state is not None and state.n_mentions() == chunked["mentions"]
    _assert_same_tables(tmp_path / "whole.db", tmp_path / "chunked.db")


def test_purge_removes_its_mentions_from_the_state_and_the_next_run_rereads_the_rest(parts, tmp_path):
    import datetime as dt

    from linkage.report.explore import er_pairs
    from linkage.resolve.incremental import stored_scored_pairs
    from linkage.retention import purge

    first, second = parts

    def purge_oldest(store: Path):
        with EmbeddedStore(store) as s:
            day = s.frame("SELECT substr(received_at, 1, 10) AS d FROM reports ORDER BY received_at LIMIT 1 OFFSET 50").d[0]
            now = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc)
            pairs_before = len(er_pairs(s))
            summary = purge(s, 0, now=now, actor="test")
            assert summary.report_ids and summary.counts["mentions"] and summary.counts["er_pairs"]
            kept = stored_scored_pairs(s.conn)
            ids = {m for sp in kept for m in sp.mention_ids}
            left = set(s.frame("SELECT mention_id FROM mentions").mention_id)
            assert ids <= left  # no purged mention's record or pair stays in the state
            # nor their block-key hashes: a type that lost mentions (persons, in 50 reports) keeps none; the next
            # run, a full one, makes them again
            assert s.conn.execute("SELECT 1 FROM er_state WHERE part = 'keys' AND entity_type = 'person'").fetchone() is None
            assert len(er_pairs(s)) == pairs_before - summary.counts["er_pairs"]

    counts = _two_runs(first, second, tmp_path / "p.db", between=purge_oldest)
    assert "touched_mentions" not in counts  # the state was marked unusable: the full path re-read the pairs
    with EmbeddedStore(tmp_path / "p.db") as s:
        assert s.count("mention_entities") == s.count("mentions")


# --- incremental clustering from the changed mentions only (linkage.graph.incremental.update_changed) -------
_TYPES = ("person", "address", "phone", "person", "address")


def _graph_world(rng: np.random.Generator, n_groups: int = 30, prefix: str = "R") -> pd.DataFrame:
    """Mentions of groups of reports sharing a few entities each, a few hubs mentioned across groups, persons
    anchored or not (so the anchored link rows and hub confirmations are exercised)."""
    rows = []
    for k in range(n_groups):  # an entity's type follows from its id (E<group>-<j>: type j), as resolved ids do
        ents = [(f"E{k}-{j}", _TYPES[j]) for j in range(int(rng.integers(2, 6)))]
        for i in range(int(rng.integers(2, 10))):
            rid = f"{prefix}{k:02d}-{i:02d}"
            picks = [ents[j] for j in rng.choice(len(ents), size=2, replace=False)]
            if rng.random() < 0.3:
                picks.append((f"HUB{int(rng.integers(0, 2))}", "address"))
            for m, (eid, etype) in enumerate(picks):
                rows.append((f"{rid}-M{m}", rid, etype, "x", eid, int(rng.random() < 0.7)))
    return pd.DataFrame(rows, columns=["mention_id", "report_id", "entity_type", "role", "entity_id", "anchored"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_update_changed_equals_clustering_everything(seed):
    """Runs that add reports and re-assign mentions give, from the changed mentions alone, the clusters and
    components that clustering the whole graph gives."""
    from linkage.graph.incremental import component_table, update_changed, update_clusters
    from linkage.graph.communities import components_membership, report_graph
    from linkage.graph.weights import as_graph_settings

    rng = np.random.default_rng(seed)
    settings = {"hub_max_reports": 6}
    mentions = _graph_world(rng)
    state = update_clusters(None, mentions, None, seed=seed, settings=settings).state
    partial = []
    for step in range(3):
        # some new reports (in existing groups and new ones) and some mentions moved to another entity
        new = _graph_world(rng, n_groups=8, prefix=f"N{step}-")
        new["entity_id"] = [e if e.startswith("HUB") or rng.random() < 0.5
                            else f"E{int(rng.integers(0, 30))}-{e.split('-')[1]}" for e in new["entity_id"]]
        moved = mentions.sample(frac=0.02, random_state=seed + step).index
        mentions = mentions.copy()
        mentions.loc[moved, "entity_id"] = [e if e.startswith("HUB") else f"E{int(rng.integers(0, 30))}-{e.split('-')[1]}"
                                            for e in mentions.loc[moved, "entity_id"]]
        mentions = pd.concat([mentions, new], ignore_index=True)
        changed_ids = mentions.loc[moved, "mention_id"].tolist() + new["mention_id"].tolist()
        changed = mentions[mentions["mention_id"].isin(changed_ids)]
        got = update_changed(state, changed, changed_ids, seed=seed, settings=settings, n_resolved=len(mentions))
        want = update_clusters(None, mentions, None, seed=seed, settings=settings)
        assert got is not None and not got.everything
        pd.testing.assert_frame_equal(got.clusters, want.clusters)
        rg = report_graph(mentions, as_graph_settings(settings))
        comps = component_table(rg.report_ids, components_membership(rg))
        pd.testing.assert_frame_equal(got.state.components.reset_index(drop=True), comps)
        assert got.stats["components"] == want.stats["components"]
        partial.append(0 < got.stats["components_reclustered"] < got.stats["components"])
        state = got.state
    assert any(partial)  # some runs left components alone
    # a wrong count of resolved mentions, another seed or a state without components: not usable
    assert update_changed(state, changed, changed_ids, seed=seed, settings=settings, n_resolved=1) is None
    assert update_changed(state, changed, changed_ids, seed=seed + 1, settings=settings) is None
    state.components = None
    assert update_changed(state, changed, changed_ids, seed=seed, settings=settings) is None


def test_graph_state_reads_the_parquet_incidence_of_an_earlier_version():
    """The incidence is kept as an Arrow IPC file; a graph state an earlier version wrote (parquet) still loads,
    to the same table."""
    import io
    import sqlite3

    import pyarrow.parquet as pq

    from linkage.graph.incremental import load_state, save_state, update_clusters

    reports = pd.DataFrame({"report_id": ["R1", "R2", "R3"]})
    m = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "entity_id": ["P", "P", "Q"], "entity_type": ["person"] * 3,
                      "mention_id": ["m1", "m2", "m3"], "anchored": [1, 0, 1]})
    state = update_clusters(reports, m, None, seed=1).state
    conn = sqlite3.connect(":memory:")
    save_state(conn, state)
    assert conn.execute("SELECT substr(data, 1, 6) FROM graph_state WHERE part = 'incidence'").fetchone()[0] == b"ARROW1"
    again = load_state(conn)[0]
    assert again.incidence.equals(state.incidence)
    buf = io.BytesIO()
    pq.write_table(state.incidence, buf)
    conn.execute("UPDATE graph_state SET data = ? WHERE part = 'incidence'", (buf.getvalue(),))
    older = load_state(conn)[0]
    assert older.incidence.equals(state.incidence)
    pd.testing.assert_frame_equal(older.clusters, again.clusters)


def test_graph_state_reads_the_parquet_tables_of_an_earlier_version():
    """The kept tables (clusters, components, scores) are Arrow IPC files; parquet ones an earlier version
    wrote load to the same frames."""
    import sqlite3

    from linkage.graph.incremental import _parquet_blob, load_state, save_state, update_clusters

    reports = pd.DataFrame({"report_id": ["R1", "R2", "R3"]})
    m = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "entity_id": ["P", "P", "Q"], "entity_type": ["person"] * 3,
                      "mention_id": ["m1", "m2", "m3"], "anchored": [1, 0, 1]})
    state = update_clusters(reports, m, None, seed=1).state
    scores = pd.DataFrame({"cluster_id": ["C1"], "n_reports": [2], "signals": ['{"a": 1.5}']})
    conn = sqlite3.connect(":memory:")
    save_state(conn, state, {"scores": scores}, {"now": "2026-01-02"})
    kinds = dict(conn.execute("SELECT part, substr(data, 1, 6) FROM graph_state WHERE part <> 'meta'").fetchall())
    assert set(kinds.values()) == {b"ARROW1"}
    new_state, new_tables, _ = load_state(conn)
    for part, df in (("clusters", state.clusters), ("components", state.components), ("scores", scores)):
        conn.execute("UPDATE graph_state SET data = ? WHERE part = ?", (_parquet_blob(df), part))
    old_state, old_tables, meta = load_state(conn)
    assert meta["now"] == "2026-01-02"
    for a, b in ((old_state.clusters, new_state.clusters), (old_state.components, new_state.components),
                 (old_tables["scores"], new_tables["scores"]), (new_tables["scores"], scores)):
        pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------------------------------- scoring
def _rounds(folder: Path, out: Path, sizes: list[int]) -> list[list[Path]]:
    """The generated reports (in date order) split into consecutive rounds of ``sizes`` reports."""
    reports = pd.read_csv(folder / "reports.csv", dtype=str, keep_default_na=False)
    mentions = pd.read_csv(folder / "mentions.csv", dtype=str, keep_default_na=False)
    reports = reports.sort_values(["received_at", "report_id"], kind="stable")
    out.mkdir(parents=True, exist_ok=True)
    files, start = [], 0
    for k, size in enumerate(sizes):
        ids = set(reports["report_id"].iloc[start:start + size])
        start += size
        reports[reports["report_id"].isin(ids)].to_csv(out / f"reports_{k}.csv", index=False)
        mentions[mentions["report_id"].isin(ids)].to_csv(out / f"mentions_{k}.csv", index=False)
        files.append([out / f"reports_{k}.csv", out / f"mentions_{k}.csv"])
    return files


def test_stored_cluster_rows_are_reused_only_where_they_equal_scoring_again(tmp_path, monkeypatch):
    """Three incremental rounds: a kept cluster whose recency level did not move takes its stored row; every
    table equals the one a store gets that rescores and routes every kept cluster (no stored row re-used),
    and a state whose run did not store its clusters (interrupted) re-uses nothing."""
    import linkage.pipeline as pipeline

    folder = tmp_path / "gen"
    generate(1200, 11, folder)
    rounds = _rounds(folder, tmp_path / "rounds", [1000, 100, 100])
    stores = {"reuse": tmp_path / "reuse.db", "again": tmp_path / "again.db"}
    reused = []
    original = pipeline._stored_rows
    for k, files in enumerate(rounds):
        for name, path in stores.items():
            if name == "again":
                monkeypatch.setattr(pipeline, "_stored_rows",
                                    lambda store, rc, kept, rules, **kw: original(store, rc, kept.iloc[:0], rules, **kw))
            counts = pipeline.run(files, path).counts
            monkeypatch.undo()
            if name == "reuse" and k:
                reused.append(counts["clusters_reused"])
            elif k:
                assert counts["clusters_reused"] == 0
    assert all(n > 0 for n in reused)
    with EmbeddedStore(stores["reuse"]) as a, EmbeddedStore(stores["again"]) as b:
        for table in ("clusters", "report_clusters", "status_inputs"):
            pd.testing.assert_frame_equal(a.frame(f"SELECT * FROM {table} ORDER BY 1"),
                                          b.frame(f"SELECT * FROM {table} ORDER BY 1"))
        for sql in ("SELECT cluster_id, event, related_ids FROM cluster_history ORDER BY 1, 2, 3",
                    "SELECT report_id, from_status, to_status, agency FROM status_history ORDER BY 1, id"):
            pd.testing.assert_frame_equal(a.frame(sql), b.frame(sql))
        a.set_meta(pipeline.CLUSTERS_RUN, "another run")  # as if the last run stopped before storing clusters
    assert pipeline.run([], stores["reuse"]).counts["clusters_reused"] == 0


def test_a_reclustered_cluster_is_scored_again_only_when_its_inputs_changed(tmp_path, monkeypatch):
    """Round two clusters again components whose clusters keep their reports. Such a cluster whose inputs are
    unchanged (same digest) is not scored again (its stored row re-used); one whose relation entity got another
    label before the run (the label names it in a sentence) is scored again and its row names the new label.
    Every table equals that of a store that forgot its graph state (every cluster scored again)."""
    import shutil

    import linkage.graph.incremental as incremental
    import linkage.pipeline as pipeline
    import linkage.triage.scoring as scoring

    folder = tmp_path / "gen"
    generate(1200, 11, folder)
    first, second = _rounds(folder, tmp_path / "rounds", [1100, 100])
    store, again, trial = (tmp_path / f"{n}.db" for n in ("store", "again", "trial"))
    pipeline.run(first, store)
    for copy in (again, trial):
        shutil.copyfile(store, copy)
    seen: dict = {}
    score_with_parts, stored_rows = scoring.score_with_parts, pipeline._stored_rows

    def spy(*args, known=None, unchanged=None, **kw):
        out = score_with_parts(*args, known=known, unchanged=unchanged, **kw)
        # same: found unchanged by their digests; skipped: not even gathered (no mention or entity of theirs
        # changed: linkage.graph.incremental.unchanged_clusters)
        seen.update(args=args, now=kw["now"], known=dict(known or {}), same=list(unchanged or []),
                    skipped=set(kw.get("skip") or ()), scored=set(out[0]["cluster_id"].tolist()))
        return out

    def stored_spy(*args, **kw):
        out = stored_rows(*args, **kw)
        seen["reused"] = set(out["cluster_id"].tolist())
        return out

    monkeypatch.setattr(scoring, "score_with_parts", spy)
    monkeypatch.setattr(pipeline, "_stored_rows", stored_spy)
    # every re-clustered cluster gathered and its digest compared (the label below is changed by hand, not by
    # the resolver, which linkage.pipeline.watch_labels would see: the skip of clusters whose inputs did not
    # change is tested in test_pipeline_unchanged.py)
    monkeypatch.setattr(incremental, "unchanged_clusters", lambda *a, **kw: set())
    with EmbeddedStore(trial) as s:
        labels_before = dict(s.conn.execute("SELECT entity_id, label FROM entities").fetchall())
    pipeline.run(second, trial)
    assert seen["same"] and set(seen["same"]) <= set(seen["known"]) and not set(seen["same"]) & seen["scored"]
    assert not seen["skipped"]
    assert set(seen["same"]) & seen["reused"]  # re-clustered, inputs unchanged: the stored row is taken
    # a cluster that kept its inputs, and an entity of its relations that round two left as it was, whose
    # label the cluster's stored signals name
    clusters, reports, mentions, links, entities = seen["args"][:5]
    g = scoring._gather(clusters, reports, mentions, links, entities, seen["now"], scoring.as_policy(None))
    with EmbeddedStore(trial) as s:
        labels_after = dict(s.conn.execute("SELECT entity_id, label FROM entities").fetchall())
        members = s.report_clusters()
        signals = dict(s.conn.execute("SELECT cluster_id, signals FROM clusters").fetchall())
    picked = None
    for cid in seen["same"]:
        first_report = min(clusters.loc[clusters["cluster_id"] == cid, "report_id"].astype(str))
        text = signals[members.loc[members["report_id"] == first_report, "cluster_id"].iloc[0]]
        related = sorted({e for rel in ("residence", "directs", "located", "uses")
                          for pair in g.relations[rel].get(cid, ()) for e in pair})
        for e in related:
            label = labels_before.get(e)
            if label and labels_after.get(e) == label and json.dumps(label, ensure_ascii=False)[1:-1] in text:
                picked = (cid, e, label, first_report)
                break
        if picked:
            break
    assert picked is not None, "no re-clustered cluster with unchanged inputs names an entity by its label"
    cid, entity, label, first_report = picked
    for path in (store, again):
        with EmbeddedStore(path) as s:
            s.conn.execute("UPDATE entities SET label = ? WHERE entity_id = ?", ("Relabelled Entity", entity))
            if path == again:
                s.conn.execute("DELETE FROM graph_state")
    pipeline.run(second, store)
    assert cid in seen["known"] and cid not in seen["same"] and cid in seen["scored"]
    assert set(seen["same"]) & seen["reused"]
    monkeypatch.undo()
    pipeline.run(second, again)
    with EmbeddedStore(store) as a, EmbeddedStore(again) as b:
        assert a.conn.execute("SELECT label FROM entities WHERE entity_id = ?", (entity,)).fetchone()[0] == \
            "Relabelled Entity"
        row = a.conn.execute("SELECT c.signals FROM clusters c JOIN report_clusters m USING (cluster_id) "
                             "WHERE m.report_id = ?", (first_report,)).fetchone()
        assert "Relabelled Entity" in row[0]  # that cluster's own row names the new label
        for table in ("clusters", "report_clusters", "status_inputs"):
            pd.testing.assert_frame_equal(a.frame(f"SELECT * FROM {table} ORDER BY 1"),
                                          b.frame(f"SELECT * FROM {table} ORDER BY 1"))


# --- blocks that outgrow their caps (issue 6: incremental = full) ------------------------------------------
def _outgrow_case(seed: int, n: int = 700):
    """Records whose blocks cross every kind of cap when the involved ones are added: window rules with small
    ``max_block`` (and runs of records without an ``order_by`` value past ``incomplete_block``), fuzzy and
    ``pair_with_empty`` groups past ``max_pairs``."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "mention_id": [f"m{i:04d}" for i in range(n)],
        "s": rng.choice(["jansen", "janssen", "jansens", "vries", "visser", "", "bakker"], n),
        "i": rng.choice(["a", "b", ""], n, p=[0.45, 0.45, 0.1]),
        "y": rng.choice(["1980", "1981", ""], n),
        "o": rng.choice(list("pqrstu") + [""], n),
        "p": rng.choice(list("xyz") + [""], n),
    })
    rules = [BlockingRule("sy", ("s", "y"), max_block=12, window=3, order_by=("o", "p"), incomplete_block=8),
             BlockingRule("si", ("s", "i"), max_block=25, window=5, order_by=("p",)),
             BlockingRule("fuzzy", ("i",), fuzzy_key="s", max_pairs=2500),
             BlockingRule("blank", ("s",), pair_with_empty="i", max_pairs=1000),
             BlockingRule("everyone", (), fuzzy_key="s", max_pairs=9000)]
    involving = np.zeros(n, dtype=bool)
    involving[rng.choice(n, 60, replace=False)] = True
    return df, rules, involving


def _keys(left: np.ndarray, right: np.ndarray, n: int) -> set[int]:
    return set((np.minimum(left, right) * n + np.maximum(left, right)).tolist())


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_outgrown_pairs_are_the_earlier_pairs_a_blocking_of_everything_no_longer_makes(seed):
    """Per rule: the pairs between earlier records that blocking them alone makes and blocking everything does
    not, with the bits of the rules that lost them; the pairs involving a new record are block_involving's."""
    from linkage.blocking import block_involving_outgrown

    df, rules, involving = _outgrow_case(seed)
    n = len(df)
    order = df["mention_id"].to_numpy(object)
    earlier = np.flatnonzero(~involving)
    lost_by: dict[int, int] = {}
    per_rule = []
    for j, rule in enumerate(rules):
        whole, _ = block(df, [rule])
        alone, _ = block(df.iloc[earlier].reset_index(drop=True), [rule])
        made_before = _keys(earlier[alone.left], earlier[alone.right], n)
        both_earlier = ~involving[whole.left] & ~involving[whole.right]
        assert _keys(whole.left[both_earlier], whole.right[both_earlier], n) <= made_before  # never adds one
        lost = made_before - _keys(whole.left, whole.right, n)
        per_rule.append(len(lost))
        for key in lost:
            lost_by[key] = lost_by.get(key, 0) | (1 << j)
        for hashes in (None, block_key_hashes(df, [rule])):
            _, _, (keys, masks) = block_involving_outgrown(df, [rule], involving, order, hashes=hashes)
            assert set(keys.tolist()) == lost and set(masks.tolist()) <= {1}
    assert lost_by and (seed != 3 or all(per_rule))  # with seed 3 every kind of cap bites
    for hashes in (None, block_key_hashes(df, rules)):
        cand, _, (keys, masks) = block_involving_outgrown(df, rules, involving, order, hashes=hashes)
        assert np.array_equal(keys, np.sort(keys)) and dict(zip(keys.tolist(), masks.tolist())) == lost_by
        want, _ = block_involving(df, rules, involving, order, hashes=hashes)
        assert np.array_equal(cand.left, want.left) and np.array_equal(cand.rule_mask, want.rule_mask)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_narrowed_pairs_finds_the_pairs_and_the_outgrown_pairs_of_a_blocking_of_everything(seed):
    """The incremental blocking (coded columns; fuzzy and pair_with_empty groups paired only where they hold an
    involved record, counted with and without the involved ones) gives the pairs and the lost earlier pairs
    with their rule bits that blocking everything gives, whether or not the hashes collide."""
    from linkage.blocking import block_involving_outgrown
    from linkage.resolve.incremental import narrowed_pairs

    df, rules, involving = _outgrow_case(seed)
    n = len(df)
    order = df["mention_id"].to_numpy(object)
    want, _, (keys, masks) = block_involving_outgrown(df, rules, involving, order)
    assert len(keys)
    for collide in (False, True):
        hashes = block_key_hashes(df, rules)
        if collide:
            hashes = np.where(hashes != 0, np.uint64(7), np.uint64(0))
        got = narrowed_pairs(df, rules, hashes, involving, order)
        assert np.array_equal(got.left * n + got.right, want.left * n + want.right)
        assert np.array_equal(got.rule_mask, want.rule_mask)
        assert np.array_equal(got.lost_left * n + got.lost_right, keys) and np.array_equal(got.lost_mask, masks)


def test_group_rules_pair_alike_through_codes_and_through_key_strings():
    """A key value holding a character at or below the key separator makes the codes unusable: the fuzzy and
    pair_with_empty rules then take the key-string path and give the same pairs and lost pairs."""
    from linkage.blocking import KEY_SEP, block_involving_outgrown

    df, rules, involving = _outgrow_case(2)
    low = df.copy()
    low["s"] = low["s"].where(low["s"] != "vries", "vr" + KEY_SEP + "ies")
    low["i"] = low["i"].where(low["i"] != "b", "b" + KEY_SEP)
    order = df["mention_id"].to_numpy(object)
    a = block_involving_outgrown(df, rules, involving, order)
    b = block_involving_outgrown(low, rules, involving, order)
    assert np.array_equal(a[0].left, b[0].left) and np.array_equal(a[0].rule_mask, b[0].rule_mask)
    assert np.array_equal(a[2][0], b[2][0]) and np.array_equal(a[2][1], b[2][1])


@pytest.fixture()
def small_caps(tmp_path, monkeypatch) -> Path:
    """The packaged ER settings with every cap lowered (blocks of 5, runs of 8, groups of 30 pairs), so that on
    a small generated set many blocks outgrow their caps between rounds (as the packaged caps do at 100,000)."""
    import re

    from linkage.er_settings import DEFAULT_ER_SETTINGS

    text = DEFAULT_ER_SETTINGS.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^max_block = \d+", "max_block = 5", text)
    text = re.sub(r"(?m)^incomplete_block = \d+", "incomplete_block = 8", text)
    text = re.sub(r"(?m)^max_pairs = \d+", "max_pairs = 30", text)
    path = tmp_path / "er_small_caps.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("LINKAGE_ER_SETTINGS", str(path))
    return path


def _same_result(a: Path, b: Path) -> dict[str, int]:
    """Both stores hold the same scored pairs (ids, weights, decisions), the same entities (as groups of mentions)
    and the same clusters (as groups of reports). Returns the pair count per type."""
    from linkage.report.explore import er_pairs

    with EmbeddedStore(a) as x, EmbeddedStore(b) as y:
        pa, pb = (er_pairs(s).sort_values(["left_id", "right_id"]).reset_index(drop=True) for s in (x, y))
        pd.testing.assert_frame_equal(pa, pb)
        for frame, key, col in ((EmbeddedStore.mention_entities, "mention_id", "entity_id"),
                                (EmbeddedStore.report_clusters, "report_id", "cluster_id")):
            assert _partition(frame(x).set_index(key)[col]) == _partition(frame(y).set_index(key)[col])
        return pa.groupby("entity_type").size().to_dict()


def _frozen_full_run(files: list[Path], model_from: Path, store: Path) -> None:
    """One run over ``files`` with the model of ``model_from`` (frozen: no refit), no stored pairs or state."""
    from linkage.pipeline import run

    with EmbeddedStore(model_from) as a, EmbeddedStore(store) as b:
        b.set_meta("er_model", a.get_meta("er_model"))
    run(files, store)


def test_incremental_rounds_equal_one_full_run_when_blocks_outgrow_their_caps(small_caps, tmp_path):
    """Issue 6: several incremental rounds give the pairs, entities and clusters of one full run with the same
    (frozen) model, also when blocks outgrow their caps between rounds: the stored pairs a full run would not
    make (all-against-all pairs of a block now compared as a sorted neighbourhood, pairs pushed out of a
    window, groups past max_pairs) are dropped, and the entities they held together are clustered again."""
    from linkage.pipeline import run
    from linkage.resolve.incremental import load_state

    folder = tmp_path / "gen"
    generate(1500, 3, folder)
    rounds = _rounds(folder, tmp_path / "rounds", [900, 200, 200, 200])
    inc = tmp_path / "inc.db"
    dead = []
    for files in rounds:
        counts = run(files, inc).counts
        with EmbeddedStore(inc) as s:
            state = load_state(s.conn, json.loads(s.get_meta("er_model")))
            dead.append(sum(len(t.dead()) for t in state.types.values()))
    assert "er_touched_mentions" in counts  # the rounds after the first were incremental
    assert 0 < dead[1] < dead[-1]  # stored pairs died in every round
    full = tmp_path / "full.db"
    _frozen_full_run([f for r in rounds for f in r], inc, full)
    _same_result(inc, full)


def test_dead_pairs_past_their_share_are_written_out_and_the_result_stays_equal(small_caps, tmp_path, monkeypatch):
    """Once dead pairs pass ``COMPACT_DEAD_SHARE`` of a type's pairs, the run writes that type's pairs again
    without them (no rule-mask edits left); the rounds still equal one full run."""
    from linkage.pipeline import run
    from linkage.resolve import incremental
    from linkage.resolve.incremental import load_state

    monkeypatch.setattr(incremental, "COMPACT_DEAD_SHARE", 0.0)  # every round with a dead pair compacts
    folder = tmp_path / "gen"
    generate(1500, 3, folder)
    rounds = _rounds(folder, tmp_path / "rounds", [900, 200, 200])
    inc = tmp_path / "inc.db"
    for files in rounds:
        run(files, inc)
        with EmbeddedStore(inc) as s:
            state = load_state(s.conn, json.loads(s.get_meta("er_model")))
            n_masks = s.conn.execute("SELECT COUNT(*) FROM er_state WHERE part = 'masks'").fetchone()[0]
        assert state is not None and n_masks == 0
        assert sum(len(t.dead()) for t in state.types.values()) == 0
    full = tmp_path / "full.db"
    _frozen_full_run([f for r in rounds for f in r], inc, full)
    _same_result(inc, full)


def _keep_reports(files: list[Path], gone: set[str], out: Path) -> list[Path]:
    """Copies of report/mention files without the reports ``gone`` (and their mentions)."""
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for f in files:
        df = pd.read_csv(f, dtype=str, keep_default_na=False)
        df[~df["report_id"].isin(gone)].to_csv(out / f.name, index=False)
        kept.append(out / f.name)
    return kept


def test_after_a_purge_a_run_equals_one_full_run_on_what_is_left(small_caps, tmp_path):
    """Blocks shrink when a purge removes mentions: one that falls back under its cap is compared all against
    all again in a full run, a sorted neighbourhood brings records back into each other's window. The run after
    the purge (which re-uses the stored scores) compares exactly the pairs a full run on the remaining reports
    compares: the pairs a block's shrinking adds are scored, together with the new reports' pairs."""
    import datetime as dt

    from linkage.pipeline import run
    from linkage.retention import purge

    folder = tmp_path / "gen"
    generate(1500, 4, folder)
    rounds = _rounds(folder, tmp_path / "rounds", [900, 300, 300])
    inc = tmp_path / "inc.db"
    for files in rounds[:2]:
        run(files, inc)
    with EmbeddedStore(inc) as s:
        day = s.frame("SELECT substr(received_at, 1, 10) AS d FROM reports ORDER BY received_at LIMIT 1 OFFSET 300").d[0]
        summary = purge(s, 0, now=dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc), actor="test")
        gone = set(summary.report_ids)
        assert len(gone) > 200
    counts = run(rounds[2], inc).counts
    assert "er_touched_mentions" not in counts  # the state was unusable after the purge: the full path ran
    full = tmp_path / "full.db"
    left = [_keep_reports(r, gone, tmp_path / f"kept{k}") for k, r in enumerate(rounds)]
    _frozen_full_run([f for r in left for f in r], inc, full)
    _same_result(inc, full)


def test_a_state_of_the_previous_version_is_rebuilt_once_and_says_so(small_caps, tmp_path):
    """A version-1 state (pairs without rule masks) may hold pairs of blocks that outgrew a cap: it is not used;
    the run rebuilds it from the stored scores (every pair a full run makes, no other), says so in its counts,
    and equals a full run; the next run is incremental again."""
    from linkage.pipeline import run
    from linkage.resolve.incremental import STATE_VERSION, _npz, _npz_arrays

    folder = tmp_path / "gen"
    generate(1500, 5, folder)
    rounds = _rounds(folder, tmp_path / "rounds", [900, 300, 300])
    inc = tmp_path / "inc.db"
    run(rounds[0], inc)
    with EmbeddedStore(inc) as s:  # as the previous version wrote it
        for rowid, blob in s.conn.execute("SELECT rowid, data FROM er_state WHERE part = 'pairs'").fetchall():
            arrays = {k: v for k, v in _npz_arrays(blob).items() if k != "rule_mask"}
            s.conn.execute("UPDATE er_state SET data = ? WHERE rowid = ?", (_npz(arrays), rowid))
        meta = json.loads(s.get_meta("er_state"))
        assert meta["version"] == STATE_VERSION == 2
        s.set_meta("er_state", json.dumps({**meta, "version": 1}))
    counts = run(rounds[1], inc).counts
    assert counts.get("er_state_rebuilt") == 1 and "er_touched_mentions" not in counts
    full = tmp_path / "full.db"
    _frozen_full_run([f for r in rounds[:2] for f in r], inc, full)
    _same_result(inc, full)
    counts = run(rounds[2], inc).counts
    assert "er_state_rebuilt" not in counts and "er_touched_mentions" in counts


def _rows(store: Path) -> dict[str, list]:
    """Every row (rowid included) of the tables an incremental resolve writes, and the state's meta row."""
    with EmbeddedStore(store) as s:
        out = {t: sorted(s.conn.execute(f"SELECT rowid, * FROM {t}").fetchall(), key=repr)
               for t in ("mention_entities", "entities", "er_state")}
        out["meta"] = s.get_meta("er_state")
    return out


def _resolved_then_loaded(parts, store):
    """A store holding both parts, of which only the first is resolved (the second waits for a run)."""
    first, second = parts
    load_stage(first, store)
    with EmbeddedStore(store) as s:
        resolve_stage(s, load_settings(None))
    load_stage(second, store)
    return store


@pytest.mark.parametrize("broken,judged", [(False, False), (False, True), (True, False)])
def test_types_updated_in_a_forked_process_write_what_one_process_writes(parts, tmp_path, broken, judged):
    """With ``[resolve] processes = 2`` an incremental run updates the entity types in this process and a forked
    one (each reading its types' state through its own connection, encoding its writes); the store is the same
    row for row (rowids included) as with one process, also with judgements made since the last run. A type
    whose stored state is unusable sends both to the full path, which gives the same tables too."""
    import dataclasses
    import shutil

    from linkage.report.explore import er_pairs

    base = _resolved_then_loaded(parts, tmp_path / "base.db")
    with EmbeddedStore(base) as s:
        if broken:  # the address records no longer match the state's meta row
            s.conn.execute("DELETE FROM er_state WHERE entity_type = 'address' AND part = 'region'")
        if judged:
            pairs = er_pairs(s)
            pairs = pairs[pairs["matched"]].groupby("entity_type").head(1).reset_index(drop=True)
            assert len(pairs) >= 2
            for a, b in zip(pairs.left_id, pairs.right_id):
                record_judgement(s, a, b, "different", actor="test")
    counts = {}
    for processes in (1, 2):
        store = tmp_path / f"p{processes}.db"
        shutil.copyfile(base, store)
        settings = dataclasses.replace(load_settings(None), resolve_processes=processes,
                                       resolve_parallel_min_mentions=0)
        with EmbeddedStore(store) as s:
            counts[processes] = resolve_stage(s, settings)
    assert counts[1] == counts[2]
    assert ("touched_mentions" in counts[2]) != broken
    assert _rows(tmp_path / "p1.db") == _rows(tmp_path / "p2.db")


def test_forked_type_updates_stop_early_when_one_process_fails(parts, tmp_path, monkeypatch):
    """The forked process really updates types; when this process fails on its type, the worker takes no
    further type (the error comes out after at most the type it is on); when the worker fails, this process
    takes no further type either."""
    import dataclasses
    import os

    import linkage.resolve.incremental as inc

    store = _resolved_then_loaded(parts, tmp_path / "s.db")
    settings = dataclasses.replace(load_settings(None), resolve_processes=2, resolve_parallel_min_mentions=0)
    log = tmp_path / "log.txt"
    parent = os.getpid()
    real = inc._update_store_type

    def spy(job, etype, *args, fail_in=None):
        me = "parent" if os.getpid() == parent else "child"
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{me} {etype}\n")
        import time

        if me == fail_in:
            time.sleep(0.3)  # the other process is busy with its own type meanwhile
            raise RuntimeError(f"boom in {me}")
        if fail_in is not None:
            time.sleep(0.25)  # every type takes a while, as at scale
        return real(job, etype, *args)

    monkeypatch.setattr(inc, "_update_store_type", spy)
    import shutil

    shutil.copyfile(store, tmp_path / "ok.db")
    with EmbeddedStore(tmp_path / "ok.db") as s:
        resolve_stage(s, settings)
    done = log.read_text(encoding="utf-8").split("\n")
    assert any(line.startswith("child ") for line in done) and any(line.startswith("parent ") for line in done)
    n_types = len([line for line in done if line])
    for failing in ("parent", "child"):
        log.unlink()
        monkeypatch.setattr(inc, "_update_store_type",
                            lambda job, etype, *a, f=failing: spy(job, etype, *a, fail_in=f))
        shutil.copyfile(store, tmp_path / f"{failing}.db")
        with EmbeddedStore(tmp_path / f"{failing}.db") as s:
            with pytest.raises(RuntimeError, match=f"boom in {failing}"):
                resolve_stage(s, settings)
        started = [line for line in log.read_text(encoding="utf-8").split("\n") if line]
        assert len(started) <= 3 < n_types, started  # the failing type, the other's current one (and its next)


def test_an_incremental_run_writes_only_the_assignments_and_entities_that_changed(parts, tmp_path):
    """Of the touched mentions most keep their entity: their assignment rows and the rows of entities that stay
    as they were are not written again (same rowids); the tables hold what the full path writes, and the
    entity count returned is the stored one."""
    import shutil

    base = _resolved_then_loaded(parts, tmp_path / "base.db")
    with EmbeddedStore(base) as s:
        before_me = {m: (r, e) for r, m, e in s.conn.execute("SELECT rowid, mention_id, entity_id FROM mention_entities")}
        before_ent = {e[0]: (r, e) for r, *e in s.conn.execute("SELECT rowid, * FROM entities")}
    shutil.copyfile(base, tmp_path / "reread.db")
    with EmbeddedStore(base) as s:
        counts = resolve_stage(s, load_settings(None))
        assert counts["entities"] == s.count("entities")
        after_me = {m: (r, e) for r, m, e in s.conn.execute("SELECT rowid, mention_id, entity_id FROM mention_entities")}
        after_ent = {e[0]: (r, e) for r, *e in s.conn.execute("SELECT rowid, * FROM entities")}
    assert counts["touched_mentions"] > 0
    kept = [m for m, (r, e) in before_me.items() if after_me[m][1] == e]
    assert kept and all(after_me[m][0] == before_me[m][0] for m in kept)
    same = [e for e, (r, row) in before_ent.items() if e in after_ent and after_ent[e][1] == row]
    assert same and all(after_ent[e][0] == before_ent[e][0] for e in same)
    assert set(after_me) > set(before_me)
    with EmbeddedStore(tmp_path / "reread.db") as s:  # the full path over the stored pairs: every row written
        s.conn.execute("DELETE FROM meta WHERE key = 'er_state'")
        assert "touched_mentions" not in resolve_stage(s, load_settings(None))
    _assert_same_tables(base, tmp_path / "reread.db")


def test_stored_entities_reads_ids_of_any_text(tmp_path):
    """The stored entity of each mention id, None for one without; ids with quotes, non-ASCII characters,
    characters beyond the BMP, and a NUL (read another way) all found."""
    from linkage.resolve.incremental import stored_entities

    ids = ['m"1', "m\\2", "mé3", "m😀4", "m\x005", "m\n6"]
    with EmbeddedStore(tmp_path / "s.db") as s:
        with s.transaction():
            s.conn.executemany("INSERT INTO mention_entities(mention_id, entity_id, entity_type) VALUES (?, ?, ?)",
                               [(m, f"E{i}", "person") for i, m in enumerate(ids)])
        lookup = stored_entities(s)
        asked = np.array(ids[::-1] + ["missing", ids[0]], dtype=object)
        assert lookup(asked[:-1][asked[:-1] != "m\x005"]).tolist() == ["E5", "E3", "E2", "E1", "E0", None]
        assert lookup(asked).tolist() == ["E5", "E4", "E3", "E2", "E1", "E0", None, "E0"]


def test_a_type_state_read_mapped_is_the_one_read_page_by_page(parts, tmp_path, monkeypatch):
    """load_type_state reads the blobs with the store file memory-mapped (PRAGMA mmap_size while reading): the
    state is the same as read without a mapping, and the connection's own setting is put back after; inside
    the caller's transaction nothing is mapped (the setting is left as it is)."""
    import linkage.resolve.incremental as inc

    first, second = parts
    _two_runs(first, second, tmp_path / "m.db")
    with EmbeddedStore(tmp_path / "m.db") as s:
        meta = inc.state_meta(s.conn, json.loads(s.get_meta("er_model")))
        said: list[str] = []
        s.conn.set_trace_callback(said.append)
        s.conn.execute("PRAGMA mmap_size=0")
        mapped = {t: inc.load_type_state(s.conn, t, meta) for t in meta["n"]}
        assert said.count(f"PRAGMA mmap_size={inc.STATE_READ_MMAP}") == len(meta["n"])  # a mapping per type read
        assert s.conn.execute("PRAGMA mmap_size").fetchone()[0] == 0  # put back
        said.clear()
        monkeypatch.setattr(inc, "STATE_READ_MMAP", 0)  # at or below the setting: no mapping made
        plain = {t: inc.load_type_state(s.conn, t, meta) for t in meta["n"]}
        assert not [q for q in said if q.startswith("PRAGMA mmap_size=")]
        monkeypatch.undo()
        s.conn.execute("BEGIN")
        said.clear()
        assert inc.load_type_state(s.conn, "person", meta) is not None
        assert not [q for q in said if q.startswith("PRAGMA mmap_size=")]  # in the caller's transaction: as is
        s.conn.execute("COMMIT")
        s.conn.set_trace_callback(None)
    assert set(mapped) == set(plain) and all(ts is not None for ts in mapped.values())
    for t in mapped:
        a, b = mapped[t], plain[t]
        assert a.records.equals(b.records) and np.array_equal(a.region, b.region)
        assert sorted(a.pairs) == sorted(b.pairs) and all(np.array_equal(a.pairs[f], b.pairs[f]) for f in a.pairs)
        assert (a.keys is None) == (b.keys is None) and (a.keys is None or np.array_equal(a.keys, b.keys))


def _stats_case(seed: int):
    """:func:`_outgrow_case` with its earlier records first (block statistics cover a type's first records),
    one more ``pair_with_empty`` rule whose blocks sit around their cap, and a surname only added records
    have (a block that is new in the run)."""
    df, rules, involving = _outgrow_case(seed)
    rng = np.random.default_rng(seed)
    new = np.flatnonzero(involving)
    df.loc[new[rng.random(len(new)) < 0.15], "s"] = "nieuw"
    order = np.r_[np.flatnonzero(~involving), new]
    df, involving = df.iloc[order].reset_index(drop=True), involving[order]
    rules = rules + [BlockingRule("blank_sy", ("s", "y"), pair_with_empty="i", max_pairs=100)]
    return df, rules, involving


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("hashing", ["exact", "one_hash", "mod_3", "new_block_shares_a_capped_hash"])
def test_block_statistics_leave_out_only_blocks_that_make_and_lose_no_pair(seed, hashing):
    """With the block statistics of the earlier records (:func:`block_stats`, as the stored state keeps them)
    the incremental blocking leaves out pair_with_empty blocks without an empty-column record and blocks that
    were over their cap, and still gives the pairs and lost pairs with their rule bits that blocking
    everything gives: also when blocks grow past their cap, when hashes collide (all in one; a few), and when
    an added record's new block shares the hash of a capped block."""
    from linkage.blocking import block_involving_outgrown
    from linkage.resolve.incremental import block_stats, extend_block_stats, narrowed_pairs, skip_hashes

    df, rules, involving = _stats_case(seed)
    n, n_old = len(df), int((~involving).sum())
    order = df["mention_id"].to_numpy(object)
    want, _, (keys, masks) = block_involving_outgrown(df, rules, involving, order)
    hashes = block_key_hashes(df, rules)
    if hashing == "one_hash":
        hashes = np.where(hashes != 0, np.uint64(7), np.uint64(0))
    elif hashing == "mod_3":
        hashes = np.where(hashes != 0, hashes % np.uint64(3) + np.uint64(1), np.uint64(0))
    stats = block_stats(df.iloc[:n_old], rules, hashes[:n_old])
    if hashing == "new_block_shares_a_capped_hash":  # the added surname's blocks take capped blocks' hashes
        for j, (capped, _) in stats.capped.items():
            if len(capped):
                hashes[(df["s"] == "nieuw").to_numpy() & (hashes[:, j] != 0), j] = capped[0]
    skipped = skip_hashes(df, rules, hashes, np.flatnonzero(involving), stats)
    got = narrowed_pairs(df, rules, hashes, involving, order, skip=skipped)
    assert np.array_equal(got.left * n + got.right, want.left * n + want.right)
    assert np.array_equal(got.rule_mask, want.rule_mask)
    assert np.array_equal(got.lost_left * n + got.lost_right, keys) and np.array_equal(got.lost_mask, masks)
    if hashing == "exact":
        assert sum(len(s) for s in skipped.values()) > 0  # some blocks were left out
        assert all(len(c) for c, _ in stats.capped.values())
    if hashing == "one_hash":  # one hash holds several blocks: none taken for a capped block
        assert all(not len(c) for c, _ in stats.capped.values())
    if hashing == "new_block_shares_a_capped_hash":
        for j, (capped, _) in stats.capped.items():
            if len(capped):
                assert capped[0] not in skipped.get(j, ())
    # the statistics extended by the added records equal those made over all records (capped: a subset)
    grown, added = extend_block_stats(stats, df, rules, hashes, n_old)
    whole = block_stats(df, rules, hashes)
    assert grown.n == whole.n == n and set(grown.blank) == set(whole.blank) == {3, 5}
    for j in whole.blank:
        assert np.array_equal(grown.blank[j], whole.blank[j])
        assert set(added[j].tolist()) <= set(whole.blank[j].tolist())
        before = dict(zip(*[a.tolist() for a in stats.capped[j]]))
        after = dict(zip(*[a.tolist() for a in whole.capped[j]]))
        assert all(h in after for h in before if h not in set(hashes[n_old:, j].tolist()))


def test_block_statistics_take_no_hash_of_two_keys_for_one_capped_block():
    """A hash over its cap whose records have two keys is not a capped block, even when one of them alone is."""
    from linkage.resolve.incremental import block_stats

    df = pd.DataFrame({"s": ["a"] * 6 + ["b"], "f": ["", "", "", "x", "x", "x", ""]})
    rules = [BlockingRule("r", ("s",), pair_with_empty="f", max_pairs=10)]
    hashes = block_key_hashes(df, rules)
    stats = block_stats(df, rules, hashes)
    assert stats.capped[0][0].tolist() == [hashes[0, 0]] and stats.capped[0][1].tolist() == [0]
    hashes[:, 0] = 5  # "a" and "b" share a hash
    stats = block_stats(df, rules, hashes)
    assert not len(stats.capped[0][0]) and stats.blank[0].tolist() == [5]


def test_a_state_without_block_statistics_makes_them_once_and_gives_the_same_result(parts, tmp_path):
    """A stored state without block statistics (made before they were kept) gives the result of one with them;
    the run makes them once and stores them whole, a run with them appends what its records added."""
    import sqlite3

    first, second = parts

    def forget_stats(store: Path):
        with EmbeddedStore(store) as s:
            assert s.conn.execute("SELECT COUNT(*) FROM er_state WHERE entity_type = 'person' AND part = 'bstats'"
                                  ).fetchone()[0] == 1
            s.conn.execute("DELETE FROM er_state WHERE part = 'bstats'")

    counts = _two_runs(first, second, tmp_path / "nostats.db", between=forget_stats)
    assert "touched_mentions" in counts  # still incremental
    _two_runs(first, second, tmp_path / "stats.db")
    _assert_same_tables(tmp_path / "nostats.db", tmp_path / "stats.db")
    for name, seqs in (("nostats.db", [0]), ("stats.db", [0, 1])):
        con = sqlite3.connect(tmp_path / name)
        assert [r[0] for r in con.execute("SELECT seq FROM er_state WHERE entity_type = 'person' AND part = 'bstats' "
                                          "ORDER BY seq")] == seqs
        con.close()
        with EmbeddedStore(tmp_path / name) as s:
            ts = load_state(s.conn, json.loads(s.get_meta("er_model"))).types["person"]
            assert ts.block_stats is not None and ts.block_stats.n == len(ts.records)


def test_a_run_with_a_judgement_alone_keeps_the_block_statistics(parts, tmp_path):
    """A run that adds no record (a new judgement only) writes no block-statistics chunk: the kept ones still
    cover every record and the next run uses them."""
    import sqlite3

    from linkage.report.explore import er_pairs

    first, second = parts
    store = tmp_path / "j.db"
    _two_runs(first, second, store)
    with EmbeddedStore(store) as s:
        pairs = er_pairs(s)
        pairs = pairs[pairs["matched"] & (pairs["entity_type"] == "person")].head(1).reset_index(drop=True)
        record_judgement(s, pairs.left_id[0], pairs.right_id[0], "different", actor="test")
        counts = resolve_stage(s, load_settings(None))
    assert "touched_mentions" in counts
    con = sqlite3.connect(store)
    assert [r[0] for r in con.execute("SELECT seq FROM er_state WHERE entity_type = 'person' AND part = 'bstats' "
                                      "ORDER BY seq")] == [0, 1]
    con.close()
    with EmbeddedStore(store) as s:
        ts = load_state(s.conn, json.loads(s.get_meta("er_model"))).types["person"]
        assert ts.block_stats is not None and ts.block_stats.n == len(ts.records)


def _halves(files: list[Path], out: Path) -> tuple[list[Path], list[Path]]:
    """A (reports, mentions) file pair split into two by reports, in file order."""
    reports = pd.read_csv(files[0], dtype=str, keep_default_na=False)
    mentions = pd.read_csv(files[1], dtype=str, keep_default_na=False)
    head = set(reports.report_id.iloc[: len(reports) // 2])
    out.mkdir(parents=True, exist_ok=True)
    halves = []
    for name, keep in (("x", True), ("y", False)):
        reports[reports.report_id.isin(head) == keep].to_csv(out / f"reports_{name}.csv", index=False)
        mentions[mentions.report_id.isin(head) == keep].to_csv(out / f"mentions_{name}.csv", index=False)
        halves.append([out / f"reports_{name}.csv", out / f"mentions_{name}.csv"])
    return halves[0], halves[1]


def test_block_statistics_that_do_not_cover_every_record_are_made_again(parts, tmp_path):
    """Statistics short of the type's records (what a run of a version that does not keep them leaves: the last
    chunk missing) are not used: the next run makes them whole again, and its tables are those of a run
    whose statistics were kept all along."""
    import sqlite3

    first, second = parts
    a, b = _halves(second, tmp_path / "halves")
    settings = load_settings(None)

    def rounds(store: Path, cut: bool) -> None:
        for i, files in enumerate((first, a, b)):
            load_stage(files, store)
            if i == 2 and cut:
                with EmbeddedStore(store) as s:
                    top = s.conn.execute("SELECT MAX(seq) FROM er_state WHERE entity_type = 'person' "
                                         "AND part = 'bstats'").fetchone()[0]
                    assert top == 1  # the full run's chunk and the first update's
                    s.conn.execute("DELETE FROM er_state WHERE entity_type = 'person' AND part = 'bstats' "
                                   "AND seq = ?", (top,))
            with EmbeddedStore(store) as s:
                counts = resolve_stage(s, settings)
            assert i == 0 or "touched_mentions" in counts  # incremental after the first

    rounds(tmp_path / "cut.db", cut=True)
    rounds(tmp_path / "kept.db", cut=False)
    _assert_same_tables(tmp_path / "cut.db", tmp_path / "kept.db")
    con = sqlite3.connect(tmp_path / "cut.db")
    assert [r[0] for r in con.execute("SELECT seq FROM er_state WHERE entity_type = 'person' AND part = 'bstats' "
                                      "ORDER BY seq")] == [0]  # made again, whole
    con.close()
    with EmbeddedStore(tmp_path / "cut.db") as s:
        ts = load_state(s.conn, json.loads(s.get_meta("er_model"))).types["person"]
        assert ts.block_stats is not None and ts.block_stats.n == len(ts.records)


def test_persons_without_any_birth_date_resolve_in_full_and_incremental_runs(parts, tmp_path):
    """A rule whose key no record has (no birth dates at all, for the rules keyed on it): the full run keeps
    statistics without blocks for it, an incremental run works them in, and the result is a full run's."""
    def without_birth_dates(files: list[Path], out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        mentions = pd.read_csv(files[1], dtype=str, keep_default_na=False)
        mentions["birth_date"] = ""
        mentions.to_csv(out / "mentions.csv", index=False)
        return [files[0], out / "mentions.csv"]

    first, second = parts
    first, second = (without_birth_dates(f, tmp_path / n) for f, n in ((first, "a"), (second, "b")))
    counts = _two_runs(first, second, tmp_path / "inc.db")
    assert "touched_mentions" in counts
    _two_runs(first, second, tmp_path / "full.db", drop_state=True)
    _assert_same_tables(tmp_path / "inc.db", tmp_path / "full.db")


def test_order_rank_of_ids_in_order_or_not_is_their_sorted_position():
    """Ids already strictly increasing (a store's records) are ranked without a sort; others are sorted; equal
    ids are reported either way."""
    from linkage.resolve.incremental import _order_rank_checked

    ids = pd.concat([pd.Series(["m01", "m02", "m10"], dtype="str"), pd.Series(["m11", "m2"], dtype="str")],
                    ignore_index=True)
    for given in (ids, ids.to_numpy(dtype=object), ids.iloc[::-1].reset_index(drop=True), ids.iloc[:4]):
        rank, dup = _order_rank_checked(given)
        values = list(given.tolist() if hasattr(given, "tolist") else given)
        assert rank.tolist() == [sorted(values).index(v) for v in values] and not dup
    assert _order_rank_checked(pd.Series(["a", "b", "b"], dtype="str"))[1]
    assert _order_rank_checked(np.array(["a", "b", "a"], dtype=object))[1]
    assert _order_rank_checked(np.array(["a"], dtype=object))[0].tolist() == [0]


def test_id_sets_as_json_or_a_temporary_table_select_the_same_rows(tmp_path):
    """_in_ids passes ids as one json_each parameter, or (an id holding a NUL) through a temporary table: the
    same rows either way."""
    import sqlite3

    from linkage.resolve.incremental import _in_ids

    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER)")
    ids = ["b", "a", "é", "c\x00d", "zz"]
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, k) for k, i in enumerate(ids)])
    for wanted in (["a", "é", "b", "nope"], ["c\x00d", "a"], []):
        sql, params = _in_ids(conn, "tmp_ids", wanted)
        assert (params == ()) == any("\x00" in w for w in wanted)
        got = conn.execute(f"SELECT id, v FROM t WHERE id IN {sql} ORDER BY id", params).fetchall()
        assert got == sorted((i, ids.index(i)) for i in set(wanted) if i in ids)


def test_records_taken_from_the_stored_and_new_halves_are_the_joined_rows():
    """_take_records takes increasing rows from the stored records and the new ones apart: the same frame as
    a take from the two joined (rows in any order, only stored or only new rows, none)."""
    from linkage.resolve.incremental import _take_records

    rng = np.random.default_rng(6)
    words = np.array(["jansen", "", "él", None], dtype=object)
    first = pd.DataFrame({"a": pd.Series(words[rng.integers(0, 4, 30)], dtype="str"), "n": np.arange(30)})
    second = pd.DataFrame({"a": pd.Series(words[rng.integers(0, 4, 5)], dtype="str"), "n": np.arange(30, 35)})
    both = pd.concat([first, second], ignore_index=True)
    for rows in (np.array([1, 4, 29, 30, 34]), np.arange(10), np.arange(31, 35), np.array([33, 2, 31]),
                 np.array([], dtype=np.int64)):
        got = _take_records(both, rows, (first, second))
        assert got.equals(both.iloc[rows].reset_index(drop=True)) and (got.dtypes == both.dtypes).all()


def test_id_sets_given_once_as_a_generator_select_their_rows_with_a_nul_too():
    """_in_ids reads its ids twice when one holds a NUL (JSON, then a temporary table): a generator works."""
    import sqlite3

    from linkage.resolve.incremental import _in_ids

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("a\x00b",), ("a",), ("c",)])
    for ids in (["a\x00b", "a"], ["a", "c"]):
        sql, params = _in_ids(conn, "er_x", (i for i in ids))
        assert sorted(r[0] for r in conn.execute(f"SELECT id FROM t WHERE id IN {sql}", params)) == sorted(ids)


def test_write_cache_grows_the_page_cache_and_mapping_inside_and_puts_them_back(tmp_path):
    """_write_update's writes run with a larger page cache and a mapping of the store file; the connection's
    own settings come back afterwards, also when the block raises."""
    import sqlite3

    from linkage.resolve import incremental as inc

    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA cache_size=-2000")
    before_map = conn.execute("PRAGMA mmap_size").fetchone()[0]
    with inc._write_cache(conn):
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -inc.WRITE_CACHE_KIB
        inside = conn.execute("PRAGMA mmap_size").fetchone()[0]
        assert inside > before_map or inside == 0  # mapped (SQLite caps it at its build's limit; 0: maps nothing)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("COMMIT")
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -2000
    assert conn.execute("PRAGMA mmap_size").fetchone()[0] == before_map
    with pytest.raises(RuntimeError):
        with inc._write_cache(conn):
            raise RuntimeError("boom")
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -2000
    conn.execute(f"PRAGMA cache_size=-{2 * inc.WRITE_CACHE_KIB}")  # already larger: left as it is
    with inc._write_cache(conn):
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -2 * inc.WRITE_CACHE_KIB
    assert conn.execute("PRAGMA cache_size").fetchone()[0] == -2 * inc.WRITE_CACHE_KIB
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    conn.close()


def test_ids_mapped_through_a_list_equal_what_pandas_map_gives():
    from linkage.resolve.incremental import _mapped_values

    rng = np.random.default_rng(7)
    ids = [f"e{i:04x}" for i in rng.integers(0, 500, size=2_000)]
    mapping = {v: f"{v}.{k}" for k, v in enumerate(sorted(set(ids))) if k % 7}  # some ids not among the keys
    for column in (pd.Series(ids, dtype="str", index=rng.permutation(len(ids)), name="entity_id"),
                   pd.Series(ids, dtype=object), pd.Series([None, "e0001"], dtype="str"),
                   pd.DataFrame(columns=["entity_id"])["entity_id"]):
        got, want = _mapped_values(column, mapping), column.map(mapping)
        assert got.equals(want) and got.dtype == want.dtype and got.name == want.name
        assert got.index.equals(want.index)
    assert _mapped_values(pd.Series(["a", "b"], dtype="str"), {"a": "x"}).tolist()[0] == "x"
    # Where pandas infers another dtype than the column's, the result is still pandas' own.
    class Defaulting(dict):
        def __missing__(self, key):
            return "default"

    for column, mapping in ((pd.Series(["a", "b"], dtype="string[pyarrow]"), {"a": "x"}),
                            (pd.Series(["a", "b"], dtype="string[python]"), {"a": "x"}),
                            (pd.Series(["a", "b"], dtype="str"), {}), (pd.Series(["a", "b"], dtype="str"), {"a": 5}),
                            (pd.Series(["a", "b"], dtype="str"), Defaulting(a="x"))):
        got, want = _mapped_values(column, mapping), column.map(mapping)
        pd.testing.assert_series_equal(got, want)


@pytest.mark.parametrize("text", ["string", "large_string"])
def test_update_changed_gives_the_same_for_either_text_type_of_the_kept_incidence(text):
    """A kept incidence of ``large_string`` columns (as a stored state reads back) or of ``string`` columns,
    and changed rows of either type: the same clusters, region, region rows and unchanged clusters (the long
    columns are looked up in their own type, the short value sets cast to it)."""
    import pyarrow as pa

    from linkage.graph.incremental import update_changed, update_clusters

    rng = np.random.default_rng(4)
    settings = {"hub_max_reports": 6}
    mentions = _graph_world(rng)
    state = update_clusters(None, mentions, None, seed=4, settings=settings).state
    inc = state.incidence
    kind = getattr(pa, text)()
    state.incidence = inc.cast(pa.schema([pa.field(f.name, kind if pa.types.is_string(f.type)
                                                   or pa.types.is_large_string(f.type) else f.type)
                                          for f in inc.schema]))
    new = _graph_world(rng, n_groups=6, prefix="N-")
    moved = mentions.sample(frac=0.05, random_state=4).index
    mentions = mentions.copy()
    mentions.loc[moved, "entity_id"] = "HUB0"
    mentions = pd.concat([mentions, new], ignore_index=True)
    changed_ids = mentions.loc[moved, "mention_id"].tolist() + new["mention_id"].tolist()
    changed = mentions[mentions["mention_id"].isin(changed_ids)]
    got = update_changed(state, changed, changed_ids, seed=4, settings=settings, n_resolved=len(mentions),
                         relabelled={"HUB0"})
    want = update_clusters(None, mentions, None, seed=4, settings=settings)
    assert got is not None and not got.everything
    pd.testing.assert_frame_equal(got.clusters, want.clusters)
    # the patched incidence holds every resolved mention's row once
    assert sorted(got.state.incidence.column("mention_id").to_pylist()) == sorted(mentions["mention_id"])
    region = set(got.region.tolist())
    assert set(got.region_rows.column("report_id").to_pylist()) <= region
    assert got.same_inputs <= set(got.clusters["cluster_id"])
