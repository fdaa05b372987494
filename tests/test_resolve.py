"""Resolution end to end: hand-made mentions with known answers, determinism, judgements, explain, tables."""
from __future__ import annotations

import pandas as pd
import pytest

from linkage import model
from linkage.resolve import explain_ids, explain_pair, resolve_mentions, resolve_table
from linkage.resolve.cluster import cluster

import numpy as np


def _person(mid, name=None, first=None, last=None, dob=None, bsn=None):
    return {"mention_id": mid, "report_id": "R" + mid, "entity_type": "person", "name": name, "first_name": first,
            "last_name": last, "birth_date_norm": dob, "bsn_norm": bsn}


PEOPLE = [
    _person("p01", "Jan de Vries", dob="1985-03-07", bsn="111222333"),
    _person("p02", "Vries, J. de", dob="1985-07-03"),
    _person("p03", first="Jan", last="de Vries", dob="1985-03-07"),
    _person("p04", "J. de Vries", dob="1985-03-07", bsn="111222333"),
    _person("p05", "Jan de Vries", dob="1962-11-23"),           # namesake, other birth date
    _person("p06", first="Jan", last="de Vries", dob="1962-11-23"),
    _person("p07", "Fatima el Amrani", dob="1990-01-15"),
    _person("p08", first="Fatima", last="El Amrani", dob="1990-01-15"),
    _person("p09", "Zwartkruis, Hendrika", dob="1948-05-30"),
    _person("p10", first="Hendrika", last="Zwartkruijs", dob="1948-05-30"),
    _person("p11", "Pieter Bakker", dob="1977-02-02", bsn="123456782"),
    _person("p12", "Kees Smit", dob="1955-12-12"),
]
TRUTH = {"p01": "A", "p02": "A", "p03": "A", "p04": "A", "p05": "B", "p06": "B", "p07": "C", "p08": "C",
         "p09": "D", "p10": "D", "p11": "E", "p12": "F"}


