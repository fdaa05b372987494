"""Tests for linkage.graph.candidates: corroborated possible matches as report links."""
from __future__ import annotations

import math
import sqlite3
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from linkage.errors import ConfigError
from linkage.graph import find_clusters, load_graph_settings, report_graph
from linkage.graph.candidates import (
    CANDIDATE_PREFIX, candidate_pairs, candidate_rows, candidates_on, stored_candidate_rows, with_candidates,
)
from linkage.graph.incremental import update_clusters

OFF = {"candidates_factor": {}, "co_mentioned_factor": {}, "co_located_factor": {}}  # every corroboration off
SETTINGS = {**OFF, "candidates_factor": {"person": 1.0, "business": 0.5}, "candidates_min_probability": 0.01}

# R1..R3 by reporter rep-a, R4 by rep-b, R5 anonymous. Each report names one person (own entity: resolution
# kept them apart); R2's person is anchored, R6's too.
REPORTS = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4", "R5", "R6"],
                        "reporter_id": ["rep-a", "rep-a", "rep-a", "rep-b", "", "rep-a"]})
MENTIONS = pd.DataFrame({
    "mention_id": ["m1", "m2", "m3", "m4", "m5", "m6", "m7"],
    "report_id": ["R1", "R2", "R3", "R4", "R5", "R6", "R1"],
    "entity_type": ["person"] * 6 + ["business"],
    "entity_id": ["P1", "P2", "P2", "P4", "P5", "P6", "B1"],
    "anchored": [0, 1, 0, 0, 0, 1, 1],
})


def scored(etype: str, ids: list[str], pairs: list[tuple[int, int, float]]) -> SimpleNamespace:
    return SimpleNamespace(entity_type=etype, mention_ids=np.array(ids, dtype=object),
                           left=np.array([a for a, _, _ in pairs]), right=np.array([b for _, b, _ in pairs]),
                           prob=np.array([p for _, _, p in pairs]))


PERSONS = ["m1", "m2", "m3", "m4", "m5", "m6"]


def pairs_of(sp, reports=REPORTS, mentions=MENTIONS, settings=SETTINGS, corroboration="reporter") -> list[tuple]:
    """The pairs without their corroboration column, after checking it says ``corroboration``."""
    df = candidate_pairs(sp, mentions, reports, settings)
    assert set(df["corroboration"]) <= {corroboration}
    return [tuple(r) for r in df.drop(columns="corroboration").itertuples(index=False)]


def spec(n: int) -> float:
    return round(math.log(3) / math.log1p(max(n, 2)), 6)


def test_only_reports_of_one_known_reporter_are_linked():
    # m1-m2 same reporter (rep-a, 4 reports), m1-m4 other reporter, m1-m5 anonymous
    sp = scored("person", PERSONS, [(0, 1, 0.3), (0, 3, 0.9), (0, 4, 0.9)])
    assert pairs_of([sp]) == [("R1", "R2", "person", spec(4))]


def test_pairs_kept_apart_on_identifying_evidence_same_entity_or_low_probability_link_nothing():
    # m2-m6 both anchored persons; m2-m3 already one entity; m1-m3 below min_probability
    sp = scored("person", PERSONS, [(1, 5, 0.9), (1, 2, 0.99), (0, 2, 0.005)])
    assert pairs_of([sp]) == []
    # a type without anchors: every mention counts as name-only, so anchored flags do not matter
    biz = scored("business", ["m7", "m2"], [(0, 1, 0.2)])
    m = MENTIONS.assign(entity_type=["person"] * 6 + ["business"])
    m.loc[m["mention_id"] == "m2", ["entity_type", "entity_id"]] = ["business", "B2"]
    assert pairs_of([biz], mentions=m) == [("R1", "R2", "business", round(0.5 * spec(4), 6))]


def test_types_without_a_factor_and_unknown_mentions_are_ignored():
    sp = scored("address", ["m1", "m2"], [(0, 1, 0.9)])
    gone = scored("person", ["m1", "purged"], [(0, 1, 0.9)])
    assert pairs_of([sp, gone]) == []
    assert pairs_of([scored("person", PERSONS, [(0, 1, 0.9)])], reports=REPORTS.drop(columns="reporter_id")) == []


def test_rows_two_per_pair_and_deterministic():
    sp = scored("person", PERSONS, [(1, 0, 0.3), (0, 1, 0.4)])  # one report pair, twice, either orientation
    rows = candidate_rows([sp], MENTIONS, REPORTS, SETTINGS)
    assert rows["report_id"].tolist() == ["R1", "R2"]
    assert rows["entity_id"].tolist() == [f"{CANDIDATE_PREFIX}R1|R2|person"] * 2
    assert rows["entity_type"].tolist() == ["person~candidate"] * 2
    shuffled = MENTIONS.sample(frac=1.0, random_state=3)
    assert rows.equals(candidate_rows([sp], shuffled, REPORTS.iloc[::-1], SETTINGS))


