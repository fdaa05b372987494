"""Tests for linkage.graph.communities: planted groups found, hubs cannot glue, determinism, oracle."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from linkage.graph import bipartite_components, find_clusters, report_graph
from linkage.graph.communities import label_clusters
from linkage.model import stable_hash

# A small world with known truth. Each report: list of (entity_type, entity_id, role).
#  - landlord L: 3 addresses with 8 residents each, one landlord phone
#  - cannabis C: two sites, a van and a burner phone
#  - laundering W: three businesses at one address with two directors
#  - hub flat H: mentioned by many unrelated reports (and once by the landlord network)
#  - Z1: a singleton
HUB_REPORTS = [f"X{i:02d}" for i in range(1, 9)]
WORLD: dict[str, list[tuple[str, str, str]]] = {
    "L1": [("address", "A1", "adres"), ("person", "P1a", "bewoner"), ("person", "P1b", "bewoner"), ("phone", "TL", "verhuurder")],
    "L2": [("address", "A1", "adres"), ("person", "P1c", "bewoner"), ("person", "P1b", "bewoner"), ("address", "H", "adres")],
    "L3": [("address", "A2", "adres"), ("person", "P2a", "bewoner"), ("phone", "TL", "verhuurder")],
    "L4": [("address", "A2", "adres"), ("person", "P2b", "bewoner"), ("person", "P2a", "bewoner")],
    "L5": [("address", "A3", "adres"), ("person", "P3a", "bewoner"), ("phone", "TL", "verhuurder")],
    "L6": [("address", "A3", "adres"), ("person", "P3b", "bewoner"), ("person", "P3a", "bewoner")],
    "C1": [("address", "S1", "pand"), ("vehicle", "V1", "voertuig")],
    "C2": [("address", "S1", "pand"), ("phone", "T2", "contact")],
    "C3": [("address", "S2", "pand"), ("vehicle", "V1", "voertuig"), ("phone", "T2", "contact")],
    "C4": [("address", "S2", "pand"), ("person", "PC", "huurder")],
    "W1": [("business", "B1", "onderneming"), ("address", "AW", "vestigingsadres"), ("person", "D1", "bestuurder")],
    "W2": [("business", "B2", "onderneming"), ("address", "AW", "vestigingsadres")],
    "W3": [("business", "B3", "onderneming"), ("person", "D1", "bestuurder"), ("person", "D2", "bestuurder")],
    "W4": [("business", "B2", "onderneming"), ("person", "D2", "bestuurder")],
    "Z1": [("person", "PZ", "betrokkene")],
    **{rid: [("address", "H", "adres"), ("person", f"PX{rid}", "bewoner")] for rid in HUB_REPORTS},
}
TRUTH = {"L": [f"L{i}" for i in range(1, 7)], "C": [f"C{i}" for i in range(1, 5)], "W": [f"W{i}" for i in range(1, 5)]}
#: hub threshold for these tests: H (9 reports) is a hub, nothing else is
SETTINGS = {"hub_max_reports": 5}


def frames(world: dict = WORLD) -> tuple[pd.DataFrame, pd.DataFrame]:
    reports = pd.DataFrame({"report_id": sorted(world)})
    rows = [(f"{rid}-M{i}", rid, et, role, eid) for rid, ms in world.items() for i, (et, eid, role) in enumerate(ms, 1)]
    mentions = pd.DataFrame(rows, columns=["mention_id", "report_id", "entity_type", "role", "entity_id"])
    return reports, mentions


def groups(clusters: pd.DataFrame) -> list[list[str]]:
    return sorted(sorted(g) for g in clusters.groupby("cluster_id")["report_id"].apply(list))


def test_planted_groups_are_found_and_hub_does_not_glue():
    reports, mentions = frames()
    out = find_clusters(reports, mentions, seed=1, settings=SETTINGS)
    assert groups(out) == sorted(sorted(v) for v in TRUTH.values())
    assert "Z1" not in set(out["report_id"])  # a singleton is never a cluster
    assert not set(HUB_REPORTS) & set(out["report_id"])  # reports linked only through the hub stay alone


def test_output_columns_and_cluster_id_contract():
    reports, mentions = frames()
    out = find_clusters(reports, mentions, seed=1, settings=SETTINGS)
    assert list(out.columns) == ["report_id", "cluster_id"]
    for cid, ids in out.groupby("cluster_id")["report_id"]:
        assert cid == "c_" + stable_hash(min(ids), length=12)
    assert out.equals(out.sort_values(["cluster_id", "report_id"]).reset_index(drop=True))


def test_without_hub_threshold_the_hub_merges_everything_in_components():
    reports, mentions = frames()
    raw = bipartite_components(reports, mentions)
    big = max(groups(raw), key=len)
    assert set(HUB_REPORTS) | set(TRUTH["L"]) <= set(big)


def test_deterministic_for_a_seed_and_independent_of_row_order():
    reports, mentions = frames()
    a = find_clusters(reports, mentions, seed=7, settings=SETTINGS)
    b = find_clusters(reports, mentions, seed=7, settings=SETTINGS)
    shuffled = mentions.sample(frac=1.0, random_state=3).reset_index(drop=True)
    c = find_clusters(reports.iloc[::-1], shuffled, seed=7, settings=SETTINGS)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)


def test_hub_only_confirms_existing_links():
    world = {
        "R1": [("address", "H", ""), ("phone", "T", "")],
        "R2": [("address", "H", ""), ("phone", "T", "")],
        "R3": [("address", "H", "")],
        "R4": [("address", "H", "")],
        "R5": [("address", "H", "")],
        "R6": [("address", "H", "")],
    }
    reports, mentions = frames(world)
    rg = report_graph(mentions, {"hub_max_reports": 4}, reports)
    assert rg.n_hubs == 1 and rg.n_hub_confirmed == 1
    assert list(zip(rg.u.tolist(), rg.v.tolist())) == [(0, 1)]  # only R1-R2, which the phone links
    no_hub = report_graph(mentions, {"hub_max_reports": 40}, reports)
    assert no_hub.n_edges == 15  # without the threshold H links every pair
    rg_phone_only = report_graph(mentions[mentions["entity_id"] == "T"], {"hub_max_reports": 4}, reports)
    assert rg.weight[0] > rg_phone_only.weight[0]  # the hub added its (small) weight


def test_weights_add_up_over_shared_entities_and_rare_links_weigh_more():
    world = {
        "R1": [("person", "P", ""), ("bank_account", "I", "")],
        "R2": [("person", "P", ""), ("bank_account", "I", "")],
        "R3": [("address", "A", "")],
        "R4": [("address", "A", "")],
        "R5": [("address", "A", "")],
        "R6": [("address", "A", "")],
    }
    reports, mentions = frames(world)
    rg = report_graph(mentions, {"type_factor": {"person": 1.0, "bank_account": 1.2, "address": 1.0}}, reports)
    w = dict(zip(zip(rg.u.tolist(), rg.v.tolist()), rg.weight.tolist()))
    assert w[(0, 1)] == pytest.approx(2.2)  # person 1.0 + bank account 1.2, both shared by 2 reports
    assert w[(2, 3)] == pytest.approx(np.log(3) / np.log(5))  # address shared by 4 reports


def test_leiden_keeps_two_groups_apart_that_one_weak_link_joins():
    # CPM joins groups of sizes a and b only when their link weight exceeds resolution * a * b
    # (0.02 * 8 * 8 = 1.28 > the one shared address, 0.8)
    a = {f"A{i}": [("phone", "TA", ""), ("person", "PA", "")] for i in range(8)}
    b = {f"B{i}": [("phone", "TB", ""), ("person", "PB", "")] for i in range(8)}
    a["A0"] = a["A0"] + [("address", "BRIDGE", "")]
    b["B0"] = b["B0"] + [("address", "BRIDGE", "")]
    reports, mentions = frames({**a, **b})
    leiden = find_clusters(reports, mentions, seed=3)
    assert groups(leiden) == [sorted(a), sorted(b)]
    comps = find_clusters(reports, mentions, method="components")
    assert groups(comps) == [sorted(list(a) + list(b))]


def test_components_match_networkx_oracle():
    reports, mentions = frames()
    rg = report_graph(mentions, SETTINGS, reports)
    g = nx.Graph()
    g.add_edges_from(zip(rg.report_ids[rg.u], rg.report_ids[rg.v]))
    expected = sorted(sorted(c) for c in nx.connected_components(g))
    assert groups(find_clusters(reports, mentions, settings=SETTINGS, method="components")) == expected


def test_empty_and_unlinked_inputs_give_empty_frames():
    reports, mentions = frames({"Z1": [("person", "P", "")], "Z2": [("person", "Q", "")]})
    out = find_clusters(reports, mentions)
    assert out.empty and list(out.columns) == ["report_id", "cluster_id"]
    empty = find_clusters(pd.DataFrame({"report_id": []}),
                          pd.DataFrame(columns=["mention_id", "report_id", "entity_type", "role", "entity_id"]))
    assert empty.empty


def test_mentions_without_entity_or_of_unknown_reports_are_ignored():
    reports, mentions = frames({"R1": [("person", "P", "")], "R2": [("person", "P", "")]})
    extra = pd.DataFrame([["x1", "R9", "person", "", "P"], ["x2", "R1", "phone", "", None]], columns=mentions.columns)
    out = find_clusters(reports, pd.concat([mentions, extra], ignore_index=True))
    assert sorted(out["report_id"]) == ["R1", "R2"]


def test_min_cluster_size_and_label_clusters():
    ids = np.array(["R1", "R2", "R3", "R4", "R5"], dtype=object)
    memb = np.array([0, 0, 1, 1, 1])
    assert sorted(label_clusters(ids, memb, min_size=3)["report_id"]) == ["R3", "R4", "R5"]
    assert label_clusters(ids, np.full(5, -1), 2).empty


def test_unknown_method_raises():
    reports, mentions = frames()
    with pytest.raises(ValueError):
        find_clusters(reports, mentions, method="louvain")


# --- links that rest on a name match only (weights.link_rows) -----------------------------------------
ANCHOR_SETTINGS = {"type_factor": {"person": 0.6}, "name_only_factor": {"person": 0.1},
                   "anchors": {"person": ("bsn", "birth_date")}}


@pytest.mark.parametrize("anchored, expected", [
    ((True, True), 0.6),     # both reports give BSN or birth date: the full person factor
    ((True, False), 0.1),    # one side names the person only: the link rests on a name match
    ((False, False), 0.1),
])
def test_person_link_counts_fully_only_when_both_mentions_are_anchored(anchored, expected):
    reports, mentions = frames({"R1": [("person", "P", "")], "R2": [("person", "P", "")]})
    mentions["anchored"] = list(anchored)
    rg = report_graph(mentions, ANCHOR_SETTINGS, reports)
    assert rg.weight.tolist() == pytest.approx([expected])
    assert rg.n_entities_shared == 1  # the anchored part is not counted as an entity of its own


def test_without_anchored_column_every_link_counts_its_type_factor():
    reports, mentions = frames({"R1": [("person", "P", "")], "R2": [("person", "P", "")]})
    assert report_graph(mentions, ANCHOR_SETTINGS, reports).weight.tolist() == pytest.approx([0.6])
    mentions["anchored"] = [None, None]  # unknown counts as anchored
    assert report_graph(mentions, ANCHOR_SETTINGS, reports).weight.tolist() == pytest.approx([0.6])


def test_name_only_person_cannot_glue_a_background_report_to_a_group():
    # group G: four reports sharing a phone and an anchored person; X names that person only
    world = {f"G{i}": [("phone", "T", ""), ("person", "P", "")] for i in range(4)}
    world["X"] = [("person", "P", ""), ("address", "AX", "")]
    world["Y"] = [("address", "AX", "")]
    reports, mentions = frames(world)
    mentions["anchored"] = [True] * len(mentions)
    mentions.loc[mentions["report_id"] == "X", "anchored"] = False
    settings = {**ANCHOR_SETTINGS, "resolution": 0.1}  # a tiny graph: CPM needs a higher bar to split at all
    assert groups(find_clusters(reports, mentions, seed=1, settings=settings)) == [["G0", "G1", "G2", "G3"], ["X", "Y"]]
    mentions["anchored"] = True  # the same data with X anchored: X joins the group
    joined = find_clusters(reports, mentions, seed=1, settings=settings).set_index("report_id")["cluster_id"]
    assert joined["X"] == joined["G0"]


def test_a_components_clusters_do_not_depend_on_the_rest_of_the_graph():
    # Leiden runs per connected component, seeded from the component: clustering a component alone gives
    # what clustering the whole graph gives for it (what lets an incremental run skip untouched components)
    rng = np.random.default_rng(3)
    rows = []
    for k in range(40):  # 40 groups of 3-12 reports sharing some of a few entities each, some hubs
        n = int(rng.integers(3, 13))
        ents = [f"E{k}-{j}" for j in range(int(rng.integers(2, 6)))]
        for i in range(n):
            for e in rng.choice(ents, size=2, replace=False):
                rows.append((f"R{k:02d}-{i:02d}", str(e), "person"))
    mentions = pd.DataFrame(rows, columns=["report_id", "entity_id", "entity_type"]).drop_duplicates()
    reports = pd.DataFrame({"report_id": sorted(mentions["report_id"].unique())})
    whole = find_clusters(reports, mentions, seed=5)
    for k in (0, 7, 19, 33):
        mine = mentions[mentions["report_id"].str.startswith(f"R{k:02d}-")]
        alone = find_clusters(reports[reports["report_id"].isin(mine["report_id"])], mine, seed=5)
        part = whole[whole["report_id"].isin(mine["report_id"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(alone, part)


def test_update_clusters_reuses_untouched_components_and_equals_a_full_clustering():
    from linkage.graph.incremental import update_clusters

    reports, mentions = frames()
    old = ~mentions["report_id"].isin(["C4"])
    first = update_clusters(reports[reports["report_id"].isin(mentions.loc[old, "report_id"])], mentions[old], None,
                            seed=3, settings=SETTINGS)
    again = update_clusters(reports, mentions, first.state, seed=3, settings=SETTINGS)
    assert not again.everything and again.stats["components_reclustered"] < again.stats["components"]
    pd.testing.assert_frame_equal(again.clusters, find_clusters(reports, mentions, seed=3, settings=SETTINGS))
    # another seed clusters everything again
    assert update_clusters(reports, mentions, first.state, seed=4, settings=SETTINGS).everything


def test_two_report_components_get_what_leiden_gives():
    """Components of two reports skip the Leiden call: the labels must be Leiden's own, for link weights
    below, at and above the resolution, next to a larger component that still runs Leiden."""
    import dataclasses
    import random

    from linkage.graph.communities import ReportGraph, components_membership, leiden_components
    from linkage.graph.igraph_module import load_igraph
    from linkage.graph.weights import as_graph_settings

    ig = load_igraph()
    for resolution in (0.02, 0.5):
        s = dataclasses.replace(as_graph_settings(None), resolution=resolution)
        weights = [resolution / 2, resolution, np.nextafter(resolution, 1.0), 2 * resolution, 3.0]
        # pairs (0,1), (2,3), ... then a triangle at the end
        u = [2 * k for k in range(len(weights))]
        v = [2 * k + 1 for k in range(len(weights))]
        t = 2 * len(weights)
        u, v = u + [t, t, t + 1], v + [t + 1, t + 2, t + 2]
        w = np.array(weights + [1.0, 1.0, 1.0])
        ids = np.array([f"R{k:02d}" for k in range(t + 3)], dtype=object)
        rg = ReportGraph(ids, np.array(u), np.array(v), w, 0, 0, 0)
        comp = components_membership(rg)
        got = leiden_components(rg, comp, np.unique(comp), s, seed=3)
        for k, weight in enumerate(weights):
            g = ig.Graph(n=2, edges=[(0, 1)], directed=False)
            ig.set_random_number_generator(random.Random(k))
            expect = g.community_leiden(objective_function="CPM", weights=[float(weight)], resolution=resolution,
                                        n_iterations=s.iterations).membership
            ig.set_random_number_generator(random)
            assert (got[2 * k + 1] - got[2 * k]) == expect[1] - expect[0], (resolution, weight)
        assert got[t] == got[t + 1] == got[t + 2]
