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

When the caller knows which mentions changed (:func:`update_changed`: the new mentions and those the
resolver re-assigned), nothing else is read: the state keeps every resolved mention's row and each linked
report's component (its smallest report id), so the dirty reports, the components they are in and the rows
of those components' entities are found in the state. Only that part of the graph is built: a report of
another component shares no entity of degree 2 to ``hub_max_reports`` with it (else both would be in one
component), so the part holds every link of those components, each with its full weight (every row of each
entity they mention is in it, so degrees and hub confirmations are those of the whole graph).
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
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from linkage.arrays import isin_text
from linkage.graph.communities import (
    CLUSTER_COLUMNS, components_membership, label_clusters, leiden_components, leiden_membership, report_graph,
)
from linkage.graph.weights import GraphSettings, as_graph_settings

#: Bump when what a state means changes (how communities are found, what the incidence holds): part of the
#: :func:`fingerprint`, so a state of another meaning clusters everything again.
MEANING_VERSION = 3
#: The layout :func:`save_state` writes: 4 keeps the incidence as a base blob plus the edits of later runs
#: (:data:`INCIDENCE_EDITS_SHARE`); 3 (read too) kept it whole. Code that reads only version 3 refuses a
#: version-4 state (it would miss the edits) and clusters everything once.
STATE_VERSION = 4
#: The layouts :func:`load_state` reads.
READABLE_VERSIONS = (3, 4)
#: The incidence's base blob is written again (the edits folded in) when the edits (mention ids removed from
#: the base plus rows added since) pass this share of the base's rows; until then a run writes only its edits.
INCIDENCE_EDITS_SHARE = 0.1
#: Likewise for a kept table saved as :class:`TableEdits` (the kept scores): removed keys plus added rows
#: against the rows of its stored base. Higher than the incidence's: adding 1,000 reports to 100,000 changed
#: ~13 % of the scores' rows (606 gone or replaced, 720 made; fewer since re-clustered clusters whose inputs did
#: not change keep their parts, :func:`linkage.triage.scoring.inputs_digest`) against ~2 % of the incidence's,
#: and the edits cost little to apply when read (a filter of ~10,000 rows).
TABLE_EDITS_SHARE = 0.3
#: The incidence's leading columns; any other column of the mentions given follows, sorted by name.
INCIDENCE_COLUMNS = ["report_id", "entity_id", "entity_type"]


@dataclass
class ClusterState:
    """What the next run needs of this one: the settings fingerprint, the incidence (:func:`incidence`) and
    the columns it was made of, the clusters (``report_id, cluster_id``, as :func:`find_clusters` gives) and
    each linked report's connected component (``report_id, component``: the component's smallest report id;
    None when not kept).

    ``edits``, when set, says how ``incidence`` stands to the base blob stored in ``graph_state``:
    :class:`IncidenceEdits` (``incidence`` = the base's rows whose mention id is not in ``removed``, in order,
    then ``added``); :func:`save_state` then writes only the edits."""

    fingerprint: str
    incidence: pa.Table
    clusters: pd.DataFrame
    columns: list[str] = field(default_factory=list)
    components: pd.DataFrame | None = None
    edits: "IncidenceEdits | None" = None

    def incidence_size(self) -> tuple[int, list[str]]:
        """(rows, column names) of the incidence (:class:`PendingIncidenceState`: without making it)."""
        return self.incidence.num_rows, list(self.incidence.column_names)


class PendingIncidenceState(ClusterState):
    """A :class:`ClusterState` whose incidence is made when first read: :func:`update_changed` gives the
    rows of the previous incidence that stay (``pending``: the table and its mask) and the new rows, and most
    runs never read the whole table (:func:`save_state` writes only its edits; :meth:`incidence_size` needs
    no copy). Saves copying ~400,000 rows at 100,000 reports (~0.02 s). Its incidence equals the table it
    stands for in every use, pickling included (``==`` with a plain :class:`ClusterState` is False, as dataclass
    equality compares classes; ``repr`` makes the table)."""

    @classmethod
    def of(cls, fingerprint: str, clusters: pd.DataFrame, columns: list, components: pd.DataFrame,
           edits: "IncidenceEdits | None", old: pa.Table, stay: pa.Array, new_rows: pa.Table
           ) -> "PendingIncidenceState":
        """The state whose incidence is ``old``'s rows where ``stay`` is true, then ``new_rows``."""
        state = cls(fingerprint, None, clusters, columns, components, edits)
        state.__dict__["pending"] = (old, stay, new_rows)
        return state

    @property
    def incidence(self) -> pa.Table:
        pending = self.__dict__.get("pending")
        if pending is not None:
            old, stay, new_rows = pending
            self.__dict__["_incidence"] = pa.concat_tables([old.filter(stay), new_rows])
            self.__dict__["pending"] = None
        return self.__dict__["_incidence"]

    @incidence.setter
    def incidence(self, table: pa.Table) -> None:
        self.__dict__["_incidence"] = table
        self.__dict__["pending"] = None

    def incidence_size(self) -> tuple[int, list[str]]:
        pending = self.__dict__.get("pending")
        if pending is None:
            return super().incidence_size()
        old, stay, new_rows = pending
        return int(pc.sum(stay).as_py() or 0) + new_rows.num_rows, list(old.column_names)


