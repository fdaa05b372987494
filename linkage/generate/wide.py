"""The "wide" single-file export example: one row per melding, as a municipal system exports it.

In:  a directory holding ``reports.csv`` and ``mentions.csv`` written by ``generate``.
Out: ``wide.csv``: ``;``-separated, Windows-1252, CRLF line ends, Dutch headers (``WIDE_COLUMNS``), one row per
     report with the first person, address, business, kenteken, phone and IBAN it mentions. Address, phone
     and IBAN are the first person's when that person's row carries them, else the report's first ones.

Characters outside Windows-1252 (``ş``, ``ł`` ...) are written without their accent, as such exports do.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .noise import strip_diacritics

WIDE_COLUMNS: tuple[str, ...] = (
    "meldingnummer", "datum", "soort", "omschrijving", "melder", "persoon", "geboortedatum", "adres",
    "bedrijf", "kvk", "kenteken", "telefoon", "iban",
)
WIDE_ENCODING = "cp1252"


def to_cp1252(text: str) -> str:
    """``text`` with every character Windows-1252 cannot hold replaced by its unaccented form (or ``?``).

    >>> to_cp1252("Şahin Ëlise Łukasz")
    'Sahin Ëlise Lukasz'
    """
    out = []
    for ch in text:
        try:
            ch.encode(WIDE_ENCODING)
            out.append(ch)
        except UnicodeEncodeError:
            plain = strip_diacritics(ch)
            out.append(plain if plain.isascii() and plain else "?")
    return "".join(out)


def _address_text(row: dict[str, str]) -> str:
    if row.get("address"):
        return row["address"]
    street = " ".join(x for x in (row.get("street", ""), row.get("house_number", "")) if x)
    place = " ".join(x for x in (row.get("postcode", ""), row.get("city", "")) if x)
    return ", ".join(x for x in (street, place) if x)


def _dutch_date(value: str) -> str:
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        return f"{value[8:10]}-{value[5:7]}-{value[0:4]}"
    return value


def write_wide_example(source: Path, out_path: Path, n_reports: int = 100) -> int:
    """Write the wide export of the first ``n_reports`` reports in ``source`` to ``out_path``.

    Parameters:
        source: directory with ``reports.csv`` and ``mentions.csv``.
        out_path: the file to write (overwritten).
        n_reports: how many reports (from the top of ``reports.csv``).

    Returns:
        the number of data rows written.
    """
    source = Path(source)
    with open(source / "reports.csv", encoding="utf-8", newline="") as fh:
        reports = []
        for row in csv.DictReader(fh):
            if len(reports) >= n_reports:
                break
            reports.append(row)
    wanted = {r["report_id"] for r in reports}
    first: dict[str, dict[str, str]] = {rid: {} for rid in wanted}
    last = reports[-1]["report_id"] if reports else None
    with open(source / "mentions.csv", encoding="utf-8", newline="") as fh:
        in_last = False
        for m in csv.DictReader(fh) if reports else ():
            rid = m["report_id"]
            if rid not in wanted:
                if in_last:
                    break  # mentions are grouped by report, in report order
                continue
            in_last = in_last or rid == last
            got = first[rid]
            if "persoon" not in got and m["entity_type"] == "person":
                got["persoon"] = m["name"] or " ".join(x for x in (m["first_name"], m["last_name"]) if x)
                got["geboortedatum"] = m["birth_date"]
                # what the first person row carries wins: the wide mapping reads these as the person's
                text = _address_text(m)
                if text:
                    got["adres"] = text
                for col, fld in (("telefoon", "phone"), ("iban", "iban")):
                    if m[fld]:
                        got[col] = m[fld]
            if "adres" not in got:
                text = _address_text(m)
                if text:
                    got["adres"] = text
            if "bedrijf" not in got and (m["business_name"] or m["kvk"]):
                got["bedrijf"], got["kvk"] = m["business_name"], m["kvk"]
            for col, fld in (("kenteken", "plate"), ("telefoon", "phone"), ("iban", "iban")):
                if col not in got and m[fld]:
                    got[col] = m[fld]
    out_path = Path(out_path)
    with open(out_path, "w", encoding=WIDE_ENCODING, newline="") as fh:
        writer = csv.writer(fh, delimiter=";", lineterminator="\r\n")
        writer.writerow(WIDE_COLUMNS)
        for r in reports:
            got = first[r["report_id"]]
            row = [r["report_id"], _dutch_date(r["received_at"]), r["category"], r["description"],
                   r["reporter_id"]] + [got.get(c, "") for c in WIDE_COLUMNS[5:]]
            writer.writerow([to_cp1252(v) for v in row])
    return len(reports)
