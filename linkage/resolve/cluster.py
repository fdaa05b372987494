"""Clustering scored pairs into entities without chaining weak links into giant ones.

In:  the number of records, links (pairs at or above the match probability, with their log-odds),
     other scored pairs inside the same linked component (the evidence against), and human judgements
     as record-index pairs.
Out: :func:`cluster` gives one label per record: the smallest record index of its entity (deterministic).

Steps:

1. Connected components of links and "same" judgements (vectorised).
2. Components where every scored pair inside is a link are entities as they are (most of them).
3. Components that hold a scored non-link or a "different" judgement are rebuilt by constrained
   average-linkage merging: "same" judgements first, then links from the strongest down; two groups merge
   only when no "different" judgement and no cannot-link pair (probability below the cannot-link
   threshold) lies between them and the mean log-odds of all scored pairs between them is positive. So a
   ``J. de Vries`` without birth date cannot glue two ``Jan de Vries`` with different birth dates together.
   A component of :data:`DENSE_MIN` to :data:`DENSE_MAX` records keeps the sums between its groups in one
   dense array (a merge is a row operation), others in per-group dicts; both form the same sums in the same
   order, so they give the same labels (``tests/test_cluster.py`` holds the plain version as oracle).
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Component label (smallest member index) per record: vectorised hooking and pointer jumping.

    >>> components(5, np.array([0, 3]), np.array([1, 4])).tolist()
    [0, 0, 2, 3, 3]
    >>> components(4, np.array([2, 1, 0]), np.array([3, 3, 3])).tolist()
    [0, 0, 0, 0]
    """
    lab = np.arange(n, dtype=np.int64)
    if n == 0 or len(left) == 0:
        return lab
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    while True:
        a, b = lab[left], lab[right]
        differ = a != b
        if not differ.any():
            return lab
        left, right = left[differ], right[differ]
        a, b = a[differ], b[differ]
        # hook the larger root onto the smaller one, then compress every path to its root
        np.minimum.at(lab, np.maximum(a, b), np.minimum(a, b))
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt


#: Components of DENSE_MIN to DENSE_MAX records are merged over a dense m x m complex array (sum and count of
#: the scored pairs between every two groups: 16 bytes a cell, for one component at a time: 268 MB at 4,096
#: records), where a merge is a row add and a column copy: at 1,400 records 3x faster than the dicts of each
#: group's neighbours that larger and smaller components use (below ~16 records setting up the array costs
#: more than it saves). At 1,000,000 reports (seed 1) the largest such component has 2,094 records.
DENSE_MAX = 4096
DENSE_MIN = 16
#: ... and only when they hold at least this many scored pairs per record: a merge copies a column of the array
#: (one cache line in each of the m rows), so a large sparse component (a few pairs per record) is faster by
#: dicts (4,096 records with 2 pairs each: dense 0.9 s, dicts 0.03 s; the generated hubs have ~50 per record).
DENSE_MIN_PAIRS_PER_RECORD = 8


