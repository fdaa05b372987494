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
