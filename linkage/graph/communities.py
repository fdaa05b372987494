"""Communities: clusters of connected suspicions, found fast on integer arrays (no networkx).

In:  the resolved tables ``reports`` (report_id, ...) and ``mentions`` (report_id, entity_id, entity_type);
     ``links`` and ``entities`` are accepted for a uniform stage signature (a stated link joins two
     mentions *of one report*, so it adds no report-to-report connection).
Out: ``DataFrame[report_id, cluster_id]`` with only clustered reports (a report linked to nothing, or
     left alone by Leiden, is not a cluster), sorted by ``cluster_id, report_id``.

How (all vectorised, see :func:`report_graph`):

1. Reports and entities are integer-coded (reports in sorted id order, so codes are stable).
2. Every entity mentioned by ``2 <= d <= hub_max_reports`` distinct reports links each pair of them with
   weight ``specificity(d) * type_factor`` (``linkage.graph.weights``); weights of several shared entities
   add up. A person link counts fully only when both reports' mentions are anchored (BSN or birth date);
   a link that rests on a name match counts ``name_only_factor`` (``weights.link_rows``).
3. A *hub* (``d > hub_max_reports``: a municipal office as briefadres, a large flat) never creates a link
   on its own; it adds its (small) weight to pairs that rarer entities already link. So a hub cannot glue
   unrelated reports together, yet it still counts where it confirms a link, and it stays in the display
   graph and in every signal.
4. Leiden (igraph's C implementation; leidenalg is ~15x slower at this size) with the Constant Potts Model:
   a group stays together when its link weight per report pair exceeds ``resolution``. Unlike modularity
   it does not merge small planted groups into large ones on a graph of a million reports. It runs per
   connected component, seeded from ``seed`` and the component's smallest report id (the igraph random
   generator is set for each call only), so the result is deterministic and a component's communities
   depend on that component alone (what lets an incremental run re-cluster only touched components).
5. ``cluster_id = "c_" + stable_hash(smallest report_id in the cluster)``.

Measured at 1,000,000 generated reports (4M mentions, 2.9M entities): 14.5 s CPU, +0.5 GiB; quality and
timings per size in ``bench/bench_clusters.py``'s docstring.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.arrays import sorted_unique, stable_hashes
from linkage.graph.igraph_module import load_igraph
from linkage.graph.weights import ANCHORED_SUFFIX, GraphSettings, as_graph_settings, link_factor, link_rows, specificity

ig = load_igraph()  # igraph without its matplotlib import (~2 s at start-up)

CLUSTER_COLUMNS = ["report_id", "cluster_id"]


@dataclass(frozen=True)
class ReportGraph:
    """The weighted report-report graph used for clustering, as integer arrays.

    ``report_ids[k]`` is the id of report code ``k`` (sorted); edges ``u[i] < v[i]`` with ``weight[i]``,
    sorted by ``(u, v)``. ``n_hubs`` counts hub entities, ``n_hub_confirmed`` the links a hub strengthened.
    """

    report_ids: np.ndarray
    u: np.ndarray
    v: np.ndarray
    weight: np.ndarray
    n_entities_shared: int
    n_hubs: int
    n_hub_confirmed: int

    @property
    def n_edges(self) -> int:
        return int(len(self.u))


def _arrow(s: pd.Series) -> pa.Array:
    """A column as one pyarrow string array (C++ hashing and sorting; no Python string objects).

    Missing values stay null; other values become their string form (so integer ids work too).
    """
    arr = pa.array(s.astype("string[pyarrow]"), type=pa.string())
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _sorted_codes(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """(codes, sorted uniques): values numbered in sorted order, so codes do not depend on row order."""
    enc = pc.dictionary_encode(values)
    uniq = enc.dictionary
    order = pc.sort_indices(uniq).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)], uniq.take(pa.array(order))


def _coded(reports: pd.DataFrame | None, mentions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(report_ids sorted, report code per mention-entity pair, entity code per pair, entity types per code).

    Pairs are distinct (report, entity) and sorted by entity code, then report code.
    """
    rep_arr = _arrow(mentions["report_id"])
    ent_arr = _arrow(mentions["entity_id"])
    keep = pc.and_(pc.is_valid(ent_arr), pc.not_equal(ent_arr, ""))
    if reports is not None:
        keep = pc.and_(keep, pc.is_in(rep_arr, value_set=_arrow(reports["report_id"]).drop_null()))
    keep = pc.fill_null(keep, False)
    rep_arr, ent_arr = rep_arr.filter(keep), ent_arr.filter(keep)
    type_arr = _arrow(mentions["entity_type"]).filter(keep)
    r, rep_uniq = _sorted_codes(rep_arr)
    e, ent_uniq = _sorted_codes(ent_arr)
    n_rep = max(len(rep_uniq), 1)
    key = sorted_unique(e * n_rep + r)
    e_u, r_u = key // n_rep, key % n_rep
    tcodes, tnames = _sorted_codes(type_arr)
    types_code = np.zeros(len(ent_uniq), dtype=np.int64)
    types_code[e] = tcodes
    types = np.asarray(tnames.to_pylist(), dtype=object)[types_code] if len(ent_uniq) else np.zeros(0, dtype=object)
    rep_ids = np.asarray(rep_uniq.to_numpy(zero_copy_only=False), dtype=object)
    return rep_ids, r_u, e_u, types


