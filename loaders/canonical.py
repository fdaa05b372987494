"""Validation of one input row into canonical report and mention records.

In:  a row dict with canonical column names (see ``linkage.model``), the settings, and where it came from.
Out: :func:`validate_report` -> ``(report | None, problems)``; :func:`validate_mention` ->
     ``(mentions, links, problems)``. A row with an ``error`` problem is rejected (quarantined);
     ``warning`` problems keep the row and are recorded in the mention's ``warnings`` column.
Values are kept as given; normalised forms are added next to them. Problems never quote values.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress
from json.encoder import encode_basestring as _json_str
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
    return row_checker(settings).report(row, origin)


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
    return row_checker(settings).mention(row, origin, occurrence, require_own_fields)


# --- the work behind validate_report / validate_mention ---------------------------------------------
# Loading calls these once per row, hundreds of thousands of times, so the per-row path is kept lean:
# values are read once, normalising runs once per distinct (field, value), labels are mapped once per
# distinct label, and the content hash is built from precomputed pieces (the same digest as
# ``model.content_hash``).

# ids go into SQL as JSON texts (json_each), which end at a NUL; an id with a control character is a broken
# cell (a tab or line break of a bad export), never a real id
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # none of these is printable: a printable id needs no search
_CONTROL_ID = ("{field} contains a control character (a NUL, tab or line break: a damaged cell?); "
               "ids must be plain text.")


def _strip(value: Any) -> str | None:
    """:func:`text` with a fast path for the common case (a ``str``)."""
    if value.__class__ is str:
        value = value.strip()
        return value or None
    return text(value)


def _value_fields() -> tuple[tuple[str, str], ...]:
    """(field, entity type) for every raw value field, in ``model.VALUE_FIELDS`` order."""
    out = [(f, t) for t in model.ENTITY_TYPES for f in model.TYPE_FIELDS[t]]
    if tuple(f for f, _ in out) != model.VALUE_FIELDS or len({f for f, _ in out}) != len(out):
        raise AssertionError("model.TYPE_FIELDS must give every value field to exactly one entity type")
    return tuple(out)


_VALUE_FIELDS = _value_fields()
_FIELD_NAMES: tuple[str, ...] = tuple(f for f, _ in _VALUE_FIELDS)
_FIELD_TYPE: dict[str, str] = dict(_VALUE_FIELDS)
#: Raw fields that have a normalised form (see :func:`_normalised`).
_NORMALISED_BY = frozenset(_FIELD_CHECKS) | {"birth_date"}
_HASHED_MENTION_FIELDS: tuple[str, ...] = model.STORED_MENTION_FIELDS[:-1]
_TEXT_OR_NONE = frozenset({str, type(None)})


@lru_cache(maxsize=1 << 18)
def _normalised(field: str, value: str) -> tuple[str, str | None, str | None]:
    """(target column, canonical form, warning message or None) of one raw value of a field in
    :data:`_NORMALISED_BY`. Pure, so cached per distinct value."""
    if field == "birth_date":
        parsed = parse_date(value)
        if parsed is None:
            return "birth_date_norm", None, "birth_date is not a date; kept as given."
        return "birth_date_norm", parsed.isoformat(), None
    kind, target = _FIELD_CHECKS[field]
    checked = identifiers.check(kind, value)
    return target, checked.normalised, (checked.problem + "; kept as given.") if checked.problem else None


@lru_cache(maxsize=1 << 16)
def _timestamp(value: str) -> str | None:
    return parse_timestamp(value)


_SHA1 = hashlib.sha1()


class _Hasher:
    """``model.content_hash(record, fields)``, the same digest, built from precomputed pieces.

    The digest is of the JSON list of ``str((field, value))`` for every field. For the usual record (text
    values without quotes, backslashes or unprintable characters, in ``fields`` order) that text is a constant
    template per set of present fields with the values spliced in as they are; other records take the
    general path (each part JSON-encoded), which gives the same text."""

    #: distinct sets of present fields whose templates are kept (a load sees a few dozen)
    TEMPLATES_KEPT = 4096

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self.index = {f: i for i, f in enumerate(fields)}
        self.absent = [_json_str(str((f, None))) for f in fields]
        self.prefix = [f"({f!r}, " for f in fields]
        # present field positions (ascending) -> the constant pieces between the values, or None when the
        # positions are not ascending (the general path then)
        self.templates: dict[tuple[int, ...], list[str] | None] = {}

    def _template(self, at: tuple[int, ...]) -> list[str] | None:
        if any(a >= b for a, b in zip(at, at[1:])):
            return None
        absent, fields = self.absent, self.fields
        if not at:
            return ["[" + ", ".join(absent) + "]"]
        pieces, part, last = [], "[", 0
        for i in at:
            if last:
                part += ", "
            part += "".join(p + ", " for p in absent[last:i]) + _json_str(f"({fields[i]!r}, '")[:-1]
            pieces.append(part)
            part = _json_str("')")[1:]
            last = i + 1
        pieces.append(part + "".join(", " + p for p in absent[last:]) + "]")
        return pieces

    def _general(self, record: Mapping[str, Any]) -> str:
        parts = self.absent.copy()
        index, prefix = self.index, self.prefix
        for key, value in record.items():
            i = index.get(key)
            if i is None or value is None:
                continue
            if value.__class__ is str:
                parts[i] = _json_str(prefix[i] + repr(value) + ")")  # == str((key, value))
            else:
                parts[i] = _json_str(str((key, value)))
        return "[" + ", ".join(parts) + "]"

    def __call__(self, record: Mapping[str, Any]) -> str:
        index = self.index
        at: list[int] = []
        values: list = []
        for key, value in record.items():
            if value is not None:
                i = index.get(key)
                if i is not None:
                    at.append(i)
                    values.append(value)
        key = tuple(at)
        templates = self.templates
        pieces = templates.get(key, False)
        if pieces is False:
            if len(templates) >= self.TEMPLATES_KEPT:
                templates.clear()
            pieces = templates[key] = self._template(key)
        text = None
        if pieces is not None:
            # only exact text: a str subclass (numpy.str_) may repr() otherwise; anything else is not text
            joined = "".join(values) if all(v.__class__ is str for v in values) else None
            # repr() of such a text is the text in single quotes and its JSON encoding the same again
            if joined is not None and "'" not in joined and '"' not in joined and "\\" not in joined \
                    and joined.isprintable():
                spliced = [None] * (2 * len(values) + 1)
                spliced[::2] = pieces
                spliced[1::2] = values
                text = "".join(spliced)
        if text is None:
            text = self._general(record)
        digest = _SHA1.copy()  # cheaper than hashlib.sha1(), which looks the algorithm up each time
        digest.update(text.encode("utf-8"))
        return digest.hexdigest()[:20]


_mention_hash = _Hasher(_HASHED_MENTION_FIELDS)
_report_hash = _Hasher(model.REPORT_FIELDS)

_CHECKERS: dict[int, tuple[Settings, "RowChecker"]] = {}
#: Distinct raw labels (categories, entity types, reporter types) a :class:`RowChecker` remembers.
_LABELS_CACHED = 10000


def row_checker(settings: Settings) -> "RowChecker":
    """The :class:`RowChecker` of one settings object (label mappings depend on the settings)."""
    entry = _CHECKERS.get(id(settings))
    if entry is None or entry[0] is not settings:
        if len(_CHECKERS) >= 16:
            _CHECKERS.clear()
        entry = _CHECKERS[id(settings)] = (settings, RowChecker(settings))
    return entry[1]


class RowChecker:
    """Row validation for one settings object, with its label lookups remembered.

    :meth:`report` and :meth:`mention` are :func:`validate_report` and :func:`validate_mention` (their
    ``occurrence`` and ``require_own_fields`` given positionally), without the per-call lookup.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # label -> canonical label, once per distinct raw label (these mappings are pure)
        self._category = lru_cache(maxsize=_LABELS_CACHED)(settings.category)
        self._entity_type = lru_cache(maxsize=_LABELS_CACHED)(settings.entity_type)
        self._reporter_type = lru_cache(maxsize=_LABELS_CACHED)(label_key)

    # --- reports -----------------------------------------------------------------------------------
    def report(self, row: Mapping[str, Any], origin: Origin) -> tuple[dict | None, list[Problem]]:
        get = row.get
        problems: list[Problem] = []
        report_id = _strip(get("report_id"))
        if not report_id:
            problems.append(origin.problem("report_id", "report_id is empty; every report needs a unique id."))
        elif not report_id.isprintable() and _CONTROL.search(report_id):
            problems.append(origin.problem("report_id", _CONTROL_ID.format(field="report_id")))
        raw_date = _strip(get("received_at"))
        received = _timestamp(raw_date) if raw_date else None
        if not raw_date:
            problems.append(origin.problem("received_at", "received_at is empty; give the date the report came in."))
        elif received is None:
            problems.append(origin.problem("received_at", "received_at is not a date; use 2025-03-14 or 14-03-2025."))
        raw_cat = _strip(get("category"))
        category = None
        if not raw_cat:
            problems.append(origin.problem("category", "category is empty; use one of the documented categories."))
        else:
            category, known = self._category(raw_cat)
            if not known:
                problems.append(
                    origin.problem("category", f"unknown category label '{raw_cat[:40]}' recorded as 'overig'.", "warning")
                )
        reporter_id = _strip(get("reporter_id"))
        raw_reporter_type = _strip(get("reporter_type"))
        reporter_type = raw_reporter_type
        if reporter_type:
            reporter_type = self._reporter_type(reporter_type)
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
        if problems and any(p.severity == "error" for p in problems):
            return None, problems
        description = _strip(get("description"))
        report = {
            "report_id": report_id,
            "received_at": received,
            "category": category,
            "category_raw": raw_cat,
            "description": description,
            "reporter_id": reporter_id,
            "reporter_type": reporter_type,
        }
        # The hash covers the fields as given (stripped), not their canonical forms.
        report["content_hash"] = _report_hash({
            "report_id": report_id, "received_at": raw_date, "category": raw_cat, "description": description,
            "reporter_id": reporter_id, "reporter_type": raw_reporter_type,
        })
        return report, problems

    # --- mentions ----------------------------------------------------------------------------------
    def mention(
        self, row: Mapping[str, Any], origin: Origin, occurrence: int, require_own_fields: bool
    ) -> tuple[list[dict], list[dict], list[Problem]]:
        get = row.get
        problems: list[Problem] = []
        report_id = get("report_id")
        report_id = _strip(report_id)
        if not report_id:
            problems.append(origin.problem("report_id", "report_id is empty; a mention must name its report."))
        elif not report_id.isprintable() and _CONTROL.search(report_id):
            problems.append(origin.problem("report_id", _CONTROL_ID.format(field="report_id")))
        raw_type = get("entity_type")
        raw_type = _strip(raw_type)
        entity_type = self._entity_type(raw_type) if raw_type else None
        if not raw_type:
            problems.append(origin.problem("entity_type", f"entity_type is empty; use one of {', '.join(model.ENTITY_TYPES)}."))
        elif entity_type is None:
            problems.append(
                origin.problem("entity_type", f"entity_type '{raw_type[:30]}' is not one of {', '.join(model.ENTITY_TYPES)}.")
            )
        if problems:
            return [], [], problems

        role = get("role")
        role = _strip(role)
        # Every present value once, grouped by the entity type it belongs to (model order kept). Empty
        # text and None are skipped up front; other empty-looking values (0) go through text().
        by_type: dict[str, dict[str, str]] = {}
        cells = tuple(map(get, _FIELD_NAMES))
        if _TEXT_OR_NONE.issuperset(map(type, cells)):
            # only text and None (every CSV row): the non-empty cells, found without a step per empty one
            present: Any = compress(zip(_FIELD_NAMES, cells), cells)
        else:
            present = zip(_FIELD_NAMES, cells)
        for field, value in present:
            if not value and (value is None or value.__class__ is str):
                continue
            if value.__class__ is str:
                value = value.strip()
                if not value:
                    continue
            else:
                value = text(value)
                if value is None:
                    continue
            etype = _FIELD_TYPE[field]
            values = by_type.get(etype)
            if values is None:
                by_type[etype] = {field: value}
            else:
                values[field] = value
        own = by_type.get(entity_type)
        if own is not None and len(by_type) == 1:
            carried = ()
        else:
            carried = [(t, v) for t, v in by_type.items() if t != entity_type]
        if not own:
            if not require_own_fields:
                if not carried:
                    return [], [], []
            else:
                fields = ", ".join(model.TYPE_FIELDS[entity_type])
                article = "an" if entity_type[0] in "aeiou" else "a"
                problems.append(origin.problem(entity_type, f"{article} {entity_type} row needs at least one of: {fields}."))
                return [], [], problems

        mention_id = get("mention_id")
        mention_id = _strip(mention_id)
        if mention_id and not mention_id.isprintable() and _CONTROL.search(mention_id):
            return [], [], [origin.problem("mention_id", _CONTROL_ID.format(field="mention_id"))]
        if not mention_id:
            all_values = {k: v for values in by_type.values() for k, v in values.items()}
            if "bsn" in all_values:  # with a pseudonym key, the id must not be a hash of the plain BSN
                all_values["bsn"] = pseudonymise_bsn(all_values["bsn"])
            mention_id = model.derive_mention_id(report_id, entity_type, role, all_values, occurrence)

        mentions: list[dict] = []
        links: list[dict] = []
        # A wide-export block with its own fields empty keeps what it carries (a melding about an address
        # with no known person): those become mentions of their own, without a link.
        todo = [(entity_type, own, mention_id, role, None)] if own else []
        parent_id = mention_id if own else None
        for t, v in carried:
            todo.append((t, v, model.derived_mention_id(mention_id, t), None, parent_id))
        for etype, values, mid, mrole, parent in todo:
            record: dict[str, Any] = {"mention_id": mid, "report_id": report_id, "entity_type": etype, "role": mrole}
            record.update(values)
            warned = None
            for field, value in values.items():
                if field not in _NORMALISED_BY:
                    continue
                target, norm, message = _normalised(field, value)
                record[target] = norm
                if message is not None:
                    problem = origin.problem(field, message, "warning")
                    problems.append(problem)
                    if warned is None:
                        warned = [problem]
                    else:
                        warned.append(problem)
            if "bsn" in values:  # with $LINKAGE_PSEUDONYM_KEY: bsn and bsn_norm become keyed hashes
                pseudonymise_mention(record)
            record["content_hash"] = _mention_hash(record)
            record["warnings"] = "; ".join(f"{p.field}: {p.message}" for p in warned) if warned else None
            record["parent_mention_id"] = parent
            mentions.append(record)
            if parent is not None:
                rel = model.link_type(entity_type, etype, role) or "RELATED_TO"
                links.append({"src_mention_id": parent, "dst_mention_id": mid, "rel_type": rel, "report_id": report_id})
        return mentions, links, problems
