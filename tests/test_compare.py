"""Comparison ladders: missing is not evidence, levels tried top to bottom, vectorised scorers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from linkage.compare import compare, similarity
from linkage.er_settings import Comparison, Level, load_er_settings
from linkage.resolve.features import prepare

PERSON = load_er_settings().policy("person")


def _levels(rows, pairs, comparison):
    records = prepare(pd.DataFrame(rows).assign(entity_type="person"), "person")
    comp = PERSON.comparison(comparison)
    g = compare(records, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), [comp])
    return [comp.level_names[x] for x in g[:, 0]]


@pytest.mark.parametrize("a, b, level", [
    ({"first_name": "Jan", "last_name": "Vries"}, {"first_name": "Jan", "last_name": "Vries"}, "exact"),
    ({"first_name": "Johannes"}, {"first_name": "Johanes"}, "close"),
    ({"first_name": "J."}, {"first_name": "Jan"}, "initials agree"),
    ({"first_name": "J.P."}, {"first_name": "J."}, "initials agree"),
    ({"first_name": "J."}, {"first_name": "K."}, "different"),
    ({"first_name": "Jan"}, {"first_name": "Joost"}, "different"),
    ({"last_name": "Vries"}, {"first_name": "Jan"}, "missing"),
])
def test_first_name_ladder(a, b, level):
    assert _levels([{**a, "mention_id": "a"}, {**b, "mention_id": "b"}], [(0, 1)], "first_name") == [level]


@pytest.mark.parametrize("a, b, level", [
    ("1985-03-07", "1985-03-07", "exact"), ("1985-03-07", "1985-07-03", "day and month swapped"),
    ("1985-03-07", "1986-03-07", "one part differs"), ("1985-03-07", "1990-12-01", "different"),
    ("1985-03-07", None, "missing"),
])
def test_birth_date_ladder(a, b, level):
    rows = [{"mention_id": "a", "last_name": "x", "birth_date_norm": a}, {"mention_id": "b", "last_name": "x", "birth_date_norm": b}]
    assert _levels(rows, [(0, 1)], "birth_date") == [level]


@pytest.mark.parametrize("a, b, level", [
    ("de Vries", "Vries", "exact"), ("Jansen", "Janssen", "close"),
    ("Jansen-de Vries", "de Vries", "shares part of a double name"), ("Bakker", "Visser", "different"),
])
def test_surname_ladder(a, b, level):
    rows = [{"mention_id": "a", "last_name": a}, {"mention_id": "b", "last_name": b}]
    assert _levels(rows, [(0, 1)], "surname") == [level]


def test_missing_is_level_zero_and_exact_needs_values():
    comp = Comparison("x", "x", (Level("exact", "exact"),))
    df = pd.DataFrame({"x": ["a", "a", "", ""]})
    g = compare(df, np.array([0, 0, 2]), np.array([1, 2, 3]), [comp])
    assert g[:, 0].tolist() == [1, 0, 0]


def test_vectorised_equals_scalar_scorer():
    names = ["jansen", "janssen", "de jong", "jong", "bakker", "backer"] * 50
    df = pd.DataFrame({"s": names})
    comp = Comparison("s", "s", (Level("close", "jaro_winkler", 0.9),))
    rng = np.random.default_rng(1)
    left, right = rng.integers(0, len(names), 500), rng.integers(0, len(names), 500)
    g = compare(df, left, right, [comp])
    expected = [1 if similarity(names[a], names[b]) >= 0.9 else 2 for a, b in zip(left, right)]
    assert g[:, 0].tolist() == expected


def test_scorer_contract():
    assert similarity(None, "x") == 0.0
    assert similarity("abc", "abc", "levenshtein") == 1.0
    assert 0 <= similarity("abc", "xyz", "damerau") <= 1


def test_double_name_parts_in_other_order():
    rows = [{"mention_id": "a", "last_name": "Dagsburg-van Dijk"}, {"mention_id": "b", "last_name": "van Dijk-Dagsburg"}]
    assert _levels(rows, [(0, 1)], "surname") == ["same double name, parts in another order"]
