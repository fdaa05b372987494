"""Reading tabular files as analysts have them: CSV (``;`` or ``,``, UTF-8 with or without BOM, or
Windows-1252), Excel ``.xlsx``, JSON Lines and JSON arrays.

In:  a path.
Out: :func:`read_table` gives a :class:`Table`: the header (column names as written, stripped) and an
     iterator of ``(row_number, {column: value})`` where ``row_number`` is what a person sees when
     opening the file (the header is row 1 in CSV and Excel; JSON Lines count lines from 1).
     Rows stream; nothing needs the whole file in memory.

Raises :class:`~linkage.errors.InputError` when the file is missing or its format is unknown.
"""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from linkage.errors import InputError

csv.field_size_limit(10 * 1024 * 1024)

Row = dict[str, Any]


@dataclass
class Table:
    """One opened input file: its header, how it was read, and its rows (a one-shot iterator)."""

    path: Path
    columns: list[str]
    rows: Iterator[tuple[int, Row]]
    format: str
    encoding: str | None = None
    delimiter: str | None = None
    #: ``keyed_rows(keys)`` gives the rows with ``keys`` (one per header column, in header order) in
    #: place of the header's names: the same rows as :attr:`rows` with renamed columns, built without a
    #: second dict per row. Only for readers that can (CSV); use instead of :attr:`rows`, not besides it.
    keyed_rows: Callable[[list[str]], Iterator[tuple[int, Row]]] | None = None
    #: ``records()`` gives the rows as ``(row_number, cells, extra)``: exactly one cell per header column
    #: (short rows padded with None, long rows cut) and the number of non-empty cells cut off;
    #: :func:`record_row` turns one into the row :attr:`rows` gives. Rows as lists are cheap to hand to
    #: another process. Only for readers that can (CSV); use instead of :attr:`rows`, not besides it.
    records: Callable[[], Iterator[tuple[int, list, int]]] | None = None


def record_row(keys: list[str], cells: list, extra: int) -> Row:
    """The row of one :attr:`Table.records` item under ``keys`` (``__extra__`` when cells were cut off).

    >>> record_row(["a", "b"], ["1", None], 0), record_row(["a"], ["1"], 2)
    ({'a': '1', 'b': None}, {'a': '1', '__extra__': 2})
    """
    row = dict(zip(keys, cells))
    if extra:
        row["__extra__"] = extra
    return row


def detect_encoding(path: Path, probe_bytes: int = 1 << 26) -> str:
    """``utf-8-sig`` (BOM), ``utf-8`` or ``cp1252``: the first that decodes the whole file.

    The file is scanned in blocks with an incremental decoder, so a Windows-1252 character far down
    a large file is still found without loading the file.
    """
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        fh.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while True:
                block = fh.read(probe_bytes)
                if not block:
                    decoder.decode(b"", final=True)
                    break
                decoder.decode(block)
        except UnicodeDecodeError:
            return "cp1252"
    return "utf-8"


def detect_delimiter(header_line: str) -> str:
    """The delimiter of a CSV header line: the most frequent of ``;``, ``,``, tab and ``|`` outside quotes.

    >>> detect_delimiter('report_id;received_at;category')
    ';'
    >>> detect_delimiter('"a;b",c,d')
    ','
    """
    counts = {d: 0 for d in (";", ",", "\t", "|")}
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _clean_header(columns: list[Any]) -> list[str]:
    return [("" if c is None else str(c)).strip().lstrip("\ufeff") for c in columns]


def _read_csv(path: Path) -> Table:
    encoding = detect_encoding(path)
    # newline='' lets the csv module handle quoted line breaks. errors='replace': five bytes (0x81, 0x8D,
    # 0x8F, 0x90, 0x9D) are undefined in Windows-1252 and would otherwise crash the load halfway.
    fh = open(path, "r", encoding=encoding, newline="", errors="replace")
    first = fh.readline()
    if not first.strip():
        fh.close()
        raise InputError(f"{path}: the file is empty (no header row).")
    delimiter = detect_delimiter(first)
    fh.seek(0)
    reader = csv.reader(fh, delimiter=delimiter)
    header = _clean_header(next(reader))

    def records() -> Iterator[tuple[int, list, int]]:
        width = len(header)
        try:
            line_no = 1
            for record in reader:
                line_no += 1
                if len(record) == width:
                    # a first cell with text settles it without joining the row (str.strip strips isspace())
                    first = record[0] if width else ""
                    if (not first or first.isspace()) and not "".join(record).strip():
                        continue  # blank lines are not rows
                    yield line_no, record, 0
                    continue
                if not "".join(record).strip():
                    continue
                if len(record) < width:
                    yield line_no, record + [None] * (width - len(record)), 0
                else:
                    yield line_no, record[:width], sum(1 for c in record[width:] if c.strip())
        finally:
            fh.close()

    def rows(keys: list[str] = header) -> Iterator[tuple[int, Row]]:
        for line_no, cells, extra in records():
            yield line_no, record_row(keys, cells, extra)

    return Table(path, header, rows(), "csv", encoding, delimiter, keyed_rows=rows, records=records)


