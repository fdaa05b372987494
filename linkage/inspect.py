"""Reading results back: cluster lists, one cluster in detail, one entity, and the CSV export.

In:  an :class:`~linkage.store.EmbeddedStore` after ``linkage run``.
Out: DataFrames and plain dicts (JSON-ready) for the CLI, notebooks and dossiers; text renderings;
     CSV files whose cells cannot execute as spreadsheet formulas.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from linkage.errors import NotFoundError
from linkage.pipeline import _as_list, cluster_record
from linkage.store import EmbeddedStore


def _none(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and v != v) else v


def list_clusters(store: EmbeddedStore, agency: str | None = None, min_score: float | None = None,
                  limit: int | None = None) -> pd.DataFrame:
    """Clusters ranked by score; ``agency`` matches an agency id or name, case-insensitively."""
    df = store.clusters()
    if min_score is not None:
        df = df[df["score"] >= min_score]
    if agency:
        key = agency.strip().lower()
        df = df[df["agencies"].map(lambda a: any(key == str(x).lower() or key in str(x).lower() for x in _as_list(a)))]
    if limit:
        df = df.head(limit)
    return df.reset_index(drop=True)


def _require_cluster(store: EmbeddedStore, cluster_id: str) -> dict:
    row = store.frame("SELECT * FROM clusters WHERE cluster_id = ?", (cluster_id,))
    if row.empty:
        raise NotFoundError(f"No cluster '{cluster_id}' in {store.path}. List them with: linkage clusters")
    return cluster_record(row.iloc[0].to_dict())


def cluster_detail(store: EmbeddedStore, cluster_id: str, with_history: bool = False) -> dict[str, Any]:
    """Everything about one cluster: its row, reports in time order, entities, stated links, history.

    Raises
    ------
    NotFoundError
        When the id is not a cluster in this store.
    """
    info = _require_cluster(store, cluster_id)
    reports = store.frame(
        "SELECT r.report_id, r.received_at, r.category, r.reporter_type, "
        "CASE WHEN r.reporter_id IS NULL THEN NULL ELSE r.reporter_id END AS reporter_id, r.description "
        "FROM report_clusters rc JOIN reports r USING (report_id) WHERE rc.cluster_id = ? "
        "ORDER BY r.received_at, r.report_id", (cluster_id,))
    entities = store.frame(
        "SELECT e.entity_id, e.entity_type, e.label, COUNT(DISTINCT m.report_id) AS reports_in_cluster, "
        "GROUP_CONCAT(DISTINCT m.role) AS roles "
        "FROM report_clusters rc JOIN mentions m ON m.report_id = rc.report_id "
        "JOIN mention_entities me ON me.mention_id = m.mention_id JOIN entities e ON e.entity_id = me.entity_id "
        "WHERE rc.cluster_id = ? GROUP BY e.entity_id ORDER BY reports_in_cluster DESC, e.entity_type, e.entity_id",
        (cluster_id,))
    links = store.frame(
        "SELECT DISTINCT ea.entity_id AS src, ea.entity_type AS src_type, l.rel_type, eb.entity_id AS dst, "
        "eb.entity_type AS dst_type FROM report_clusters rc JOIN mention_links l ON l.report_id = rc.report_id "
        "JOIN mention_entities ea ON ea.mention_id = l.src_mention_id "
        "JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id WHERE rc.cluster_id = ? "
        "ORDER BY src, rel_type, dst", (cluster_id,))
    detail: dict[str, Any] = {
        "cluster": info,
        "reports": [{k: _none(v) for k, v in r.items()} for r in reports.to_dict("records")],
        "entities": [{k: _none(v) for k, v in r.items()} for r in entities.to_dict("records")],
        "links": links.to_dict("records"),
    }
    if with_history:
        try:
            hist = store.frame("SELECT at, run_id, event, related_ids FROM cluster_history WHERE cluster_id = ? "
                               "ORDER BY id", (cluster_id,))
            detail["history"] = [{**r, "related_ids": _as_list(r["related_ids"])} for r in hist.to_dict("records")]
        except Exception:  # table appears with the lifecycle module
            detail["history"] = []
    return detail


def render_cluster_text(detail: dict[str, Any], max_entities: int = 30) -> str:
    """A plain-text page about one cluster, with a sketch of who is linked to what."""
    c = detail["cluster"]
    lines = [
        f"Cluster {c['cluster_id']}  rank {c.get('rank')}  score {c.get('score', 0):.2f}",
        f"  {c.get('n_reports')} reports, {c.get('n_reporters', 0):g} independent reporters; "
        f"categories: {', '.join(_as_list(c.get('categories')))}",
        f"  reason: {c.get('reason') or '-'}",
        "",
        "Routing:",
    ]
    routing = c.get("routing")
    routing = routing if isinstance(routing, list) else _as_list(routing) if isinstance(routing, str) else []
    if routing:
        for r in routing:
            if isinstance(r, dict):
                lines.append(f"  -> {r.get('agency')}  (rule '{r.get('rule')}': {r.get('reason', '')})")
    else:
        lines.append(f"  unrouted: {c.get('unrouted_reason') or 'no rule matched'}")
    lines += ["", "Signals:"]
    signals = c.get("signals") or []
    for s in signals if isinstance(signals, list) else []:
        if isinstance(s, dict):
            lines.append(f"  {s.get('name')}: {s.get('value')}  - {s.get('sentence', '')}")
    lines += ["", "Reports (oldest first):"]
    for r in detail["reports"]:
        who = r.get("reporter_id") or "anoniem"
        lines.append(f"  {str(r['received_at'])[:10]}  {r['report_id']}  {r['category']:<22} reporter {who}")
    lines += ["", "Entities:"]
    labels = {}
    for e in detail["entities"][:max_entities]:
        labels[e["entity_id"]] = e["label"]
        lines.append(f"  {e['entity_type']:<12} {e['label']}  [{e['entity_id']}] in {e['reports_in_cluster']} report(s)")
    if len(detail["entities"]) > max_entities:
        lines.append(f"  ... and {len(detail['entities']) - max_entities} more")
    if detail["links"]:
        lines += ["", "Links stated in the reports:"]
        for l in detail["links"][:60]:
            lines.append(f"  {labels.get(l['src'], l['src'])} --{l['rel_type']}--> {labels.get(l['dst'], l['dst'])}")
    if "history" in detail:
        lines += ["", "History:"]
        for h in detail["history"] or [{"at": "-", "event": "no changes recorded", "related_ids": []}]:
            rel = ", ".join(h.get("related_ids") or [])
            lines.append(f"  {h['at']}  {h['event']}{'  (' + rel + ')' if rel else ''}")
    return "\n".join(lines)


def entity_detail(store: EmbeddedStore, entity_id: str) -> dict[str, Any]:
    """One entity with the mentions it was made of, their reports and clusters.

    Raises
    ------
    NotFoundError
        When the id is not an entity in this store.
    """
    ent = store.frame("SELECT entity_id, entity_type, label, n_mentions, attributes FROM entities WHERE entity_id = ?",
                      (entity_id,))
    if ent.empty:
        raise NotFoundError(f"No entity '{entity_id}' in {store.path}. Entity ids appear in 'linkage cluster ID'.")
    info = {k: _none(v) for k, v in ent.iloc[0].to_dict().items()}
    if isinstance(info.get("attributes"), str):
        try:
            info["attributes"] = json.loads(info["attributes"])
        except json.JSONDecodeError:
            pass
    mentions = store.frame(
        "SELECT m.*, r.received_at, r.category, rc.cluster_id FROM mention_entities me "
        "JOIN mentions m USING (mention_id) JOIN reports r ON r.report_id = m.report_id "
        "LEFT JOIN report_clusters rc ON rc.report_id = m.report_id WHERE me.entity_id = ? ORDER BY m.mention_id",
        (entity_id,))
    keep = [c for c in mentions.columns if c not in ("content_hash", "source_file", "source_row")]
    rows = [{k: _none(v) for k, v in r.items() if _none(v) is not None} for r in mentions[keep].to_dict("records")]
    return {"entity": info, "mentions": rows,
            "clusters": sorted({r["cluster_id"] for r in rows if r.get("cluster_id")})}


def render_entity_text(detail: dict[str, Any]) -> str:
    e = detail["entity"]
    lines = [f"Entity {e['entity_id']} ({e['entity_type']}): {e.get('label')}",
             f"  made of {len(detail['mentions'])} mention(s); clusters: {', '.join(detail['clusters']) or '-'}", "",
             "Mentions:"]
    skip = {"mention_id", "report_id", "entity_type", "received_at", "category", "cluster_id", "warnings",
            "parent_mention_id"}
    for m in detail["mentions"]:
        fields = ", ".join(f"{k}={v}" for k, v in m.items() if k not in skip and not k.endswith("_norm"))
        lines.append(f"  {m['mention_id']}  report {m['report_id']} ({str(m.get('received_at'))[:10]}, {m.get('category')}): {fields}")
    return "\n".join(lines)


# --- export ---------------------------------------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: Any) -> Any:
    """Neutralise a spreadsheet formula: a text cell starting with = + - @ (or tab/CR) gets a leading '.

    >>> escape_cell("=HYPERLINK(1)"), escape_cell("-5"), escape_cell("Jan"), escape_cell(3)
    ("'=HYPERLINK(1)", "'-5", 'Jan', 3)
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _write_csv(path: Path, header: list[str], rows: Iterable[Iterable[Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow([escape_cell(_none(v)) if _none(v) is not None else "" for v in row])
            n += 1
    return n


def export_csv(store: EmbeddedStore, out_dir: Path) -> dict[str, int]:
    """Write entities.csv, clusters.csv and report_clusters.csv into ``out_dir``; row counts per file."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    cur = store.conn.execute("SELECT mention_id, entity_id, entity_type FROM mention_entities ORDER BY mention_id")
    counts["entities.csv"] = _write_csv(out_dir / "entities.csv", ["mention_id", "entity_id", "entity_type"], cur)
    clusters = store.clusters()
    rows = []
    for r in clusters.to_dict("records"):
        reasons = [f"{x.get('agency')}: {x.get('rule')}" for x in (_as_list(r.get("routing")) if isinstance(r.get("routing"), str) else r.get("routing") or []) if isinstance(x, dict)]
        rows.append([r["cluster_id"], r["rank"], round(float(r["score"]), 4), r["n_reports"],
                     ";".join(_as_list(r.get("agencies"))), " | ".join([r.get("reason") or ""] + reasons).strip(" |")])
    counts["clusters.csv"] = _write_csv(out_dir / "clusters.csv",
                                        ["cluster_id", "rank", "score", "n_reports", "agencies", "reasons"], rows)
    cur = store.conn.execute("SELECT r.report_id, rc.cluster_id FROM reports r LEFT JOIN report_clusters rc "
                             "USING (report_id) ORDER BY r.report_id")
    counts["report_clusters.csv"] = _write_csv(out_dir / "report_clusters.csv", ["report_id", "cluster_id"], cur)
    return counts
