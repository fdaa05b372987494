"""linkage.resolve.cluster: the constrained merging gives exactly the labels of the plain dict-of-dicts version
it replaced (kept below as the oracle), on the dense path, the dict path and the mix the thresholds choose."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.resolve import cluster as cl
from linkage.resolve.cluster import cluster, components


# -- the oracle: cluster() as it was before the dense path (session 11), one Python loop per pair ----------

def oracle(n, link_left, link_right, link_logodds, other_left=None, other_right=None, other_logodds=None,
           cannot_logodds=-13.3, same=None, different=None):
    same = list(same or [])
    different = list(different or [])
    if other_left is None:
        other_left = other_right = np.empty(0, np.int64)
        other_logodds = np.empty(0, float)
    sl = np.array([a for a, _ in same], dtype=np.int64)
    sr = np.array([b for _, b in same], dtype=np.int64)
    comp = components(n, np.r_[link_left, sl].astype(np.int64), np.r_[link_right, sr].astype(np.int64))
    inside = comp[other_left] == comp[other_right] if len(other_left) else np.zeros(0, bool)
    dl = np.array([a for a, _ in different], dtype=np.int64)
    dr = np.array([b for _, b in different], dtype=np.int64)
    flagged = set(comp[other_left[inside]].tolist())
    if len(dl):
        flagged |= set(comp[dl[comp[dl] == comp[dr]]].tolist())
    if not flagged:
        return comp
    flagged_arr = np.array(sorted(flagged), dtype=np.int64)
    in_flagged = np.isin(comp, flagged_arr)
    lk = in_flagged[link_left] if len(link_left) else np.zeros(0, bool)
    ok = inside.copy()
    ok[inside] = in_flagged[other_left[inside]]
    edges_by_comp = defaultdict(list)
    scored_by_comp = defaultdict(list)
    comp_of = comp.tolist()
    for a, b, w in zip(link_left[lk].tolist(), link_right[lk].tolist(), link_logodds[lk].tolist()):
        c = comp_of[a]
        edges_by_comp[c].append((-w, a, b) if a < b else (-w, b, a))
        scored_by_comp[c].append((a, b, w))
    for a, b, w in zip(other_left[ok].tolist(), other_right[ok].tolist(), other_logodds[ok].tolist()):
        scored_by_comp[comp_of[a]].append((a, b, w))
    same_by_comp = defaultdict(list)
    for a, b in same:
        if in_flagged[a]:
            same_by_comp[int(comp[a])].append((min(a, b), max(a, b)))
    diff_by_comp = defaultdict(list)
    for a, b in different:
        if comp[a] == comp[b] and in_flagged[a]:
            diff_by_comp[int(comp[a])].append((a, b))
    out = comp.copy()
    for c in flagged_arr.tolist():
        labels = _oracle_constrained(sorted(edges_by_comp[c]), scored_by_comp[c], sorted(same_by_comp[c]),
                                     diff_by_comp[c], cannot_logodds)
        for node, root in labels.items():
            out[node] = root
    smallest = {}
    for node in np.flatnonzero(in_flagged).tolist():
        r = int(out[node])
        smallest[r] = min(smallest.get(r, node), node)
    for node in np.flatnonzero(in_flagged).tolist():
        out[node] = smallest[int(out[node])]
    return out


def _oracle_constrained(edges, scored, same, different, cannot):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    cross = defaultdict(dict)
    human_no = defaultdict(set)
    for a, b, w in scored:
        find(a), find(b)
        for x, y in ((a, b), (b, a)):
            entry = cross[x].setdefault(y, [0.0, 0, False])
            entry[0] += w
            entry[1] += 1
            entry[2] = entry[2] or w <= cannot
    for a, b in different:
        find(a), find(b)
        human_no[a].add(b)
        human_no[b].add(a)

    def merge(ra, rb):
        if len(cross[ra]) < len(cross[rb]):
            ra, rb = rb, ra
        parent[rb] = ra
        for other, (s, k, bad) in cross.pop(rb, {}).items():
            if other == ra:
                continue
            entry = cross[ra].setdefault(other, [0.0, 0, False])
            entry[0] += s
            entry[1] += k
            entry[2] = entry[2] or bad
            back = cross[other]
            back.pop(rb, None)
            back[ra] = entry
        cross[ra].pop(rb, None)
        human_no[ra] |= human_no.pop(rb, set())
        for other in list(human_no[ra]):
            human_no[other].discard(rb)
            human_no[other].add(ra)

    for a, b in same:
        ra, rb = find(a), find(b)
        if ra != rb and rb not in human_no.get(ra, ()):
            merge(ra, rb)
    for _, a, b in edges:
        ra, rb = find(a), find(b)
        if ra == rb or rb in human_no.get(ra, ()):
            continue
        entry = cross[ra].get(rb)
        if entry is not None and (entry[2] or entry[0] / max(entry[1], 1) <= 0):
            continue
        merge(ra, rb)
    return {node: find(node) for node in list(parent)}


# -- the paths the new code can take ---------------------------------------------------------------------

PATHS = {"default": None, "dense": (0, 10 ** 9), "dicts": (10 ** 9, 10 ** 9)}


@pytest.fixture(params=sorted(PATHS))
def path(request, monkeypatch):
    """Run a test with the thresholds as shipped, with every component dense, and with every one by dicts."""
    if PATHS[request.param] is not None:
        low, high = PATHS[request.param]
        monkeypatch.setattr(cl, "DENSE_MIN", low)
        monkeypatch.setattr(cl, "DENSE_MAX", high)
        monkeypatch.setattr(cl, "DENSE_MIN_PAIRS_PER_RECORD", 0)
    return request.param


def both(*args, **kw):
    """Labels of the new code and of the oracle on the same input."""
    return cluster(*args, **kw).tolist(), oracle(*args, **kw).tolist()


# small weights with exact ties and sums that cancel to zero, and pairs at and below the cannot-link level
WEIGHTS = st.sampled_from([8.0, 5.0, 5.0, 3.0, 2.5, 1.0, 0.5, 0.1, 0.2, 0.3, -0.0, 0.0, -0.5, -1.0, -2.5,
                           -3.0, -5.0, -13.3, -20.0])


@st.composite
def inputs(draw):
    """A few records, links and other pairs between them (repeats and reversed repeats included), judgements."""
    n = draw(st.integers(2, 12))
    node = st.integers(0, n - 1)
    links = draw(st.lists(st.tuples(node, node, WEIGHTS.filter(lambda w: w > 0)), min_size=1, max_size=30))
    links = [(a, b, w) for a, b, w in links if a != b]
    others = draw(st.lists(st.tuples(node, node, WEIGHTS), max_size=20))
    others = [(a, b, w) for a, b, w in others if a != b]
    same = [(a, b) for a, b in draw(st.lists(st.tuples(node, node), max_size=3)) if a != b]
    different = [(a, b) for a, b in draw(st.lists(st.tuples(node, node), max_size=3)) if a != b]

    def arrays(rows):
        return (np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=np.int64),
                np.array([r[2] for r in rows], dtype=float))

    return (n, *arrays(links), *arrays(others)), {"cannot_logodds": -13.3, "same": same, "different": different}


# the path fixture sets module thresholds for the whole test, which is what every example should see
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs())
def test_same_labels_as_the_oracle(path, case):
    args, kw = case
    new, old = both(*args, **kw)
    assert new == old


def random_hub(rng, m, links_per_record, n_other, n_cannot, ties):
    """One big component like the generated hub addresses: many strong links, a few pairs against."""
    a = rng.integers(0, m, m * links_per_record)
    b = rng.integers(0, m, m * links_per_record)
    a, b = np.r_[np.arange(m - 1), a], np.r_[np.arange(1, m), b]  # a chain keeps it one component
    keep = a != b
    a, b = a[keep], b[keep]
    if ties:
        w = rng.choice([1.0, 2.0, 3.5, 6.0, 9.25], len(a))
    else:
        w = rng.normal(8.0, 4.0, len(a)).clip(0.05)
    oa, ob = rng.integers(0, m, n_other + n_cannot), rng.integers(0, m, n_other + n_cannot)
    ow = np.r_[rng.normal(-4.0, 3.0, n_other).clip(-13.0), rng.uniform(-40.0, -13.3, n_cannot)]
    keep = oa != ob
    return a, b, w, oa[keep], ob[keep], ow[keep]


@pytest.mark.parametrize("seed", range(6))
def test_same_labels_on_a_hub(path, seed):
    rng = np.random.default_rng(seed)
    m = [40, 150, 400][seed % 3]
    a, b, w, oa, ob, ow = random_hub(rng, m, 12, m, m // 4, ties=seed % 2 == 0)
    # shift into a larger record range with a small component beside it, records interleaved
    n = 2 * m + 6
    a, b, oa, ob = 2 * a + 1, 2 * b + 1, 2 * oa + 1, 2 * ob + 1
    a, b, w = np.r_[a, [0, 2]], np.r_[b, [2, 4]], np.r_[w, [5.0, 5.0]]
    oa, ob, ow = np.r_[oa, [0]], np.r_[ob, [4]], np.r_[ow, [-30.0]]
    different = [(int(x), int(y)) for x, y in zip(2 * rng.integers(0, m, 3) + 1, 2 * rng.integers(0, m, 3) + 1)
                 if x != y]
    same = [(int(x), int(y)) for x, y in zip(2 * rng.integers(0, m, 2) + 1, 2 * rng.integers(0, m, 2) + 1)
            if x != y]
    for judged in ({}, {"same": same, "different": different}):
        new, old = both(n, a, b, w, oa, ob, ow, cannot_logodds=-13.3, **judged)
        assert new == old
        assert len(set(new)) > 3  # the pairs against really split the hub


def test_pairs_given_twice_and_in_any_order(path):
    # 0-1 as a link and again (reversed) as a pair against: the sums are formed in the order given
    args = (4, np.array([0, 2, 1]), np.array([1, 3, 2]), np.array([0.1, 4.0, 0.2]),
            np.array([1, 0, 3, 0]), np.array([0, 2, 1, 2]), np.array([-0.1, 0.3, -0.2, -0.3]))
    new, old = both(*args)
    assert new == old
    # the link listed last comes first: links are tried strongest first, ties by record
    new, old = both(3, np.array([1, 0]), np.array([2, 1]), np.array([5.0, 5.0]),
                    np.array([0]), np.array([2]), np.array([-20.0]))
    assert new == old == [0, 0, 2]


def test_huge_log_odds_take_the_dict_path(path):
    # sums that could overflow are never formed on the dense arrays, where minus infinity marks a cannot-link
    args = (3, np.array([0, 1]), np.array([1, 2]), np.array([1e300, 1e300]),
            np.array([0]), np.array([2]), np.array([np.inf]))
    new, old = both(*args)
    assert new == old
    # +inf meeting the minus-infinity cannot-link mark would make NaN on the dense arrays: 0-2 stay apart
    args = (3, np.array([0, 1]), np.array([1, 2]), np.array([5.0, 4.0]),
            np.array([0, 2]), np.array([2, 1]), np.array([-20.0, np.inf]))
    new, old = both(*args)
    assert new == old == [0, 0, 2]


def test_nan_link_log_odds_are_refused_and_untyped_empty_indices_work():
    with pytest.raises(ValueError, match="NaN"):
        cluster(3, np.array([0, 1]), np.array([1, 2]), np.array([np.nan, 5.0]), np.array([0]), np.array([2]),
                np.array([-20.0]))
    empty = np.array([])
    assert cluster(3, empty, empty, empty, different=[(0, 0)]).tolist() == [0, 1, 2]
    assert cluster(3, empty, empty, empty, np.array([1]), np.array([1]), np.array([-1.0])).tolist() == [0, 1, 2]


def test_large_sparse_components_take_the_dict_path(monkeypatch):
    # a chain of 3,000 records with one pair against per record: dense would copy a 3,000-row column per merge
    seen = []
    real = cl._merge_dense
    monkeypatch.setattr(cl, "_merge_dense", lambda *a: seen.append(a[0]) or real(*a))
    m = 3000
    left, right = np.arange(m - 1), np.arange(1, m)
    w = np.linspace(1.0, 9.0, m - 1)
    args = (m, left, right, w, np.arange(0, m - 2), np.arange(2, m), np.full(m - 2, -2.0))
    new, old = both(*args)
    assert new == old and seen == []


def test_judgements(path):
    # "same" joins across a cannot-link; "different" keeps a linked pair apart and blocks the chain
    args = (4, np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([9.0, 8.0, 7.0]),
            np.array([0]), np.array([3]), np.array([-30.0]))
    new, old = both(*args, same=[(3, 0)], different=[(1, 2)])
    assert new == old == [0, 0, 2, 0]


def test_components_without_pairs_against_are_kept(path):
    labels = cluster(5, np.array([4, 1]), np.array([3, 0]), np.array([2.0, 2.0]))
    assert labels.tolist() == [0, 0, 2, 3, 3]