def _excel_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _read_xlsx(path: Path) -> Table:
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - dependency is declared
        raise InputError("Reading .xlsx needs openpyxl (pip install openpyxl).") from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for broken files
        raise InputError(f"{path}: not a readable Excel workbook ({type(exc).__name__}).") from None
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    try:
        header = _clean_header(list(next(it)))
    except StopIteration:
        wb.close()
        raise InputError(f"{path}: the first sheet is empty (no header row).") from None
    while header and header[-1] == "":
        header.pop()

    def rows() -> Iterator[tuple[int, Row]]:
        try:
            for n, record in enumerate(it, start=2):
                values = [_excel_value(v) for v in record]
                if not any(v not in (None, "") and str(v).strip() for v in values):
                    continue
                yield n, {header[i]: values[i] if i < len(values) else None for i in range(len(header))}
        finally:
            wb.close()

    return Table(path, header, rows(), "xlsx")


def _read_jsonl(path: Path) -> Table:
    encoding = detect_encoding(path)
    fh = open(path, "r", encoding=encoding, errors="replace")
    # Peek at the first object for the header; JSON Lines rows may differ in keys.
    pos_rows: list[tuple[int, str]] = []
    header: list[str] = []
    line_no = 0
    for line in fh:
        line_no += 1
        if line.strip():
            pos_rows.append((line_no, line))
            try:
                obj = json.loads(line)
                if isinstance(obj, dict):
                    header = list(obj)
            except json.JSONDecodeError:
                pass
            break

    def rows() -> Iterator[tuple[int, Row]]:
        try:
            n = line_no
            pending = list(pos_rows)
            for num, text in pending:
                yield num, _json_row(text)
            for text in fh:
                n += 1
                if text.strip():
                    yield n, _json_row(text)
        finally:
            fh.close()

    return Table(path, header, rows(), "jsonl", encoding)


def _json_row(text: str) -> Row:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return {"__error__": f"not valid JSON ({exc.msg} at column {exc.colno})"}
    if not isinstance(obj, dict):
        return {"__error__": "a JSON Lines row must be an object {...}"}
    return _object_row(obj)


def _object_row(obj: dict) -> Row:
    """A JSON object as a row (:func:`_json_value` of each value). JSON may escape a lone UTF-16 surrogate
    (``"\\ud800"``), which is no text: no store can hold it. Such a row comes back with an ``__error__`` naming
    the field (``__error_field__``) and every surrogate written as its escape, so that the quarantine keeps the
    row as given."""
    row = {str(k): _json_value(v) for k, v in obj.items()}
    bad = next((k for k, v in row.items() if _surrogates(k) or (isinstance(v, str) and _surrogates(v))), None)
    if bad is None:
        return row
    out: Row = {_escaped(k): _escaped(v) if isinstance(v, str) else v for k, v in row.items()}
    out["__error__"] = (f"{_escaped(bad)}: holds a lone surrogate escape (\\ud800-\\udfff), which is not text; "
                        "correct the value in the source system and export again.")
    out["__error_field__"] = _escaped(bad)
    return out


def _surrogates(value: str) -> bool:
    """Whether ``value`` holds a lone surrogate (never printable: most texts are decided without encoding)."""
    if value.isprintable():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _escaped(value: str) -> str:
    """``value`` with each lone surrogate written as its ``\\udXXX`` escape."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if _surrogates(value) else value


def _json_value(v: Any) -> Any:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return _excel_value(v)
    return v


def _read_json(path: Path) -> Table:
    encoding = detect_encoding(path)
    with open(path, "r", encoding=encoding, errors="replace") as fh:
        head = fh.read(64).lstrip()
    if not head.startswith("["):
        return _read_jsonl(path)
    try:
        data = json.loads(Path(path).read_text(encoding=encoding, errors="replace"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}).") from None
    header: list[str] = []
    for obj in data:
        if isinstance(obj, dict):
            header = list(obj)
            break

    def rows() -> Iterator[tuple[int, Row]]:
        for n, obj in enumerate(data, start=1):
            if isinstance(obj, dict):
                yield n, _object_row(obj)
            else:
                yield n, {"__error__": "a JSON array element must be an object {...}"}

    return Table(path, header, rows(), "json", encoding)


_READERS: dict[str, Callable[[Path], Table]] = {
    ".csv": _read_csv,
    ".txt": _read_csv,
    ".tsv": _read_csv,
    ".xlsx": _read_xlsx,
    ".xlsm": _read_xlsx,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
}


def read_table(path: Path | str) -> Table:
    """Open ``path`` by its extension and stream its rows.

    Raises
    ------
    InputError
        When the file does not exist or has an extension linkage cannot read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the files inside it.")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        if path.suffix.lower() == ".xls":
            raise InputError(f"{path}: old Excel (.xls) is not supported; save it as .xlsx or CSV.")
        raise InputError(
            f"{path}: unknown file type '{path.suffix}'. Use CSV (.csv), Excel (.xlsx) or JSON Lines (.jsonl)."
        )
    return reader(path)
