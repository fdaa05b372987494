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
