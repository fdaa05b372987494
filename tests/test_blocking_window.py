"""The incremental blocking pairs only what involves the involved records and finds the lost earlier pairs
near them: a window rule (a block compared all against all, or as a sorted neighbourhood over ``max_block``,
with ``incomplete_block`` runs; linkage.blocking._window_involving), a fuzzy or ``pair_with_empty`` rule
(_group_involving: only the pairs of two groups, or of an empty-column record and its block, with an involved
record). Each gives what pairing the whole blocks and diffing gives (pairs, rule masks, lost pairs, report),
and what blocking everything gives."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import linkage.blocking as blocking
from linkage.blocking import block, block_involving_outgrown
from linkage.er_settings import BlockingRule
from linkage.resolve.incremental import block_key_hashes


def _case(seed: int, groups: bool = False):
    """Small random records with few key values (big blocks), order values with empties (some missing), random
    caps; with ``groups`` fuzzy and ``pair_with_empty`` rules among them."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 260))
    df = pd.DataFrame({
        "mention_id": [f"m{i:04d}" for i in rng.permutation(n)],
        "k": rng.choice(["a", "b", "c", ""], n, p=[0.5, 0.25, 0.15, 0.1]),
        "g": rng.choice(["x", "y"], n),
        "o": rng.choice(list("pqrs") + [""], n),
        "p": rng.choice(list("uv") + [""], n),
        "s": rng.choice(["jansen", "janssen", "jansens", "jansn", "vries", "fries", "", "bakker"], n),
    })
    if seed % 5 == 4:  # missing order values (they sort first; the whole-block path fails on missing key values)
        df.loc[rng.random(n) < 0.1, "o"] = None
    rules = []
    for r in range(int(rng.integers(1, 4))):
        keys = [("k",), ("k", "g"), ("g",)][int(rng.integers(0, 3))]
        order_by = [(), ("o",), ("o", "p"), ("p", "missing")][int(rng.integers(0, 4))]
        kind = int(rng.integers(0, 3)) if groups else 0
        if kind == 1:
            rules.append(BlockingRule(f"r{r}", keys if rng.random() < 0.8 else (), fuzzy_key="s",
                                      max_pairs=int(rng.choice([5, 40, 300, 3000]))))
        elif kind == 2:
            rules.append(BlockingRule(f"r{r}", keys, pair_with_empty=str(rng.choice(["o", "p"])),
                                      max_pairs=int(rng.choice([5, 40, 300, 3000]))))
        else:
            rules.append(BlockingRule(f"r{r}", keys, max_block=int(rng.integers(1, 30)),
                                      window=int(rng.integers(0, 12)), order_by=order_by,
                                      incomplete_block=int(rng.choice([0, 0, 3, 10, 40]))))
    involving = rng.random(n) < float(rng.choice([0.02, 0.1, 0.3, 0.7]))
    if not involving.any():
        involving[int(rng.integers(0, n))] = True
    return df, rules, involving


def _keys(left, right, n):
    return set((np.minimum(left, right).astype(np.int64) * n + np.maximum(left, right)).tolist())