def test_report_graph_gives_a_candidate_link_exactly_its_weight():
    rows = pd.DataFrame({"report_id": ["R1", "R2"], "entity_id": ["~cand:x"] * 2, "entity_type": ["person~candidate"] * 2,
                         "link_weight": [0.37, 0.37]})
    base = report_graph(MENTIONS, load_graph_settings())
    g = report_graph(with_candidates(MENTIONS, rows), load_graph_settings())
    assert (base.n_edges, g.n_edges) == (1, 2)  # R2-R3 share P2
    assert g.weight[list(zip(g.u.tolist(), g.v.tolist())).index((0, 1))] == pytest.approx(0.37)
    assert g.n_entities_shared == base.n_entities_shared  # a candidate link is no shared entity


def test_a_report_joins_a_network_through_a_candidate_link_and_incremental_equals_full():
    # a small network N1-N4 (phone T, address A) and X, whose name-only person resolution kept apart
    reports = pd.DataFrame({"report_id": ["N1", "N2", "N3", "N4", "X"], "reporter_id": ["r"] * 5})
    mentions = pd.DataFrame({"mention_id": [f"k{i}" for i in range(9)],
                             "report_id": ["N1", "N2", "N3", "N4", "N1", "N2", "N3", "X", "N4"],
                             "entity_type": ["phone"] * 4 + ["address"] * 3 + ["person"] * 2,
                             "entity_id": ["T"] * 4 + ["A"] * 3 + ["P9", "P1"], "anchored": [1] * 7 + [0, 1]})
    alone = find_clusters(reports, mentions, seed=1)
    assert "X" not in set(alone["report_id"])
    sp = scored("person", ["k7", "k8"], [(0, 1, 0.4)])
    rows = candidate_rows([sp], mentions, reports, SETTINGS)
    joined = find_clusters(reports, with_candidates(mentions, rows), seed=1)
    assert sorted(joined["report_id"]) == ["N1", "N2", "N3", "N4", "X"]
    first = update_clusters(reports, with_candidates(mentions, rows.iloc[:0]), None, seed=1)
    second = update_clusters(reports, with_candidates(mentions, rows), first.state, seed=1)
    assert not second.everything and second.clusters.equals(joined)


def test_stored_candidate_rows_read_the_er_state(tmp_path):
    from linkage.resolve.incremental import STATE_TABLE, _insert_pairs, _insert_records

    con = sqlite3.connect(tmp_path / "s.db")
    assert stored_candidate_rows(con, REPORTS, MENTIONS, SETTINGS).empty  # no state: no rows
    con.execute(STATE_TABLE)
    _insert_records(con, "person", 0, pd.DataFrame({"mention_id": PERSONS}))
    _insert_pairs(con, "person", 0, {"left": np.array([0, 0], dtype=np.int32), "right": np.array([1, 3], dtype=np.int32),
                                     "weight": np.zeros(2), "prob": np.array([0.5, 0.5]),
                                     "matched": np.zeros(2, dtype=bool), "levels": np.zeros((2, 3), dtype=np.int8),
                                     "reason": np.zeros(2, dtype=np.uint8)})
    rows = stored_candidate_rows(con, REPORTS, MENTIONS, SETTINGS)
    assert rows["report_id"].tolist() == ["R1", "R2"]
    assert stored_candidate_rows(con, REPORTS, MENTIONS, OFF).empty  # switched off


def test_candidate_settings_are_validated():
    s = load_graph_settings()
    assert not candidates_on(s) and 0 < s.candidates_min_probability <= 1  # off by default (graph.toml)
    assert not candidates_on(s.with_(**OFF))
    assert candidates_on(s.with_(**{**OFF, "candidates_factor": {"person": 1.0}}))
    with pytest.raises(ConfigError, match="candidates.factor.person"):
        s.with_(candidates_factor={"person": -1})
    with pytest.raises(ConfigError, match="candidates.min_probability"):
        s.with_(candidates_min_probability=0)
    with pytest.raises(ConfigError, match="co_mentioned_by must be a list"):  # not ('a', 'd', 'd', ...)
        s.with_(co_mentioned_by="address")
    with pytest.raises(ConfigError, match="co_mentioned_by must be a list"):
        s.with_(co_mentioned_by=("adres",))
    with pytest.raises(ConfigError, match="co_mentioned_factor.persoon: unknown entity type"):
        s.with_(co_mentioned_factor={"persoon": 0.3})
    with pytest.raises(ConfigError, match="candidates.factor.person must be a number"):
        s.with_(candidates_factor={"person": True})


