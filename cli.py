"""The ``linkage`` command line: a thin typer app; every command calls one function in ``linkage/``.

Errors: a :class:`~linkage.errors.LinkageError` prints its message to stderr and exits 1; usage errors
exit 2; a bug prints a one-line notice (the traceback, without local variables, only with ``--debug``).
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from linkage.errors import LinkageError

app = typer.Typer(
    name="linkage",
    help=(
        "Link meldingen (reports of ondermijning and woonfraude) through the persons, addresses, "
        "businesses, vehicles, phones and bank accounts they mention; find clusters, route them, "
        "and close the loop with the reporter.\n\n"
        "Example (quick start):  linkage run examples/reports.csv examples/mentions.csv"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks may hold personal data; see main()
    rich_markup_mode="rich",
)

_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# --- shared options -------------------------------------------------------------------------------
StoreOpt = Annotated[
    Optional[Path],
    typer.Option("--store", envvar="LINKAGE_STORE", help="The embedded store (SQLite file). Default ./linkage.db.",
                 show_default=False),
]
SettingsOpt = Annotated[
    Optional[Path],
    typer.Option("--settings", envvar="LINKAGE_SETTINGS", help="A settings TOML file (default: the bundled one).",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]

_state: dict[str, Any] = {"debug": False}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks (without local variables).")] = False,
) -> None:
    _state["debug"] = debug


def store_path(store: Optional[Path]) -> Path:
    from linkage.store import default_store_path

    return store or default_store_path()


def open_store(store: Optional[Path], must_exist: bool = False):
    """Open the embedded store for a command."""
    from linkage.store import EmbeddedStore

    return EmbeddedStore(store_path(store), must_exist=must_exist)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (UTF-8, sorted keys for stable diffs): strict JSON, so a missing
    value (pandas' NaN, None) is ``null`` and numpy numbers are numbers.

    >>> import math, numpy as np
    >>> print_json({"a": math.nan, "b": [np.int64(2), np.float64(0.5)], "c": (1, None)})
    {
      "a": null,
      "b": [
        2,
        0.5
      ],
      "c": [
        1,
        null
      ]
    }
    """
    sys.stdout.write(json.dumps(_json_safe(data), ensure_ascii=False, indent=2, sort_keys=True, default=str,
                                allow_nan=False) + "\n")


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/infinite floats as None and numpy scalars as Python numbers, through dicts and lists."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def progress_bar(transient: bool = False):
    """A rich progress bar on stderr (so stdout stays clean for --json)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=transient, disable=not err.is_terminal and not os.environ.get("LINKAGE_PROGRESS"),
    )


# --- load -----------------------------------------------------------------------------------------
@app.command()
def load(
    files: Annotated[list[Path], typer.Argument(help="Reports, mentions or wide files (.csv, .xlsx, .jsonl).")],
    mapping: Annotated[Optional[Path], typer.Option("--mapping", help="Mapping TOML for a wide export.")] = None,
    store: StoreOpt = None,
    settings: SettingsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load report and mention files into the store, validating every row.

    Rejected rows go to a quarantine file next to the store, with file, row, field and reason; the
    closing summary shows rows read = loaded + quarantined for every file. Loading the same file
    again changes nothing; a changed row with a known id is reported as a conflict.

    Example:  linkage load examples/reports.csv examples/mentions.csv
    """
    from linkage.pipeline import load_stage

    summary = load_stage(files, store_path(store), settings, mapping, progress_bar)
    _audit(store, "load", {"files": len(files), "rows_read": summary.rows_read, "loaded": summary.loaded,
                           "quarantined": summary.quarantined})
    if as_json:
        print_json(summary.to_dict())
        return
    show_load_summary(summary)


