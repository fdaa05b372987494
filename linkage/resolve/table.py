"""Resolving any table of persons, addresses or businesses through a column mapping (``linkage resolve``).

In:  one or more CSV/XLSX/JSON files, the entity type, the id column and a mapping ``{column: field}``
     onto the fields below.
Out: a CSV ``record_id,entity_id`` (one row per input row, in input order) and a :class:`TableSummary`.
     Records from several files are resolved together, which links the sources. When ids repeat across
     files, every record id is prefixed with its file's stem (``a.csv`` row ``7`` -> ``a:7``) and the
     summary says so.

Fields: ``first_name``, ``last_name``, ``name`` (a full person name), ``birth_date``, ``bsn``,
``national_id`` (any other identifier, compared exactly), ``address`` (one-string), ``street``,
``house_number``, ``postcode``, ``city``, ``business_name``, ``kvk``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from linkage.errors import ConfigError, InputError
from linkage.er_settings import FUZZY_TYPES, ERSettings
from linkage.resolve.engine import resolve_mentions
from linkage.resolve.features import normalise_mention_values

TABLE_FIELDS: tuple[str, ...] = ("first_name", "last_name", "name", "birth_date", "bsn", "national_id", "address",
                                 "street", "house_number", "postcode", "city", "business_name", "kvk")


@dataclass
class TableSummary:
    """What :func:`resolve_table` did."""

    records: int
    entities: int
    files: list[str]
    out: str
    ids_prefixed: bool = False
    largest_entity: int = 0
    notes: list[str] = field(default_factory=list)


def _read(path: Path) -> pd.DataFrame:
    try:
        from loaders.readers import read_table
    except ImportError:  # pragma: no cover - loaders always present in this repo
        read_table = None
    if read_table is not None:
        table = read_table(path)
        rows = [row for _, row in table.rows]
        return pd.DataFrame(rows, columns=table.columns).astype(object)
    if not path.exists():
        raise InputError(f"{path}: file not found.")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return pd.read_excel(path, dtype=str)
    return pd.read_csv(path, sep=None, engine="python", dtype=str)


def resolve_table(paths: list[Path] | list[str], entity_type: str, id_column: str, mapping: dict[str, str],
                  out: Path | str, settings: ERSettings | str | Path | None = None) -> TableSummary:
    """Resolve the records of ``paths`` (one entity type) and write ``record_id,entity_id`` to ``out``.

    Raises
    ------
    ConfigError
        When the type is not person/address/business or the mapping names an unknown field.
    InputError
        When a file cannot be read or lacks the id column or a mapped column (all such problems at once).
    """
    if entity_type not in FUZZY_TYPES:
        raise ConfigError(f"--type must be one of {', '.join(FUZZY_TYPES)}, not '{entity_type}'.")
    bad = sorted(f for f in mapping.values() if f not in TABLE_FIELDS)
    if bad:
        raise ConfigError(f"Unknown field(s) in --map: {', '.join(bad)}. Known fields: {', '.join(TABLE_FIELDS)}.")
    paths = [Path(p) for p in paths]
    frames, problems = [], []
    for path in paths:
        df = _read(path)
        missing = [c for c in [id_column, *mapping] if c not in df.columns]
        if missing:
            problems.append(f"{path.name}: missing column(s) {', '.join(missing)}")
            continue
        part = pd.DataFrame({"record_id": df[id_column].astype(str).str.strip(), "_file": path.stem})
        for col, fld in mapping.items():
            part[fld] = df[col].astype(object).where(df[col].notna(), None)
        frames.append(part)
    if problems:
        raise InputError("; ".join(problems) + ".")
    data = pd.concat(frames, ignore_index=True)
    prefixed = bool(data["record_id"].duplicated().any())
    notes = []
    if prefixed:
        if len(paths) > 1:
            data["record_id"] = data["_file"] + ":" + data["record_id"]
            notes.append("record ids repeat across files, so each is prefixed with its file's stem")
        if data["record_id"].duplicated().any():
            data["record_id"] = data["record_id"] + "#" + data.groupby("record_id").cumcount().astype(str)
            notes.append("record ids repeat within a file; repeats get '#<n>' appended")
    mention_rows = []
    for rec in data.to_dict("records"):
        row = {k: v for k, v in rec.items() if k not in ("_file",) and v is not None and v == v}
        row["mention_id"] = rec["record_id"]
        row["entity_type"] = entity_type
        mention_rows.append(normalise_mention_values(row))
    mentions = pd.DataFrame(mention_rows)
    res = resolve_mentions(mentions, settings=settings)
    result = pd.DataFrame({"record_id": data["record_id"]}).merge(
        res.assignments[["mention_id", "entity_id"]].rename(columns={"mention_id": "record_id"}), on="record_id", how="left")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.to_csv(out, index=False)
    return TableSummary(records=len(result), entities=int(result["entity_id"].nunique()), files=[str(p) for p in paths],
                        out=str(out), ids_prefixed=prefixed and len(paths) > 1,
                        largest_entity=int(result["entity_id"].value_counts().max()) if len(result) else 0, notes=notes)