@pytest.mark.parametrize("groups", [False, True])
@pytest.mark.parametrize("seed", range(0, 200))
def test_rules_pair_and_lose_as_whole_blocks_and_as_blocking_everything(seed, groups, monkeypatch):
    df, rules, involving = _case(seed, groups)
    n = len(df)
    order = df["mention_id"].to_numpy(object)
    hashes = block_key_hashes(df, rules)
    collided = np.where(hashes != 0, np.uint64(7), np.uint64(0))
    got = {h: block_involving_outgrown(df, rules, involving, order, hashes=hs)
           for h, hs in (("none", None), ("hashes", hashes), ("collide", collided))}
    with monkeypatch.context() as m:  # the whole-block path: every block paired, then diffed
        m.setattr(blocking, "_window_involving", lambda *a, **k: None)
        m.setattr(blocking, "_group_involving", lambda *a, **k: None)
        whole = {h: block_involving_outgrown(df, rules, involving, order, hashes=hs)
                 for h, hs in (("none", None), ("hashes", hashes), ("collide", collided))}
    for h in got:
        (c1, r1, (k1, m1)), (c2, r2, (k2, m2)) = got[h], whole[h]
        assert np.array_equal(c1.left, c2.left) and np.array_equal(c1.right, c2.right)
        assert np.array_equal(c1.rule_mask, c2.rule_mask)
        # a window rule's report is the whole blocks' (a group rule's counts the groups it pairs, by design)
        assert [vars(a) for a, r in zip(r1.rules, rules) if not (r.fuzzy_key or r.pair_with_empty)] == [
            vars(b) for b, r in zip(r2.rules, rules) if not (r.fuzzy_key or r.pair_with_empty)]
        assert (r1.n_records, r1.total_pairs) == (r2.n_records, r2.total_pairs)
        assert np.array_equal(k1, k2) and np.array_equal(m1, m2)
    # and against blocking everything, records in mention-id order (ties break on the ids)
    by_id = np.argsort(order, kind="stable")
    sorted_df = df.iloc[by_id].reset_index(drop=True)
    earlier = np.flatnonzero(~involving[by_id])
    cand, _, (keys, masks) = got["hashes"]
    want, _ = block(sorted_df, rules, involving=involving[by_id])
    assert _keys(by_id[want.left], by_id[want.right], n) == _keys(cand.left, cand.right, n)
    lost: dict[int, int] = {}
    for j, rule in enumerate(rules):
        everything, _ = block(sorted_df, [rule])
        alone, _ = block(sorted_df.iloc[earlier].reset_index(drop=True), [rule])
        for key in (_keys(by_id[earlier[alone.left]], by_id[earlier[alone.right]], n)
                    - _keys(by_id[everything.left], by_id[everything.right], n)):
            lost[key] = lost.get(key, 0) | (1 << j)
    assert dict(zip(keys.tolist(), masks.tolist())) == lost


def _as_arrow(df: pd.DataFrame) -> pd.DataFrame:
    """The text columns as Arrow strings (as a stored type's records are read back; missing values <NA>), in two
    chunks, so that the Arrow-only paths (dictionary encoding, shared encodings, kept variants) run."""
    import pyarrow as pa

    half = len(df) // 2
    out = {}
    for c in df.columns:
        values = [None if v is None or v is pd.NA else str(v) for v in df[c].tolist()]
        chunked = pa.chunked_array([pa.array(values[:half], pa.string()), pa.array(values[half:], pa.string())])
        out[c] = pd.Series(pd.arrays.ArrowStringArray(chunked), index=df.index)
    return pd.DataFrame(out)


@pytest.mark.parametrize("arrow", [False, True])
@pytest.mark.parametrize("seed", range(0, 120))
def test_narrowed_pairs_of_random_rules_are_those_of_blocking_the_whole_blocks(seed, arrow):
    """narrowed_pairs (a fuzzy rule with keys looks at its involved groups only, a view of a view of the coded
    table) gives block_involving_outgrown's pairs, masks and lost pairs, on object and on Arrow columns."""
    from linkage.resolve.incremental import narrowed_pairs

    df, rules, involving = _case(seed, groups=True)
    n = len(df)
    order = df["mention_id"].to_numpy(object)
    if arrow:
        df = _as_arrow(df)
    cand, _, (keys, masks) = block_involving_outgrown(df, rules, involving, order)
    got = narrowed_pairs(df, rules, block_key_hashes(df, rules), involving, order)
    assert np.array_equal(got.left * n + got.right, cand.left * n + cand.right)
    assert np.array_equal(got.rule_mask, cand.rule_mask)
    assert np.array_equal(got.lost_left * n + got.lost_right, keys) and np.array_equal(got.lost_mask, masks)


