"""Validation of one input row into canonical report and mention records.

In:  a row dict with canonical column names (see ``linkage.model``), the settings, and where it came from.
Out: :func:`validate_report` -> ``(report | None, problems)``; :func:`validate_mention` ->
     ``(mentions, links, problems)``. A row with an ``error`` problem is rejected (quarantined);
     ``warning`` problems keep the row and are recorded in the mention's ``warnings`` column.
Values are kept as given; normalised forms are added next to them. Problems never quote values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from linkage import model
from linkage.errors import Problem
from linkage.normalise import identifiers
from linkage.normalise.dates import parse_date, parse_timestamp
from linkage.pseudonym import pseudonymise_bsn, pseudonymise_mention
from linkage.settings import Settings, label_key

# Which identifier check applies to which raw field, and where its canonical form goes.
_FIELD_CHECKS: dict[str, tuple[str, str]] = {
    "bsn": ("bsn", "bsn_norm"),
    "postcode": ("postcode", "postcode_norm"),
    "kvk": ("kvk", "kvk_norm"),
    "plate": ("plate", "plate_norm"),
    "phone": ("phone", "phone_norm"),
    "iban": ("iban", "iban_norm"),
    "email": ("email", "email_norm"),
}

#: Column names that analysts use for canonical fields (beyond the canonical names themselves).
COLUMN_ALIASES: dict[str, str] = {
    "type": "entity_type",
    "soort_entiteit": "entity_type",
    "rol": "role",
    "naam": "name",
    "voornaam": "first_name",
    "voornamen": "first_name",
    "achternaam": "last_name",
    "geslachtsnaam": "last_name",
    "geboortedatum": "birth_date",
    "adres": "address",
    "straat": "street",
    "straatnaam": "street",
    "huisnummer": "house_number",
    "plaats": "city",
    "woonplaats": "city",
    "bedrijfsnaam": "business_name",
    "handelsnaam": "business_name",
    "kvk_nummer": "kvk",
    "kvknummer": "kvk",
    "kenteken": "plate",
    "telefoon": "phone",
    "telefoonnummer": "phone",
    "rekeningnummer": "iban",
    "e_mail": "email",
    "emailadres": "email",
    "meldingnummer": "report_id",
    "melding_id": "report_id",
    "datum": "received_at",
    "ontvangen": "received_at",
    "categorie": "category",
    "omschrijving": "description",
    "melder": "reporter_id",
    "melder_type": "reporter_type",
}


def canonical_column(name: str) -> str:
    """The canonical field a column header stands for (``Geboortedatum`` -> ``birth_date``).

    >>> canonical_column(" Report ID "), canonical_column("Kenteken")
    ('report_id', 'plate')
    """
    key = label_key(name)
    return COLUMN_ALIASES.get(key, key)


def text(value: Any) -> str | None:
    """Stripped text, or None when empty/NaN.

    >>> text("  a "), text(""), text(float("nan")), text(12.0)
    ('a', None, None, '12')
    """
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    s = str(value).strip()
    return s or None


@dataclass
class Origin:
    """Where a row came from, for messages and the quarantine."""

    file: str
    row: int

    def problem(self, field: str | None, message: str, severity: str = "error") -> Problem:
        return Problem(self.file, self.row, field, message, severity)


def validate_report(row: Mapping[str, Any], settings: Settings, origin: Origin) -> tuple[dict | None, list[Problem]]:
    """Check one reports row and give the canonical report (or None when it must be rejected).

    >>> from linkage.settings import load_settings
    >>> rep, probs = validate_report({"report_id": "R1", "received_at": "14-03-2025", "category": "Hennep"},
    ...                              load_settings(), Origin("r.csv", 2))
    >>> rep["received_at"], rep["category"], rep["reporter_type"], probs
    ('2025-03-14', 'hennepteelt', 'anoniem', [])
    """
    problems: list[Problem] = []
    report_id = text(row.get("report_id"))
    if not report_id:
        problems.append(origin.problem("report_id", "report_id is empty; every report needs a unique id."))
    raw_date = text(row.get("received_at"))
    received = parse_timestamp(raw_date) if raw_date else None
    if not raw_date:
        problems.append(origin.problem("received_at", "received_at is empty; give the date the report came in."))
    elif received is None:
        problems.append(origin.problem("received_at", "received_at is not a date; use 2025-03-14 or 14-03-2025."))
    raw_cat = text(row.get("category"))
    category = None
    if not raw_cat:
        problems.append(origin.problem("category", "category is empty; use one of the documented categories."))
    else:
        category, known = settings.category(raw_cat)
        if not known:
            problems.append(
                origin.problem("category", f"unknown category label '{raw_cat[:40]}' recorded as 'overig'.", "warning")
            )
    reporter_id = text(row.get("reporter_id"))
    reporter_type = text(row.get("reporter_type"))
    if reporter_type:
        reporter_type = label_key(reporter_type)
        if reporter_type not in model.REPORTER_TYPES:
            problems.append(
                origin.problem(
                    "reporter_type",
                    f"reporter_type is not one of {', '.join(model.REPORTER_TYPES)}; left empty.",
                    "warning",
                )
            )
            reporter_type = None
    if not reporter_id and not reporter_type:
        reporter_type = "anoniem"
    if any(p.severity == "error" for p in problems):
        return None, problems
    report = {
        "report_id": report_id,
        "received_at": received,
        "category": category,
        "category_raw": raw_cat,
        "description": text(row.get("description")),
        "reporter_id": reporter_id,
        "reporter_type": reporter_type,
    }
    report["content_hash"] = model.content_hash(
        {k: text(row.get(k)) for k in model.REPORT_FIELDS}, model.REPORT_FIELDS
    )
    return report, problems


def _values_of(row: Mapping[str, Any], entity_type: str) -> dict[str, str]:
    return {f: v for f in model.TYPE_FIELDS[entity_type] if (v := text(row.get(f))) is not None}


def _normalise(entity_type: str, values: Mapping[str, str], origin: Origin) -> tuple[dict[str, str | None], list[Problem]]:
    """Canonical forms for one mention's fields, with a warning for each present-but-invalid value."""
    out: dict[str, str | None] = {}
    problems: list[Problem] = []
    for field, value in values.items():
        if field == "birth_date":
            parsed = parse_date(value)
            out["birth_date_norm"] = parsed.isoformat() if parsed else None
            if parsed is None:
                problems.append(origin.problem("birth_date", "birth_date is not a date; kept as given.", "warning"))
            continue
        check = _FIELD_CHECKS.get(field)
        if check is None:
            continue
        kind, target = check
        checked = identifiers.check(kind, value)
        out[target] = checked.normalised
        if checked.problem:
            problems.append(origin.problem(field, checked.problem + "; kept as given.", "warning"))
    return out, problems


