"""Report lifecycle: statuses with an append-only history, and the cases and history of clusters.

In:  a store; status changes from analysts (``linkage status``) and from routing
     (:func:`advance_after_routing`; the pipeline calls :func:`advance_changed`, which applies the same rules
     to the reports whose cluster, agencies or history changed since its last call).
Out: rows in ``status_history`` (never updated); the current status of a report is its last row, and
     a report without rows is ``ontvangen``. Also ``cluster_cases`` (a cluster marked as an active
     case is kept by retention) and ``cluster_history`` (created / kept / merged / split / dissolved
     per run, written by the pipeline).

The legal transitions are data (:data:`TRANSITIONS`)::

    ontvangen        -> in_behandeling | gekoppeld | niet_ontvankelijk
    in_behandeling   -> gekoppeld | afgehandeld | niet_ontvankelijk
    gekoppeld        -> doorgezet | afgehandeld | in_behandeling | niet_ontvankelijk
    doorgezet        -> doorgezet (another agency) | afgehandeld | in_behandeling
    afgehandeld      -> (final; ``reopen=True`` allows -> in_behandeling)
    niet_ontvankelijk-> (final; ``reopen=True`` allows -> in_behandeling)

Routing only moves reports forward (to ``gekoppeld``, then ``doorgezet``) and never touches a report
in a final status; analysts record outcomes. Anything else raises :class:`TransitionError`, whose
message names the report and both statuses.

>>> import tempfile, pathlib
>>> from linkage.store import EmbeddedStore
>>> s = EmbeddedStore(pathlib.Path(tempfile.mkdtemp()) / "l.db")
>>> _ = s.conn.execute("INSERT INTO reports (report_id, received_at, category, content_hash) "
...                    "VALUES ('R1', '2025-03-03', 'overig', 'x')")
>>> current_status(s, "R1")
'ontvangen'
>>> _ = set_status(s, "R1", "in_behandeling", actor="ana")
>>> set_status(s, "R1", "doorgezet", actor="ana")
Traceback (most recent call last):
linkage.feedback.lifecycle.TransitionError: Report R1 cannot go from 'in_behandeling' to 'doorgezet'; allowed: gekoppeld, afgehandeld, niet_ontvankelijk.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from linkage.arrays import arrow_text, isin_text, run_starts
from linkage.audit import current_actor, now_iso
from linkage.errors import LinkageError, NotFoundError

#: Every status a report can have, in lifecycle order.
STATUSES: tuple[str, ...] = ("ontvangen", "in_behandeling", "gekoppeld", "doorgezet", "afgehandeld", "niet_ontvankelijk")

#: The status of a report that has no history rows.
INITIAL_STATUS = "ontvangen"

#: Legal transitions: from -> the statuses it may go to.
TRANSITIONS: Mapping[str, tuple[str, ...]] = {
    "ontvangen": ("in_behandeling", "gekoppeld", "niet_ontvankelijk"),
    "in_behandeling": ("gekoppeld", "afgehandeld", "niet_ontvankelijk"),
    "gekoppeld": ("doorgezet", "afgehandeld", "in_behandeling", "niet_ontvankelijk"),
    "doorgezet": ("doorgezet", "afgehandeld", "in_behandeling"),
    "afgehandeld": (),
    "niet_ontvankelijk": (),
}

#: Final statuses; only an explicit reopen leaves them, and only to :data:`REOPEN_TO`.
FINAL_STATUSES: frozenset[str] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
REOPEN_TO = "in_behandeling"

#: Statuses routing sets by itself; the others are set by analysts.
AUTOMATIC_STATUSES: frozenset[str] = frozenset({"gekoppeld", "doorgezet"})

CLUSTER_EVENTS: tuple[str, ...] = ("created", "kept", "merged", "split", "dissolved")


class TransitionError(LinkageError):
    """A status change that the lifecycle does not allow (or an unknown status)."""


def check_transition(report_id: str, from_status: str, to_status: str, reopen: bool = False,
                     agency_changed: bool = False) -> None:
    """Raise :class:`TransitionError` unless ``from_status -> to_status`` is legal.

    ``doorgezet -> doorgezet`` is legal only to another agency (``agency_changed``); leaving a final
    status needs ``reopen=True`` and goes to ``in_behandeling``.

    >>> check_transition("R1", "ontvangen", "gekoppeld")
    >>> check_transition("R1", "afgehandeld", "in_behandeling", reopen=True)
    >>> check_transition("R1", "afgehandeld", "in_behandeling")
    Traceback (most recent call last):
    linkage.feedback.lifecycle.TransitionError: Report R1 cannot go from 'afgehandeld' to 'in_behandeling': 'afgehandeld' is final; reopen it explicitly (--reopen) to take it back into behandeling.
    """
    if to_status not in STATUSES:
        raise TransitionError(f"'{to_status[:30]}' is not a status; use one of {', '.join(STATUSES)}.")
    if from_status in FINAL_STATUSES:
        if reopen and to_status == REOPEN_TO:
            return
        raise TransitionError(
            f"Report {report_id} cannot go from '{from_status}' to '{to_status}': '{from_status}' is final; "
            f"reopen it explicitly (--reopen) to take it back into behandeling."
        )
    if reopen:
        raise TransitionError(f"Report {report_id} is '{from_status}', not in a final status; --reopen is not needed.")
    allowed = TRANSITIONS[from_status]
    if to_status not in allowed:
        raise TransitionError(
            f"Report {report_id} cannot go from '{from_status}' to '{to_status}'; allowed: {', '.join(allowed)}."
        )
    if from_status == to_status == "doorgezet" and not agency_changed:
        raise TransitionError(
            f"Report {report_id} cannot go from 'doorgezet' to 'doorgezet' without another agency (--agency)."
        )


# --- reading ----------------------------------------------------------------------------------------
def _last_statuses(conn) -> dict[str, str]:
    """report_id -> its last ``to_status``, for every report that has history (one indexed pass)."""
    return dict(conn.execute("SELECT report_id, to_status FROM status_history "
                             "WHERE id IN (SELECT MAX(id) FROM status_history GROUP BY report_id)").fetchall())


def current_statuses(store, report_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Current status per report (every stored report, or the given ids), sorted by id; no history means
    ``ontvangen``."""
    ids = list(report_ids) if report_ids is not None else [r[0] for r in store.conn.execute("SELECT report_id FROM reports")]
    last = _last_statuses(store.conn) if ids else {}
    return {rid: last.get(rid, INITIAL_STATUS) for rid in sorted(ids)}