@pytest.mark.parametrize("arrow", [False, True])
@pytest.mark.parametrize("seed", range(0, 120))
def test_narrowed_pairs_with_block_statistics_are_those_of_blocking_the_whole_blocks(seed, arrow):
    """narrowed_pairs given skip_hashes' blocks to leave out (from the block statistics of the earlier records,
    which come first as in a stored type; a pair_with_empty rule then reads no empty column to find its blocks)
    gives block_involving_outgrown's pairs, masks and lost pairs."""
    from linkage.resolve.incremental import block_stats, narrowed_pairs, skip_hashes

    df, rules, involving = _case(seed, groups=True)
    first = np.r_[np.flatnonzero(~involving), np.flatnonzero(involving)]
    df, involving = df.iloc[first].reset_index(drop=True), involving[first]
    n, n_old = len(df), int((~involving).sum())
    order = df["mention_id"].to_numpy(object)
    if arrow:
        df = _as_arrow(df)
    cand, _, (keys, masks) = block_involving_outgrown(df, rules, involving, order)
    hashes = block_key_hashes(df, rules)
    stats = block_stats(df.iloc[:n_old], rules, hashes[:n_old])
    skip = skip_hashes(df, rules, hashes, np.flatnonzero(involving), stats)
    got = narrowed_pairs(df, rules, hashes, involving, order, skip=skip)
    assert np.array_equal(got.left * n + got.right, cand.left * n + cand.right)
    assert np.array_equal(got.rule_mask, cand.rule_mask)
    assert np.array_equal(got.lost_left * n + got.lost_right, keys) and np.array_equal(got.lost_mask, masks)


@pytest.mark.parametrize("seed", range(0, 20))
def test_views_coded_from_a_pool_order_and_tell_apart_their_values_as_their_own_codes(seed):
    """A view whose column is coded once over the union of several views' rows (_Columns.pool) has codes that
    are equal and ordered exactly as the codes it makes of its own rows; a view with a row outside the pool
    codes its own."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    df = pd.DataFrame({"k": rng.choice(["a", "b", "", "c", "dd", "b2"], n)})
    views = [np.sort(rng.choice(n, int(rng.integers(1, n + 1)), replace=False)) for _ in range(3)]
    pooled = blocking._Columns(df)
    pooled.pool("k", np.unique(np.concatenate(views[:2])))
    for v, rows in enumerate(views):
        rows = rng.permutation(rows)
        own = blocking._Columns(df).take(rows)
        got = pooled.take(rows)
        a, b = own.codes("k"), got.codes("k")
        assert np.array_equal(got.values("k")[b], own.values("k")[a])  # the same values
        assert np.array_equal(np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :]))  # same order
        assert np.array_equal(got.empty("k"), own.empty("k"))
        if v < 2:
            assert "k" in pooled._pool_coded


def test_a_fuzzy_rules_views_reuse_the_variants_its_groups_made():
    """variants_of gives, for a view coded from the table's encoding, the rows of the variants kept for the
    table's values (keep_variants), numbered so that equal variants share a code as variant_codes numbers them."""
    df = pd.DataFrame({"s": ["jansen", "janssen", "vries", "fries", "jansen", "bakker"] * 3})
    table = blocking._Columns(df)
    enc = table._encoded("s")
    words = np.asarray(enc[1].to_numpy(zero_copy_only=False), dtype=object)
    numbers = np.arange(len(words))
    owner, vcode = blocking.variant_codes(words[numbers])
    table.keep_variants("s", numbers, owner, vcode)
    view = table.take(np.array([3, 0, 1, 7, 14]))
    codes = np.unique(view.codes("s"))
    got_owner, got_code = view.variants_of("s", codes)
    assert "s" in view._in_dictionary  # coded from the table's encoding: the kept variants are read
    want_owner, want_code = blocking.variant_codes(np.asarray(view.values("s"), dtype=object)[codes])
    assert np.array_equal(got_owner, want_owner)
    pairs = lambda o, c: {(int(x), int(y)) for x in range(len(codes)) for y in range(len(codes))
                          if set(c[o == x].tolist()) & set(c[o == y].tolist())}
    assert pairs(got_owner, got_code) == pairs(want_owner, want_code)
    table._variants.clear()  # nothing kept: made
    again = view.variants_of("s", codes)
    assert np.array_equal(again[0], want_owner) and np.array_equal(again[1], want_code)
