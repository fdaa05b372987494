"""Loaders: input files into the canonical schema in the embedded store, with a quarantine.

In:  report files, mention files (CSV, Excel, JSON Lines) and wide exports with a mapping file.
Out: rows in the store's ``reports``, ``mentions`` and ``mention_links`` tables; rejected rows in the
     store's ``quarantine`` table and in ``<store>.quarantine.csv`` next to it; a :class:`LoadSummary`
     whose counts reconcile for every file: rows read = rows loaded + rows quarantined.

Loading streams in chunks of ``settings.chunk_rows`` rows; each chunk commits in one transaction, so
an interrupted load keeps what it committed and re-running it gives the same store as one clean run.
Re-loading a row with the same content is a no-op; the same id with other content is a conflict: the
new row is quarantined and the stored one is kept.
"""
from __future__ import annotations

import csv
import json
from collections import Counter, deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from linkage import model
from linkage.errors import InputError, LinkageError, Problem
from linkage.gcpause import paused_gc
from linkage.pseudonym import pseudonymise_bsn
from linkage.settings import Settings, load_settings
from linkage.store.embedded import EmbeddedStore, _binding_none
from loaders.canonical import Origin, _strip, canonical_column, row_checker, text
from loaders.readers import Table, read_table, record_row
from loaders.wide import WideMapping, load_mapping

__all__ = ["FileSummary", "LoadSummary", "load_files", "quarantine_path", "read_table", "load_mapping"]

# A validated mention row is a tuple of the values of one of these column lists: the head (the same in all:
# id, report id and content hash at fixed places), the value columns, then source_file and source_row.
_MENTION_HEAD = ["mention_id", "report_id", "content_hash", "entity_type", "role", "warnings", "parent_mention_id"]
_MENTION_COLUMNS = (_MENTION_HEAD + list(model.VALUE_FIELDS) + list(model.NORMALISED_FIELDS)
                    + ["source_file", "source_row"])
_REPORT_COLUMNS = [
    "report_id", "received_at", "category", "category_raw", "description", "reporter_id", "reporter_type",
    "content_hash", "source_file", "source_row",
]
_QUARANTINE_COLUMNS = ["source_file", "source_row", "kind", "field", "reason", "raw"]


@dataclass
class FileSummary:
    """What happened to one file. ``rows_read == loaded + quarantined`` always holds."""

    file: str
    kind: str  # reports | mentions | wide
    format: str
    encoding: str | None = None
    delimiter: str | None = None
    rows_read: int = 0
    new: int = 0
    unchanged: int = 0
    quarantined: int = 0
    conflicts: int = 0
    mentions_added: int = 0
    warnings: Counter = field(default_factory=Counter)
    warning_rows: dict = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return self.new + self.unchanged

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.loaded + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "kind": self.kind, "format": self.format, "encoding": self.encoding,
            "delimiter": self.delimiter, "rows_read": self.rows_read, "loaded": self.loaded, "new": self.new,
            "unchanged": self.unchanged, "quarantined": self.quarantined, "conflicts": self.conflicts,
            "mentions_added": self.mentions_added,
            "warnings": [
                {"field": f, "message": m, "count": c, "first_rows": self.warning_rows.get((f, m), [])}
                for (f, m), c in sorted(self.warnings.items())
            ],
            "ignored_columns": self.ignored_columns, "reconciles": self.reconciles,
        }


@dataclass
class LoadSummary:
    """The result of :func:`load_files`."""

    files: list[FileSummary]
    quarantine_file: Path | None
    store: Path

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def loaded(self) -> int:
        return sum(f.loaded for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def reconciles(self) -> bool:
        return all(f.reconciles for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store), "quarantine_file": str(self.quarantine_file) if self.quarantine_file else None,
            "rows_read": self.rows_read, "loaded": self.loaded, "quarantined": self.quarantined,
            "reconciles": self.reconciles, "files": [f.to_dict() for f in self.files],
        }


def quarantine_path(store_path: Path) -> Path:
    """The quarantine file next to a store: ``linkage.db`` -> ``linkage.quarantine.csv``."""
    return store_path.with_name(store_path.stem + ".quarantine.csv")