def cluster(n: int, link_left: np.ndarray, link_right: np.ndarray, link_logodds: np.ndarray,
            other_left: np.ndarray | None = None, other_right: np.ndarray | None = None,
            other_logodds: np.ndarray | None = None, cannot_logodds: float = -13.3,
            same: list[tuple[int, int]] | None = None, different: list[tuple[int, int]] | None = None,
            linked: np.ndarray | None = None) -> np.ndarray:
    """Entity label (smallest member index) for each of ``n`` records.

    Parameters
    ----------
    link_left, link_right, link_logodds:
        Links (record indices) and their log-odds in bits (prior + match weight).
    other_left, other_right, other_logodds:
        Scored pairs that are not links (evidence against); only those inside a linked component matter.
    cannot_logodds:
        Pairs at or below this log-odds are never in one entity.
    same, different:
        Human judgements as record-index pairs; they win over the model.
    linked:
        Optional: ``components(n, links + same)`` when the caller has it (not made again; it must be exactly
        that, labels included).

    Links are tried from the strongest down, ties by the smaller and then the larger record index; the
    scored pairs between two groups are summed in the order given (so the labels do not depend on how a
    component is merged, dense or by dicts, see :data:`DENSE_MAX`). Link log-odds must be numbers:
    ``ValueError`` on NaN (no order of the links would be defined).

    >>> # 0-1 and 1-2 linked, but 0 and 2 are clearly different: 1 joins the stronger side
    >>> cluster(3, np.array([0, 1]), np.array([1, 2]), np.array([8.0, 5.0]),
    ...         np.array([0]), np.array([2]), np.array([-20.0])).tolist()
    [0, 0, 2]
    >>> cluster(2, np.array([0]), np.array([1]), np.array([8.0]), different=[(0, 1)]).tolist()
    [0, 1]
    """
    same = list(same or [])
    different = list(different or [])
    if other_left is None:
        other_left = other_right = np.empty(0, np.int64)
        other_logodds = np.empty(0, float)
    # index arrays keep their integer type (int32 at scale: a copy of tens of millions of pairs costs); an
    # empty list or array without a type (float) becomes int64
    link_left, link_right, other_left, other_right = (
        a if a.dtype.kind in "iu" else a.astype(np.int64)
        for a in map(np.asarray, (link_left, link_right, other_left, other_right)))
    if np.isnan(np.asarray(link_logodds, dtype=float)).any():
        raise ValueError("cluster(): a link's log-odds is NaN; links need a number to be ordered by")
    sl = np.array([a for a, _ in same], dtype=np.int64)
    sr = np.array([b for _, b in same], dtype=np.int64)
    if linked is None:
        comp = components(n, np.r_[link_left, sl], np.r_[link_right, sr])
    else:  # a copy: what is returned is never the caller's own array
        comp = np.array(linked, dtype=np.int64)
    # components that need the careful treatment: a scored non-link or a "different" judgement inside
    inside = comp[other_left] == comp[other_right]
    dl = np.array([a for a, _ in different], dtype=np.int64)
    dr = np.array([b for _, b in different], dtype=np.int64)
    flagged = np.unique(np.r_[comp[other_left[inside]], comp[dl[comp[dl] == comp[dr]]]])
    if not len(flagged):
        return comp
    in_flagged = np.isin(comp, flagged)
    # their records grouped by component, ascending within one; ``local`` numbers them 0..m-1 per component
    nodes = np.flatnonzero(in_flagged)
    nodes = nodes[np.argsort(comp[nodes], kind="stable")]
    starts = np.searchsorted(comp[nodes], flagged)
    ends = np.r_[starts[1:], len(nodes)]
    local = np.zeros(n, dtype=np.int64)
    local[nodes] = np.arange(len(nodes)) - np.repeat(starts, ends - starts)
    # links per component in the order they are tried: strongest first, ties by (smaller, larger) record
    lk = in_flagged[link_left]
    la, lb = link_left[lk].astype(np.int64), link_right[lk].astype(np.int64)
    lw = np.asarray(link_logodds, dtype=float)[lk]
    order = np.lexsort((np.minimum(la, lb) * n + np.maximum(la, lb), -lw, comp[la]))
    edge_a, edge_b = local[np.minimum(la, lb)[order]], local[np.maximum(la, lb)[order]]
    edge_at = np.searchsorted(comp[la][order], flagged)
    # scored pairs per component (links, then the other pairs inside), in the order given
    ok = inside & in_flagged[other_left]
    sa, sb = np.r_[la, other_left[ok]], np.r_[lb, other_right[ok]]
    sw = np.r_[lw, np.asarray(other_logodds, dtype=float)[ok]]
    order = np.argsort(comp[sa], kind="stable")
    scored_at = np.searchsorted(comp[sa][order], flagged)
    sa, sb, sw = local[sa[order]], local[sb[order]], sw[order]
    pos = {c: i for i, c in enumerate(flagged.tolist())}
    same_by_comp: dict[int, list] = defaultdict(list)
    for a, b in same:
        if in_flagged[a]:
            same_by_comp[pos[int(comp[a])]].append((int(local[min(a, b)]), int(local[max(a, b)])))
    diff_by_comp: dict[int, list] = defaultdict(list)
    for a, b in different:
        if comp[a] == comp[b] and in_flagged[a]:
            diff_by_comp[pos[int(comp[a])]].append((int(local[a]), int(local[b])))
    edge_end, scored_end = np.r_[edge_at[1:], len(edge_a)], np.r_[scored_at[1:], len(sa)]
    sizes = ends - starts
    # dense only where no sum of log-odds can overflow (_merge_dense marks a cannot-link with minus infinity)
    dense = ((sizes >= DENSE_MIN) & (sizes <= DENSE_MAX) & (scored_end - scored_at >= DENSE_MIN_PAIRS_PER_RECORD * sizes)
             & bool(np.abs(sw).sum() < 1e300))
    # the dict path reads Python numbers: its components' links and pairs as lists, one after the other
    few_edges, few_scored = np.where(dense, 0, edge_end - edge_at), np.where(dense, 0, scored_end - scored_at)
    at_edge, at_scored = np.r_[0, np.cumsum(few_edges)].tolist(), np.r_[0, np.cumsum(few_scored)].tolist()
    keep = np.repeat(~dense, edge_end - edge_at)
    list_a, list_b = edge_a[keep].tolist(), edge_b[keep].tolist()
    keep = np.repeat(~dense, scored_end - scored_at)
    list_sa, list_sb, list_sw = sa[keep].tolist(), sb[keep].tolist(), sw[keep].tolist()
    roots: list[int] = []  # per record in ``nodes``: the local number of its group's root
    for i, size in enumerate(sizes.tolist()):
        judged = sorted(same_by_comp.get(i, [])), diff_by_comp.get(i, [])
        if dense[i]:
            e, s = slice(edge_at[i], edge_end[i]), slice(scored_at[i], scored_end[i])
            roots += _merge_dense(size, edge_a[e], edge_b[e], sa[s], sb[s], sw[s], *judged, cannot_logodds).tolist()
        else:
            e, s = slice(at_edge[i], at_edge[i + 1]), slice(at_scored[i], at_scored[i + 1])
            roots += _merge_dicts(size, list_a[e], list_b[e], list_sa[s], list_sb[s], list_sw[s], *judged,
                                  cannot_logodds)
    out = comp.copy()
    out[nodes] = nodes[np.repeat(starts, ends - starts) + np.array(roots, dtype=np.int64)]
    # label every group by its smallest member: the first of its records in ``nodes``
    _, first, back = np.unique(out[nodes], return_index=True, return_inverse=True)
    out[nodes] = nodes[first[back]]
    return out


