"""The parts of an incremental run's per-type work that read only what they need give what reading everything
gave: the scoring of the new pairs (TF frequencies and double names of the pairs' records only), the naming of
entities (Arrow columns coded in Arrow, small tables ordered before they are made) and ``cluster`` given the
components it would make. Random small data; the oracle is the same call on data that takes the other path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.resolve import engine
from linkage.resolve.cluster import cluster, components
from linkage.scoring import ComparisonParams, FittedModel, double_name_pairs, double_name_table

NAMES = ["jansen", "yilmaz", "cornelisse", "bakker", "de vries", ""]
DATES = ["1971-02-18", "1968-05-01", "", None, float("nan")]  # prepared records hold '', never None: both kinds
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _records(draw, n: int) -> pd.DataFrame:
    p1 = [draw(st.sampled_from(NAMES)) for _ in range(n)]
    p2 = [draw(st.sampled_from(NAMES)) if draw(st.booleans()) else "" for _ in range(n)]
    dates = [draw(st.sampled_from(DATES)) for _ in range(n)]
    surname = [a if not b else a + "-" + b for a, b in zip(p1, p2)]
    return pd.DataFrame({"surname": surname, "part1": p1, "part2": p2, "birth_date": dates})


@st.composite
def scoring_cases(draw):
    n = draw(st.integers(2, 12))
    records = _records(draw, n)
    k = draw(st.integers(1, 20))
    left = np.array([draw(st.integers(0, n - 1)) for _ in range(k)], dtype=np.int64)
    right = np.array([draw(st.integers(0, n - 1)) for _ in range(k)], dtype=np.int64)
    gamma = np.array([[draw(st.integers(0, 3))] for _ in range(k)], dtype=np.int8)
    arrow = draw(st.booleans())
    return records, left, right, gamma, arrow


def _model(records: pd.DataFrame) -> FittedModel:
    levels = ("missing", "exact", "shares part of a double name", "different")
    comp = ComparisonParams("surname", levels, np.array([1, .8, .1, .1]), np.array([1, .01, .001, .989]))
    evidence = {"comparison": "surname", "level": levels[2], "via": "birth_date"}
    table = double_name_table(records.astype(object).fillna(""), evidence)
    tf = {"surname": {"column": "surname", "values": {"jansen": 0.02, "bakker": 0.01}, "default": 1e-5,
                      "minimum": 1e-6}}
    return FittedModel("person", [comp], prior=1e-4, match_probability=0.5, cannot_link_probability=1e-4,
                       tf=tf, double_names=table)


def _padded(records: pd.DataFrame, extra: int) -> pd.DataFrame:
    """The records followed by ``extra`` records no pair reads (their values may be anything)."""
    filler = pd.DataFrame({c: ["zzz"] * extra for c in records.columns})
    return pd.concat([records, filler], ignore_index=True)


@SETTINGS
@given(scoring_cases())
def test_pair_weights_read_only_the_pairs_records_and_weigh_the_same(case):
    records, left, right, gamma, arrow = case
    model = _model(records)
    # the oracle reads every record (a pair per record appended: more than half of them read, the whole path)
    every = np.arange(len(records))
    whole = model.pair_weights(records, np.r_[left, every], np.r_[gamma, np.zeros((len(every), 1), np.int8)],
                               np.r_[right, every])[:len(left)]
    whole_dn = double_name_pairs(records, np.r_[left, every], np.r_[right, every], model.double_names)[:len(left)]
    # the same records among many that no pair reads: the subset path (fewer than half the records read)
    padded = _padded(records, 5 * len(records))
    if arrow:
        padded = padded.astype("str")
    got = model.pair_weights(padded, left, gamma, right)
    assert np.array_equal(got, whole)
    assert np.array_equal(double_name_pairs(padded, left, right, model.double_names), whole_dn)
    assert np.array_equal(double_name_pairs(records, left, right, model.double_names), whole_dn)
    # and the pairs' records somewhere in the middle, shuffled among the others
    rng = np.random.default_rng(len(left))
    place = rng.permutation(len(padded))
    moved = padded.iloc[np.argsort(place)].reset_index(drop=True)  # record i now at place[i]
    assert np.array_equal(model.pair_weights(moved, place[left], gamma, place[right]), whole)


def test_double_names_a_missing_via_value_is_part_of_no_double_name_on_either_path():
    """A record without a birth date (None) next to a single-named one whose name and date are part of a seen
    double name: its -1 code once made the key of another (name, date), a false hit that depended on which
    records a run read."""
    table = {"via": "birth_date", "keys": [chr(31).join(["cornelisse", "yilmaz", "1971-02-18"])]}
    recs = pd.DataFrame({"part1": ["yilmaz", "cornelisse", "yilmaz", "bakker", "cornelisse"], "part2": [""] * 5,
                         "birth_date": ["1968-05-01", "1971-02-18", "1971-02-18", None, None]}, dtype=object)
    left, right = np.array([2, 0, 2]), np.array([3, 4, 1])
    assert double_name_pairs(recs, left, right, table).tolist() == [False, False, True]
    assert double_name_pairs(_padded(recs, 30), left, right, table).tolist() == [False, False, True]


@st.composite
def entity_cases(draw):
    n = draw(st.integers(1, 15))
    ids = [f"m{draw(st.integers(0, 10_000)):05d}" for _ in range(n)]
    ids = list(dict.fromkeys(ids))
    n = len(ids)
    labels = np.array([draw(st.integers(0, n - 1)) for _ in range(n)], dtype=np.int64)
    names = [draw(st.sampled_from(["piet", "Jan", "", "ñandu", "jan"])) for _ in range(n)]
    missing = [draw(st.booleans()) for _ in range(n)]
    records = pd.DataFrame({"mention_id": ids,
                            "name": [None if m else v for v, m in zip(names, missing)],
                            "kvk": [draw(st.sampled_from(["", "123", "456"])) for _ in range(n)],
                            "label": [draw(st.sampled_from(["A", "bb", "", "a"])) for _ in range(n)]})
    return records, labels


@SETTINGS
@given(entity_cases())
def test_entities_of_arrow_columns_and_small_tables_equal_the_pandas_way(case):
    records, labels = case
    as_objects = records.astype(object)
    as_arrow = records.astype("str")
    # the oracle: pandas' sorted factorize for every column (no column worked in Arrow), sorted as a table
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "_arrow_sorted_codes", lambda *a: None)
        mp.setattr(engine, "_SORT_BEFORE_UP_TO", 0)
        want_a, want_e = engine._entities(as_objects, labels, "business")
    for frame in (as_objects, as_arrow):
        for limit in (0, 10**6):  # sorted as a table / put in order before it is made
            old = engine._SORT_BEFORE_UP_TO
            engine._SORT_BEFORE_UP_TO = limit
            try:
                got_a, got_e = engine._entities(frame, labels, "business")
            finally:
                engine._SORT_BEFORE_UP_TO = old
            pd.testing.assert_frame_equal(got_a, want_a, check_exact=True)
            pd.testing.assert_frame_equal(got_e, want_e, check_exact=True)
            assert got_e["entity_id"].is_monotonic_increasing


def test_sorted_codes_equal_pandas_sorted_factorize():
    values = pd.Series(["b", "a", "é", "B", "", "a"], dtype="str")
    rows = np.array([0, 2, 3, 5])
    for column in (values, values.astype(object)):
        for r in (None, rows):
            codes, uniq = engine._sorted_codes(column, r)
            want_codes, want_uniq = pd.factorize((column if r is None else column.iloc[r]).astype(object), sort=True)
            assert codes.tolist() == want_codes.tolist() and list(uniq) == list(want_uniq)


@SETTINGS
@given(st.integers(2, 30), st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29), st.floats(-20, 20)),
                                    min_size=1, max_size=60))
def test_cluster_given_its_components_labels_the_same(n, triples):
    triples = [(a % n, b % n, w) for a, b, w in triples if a % n != b % n]
    if not triples:
        return
    a = np.array([t[0] for t in triples]); b = np.array([t[1] for t in triples])
    w = np.array([t[2] for t in triples])
    link = w > 0
    want = cluster(n, a[link], b[link], w[link], a[~link], b[~link], w[~link])
    given_comp = components(n, a[link], b[link])
    got = cluster(n, a[link], b[link], w[link], a[~link], b[~link], w[~link], linked=given_comp)
    assert got.tolist() == want.tolist()



@pytest.mark.parametrize("seed", range(12))
def test_both_ends_in_by_sorted_stretches_equals_plain(seed):
    """Stored pairs sorted by left end in a few stretches (one per run's chunk): the binary search per stretch
    finds exactly the pairs a gather finds, few or many records marked."""
    from linkage.resolve.incremental import _both_ends_in

    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    chunks = [np.sort(rng.integers(0, n, int(rng.integers(0, 4000)))) for _ in range(int(rng.integers(1, 5)))]
    left = np.concatenate(chunks).astype(np.int32 if seed % 2 else np.int64)
    right = rng.integers(0, n, len(left)).astype(left.dtype)
    for share in (0.001, 0.01, 0.2):
        marked = rng.random(n) < share
        got = _both_ends_in(marked, left, right)
        assert got.tolist() == np.flatnonzero(marked[left] & marked[right]).tolist()


@pytest.mark.parametrize("seed", range(12))
def test_region_labels_given_a_finer_partition_are_the_same(seed):
    """The regions from the components of some of their pairs (the strong links) joined by the pairs between
    them are the regions of all the pairs."""
    from linkage.resolve.incremental import region_labels

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    m = int(rng.integers(0, 3 * n))
    left, right = rng.integers(0, n, m), rng.integers(0, n, m)
    flags = rng.random(m) < 0.7
    some = flags & (rng.random(m) < 0.6)
    finer = components(n, left[some], right[some])
    want = region_labels(n, left, right, flags, [])
    assert region_labels(n, left, right, flags, [], finer).tolist() == want.tolist()


@pytest.mark.parametrize("seed", range(16))
def test_lex_order_equals_lexsort(seed):
    """The window rules' sort by block, order_by codes and record: one packed key sorts as lexsort does
    (codes may be -1; spans too wide for one key fall back to lexsort)."""
    from linkage.blocking import _lex_order

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    k = int(rng.integers(1, 5))
    wide = seed % 4 == 0
    columns = [rng.integers(-1, int(rng.integers(1, 2**40 if wide else 50)), n) for _ in range(k)]
    columns.append(rng.permutation(n) if seed % 2 else np.arange(n))
    assert _lex_order(columns).tolist() == np.lexsort(tuple(reversed(columns))).tolist()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