def test_a_different_judgement_is_never_overruled_by_a_candidate_link():
    # m1 (R1) ~ m2 (R2): same reporter, possible match -> a link; judged different -> none. m3 belongs to P2 too
    # (R3), so a judgement on m1 vs m3 forbids the entities P1 and P2, and with them the m1 ~ m2 link as well.
    sp = scored("person", PERSONS, [(0, 1, 0.3)])
    mentions = MENTIONS.assign(anchored=0)
    assert pairs_of([sp], mentions=mentions) == [("R1", "R2", "person", spec(4))]
    for judged in ([("m1", "m2")], [("m2", "m1")], [("m3", "m1")]):
        assert candidate_pairs([sp], mentions, REPORTS, SETTINGS, different=judged).empty
    assert len(candidate_pairs([sp], mentions, REPORTS, SETTINGS, different=[("m1", "m4"), ("gone", "m2")])) == 1
    # nor does a judged pair corroborate a possible match of another type between the same reports
    co = [scored("person", ["p1", "p2"], [(0, 1, 0.3)]), scored("business", ["b1", "b2"], [(0, 1, 0.05)])]
    assert [r[2] for r in co_pairs(co)] == ["business", "person"]
    got = candidate_pairs(co, CO_MENTIONS, CO_REPORTS, CO_SETTINGS, different=[("p1", "p2")])
    assert got.empty


# Co-mentioned corroboration: R1 and R2 each name a person and a business that resolution kept apart (namesakes
# possible); R3 names only a person; R4 shares the resolved address A with R2 and names a business.
CO_REPORTS = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4", "R5"], "reporter_id": ["a", "b", "c", "d", "e"]})
CO_MENTIONS = pd.DataFrame({
    "mention_id": ["p1", "b1", "p2", "b2", "p3", "a2", "a4", "b4", "a5"],
    "report_id": ["R1", "R1", "R2", "R2", "R3", "R2", "R4", "R4", "R5"],
    "entity_type": ["person", "business", "person", "business", "person", "address", "address", "business", "address"],
    "entity_id": ["P1", "B1", "P2", "B2", "P3", "A", "A", "B4", "A5"],
    "anchored": [0, 1, 0, 1, 0, 1, 1, 1, 1],
})
CO_SETTINGS = {**OFF, "co_mentioned_factor": {"person": 0.5, "business": 0.4}, "co_mentioned_by": ("person", "business", "address"),
               "co_mentioned_min_probability": 0.01}


def co_pairs(scored_pairs, settings=CO_SETTINGS, mentions=CO_MENTIONS) -> list[tuple]:
    return [tuple(r) for r in candidate_pairs(scored_pairs, mentions, CO_REPORTS, settings).itertuples(index=False)]


def test_a_possible_match_is_corroborated_by_one_of_another_type_between_the_same_reports():
    persons = scored("person", ["p1", "p2", "p3"], [(0, 1, 0.3), (0, 2, 0.3)])
    businesses = scored("business", ["b1", "b2"], [(0, 1, 0.05)])
    assert co_pairs([persons, businesses]) == [("R1", "R2", "business", 0.4, "co-mentioned"),
                                               ("R1", "R2", "person", 0.5, "co-mentioned")]
    # alone, a possible match is a namesake as often as not: no link (R1-R3 has no second coincidence)
    assert co_pairs([persons]) == []
    # below co_mentioned_min_probability the second possible match does not count
    assert co_pairs([persons, scored("business", ["b1", "b2"], [(0, 1, 0.005)])]) == []


def test_the_corroborating_match_may_join_the_neighbours_of_the_two_reports():
    # b1 ~ b4 links R1 to R4, a neighbour of R2 (both mention address A): p1 ~ p2 (R1-R2) is corroborated, and so
    # is b1 ~ b4 by p1 ~ p2 (R2 is R4's neighbour)
    persons = scored("person", ["p1", "p2"], [(0, 1, 0.3)])
    businesses = scored("business", ["b1", "b4"], [(0, 1, 0.05)])
    assert co_pairs([persons, businesses]) == [("R1", "R2", "person", 0.5, "co-mentioned"),
                                               ("R1", "R4", "business", 0.4, "co-mentioned")]
    # a type outside co_mentioned_by corroborates nothing
    assert co_pairs([persons, businesses], {**CO_SETTINGS, "co_mentioned_by": ("address",)}) == []
    # an entity of more than hub_max_reports reports makes no neighbours
    hub = CO_MENTIONS.assign(report_id=CO_MENTIONS["report_id"].where(CO_MENTIONS["mention_id"] != "a5", "R3"),
                             entity_id=CO_MENTIONS["entity_id"].where(CO_MENTIONS["mention_id"] != "a5", "A"))
    assert co_pairs([persons, businesses], {**CO_SETTINGS, "hub_max_reports": 2}, mentions=hub) == []
    assert len(co_pairs([persons, businesses], {**CO_SETTINGS, "hub_max_reports": 3}, mentions=hub)) == 2