def validate_mention(
    row: Mapping[str, Any],
    settings: Settings,
    origin: Origin,
    occurrence: int = 0,
    require_own_fields: bool = True,
) -> tuple[list[dict], list[dict], list[Problem]]:
    """Check one mentions row; split off the extra things it carries; give records and links.

    A person row that also has address fields yields a person mention, an address mention with id
    ``<mention_id>~address`` and a ``LIVES_AT`` link between them (see ``model.LINK_TYPES``).

    Parameters
    ----------
    occurrence:
        How many identical rows of the same report came before this one (for derived mention ids).
    require_own_fields:
        When False (wide exports), a row without fields of its own type is no error: it yields only the
        mentions it carries (``<mention_id>~<type>``, without a link), or nothing.

    >>> from linkage.settings import load_settings
    >>> ms, links, probs = validate_mention(
    ...     {"report_id": "R1", "mention_id": "M1", "entity_type": "persoon", "name": "Jan de Vries",
    ...      "postcode": "1234 ab", "house_number": "12"}, load_settings(), Origin("m.csv", 2))
    >>> [(m["mention_id"], m["entity_type"]) for m in ms], links[0]["rel_type"], ms[1]["postcode_norm"]
    ([('M1', 'person'), ('M1~address', 'address')], 'LIVES_AT', '1234AB')
    """
    problems: list[Problem] = []
    report_id = text(row.get("report_id"))
    if not report_id:
        problems.append(origin.problem("report_id", "report_id is empty; a mention must name its report."))
    raw_type = text(row.get("entity_type"))
    entity_type = settings.entity_type(raw_type) if raw_type else None
    if not raw_type:
        problems.append(origin.problem("entity_type", f"entity_type is empty; use one of {', '.join(model.ENTITY_TYPES)}."))
    elif entity_type is None:
        problems.append(
            origin.problem("entity_type", f"entity_type '{raw_type[:30]}' is not one of {', '.join(model.ENTITY_TYPES)}.")
        )
    if problems:
        return [], [], problems

    role = text(row.get("role"))
    own = _values_of(row, entity_type)
    carried = {t: v for t in model.ENTITY_TYPES if t != entity_type and (v := _values_of(row, t))}
    if not own and not require_own_fields and not carried:
        return [], [], []
    if not own and require_own_fields:
        fields = ", ".join(model.TYPE_FIELDS[entity_type])
        article = "an" if entity_type[0] in "aeiou" else "a"
        problems.append(origin.problem(entity_type, f"{article} {entity_type} row needs at least one of: {fields}."))
        return [], [], problems

    mention_id = text(row.get("mention_id"))
    if not mention_id:
        all_values = {k: v for t in model.ENTITY_TYPES for k, v in _values_of(row, t).items()}
        if "bsn" in all_values:  # with a pseudonym key, the id must not be a hash of the plain BSN
            all_values["bsn"] = pseudonymise_bsn(all_values["bsn"])
        mention_id = model.derive_mention_id(report_id, entity_type, role, all_values, occurrence)

    mentions: list[dict] = []
    links: list[dict] = []
    # A wide-export block with its own fields empty keeps what it carries (a melding about an address
    # with no known person): those become mentions of their own, without a link.
    head = [(entity_type, own, mention_id, role, None)] if own else []
    parent_id = mention_id if own else None
    for etype, values, mid, mrole, parent in head + [
        (t, v, model.derived_mention_id(mention_id, t), None, parent_id) for t, v in carried.items()
    ]:
        norm, warn = _normalise(etype, values, origin)
        problems.extend(warn)
        record: dict[str, Any] = {"mention_id": mid, "report_id": report_id, "entity_type": etype, "role": mrole}
        record.update(values)
        record.update(norm)
        pseudonymise_mention(record)  # with $LINKAGE_PSEUDONYM_KEY: bsn and bsn_norm become keyed hashes
        record["warnings"] = "; ".join(f"{p.field}: {p.message}" for p in warn) or None
        record["parent_mention_id"] = parent
        record["content_hash"] = model.content_hash(record, model.STORED_MENTION_FIELDS[:-1])
        mentions.append(record)
        if parent is not None:
            rel = model.link_type(entity_type, etype, role) or "RELATED_TO"
            links.append({"src_mention_id": parent, "dst_mention_id": mid, "rel_type": rel, "report_id": report_id})
    return mentions, links, problems
