"""The map of linkage: one function per stage, called in order by :func:`run`.

    load -> normalise -> block -> compare/score -> resolve entities -> build graph -> communities
         -> score/route clusters -> store (embedded, and Neo4j when asked) -> feedback (report status)

In:  input files (optional: the store may already hold reports) and a store path.
Out: the store filled stage by stage, and a :class:`RunSummary` with the ranked clusters.
Each stage reads what the previous one wrote; every stage is deterministic for the same input and seed.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pandas as pd

from linkage.settings import Settings, load_settings
from linkage.store import EmbeddedStore
from linkage.store.stable_ids import carry_over

STAGES = ("load", "resolve", "clusters", "score", "store", "status")


def load_stage(files: Sequence[Path], store_path: Path, settings_path: Optional[Path] = None,
               mapping: Optional[Path] = None, progress_factory: Optional[Callable] = None):
    """Load ``files`` into the store at ``store_path``; returns a :class:`loaders.LoadSummary`."""
    settings = load_settings(settings_path)
    with EmbeddedStore(store_path) as store:
        bar_cm = progress_factory() if progress_factory else nullcontext(None)
        with bar_cm as bar:
            return _load(files, store, settings, mapping, bar)


def _load(files, store, settings, mapping, bar):
    from loaders import load_files

    tasks: dict[str, int] = {}

    def progress(label: str, n: int) -> None:
        if bar is None:
            return
        if label not in tasks:
            tasks[label] = bar.add_task(f"loading {Path(label).name}", total=None)
        bar.advance(tasks[label], n)

    return load_files(files, store, settings, mapping, progress)


@dataclass
class RunSummary:
    """What a run did: counts per stage, seconds per stage, and the ranked clusters."""

    store: Path
    load: Any = None
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    clusters: pd.DataFrame = field(default_factory=pd.DataFrame)
    neo4j: Any = None

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        clusters = self.clusters if top is None else self.clusters.head(top)
        return {
            "store": str(self.store),
            "load": self.load.to_dict() if self.load is not None else None,
            "counts": self.counts,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "clusters": [cluster_record(r) for r in clusters.to_dict("records")],
            "neo4j": self.neo4j,
        }


def cluster_record(row: dict) -> dict[str, Any]:
    """A stored cluster row as plain JSON-ready data (JSON columns decoded)."""
    out = dict(row)
    for key in ("categories", "agencies", "signals", "routing"):
        val = out.get(key)
        if isinstance(val, str) and val[:1] in "[{":
            try:
                out[key] = json.loads(val)
            except json.JSONDecodeError:
                pass
    return out


def _as_list(value: Any) -> list:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        if value.startswith("["):
            return json.loads(value)
        return [v for v in value.split(";") if v]
    return list(value)


def resolve_stage(store: EmbeddedStore, settings: Settings, progress: Callable[[str], None] | None = None,
                  full: bool = False) -> dict[str, int]:
    """Resolve every stored mention into entities; store entities, assignments, scored pairs and the model.

    Incremental by default: when the store holds a model and the pairs of an earlier run, only pairs that
    involve a mention added since are scored (with the stored, frozen model), then old and new pairs are
    clustered together, which gives what a full run with that model gives. ``full=True`` refits the model
    and scores every candidate pair again. Entity ids carry over from the previous run where an entity
    kept most of its mentions.
    """
    from linkage.resolve import resolve_mentions

    mentions = store.mentions()
    judgements = _judgements(store)
    previous = store.mention_entities()
    raw_model = store.get_meta("er_model")
    kwargs: dict[str, Any] = {}
    if not full and raw_model is not None:
        kwargs["model"] = json.loads(raw_model)  # frozen: the same model scores old and new pairs alike
        if len(previous):
            kwargs["new_mention_ids"] = sorted(set(mentions["mention_id"]) - set(previous["mention_id"]))
            kwargs["existing_pairs"] = _stored_pairs(store)
    resolution = resolve_mentions(mentions, judgements=judgements, progress=progress, **kwargs)
    assignments = resolution.assignments.copy()
    entities = resolution.entities.copy()

    if len(previous):
        rename, _events = carry_over(previous.set_index("mention_id")["entity_id"],
                                     assignments.set_index("mention_id")["entity_id"])
        assignments["entity_id"] = assignments["entity_id"].map(rename)
        entities["entity_id"] = entities["entity_id"].map(rename)

    pairs = getattr(resolution, "pairs", None)
    with store.transaction():
        store.replace_table("mention_entities", assignments, ["mention_id", "entity_id", "entity_type"])
        ent_cols = [c for c in ("entity_id", "entity_type", "label", "n_mentions", "attributes") if c in entities.columns]
        store.replace_table("entities", entities, ent_cols)
        p = _pairs_frame(pairs if pairs is not None else pd.DataFrame(columns=["left_id", "right_id"]))
        store.replace_table("er_pairs", p, list(p.columns))
        model = getattr(resolution, "model", None)
        if model is not None:
            store.set_meta("er_model", json.dumps(model if isinstance(model, dict) else _model_dict(model), default=str))
    return {"mentions": len(mentions), "entities": len(entities),
            "new_mentions": len(kwargs.get("new_mention_ids", mentions)),
            "pairs": 0 if pairs is None else len(pairs)}


def _stored_pairs(store: EmbeddedStore) -> pd.DataFrame:
    """The scored pairs of the last run in the form the resolver takes back (``existing_pairs``)."""
    df = store.frame("SELECT left_id, right_id, entity_type, weight AS match_weight, probability AS match_probability, "
                     "matched, levels, reason FROM er_pairs")
    df["matched"] = df["matched"].fillna(0).astype(bool)
    df["reason"] = df["reason"].fillna("")
    return df


def _model_dict(model: Any) -> Any:
    for attr in ("to_dict", "as_dict", "to_json"):
        if hasattr(model, attr):
            return getattr(model, attr)()
    return str(model)


def _pairs_frame(pairs: pd.DataFrame) -> pd.DataFrame:
    """The resolver's pairs in the store's ``er_pairs`` columns."""
    def col(*names: str) -> Any:
        for n in names:
            if n in pairs.columns:
                return pairs[n].to_numpy()
        return [None] * len(pairs)

    out = pd.DataFrame({
        "left_id": pairs["left_id"].astype(str).to_numpy(), "right_id": pairs["right_id"].astype(str).to_numpy(),
        "entity_type": col("entity_type"), "weight": col("match_weight", "weight"),
        "probability": col("match_probability", "probability"), "matched": col("matched"),
        "levels": col("levels"), "reason": col("reason"),
    })
    if len(out):
        out["matched"] = out["matched"].astype(bool).astype(int)
    return out.drop_duplicates(["left_id", "right_id"])


def _judgements(store: EmbeddedStore) -> list[tuple[str, str, str]]:
    try:
        from linkage.resolve.judgements import current_judgements
    except ImportError:  # pragma: no cover - present once the judgements module lands
        return []
    return list(current_judgements(store))


def graph_inputs(store: EmbeddedStore) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """reports, mentions (with entity_id), links and entities as the graph stage expects them."""
    reports = store.frame(
        "SELECT report_id, substr(received_at, 1, 10) AS received_at, category, reporter_id, reporter_type "
        "FROM reports ORDER BY report_id"
    )
    mentions = store.frame(
        "SELECT m.mention_id, m.report_id, m.entity_type, m.role, e.entity_id FROM mentions m "
        "JOIN mention_entities e USING (mention_id) ORDER BY m.mention_id"
    )
    links = store.links()
    entities = store.frame("SELECT entity_id, entity_type, label, n_mentions FROM entities ORDER BY entity_id")
    return reports, mentions, links, entities


def communities_stage(store: EmbeddedStore, settings: Settings, seed: Optional[int] = None):
    """Build the report graph from resolved entities and find communities.

    Returns ``(report_clusters, inputs)`` where ``inputs`` are the reports, mentions, links and entities
    the scoring stage reuses.
    """
    from linkage.graph import find_clusters

    inputs = graph_inputs(store)
    reports, mentions, links, entities = inputs
    report_clusters = find_clusters(reports, mentions, links, entities,
                                    seed=settings.cluster_seed if seed is None else seed)
    return report_clusters, inputs


def score_stage(report_clusters: pd.DataFrame, inputs, rules: Optional[Path] = None,
                now: Optional[dt.date] = None) -> pd.DataFrame:
    """Score every cluster from its signals and route it by the rules; ranked clusters with reasons."""
    from linkage.triage import route, score_clusters

    reports, mentions, links, entities = inputs
    if now is None:
        now = _data_now(reports)
    scored = score_clusters(report_clusters, reports, mentions, links, entities, now=now)
    routed = route(scored, rules)
    return scored.merge(routed, on="cluster_id", how="left", suffixes=("", "_route"))


def _cluster_counts(reports: pd.DataFrame, report_clusters: pd.DataFrame, clusters: pd.DataFrame) -> dict[str, int]:
    return {"reports": len(reports), "clusters": int(clusters["cluster_id"].nunique()) if len(clusters) else 0,
            "clustered_reports": len(report_clusters)}


def _data_now(reports: pd.DataFrame) -> dt.date:
    """The reference date for recency: the newest report's date (so results do not depend on today)."""
    if len(reports) == 0:
        return dt.date.today()
    return dt.date.fromisoformat(str(reports["received_at"].max())[:10])


