"""Graph stage: the report/entity graph, specificity weights and communities.

In:  resolved ``reports``, ``mentions`` (with ``entity_id``), stated ``links`` and ``entities`` (DataFrames).
Out: :func:`find_clusters` -> ``DataFrame[report_id, cluster_id]`` (fast, integer arrays + igraph Leiden);
     :func:`build_graph` / :func:`cluster_subgraph` -> ``networkx.MultiDiGraph`` for display and export.

Policy (weights, hub threshold, Leiden objective/resolution/seed) lives in ``linkage/graph/graph.toml``.
"""
from linkage.graph.communities import (
    ReportGraph,
    bipartite_components,
    find_clusters,
    label_clusters,
    report_graph,
)
from linkage.graph.weights import GraphSettings, entity_weights, load_graph_settings, specificity



def __getattr__(name: str):
    """``build_graph`` and ``cluster_subgraph`` import networkx (~0.3 s): loaded on first use only, so the
    clustering path of a run does not pay for the display graph."""
    if name in ("build_graph", "cluster_subgraph"):
        from linkage.graph import build

        return getattr(build, name)
    raise AttributeError(f"module 'linkage.graph' has no attribute {name!r}")


__all__ = [
    "GraphSettings",
    "ReportGraph",
    "bipartite_components",
    "build_graph",
    "cluster_subgraph",
    "entity_weights",
    "find_clusters",
    "label_clusters",
    "load_graph_settings",
    "report_graph",
    "specificity",
]
