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

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


class IdEvent(NamedTuple):
    """One change in group identity between two runs (a named tuple: cheap to make by the million)."""

    group_id: str
    event: str  # created | kept | merged | split | dissolved
    related: tuple[str, ...] = ()


def carry_over(old: pd.Series, new: pd.Series, events: bool = True, kept: bool = True
               ) -> tuple[dict[str, str], list[IdEvent]]:
    """Map each new group id to its final id, reusing old ids where the group mostly persisted.

    Parameters
    ----------
    old, new:
        Series indexed by member id whose values are group ids (previous run, this run).
    events:
        False: the events are not made (an empty list comes back; ``rename`` is the same), for callers that
        only rename (an incremental run's entities: ~40 % of the call).
    kept:
        False: the ``kept`` events are left out (the others are the same, in the same order), for callers that
        record only changes (:func:`linkage.pipeline.store_clusters`: of the ~10,350 events of a +1,000 run on
        100,000 reports ~120 are not ``kept``; making and sorting the others was ~40 % of the call).

    Returns
    -------
    (rename, events):
        ``rename[new_id] -> final_id`` for every new group; ``events`` sorted by group id.

    Runs on integer codes (group ids numbered in sorted order), so it stays fast with millions of members
    and hundreds of thousands of groups (entities) as well as with a few thousand (clusters).

    >>> old = pd.Series({"r1": "A", "r2": "A", "r3": "A", "r4": "B", "r5": "B"})
    >>> new = pd.Series({"r1": "x", "r2": "x", "r3": "x", "r4": "x", "r6": "y", "r7": "y"})
    >>> rename, events = carry_over(old, new)
    >>> rename
    {'x': 'A', 'y': 'y'}
    >>> [(e.group_id, e.event, e.related) for e in events]
    [('A', 'merged', ('B',)), ('B', 'dissolved', ('A',)), ('y', 'created', ())]
    """
    if new.empty:
        return {}, [IdEvent(g, "dissolved") for g in sorted(set(old.values))] if events else []
    # one numbering of every group id (old and new), in sorted order: code order is id order
    if isinstance(old.dtype, pd.StringDtype) and isinstance(new.dtype, pd.StringDtype):
        # pandas text columns hold Arrow arrays: joined as they are, not made into Python objects first (41,000
        # memberships: ~12 ms less)
        from linkage.arrays import arrow_text

        codes, names = _sorted_codes(pa.concat_arrays([arrow_text(old), arrow_text(new)]))
    else:
        codes, names = _sorted_codes(np.concatenate([old.to_numpy(dtype=object), new.to_numpy(dtype=object)]))
    n_names = max(len(names), 1)
    old_code, new_code = codes[: len(old)], codes[len(old):]
    new_size = np.bincount(new_code[new_code >= 0], minlength=n_names)
    old_size = np.bincount(old_code[old_code >= 0], minlength=n_names)
    # the old group of every new member (-1: the member is new)
    pos = _positions(old.index, new.index) if len(old) else np.full(len(new), -1)
    prev = old_code[np.maximum(pos, 0)] if len(old_code) else np.full(len(new), -1)
    has = (pos >= 0) & (prev >= 0) & (new_code >= 0)
    key, p_n = np.unique(new_code[has] * n_names + prev[has], return_counts=True)
    p_new, p_old = key // n_names, key % n_names
    share_old = p_n / old_size[p_old].astype(float)
    share_new = p_n / new_size[p_new].astype(float)
    # A pair that holds all members of both groups (the usual case: a group that did not change) can only
    # match itself, whatever the order below; it is settled at once, without the loops.
    perfect = (p_n == old_size[p_old]) & (p_n == new_size[p_new])
    rest = np.flatnonzero(~perfect)
    # Best candidates first: most shared members, then the larger share, then the smaller ids.
    order = rest[np.lexsort((p_new[rest], p_old[rest], -share_old[rest], -p_n[rest]))]
    rename_code: dict[int, int] = {}
    taken_code: set[int] = set()
    for g, o, so, sn in zip(p_new[order].tolist(), p_old[order].tolist(), share_old[order].tolist(),
                            share_new[order].tolist()):
        if g in rename_code or o in taken_code:
            continue
        if so > 0.5 or sn > 0.5:
            rename_code[g] = o
            taken_code.add(o)
    final_of = np.full(n_names, -1, dtype=np.int64)  # new group code -> code of the old id it keeps
    final_of[p_new[perfect]] = p_old[perfect]
    if rename_code:
        final_of[np.fromiter(rename_code.keys(), dtype=np.int64)] = np.fromiter(rename_code.values(), dtype=np.int64)
    new_groups = np.flatnonzero(new_size)  # in id order
    taken_mask = np.zeros(n_names, dtype=bool)
    taken_mask[final_of[final_of >= 0]] = True
    name_list = names.tolist()
    final_names = [name_list[o] if o >= 0 else None for o in final_of[new_groups].tolist()]
    old_ids = set(names[np.flatnonzero(old_size)].tolist())
    used = set(names[taken_mask].tolist())
    unmatched = []
    for i, g in enumerate(new_groups.tolist()):
        if final_names[i] is None:
            gid = name_list[g]
            final = gid
            if final in used or final in old_ids:
                final = f"{gid}.{len(used)}"  # an old id that lives on elsewhere must not be reused
            used.add(final)
            final_names[i] = final
            unmatched.append(final)
    rename = dict(zip(names[new_groups].tolist(), final_names))
    if not events:
        return rename, []

    # events: per final id its contributing old ids; per old id that lost its id its successors
    perfect_finals = set(names[p_old[perfect]].tolist())
    if perfect_finals.isdisjoint(unmatched):
        pairs = rest  # a group kept whole is 'kept' with nothing related
    else:  # an invented id equals a kept one (never in practice): group every pair by its final id
        pairs, perfect_finals = np.arange(len(p_new)), set()
    f_names = np.asarray(final_names, dtype=object)
    pos_of = np.full(n_names, -1, dtype=np.int64)
    pos_of[new_groups] = np.arange(len(new_groups))
    pf = pos_of[p_new[pairs]]
    olds_of = _sorted_groups(pf, p_old[pairs], f_names, names)
    succ_of = _sorted_groups(p_old[pairs], pf, names, f_names)
    taken = set(names[taken_mask].tolist())
    made: list[IdEvent] = []
    finals = set(final_names)
    if kept:
        made.extend(IdEvent(final, "kept", ()) for final in finals & perfect_finals)
    for final in finals - perfect_finals:
        contributors = olds_of.get(final, ())
        if final in taken:
            others = tuple(o for o in contributors if o != final)
            if others or kept:
                made.append(IdEvent(final, "merged" if others else "kept", others))
        else:
            made.append(IdEvent(final, "split" if contributors else "created", contributors))
    for gid in old_ids - taken:
        succ = succ_of.get(gid, ())
        made.append(IdEvent(gid, "dissolved" if len(succ) <= 1 else "split", succ))
    # sorted by (group id, event) in C (arrow) rather than by Python comparisons
    keys = pa.table({"g": pa.array([e[0] for e in made], type=pa.string()),
                     "e": pa.array([e[1] for e in made], type=pa.string())})
    order = pc.sort_indices(keys, sort_keys=[("g", "ascending"), ("e", "ascending")]).to_numpy()
    return rename, [made[i] for i in order.tolist()]


