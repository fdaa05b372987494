"""Hand-over dossiers: one cluster, for one agency it was routed to, as a self-contained HTML file (and PDF).

In:  a store after ``linkage run``, a cluster id and an agency (id or name, as in the cluster's routing).
Out: ``<out_dir>/dossier-<cluster>-<agency>.html`` (inline CSS, the network picture as inline SVG, no
     external resources) and, when headless Chromium is installed, the same as ``.pdf``; one audit row
     (who, when, which cluster, which agency) per dossier written.

What goes in, and what never does (data minimisation, AVG):

* only this cluster: its routing to *this* agency with the reasons, its signals, its reports in time
  order, the entities those reports mention and the links they state, and the network picture;
* reporters appear only as a keyed pseudonym (``melder-`` + 8 hex), stable within the store and
  different per agency, or as ``anoniem``; their ids never appear, also not inside descriptions;
* no other clusters, no routing reasons meant for other agencies, no identifiers beyond entity labels.

A cluster that was not routed to the agency is refused with :class:`NotRoutedError`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from linkage.errors import LinkageError
from linkage.report import pictures

#: Store meta key holding the secret behind reporter pseudonyms (created on first use).
META_KEY = "dossier_reporter_key"
#: Environment variable naming the Chromium binary (default: the first of ``chromium``, ...).
CHROMIUM_ENV = "LINKAGE_CHROMIUM"
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_MONTHS = ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
           "november", "december")
_TYPE_ORDER = ("person", "business", "address", "vehicle", "phone", "bank_account", "email")
_TYPE_PLURAL = {"person": "personen", "business": "bedrijven", "address": "adressen", "vehicle": "voertuigen",
                "phone": "telefoonnummers", "bank_account": "bankrekeningen", "email": "e-mailadressen"}
_TYPE_SINGULAR = {"person": "persoon", "business": "bedrijf", "address": "adres", "vehicle": "voertuig",
                  "phone": "telefoonnummer", "bank_account": "bankrekening", "email": "e-mailadres"}
_REPORTER_TYPES = {"medewerker": "medewerker gemeente", "bewoner": "bewoner", "partner": "partner",
                   "anoniem": "anoniem"}


class NotRoutedError(LinkageError):
    """The cluster was not routed to the agency asked for, so no dossier may go there."""


@dataclass(frozen=True)
class DossierResult:
    """What :func:`write_dossier` wrote. Usable as a path (``os.fspath(result)`` is the HTML file)."""

    html: Path
    pdf: Optional[Path]
    pdf_note: str
    cluster_id: str
    agency: str
    reports: int
    entities: int
    reporters: list[str] = field(default_factory=list)

    def __fspath__(self) -> str:
        return str(self.html)

    def __str__(self) -> str:
        return str(self.html)


# --- agencies and routing -------------------------------------------------------------------------
def _as_list(value: Any) -> list:
    from linkage.pipeline import _as_list as as_list

    if isinstance(value, list):
        return value
    return as_list(value)


def _norm(text: Any) -> str:
    return re.sub(r"[\s_\-]+", " ", str(text or "")).strip().lower()


def agency_name(agency_id: str, routing: list[Mapping[str, Any]] | None = None) -> str:
    """A readable agency name: from the routing entry (``agency_name``/``name``), else from the routing
    rules file's agency table when it has one, else the id with underscores as spaces, capitalised.

    >>> agency_name("gemeente_woonfraude")
    'Gemeente woonfraude'
    >>> agency_name("politie", [{"agency": "politie", "agency_name": "Politie Midden-Nederland"}])
    'Politie Midden-Nederland'
    """
    for r in routing or []:
        if isinstance(r, Mapping) and _norm(r.get("agency")) == _norm(agency_id):
            for key in ("agency_name", "name", "label"):
                if r.get(key):
                    return str(r[key])
    names = _names_from_rules()
    if agency_id in names:
        return names[agency_id]
    text = str(agency_id).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _names_from_rules() -> dict[str, str]:
    """Agency display names from the bundled routing rules, if that file has an agency table."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python < 3.11
        return {}
    root = Path(__file__).resolve().parents[1]
    for path in (root / "routing.toml", root / "triage" / "routing.toml"):
        if not path.exists():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        table = data.get("agencies") or {}
        out: dict[str, str] = {}
        if isinstance(table, Mapping):
            for key, val in table.items():
                if isinstance(val, Mapping) and val.get("name"):
                    out[str(key)] = str(val["name"])
                elif isinstance(val, str):
                    out[str(key)] = val
        elif isinstance(table, list):
            for val in table:
                if isinstance(val, Mapping) and val.get("id") and val.get("name"):
                    out[str(val["id"])] = str(val["name"])
        return out
    return {}


