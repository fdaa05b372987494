"""The faster ways of the incremental resolve give what the plain ways give: value codes of Arrow and object
columns, entity naming (:func:`linkage.resolve.engine._entities`), the scans of stored pairs
(:func:`linkage.resolve.incremental._both_ends_in`). Random small data, many seeds, known answers from a
plain version written here."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from linkage.compare import PairFrame, compare
from linkage.er_settings import load_er_settings
from linkage.resolve.engine import _entities
from linkage.resolve.incremental import _both_ends_in

WORDS = ["jan", "jansen", "janssen", "vries", "", "de vries", "müller", "muller", "ĳssel", "a", "b"]


def _texts(rng: np.random.Generator, n: int, nan: bool = True) -> list:
    out = [WORDS[i] for i in rng.integers(0, len(WORDS), n)]
    if nan:
        for i in np.flatnonzero(rng.random(n) < 0.1):
            out[i] = None
    return out


def _plain_codes(column: pd.Series) -> tuple[np.ndarray, list]:
    """What PairFrame.codes gave before: the values as Python objects, '' for missing, factorized."""
    codes, uniques = pd.factorize(pd.Series(column.to_numpy(dtype=object)).fillna(""))
    return codes.astype(np.int64), list(np.asarray(uniques, dtype=object))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("dtype", ["str", object])
def test_codes_equal_plain(seed, dtype):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    col = pd.Series(_texts(rng, n), dtype=dtype)
    pf = PairFrame(pd.DataFrame({"x": col}), np.arange(n), np.arange(n))
    codes, uniques, empty = pf.codes("x")
    want_codes, want_uniques = _plain_codes(col)
    assert codes.tolist() == want_codes.tolist() and list(uniques) == want_uniques
    assert empty == (want_uniques.index("") if "" in want_uniques else -2)
    missing = pf.codes("not there")  # a column the records lack: every value empty
    assert missing[0].tolist() == [0] * n and list(missing[1]) == [""] and missing[2] == 0


def _people(rng: np.random.Generator, n: int, dtype) -> pd.DataFrame:
    years = rng.integers(1950, 1955, n)
    df = pd.DataFrame({
        "first_name": _texts(rng, n), "initials": [w[:1] if w else "" for w in _texts(rng, n, nan=False)],
        "surname": _texts(rng, n), "surname_sorted": _texts(rng, n), "part1": _texts(rng, n),
        "part2": _texts(rng, n), "birth_date": [f"{y}-01-02" for y in years.tolist()],
        "bsn": _texts(rng, n), "national_id": _texts(rng, n)})
    df = df.astype({c: dtype for c in df.columns})
    df["by"], df["bm"], df["bd"] = years.astype(np.int32), np.ones(n, np.int32), np.full(n, 2, np.int32)
    return df


@pytest.mark.parametrize("seed", range(10))
def test_compare_same_for_arrow_and_object_columns(seed):
    """Level indices do not depend on how the text columns are held (the incremental run's are Arrow)."""
    rng = np.random.default_rng(seed)
    n = 30
    comps = load_er_settings().policy("person").comparisons
    left, right = rng.integers(0, n, 200), rng.integers(0, n, 200)
    arrow = _people(rng, n, "str")
    plain = arrow.astype({c: object for c in arrow.columns if c not in ("by", "bm", "bd")})
    assert np.array_equal(compare(arrow, left, right, comps, 1), compare(plain, left, right, comps, 1))


def _plain_entities_labels(records: pd.DataFrame, labels: np.ndarray) -> dict:
    """Per smallest mention id of a group: its label the plain way (most frequent, then longest, then first in
    sorted order)."""
    out = {}
    df = pd.DataFrame({"g": labels, "m": records["mention_id"].to_numpy(dtype=object),
                       "l": records["label"].to_numpy(dtype=object)})
    for _, grp in df.groupby("g"):
        counts = grp["l"].value_counts()
        best = sorted(counts.index, key=lambda v: (-counts[v], -len(v), v))[0]
        out[min(grp["m"])] = best
    return out


@pytest.mark.parametrize("seed", range(25))
def test_entities_same_for_arrow_and_object_and_plain(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    ids = [f"m{i:03d}" for i in rng.permutation(200)[:n]]
    names = ["ab", "ba", "abc", "b", "ab", "zz", "é", "e"]
    base = pd.DataFrame({
        "mention_id": ids, "label": [names[i] for i in rng.integers(0, len(names), n)],
        "street": _texts(rng, n, nan=False), "house_number": _texts(rng, n, nan=False),
        "suffix": _texts(rng, n, nan=False), "postcode": _texts(rng, n, nan=False), "city": _texts(rng, n, nan=False)})
    labels = rng.integers(0, max(1, n // 3), n)
    got = [_entities(base.astype(dtype), labels, "address") for dtype in (object, "str")]
    for a, b in zip(got[0], got[1]):
        assert a.astype(object).equals(b.astype(object))
    assignments, ents = got[1]
    # the label of each entity the plain way; attributes: the sorted distinct non-empty values per key
    plain = _plain_entities_labels(base, labels)
    by_smallest = {}
    for g in np.unique(labels).tolist():
        rows = np.flatnonzero(labels == g)
        smallest = min(base["mention_id"].iloc[rows])
        eid = assignments.loc[assignments["mention_id"] == smallest, "entity_id"].item()
        row = ents[ents["entity_id"] == eid].iloc[0]
        by_smallest[smallest] = row["label"]
        attrs = json.loads(row["attributes"])
        for key in ("city", "house_number", "postcode", "street", "suffix"):
            values = sorted({v for v in base[key].iloc[rows] if v})
            assert attrs.get(key, []) == values
        assert row["n_mentions"] == len(rows)
    assert by_smallest == plain


@pytest.mark.parametrize("seed", range(20))
def test_both_ends_in_equals_plain(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 50))
    marked = rng.random(n) < rng.random()
    left = rng.integers(0, n, int(rng.integers(0, 300))).astype(np.int32)
    right = rng.integers(0, n, len(left)).astype(np.int32)
    assert _both_ends_in(marked, left, right).tolist() == np.flatnonzero(marked[left] & marked[right]).tolist()


def test_codes_of_a_categorical_column_with_a_missing_value():
    """A categorical column cannot take '' for its missing values in place: coded as Python objects (review)."""
    col = pd.Series(pd.Categorical(["x", None, "x", "y"]))  # '' is not one of its categories
    pf = PairFrame(pd.DataFrame({"x": col}), np.arange(4), np.arange(4))
    codes, uniques, empty = pf.codes("x")
    want_codes, want_uniques = _plain_codes(col)
    assert codes.tolist() == want_codes.tolist() == [0, 1, 0, 2] and list(uniques) == want_uniques == ["x", "", "y"]
    assert empty == 1


@pytest.mark.parametrize("dtype", [object, "str"])
def test_entities_missing_labels_count_as_empty(dtype):
    """A missing label counts as '': a group whose labels are all missing is labelled '', not with another
    group's label, and a missing label never outvotes a present one on length (review)."""
    base = pd.DataFrame({"mention_id": ["m1", "m2", "m3", "m4", "m5"],
                         "label": [None, None, "zeta", "alpha", None],
                         "street": "", "house_number": "", "suffix": "", "postcode": "", "city": ""}).astype(dtype)
    assignments, ents = _entities(base, np.array([0, 0, 1, 2, 2]), "address")
    label = dict(zip(ents["entity_id"].tolist(), ents["label"].tolist()))
    assert [label[e] for e in assignments["entity_id"].tolist()] == ["", "", "zeta", "alpha", "alpha"]


@pytest.mark.parametrize("dtype", [object, "str"])
def test_entities_missing_attribute_values_count_as_empty(dtype):
    """A missing attribute value is left out as '' is (it raised IndexError: final read of the change)."""
    base = pd.DataFrame({"mention_id": ["m1", "m2", "m3"], "label": ["a", "b", "c"], "street": ["x", None, None],
                         "house_number": "", "suffix": "", "postcode": "", "city": ""}).astype(dtype)
    assignments, ents = _entities(base, np.array([0, 0, 1]), "address")
    attrs = dict(zip(ents["entity_id"].tolist(), ents["attributes"].tolist()))
    assert [json.loads(attrs[e]) for e in assignments["entity_id"].tolist()] == [{"street": ["x"]}] * 2 + [{}]