def show_load_summary(summary) -> None:
    table = Table(title="Loaded", show_lines=False)
    for col in ("file", "kind", "read", "loaded", "new", "unchanged", "quarantined", "conflicts", "warnings"):
        table.add_column(col, justify="right" if col not in ("file", "kind") else "left")
    for f in summary.files:
        table.add_row(Path(f.file).name, f.kind, str(f.rows_read), str(f.loaded), str(f.new), str(f.unchanged),
                      str(f.quarantined), str(f.conflicts), str(sum(f.warnings.values())))
    out.print(table)
    for f in summary.files:
        for (field, message), count in sorted(f.warnings.items()):
            rows = ", ".join(str(r) for r in f.warning_rows.get((field, message), []))
            out.print(f"  warning  {Path(f.file).name}, field '{field}': {message} ({count}x; rows {rows}"
                      f"{', ...' if count > 5 else ''})")
        if f.ignored_columns:
            out.print(f"  note     {Path(f.file).name}: columns not used: {', '.join(f.ignored_columns)}")
    ok = "yes" if summary.reconciles else "NO"
    out.print(f"Rows read {summary.rows_read} = loaded {summary.loaded} + quarantined {summary.quarantined} "
              f"(reconciles: {ok}).")
    if summary.quarantine_file:
        out.print(f"Quarantine: {summary.quarantine_file}")
    out.print(f"Store: {summary.store}")


# --- generate -------------------------------------------------------------------------------------
@app.command()
def generate(
    reports: Annotated[int, typer.Option("--reports", min=1, help="Number of reports to generate.")] = 500,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same files.")] = 42,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the files into.")] = Path("generated"),
    wide: Annotated[bool, typer.Option("--wide/--no-wide", help="Also write a wide export (wide.csv).")] = False,
) -> None:
    """Generate realistic synthetic Dutch meldingen with planted networks and ground truth.

    Writes reports.csv, mentions.csv, truth_mentions.csv and truth_reports.csv into --out.
    Same seed, same files.

    Example:  linkage generate --reports 10000 --seed 7 --out data/
    """
    from linkage.generate import generate as gen

    with progress_bar() as bar:
        task = bar.add_task("generating", total=reports)
        summary = gen(reports, seed, out_dir, progress=lambda n: bar.advance(task, n), wide=wide)
    out.print(f"Wrote {out_dir}: {summary}")