@dataclass
class IncidenceEdits:
    """The incidence as the stored base (named by ``base``, a digest of its blob, and ``base_rows``) and its
    edits: ``removed`` the mention ids whose base row is gone (ids not in the base are harmless), ``added`` the
    rows added since, in order (the incidence's schema)."""

    base: str
    base_rows: int
    removed: pa.Array
    added: pa.Table

    def size(self) -> int:
        """How many ids and rows the edits hold (against :data:`INCIDENCE_EDITS_SHARE` of ``base_rows``)."""
        return len(self.removed) + self.added.num_rows


@dataclass
class TableEdits:
    """A kept table (``extra`` of :func:`save_state`) given as its changes since the table :func:`load_state`
    read (``previous``, from the stored base named ``base`` in ``meta["table_bases"]``): the rows of the
    ``key`` values in ``removed`` are gone (a changed row's key is in it too), the ``added`` rows follow.
    :func:`save_state` keeps the stored base and writes the edits while they stay under
    :data:`TABLE_EDITS_SHARE` of its rows; otherwise :meth:`whole` is written as a new base. Rows are read
    back as the base's rows that are left, then the added ones (their order is not kept)."""

    key: str
    base: str | None
    previous: pd.DataFrame
    removed: list
    added: pd.DataFrame

    def whole(self) -> pd.DataFrame:
        """The table these edits make of ``previous``."""
        keep = self.previous[~isin_text(self.previous[self.key], self.removed)] if len(self.removed) \
            else self.previous
        return _concat_rows([keep, self.added])


def _concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of ``frames`` one after the other (empty ones left out, so column types stay those of the rows)."""
    rows = [f for f in frames if len(f)]
    if not rows:
        return frames[0].iloc[0:0].reset_index(drop=True)
    return pd.concat(rows, ignore_index=True) if len(rows) > 1 else rows[0].reset_index(drop=True)


@dataclass
class ClusterUpdate:
    """The outcome of :func:`update_clusters`; ``recomputed`` holds the cluster ids of the re-clustered
    components (all clusters when nothing could be reused)."""

    clusters: pd.DataFrame
    state: ClusterState
    recomputed: set[str]
    stats: dict[str, int] = field(default_factory=dict)
    everything: bool = True
    region: np.ndarray | None = None  # update_changed: the report ids whose clusters were decided again
    # update_changed: the incidence's rows of the ``region`` reports, in the incidence's order
    region_rows: pa.Table | None = None
    # update_changed: the re-clustered clusters whose inputs did not change (:func:`unchanged_clusters`)
    same_inputs: set[str] = field(default_factory=set)


def fingerprint(settings: GraphSettings, seed: int) -> str:
    """A digest of what decides the clusters besides the data: version, graph settings and seed.

    >>> s = as_graph_settings(None)
    >>> fingerprint(s, 1) == fingerprint(s, 1) != fingerprint(s, 2)
    True
    """
    payload = json.dumps({"version": MEANING_VERSION, "settings": asdict(settings), "seed": seed}, sort_keys=True,
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


def incidence(reports: pd.DataFrame | None, mentions: pd.DataFrame) -> pa.Table:
    """The resolved mentions the report graph is made of (of ``reports`` when given; with an entity), as an
    arrow table of the columns ``report_id, entity_id, entity_type`` and then every other column of
    ``mentions`` by name, in the order of ``mentions``. Whatever a mention carries that the graph may weigh
    (``anchored``, say) is in it, so a change in any of it marks the entity dirty (:func:`row_keys`).

    >>> m = pd.DataFrame({"report_id": ["R2", "R1", "R1"], "entity_id": ["E", "E", None], "entity_type": ["x"] * 3})
    >>> incidence(None, m).column("report_id").to_pylist()
    ['R2', 'R1']
    """
    cols = INCIDENCE_COLUMNS + sorted(set(mentions.columns) - set(INCIDENCE_COLUMNS))
    keep = pc.not_equal(_text(mentions["entity_id"]), "")
    if reports is not None:
        keep = pc.and_(keep, pc.is_in(_text(mentions["report_id"]), value_set=_text(reports["report_id"])))
    table = pa.Table.from_pandas(mentions[cols], preserve_index=False)
    return table.filter(keep).combine_chunks()


def row_keys(table: pa.Table) -> pa.Array:
    """One text key per incidence row: its columns as text (missing: ''), joined by ``\\x1f``.

    >>> row_keys(incidence(None, pd.DataFrame({"report_id": ["R1"], "entity_id": ["E"], "entity_type": ["x"],
    ...                                        "anchored": [1]}))).to_pylist()
    ['R1\\x1fE\\x1fx\\x1f1']
    """
    if not table.num_rows:
        return pa.array([], pa.string())
    arrays = [pc.fill_null(_column(table, c), "") for c in table.column_names]
    return pc.binary_join_element_wise(*arrays, "\x1f")


#: Arrays at least this long are looked up by :func:`_is_in` in two halves at once, one in a thread of its own.
SPLIT_IS_IN_ROWS = 65_536


def _is_in(values: pa.Array, value_set: pa.Array) -> pa.Array:
    """``pc.is_in(values, value_set=value_set)``; a long array (:data:`SPLIT_IS_IN_ROWS`) is looked up in two
    halves at once, the second in a short-lived thread: Arrow hashes without holding Python's GIL, so the two
    halves run on two cores (each of :func:`update_changed`'s look-ups over the ~400,000 incidence rows of
    100,000 reports takes ~6-17 ms; the stages after the resolve stage leave the second core idle). The mask is
    the same either way (the halves' masks joined in order). A ``value_set`` of the other text type (``string``,
    ``large_string``) is cast to that of ``values`` (:func:`_text_column` leaves long columns uncast).

    >>> _is_in(pa.array(["a", "b", None]), pa.array(["b"])).to_pylist()
    [False, True, False]
    >>> _is_in(pa.array(["a", "b"], pa.large_string()), pa.array(["b"])).to_pylist()
    [False, True]
    """
    if values.type != value_set.type and _is_text(values.type) and _is_text(value_set.type):
        value_set = value_set.cast(values.type)  # the short side cast (string <-> large_string): same mask
    n = len(values)
    if n < SPLIT_IS_IN_ROWS or not isinstance(values, pa.Array):
        return pc.is_in(values, value_set=value_set)
    import threading

    half = n // 2
    second: list = []

    def look_up() -> None:
        try:
            second.append(pc.is_in(values.slice(half), value_set=value_set))
        except BaseException as exc:  # handed to the caller below
            second.append(exc)

    thread = threading.Thread(target=look_up, name="is-in", daemon=True)
    thread.start()
    try:
        first = pc.is_in(values.slice(0, half), value_set=value_set)
    finally:
        thread.join()
    if isinstance(second[0], BaseException):
        raise second[0]
    return pa.concat_arrays([first, second[0]])


def _column(table: pa.Table, name: str) -> pa.Array:
    return _one_array(table.column(name)).cast(pa.string())


def _one_array(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column as one array: the chunk itself when there is one (``combine_chunks`` copies even a single
    chunk: ~2-40 ms for a column of the ~400,000 incidence rows of 100,000 reports), else the chunks joined.

    >>> col = pa.chunked_array([pa.array(["a", "b"])])
    >>> _one_array(col).buffers()[2].address == col.chunk(0).buffers()[2].address
    True
    >>> _one_array(pa.chunked_array([["a"], ["b"]])).to_pylist()
    ['a', 'b']
    """
    if not isinstance(col, pa.ChunkedArray):
        return col
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _text_column(table: pa.Table, name: str) -> pa.Array:
    """A column as one array of text, in the text type it has (``string`` or ``large_string``; another type is
    cast to ``string`` as :func:`_column` casts it): a kept incidence's columns are ``large_string``, and a cast
    copies each of its ~400,000 rows at 100,000 reports (~3-6 ms a column). For look-ups (:func:`_is_in` casts
    the value set to the column's type) and masks; arrays joined with others must come from tables of the same
    schema.

    >>> _text_column(pa.table({"a": pa.array(["x"], pa.large_string())}), "a").type
    DataType(large_string)
    >>> _text_column(pa.table({"a": [1]}), "a").to_pylist()
    ['1']
    """
    col = _one_array(table.column(name))
    return col if _is_text(col.type) else col.cast(pa.string())


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _dirty(old: pa.Table, new: pa.Table, old_keys: pa.Array, new_keys: pa.Array) -> tuple[set[str], pa.Array]:
    """(reports of the rows that differ between ``old`` and ``new``, entity ids of those rows): rows are given
    with their :func:`row_keys`."""
    gone = pc.invert(pc.is_in(old_keys, value_set=new_keys))
    came = pc.invert(pc.is_in(new_keys, value_set=old_keys))
    ents = pa.concat_arrays([_column(old, "entity_id").filter(gone), _column(new, "entity_id").filter(came)])
    reps = set(_column(old, "report_id").filter(gone).to_pylist()) | set(_column(new, "report_id").filter(came).to_pylist())
    return reps, pc.unique(ents)