def current_status(store, report_id: str) -> str:
    """The status of one report (its last history row; ``ontvangen`` without history)."""
    row = store.conn.execute(
        "SELECT to_status FROM status_history WHERE report_id=? ORDER BY id DESC LIMIT 1", (report_id,)
    ).fetchone()
    return row[0] if row else INITIAL_STATUS


def history(store, report_id: str) -> pd.DataFrame:
    """All status rows of one report, oldest first (id, at, actor, from_status, to_status, note, agency)."""
    return store.frame(
        "SELECT id, at, actor, from_status, to_status, note, agency FROM status_history "
        "WHERE report_id=? ORDER BY id", (report_id,)
    )


def require_report(store, report_id: str) -> None:
    if store.conn.execute("SELECT 1 FROM reports WHERE report_id=?", (report_id,)).fetchone() is None:
        raise NotFoundError(f"Report {report_id[:60]} is not in the store; check the id (linkage status lists it).")


def _agencies_recorded(store, report_id: str) -> set[str]:
    rows = store.conn.execute(
        "SELECT agency FROM status_history WHERE report_id=? AND to_status='doorgezet' AND agency IS NOT NULL",
        (report_id,),
    ).fetchall()
    return {a for (text,) in rows for a in split_agencies(text)}


def split_agencies(value: Any) -> list[str]:
    """Agencies from a list, a JSON list, or text separated by ``;`` / ``,`` / ``|`` (sorted, unique).

    >>> split_agencies('["Politie", "FIOD"]'), split_agencies("Politie; FIOD"), split_agencies(None)
    (['FIOD', 'Politie'], ['FIOD', 'Politie'], [])
    """
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                value = [text]
        else:
            for sep in ("|", ","):
                text = text.replace(sep, ";")
            value = text.split(";")
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    items = value if isinstance(value, (list, tuple, set)) else [value]
    names = set()
    for item in items:
        if isinstance(item, Mapping):
            item = item.get("agency") or item.get("name")
        if item is not None and str(item).strip():
            names.add(str(item).strip())
    return sorted(names)


def _split_cached():
    """:func:`split_agencies` remembering the answer per text: a store holds few distinct agency texts, and
    the status step splits one per routed report (other values, lists say, are split each time)."""
    seen: dict[str, list[str]] = {}

    def split(value: Any) -> list[str]:
        if not isinstance(value, str):
            return split_agencies(value)
        if value not in seen:
            seen[value] = split_agencies(value)
        return seen[value]
    return split


# --- writing ----------------------------------------------------------------------------------------
def _insert(store, report_id: str, from_status: str, to_status: str, actor: str, note: str | None,
            agency: str | None, now: dt.datetime | None) -> int:
    cur = store.conn.execute(
        "INSERT INTO status_history (report_id, at, actor, from_status, to_status, note, agency) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (report_id, now_iso(now), actor, from_status, to_status, note, agency),
    )
    return int(cur.lastrowid)