def _background(n=400):
    """Distinct filler persons so that the model has something to learn u from."""
    firsts = ["Anna", "Bram", "Carla", "Daan", "Eva", "Finn", "Gijs", "Hanna", "Iris", "Joris", "Lotte", "Milan"]
    lasts = ["Visser", "Smits", "Mulder", "Bos", "Vos", "Peters", "Hendriks", "Dekker", "Brouwer", "Kok",
             "Jacobs", "Maas", "Prins", "Blom", "Post", "Kuiper", "Kramer", "Groen", "Vink", "Timmermans"]
    rows = []
    for i in range(n):
        rows.append(_person(f"x{i:04d}", f"{firsts[i % len(firsts)]} {lasts[(i // len(firsts)) % len(lasts)]}",
                            dob=f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + (i * 7) % 28:02d}"))
    return rows


MIXED = PEOPLE + _background() + [
    {"mention_id": "v1", "report_id": "R1", "entity_type": "vehicle", "plate": "12-ABC-3", "plate_norm": "12ABC3"},
    {"mention_id": "v2", "report_id": "R2", "entity_type": "vehicle", "plate": "12abc3", "plate_norm": "12ABC3"},
    {"mention_id": "ph1", "report_id": "R3", "entity_type": "phone", "phone": "06-12345678", "phone_norm": None},
    {"mention_id": "ph2", "report_id": "R3", "entity_type": "phone", "phone": "+31612345678", "phone_norm": "+31612345678"},
]


@pytest.fixture(scope="module")
def resolution():
    return resolve_mentions(pd.DataFrame(MIXED))


def test_known_answers(resolution):
    a = resolution.assignments.set_index("mention_id")["entity_id"]
    groups = {}
    for mid, truth in TRUTH.items():
        groups.setdefault(truth, set()).add(a[mid])
    assert all(len(ids) == 1 for ids in groups.values()), groups
    assert len({next(iter(ids)) for ids in groups.values()}) == len(groups)
    assert a["v1"] == a["v2"] and a["ph1"] == a["ph2"]


def test_every_mention_once_and_entities_listed(resolution):
    assert sorted(resolution.assignments["mention_id"]) == sorted(m["mention_id"] for m in MIXED)
    ents = resolution.entities.set_index("entity_id")
    assert set(ents.index) == set(resolution.assignments["entity_id"])
    eid = resolution.assignments.set_index("mention_id").loc["p01", "entity_id"]
    assert resolution.mentions_of(eid) == ["p01", "p02", "p03", "p04"]
    assert ents.loc[eid, "n_mentions"] == 4 and "Vries" in ents.loc[eid, "label"]
    assert "1985-03-07" in ents.loc[eid, "attributes"]


def test_ids_are_deterministic_and_derived_from_mentions(resolution):
    again = resolve_mentions(pd.DataFrame(list(reversed(MIXED))))
    x = resolution.assignments.set_index("mention_id")["entity_id"].sort_index()
    y = again.assignments.set_index("mention_id")["entity_id"].sort_index()
    assert x.equals(y)
    assert x["p01"] == "e_person_" + model.stable_hash("person", "p01")


def test_model_and_report_are_data(resolution):
    import json

    json.dumps(resolution.model)
    assert resolution.blocking_report["person"]["total_pairs"] > 0
    assert {"left_id", "right_id", "match_probability", "matched"} <= set(resolution.pairs.columns)


def test_judgements_win():
    df = pd.DataFrame(MIXED)
    res = resolve_mentions(df, judgements=[("p01", "p04", "different"), ("p11", "p12", "same")])
    a = res.assignments.set_index("mention_id")["entity_id"]
    assert a["p01"] != a["p04"]
    assert a["p11"] == a["p12"]


def test_cannot_link_stops_chaining():
    # 0-1 strong, 1-2 weaker, 0-2 clearly different: 2 stays apart
    labels = cluster(3, np.array([0, 1]), np.array([1, 2]), np.array([10.0, 4.0]),
                     np.array([0]), np.array([2]), np.array([-30.0]), cannot_logodds=-13.0)
    assert labels.tolist() == [0, 0, 2]


def test_incremental_with_frozen_model_equals_full_run(resolution):
    df = pd.DataFrame(MIXED)
    people = df[df["entity_type"] == "person"]
    frozen = resolution.model
    full = resolve_mentions(people, model=frozen)
    old_ids = set(people["mention_id"]) - {"p02", "p10"}
    first = resolve_mentions(people[people["mention_id"].isin(old_ids)], model=frozen)
    inc = resolve_mentions(people, model=frozen, new_mention_ids={"p02", "p10"}, existing_pairs=first.pairs)
    x = full.assignments.set_index("mention_id")["entity_id"].sort_index()
    y = inc.assignments.set_index("mention_id")["entity_id"].sort_index()
    assert x.equals(y)


def test_explain_pair_in_plain_words(resolution):
    df = pd.DataFrame(MIXED).set_index("mention_id", drop=False)
    ex = explain_pair(df.loc["p01"], df.loc["p05"], resolution.model)
    rows = {r.field: r for r in ex.rows}
    assert rows["birth_date"].level == "different" and rows["birth_date"].weight < 0
    assert rows["surname"].level == "exact" and rows["surname"].weight > 0
    assert not ex.matched
    text = ex.to_text()
    assert "birth_date" in text and "bits" in text and "DIFFERENT" in text
    same = explain_pair(df.loc["p01"], df.loc["p04"], resolution.model)
    assert same.matched and "SAME" in same.to_text()
    by_entity = explain_ids(pd.DataFrame(MIXED), resolution.assignments, "p01",
                            resolution.assignments.set_index("mention_id").loc["p07", "entity_id"], resolution.model)
    assert not by_entity.matched


def test_resolve_table_links_two_sources(tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    a.write_text("id;voornaam;achternaam;geboren\n1;Jan;de Vries;07-03-1985\n2;Fatima;El Amrani;15-01-1990\n"
                 "3;Kees;Smit;12-12-1955\n", encoding="utf-8")
    b.write_text("id,naam,geboortedatum,nummer\n1,\"Vries, J. de\",1985-03-07,X1\n2,Fatima el Amrani,1990-01-15,\n"
                 "9,Anna Bakker,1970-01-01,X9\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    summary = resolve_table([a], "person", "id", {"voornaam": "first_name", "achternaam": "last_name",
                                                  "geboren": "birth_date"}, tmp_path / "single.csv")
    assert summary.records == 3 and summary.entities == 3
    # two files with different columns: resolve each mapping into one table first via two calls is not
    # needed: the same mapping may name columns present in every file, so use a shared layout here
    b2 = tmp_path / "b2.csv"
    b2.write_text("id;voornaam;achternaam;geboren\n1;J.;Vries, de;1985-03-07\n2;Fatima;el Amrani;1990-01-15\n"
                  "9;Anna;Bakker;1970-01-01\n", encoding="utf-8")
    summary = resolve_table([a, b2], "person", "id", {"voornaam": "first_name", "achternaam": "last_name",
                                                       "geboren": "birth_date"}, out)
    result = pd.read_csv(out, dtype=str).set_index("record_id")["entity_id"]
    assert summary.ids_prefixed and "a:1" in result.index
    assert result["a:1"] == result["b2:1"]
    assert result["a:2"] == result["b2:2"]
    assert result["a:3"] != result["b2:9"]
    assert summary.records == 6 and summary.entities == 4


# -- clustering with anchors: contradictions, name-only links, ambiguity --------------------------------

from linkage.resolve.cluster import _dobs_compatible, attach_name_only, components  # noqa: E402


def _union_find_components(n, left, right):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(left, right):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = [find(x) for x in range(n)]
    smallest = {}
    for x, r in enumerate(roots):
        smallest.setdefault(r, x)
    return [smallest[r] for r in roots]


def test_components_match_a_plain_union_find():
    rng = np.random.default_rng(3)
    for n, m in ((1, 0), (10, 5), (500, 400), (2000, 3000)):
        left, right = rng.integers(0, n, m), rng.integers(0, n, m)
        assert components(n, left, right).tolist() == _union_find_components(n, left.tolist(), right.tolist())


@pytest.mark.parametrize("a, b, ok", [
    (19850307, 19850307, True), (19850307, 19850703, True), (19850307, 19860307, True),
    (19850307, 19850308, True), (19850307, 19621123, False), (19850307, 0, True),
])
def test_birth_dates_that_fit_one_person(a, b, ok):
    assert _dobs_compatible(a, b) is ok


def test_name_only_link_joins_the_one_clear_candidate():
    labels = np.array([0, 1, 2, 3])
    dob = np.array([19850307, 19620101, 0, 0])
    none = np.full(4, -1)
    # 2 looks like 0 and 1 equally (namesakes): stays apart; 3 looks like 0 only: joins 0
    out = attach_name_only(labels, np.array([0, 1, 0]), np.array([2, 2, 3]), np.array([5.0, 5.0, 5.0]), dob, none)
    assert out.tolist() == [0, 1, 2, 0]
    # a clearly better candidate (margin in bits) is taken
    out = attach_name_only(labels, np.array([0, 1]), np.array([2, 2]), np.array([12.0, 3.0]), dob, none, margin=6)
    assert out.tolist() == [0, 1, 0, 3]


def test_name_only_links_never_join_a_contradiction_or_a_human_no():
    labels = np.array([0, 1, 2])
    dob = np.array([19850307, 0, 19621123])
    ident = np.array([-1, -1, -1])
    # 1 sits between two people with different birth dates; 0 and 2 must not end up together through it
    out = attach_name_only(labels, np.array([0, 1]), np.array([1, 2]), np.array([8.0, 8.0]), dob, ident)
    assert out[0] != out[2]
    out = attach_name_only(np.array([0, 1]), np.array([0]), np.array([1]), np.array([8.0]), np.array([0, 0]),
                           np.array([-1, -1]), different=[(0, 1)])
    assert out.tolist() == [0, 1]
    # two different valid BSNs never join
    out = attach_name_only(np.array([0, 1]), np.array([0]), np.array([1]), np.array([8.0]), np.array([0, 0]),
                           np.array([5, 6]))
    assert out.tolist() == [0, 1]


def test_namesakes_without_birth_date_are_not_glued_to_either():
    rows = [_person("a1", "Jan de Vries", dob="1985-03-07"), _person("a2", "Jan de Vries", dob="1985-03-07"),
            _person("b1", "Jan de Vries", dob="1962-11-23"), _person("b2", "Jan de Vries", dob="1962-11-23"),
            _person("c1", "Jan de Vries")]
    res = resolve_mentions(pd.DataFrame(rows + _background()))
    a = res.assignments.set_index("mention_id")["entity_id"]
    assert a["a1"] == a["a2"] and a["b1"] == a["b2"] and a["a1"] != a["b1"]
    assert a["c1"] not in (a["a1"], a["b1"])


def test_different_valid_bsns_keep_two_mentions_apart():
    rows = [_person("s1", "Zwaantje Oosterhuis", dob="1971-04-04", bsn="111222333"),
            _person("s2", "Zwaantje Oosterhuis", dob="1971-04-04", bsn="123456782")]
    res = resolve_mentions(pd.DataFrame(rows + _background()))
    a = res.assignments.set_index("mention_id")["entity_id"]
    assert a["s1"] != a["s2"]


def test_entity_ids_and_attributes_are_vectorised_but_unchanged():
    from linkage.resolve.engine import _entity_ids, entity_id

    assert _entity_ids("person", ["p01", "é\"x"]) == [entity_id("person", "p01"), entity_id("person", "é\"x")]
    df = pd.DataFrame(MIXED)
    res = resolve_mentions(df)
    import json

    for attrs in res.entities["attributes"]:
        obj = json.loads(attrs)
        assert all(v == sorted(set(v)) for v in obj.values())


@pytest.mark.parametrize("a, b", [
    (_person("d1", "Eline Haan-Spier", dob="1996-07-27"), _person("d2", "Eline Spier-Haan", dob="1997-07-27")),
    (_person("d1", "Fleur Leene-Heyden", dob="1978-04-30"), _person("d2", "F. Heyden", dob="1878-04-30")),
    (_person("d1", "Adam Aziz", dob="1953-03-04"), _person("d2", "A. Aziz", dob="1653-03-04")),
])
def test_double_names_and_year_typos_are_candidates(a, b):
    # background with many A./F./E. mentions of the same surnames, so that the plain name blocks are capped
    crowd = [_person(f"c{i:03d}", f"{'AEF'[i % 3]}{'abcdefghij'[i % 10]}{i} {s}", dob=f"{1940 + i % 50}-0{1 + i % 9}-1{i % 9}")
             for i in range(240) for s in ("Haan", "Heyden", "Aziz")[i % 3:i % 3 + 1]]
    res = resolve_mentions(pd.DataFrame([a, b] + crowd + _background()), keep_candidates=True)
    diag = res.diagnostics["person"]
    ids = diag["mention_ids"]
    left, right = diag["candidate_index"]
    assert {("d1", "d2"), ("d2", "d1")} & set(zip(ids[left].tolist(), ids[right].tolist()))


def test_her_own_and_her_partners_surname_are_one_person_when_a_double_name_joins_them():
    from linkage.er_settings import DEFAULT_ER_SETTINGS, settings_from_dict
    from linkage.settings import read_toml

    rows = [_person("y1", "Esra Yilmaz", dob="1971-02-18"), _person("y2", "Esra Yilmaz", dob="1971-02-18"),
            _person("y3", "E. Yilmaz-Cornelisse", dob="1971-02-18"), _person("y4", "Esra Cornelisse", dob="1971-02-18"),
            _person("k1", "Piet Cornelisse", dob="1968-05-01")]
    data = read_toml(DEFAULT_ER_SETTINGS)
    off = settings_from_dict({**data, "person": {k: v for k, v in data["person"].items()
                                                 if k != "double_name_evidence"}})
    weights = []
    for settings in (None, off):
        res = resolve_mentions(pd.DataFrame(rows + _background()), settings=settings)
        pairs = res.pairs.set_index(["left_id", "right_id"])
        weights.append(float(pairs.loc[("y1", "y4"), "match_weight"]))
        a = res.assignments.set_index("mention_id")["entity_id"]
        assert a["y1"] == a["y2"] == a["y3"] == a["y4"] != a["k1"]  # her partner (other birth date) stays apart
        if settings is None:
            df = pd.DataFrame(rows).set_index("mention_id", drop=False)
            row = {r.field: r for r in explain_pair(df.loc["y1"], df.loc["y4"], res.model).rows}["surname"]
            assert row.level == "different" and row.weight > 0 and "parts of a double name" in row.sentence
    surname = res.fitted("person").comparisons[1]
    gain = float(surname.weights[surname.level_names.index("shares part of a double name")] - surname.weights[-1])
    assert weights[0] - weights[1] == pytest.approx(gain, abs=0.01)


def test_person_names_per_field_equal_parsing_each_row():
    """Feature preparation parses first names and surnames once per distinct field value; every row must get
    what parsing its own name gives (tussenvoegsels handed over, double names, initials, empty fields)."""
    from itertools import product

    from linkage.resolve.features import _PERSON_NAME_COLUMNS, _person_name, _person_names

    firsts = ["Jan", "J.P.", "Jan de", "IJsbrand", "Zoë-Anne", "Th.", "", "  ", "van", "A B", "-"]
    lasts = ["Vries", "de Vries", "Vries, de", "Haan - Spier", "'t Hart", "Jansen-de Vries", "", "ij", "Ait Said"]
    fulls = ["", "Vries, J. de", "Jan de Vries", "K. Jansen"]
    rows = pd.DataFrame([{"n": n, "f": f, "l": last} for n, f, last in product(fulls, firsts, lasts)])
    got = _person_names(rows)
    for i, row in enumerate(rows.itertuples(index=False)):
        assert tuple(got[c][i] for c in _PERSON_NAME_COLUMNS) == _person_name(row.n, row.f, row.l), row


def test_attribute_text_encoding_is_what_json_dumps_writes():
    """engine encodes attribute strings with json.encoder.encode_basestring (faster than a json.dumps call per
    value); it must write exactly json.dumps(value, ensure_ascii=False), also for odd strings."""
    import json
    from json.encoder import encode_basestring

    odd = ["", "plain", 'quote " and \\ backslash', "nul \x00 bell \x07 del \x7f", "line\u2028sep\u2029",
           "\ufeffbom", "lone \ud800 surrogate", "emoji \U0001F600", "Ëlise van der Laan", "x" * 10_000]
    for value in odd:
        assert encode_basestring(value) == json.dumps(value, ensure_ascii=False)
