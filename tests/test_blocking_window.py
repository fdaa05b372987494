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


@pytest.mark.parametrize("seed", range(0, 120))
def test_narrowed_pairs_of_random_rules_are_those_of_blocking_the_whole_blocks(seed):
    """narrowed_pairs (a fuzzy rule with keys looks at its involved groups only, a view of a view of the coded
    table) gives block_involving_outgrown's pairs, masks and lost pairs."""
    from linkage.resolve.incremental import narrowed_pairs

    df, rules, involving = _case(seed, groups=True)
    n = len(df)
    order = df["mention_id"].to_numpy(object)
    cand, _, (keys, masks) = block_involving_outgrown(df, rules, involving, order)
    got = narrowed_pairs(df, rules, block_key_hashes(df, rules), involving, order)
    assert np.array_equal(got.left * n + got.right, cand.left * n + cand.right)
    assert np.array_equal(got.rule_mask, cand.rule_mask)
    assert np.array_equal(got.lost_left * n + got.lost_right, keys) and np.array_equal(got.lost_mask, masks)
