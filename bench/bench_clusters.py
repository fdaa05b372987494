"""Community benchmark: do the planted networks come out as clusters, how fast, with how much memory?

In:  sizes (``--reports 10000,100000,1000000``) and a seed; data from ``linkage.generate`` (generated into
     ``--data-dir`` once and reused).
Out: a table per size, for Leiden (``find_clusters``), connected components of the same hub-safe report
     graph, and connected components of the raw report-entity graph (every shared entity, hubs too):
     planted networks recovered (share of networks whose reports end up >= 80% in one cluster that is
     >= 80% made of that network), adjusted Rand index (all reports; unclustered and background reports
     are singletons) and ARI over network reports only, number of clusters, largest cluster, wall time
     of the clustering call and its peak memory (RSS sampled during the call, above the level before it).

Entities: by default the TRUE entity ids from ``truth_mentions.csv`` stand in for resolved ones, which
measures the clustering alone (mentions and stated links are derived from the raw CSV here; combined rows
give ``<mention_id>~<type>`` mentions, as the loader does). With ``--resolved`` the generated files are
loaded and resolved by linkage's own pipeline (``load_stage`` + ``resolve_stage``, cached as
``store.db`` next to the data) and the clustering runs on the resolved entities: the end-to-end number.

Usage::

    PYTHONPATH=. python bench/bench_clusters.py --reports 10000,100000,1000000 --seed 7
    PYTHONPATH=. python bench/bench_clusters.py --reports 100000 --seed 7 --graph   # + networkx build time
    PYTHONPATH=. python bench/bench_clusters.py --reports 10000 --seed 7 --resolved  # on resolved entities

With ``--resolved`` the clustering also gets the corroborated possible-match links that the main job's clusters
stage adds (:mod:`linkage.graph.candidates`, read from the store's ER state; ``--no-candidates`` leaves them out),
and "components" are the connected components of that same graph. The ceiling is printed twice: through the
networks' own resolved entities, and through them plus the candidate links.

Measured, session 6 (load average 6-9; default ER settings, ER unchanged; "before" = session 5's defaults, no
candidate links, resolution 0.02; "after" = ``--candidates-on`` (off by default again: see graph.toml): reporter, co-mentioned and co-located
corroborations on, resolution 0.02; see ``[candidates]`` in ``linkage/graph/graph.toml``):

=======  ====  ======================  ======================  ======================
reports  seed  leiden recovered        leiden ARI              ceiling
               before -> after         before -> after         before -> after
=======  ====  ======================  ======================  ======================
 10,000     7  0.827 -> 0.849          0.801 -> 0.810          0.872 -> 0.939
 10,000    11  0.771 -> 0.803          0.810 -> 0.808          0.856 -> 0.926
 10,000    23  0.786 -> 0.796          0.760 -> 0.770          0.871 -> 0.905
100,000     7  0.730 -> 0.776          0.789 -> 0.797          0.795 -> 0.848
100,000    11  0.712 -> 0.751          0.802 -> 0.805          0.774 -> 0.834
100,000    23  0.737 -> 0.780          0.780 -> 0.787          0.796 -> 0.862
=======  ====  ======================  ======================  ======================

``--diagnose`` at 100k, before -> after: seed 7 split by ER 367 -> 272, split by clustering 63 -> 61, impure 55 -> 69;
seed 11 split by ER 329, impure 96; seed 23 split by ER 271, impure 85 (after). Components lose (10k seed 7:
0.626 -> 0.575): the links join more reports, and only Leiden cuts the weak ones.

Why networks split by entity resolution (10k, seed 7; true co-referring mention pairs in two reports of one
network that resolution left apart, 2,418 pairs over 550 true entities: person 367, business 112, address 35,
vehicle 19, phone 10, bank account 7):

========  ===========  =========  ==========  ===========  ==========  ==================
type      not blocked  p < 0.01   0.01-0.15   0.15-0.5     >= 0.5      typical levels
========  ===========  =========  ==========  ===========  ==========  ==================
person    88           36         439         627          187 (a)     name only (b)
business  62           28         819         0            0           exact name, no KvK
address   63           6          12          1            50 (a)      no postcode/city
========  ===========  =========  ==========  ===========  ==========  ==================

(a) scored above the threshold but not linked: a name-only link to one of several candidate groups (ambiguity
margin). (b) "initials agree"/"exact" first name, exact surname, no birth date or BSN on one side. Merging all
scored true pairs of one type would lift the ceiling 0.872 -> person 0.933, business 0.939, address 0.883
(all scored: 0.989; the never-blocked pairs alone: 0.894). The generator plants namesakes on purpose: among
unmerged possible matches, an exact business name without KvK is one business in 16-34 % of pairs, a
name-only person pair at p 0.15-0.5 in 10-13 %; merging on the name alone is not honest, hence corroborations.
False address merges (10k, seed 7): 152 resolved addresses hold more than one true address, 124 of them without
any huisletter/toevoeging (a street + number without postcode or city joined to a full address of that street in
some town), 27 mix "11" and "11b"; pairs at the level "one side without letter or addition" are one address in
1-7 % (70 % of those merged).

Measured, session 5 (2 CPUs shared with other jobs, load average 4-7; seed = data seed = Leiden seed; fresh data
and stores per seed under ``--data-dir``, default ER settings). "before" = session 4's code (no candidate links,
CPM resolution 0.02); "after" = candidate links + resolution 0.015 (the packaged graph.toml):

=======  ====  ======================  ======================  ===============  ===============  ===============
reports  seed  leiden recovered        leiden ARI              components       components       ceiling
               before -> after         before -> after         before           after            entities / +links
=======  ====  ======================  ======================  ===============  ===============  ===============
 10,000     7  0.827 -> 0.832          0.801 -> 0.788          0.626 / 0.544    0.615 / 0.460    0.872 / 0.894
 10,000    11  0.771 -> 0.793          0.810 -> 0.810          0.654 / 0.622    0.654 / 0.581    0.856 / 0.894
 10,000    23  0.786 -> 0.786          0.760 -> 0.759          0.602 / 0.512    0.572 / 0.410    0.871 / 0.886
100,000     7  0.730 -> 0.769          0.789 -> 0.796          0.693 / 0.744    0.689 / 0.708    0.795 / 0.831
100,000    11  0.712 -> 0.748          0.802 -> 0.810          0.657 / 0.730    0.662 / 0.697    0.774 / 0.816
100,000    23  0.737 -> 0.770          0.780 -> 0.789          0.691 / 0.679    0.685 / 0.631    0.796 / 0.835
=======  ====  ======================  ======================  ===============  ===============  ===============

(components: recovered / ARI). ``--diagnose`` at 100k seed 7, before -> after: split by ER 367 -> 303, split by
clustering 63 -> 42, impure 55 -> 70 (glue: falsely merged addresses 59 -> 66 entities, persons 17 -> 29).
Candidate links: ~210 at 10k, ~2,200 at 100k; reading them from the ER state costs 1.1-2 s CPU at 100k
(mostly reading the pair blobs), Leiden 2.5-3.1 s CPU at 100k.

What did not help (10k/100k seed 7, recovered): candidate links without the same-reporter condition, weighted
by probability / number of candidate entities (0.70-0.83), or only a mention's best candidate with a margin of
1-6 bits (0.72-0.83; businesses only, factor 0.15-0.6: 0.804-0.832 at 10k, 0.727-0.731 at 100k); the
same-reporter links capped at 5 or 20 candidate entities per mention (0.737 / 0.747 at 100k), with min_probability 0.05 (0.747), with both
anchored person mentions allowed (0.763 vs 0.761); "two candidate mentions between the same two reports" as
corroboration instead of the reporter (0.633 at 100k: namesakes come in pairs too).

True entity ids, 1,000,000 reports, seed 7, session 5 settings (load average 5-6): Leiden 0.997 / ARI 0.881,
23.7 s CPU (41 s wall); session 4's code on the same data and machine 0.993 / 0.878, 24.0 s CPU.

Session 3/4 (before the candidate links): on true entity ids, 1,000,000 reports, seed 7: Leiden 0.993 / ARI
0.878, components 1.000 / 0.875. Leiden CPU: 0.1 s at 10k; 1.3-1.7 s at 100k. 1,000,000 reports with an
``anchored`` column derived from the raw BSN/birth date (true ids): 13.4 s CPU (31 s wall at load average 4),
against 11.7 s without it: clustering stays far under a minute.

``ceiling`` is the share of networks whose own reports are >= 80% connected through their resolved
entities; no clustering can pass it. ``--diagnose`` says why networks are missed, and with ``--resolved`` which
true ties entity resolution left apart in the split networks (:func:`er_ties`: by type, anchoring and match
probability band; session 9 figures in bench/RESULTS_ER.md). Replacing resolved ids by the
true ones for one type (``--true-ids person`` etc.; session 4, 100k seed 7, without candidate links): persons
0.900, businesses 0.805, addresses 0.788, persons + businesses 0.946 (10k seed 7: 0.939, 0.888, 0.844, 0.983).
So the 0.9 target needs person (then business) resolution of name-only mentions.
The networkx display graph of 100,000 reports (390k nodes, 511k edges) builds in 13 s CPU and +720 MiB; at
1,000,000 expect ~10x (use ``cluster_subgraph`` instead).
"""
from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from linkage import model  # noqa: E402
from linkage.graph import bipartite_components, build_graph, find_clusters, load_graph_settings  # noqa: E402
from linkage.graph.candidates import CANDIDATE_COLUMNS, with_candidates  # noqa: E402


