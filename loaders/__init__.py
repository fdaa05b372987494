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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from linkage import model
from linkage.errors import InputError, Problem
from linkage.gcpause import paused_gc
from linkage.pseudonym import pseudonymise_bsn
from linkage.settings import Settings, load_settings
from linkage.store.embedded import EmbeddedStore
from loaders.canonical import Origin, canonical_column, row_checker, text
from loaders.readers import Table, read_table
from loaders.wide import WideMapping, load_mapping

__all__ = ["FileSummary", "LoadSummary", "load_files", "quarantine_path", "read_table", "load_mapping"]

_MENTION_COLUMNS = (
    ["mention_id", "report_id", "entity_type", "role"]
    + list(model.VALUE_FIELDS)
    + list(model.NORMALISED_FIELDS)
    + ["warnings", "parent_mention_id", "content_hash", "source_file", "source_row"]
)
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
    def __init__(self, store: EmbeddedStore, settings: Settings, progress, on_commit) -> None:
        self.store = store
        self.settings = settings
        self.progress = progress
        self.on_commit = on_commit
        self.chunk = max(1, settings.chunk_rows)
        self.known_reports: set[str] | None = None
        self.seen_reports: dict[str, str] = {}
        self.seen_mentions: dict[str, str] = {}

    # --- shared helpers ----------------------------------------------------------------------------
    def _reports_known(self) -> set[str]:
        if self.known_reports is None:
            self.known_reports = {r[0] for r in self.store.conn.execute("SELECT report_id FROM reports")}
        return self.known_reports

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

    def _commit(self, reports: list[dict], mentions: list[dict], links: list[dict], quarantine: list[dict]) -> None:
        with self.store.transaction():
            self.store.insert_rows("reports", reports, _REPORT_COLUMNS)
            self.store.insert_rows("mentions", mentions, _MENTION_COLUMNS)
            self.store.insert_rows("mention_links", links, ["src_mention_id", "dst_mention_id", "rel_type", "report_id"], "INSERT OR IGNORE")
            self.store.insert_rows("quarantine", quarantine, _QUARANTINE_COLUMNS, "INSERT OR REPLACE")
        if self.on_commit:
            self.on_commit()

    # --- per-row handling --------------------------------------------------------------------------
    def _accept_report(self, report: dict, existing: dict[str, str]) -> str:
        """'new', 'unchanged' or 'conflict' for a validated report (and remember it)."""
        rid, h = report["report_id"], report["content_hash"]
        prior = self.seen_reports.get(rid) or existing.get(rid)
        if prior is None:
            self.seen_reports[rid] = h
            self._reports_known().add(rid)
            return "new"
        return "unchanged" if prior == h else "conflict"

    def _accept_mentions(self, records: list[dict], existing: dict[str, str]) -> str:
        known = 0
        for r in records:
            prior = self.seen_mentions.get(r["mention_id"]) or existing.get(r["mention_id"])
            if prior is not None:
                if prior != r["content_hash"]:
                    return "conflict"
                known += 1
        if known == len(records):
            return "unchanged"
        if known:  # the row now carries more (say an address) than was stored under its id
            return "conflict"
        for r in records:
            self.seen_mentions[r["mention_id"]] = r["content_hash"]
        return "new"

    # --- files -------------------------------------------------------------------------------------
    def run_file(self, table: Table, kind: str, mapping: WideMapping | None, label: str) -> FileSummary:
        summary = FileSummary(label, kind, table.format, table.encoding, table.delimiter)
        # Identical rows are counted over the whole file, not per chunk: derived mention ids must not
        # depend on chunk_rows (nor on where an interrupted load stopped).
        self.occurrences: Counter = Counter()
        # A re-loaded file replaces its own quarantine entries: a row fixed since is no longer listed.
        with self.store.transaction():
            self.store.conn.execute("DELETE FROM quarantine WHERE source_file = ?", (label,))
        buffer: list[tuple[int, dict]] = []
        for row_no, row in self._canonical_rows(table, summary, kind):
            buffer.append((row_no, row))
            if len(buffer) >= self.chunk:
                self._flush(buffer, kind, mapping, summary, label)
                buffer = []
        if buffer:
            self._flush(buffer, kind, mapping, summary, label)
        return summary

    def _flush(self, buffer, kind, mapping, summary: FileSummary, label: str) -> None:
        reports_out: list[dict] = []
        mentions_out: list[dict] = []
        links_out: list[dict] = []
        quarantine: list[dict] = []
        occurrences = self.occurrences
        checker = row_checker(self.settings)
        extra_cells = "row has more cells than the header; extra cells ignored."

        # Validate first, then look up prior content for the whole chunk at once.
        staged: list[tuple[Origin, dict, dict | None, list[tuple[list, list]], list[Problem]]] = []
        stage = staged.append
        for row_no, row in buffer:
            origin = Origin(label, row_no)
            if "__error__" in row:
                stage((origin, row, None, [], [origin.problem(None, row["__error__"])]))
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
                occ = 0
                if not text(row.get("mention_id")):
                    # Rows with a mention_id never need the count (and their keys, which hold that id,
                    # never equal the key of a row without one), so only these rows are counted.
                    key = (text(row.get("report_id")), tuple(sorted((k, str(v)) for k, v in row.items() if text(v))))
                    occ = occurrences[key]
                    occurrences[key] += 1
                ms, ls, probs = checker.mention(row, origin, occ, True)
                if probs:
                    problems.extend(probs)
                if ms:
                    parts.append((ms, ls))
            stage((origin, row, report, parts, problems))

        report_ids = [s[2]["report_id"] for s in staged if s[2]]
        mention_ids = [m["mention_id"] for s in staged for ms, _ in s[3] for m in ms]
        existing_reports = self._existing("reports", "report_id", report_ids) if report_ids else {}
        existing_mentions = self._existing("mentions", "mention_id", mention_ids) if mention_ids else {}
        known_reports = self._reports_known() if kind == "mentions" else None
        qkind = {"reports": "report", "mentions": "mention", "wide": "wide"}[kind]
        new = unchanged = quarantined = conflicts = 0
        file, row_key, file_key = label, "source_row", "source_file"

        for origin, row, report, parts, problems in staged:
            errors = [p for p in problems if p.severity == "error"] if problems else problems
            if not errors and kind != "mentions" and report is None:
                errors = [origin.problem(None, "row could not be read as a report.")]
            if not errors and kind == "mentions":
                rid = parts[0][0][0]["report_id"] if parts else None
                if rid and rid not in known_reports:
                    errors = [origin.problem(
                        "report_id", "report_id is not among the loaded reports; load its report first "
                        "(or see the quarantine: it may have been rejected).")]
            if errors:
                quarantined += 1
                quarantine.append(self._quarantine_row(origin, qkind, errors, row))
                continue
            if len(parts) == 1 and len(parts[0][0]) == 1:
                all_mentions = parts[0][0]
            else:
                all_mentions = [m for ms, _ in parts for m in ms]
            report_status = self._accept_report(report, existing_reports) if report is not None else None
            status = report_status or "new"
            if report_status != "conflict" and all_mentions:
                mention_status = self._accept_mentions(all_mentions, existing_mentions)
                status = mention_status if report_status in (None, "unchanged") or mention_status == "conflict" else status
            if status == "conflict":
                quarantined += 1
                conflicts += 1
                what = "report_id" if kind != "mentions" else "mention_id"
                quarantine.append(self._quarantine_row(origin, qkind, [origin.problem(
                    what, f"conflict: this {what} was already loaded with different content; the stored "
                    "version is kept. Give the corrected row a new id or remove the old one first.")], row))
                continue
            if problems:
                self._warn(summary, problems)
            if status == "unchanged":
                unchanged += 1
                continue
            new += 1
            if report_status == "new":
                report[file_key] = file
                report[row_key] = origin.row
                reports_out.append(report)
            for ms, ls in parts:
                for m in ms:
                    m[file_key] = file
                    m[row_key] = origin.row
                mentions_out.extend(ms)
                links_out.extend(ls)
        summary.rows_read += len(staged)
        summary.new += new
        summary.unchanged += unchanged
        summary.quarantined += quarantined
        summary.conflicts += conflicts
        summary.mentions_added += len(mentions_out)
        self._commit(reports_out, mentions_out, links_out, quarantine)
        if self.progress:
            self.progress(label, len(buffer))


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
    loader = _Loader(store, settings, progress, on_commit)
    summaries = []
    # Loading builds millions of small dicts and tuples that live until their chunk is written, and
    # none of them form reference cycles; the cyclic garbage collector would rescan them over and over
    # (about a third of the load's CPU at 100,000 reports). It is paused for the load and restored after.
    with paused_gc():
        for table, kind in tables:
            summaries.append(loader.run_file(table, kind, wide, str(table.path)))
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