# --- run: the main job ----------------------------------------------------------------------------
@app.command()
def run(
    files: Annotated[Optional[list[Path]], typer.Argument(help="Files to load first (optional).")] = None,
    mapping: Annotated[Optional[Path], typer.Option("--mapping", help="Mapping TOML for a wide export.")] = None,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="Routing rules TOML (default linkage/routing.toml).")] = None,
    top: Annotated[int, typer.Option("--top", min=0, help="How many clusters to show.")] = 10,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for community detection (default from settings).")] = None,
    neo4j: Annotated[bool, typer.Option("--neo4j", help="Also write the graph to Neo4j (LINKAGE_NEO4J_* settings).")] = False,
    full: Annotated[bool, typer.Option("--full", help="Refit the matching model and compare all pairs again "
                                       "(default: only new mentions, with the stored model).")] = False,
    store: StoreOpt = None,
    settings: SettingsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the main job: load, resolve entities, find clusters, score and route them, store, report.

    Prints the top clusters ranked by score with their agencies and the strongest reason, then a
    summary of every stage. Without FILES it re-runs on what the store already holds.

    Example:  linkage run examples/reports.csv examples/mentions.csv --top 5
    """
    from linkage.pipeline import run as run_job

    summary = run_job(files or [], store_path(store), settings, mapping, rules, seed, progress_factory=progress_bar,
                      neo4j=neo4j, full=full)
    _audit(store, "run", {"files": len(files or []), **summary.counts})
    if as_json:
        print_json(summary.to_dict(top=top or None))
        return
    if summary.load is not None:
        show_load_summary(summary.load)
    n_clusters = summary.n_clusters
    show_clusters(summary.top_clusters(top), title=f"Top {min(top, n_clusters)} of {n_clusters} clusters")
    c, s = summary.counts, summary.seconds
    out.print(
        f"Reports {c.get('reports', 0)}, mentions {c.get('mentions', 0)} -> entities {c.get('er_entities', 0)}; "
        f"{c.get('clustered_reports', 0)} reports in {c.get('clusters', 0)} clusters; "
        f"{c.get('status_changes', 0)} report status changes."
    )
    out.print("Seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in s.items()))
    if c.get("er_state_rebuilt"):
        out.print("The incremental state was written by an earlier version of linkage: this run rebuilt it from "
                  "the stored pairs (a pass over all of them); the next runs are incremental again.")
    if summary.neo4j:
        out.print(f"Neo4j: {summary.neo4j}")
    out.print(f"Store: {summary.store}   Next: linkage cluster <id>, linkage export DIR")


def _audit(store: Optional[Path], command: str, touched: dict) -> None:
    """Record a command in the audit log (ids and counts only, never personal data)."""
    try:
        from linkage.audit import record
    except ImportError:  # pragma: no cover - present once the audit module lands
        return
    with open_store(store) as s:
        record(s, command, touched)


def _list_text(value: Any) -> str:
    from linkage.pipeline import _as_list

    return ", ".join(str(v) for v in _as_list(value))


def _first_sentence(text: Any) -> str:
    """The one-line reason: the first sentence of the full reason (``linkage cluster ID`` shows all)."""
    text = str(text or "").strip()
    cut = text.find("; ")
    return text if cut < 0 else text[:cut] + "."


def show_clusters(clusters, title: str = "Clusters") -> None:
    table = Table(title=title)
    for col in ("rank", "cluster", "score", "reports", "reporters", "categories", "agencies", "reason"):
        table.add_column(col, justify="right" if col in ("rank", "score", "reports", "reporters") else "left",
                         overflow="fold")
    for r in clusters.to_dict("records"):
        agencies = _list_text(r.get("agencies")) or f"unrouted: {r.get('unrouted_reason') or 'no rule matched'}"
        table.add_row(str(r["rank"]), str(r["cluster_id"]), f"{r['score']:.2f}", str(r["n_reports"]),
                      f"{r['n_reporters']:g}", _list_text(r.get("categories")), agencies, _first_sentence(r.get("reason")))
    out.print(table)


# --- inspecting -----------------------------------------------------------------------------------
@app.command()
def clusters(
    agency: Annotated[Optional[str], typer.Option("--agency", help="Only clusters routed to this agency (id or name).")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Only clusters with at least this score.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most this many (0 = all).")] = 50,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List clusters ranked by score, optionally for one agency or above a score.

    Example:  linkage clusters --agency politie --min-score 5
    """
    from linkage.inspect import list_clusters

    with open_store(store, must_exist=True) as s:
        df = list_clusters(s, agency=agency, min_score=min_score, limit=limit or None)
    _audit(store, "clusters", {"clusters": len(df), "agency": agency})
    if as_json:
        from linkage.pipeline import cluster_record

        print_json([cluster_record(r) for r in df.to_dict("records")])
        return
    show_clusters(df, title=f"{len(df)} clusters" + (f" for {agency}" if agency else ""))