def set_status(store, report_id: str, to_status: str, actor: str | None = None, note: str | None = None,
               agency: str | None = None, reopen: bool = False, now: dt.datetime | None = None) -> int:
    """Record a status change of one report after checking it; returns the new history row id.

    Parameters
    ----------
    agency:
        For ``doorgezet``: the agency (or agencies, ``;``-separated) the report was passed to.
    reopen:
        Leave a final status (``afgehandeld``, ``niet_ontvankelijk``) back to ``in_behandeling``.

    Raises
    ------
    NotFoundError
        When the report is not in the store.
    TransitionError
        When the change is not in :data:`TRANSITIONS` (the message names report and both statuses).
    """
    require_report(store, report_id)
    with store.transaction():
        current = current_status(store, report_id)
        changed = False
        if current == to_status == "doorgezet":
            changed = bool(set(split_agencies(agency)) - _agencies_recorded(store, report_id))
        check_transition(report_id, current, to_status, reopen=reopen, agency_changed=changed)
        if to_status == "doorgezet" and not split_agencies(agency):
            raise TransitionError(f"Report {report_id} cannot go from '{current}' to 'doorgezet' without naming "
                                  "the agency (--agency).")
        agency_text = "; ".join(split_agencies(agency)) or None
        return _insert(store, report_id, current, to_status, actor or current_actor(), note, agency_text, now)


@dataclass
class AdvanceSummary:
    """What :func:`advance_after_routing` changed: counts per new status and the reports it moved."""

    gekoppeld: int = 0
    doorgezet: int = 0
    skipped_final: int = 0
    report_ids: list[str] = field(default_factory=list)

    def __int__(self) -> int:
        """The number of status rows written (what the run summary shows as status changes)."""
        return self.gekoppeld + self.doorgezet

    def to_dict(self) -> dict[str, Any]:
        return {"gekoppeld": self.gekoppeld, "doorgezet": self.doorgezet, "skipped_final": self.skipped_final,
                "reports_changed": len(set(self.report_ids))}


def _routing_map(routing_df: pd.DataFrame | None) -> dict[str, list[str]]:
    """cluster_id -> agencies, from a frame with ``agency`` (one row per agency) or ``agencies`` columns."""
    if routing_df is None or not len(routing_df):
        return {}
    col = "agency" if "agency" in routing_df.columns else "agencies"
    if col not in routing_df.columns:
        raise LinkageError("Routing table has neither an 'agency' nor an 'agencies' column.")
    split = _split_cached()
    cids = [str(c) for c in routing_df["cluster_id"].tolist()]
    if len(set(cids)) == len(cids):  # one row per cluster (a run's clusters): its value split, as below
        return {cid: ags for cid, ags in zip(cids, map(split, routing_df[col].tolist())) if ags}
    out: dict[str, set[str]] = {}
    for cid, value in zip(cids, routing_df[col].tolist()):
        out.setdefault(str(cid), set()).update(split(value))
    return {cid: sorted(a) for cid, a in out.items() if a}


def advance_after_routing(store, report_clusters_df: pd.DataFrame | None = None,
                          routing_df: pd.DataFrame | None = None, actor: str = "linkage",
                          now: dt.datetime | None = None) -> AdvanceSummary:
    """Move reports forward after a run: in a cluster -> ``gekoppeld``; cluster routed -> ``doorgezet``.

    Parameters
    ----------
    report_clusters_df:
        ``report_id, cluster_id`` (default: the store's ``report_clusters``).
    routing_df:
        ``cluster_id`` with ``agency`` (one row per agency) or ``agencies`` (list, JSON list or
        ``;``-separated text). Default: the store's ``clusters.agencies``.

    Rules, all idempotent (running twice adds no rows):

    * ``ontvangen`` / ``in_behandeling`` -> ``gekoppeld``, unless the report was ``gekoppeld`` before
      (an analyst who took it back into behandeling is not overruled);
    * ``gekoppeld`` / ``doorgezet`` -> ``doorgezet`` for the agencies of its cluster that were never
      recorded for this report (one row naming the new agencies);
    * reports in a final status are left alone; reports not in any cluster are never moved back.

    Everything is written in one transaction.
    """
    if report_clusters_df is None:
        report_clusters_df = store.report_clusters()
    if routing_df is None:
        routing_df = store.frame("SELECT cluster_id, agencies FROM clusters")
    routed = _routing_map(routing_df)
    rids, cids = _pairs(report_clusters_df)
    with store.transaction():
        return _advance_arrays(store.conn, rids, cids, routed, actor, now_iso(now), None)


#: What :func:`advance_changed` keeps of its last call: each clustered report's cluster and that cluster's
#: agencies (JSON list); ``meta`` key :data:`STATUS_MARK` holds the last ``status_history`` id it left.
STATUS_INPUTS_TABLE = ("CREATE TABLE IF NOT EXISTS status_inputs (report_id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL, "
                       "agencies TEXT NOT NULL)")
STATUS_MARK = "status_mark"