def routing_for(cluster: Mapping[str, Any], agency: str) -> tuple[str, list[dict]]:
    """The agency id the cluster was routed to that matches ``agency`` (id or name, any case), and the
    routing entries (rule and reason) for that agency only.

    Raises
    ------
    NotRoutedError
        When the cluster was not routed to that agency.

    >>> c = {"cluster_id": "C1", "agencies": ["politie"], "routing": [{"agency": "politie", "rule": "r", "reason": "x"}]}
    >>> routing_for(c, "Politie")
    ('politie', [{'agency': 'politie', 'rule': 'r', 'reason': 'x'}])
    >>> routing_for(c, "fiod")
    Traceback (most recent call last):
    linkage.report.dossier.NotRoutedError: Cluster C1 was not routed to 'fiod' (it was routed to: politie). ...
    """
    routing = [r for r in _as_list(cluster.get("routing")) if isinstance(r, Mapping)]
    agencies = [str(a) for a in _as_list(cluster.get("agencies"))]
    for r in routing:
        if r.get("agency") and str(r["agency"]) not in agencies:
            agencies.append(str(r["agency"]))
    key = _norm(agency)
    match = None
    for a in agencies:
        names = {_norm(a), _norm(agency_name(a, routing))}
        if key in names:
            match = a
            break
    cid = cluster.get("cluster_id")
    if match is None:
        if agencies:
            raise NotRoutedError(
                f"Cluster {cid} was not routed to '{agency}' (it was routed to: {', '.join(agencies)}). "
                "A dossier only goes to an agency the cluster was routed to; see: linkage cluster " + str(cid))
        raise NotRoutedError(f"Cluster {cid} was not routed to any agency, so there is nobody to hand it over to; "
                             f"see: linkage cluster {cid}")
    entries = [dict(r) for r in routing if _norm(r.get("agency")) == _norm(match)]
    return match, entries


# --- pseudonyms -----------------------------------------------------------------------------------
def reporter_key(store) -> bytes:
    """The secret behind reporter pseudonyms: ``$LINKAGE_PSEUDONYM_KEY`` when set, else a random key kept in
    the store's meta table (created on first use), so pseudonyms are stable within one store."""
    try:
        from linkage.pseudonym import key_from_env
    except ImportError:  # pragma: no cover
        key_from_env = lambda: os.environ.get("LINKAGE_PSEUDONYM_KEY", "").encode() or None  # noqa: E731
    env = key_from_env()
    if env:
        return env
    value = store.get_meta(META_KEY)
    if not value:
        value = secrets.token_hex(32)
        store.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (META_KEY, value))
        value = store.get_meta(META_KEY)
    return value.encode("utf-8")


def reporter_pseudonym(reporter_id: Any, agency: str, key: bytes) -> str:
    """``melder-`` + 8 hex of HMAC-SHA256(key, agency + reporter id); ``anoniem`` without a reporter id.

    The same reporter gets the same pseudonym in every dossier for one agency, a different one for
    another agency, and the id cannot be recovered without the key.

    >>> p = reporter_pseudonym("RPT-1", "politie", b"k"); p.startswith("melder-") and len(p) == 15
    True
    >>> p == reporter_pseudonym("RPT-1", "fiod", b"k"), reporter_pseudonym(None, "politie", b"k")
    (False, 'anoniem')
    """
    if reporter_id is None or str(reporter_id).strip() == "" or reporter_id != reporter_id:
        return "anoniem"
    msg = f"{str(agency).strip().lower()}\x1f{str(reporter_id).strip()}".encode("utf-8")
    return "melder-" + hmac.new(key, msg, hashlib.sha256).hexdigest()[:8]


# --- formatting -----------------------------------------------------------------------------------
def _date(value: Any) -> Optional[dt.date]:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except (TypeError, ValueError):
        return None


def long_date(value: Any) -> str:
    """``10 januari 2025`` (the text itself when it is not a date).

    >>> long_date("2025-01-10T09:00:00")
    '10 januari 2025'
    """
    d = _date(value)
    return f"{d.day} {_MONTHS[d.month - 1]} {d.year}" if d else str(value or "")


