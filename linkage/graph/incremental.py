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
import pyarrow.parquet as pq

from linkage.graph.communities import (
    CLUSTER_COLUMNS, components_membership, label_clusters, leiden_components, leiden_membership, report_graph,
)
from linkage.graph.weights import GraphSettings, as_graph_settings

#: Bump when what a state means changes (how communities are found, how the incidence is kept).
STATE_VERSION = 2
#: The incidence's leading columns; any other column of the mentions given follows, sorted by name.
INCIDENCE_COLUMNS = ["report_id", "entity_id", "entity_type"]


@dataclass
class ClusterState:
    """What the next run needs of this one: the settings fingerprint, the incidence (:func:`incidence`) and
    the columns it was made of, and the clusters (``report_id, cluster_id``, as :func:`find_clusters` gives)."""

    fingerprint: str
    incidence: pa.Array
    clusters: pd.DataFrame
    columns: list[str] = field(default_factory=list)


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


def _text(values: pd.Series) -> pa.Array:
    """A column as one arrow string array, missing values as ''."""
    try:
        arr = pa.array(values, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # mixed objects: their str()
        arr = pa.array([None if v is None or v != v else str(v) for v in values.tolist()], type=pa.string())
    return pc.fill_null(arr, "")


def incidence(reports: pd.DataFrame | None, mentions: pd.DataFrame) -> pa.Array:
    """The resolved mentions the report graph is made of (of ``reports`` when given; with an entity) as one
    distinct text key per mention row (in the order of ``mentions``): ``report_id, entity_id, entity_type`` and then every other column of
    ``mentions`` by name, joined by ``\\x1f``. Whatever a mention carries that the graph may weigh
    (``anchored``, say) is part of the key, so a change in any of it marks the entity dirty.

    >>> m = pd.DataFrame({"report_id": ["R2", "R1", "R1"], "entity_id": ["E", "E", None], "entity_type": ["x"] * 3})
    >>> sorted(k.replace("\\x1f", "|") for k in incidence(None, m).to_pylist())
    ['R1|E|x', 'R2|E|x']
    """
    cols = INCIDENCE_COLUMNS + sorted(set(mentions.columns) - set(INCIDENCE_COLUMNS))
    arrays = {c: _text(mentions[c]) for c in cols}
    keep = pc.not_equal(arrays["entity_id"], "")
    if reports is not None:
        keep = pc.and_(keep, pc.is_in(arrays["report_id"], value_set=_text(reports["report_id"])))
    keys = pc.binary_join_element_wise(*[arrays[c].filter(keep) for c in cols], "\x1f")
    return pc.unique(keys)


def _split_keys(keys: pa.Array) -> tuple[list[str], list[str]]:
    """(report ids, entity ids) of incidence keys."""
    parts = pc.split_pattern(keys, "\x1f", max_splits=2)
    return (pc.list_element(parts, 0).to_pylist(), pc.list_element(parts, 1).to_pylist())


def dirty_reports(old: pa.Array, new: pa.Array, mentions: pd.DataFrame) -> np.ndarray:
    """Report ids (sorted) that mention (in ``mentions``) an entity whose mention rows differ between the
    incidences ``old`` and ``new``, plus the reports of the rows that differ."""
    gone = old.filter(pc.invert(pc.is_in(old, value_set=new)))
    came = new.filter(pc.invert(pc.is_in(new, value_set=old)))
    r_gone, e_gone = _split_keys(gone)
    r_came, e_came = _split_keys(came)
    ents = pa.array(sorted(set(e_gone) | set(e_came)), type=pa.string())
    m_ents = pa.array(mentions["entity_id"].to_numpy(dtype=object, na_value=None), type=pa.string())
    touching = pc.fill_null(pc.is_in(m_ents, value_set=ents), False).to_numpy(zero_copy_only=False)
    reps = set(mentions.loc[touching, "report_id"].astype(str).tolist()) | set(r_gone) | set(r_came)
    return np.asarray(sorted(reps), dtype=object)


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
    columns = INCIDENCE_COLUMNS + sorted(set(mentions.columns) - set(INCIDENCE_COLUMNS))
    rg = report_graph(mentions, s, reports)
    comp = components_membership(rg)
    all_comps = np.unique(comp[comp >= 0])
    stats = {"components": int(len(all_comps))}
    usable = (previous is not None and previous.fingerprint == fp and s.objective == "CPM"
              and previous.columns == columns)
    if not usable:
        membership = leiden_membership(rg, s, seed, comp=comp)
        clusters = label_clusters(rg.report_ids, membership, s.min_cluster_size)
        stats["components_reclustered"] = stats["components"]
        return ClusterUpdate(clusters, ClusterState(fp, inc, clusters, columns), set(clusters["cluster_id"]), stats, True)
    dirty = dirty_reports(previous.incidence, inc, mentions)
    codes = pd.Index(rg.report_ids).get_indexer(dirty)
    codes = codes[codes >= 0]
    redo = np.unique(comp[codes])
    redo = redo[redo >= 0]
    stats["components_reclustered"] = int(len(redo))
    fresh = label_clusters(rg.report_ids, leiden_components(rg, comp, redo, s, seed), s.min_cluster_size)
    # every report of a component that is not re-clustered keeps its stored cluster (or none)
    keep = comp >= 0  # a report without links is in no cluster, whatever it was in before
    if len(redo):
        redo_mask = np.zeros(int(comp.max()) + 1, dtype=bool)
        redo_mask[redo] = True
        keep &= ~redo_mask[np.maximum(comp, 0)]  # unlinked reports (comp -1) are not kept anyway
    kept_ids = pa.array(rg.report_ids[keep], type=pa.string())
    prev = previous.clusters
    reused = prev[pc.is_in(_text(prev["report_id"]), value_set=kept_ids).to_numpy(zero_copy_only=False)]
    clusters = pd.concat([fresh, reused], ignore_index=True)
    clusters = clusters.sort_values(["cluster_id", "report_id"], kind="stable").reset_index(drop=True)[CLUSTER_COLUMNS]
    return ClusterUpdate(clusters, ClusterState(fp, inc, clusters, columns), set(fresh["cluster_id"]), stats, False)


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
    buf = io.BytesIO()  # the incidence straight from arrow (no detour through 400k Python strings)
    pq.write_table(pa.table({"key": state.incidence.cast(pa.string())}), buf)
    conn.execute("INSERT INTO graph_state VALUES ('incidence', ?)", (buf.getvalue(),))
    for name, df in {"clusters": state.clusters, **dict(extra or {})}.items():
        conn.execute("INSERT INTO graph_state VALUES (?, ?)", (name, _parquet(df)))
    info = {"version": STATE_VERSION, "fingerprint": state.fingerprint, "columns": list(state.columns),
            **dict(meta or {})}
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
    try:
        keys = pq.read_table(io.BytesIO(parts.pop("incidence"))).column("key").combine_chunks().cast(pa.string())
        tables = {k: pd.read_parquet(io.BytesIO(v)) for k, v in parts.items()}
        state = ClusterState(meta["fingerprint"], keys, tables.pop("clusters"), list(meta["columns"]))
    except (KeyError, ValueError, OSError, pa.ArrowException):  # damaged or foreign: cluster everything
        return None
    return state, tables, meta


def drop_state(conn) -> None:
    """Forget the stored state (the next run clusters everything), e.g. after a purge."""
    conn.execute(STATE_TABLE)
    conn.execute("DELETE FROM graph_state")
