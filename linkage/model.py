"""The canonical schema: what a report (melding) and a mention look like inside linkage.

Every loader turns its input into these two tables; every later stage reads them. The column lists here
are the contract between stages (and the documented input format, see ``docs/input-format.md``).

In:  nothing (definitions only).
Out: column names, entity types, the category vocabulary, and deterministic id helpers.
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterable, Mapping

#: Columns of the reports table as analysts supply them.
REPORT_FIELDS: tuple[str, ...] = (
    "report_id",
    "received_at",
    "category",
    "description",
    "reporter_id",
    "reporter_type",
)
REPORT_REQUIRED: tuple[str, ...] = ("report_id", "received_at", "category")

#: Reporter types; an empty reporter_id means anonymous.
REPORTER_TYPES: tuple[str, ...] = ("medewerker", "bewoner", "partner", "anoniem")

#: Entity types a mention can be of.
ENTITY_TYPES: tuple[str, ...] = ("person", "address", "business", "vehicle", "phone", "bank_account", "email")

#: Fields that belong to each entity type (the raw, as-given values).
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "person": ("name", "first_name", "last_name", "birth_date", "bsn"),
    "address": ("address", "street", "house_number", "postcode", "city"),
    "business": ("business_name", "kvk"),
    "vehicle": ("plate",),
    "phone": ("phone",),
    "bank_account": ("iban",),
    "email": ("email",),
}

#: All raw mention value fields, in a fixed order.
VALUE_FIELDS: tuple[str, ...] = tuple(f for t in ENTITY_TYPES for f in TYPE_FIELDS[t])

#: Columns of the mentions table as analysts supply them.
MENTION_FIELDS: tuple[str, ...] = ("report_id", "mention_id", "entity_type", "role") + VALUE_FIELDS
MENTION_REQUIRED: tuple[str, ...] = ("report_id", "entity_type")

#: Normalised forms the loader adds next to the raw values (None when absent or unparseable).
NORMALISED_FIELDS: tuple[str, ...] = (
    "birth_date_norm",
    "bsn_norm",
    "postcode_norm",
    "kvk_norm",
    "plate_norm",
    "phone_norm",
    "iban_norm",
    "email_norm",
)

#: Columns of a stored (atomic) mention: one entity type, its raw fields, their normalised forms.
STORED_MENTION_FIELDS: tuple[str, ...] = (
    ("mention_id", "report_id", "entity_type", "role") + VALUE_FIELDS + NORMALISED_FIELDS + ("warnings",)
)

#: Links that a single input row states between the thing it is about and the extra fields it carries.
#: (carrier type, carried type) -> relationship type. Roles may refine person->business (see link_type).
LINK_TYPES: dict[tuple[str, str], str] = {
    ("person", "address"): "LIVES_AT",
    ("business", "address"): "LOCATED_AT",
    ("person", "business"): "OWNER_OF",
    ("person", "vehicle"): "USES",
    ("person", "phone"): "USES",
    ("person", "bank_account"): "USES",
    ("person", "email"): "USES",
    ("business", "vehicle"): "USES",
    ("business", "phone"): "USES",
    ("business", "bank_account"): "USES",
    ("business", "email"): "USES",
}

#: Roles of a person row that make the person -> business link DIRECTOR_OF instead of OWNER_OF.
DIRECTOR_ROLES: frozenset[str] = frozenset(
    {"bestuurder", "directeur", "director", "dga", "vennoot", "zaakvoerder", "gevolmachtigde"}
)

#: Category vocabulary (extendable through settings).
CATEGORIES: tuple[str, ...] = (
    "woonfraude",
    "adresfraude",
    "overbewoning",
    "illegale_onderverhuur",
    "hennepteelt",
    "drugs",
    "witwassen",
    "mensenhandel",
    "arbeidsuitbuiting",
    "prostitutie",
    "uitkeringsfraude",
    "malafide_onderneming",
    "overig",
)


def link_type(carrier: str, carried: str, role: str | None) -> str | None:
    """The relationship a row of type ``carrier`` states with the ``carried`` fields it also holds.

    >>> link_type("person", "address", "bewoner")
    'LIVES_AT'
    >>> link_type("person", "business", "Bestuurder")
    'DIRECTOR_OF'
    >>> link_type("address", "person", None) is None
    True
    """
    rel = LINK_TYPES.get((carrier, carried))
    if rel == "OWNER_OF" and role and role.strip().lower() in DIRECTOR_ROLES:
        return "DIRECTOR_OF"
    return rel


def stable_hash(*parts: object, length: int = 16) -> str:
    """A short deterministic hex digest of the given parts (order matters, None differs from "").

    >>> stable_hash("a", 1) == stable_hash("a", 1)
    True
    >>> len(stable_hash("x"))
    16
    """
    payload = json.dumps([None if p is None else str(p) for p in parts], ensure_ascii=False)
    return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:length]


def derive_mention_id(report_id: str, entity_type: str, role: str | None, values: Mapping[str, object], occurrence: int) -> str:
    """Derive a mention id when the input has none: same row content in the same file gives the same id.

    ``occurrence`` counts identical rows within one report (0 for the first), so two identical rows
    stay two mentions.

    >>> derive_mention_id("R1", "person", "bewoner", {"name": "Jan"}, 0)
    'm_...'
    """
    items = sorted((k, str(v)) for k, v in values.items() if v not in (None, ""))
    return "m_" + stable_hash(report_id, entity_type, role or "", items, occurrence)


def derived_mention_id(mention_id: str, carried_type: str) -> str:
    """Id of the mention split off a row for the extra fields it carries (``M1`` + address -> ``M1~address``).

    >>> derived_mention_id("M1", "address")
    'M1~address'
    """
    return f"{mention_id}~{carried_type}"


def content_hash(row: Mapping[str, object], fields: Iterable[str]) -> str:
    """Hash of a row's content over ``fields``; used to tell an idempotent re-load from a conflict."""
    return stable_hash(*[(f, row.get(f)) for f in fields], length=20)