def store_clusters(store: EmbeddedStore, report_clusters: pd.DataFrame, clusters: pd.DataFrame,
                   run_id: Optional[int] = None) -> pd.DataFrame:
    """Write clusters with ids carried over from the previous run; record merges and splits."""
    previous = store.report_clusters()
    rename, events = carry_over(previous.set_index("report_id")["cluster_id"] if len(previous) else pd.Series(dtype=str),
                                report_clusters.set_index("report_id")["cluster_id"])
    report_clusters = report_clusters.assign(cluster_id=report_clusters["cluster_id"].map(rename))
    clusters = clusters.assign(cluster_id=clusters["cluster_id"].map(rename))
    clusters = clusters.sort_values(["rank", "cluster_id"]).reset_index(drop=True)
    rows = clusters.copy()
    for col in ("categories", "agencies"):  # lists -> JSON text
        if col in rows.columns:
            rows[col] = rows[col].map(lambda v: json.dumps(_as_list(v), ensure_ascii=False))
    for col in ("signals", "routing"):  # already JSON text from triage; other values are encoded here
        if col in rows.columns:
            rows[col] = rows[col].map(lambda v: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str))
    cols = [c for c in ("cluster_id", "rank", "score", "n_reports", "n_reporters", "categories", "agencies", "reason",
                        "signals", "routing", "unrouted_reason") if c in rows.columns]
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with store.transaction():
        store.replace_table("clusters", rows, cols)
        store.replace_table("report_clusters", report_clusters, ["report_id", "cluster_id"])
        if _has_table(store, "cluster_history"):
            changes = [e for e in events if e.event != "kept"]
            store.insert_rows(
                "cluster_history",
                [{"at": now, "run_id": run_id, "cluster_id": e.group_id, "event": e.event,
                  "related_ids": list(e.related)} for e in changes],
                ["at", "run_id", "cluster_id", "event", "related_ids"],
            )
    return clusters


