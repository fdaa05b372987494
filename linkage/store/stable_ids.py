"""Stable ids across runs: a group (entity or cluster) that keeps most of its members keeps its id.

In:  the previous run's ``member -> group id`` and this run's ``member -> group id`` (freshly derived).
Out: this run's groups renamed so that ids carry over, and the events that explain each change
     (``created``, ``kept``, ``merged``, ``split``, ``dissolved``), for ``linkage cluster ID --history``.

Rule: a new group inherits the id of the old group that gave it the most members when that old group's
members are mostly (> 50 %) in it and they make up > 50 % of the new group... or, failing the second
condition, when the new group is the old group's largest successor and nothing else claims the id.
Ties break on the smaller id, so the result is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class IdEvent:
    """One change in group identity between two runs."""

    group_id: str
    event: str  # created | kept | merged | split | dissolved
    related: tuple[str, ...] = ()


def carry_over(old: pd.Series, new: pd.Series) -> tuple[dict[str, str], list[IdEvent]]:
    """Map each new group id to its final id, reusing old ids where the group mostly persisted.

    Parameters
    ----------
    old, new:
        Series indexed by member id whose values are group ids (previous run, this run).

    Returns
    -------
    (rename, events):
        ``rename[new_id] -> final_id`` for every new group; ``events`` sorted by group id.

    >>> old = pd.Series({"r1": "A", "r2": "A", "r3": "A", "r4": "B", "r5": "B"})
    >>> new = pd.Series({"r1": "x", "r2": "x", "r3": "x", "r4": "x", "r6": "y", "r7": "y"})
    >>> rename, events = carry_over(old, new)
    >>> rename
    {'x': 'A', 'y': 'y'}
    >>> [(e.group_id, e.event, e.related) for e in events]
    [('A', 'merged', ('B',)), ('B', 'dissolved', ('A',)), ('y', 'created', ())]
    """
    if new.empty:
        events = [IdEvent(g, "dissolved") for g in sorted(set(old.values))]
        return {}, events
    joined = pd.DataFrame({"new": new}).join(pd.DataFrame({"old": old}), how="left")
    overlap = joined.dropna(subset=["old"]).groupby(["new", "old"]).size().rename("n").reset_index()
    new_sizes = new.value_counts()
    old_sizes = old.value_counts() if not old.empty else pd.Series(dtype=int)
    old_size_of = {str(k): int(v) for k, v in old_sizes.items()}
    new_size_of = {str(k): int(v) for k, v in new_sizes.items()}
    overlap["share_of_old"] = [n / old_size_of[o] for n, o in zip(overlap["n"], overlap["old"])]
    overlap["share_of_new"] = [n / new_size_of[g] for n, g in zip(overlap["n"], overlap["new"])]
    # Best candidates first: most shared members, then the larger share, then the smaller ids.
    overlap = overlap.sort_values(["n", "share_of_old", "old", "new"], ascending=[False, False, True, True])
    rename: dict[str, str] = {}
    taken: set[str] = set()
    for row in overlap.itertuples(index=False):
        if row.new in rename or row.old in taken:
            continue
        if row.share_of_old > 0.5 or row.share_of_new > 0.5:
            rename[row.new] = row.old
            taken.add(row.old)
    used = set(rename.values())
    for gid in sorted(set(new.values)):
        if gid not in rename:
            final = gid
            if final in used or final in set(old_sizes.index):
                final = f"{gid}.{len(used)}"  # an old id that lives on elsewhere must not be reused
            rename[gid] = final
            used.add(final)

    events: list[IdEvent] = []
    final_of = {n: rename[n] for n in rename}
    contributors = overlap.assign(final=overlap["new"].map(final_of))
    for final in sorted(set(final_of.values())):
        olds = sorted(set(contributors.loc[contributors["final"] == final, "old"]))
        if final in taken:
            others = tuple(o for o in olds if o != final)
            events.append(IdEvent(final, "merged" if others else "kept", others))
        else:
            events.append(IdEvent(final, "split" if olds else "created", tuple(olds)))
    for gid in sorted(set(old_sizes.index) - taken):
        succ = tuple(sorted(set(contributors.loc[contributors["old"] == gid, "final"])))
        events.append(IdEvent(gid, "dissolved" if len(succ) <= 1 else "split", succ))
    events.sort(key=lambda e: (e.group_id, e.event))
    return {k: rename[k] for k in sorted(rename)}, events