def short_date(value: Any) -> str:
    """``10-01-2025`` (Dutch order).

    >>> short_date("2025-01-10")
    '10-01-2025'
    """
    d = _date(value)
    return d.strftime("%d-%m-%Y") if d else str(value or "")


def _num(value: Any, digits: int = 2) -> str:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value if value is not None else "")
    if f == int(f):
        return str(int(f))
    return f"{f:.{digits}f}".rstrip("0").rstrip(".").replace(".", ",")


def _category(value: Any) -> str:
    return str(value or "").replace("_", " ")


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def linkage_version() -> str:
    """The installed linkage version, or the one in pyproject.toml, or ``onbekend``."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("linkage")
    except Exception:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib

        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except Exception:
        return "onbekend"


# --- assembling -----------------------------------------------------------------------------------
def dossier_data(store, cluster_id: str, agency: str, now: Optional[dt.datetime] = None) -> dict[str, Any]:
    """Everything a dossier shows, already reduced to what this agency may see.

    Raises
    ------
    NotFoundError
        When the cluster is not in the store.
    NotRoutedError
        When the cluster was not routed to ``agency``.
    """
    detail = pictures.cluster_data(store, cluster_id)
    cluster = detail["cluster"]
    agency_id, routing = routing_for(cluster, agency)
    all_routing = [r for r in _as_list(cluster.get("routing")) if isinstance(r, Mapping)]
    others = [a for a in dict.fromkeys(str(a) for a in _as_list(cluster.get("agencies")))
              if _norm(a) != _norm(agency_id)]
    key = reporter_key(store)
    now = (now or dt.datetime.now().astimezone())

    numbers: dict[str, str] = {}
    reports = []
    for i, r in enumerate(detail["reports"], start=1):
        ref = f"M{i}"
        numbers[str(r["report_id"])] = ref
        rid = r.get("reporter_id")
        pseudo = reporter_pseudonym(rid, agency_id, key)
        description = str(r.get("description") or "")
        if rid and str(rid).strip():
            description = description.replace(str(rid).strip(), pseudo)
        rtype = r.get("reporter_type") or ("anoniem" if pseudo == "anoniem" else "")
        reports.append({"ref": ref, "report_id": str(r["report_id"]), "received_at": r.get("received_at"),
                        "category": r.get("category"), "reporter": pseudo, "reporter_type": rtype,
                        "description": description, "mentions": []})
    by_ref = {rep["ref"]: rep for rep in reports}
    entity_refs: dict[str, list[str]] = {}
    entity_roles: dict[str, set[str]] = {}
    for m in detail.get("mentions", []):
        ref = numbers.get(str(m["report_id"]))
        if ref is None:
            continue
        entity_refs.setdefault(str(m["entity_id"]), []).append(ref)
        for role in str(m.get("roles") or "").split(","):
            if role.strip():
                entity_roles.setdefault(str(m["entity_id"]), set()).add(role.strip())
    entities = []
    labels = {}
    for e in detail["entities"]:
        eid = str(e["entity_id"])
        labels[eid] = str(e.get("label") or eid)
        refs = sorted(set(entity_refs.get(eid, [])), key=lambda s: int(s[1:]))
        entities.append({"entity_id": eid, "type": e.get("entity_type"), "label": labels[eid],
                         "roles": sorted(entity_roles.get(eid, set())), "refs": refs})
        for ref in refs:
            by_ref[ref]["mentions"].append((e.get("entity_type"), labels[eid]))
    # What connects the reports comes first: most reports, then by type and name.
    entities.sort(key=lambda e: (-len(e["refs"]), _TYPE_ORDER.index(e["type"]) if e["type"] in _TYPE_ORDER else 99,
                                 e["label"].lower()))
    links: dict[tuple[str, str, str], set[str]] = {}
    for l in detail.get("link_reports", []):
        ref = numbers.get(str(l["report_id"]))
        if ref and str(l["src"]) in labels and str(l["dst"]) in labels and l["src"] != l["dst"]:
            links.setdefault((str(l["src"]), str(l["rel_type"]), str(l["dst"])), set()).add(ref)
    link_rows = [{"src": labels[s], "src_type": _etype(detail, s), "rel": pictures.rel_name(rel, "nl"),
                  "dst": labels[d], "dst_type": _etype(detail, d), "refs": sorted(refs, key=lambda x: int(x[1:]))}
                 for (s, rel, d), refs in links.items()]
    link_rows.sort(key=lambda r: (r["src"].lower(), r["rel"], r["dst"].lower()))

    graph = pictures.cluster_graph(detail, report_labels=numbers)
    n_nodes = graph.number_of_nodes()
    svg = pictures.cluster_svg(graph, pictures.layout(graph), lang="nl", width=1000 if n_nodes <= 120 else 1300,
                               aspect=0.72 if n_nodes <= 60 else 0.95, label_reports=True)
    dates = [d for d in (_date(r["received_at"]) for r in reports) if d]
    reporters = sorted({r["reporter"] for r in reports if r["reporter"] != "anoniem"})
    signals = [s for s in _as_list(cluster.get("signals")) if isinstance(s, Mapping)]
    return {
        "cluster_id": str(cluster["cluster_id"]),
        "agency": agency_id,
        "agency_name": agency_name(agency_id, all_routing),
        "other_agencies": [agency_name(a, all_routing) for a in others],
        "rank": cluster.get("rank"),
        "score": cluster.get("score"),
        "reason": cluster.get("reason") or "",
        "categories": [str(c) for c in _as_list(cluster.get("categories"))],
        "n_reporters": cluster.get("n_reporters"),
        "routing": routing,
        "signals": [dict(s) for s in signals],
        "reports": reports,
        "entities": entities,
        "links": link_rows,
        "svg": svg,
        "first": min(dates) if dates else None,
        "last": max(dates) if dates else None,
        "reporters": reporters,
        "anonymous": sum(1 for r in reports if r["reporter"] == "anoniem"),
        "generated_at": now,
        "version": linkage_version(),
    }


def _etype(detail: Mapping[str, Any], entity_id: str) -> str:
    for e in detail["entities"]:
        if str(e["entity_id"]) == entity_id:
            return str(e.get("entity_type") or "")
    return ""


# --- rendering ------------------------------------------------------------------------------------
_CSS = """
@page{size:A4;margin:14mm 13mm 16mm 13mm}
*{box-sizing:border-box}
body{margin:0;font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;font-size:14px;line-height:1.5;
 color:#1f2328;background:#fff}
.page{max-width:1000px;margin:0 auto;padding:0 28px 28px}
.conf{background:#8b1a1a;color:#fff;text-align:center;font-weight:700;letter-spacing:.12em;font-size:12px;padding:6px;
 -webkit-print-color-adjust:exact;print-color-adjust:exact}
header{padding:22px 0 8px;border-bottom:3px solid #1f3a5f;margin-bottom:8px}
h1{font-size:28px;margin:0;color:#1f3a5f;letter-spacing:-.01em}
.sub{margin:4px 0 0;color:#444;font-size:15px}
.facts{display:grid;grid-template-columns:repeat(5,1fr);gap:8px;margin:18px 0 6px}
.fact{background:#f3f5f8;border-radius:6px;padding:8px 10px;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.fact b{display:block;font-size:19px;color:#1f3a5f;line-height:1.2}
.fact span{font-size:11.5px;color:#555;text-transform:uppercase;letter-spacing:.04em}
h2{font-size:19px;color:#1f3a5f;margin:26px 0 8px;padding-bottom:4px;border-bottom:1px solid #d0d7de;break-after:avoid}
h3{font-size:15px;margin:16px 0 6px;color:#333;break-after:avoid}
p{margin:6px 0}
.lead{font-size:16px;font-weight:600;color:#1f2328}
ul.lead{margin:6px 0 8px;padding-left:22px} ul.lead li{margin:2px 0}
.note{background:#fff8e6;border-left:4px solid #e0a800;padding:8px 12px;margin:12px 0;font-size:13px;
 -webkit-print-color-adjust:exact;print-color-adjust:exact}
.route{border:1px solid #d0d7de;border-left:5px solid #1f3a5f;border-radius:4px;padding:8px 12px;margin:8px 0}
.route .rule{color:#666;font-size:12px}
table{width:100%;border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th{text-align:left;background:#eef1f5;color:#333;font-weight:600;padding:6px 8px;border-bottom:1px solid #c8d0d9;
 -webkit-print-color-adjust:exact;print-color-adjust:exact}
td{padding:6px 8px;border-bottom:1px solid #e4e8ec;vertical-align:top}
tr{break-inside:avoid}
td.ref,th.ref{white-space:nowrap;width:1%;font-weight:600;color:#1f3a5f}
.rid{font-weight:400;font-size:11px;color:#666}
td.nowrap{white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:6px;vertical-align:baseline;
 -webkit-print-color-adjust:exact;print-color-adjust:exact}
.tag{display:inline-block;background:#f0f2f5;border-radius:10px;padding:0 8px;margin:1px 3px 1px 0;font-size:12px;
 white-space:nowrap;-webkit-print-color-adjust:exact;print-color-adjust:exact}
.muted{color:#666}
figure{margin:8px 0;break-inside:avoid}
figure svg{border:1px solid #d0d7de;border-radius:6px;max-height:900px}
figcaption{font-size:12.5px;color:#555;margin-top:4px}
footer{margin-top:30px;padding-top:10px;border-top:3px solid #1f3a5f;font-size:12px;color:#444}
footer p{margin:4px 0}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _dot(entity_type: str) -> str:
    return f'<span class="dot" style="background:{pictures.COLOURS.get(entity_type, "#999")}"></span>'


def render_dossier(data: Mapping[str, Any]) -> str:
    """The dossier page as one HTML string (inline CSS and SVG; no scripts, no external resources)."""
    d = data
    agency = _e(d["agency_name"])
    now: dt.datetime = d["generated_at"]
    stamp = f"{now.day} {_MONTHS[now.month - 1]} {now.year}, {now:%H:%M}"
    kenmerk = f"D-{d['cluster_id']}-{re.sub(r'[^A-Za-z0-9]+', '', str(d['agency'])).upper()}-{now:%Y%m%d}"
    n_rep = len(d["reports"])
    period = (f"{long_date(d['first'])} – {long_date(d['last'])}" if d["first"] and d["last"] and d["first"] != d["last"]
              else long_date(d["first"]) if d["first"] else "onbekend")
    type_counts: dict[str, int] = {}
    for e in d["entities"]:
        type_counts[e["type"]] = type_counts.get(e["type"], 0) + 1
    entity_text = ", ".join(_count(n, _TYPE_SINGULAR.get(t, t), _TYPE_PLURAL.get(t, t))
                            for t, n in sorted(type_counts.items(),
                                               key=lambda kv: _TYPE_ORDER.index(kv[0]) if kv[0] in _TYPE_ORDER else 99))
    n_known = len(d["reporters"])
    reporters_text = _count(n_known, "bekende melder", "bekende melders")
    if d["anonymous"]:
        reporters_text += f" en {_count(d['anonymous'], 'anonieme melding', 'anonieme meldingen')}"
    categories = ", ".join(_category(c) for c in d["categories"]) or "—"
    reasons = [r.strip() for r in str(d["reason"] or "").split("; ") if r.strip()]
    if len(reasons) > 1:
        lead = ('<p class="muted">Waarom dit cluster opvalt:</p><ul class="lead">'
                + "".join(f"<li>{_e(r.rstrip('.'))}.</li>" for r in reasons) + "</ul>")
    else:
        lead = f'<p class="lead">{_e(reasons[0] if reasons else "")}</p>'
    connectors = [e for e in d["entities"] if len(e["refs"]) >= 2][:4]
    connect_text = ""
    if connectors:
        connect_text = " Wat de meldingen het meest verbindt: " + "; ".join(
            f"<b>{_e(e['label'])}</b> ({_e(_TYPE_SINGULAR.get(e['type'], e['type']))}, in {len(e['refs'])} meldingen)"
            for e in connectors) + "."

    out = [f"""<!DOCTYPE html>
<html lang="nl"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Overdrachtsdossier cluster {_e(d['cluster_id'])} – {agency}</title>
<style>{_CSS}</style></head>
<body>
<div class="conf">VERTROUWELIJK · UITSLUITEND VOOR {agency.upper()}</div>
<div class="page">
<header>
<h1>Overdrachtsdossier</h1>
<p class="sub">Cluster <b>{_e(d['cluster_id'])}</b> · voor <b>{agency}</b> · opgesteld op {_e(stamp)} · kenmerk {_e(kenmerk)}</p>
<div class="facts">
<div class="fact"><b>{n_rep}</b><span>meldingen</span></div>
<div class="fact"><b>{n_known}</b><span>bekende melders{' · ' + str(d['anonymous']) + ' anoniem' if d['anonymous'] else ''}</span></div>
<div class="fact"><b>{len(d['entities'])}</b><span>betrokken entiteiten</span></div>
<div class="fact"><b>{_e(short_date(d['first']) if d['first'] else '—')}</b><span>eerste melding</span></div>
<div class="fact"><b>{_e(short_date(d['last']) if d['last'] else '—')}</b><span>laatste melding</span></div>
</div>
</header>

<h2>1. Samenvatting</h2>
{lead}
<p>Dit dossier bundelt <b>{n_rep} meldingen</b> ({_e(categories)}), ontvangen van {_e(period)}. De meldingen zijn met
elkaar verbonden doordat ze dezelfde personen, adressen, bedrijven, voertuigen, telefoonnummers of
bankrekeningen noemen: samen gaat het om {_e(entity_text) or 'geen entiteiten'}.{connect_text} Ze komen van
{_e(reporters_text)}.{' Het cluster staat op plaats ' + _e(d['rank']) + ' van de prioriteitenlijst (score ' + _e(_num(d['score'])) + ').' if d['rank'] is not None else ''}</p>
<div class="note"><b>Let op bij het lezen.</b> Meldingen zijn signalen, geen vastgestelde feiten ("zachte informatie"):
ze zijn niet geverifieerd. Welke meldingen over dezelfde persoon, hetzelfde adres of bedrijf gaan, is
automatisch bepaald en kan fouten bevatten; controleer dit in de eigen bronnen voordat u handelt.
Melders zijn afgeschermd: u ziet alleen een pseudoniem dat begint met <i>melder-</i>; dezelfde
melder heeft in uw dossiers steeds hetzelfde pseudoniem. Verwijzingen als <b>M3</b> zijn meldingen in
hoofdstuk 4.</div>

<h2>2. Waarom naar deze instantie</h2>
"""]
    for r in d["routing"] or [{"reason": "Doorgezet volgens de routeringsregels.", "rule": ""}]:
        rule = f'<div class="rule">routeringsregel: {_e(r.get("rule"))}</div>' if r.get("rule") else ""
        out.append(f'<div class="route">{_e(r.get("reason") or "Doorgezet volgens de routeringsregels.")}{rule}</div>')
    if d["other_agencies"]:
        out.append(f"<p>Dit cluster is ook doorgezet naar: <b>{_e(', '.join(d['other_agencies']))}</b>. Stem het vervolg "
                   "met hen af; bij een aanpak met meerdere partners kan het RIEC coördineren.</p>")

    out.append("<h2>3. Signalen</h2>")
    fired = [s for s in d["signals"] if _weighted(s) > 0]
    if fired:
        quiet = len(d["signals"]) - len(fired)
        out.append("<p>Waarom dit cluster opvalt: de signalen die de prioriteit bepalen, sterkste eerst"
                   + ((" (1 signaal dat niet bijdraagt is weggelaten)" if quiet == 1 else
                       f" ({quiet} signalen die niet bijdragen zijn weggelaten)") if quiet else "") + ".</p>")
        has_points = any(s.get("points") is not None for s in fired)
        out.append('<table><thead><tr><th>Signaal</th><th class="num">Waarde</th><th class="num">Gewicht</th>'
                   + ('<th class="num">Punten</th>' if has_points else "") + "</tr></thead><tbody>")
        signals = sorted(fired, key=lambda s: -_weighted(s))
        for s in signals:
            name = _e(str(s.get("name") or "").replace("_", " "))
            sentence = _e(s.get("sentence") or "")
            points = f'<td class="num">{_e(_num(s.get("points"), 1))}</td>' if has_points else ""
            out.append(f"<tr><td>{sentence or name}{'<div class=muted>' + name + '</div>' if sentence else ''}</td>"
                       f'<td class="num">{_e(_num(s.get("value")))}</td><td class="num">{_e(_num(s.get("weight")))}</td>'
                       f"{points}</tr>")
        out.append("</tbody></table>")
    else:
        out.append('<p class="muted">Geen signalen vastgelegd.</p>')

    out.append(f"""<h2>4. Meldingen in tijdsvolgorde</h2>
<p>Alle {n_rep} meldingen van dit cluster, oudste eerst, met hun kenmerk bij de gemeente en de entiteiten die
ze noemen.</p>
<table><thead><tr><th class="ref">Nr.</th><th>Datum</th><th>Categorie</th><th>Melder</th><th>Omschrijving</th><th>Genoemd</th></tr></thead><tbody>""")
    for r in d["reports"]:
        who = _e(r["reporter"])
        rtype = _REPORTER_TYPES.get(str(r["reporter_type"]), str(r["reporter_type"] or ""))
        if rtype and r["reporter"] != "anoniem":
            who += f'<div class="muted">{_e(rtype)}</div>'
        mentioned = "".join(f'<span class="tag">{_dot(t)}{_e(pictures.shorten(label, 34))}</span>'
                            for t, label in r["mentions"]) or '<span class="muted">—</span>'
        out.append(f'<tr><td class="ref">{_e(r["ref"])}<div class="rid">{_e(r["report_id"])}</div></td><td class="nowrap">{_e(short_date(r["received_at"]))}</td>'
                   f'<td>{_e(_category(r["category"]))}</td><td class="nowrap">{who}</td>'
                   f'<td>{_e(r["description"]) or "<span class=muted>—</span>"}</td><td>{mentioned}</td></tr>')
    out.append("</tbody></table>")

    out.append(f"""<h2>5. Betrokken entiteiten en verbanden</h2>
<figure>{d['svg']}
<figcaption>Het netwerk van dit cluster. Grijze vierkanten zijn meldingen (M1 = oudste), gekleurde cirkels de
personen, adressen, bedrijven en andere entiteiten die ze noemen; hoe groter de cirkel, hoe meer meldingen de
entiteit noemen. Dunne grijze lijnen: de melding noemt de entiteit. Donkere lijnen: een verband dat in een
melding staat (bijvoorbeeld "woont op").</figcaption></figure>
<h3>Entiteiten</h3>
<p>Alle personen, adressen, bedrijven en andere entiteiten die de meldingen noemen; wat in de meeste meldingen
voorkomt staat bovenaan. Schrijfwijzen die naar dezelfde entiteit wijzen zijn samengevoegd.</p>
<table><thead><tr><th>Entiteit</th><th>Soort</th><th>Rol in de meldingen</th><th>Genoemd in</th></tr></thead><tbody>""")
    for e in d["entities"]:
        roles = _e(", ".join(e["roles"])) if e["roles"] else '<span class="muted">—</span>'
        out.append(f'<tr><td>{_dot(e["type"])}{_e(e["label"])}</td><td>{_e(_TYPE_SINGULAR.get(e["type"], e["type"]))}</td>'
                   f'<td>{roles}</td><td>{_e(", ".join(e["refs"]))}</td></tr>')
    out.append("</tbody></table>")
    out.append("<h3>Verbanden genoemd in de meldingen</h3>")
    if d["links"]:
        out.append("<table><thead><tr><th>Van</th><th>Verband</th><th>Naar</th><th>Genoemd in</th></tr></thead><tbody>")
        for l in d["links"]:
            out.append(f'<tr><td>{_dot(l["src_type"])}{_e(l["src"])}</td><td><i>{_e(l["rel"])}</i></td>'
                       f'<td>{_dot(l["dst_type"])}{_e(l["dst"])}</td><td>{_e(", ".join(l["refs"]))}</td></tr>')
        out.append("</tbody></table>")
    else:
        out.append('<p class="muted">De meldingen noemen geen directe verbanden tussen entiteiten; ze zijn alleen '
                   "verbonden doordat ze dezelfde entiteiten noemen.</p>")

    out.append(f"""<footer>
<p><b>VERTROUWELIJK.</b> Dit dossier bevat persoonsgegevens en valt onder de AVG. Doelbinding: het is uitsluitend
verstrekt aan {agency} voor de beoordeling en eventuele opvolging van de hierin beschreven signalen binnen de eigen
wettelijke taak. Niet verder verstrekken en niet voor een ander doel gebruiken; vernietigen zodra het voor dat doel
niet meer nodig is. Het bevat alleen dit cluster; de identiteit van melders blijft bij de gemeente.</p>
<p class="muted">Kenmerk {_e(kenmerk)} · opgesteld op {_e(stamp)} met linkage {_e(d['version'])} · de verstrekking is
vastgelegd in het verwerkingslogboek.</p>
</footer>
</div></body></html>
""")
    return "".join(out)


def _weighted(signal: Mapping[str, Any]) -> float:
    """A signal's contribution: its ``points`` when the scorer gave them, else value x weight."""
    try:
        if signal.get("points") is not None:
            return float(signal["points"])
        return float(signal.get("value") or 0) * float(signal.get("weight") or 1)
    except (TypeError, ValueError):
        return 0.0


# --- PDF ------------------------------------------------------------------------------------------
def find_chromium() -> Optional[str]:
    """The headless Chromium to print PDFs with: ``$LINKAGE_CHROMIUM`` or the first on PATH, else None."""
    env = os.environ.get(CHROMIUM_ENV)
    if env:
        return shutil.which(env) or (env if Path(env).exists() else None)
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(binary: str, user_dir: str) -> list[str]:
    """Flags for an offline, quiet headless Chromium (no sandbox in containers, no network services)."""
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", f"--user-data-dir={user_dir}"]


def html_to_pdf(html_path: Path, pdf_path: Path, timeout: float = 120) -> tuple[Optional[Path], str]:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium; returns (pdf path or None, a note why not)."""
    binary = find_chromium()
    if binary is None:
        return None, "no PDF: chromium is not installed (apt-get install chromium)"
    with tempfile.TemporaryDirectory(prefix="linkage-chromium-") as user_dir:
        cmd = chromium_command(binary, user_dir) + [
            "--no-pdf-header-footer", "--print-to-pdf-no-header", f"--print-to-pdf={pdf_path}",
            Path(html_path).resolve().as_uri()]
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"no PDF: chromium failed ({type(exc).__name__})"
    if pdf_path.exists() and pdf_path.stat().st_size > 0:
        return pdf_path, "PDF written with headless chromium"
    return None, "no PDF: chromium did not produce one"


# --- the entry point ------------------------------------------------------------------------------
def dossier_name(cluster_id: str, agency: str) -> str:
    """File stem for a dossier: ``dossier-C1-politie`` (unsafe characters replaced).

    >>> dossier_name("c_1/2", "Gemeente Woonfraude")
    'dossier-c_1-2-gemeente-woonfraude'
    """
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.]+", "-", str(s)).strip("-").lower() or "x"  # noqa: E731
    return f"dossier-{safe(cluster_id)}-{safe(agency)}"


def write_dossier(store, cluster_id: str, agency: str, out_dir: Path | str, actor: Optional[str] = None,
                  pdf: Optional[bool] = None, now: Optional[dt.datetime] = None) -> DossierResult:
    """Write the hand-over dossier of one cluster for one agency it was routed to, and audit it.

    Parameters
    ----------
    store:
        An open :class:`~linkage.store.EmbeddedStore`.
    cluster_id:
        A cluster id from ``linkage clusters``.
    agency:
        The agency id or name, as in the cluster's routing (any case).
    out_dir:
        Folder for ``dossier-<cluster>-<agency>.html`` (and ``.pdf``); created when missing.
    actor:
        Who hands it over, for the audit log (default ``$LINKAGE_USER`` or the OS user).
    pdf:
        True/False to force; None (default) writes a PDF when headless Chromium is installed.
    now:
        The generation time shown in the dossier (default: now).

    Returns
    -------
    DossierResult
        The HTML path (``os.fspath(result)``), the PDF path or None with a note, and counts.

    Raises
    ------
    NotFoundError
        When the cluster is not in the store.
    NotRoutedError
        When the cluster was not routed to ``agency`` (the refusal is audited too).
    """
    try:
        data = dossier_data(store, cluster_id, agency, now=now)
    except NotRoutedError:
        _audit(store, {"cluster_id": cluster_id, "agency": agency, "outcome": "refused:not_routed"}, actor)
        raise
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = dossier_name(data["cluster_id"], data["agency"])
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(render_dossier(data), encoding="utf-8")
    pdf_path, note = None, "no PDF: not asked for"
    if pdf is None or pdf:
        pdf_path, note = html_to_pdf(html_path, out_dir / f"{stem}.pdf")
    result = DossierResult(html=html_path, pdf=pdf_path, pdf_note=note, cluster_id=data["cluster_id"],
                           agency=data["agency"], reports=len(data["reports"]), entities=len(data["entities"]),
                           reporters=list(data["reporters"]))
    _audit(store, {"cluster_id": data["cluster_id"], "agency": data["agency"], "reports": result.reports,
                   "entities": result.entities, "report_ids": [r["report_id"] for r in data["reports"]],
                   "pdf": pdf_path is not None, "file": html_path.name}, actor)
    return result


def _audit(store, touched: dict, actor: Optional[str]) -> None:
    try:
        from linkage.audit import record
    except ImportError:  # pragma: no cover - the audit module ships with linkage
        return
    record(store, "dossier", touched, actor=actor)