def _has_table(store: EmbeddedStore, name: str) -> bool:
    return store.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def status_stage(store: EmbeddedStore, clusters: pd.DataFrame) -> int:
    """Move reports forward: clustered reports become 'gekoppeld', routed ones 'doorgezet'."""
    try:
        from linkage.feedback.lifecycle import advance_after_routing
    except ImportError:  # pragma: no cover - present once the lifecycle module lands
        return 0
    report_clusters = store.report_clusters()
    routing = clusters[["cluster_id", "agencies"]].copy() if "agencies" in clusters.columns else pd.DataFrame()
    return int(advance_after_routing(store, report_clusters, routing) or 0)


def run(
    files: Sequence[Path],
    store_path: Path,
    settings_path: Optional[Path] = None,
    mapping: Optional[Path] = None,
    rules: Optional[Path] = None,
    seed: Optional[int] = None,
    now: Optional[dt.date] = None,
    progress_factory: Optional[Callable] = None,
    neo4j: bool = False,
    full: bool = False,
) -> RunSummary:
    """The main job: load (optional), resolve, cluster, score and route, store, update report status.

    Parameters
    ----------
    files:
        Input files to load first; may be empty to re-run on what the store holds.
    rules:
        Routing rules TOML (default ``linkage/routing.toml``).
    now:
        Reference date for recency (default: the newest report's date, for reproducible scores).
    neo4j:
        Also push the result to the Neo4j server configured through ``LINKAGE_NEO4J_*``.
    full:
        Refit the entity-resolution model and score all pairs again instead of only the new mentions.
    """
    settings = load_settings(settings_path)
    summary = RunSummary(store=Path(store_path))
    bar_cm = progress_factory() if progress_factory else nullcontext(None)
    with EmbeddedStore(store_path) as store, bar_cm as bar:
        stages = {}
        if bar is not None:
            for name in STAGES + (("neo4j",) if neo4j else ()):
                stages[name] = bar.add_task(f"{name:<9}", total=1, start=False)

        def begin(name: str) -> float:
            if bar is not None:
                bar.start_task(stages[name])
            return time.perf_counter()

        def end(name: str, t0: float) -> None:
            summary.seconds[name] = time.perf_counter() - t0
            if bar is not None:
                bar.update(stages[name], completed=1)

        t0 = begin("load")
        run_id = store.conn.execute(
            "INSERT INTO runs(started_at) VALUES (?)", (dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),)
        ).lastrowid
        if files:
            summary.load = _load(files, store, settings, mapping, None)
        summary.counts["reports"] = store.count("reports")
        summary.counts["mentions"] = store.count("mentions")
        end("load", t0)

        t0 = begin("resolve")
        summary.counts.update({f"er_{k}": v for k, v in resolve_stage(store, settings, full=full).items()})
        end("resolve", t0)

        t0 = begin("clusters")
        report_clusters, inputs = communities_stage(store, settings, seed)
        end("clusters", t0)
        t0 = begin("score")
        clusters = score_stage(report_clusters, inputs, rules, now)
        summary.counts.update(_cluster_counts(inputs[0], report_clusters, clusters))
        del inputs
        end("score", t0)

        t0 = begin("store")
        clusters = store_clusters(store, report_clusters, clusters, run_id)
        summary.clusters = store.clusters()
        end("store", t0)

        t0 = begin("status")
        summary.counts["status_changes"] = status_stage(store, summary.clusters)
        end("status", t0)

        if neo4j:
            t0 = begin("neo4j")
            from linkage.store.neo4j import push

            summary.neo4j = push(store)
            end("neo4j", t0)

        stats = json.dumps({"counts": summary.counts, "seconds": summary.seconds}, default=str)
        store.conn.execute("UPDATE runs SET finished_at=?, stats=? WHERE run_id=?",
                           (dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), stats, run_id))
    return summary


def explain_stage(store: EmbeddedStore, a: str, b: str):
    """Explain two mention or entity ids with the model stored by the last run; plus judgements on them.

    Raises
    ------
    NotFoundError
        When the store has no resolution yet or an id is unknown.
    """
    from linkage.errors import LinkageError, NotFoundError
    from linkage.resolve import explain_ids

    raw = store.get_meta("er_model")
    if raw is None:
        raise NotFoundError(f"{store.path} has no entity-resolution model yet; run 'linkage run' first.")
    model = json.loads(raw)
    mentions = store.mentions()
    assignments = store.mention_entities()
    try:
        explanation = explain_ids(mentions, assignments, a, b, model)
    except NotFoundError:
        raise
    except LinkageError as exc:
        raise NotFoundError(str(exc)) from None
    judgements: list[dict] = []
    try:
        from linkage.resolve.judgements import judgements_for

        found = judgements_for(store, [a, b])
        judgements = found.to_dict("records") if hasattr(found, "to_dict") else list(found)
    except ImportError:  # pragma: no cover
        pass
    return explanation, judgements
