"""Network pictures of one cluster: the reports and the entities they mention, drawn to be read.

In:  a store and a cluster id (or the dict from :func:`cluster_data`).
Out: the cluster as a networkx graph (:func:`cluster_graph`), a seeded and therefore repeatable layout
     (:func:`layout`), a matplotlib drawing (:func:`plot_cluster`; PNG or SVG files through
     :func:`draw_cluster`), and a self-contained SVG / interactive HTML rendering that needs no
     internet (:func:`cluster_svg`, :func:`cluster_html`).

How to read a picture: reports are grey squares, entities are circles coloured by type. An entity grows
with the number of the cluster's reports that mention it; a report grows with the number of entities it
mentions. Thin grey lines: "this report mentions this entity". Dark lines: a link stated in a report
(lives at, located at, director of, owner of, uses). Beyond :data:`LABEL_LIMIT` nodes only the hubs
carry a label; the HTML page shows every node's details on hover.

The pictures carry entity labels (names, addresses) and report ids, never reporter identities.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import networkx as nx

from linkage import model
from linkage.errors import InputError

#: Node types in legend order: reports first, then the entity types.
NODE_TYPES: tuple[str, ...] = ("report",) + model.ENTITY_TYPES

#: One colour per node type (colour-blind-safe where possible: Okabe-Ito plus greys).
COLOURS: dict[str, str] = {
    "report": "#5f6368",
    "person": "#0072b2",
    "address": "#e69f00",
    "business": "#009e73",
    "vehicle": "#cc79a7",
    "phone": "#56b4e9",
    "bank_account": "#d55e00",
    "email": "#8c6d1f",
}

#: What a node type and a relationship are called, per language (``en`` for the CLI, ``nl`` for dossiers).
TYPE_NAMES: dict[str, dict[str, str]] = {
    "en": {"report": "report", "person": "person", "address": "address", "business": "business",
           "vehicle": "vehicle", "phone": "phone", "bank_account": "bank account", "email": "e-mail"},
    "nl": {"report": "melding", "person": "persoon", "address": "adres", "business": "bedrijf",
           "vehicle": "voertuig", "phone": "telefoon", "bank_account": "bankrekening", "email": "e-mail"},
}
REL_NAMES: dict[str, dict[str, str]] = {
    "en": {"MENTIONS": "mentions", "LIVES_AT": "lives at", "LOCATED_AT": "located at", "OWNER_OF": "owner of",
           "DIRECTOR_OF": "director of", "USES": "uses"},
    "nl": {"MENTIONS": "noemt", "LIVES_AT": "woont op", "LOCATED_AT": "gevestigd op", "OWNER_OF": "eigenaar van",
           "DIRECTOR_OF": "bestuurder van", "USES": "gebruikt"},
}
_WORDS: dict[str, dict[str, str]] = {
    "en": {"stated": "link stated in a report", "size": "size: number of reports", "reports": "reports",
           "entities": "entities", "in_reports": "in {n} report(s) of this cluster", "roles": "roles",
           "reporter": "reporter", "cluster": "Cluster"},
    "nl": {"stated": "verband genoemd in melding", "size": "grootte: aantal meldingen", "reports": "meldingen",
           "entities": "entiteiten", "in_reports": "in {n} melding(en) van dit cluster", "roles": "rollen",
           "reporter": "melder", "cluster": "Cluster"},
}

#: Relationship of a report to the entities it names.
MENTIONS = "MENTIONS"
#: Up to this many nodes every node is labelled; beyond it only the hubs.
LABEL_LIMIT = 60
#: How many hubs keep their label in a large picture.
HUB_LABELS = 20
#: File types :func:`draw_cluster` writes.
SUPPORTED = (".png", ".svg", ".html")


# --- small helpers --------------------------------------------------------------------------------
def shorten(text: Any, width: int = 24) -> str:
    """``text`` cut to ``width`` characters with an ellipsis; None becomes ``''``.

    >>> shorten("Stichting Vastgoedbeheer De Lange Adem B.V.", 20)
    'Stichting Vastgoedb…'
    >>> shorten("Jan de Vries"), shorten(None)
    ('Jan de Vries', '')
    """
    s = "" if text is None else " ".join(str(text).split())
    return s if len(s) <= width else s[: width - 1].rstrip() + "…"


def type_name(node_type: str, lang: str = "en") -> str:
    """The word for a node type: ``type_name("bank_account", "nl") == 'bankrekening'``."""
    return TYPE_NAMES.get(lang, TYPE_NAMES["en"]).get(node_type, node_type.replace("_", " "))


def rel_name(rel: str, lang: str = "en") -> str:
    """The words for a relationship: ``rel_name("LIVES_AT", "nl") == 'woont op'``; unknown ones lower-cased."""
    return REL_NAMES.get(lang, REL_NAMES["en"]).get(rel, str(rel).lower().replace("_", " "))


def _words(lang: str) -> dict[str, str]:
    return _WORDS.get(lang, _WORDS["en"])


# --- data -----------------------------------------------------------------------------------------
def cluster_data(store, cluster_id: str) -> dict[str, Any]:
    """:func:`linkage.inspect.cluster_detail` plus which report mentions which entity.

    Adds ``mentions`` (one row per report and entity: ``report_id``, ``entity_id``, ``roles``) and
    ``link_reports`` (each stated link with the report that states it: ``src``, ``rel_type``, ``dst``,
    ``report_id``).

    Raises
    ------
    NotFoundError
        When the id is not a cluster in this store.
    """
    from linkage.inspect import cluster_detail

    detail = cluster_detail(store, cluster_id)
    mentions = store.frame(
        "SELECT m.report_id, me.entity_id, GROUP_CONCAT(DISTINCT m.role) AS roles "
        "FROM report_clusters rc JOIN mentions m ON m.report_id = rc.report_id "
        "JOIN mention_entities me ON me.mention_id = m.mention_id WHERE rc.cluster_id = ? "
        "GROUP BY m.report_id, me.entity_id ORDER BY m.report_id, me.entity_id", (cluster_id,))
    link_reports = store.frame(
        "SELECT DISTINCT ea.entity_id AS src, l.rel_type, eb.entity_id AS dst, l.report_id "
        "FROM report_clusters rc JOIN mention_links l ON l.report_id = rc.report_id "
        "JOIN mention_entities ea ON ea.mention_id = l.src_mention_id "
        "JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id WHERE rc.cluster_id = ? "
        "ORDER BY src, l.rel_type, dst, l.report_id", (cluster_id,))
    detail["mentions"] = [{k: (None if v != v else v) if isinstance(v, float) else v for k, v in r.items()}
                          for r in mentions.to_dict("records")]
    detail["link_reports"] = link_reports.to_dict("records")
    return detail


def report_node(report_id: str) -> str:
    """Graph node id of a report (``r:`` + report id)."""
    return f"r:{report_id}"


def entity_node(entity_id: str) -> str:
    """Graph node id of an entity (``e:`` + entity id)."""
    return f"e:{entity_id}"


def cluster_graph(detail: Mapping[str, Any], report_labels: Mapping[str, str] | None = None) -> nx.Graph:
    """The cluster as an undirected graph of reports and entities.

    Parameters
    ----------
    detail:
        The dict from :func:`cluster_data` (``reports``, ``entities``, ``links`` and ``mentions``).
        Without ``mentions`` the graph holds only the stated links between entities.
    report_labels:
        Optional short labels for reports (e.g. ``{"R1": "M1"}``); default the report id.

    Returns
    -------
    networkx.Graph
        Nodes ``r:<report_id>`` and ``e:<entity_id>`` with attributes ``kind`` (report/entity), ``type``
        (``report`` or the entity type), ``id``, ``label``, ``short``, ``n_reports`` and, for reports,
        ``received_at``, ``category``, ``reporter_type`` (never the reporter id). Edges carry ``rel``
        (``MENTIONS`` or the stated relationship, several joined by ``+``), ``rels`` and ``weight``.

    >>> g = cluster_graph({"reports": [{"report_id": "R1", "received_at": "2025-01-02", "category": "drugs"}],
    ...                    "entities": [{"entity_id": "p1", "entity_type": "person", "label": "Jan",
    ...                                  "reports_in_cluster": 1},
    ...                                 {"entity_id": "a1", "entity_type": "address", "label": "Kade 1",
    ...                                  "reports_in_cluster": 1}],
    ...                    "links": [{"src": "p1", "rel_type": "LIVES_AT", "dst": "a1"}],
    ...                    "mentions": [{"report_id": "R1", "entity_id": "p1"}, {"report_id": "R1", "entity_id": "a1"}]})
    >>> sorted(g.nodes), g.edges["e:p1", "e:a1"]["rel"]
    (['e:a1', 'e:p1', 'r:R1'], 'LIVES_AT')
    """
    report_labels = report_labels or {}
    g = nx.Graph()
    for r in detail.get("reports", []):
        rid = str(r["report_id"])
        label = str(report_labels.get(rid, rid))
        g.add_node(report_node(rid), kind="report", type="report", id=rid, label=label, short=shorten(label, 16),
                   n_reports=1, received_at=str(r.get("received_at") or "")[:10], category=r.get("category") or "",
                   reporter_type=r.get("reporter_type") or "")
    for e in detail.get("entities", []):
        eid = str(e["entity_id"])
        label = e.get("label") or eid
        g.add_node(entity_node(eid), kind="entity", type=e.get("entity_type") or "entity", id=eid, label=str(label),
                   short=shorten(label, 28), n_reports=int(e.get("reports_in_cluster") or 1), roles=e.get("roles") or "")
    for m in detail.get("mentions", []):
        a, b = report_node(str(m["report_id"])), entity_node(str(m["entity_id"]))
        if a in g and b in g:
            g.add_edge(a, b, rel=MENTIONS, rels=[MENTIONS], weight=1.0, roles=m.get("roles") or "")
    for link in detail.get("links", []):
        a, b = entity_node(str(link["src"])), entity_node(str(link["dst"]))
        if a == b or a not in g or b not in g:
            continue
        rel = str(link.get("rel_type") or "LINK")
        if g.has_edge(a, b):
            rels = sorted(set(g.edges[a, b]["rels"]) | {rel})
            g.edges[a, b].update(rels=rels, rel="+".join(rels))
        else:
            g.add_edge(a, b, rel=rel, rels=[rel], weight=2.0, src=a)
    return g


def cluster_graph_for(store, cluster_id: str) -> nx.Graph:
    """Shortcut for notebooks: ``cluster_graph(cluster_data(store, cluster_id))``."""
    return cluster_graph(cluster_data(store, cluster_id))


# --- layout ---------------------------------------------------------------------------------------
def layout(g: nx.Graph, seed: int = 42, iterations: int | None = None) -> dict[Any, tuple[float, float]]:
    """Positions in [-1, 1]² from a seeded force-directed layout: the same graph always looks the same.

    Up to 500 nodes networkx' Fruchterman-Reingold; larger graphs use it when scipy is installed, else
    a dense numpy version of the same algorithm. A graph in pieces is laid out piece by piece and the
    pieces are packed in rows, largest first, each in a cell sized to it (so loose nodes do not push the
    main network into a corner).

    >>> pos = layout(nx.path_graph(4)); pos == layout(nx.path_graph(4))
    True
    >>> all(-1.0 <= c <= 1.0 for p in pos.values() for c in p)
    True
    >>> len(layout(nx.Graph([(1, 2), (3, 4), (5, 6)])))
    6
    """
    if g.number_of_nodes() == 0:
        return {}
    comps = sorted((sorted(c, key=str) for c in nx.connected_components(g)), key=lambda c: (-len(c), str(c[0])))
    if len(comps) == 1:
        return _fill_square(_spring(g, seed, iterations))
    # Shelf packing: cells with side ~ sqrt(size), rows no wider than the largest cell or sqrt(total area).
    sides = [math.sqrt(len(c)) for c in comps]
    row_limit = max(sides[0], math.sqrt(sum(x * x for x in sides)) * 1.1)
    cells, x, y, row_h = [], 0.0, 0.0, 0.0
    for side in sides:
        if x > 0 and x + side > row_limit:
            x, y, row_h = 0.0, y + row_h, 0.0
        cells.append((x, y, side))
        x += side
        row_h = max(row_h, side)
    pos: dict[Any, tuple[float, float]] = {}
    for comp, (cx, cy, side) in zip(comps, cells):
        sub = _fill_square(_spring(g.subgraph(comp), seed, iterations)) if len(comp) > 1 else {comp[0]: (0.0, 0.0)}
        for v, (px, py) in sub.items():
            pos[v] = (cx + side * (0.5 + 0.42 * px), -(cy + side * (0.5 + 0.42 * py)))
    return _fill_square(pos, stretch=False)


def _spring(g: nx.Graph, seed: int, iterations: int | None) -> dict[Any, tuple[float, float]]:
    n = g.number_of_nodes()
    if n == 1:
        return {next(iter(g.nodes)): (0.0, 0.0)}
    k = 1.8 / math.sqrt(n)
    iters = iterations or (200 if n <= 150 else 100)
    try:
        raw = nx.spring_layout(g, seed=seed, k=k, iterations=iters, weight="weight")
    except ImportError:  # the sparse variant (>= 500 nodes) needs scipy
        raw = _dense_spring(g, seed=seed, k=k, iterations=iters)
    return {v: (float(p[0]), float(p[1])) for v, p in raw.items()}


def _fill_square(raw: Mapping[Any, tuple[float, float]], stretch: bool = True) -> dict[Any, tuple[float, float]]:
    """Centre and scale positions into [-1, 1]²; ``stretch`` widens the narrow axis (at most to half the other)."""
    xs = [p[0] for p in raw.values()]
    ys = [p[1] for p in raw.values()]
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    hx, hy = (max(xs) - min(xs)) / 2 or 1.0, (max(ys) - min(ys)) / 2 or 1.0
    if stretch:
        hx, hy = max(hx, max(hx, hy) / 2), max(hy, max(hx, hy) / 2)
    else:
        hx = hy = max(hx, hy)
    return {v: (float((p[0] - cx) / hx), float((p[1] - cy) / hy)) for v, p in raw.items()}


def _dense_spring(g: nx.Graph, seed: int, k: float, iterations: int) -> dict[Any, tuple[float, float]]:
    """Fruchterman-Reingold on a dense adjacency matrix (numpy only); fine for a few thousand nodes."""
    import numpy as np

    nodes = list(g.nodes)
    a = nx.to_numpy_array(g, nodelist=nodes, weight="weight")
    rng = np.random.RandomState(seed)
    pos = rng.rand(len(nodes), 2)
    t = 0.1
    dt = t / (iterations + 1)
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.sqrt((delta ** 2).sum(-1)).clip(min=0.01)
        force = (k * k / dist ** 2 - a * dist / k)
        disp = (delta * force[:, :, None]).sum(1)
        length = np.sqrt((disp ** 2).sum(1)).clip(min=0.01)
        pos += disp * (t / length)[:, None]
        t -= dt
    return {v: (float(pos[i, 0]), float(pos[i, 1])) for i, v in enumerate(nodes)}


def labelled_nodes(g: nx.Graph, limit: int = LABEL_LIMIT, hubs: int = HUB_LABELS) -> set:
    """Nodes that get a label: all of them up to ``limit`` nodes, else the hubs: the entities that connect
    reports (named in two or more of them), most reports first, at most ``hubs``.

    >>> len(labelled_nodes(nx.star_graph(5)))
    6
    """
    if g.number_of_nodes() <= limit:
        return set(g.nodes)
    entities = [v for v, d in g.nodes(data=True)
                if d.get("kind", "entity") != "report" and int(d.get("n_reports", 1)) >= 2]
    ranked = sorted(entities, key=lambda v: (-int(g.nodes[v].get("n_reports", 1)), -g.degree(v), str(v)))
    return set(ranked[:hubs])


def _size(g: nx.Graph, v: Any) -> float:
    """Node radius in points: entities by reports mentioning them, reports by entities they mention."""
    d = g.nodes[v]
    if d.get("kind") == "report":
        return 4.0 + 1.8 * math.sqrt(max(g.degree(v), 1))
    return 3.0 + 4.0 * math.sqrt(max(int(d.get("n_reports", 1)), 1))


def _tooltip(g: nx.Graph, v: Any, lang: str) -> str:
    d = g.nodes[v]
    w = _words(lang)
    if d.get("kind") == "report":
        parts = [f"{type_name('report', lang)} {d.get('label')}", d.get("received_at", ""),
                 str(d.get("category", "")).replace("_", " ")]
        if d.get("reporter_type"):
            parts.append(f"{w['reporter']}: {d['reporter_type']}")
        return " · ".join(p for p in parts if p)
    text = f"{type_name(d.get('type', ''), lang)}: {d.get('label')} — " + w["in_reports"].format(n=d.get("n_reports", 1))
    if d.get("roles"):
        text += f"; {w['roles']}: {str(d['roles']).replace(',', ', ')}"
    return text


def place_labels(nodes: list[dict], labels: list[dict],
                 bounds: tuple[float, float, float, float] | None = None) -> dict[Any, tuple[float, float, str]]:
    """Greedy label placement without overlaps, in a pixel space with y pointing down.

    ``nodes``: obstacles ``{"x", "y", "r"}``. ``labels`` in priority order: ``{"key", "x", "y", "r", "text",
    "size"}`` (font size in px) plus optional ``"must"`` (place below even when crowded) and ``"centre"``
    (only try the anchor point itself, for labels on edges). Each label tries below, above, right, left of
    its point (then the four diagonals); the first spot that overlaps no node and no placed label wins, else it is left out (the
    tooltip still shows it). ``bounds`` ``(x0, y0, x1, y1)``: the canvas; spots that stick out are not used
    (a hub's forced label is pushed inside). Returns ``key -> (x, baseline y, anchor)`` with anchor
    start/middle/end.

    >>> spots = place_labels([{"x": 0, "y": 0, "r": 5}], [{"key": "a", "x": 0, "y": 0, "r": 5, "text": "Jan", "size": 12}])
    >>> spots["a"][2]
    'middle'
    """
    node_boxes = [(n["x"] - n["r"], n["y"] - n["r"], n["x"] + n["r"], n["y"] + n["r"]) for n in nodes]
    label_boxes: list[tuple[float, float, float, float]] = []

    def hit(box: tuple[float, float, float, float], boxes: list) -> bool:
        x0, y0, x1, y1 = box
        return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)

    out: dict[Any, tuple[float, float, str]] = {}
    for lab in labels:
        x, y, r, size = float(lab["x"]), float(lab["y"]), float(lab.get("r", 0)), float(lab["size"])
        w = 0.58 * size * len(str(lab["text"])) + 2
        if lab.get("centre"):
            spots = [(x, y + 0.35 * size, "middle")]
        else:
            spots = [(x, y + r + 0.95 * size, "middle"), (x, y - r - 0.35 * size, "middle"),
                     (x + r + 3, y + 0.35 * size, "start"), (x - r - 3, y + 0.35 * size, "end"),
                     (x + r, y + r + 0.95 * size, "start"), (x - r, y + r + 0.95 * size, "end"),
                     (x + r, y - r - 0.35 * size, "start"), (x - r, y - r - 0.35 * size, "end")]
        candidates = []
        for sx, sy, anchor in spots:
            left = sx - w / 2 if anchor == "middle" else sx if anchor == "start" else sx - w
            candidates.append((sx, sy, anchor, (left, sy - 0.8 * size, left + w, sy + 0.25 * size)))
        if bounds is not None:
            inside = [c for c in candidates if c[3][0] >= bounds[0] and c[3][2] <= bounds[2]
                      and c[3][1] >= bounds[1] and c[3][3] <= bounds[3]]
            if not inside and lab.get("must"):  # push the first spot inside the canvas
                sx, sy, anchor, box = candidates[0]
                dx = max(bounds[0] - box[0], 0.0) - max(box[2] - bounds[2], 0.0)
                inside = [(sx + dx, sy, anchor, (box[0] + dx, box[1], box[2] + dx, box[3]))]
            candidates = inside
        placed = next((c for c in candidates if not hit(c[3], node_boxes) and not hit(c[3], label_boxes)), None)
        if placed is None and lab.get("must") and candidates:  # a hub keeps its label: over a node, not a label
            placed = next((c for c in candidates if not hit(c[3], label_boxes)), candidates[0])
        if placed is not None:
            label_boxes.append(placed[3])
            out[lab["key"]] = (round(placed[0], 1), round(placed[1], 1), placed[2])
    return out


def _label_priority(g: nx.Graph, v: Any) -> tuple:
    d = g.nodes[v]
    return (d.get("kind") == "report", -int(d.get("n_reports", 1)), -g.degree(v), str(v))


def _rel_text(d: Mapping[str, Any], lang: str) -> str:
    return " / ".join(rel_name(r, lang) for r in d.get("rels", [d.get("rel")]))


# --- matplotlib -----------------------------------------------------------------------------------
def figure_size(n_nodes: int) -> tuple[float, float]:
    """Inches for a picture of ``n_nodes`` (legend included): 10x7.5 for small clusters, growing to 24x18 for
    hundreds of nodes."""
    scale = min(max(math.sqrt(max(n_nodes, 1) / 50.0), 1.0), 2.4)
    return (round(10.0 * scale, 2), round(7.5 * scale, 2))


def legend_handles(types: Iterable[str] | None = None, lang: str = "en", stated: bool = True) -> list:
    """Matplotlib legend entries: node types (default: all), the two kinds of line, and what size means.

    For a grid of clusters, draw each with ``legend=False`` and give the figure one legend:
    ``fig.legend(handles=pictures.legend_handles(), loc="upper center", ncol=6)``.
    """
    from matplotlib.lines import Line2D

    w = _words(lang)
    handles = [Line2D([], [], marker="s" if t == "report" else "o", linestyle="", markersize=9,
                      markerfacecolor=COLOURS.get(t, "#999999"), markeredgecolor="white", label=type_name(t, lang))
               for t in (types if types is not None else NODE_TYPES)]
    handles.append(Line2D([], [], color="#9aa0a6", linewidth=1,
                          label=f"{type_name('report', lang)} {rel_name(MENTIONS, lang)} …"))
    if stated:
        handles.append(Line2D([], [], color="#202124", linewidth=2, label=w["stated"]))
    handles.append(Line2D([], [], linestyle="", label=w["size"]))
    return handles


def plot_cluster(g: nx.Graph, ax=None, pos: Mapping | None = None, lang: str = "en", title: str | None = None,
                 seed: int = 42, legend: bool = True):
    """Draw the cluster graph on a matplotlib axes (a new pyplot figure when ``ax`` is None); returns the axes.

    Reports are squares, entities circles coloured by type, sized by reports; MENTIONS edges are thin grey,
    stated links dark and labelled with the relationship in small clusters.
    """
    from matplotlib.collections import LineCollection

    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figure_size(g.number_of_nodes()))
    pos = dict(pos) if pos is not None else layout(g, seed=seed)
    n = g.number_of_nodes()
    small = n <= LABEL_LIMIT
    mention_segments, link_segments, link_labels = [], [], []
    for a, b, d in g.edges(data=True):
        seg = (pos[a], pos[b])
        if d.get("rel") == MENTIONS:
            mention_segments.append(seg)
        else:
            link_segments.append(seg)
            link_labels.append(((pos[a][0] + pos[b][0]) / 2, (pos[a][1] + pos[b][1]) / 2,
                                " / ".join(rel_name(r, lang) for r in d.get("rels", [d.get("rel")]))))
    if mention_segments:
        ax.add_collection(LineCollection(mention_segments, colors="#9aa0a6", linewidths=0.7 if small else 0.4,
                                         alpha=0.7, zorder=1))
    if link_segments:
        ax.add_collection(LineCollection(link_segments, colors="#202124", linewidths=1.8 if small else 1.2,
                                         zorder=2))
    present = [t for t in NODE_TYPES if any(d.get("type") == t for _, d in g.nodes(data=True))]
    present += sorted({d.get("type") for _, d in g.nodes(data=True)} - set(present))
    for t in present:
        nodes = [v for v, d in g.nodes(data=True) if d.get("type") == t]
        xs = [pos[v][0] for v in nodes]
        ys = [pos[v][1] for v in nodes]
        sizes = [(2 * _size(g, v)) ** 2 / 4 for v in nodes]
        ax.scatter(xs, ys, s=sizes, c=COLOURS.get(t, "#999999"), marker="s" if t == "report" else "o",
                   edgecolors="white", linewidths=0.8, zorder=3)
    ax.set_xlim(-1.12, 1.12)
    ax.set_ylim(-1.12, 1.12)
    ax.set_aspect("equal")
    ax.axis("off")
    # Labels: placed without overlaps in display space; a light box behind them (not a path-effect halo:
    # that would turn SVG text into paths, which nobody can search).
    ax.apply_aspect()
    to_px = ax.transData.transform
    from_px = ax.transData.inverted().transform
    px_per_pt = ax.figure.dpi / 72.0
    font = {"report": 6.5, "entity": 8.0 if small else 7.0}

    def disp(v: Any) -> tuple[float, float]:
        x, y = to_px(pos[v])
        return float(x), -float(y)  # y down, as place_labels expects

    obstacles = [{"x": disp(v)[0], "y": disp(v)[1], "r": _size(g, v) * px_per_pt} for v in g.nodes]
    items = []
    for v in sorted(labelled_nodes(g), key=lambda v: _label_priority(g, v)):
        d = g.nodes[v]
        kind = "report" if d.get("kind") == "report" else "entity"
        items.append({"key": ("n", v), "x": disp(v)[0], "y": disp(v)[1], "r": _size(g, v) * px_per_pt,
                      "text": d.get("short", ""), "size": font[kind] * px_per_pt * 1.1,
                      "must": kind == "entity" and int(d.get("n_reports", 1)) >= 3})
    if small:
        for k, (x, y, text) in enumerate(link_labels):
            px, py = to_px((x, y))
            items.append({"key": ("e", k), "x": float(px), "y": -float(py), "text": text, "size": 6.5 * px_per_pt * 1.1,
                          "centre": True})
    box = {"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75}
    x0, y0 = to_px((-1.12, 1.12))
    x1, y1 = to_px((1.12, -1.12))
    spots = place_labels(obstacles, items, bounds=(float(x0), -float(y0), float(x1), -float(y1)))
    for item in items:
        if item["key"] not in spots:
            continue
        sx, sy, anchor = spots[item["key"]]
        x, y = from_px((sx, -sy))
        ha = {"middle": "center", "start": "left", "end": "right"}[anchor]
        if item["key"][0] == "e":
            ax.text(x, y, item["text"], fontsize=6.5, style="italic", color="#3c4043", ha=ha, va="baseline", bbox=box,
                    zorder=4)
        else:
            is_report = g.nodes[item["key"][1]].get("kind") == "report"
            ax.text(x, y, item["text"], fontsize=font["report" if is_report else "entity"], ha=ha, va="baseline",
                    color="#5f6368" if is_report else "#202124", fontweight="bold" if item.get("must") else "normal",
                    bbox=box, zorder=5)
    if title:
        ax.set_title(title, fontsize=12, loc="left")
    if legend:
        ax.legend(handles=legend_handles(present, lang, stated=bool(link_segments)), loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
    return ax


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise InputError(f"Cannot draw a picture as '{suffix or path.name}'; use a file ending in .png, .svg or .html.")
    return suffix


def picture_title(detail: Mapping[str, Any], lang: str = "en") -> str:
    """``Cluster <id> — 12 reports, 30 entities`` (in the chosen language)."""
    w = _words(lang)
    c = detail.get("cluster", {})
    return (f"{w['cluster']} {c.get('cluster_id', '')} — {len(detail.get('reports', []))} {w['reports']}, "
            f"{len(detail.get('entities', []))} {w['entities']}")


def draw_cluster(store, cluster_id: str, path: Path | str, seed: int = 42, lang: str = "en") -> Path:
    """Draw one cluster into ``path``: ``.png`` or ``.svg`` (matplotlib) or ``.html`` (interactive, offline).

    Parameters
    ----------
    store:
        An open :class:`~linkage.store.EmbeddedStore`.
    cluster_id:
        A cluster id from ``linkage clusters``.
    path:
        The file to write; its folder is created. The suffix picks the format.
    seed:
        Layout seed: the same cluster and seed give the same picture.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        When the suffix is not .png, .svg or .html.
    NotFoundError
        When the cluster is not in the store.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    detail = cluster_data(store, cluster_id)
    g = cluster_graph(detail)
    pos = layout(g, seed=seed)
    title = picture_title(detail, lang)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        path.write_text(cluster_html(g, pos, title=title, lang=lang), encoding="utf-8")
        return path
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.hashsalt": "linkage", "svg.fonttype": "none"}):
        fig = Figure(figsize=figure_size(g.number_of_nodes()))
        FigureCanvasAgg(fig)
        # Fixed margins; saving with bbox_inches="tight" only crops,
        # so the label positions computed while drawing stay where they were placed.
        fig.subplots_adjust(left=0.01, right=0.80, bottom=0.01, top=0.95)  # the legend goes on the right
        ax = fig.add_subplot()
        plot_cluster(g, ax=ax, pos=pos, lang=lang, title=title)
        meta = {"Date": None} if suffix == ".svg" else {"Software": None}
        fig.savefig(path, format=suffix[1:], dpi=150, bbox_inches="tight", metadata=meta, facecolor="white")
    return path


# --- SVG and HTML without external resources ------------------------------------------------------
_SVG_CSS = """
.lk-net text{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;paint-order:stroke;
 stroke:#fff;stroke-width:3px;stroke-linejoin:round}
.lk-net .lk-em{stroke:#9aa0a6;stroke-width:1;opacity:.65}
.lk-net .lk-el{stroke:#202124;stroke-width:2.2}
.lk-net .lk-lab{font-size:12px;fill:#202124}
.lk-net .lk-lab.lk-r{font-size:10px;fill:#5f6368}
.lk-net .lk-lab.lk-hub{font-weight:600;stroke-width:4px}
.lk-net .lk-rel{font-size:10px;font-style:italic;fill:#3c4043}
.lk-net .lk-leg{font-size:13px;fill:#202124;stroke:none}
.lk-net .lk-n>*{stroke:#fff;stroke-width:1.5}
.lk-net.lk-focus .lk-n,.lk-net.lk-focus line,.lk-net.lk-focus .lk-lab,.lk-net.lk-focus .lk-rel{opacity:.12}
.lk-net.lk-focus .lk-on{opacity:1 !important}
.lk-net .lk-hit>*{stroke:#000;stroke-width:3}
"""


def cluster_svg(g: nx.Graph, pos: Mapping | None = None, lang: str = "en", width: int | None = None,
                interactive: bool = False, seed: int = 42, legend: bool = True, aspect: float = 0.72,
                label_reports: bool = False) -> str:
    """The cluster as one ``<svg>`` element (inline CSS, no external resources), with a legend on top.

    Static (``interactive=False``) nodes carry a ``<title>`` so viewers show a tooltip on hover;
    interactive ones carry ``data-tip`` for the script of :func:`cluster_html`. ``width`` is the
    viewBox width in px (default: grows with the graph, for zooming; pass ~1000 for a page that shows
    the picture at its natural size so text stays readable); ``aspect`` is the plot's height / width.
    ``label_reports`` also labels reports in large pictures (where room is left after the hubs).

    >>> svg = cluster_svg(nx.Graph([("a", "b")]))
    >>> svg.startswith("<svg") and "http://www.w3.org/2000/svg" in svg and "<script" not in svg
    True
    """
    pos = dict(pos) if pos is not None else layout(g, seed=seed)
    n = g.number_of_nodes()
    w = _words(lang)
    width = width or int(min(max(1000 * math.sqrt(max(n, 1) / 60.0), 1000), 2600))
    margin = 70
    legend_items = _legend_items(g, lang) if legend else []
    rows, legend_h = _legend_rows(legend_items, width - 2 * 16)
    plot_h = int(width * aspect)
    shrink = max(0.55, min(1.0, math.sqrt(LABEL_LIMIT / max(n, 1))))  # smaller nodes in a crowded picture
    height = legend_h + plot_h
    span_x, span_y = (width - 2 * margin) / 2, (plot_h - 2 * margin) / 2

    def xy(v: Any) -> tuple[float, float]:
        x, y = pos[v]
        return (round(width / 2 + x * span_x, 1), round(legend_h + plot_h / 2 - y * span_y, 1))

    index = {v: i for i, v in enumerate(g.nodes)}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="lk-net" viewBox="0 0 {width} {height}" '
           f'width="100%" role="img" aria-label="{html.escape(w["cluster"])} {n} nodes">',
           f"<style>{_SVG_CSS}</style>",
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>']
    out.append('<g class="lk-legend">')
    for y, row in rows:
        for x, kind, t, label in row:
            ty = y + 5
            if kind == "node":
                colour = COLOURS.get(t, "#999")
                if t == "report":
                    out.append(f'<rect x="{x}" y="{y - 6}" width="12" height="12" fill="{colour}"/>')
                else:
                    out.append(f'<circle cx="{x + 6}" cy="{y}" r="6.5" fill="{colour}"/>')
                out.append(f'<text class="lk-leg" x="{x + 18}" y="{ty}">{html.escape(label)}</text>')
            elif kind in ("mention", "link"):
                cls = "lk-em" if kind == "mention" else "lk-el"
                out.append(f'<line class="{cls}" x1="{x}" y1="{y}" x2="{x + 26}" y2="{y}"/>')
                out.append(f'<text class="lk-leg" x="{x + 32}" y="{ty}">{html.escape(label)}</text>')
            else:
                out.append(f'<text class="lk-leg" x="{x}" y="{ty}" fill="#5f6368">{html.escape(label)}</text>')
    out.append("</g>")
    out.append('<g class="lk-edges">')
    rel_labels = []
    for a, b, d in g.edges(data=True):
        (x1, y1), (x2, y2) = xy(a), xy(b)
        cls = "lk-em" if d.get("rel") == MENTIONS else "lk-el"
        out.append(f'<line class="{cls}" data-a="{index[a]}" data-b="{index[b]}" '
                   f'x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"/>')
        if cls == "lk-el":
            text = _rel_text(d, lang)
            rel_labels.append((index[a], index[b], (x1 + x2) / 2, (y1 + y2) / 2, text))
    out.append("</g>")
    labelled = labelled_nodes(g)
    if label_reports:
        labelled |= {v for v, d in g.nodes(data=True) if d.get("kind") == "report"}
    out.append('<g class="lk-nodes">')
    for v, d in g.nodes(data=True):
        x, y = xy(v)
        r = round(_size(g, v) * 1.25 * shrink, 1)
        colour = COLOURS.get(d.get("type"), "#999999")
        tip = html.escape(_tooltip(g, v, lang))
        attrs = f'class="lk-n" data-i="{index[v]}" data-t="{html.escape(str(d.get("type", "")))}"'
        if interactive:
            attrs += f' data-tip="{tip}" data-label="{html.escape(str(d.get("label", "")).lower())}"'
        shape = (f'<rect x="{x - r}" y="{y - r}" width="{2 * r}" height="{2 * r}" fill="{colour}"/>'
                 if d.get("kind") == "report" else f'<circle cx="{x}" cy="{y}" r="{r}" fill="{colour}"/>')
        title = "" if interactive else f"<title>{tip}</title>"
        out.append(f"<g {attrs}>{shape}{title}</g>")
    out.append("</g>")
    out.append('<g class="lk-labels">')
    radius = {v: _size(g, v) * 1.25 * shrink for v in g.nodes}
    obstacles = [{"x": xy(v)[0], "y": xy(v)[1], "r": radius[v]} for v in g.nodes]
    items = [{"key": ("n", v), "x": xy(v)[0], "y": xy(v)[1], "r": radius[v], "text": g.nodes[v].get("short", ""),
              "size": 10 if g.nodes[v].get("kind") == "report" else 12,
              "must": int(g.nodes[v].get("n_reports", 1)) >= 3 and g.nodes[v].get("kind") != "report"}
             for v in sorted(labelled, key=lambda v: _label_priority(g, v))]
    if n <= LABEL_LIMIT:
        for i, j, x, y, text in rel_labels:
            items.append({"key": ("e", i, j), "x": x, "y": y, "text": text, "size": 10, "centre": True})
    spots = place_labels(obstacles, items, bounds=(4, legend_h, width - 4, height - 4))
    for item in items:
        if item["key"] not in spots:
            continue
        x, y, anchor = spots[item["key"]]
        if item["key"][0] == "e":
            _, i, j = item["key"]
            out.append(f'<text class="lk-rel" data-a="{i}" data-b="{j}" x="{x}" y="{y}" '
                       f'text-anchor="{anchor}">{html.escape(item["text"])}</text>')
        else:
            v = item["key"][1]
            d = g.nodes[v]
            cls = "lk-lab lk-r" if d.get("kind") == "report" else "lk-lab lk-hub" if item["must"] else "lk-lab"
            out.append(f'<text class="{cls}" data-i="{index[v]}" x="{x}" y="{y}" '
                       f'text-anchor="{anchor}">{html.escape(str(item["text"]))}</text>')
    out.append("</g></svg>")
    return "\n".join(out)


def _legend_items(g: nx.Graph, lang: str) -> list[tuple[str, str, str]]:
    w = _words(lang)
    types = {d.get("type") for _, d in g.nodes(data=True)}
    items = [("node", t, type_name(t, lang)) for t in NODE_TYPES if t in types]
    items += [("node", t, type_name(str(t), lang)) for t in sorted(types - set(NODE_TYPES), key=str)]
    items.append(("mention", "", f"{type_name('report', lang)} {rel_name(MENTIONS, lang)} …"))
    if any(d.get("rel") != MENTIONS for _, _, d in g.edges(data=True)):
        items.append(("link", "", w["stated"]))
    items.append(("note", "", w["size"]))
    return items


def _legend_rows(items: list[tuple[str, str, str]], avail: int) -> tuple[list, int]:
    """Lay legend items out left to right, wrapping; returns rows of (y, [(x, kind, type, label)]) and height."""
    rows, row, x, y = [], [], 16, 22
    for kind, t, label in items:
        wdt = (18 if kind == "node" else 32 if kind in ("mention", "link") else 0) + int(len(label) * 7.4) + 26
        if row and x + wdt > avail:
            rows.append((y, row))
            row, x, y = [], 16, y + 24
        row.append((x, kind, t, label))
        x += wdt
    if row:
        rows.append((y, row))
    return rows, (y + 20 if items else 0)


_HTML_JS = """
(function(){
var svg=document.querySelector('svg.lk-net'); if(!svg) return;
var nodes=[].slice.call(svg.querySelectorAll('.lk-n')), lines=[].slice.call(svg.querySelectorAll('.lk-edges line'));
var texts=[].slice.call(svg.querySelectorAll('.lk-labels text')), tip=document.getElementById('lk-tip');
var adj={}; lines.forEach(function(e){var a=e.dataset.a,b=e.dataset.b;(adj[a]=adj[a]||{})[b]=1;(adj[b]=adj[b]||{})[a]=1;});
var pinned=null;
function mark(set){ svg.classList.toggle('lk-focus', set!==null);
  nodes.forEach(function(n){n.classList.toggle('lk-on', set!==null && !!set[n.dataset.i]);});
  lines.forEach(function(e){e.classList.toggle('lk-on', set!==null && !!set[e.dataset.a] && !!set[e.dataset.b]);});
  texts.forEach(function(t){var on=set!==null && (t.dataset.i!==undefined ? !!set[t.dataset.i] : (!!set[t.dataset.a] && !!set[t.dataset.b]));
    t.classList.toggle('lk-on', on);}); }
function around(i){ var s={}; s[i]=1; for(var j in (adj[i]||{})) s[j]=1; return s; }
nodes.forEach(function(n){
  n.addEventListener('mouseenter',function(){ if(pinned===null) mark(around(n.dataset.i)); tip.textContent=n.dataset.tip; tip.style.display='block'; });
  n.addEventListener('mousemove',function(ev){ tip.style.left=(ev.clientX+14)+'px'; tip.style.top=(ev.clientY+14)+'px'; });
  n.addEventListener('mouseleave',function(){ tip.style.display='none'; if(pinned===null) mark(null); });
  n.addEventListener('click',function(ev){ ev.stopPropagation(); pinned = pinned===n.dataset.i ? null : n.dataset.i; mark(pinned===null?null:around(pinned)); });
});
var vb=svg.viewBox.baseVal, home=[vb.x,vb.y,vb.width,vb.height], drag=null;
function pt(ev){ var r=svg.getBoundingClientRect(); return [vb.x+(ev.clientX-r.left)/r.width*vb.width, vb.y+(ev.clientY-r.top)/r.height*vb.height]; }
svg.addEventListener('wheel',function(ev){ ev.preventDefault(); var p=pt(ev), f=ev.deltaY>0?1.15:1/1.15;
  vb.x=p[0]-(p[0]-vb.x)*f; vb.y=p[1]-(p[1]-vb.y)*f; vb.width*=f; vb.height*=f; },{passive:false});
svg.addEventListener('mousedown',function(ev){ drag=[ev.clientX,ev.clientY,vb.x,vb.y]; });
window.addEventListener('mouseup',function(){ drag=null; });
window.addEventListener('mousemove',function(ev){ if(!drag) return; var r=svg.getBoundingClientRect();
  vb.x=drag[2]-(ev.clientX-drag[0])*vb.width/r.width; vb.y=drag[3]-(ev.clientY-drag[1])*vb.height/r.height; });
svg.addEventListener('click',function(){ pinned=null; mark(null); });
document.getElementById('lk-reset').addEventListener('click',function(){ vb.x=home[0]; vb.y=home[1]; vb.width=home[2]; vb.height=home[3]; pinned=null; mark(null); });
document.getElementById('lk-find').addEventListener('input',function(ev){ var q=ev.target.value.trim().toLowerCase();
  nodes.forEach(function(n){ n.classList.toggle('lk-hit', q.length>1 && n.dataset.label.indexOf(q)>=0); }); });
})();
"""

_HTML_TEXT = {
    "en": {"help": "Hover a node for details and its neighbours; click to keep them highlighted. "
                   "Scroll to zoom, drag to pan.", "find": "find a name, address, id…", "reset": "reset view"},
    "nl": {"help": "Wijs een knoop aan voor details en zijn buren; klik om ze vast te houden. "
                   "Scrollen zoomt, slepen verschuift.", "find": "zoek naam, adres, id…", "reset": "beeld herstellen"},
}


def cluster_html(g: nx.Graph, pos: Mapping | None = None, title: str = "", lang: str = "en", seed: int = 42) -> str:
    """A self-contained interactive page (inline SVG, CSS and a small script; nothing loaded from the net).

    >>> page = cluster_html(nx.Graph([("a", "b")]), title="t")
    >>> "<script>" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    True
    """
    text = _HTML_TEXT.get(lang, _HTML_TEXT["en"])
    svg = cluster_svg(g, pos, lang=lang, interactive=True, seed=seed)
    return f"""<!DOCTYPE html>
<html lang="{html.escape(lang)}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body{{margin:0;font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#202124;background:#f8f9fa}}
header{{padding:12px 20px;background:#fff;border-bottom:1px solid #dadce0;display:flex;gap:16px;align-items:center;flex-wrap:wrap}}
h1{{font-size:18px;margin:0;font-weight:600}} .help{{color:#5f6368;font-size:13px}}
input,button{{font:inherit;font-size:13px;padding:4px 8px;border:1px solid #dadce0;border-radius:4px;background:#fff}}
main{{padding:12px 20px}} svg.lk-net{{background:#fff;border:1px solid #dadce0;border-radius:6px;cursor:grab;max-height:88vh}}
#lk-tip{{position:fixed;display:none;max-width:380px;background:#202124;color:#fff;font-size:13px;padding:6px 9px;
border-radius:4px;pointer-events:none;z-index:10;line-height:1.35}}
</style></head>
<body><header><h1>{html.escape(title)}</h1><span class="help">{html.escape(text["help"])}</span>
<input id="lk-find" type="search" placeholder="{html.escape(text["find"])}"> <button id="lk-reset" type="button">{html.escape(text["reset"])}</button></header>
<main>{svg}</main><div id="lk-tip"></div>
<script>{_HTML_JS}</script>
</body></html>
"""