def advance_changed(store, report_clusters_df: pd.DataFrame, routing_df: pd.DataFrame, actor: str = "linkage",
                    now: dt.datetime | None = None,
                    kept_inputs: Callable[[], tuple | None] | None = None,
                    prepared: "AdvanceInputs | None" = None) -> AdvanceSummary:
    """What :func:`advance_after_routing` does, looking only at the reports whose outcome can differ from its
    last call's: those whose cluster or cluster agencies differ from what the last call saw (kept in
    ``status_inputs``), and those with a history row written since (anyone's: ``id`` above the mark the last
    call left). Every other report has the inputs and the history it had after the last call, and the rules
    are idempotent, so it would get no row. The rows written, their order and so their ids are those
    :func:`advance_after_routing` writes; ``skipped_final`` counts only the reports looked at. The first
    call (no mark yet) looks at every report.

    The comparison with ``status_inputs`` is made over whole Arrow columns (:func:`_pairs`, each cluster's
    agencies text per distinct agencies value: :func:`_agency_texts`, the kept rows read as one text:
    :func:`read_kept_inputs`), not per report; the routing is split per cluster only for the clusters of the
    reports looked at (what :func:`_advance_arrays` reads of it). Everything, the kept inputs and the mark
    included, is written in one transaction.

    ``kept_inputs``, when given, gives the kept inputs as :func:`read_kept_inputs` reads them, read before (a run
    reads them ahead, :func:`linkage.pipeline.read_ahead`: only this function writes them), or None: they are
    then read here, in the transaction.

    ``prepared``, when given, is :func:`advance_inputs` of the same ``report_clusters_df`` and ``routing_df`` (a
    run makes it in a thread while its store stage writes, :func:`linkage.pipeline.store_clusters`); with its
    comparison made (``changed`` not None) ``kept_inputs`` is not called.
    """
    import pyarrow.compute as pc

    if prepared is None:
        prepared = advance_inputs(report_clusters_df, routing_df)
    rids, cids, cur_r, cur_c, cur_a = prepared.rids, prepared.cids, prepared.cur_r, prepared.cur_c, prepared.cur_a
    n = len(rids)
    with store.transaction():
        conn = store.conn
        conn.execute(STATUS_INPUTS_TABLE)
        mark = conn.execute("SELECT value FROM meta WHERE key = ?", (STATUS_MARK,)).fetchone()
        if prepared.changed is not None:
            changed, gone = prepared.changed, prepared.gone
        else:
            kept = kept_inputs() if kept_inputs is not None else None
            changed, gone = _inputs_changed(read_kept_inputs(conn) if kept is None else kept, cur_r, cur_c, cur_a)
        if mark is None:
            keep = np.ones(n, dtype=bool)
        else:
            since = [r for (r,) in conn.execute(
                "SELECT DISTINCT report_id FROM status_history WHERE id > ?", (int(mark[0]),))]
            only = set(cur_r.filter(changed).to_pylist()) | set(since)
            keep = pc.fill_null(pc.is_in(rids, value_set=arrow_text(list(only))), False).to_numpy(zero_copy_only=False)
        look = rids.filter(keep).to_numpy(zero_copy_only=False)
        look_c = cids.filter(keep).to_numpy(zero_copy_only=False)
        routed = _routing_map(_routing_of(routing_df, look_c))
        summary = _advance_arrays(conn, look, look_c, routed, actor, now_iso(now), None if mark is None else only)
        if gone:
            conn.executemany("DELETE FROM status_inputs WHERE report_id = ?", [(r,) for r in gone])
        if changed.any():
            conn.executemany("INSERT OR REPLACE INTO status_inputs (report_id, cluster_id, agencies) VALUES (?, ?, ?)",
                             zip(cur_r.filter(changed).to_pylist(), cur_c.filter(changed).to_pylist(),
                                 cur_a.filter(changed).to_pylist()))
        last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM status_history").fetchone()[0]
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (STATUS_MARK, str(last)))
    return summary


@dataclass
class AdvanceInputs:
    """What :func:`advance_changed` computes of its inputs before it reads or writes the store
    (:func:`advance_inputs`): the distinct pairs (``rids``, ``cids``: Arrow text, sorted), per report its
    cluster and agencies text (``cur_r``, ``cur_c``, ``cur_a``), and, when the kept inputs were given, the
    comparison with them (``changed``, ``gone``: :func:`_inputs_changed`; None: compared in the transaction)."""

    rids: Any
    cids: Any
    cur_r: Any
    cur_c: Any
    cur_a: Any
    changed: np.ndarray | None = None
    gone: list | None = None