def _clique_pairs(r: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs within each group ``r[starts[g]:starts[g]+sizes[g]]`` -> (left, right, group index)."""
    if len(sizes) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    group_of_row = np.repeat(np.arange(len(sizes)), sizes)
    row = np.repeat(starts, sizes) + (np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    pos = row - np.repeat(starts, sizes)
    after = np.repeat(sizes, sizes) - 1 - pos
    left_row = np.repeat(row, after)
    block_start = np.repeat(np.cumsum(after) - after, after)
    right_row = left_row + 1 + (np.arange(after.sum()) - block_start)
    return r[left_row], r[right_row], group_of_row[np.repeat(np.arange(len(row)), after)]


def _split_fixed(mentions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(the mentions' own rows, rows with a ``link_weight``): the latter are links of a fixed weight
    (:mod:`linkage.graph.candidates`), not mentions of an entity."""
    if "link_weight" not in mentions.columns:
        return mentions, None
    has = mentions["link_weight"].notna().to_numpy()
    if not has.any():
        return mentions, None
    return mentions.loc[~has], mentions.loc[has, ["report_id", "entity_id", "link_weight"]]


def _fixed_pairs(rows: pd.DataFrame, rep_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, weight) report-code pairs of fixed-weight rows: every pair of reports sharing such an
    entity id gets that entity's (largest) ``link_weight``; reports without a code are left out."""
    code = pd.Index(rep_ids).get_indexer(rows["report_id"].astype(str).to_numpy(dtype=object))
    ent, _ = pd.factorize(rows["entity_id"].astype(str), sort=True)
    ok = code >= 0
    df = pd.DataFrame({"e": ent[ok], "r": code[ok], "w": rows["link_weight"].to_numpy(dtype=np.float64)[ok]})
    w_ent = df.groupby("e")["w"].max()
    df = df.drop_duplicates(["e", "r"]).sort_values(["e", "r"], kind="stable")
    e, r = df["e"].to_numpy(), df["r"].to_numpy()
    if len(e) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0)
    starts = np.r_[0, np.flatnonzero(e[1:] != e[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(e)])
    two = sizes >= 2
    left, right, grp = _clique_pairs(r, starts[two], sizes[two])
    return left, right, w_ent.reindex(e[starts[two]]).to_numpy()[grp]


def report_graph(mentions: pd.DataFrame, settings: GraphSettings | Mapping[str, Any] | None = None,
                 reports: pd.DataFrame | None = None) -> ReportGraph:
    """Project the report-entity graph onto reports, weighting links by specificity (hubs only confirm).

    Parameters
    ----------
    mentions:
        Resolved mentions: ``report_id, entity_id, entity_type`` (other columns ignored, but for ``anchored``
        (see :func:`~linkage.graph.weights.link_rows`) and ``link_weight``: rows with a ``link_weight`` are
        links of exactly that weight between the reports sharing their ``entity_id``,
        :mod:`linkage.graph.candidates`).
    settings:
        :class:`GraphSettings` or a mapping of overrides; default ``graph.toml``.
    reports:
        When given, mentions of reports not in it are ignored.

    >>> m = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "entity_id": ["T", "T", "Q"],
    ...                   "entity_type": ["phone"] * 3})
    >>> g = report_graph(m)
    >>> list(g.report_ids), g.u.tolist(), g.v.tolist(), g.weight.tolist()
    (['R1', 'R2', 'R3'], [0], [1], [1.0])
    """
    s = as_graph_settings(settings)
    mentions, fixed = _split_fixed(mentions)
    # name-only links weakened: anchored mentions add a second link row (linkage.graph.weights.link_rows)
    rep_ids, r, e, types = _coded(reports, link_rows(mentions, s))
    n_rep = max(len(rep_ids), 1)
    deg = np.bincount(e, minlength=len(types)) if len(e) else np.zeros(len(types), dtype=np.int64)
    tcodes, tnames = pd.factorize(types)
    factor = np.array([link_factor(str(t), s) for t in tnames] + [1.0], dtype=np.float64)[tcodes]
    real = ~np.array([str(t).endswith(ANCHORED_SUFFIX) for t in tnames] + [False], dtype=bool)[tcodes]
    w_ent = specificity(deg, s.specificity) * factor if len(types) else np.zeros(0)

    # group boundaries in the (entity, report)-sorted pair list
    starts_all = np.searchsorted(e, np.arange(len(types))) if len(types) else np.zeros(0, dtype=np.int64)
    shared = (deg >= 2) & (deg <= s.hub_max_reports)
    hubs = deg > s.hub_max_reports
    left, right, grp = _clique_pairs(r, starts_all[shared], deg[shared])
    w = w_ent[np.flatnonzero(shared)][grp] if len(grp) else np.zeros(0)
    if fixed is not None:  # possible-match links (linkage.graph.candidates): their own weight, never a hub
        fl, fr, fw = _fixed_pairs(fixed, rep_ids)
        left, right, w = np.r_[left, fl], np.r_[right, fr], np.r_[w, fw]

    if len(left):
        key = left * n_rep + right
        order = np.argsort(key, kind="stable")
        key, w = key[order], w[order]
        start = np.empty(len(key), dtype=bool)
        start[0] = True
        np.not_equal(key[1:], key[:-1], out=start[1:])
        idx = np.flatnonzero(start)
        weight = np.add.reduceat(w, idx)
        uniq = key[idx]
        u, v = uniq // n_rep, uniq % n_rep
    else:
        u = v = np.zeros(0, dtype=np.int64)
        weight = np.zeros(0)

    n_confirmed = 0
    if hubs.any() and len(u):
        hub_rows = np.isin(e, np.flatnonzero(hubs))
        hm = pd.DataFrame({"r": r[hub_rows], "h": e[hub_rows]})
        # only edges whose both ends mention some hub can be confirmed
        has_hub = np.zeros(n_rep, dtype=bool)
        has_hub[hm["r"].to_numpy()] = True
        cand = np.flatnonzero(has_hub[u] & has_hub[v])
        if len(cand):
            ed = pd.DataFrame({"i": cand, "u": u[cand], "v": v[cand]})
            a = ed.merge(hm.rename(columns={"r": "u"}), on="u")
            b = a.merge(hm.rename(columns={"r": "v"}), on=["v", "h"])
            if len(b):
                add = np.bincount(b["i"].to_numpy(), weights=w_ent[b["h"].to_numpy()], minlength=len(u))
                weight = weight + add
                n_confirmed = int(len(b))
    return ReportGraph(report_ids=rep_ids, u=u.astype(np.int64), v=v.astype(np.int64), weight=weight.astype(np.float64),
                       n_entities_shared=int((shared & real).sum()), n_hubs=int((hubs & real).sum()), n_hub_confirmed=n_confirmed)


def leiden_membership(rg: ReportGraph, settings: GraphSettings | Mapping[str, Any] | None = None,
                      seed: int | None = None, comp: np.ndarray | None = None) -> np.ndarray:
    """Leiden community of every report code (``-1`` for reports without any link).

    With the (default) CPM objective Leiden runs on each connected component of the report graph on its own,
    seeded from ``seed`` and the component's smallest report id (:func:`component_seeds`); CPM scores each
    community by its own links and size only, and Leiden's communities are connected, so the split changes
    what is optimised in no way. It makes a component's communities depend on that component alone: an
    incremental run re-clusters only the components new reports touch and gets what a full run gets
    (:func:`leiden_components`). The modularity objective compares with the whole graph's total weight, so
    it runs on the whole graph in one call.

    ``comp``: the components (:func:`components_membership` of ``rg``) when the caller has them already.

    Deterministic for a given graph, settings and seed: igraph's random generator is set to
    ``random.Random(...)`` for each call and restored afterwards.
    """
    s = as_graph_settings(settings)
    seed = s.seed if seed is None else seed
    n = len(rg.report_ids)
    if rg.n_edges == 0:
        return np.full(n, -1, dtype=np.int64)
    if s.objective != "CPM":
        return _leiden_whole(rg, s, seed)
    if comp is None:
        comp = components_membership(rg)
    return leiden_components(rg, comp, np.unique(comp[comp >= 0]), s, seed)


def _leiden_whole(rg: ReportGraph, s: GraphSettings, seed: int) -> np.ndarray:
    n = len(rg.report_ids)
    out = np.full(n, -1, dtype=np.int64)
    linked = np.zeros(n, dtype=bool)
    linked[rg.u] = True
    linked[rg.v] = True
    nodes = np.flatnonzero(linked)
    remap = np.full(n, -1, dtype=np.int64)
    remap[nodes] = np.arange(len(nodes), dtype=np.int64)
    edges = np.column_stack([remap[rg.u], remap[rg.v]])
    g = ig.Graph(n=len(nodes), edges=edges.tolist(), directed=False)
    ig.set_random_number_generator(random.Random(seed))
    try:
        part = g.community_leiden(objective_function=s.objective, weights=rg.weight.tolist(),
                                  resolution=s.resolution, n_iterations=s.iterations)
    finally:
        ig.set_random_number_generator(random)
    out[nodes] = np.asarray(part.membership, dtype=np.int64)
    return out


def component_seeds(seed: int, first_report_ids: Iterable[str]) -> list[int]:
    """The Leiden seed of each connected component: from the run's ``seed`` and the component's smallest
    report id, so it does not depend on what else is in the graph (``stable_hash(seed, id, length=15)`` as
    an integer, hashed for all components in one pass).

    >>> a, b = component_seeds(42, ["R1", "R2"])
    >>> a == component_seeds(42, ["R1"])[0] != component_seeds(43, ["R1"])[0] and a != b
    True
    """
    return [int(h, 16) for h in stable_hashes([seed], first_report_ids, length=15)]


def leiden_components(rg: ReportGraph, comp: np.ndarray, which: np.ndarray,
                      settings: GraphSettings | Mapping[str, Any] | None = None, seed: int | None = None) -> np.ndarray:
    """CPM Leiden on the connected components ``which`` of ``rg`` (``comp``: component label per report code,
    ``-1`` for unlinked reports, as :func:`components_membership` gives), each on its own.

    Returns a community label per report code: ``-1`` outside ``which``; inside, labels unique over the call
    (they number communities, nothing more: :func:`label_clusters` names a cluster by its smallest report id). A component's nodes are its report codes in
    order and its edges those of ``rg`` in ``(u, v)`` order, so the result depends on the component only.
    """
    s = as_graph_settings(settings)
    seed = s.seed if seed is None else seed
    n = len(rg.report_ids)
    out = np.full(n, -1, dtype=np.int64)
    which = np.asarray(which, dtype=np.int64)
    if len(which) == 0 or rg.n_edges == 0:
        return out
    wanted = np.zeros(int(comp.max()) + 1, dtype=bool)
    wanted[which] = True
    # nodes of the wanted components, grouped by component, in code order within each
    nodes = np.flatnonzero((comp >= 0) & wanted[np.maximum(comp, 0)])
    nodes = nodes[np.argsort(comp[nodes], kind="stable")]
    node_comp = comp[nodes]
    starts = np.r_[0, np.flatnonzero(node_comp[1:] != node_comp[:-1]) + 1]
    ends = np.r_[starts[1:], len(nodes)]
    local = np.full(n, -1, dtype=np.int64)
    local[nodes] = np.arange(len(nodes)) - np.repeat(starts, ends - starts)
    # edges of the wanted components, grouped by component, in (u, v) order within each
    e_comp = comp[rg.u]
    e_keep = np.flatnonzero(wanted[e_comp])  # an edge's ends are linked reports: e_comp >= 0
    e_keep = e_keep[np.argsort(e_comp[e_keep], kind="stable")]
    ec = e_comp[e_keep]
    e_starts = np.searchsorted(ec, node_comp[starts], side="left")
    e_ends = np.searchsorted(ec, node_comp[starts], side="right")
    kept_weight = rg.weight[e_keep]
    lu, lv, w = local[rg.u[e_keep]].tolist(), local[rg.v[e_keep]].tolist(), kept_weight.tolist()
    ids = rg.report_ids
    objective, resolution, iterations = s.objective, s.resolution, s.iterations
    # Two reports joined by one link (most components) need no Leiden run: CPM puts them together exactly
    # when the link weighs more than the resolution (joining gains w - resolution), whatever the seed; apart,
    # Leiden numbers them 0 and 1 in node order. Same labels as the Leiden call, without building a graph.
    pair = ((ends - starts) == 2) & ((e_ends - e_starts) == 1)
    if objective == "CPM" and iterations != 0 and pair.any():
        first = starts[pair]
        together = kept_weight[e_starts[pair]] > resolution
        out[nodes[first]] = first
        out[nodes[first + 1]] = np.where(together, first, first + 1)
        starts, ends, e_starts, e_ends = starts[~pair], ends[~pair], e_starts[~pair], e_ends[~pair]
    seeds = component_seeds(seed, ids[nodes[starts]].tolist())
    try:
        for a, b, ea, eb, component in zip(starts.tolist(), ends.tolist(), e_starts.tolist(), e_ends.tolist(), seeds):
            g = ig.Graph(n=b - a, edges=list(zip(lu[ea:eb], lv[ea:eb])), directed=False)
            ig.set_random_number_generator(random.Random(component))
            part = g.community_leiden(objective_function=objective, weights=w[ea:eb], resolution=resolution,
                                      n_iterations=iterations)
            out[nodes[a:b]] = a + np.asarray(part.membership, dtype=np.int64)
    finally:
        ig.set_random_number_generator(random)
    return out


def components_membership(rg: ReportGraph) -> np.ndarray:
    """Connected component of every report code in ``rg`` (``-1`` for reports without any link)."""
    n = len(rg.report_ids)
    out = np.full(n, -1, dtype=np.int64)
    if rg.n_edges == 0:
        return out
    g = ig.Graph(n=n, edges=np.column_stack([rg.u, rg.v]).tolist(), directed=False)
    memb = np.asarray(g.connected_components().membership, dtype=np.int64)
    linked = np.zeros(n, dtype=bool)
    linked[rg.u] = True
    linked[rg.v] = True
    out[linked] = memb[linked]
    return out


def label_clusters(report_ids: np.ndarray, membership: np.ndarray, min_size: int = 2) -> pd.DataFrame:
    """Turn a membership array into ``DataFrame[report_id, cluster_id]``, dropping groups below ``min_size``.

    ``cluster_id`` is ``"c_" + stable_hash(smallest report_id)``, so it does not depend on the algorithm's
    internal numbering.

    >>> label_clusters(np.array(["R1", "R2", "R3"], dtype=object), np.array([0, 0, 1]))["report_id"].tolist()
    ['R1', 'R2']
    """
    keep = membership >= 0
    if not keep.any():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CLUSTER_COLUMNS})
    codes = np.flatnonzero(keep)
    memb = membership[keep]
    sizes = np.bincount(memb)
    big = sizes[memb] >= min_size
    codes, memb = codes[big], memb[big]
    if len(codes) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CLUSTER_COLUMNS})
    # smallest report code per community (codes are in sorted-id order)
    first = np.full(sizes.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, memb, codes)
    used = np.flatnonzero(np.bincount(memb, minlength=sizes.shape[0]))
    cid = np.empty(sizes.shape[0], dtype=object)
    cid[used] = ["c_" + h for h in stable_hashes((), report_ids[first[used]].tolist(), length=12)]
    out = pd.DataFrame({"report_id": report_ids[codes], "cluster_id": cid[memb]})
    return out.sort_values(["cluster_id", "report_id"], kind="stable").reset_index(drop=True)


