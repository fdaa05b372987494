"""The map of linkage: one function per stage, called in order by :func:`run`.

    load -> normalise -> block -> compare/score -> resolve entities -> build graph -> communities
         -> score/route clusters -> store (embedded, and Neo4j when asked) -> feedback (report status)

In:  input files (optional: the store may already hold reports) and a store path.
Out: the store filled stage by stage, and a :class:`RunSummary` with the ranked clusters.
Each stage reads what the previous one wrote; every stage is deterministic for the same input and seed.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from linkage.errors import ConfigError
from linkage.arrays import LISTED_TEXT
from linkage.gcpause import paused_gc
from linkage.runlock import exclusive
from linkage.settings import Settings, load_settings
from linkage.store import EmbeddedStore
from linkage.store.embedded import CLUSTER_ROW_COLUMNS, bump_er_generation, er_generation
from linkage.store.readahead import ReadAhead, ReadsAhead
from linkage.store.stable_ids import carry_over

STAGES = ("load", "resolve", "clusters", "score", "store", "status")

#: A run copies the write-ahead log into the store file behind the resolve stage's back
#: (:meth:`~linkage.store.embedded.EmbeddedStore.checkpoint_behind`) only after a load of at least this many
#: rows; a smaller load's pages wait for the copy after the resolve stage. The resolve stage's forked worker
#: waits for a copy still running: the ~1.7 MB of log a +1,000-report load writes took 0.01-0.37 s to copy
#: (the disk's ``fsync``) and held that fork up to 0.17 s in one of three runs.
CHECKPOINT_AFTER_LOAD_ROWS = 20_000


def load_stage(files: Sequence[Path], store_path: Path, settings_path: Optional[Path] = None,
               mapping: Optional[Path] = None, progress_factory: Optional[Callable] = None):
    """Load ``files`` into the store at ``store_path``; returns a :class:`loaders.LoadSummary`.

    When the store did not exist and the files cannot be loaded at all (missing, of an unknown kind), no
    store is left behind: the empty one just created is removed before the error is raised.
    Another job changing the same store (``run``, ``load``, ``purge``) makes this raise
    :class:`~linkage.errors.StoreError` at once (:mod:`linkage.runlock`).
    """
    settings = load_settings(settings_path)
    with _no_new_store_on_input_error(store_path), exclusive(store_path, "load"), EmbeddedStore(store_path) as store:
        bar_cm = progress_factory() if progress_factory else nullcontext(None)
        with bar_cm as bar:
            return _load(files, store, settings, mapping, bar)


@contextmanager
def _no_new_store_on_input_error(store_path: Path) -> Iterator[None]:
    """When the store did not exist before and the body raises :class:`~linkage.errors.InputError` (a file
    missing or of an unknown kind), remove the store the body created (with its WAL files) before the error
    goes on."""
    from linkage.errors import InputError

    new_store = not Path(store_path).exists()
    try:
        yield
    except InputError:
        if new_store:
            for suffix in ("", "-wal", "-shm"):
                Path(str(store_path) + suffix).unlink(missing_ok=True)
        raise


def _load(files, store, settings, mapping, bar):
    from loaders import load_files

    tasks: dict[str, int] = {}

    def progress(label: str, n: int) -> None:
        if bar is None:
            return
        if label not in tasks:
            tasks[label] = bar.add_task(f"loading {Path(label).name}", total=None)
        bar.advance(tasks[label], n)

    return load_files(files, store, settings, mapping, progress)


@dataclass
class RunSummary:
    """What a run did: counts per stage, seconds per stage, and the ranked clusters.

    ``clusters`` (every stored cluster row, ranked, as ``store.clusters()`` reads them) is read from the store
    when first asked for if the run did not keep it (an incremental run re-uses most rows without reading
    their long texts); :meth:`top_clusters` reads only the rows it gives. Such a late read raises
    :class:`~linkage.errors.StoreError` when the store is gone or holds a later run's clusters (``run_id``
    against ``meta`` :data:`CLUSTERS_RUN`), never another run's rows.
    """

    store: Path
    load: Any = None
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    neo4j: Any = None
    _clusters: Optional[pd.DataFrame] = field(default=None, repr=False)
    run_id: Optional[int] = None

    def _open_own_run(self) -> EmbeddedStore:
        """The store, open, checked to still hold this run's clusters (StoreError otherwise)."""
        from linkage.errors import StoreError

        store = EmbeddedStore(self.store, must_exist=True)
        held = store.get_meta(CLUSTERS_RUN)
        if self.run_id is not None and str(held) != str(self.run_id):
            store.close()
            raise StoreError(f"{self.store} now holds the clusters of a later run (run {held}, not {self.run_id}); "
                             "read them with 'linkage clusters'.")
        return store

    @property
    def clusters(self) -> pd.DataFrame:
        """Every cluster row, ranked (read from the store the first time when the run did not keep them)."""
        if self._clusters is None:
            with self._open_own_run() as store:
                self._clusters = store.clusters()
        return self._clusters

    @clusters.setter
    def clusters(self, value: Optional[pd.DataFrame]) -> None:
        self._clusters = value

    @property
    def n_clusters(self) -> int:
        """How many clusters the run stored."""
        if self._clusters is None and "clusters" in self.counts:
            return int(self.counts["clusters"])
        return len(self.clusters)

    def top_clusters(self, top: int | None) -> pd.DataFrame:
        """The first ``top`` rows of :attr:`clusters` (all when None), reading only those when the run did not
        keep the rows."""
        if top is None or self._clusters is not None:
            return self.clusters if top is None else self.clusters.head(top)
        with self._open_own_run() as store:
            return store.top_clusters(top)

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        clusters = self.top_clusters(top)
        return {
            "store": str(self.store),
            "load": self.load.to_dict() if self.load is not None else None,
            "counts": self.counts,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "clusters": [cluster_record(r) for r in clusters.to_dict("records")],
            "neo4j": self.neo4j,
        }


def cluster_record(row: dict) -> dict[str, Any]:
    """A stored cluster row as plain JSON-ready data (JSON columns decoded)."""
    out = dict(row)
    for key in ("categories", "agencies", "signals", "routing"):
        val = out.get(key)
        if isinstance(val, str) and val[:1] in "[{":
            try:
                out[key] = json.loads(val)
            except json.JSONDecodeError:
                pass
    return out


def _as_list(value: Any) -> list:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        if value.startswith("["):
            return json.loads(value)
        return [v for v in value.split(";") if v]
    return list(value)


def _json_lists(values: Sequence[Any]) -> list[str]:
    """``json.dumps(_as_list(v), ensure_ascii=False)`` of each value, each distinct list encoded once (clusters
    share a few category and agency lists: 11,000 clusters, some hundreds of lists).

    >>> _json_lists([["a", "b"], "a;b", None, ["a", "b"]])
    ['["a", "b"]', '["a", "b"]', '[]', '["a", "b"]']
    """
    done: dict[tuple, str] = {}
    out = []
    for v in values:
        items = tuple(_as_list(v))
        try:
            text = done.get(items)
        except TypeError:  # unhashable items: encoded as they are
            out.append(json.dumps(list(items), ensure_ascii=False))
            continue
        if text is None:
            text = done[items] = json.dumps(list(items), ensure_ascii=False)
        out.append(text)
    return out


