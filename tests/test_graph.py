"""Tests for linkage.graph.build and linkage.graph.weights: graph construction, hub weighting, settings."""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkage.errors import ConfigError, InputError
from linkage.graph import build_graph, cluster_subgraph, entity_weights, load_graph_settings, specificity

REPORTS = pd.DataFrame({
    "report_id": ["R1", "R2", "R3", "R4"],
    "received_at": ["2024-03-01", "2024-03-05", "2024-04-01", "2024-04-02"],
    "category": ["overbewoning", "overbewoning", "malafide_onderneming", "overig"],
    "reporter_id": ["rep-1", None, "rep-2", "rep-3"],
    "reporter_type": ["medewerker", "anoniem", "partner", "bewoner"],
})
# R1: a person row carrying an address (LIVES_AT); R2: the same address and another resident;
# R3: a director row carrying a business (DIRECTOR_OF), the business row carrying an address and an IBAN;
# R4: the hub address only.
MENTIONS = pd.DataFrame([
    ["R1-M1", "R1", "person", "bewoner", "P1"],
    ["R1-M1~address", "R1", "address", "", "A1"],
    ["R2-M1", "R2", "address", "adres", "A1"],
    ["R2-M2", "R2", "person", "bewoner", "P2"],
    ["R2-M2~address", "R2", "address", "", "A1"],
    ["R3-M1", "R3", "person", "bestuurder", "D1"],
    ["R3-M1~business", "R3", "business", "", "B1"],
    ["R3-M2", "R3", "business", "onderneming", "B1"],
    ["R3-M2~address", "R3", "address", "", "A1"],
    ["R3-M2~bank_account", "R3", "bank_account", "", "I1"],
    ["R4-M1", "R4", "address", "adres", "A1"],
], columns=["mention_id", "report_id", "entity_type", "role", "entity_id"])
LINKS = pd.DataFrame([
    ["R1-M1", "R1-M1~address", "LIVES_AT", "R1"],
    ["R2-M2", "R2-M2~address", "LIVES_AT", "R2"],
    ["R3-M1", "R3-M1~business", "DIRECTOR_OF", "R3"],
    ["R3-M2", "R3-M2~address", "LOCATED_AT", "R3"],
    ["R3-M2", "R3-M2~bank_account", "USES", "R3"],
], columns=["src_mention_id", "dst_mention_id", "rel_type", "report_id"])
ENTITIES = pd.DataFrame({
    "entity_id": ["P1", "P2", "A1", "D1", "B1", "I1"],
    "entity_type": ["person", "person", "address", "person", "business", "bank_account"],
    "label": ["J. de Vries", "A. Jansen", "Kerkstraat 1, Utrecht", "K. Bakker", "Shisha BV", "NL91ABNA0417164300"],
    "n_mentions": [1, 1, 5, 1, 2, 1],
})


def test_nodes_have_kind_label_and_attributes():
    g = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES)
    assert isinstance(g, nx.MultiDiGraph)
    assert g.nodes["R1"]["kind"] == "report" and g.nodes["R1"]["category"] == "overbewoning"
    assert g.nodes["R1"]["label"] == "overbewoning 2024-03-01"
    assert g.nodes["A1"] == {"kind": "address", "label": "Kerkstraat 1, Utrecht", "n_reports": 4,
                             "weight": pytest.approx(0.8 * math.log(3) / math.log(5), abs=1e-6), "is_hub": False}
    assert g.nodes["B1"]["kind"] == "business" and g.nodes["I1"]["kind"] == "bank_account"
    assert sorted(n for n, d in g.nodes(data=True) if d["kind"] == "report") == ["R1", "R2", "R3", "R4"]


def test_reporter_identity_never_enters_the_graph():
    g = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES)
    for _, d in g.nodes(data=True):
        assert "reporter_id" not in d
        assert "rep-1" not in map(str, d.values())


def test_mentions_edges_one_per_mention_with_role_and_weight():
    g = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES)
    mentions = [(u, v, d) for u, v, d in g.edges(data=True) if d["type"] == "MENTIONS"]
    assert len(mentions) == len(MENTIONS)
    r2_a1 = g.get_edge_data("R2", "A1")
    assert set(r2_a1) == {"R2-M1", "R2-M2~address"}  # two mentions of the address in one report: two edges
    assert r2_a1["R2-M1"]["role"] == "adres"
    assert r2_a1["R2-M1"]["weight"] == g.nodes["A1"]["weight"]


def test_stated_links_become_entity_edges():
    g = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES)
    rels = sorted((u, v, d["rel_type"], d["report_id"]) for u, v, d in g.edges(data=True) if d["type"] != "MENTIONS")
    assert rels == [("B1", "A1", "LOCATED_AT", "R3"), ("B1", "I1", "USES", "R3"), ("D1", "B1", "DIRECTOR_OF", "R3"),
                    ("P1", "A1", "LIVES_AT", "R1"), ("P2", "A1", "LIVES_AT", "R2")]
    d = g.get_edge_data("P1", "A1")["LIVES_AT:R1"]
    assert d["weight"] == min(g.nodes["P1"]["weight"], g.nodes["A1"]["weight"])


def test_hub_weighting_common_entity_links_weakly():
    g = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES, settings={"hub_max_reports": 3})
    assert g.nodes["A1"]["is_hub"] is True and g.nodes["P1"]["is_hub"] is False
    assert g.nodes["A1"]["weight"] < g.nodes["B1"]["weight"]
    assert "A1" in g  # a hub stays in the graph (overbewoning is a signal, not noise)