def _refusals(different) -> dict[int, set[int]]:
    """Each record's set of records an analyst said are different (both ways)."""
    human_no: dict[int, set[int]] = defaultdict(set)
    for a, b in different:
        human_no[a].add(b)
        human_no[b].add(a)
    return human_no


def _move_refusals(human_no: dict[int, set[int]], ra: int, rb: int) -> None:
    """Group ``rb`` merged into ``ra``: the groups a "different" judgement keeps apart from ``rb`` now refuse
    ``ra`` instead (``human_no`` maps a group root to the roots it may not merge with)."""
    if rb in human_no or ra in human_no:
        human_no[ra] |= human_no.pop(rb, set())
        for other in list(human_no[ra]):
            human_no[other].discard(rb)
            human_no[other].add(ra)


def _merge_dicts(m: int, edge_a: list[int], edge_b: list[int], sa: list[int], sb: list[int], sw: list[float],
                 same: list[tuple[int, int]], different: list[tuple[int, int]], cannot: float) -> list[int]:
    """Constrained average-linkage merging of one component of ``m`` records (local indices 0..m-1): the
    ``same`` pairs first, then the links ``edge_a``/``edge_b`` in order, refusing a merge across a
    ``different`` pair, a scored pair at or below ``cannot`` or a mean log-odds of the scored pairs
    ``sa``/``sb``/``sw`` between the two groups at or below 0. Returns the root record of each record's group.

    >>> _merge_dicts(3, [0, 1], [1, 2], [0, 1, 0], [1, 2, 2], [8.0, 5.0, -20.0], [], [], -13.3)
    [0, 0, 2]
    """
    parent = list(range(m))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    # cross[r][s] = [sum of log-odds, count, has cannot] between groups r and s (one list for both directions)
    cross: list[dict[int, list]] = [{} for _ in range(m)]
    for a, b, w in zip(sa, sb, sw):
        entry = cross[a].get(b)
        if entry is None:
            entry = cross[a][b] = cross[b][a] = [0.0, 0, False]
        entry[0] += w
        entry[1] += 1
        entry[2] = entry[2] or w <= cannot
        if a == b:  # a pair of a record with itself counts in both directions, as two pairs
            entry[0] += w
            entry[1] += 1
    human_no = _refusals(different)

    def merge(ra: int, rb: int) -> None:
        if len(cross[ra]) < len(cross[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        mine = cross[ra]
        for other, entry in cross[rb].items():
            if other == ra or other == rb:
                continue
            back = cross[other]
            del back[rb]
            have = mine.get(other)
            if have is None:
                mine[other] = back[ra] = entry
            else:
                have[0] += entry[0]
                have[1] += entry[1]
                have[2] = have[2] or entry[2]
        cross[rb] = {}
        mine.pop(rb, None)
        _move_refusals(human_no, ra, rb)

    for a, b in same:
        ra, rb = find(a), find(b)
        if ra != rb and rb not in human_no.get(ra, ()):
            merge(ra, rb)
    for a, b in zip(edge_a, edge_b):
        ra, rb = find(a), find(b)
        if ra == rb or rb in human_no.get(ra, ()):
            continue
        entry = cross[ra].get(rb)
        if entry is not None and (entry[2] or entry[0] / entry[1] <= 0):
            continue
        merge(ra, rb)
    return [find(x) for x in range(m)]


def _merge_dense(m: int, edge_a: np.ndarray, edge_b: np.ndarray, sa: np.ndarray, sb: np.ndarray, sw: np.ndarray,
                 same: list[tuple[int, int]], different: list[tuple[int, int]], cannot: float) -> np.ndarray:
    """:func:`_merge_dicts` over a dense ``m`` x ``m`` array kept at the rows and columns of the groups' roots:
    the sum of the log-odds between two groups as real part (minus infinity once a cannot-link is among them),
    their number of scored pairs as imaginary part. A merge adds two rows, which forms the same sums as the
    dicts do, so the decisions are the same. The log-odds must be finite and their sizes sum to below 1e300 (a
    sum then never overflows); :func:`cluster` takes the dicts otherwise.

    >>> _merge_dense(3, np.array([0, 1]), np.array([1, 2]), np.array([0, 1, 0]), np.array([1, 2, 2]),
    ...              np.array([8.0, 5.0, -20.0]), [], [], -13.3).tolist()
    [0, 0, 2]
    """
    sw = np.asarray(sw, dtype=float)
    # a pair given twice (either way round) or a record paired with itself is summed in the order given
    # (found by sorting the pairs, not by tagging an m x m array: at 1,494 records 9 MB less to clear and touch)
    pair = np.minimum(sa, sb) * m + np.maximum(sa, sb)
    ordered = np.sort(pair)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    again = np.isin(pair, twice) if len(twice) else np.zeros(len(pair), dtype=bool)
    again |= sa == sb
    cross = np.zeros(m * m, dtype=complex)
    once = ~again
    value = sw[once] + (0.0 + 1.0j)
    cross[sa[once] * m + sb[once]] = value
    cross[sb[once] * m + sa[once]] = value
    for a, b, w in zip(sa[again].tolist(), sb[again].tolist(), sw[again].tolist()):
        cross[a * m + b] += complex(w, 1.0)
        cross[b * m + a] += complex(w, 1.0)
    bad = sw <= cannot
    cross.real[sa[bad] * m + sb[bad]] = -np.inf
    cross.real[sb[bad] * m + sa[bad]] = -np.inf
    cross = cross.reshape(m, m)
    group = list(range(m))  # quick-find: the root of every record, kept up to date
    up = np.arange(m)  # the same as a tree of roots (each merged root points at the one it joined), as an array
    members = [[x] for x in range(m)]
    human_no = _refusals(different)

    def merge(ra: int, rb: int) -> None:
        if len(members[ra]) < len(members[rb]):
            ra, rb = rb, ra
        cross[ra] += cross[rb]
        cross[:, ra] = cross[ra]
        moved = members[rb]
        for x in moved:
            group[x] = ra
        up[rb] = ra
        members[ra] += moved
        members[rb] = []
        _move_refusals(human_no, ra, rb)

    for a, b in same:
        ra, rb = group[a], group[b]
        if ra != rb and rb not in human_no.get(ra, ()):
            merge(ra, rb)
    # links in blocks: a link whose ends were in one group at the start of its block is skipped unseen
    block = 512
    for at in range(0, len(edge_a), block):
        ea, eb = edge_a[at:at + block], edge_b[at:at + block]
        while True:  # every record's root: the tree's paths compressed (the roots merged since the last block)
            top = up[up]
            if np.array_equal(top, up):
                break
            up = top
        todo = up[ea] != up[eb]
        if not todo.any():
            continue
        for a, b in zip(ea[todo].tolist(), eb[todo].tolist()):
            ra, rb = group[a], group[b]
            if ra == rb or rb in human_no.get(ra, ()):
                continue
            between = cross.item(ra, rb)  # a Python complex: its parts are Python floats
            if between.imag and between.real / between.imag <= 0:
                continue
            merge(ra, rb)
    return np.array(group, dtype=np.int64)


def _dobs_compatible(a: int, b: int) -> bool:
    """Two birth dates as ``yyyymmdd`` ints (0 unknown) fit one person: equal, day and month swapped, or
    at most one of year/month/day different (a typo)."""
    if not a or not b or a == b:
        return True
    ya, ma, da = a // 10000, a // 100 % 100, a % 100
    yb, mb, db = b // 10000, b // 100 % 100, b % 100
    if ya == yb and ma == db and da == mb:
        return True
    return (ya == yb) + (ma == mb) + (da == db) >= 2


class _Groups:
    """Union-find over records with the identifying values of each group (birth dates, BSNs) and the
    human "different" judgements, so that a merge can be refused when it would put a contradiction in
    one entity."""

    def __init__(self, labels: np.ndarray, dob: np.ndarray, ident: np.ndarray, different: list[tuple[int, int]]):
        self.parent: dict[int, int] = {}
        self.dobs: dict[int, set[int]] = defaultdict(set)
        self.ids: dict[int, set[int]] = defaultdict(set)
        self.human_no: dict[int, set[int]] = defaultdict(set)
        for node in np.flatnonzero(dob > 0).tolist():
            self.dobs[int(labels[node])].add(int(dob[node]))
        for node in np.flatnonzero(ident >= 0).tolist():
            self.ids[int(labels[node])].add(int(ident[node]))
        for a, b in different:
            ra, rb = int(labels[a]), int(labels[b])
            if ra != rb:
                self.human_no[ra].add(rb)
                self.human_no[rb].add(ra)

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def anchored(self, root: int) -> bool:
        return bool(self.dobs.get(root) or self.ids.get(root))

    def compatible(self, ra: int, rb: int) -> bool:
        if rb in self.human_no.get(ra, ()):
            return False
        ia, ib = self.ids.get(ra), self.ids.get(rb)
        if ia and ib:
            if ia & ib:
                return True  # a shared valid identifier outweighs a birth-date difference
            return False
        da, db = self.dobs.get(ra), self.dobs.get(rb)
        if da and db:
            return all(_dobs_compatible(x, y) for x in da for y in db)
        return True

    def union(self, ra: int, rb: int) -> int:
        if len(self.dobs.get(ra, ())) + len(self.ids.get(ra, ())) < len(self.dobs.get(rb, ())) + len(self.ids.get(rb, ())):
            ra, rb = rb, ra
        self.parent[rb] = ra
        if rb in self.dobs:
            self.dobs[ra] |= self.dobs.pop(rb)
        if rb in self.ids:
            self.ids[ra] |= self.ids.pop(rb)
        no = self.human_no.pop(rb, set())
        if no:
            self.human_no[ra] |= no
            for other in no:
                self.human_no[other].discard(rb)
                self.human_no[other].add(ra)
        return ra


def attach_name_only(labels: np.ndarray, left: np.ndarray, right: np.ndarray, logodds: np.ndarray,
                     dob: np.ndarray, ident: np.ndarray, margin: float = 6.0,
                     different: list[tuple[int, int]] | None = None, joins: np.ndarray | None = None) -> np.ndarray:
    """Add the links that agree on no identifying field ("name only") to a clustering, where unambiguous.

    Parameters
    ----------
    labels:
        Entity label per record from :func:`cluster` on the anchored links.
    left, right, logodds:
        The name-only links (record indices, log-odds in bits).
    dob, ident:
        Per record the birth date as ``yyyymmdd`` (0 unknown) and an identifier code (-1 unknown); a group
        holding either is *anchored*.
    margin:
        A group without anchor that links to several anchored groups joins the best one only when it beats
        the runner-up by at least this many bits; otherwise it stays apart (a namesake cannot be told apart).
    different:
        Human "different" judgements (record-index pairs); never merged.
    joins:
        Per link: may it join two groups directly (steps 1 and 3)? Links without (candidates below the match
        probability) only count in step 2, where ambiguity is checked. Default: all may.

    Steps: (1) two anchored groups whose only links are name-only merge when each is the other's only
    anchored candidate and their birth dates and identifiers fit; (2) an unanchored group joins its
    anchored candidate when that choice is clear; (3) the remaining name-only links join unanchored groups
    to each other (strongest first), never two anchored groups and never across a contradiction.

    >>> # record 2 (no birth date) looks like both 0 and 1, who are different people: it stays apart
    >>> attach_name_only(np.array([0, 1, 2]), np.array([0, 1]), np.array([2, 2]), np.array([5.0, 5.0]),
    ...                  np.array([19850307, 19620101, 0]), np.array([-1, -1, -1])).tolist()
    [0, 1, 2]
    >>> attach_name_only(np.array([0, 1, 2]), np.array([0, 1]), np.array([2, 2]), np.array([5.0, 5.0]),
    ...                  np.array([19850307, 0, 0]), np.array([-1, -1, -1])).tolist()
    [0, 0, 0]
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    if len(left) == 0:
        return labels
    gl, gr = labels[left], labels[right]
    # only the groups these links touch matter: give the union-find their members' birth dates and ids
    involved = np.isin(labels, np.unique(np.r_[gl, gr]))
    groups = _Groups(labels, np.where(involved, np.asarray(dob, dtype=np.int64), 0),
                     np.where(involved, np.asarray(ident, dtype=np.int64), -1), list(different or []))
    keep = gl != gr
    if not keep.any():
        return labels
    a = np.minimum(gl[keep], gr[keep])
    b = np.maximum(gl[keep], gr[keep])
    w = np.asarray(logodds, dtype=float)[keep]
    j = (np.ones(len(left), dtype=bool) if joins is None else np.asarray(joins, dtype=bool))[keep]
    # strongest link per pair of groups
    order = np.lexsort((-w, b, a))
    a, b, w, j = a[order], b[order], w[order], j[order]
    first = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
    a, b, w, j = a[first].tolist(), b[first].tolist(), w[first].tolist(), j[first].tolist()
    cand: dict[int, list[tuple[float, int]]] = defaultdict(list)
    direct: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for x, y, s, ok in zip(a, b, w, j):
        cand[x].append((s, y))
        cand[y].append((s, x))
        if ok:
            direct[x].append((s, y))
            direct[y].append((s, x))

    def anchored_candidates(g: int, links=cand) -> list[tuple[float, int]]:
        best: dict[int, float] = {}
        for s, other in links[g]:
            r = groups.find(other)
            if r != groups.find(g) and groups.anchored(r) and groups.compatible(groups.find(g), r):
                best[r] = max(best.get(r, -math.inf), s)
        return sorted(((s, r) for r, s in best.items()), key=lambda t: (-t[0], t[1]))

    # (1) anchored with anchored: mutual only candidates
    for g in sorted(cand):
        if not groups.anchored(g):
            continue
        mine = anchored_candidates(g, direct)
        if len(mine) != 1 or len(anchored_candidates(g)) != 1:
            continue
        other = mine[0][1]
        theirs = anchored_candidates(other)
        if len(theirs) == 1 and theirs[0][1] == groups.find(g):
            groups.union(groups.find(g), other)
    # (2) unanchored groups pick their anchored candidate when the choice is clear
    ambiguous: set[int] = set()
    for g in sorted(cand):
        if groups.anchored(groups.find(g)):
            continue
        mine = anchored_candidates(g)
        if not mine:
            continue
        if len(mine) == 1 or mine[0][0] - mine[1][0] >= margin:
            groups.union(mine[0][1], groups.find(g))
        else:
            ambiguous.add(g)
    # (3) the rest: unanchored groups with each other (or through them to one anchored group)
    for k in sorted(range(len(a)), key=lambda k: (-w[k], a[k], b[k])):
        x, y = a[k], b[k]
        if not j[k] or x in ambiguous or y in ambiguous:
            continue
        rx, ry = groups.find(x), groups.find(y)
        if rx == ry or (groups.anchored(rx) and groups.anchored(ry)) or not groups.compatible(rx, ry):
            continue
        groups.union(rx, ry)
    touched = np.unique(np.r_[gl, gr])
    roots = np.array([groups.find(int(g)) for g in touched.tolist()], dtype=np.int64)
    root_of = dict(zip(touched.tolist(), roots.tolist()))
    members = np.flatnonzero(np.isin(labels, touched))
    new = np.array([root_of[int(labels[i])] for i in members.tolist()], dtype=np.int64)
    labels[members] = new
    # relabel by smallest member
    smallest: dict[int, int] = {}
    for i, r in zip(members.tolist(), new.tolist()):
        if i < smallest.get(r, 1 << 62):
            smallest[r] = i
    labels[members] = np.array([smallest[r] for r in new.tolist()], dtype=np.int64)
    return labels