def _renamed(values: pd.Series, rename: Mapping[str, str]) -> pd.Series:
    """``values.map(rename)`` (a value not in ``rename``: missing), by one hash look-up per value in Arrow when
    ``values`` is a pandas text column and ``rename`` maps text to text (41,000 memberships: ~0.015 -> ~0.005 s);
    ``Series.map`` otherwise. Same values, type, index and name.

    >>> _renamed(pd.Series(["a", "b", None, "c"], name="g"), {"a": "A", "b": "B"}).tolist()
    ['A', 'B', nan, nan]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = values.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return values.map(rename)
    try:
        keys = pa.array(list(rename), type=pa.large_string())
        finals = pa.array(list(rename.values()), type=pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: pandas' own way
        return values.map(rename)
    column = pa.array(values.array)
    column = column.cast(pa.large_string()) if column.type != pa.large_string() else column
    out = pc.take(finals, pc.index_in(column, value_set=keys)) if len(keys) else pa.nulls(len(column), pa.large_string())
    return pd.Series(pd.array(out, dtype=dtype), index=values.index, name=values.name)


def _cpu_time() -> float:
    """CPU seconds of this process and of its finished child processes (the load, resolve and scoring
    workers)."""
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def resolve_stage(store: EmbeddedStore, settings: Settings, progress: Callable[[str], None] | None = None,
                  full: bool = False, changed: Optional[list] = None,
                  ahead: Optional[ReadsAhead] = None) -> dict[str, int]:
    """Resolve every stored mention into entities; store entities, assignments, the model and the state.

    Incremental by default: when the store holds a model and the state of an earlier run (``er_state``:
    prepared features, every scored pair in compact form, cluster regions; see
    :mod:`linkage.resolve.incremental`), only the new mentions are prepared, blocked against the stored
    features, compared and scored with the stored, frozen model; only the cluster regions they reach are
    clustered again, and only changed rows are written. That gives what a full run with that model gives.
    Without a usable state (deleted mentions, changed judgements) the stored pairs are re-read, every pair
    blocking makes now is listed and only those the stored pairs lack are scored (a new mention's, a block's
    that fell back under its cap; stored pairs no rule makes any more are dropped; older stores: from the
    ``er_pairs`` table), provided they were made by the same blocking rules (meta ``er_blocking``,
    :func:`linkage.resolve.incremental.blocking_digest`); after a change of the rules every candidate pair is
    scored again with the stored model. The scored pairs are kept in the state only; ``er_pairs`` stays empty (:func:`linkage.report.explore.er_pairs` reads them from the state).
    ``full=True`` refits the model and scores every candidate pair again. Entity ids carry over from the
    previous run where an entity kept most of its mentions. ``changed``, when given, receives the ids of the
    mentions whose entity may have changed when the incremental path ran (counts then hold
    ``touched_mentions``); it stays empty otherwise. ``ahead``: the caller's reads ahead (:func:`read_ahead`),
    whose ``er_state`` (every type's stored state) the incremental path uses when it is still the store's.
    """
    from linkage.resolve import resolve_mentions
    from linkage.resolve.incremental import (blocking_digest, outdated_state, resolve_store_incremental,
                                             save_encoded_state, state_hash)

    judgements = _judgements(store)
    raw_model = store.get_meta("er_model")
    outdated = outdated_state(store.conn)  # an earlier version's state: rebuilt by this run, said in the counts
    if not full and raw_model is not None:
        # the stored state (features, scored pairs, cluster regions) lets only the new mentions be worked on
        # (the states read ahead are handed over, not kept here: not held through a full path that follows).
        # They are taken once the state's meta row and the new mentions are read (and, while the reads go on,
        # the new mentions prepared): that work waits for no reads
        counts = resolve_store_incremental(
            store, json.loads(raw_model), judgements, progress, changed=changed, processes=settings.resolve_processes,
            parallel_min_mentions=settings.resolve_parallel_min_mentions,
            ready=None if ahead is None else (lambda: _take_states(ahead)),
            reading=None if ahead is None else (lambda: _reading_first_states(ahead)))
        if counts is not None:
            return counts
    if ahead is not None:
        _take_states(ahead)  # not used (its reading ended early): not held through the full path
    from functools import partial

    from linkage.resolve.engine import MentionsByType
    from linkage.resolve.features import INPUT_COLUMNS
    from linkage.store.embedded import mentions_of_type

    # each entity type's mentions are read by the process that resolves the type (in parallel); all reads stop
    # at the mentions stored now (rowid bound), so a load committing meanwhile cannot split what they see
    bound = store.conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM mentions").fetchone()[0]
    # (only the columns feature preparation reads, as plain values)
    read = partial(mentions_of_type, store.path, max_rowid=bound, columns=INPUT_COLUMNS)
    mentions = MentionsByType(store.mention_type_counts(bound), read)
    previous = store.mention_entities()
    kwargs: dict[str, Any] = {}
    blocking = blocking_digest()
    if not full and raw_model is not None:
        kwargs["model"] = json.loads(raw_model)  # frozen: the same model scores old and new pairs alike
        # stored pairs are re-used only when they were made by today's blocking rules (a store written before a
        # change of caps or rules, or by a version that did not record them, is scored again once, all pairs)
        if len(previous) and store.get_meta("er_blocking") == blocking:
            stored_ids = [r[0] for r in store.conn.execute("SELECT mention_id FROM mentions WHERE rowid <= ?", (bound,))]
            kwargs["new_mention_ids"] = sorted(set(stored_ids) - set(previous["mention_id"]))
            kwargs["existing_pairs"] = _stored_pairs(store)
    if sum(mentions.counts.values()) >= settings.resolve_parallel_min_mentions:
        kwargs["processes"] = settings.resolve_processes
    # each type's part of the incremental state is made and encoded by the process that resolved the type (in
    # parallel with the others), which then sends back blobs instead of its records and pairs
    resolution = resolve_mentions(mentions, judgements=judgements, progress=progress,
                                  finish_type=partial(_encoded_state, judgements=judgements), **kwargs)
    del mentions
    encoded = resolution.diagnostics.pop("finished", {})
    assignments = resolution.assignments.copy()
    entities = resolution.entities.copy()

    say = progress or (lambda stage: None)
    if len(previous):
        say("carrying entity ids over")
        rename, _ = carry_over(previous.set_index("mention_id")["entity_id"],
                               assignments.set_index("mention_id")["entity_id"], events=False)  # none kept
        assignments["entity_id"] = assignments["entity_id"].map(rename)
        entities["entity_id"] = entities["entity_id"].map(rename)

    say("writing entities, pairs and the incremental state")
    model = resolution.model if isinstance(resolution.model, dict) else _model_dict(resolution.model)
    model_json = json.dumps(model, default=str)
    state_model_hash = state_hash(json.loads(model_json))
    with store.transaction() as conn:
        store.bulk_replace("mention_entities", assignments, ["mention_id", "entity_id", "entity_type"], "mention_id")
        bump_er_generation(conn)
        ent_cols = [c for c in ("entity_id", "entity_type", "label", "n_mentions", "attributes") if c in entities.columns]
        entities["n_mentions"] = entities["n_mentions"].astype(int)
        store.bulk_replace("entities", entities, ent_cols, "entity_id")
        # every scored pair is kept in the state (compact: indices, numbers, level codes), not as 4.6 M rows
        # of ``er_pairs`` at 100,000 reports; explore.er_pairs and the full path read them from there
        conn.execute("DELETE FROM er_pairs")
        n_pairs = sum(n for _, n in encoded.values())
        store.set_meta("er_model", model_json)
        store.set_meta("er_blocking", blocking)
        save_encoded_state(conn, state_model_hash, judgements,
                           {etype: enc for etype, (enc, _) in encoded.items()})
    return {"mentions": len(assignments), "entities": len(entities),
            "new_mentions": len(kwargs.get("new_mention_ids", assignments)),
            "pairs": n_pairs, **({"state_rebuilt": 1} if outdated else {})}


def _encoded_state(etype: str, outcome: dict[str, Any], judgements: list) -> tuple[Any, int]:
    """``(encoded incremental state of the type, its number of scored pairs)`` from one resolved type's
    ``outcome`` (``records``, ``pairs``, ``model``: :func:`linkage.resolve.resolve_mentions`' ``finish_type``),
    as :func:`linkage.resolve.incremental.state_from_resolution` and ``save_state`` make and write it; the
    model goes through JSON as the stored model does."""
    from linkage.resolve.incremental import encode_type_state, type_state

    model = None if outcome["model"] is None else json.loads(json.dumps(outcome["model"], default=str))
    pairs = outcome["pairs"]
    state = type_state(etype, outcome["records"], pairs, model, judgements)
    return encode_type_state(state), 0 if pairs is None else len(pairs)


def _stored_pairs(store: EmbeddedStore):
    """The scored pairs of the last run in the form the resolver takes back (``existing_pairs``): from the
    stored state (compact), or from the ``er_pairs`` table of a store an older version wrote."""
    from linkage.resolve.incremental import stored_scored_pairs

    scored = stored_scored_pairs(store.conn)
    if scored is not None:
        return scored
    df = store.frame("SELECT left_id, right_id, entity_type, weight AS match_weight, probability AS match_probability, "
                     "matched, levels, reason FROM er_pairs")
    df["matched"] = df["matched"].fillna(0).astype(bool)
    df["reason"] = df["reason"].fillna("")
    return df


def _model_dict(model: Any) -> Any:
    for attr in ("to_dict", "as_dict", "to_json"):
        if hasattr(model, attr):
            return getattr(model, attr)()
    return str(model)


def _judgements(store: EmbeddedStore) -> list[tuple[str, str, str]]:
    try:
        from linkage.resolve.judgements import current_judgements
    except ImportError:  # pragma: no cover - present once the judgements module lands
        return []
    return list(current_judgements(store))


def graph_inputs(store: EmbeddedStore, entities: bool = True, links: bool = True
                 ) -> tuple[pd.DataFrame, pd.DataFrame, Optional[pd.DataFrame], Optional[pd.DataFrame]]:
    """reports, mentions (with entity_id), links and entities as the graph stage expects them.

    ``entities=False`` leaves the entities out (None): clustering does not need them and the scoring stage
    reads the labels of the clustered entities only (:func:`entity_rows`); ``links=False`` likewise leaves
    the links out (:func:`report_links` reads those of the reports scored). ``mentions.anchored`` is 1 when
    a mention gives an identifying field (a person's BSN or birth date, ``[anchors]`` in ``graph.toml``):
    the graph counts a link that rests on a name match only less.
    """
    reports = store.frame(_graph_reports_sql())
    mentions = store.frame(_graph_mentions_sql())
    links = store.links() if links else None
    ents = store.frame("SELECT entity_id, entity_type, label, n_mentions FROM entities ORDER BY entity_id") \
        if entities else None
    return reports, mentions, links, ents


#: :func:`entity_rows` reads the whole ``entities`` table and filters it when at least this share of it is
#: wanted (a full run wants most entities: one scan beats 300,000 inserts into a temporary table and a join).
ENTITY_SCAN_SHARE = 0.25


#: The columns :func:`entity_rows` gives by default (scoring reads only ``entity_id, label``).
ENTITY_COLUMNS = ("entity_id", "entity_type", "label", "n_mentions")


def entity_rows(store: EmbeddedStore, entity_ids: Sequence[str], columns: Sequence[str] = ENTITY_COLUMNS
                ) -> pd.DataFrame:
    """``columns`` (some of :data:`ENTITY_COLUMNS`, ``entity_id`` first) of the given entities, sorted by id.

    A few ids: one indexed join through a temporary table. Many (at least :data:`ENTITY_SCAN_SHARE` of the
    table): the whole table in id order, filtered; both give the same rows in the same order.
    """
    from linkage.triage.scoring import _isin

    cols = list(columns)
    if cols[:1] != ["entity_id"] or not set(cols) <= set(ENTITY_COLUMNS):  # fixed names put into the SQL
        raise ValueError(f"entity_rows reads entity_id first and some of {ENTITY_COLUMNS}, not {cols!r}")
    conn = store.conn
    wanted = [str(e) for e in entity_ids]
    if wanted and len(wanted) >= ENTITY_SCAN_SHARE * store.count("entities"):
        every = store.frame(f"SELECT {', '.join(cols)} FROM entities ORDER BY entity_id")
        return every[_isin(every["entity_id"], wanted)].reset_index(drop=True)
    with store.transaction():
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted_entities (entity_id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM temp.wanted_entities")
        conn.executemany("INSERT OR IGNORE INTO temp.wanted_entities (entity_id) VALUES (?)",
                         [(e,) for e in wanted])
    # CROSS JOIN keeps this loop order (wanted entities outermost, then one sort): a plain JOIN lets SQLite
    # scan every entity to follow the ORDER BY index (6,000 of 312,000 entities: 0.07 -> 0.03 CPU s)
    out = store.frame(f"SELECT {', '.join('e.' + c for c in cols)} FROM temp.wanted_entities w "
                      "CROSS JOIN entities e ON e.entity_id = w.entity_id ORDER BY e.entity_id")
    conn.execute("DROP TABLE temp.wanted_entities")
    return out


def report_links(store: EmbeddedStore, report_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of ``store.links()`` whose source mention is in one of ``report_ids``, in the same order
    (``src_mention_id, dst_mention_id, rel_type``): all that scoring those reports' clusters reads of the links
    (:func:`linkage.triage.scoring.build_contexts` joins a link on its source mention)."""
    # the ids go in as one JSON text (json_each, each id once), as _graph_reports reads its reports: no
    # temporary table to fill row by row. CROSS JOIN keeps this loop order (wanted reports outermost): a
    # plain JOIN lets SQLite scan every link to follow the ORDER BY index
    return store.frame("SELECT l.src_mention_id, l.dst_mention_id, l.rel_type, l.report_id "
                       "FROM (SELECT DISTINCT value AS report_id FROM json_each(?)) w "
                       "CROSS JOIN mentions m ON m.report_id = w.report_id "
                       "CROSS JOIN mention_links l ON l.src_mention_id = m.mention_id "
                       "ORDER BY l.src_mention_id, l.dst_mention_id, l.rel_type",
                       (json.dumps([str(r) for r in report_ids]),))


def mention_links(store: EmbeddedStore, mention_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of ``store.links()`` whose source mention is one of ``mention_ids``, in the same order and with
    the columns :func:`report_links` gives: one look-up of the links' key per mention, without reading the
    (wide) rows of the ``mentions`` table.

    Scoring joins a link to its source mention among the clustered mentions with an entity
    (:func:`linkage.triage.scoring._gather`, an inner join): given the ids of those mentions of some reports, this
    gives the rows of :func:`report_links` of those reports that the join keeps, in their order, so the scores
    are the same (4,000 reports, 16,500 mentions: ~0.07 -> ~0.045 CPU s)."""
    return store.frame("SELECT l.src_mention_id, l.dst_mention_id, l.rel_type, l.report_id "
                       "FROM (SELECT DISTINCT value AS mention_id FROM json_each(?)) w "
                       "CROSS JOIN mention_links l ON l.src_mention_id = w.mention_id "
                       "ORDER BY l.src_mention_id, l.dst_mention_id, l.rel_type",
                       (json.dumps([str(m) for m in mention_ids]),))


@dataclass
class ClusterStep:
    """What the clusters stage hands the scoring stage: the clusters, the inputs the scoring reuses, and
    what the last run left to re-use (see :func:`communities_stage`)."""

    report_clusters: pd.DataFrame
    inputs: tuple
    update: Any = None              # linkage.graph.incremental.ClusterUpdate
    previous_scores: Optional[pd.DataFrame] = None
    previous_meta: dict = field(default_factory=dict)
    parts: Optional[pd.DataFrame] = None  # set by score_stage: the scored clusters' parts (not the re-used ones, named in kept_ids), kept for the next run
    now: Optional[dt.date] = None         # the newest report's date, when ``inputs`` hold only some reports
    n_reports: Optional[int] = None       # the number of stored reports, likewise
    reused: dict = field(default_factory=dict)  # set by score_stage: raw id -> stored id of rows taken as stored
    routing: str = ""                     # set by score_stage: the routing fingerprint its routing was decided under
    # set by score_stage on the incremental path: the clusters whose parts it took from ``previous_scores`` as
    # they were (rescored or re-used rows); save_cluster_state writes only the other clusters' rows as edits
    kept_ids: Optional[set] = None
    # set by score_stage when it read the stored rows (_stored_rows): the ids ``cluster_rows`` holds, for
    # store_clusters (only that stage writes the table)
    stored_ids: Optional[set] = None
    # communities_stage on the changed-mentions path: ``inputs`` then hold no reports (None); this gives the rows
    # of :func:`graph_inputs`' reports of the given report ids (:func:`_graph_reports`), and score_stage reads
    # only those of the clusters it gathers
    read_reports: Optional[Callable[[Sequence[str]], pd.DataFrame]] = None
    region: Optional[list] = None  # likewise: the region's report ids (all reports that may be gathered)
    # the last run's kept short cluster rows (KEPT_ROWS, by raw id), when kept: _stored_rows takes the re-used
    # rows' values from them instead of reading the clusters table
    previous_rows: Optional[pd.DataFrame] = None


def communities_stage(store: EmbeddedStore, settings: Settings, seed: Optional[int] = None,
                      full: bool = False, changed: Optional[Sequence[str]] = None,
                      er_generation_before: Optional[int] = None, ahead: Optional[ReadAhead] = None,
                      later: Optional[ReadAhead] = None, relabelled: Optional[set] = None) -> ClusterStep:
    """Build the report graph from resolved entities and find communities.

    Incremental by default: the clusters of the last run (kept in ``graph_state``) are re-used for every
    connected component of the report graph whose links did not change, and only the others are clustered
    again; that gives what clustering everything gives (:mod:`linkage.graph.incremental`). ``full=True``
    clusters everything. The scoring stage reuses the reports, mentions, links and entities read here
    (entities: only those the re-scored clusters mention; links: None when a state was loaded, the scoring
    stage then reads only the re-scored clusters' links with :func:`report_links`).

    ``changed`` (the mentions the resolve stage wrote, see :func:`resolve_stage`) lets a run whose kept state
    and scores can be used read only those mentions and, for the components they reach, their reports and
    mentions (:func:`linkage.graph.incremental.update_changed`); ``inputs`` then hold just those mentions and
    no reports (None: :func:`score_stage` reads those of the clusters it scores, through
    :attr:`ClusterStep.read_reports`), and ``now`` and ``n_reports`` are read from the store. That path needs
    ``er_generation_before`` (the store's :func:`~linkage.store.embedded.er_generation` before this run's
    resolve stage) to equal the generation
    the kept state was built from: after a run interrupted between resolving and saving its clusters, the
    state misses that run's changes, so everything is read.

    ``ahead``: the caller's reads ahead (:func:`read_ahead`): the kept state is taken from them instead of being
    read here; ``later``: those started after the resolve stage (:func:`read_later`), of which the newest report's
    date is taken. ``relabelled``: the ids of the entities whose label the resolve stage changed (:func:`watch_labels`),
    when known: the scoring stage then skips more clusters (``same_inputs`` of
    :func:`linkage.graph.incremental.update_changed`).
    """
    from functools import partial

    from linkage.graph.candidates import candidates_on, stored_candidate_rows, with_candidates
    from linkage.graph.incremental import load_state, update_changed, update_clusters
    from linkage.resolve.judgements import different_pairs

    loaded = None if full else (load_state(store.conn) if ahead is None
                                else ahead.result("cluster_state", lambda: load_state(store.conn)))
    # candidate links (linkage.graph.candidates) are derived from all stored ER pairs: with them switched on
    # a run reads everything (update_changed knows only the mentions' own rows)
    if (loaded is not None and changed is not None and not candidates_on()
            and er_generation_before is not None and loaded[2].get("er_generation") == er_generation_before
            and _scores_usable(loaded[1].get("scores"), loaded[2])):
        cluster_seed = settings.cluster_seed if seed is None else seed
        # the two whole-table counts (~0.02 s at 100,000 reports) in a thread while the changed rows are read
        counting = _graph_counts_behind(store)
        rows = _graph_mentions(store, "mention_id", changed)
        counted = counting() if counting is not None else None
        n_resolved, n_mentions = counted if counted is not None else (_resolved_count(store), None)
        update = update_changed(loaded[0], rows, changed, seed=cluster_seed, n_resolved=n_resolved,
                                relabelled=relabelled)
        if update is not None:
            region = update.region.tolist()
            mentions = _region_mentions(store, update.state, region, n_resolved, update.region_rows,
                                        n_mentions=n_mentions)
            newest = _newest_report(store.conn) if later is None \
                else later.result("newest_report", lambda: _newest_report(store.conn))
            # the region's reports are not read here: the scoring stage reads those of the clusters it gathers
            # (at 100,000 reports +1,000: ~900 of the region's ~5,600, ~0.03 -> ~0.006 s)
            return ClusterStep(update.clusters, (None, mentions, None, None), update, loaded[1].get("scores"),
                               loaded[2], now=dt.date.fromisoformat(newest) if newest else dt.date.today(),
                               n_reports=store.count("reports"), read_reports=partial(_graph_reports, store),
                               region=region, previous_rows=loaded[1].get(KEPT_ROWS))
    # with a state to re-use only the re-scored clusters' links are needed: the scoring stage reads those
    reports, mentions, links, _ = graph_inputs(store, entities=False, links=loaded is None)
    previous, tables, meta = loaded if loaded is not None else (None, {}, {})
    # clustering also sees corroborated possible matches from the ER state (linkage.graph.candidates); they are
    # links, not mentions: scoring gets the mentions alone
    # with [candidates] on, always the same columns (link_weight), so a run with no candidate rows does not
    # make the next one re-cluster everything; analysts' --different judgements hold for these links too
    clustered = mentions
    if candidates_on():
        candidates = stored_candidate_rows(store.conn, reports, mentions, different=different_pairs(store))
        clustered = with_candidates(mentions, candidates)
    update = update_clusters(reports, clustered, previous, seed=settings.cluster_seed if seed is None else seed)
    return ClusterStep(update.clusters, (reports, mentions, links, None), update, tables.get("scores"), meta,
                       previous_rows=tables.get(KEPT_ROWS))


def watch_labels(store: EmbeddedStore) -> Callable[[], Optional[set]]:
    """Start noting, in ``store``'s connection, the entities whose label an ``UPDATE`` of ``entities`` changes
    (a temporary trigger: the resolve stage writes a kept entity's new label so; a new or deleted entity changes
    its mentions' rows, which :func:`linkage.graph.incremental.update_changed` sees). Returns a function that
    stops the noting and gives the ids noted (None when the trigger could not be made: nothing is known)."""
    conn = store.conn
    try:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS relabelled_entities (entity_id TEXT)")
        conn.execute("DELETE FROM temp.relabelled_entities")
        conn.execute("CREATE TEMP TRIGGER IF NOT EXISTS relabel_watch AFTER UPDATE ON main.entities "
                     "WHEN OLD.label IS NOT NEW.label OR OLD.entity_id IS NOT NEW.entity_id "
                     "BEGIN INSERT INTO relabelled_entities VALUES (OLD.entity_id); END")
    except sqlite3.Error:
        return lambda: None

    def noted() -> Optional[set]:
        try:
            conn.execute("DROP TRIGGER IF EXISTS temp.relabel_watch")
            return {r[0] for r in conn.execute("SELECT entity_id FROM temp.relabelled_entities")}
        except sqlite3.Error:
            return None
    return noted


def read_ahead(store: EmbeddedStore, full: bool = False) -> Any:
    """What the resolve, clusters and status stages read of the last run's results, read in two threads while
    this run loads (:class:`~linkage.store.readahead.ReadsAhead`): ``er_state``, every entity type's stored ER
    state (:func:`linkage.resolve.incremental.read_type_states`, for :func:`resolve_stage`: its parent process
    and its forked worker start with their first types' states in hand; the reading of the others ends once the
    resolve stage has those, :func:`_reading_first_states`, and a type not read whole is read by the process
    that updates it), in one thread; ``cluster_state``, the kept
    cluster state (:func:`linkage.graph.incremental.load_state`, for :func:`communities_stage`), and
    ``status_inputs``, the kept status inputs (for :func:`status_stage`), in the other. Each is written only by
    its own stage (the ER state and its generation by the resolve stage; the resolve stage uses the states only
    when they are still the store's), so a run may start this before it loads. A context that waits for the
    reads when left. ``full``: nothing is read ahead (a full run uses no kept state): a context giving None.

    At 100,000 reports + 1,000 the ER states take ~0.3 s (wall and CPU, alone; much of it blob copies and LZ4
    decoding without Python's GIL) that the resolve stage's two processes no longer spend reading (the parent's
    person ~0.2 s wall, the worker's address ~0.1). The price is memory: the decoded states (~0.28 GB) are held
    from the load on (each let go once its type is updated), and the cluster state through the resolve stage
    (the resolve worker, forked after the reads end, shares their pages): a +1,000 run on 100,000 reports peaks
    ~0.15 GB higher in this process (0.50 -> 0.645 GB, ru_maxrss of a fresh process; ~0.12 GB more counted while
    the read maps the store file, pages of the file itself) and ~0.1 GB in the resolve worker (0.43 -> 0.52). In
    the benchmark (session 15) the resolve stage gains ~0.11 s and the load, which the reading shares two cores
    with, loses ~0.13 s: the reading does not yet fit in the load's idle core."""
    from linkage.feedback.lifecycle import read_kept_inputs
    from linkage.graph.incremental import load_state
    from linkage.resolve.incremental import STATE_READ_MMAP, StatesReading, read_type_states

    if full:
        return nullcontext(None)
    # two threads: the resolve stage takes the ER state without waiting for the others' reads. The ER state's
    # blobs are read through a mapping of the store file (as the resolve stage's own read, STATE_READ_MMAP): read
    # page by page they cost ~0.03-0.05 CPU s more; the mapped pages are the file's (page cache, shared, given
    # back when the thread's connection closes), though they count in the process's peak resident size
    progress = StatesReading()
    ahead = ReadsAhead(ReadAhead(store.path, {"er_state": lambda conn: read_type_states(conn, progress)}, "er",
                                 mmap_size=STATE_READ_MMAP),
                       ReadAhead(store.path, {"cluster_state": load_state, "status_inputs": read_kept_inputs}, "run"))
    ahead.er_progress = progress  # the resolve stage ends the reading when it takes the states (_take_states)
    return ahead


def _take_states(ahead: Any) -> Any:
    """The ER states read ahead (:func:`read_ahead`), the reading told to end after the type it reads (the first
    types are always read: :class:`~linkage.resolve.incremental.StatesReading`)."""
    got = getattr(ahead, "er_progress", None)
    if got is not None:
        got.stop.set()
    return ahead.result("er_state", lambda: None)


def _reading_first_states(ahead: Any) -> bool:
    """Whether the reads ahead of the ER states the resolve stage's processes start with still go on; once they
    are done (the resolve stage asks while it prepares the new mentions ahead) the reading is told to end (at
    its next blob: the types it has not read whole are read by the process that updates them, after the fork,
    instead of the fork waiting for them)."""
    got = getattr(ahead, "er_progress", None)
    if got is not None and got.first.is_set():
        got.stop.set()
        return False
    return ahead.reading("er_state")


def read_later(store: EmbeddedStore, full: bool = False) -> Any:
    """The newest report's date (``newest_report``, :func:`_newest_report`, for :func:`communities_stage`) and
    the stored memberships (``report_clusters``, :func:`~linkage.store.embedded.read_report_clusters`, for
    :func:`score_stage` and :func:`store_clusters`), read in a thread while this run's clusters stage works
    (:class:`~linkage.store.readahead.ReadAhead`, started once the resolve stage is done: a fork waits for the
    thread, and the resolve stage forks its worker). The reports were written by the load stage, before; only
    :func:`store_clusters` writes the memberships, after they are taken. A context that waits for the reads
    when left; ``full``: a context giving None (a full run compares no memberships before its store stage).

    At 100,000 reports +1,000 the reads take ~0.065 s (the date: one aggregate over the reports, ~0.025; 41,000
    memberships read as one text, ~0.04: SQLite makes both without holding Python's GIL, Arrow cuts the text)
    off the run's critical path, against ~0.1 s in the stages; they hold
    ~3 MB until taken. (The stored cluster rows :func:`_stored_rows` reads, ~0.03 s, are not read here: with them
    the clusters stage took ~0.15 s longer, 8 alternating runs; they are fetched row by row, and each row's step
    lets go of the GIL and takes it back, which makes the job's thread wait for it again and again.)"""
    from linkage.store.embedded import read_report_clusters

    return nullcontext(None) if full else ReadAhead(store.path, {"newest_report": _newest_report,
                                                                 "report_clusters": read_report_clusters}, "score")


def _newest_report(conn) -> Optional[str]:
    """The newest report's date (``YYYY-MM-DD``; None without reports): one scan of ``reports`` (~0.025 CPU s
    at 101,000 reports; the job's clusters stage takes it from :func:`read_later`)."""
    return conn.execute("SELECT MAX(substr(received_at, 1, 10)) FROM reports").fetchone()[0]


def _resolved_count(store: EmbeddedStore) -> int:
    """How many mentions have an entity (``mention_entities`` rows whose ``entity_id`` is neither NULL nor
    ''): all rows less the unresolved ones, which the ``entity_id`` index finds without a scan of the table."""
    return _resolved_in(store.conn)


def _resolved_in(conn: sqlite3.Connection) -> int:
    """:func:`_resolved_count` through a connection."""
    return int(conn.execute(
        "SELECT (SELECT COUNT(*) FROM mention_entities) - (SELECT COUNT(*) FROM mention_entities WHERE entity_id = '')"
        " - (SELECT COUNT(*) FROM mention_entities WHERE entity_id IS NULL)").fetchone()[0])


def _graph_counts_behind(store: EmbeddedStore) -> Optional[Callable[[], Optional[tuple[int, int]]]]:
    """A function giving ``(resolved, mentions)``: :func:`_resolved_count` and the number of stored mentions,
    counted in a thread through a connection of its own (each count scans a whole index: ~0.01 s at 100,000
    reports; SQLite counts without Python's GIL, so the clusters stage reads its changed mentions meanwhile);
    it waits for the thread, and gives None when the counting failed. None when another connection would not
    see what ``store`` holds (an open transaction, a store not in a file): the caller counts itself then."""
    import threading

    from linkage.store.embedded import read_only

    path = Path(store.path)
    if store.conn.in_transaction or not path.is_file():
        return None

    def count() -> tuple[int, int]:
        conn = read_only(path)
        try:
            with conn:  # one read transaction: both counts of the same snapshot
                conn.execute("BEGIN")
                return (_resolved_in(conn),
                        int(conn.execute("SELECT COUNT(*) FROM mentions").fetchone()[0]))
        finally:
            conn.close()

    got: list = []

    def work() -> None:
        try:
            got.append(count())
        except Exception:  # noqa: BLE001 - the caller counts in place and meets the error there
            got.append(None)

    thread = threading.Thread(target=work, name="linkage-graph-counts", daemon=True)
    thread.start()

    def result() -> Optional[tuple[int, int]]:
        thread.join()
        return got[0] if got else None  # (a thread ended by a BaseException appended nothing)
    return result


def _graph_reports_sql(where: str = "") -> str:
    """The query of :func:`graph_inputs`' reports (``where``: a fixed filter, never a value)."""
    return ("SELECT report_id, substr(received_at, 1, 10) AS received_at, category, reporter_id, reporter_type "
            f"FROM reports {where} ORDER BY report_id")


def _graph_mentions_sql(where: str = "") -> str:
    """The query of :func:`graph_inputs`' mentions (``where``: a fixed filter on ``m``, never a value)."""
    from linkage.graph.weights import anchored_sql

    return (f"SELECT m.mention_id, m.report_id, m.entity_type, m.role, e.entity_id, {anchored_sql()} AS anchored "
            f"FROM mentions m JOIN mention_entities e USING (mention_id) {where} ORDER BY m.mention_id")


def _graph_reports(store: EmbeddedStore, report_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of :func:`graph_inputs`' reports for ``report_ids``, in the same order."""
    # the ids go in as one JSON text (json_each): no temporary table to fill row by row (5,600 reports of
    # 101,000: 0.033 -> 0.023 s)
    return store.frame(_graph_reports_sql("WHERE report_id IN (SELECT value FROM json_each(?))"),
                       (json.dumps([str(r) for r in report_ids]),))


def _graph_mentions(store: EmbeddedStore, column: str, ids: Sequence[str]) -> pd.DataFrame:
    """The rows of :func:`graph_inputs`' mentions whose ``column`` (``mention_id`` or ``report_id``) is one of
    ``ids``, in the same order."""
    if column not in ("mention_id", "report_id"):  # a fixed name put into the SQL text below
        raise ValueError(f"_graph_mentions reads by mention_id or report_id, not {column!r}")
    return store.frame(_graph_mentions_sql(f"WHERE m.{column} IN (SELECT value FROM json_each(?))"),
                       (json.dumps([str(i) for i in ids]),))


def _region_mentions(store: EmbeddedStore, incidence, report_ids: Sequence[str], n_resolved: int,
                     rows=None, n_mentions: Optional[int] = None) -> pd.DataFrame:
    """What ``_graph_mentions(store, "report_id", report_ids)`` gives, taken from the clusters stage's
    incidence (every resolved mention's graph row, :mod:`linkage.graph.incremental`) when that holds every
    stored mention with the same columns: when each of the store's mentions has an entity (``n_resolved``, the
    number of mentions with one, equals the number of mentions and the incidence's rows) the query's rows are
    the incidence's rows of those reports, sorted by mention id as the query sorts them. ``rows``, when given,
    are those rows already picked (``ClusterUpdate.region_rows``). Otherwise, or for no reports, the query is
    run (the incidence lacks the mentions without an entity). ``incidence``: the table, or the
    :class:`~linkage.graph.incremental.ClusterState` holding it (its size is then read without making a
    pending incidence). ``n_mentions``: the number of stored mentions, when the caller counted them (else
    ``store.count("mentions")``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from linkage.graph.incremental import ClusterState

    n_rows, names = incidence.incidence_size() if isinstance(incidence, ClusterState) \
        else (incidence.num_rows, incidence.column_names)
    columns = [d[0] for d in store.conn.execute(_graph_mentions_sql() + " LIMIT 0").description]
    if (not len(report_ids) or sorted(names) != sorted(columns)
            or not n_resolved == n_rows == (store.count("mentions") if n_mentions is None else n_mentions)):
        return _graph_mentions(store, "report_id", report_ids)
    if rows is None:
        if isinstance(incidence, ClusterState):
            incidence = incidence.incidence
        wanted = pa.array([str(r) for r in report_ids], type=pa.string())
        rows = incidence.filter(pc.fill_null(pc.is_in(incidence.column("report_id"), value_set=wanted), False))
    rows = rows.select(columns)
    # mention ids are unique: arrow's sort (UTF-8 bytes, the code point order pandas sorts by) gives the order
    # of a stable sort by mention id
    return rows.take(pc.sort_indices(rows, sort_keys=[("mention_id", "ascending")])).to_pandas()


def _scores_usable(cached: Optional[pd.DataFrame], meta: dict) -> bool:
    """Whether the scores a state kept can be re-used (same scoring policy, scoring code version and
    signals, every part kept)."""
    from linkage.triage import SIGNALS
    from linkage.triage.scoring import PART_COLUMNS

    return (cached is not None and meta.get("scoring") == _policy_fingerprint()
            and meta.get("signals") == list(SIGNALS) and set(PART_COLUMNS) <= set(cached.columns))


def _policy_fingerprint() -> str:
    """A digest of the scoring policy in effect (stored scores are only valid under the same policy; the
    routing rules have their own fingerprint, :func:`_routing_fingerprint`)."""
    import hashlib
    from dataclasses import asdict

    from linkage.triage.policy import as_policy

    def plain(o: Any) -> Any:  # sets in sorted order: their iteration order changes between processes
        return sorted(o) if isinstance(o, (set, frozenset)) else str(o)

    from linkage.triage.scoring import PARTS_VERSION

    data = {k: v for k, v in asdict(as_policy(None)).items() if k != "source"}
    data["parts_version"] = PARTS_VERSION
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=plain).encode("utf-8")).hexdigest()


def score_stage(report_clusters: pd.DataFrame, inputs, rules: Optional[Path] = None,
                now: Optional[dt.date] = None, step: Optional[ClusterStep] = None,
                store: Optional[EmbeddedStore] = None, processes: int = 1,
                min_parallel: Optional[int] = None, previous: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Score every cluster from its signals and route it by the rules; ranked clusters with reasons.

    With ``step`` (from :func:`communities_stage`) and ``store``, a cluster the last run scored and whose
    component was not clustered again is not scored from its reports; nor is a cluster of a re-clustered
    component whose inputs are those the last run scored it from (the same id and the same digest of
    everything its signals read: :func:`linkage.triage.scoring.inputs_digest`, kept in its parts; checked by
    :func:`~linkage.triage.scoring.score_with_parts` once its inputs are gathered; not even gathered when
    its id, its reports and every mention row of theirs and of the entities they mention are those of the last run
    and no stated link of its mentions leads out of its reports: ``step.update.same_inputs``,
    :func:`linkage.graph.incremental.unchanged_clusters`, :func:`_own_links_only`). When its recency level is the
    one it had at the last run's reference date (:func:`linkage.triage.scoring.recency_level_moved`), the scoring policy
    and routing rules are those of the last run and the ``clusters`` table holds that run's rows, its stored row
    is taken as it is (every signal, the score, reason and routing are functions of the cluster's reports, the
    level and the policies alone: :func:`_stored_rows`); otherwise its score, signals and reason at ``now`` are
    computed from the parts the last run kept (:func:`linkage.triage.scoring.rescore`) and it is routed again.
    Only the other clusters are scored from scratch (in up to ``processes`` processes when there are at least
    ``min_parallel`` of them: :func:`linkage.triage.scoring.score_with_parts`; ``[scoring]`` in the settings).
    Ranks are always decided over all clusters. The parts of every cluster scored or rescored here are left in
    ``step.parts`` for :func:`save_cluster_state`; those of the re-used rows are not copied there (they are
    ``step.previous_scores``' rows, named in ``step.kept_ids``, which :func:`save_cluster_state` keeps as they
    are without reading ``step.parts`` for them). ``previous``: the stored ``report_clusters`` rows (``store.report_clusters()``)
    when the caller has read them (:func:`_stored_rows` finds the stored ids in them).
    """
    from linkage.triage import route
    from linkage.triage.routing import ROUTE_COLUMNS, load_rules, route_rows
    from linkage.triage.scoring import (
        PART_COLUMNS, SCORED_COLUMNS, _isin, rank_scored, recency_level_moved, rescore, score_with_parts,
    )

    reports, mentions, links, entities = inputs
    if reports is None and step is not None and step.read_reports is not None and now is None:
        reports = step.read_reports(step.region or [])  # the reference date needs every report of the region
    if now is None:
        now = _data_now(reports)
    fresh_rc, kept, reused = report_clusters, None, None
    cached = step.previous_scores if step is not None else None
    fingerprint = _routing_fingerprint(rules) if step is not None else ""  # read once: checked and saved alike
    # the rules, read once: the stored rows' agency names, and every scoring process routes its own clusters
    # by them (forked workers inherit them)
    loaded = load_rules(rules)
    keep, known, same, skip = None, None, [], set()
    if (step is not None and step.update is not None and not step.update.everything
            and _scores_usable(cached, step.previous_meta)):
        redo = step.update.recomputed
        # the kept clusters picked by a mask first, and only their few short columns taken: the parts' long
        # texts (head, tail: ~4 KB a cluster) are copied only for the clusters rescored below. A kept cluster
        # is one of today's ids (looked up in the column as it is: no set of its ~100,000 values made in
        # Python, ~8 ms at 100,000 reports) and not re-clustered
        cached_ids = cached["cluster_id"]
        again = _isin(cached_ids, redo)
        keep = _isin(cached_ids, report_clusters["cluster_id"]) & ~again
        fresh_rc = report_clusters[~_isin(report_clusters["cluster_id"], cached_ids[keep])]
        # a re-clustered cluster the last run scored too is scored only when its inputs differ from those
        # its kept parts were made of (score_with_parts compares the digests; ``same``: the ones that do not)
        known = dict(zip(cached_ids[again].tolist(), cached.loc[again, "inputs"].tolist()))
        # of those, the ones whose id, reports and their mentions' entities provably did not change are not even
        # gathered (linkage.graph.incremental.unchanged_clusters; their links checked below): their digest
        # would be the kept one
        skip = set(getattr(step.update, "same_inputs", None) or ()) & known.keys()
    if entities is None and store is not None:
        entities = _label_reader(store)
        if entities is None:
            clustered = mentions.loc[_isin(mentions["report_id"], fresh_rc["report_id"].tolist()), "entity_id"]
            entities = entity_rows(store, clustered.dropna().unique().tolist(), columns=("entity_id", "label"))
    if links is None and store is not None:
        # only the links whose source mention has an entity are joined (_gather): read by those mentions' ids
        if {"mention_id", "report_id", "entity_id"} <= set(mentions.columns):
            # one mask, one column taken: on a run that re-clusters everything ``mentions`` is every mention
            wanted = mentions["entity_id"].notna().to_numpy() & _isin(mentions["report_id"].astype(str),
                                                                      fresh_rc["report_id"].astype(str))
            links = mention_links(store, mentions["mention_id"].to_numpy()[wanted].tolist())
        else:
            links = report_links(store, fresh_rc["report_id"].tolist())
    skip = _own_links_only(skip, fresh_rc, mentions, links) if skip else skip
    if reports is None and step is not None and step.read_reports is not None:
        # only the reports of the clusters gathered below (score_with_parts leaves the others' rows out, and a
        # report of no gathered cluster is dropped by its join): the region's reports but fewer
        gathered = fresh_rc[~_isin(fresh_rc["cluster_id"], list(skip))] if skip else fresh_rc
        reports = step.read_reports(gathered["report_id"].tolist())
    # each scoring process routes its own clusters (routing reads the signal values, given as name -> value)
    scored, parts = score_with_parts(fresh_rc, reports, mentions, links, entities, now=now, processes=processes,
                                     min_parallel=min_parallel, router=lambda frame: route_rows(frame, loaded),
                                     known=known, unchanged=same, skip=skip)
    same += sorted(skip)
    if keep is not None:
        if same:
            keep |= _isin(cached["cluster_id"], same)
        # with the kept counts and categories: _stored_rows takes them when the kept short rows are there
        light = cached.loc[keep, [c for c in ("cluster_id", "n_reports", "newest", "n_reporters", "categories")
                                  if c in cached.columns]].reset_index(drop=True)
        before = step.previous_meta.get("now")
        if (store is not None and before and step.previous_meta.get("routing") == fingerprint
                and step.previous_meta.get("run_id") is not None
                and str(store.get_meta(CLUSTERS_RUN)) == str(step.previous_meta.get("run_id"))):
            still = ~recency_level_moved(light["newest"].tolist(), dt.date.fromisoformat(before), now)
            held: set = set()
            reused = _stored_rows(store, report_clusters, light[still], loaded.agencies, previous=previous,
                                  stored_ids=held, kept_rows=step.previous_rows)
            if step is not None and held:
                step.stored_ids = held
            keep &= ~_isin(cached["cluster_id"], reused["cluster_id"])
        kept = cached[keep].reset_index(drop=True)
    routed = scored["routed"].tolist() if "routed" in scored.columns else []
    if kept is not None and len(kept):
        scores, signals, reasons, kept_values = rescore(kept, now)
        again = pd.DataFrame({"cluster_id": kept["cluster_id"], "score": scores, "n_reports": kept["n_reports"],
                              "n_reporters": kept["n_reporters"],
                              "categories": [json.loads(c) for c in kept["categories"].tolist()],
                              "signals": signals, "reason": reasons})
        routed += route_rows(again[["cluster_id", "score", "categories"]].assign(signals=kept_values), loaded)
        scored = rank_scored([scored[SCORED_COLUMNS], again])
        parts = pd.concat([parts, kept[PART_COLUMNS]], ignore_index=True)
    scored = scored[SCORED_COLUMNS]
    # one frame of all routing rows, as one route() call over every cluster makes it (rules checked even without)
    routed = pd.DataFrame(routed, columns=ROUTE_COLUMNS) if routed else \
        route(scored[["cluster_id", "score", "categories"]].assign(signals=[]), rules)
    out = scored.merge(routed, on="cluster_id", how="left", suffixes=("", "_route"))
    if reused is not None and len(reused):
        out = rank_scored([out, reused[[c for c in out.columns if c != "rank"]]], columns=None)
    if step is not None:
        step.parts = parts
        step.routing = fingerprint
        step.kept_ids = None if kept is None else set(kept["cluster_id"].tolist()) | (
            set(reused["cluster_id"].tolist()) if reused is not None else set())
        # not in ``out.attrs``: pandas deep-copies attrs into every frame derived from ``out``
        step.reused = dict(zip(reused["cluster_id"].tolist(), reused["stored_id"].tolist())) \
            if reused is not None and len(reused) else {}
    return out


def _own_links_only(skip: set, clusters: pd.DataFrame, mentions: pd.DataFrame,
                    links: Optional[pd.DataFrame]) -> set:
    """Those of the clusters ``skip`` none of whose stated links (``links``, by source mention) leads out of the
    cluster's own reports (a link's target mention is read with its own report's entities: only a target among
    the cluster's reports is known unchanged, :func:`linkage.graph.incremental.unchanged_clusters`). A target
    ``mentions`` does not hold counts as leading out; without ``links`` (not read) none is kept."""
    if links is None or not {"mention_id", "report_id"} <= set(mentions.columns):
        return set()
    if not len(links):
        return skip
    from linkage.triage.scoring import _isin

    # the skipped clusters' reports, their mentions, and the links from those: a link counts when its target
    # is a mention of a report of the same cluster
    rc = clusters[_isin(clusters["cluster_id"].astype(str), list(skip))]
    cluster_of_report = dict(zip(rc["report_id"].astype(str).tolist(), rc["cluster_id"].astype(str).tolist()))
    own = mentions[_isin(mentions["report_id"].astype(str), list(cluster_of_report))]
    cluster_of = {m: cluster_of_report[r] for m, r in zip(own["mention_id"].astype(str).tolist(),
                                                           own["report_id"].astype(str).tolist())}
    out = links[_isin(links["src_mention_id"].astype(str), list(cluster_of))]
    pairs = zip(out["src_mention_id"].astype(str).tolist(), out["dst_mention_id"].astype(str).tolist())
    away = {cluster_of[a] for a, b in pairs if cluster_of.get(b) != cluster_of[a]}
    return skip - away


def _label_reader(store: EmbeddedStore) -> Optional[Callable[[list], dict]]:
    """A function giving ``{entity_id: label}`` of the given entity ids (those in the store), read through a
    connection of its own, so that each scoring process reads the labels of its own clusters' entities
    (:func:`linkage.triage.scoring.score_with_parts`), instead of this process reading them all first
    (:func:`entity_rows`). None when another connection would not see what ``store`` holds (an open
    transaction, a store not in a file): the caller reads the rows itself then."""
    from functools import partial

    from linkage.store.embedded import entity_labels

    path = Path(store.path)
    if store.conn.in_transaction or not path.is_file():
        return None
    return partial(entity_labels, path)


#: ``meta`` key: the run whose cluster rows the ``clusters`` table holds (written with them by
#: :func:`store_clusters`; :func:`score_stage` re-uses stored rows only when the kept state is of that run).
CLUSTERS_RUN = "clusters_run"


def _routing_fingerprint(rules: Optional[Path]) -> str:
    """A digest of the routing rules in effect (the rules file's bytes, with the scoring parts' and the routing
    code's versions): a stored cluster's routing is re-used only under the same rules and routing code. An
    unreadable rules file is a :class:`~linkage.errors.ConfigError` naming it, as :func:`route` gives."""
    import hashlib

    from linkage.triage.routing import DEFAULT_RULES, ROUTING_VERSION
    from linkage.triage.scoring import PARTS_VERSION

    path = Path(rules if rules is not None else DEFAULT_RULES)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    return hashlib.sha1(data + f"\x00{PARTS_VERSION}\x00{ROUTING_VERSION}".encode("ascii")).hexdigest()


def _stored_rows(store: EmbeddedStore, report_clusters: pd.DataFrame, kept: pd.DataFrame,
                 names: Mapping[str, str], previous: Optional[pd.DataFrame] = None,
                 stored_ids: Optional[set] = None, kept_rows: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """The stored ``clusters`` rows of the ``kept`` clusters (raw ids, whose members are unchanged since the last
    run), as :func:`score_stage` rows: ``cluster_id`` the raw id, ``stored_id`` the id the row is stored under
    (that of the cluster's first member report, by id, in the stored ``report_clusters``), JSON list columns as
    lists, and ``agency_names`` (from ``names``, the routing rules' agency code -> name). Rows in the order of
    those first reports. A cluster whose stored row is missing or has another report count is left out (it is
    rescored).

    ``previous``: the stored ``report_clusters`` rows when the caller has read them (:func:`run` reads them once
    for this and :func:`store_clusters`); read here otherwise. ``stored_ids``, when given (an empty set), receives
    the id of every stored cluster row when the rows are read (all are: :func:`store_clusters` takes them).

    Only what ranking and routing read is read (:data:`STORED_ROW_COLUMNS`); the long text columns
    (:data:`LEFT_STORED`: signals, ~2 KB a cluster, reason, routing, unrouted reason) stay in the table and are
    None here: :func:`store_clusters` keeps the stored row of a cluster :func:`score_stage` took this way.

    ``kept_rows``: the last run's kept short rows (:data:`KEPT_ROWS`: :data:`KEPT_ROW_COLUMNS` of every cluster
    row it wrote or kept, by raw id: :func:`short_rows`), kept with the state the caller checked to be of the run
    whose rows the table holds. When given (with every column, and ``kept`` with the kept scores' ``n_reporters``
    and ``categories``, which do not change while a cluster's members do not), a kept cluster's values are taken
    from the two, as SQLite gives them back, and only the table's ids are read (its primary key's index; the rows
    are ~2.7 KB each: ~0.03-0.05 s less at 100,000 reports +1,000): a cluster whose stored id the table does not
    hold, or that ``kept_rows`` lacks, or whose report count differs is left out as above."""
    cols = list(STORED_ROW_COLUMNS)
    out_cols = ["cluster_id", "stored_id"] + cols[1:] + ["agency_names"] + list(LEFT_STORED)
    if not len(kept):
        return pd.DataFrame(columns=out_cols)
    import pyarrow as pa
    import pyarrow.compute as pc

    from linkage.arrays import arrow_text, run_starts

    # each kept cluster's first member report (smallest id: Arrow's string min compares UTF-8 bytes, the code
    # point order of Python's str comparison), found over whole columns; clusters in the order of those reports
    # (ties, a report first in two clusters, never in a run: in the order the clusters first occur)
    rc_c = arrow_text(report_clusters["cluster_id"])
    mine = pc.fill_null(pc.is_in(rc_c, value_set=arrow_text(kept["cluster_id"])), False)
    rows_c, rows_r = rc_c.filter(mine), arrow_text(report_clusters["report_id"].astype(str)).filter(mine)
    by_cluster = pa.table({"c": rows_c, "r": rows_r})
    by_cluster = by_cluster.take(pc.sort_indices(by_cluster, sort_keys=[("c", "ascending"), ("r", "ascending")]))
    sc, sr = by_cluster.column("c").combine_chunks(), by_cluster.column("r").combine_chunks()
    head = run_starts(sc)
    firsts = pa.table({"c": sc.filter(head), "r": sr.filter(head)})
    firsts = firsts.append_column("at", pc.index_in(firsts.column("c"), value_set=rows_c))
    firsts = firsts.take(pc.sort_indices(firsts, sort_keys=[("r", "ascending"), ("at", "ascending")]))
    order_c, order_r = firsts.column("c").combine_chunks(), firsts.column("r").combine_chunks()
    if previous is None:
        previous = store.report_clusters()
    at = pc.index_in(order_r, value_set=arrow_text(previous["report_id"]))
    sid = pc.take(arrow_text(previous["cluster_id"]), at).to_pylist()  # None: a first report not stored
    if (kept_rows is not None and set(KEPT_ROW_COLUMNS) <= set(kept_rows.columns)
            and {"n_reporters", "categories"} <= set(kept.columns)):
        return _kept_stored_rows(store, kept, kept_rows, order_c, sid, names, out_cols, stored_ids)
    # one scan of the table's short columns (every row is on a page of its own: a scan reads what a look-up
    # of each row reads); each kept cluster's stored row found by one hash look-up over the ids
    rows = store.conn.execute(f"SELECT {', '.join(cols)} FROM clusters").fetchall()
    if stored_ids is not None:
        stored_ids.update(r[0] for r in rows)
    found = pc.index_in(pa.array(sid, type=pa.large_string()),
                        value_set=pa.array([r[0] for r in rows], type=pa.large_string())).to_pylist()
    n_of = dict(zip(kept["cluster_id"].tolist(), kept["n_reports"].tolist()))
    got = [(c, rows[i]) for c, i in zip(order_c.to_pylist(), found)
           if i is not None and int(n_of[c]) == int(rows[i][2])]
    picked = list(zip(*(row for _, row in got))) if got else [[] for _ in cols]
    return _reused_frame([c for c, _ in got], *picked, names=names, out_cols=out_cols)


def _reused_frame(raw_ids: list, stored: Sequence, score: Sequence, n_reports: Sequence, n_reporters: Sequence,
                  categories: Sequence, agencies: Sequence, names: Mapping[str, str], out_cols: list) -> pd.DataFrame:
    """:func:`_stored_rows`' frame of the rows found (parallel columns: raw and stored ids, then the stored
    values, JSON list columns as text), lists parsed and agency names made."""
    def as_lists(texts: Sequence[Any]) -> list[list]:
        """Each JSON list text as a list of its own (each distinct text parsed once; '' or NULL: [])."""
        parsed = {t: json.loads(t) if isinstance(t, str) and t else [] for t in set(texts)}
        return [list(parsed[t]) for t in texts]

    n = len(raw_ids)
    data: dict[str, list] = {c: [] for c in out_cols}
    if n:
        data["cluster_id"] = list(raw_ids)
        for key, column in zip(out_cols[1:5], (stored, score, n_reports, n_reporters)):
            data[key] = list(column)
        data["categories"] = as_lists(categories)
        data["agencies"] = as_lists(agencies)
        # the names of each distinct agencies text made once
        named = {t: [names.get(a, a) for a in ags] for t, ags in zip(*_first_of_each(agencies, data["agencies"]))}
        data["agency_names"] = [list(named[t]) for t in agencies]
    for c in LEFT_STORED:
        data[c] = [None] * n
    return pd.DataFrame(data, columns=out_cols)


def _kept_stored_rows(store: EmbeddedStore, kept: pd.DataFrame, kept_rows: pd.DataFrame, order_c, sid: list,
                      names: Mapping[str, str], out_cols: list, stored_ids: Optional[set]) -> pd.DataFrame:
    """:func:`_stored_rows` with the values taken from ``kept_rows`` (by raw id; ``order_c``: the kept clusters'
    raw ids in row order, ``sid``: their stored ids, None when not stored): only the table's ids are read (its
    primary key's index, no wide row); a cluster is found when its stored id is in the table, ``kept_rows`` holds
    its raw id and the report counts agree."""
    import pyarrow as pa

    from linkage.arrays import arrow_text, index_in_text, isin_text

    ids = _stored_cluster_ids(store.conn)
    if stored_ids is not None:
        stored_ids.update(ids)
    order = arrow_text(order_c)
    at_raw = index_in_text(order, kept_rows["cluster_id"])
    at_kept = index_in_text(order, kept["cluster_id"])
    stored_at = pa.array(sid, type=pa.large_string())
    found = (at_raw >= 0) & (at_kept >= 0) & isin_text(stored_at, ids)
    n_now = kept["n_reports"].to_numpy()[np.maximum(at_kept, 0)]
    n_then = kept_rows["n_reports"].to_numpy()[np.maximum(at_raw, 0)] if len(kept_rows) else np.full(len(at_raw), -1)
    found &= n_now.astype(np.float64) == n_then.astype(np.float64)
    mask = pa.array(found)
    raw, stored = order.filter(mask).to_pylist(), stored_at.filter(mask).to_pylist()
    idx = at_raw[found]
    mine = at_kept[found]
    return _reused_frame(raw, stored, _sqlite_column(kept_rows["score"], idx, "score"),
                         _sqlite_column(kept_rows["n_reports"], idx, "n_reports"),
                         _sqlite_column(kept["n_reporters"], mine, "n_reporters"),
                         _sqlite_column(kept["categories"], mine, "categories"),
                         _sqlite_column(kept_rows["agencies"], idx, "agencies"), names=names, out_cols=out_cols)


def _stored_cluster_ids(conn: sqlite3.Connection) -> list:
    """The ids ``cluster_rows`` holds, in the order of its primary key's index, as SQLite gives them: made by
    SQLite as one JSON text (~10,000 ids: ~11 -> ~3 ms; a value JSON cannot hold, a blob: read row by row)."""
    try:
        text = conn.execute("SELECT json_group_array(cluster_id) FROM "
                            "(SELECT cluster_id FROM cluster_rows ORDER BY cluster_id)").fetchone()[0]
        return json.loads(text)
    except (sqlite3.Error, ValueError):
        return [r[0] for r in conn.execute("SELECT cluster_id FROM cluster_rows ORDER BY cluster_id")]


def _sqlite_column(values: pd.Series, idx: np.ndarray, column: str) -> list:
    """The values at ``idx`` of a column of :func:`short_rows` as SQLite gives the stored values back: ``score``
    and ``n_reporters`` (REAL) as floats, ``n_reports`` (INTEGER) as ints, a missing number as None; text as is."""
    taken = values.to_numpy()[idx]
    if column in ("score", "n_reporters"):
        taken = taken.astype(np.float64)
        out = taken.tolist()
        return [None if v != v else v for v in out] if np.isnan(taken).any() else out
    if column == "n_reports":
        return taken.astype(np.int64).tolist()
    return [None if v is None or (isinstance(v, float) and v != v) else v for v in taken.tolist()]


def _first_of_each(keys: Sequence[Any], values: Sequence[Any]) -> tuple[list, list]:
    """``(keys, values)`` of the first row of each distinct key, in order of first appearance.

    >>> _first_of_each(["a", "b", "a"], [1, 2, 3])
    (['a', 'b'], [1, 2])
    """
    first: dict = {}
    for k, v in zip(keys, values):
        if k not in first:
            first[k] = v
    return list(first), list(first.values())


#: The columns :func:`_stored_rows` reads of a re-used cluster row, and those it leaves in the table (None).
STORED_ROW_COLUMNS = ("cluster_id", "score", "n_reports", "n_reporters", "categories", "agencies")
LEFT_STORED = ("signals", "reason", "routing", "unrouted_reason")
#: The kept table (``graph_state``, saved by :func:`save_cluster_state`) of every cluster's
#: :data:`KEPT_ROW_COLUMNS` as :func:`store_clusters` stores them, by raw cluster id (:func:`short_rows`): with
#: the kept scores' counts and categories (those of a cluster whose members did not change do not change), the
#: stored row's short columns that :func:`_stored_rows` takes.
KEPT_ROWS = "cluster_rows"
KEPT_ROW_COLUMNS = ("cluster_id", "score", "n_reports", "agencies")


def short_rows(scored: pd.DataFrame) -> Optional[pd.DataFrame]:
    """:data:`KEPT_ROW_COLUMNS` of every row of ``scored`` (:func:`score_stage`'s clusters, raw ids) as
    :func:`store_clusters` writes them (the agencies as JSON text, :func:`_json_lists`), ``score`` as a float (a
    REAL column; a missing one NaN, NULL in the table), ``n_reports`` as an integer (read back as SQLite gives
    them: :func:`_sqlite_column`). None when a column is missing or a number is not one (the table's rows are
    read then).

    >>> short_rows(pd.DataFrame({"cluster_id": ["c_1"], "score": [2.5], "n_reports": [3], "n_reporters": [2],
    ...                          "categories": [["drugs"]], "agencies": [["A"]]})).values.tolist()
    [['c_1', 2.5, 3, '["A"]']]
    """
    if not set(KEPT_ROW_COLUMNS) <= set(scored.columns):
        return None
    try:
        data = {"cluster_id": scored["cluster_id"].astype(str).to_numpy(dtype=object),
                "score": pd.to_numeric(scored["score"]).to_numpy(dtype=np.float64),
                "n_reports": scored["n_reports"].to_numpy(dtype=np.int64)}
    except (TypeError, ValueError):  # values SQLite would store otherwise: the stored rows are read instead
        return None
    data["agencies"] = _json_lists(scored["agencies"].tolist())
    return pd.DataFrame(data, columns=list(KEPT_ROW_COLUMNS))


def save_cluster_state(store: EmbeddedStore, step: ClusterStep, scored: pd.DataFrame, now: dt.date,
                       rules: Optional[Path] = None, run_id: Optional[int] = None) -> None:
    """Keep the clusters and, per cluster (raw ids), its counts, categories and scoring parts
    (:data:`linkage.triage.scoring.PART_COLUMNS`, from ``step.parts``) for the next run's reuse, with the
    reference date, the scoring and routing fingerprints and ``run_id`` (:func:`store_clusters` records the run
    whose rows the ``clusters`` table holds: the next run re-uses stored rows only when the two agree).

    When :func:`score_stage` took the kept scores (the incremental path, ``step.kept_ids``: the clusters whose
    kept row it took as it was, including re-clustered clusters whose inputs digest was unchanged), only the
    rows of the other clusters (those scored from their reports) are made, and the kept table is saved as
    edits of itself
    (:class:`linkage.graph.incremental.TableEdits`: ~10,000 rows, 4 MB at 100,000 reports, written whole only
    when the edits pass their share)."""
    from linkage.graph.incremental import TableEdits, save_state
    from linkage.triage import SIGNALS
    from linkage.triage.scoring import _isin

    cached = step.previous_scores
    rows = _kept_rows_table(step, scored)  # before the scores are cut to their edits
    as_edits = step.kept_ids is not None and cached is not None and step.parts is not None
    if as_edits:
        ids = scored["cluster_id"].tolist()
        had = set(cached["cluster_id"].tolist())
        changed = [c for c in ids if c not in step.kept_ids]
        removed = sorted((had - set(ids)) | (had & set(changed)))
        scored = scored[_isin(scored["cluster_id"], changed)]
    scores = scored[["cluster_id", "n_reports", "n_reporters", "categories"]].copy()
    scores["categories"] = _json_lists(scores["categories"].tolist())
    if step.parts is not None:
        scores = scores.merge(step.parts, on="cluster_id", how="left")
    base = (step.previous_meta.get("table_bases") or {}).get("scores", [None])[0]
    table = TableEdits("cluster_id", base, cached, removed, scores) if as_edits else scores
    with store.transaction() as conn:
        save_state(conn, step.update.state, {"scores": table, **({KEPT_ROWS: rows} if rows is not None else {})},
                   {"now": now.isoformat(), "scoring": _policy_fingerprint(), "signals": list(SIGNALS),
                    "er_generation": er_generation(conn), "routing": step.routing or _routing_fingerprint(rules),
                    "run_id": run_id}, extra_keys={"scores": "cluster_id", KEPT_ROWS: "cluster_id"})


def _kept_rows_table(step: ClusterStep, scored: pd.DataFrame) -> Any:
    """The :data:`KEPT_ROWS` table to keep (:func:`short_rows` of every cluster of ``scored``): as edits of the
    last run's (:class:`linkage.graph.incremental.TableEdits`: the rows of the clusters :func:`score_stage` did
    not take as stored, ~900 of ~10,300 at 100,000 reports +1,000) when that one was kept (``step.previous_rows``)
    and the stored rows were taken (``step.reused`` set by :func:`score_stage`), whole otherwise; None when the
    rows cannot be made (:func:`short_rows`)."""
    from linkage.graph.incremental import TableEdits
    from linkage.triage.scoring import _isin

    previous = step.previous_rows
    base = (step.previous_meta.get("table_bases") or {}).get(KEPT_ROWS, [None])[0]
    if previous is None or base is None or step.kept_ids is None or not set(KEPT_ROW_COLUMNS) <= set(previous.columns):
        return short_rows(scored)
    ids = scored["cluster_id"].tolist()
    had = set(previous["cluster_id"].tolist())
    changed = [c for c in ids if c not in step.reused]
    added = short_rows(scored[_isin(scored["cluster_id"], changed)])
    if added is None:
        return short_rows(scored)
    return TableEdits("cluster_id", base, previous, sorted((had - set(ids)) | (had & set(changed))), added)


def _cluster_counts(reports: Optional[pd.DataFrame], report_clusters: pd.DataFrame,
                    clusters: pd.DataFrame) -> dict[str, int]:
    """Counts of the run; ``reports`` None (not read: :attr:`ClusterStep.read_reports`) counts 0 (the caller
    then takes :attr:`ClusterStep.n_reports`)."""
    return {"reports": len(reports) if reports is not None else 0,
            "clusters": int(clusters["cluster_id"].nunique()) if len(clusters) else 0,
            "clustered_reports": len(report_clusters)}


def _data_now(reports: pd.DataFrame) -> dt.date:
    """The reference date for recency: the newest report's date (so results do not depend on today)."""
    if len(reports) == 0:
        return dt.date.today()
    return dt.date.fromisoformat(str(reports["received_at"].max())[:10])


CLUSTER_TABLE_COLUMNS = ("cluster_id", "rank", "score", "n_reports", "n_reporters", "categories", "agencies",
                         "reason", "signals", "routing", "unrouted_reason")


def store_clusters(store: EmbeddedStore, report_clusters: pd.DataFrame, clusters: pd.DataFrame,
                   run_id: Optional[int] = None, full: bool = False, reused: Optional[dict] = None,
                   members: Optional[list] = None, read_back: bool = True,
                   previous: Optional[pd.DataFrame] = None, stored_ids: Optional[set] = None,
                   on_final: Optional[Callable[[pd.DataFrame, pd.DataFrame], None]] = None) -> pd.DataFrame:
    """Write clusters with ids carried over from the previous run; record merges and splits.

    The rows go into ``cluster_rows`` and the ranks into ``cluster_ranks`` (the view ``clusters`` reads them
    together: :data:`linkage.store.embedded.CLUSTERS_SCHEMA`). Only the rows that changed are written: removed
    clusters and memberships are deleted, new or changed ones written, and every rank written anew (a few bytes
    a cluster; most ranks move when clusters come in); ``full=True`` rewrites all. ``reused`` (raw id -> stored
    id, :attr:`ClusterStep.reused`) names rows :func:`score_stage` took from the table: their values in
    ``clusters`` other than the rank are not read (:func:`_stored_rows` leaves the long texts out); the stored
    row is kept, under its stored id (only its rank written), or copied from the table when the cluster's id
    changed. The run id is recorded in ``meta`` (:data:`CLUSTERS_RUN`)
    with the rows. Returns the clusters with their final ids, sorted by rank, as ``store.clusters()`` reads
    them back (JSON columns as text; read back from the table when rows were re-used). With ``read_back=False``
    a run that re-used rows gets only ``cluster_id, rank, agencies`` (JSON text) of every cluster instead, all
    :func:`status_stage` reads (the long texts of 10,000 clusters are not read again: :class:`RunSummary`
    reads the rows it shows). ``members``, when given, receives the ``report_id, cluster_id`` rows as stored
    (final ids), for :func:`status_stage`. ``previous``: the stored ``report_clusters`` rows as
    ``store.report_clusters()`` reads them, when the caller has read them (read here otherwise);
    ``stored_ids``: the ids ``cluster_rows`` holds, when the caller has read them (:attr:`ClusterStep.stored_ids`).
    ``on_final``, when given, is called before anything is written with the memberships as stored (final ids:
    what ``members`` receives) and ``cluster_id, agencies`` (JSON text) of every cluster under its final id (what
    :func:`status_stage` reads of the returned rows when ``read_back=False``): :func:`run` starts the status
    stage's own computing on them (:func:`linkage.feedback.lifecycle.advance_inputs`) in a thread while this
    writes.

    Raises
    ------
    StoreError
        When ``reused`` names a stored id the ``clusters`` table does not hold (its row cannot be kept).
    """
    from linkage.arrays import isin_text

    reused = dict(reused or {})  # raw id -> stored id of the rows score_stage took as stored (ClusterStep.reused)
    if previous is None:
        previous = store.report_clusters()
    rename, events = carry_over(previous.set_index("report_id")["cluster_id"] if len(previous) else pd.Series(dtype=str),
                                report_clusters.set_index("report_id")["cluster_id"], kept=False)
    report_clusters = report_clusters.assign(cluster_id=_renamed(report_clusters["cluster_id"], rename))
    if members is not None:
        members.append(report_clusters[["report_id", "cluster_id"]])
    clusters = clusters.assign(cluster_id=_renamed(clusters["cluster_id"], rename))
    clusters = _by_rank(clusters)
    # every cluster's agencies as the JSON text stored (made once: for on_final and the rows returned)
    agency_texts = _json_lists(clusters["agencies"].tolist()) if "agencies" in clusters.columns else None
    if on_final is not None:
        on_final(report_clusters[["report_id", "cluster_id"]],
                 pd.DataFrame({"cluster_id": _text_column(clusters["cluster_id"]), "agencies": agency_texts})
                 if agency_texts is not None else pd.DataFrame())
    cols = [c for c in CLUSTER_TABLE_COLUMNS if c in clusters.columns]
    stored_of = {rename.get(raw, raw): sid for raw, sid in reused.items()}  # final id -> stored id
    light = isin_text(clusters["cluster_id"], list(stored_of)) if stored_of else np.zeros(len(clusters), dtype=bool)
    unchanged: set = set()
    if light.any() and not (full or not len(previous)):
        # a re-used row kept its members, so it keeps its stored id: only its rank can differ (a full rewrite
        # deletes the table first: then every re-used row is copied whole)
        if stored_ids is None:
            stored_ids = {r[0] for r in store.conn.execute("SELECT cluster_id FROM cluster_rows")}
        unchanged = {f for f, sid in stored_of.items() if f == sid and f in stored_ids}
    rows = clusters[~light] if light.any() else clusters.copy()  # the rows whose values are written
    for col in ("categories", "agencies"):  # lists -> JSON text
        if col in rows.columns:
            rows[col] = _json_lists(rows[col].tolist())
    for col in ("signals", "routing"):  # already JSON text from triage; other values are encoded here
        if col in rows.columns:
            rows[col] = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
                         for v in rows[col].tolist()]
    values = _sqlite_values(rows, cols)  # built once: written, and returned as the stored rows
    if light.any():
        values = _with_stored_rows(store, clusters, light, values, cols, stored_of, unchanged)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with store.transaction():
        if full or not len(previous):
            _write_all_clusters(store, values, cols)
            store.conn.execute("DELETE FROM report_clusters")
            store.insert_tuples("report_clusters", zip(report_clusters["report_id"].tolist(),
                                                       report_clusters["cluster_id"].tolist()),
                                ["report_id", "cluster_id"])
        else:
            _write_changed_clusters(store, values, cols, unchanged, stored_ids)
            _write_changed_members(store, previous, report_clusters)
        store.set_meta(CLUSTERS_RUN, "" if run_id is None else str(run_id))
        if _has_table(store, "cluster_history"):
            encode = _SORTED_JSON.encode  # related ids as store.insert_rows writes a list
            store.insert_tuples("cluster_history", [(now, run_id, e.group_id, e.event, encode(list(e.related)))
                                                    for e in events if e.event != "kept"],
                                ["at", "run_id", "cluster_id", "event", "related_ids"])
    if light.any() and not read_back:
        return pd.DataFrame({"cluster_id": _text_column(clusters["cluster_id"]), "rank": clusters["rank"].tolist(),
                             "agencies": agency_texts}) \
            if agency_texts is not None else clusters[["cluster_id", "rank"]].copy()
    if light.any():  # the kept rows' long texts were never read: the rows as stored now
        return store.clusters()
    return _as_stored_clusters(values, cols)


def _text_column(values: pd.Series) -> Any:
    """What ``values.tolist()`` gives as a column of a new frame, with the same column resulting: the column's
    own array when it already is of the type pandas gives a list of texts (:data:`~linkage.arrays.LISTED_TEXT`),
    with no Python string made and read back (10,000 cluster ids: ~1 ms against ~3 ms); the list otherwise (an
    empty list, or one of missing values only, makes a column of another type).

    >>> ids = pd.Series(["c_2", "c_1"])
    >>> pd.DataFrame({"c": _text_column(ids)}).equals(pd.DataFrame({"c": ids.tolist()}))
    True
    """
    return values.array if values.dtype == LISTED_TEXT and values.notna().any() else values.tolist()


def _by_rank(clusters: pd.DataFrame) -> pd.DataFrame:
    """``clusters.sort_values(["rank", "cluster_id"]).reset_index(drop=True)``: by the ranks alone when they are
    distinct integers (as :func:`score_stage` gives them: no two clusters share a rank, so the ids never decide;
    10,000 clusters ~2 ms against ~6.5 ms for the two keys, whose text key pandas numbers first), by both keys
    otherwise.

    >>> _by_rank(pd.DataFrame({"cluster_id": ["b", "a", "c"], "rank": [2, 3, 1]}))["cluster_id"].tolist()
    ['c', 'b', 'a']
    >>> _by_rank(pd.DataFrame({"cluster_id": ["b", "a", "c"], "rank": [2, 2, 1]}))["cluster_id"].tolist()
    ['c', 'a', 'b']
    """
    ranks = clusters["rank"]
    if isinstance(ranks.dtype, np.dtype) and ranks.dtype.kind in "iu":
        values = ranks.to_numpy()
        order = np.argsort(values, kind="stable")
        in_order = values[order]
        if bool((in_order[1:] != in_order[:-1]).all()):
            return clusters.take(order).reset_index(drop=True)
    return clusters.sort_values(["rank", "cluster_id"]).reset_index(drop=True)


def _with_stored_rows(store: EmbeddedStore, clusters: pd.DataFrame, light: np.ndarray, values: list[tuple],
                      cols: list[str], stored_of: dict, unchanged: set) -> list[tuple]:
    """The rows of ``clusters`` (in order) to write: ``values`` for those not ``light``; for a light (re-used)
    row kept under its stored id (``unchanged``) only its id and rank (the table keeps the rest); for one whose
    id changed, its stored row (:data:`CLUSTER_TABLE_COLUMNS` of the table, read by its stored id) under its
    new id and rank."""
    from linkage.errors import StoreError
    from linkage.retention import _temp_ids

    ids = clusters["cluster_id"].tolist()
    rank_list = clusters["rank"].tolist()
    at_rank = cols.index("rank")
    copy = [f for f, is_light in zip(ids, light.tolist()) if is_light and f not in unchanged]
    stored: dict = {}
    if copy:
        with store.transaction():
            _temp_ids(store.conn, "copied_clusters", [stored_of[f] for f in copy])
        stored = {r[0]: r for r in store.conn.execute(
            f"SELECT {', '.join(cols)} FROM clusters WHERE cluster_id IN (SELECT id FROM temp.copied_clusters)")}
        store.conn.execute("DROP TABLE temp.copied_clusters")
    fresh = iter(values)
    blank = (None,) * (len(cols) - 2)
    out = []
    for f, rank, is_light in zip(ids, rank_list, light.tolist()):
        if not is_light:
            out.append(next(fresh))
        elif f in unchanged:
            out.append((f, rank) + blank if at_rank == 1 else _placed(cols, f, rank, None))
        else:
            row = stored.get(stored_of[f])
            if row is None:
                raise StoreError(f"{store.path}: cluster {stored_of[f]} was taken as stored but the clusters table "
                                 "does not hold it; run again (with --full if this repeats).")
            out.append(_placed(cols, f, rank, row))
    return out


def _placed(cols: list[str], cluster_id: str, rank: int, row: Optional[tuple]) -> tuple:
    """``row`` (over ``cols``; None: all None) with its cluster id and rank replaced."""
    vals = list(row) if row is not None else [None] * len(cols)
    vals[cols.index("cluster_id")] = cluster_id
    vals[cols.index("rank")] = rank
    return tuple(vals)


#: ``json.dumps(v, ensure_ascii=False, sort_keys=True)``, the JSON text :meth:`EmbeddedStore.insert_rows`
#: stores for a list or dict value.
_SORTED_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def _sqlite_values(df: pd.DataFrame, columns: Sequence[str]) -> list[tuple]:
    """Rows of ``df[columns]`` as tuples of plain values (NaN -> None, numpy scalars -> Python), as SQLite
    stores and reads them back (unlike :func:`linkage.store.embedded._sql_value`, lists stay as they are)."""
    arrays = []
    for c in columns:
        vals = df[c].astype(object).tolist()
        # numpy scalars in an object column as Python values (sqlite3 would store one as a BLOB of its bytes),
        # pandas' NA as NULL
        arrays.append([None if (v is None or v is pd.NA or (isinstance(v, float) and v != v))
                       else (v.item() if isinstance(v, np.generic) else v) for v in vals])
    return list(zip(*arrays))


def _row_and_rank(cols: Sequence[str]) -> tuple[list[int], Optional[int]]:
    """Where the ``cluster_rows`` columns (:data:`~linkage.store.embedded.CLUSTER_ROW_COLUMNS` that ``cols``
    has, in that order) and the rank are in a row over ``cols`` (the rank None when ``cols`` lacks it)."""
    return [cols.index(c) for c in CLUSTER_ROW_COLUMNS if c in cols], (cols.index("rank") if "rank" in cols else None)


#: Writes ranks (:func:`_rank_rows`: plain values as :func:`_sqlite_values` makes them; a cluster given twice
#: keeps the last rank given).
_RANKS_INSERT = "INSERT OR REPLACE INTO cluster_ranks (cluster_id, rank) VALUES (?, ?)"


def _rank_rows(rows: Sequence[tuple], rank_at: int) -> list[tuple]:
    """``(cluster_id, rank)`` of each row, sorted by id (B-tree appends; a cluster given twice: the last one
    given, as writing them in order leaves it)."""
    return sorted(((r[0], r[rank_at]) for r in rows), key=itemgetter(0))


def _write_all_clusters(store: EmbeddedStore, rows: list[tuple], cols: list[str]) -> None:
    """Replace every cluster with ``rows`` (:func:`_sqlite_values` over ``cols``: plain values, bound as they
    are; written in their order)."""
    at, rank_at = _row_and_rank(cols)
    get = itemgetter(*at)
    store.conn.execute("DELETE FROM cluster_rows")
    store.insert_tuples("cluster_rows", list(map(get, rows)) if len(at) > 1 else [(get(r),) for r in rows],
                        [cols[i] for i in at], plain=True)
    _write_ranks(store.conn, rows, rank_at)


def _write_ranks(conn, rows: list[tuple], rank_at: Optional[int]) -> None:
    """Every rank anew: ``cluster_ranks`` emptied, then one row per row of ``rows`` (its id first, its rank at
    ``rank_at``; without a rank column none: the view reads NULL)."""
    conn.execute("DELETE FROM cluster_ranks")
    if rank_at is not None:
        conn.executemany(_RANKS_INSERT, _rank_rows(rows, rank_at))


def _write_changed_clusters(store: EmbeddedStore, new_rows: list[tuple], cols: list[str],
                            unchanged: set[str] | frozenset = frozenset(),
                            stored_ids: Optional[set] = None) -> None:
    """Bring the clusters (``cluster_rows`` and ``cluster_ranks``) to ``new_rows`` (:func:`_sqlite_values`
    over ``cols``) writing only the ``cluster_rows`` rows that differ; the ranks are written anew (every
    cluster's, ~10,000 rows of a few bytes at 100,000 reports: cheaper than finding the ~9,000 that moved).
    ``unchanged`` names clusters whose row is known to be the stored one but for the rank (:func:`score_stage`
    took it from the table): their other values in ``new_rows`` are not read; each must be in the table.
    ``stored_ids``: the ids ``cluster_rows`` holds, when the caller has read them.

    Without a ``rank`` in ``cols`` the rows written get rank NULL and the others keep theirs (as the table of
    schema 1 was left: a row written whole without a rank had none)."""
    conn = store.conn
    at, rank_at = _row_and_rank(cols)
    row_cols = [cols[i] for i in at]
    other = [(j, i) for j, i in enumerate(at) if cols[i] != "cluster_id"]  # (place in a stored row, in a new row)
    if unchanged:
        if stored_ids is None:
            stored_ids = {r[0] for r in conn.execute("SELECT cluster_id FROM cluster_rows")}
        # the stored rows of the other given clusters (only ids the table holds can be found), their ids given
        # as one JSON text (json_each): no temporary table filled row by row
        wanted = [r[0] for r in new_rows if r[0] not in unchanged and r[0] in stored_ids]
        stored = conn.execute(f"SELECT {', '.join(row_cols)} FROM cluster_rows "
                              "WHERE cluster_id IN (SELECT value FROM json_each(?))",
                              (json.dumps(wanted),)).fetchall() if wanted else []
        gone = set(stored_ids) - {r[0] for r in new_rows}
    else:
        stored_ids = set()
        stored = conn.execute(f"SELECT {', '.join(row_cols)} FROM cluster_rows").fetchall()
        gone = None
    old = {r[0]: r for r in stored}
    upsert = []
    for r in new_rows:
        if r[0] in unchanged and r[0] in stored_ids:
            continue
        o = old.pop(r[0], None)
        if o is None or any(not _same_value(o[j], r[i]) for j, i in other):
            upsert.append(tuple(r[i] for i in at))
    if gone is None:
        gone = set(old)
    if gone:
        conn.executemany("DELETE FROM cluster_rows WHERE cluster_id = ?", [(k,) for k in sorted(gone)])
    if upsert:
        store.insert_tuples("cluster_rows", upsert, row_cols, "INSERT OR REPLACE", plain=True)
    if rank_at is not None:
        _write_ranks(conn, new_rows, rank_at)
    else:
        conn.executemany("DELETE FROM cluster_ranks WHERE cluster_id = ?", [(k,) for k in sorted(gone)])
        conn.executemany(_RANKS_INSERT, [(r[0], None) for r in upsert])


def _same_value(stored: Any, new: Any) -> bool:
    """Whether a stored SQLite value equals a new one (a REAL column gives 3.0 back for 3)."""
    if stored is None or new is None:
        return stored is None and new is None
    if isinstance(stored, float) or isinstance(new, float):
        try:
            return float(stored) == float(new)
        except (TypeError, ValueError):
            return False
    return stored == new


def _write_changed_members(store: EmbeddedStore, previous: pd.DataFrame, report_clusters: pd.DataFrame) -> None:
    """Bring ``report_clusters`` to ``report_clusters`` deleting and writing only the rows that changed.

    ``previous`` is the table as stored (one row per report). Rows are compared over whole columns (each new
    row's stored row found by a hash look-up of its report id); the rows written are those a loop over
    ``report_clusters`` in order writes (a report given twice: each row whose cluster is not the stored one),
    the stored reports no longer given are deleted in ``previous``'s order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from linkage.arrays import arrow_text

    new_r = arrow_text(report_clusters["report_id"].astype(str))
    old_r = arrow_text(previous["report_id"]) if len(previous) else None
    places = _member_places(old_r, new_r) if old_r is not None else None
    if places is _REPEATED or (places is None and pc.count_distinct(new_r).as_py() != len(new_r)):
        # a report twice: the loop's own order of pops decides
        return _write_changed_members_loop(store, previous, report_clusters)
    new_c = arrow_text(report_clusters["cluster_id"].astype(str))
    if places is not None:  # numbered together (_member_places): no look-ups of their own
        old_c = arrow_text(previous["cluster_id"])
        found = places >= 0
        stored_c = pc.take(old_c, pa.array(np.where(found, places, 0)))
        same = found & pc.fill_null(pc.equal(stored_c, new_c), False).to_numpy(zero_copy_only=False)
        hit = np.zeros(len(old_r), dtype=bool)
        hit[places[found]] = True
        gone = old_r.filter(pa.array(~hit)).to_pylist()
    elif len(previous):
        # in Arrow (pandas text columns are Arrow arrays already): each new row's stored row by one hash look-up
        old_r, old_c = arrow_text(previous["report_id"]), arrow_text(previous["cluster_id"])
        at = pc.index_in(new_r, value_set=old_r)
        found = pc.is_valid(at).to_numpy(zero_copy_only=False)
        pos = pc.fill_null(at, 0)
        same = found & pc.fill_null(pc.equal(pc.take(old_c, pos), new_c), False).to_numpy(zero_copy_only=False)
        hit = np.zeros(len(old_r), dtype=bool)
        hit[pos.to_numpy(zero_copy_only=False)[found]] = True  # the stored reports still given
        gone = old_r.filter(pa.array(~hit)).to_pylist()
    else:
        same = np.zeros(len(new_r), dtype=bool)
        gone = []
    keep = pa.array(~same)
    changed = list(zip(new_r.filter(keep).to_pylist(), new_c.filter(keep).to_pylist()))
    if gone:
        store.conn.executemany("DELETE FROM report_clusters WHERE report_id = ?", [(k,) for k in gone])
    if changed:
        store.conn.executemany("INSERT OR REPLACE INTO report_clusters (report_id, cluster_id) VALUES (?, ?)", changed)


#: :func:`_member_places`' answer for new reports that repeat one
_REPEATED = np.empty(0, dtype=np.intp)


def _member_places(old_r: "pa.Array", new_r: "pa.Array") -> Optional[np.ndarray]:
    """Where each of the report ids ``new_r`` is among the stored ones ``old_r`` (-1: not stored), by one Arrow
    numbering of both (in order of first appearance: the stored ids, when distinct, are numbered 0, 1, ... in
    turn, and a new id numbered below ``len(old_r)`` is the stored id of that number); :data:`_REPEATED` when
    ``new_r`` repeats an id; None when the numbering does not apply (a missing id, stored ids that repeat):
    the caller looks them up its own way. One hash pass where counting the distinct new ids and looking them
    up took two (41,000 memberships).

    >>> import pyarrow as pa
    >>> _member_places(pa.array(["r1", "r2", "r3"]), pa.array(["r3", "r9", "r1"])).tolist()
    [2, -1, 0]
    >>> _member_places(pa.array(["r1"]), pa.array(["r9", "r9"])) is _REPEATED
    True
    >>> _member_places(pa.array(["r1", "r1"]), pa.array(["r1"])) is None
    True
    """
    from linkage.arrays import codes_after

    new_codes = codes_after(old_r, new_r)
    if new_codes is None:
        return None
    if len(new_codes) and np.bincount(new_codes).max() > 1:
        return _REPEATED
    new_codes[new_codes >= len(old_r)] = -1
    return new_codes


def _write_changed_members_loop(store: EmbeddedStore, previous: pd.DataFrame, report_clusters: pd.DataFrame) -> None:
    """:func:`_write_changed_members` row by row (for a report given more than once)."""
    old = dict(zip(previous["report_id"].tolist(), previous["cluster_id"].tolist()))
    changed = []
    for rid, cid in zip(report_clusters["report_id"].astype(str).tolist(), report_clusters["cluster_id"].tolist()):
        if old.pop(rid, None) != cid:
            changed.append((rid, cid))
    if old:
        store.conn.executemany("DELETE FROM report_clusters WHERE report_id = ?", [(k,) for k in old])
    if changed:
        store.conn.executemany("INSERT OR REPLACE INTO report_clusters (report_id, cluster_id) VALUES (?, ?)", changed)


def _as_stored_clusters(values: list[tuple], cols: list[str]) -> pd.DataFrame:
    """Rows (:func:`_sqlite_values`) as ``store.clusters()`` reads them back (same construction, REAL
    columns as floats)."""
    out = pd.DataFrame.from_records(values, columns=cols)
    for c in ("score", "n_reporters"):  # REAL columns: SQLite gives 3.0 back for 3
        if c in out.columns and len(out) and pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c].astype("float64")
    return out.sort_values(["rank", "cluster_id"], kind="stable").reset_index(drop=True) if len(out) else out


def _has_table(store: EmbeddedStore, name: str) -> bool:
    return store.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def status_stage(store: EmbeddedStore, clusters: pd.DataFrame, report_clusters: Optional[pd.DataFrame] = None,
                 ahead: Optional[ReadAhead] = None, prepared: Optional["InThread"] = None) -> int:
    """Move reports forward: clustered reports become 'gekoppeld', routed ones 'doorgezet'.

    Only the reports whose cluster, cluster agencies or history changed since the last run's status stage are
    looked at (:func:`linkage.feedback.lifecycle.advance_changed`); the rows written are the same.
    ``report_clusters``: the stored memberships when the caller has them (:func:`store_clusters`' ``members``);
    read from the store otherwise. ``ahead``: the caller's reads ahead (:func:`read_ahead`), of which the kept
    status inputs are taken. ``prepared``: :func:`linkage.feedback.lifecycle.advance_inputs` of the same
    memberships and ``clusters``' agencies, computed in a thread (:class:`InThread`, started by :func:`run` from
    :func:`store_clusters`' ``on_final``); when it failed (None), computed here.
    """
    from linkage.feedback.lifecycle import advance_changed

    if report_clusters is None:
        report_clusters = store.report_clusters()
    routing = clusters[["cluster_id", "agencies"]].copy() if "agencies" in clusters.columns else pd.DataFrame()
    kept = None if ahead is None else (lambda: ahead.result("status_inputs", lambda: None))
    inputs = prepared.result() if prepared is not None else None
    return int(advance_changed(store, report_clusters, routing, kept_inputs=kept, prepared=inputs) or 0)


class InThread:
    """``fn(*args)`` computed in a thread of its own (for work that needs no store: Arrow's kernels and SQLite
    run without Python's GIL, so it uses the machine's second core while the job's thread works on).
    :meth:`result` waits and gives the value, or None when ``fn`` raised (the caller computes it itself and
    meets the error there); :attr:`error` is then the exception's class name (never its message, which may hold
    data), for the run's counts.

    >>> InThread(sum, [1, 2]).result(), InThread(len, 3).result()
    (3, None)
    >>> failed = InThread(len, 3); failed.result(), failed.error
    (None, 'TypeError')
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "work") -> None:
        import threading

        self._value: Any = None
        self.error: Optional[str] = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name=f"linkage-{name}", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._value = fn(*args)
        except Exception as exc:  # noqa: BLE001 - the caller computes it again and meets the error there
            self._value = None
            self.error = type(exc).__name__

    def result(self) -> Any:
        """The value (waiting for the thread); None when ``fn`` raised."""
        self._thread.join()
        return self._value


def run(
    files: Sequence[Path],
    store_path: Path,
    settings_path: Optional[Path] = None,
    mapping: Optional[Path] = None,
    rules: Optional[Path] = None,
    seed: Optional[int] = None,
    now: Optional[dt.date] = None,
    progress_factory: Optional[Callable] = None,
    neo4j: bool = False,
    full: bool = False,
) -> RunSummary:
    """The main job: load (optional), resolve, cluster, score and route, store, update report status.

    Parameters
    ----------
    files:
        Input files to load first; may be empty to re-run on what the store holds.
    rules:
        Routing rules TOML (default ``linkage/routing.toml``).
    now:
        Reference date for recency (default: the newest report's date, for reproducible scores).
    neo4j:
        Also push the result to the Neo4j server configured through ``LINKAGE_NEO4J_*``.
    full:
        Refit the entity-resolution model and score all pairs again instead of only the new mentions.

    One job at a time changes a store: while another ``run``, ``load`` or ``purge`` holds it, this raises
    :class:`~linkage.errors.StoreError` naming that job, before touching anything (:mod:`linkage.runlock`).
    As with :func:`load_stage`, a store this run created is removed when ``files`` cannot be loaded at all.
    """
    settings = load_settings(settings_path)
    summary = RunSummary(store=Path(store_path))
    bar_cm = progress_factory() if progress_factory else nullcontext(None)
    # the last run's kept cluster state and status inputs are read in a thread while the run loads and resolves
    # and the newest report's date and the stored memberships in another while it clusters (read_later)
    with _no_new_store_on_input_error(store_path), exclusive(store_path, "run"), EmbeddedStore(store_path) as store, \
            read_ahead(store, full) as ahead, ExitStack() as later_stack, bar_cm as bar:
        stages = {}
        if bar is not None:
            for name in STAGES + (("neo4j",) if neo4j else ()):
                stages[name] = bar.add_task(f"{name:<9}", total=1, start=False)

        cpu0: dict[str, float] = {}

        def begin(name: str) -> float:
            if bar is not None:
                bar.start_task(stages[name])
            cpu0[name] = _cpu_time()
            return time.perf_counter()

        def end(name: str, t0: float) -> None:
            summary.seconds[name] = time.perf_counter() - t0
            summary.cpu_seconds[name] = _cpu_time() - cpu0[name]
            if bar is not None:
                bar.update(stages[name], completed=1)

        store.checkpoints_behind()  # the write-ahead log is copied into the file while the next stage works
        t0 = begin("load")
        run_id = store.conn.execute(
            "INSERT INTO runs(started_at) VALUES (?)", (dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),)
        ).lastrowid
        if files:
            summary.load = _load(files, store, settings, mapping, None)
        summary.counts["reports"] = store.count("reports")
        summary.counts["mentions"] = store.count("mentions")
        if summary.load is not None and summary.load.rows_read >= CHECKPOINT_AFTER_LOAD_ROWS:
            store.checkpoint_behind()
        end("load", t0)

        # resolving, clustering, scoring, storing and the status step build millions of small objects without
        # cycles: the cyclic garbage collector is paused inside each of these stages (linkage.gcpause; in the
        # store and status stages of a +1,000 run on 100,000 reports it took ~0.17 s of ~0.6 in ~220 collections)
        t0 = begin("resolve")
        changed: list = []
        generation = er_generation(store.conn)
        with paused_gc():
            relabelled = watch_labels(store)  # the entities whose label the resolve stage changes
            er_counts = resolve_stage(store, settings, full=full, changed=changed, ahead=ahead)
            summary.counts.update({f"er_{k}": v for k, v in er_counts.items()})
        store.checkpoint_behind()
        # started now: the resolve stage's fork has waited for no thread of it
        later = later_stack.enter_context(read_later(store, full))
        end("resolve", t0)

        t0 = begin("clusters")
        with paused_gc():
            step = communities_stage(store, settings, seed, full=full,
                                     changed=changed if "touched_mentions" in er_counts else None,
                                     er_generation_before=generation, ahead=ahead, later=later,
                                     relabelled=relabelled())
        report_clusters = step.report_clusters
        summary.counts.update(step.update.stats)
        end("clusters", t0)
        t0 = begin("score")
        when = now if now is not None else (step.now if step.now is not None else _data_now(step.inputs[0]))
        with paused_gc():
            # the stored memberships, read once on the incremental path: the re-used rows' stored ids, and what
            # store_clusters compares (a run that clusters everything lets store_clusters read them: not held
            # through its scoring)
            previous = None
            if step.update is not None and not step.update.everything:
                previous = store.report_clusters() if later is None \
                    else later.result("report_clusters", store.report_clusters)
            elif later is not None:
                later.result("report_clusters", lambda: None)  # not needed: not held through the scoring
            clusters = score_stage(report_clusters, step.inputs, rules, when, step=step, store=store,
                                   processes=settings.score_processes,
                                   min_parallel=settings.score_parallel_min_clusters, previous=previous)
        summary.counts.update(_cluster_counts(step.inputs[0], report_clusters, clusters))
        summary.counts["clusters_reused"] = len(step.reused)
        if step.n_reports is not None:
            summary.counts["reports"] = step.n_reports
        end("score", t0)

        t0 = begin("store")
        with paused_gc():
            save_cluster_state(store, step, clusters, when, rules, run_id)
            reused, stored_ids = step.reused, step.stored_ids
            del step
            members: list = []
            status_inputs: list = []

            def status_ahead(final_members: pd.DataFrame, routing: pd.DataFrame) -> None:
                # the status stage's own computing over the final memberships and agencies (and its comparison
                # with the kept status inputs read ahead), in a thread while store_clusters writes
                from linkage.feedback.lifecycle import advance_inputs

                kept = ahead.result("status_inputs", lambda: None) if ahead is not None else None
                status_inputs.append(InThread(advance_inputs, final_members, routing, kept, name="status-inputs"))
            # the rows score_stage re-used keep their long texts in the table: not read back (RunSummary reads
            # the rows it is asked for)
            stored = store_clusters(store, report_clusters, clusters, run_id, full=full, reused=reused,
                                    members=members, read_back=False, previous=previous, stored_ids=stored_ids,
                                    on_final=status_ahead)
            del stored_ids
            del previous
        summary.clusters = stored if set(CLUSTER_TABLE_COLUMNS) <= set(stored.columns) else None
        summary.run_id = run_id
        del clusters
        store.checkpoint_behind()
        end("store", t0)

        t0 = begin("status")
        with paused_gc():
            summary.counts["status_changes"] = status_stage(store, stored, members[0] if members else None, ahead,
                                                            status_inputs[0] if status_inputs else None)
        if status_inputs and status_inputs[0].error is not None:  # computed in place instead: said, not hidden
            summary.counts["status_inputs_in_place"] = 1
        del stored
        end("status", t0)

        if neo4j:
            t0 = begin("neo4j")
            from linkage.store.neo4j import push

            summary.neo4j = push(store)
            end("neo4j", t0)

        stats = json.dumps({"counts": summary.counts, "seconds": summary.seconds}, default=str)
        store.conn.execute("UPDATE runs SET finished_at=?, stats=? WHERE run_id=?",
                           (dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), stats, run_id))
    return summary


def explain_stage(store: EmbeddedStore, a: str, b: str):
    """Explain two mention or entity ids with the model stored by the last run; plus judgements on them.

    Raises
    ------
    NotFoundError
        When the store has no resolution yet or an id is unknown.
    """
    from linkage.errors import LinkageError, NotFoundError
    from linkage.resolve import explain_ids

    raw = store.get_meta("er_model")
    if raw is None:
        raise NotFoundError(f"{store.path} has no entity-resolution model yet; run 'linkage run' first.")
    model = json.loads(raw)
    mentions = store.mentions()
    assignments = store.mention_entities()
    try:
        explanation = explain_ids(mentions, assignments, a, b, model)
    except NotFoundError:
        raise
    except LinkageError as exc:
        raise NotFoundError(str(exc)) from None
    judgements: list[dict] = []
    try:
        from linkage.resolve.judgements import judgements_for

        found = judgements_for(store, [a, b])
        judgements = found.to_dict("records") if hasattr(found, "to_dict") else list(found)
    except ImportError:  # pragma: no cover
        pass
    return explanation, judgements
