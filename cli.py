"""The ``linkage`` command line: a thin typer app; every command calls one function in ``linkage/``.

Errors: a :class:`~linkage.errors.LinkageError` prints its message to stderr and exits 1; usage errors
exit 2; a bug prints a one-line notice (the traceback, without local variables, only with ``--debug``).
"""
from __future__ import annotations

import json
import os
import sys
import traceback
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
        "Quick start:  linkage run examples/reports.csv examples/mentions.csv"
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
    """Machine-readable output on stdout (UTF-8, sorted keys for stable diffs)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n")


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
