"""The display graph: reports and resolved entities as a networkx ``MultiDiGraph``.

In:  ``reports`` (report_id, received_at, category, reporter_type), resolved ``mentions`` (mention_id,
     report_id, entity_type, role, entity_id), stated ``links`` (src_mention_id, dst_mention_id, rel_type,
     report_id) and ``entities`` (entity_id, entity_type, label, n_mentions).
Out: a ``networkx.MultiDiGraph`` for pictures, notebooks and the Neo4j writer (clustering itself runs on
     integer arrays, see :mod:`linkage.graph.communities`).

Nodes are keyed by their plain id (``report_id`` or ``entity_id``); attributes:

- every node: ``kind`` (``"report"`` or the entity type) and ``label``;
- reports: ``category``, ``received_at``, ``reporter_type`` (never the reporter's identity);
- entities: ``n_reports`` (distinct reports mentioning it), ``weight`` (its specificity) and ``is_hub``.

Edges (a multigraph: one edge per piece of evidence, keyed by its mention id or ``rel_type:report_id``):

- ``report -> entity``: ``type="MENTIONS"``, ``role``, ``mention_id``, ``weight`` (the entity's specificity);
- ``entity -> entity`` as a row stated it (``person LIVES_AT address``, ``person DIRECTOR_OF business``...):
  ``type=rel_type``, ``rel_type``, ``report_id``, ``weight`` (the smaller specificity of its two ends).

Build time on this machine: see ``bench/bench_clusters.py --graph``.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import networkx as nx
import pandas as pd

from linkage.errors import InputError
from linkage.graph.weights import GraphSettings, as_graph_settings, entity_weights


def _str_or_none(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    s = str(v)
    return s if s else None


def build_graph(reports: pd.DataFrame, mentions: pd.DataFrame, links: pd.DataFrame | None = None,
                entities: pd.DataFrame | None = None, settings: GraphSettings | Mapping[str, Any] | None = None,
                report_ids: Iterable[str] | None = None) -> nx.MultiDiGraph:
    """Build the report/entity graph (see the module docstring for its nodes and edges).

    Parameters
    ----------
    reports, mentions, links, entities:
        The resolved tables (``links`` and ``entities`` may be None or empty).
    settings:
        Graph policy for the weights; default ``graph.toml``.
    report_ids:
        Restrict the graph to these reports (and the entities they mention); weights still use the
        counts over *all* mentions, so a subgraph shows the same weights as the whole.

    Raises
    ------
    InputError
        An id is used both as a report id and an entity id (node keys would collide).

    >>> reports = pd.DataFrame({"report_id": ["R1", "R2"], "received_at": ["2024-01-02", "2024-02-03"],
    ...                         "category": ["overbewoning"] * 2, "reporter_id": ["a", None],
    ...                         "reporter_type": ["bewoner", "anoniem"]})
    >>> mentions = pd.DataFrame({"mention_id": ["m1", "m2", "m2~address"], "report_id": ["R1", "R2", "R2"],
    ...                          "entity_type": ["address", "person", "address"], "role": ["adres", "bewoner", None],
    ...                          "entity_id": ["A1", "P1", "A1"]})
    >>> links = pd.DataFrame({"src_mention_id": ["m2"], "dst_mention_id": ["m2~address"],
    ...                       "rel_type": ["LIVES_AT"], "report_id": ["R2"]})
    >>> g = build_graph(reports, mentions, links)
    >>> sorted(g.nodes), g.nodes["A1"]["kind"], g.nodes["A1"]["n_reports"]
    (['A1', 'P1', 'R1', 'R2'], 'address', 2)
    >>> sorted((u, v, d["type"]) for u, v, d in g.edges(data=True))
    [('P1', 'A1', 'LIVES_AT'), ('R1', 'A1', 'MENTIONS'), ('R2', 'A1', 'MENTIONS'), ('R2', 'P1', 'MENTIONS')]
    """
    s = as_graph_settings(settings)
    m_all = mentions[mentions["entity_id"].notna()]
    ew = entity_weights(m_all, s).set_index("entity_id")
    rep = reports
    m = m_all
    if report_ids is not None:
        keep = pd.Index([str(x) for x in report_ids])
        rep = reports[reports["report_id"].astype(str).isin(keep)]
        m = m_all[m_all["report_id"].astype(str).isin(keep)]
    clash = set(rep["report_id"].astype(str).tolist()) & set(m["entity_id"].astype(str).tolist())
    if clash:
        raise InputError(f"{len(clash)} id(s) are used both as a report id and an entity id; "
                         "entity ids must differ from report ids")

    g = nx.MultiDiGraph()
    cols = [c for c in ("report_id", "received_at", "category", "reporter_type") if c in rep.columns]
    for d in rep[cols].astype(object).to_dict("records"):
        rid = str(d["report_id"])
        cat = _str_or_none(d.get("category"))
        day = _str_or_none(d.get("received_at"))
        g.add_node(rid, kind="report", label=" ".join(x for x in (cat, day) if x) or rid,
                   category=cat, received_at=day, reporter_type=_str_or_none(d.get("reporter_type")))

    ent_ids = pd.Index(m["entity_id"].astype(str).unique().tolist(), dtype=object)
    info = ew.reindex(ent_ids)
    labels: dict[str, Any] = {}
    if entities is not None and len(entities) and "label" in entities.columns:
        e = entities[entities["entity_id"].astype(str).isin(ent_ids)]
        labels = dict(zip(e["entity_id"].astype(str).tolist(), e["label"].tolist()))
    g.add_nodes_from(
        (eid, {"kind": et, "label": _str_or_none(labels.get(eid)) or eid, "n_reports": int(n), "weight": float(w),
               "is_hub": bool(h)})
        for eid, et, n, w, h in zip(ent_ids.tolist(), info["entity_type"].tolist(), info["n_reports"].tolist(),
                                    info["weight"].tolist(), info["is_hub"].tolist())
    )
    for rid in m["report_id"].astype(str).unique().tolist():  # mentions of reports missing from ``reports``
        if rid not in g:
            g.add_node(rid, kind="report", label=rid, category=None, received_at=None, reporter_type=None)

    weight_of = dict(zip(ent_ids.tolist(), info["weight"].astype(float).tolist()))
    role = m["role"].astype(object).tolist() if "role" in m.columns else [None] * len(m)
    g.add_edges_from(
        (rid, eid, mid, {"type": "MENTIONS", "role": _str_or_none(ro), "mention_id": mid, "weight": weight_of[eid]})
        for rid, eid, mid, ro in zip(m["report_id"].astype(str).tolist(), m["entity_id"].astype(str).tolist(),
                                     m["mention_id"].astype(str).tolist(), role)
    )

    if links is not None and len(links):
        ent_of = dict(zip(m["mention_id"].astype(str).tolist(), m["entity_id"].astype(str).tolist()))
        for src, dst, rel, rid in zip(*(links[c].astype(str).tolist() for c in
                                        ("src_mention_id", "dst_mention_id", "rel_type", "report_id"))):
            a, b = ent_of.get(src), ent_of.get(dst)
            if a is None or b is None or a == b:
                continue
            g.add_edge(a, b, key=f"{rel}:{rid}", type=rel, rel_type=rel, report_id=rid,
                       weight=float(min(weight_of[a], weight_of[b])))
    return g


def cluster_subgraph(cluster_id: str, clusters: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame,
                     links: pd.DataFrame | None = None, entities: pd.DataFrame | None = None,
                     settings: GraphSettings | Mapping[str, Any] | None = None) -> nx.MultiDiGraph:
    """The display graph of one cluster: its reports, the entities they mention and the stated links.

    ``clusters`` is :func:`linkage.graph.find_clusters`' output. Weights are those of the whole data.

    Raises
    ------
    InputError
        ``cluster_id`` is not in ``clusters``.
    """
    ids = clusters.loc[clusters["cluster_id"] == cluster_id, "report_id"]
    if len(ids) == 0:
        raise InputError(f"cluster '{cluster_id}' is not among the clusters")
    return build_graph(reports, mentions, links, entities, settings=settings, report_ids=ids)
