"""Terugmelden: one Dutch feedback message per report whose status changed since its last feedback.

In:  the store (``reports``, ``status_history``, ``feedback_sent``) and the templates
     (``linkage/feedback/templates.toml``, or the file named by ``[feedback] templates`` in settings).
Out: :class:`FeedbackMessage` records for the reporting app (CSV or JSON via :func:`write_messages`);
     :func:`mark_sent` records what was handed over, so running feedback twice sends nothing twice.

What a message can contain is fixed by the templates, which may use only ``{datum}`` (the report's
date in Dutch), ``{kenmerk}`` (its reference code) and, when ``name_agency = true``, ``{instantie}``.
A message therefore never holds the description, the persons, addresses or other values the report
mentions, other reports, or other reporters. Anonymous reporters get ``reporter_id = None``; the
reporting app delivers by ``reference``.

>>> format_dutch_date("2025-03-03")
'3 maart 2025'
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from linkage.audit import now_iso, parse_since
from linkage.errors import ConfigError, InputError
from linkage.feedback.lifecycle import STATUSES, split_agencies
from linkage.settings import Settings, label_key, read_toml

DEFAULT_TEMPLATES = Path(__file__).with_name("templates.toml")

#: Placeholders a template may use; everything else is refused when loading.
PLACEHOLDERS: frozenset[str] = frozenset({"datum", "kenmerk", "instantie"})

MONTHS_NL: tuple[str, ...] = (
    "januari", "februari", "maart", "april", "mei", "juni",
    "juli", "augustus", "september", "oktober", "november", "december",
)

#: Columns of the CSV/JSON hand-over, in order.
MESSAGE_FIELDS: tuple[str, ...] = ("report_id", "reference", "reporter_id", "status", "message", "changed_at", "history_id")


def format_dutch_date(value: Any) -> str:
    """A date (or ISO date/timestamp text) as Dutch text without leading zero: ``3 maart 2025``.

    >>> format_dutch_date(dt.date(2025, 12, 24)), format_dutch_date("2025-01-09T10:30:00")
    ('24 december 2025', '9 januari 2025')
    >>> format_dutch_date("onbekend")
    'onbekende datum'
    """
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value or "")[:10])
        except ValueError:
            return "onbekende datum"
    return f"{value.day} {MONTHS_NL[value.month - 1]} {value.year}"


def join_dutch(names: Sequence[str]) -> str:
    """``a``, ``a en b``, ``a, b en c``.

    >>> join_dutch(["de politie", "de FIOD", "het UWV"])
    'de politie, de FIOD en het UWV'
    """
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " en " + names[-1]


@dataclass(frozen=True)
class Templates:
    """Loaded, checked templates. Build with :func:`load_templates`."""

    source: str
    by_status: Mapping[str, str]
    by_status_agency: Mapping[str, str] = field(default_factory=dict)
    agency_names: Mapping[str, str] = field(default_factory=dict)
    name_agency: bool = False
    channel: str = "meldingen-app"

    def render(self, status: str, received_at: Any, reference: str, agencies: Sequence[str] = ()) -> str:
        """The message for one report in ``status`` (``agencies`` is used only when ``name_agency``)."""
        template = self.by_status[status]
        if self.name_agency and agencies and status in self.by_status_agency:
            template = self.by_status_agency[status]
        instantie = join_dutch([self.agency_names.get(label_key(a), a) for a in agencies]) or "de juiste instantie"
        return template.format(datum=format_dutch_date(received_at), kenmerk=reference, instantie=instantie)


def _check_template(source: str, section: str, status: str, text: Any, allowed: frozenset[str]) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{source}: [{section}] {status} must be a non-empty text.")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ConfigError(f"{source}: [{section}] {status}: braces do not match ({exc}).") from None
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if name not in allowed or spec or conv:
            raise ConfigError(
                f"{source}: [{section}] {status} uses '{{{name}}}'; only "
                f"{', '.join('{' + p + '}' for p in sorted(allowed))} may be used (without format specs)."
            )
    return text


def load_templates(path: Path | str | None = None, settings: Settings | None = None,
                   name_agency: bool | None = None) -> Templates:
    """Load and check the feedback templates.

    The file is ``path``, else ``[feedback] templates`` in ``settings``, else the bundled one.
    ``name_agency`` (argument, else ``[feedback] name_agency`` in settings, else in the templates
    file) decides whether ``doorgezet`` messages name the agency.

    Raises
    ------
    ConfigError
        When a status has no template or a template uses a placeholder other than
        ``{datum}``, ``{kenmerk}`` (and ``{instantie}`` in ``[templates_agency]``).

    >>> t = load_templates()
    >>> t.render("doorgezet", "2025-03-03", "R-17", ["Politie"])
    'Uw melding van 3 maart 2025 (kenmerk R-17) is doorgezet naar de juiste instantie. Dank voor uw melding.'
    >>> load_templates(name_agency=True).render("doorgezet", "2025-03-03", "R-17", ["Politie"])
    'Uw melding van 3 maart 2025 (kenmerk R-17) is doorgezet naar de politie. Dank voor uw melding.'
    """
    conf = dict((settings.raw.get("feedback", {}) if settings is not None else {}) or {})
    chosen = path or conf.get("templates") or DEFAULT_TEMPLATES
    if settings is not None and not Path(chosen).is_absolute() and not Path(chosen).exists():
        chosen = Path(settings.source).parent / chosen
    data = read_toml(Path(chosen))
    source = str(chosen)
    base = data.get("templates", {})
    missing = [s for s in STATUSES if s not in base]
    if missing:
        raise ConfigError(f"{source}: [templates] has no template for {', '.join(missing)}.")
    plain = PLACEHOLDERS - {"instantie"}
    by_status = {s: _check_template(source, "templates", s, base[s], plain) for s in STATUSES}
    by_agency = {s: _check_template(source, "templates_agency", s, t, PLACEHOLDERS)
                 for s, t in data.get("templates_agency", {}).items() if s in STATUSES}
    file_conf = data.get("feedback", {})
    if name_agency is None:
        name_agency = bool(conf.get("name_agency", file_conf.get("name_agency", False)))
    return Templates(
        source=source,
        by_status=by_status,
        by_status_agency=by_agency,
        agency_names={label_key(str(k)): str(v) for k, v in data.get("agency_names", {}).items()},
        name_agency=name_agency,
        channel=str(conf.get("channel", file_conf.get("channel", "meldingen-app"))),
    )


@dataclass(frozen=True)
class FeedbackMessage:
    """One message to one reporter about one report.

    ``reference`` is the report's code (the report id) by which the app finds the reporter, also when
    anonymous; ``reporter_id`` is the reporter's pseudonymous id, None when anonymous.
    """

    report_id: str
    reference: str
    reporter_id: str | None
    status: str
    message: str
    changed_at: str
    history_id: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_feedback(store, since: str | dt.date | None = None, templates: Templates | None = None,
                   now: dt.datetime | None = None) -> list[FeedbackMessage]:
    """One message per report whose status changed since its last feedback (sorted by report id).

    Parameters
    ----------
    since:
        Only status changes at or after this date/time.
    now:
        Ignore status changes after this moment (default: all).

    A report is left out when its last status row was already sent, or when the status that was last
    sent is the same as the current one (``doorgezet`` to another agency counts as a change only when
    agencies are named). Reports without history (still ``ontvangen``) get no message.
    """
    templates = templates or load_templates()
    cutoff = parse_since(since)
    upto = now_iso(now) if now else None
    last = store.frame(
        "SELECT h.id, h.report_id, h.at, h.to_status, h.agency, r.received_at, r.reporter_id, r.reporter_type, "
        "       s.history_id AS sent_id, sh.to_status AS sent_status, sh.agency AS sent_agency "
        "FROM (SELECT report_id, MAX(id) AS id FROM status_history "
        + ("WHERE at <= ? " if upto else "") +
        "      GROUP BY report_id) l "
        "JOIN status_history h ON h.id = l.id "
        "JOIN reports r ON r.report_id = h.report_id "
        "LEFT JOIN (SELECT report_id, MAX(history_id) AS history_id FROM feedback_sent GROUP BY report_id) s "
        "       ON s.report_id = h.report_id "
        "LEFT JOIN status_history sh ON sh.id = s.history_id "
        "ORDER BY h.report_id",
        (upto,) if upto else (),
    )
    messages: list[FeedbackMessage] = []
    for row in last.itertuples(index=False):
        if cutoff and str(row.at) < cutoff:
            continue
        sent_id = None if row.sent_id is None or row.sent_id != row.sent_id else int(row.sent_id)
        if sent_id is not None and sent_id >= int(row.id):
            continue
        if sent_id is not None and row.sent_status == row.to_status:
            if not (templates.name_agency and row.to_status == "doorgezet" and row.agency != row.sent_agency):
                continue
        anonymous = not row.reporter_id or row.reporter_type == "anoniem"
        text = templates.render(row.to_status, row.received_at, str(row.report_id), split_agencies(row.agency))
        messages.append(FeedbackMessage(
            report_id=str(row.report_id),
            reference=str(row.report_id),
            reporter_id=None if anonymous else str(row.reporter_id),
            status=str(row.to_status),
            message=text,
            changed_at=str(row.at),
            history_id=int(row.id),
        ))
    return messages


def mark_sent(store, messages: Iterable[FeedbackMessage], channel: str | None = None,
              now: dt.datetime | None = None) -> int:
    """Record messages as handed over; returns how many were new (already-recorded ones are ignored)."""
    at = now_iso(now)
    rows = [(m.report_id, int(m.history_id), at, channel or "meldingen-app") for m in messages]
    with store.transaction():
        before = store.conn.total_changes
        store.conn.executemany(
            "INSERT OR IGNORE INTO feedback_sent (report_id, history_id, sent_at, channel) VALUES (?, ?, ?, ?)", rows
        )
        return store.conn.total_changes - before


def write_messages(messages: Sequence[FeedbackMessage], path: Path | str) -> Path:
    """Write messages as ``.csv`` (UTF-8 with header) or ``.json`` (a list of objects).

    Raises
    ------
    InputError
        When the file name ends in something else.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise InputError(f"{path.name}: feedback is written as .csv or .json; choose one of those endings.")
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [m.to_dict() for m in messages]
    if suffix == ".json":
        path.write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(MESSAGE_FIELDS))
            writer.writeheader()
            for rec in records:
                writer.writerow({k: ("" if rec[k] is None else rec[k]) for k in MESSAGE_FIELDS})
    return path