def _classify(table: Table, mapping: WideMapping | None) -> str:
    cols = {canonical_column(c) for c in table.columns}
    if mapping is not None and mapping.columns & set(table.columns) and "entity_type" not in cols:
        return "wide"
    if "entity_type" in cols:
        return "mentions"
    if {"report_id", "received_at", "category"} <= cols:
        return "reports"
    hint = " (for a wide export, pass --mapping FILE)" if mapping is None else ""
    raise InputError(
        f"{table.path}: cannot tell what this file holds{hint}. A reports file needs the columns report_id, "
        "received_at and category; a mentions file needs report_id and entity_type. "
        f"Columns found: {', '.join(table.columns[:20]) or 'none'}."
    )


class _Loader:
    def __init__(self, store: EmbeddedStore, settings: Settings, progress, on_commit,
                 mapping: WideMapping | None = None) -> None:
        self.store = store
        self.settings = settings
        self.progress = progress
        self.on_commit = on_commit
        self.mapping = mapping
        self.chunk = max(1, settings.chunk_rows)
        self.checker = row_checker(settings)
        self.workers = max(0, settings.load_workers)
        self.parallel_min_rows = settings.load_parallel_min_rows
        self.pool = None
        # validated chunks (and files' quarantine resets) not yet written, in the order they are written:
        # (task, rows or future, summary), or (None, file label, summary) for a reset
        self.pending: deque = deque()
        # report ids known to be stored or accepted by this load: filled per chunk with the ids its mentions
        # name (one indexed look-up of those not known yet), never with every stored id
        self.known_reports: set[str] = set()
        self.seen_reports: dict[str, str] = {}
        self.seen_mentions: dict[str, str] = {}
        # Whether each table held rows before this load: rows this load adds are all in seen_reports /
        # seen_mentions, so for a table that started empty the store has nothing more to tell (a first load
        # then asks it nothing per chunk).
        self.stored_before = {t: bool(store.conn.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0])
                              for t in ("reports", "mentions")}

    # --- shared helpers ----------------------------------------------------------------------------
    def _reports_known(self, ids: Iterable[str]) -> set[str]:
        """The known report ids (:attr:`known_reports`), after looking up those of ``ids`` not known yet in the
        store (as committed now: every earlier chunk's reports are in it). A mentions file of 1,000 rows against
        a store of 100,000 reports asks for its few hundred ids instead of reading all 100,000."""
        known = self.known_reports
        unknown = [r for r in dict.fromkeys(ids) if r and r not in known]
        for i in range(0, len(unknown), 900):
            part = unknown[i:i + 900]
            known.update(r for (r,) in self.store.conn.execute(
                f"SELECT report_id FROM reports WHERE report_id IN ({','.join('?' * len(part))})", part))
        return known

    def _existing(self, table: str, key: str, ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in range(0, len(ids), 900):
            part = list(ids[i:i + 900])
            q = f"SELECT {key}, content_hash FROM {table} WHERE {key} IN ({','.join('?' * len(part))})"
            out.update(self.store.conn.execute(q, part).fetchall())
        return out

    @staticmethod
    def _warn(summary: FileSummary, problems: Iterable[Problem]) -> None:
        for p in problems:
            if p.severity == "warning":
                key = (p.field or "", p.message)
                summary.warnings[key] += 1
                rows = summary.warning_rows.setdefault(key, [])
                if len(rows) < 5:
                    rows.append(p.row)

    @staticmethod
    def _quarantine_row(origin: Origin, kind: str, problems: list[Problem], raw: dict) -> dict:
        errors = [p for p in problems if p.severity == "error"] or problems
        return {
            "source_file": origin.file, "source_row": origin.row, "kind": kind,
            "field": ",".join(sorted({p.field for p in errors if p.field})) or None,
            "reason": " | ".join(p.message for p in errors),
            "raw": json.dumps({k: (pseudonymise_bsn(v) if k == "bsn" else v) for k, v in raw.items()
                               if not k.startswith("__")}, ensure_ascii=False, default=str),
        }

    def _canonical_rows(self, table: Table, summary: FileSummary, kind: str):
        """Rows with canonical column names; unknown columns noted once."""
        rename = {c: canonical_column(c) for c in table.columns}
        if kind != "wide":
            known = set(model.REPORT_FIELDS if kind == "reports" else model.MENTION_FIELDS)
            summary.ignored_columns = sorted(c for c, k in rename.items() if k not in known and c)
            # A reader that can key its rows by the canonical names directly saves a dict per row (the
            # same rows result when no header name repeats or clashes with the reader's own keys).
            if (table.keyed_rows is not None and len(set(table.columns)) == len(table.columns)
                    and not {"__extra__", "__error__"} & set(table.columns)):
                yield from table.keyed_rows([rename[c] for c in table.columns])
                return
        for row_no, row in table.rows:
            if kind == "wide":
                yield row_no, row
            else:
                yield row_no, {rename.get(k, k): v for k, v in row.items()}

    def _commit(self, reports: list[tuple], mentions: list[tuple], links: list[tuple], quarantine: list[dict]) -> None:
        with self.store.transaction():
            with _binding_none():
                conn = self.store.conn
                if reports:
                    conn.executemany(_REPORT_INSERT, reports)
                if mentions:
                    _insert_mentions(conn, mentions)
                if links:
                    conn.executemany(_LINK_INSERT, links)
            self.store.insert_rows("quarantine", quarantine, _QUARANTINE_COLUMNS, "INSERT OR REPLACE")
        if self.on_commit:
            self.on_commit()

    # --- per-row handling --------------------------------------------------------------------------
    def _report_status(self, rid: str, h: str, existing: dict[str, str]) -> str:
        """'new', 'unchanged' or 'conflict' for a validated report; a new one is remembered by
        :meth:`_remember_report` once its whole row is accepted (a wide row whose mentions conflict is not)."""
        prior = self.seen_reports.get(rid) or existing.get(rid)
        if prior is None:
            return "new"
        return "unchanged" if prior == h else "conflict"

    def _remember_report(self, rid: str, h: str) -> None:
        self.seen_reports[rid] = h
        self.known_reports.add(rid)

    def _accept_mentions(self, rows: list[tuple], existing: dict[str, str]) -> str:
        """'new', 'unchanged' or 'conflict' for the validated mention rows of one input row."""
        known = 0
        at = _MENTION_HASH_AT
        for r in rows:
            prior = self.seen_mentions.get(r[0]) or existing.get(r[0])
            if prior is not None:
                if prior != r[at]:
                    return "conflict"
                known += 1
        if known == len(rows):
            return "unchanged"
        if known:  # the row now carries more (say an address) than was stored under its id
            return "conflict"
        for r in rows:
            self.seen_mentions[r[0]] = r[at]
        return "new"

    # --- files -------------------------------------------------------------------------------------
    def run_file(self, table: Table, kind: str, label: str) -> FileSummary:
        """Load one ``table`` of ``kind`` ("reports", "mentions" or "wide", with the loader's mapping) chunk by
        chunk, committing each chunk in file order; returns its summary (rows read = loaded + quarantined),
        complete once :meth:`finish` has run. ``label`` names the file in the summary, the quarantine and every
        message.

        With workers, the last chunks of a file may still be in the workers' hands when this returns: the next
        file's first chunks go to them while this process writes those (no core waits at a file boundary). The
        store sees the same writes in the same order as when each file is finished before the next begins."""
        summary = FileSummary(label, kind, table.format, table.encoding, table.delimiter)
        pending = self.pending
        # A re-loaded file replaces its own quarantine entries: a row fixed since is no longer listed. Done in
        # turn with the chunks (after every chunk of the files before, before any of this file).
        pending.append((None, label, summary))
        # Identical rows are counted over the whole file, not per chunk: derived mention ids must not
        # depend on chunk_rows (nor on where an interrupted load stopped). Rows with a mention_id never
        # need the count (and their keys, which hold that id, never equal the key of a row without one).
        occurrences: Counter = Counter()
        count = kind == "mentions"
        try:
            keys = self._record_keys(table, summary, kind)
            if keys is not None:
                # rows as cell lists under ``keys`` (cheap to hand to a worker process); dicts only where needed
                # the cell a row's mention_id comes from (the last of repeated names, as in a dict of the row)
                mid_at = max((i for i, k in enumerate(keys) if k == "mention_id"), default=None)
                rows: Iterable = table.records()
            else:
                rows = self._canonical_rows(table, summary, kind)
            chunk: list[tuple] = []
            read = expected = 0
            for item in rows:
                if keys is not None:
                    row_no, cells, extra = item
                    occ = 0
                    if count and (mid_at is None or not _strip(cells[mid_at])):
                        row = record_row(keys, cells, extra)
                        key = _occurrence_key(row)
                        occ = occurrences[key]
                        occurrences[key] += 1
                    chunk.append((row_no, cells, extra, occ))
                else:
                    row_no, row = item
                    occ = 0
                    if count and "__error__" not in row and not text(row.get("mention_id")):
                        key = _occurrence_key(row)
                        occ = occurrences[key]
                        occurrences[key] += 1
                    chunk.append((row_no, row, occ))
                if len(chunk) >= self.chunk:
                    if not read and keys is not None:  # the first chunk: will the file pass parallel_min_rows?
                        expected = _expected_rows(table.path, chunk)
                    read += len(chunk)
                    self._submit((kind, label, keys, chunk), summary, max(read, expected))
                    chunk = []
                    # with workers, a few chunks are validated ahead of the one being written
                    self._drain(2 * self.workers if self.pool is not None else 0)
            if chunk:
                read += len(chunk)
                self._submit((kind, label, keys, chunk), summary, read)
            self._drain(2 * self.workers if self.pool is not None else 0)
        except BaseException:
            self._abandon()
            raise
        return summary

    def finish(self) -> None:
        """Write every chunk still pending (the summaries :meth:`run_file` returned are then complete)."""
        try:
            self._drain(0)
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        """Interrupted (or a chunk failed): what is still pending is not written (the work is discarded; a
        file's chunks may be pending while the next file is read, so those of the file before may be among
        them: the load stops after its last committed chunk either way, and loading again continues there)."""
        self.pending.clear()
        self.close_pool()

    def _drain(self, keep: int) -> None:
        """Write pending chunks, in order, until at most ``keep`` are left."""
        while len(self.pending) > keep:
            self._step()

    def _step(self) -> None:
        """Do the first pending thing: a file's quarantine reset, or a validated chunk's write."""
        task, staged, summary = self.pending.popleft()
        if task is None:
            with self.store.transaction():
                self.store.conn.execute("DELETE FROM quarantine WHERE source_file = ?", (staged,))
        else:
            self._apply(task, staged, summary)

    def _record_keys(self, table: Table, summary: FileSummary, kind: str) -> list[str] | None:
        """The keys to read ``table.records()`` under (the canonical column names; a wide file's own names),
        or None when rows must be read as dicts (no records, repeated or clashing header names)."""
        rename = {c: canonical_column(c) for c in table.columns}
        if kind != "wide":
            known = set(model.REPORT_FIELDS if kind == "reports" else model.MENTION_FIELDS)
            summary.ignored_columns = sorted(c for c, k in rename.items() if k not in known and c)
        if (table.records is None or len(set(table.columns)) != len(table.columns)
                or {"__extra__", "__error__"} & set(table.columns)):
            return None
        return list(table.columns) if kind == "wide" else [rename[c] for c in table.columns]

    def _submit(self, task: tuple, summary: FileSummary, read: int) -> None:
        """Validate one chunk: here, or in the worker pool once the load is large enough to be worth it (``read``:
        the rows of the file read so far, or as many as it is expected to hold when that is more)."""
        if self.pool is None and self.workers > 0 and read > self.parallel_min_rows:
            self.pool = _start_pool(self.workers, self.settings, self.mapping)
            if self.pool is None:  # pragma: no cover - no fork on this platform
                self.workers = 0
        if self.pool is not None:
            try:
                future = self.pool.submit(_validate_task, _pack(task))
            except BrokenProcessPool:
                # a worker died while checking an earlier chunk: writing the pending chunks in order reaches
                # that chunk, whose error names its rows (the chunks before it are written)
                self._drain(0)
                raise _worker_died(task) from None
            self.pending.append((task, future, summary))
        else:
            self.pending.append((task, _validate(self.checker, self.mapping, task), summary))

    def _apply(self, task: tuple, staged, summary: FileSummary) -> None:
        """Decide new / unchanged / conflict / quarantined for each validated row of a chunk, in row order, and
        commit the chunk."""
        kind, label, keys, chunk = task
        if not isinstance(staged, list):
            try:
                staged = staged.result()
            except BrokenProcessPool:
                raise _worker_died(task) from None
        reports_out: list[tuple] = []
        mentions_out: list[tuple] = []
        links_out: list[tuple] = []
        quarantine: list[dict] = []

        existing_reports = existing_mentions = {}
        if self.stored_before["reports"]:
            report_ids = [s[2][0] for s in staged if s[2] is not None]
            existing_reports = self._existing("reports", "report_id", report_ids) if report_ids else {}
        if self.stored_before["mentions"]:
            mention_ids = [m[0] for s in staged for m in s[3]]
            existing_mentions = self._existing("mentions", "mention_id", mention_ids) if mention_ids else {}
        known_reports = self._reports_known(s[3][0][1] for s in staged if not s[1] and s[3]) \
            if kind == "mentions" else None
        qkind = {"reports": "report", "mentions": "mention", "wide": "wide"}[kind]
        new = unchanged = quarantined = conflicts = 0

        for (row_no, errors, report_row, mention_rows, link_rows, problems), item in zip(staged, chunk, strict=True):
            if not errors and kind == "mentions":
                rid = mention_rows[0][1] if mention_rows else None
                if rid and rid not in known_reports:
                    errors = [Problem(label, row_no, "report_id", "report_id is not among the loaded reports; load "
                                      "its report first (or see the quarantine: it may have been rejected).")]
            if errors:
                quarantined += 1
                quarantine.append(self._quarantine_row(Origin(label, row_no), qkind, errors, _raw(keys, item)))
                continue
            report_status = None
            if report_row is not None:
                report_status = self._report_status(report_row[0], report_row[_REPORT_HASH_AT], existing_reports)
            status = report_status or "new"
            if report_status != "conflict" and mention_rows:
                mention_status = self._accept_mentions(mention_rows, existing_mentions)
                status = mention_status if report_status in (None, "unchanged") or mention_status == "conflict" else status
            if report_status == "new" and status != "conflict":
                self._remember_report(report_row[0], report_row[_REPORT_HASH_AT])
            if status == "conflict":
                quarantined += 1
                conflicts += 1
                what = "report_id" if report_status == "conflict" else "mention_id"
                origin = Origin(label, row_no)
                quarantine.append(self._quarantine_row(origin, qkind, [origin.problem(
                    what, f"conflict: this {what} was already loaded with different content; the stored "
                    "version is kept. Give the corrected row a new id or remove the old one first.")], _raw(keys, item)))
                continue
            if problems:
                self._warn(summary, problems)
            if status == "unchanged":
                unchanged += 1
                continue
            new += 1
            if report_status == "new":
                reports_out.append(report_row)
            if mention_rows:
                mentions_out.extend(mention_rows)
                links_out.extend(link_rows)
        summary.rows_read += len(chunk)
        summary.new += new
        summary.unchanged += unchanged
        summary.quarantined += quarantined
        summary.conflicts += conflicts
        summary.mentions_added += len(mentions_out)
        self._commit(reports_out, mentions_out, links_out, quarantine)
        if self.progress:
            self.progress(label, len(chunk))

    def close_pool(self) -> None:
        """Stop the worker processes (at the end of a load, or at once when it is interrupted)."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            processes = list((getattr(pool, "_processes", None) or {}).values())  # no public list before 3.14
            pool.shutdown(wait=False, cancel_futures=True)
            for p in processes:
                p.terminate()
            for p in processes:
                p.join()


_REPORT_INSERT = f"INSERT INTO reports ({', '.join(_REPORT_COLUMNS)}) VALUES ({', '.join('?' * len(_REPORT_COLUMNS))})"
_MENTION_INSERT = f"INSERT INTO mentions ({', '.join(_MENTION_COLUMNS)}) VALUES ({', '.join('?' * len(_MENTION_COLUMNS))})"


def _type_columns(entity_type: str) -> list[str]:
    """The columns a mention of ``entity_type`` can have a value in (its own value fields and their normalised
    forms; the rest are NULL for it), in the order of :data:`_MENTION_COLUMNS`."""
    own = set(model.TYPE_FIELDS[entity_type])
    normalised = {f"{f}_norm" for f in own}
    return [c for c in _MENTION_COLUMNS if c in _MENTION_HEAD or c in own or c in normalised
            or c in ("source_file", "source_row")]


#: entity type -> (its columns less source_file and source_row, as a set; those columns)
_TYPE_LAYOUTS: dict[str, tuple[frozenset, tuple[str, ...]]] = {
    t: (frozenset(_type_columns(t)[:-2]), tuple(_type_columns(t)[:-2])) for t in model.ENTITY_TYPES}
#: row length -> entity type -> the INSERT of that type's layout (the rowid bound last)
_MENTION_INSERTS: dict[int, dict[str, str]] = {}
for _t, (_, _cols) in _TYPE_LAYOUTS.items():
    _names = _cols + ("source_file", "source_row", "rowid")
    _MENTION_INSERTS.setdefault(len(_names) - 1, {})[_t] = (
        f"INSERT INTO mentions ({', '.join(_names)}) VALUES ({', '.join('?' * len(_names))})")
_ALL_COLUMNS_INSERT = (f"INSERT INTO mentions ({', '.join(_MENTION_COLUMNS)}, rowid) "
                       f"VALUES ({', '.join('?' * (len(_MENTION_COLUMNS) + 1))})")
_MAX_ROWID = 2**63 - 1


def _mention_tuple(record: dict, label: str, row: int) -> tuple:
    """A mention record as a row of :data:`_MENTION_COLUMNS`, or of its entity type's columns when it holds no
    other (every checked record does: a mention carries its own type's values only): fewer values to bind,
    most of them NULL."""
    layout = _TYPE_LAYOUTS.get(record.get("entity_type"))
    if layout is not None and record.keys() <= layout[0]:
        return (*map(record.get, layout[1]), label, row)
    return (*map(record.get, _MENTION_FIELDS_OUT), label, row)


def _insert_mentions(conn, rows: list[tuple]) -> None:
    """Insert mention rows (:func:`_mention_tuple`) in one executemany per layout, each row with the rowid
    SQLite would have given it had the rows gone in one by one in order (one more than the largest, in turn):
    the same table as that."""
    top = conn.execute("SELECT MAX(rowid) FROM mentions").fetchone()[0] or 0
    if top + len(rows) >= _MAX_ROWID:  # pragma: no cover - SQLite then picks rowids at random
        conn.executemany(_MENTION_INSERT, map(_full_row, rows))
        return
    groups: dict[tuple, list] = {}
    for rowid, row in enumerate(rows, top + 1):
        key = (len(row), row[3])
        group = groups.get(key)
        if group is None:
            groups[key] = [(*row, rowid)]
        else:
            group.append((*row, rowid))
    for (width, entity_type), group in groups.items():
        sql = _MENTION_INSERTS.get(width, {}).get(entity_type) if width != len(_MENTION_COLUMNS) else None
        conn.executemany(sql or _ALL_COLUMNS_INSERT, group)


def _full_row(row: tuple) -> tuple:
    """A mention row of any layout as a row of all of :data:`_MENTION_COLUMNS`."""
    if len(row) == len(_MENTION_COLUMNS):
        return row
    columns = _TYPE_LAYOUTS[row[3]][1] + ("source_file", "source_row")
    values = dict(zip(columns, row))
    return tuple(values.get(c) for c in _MENTION_COLUMNS)


_LINK_INSERT = ("INSERT OR IGNORE INTO mention_links (src_mention_id, dst_mention_id, rel_type, report_id) "
                "VALUES (?, ?, ?, ?)")
_REPORT_FIELDS_OUT = _REPORT_COLUMNS[:-2]   # source_file and source_row are added per row
_MENTION_FIELDS_OUT = _MENTION_COLUMNS[:-2]
_REPORT_HASH_AT = _REPORT_COLUMNS.index("content_hash")    # ids are the first column of both
_MENTION_HASH_AT = _MENTION_COLUMNS.index("content_hash")


def _expected_rows(path: Path, chunk: list[tuple]) -> int:
    """About how many rows a CSV file holds: its size over the length of the rows of its first ``chunk`` (items
    ``(row number, cells, ...)``) as text; 0 when the file cannot be measured. The workers then start with
    the first chunk of a file that will pass ``parallel_min_rows`` instead of after the rows before it. An
    estimate that only decides when the workers start, never what is stored: quotes, CRLF line ends and
    multi-byte characters are not counted, so it can be ~1.4x too high for a fully quoted export.

    >>> _expected_rows(Path("no such file"), [(2, ["a"], 0, 0)])
    0
    """
    try:
        size = Path(path).stat().st_size
    except OSError:
        return 0
    chars = sum(len(c) + 1 for item in chunk for c in item[1] if c is not None)
    return int(size * len(chunk) / max(chars, 1))


def _occurrence_key(row: dict) -> tuple:
    """What makes two rows without a mention_id identical (see :meth:`_Loader.run_file`)."""
    return (text(row.get("report_id")), tuple(sorted((k, str(v)) for k, v in row.items() if text(v))))


def _raw(keys: list[str] | None, item: tuple) -> dict:
    """The row of a chunk item as read (for the quarantine)."""
    if keys is None:
        return item[1]
    return record_row(keys, item[1], item[2])


def _validate(checker, mapping: WideMapping | None, task: tuple) -> list[tuple]:
    """Validate one chunk of rows: per row, in order, ``(row number, errors, report row, mention rows, link rows,
    problems)``: the rows as SQLite tuples (``None``/empty when the row is rejected; ids first, content hashes
    at :data:`_REPORT_HASH_AT` / :data:`_MENTION_HASH_AT`; mention rows in their entity type's layout, see
    :func:`_mention_tuple`), problems None when there are none. Pure (no store, no state), so it can run in a
    worker."""
    kind, label, keys, chunk = task
    extra_cells = "row has more cells than the header; extra cells ignored."
    out: list[tuple] = []
    stage = out.append
    no_rows: tuple = ()
    for item in chunk:
        row_no = item[0]
        if keys is not None:
            row = record_row(keys, item[1], item[2])
        else:
            row = item[1]
        origin = Origin(label, row_no)
        if "__error__" in row:
            stage((row_no, [origin.problem(row.get("__error_field__"), row["__error__"])], None, no_rows, no_rows, None))
            continue
        problems: list[Problem] = []
        if row.get("__extra__"):
            problems.append(origin.problem(None, extra_cells, "warning"))
        report = None
        parts: list[tuple[list, list]] = []
        if kind != "mentions":
            rep_row, mention_rows = mapping.split(row) if kind == "wide" else (row, [])
            report, probs = checker.report(rep_row, origin)
            problems.extend(probs)
            for mrow in mention_rows:
                ms, ls, probs = checker.mention(mrow, origin, 0, False)
                problems.extend(probs)
                if ms:
                    parts.append((ms, ls))
        else:
            ms, ls, probs = checker.mention(row, origin, item[-1], True)
            if probs:
                problems.extend(probs)
            if ms:
                parts.append((ms, ls))
        errors = [p for p in problems if p.severity == "error"] if problems else problems
        if not errors and kind != "mentions" and report is None:
            errors = [origin.problem(None, "row could not be read as a report.")]
        if errors:
            stage((row_no, errors, None, no_rows, no_rows, None))
            continue
        # as SQLite stores them: the checker's records hold only text and None, which SQLite binds as they are
        report_row = None if report is None else (*map(report.get, _REPORT_FIELDS_OUT), label, row_no)
        mention_rows, link_rows = [], []
        for ms, ls in parts:
            for m in ms:
                mention_rows.append(_mention_tuple(m, label, row_no))
            for link in ls:
                link_rows.append((link["src_mention_id"], link["dst_mention_id"], link["rel_type"], link["report_id"]))
        stage((row_no, None, report_row, mention_rows, link_rows, problems or None))
    return out


# --- validation in worker processes ------------------------------------------------------------------
# Validating rows (checks, normalising, content hashes) is most of a load's CPU and needs nothing but the
# row; reading the file, deciding new / unchanged / conflict and writing need the store and stay in this
# process. With [loading] workers > 0, chunks are validated by forked worker processes while this process
# reads the next chunks and writes the finished ones, in file order, so the store is the same.
_FORKED: dict[str, Any] = {}


def _worker_died(task: tuple) -> LinkageError:
    """The error for a row-checking worker that died (killed, out of memory) before ``task`` was checked."""
    _, label, _, chunk = task
    return LinkageError(
        f"{label}: a row-checking worker process stopped unexpectedly (killed, or out of memory?) while "
        f"checking rows {chunk[0][0]}-{chunk[-1][0]}; the rows before them are loaded, and loading "
        f"again continues after them ([loading] workers = 0 checks rows in this process)")


def _start_pool(workers: int, settings: Settings, mapping: WideMapping | None):
    from linkage.forking import can_fork, fork_pool

    if not can_fork():  # pragma: no cover - Linux has fork
        return None
    _FORKED.update(settings=settings, mapping=mapping)
    # an executor, not multiprocessing.Pool: a worker that dies (killed, out of memory) breaks the executor,
    # which raises BrokenProcessPool, where a Pool would replace the worker and wait for its task forever.
    # Ctrl-C is handled by the loading process, which stops the workers; they end if it is killed.
    return fork_pool(workers, ignore_interrupt=True)


def _validate_task(task: tuple) -> list[tuple]:
    return _validate(row_checker(_FORKED["settings"]), _FORKED["mapping"], _unpack(task))


_CELL, _ROW = "\x1f", "\x1e"  # unit and record separators


def _pack(task: tuple) -> tuple:
    """A chunk of cell lists as one string (a fifth of the cost of pickling the lists) when no cell is None
    (a short row) or holds a separator; other chunks as they are. :func:`_unpack` gives the chunk back."""
    kind, label, keys, chunk = task
    if keys is None:
        return task
    try:
        text = _ROW.join([_CELL.join(item[1]) for item in chunk])
    except TypeError:  # a None cell
        return task
    if text.count(_CELL) != len(chunk) * (len(keys) - 1) or text.count(_ROW) != len(chunk) - 1:
        return task
    return kind, label, keys, ([item[0] for item in chunk], [item[2] for item in chunk],
                               [item[3] for item in chunk], text)


def _unpack(task: tuple) -> tuple:
    kind, label, keys, chunk = task
    if not isinstance(chunk, tuple):
        return task
    numbers, extras, occs, text = chunk
    return kind, label, keys, list(zip(numbers, [r.split(_CELL) for r in text.split(_ROW)], extras, occs))


def load_files(
    paths: Sequence[Path | str],
    store: EmbeddedStore,
    settings: Settings | None = None,
    mapping: Path | str | None = None,
    progress: Callable[[str, int], None] | None = None,
    on_commit: Callable[[], None] | None = None,
) -> LoadSummary:
    """Load report, mention and wide files into ``store``; reports files first, whatever the order given.

    Parameters
    ----------
    paths:
        Files to load; each is recognised by its columns (see ``docs/input-format.md``).
    mapping:
        A wide-export mapping file (TOML); needed for wide files.
    progress:
        Called as ``progress(file_label, rows_done_in_this_chunk)`` after every committed chunk.
    on_commit:
        Called after each committed chunk (used by tests to interrupt a load halfway).

    Raises
    ------
    InputError
        A file is missing, of an unknown type, or has no recognisable columns (nothing is loaded from it).
    """
    settings = settings or load_settings()
    wide = load_mapping(mapping) if mapping else None
    tables = []
    for p in paths:
        table = read_table(p)
        kind = _classify(table, wide)
        if kind == "wide":
            missing = sorted(wide.columns - set(table.columns))
            if missing:
                raise InputError(
                    f"{table.path}: the mapping {wide.path} names column(s) this file lacks: {', '.join(missing)}. "
                    "Column names must match exactly (case included); fix the mapping or the header."
                )
        tables.append((table, kind))
    order = {"reports": 0, "wide": 1, "mentions": 2}
    tables.sort(key=lambda tk: order[tk[1]])
    loader = _Loader(store, settings, progress, on_commit, wide)
    summaries = []
    # Loading builds millions of small dicts and tuples that live until their chunk is written, and
    # none of them form reference cycles; the cyclic garbage collector would rescan them over and over
    # (about a third of the load's CPU at 100,000 reports). It is paused for the load and restored after.
    try:
        with paused_gc():
            for table, kind in tables:
                summaries.append(loader.run_file(table, kind, str(table.path)))
            loader.finish()
    finally:
        loader.close_pool()
    qfile = write_quarantine(store)
    return LoadSummary(summaries, qfile, store.path)


def write_quarantine(store: EmbeddedStore) -> Path | None:
    """Rewrite ``<store>.quarantine.csv`` from the store's quarantine table (None when it is empty)."""
    path = quarantine_path(store.path)
    rows = store.conn.execute(
        "SELECT source_file, source_row, kind, field, reason, raw FROM quarantine ORDER BY source_file, source_row, kind"
    ).fetchall()
    if not rows:
        if path.exists():
            path.unlink()
        return None
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "row", "kind", "field", "reason", "raw"])
        w.writerows(rows)
    return path