# ---------------------------------------------------------------------------------------------- data
def ensure_data(n: int, seed: int, data_dir: Path) -> Path:
    """Generate ``n`` reports with ``seed`` into ``data_dir/n<n>_s<seed>`` unless already there."""
    out = data_dir / f"n{n}_s{seed}"
    if not (out / "truth_reports.csv").exists():
        from linkage.generate import generate

        t = time.perf_counter()
        generate(n, seed, out)
        print(f"  generated {n:,} reports in {time.perf_counter() - t:.0f} s -> {out}", flush=True)
    return out


def load_truth_tables(src: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(reports, mentions with TRUE entity ids, stated links, truth_reports) from a generated folder.

    The derived tables are cached as parquet in ``<src>/bench_cache`` (reading 1M rows of CSV is slow).
    """
    cache = src / "bench_cache"
    names = ("reports", "mentions", "links", "truth_reports")
    if all((cache / f"{n}.parquet").exists() for n in names):
        return tuple(pd.read_parquet(cache / f"{n}.parquet") for n in names)  # type: ignore[return-value]
    tables = _derive_tables(src)
    cache.mkdir(exist_ok=True)
    for n, df in zip(names, tables):
        df.to_parquet(cache / f"{n}.parquet", index=False)
    return tables


def _derive_tables(src: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    raw = pd.read_csv(src / "mentions.csv", usecols=["report_id", "mention_id", "entity_type", "role"],
                      dtype=str, keep_default_na=False)
    truth = pd.read_csv(src / "truth_mentions.csv", dtype=str, keep_default_na=False)
    reports = pd.read_csv(src / "reports.csv", usecols=["report_id", "received_at", "category", "reporter_id",
                                                         "reporter_type"], dtype=str, keep_default_na=False)
    truth_reports = pd.read_csv(src / "truth_reports.csv", dtype=str, keep_default_na=False)

    base = truth["mention_id"].str.split("~", n=1, regex=False)
    truth["parent"] = base.str[0]
    truth["carried"] = base.str[1]
    parent = raw.set_index("mention_id")
    truth["report_id"] = truth["parent"].map(parent["report_id"])
    truth["role"] = truth["parent"].map(parent["role"])
    truth["parent_type"] = truth["parent"].map(parent["entity_type"])
    mentions = truth[["mention_id", "report_id", "entity_type", "role", "entity_id"]].copy()
    mentions.loc[truth["carried"].notna(), "role"] = ""

    derived = truth[truth["carried"].notna()]
    rel = [model.link_type(pt, ct, ro) or "RELATED_TO"
           for pt, ct, ro in zip(derived["parent_type"], derived["carried"], derived["role"])]
    links = pd.DataFrame({"src_mention_id": derived["parent"].to_numpy(), "dst_mention_id": derived["mention_id"].to_numpy(),
                          "rel_type": rel, "report_id": derived["report_id"].to_numpy()})
    return reports, mentions, links, truth_reports


def load_resolved_tables(src: Path, settings=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                                          pd.DataFrame]:
    """(reports, mentions with RESOLVED entity ids, links, truth_reports, candidate rows): load + resolve into
    ``src/store.db``; the candidate rows (:mod:`linkage.graph.candidates`) are read from its ER state as the
    main job's clusters stage reads them."""
    from linkage.graph.candidates import stored_candidate_rows
    from linkage.resolve.judgements import different_pairs

    from linkage.pipeline import graph_inputs, load_stage, resolve_stage
    from linkage.settings import load_settings
    from linkage.store import EmbeddedStore

    store_path = src / "store.db"
    done = src / "store.resolved"
    if not done.exists():
        if store_path.exists():
            store_path.unlink()
        t = time.perf_counter()
        load_stage([src / "reports.csv", src / "mentions.csv"], store_path)
        with EmbeddedStore(store_path) as store:
            resolve_stage(store, load_settings())
        done.write_text("ok\n", encoding="utf-8")
        print(f"  loaded and resolved in {time.perf_counter() - t:.0f} s -> {store_path}", flush=True)
    with EmbeddedStore(store_path) as store:
        reports, mentions, links, _entities = graph_inputs(store)
        candidates = stored_candidate_rows(store.conn, reports, mentions, settings,
                                           different=different_pairs(store))
    truth_reports = pd.read_csv(src / "truth_reports.csv", dtype=str, keep_default_na=False)
    return reports, mentions, links, truth_reports, candidates


# ---------------------------------------------------------------------------------------------- metrics
def _comb2(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float((x * (x - 1) / 2).sum())


def adjusted_rand_index(truth: np.ndarray, pred: np.ndarray) -> float:
    """ARI of two labelings (integer codes) of the same items, from the contingency table.

    >>> round(adjusted_rand_index(np.array([0, 0, 1, 1]), np.array([5, 5, 7, 7])), 3)
    1.0
    """
    n = len(truth)
    if n < 2:
        return 1.0
    df = pd.DataFrame({"t": truth, "p": pred})
    nij = df.groupby(["t", "p"], sort=False).size().to_numpy()
    a = df.groupby("t", sort=False).size().to_numpy()
    b = df.groupby("p", sort=False).size().to_numpy()
    sum_ij, sum_a, sum_b = _comb2(nij), _comb2(a), _comb2(b)
    expected = sum_a * sum_b / (n * (n - 1) / 2)
    max_index = (sum_a + sum_b) / 2
    if max_index == expected:
        return 1.0
    return (sum_ij - expected) / (max_index - expected)


def evaluate(clusters: pd.DataFrame, reports: pd.DataFrame, truth_reports: pd.DataFrame) -> dict:
    """Planted networks recovered (80/80), per kind, ARI (all reports / network reports), cluster counts."""
    tr = truth_reports.set_index("report_id").reindex(reports["report_id"])
    net = tr["network_id"].fillna("").to_numpy()
    kind = tr["network_kind"].fillna("").to_numpy()
    cl = clusters.set_index("report_id")["cluster_id"].reindex(reports["report_id"]).fillna("").to_numpy()
    df = pd.DataFrame({"net": net, "kind": kind, "cl": cl})
    nets = df[df["net"] != ""]
    cl_size = df[df["cl"] != ""].groupby("cl").size()
    found = nets[nets["cl"] != ""].groupby(["net", "cl"]).size().rename("k").reset_index()
    best = found.sort_values(["net", "k", "cl"], ascending=[True, False, True]).drop_duplicates("net")
    net_size = nets.groupby("net").size()
    best["share"] = best["k"] / best["net"].map(net_size)
    best["purity"] = best["k"] / best["cl"].map(cl_size)
    ok = set(best.loc[(best["share"] >= 0.8) & (best["purity"] >= 0.8), "net"])
    net_kind = nets.drop_duplicates("net").set_index("net")["kind"]
    per_kind = {k: (sum(1 for n in ids if n in ok), len(ids)) for k, ids in net_kind.groupby(net_kind).groups.items()}

    # singletons get unique labels
    idx = np.arange(len(df))
    t_lab = pd.factorize(np.where(net != "", net, "s" + idx.astype(str)))[0]
    p_lab = pd.factorize(np.where(cl != "", cl, "s" + idx.astype(str)))[0]
    in_net = net != ""
    return {
        "recovered": len(ok) / max(len(net_size), 1), "n_networks": len(net_size), "per_kind": per_kind,
        "ari": adjusted_rand_index(t_lab, p_lab), "ari_networks": adjusted_rand_index(t_lab[in_net], p_lab[in_net]),
        "n_clusters": int(len(cl_size)), "largest": int(cl_size.max()) if len(cl_size) else 0,
        "clustered": int((cl != "").sum()),
    }


def split_ceiling(mentions: pd.DataFrame, truth_reports: pd.DataFrame) -> float:
    """Share of planted networks whose own reports are >= 80% connected through their (resolved) entities.

    No clustering can recover a network that entity resolution split apart; this is the best reachable
    "recovered" value (1.0 with true entity ids).
    """
    net = truth_reports[truth_reports["network_id"] != ""].set_index("report_id")["network_id"]
    m = mentions[mentions["report_id"].isin(net.index) & mentions["entity_id"].notna()]
    m = m.assign(entity_id=m["entity_id"].astype(str) + "|" + m["report_id"].map(net))  # link inside a network only
    comps = bipartite_components(None, m, min_size=1)
    comps = comps.assign(net=comps["report_id"].map(net))
    biggest = comps.groupby(["net", "cluster_id"]).size().groupby("net").max()
    size = net.value_counts()
    return float((biggest.reindex(size.index).fillna(0) / size >= 0.8).mean())


def diagnose(clusters: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame, truth_reports: pd.DataFrame,
             truth_mentions: pd.Series) -> dict:
    """Why each planted network that is not recovered is missed, as counts (printed by ``--diagnose``).

    Every missed network gets one reason:

    - ``split by ER``: its reports are not >= 80% connected through its own (resolved) entities, so no
      clustering of this graph can recover it (see :func:`split_ceiling`);
    - ``split by clustering``: connected, but its best cluster holds < 80% of it;
    - ``impure``: its best cluster holds >= 80% of it, but other reports make up > 20% of that cluster.

    For impure clusters, the *glue* entities (shared by a network report and a foreign report in that
    cluster) are counted by entity type, by whether the two sides are truly one entity (``genuine``) or a
    false merge of entity resolution, and by whether all their mentions are anchored (``anchored`` column).
    """
    tr = truth_reports.set_index("report_id")
    net = tr["network_id"].reindex(reports["report_id"]).fillna("").to_numpy()
    kind = tr["network_kind"].reindex(reports["report_id"]).fillna("").to_numpy()
    cl = clusters.set_index("report_id")["cluster_id"].reindex(reports["report_id"]).fillna("").to_numpy()
    df = pd.DataFrame({"report_id": reports["report_id"].to_numpy(), "net": net, "kind": kind, "cl": cl})
    nets = df[df["net"] != ""]
    cl_size = df[df["cl"] != ""].groupby("cl").size()
    net_size = nets.groupby("net").size()
    found = nets[nets["cl"] != ""].groupby(["net", "cl"]).size().rename("k").reset_index()
    best = found.sort_values(["net", "k", "cl"], ascending=[True, False, True]).drop_duplicates("net").set_index("net")
    best = best.reindex(net_size.index)
    share = (best["k"].fillna(0) / net_size).to_numpy()
    purity = (best["k"].fillna(0) / best["cl"].map(cl_size).fillna(1)).to_numpy()
    # connectivity through the network's own entities
    netmap = df.set_index("report_id")["net"]
    m = mentions[mentions["entity_id"].notna()]
    m = m.assign(net=m["report_id"].map(netmap).to_numpy())
    own = m[m["net"] != ""]
    own = own.assign(entity_id=own["entity_id"].astype(str) + "|" + own["net"])
    comps = bipartite_components(None, own, min_size=1)
    conn = comps.assign(net=comps["report_id"].map(netmap)).groupby(["net", "cluster_id"]).size().groupby("net").max()
    connected = (conn.reindex(net_size.index).fillna(0) / net_size >= 0.8).to_numpy()
    ok = (share >= 0.8) & (purity >= 0.8)
    why = np.where(ok, "recovered", np.where(share < 0.8, np.where(connected, "split by clustering", "split by ER"),
                                              "impure"))
    nk = nets.drop_duplicates("net").set_index("net")["kind"].reindex(net_size.index).to_numpy()
    table = pd.crosstab(pd.Series(why, name="reason"), pd.Series(nk, name="kind"))
    # glue entities of impure best clusters
    if "link_weight" in m.columns:  # candidate links connect (above) but are no entities to glue with
        m = m[m["link_weight"].isna()]
    mc = m.assign(cl=m["report_id"].map(df.set_index("report_id")["cl"]).to_numpy(),
                  true_id=m["mention_id"].map(truth_mentions).to_numpy())
    if "anchored" not in mc.columns:
        mc = mc.assign(anchored=True)
    mc = mc.assign(anchored=mc["anchored"].astype("boolean").fillna(True).astype(bool))
    impure_best = best.loc[why == "impure", "cl"] if (why == "impure").any() else pd.Series(dtype=object)
    rows = []
    for n, c in impure_best.items():
        inside = mc[mc["cl"] == c]
        mine, other = inside[inside["net"] == n], inside[inside["net"] != n]
        for e in set(mine["entity_id"]) & set(other["entity_id"]):
            a, b = mine[mine["entity_id"] == e], other[other["entity_id"] == e]
            rows.append((a["entity_type"].iloc[0], bool(set(a["true_id"]) & set(b["true_id"])),
                         bool(a["anchored"].all() and b["anchored"].all())))
    glue = pd.DataFrame(rows, columns=["type", "genuine", "anchored"])
    glue_table = glue.groupby(["type", "genuine", "anchored"]).size().rename("glue entities") if len(glue) else glue
    return {"reasons": table, "glue": glue_table}


#: Match-probability bands of :func:`er_ties` (a tie that entity resolution never scored is "not scored").
TIE_BANDS = (0.0, 0.01, 0.15, 0.5, 1.0000001)


def _network_parts(mentions: pd.DataFrame, net: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(part of each network report, largest part of each network): connected parts of each planted network
    through its own resolved entities (a report that shares no entity with its network is a part alone)."""
    m = mentions[mentions["entity_id"].notna() & mentions["report_id"].isin(net.index)]
    if "link_weight" in m.columns:
        m = m[m["link_weight"].isna()]
    m = m.assign(entity_id=m["entity_id"].astype(str) + "|" + m["report_id"].map(net))
    comps = bipartite_components(None, m, min_size=1).set_index("report_id")["cluster_id"]
    part = comps.reindex(net.index)
    part = part.where(part.notna(), "alone:" + pd.Series(net.index, index=net.index))  # no entity at all
    sizes = pd.DataFrame({"net": net, "part": part}).groupby(["net", "part"]).size().rename("k").reset_index()
    largest = sizes.sort_values(["net", "k", "part"], ascending=[True, False, True]).drop_duplicates("net")
    return part, largest.set_index("net")["part"]


def er_ties(mentions: pd.DataFrame, truth_reports: pd.DataFrame, truth_mentions: pd.Series,
            scored: list | None = None, anchor_types: Iterable[str] | None = None) -> pd.DataFrame:
    """Why networks are split by entity resolution: the true ties it left apart, by type and mention shape.

    A network is *split* when its largest part (connected through its own resolved entities) holds < 80 % of
    its reports; its reports outside that part are *cut off*. A *tie* is a pair of mentions, one in a cut-off
    report and one in the network's largest part, that truly name one entity but got different resolved
    entities: one such tie, resolved, would re-join the cut-off report (and the reports connected to it).

    ``mentions``: resolved (``mention_id, report_id, entity_id, entity_type``, optionally ``anchored``);
    ``truth_mentions``: mention id -> true entity id; ``scored``: entity resolution's scored pairs
    (``entity_type, mention_ids, left, right, prob`` as :func:`linkage.resolve.incremental.stored_pair_probabilities`
    gives them; None or [] leaves every tie "not scored"); ``anchor_types``: the types whose mentions can be
    anchored or not (``[anchors]`` in graph.toml; the others get "-"); None: every type.

    Returns one row per (``entity_type``, ``anchored``: "both" / "one" / "neither" of the two mentions anchored,
    ``band``: the tie's match probability band or "not scored") with ``ties`` and ``reports`` (cut-off reports
    that have such a tie), sorted by ``ties`` descending.

    >>> tr = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "network_id": ["N", "N", "N"]})
    >>> m = pd.DataFrame({"mention_id": ["a", "b", "c", "d"], "report_id": ["R1", "R2", "R2", "R3"],
    ...                   "entity_id": ["E1", "E1", "P1", "P2"], "entity_type": ["phone", "phone", "person", "person"],
    ...                   "anchored": [1, 1, 1, 0]})
    >>> truth = pd.Series({"a": "T1", "b": "T1", "c": "X", "d": "X"})
    >>> er_ties(m, tr, truth).values.tolist()  # R3 is cut off; its name-only person is truly R2's
    [['person', 'one', 'not scored', 1, 1]]
    """
    columns = ["entity_type", "anchored", "band", "ties", "reports"]
    net = truth_reports[truth_reports["network_id"] != ""].set_index("report_id")["network_id"]
    net = net[net.index.isin(mentions["report_id"])]
    part, largest = _network_parts(mentions, net)
    share = pd.DataFrame({"net": net, "part": part}).assign(main=lambda d: d["part"].to_numpy() == d["net"].map(largest).to_numpy())
    split = share.groupby("net")["main"].mean()
    split = set(split.index[split < 0.8])
    m = mentions[mentions["report_id"].isin(share.index[share["net"].isin(split)]) & mentions["entity_id"].notna()]
    if "link_weight" in m.columns:
        m = m[m["link_weight"].isna()]
    if len(m) == 0:
        return pd.DataFrame(columns=columns)
    m = m.assign(net=m["report_id"].map(net).to_numpy(), main=m["report_id"].map(share["main"]).to_numpy(dtype=bool),
                 true=m["mention_id"].map(truth_mentions).to_numpy(),
                 anchored=(m["anchored"].astype("boolean").fillna(True).to_numpy(dtype=bool) if "anchored" in m.columns
                           else True))
    m = m[m["true"].notna()]
    ties = m[~m["main"]].merge(m[m["main"]], on=["net", "true"], suffixes=("_o", "_m"))
    ties = ties[ties["entity_id_o"].astype(str) != ties["entity_id_m"].astype(str)]
    if len(ties) == 0:
        return pd.DataFrame(columns=columns)
    prob = np.full(len(ties), np.nan)
    if scored:
        idx = pd.Index(pd.concat([ties["mention_id_o"], ties["mention_id_m"]]).astype(str).unique())
        o = idx.get_indexer(ties["mention_id_o"].astype(str)).astype(np.int64)
        w = idx.get_indexer(ties["mention_id_m"].astype(str)).astype(np.int64)
        want = np.minimum(o, w) * len(idx) + np.maximum(o, w)
        for sp in scored:
            pos = idx.get_indexer(np.asarray(sp.mention_ids, dtype=object).astype(str)).astype(np.int64)
            li, ri = pos[np.asarray(sp.left)], pos[np.asarray(sp.right)]
            ok = (li >= 0) & (ri >= 0)
            key = np.minimum(li[ok], ri[ok]) * len(idx) + np.maximum(li[ok], ri[ok])
            p = pd.Series(np.asarray(sp.prob, dtype=np.float64)[ok], index=key).groupby(level=0).max()
            hit = p.reindex(want).to_numpy()
            prob = np.where(np.isnan(prob), hit, np.fmax(prob, hit))
    labels = [f"{a:g}-{b:g}" if b <= 1 else f">={a:g}" for a, b in zip(TIE_BANDS[:-1], TIE_BANDS[1:])]
    band = pd.cut(pd.Series(prob), list(TIE_BANDS), right=False, labels=labels).astype(object).fillna("not scored")
    n_anch = ties["anchored_o"].astype(int).to_numpy() + ties["anchored_m"].astype(int).to_numpy()
    shape = np.array(["neither", "one", "both"], dtype=object)[n_anch]
    if anchor_types is not None:
        shape[~ties["entity_type_o"].isin(list(anchor_types)).to_numpy()] = "-"
    out = pd.DataFrame({"entity_type": ties["entity_type_o"].to_numpy(), "anchored": shape,
                        "band": band.to_numpy(), "report": ties["report_id_o"].to_numpy()})
    out = (out.groupby(["entity_type", "anchored", "band"]).agg(ties=("report", "size"), reports=("report", "nunique"))
           .reset_index().sort_values(["ties", "entity_type", "anchored", "band"], ascending=[False, True, True, True]))
    return out.reset_index(drop=True)[columns]


def print_er_ties(store_path: Path, mentions: pd.DataFrame, truth_reports: pd.DataFrame, truth_m: pd.Series) -> None:
    """Print :func:`er_ties` for a resolved store (its scored pairs read from the ER state, read only)."""
    from linkage.resolve.incremental import stored_pair_probabilities
    from linkage.store import EmbeddedStore

    with EmbeddedStore(store_path) as store:
        scored = stored_pair_probabilities(store.conn, 0.0)
    ties = er_ties(mentions, truth_reports, truth_m, scored, anchor_types=load_graph_settings().anchors)
    if len(ties) == 0:
        return
    by_type = ties.groupby("entity_type")["ties"].sum().sort_values(ascending=False)
    print("split by ER, true ties left apart between a cut-off report and its network's largest part "
          f"({int(ties['ties'].sum()):,} ties; {', '.join(f'{t} {n:,}' for t, n in by_type.items())}):")
    print("\n".join("    " + x for x in ties.head(15).to_string(index=False).splitlines()), flush=True)


# ---------------------------------------------------------------------------------------------- timing
def measured(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds, peak RSS above the starting RSS in MiB) of one call."""
    gc.collect()
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    c = time.process_time()
    try:
        out = fn(*args, **kwargs)
    finally:
        secs = time.perf_counter() - t
        cpu = time.process_time() - c
        stop.set()
        th.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return out, secs, cpu, (peak[0] - base) / 2**20


# ---------------------------------------------------------------------------------------------- main
def true_ids_for(mentions: pd.DataFrame, truth_mentions: pd.Series, types: set[str]) -> pd.DataFrame:
    """``mentions`` with the entity ids of the given types replaced by the true ones (what a perfect
    resolution of those types would give); other types keep their resolved ids. A true id is certain, so
    those mentions also count as anchored (their links are not discounted as name matches).

    >>> m = pd.DataFrame({"mention_id": ["a", "b"], "entity_type": ["person", "phone"], "entity_id": ["e1", "e2"]})
    >>> true_ids_for(m, pd.Series({"a": "P9", "b": "T9"}), {"person"})["entity_id"].tolist()
    ['true:P9', 'e2']
    """
    out = mentions.copy()
    pick = out["entity_type"].isin(types) & out["mention_id"].isin(truth_mentions.index)
    out.loc[pick, "entity_id"] = "true:" + out.loc[pick, "mention_id"].map(truth_mentions)
    if "anchored" in out.columns:
        out.loc[pick, "anchored"] = 1
    return out


#: The corroborations of graph.toml's [candidates] as measured in session 6 (off by default there).
CANDIDATES_ON = {"candidates_factor": {"person": 1.0, "business": 1.0, "address": 1.0},
                 "co_mentioned_factor": {"person": 0.3, "business": 0.3},
                 "co_located_factor": {"person": 0.5, "business": 0.5}}


def run(sizes: list[int], seed: int, data_dir: Path, graph: bool, methods: list[str], resolved: bool = False,
        graph_toml: Path | None = None, diagnosis: bool = False, true_types: set[str] | None = None,
        candidates: bool = True, candidates_on: bool = False) -> None:
    settings = load_graph_settings(graph_toml)
    if candidates_on:
        settings = settings.with_(**CANDIDATES_ON)
    if not candidates:
        settings = settings.with_(candidates_factor={}, co_mentioned_factor={}, co_located_factor={})
    print(f"settings ({graph_toml or 'packaged graph.toml'}): objective={settings.objective} resolution={settings.resolution} "
          f"iterations={settings.iterations} specificity={settings.specificity} "
          f"hub_max_reports={settings.hub_max_reports} name_only_factor={dict(settings.name_only_factor)} "
          f"candidates={dict(settings.candidates_factor)} (p >= {settings.candidates_min_probability}) "
          f"co_mentioned={dict(settings.co_mentioned_factor)} by {list(settings.co_mentioned_by)} "
          f"(p >= {settings.co_mentioned_min_probability}) co_located={dict(settings.co_located_factor)}; seed={seed}")
    print("entity ids: " + ("RESOLVED by linkage's pipeline (load + resolve)" if resolved else
                            "TRUE ids from truth_mentions.csv (measures clustering alone; --resolved for end-to-end)"))
    print(f"machine: {psutil.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in psutil.getloadavg())} "
          "(wall time suffers when others share the CPUs; CPU seconds do not)\n")
    for n in sizes:
        src = ensure_data(n, seed, data_dir)
        t = time.perf_counter()
        if resolved:
            reports, mentions, links, truth_reports, cand = load_resolved_tables(src, settings)
        else:  # true ids: no entity resolution, so no candidate pairs
            reports, mentions, links, truth_reports = load_truth_tables(src)
            cand = pd.DataFrame(columns=CANDIDATE_COLUMNS)
        truth_m = None
        if diagnosis or (resolved and true_types):
            truth_m = pd.read_csv(src / "truth_mentions.csv", usecols=["mention_id", "entity_id"], dtype=str,
                                  keep_default_na=False).set_index("mention_id")["entity_id"]
        if resolved and true_types:
            mentions = true_ids_for(mentions, truth_m, true_types)
            print(f"true ids for: {', '.join(sorted(true_types))} (resolved ids for the other types)")
        print(f"== {n:,} reports, {len(mentions):,} mentions, {mentions['entity_id'].nunique():,} entities, "
              f"{len(links):,} stated links, {len(cand) // 2:,} candidate links "
              f"(tables read in {time.perf_counter() - t:.0f} s)", flush=True)
        # what clustering sees: the mentions and the candidate links (linkage.graph.candidates), as the main job
        clustered = with_candidates(mentions, cand)
        runs = {
            "leiden": lambda: find_clusters(reports, clustered, links, None, seed=seed, settings=settings),
            "components": lambda: find_clusters(reports, clustered, links, None, settings=settings, method="components"),
            "raw-components": lambda: bipartite_components(reports, mentions),
        }
        print(f"ceiling: {split_ceiling(mentions, truth_reports):.3f} of the planted networks are >= 80% connected "
              f"through their own entities, {split_ceiling(clustered, truth_reports):.3f} with the candidate links "
              "(no clustering can recover the rest)")
        if diagnosis and resolved:
            print_er_ties(src / "store.db", mentions, truth_reports, truth_m)
        print(f"{'method':<15} {'recovered':>9} {'ARI':>6} {'ARI-net':>7} {'clusters':>9} {'largest':>8} "
              f"{'clustered':>9} {'wall s':>7} {'cpu s':>6} {'peak MiB':>8}  per kind (recovered/networks)")
        for name in methods:
            clusters, secs, cpu, mib = measured(runs[name])
            ev = evaluate(clusters, reports, truth_reports)
            kinds = " ".join(f"{k}={a}/{b}" for k, (a, b) in sorted(ev["per_kind"].items()))
            print(f"{name:<15} {ev['recovered']:>9.3f} {ev['ari']:>6.3f} {ev['ari_networks']:>7.3f} "
                  f"{ev['n_clusters']:>9,} {ev['largest']:>8,} {ev['clustered']:>9,} {secs:>7.1f} {cpu:>6.1f} {mib:>8.0f}  {kinds}",
                  flush=True)
            if diagnosis:
                d = diagnose(clusters, reports, clustered, truth_reports, truth_m)
                print(f"  why networks are missed ({name}):\n" + "\n".join("    " + x for x in d["reasons"].to_string().splitlines()))
                if len(d["glue"]):
                    print("  entities gluing foreign reports into an impure network's cluster (genuine = truly shared):\n"
                          + "\n".join("    " + x for x in d["glue"].to_string().splitlines()), flush=True)
        if graph:
            g, secs, cpu, mib = measured(build_graph, reports, mentions, links, None, settings)
            print(f"networkx build_graph: {g.number_of_nodes():,} nodes, {g.number_of_edges():,} edges in "
                  f"{secs:.1f} s wall ({cpu:.1f} s CPU), peak +{mib:.0f} MiB", flush=True)
            del g
        print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", default="10000,100000", help="comma-separated sizes (default 10000,100000)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/linkage-bench"),
                    help="where generated data is cached (default /tmp/linkage-bench)")
    ap.add_argument("--methods", default="leiden,components,raw-components")
    ap.add_argument("--graph", action="store_true", help="also time the networkx display graph build")
    ap.add_argument("--graph-toml", type=Path, default=None,
                    help="a graph.toml copy to compare settings (default: the packaged one)")
    ap.add_argument("--diagnose", action="store_true",
                    help="say why each missed network is missed (split by ER / by clustering, impure and what glues)")
    ap.add_argument("--resolved", action="store_true",
                    help="cluster linkage-resolved entities instead of the true ones (loads + resolves once)")
    ap.add_argument("--true-ids", default="", metavar="TYPES",
                    help="with --resolved: comma-separated entity types (person,business,...) that keep their TRUE ids")
    ap.add_argument("--no-candidates", action="store_true",
                    help="with --resolved: cluster without the candidate links of [candidates] (for comparison)")
    ap.add_argument("--candidates-on", action="store_true",
                    help="with --resolved: all three corroborations of [candidates] on, as graph.toml documents them "
                         "(they are off by default)")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.reports.split(",") if x]
    run(sizes, a.seed, a.data_dir, a.graph, [m for m in a.methods.split(",") if m], a.resolved, a.graph_toml, a.diagnose,
        {t for t in a.true_ids.split(",") if t}, not a.no_candidates, a.candidates_on)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