def test_an_address_possible_match_corroborates_but_is_not_linked_unless_listed():
    persons = scored("person", ["p1", "p2"], [(0, 1, 0.3)])
    addresses = scored("address", ["a2", "a5"], [(0, 1, 0.9)])  # R2 - R5: no person pair there
    assert co_pairs([persons, addresses]) == []
    far = CO_MENTIONS.copy()
    far.loc[far["mention_id"] == "a5", "report_id"] = "R1"  # now R1 - R2 have both coincidences
    assert co_pairs([persons, addresses], mentions=far) == [("R1", "R2", "person", 0.5, "co-mentioned")]


def test_both_corroborations_give_one_link_with_the_larger_weight():
    persons = scored("person", ["p1", "p2"], [(0, 1, 0.3)])
    businesses = scored("business", ["b1", "b2"], [(0, 1, 0.05)])
    reports = CO_REPORTS.assign(reporter_id=["a", "a", "c", "d", "e"])
    s = {**CO_SETTINGS, "candidates_factor": {"person": 1.0}, "candidates_min_probability": 0.01}
    got = candidate_pairs([persons, businesses], CO_MENTIONS, reports, s)
    person = got[got["entity_type"] == "person"].iloc[0]
    assert person["corroboration"] == "reporter+co-mentioned" and person["link_weight"] == pytest.approx(spec(2))
    assert candidates_on(load_graph_settings().with_(**{**OFF, "co_mentioned_factor": {"person": 0.3}}))
    with pytest.raises(ConfigError, match="co_mentioned_min_probability"):
        load_graph_settings().with_(co_mentioned_min_probability=2)


def test_a_possible_match_between_reports_in_one_place_is_co_located():
    # R1 and R2 name addresses in postcode area 1011 (Amsterdam), R3 one in 3511 (Utrecht), R4 none
    places = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R2"], "postcode4": ["1011", "1011", "3511", ""],
                           "city": ["amsterdam", "amsterdam", "utrecht", "amsterdam"]})
    persons = scored("person", ["p1", "p2", "p3"], [(0, 1, 0.3), (0, 2, 0.3)])
    businesses = scored("business", ["b1", "b4"], [(0, 1, 0.05)])
    s = {**OFF, "co_located_factor": {"person": 0.5, "business": 0.8}, "co_located_on": {"person": "postcode4", "business": "city"},
         "co_located_min_probability": 0.01}
    got = candidate_pairs([persons, businesses], CO_MENTIONS, CO_REPORTS, s, places)
    # p1 ~ p2: both reports in 1011; p1 ~ p3: another place; b1 ~ b4: R4 names no place
    assert [tuple(r) for r in got.itertuples(index=False)] == [("R1", "R2", "person", 0.5, "co-located")]
    assert candidate_pairs([persons], CO_MENTIONS, CO_REPORTS, s, None).empty  # no places given: nothing
    assert candidate_pairs([persons], CO_MENTIONS, CO_REPORTS, {**s, "co_located_min_probability": 0.5}, places).empty
    with pytest.raises(ConfigError, match="co_located_on.person"):
        load_graph_settings().with_(co_located_factor={"person": 1.0}, co_located_on={"person": "street"})


def test_stored_candidate_rows_read_the_places_of_the_reports(tmp_path):
    from linkage.resolve.incremental import STATE_TABLE, _insert_pairs, _insert_records

    con = sqlite3.connect(tmp_path / "s.db")
    con.execute(STATE_TABLE)
    con.execute("CREATE TABLE mentions (mention_id TEXT, report_id TEXT, postcode_norm TEXT, city TEXT)")
    con.executemany("INSERT INTO mentions VALUES (?, ?, ?, ?)", [("x1", "R1", "1011AB", "Amsterdam"),
                                                                 ("x2", "R2", "1011CD", ""), ("x3", "R3", "", "Utrecht")])
    _insert_records(con, "person", 0, pd.DataFrame({"mention_id": ["p1", "p2", "p3"]}))
    _insert_pairs(con, "person", 0, {"left": np.array([0, 0], dtype=np.int32), "right": np.array([1, 2], dtype=np.int32),
                                     "weight": np.zeros(2), "prob": np.array([0.3, 0.3]),
                                     "matched": np.zeros(2, dtype=bool), "levels": np.zeros((2, 3), dtype=np.int8),
                                     "reason": np.zeros(2, dtype=np.uint8)})
    s = {**OFF, "co_located_factor": {"person": 1.0}, "co_located_on": {"person": "postcode4"}}
    rows = stored_candidate_rows(con, CO_REPORTS, CO_MENTIONS, s)
    assert rows["report_id"].tolist() == ["R1", "R2"] and rows["link_weight"].tolist() == [1.0, 1.0]
