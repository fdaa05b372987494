"""Stable ids: carry_over's renaming with and without its events."""
from __future__ import annotations

import numpy as np
import pandas as pd

from linkage.store.stable_ids import carry_over


def test_carry_over_without_events_renames_as_with_them():
    """events=False gives the same rename (and no events) for random regroupings, an empty new side included."""
    rng = np.random.default_rng(3)
    for n in (0, 1, 40, 400):
        members = [f"m{i:03d}" for i in range(n)]
        old = pd.Series(rng.choice([f"g{k}" for k in range(max(n // 4, 1))], n), index=members, dtype=object)
        keep = rng.random(n) < 0.8
        new_members = [m for m, k in zip(members, keep) if k] + [f"x{i}" for i in range(n // 10)]
        new = pd.Series(rng.choice([f"h{k}" for k in range(max(n // 5, 1))], len(new_members)), index=new_members,
                        dtype=object)
        rename, events = carry_over(old, new)
        bare, none = carry_over(old, new, events=False)
        assert bare == rename and none == []
        assert len(events) >= len(set(rename.values())) or not len(new)


def _regrouped(rng, n: int, share_kept: float = 0.8):
    """A random old grouping of ``n`` members and a new one of most of them plus some new members, with some
    groups kept whole (so every kind of event occurs)."""
    members = [f"m{i:03d}" for i in range(n)]
    old = pd.Series(rng.choice([f"g{k}" for k in range(max(n // 4, 1))], n), index=members, dtype=object)
    new = old.copy()
    moved = rng.random(n) > share_kept
    new[moved] = rng.choice([f"h{k}" for k in range(max(n // 5, 1))], int(moved.sum()))
    new = new[rng.random(n) < 0.9]
    extra = pd.Series(rng.choice(["g0", "h0", "z"], n // 10), index=[f"x{i}" for i in range(n // 10)], dtype=object)
    return old, pd.concat([new, extra])


def test_carry_over_without_kept_events_gives_the_other_events():
    """kept=False gives the same rename and the events but the 'kept' ones, in the same order."""
    rng = np.random.default_rng(5)
    for n in (0, 1, 3, 40, 400, 2000):
        for share in (0.5, 0.95):
            old, new = _regrouped(rng, n, share)
            rename, events = carry_over(old, new)
            changes_rename, changes = carry_over(old, new, kept=False)
            assert changes_rename == rename
            assert changes == [e for e in events if e.event != "kept"]
            assert carry_over(old, new, events=False, kept=False) == (rename, [])


def test_carry_over_of_pandas_text_columns_as_of_objects():
    """Series of pandas' text type (read through Arrow, missing values included) give what object Series give."""
    rng = np.random.default_rng(8)
    for n in (1, 40, 400):
        old, new = _regrouped(rng, n)
        if len(new) < 2:  # (no new groups: every old one dissolved, as the old values give them)
            continue
        old.iloc[0] = None  # a member without a group on either side
        new.iloc[-1] = None
        plain = carry_over(old, new)
        assert carry_over(old.astype("string[pyarrow]"), new.astype("string[pyarrow]")) == plain
        assert carry_over(old.astype(pd.StringDtype("pyarrow", na_value=np.nan)),
                          new.astype(pd.StringDtype("pyarrow", na_value=np.nan))) == plain
        assert carry_over(old.astype("string[pyarrow]"), new) == plain  # one side of each kind


def test_positions_are_get_indexer_s():
    """_positions gives get_indexer's places for text indexes of both kinds (Arrow's hash path) and for others,
    with missing members (get_indexer's path) and new members among them; an old index that repeats a member
    raises as get_indexer does."""
    import pytest

    from linkage.store.stable_ids import _positions

    rng = np.random.default_rng(11)
    for n in (1, 5, 300):
        old_ids = [f"r{i}" for i in rng.permutation(n)]
        new_ids = [f"r{i}" for i in rng.integers(0, 2 * n, n + 7)]  # about half not among the old, some twice
        for dtype in ("string[pyarrow]", pd.StringDtype("pyarrow", na_value=np.nan), "string[python]", object):
            old, new = pd.Index(old_ids, dtype=dtype), pd.Index(new_ids, dtype=dtype)
            expected = old.get_indexer(new)
            got = _positions(old, new)
            assert got.tolist() == expected.tolist() and (got == -1).any()
            with_missing = pd.Index(new_ids[:-1] + [None], dtype=dtype)
            assert _positions(old, with_missing).tolist() == old.get_indexer(with_missing).tolist()
    repeated = pd.Index(["r1", "r2", "r1"], dtype="string[pyarrow]")
    with pytest.raises(pd.errors.InvalidIndexError):
        _positions(repeated, pd.Index(["r1"], dtype="string[pyarrow]"))


def test_carry_over_of_text_member_ids_as_of_objects():
    """Members given by a pandas text index (as the pipeline's report ids are) give what object ids give."""
    rng = np.random.default_rng(12)
    for n in (1, 40, 400, 2000):
        old, new = _regrouped(rng, n)
        plain = carry_over(old, new)
        for dtype in ("string[pyarrow]", pd.StringDtype("pyarrow", na_value=np.nan)):
            as_text = (old.set_axis(old.index.astype(dtype)).astype(dtype),
                       new.set_axis(new.index.astype(dtype)).astype(dtype))
            assert carry_over(*as_text) == plain
            assert carry_over(*as_text, kept=False) == carry_over(old, new, kept=False)