def dirty_reports(old: pa.Table, new: pa.Table) -> np.ndarray:
    """Report ids (sorted) that mention (in ``new``) an entity whose mention rows differ between the
    incidences ``old`` and ``new``, plus the reports of the rows that differ."""
    reps, ents = _dirty(old, new, row_keys(old), row_keys(new))
    touching = pc.fill_null(pc.is_in(_column(new, "entity_id"), value_set=ents), False)
    reps |= set(_column(new, "report_id").filter(touching).to_pylist())
    return np.asarray(sorted(reps), dtype=object)


def component_table(report_ids: np.ndarray, comp: np.ndarray) -> pd.DataFrame:
    """``report_id, component`` of every linked report (``comp >= 0``): a component is named by its smallest
    report id (``report_ids`` sorted, as :func:`report_graph` gives them), so names do not depend on codes.

    >>> component_table(np.array(["R1", "R2", "R3", "R4"], dtype=object), np.array([1, -1, 1, 0]))
      report_id component
    0        R1        R1
    1        R3        R1
    2        R4        R4
    """
    linked = np.flatnonzero(comp >= 0)
    if not len(linked):
        return pd.DataFrame({"report_id": pd.Series(dtype=object), "component": pd.Series(dtype=object)})
    first = np.full(int(comp.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, comp[linked], linked)
    return pd.DataFrame({"report_id": report_ids[linked], "component": report_ids[first[comp[linked]]]})


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
    comps = component_table(rg.report_ids, comp)
    all_comps = np.unique(comp[comp >= 0])
    stats = {"components": int(len(all_comps))}
    usable = (previous is not None and previous.fingerprint == fp and s.objective == "CPM"
              and previous.columns == columns)
    if not usable:
        membership = leiden_membership(rg, s, seed, comp=comp)
        clusters = label_clusters(rg.report_ids, membership, s.min_cluster_size)
        stats["components_reclustered"] = stats["components"]
        return ClusterUpdate(clusters, ClusterState(fp, inc, clusters, columns, comps), set(clusters["cluster_id"]),
                             stats, True)
    dirty = dirty_reports(previous.incidence, inc)
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
    clusters = _merge_clusters(previous.clusters, fresh, kept_ids)
    return ClusterUpdate(clusters, ClusterState(fp, inc, clusters, columns, comps), set(fresh["cluster_id"]), stats,
                         False)


def _merge_clusters(previous: pd.DataFrame, fresh: pd.DataFrame, kept_ids: pa.Array) -> pd.DataFrame:
    """The stored clusters of the ``kept_ids`` reports plus the ``fresh`` ones, sorted as find_clusters sorts."""
    names = ("report_id", "cluster_id")
    kept = pa.table({c: _text(previous[c]) for c in names})
    kept = kept.filter(pc.fill_null(pc.is_in(kept.column("report_id"), value_set=kept_ids), False))
    rows = pa.concat_tables([pa.table({c: _text(fresh[c]) for c in names}), kept])
    # arrow sorts the two text columns (UTF-8 bytes sort as the code points pandas compares; stable, as
    # pandas' stable sort), and the frame is made once from the sorted rows (41,000 rows in ~8 ms against ~30)
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("cluster_id", "ascending"), ("report_id", "ascending")]))
    out = rows.select(CLUSTER_COLUMNS).to_pandas()
    # the column types concatenating the two frames gives (an empty one's object columns can make them object)
    like = pd.concat([fresh.iloc[:1], previous.iloc[:1 if kept.num_rows else 0]], ignore_index=True)[CLUSTER_COLUMNS]
    return out if like.dtypes.equals(out.dtypes) else out.astype(like.dtypes.to_dict())