def advance_inputs(report_clusters_df: pd.DataFrame, routing_df: pd.DataFrame | None,
                   kept: tuple | None = None) -> AdvanceInputs:
    """The part of :func:`advance_changed` that depends only on its arguments (no store): the pairs of
    ``report_clusters_df`` (:func:`_pairs`), each report's cluster and agencies text (``routing_df``:
    :func:`_agency_texts`), and, with ``kept`` (the kept ``status_inputs`` as :func:`read_kept_inputs` reads
    them), their comparison (:func:`_inputs_changed`). Pure Arrow work for the most part (sorts, hash
    look-ups, which run without Python's GIL): a run makes it in a thread while its store stage writes.

    >>> a = advance_inputs(pd.DataFrame({"report_id": ["R2", "R1"], "cluster_id": ["c", "c"]}),
    ...                    pd.DataFrame({"cluster_id": ["c"], "agencies": ['["politie"]']}),
    ...                    (["R1"], ["c"], ['["politie"]']))
    >>> a.cur_r.to_pylist(), a.cur_a.to_pylist(), a.changed.tolist(), a.gone
    (['R1', 'R2'], ['["politie"]', '["politie"]'], [False, True], [])
    """
    import pyarrow.compute as pc

    rids, cids = _pairs(report_clusters_df, as_arrow=True)
    # what a dict report -> (cluster, agencies) built in pair order holds: a report in several clusters
    # (never in a pipeline run) keeps its last pair's values at its first pair's place
    n = len(rids)
    first_of = run_starts(rids)
    last_of = np.r_[first_of[1:], True] if n else first_of
    cur_r = rids.filter(first_of)
    cur_c = cids.filter(last_of)
    cluster_ids, texts = _agency_texts(routing_df)
    cur_a = pc.fill_null(pc.take(texts, pc.index_in(cur_c, value_set=cluster_ids)), "[]") if len(cluster_ids) \
        else arrow_text(["[]"] * len(cur_c))
    out = AdvanceInputs(rids, cids, cur_r, cur_c, cur_a)
    if kept is not None:
        out.changed, out.gone = _inputs_changed(kept, cur_r, cur_c, cur_a)
    return out


def _routing_of(routing_df: pd.DataFrame | None, cluster_ids: np.ndarray) -> pd.DataFrame | None:
    """The rows of ``routing_df`` whose cluster (as text) is one of ``cluster_ids``: :func:`_routing_map` of
    them is :func:`_routing_map` of all rows restricted to those clusters (every row of a cluster is kept)."""
    if routing_df is None or not len(routing_df) or "cluster_id" not in routing_df.columns:
        return routing_df
    return routing_df[isin_text(routing_df["cluster_id"].astype(str), cluster_ids)]