def find_clusters(reports: pd.DataFrame | None, mentions: pd.DataFrame, links: pd.DataFrame | None = None,
                  entities: pd.DataFrame | None = None, seed: int | None = None,
                  settings: GraphSettings | Mapping[str, Any] | None = None,
                  method: str = "leiden") -> pd.DataFrame:
    """Clusters of connected suspicions: ``DataFrame[report_id, cluster_id]``, clustered reports only.

    Parameters
    ----------
    reports:
        ``report_id`` column (others ignored); mentions of other reports are ignored. None: all mentions.
    mentions:
        ``report_id, entity_id, entity_type`` (the resolved entity of every mention).
    links, entities:
        Accepted for a uniform stage signature; not needed (see the module docstring).
    seed:
        Leiden's seed; default ``communities.seed`` of the settings. Same inputs + seed -> same output.
    settings:
        :class:`GraphSettings`, a mapping of overrides (``{"resolution": 0.05}``) or None for ``graph.toml``.
    method:
        ``"leiden"`` (default) or ``"components"`` (connected components of the same hub-safe report graph;
        a baseline for the benchmark).

    Returns
    -------
    DataFrame with columns ``report_id, cluster_id``, sorted by ``cluster_id, report_id``. Clusters have
    at least ``min_cluster_size`` (>= 2) reports.

    >>> reports = pd.DataFrame({"report_id": ["R1", "R2", "R3"]})
    >>> mentions = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "entity_id": ["P", "P", "Q"],
    ...                          "entity_type": ["person"] * 3})
    >>> find_clusters(reports, mentions, seed=1)["report_id"].tolist()
    ['R1', 'R2']
    """
    s = as_graph_settings(settings)
    rg = report_graph(mentions, s, reports)
    if method == "leiden":
        memb = leiden_membership(rg, s, seed)
    elif method == "components":
        memb = components_membership(rg)
    else:
        raise ValueError(f"unknown method {method!r}: use 'leiden' or 'components'")
    return label_clusters(rg.report_ids, memb, s.min_cluster_size)


def bipartite_components(reports: pd.DataFrame | None, mentions: pd.DataFrame, min_size: int = 2) -> pd.DataFrame:
    """Naive baseline: connected components of the raw report-entity graph (every shared entity, hubs too).

    Same output shape as :func:`find_clusters`. Shows what hubs do when nothing weighs them.
    """
    rep_ids, r, e, types = _coded(reports, mentions)
    n = len(rep_ids)
    if n == 0 or len(r) == 0:
        return label_clusters(rep_ids, np.full(n, -1, dtype=np.int64), min_size)
    g = ig.Graph(n=n + len(types), edges=np.column_stack([r, n + e]).tolist(), directed=False)
    memb = np.asarray(g.connected_components().membership, dtype=np.int64)[:n]
    return label_clusters(rep_ids, memb, min_size)