def update_changed(previous: ClusterState | None, changed: pd.DataFrame, changed_ids: Any,
                   seed: int | None = None, settings: GraphSettings | Mapping[str, Any] | None = None,
                   n_resolved: int | None = None, relabelled: set | None = None) -> ClusterUpdate | None:
    """What :func:`update_clusters` gives when only the mentions ``changed_ids`` changed since ``previous`` (new
    ones, re-assigned ones), without the other mentions: ``changed`` holds the current graph rows of those
    mentions (the columns the state was made of; mentions without an entity may be left out).

    Returns None when ``previous`` cannot be used this way (another fingerprint or version, other columns, no
    components kept, objective not CPM) or when ``n_resolved`` (the number of mentions with an entity now, if
    given) is not the number of rows the patched incidence has: the caller then reads everything.

    ``region`` of the result holds the report ids whose clusters were decided again (every report of a
    re-clustered component, and every dirty report). ``same_inputs``: :func:`unchanged_clusters` of the fresh
    clusters, where a report counts as changed when a row of its mentions changed or, with ``relabelled`` (the
    ids of every entity whose label this run changed; None: not known), when it mentions one of those entities,
    and without ``relabelled`` when it mentions an entity that gained or lost a row (its label may have changed).
    """
    s = as_graph_settings(settings)
    seed = s.seed if seed is None else seed
    if (previous is None or previous.components is None or previous.fingerprint != fingerprint(s, seed)
            or s.objective != "CPM" or sorted(changed.columns) != sorted(previous.columns)):
        return None
    old = previous.incidence
    ids = pa.array([str(m) for m in changed_ids], type=pa.string())
    mention_col = "mention_id" if "mention_id" in previous.columns else None
    if mention_col is None:
        return None
    new_rows = incidence(None, changed[previous.columns])
    try:
        new_rows = new_rows.cast(old.schema) if new_rows.num_rows else old.slice(0, 0)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return None
    in_changed = pc.fill_null(_is_in(_text_column(old, mention_col), ids), False)
    stay = pc.invert(in_changed)
    old_rows = old.filter(in_changed)
    # the incidence now: the old rows that stay, then the new rows (made when read, PendingIncidenceState;
    # in two chunks: save_state joins them when it writes the whole table). The masks below are taken on the
    # two parts apiece (no copy of 400,000 rows' columns): ``rows_of`` gives a mask per part, the old rows
    # that went masked off
    n_rows = int(pc.sum(stay).as_py() or 0) + new_rows.num_rows
    if n_resolved is not None and n_rows != n_resolved:
        return None
    reps, ents = _dirty(old_rows, new_rows, row_keys(old_rows), row_keys(new_rows))
    # the columns in their own text type (new_rows has old's schema: the parts join), not copied by a cast
    parts = [(_text_column(old, "report_id"), _text_column(old, "entity_id"), stay),
             (_text_column(new_rows, "report_id"), _text_column(new_rows, "entity_id"), None)]

    def rows_of(mask_of):
        """Per part: the mask ``mask_of(reports, entities)`` of its rows (the old rows that went: False)."""
        out = []
        for reports, entities, keep in parts:
            mask = pc.fill_null(mask_of(reports, entities), False)
            out.append(pc.and_(mask, keep) if keep is not None else mask)
        return out

    def picked(masks, column):
        return pa.concat_arrays([(p[0] if column == 0 else p[1]).filter(m) for p, m in zip(parts, masks)])

    touching = rows_of(lambda r, e: _is_in(e, ents))
    dirty = reps | set(picked(touching, 0).to_pylist())
    # the components the dirty reports were in, and all their reports
    comps = previous.components
    comp_reports, comp_names = _text(comps["report_id"]), _text(comps["component"])
    dirty_arr = pa.array(list(dirty), type=pa.string())
    hit = pc.unique(comp_names.filter(pc.fill_null(_is_in(comp_reports, dirty_arr), False)))
    in_hit = pc.fill_null(_is_in(comp_names, hit), False)
    region_arr = pc.unique(pa.concat_arrays([dirty_arr, comp_reports.filter(in_hit)]))
    region_arr = region_arr.take(pc.sort_indices(region_arr))
    in_region = rows_of(lambda r, e: _is_in(r, region_arr))
    region_ents = pc.unique(picked(in_region, 1))
    # every row of every entity the region mentions: degrees and hub confirmations as in the whole graph
    in_part = [pc.or_(m, e) for m, e in zip(in_region, rows_of(lambda r, e: _is_in(e, region_ents)))]
    part = pa.concat_tables([old.filter(in_part[0]), new_rows.filter(in_part[1])])
    rg = report_graph(part.to_pandas(), s)
    comp = components_membership(rg)
    region = np.asarray(region_arr.to_pylist(), dtype=object)
    codes = pd.Index(rg.report_ids).get_indexer(region)
    codes = codes[codes >= 0]
    redo = np.unique(comp[codes])
    redo = redo[redo >= 0]
    fresh = label_clusters(rg.report_ids, leiden_components(rg, comp, redo, s, seed), s.min_cluster_size)
    outside = pc.invert(pc.fill_null(_is_in(comp_reports, region_arr), False)).to_numpy(
        zero_copy_only=False)
    kept = comps[outside]
    clusters = _merge_clusters(previous.clusters, fresh, comp_reports.filter(outside))
    # the region's components now (each named by its smallest report id); others as they were
    in_redo = np.zeros(len(rg.report_ids), dtype=bool)
    if len(redo):
        redo_mask = np.zeros(int(comp.max()) + 1, dtype=bool)
        redo_mask[redo] = True
        in_redo = (comp >= 0) & redo_mask[np.maximum(comp, 0)]
    now_comps = component_table(rg.report_ids, np.where(in_redo, comp, -1))
    components = pd.concat([kept, now_comps], ignore_index=True).sort_values("report_id", kind="stable")
    n_comps = int(components["component"].nunique())
    stats = {"components": n_comps, "components_reclustered": int(len(redo))}
    state = PendingIncidenceState.of(previous.fingerprint, clusters, list(previous.columns),
                                     components.reset_index(drop=True),
                                     _next_edits(previous.edits, ids, old_rows, new_rows, mention_col),
                                     old, stay, new_rows)
    region_rows = part.filter(pc.fill_null(pc.is_in(_column(part, "report_id"), value_set=region_arr), False))
    if relabelled is None:
        same = unchanged_clusters(previous.clusters, fresh, dirty)
    else:
        named = pa.array(sorted(str(e) for e in relabelled), type=pa.string())

        def everywhere() -> pa.Array:  # the report of every incidence row mentioning one of them
            return picked(rows_of(lambda r, e: _is_in(e, named)), 0)

        same = unchanged_clusters(previous.clusters, fresh,
                                  reps | _mentioning(named, region_rows, region_arr, fresh, everywhere))
    return ClusterUpdate(clusters, state, set(fresh["cluster_id"]), stats, False, region, region_rows, same)