@app.command()
def cluster(
    cluster_id: Annotated[str, typer.Argument(help="A cluster id from 'linkage clusters'.")],
    history: Annotated[bool, typer.Option("--history", help="Show how this cluster's id carried over between runs.")] = False,
    picture: Annotated[Optional[Path], typer.Option("--picture", help="Draw the cluster: out.png, out.svg or out.html.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one cluster: reports in time order, entities, signals, routing reasons and a link sketch.

    Example:  linkage cluster c_3f2a9b1c4d5e6f70
    """
    from linkage.inspect import cluster_detail, render_cluster_text

    with open_store(store, must_exist=True) as s:
        detail = cluster_detail(s, cluster_id, with_history=history)
        if picture is not None:
            from linkage.report.pictures import draw_cluster

            draw_cluster(s, cluster_id, picture)
    _audit(store, "cluster", {"cluster_id": cluster_id, "reports": len(detail["reports"])})
    if as_json:
        print_json(detail)
        return
    out.print(render_cluster_text(detail), markup=False)
    if picture is not None:
        out.print(f"Picture: {picture}")


@app.command()
def dossier(
    cluster_id: Annotated[str, typer.Argument(help="A cluster id from 'linkage clusters'.")],
    agency: Annotated[str, typer.Option("--agency", help="The agency the cluster was routed to (id or name).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the dossier into.")] = Path("dossiers"),
    pdf: Annotated[Optional[bool], typer.Option("--pdf/--no-pdf", help="Also print a PDF (default: when chromium is installed).",
                                                show_default=False)] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a hand-over dossier of one cluster for one agency it was routed to (HTML, and PDF).

    The dossier holds only this cluster: routing reasons for this agency, signals, reports in time
    order with pseudonymised reporters, entities, links and the network picture. Refused when the
    cluster was not routed to the agency. Every dossier written is recorded in the audit log.

    Example:  linkage dossier c_3f2a9b1c4d5e6f70 --agency politie --out dossiers/
    """
    from linkage.report.dossier import write_dossier

    with open_store(store, must_exist=True) as s:
        result = write_dossier(s, cluster_id, agency, out_dir, pdf=pdf)
    if as_json:
        print_json({"html": str(result.html), "pdf": str(result.pdf) if result.pdf else None, "note": result.pdf_note,
                    "cluster_id": result.cluster_id, "agency": result.agency, "reports": result.reports,
                    "entities": result.entities})
        return
    out.print(f"Dossier for {result.agency}: {result.html} ({result.reports} reports, {result.entities} entities)")
    out.print(f"PDF: {result.pdf}" if result.pdf else result.pdf_note)


@app.command()
def entity(
    entity_id: Annotated[str, typer.Argument(help="An entity id (from 'linkage cluster' or export).")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one resolved entity: its mentions (the evidence it was made of), reports and clusters.

    Example:  linkage entity e_person_1a2b3c4d5e6f7a8b
    """
    from linkage.inspect import entity_detail, render_entity_text

    with open_store(store, must_exist=True) as s:
        detail = entity_detail(s, entity_id)
    _audit(store, "entity", {"entity_id": entity_id, "mentions": len(detail["mentions"])})
    if as_json:
        print_json(detail)
        return
    out.print(render_entity_text(detail), markup=False)


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write entities.csv, clusters.csv, report_clusters.csv into.")],
    store: StoreOpt = None,
) -> None:
    """Export the results as CSV, safe to open in a spreadsheet (formula-like cells are escaped).

    Writes entities.csv (mention_id, entity_id, entity_type), clusters.csv (cluster_id, rank, score,
    n_reports, agencies, reasons) and report_clusters.csv (report_id, cluster_id; empty when the
    report is in no cluster).

    Example:  linkage export out/
    """
    from linkage.inspect import export_csv

    with open_store(store, must_exist=True) as s:
        counts = export_csv(s, out_dir)
    _audit(store, "export", counts)
    out.print("Wrote " + ", ".join(f"{name} ({n} rows)" for name, n in counts.items()) + f" to {out_dir}")


@app.command()
def explain(
    a: Annotated[str, typer.Argument(help="A mention id or entity id.")],
    b: Annotated[str, typer.Argument(help="Another mention id or entity id.")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Explain in plain words why two mentions (or entities) were, or were not, taken as one.

    Shows each field's comparison level and weight, the prior and the total; for entities the
    closest pair of their mentions. Analyst judgements on the pair are shown too.

    Example:  linkage explain MLD-2025-000123-M1 MLD-2025-000456-M2
    """
    from linkage.pipeline import explain_stage

    with open_store(store, must_exist=True) as s:
        explanation, judgements = explain_stage(s, a, b)
    _audit(store, "explain", {"ids": [a, b]})
    if as_json:
        print_json({**explanation.to_dict(), "judgements": judgements})
        return
    out.print(explanation.to_text(), markup=False)
    for j in judgements:
        out.print(f"Judgement: {j.get('verdict')} by {j.get('actor')} at {j.get('at')}"
                  f"{' - ' + j['note'] if j.get('note') else ''}", markup=False)


@app.command()
def resolve(
    files: Annotated[list[Path], typer.Argument(help="One or more tables (.csv, .xlsx, .jsonl) to resolve together.")],
    entity_type: Annotated[str, typer.Option("--type", help="person, address or business.")],
    id_column: Annotated[str, typer.Option("--id", help="The column holding each record's id.")],
    mapping: Annotated[list[str], typer.Option("--map", help="COLUMN=FIELD, repeatable (fields: first_name, last_name, "
                                               "name, birth_date, bsn, national_id, street, house_number, postcode, "
                                               "city, business_name, kvk, ...).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write record_id,entity_id (CSV).")],
    er_settings: Annotated[Optional[Path], typer.Option("--er-settings", help="Entity-resolution settings TOML.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Resolve any table of persons, addresses or businesses; write record_id,entity_id.

    Records from several files are resolved together, so this also links two sources.

    Example:  linkage resolve klanten.csv brp.csv --type person --id nr --map voornaam=first_name
              --map achternaam=last_name --map geb=birth_date --out koppeling.csv
    """
    from linkage.errors import ConfigError
    from linkage.resolve import resolve_table

    pairs = {}
    for item in mapping:
        if "=" not in item:
            raise ConfigError(f"--map '{item}': use COLUMN=FIELD, for example --map achternaam=last_name.")
        col, field_name = item.split("=", 1)
        pairs[col.strip()] = field_name.strip()
    summary = resolve_table(files, entity_type, id_column, pairs, out_file, er_settings)
    if as_json:
        from dataclasses import asdict

        print_json(asdict(summary))
        return
    out.print(f"Resolved {summary.records} records from {len(summary.files)} file(s) into {summary.entities} "
              f"entities (largest: {summary.largest_entity} records). Wrote {summary.out}.")
    for note in summary.notes:
        out.print(f"  note: {note}")


@app.command()
def push(
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the store's reports, entities, links, clusters and routing into Neo4j.

    Connection from LINKAGE_NEO4J_URI (default bolt://127.0.0.1:7687), LINKAGE_NEO4J_USER (neo4j),
    LINKAGE_NEO4J_PASSWORD (or the local server's .neo4j/password) and LINKAGE_NEO4J_DATABASE.
    Pushing twice changes nothing; clusters that no longer exist are removed.

    Example:  make neo4j && linkage push
    """
    from linkage.store.neo4j import push as push_graph

    with open_store(store, must_exist=True) as s:
        summary = push_graph(s)
    _audit(store, "push", {"elements": summary.elements, "removed": summary.removed})
    if as_json:
        print_json(summary.to_dict())
        return
    out.print(f"Neo4j: {summary}")


# --- lifecycle, terugmelden, judgements, audit, retention -----------------------------------------
@app.command()
def status(
    report_id: Annotated[str, typer.Argument(help="A report id.")],
    set_to: Annotated[Optional[str], typer.Option(
        "--set", help="New status: in_behandeling, gekoppeld, doorgezet, afgehandeld or niet_ontvankelijk.")] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Why (kept in the history; never sent to the reporter).")] = None,
    agency: Annotated[Optional[str], typer.Option("--agency", help="For doorgezet: the agency it went to.")] = None,
    reopen: Annotated[bool, typer.Option("--reopen", help="Take a final report (afgehandeld, niet_ontvankelijk) back "
                                                          "into behandeling.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a report's status and history, or record a new status (an analyst's outcome).

    The history is append-only: every change keeps time, user (LINKAGE_USER or the OS user), old and
    new status and the note. Illegal changes (say ontvangen -> afgehandeld) are refused.

    Example:  linkage status R-2025-0042 --set afgehandeld --note "adresonderzoek afgerond"
    """
    from linkage.audit import record
    from linkage.feedback.lifecycle import require_report, current_status, history, set_status

    with open_store(store, must_exist=True) as s:
        require_report(s, report_id)
        if set_to is not None:
            set_status(s, report_id, set_to.strip().lower(), note=note, agency=agency, reopen=reopen)
        hist = history(s, report_id)
        current = current_status(s, report_id)
        record(s, "status", {"report_id": report_id, "changed": int(set_to is not None), "history_rows": len(hist)})
    if as_json:
        print_json({"report_id": report_id, "status": current, "history": hist.to_dict("records")})
        return
    out.print(f"Report {report_id}: {current}", markup=False)
    if len(hist):
        table = Table(title="History")
        for col in ("at", "actor", "from", "to", "agency", "note"):
            table.add_column(col, overflow="fold")
        for r in hist.to_dict("records"):
            table.add_row(*(str(r[k] or "") for k in ("at", "actor", "from_status", "to_status", "agency", "note")))
        out.print(table)


@app.command()
def feedback(
    since: Annotated[Optional[str], typer.Option("--since", help="Only status changes from this date (2025-03-01).")] = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write the messages to FILE.csv or FILE.json.")] = None,
    mark_sent: Annotated[Optional[bool], typer.Option(
        "--mark-sent/--dry-run",
        help="Record the messages as sent (default: yes with --out, no without), so they are not produced again.",
        show_default=False)] = None,
    store: StoreOpt = None,
    settings: SettingsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Produce one feedback message per report whose status changed since its last feedback.

    Messages come from the Dutch templates (linkage/feedback/templates.toml) and hold only the
    report's date, its reference code and, when [feedback] name_agency = true, the agency. Writing
    them with --out marks them as sent (use --dry-run to preview); without --out they are only shown
    unless --mark-sent is given. Running it twice produces nothing twice.

    Example:  linkage feedback --since 2025-03-01 --out out/terugmelden.csv
    """
    from linkage.audit import record
    from linkage.feedback.messages import build_feedback, load_templates, mark_sent as mark, write_messages
    from linkage.settings import load_settings

    templates = load_templates(settings=load_settings(settings))
    do_mark = (out_file is not None) if mark_sent is None else mark_sent
    with open_store(store, must_exist=True) as s:
        messages = build_feedback(s, since=since, templates=templates)
        if out_file is not None:
            write_messages(messages, out_file)
        newly = mark(s, messages, channel=templates.channel) if do_mark else 0
        record(s, "feedback", {"messages": len(messages), "marked_sent": newly,
                               "report_ids": [m.report_id for m in messages]})
    if as_json:
        print_json({"messages": [m.to_dict() for m in messages], "marked_sent": newly,
                    "out": str(out_file) if out_file else None})
        return
    if out_file is None:
        table = Table(title=f"{len(messages)} feedback messages")
        for col in ("reference", "reporter", "status", "message"):
            table.add_column(col, overflow="fold")
        for m in messages:
            table.add_row(m.reference, m.reporter_id or "(anoniem)", m.status, m.message)
        out.print(table)
    else:
        out.print(f"Wrote {len(messages)} messages to {out_file}")
    out.print(f"Marked as sent: {newly}" if do_mark else "Dry run: nothing marked as sent.")


@app.command()
def judge(
    id_a: Annotated[str, typer.Argument(help="A mention id or entity id.")],
    id_b: Annotated[str, typer.Argument(help="Another mention id or entity id.")],
    same: Annotated[bool, typer.Option("--same", help="They are the same: always merge them.")] = False,
    different: Annotated[bool, typer.Option("--different", help="They differ: never merge them, not even "
                                                                "through other links.")] = False,
    unsure: Annotated[bool, typer.Option("--unsure", help="Record doubt (does not constrain the resolver).")] = False,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="Withdraw the standing judgement on this pair.")] = False,
    note: Annotated[Optional[str], typer.Option("--note", help="Why.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an analyst judgement on two mentions or entities; every later run honours it.

    Judgements are append-only with user and time; the latest per pair counts, and --withdraw adds a
    withdrawal instead of deleting anything. See them with linkage judgements.

    Example:  linkage judge m_1a2b3c4d5e6f7a8b m_9f8e7d6c5b4a3921 --different --note "vader en zoon"
    """
    from linkage.audit import record
    from linkage.resolve.judgements import record_judgement

    chosen = [v for v, flag in (("same", same), ("different", different), ("unsure", unsure),
                                ("withdrawn", withdraw)) if flag]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --same, --different, --unsure, --withdraw.")
    with open_store(store, must_exist=True) as s:
        jid = record_judgement(s, id_a, id_b, chosen[0], note=note)
        record(s, "judge", {"judgement_id": jid, "ids": [id_a, id_b], "verdict": chosen[0]})
    if as_json:
        print_json({"judgement_id": jid, "id_a": id_a, "id_b": id_b, "verdict": chosen[0]})
        return
    out.print(f"Recorded: {id_a} {chosen[0]} {id_b} (judgement {jid}). The next run honours it.", markup=False)


@app.command()
def judgements(
    show_all: Annotated[bool, typer.Option("--all", help="The whole log, including replaced and withdrawn entries.")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the standing analyst judgements (latest per pair), or the whole log with --all.

    Example:  linkage judgements --all --json
    """
    from linkage.audit import record
    from linkage.resolve.judgements import folded_judgements, judgement_log

    with open_store(store, must_exist=True) as s:
        df = judgement_log(s) if show_all else folded_judgements(s)
        record(s, "judgements", {"rows": len(df), "all": show_all})
    if as_json:
        print_json(df.to_dict("records"))
        return
    table = Table(title=f"{len(df)} judgements" + (" (full log)" if show_all else ""))
    for col in ("id", "at", "actor", "id_a", "id_b", "verdict", "note"):
        table.add_column(col, overflow="fold")
    for r in df.to_dict("records"):
        table.add_row(*(str(r[k] if r[k] is not None else "") for k in ("id", "at", "actor", "id_a", "id_b", "verdict", "note")))
    out.print(table)


@app.command()
def audit(
    since: Annotated[Optional[str], typer.Option("--since", help="Only entries from this date (2025-03-01).")] = None,
    command: Annotated[Optional[str], typer.Option("--command", help="Only entries of this command.")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the audit log: who ran which command on personal data, when, and what it touched (ids, counts).

    Example:  linkage audit --since 2025-03-01
    """
    from linkage.audit import audit_log

    with open_store(store, must_exist=True) as s:
        df = audit_log(s, since=since, command=command)
    if as_json:
        print_json(df.to_dict("records"))
        return
    table = Table(title=f"{len(df)} audit entries")
    for col in ("at", "actor", "command", "touched"):
        table.add_column(col, overflow="fold")
    for r in df.to_dict("records"):
        table.add_row(r["at"], r["actor"], r["command"], json.dumps(r["touched"], ensure_ascii=False, sort_keys=True))
    out.print(table, markup=False)


@app.command()
def purge(
    older_than: Annotated[Optional[str], typer.Option(
        "--older-than", help="Retention period, like 365d, 52w or 1y (default: [retention] days in settings).",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be deleted.")] = False,
    neo4j: Annotated[Optional[bool], typer.Option(
        "--neo4j/--no-neo4j", help="Also delete from Neo4j (default: when LINKAGE_NEO4J_URI is set).",
        show_default=False)] = None,
    store: StoreOpt = None,
    settings: SettingsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete reports past the retention period, with their mentions, links, orphaned entities and clusters.

    Reports in a cluster marked as an active case (linkage case CLUSTER --active) are kept. A
    deletion record (time, user, period, counts; no ids, no personal data) is kept in the store.

    Example:  linkage purge --older-than 365d --dry-run
    """
    from linkage.audit import record
    from linkage.retention import parse_duration, purge as run_purge, retention_days
    from linkage.settings import load_settings

    days = parse_duration(older_than) if older_than else retention_days(load_settings(settings))
    use_neo4j = bool(os.environ.get("LINKAGE_NEO4J_URI")) if neo4j is None else neo4j
    hook = None
    if use_neo4j and not dry_run:
        from linkage.store.neo4j import delete_reports

        hook = delete_reports
    from linkage.runlock import exclusive

    with open_store(store, must_exist=True) as s, (nullcontext() if dry_run else exclusive(s.path, "purge")):
        summary = run_purge(s, days, dry_run=dry_run, on_purge=hook)
        record(s, "purge", {"older_than_days": days, "dry_run": dry_run, "neo4j": bool(hook), **summary.counts,
                            "kept_active_case": summary.kept_active_case})
    if as_json:
        print_json(summary.to_dict())
        return
    verb = "Would delete" if dry_run else "Deleted"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items()) if v) or "nothing"
    out.print(f"{verb} (received before {summary.cutoff}): {counts}. "
              f"Kept {summary.kept_active_case} old reports in active cases.")


@app.command()
def case(
    cluster_id: Annotated[str, typer.Argument(help="A cluster id from 'linkage clusters'.")],
    active: Annotated[Optional[bool], typer.Option(
        "--active/--closed", help="Mark as an active case (kept by purge) or close it; without: show.",
        show_default=False)] = None,
    note: Annotated[Optional[str], typer.Option("--note", help="Why (for example the case number).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark a cluster as an active case (purge keeps its reports) or close it; without a flag, show it.

    Example:  linkage case c_3f2a9b1c4d5e6f70 --active --note "RIEC casus 2025-17"
    """
    from linkage.audit import record
    from linkage.feedback.lifecycle import active_case_clusters, set_case

    with open_store(store, must_exist=True) as s:
        if active is not None:
            set_case(s, cluster_id, active, note=note)
        rows = s.frame("SELECT at, actor, active, note FROM cluster_cases WHERE cluster_id=? ORDER BY id", (cluster_id,))
        is_active = cluster_id in active_case_clusters(s)
        record(s, "case", {"cluster_id": cluster_id, "changed": int(active is not None), "active": is_active})
    if as_json:
        print_json({"cluster_id": cluster_id, "active": is_active, "history": rows.to_dict("records")})
        return
    out.print(f"Cluster {cluster_id}: {'active case' if is_active else 'no active case'}", markup=False)
    for r in rows.to_dict("records"):
        out.print(f"  {r['at']}  {r['actor']}  {'active' if r['active'] else 'closed'}  {r['note'] or ''}", markup=False)


def _exit_code_for(exc: BaseException) -> int:
    return getattr(exc, "exit_code", 1)


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point: run the app, map errors to stderr and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    try:
        app(args=args, prog_name="linkage")  # standalone: usage errors print and exit 2
    except LinkageError as exc:
        if _state["debug"]:
            traceback.print_exc(file=sys.stderr)
        err.print(f"linkage: error: {exc}", markup=False)
        sys.exit(_exit_code_for(exc))
    except KeyboardInterrupt:
        err.print("Interrupted; everything committed so far is kept. Run the same command again to continue.")
        sys.exit(130)
    except Exception as exc:  # a bug: say so without leaking data
        if _state["debug"]:
            traceback.print_exc(file=sys.stderr)
        err.print(
            f"linkage: internal error ({type(exc).__name__}). Run again with --debug for a traceback "
            "and report it.", markup=False,
        )
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