def test_entity_weights_counts_distinct_reports_and_applies_type_factor():
    ew = entity_weights(MENTIONS, load_graph_settings()).set_index("entity_id")
    assert ew.loc["A1", "n_reports"] == 4  # mentioned twice in R2, counted once
    assert ew.loc["B1", "n_reports"] == 1
    assert ew.loc["I1", "weight"] == pytest.approx(1.2)  # bank_account factor from graph.toml


def test_report_ids_restricts_but_keeps_global_weights():
    full = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES)
    sub = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES, report_ids=["R1", "R2"])
    assert sorted(sub.nodes) == ["A1", "P1", "P2", "R1", "R2"]
    assert sub.nodes["A1"]["n_reports"] == 4 and sub.nodes["A1"]["weight"] == full.nodes["A1"]["weight"]
    assert {d["rel_type"] for _, _, d in sub.edges(data=True) if d["type"] != "MENTIONS"} == {"LIVES_AT"}


def test_cluster_subgraph_and_unknown_cluster():
    clusters = pd.DataFrame({"report_id": ["R1", "R2"], "cluster_id": ["c_x", "c_x"]})
    sub = cluster_subgraph("c_x", clusters, REPORTS, MENTIONS, LINKS, ENTITIES)
    assert {n for n, d in sub.nodes(data=True) if d["kind"] == "report"} == {"R1", "R2"}
    with pytest.raises(InputError):
        cluster_subgraph("c_missing", clusters, REPORTS, MENTIONS, LINKS, ENTITIES)


def test_graph_without_links_or_entities_uses_ids_as_labels():
    g = build_graph(REPORTS, MENTIONS)
    assert g.nodes["A1"]["label"] == "A1"
    assert all(d["type"] == "MENTIONS" for _, _, d in g.edges(data=True))


def test_id_used_as_report_and_entity_is_an_input_error():
    bad = MENTIONS.assign(entity_id=MENTIONS["entity_id"].replace({"P1": "R2"}))
    with pytest.raises(InputError, match="both as a report id and an entity id"):
        build_graph(REPORTS, bad)


def test_graph_builds_are_identical():
    a = build_graph(REPORTS, MENTIONS, LINKS, ENTITIES)
    b = build_graph(REPORTS.iloc[::-1], MENTIONS, LINKS.iloc[::-1], ENTITIES)
    assert nx.utils.graphs_equal(a, b)


# ------------------------------------------------------------------------------------------------ weights
@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=50))
def test_specificity_is_bounded_and_monotone(ds):
    for fn in ("inverse_log", "inverse"):
        ds_sorted = np.array(sorted(ds))
        w = specificity(ds_sorted, fn)
        assert np.all(w > 0) and np.all(w <= 1.0)
        assert np.all(np.diff(w) <= 0)


def test_specificity_table():
    assert specificity(np.array([2, 3, 9]), "inverse").tolist() == [1.0, 0.5, 0.125]
    with pytest.raises(ConfigError):
        specificity(np.array([2]), "nonsense")


def test_graph_settings_defaults_and_overrides():
    s = load_graph_settings()
    assert s.objective == "CPM" and s.min_cluster_size >= 2
    assert load_graph_settings(overrides={"resolution": 0.5}).resolution == 0.5
    with pytest.raises(ConfigError, match="unknown key"):
        load_graph_settings(overrides={"resolutoin": 0.5})
    with pytest.raises(ConfigError, match="min_cluster_size"):
        s.with_(min_cluster_size=1)


def test_graph_settings_file_errors_name_the_line(tmp_path):
    p = tmp_path / "graph.toml"
    p.write_text("[communities]\nobjective = \"CPM\"\nresolution = = 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"graph.toml, line 3"):
        load_graph_settings(p)
    p.write_text("[communities]\nobjective = \"louvain\"\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="objective"):
        load_graph_settings(p)
    p.write_text("[comunities]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown section"):
        load_graph_settings(p)


def test_anchored_sql_marks_mentions_with_an_identifying_field():
    import sqlite3

    from linkage.graph.weights import anchored_sql

    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE mentions (mention_id TEXT, entity_type TEXT, bsn_norm TEXT, birth_date_norm TEXT)")
    con.executemany("INSERT INTO mentions VALUES (?, ?, ?, ?)", [
        ("M1", "person", "123456782", None), ("M2", "person", None, "1990-01-02"), ("M3", "person", "", None),
        ("M4", "phone", None, None)])
    got = con.execute(f"SELECT mention_id, {anchored_sql()} FROM mentions m ORDER BY mention_id").fetchall()
    assert got == [("M1", 1), ("M2", 1), ("M3", 0), ("M4", 1)]


def test_name_only_factor_is_validated():
    s = load_graph_settings()
    assert s.name_only_factor["person"] <= s.type_factor["person"]
    with pytest.raises(ConfigError, match="name_only_factor.person must be a number between 0"):
        s.with_(name_only_factor={"person": 0.9})
    with pytest.raises(ConfigError, match="needs anchors.phone"):
        s.with_(name_only_factor={"phone": 0.5})
    with pytest.raises(ConfigError, match="anchors.person must be a non-empty list"):
        s.with_(anchors={"person": ("shoe_size",)})