def _mentioning(entities: pa.Array, region_rows: pa.Table, region: pa.Array, fresh: pd.DataFrame,
                everywhere) -> set[str]:
    """The reports, among those of the ``fresh`` clusters, that mention one of ``entities`` (a superset of them
    is fine: :func:`unchanged_clusters` asks only about the fresh clusters' reports). When every fresh report is in
    ``region`` (as :func:`update_changed` makes them: a re-clustered component holds region reports only), they
    are found in ``region_rows`` (every incidence row of the region's reports, ~25,000 at 100,000 reports) instead
    of over the whole incidence (~400,000 rows: ~15 ms less); otherwise ``everywhere()`` gives the report id of
    every incidence row that mentions one of them.

    >>> rows = pa.table({"report_id": ["R1", "R2"], "entity_id": ["E", "F"]})
    >>> fresh = pd.DataFrame({"report_id": ["R1", "R2"], "cluster_id": ["c", "c"]})
    >>> sorted(_mentioning(pa.array(["E"]), rows, pa.array(["R1", "R2"]), fresh, lambda: pa.array(["R9"])))
    ['R1']
    >>> sorted(_mentioning(pa.array(["E"]), rows, pa.array(["R1"]), fresh, lambda: pa.array(["R9"])))
    ['R9']
    """
    inside = pc.fill_null(pc.is_in(_text(fresh["report_id"]), value_set=region), False)
    if len(fresh) and not pc.all(inside).as_py():
        return set(everywhere().to_pylist())
    hit = pc.fill_null(pc.is_in(_column(region_rows, "entity_id"), value_set=entities), False)
    return set(_column(region_rows, "report_id").filter(hit).to_pylist())