def _positions(old_index: pd.Index, new_index: pd.Index) -> np.ndarray:
    """``old_index.get_indexer(new_index)``: the place of each new member among the old ones (-1: not there).

    Two pandas text indexes without missing values are numbered together in Arrow, one hash pass (41,000 report
    ids: ~5 ms against ~13 ms for pandas' own table); the numbering is in order of first appearance, so the old
    index is unique when its members are numbered 0, 1, ... in turn, and a new member numbered below
    ``len(old_index)`` is the old member of that number. Anything else (other types, missing values, an old
    index that repeats a member: pandas raises) goes to ``get_indexer``.

    >>> old = pd.Index(["r1", "r2", "r3"], dtype="string")
    >>> _positions(old, pd.Index(["r3", "r9", "r1"], dtype="string")).tolist()
    [2, -1, 0]
    """
    if isinstance(old_index.dtype, pd.StringDtype) and isinstance(new_index.dtype, pd.StringDtype):
        from linkage.arrays import arrow_text, codes_after

        at = codes_after(arrow_text(old_index), arrow_text(new_index))
        if at is not None:
            at[at >= len(old_index)] = -1
            return at
    return old_index.get_indexer(new_index)


def _sorted_codes(values: np.ndarray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(codes, names): ids numbered in sorted order (-1 for a missing value); names[code] is the id.
    ``values``: an object array, or an Arrow text array (nulls: missing)."""
    if isinstance(values, pa.Array):
        arr = values
    else:
        try:
            arr = pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # ids that are not strings: the slower generic way
            codes, uniq = pd.factorize(pd.Series(values, dtype=object), sort=True)
            return codes.astype(np.int64), np.asarray(uniq, dtype=object)
    enc = pc.dictionary_encode(arr)
    order = pc.sort_indices(enc.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    codes = np.where(idx >= 0, rank[np.maximum(idx, 0)] if len(rank) else -1, -1)
    names = np.asarray(enc.dictionary.take(pa.array(order)).to_pylist(), dtype=object)
    return codes, names


def _sorted_groups(keys: np.ndarray, values: np.ndarray, key_names: np.ndarray,
                   value_names: np.ndarray) -> dict[str, tuple[str, ...]]:
    """key name -> the sorted distinct names of its values (``keys``/``values``: parallel integer codes)."""
    if len(keys) == 0:
        return {}
    # value codes in name order (finals are not numbered in sorted order)
    v_rank = np.empty(len(value_names), dtype=np.int64)
    v_rank[np.argsort(np.asarray(value_names, dtype=str), kind="stable")] = np.arange(len(value_names))
    order = np.lexsort((v_rank[values], keys))
    k, v = keys[order], values[order]
    keep = np.ones(len(k), dtype=bool)
    keep[1:] = (k[1:] != k[:-1]) | (v[1:] != v[:-1])
    k, v = k[keep], v[keep]
    v_list = value_names[v].tolist()
    brk = np.flatnonzero(k[1:] != k[:-1]) + 1
    starts = [0] + brk.tolist()
    ends = brk.tolist() + [len(k)]
    return {name: tuple(v_list[s:e]) for name, s, e in zip(key_names[k[starts]].tolist(), starts, ends)}
