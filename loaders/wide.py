"""Wide single-file exports (one row per melding, columns such as ``persoon``, ``adres``, ``kenteken``)
mapped onto the canonical schema by a TOML mapping file.

In:  a mapping file (see ``examples/wide_mapping.toml``) and the rows of a wide file.
Out: :class:`WideMapping` whose :meth:`WideMapping.split` turns one wide row into one canonical report
     row and zero or more canonical mention rows (``mention_id`` = ``<report_id>-<name>``).

Mapping format::

    [report]                 # canonical report field = column in the wide file
    report_id = "meldingnummer"
    received_at = "datum"
    category = "soort"

    [[mention]]              # one block per thing a row can mention
    name = "persoon"         # a short stable name: part of the mention id
    entity_type = "person"
    role = "betrokkene"      # a fixed role (or role_column = "...")
    [mention.fields]         # canonical field = column
    name = "persoon"
    birth_date = "geboortedatum"
    address = "adres"        # a person's address: a LIVES_AT link
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from linkage import model
from linkage.errors import ConfigError
from linkage.settings import read_toml


@dataclass(frozen=True)
class MentionSpec:
    name: str
    entity_type: str
    role: str | None
    role_column: str | None
    fields: tuple[tuple[str, str], ...]  # (canonical field, column)


@dataclass(frozen=True)
class WideMapping:
    """A validated wide-export mapping."""

    path: Path
    report: tuple[tuple[str, str], ...]
    mentions: tuple[MentionSpec, ...]

    @property
    def columns(self) -> set[str]:
        """Every column the mapping reads."""
        cols = {c for _, c in self.report}
        for m in self.mentions:
            cols.update(c for _, c in m.fields)
            if m.role_column:
                cols.add(m.role_column)
        return cols

    def split(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One wide row -> (canonical report row, canonical mention rows).

        >>> m = WideMapping(Path("m.toml"), (("report_id", "nr"),),
        ...     (MentionSpec("p1", "person", "bewoner", None, (("name", "persoon"),)),))
        >>> m.split({"nr": "R1", "persoon": "Jan"})[1][0]["mention_id"]
        'R1-p1'
        """
        report = {field: row.get(col) for field, col in self.report}
        report_id = str(report.get("report_id") or "").strip()
        mentions = []
        for spec in self.mentions:
            values = {field: row.get(col) for field, col in spec.fields}
            if not any(v not in (None, "") and str(v).strip() for v in values.values()):
                continue
            role = row.get(spec.role_column) if spec.role_column else spec.role
            mentions.append(
                {"report_id": report_id, "mention_id": f"{report_id}-{spec.name}", "entity_type": spec.entity_type,
                 "role": role, **values}
            )
        return report, mentions


def load_mapping(path: Path | str) -> WideMapping:
    """Read and check a mapping file.

    Raises
    ------
    ConfigError
        Naming the file and what is wrong (unknown canonical field, missing report_id, ...).
    """
    path = Path(path)
    data = read_toml(path)
    report = data.get("report")
    if not isinstance(report, dict) or "report_id" not in report:
        raise ConfigError(f"{path}: needs a [report] table that maps at least report_id, received_at and category.")
    for field in model.REPORT_REQUIRED:
        if field not in report:
            raise ConfigError(f"{path}: [report] must map '{field}' to a column.")
    unknown = [k for k in report if k not in model.REPORT_FIELDS]
    if unknown:
        raise ConfigError(f"{path}: [report] has unknown field(s) {', '.join(unknown)}; known: {', '.join(model.REPORT_FIELDS)}.")
    specs = []
    seen = set()
    for i, block in enumerate(data.get("mention", []), start=1):
        name = block.get("name")
        etype = block.get("entity_type")
        if not name or name in seen:
            raise ConfigError(f"{path}: [[mention]] block {i} needs a unique 'name'.")
        seen.add(name)
        if etype not in model.ENTITY_TYPES:
            raise ConfigError(f"{path}: [[mention]] '{name}': entity_type must be one of {', '.join(model.ENTITY_TYPES)}.")
        fields = block.get("fields", {})
        bad = [f for f in fields if f not in model.VALUE_FIELDS]
        if bad or not fields:
            raise ConfigError(
                f"{path}: [[mention]] '{name}': fields must map canonical fields ({', '.join(model.VALUE_FIELDS)}) "
                f"to columns{'; unknown: ' + ', '.join(bad) if bad else ''}."
            )
        specs.append(MentionSpec(name, etype, block.get("role"), block.get("role_column"), tuple(fields.items())))
    return WideMapping(path, tuple(report.items()), tuple(specs))