def unchanged_clusters(previous: pd.DataFrame, fresh: pd.DataFrame, dirty: Any) -> set[str]:
    """The ids of the ``fresh`` clusters (``report_id, cluster_id``) that have the id and exactly the reports of
    a ``previous`` cluster and none of whose reports is ``dirty`` (:func:`update_changed`: a report with a
    mention whose incidence row changed, or that mentions an entity whose incidence rows changed, i.e. that
    gained or lost a mention). Such a cluster's reports mention the same entities as before, each with the same
    mentions (and so the same label: an entity's label is a function of its mentions' own labels), so what
    scoring reads of it (:func:`linkage.triage.scoring.inputs_digest`: reports, mentions' entities and types,
    the relations between its own mentions and their entities' labels) is what it read at the previous run,
    reports and mentions being stored once and never changed; links to mentions of other reports are not seen
    here (the caller checks those).

    >>> prev = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4", "R5"], "cluster_id": ["a", "a", "b", "b", "c"]})
    >>> fresh = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4", "R5", "R6"],
    ...                       "cluster_id": ["a", "a", "b", "b", "c", "c"]})
    >>> sorted(unchanged_clusters(prev, fresh, {"R4"}))
    ['a']
    """
    if not len(fresh):
        return set()
    dirty = {str(r) for r in dirty}
    now: dict = {}
    bad = set()
    for r, c in zip(_text(fresh["report_id"]).to_pylist(), _text(fresh["cluster_id"]).to_pylist()):
        now.setdefault(c, []).append(r)
        if r in dirty:
            bad.add(c)
    for c in bad:
        del now[c]
    if not now:
        return set()
    p_cid = _text(previous["cluster_id"])
    hit = pc.fill_null(pc.is_in(p_cid, value_set=pa.array(list(now), type=pa.string())), False)
    before: dict = {}
    for r, c in zip(_text(previous["report_id"]).filter(hit).to_pylist(), p_cid.filter(hit).to_pylist()):
        before.setdefault(c, []).append(r)
    return {c for c, reps in now.items() if len(reps) == len(before.get(c, ())) and set(reps) == set(before[c])}


def _next_edits(edits: IncidenceEdits | None, ids: pa.Array, old_rows: pa.Table, new_rows: pa.Table,
                mention_col: str) -> IncidenceEdits | None:
    """The edits after :func:`update_changed` replaced ``old_rows`` (the incidence's rows of the mentions
    ``ids``) by ``new_rows``: the ids of those rows that came from the base join ``removed``, and the added
    rows of the mentions ``ids`` give way to ``new_rows``. Since the incidence was ``base - removed + added``
    before, ``old - ids + new_rows`` is ``base - removed' + (added - ids + new_rows)``, row for row and in the
    same order. None when there were no edits to go on."""
    if edits is None:
        return None
    added, gone = edits.added, _column(old_rows, mention_col)
    if added.num_rows:
        added_ids = _column(added, mention_col)
        added = added.filter(pc.invert(pc.fill_null(pc.is_in(added_ids, value_set=ids), False)))
        gone = gone.filter(pc.invert(pc.fill_null(pc.is_in(gone, value_set=added_ids), False)))
    removed = pa.concat_arrays([edits.removed.cast(pa.string()), gone]) if len(gone) else edits.removed
    return IncidenceEdits(edits.base, edits.base_rows, removed,
                          pa.concat_tables([added, new_rows.cast(added.schema)]).combine_chunks())


# -- persistence ---------------------------------------------------------------------------------------

STATE_TABLE = "CREATE TABLE IF NOT EXISTS graph_state (part TEXT PRIMARY KEY, data BLOB)"


def _table_blob(df: pd.DataFrame) -> bytes:
    """A kept table (clusters, components, scores) as an LZ4 Arrow IPC file, the frame's pandas metadata kept
    so it reads back equal: at 100,000 reports the scores (10,751 rows with their signals) write in 0.06 CPU s
    against parquet's 0.09 and read in 0.03 against 0.19, at the same size (4.3 MB)."""
    return _incidence_blob(pa.Table.from_pandas(df, preserve_index=False))


def _read_table(blob: bytes) -> pd.DataFrame:
    """A kept table from :func:`_table_blob`, or from the parquet blob an earlier version wrote.

    >>> df = pd.DataFrame({"cluster_id": ["C1", "C2"], "n_reports": [3, 2]})
    >>> _read_table(_table_blob(df)).equals(df), _read_table(_parquet_blob(df)).equals(df)
    (True, True)
    """
    if bytes(blob[:6]) == b"ARROW1":
        return ipc.open_file(pa.BufferReader(blob)).read_all().to_pandas()
    return pd.read_parquet(io.BytesIO(blob))


