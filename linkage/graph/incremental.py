"""Incremental clustering: cluster again only the connected components whose links changed since the last run.

In:  ``reports`` and resolved ``mentions`` as :func:`linkage.graph.find_clusters` takes them, and the
     :class:`ClusterState` the last run left (or None).
Out: :func:`update_clusters` gives the clusters (the same table :func:`~linkage.graph.find_clusters` gives),
     the state to keep for the next run, and what was recomputed.

Why the answer equals a full run: with the CPM objective Leiden runs on each connected component of the
report graph on its own, seeded from the component's smallest report id
(:func:`linkage.graph.communities.leiden_membership`), so a component's clusters are a function of that
component only. A link's weight depends only on the entities its two reports share and on how many reports
mention each of them. So when the set of reports mentioning an entity is unchanged for every entity a report
mentions, none of that report's links changed. An entity is *dirty* when its set of reports changed (a new
report mentions it, a re-resolved mention moved to or from it, a report was purged); a report is dirty when
it mentions a dirty entity, now or before. A component without a dirty report has exactly the nodes, links
and weights it had, so its clusters are the ones stored; the components with a dirty report are clustered
again. Another seed, other graph settings, the modularity objective (not separable by component) or a state
of another version cluster everything again.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.graph.communities import (
    CLUSTER_COLUMNS, components_membership, label_clusters, leiden_components, report_graph,
)
from linkage.graph.weights import GraphSettings, as_graph_settings

#: Bump when what a state means changes (how communities are found, how the incidence is kept).
STATE_VERSION = 1
#: The incidence's leading columns; any other column of the mentions given follows, sorted by name.
INCIDENCE_COLUMNS = ["report_id", "entity_id", "entity_type"]


@dataclass
class ClusterState:
    """What the next run needs of this one: the settings fingerprint, which report mentions which entity
    (distinct, sorted), and the clusters (``report_id, cluster_id``, as :func:`find_clusters` gives)."""

    fingerprint: str
    incidence: pd.DataFrame
    clusters: pd.DataFrame


@dataclass
class ClusterUpdate:
    """The outcome of :func:`update_clusters`; ``recomputed`` holds the cluster ids of the re-clustered
    components (all clusters when nothing could be reused)."""

    clusters: pd.DataFrame
    state: ClusterState
    recomputed: set[str]
    stats: dict[str, int] = field(default_factory=dict)
    everything: bool = True


def fingerprint(settings: GraphSettings, seed: int) -> str:
    """A digest of what decides the clusters besides the data: version, graph settings and seed.

    >>> s = as_graph_settings(None)
    >>> fingerprint(s, 1) == fingerprint(s, 1) != fingerprint(s, 2)
    True
    """
    payload = json.dumps({"version": STATE_VERSION, "settings": asdict(settings), "seed": seed}, sort_keys=True,
                         default=str)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()


def incidence(reports: pd.DataFrame | None, mentions: pd.DataFrame) -> pd.DataFrame:
    """The resolved mentions the report graph is made of (of ``reports`` when given; with an entity), every
    column as text, sorted: whatever a mention carries that the graph may weigh (``anchored``, say) is part
    of it, so a change in any of it marks the entity dirty.

    >>> m = pd.DataFrame({"report_id": ["R2", "R1", "R1"], "entity_id": ["E", "E", None], "entity_type": ["x"] * 3})
    >>> incidence(None, m).values.tolist()
    [['R1', 'E', 'x'], ['R2', 'E', 'x']]
    """
    m = mentions[mentions["entity_id"].notna() & (mentions["entity_id"].astype(str) != "")]
    if reports is not None:
        m = m[m["report_id"].isin(reports["report_id"])]
    m = m.astype(object).where(m.notna(), "").astype(str).drop_duplicates()
    cols = INCIDENCE_COLUMNS + sorted(set(m.columns) - set(INCIDENCE_COLUMNS))
    return m[cols].sort_values(cols, kind="stable").reset_index(drop=True)


def _keys(df: pd.DataFrame) -> pa.Array:
    parts = [pa.array(df[c].to_numpy(dtype=object), type=pa.string()) for c in df.columns]
    return pc.binary_join_element_wise(*parts, "\x1f")


def dirty_reports(old: pd.DataFrame, new: pd.DataFrame) -> np.ndarray:
    """Report ids (sorted) that mention, in ``new``, an entity whose set of reports differs between the two
    incidences, plus the reports of the rows that differ."""
    ko, kn = _keys(old), _keys(new)
    gone = ~pc.is_in(ko, value_set=kn).to_numpy(zero_copy_only=False)
    came = ~pc.is_in(kn, value_set=ko).to_numpy(zero_copy_only=False)
    ents = pd.concat([old.loc[gone, "entity_id"], new.loc[came, "entity_id"]]).unique()
    touching = new["entity_id"].isin(ents).to_numpy()
    reps = pd.concat([new.loc[touching, "report_id"], new.loc[came, "report_id"], old.loc[gone, "report_id"]])
    return np.sort(reps.unique().astype(object))


def update_clusters(reports: pd.DataFrame | None, mentions: pd.DataFrame, previous: ClusterState | None = None,
                    seed: int | None = None, settings: GraphSettings | Mapping[str, Any] | None = None) -> ClusterUpdate:
    """The clusters of the data, re-using ``previous`` for every component whose links did not change.

    Gives what :func:`linkage.graph.find_clusters` gives for the same arguments (see the module docstring).

    >>> reports = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4"]})
    >>> m = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4"], "entity_id": ["P", "P", "Q", "Q"],
    ...                   "entity_type": ["person"] * 4})
    >>> first = update_clusters(reports.head(3), m.head(3), None, seed=1)
    >>> first.clusters["report_id"].tolist(), first.everything
    (['R1', 'R2'], True)
    >>> second = update_clusters(reports, m, first.state, seed=1)
    >>> sorted(second.clusters["report_id"]), second.stats["components_reclustered"], second.everything
    (['R1', 'R2', 'R3', 'R4'], 1, False)
    """
    s = as_graph_settings(settings)
    seed = s.seed if seed is None else seed
    fp = fingerprint(s, seed)
    inc = incidence(reports, mentions)
    rg = report_graph(mentions, s, reports)
    comp = components_membership(rg)
    all_comps = np.unique(comp[comp >= 0])
    stats = {"components": int(len(all_comps))}
    usable = (previous is not None and previous.fingerprint == fp and s.objective == "CPM"
              and list(previous.incidence.columns) == list(inc.columns))
    if not usable:
        from linkage.graph.communities import leiden_membership

        clusters = label_clusters(rg.report_ids, leiden_membership(rg, s, seed), s.min_cluster_size)
        stats["components_reclustered"] = stats["components"]
        return ClusterUpdate(clusters, ClusterState(fp, inc, clusters), set(clusters["cluster_id"]), stats, True)
    dirty = dirty_reports(previous.incidence, inc)
    codes = pd.Index(rg.report_ids).get_indexer(dirty)
    codes = codes[codes >= 0]
    redo = np.unique(comp[codes])
    redo = redo[redo >= 0]
    stats["components_reclustered"] = int(len(redo))
    fresh = label_clusters(rg.report_ids, leiden_components(rg, comp, redo, s, seed), s.min_cluster_size)
    # every report of a component that is not re-clustered keeps its stored cluster (or none)
    keep = np.ones(len(rg.report_ids), dtype=bool)
    if len(redo):
        redo_mask = np.zeros(int(comp.max()) + 1, dtype=bool)
        redo_mask[redo] = True
        keep &= ~((comp >= 0) & redo_mask[np.maximum(comp, 0)])
    kept_ids = rg.report_ids[keep]
    prev = previous.clusters
    reused = prev[prev["report_id"].isin(kept_ids)]
    clusters = pd.concat([fresh, reused], ignore_index=True)
    clusters = clusters.sort_values(["cluster_id", "report_id"], kind="stable").reset_index(drop=True)[CLUSTER_COLUMNS]
    return ClusterUpdate(clusters, ClusterState(fp, inc, clusters), set(fresh["cluster_id"]), stats, False)


# -- persistence ---------------------------------------------------------------------------------------

STATE_TABLE = "CREATE TABLE IF NOT EXISTS graph_state (part TEXT PRIMARY KEY, data BLOB)"


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def save_state(conn, state: ClusterState, extra: Mapping[str, pd.DataFrame] | None = None,
               meta: Mapping[str, Any] | None = None) -> None:
    """Write ``state`` (and ``extra`` named tables, ``meta`` values) into ``graph_state`` (caller's
    transaction). Each part is one parquet blob; 1,000,000 reports keep well under SQLite's 1 GB limit."""
    conn.execute(STATE_TABLE)
    conn.execute("DELETE FROM graph_state")
    parts = {"incidence": state.incidence, "clusters": state.clusters, **dict(extra or {})}
    for name, df in parts.items():
        conn.execute("INSERT INTO graph_state VALUES (?, ?)", (name, _parquet(df)))
    info = {"version": STATE_VERSION, "fingerprint": state.fingerprint, **dict(meta or {})}
    conn.execute("INSERT INTO graph_state VALUES ('meta', ?)", (json.dumps(info, sort_keys=True).encode("utf-8"),))


def load_state(conn) -> tuple[ClusterState, dict[str, pd.DataFrame], dict[str, Any]] | None:
    """``(state, extra tables, meta)`` as :func:`save_state` wrote them; None when there is none or it is of
    another version."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'graph_state'").fetchone()
    if has is None:
        return None
    parts = dict(conn.execute("SELECT part, data FROM graph_state").fetchall())
    if "meta" not in parts or "incidence" not in parts or "clusters" not in parts:
        return None
    meta = json.loads(parts.pop("meta").decode("utf-8"))
    if meta.get("version") != STATE_VERSION:
        return None
    tables = {k: pd.read_parquet(io.BytesIO(v)) for k, v in parts.items()}
    state = ClusterState(meta["fingerprint"], tables.pop("incidence"), tables.pop("clusters"))
    return state, tables, meta


def drop_state(conn) -> None:
    """Forget the stored state (the next run clusters everything), e.g. after a purge."""
    conn.execute(STATE_TABLE)
    conn.execute("DELETE FROM graph_state")