def _agency_texts(routing_df: pd.DataFrame | None) -> tuple["pa.Array", "pa.Array"]:
    """``(cluster ids, agencies texts)``: per routed cluster (those :func:`_routing_map` gives, agencies not
    empty) the JSON list of its agencies as :func:`advance_changed` keeps it in ``status_inputs``; a cluster
    not listed has ``"[]"``. With one row per cluster and text values (a run's clusters) each distinct value is
    split once (Arrow's dictionary encoding) instead of once per cluster; otherwise :func:`_routing_map`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if routing_df is None or not len(routing_df):
        return arrow_text([]), arrow_text([])
    col = "agency" if "agency" in routing_df.columns else "agencies"
    if col not in routing_df.columns:
        raise LinkageError("Routing table has neither an 'agency' nor an 'agencies' column.")
    ids = arrow_text(routing_df["cluster_id"].astype(str))
    values = None
    if pc.count_distinct(ids).as_py() == len(ids):
        try:
            values = arrow_text(routing_df[col])
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # lists, say: split one by one below
            values = None
    if values is None or values.null_count:
        routed = _routing_map(routing_df)
        dumped: dict[tuple, str] = {}  # clusters share a few agency lists: each encoded once
        out = []
        for ags in routed.values():
            key = tuple(ags)
            if key not in dumped:
                dumped[key] = json.dumps(ags)
            out.append(dumped[key])
        return arrow_text(list(routed)), arrow_text(out)
    codes = values.dictionary_encode()
    split = _split_cached()
    distinct = [split(v) for v in codes.dictionary.to_pylist()]
    texts = arrow_text([json.dumps(ags) for ags in distinct])
    routed = pa.array([bool(ags) for ags in distinct], type=pa.bool_())
    index = codes.indices
    has = pc.take(routed, index)
    return ids.filter(has), pc.take(texts, index).filter(has)


def read_kept_inputs(conn) -> tuple[Any, Any, Any]:
    """The ``status_inputs`` rows as three Arrow text arrays (report, cluster, agencies; in no particular order;
    three empty lists when there are none), read as
    one text (``group_concat`` with separators no id or JSON agencies text holds: ids with control
    characters are quarantined on load, json.dumps escapes them) and cut in Arrow. When a piece count does not
    add up (a separator inside a value after all, a NULL id) or the text would be longer than SQLite allows, the
    rows are read one by one instead."""
    import pyarrow.compute as pc

    import sqlite3

    try:
        count, text = conn.execute(
            "SELECT count(*), group_concat(report_id || char(31) || cluster_id || char(31) || agencies, char(30)) "
            "FROM status_inputs").fetchone()
    except sqlite3.DataError:  # longer than SQLite's longest text (about 20 million reports): row by row
        count, text = None, None
    if count == 0:
        return [], [], []
    if text is not None:
        rows = pc.split_pattern(arrow_text([text]), "\x1e").flatten()
        if len(rows) == count:
            fields = pc.split_pattern(rows, "\x1f")
            if bool(pc.all(pc.equal(pc.list_value_length(fields), 3)).as_py()):
                flat = fields.flatten()
                return flat[0::3], flat[1::3], flat[2::3]
    rows = conn.execute("SELECT report_id, cluster_id, agencies FROM status_inputs").fetchall()
    return tuple(arrow_text(list(col)) for col in zip(*rows)) if rows else ([], [], [])


def _inputs_changed(kept: tuple, cur_r: Any, cur_c: Any, cur_a: Any) -> tuple[np.ndarray, list[str]]:
    """``(changed, gone)``: per current report (``cur_r``, distinct, with its cluster ``cur_c`` and agencies
    text ``cur_a``) whether its kept ``status_inputs`` row (``kept``: the report, cluster and agencies columns,
    one row at most per report, the table's key) is missing or differs, and the kept reports that are no longer
    current (in ``kept``'s order).

    Compared in Arrow (each current report's kept row found by one hash look-up), not as numpy object arrays.

    >>> changed, gone = _inputs_changed((["R1", "R2", "R3"], ["a", "a", "b"], ["[]"] * 3), ["R1", "R2", "R4"],
    ...                                 ["a", "b", "c"], ["[]"] * 3)
    >>> changed.tolist(), gone
    ([False, True, True], ['R3'])
    """
    import pyarrow.compute as pc

    kept_r, kept_c, kept_a = (arrow_text(col) for col in kept)
    now_r, now_c, now_a = arrow_text(cur_r), arrow_text(cur_c), arrow_text(cur_a)
    n = len(now_r)
    if not len(kept_r):
        return np.ones(n, dtype=bool), []
    at = pc.index_in(now_r, value_set=kept_r)
    found = pc.is_valid(at).to_numpy(zero_copy_only=False)
    pos = pc.fill_null(at, 0)
    same = pc.and_(pc.equal(pc.take(kept_c, pos), now_c), pc.equal(pc.take(kept_a, pos), now_a))
    changed = ~(found & pc.fill_null(same, False).to_numpy(zero_copy_only=False))
    hit = np.zeros(len(kept_r), dtype=bool)
    hit[pos.to_numpy(zero_copy_only=False)[found]] = True  # the kept reports some current report is
    gone = kept_r.filter(~hit).to_pylist()
    return changed, gone


def _pairs(report_clusters_df: pd.DataFrame, as_arrow: bool = False) -> tuple[Any, Any]:
    """The distinct ``(report_id, cluster_id)`` pairs as text, sorted (report, then cluster; the order of
    ``sorted(set(zip(...)))``: Arrow sorts text by its UTF-8 bytes, which is code point order), as two object
    arrays (``as_arrow``: two Arrow ``large_string`` arrays).

    >>> r, c = _pairs(pd.DataFrame({"report_id": ["R2", "R1", "R2", "R10"], "cluster_id": ["b", "a", "b", "a"]}))
    >>> r.tolist(), c.tolist()
    (['R1', 'R10', 'R2'], ['a', 'a', 'b'])
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(report_clusters_df):
        if as_arrow:
            return arrow_text([]), arrow_text([])
        return np.array([], dtype=object), np.array([], dtype=object)
    table = pa.table({"r": arrow_text(report_clusters_df["report_id"].astype(str)),
                      "c": arrow_text(report_clusters_df["cluster_id"].astype(str))})
    table = table.take(pc.sort_indices(table, sort_keys=[("r", "ascending"), ("c", "ascending")]))
    r, c = table.column("r").combine_chunks(), table.column("c").combine_chunks()
    keep = run_starts(r, c)
    if not keep.all():
        r, c = r.filter(keep), c.filter(keep)
    if as_arrow:
        return r, c
    return r.to_numpy(zero_copy_only=False), c.to_numpy(zero_copy_only=False)


def _advance_arrays(conn, rids: np.ndarray, cids: np.ndarray, routed: Mapping[str, list[str]], actor: str, at: str,
                    only: set[str] | None) -> AdvanceSummary:
    """:func:`_advance` over the pairs ``rids[i], cids[i]`` (sorted, distinct). When every report occurs once
    (one cluster per report, as a run stores them) the rules are applied to whole columns: no report's
    outcome depends on another pair, so each pair gives what the loop gives it, and the rows are put in the
    loop's order (pair by pair, ``gekoppeld`` before ``doorgezet``). Otherwise the loop itself runs."""
    if len(rids) > 1 and bool((rids[1:] == rids[:-1]).any()):
        return _advance(conn, list(zip(rids.tolist(), cids.tolist())), routed, actor, at, only)
    summary = AdvanceSummary()
    n = len(rids)
    if n == 0:
        return summary
    rid_list, cid_list = rids.tolist(), cids.tolist()
    last, known, linked_before, doorgezet = _history_of(conn, only, known=only is not None)
    if only is None:  # every report given: look up the few that are not stored rather than read all stored ids
        missing = [r for (r,) in conn.execute(
            "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT report_id FROM reports)",
            (json.dumps(rid_list),))]
        known_mask = ~isin_text(rids, missing)
    else:
        known_mask = isin_text(rids, known)
    if last:
        status = pd.Series(rids).map(last).fillna(INITIAL_STATUS).to_numpy(dtype=object)
    else:  # no history: every report is 'ontvangen'
        status = np.full(n, INITIAL_STATUS, dtype=object)
    final = isin_text(status, FINAL_STATUSES)
    summary.skipped_final = int((known_mask & final).sum())
    live = known_mask & ~final
    gek = live & isin_text(status, ("ontvangen", "in_behandeling"))
    if linked_before:
        gek &= ~isin_text(rids, linked_before)
    after = np.where(gek, "gekoppeld", status)
    recorded: dict[str, set[str]] = {}
    split = _split_cached()
    for rid, text in doorgezet:
        recorded.setdefault(rid, set()).update(split(text))
    joined = {cid: "; ".join(ags) for cid, ags in routed.items()}
    dz_idx, dz_text = [], []
    can = live & isin_text(after, ("gekoppeld", "doorgezet")) & isin_text(cids, list(routed))
    for i in np.flatnonzero(can).tolist():
        seen = recorded.get(rid_list[i])
        if not seen:
            dz_idx.append(i)
            dz_text.append(joined[cid_list[i]])
            continue
        new = [a for a in routed[cid_list[i]] if a not in seen]
        if new:
            dz_idx.append(i)
            dz_text.append("; ".join(new))
    gek_idx = np.flatnonzero(gek)
    summary.gekoppeld = len(gek_idx)
    summary.doorgezet = len(dz_idx)
    dz = np.asarray(dz_idx, dtype=np.int64)
    key = np.concatenate([gek_idx * 2, dz * 2 + 1])
    order = np.argsort(key, kind="stable")
    pos = np.concatenate([gek_idx, dz])[order].tolist()
    is_dz = (np.arange(len(key)) >= len(gek_idx))[order].tolist()
    row_rids = [rid_list[i] for i in pos]
    frm = status.tolist()
    aft = after.tolist()
    from_s = [aft[i] if d else frm[i] for i, d in zip(pos, is_dz)]
    to_s = ["doorgezet" if d else "gekoppeld" for d in is_dz]
    notes = [f"cluster {cid_list[i]} routed" if d else f"in cluster {cid_list[i]}" for i, d in zip(pos, is_dz)]
    texts = iter(dz_text)
    agency = [next(texts) if d else None for d in is_dz]
    summary.report_ids = row_rids
    if row_rids:  # one statement for all rows, in the loop's order (ids as one by one)
        conn.executemany(
            "INSERT INTO status_history (report_id, at, actor, from_status, to_status, note, agency) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            zip(row_rids, repeat(at), repeat(actor), from_s, to_s, notes, agency))
    return summary


def _history_of(conn, only: set[str] | None, known: bool = True):
    """``(last status per report, known report ids, reports ever 'gekoppeld', doorgezet rows (report, agency
    text))`` of the reports in ``only`` (None: all), as :func:`_advance` reads them; ``known=False`` leaves the
    stored ids out (an empty list) when ``only`` is None."""
    if only is None:
        last = _last_statuses(conn)  # reports without history are 'ontvangen'
        known = [r for (r,) in conn.execute("SELECT report_id FROM reports")] if known else []
        linked_before = {r for (r,) in conn.execute(
            "SELECT DISTINCT report_id FROM status_history WHERE to_status='gekoppeld'")}
        doorgezet = conn.execute(
            "SELECT report_id, agency FROM status_history WHERE to_status='doorgezet' AND agency IS NOT NULL")
    else:
        conn.execute("DROP TABLE IF EXISTS temp.advance_ids")
        conn.execute("CREATE TEMP TABLE advance_ids (id TEXT PRIMARY KEY)")
        conn.executemany("INSERT OR IGNORE INTO temp.advance_ids (id) VALUES (?)", ((r,) for r in only))
        last = dict(conn.execute(
            "SELECT h.report_id, h.to_status FROM status_history h WHERE h.id IN (SELECT MAX(id) FROM status_history "
            "WHERE report_id IN (SELECT id FROM temp.advance_ids) GROUP BY report_id)").fetchall())
        known = [r for (r,) in conn.execute("SELECT report_id FROM reports WHERE report_id IN "
                                            "(SELECT id FROM temp.advance_ids)")]
        linked_before = {r for (r,) in conn.execute(
            "SELECT DISTINCT report_id FROM status_history WHERE to_status='gekoppeld' "
            "AND report_id IN (SELECT id FROM temp.advance_ids)")}
        doorgezet = conn.execute(
            "SELECT report_id, agency FROM status_history WHERE to_status='doorgezet' AND agency IS NOT NULL "
            "AND report_id IN (SELECT id FROM temp.advance_ids)")
    return last, known, linked_before, doorgezet


def _advance(conn, pairs: list[tuple[str, str]], routed: Mapping[str, list[str]], actor: str, at: str,
             only: set[str] | None) -> AdvanceSummary:
    """The rules of :func:`advance_after_routing` over ``pairs`` (sorted ``(report_id, cluster_id)``), in the
    caller's transaction; the history read is that of the reports in ``only`` (None: all)."""
    summary = AdvanceSummary()
    rows: list[tuple] = []
    last, known_ids, linked_before, doorgezet = _history_of(conn, only)
    known = set(known_ids)
    recorded: dict[str, set[str]] = {}
    split = _split_cached()
    for rid, text in doorgezet:
        recorded.setdefault(rid, set()).update(split(text))
    for report_id, cluster_id in pairs:
        if report_id not in known:
            continue
        status = last.get(report_id, INITIAL_STATUS)
        if status in FINAL_STATUSES:
            summary.skipped_final += 1
            continue
        if status in ("ontvangen", "in_behandeling") and report_id not in linked_before:
            rows.append((report_id, at, actor, status, "gekoppeld", f"in cluster {cluster_id}", None))
            linked_before.add(report_id)
            summary.gekoppeld += 1
            summary.report_ids.append(report_id)
            status = last[report_id] = "gekoppeld"  # the report's status now (it may be in another cluster too)
        if status not in ("gekoppeld", "doorgezet"):
            continue
        agencies = routed.get(cluster_id)
        if not agencies:
            continue
        seen = recorded.get(report_id, set())
        new = [a for a in agencies if a not in seen]
        if not new:
            continue
        rows.append((report_id, at, actor, status, "doorgezet", f"cluster {cluster_id} routed", "; ".join(new)))
        recorded.setdefault(report_id, set()).update(new)
        last[report_id] = "doorgezet"
        summary.doorgezet += 1
        summary.report_ids.append(report_id)
    if rows:  # one statement for all rows, in the order decided above (ids as one by one)
        conn.executemany(
            "INSERT INTO status_history (report_id, at, actor, from_status, to_status, note, agency) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return summary


# --- clusters: cases and history ------------------------------------------------------------------
def set_case(store, cluster_id: str, active: bool, actor: str | None = None, note: str | None = None,
             now: dt.datetime | None = None) -> int:
    """Mark a cluster as an active case (kept by retention) or close it; append-only, last row wins.

    Raises
    ------
    NotFoundError
        When the cluster is neither in ``clusters`` nor in ``report_clusters``.
    """
    found = store.conn.execute(
        "SELECT 1 FROM clusters WHERE cluster_id=? UNION SELECT 1 FROM report_clusters WHERE cluster_id=?",
        (cluster_id, cluster_id),
    ).fetchone()
    if found is None:
        raise NotFoundError(f"Cluster {cluster_id[:60]} is not in the store; run linkage clusters to list them.")
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO cluster_cases (cluster_id, active, note, at, actor) VALUES (?, ?, ?, ?, ?)",
            (cluster_id, int(bool(active)), note, now_iso(now), actor or current_actor()),
        )
    return int(cur.lastrowid)


def active_case_clusters(store) -> set[str]:
    """Clusters whose latest case row is active."""
    rows = store.conn.execute(
        "SELECT c.cluster_id, c.active FROM cluster_cases c JOIN "
        "(SELECT cluster_id, MAX(id) AS id FROM cluster_cases GROUP BY cluster_id) l ON c.id = l.id"
    ).fetchall()
    return {cid for cid, active in rows if active}


def record_cluster_events(store, events: Iterable[tuple[str, str, Iterable[str]] | Mapping[str, Any]],
                          run_id: int | None = None, now: dt.datetime | None = None) -> int:
    """Append cluster history rows ``(cluster_id, event, related_ids)`` for one run; returns the count.

    ``event`` is one of :data:`CLUSTER_EVENTS`; ``related_ids`` are the cluster ids it came from or
    went to (merged from, split into, ...). Call inside the run's transaction or on its own.
    """
    at = now_iso(now)
    rows = []
    for ev in events:
        if isinstance(ev, Mapping):
            cid, kind, related = ev["cluster_id"], ev["event"], ev.get("related_ids") or []
        else:
            cid, kind, related = ev
        if kind not in CLUSTER_EVENTS:
            raise LinkageError(f"Cluster event '{kind}' is not one of {', '.join(CLUSTER_EVENTS)}.")
        rows.append((at, run_id, str(cid), kind, json.dumps(sorted(str(r) for r in related))))
    store.conn.executemany(
        "INSERT INTO cluster_history (at, run_id, cluster_id, event, related_ids) VALUES (?, ?, ?, ?, ?)", rows
    )
    return len(rows)


def cluster_history(store, cluster_id: str | None = None) -> pd.DataFrame:
    """Cluster history rows (oldest first), of one cluster or all; ``related_ids`` parsed."""
    sql = "SELECT id, at, run_id, cluster_id, event, related_ids FROM cluster_history"
    params: tuple = ()
    if cluster_id is not None:
        sql += " WHERE cluster_id=? OR related_ids LIKE ?"
        params = (cluster_id, f'%"{cluster_id}"%')
    df = store.frame(sql + " ORDER BY id", params)
    df["related_ids"] = [json.loads(v) if v else [] for v in df["related_ids"]]
    return df