def _parquet_blob(df: pd.DataFrame) -> bytes:
    """A table as the parquet blob earlier versions kept (tests of reading them)."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


#: The incidence (every resolved mention's graph row, ~400,000 at 100,000 reports) is kept in the Arrow IPC
#: file format, LZ4-compressed: every run writes it and the next reads it, and that is 3 times quicker to
#: write and 5 times quicker to read than parquet, at twice parquet's size (19 MB against 10 MB at 100k).
INCIDENCE_CODEC = "lz4" if pa.Codec.is_available("lz4") else None


def _incidence_blob(table: pa.Table) -> bytes:
    """The incidence (or any kept table) as an Arrow IPC file (straight from arrow: no detour through 400k
    Python objects)."""
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression=INCIDENCE_CODEC)) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _read_incidence(blob: bytes) -> pa.Table:
    """The incidence from :func:`_incidence_blob`, or from the parquet blob an earlier version wrote.

    >>> t = pa.table({"report_id": ["R1", "R2"], "anchored": [1, 0]})
    >>> _read_incidence(_incidence_blob(t)).equals(t)
    True
    """
    if bytes(blob[:6]) == b"ARROW1":
        return ipc.open_file(pa.BufferReader(blob)).read_all().combine_chunks()
    return pq.read_table(io.BytesIO(blob)).combine_chunks()


def save_state(conn, state: ClusterState, extra: Mapping[str, "pd.DataFrame | TableEdits"] | None = None,
               meta: Mapping[str, Any] | None = None, extra_keys: Mapping[str, str] | None = None) -> None:
    """Write ``state`` (and ``extra`` named tables, ``meta`` values) into ``graph_state`` (caller's
    transaction). Each part is one blob in the Arrow IPC file format (the incidence: :func:`_incidence_blob`, the
    other tables: :func:`_table_blob`; parquet blobs of earlier versions are still read); 1,000,000 reports keep
    well under SQLite's 1 GB limit.

    The incidence (~19 MB at 100,000 reports) is kept as a base blob (part ``incidence``) and its edits (parts
    ``incidence_removed`` and ``incidence_added``, :class:`IncidenceEdits`): when ``state.edits`` are edits of
    the base stored now (same digest) and hold at most :data:`INCIDENCE_EDITS_SHARE` of its rows, only the
    edits are written and the base stays; otherwise the whole incidence is written as a new base.

    An ``extra`` table may likewise be given as :class:`TableEdits`; ``extra_keys`` names the key column of
    the tables written whole that a later run may give as edits (their base is recorded in
    ``meta["table_bases"]``: digest, rows, key)."""
    extra_keys = dict(extra_keys or {})
    conn.execute(STATE_TABLE)
    stored = _stored_meta(conn)
    edits = state.edits
    if edits is not None and (edits.size() > INCIDENCE_EDITS_SHARE * max(edits.base_rows, 1)
                              or _stored_base(conn, stored) != edits.base):
        edits = None
    # parts kept: the incidence base (when only edits follow) and the base of every table given as edits
    # (its stored edits are read and folded into the new ones by _table_edits, then written again)
    keep = (["incidence"] if edits is not None else []) + [n for n, df in dict(extra or {}).items()
                                                           if isinstance(df, TableEdits)]
    keep += [f"{n}:{k}" for n in keep[1 if edits is not None else 0:] for k in ("removed", "added")]
    conn.execute(f"DELETE FROM graph_state WHERE part NOT IN ({', '.join('?' for _ in keep)})" if keep
                 else "DELETE FROM graph_state", keep)
    if edits is None:
        blob = _incidence_blob(state.incidence.combine_chunks())  # one record batch, however it was built
        edits = IncidenceEdits(_digest(blob), state.incidence.num_rows, pa.array([], pa.string()),
                               state.incidence.slice(0, 0))
        conn.execute("INSERT INTO graph_state VALUES ('incidence', ?)", (blob,))
    else:
        conn.execute("INSERT INTO graph_state VALUES ('incidence_removed', ?)",
                     (_incidence_blob(pa.table({"mention_id": edits.removed.cast(pa.string())})),))
        conn.execute("INSERT INTO graph_state VALUES ('incidence_added', ?)", (_incidence_blob(edits.added),))
    state.edits = edits  # what is stored now: a later save of this state writes its edits only
    tables = {"clusters": state.clusters, **dict(extra or {})}
    if state.components is not None:
        tables["components"] = state.components
    table_bases = {}
    for name, df in tables.items():
        if isinstance(df, TableEdits):
            kept = _table_edits(conn, name, df, stored.get("table_bases", {}).get(name))
            if kept is not None:
                table_bases[name], removed, added = kept
                for part, df in ((f"{name}:removed", removed), (f"{name}:added", added)):
                    conn.execute("INSERT OR REPLACE INTO graph_state VALUES (?, ?)", (part, _table_blob(df)))
                continue
            key, df = df.key, df.whole()
        else:
            key = None
        conn.execute("DELETE FROM graph_state WHERE part IN (?, ?, ?)", (name, f"{name}:removed", f"{name}:added"))
        blob = _table_blob(df)
        conn.execute("INSERT INTO graph_state VALUES (?, ?)", (name, blob))
        if key is not None or name in extra_keys:
            table_bases[name] = [_digest(blob), len(df), key or extra_keys[name]]
    info = {"version": STATE_VERSION, "fingerprint": state.fingerprint, "columns": list(state.columns),
            "incidence_base": edits.base, "incidence_base_rows": edits.base_rows, "table_bases": table_bases,
            **dict(meta or {})}
    conn.execute("INSERT INTO graph_state VALUES ('meta', ?)", (json.dumps(info, sort_keys=True).encode("utf-8"),))


def _digest(blob: bytes) -> str:
    """The name of a base blob: a digest of its bytes."""
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _stored_meta(conn) -> dict:
    """The meta of the state ``graph_state`` holds now ({} without one, or of another layout)."""
    row = conn.execute("SELECT data FROM graph_state WHERE part = 'meta'").fetchone()
    try:
        meta = json.loads(bytes(row[0]).decode("utf-8")) if row is not None else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) and meta.get("version") == STATE_VERSION else {}


def _stored_base(conn, stored: dict) -> str | None:
    """The digest of the incidence base ``graph_state`` holds now (None without one)."""
    if conn.execute("SELECT 1 FROM graph_state WHERE part = 'incidence'").fetchone() is None:
        return None
    return stored.get("incidence_base")


def _table_edits(conn, name: str, edits: TableEdits, base: list | None):
    """``(base info, removed, added)`` to store for the table ``name`` given as ``edits`` (the stored edits
    and these folded together), or None when the stored base is not the one the edits are of, or the edits
    would pass :data:`TABLE_EDITS_SHARE` of its rows (the table is then written whole)."""
    if base is None or edits.base is None or base[0] != edits.base or base[2] != edits.key:
        return None
    # the base's presence only: its data (4 MB of scores at 100k) is not needed here
    if conn.execute("SELECT 1 FROM graph_state WHERE part = ?", (name,)).fetchone() is None:
        return None
    parts = dict(conn.execute("SELECT part, data FROM graph_state WHERE part IN (?, ?)",
                              (f"{name}:removed", f"{name}:added")).fetchall())
    if (f"{name}:removed" in parts) != (f"{name}:added" in parts):
        return None
    key = edits.key
    if f"{name}:added" in parts:
        gone, came = _read_table(parts[f"{name}:removed"]), _read_table(parts[f"{name}:added"])
    else:
        gone, came = pd.DataFrame({key: pd.Series([], dtype=object)}), edits.added.iloc[0:0]
    now_gone = [str(k) for k in edits.removed]
    came_keys = set(came[key].astype(str).tolist())
    removed = sorted(set(gone[key].astype(str).tolist()) | {k for k in now_gone if k not in came_keys})
    added = _concat_rows([came[~isin_text(came[key], now_gone)] if now_gone else came, edits.added])
    if len(removed) + len(added) > TABLE_EDITS_SHARE * max(int(base[1]), 1):
        return None
    return base, pd.DataFrame({key: pd.Series(removed, dtype=object)}), added


def load_state(conn) -> tuple[ClusterState, dict[str, pd.DataFrame], dict[str, Any]] | None:
    """``(state, extra tables, meta)`` as :func:`save_state` wrote them; None (the run then clusters everything)
    when there is none, it is of another version, or it is damaged: a part unreadable, half of the edits of
    the incidence or of a table, a base of another row count than recorded. The incidence is the base with
    its edits applied (``state.edits`` set, so the next save writes only edits while they stay small); a
    table kept as edits is read as its base's rows that are left, then the added rows."""
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'graph_state'").fetchone()
    if has is None:
        return None
    parts = dict(conn.execute("SELECT part, data FROM graph_state").fetchall())
    if "meta" not in parts or "incidence" not in parts or "clusters" not in parts:
        return None
    meta = json.loads(parts.pop("meta").decode("utf-8"))
    if meta.get("version") not in READABLE_VERSIONS:
        return None
    try:
        base = _read_incidence(parts.pop("incidence"))
        removed, added = parts.pop("incidence_removed", None), parts.pop("incidence_added", None)
        inc, edits = base, None
        if meta.get("version") == STATE_VERSION and meta.get("incidence_base") is not None:
            edits = IncidenceEdits(meta["incidence_base"], int(meta["incidence_base_rows"]),
                                   pa.array([], pa.string()), base.slice(0, 0))
            if base.num_rows != edits.base_rows:
                return None
            if removed is not None and added is not None:
                edits.removed = _read_incidence(removed).column("mention_id").combine_chunks().cast(pa.string())
                edits.added = _read_incidence(added).cast(base.schema)
                inc = _apply_edits(base, edits)
        if edits is None and (removed is not None or added is not None) or (removed is None) != (added is None):
            return None  # edits without the base they apply to, or half of them: not usable
        edit_parts = {k: parts.pop(k) for k in [k for k in parts if k.endswith((":removed", ":added"))]}
        tables = {k: _read_table(v) for k, v in parts.items()}
        for name, (_, rows, key) in (meta.get("table_bases") or {}).items():
            if (f"{name}:removed" in edit_parts) != (f"{name}:added" in edit_parts):
                return None  # half of a table's edits: not usable (as for the incidence)
            if f"{name}:added" in edit_parts and name in tables:
                if len(tables[name]) != int(rows):
                    return None  # edits of another base
                gone = _read_table(edit_parts[f"{name}:removed"])[key].astype(str).tolist()
                table = tables[name]
                tables[name] = _concat_rows([table[~isin_text(table[key], gone)] if gone else table,
                                             _read_table(edit_parts[f"{name}:added"])])
        state = ClusterState(meta["fingerprint"], inc, tables.pop("clusters"), list(meta["columns"]),
                             tables.pop("components", None), edits)
    except (KeyError, ValueError, OSError, pa.ArrowException):  # damaged or foreign: cluster everything
        return None
    return state, tables, meta


def _apply_edits(base: pa.Table, edits: IncidenceEdits) -> pa.Table:
    """The incidence a base and its edits stand for (:class:`IncidenceEdits`)."""
    table = base
    if len(edits.removed):
        gone = pc.fill_null(_is_in(_text_column(base, "mention_id"), edits.removed), False)
        table = base.filter(pc.invert(gone))
    return pa.concat_tables([table, edits.added]).combine_chunks()


def drop_state(conn) -> None:
    """Forget the stored state (the next run clusters everything), e.g. after a purge."""
    conn.execute(STATE_TABLE)
    conn.execute("DELETE FROM graph_state")
