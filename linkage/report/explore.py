"""The aggregations behind the notebooks, so that notebooks only call linkage and plot.

In:  a store after ``linkage run`` (or the bundled example, run into a temporary store by
     :func:`example_store`).
Out: small pandas tables, ready to plot:

* reports and reporters (``01_explore_reports``): :func:`reports_over_time`, :func:`reporters_per_type`,
  :func:`top_mentioned`, :func:`postcode_counts`, :func:`postcode_grid`;
* entity resolution (``02_entity_resolution``): :func:`er_pairs`, :func:`er_field_weights`,
  :func:`borderline_pairs`, :func:`explain_borderline`, :func:`tf_effect`, :func:`resolution_summary`;
* clusters (``03_clusters``): :func:`top_clusters`, :func:`signal_breakdown`, :func:`split_by_date`,
  :func:`compare_runs`.

Everything is deterministic (sorted outputs, no randomness) and reads the store only.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from linkage.errors import InputError
from linkage.store import EmbeddedStore

#: Where the bundled example lives (next to the ``linkage`` package in a source checkout).
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


# --- the bundled example --------------------------------------------------------------------------
def example_files(examples_dir: Path | str | None = None) -> list[Path]:
    """``examples/reports.csv`` and ``examples/mentions.csv``.

    Raises
    ------
    InputError
        When the example files are not there (e.g. an installed package without the examples).
    """
    base = Path(examples_dir) if examples_dir else EXAMPLES_DIR
    files = [base / "reports.csv", base / "mentions.csv"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise InputError(f"The bundled example is missing ({', '.join(missing)}); run from a linkage checkout "
                         "or generate data with: linkage generate --out examples/")
    return files


def example_store(files: Sequence[Path | str] | None = None, workdir: Path | str | None = None,
                  seed: int | None = None) -> Path:
    """Run the main job on ``files`` (default: the bundled example) into a fresh store; returns its path."""
    from linkage.pipeline import run

    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="linkage-nb-"))
    path = workdir / "example.db"
    run([Path(f) for f in (files or example_files())], path, seed=seed)
    return path


def open_store(path: Path | str) -> EmbeddedStore:
    """Open an existing store (read it, close it when done)."""
    return EmbeddedStore(path, must_exist=True)


# --- 01: reports ----------------------------------------------------------------------------------
def reports_over_time(store: EmbeddedStore, freq: str = "M") -> pd.DataFrame:
    """Reports per period (``M`` month, ``W`` week, ``Q`` quarter) and category: one column per category.

    The index is the first day of each period (a DatetimeIndex); periods without reports are 0.
    """
    df = store.frame("SELECT substr(received_at, 1, 10) AS day, category FROM reports")
    if df.empty:
        return pd.DataFrame()
    df["day"] = pd.to_datetime(df["day"], errors="coerce")
    df = df.dropna(subset=["day"])
    df["period"] = df["day"].dt.to_period(freq).dt.start_time
    table = df.pivot_table(index="period", columns="category", values="day", aggfunc="count", fill_value=0)
    if freq == "M":  # months without reports show as 0, not as a gap
        table = table.reindex(pd.date_range(table.index.min(), table.index.max(), freq="MS"), fill_value=0)
    table = table[table.sum().sort_values(ascending=False).index]
    table.index.name = "period"
    table.columns.name = "category"
    return table.astype(int)


def reporters_per_type(store: EmbeddedStore) -> pd.DataFrame:
    """Per reporter type: the number of reports and of distinct (pseudonymous) reporters, most reports first."""
    df = store.frame(
        "SELECT COALESCE(NULLIF(reporter_type, ''), 'onbekend') AS reporter_type, COUNT(*) AS reports, "
        "COUNT(DISTINCT NULLIF(reporter_id, '')) AS reporters FROM reports GROUP BY 1 ORDER BY reports DESC, 1")
    return df.set_index("reporter_type")


def top_mentioned(store: EmbeddedStore, entity_type: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` entities of one type mentioned in the most reports: label, reports, mentions, entity_id."""
    df = store.frame(
        "SELECT e.entity_id, e.label, COUNT(DISTINCT m.report_id) AS reports, COUNT(*) AS mentions "
        "FROM mention_entities me JOIN entities e USING (entity_id) JOIN mentions m USING (mention_id) "
        "WHERE e.entity_type = ? GROUP BY e.entity_id ORDER BY reports DESC, mentions DESC, e.entity_id LIMIT ?",
        (entity_type, int(n)))
    return df[["label", "reports", "mentions", "entity_id"]]


def postcode_counts(store: EmbeddedStore, digits: int = 4) -> pd.Series:
    """Reports per postcode area (the first ``digits`` digits of the postcode of any address they mention)."""
    df = store.frame("SELECT DISTINCT report_id, substr(postcode_norm, 1, ?) AS area FROM mentions "
                     "WHERE postcode_norm IS NOT NULL AND postcode_norm != ''", (int(digits),))
    df = df[df["area"].str.fullmatch(r"\d{%d}" % int(digits))]
    counts = df.drop_duplicates().groupby("area")["report_id"].nunique().sort_index()
    counts.name = "reports"
    return counts


def postcode_grid(store: EmbeddedStore, digits: int = 2) -> pd.DataFrame:
    """A map-like grid of reports per postcode area: rows the first ``digits - 1`` digits, columns the last.

    With ``digits=2`` (the default) rows 1..9 are the broad regions (1 Amsterdam/Noord-Holland ...
    9 Groningen/Friesland) and columns 0..9 the areas within; with ``digits=3`` or ``4`` the rows are
    only those prefixes that occur. Empty areas are 0.
    """
    counts = postcode_counts(store, digits)
    if counts.empty:
        return pd.DataFrame(columns=[str(d) for d in range(10)])
    frame = pd.DataFrame({"row": counts.index.str[:-1], "col": counts.index.str[-1], "n": counts.values})
    grid = frame.pivot_table(index="row", columns="col", values="n", aggfunc="sum", fill_value=0)
    if digits == 2:
        grid = grid.reindex([str(d) for d in range(1, 10)], fill_value=0)
    grid = grid.reindex(columns=[str(d) for d in range(10)], fill_value=0)
    grid.index.name = "postcode " + ("digit 1" if digits == 2 else f"digits 1-{digits - 1}")
    grid.columns.name = f"digit {digits}"
    return grid.astype(int)


# --- 02: entity resolution ------------------------------------------------------------------------
def er_model(store: EmbeddedStore) -> dict[str, Any]:
    """The fitted ER model per entity type, as stored by the last run (empty when there is none)."""
    raw = store.get_meta("er_model")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _prior_bits(model: dict[str, Any]) -> float:
    p = min(max(float(model.get("prior", 1e-6)), 1e-15), 1 - 1e-12)
    return math.log2(p / (1 - p))


def er_pairs(store: EmbeddedStore) -> pd.DataFrame:
    """The scored mention pairs of the last run with their entity type, weight (bits), probability, matched.

    The pairs come from the run's stored state (:func:`linkage.resolve.incremental.stored_scored_pairs`), or
    from the ``er_pairs`` table of a store an older version wrote. Pairs of mentions deleted since (retention)
    are left out. A missing probability is recomputed from the weight and the type's prior.
    """
    from linkage.resolve.incremental import pairs_table, stored_scored_pairs

    scored = stored_scored_pairs(store.conn)
    if scored is not None:
        df = pairs_table(scored)[["left_id", "right_id", "entity_type", "weight", "probability", "matched"]]
    else:
        df = store.frame("SELECT p.left_id, p.right_id, m.entity_type, p.weight, p.probability, p.matched "
                         "FROM er_pairs p LEFT JOIN mentions m ON m.mention_id = p.left_id "
                         "ORDER BY p.left_id, p.right_id")
    if df.empty:
        return df
    models = er_model(store)
    df["weight"] = pd.to_numeric(df["weight"], errors="coerce")
    prob = pd.to_numeric(df["probability"], errors="coerce")
    prior = df["entity_type"].map(lambda t: _prior_bits(models[t]) if t in models else 0.0)
    computed = 1.0 / (1.0 + np.exp2(-(prior + df["weight"].fillna(0.0))))
    df["probability"] = prob.where(prob.notna(), computed)
    df["matched"] = pd.to_numeric(df["matched"], errors="coerce").fillna(0).astype(int).astype(bool)
    return df


def resolution_summary(store: EmbeddedStore) -> pd.DataFrame:
    """Per entity type: mentions, entities, and mentions per entity (how much was merged)."""
    df = store.frame("SELECT entity_type, COUNT(*) AS mentions, COUNT(DISTINCT entity_id) AS entities "
                     "FROM mention_entities GROUP BY entity_type ORDER BY mentions DESC")
    df["mentions_per_entity"] = (df["mentions"] / df["entities"]).round(2)
    return df.set_index("entity_type")


def er_field_weights(store: EmbeddedStore) -> pd.DataFrame:
    """The learned weights: per entity type, comparison and level, m, u and the weight ``log2(m/u)`` in bits.

    The ``missing`` level weighs 0 (it says nothing); positive bits count for a match, negative against.
    """
    rows = []
    for etype, model in sorted(er_model(store).items()):
        for comp in model.get("comparisons", []):
            for i, level in enumerate(comp.get("levels", [])):
                m = float(comp["m"][i])
                u = float(comp["u"][i])
                w = 0.0 if i == 0 else math.log2(max(m, 1e-9) / max(u, 1e-9))
                rows.append({"entity_type": etype, "comparison": comp["name"], "level": level, "m": m, "u": u,
                             "weight": round(w, 3)})
    return pd.DataFrame(rows, columns=["entity_type", "comparison", "level", "m", "u", "weight"])


def borderline_pairs(store: EmbeddedStore, n: int = 5, entity_type: str | None = None) -> pd.DataFrame:
    """The ``n`` pairs closest to the match threshold (the hardest decisions), with both mentions' values;
    of pairs with exactly the same weight (the same comparison outcome) only the first is shown."""
    pairs = er_pairs(store)
    models = er_model(store)
    if pairs.empty or not models:
        return pairs.head(0)
    if entity_type:
        pairs = pairs[pairs["entity_type"] == entity_type]
    threshold = pairs["entity_type"].map(lambda t: float(models.get(t, {}).get("match_probability", 0.5)))
    logit = lambda p: np.log2(np.clip(p, 1e-12, 1 - 1e-12) / (1 - np.clip(p, 1e-12, 1 - 1e-12)))  # noqa: E731
    pairs = pairs.assign(threshold=threshold, distance=(logit(pairs["probability"]) - logit(threshold)).abs())
    pairs = pairs.sort_values(["distance", "left_id", "right_id"]).head(int(n) * 10)
    labels = _mention_labels(store, list(pairs["left_id"]) + list(pairs["right_id"]))
    pairs["left"] = pairs["left_id"].map(labels)
    pairs["right"] = pairs["right_id"].map(labels)
    # Pairs with the same weight compared the same way (same levels, e.g. the same two spellings in other
    # reports) teach nothing new: show one of each.
    pairs = pairs.assign(_w=pairs["weight"].round(3)).drop_duplicates(["entity_type", "_w"]).drop(columns="_w")
    pairs = pairs.head(int(n))
    return pairs[["entity_type", "left", "right", "weight", "probability", "threshold", "matched", "left_id",
                  "right_id"]].reset_index(drop=True)


def _mention_labels(store: EmbeddedStore, ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(ids))
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    df = store.frame(f"SELECT * FROM mentions WHERE mention_id IN ({marks})", ids)
    out = {}
    for r in df.to_dict("records"):
        parts = [r.get(f) for f in ("name", "first_name", "last_name", "birth_date", "address", "street", "house_number",
                                    "postcode", "city", "business_name", "kvk", "plate", "phone", "iban", "email")]
        out[r["mention_id"]] = " ".join(str(p) for p in parts if p not in (None, "") and p == p)
    return out


def explain_borderline(store: EmbeddedStore, n: int = 3, entity_type: str | None = None) -> list:
    """:func:`linkage.resolve.explain_pair` explanations of the ``n`` borderline pairs (``.to_text()`` reads them)."""
    from linkage.resolve import explain_pair

    pairs = borderline_pairs(store, n, entity_type)
    if pairs.empty:
        return []
    models = er_model(store)
    ids = list(pairs["left_id"]) + list(pairs["right_id"])
    marks = ",".join("?" for _ in ids)
    mentions = store.frame(f"SELECT * FROM mentions WHERE mention_id IN ({marks})", ids).set_index("mention_id",
                                                                                                      drop=False)
    out = []
    for r in pairs.itertuples(index=False):
        left, right = mentions.loc[r.left_id], mentions.loc[r.right_id]
        out.append(explain_pair(left.where(left.notna(), None), right.where(right.notna(), None), models))
    return out


def tf_effect(store: EmbeddedStore, entity_type: str = "person", comparison: str | None = None,
              n: int = 8) -> pd.DataFrame:
    """How term frequency changes the weight of an exact agreement: common values count less, rare ones more.

    Returns the ``n`` most common and the ``n`` rarest values of a term-frequency comparison (default: the
    ``surname`` when the type has it, else its first one) with their frequency, the weight of an exact match on that
    value (``log2(m / frequency)``) and the flat weight without the adjustment (``log2(m / u)``).
    """
    model = er_model(store).get(entity_type) or {}
    tf = model.get("tf") or {}
    if not tf:
        return pd.DataFrame(columns=["value", "frequency", "weight_with_tf", "weight_without_tf", "kind"])
    preferred = [c["name"] for c in model.get("comparisons", []) if c["name"] in tf]
    name = comparison or ("surname" if "surname" in tf else (preferred or sorted(tf))[0])
    if name not in tf:
        raise InputError(f"'{name}' has no term-frequency table; choose one of: {', '.join(sorted(tf))}.")
    table = tf[name]
    comp = next(c for c in model["comparisons"] if c["name"] == name)
    m_exact, u_exact = float(comp["m"][1]), float(comp["u"][1])
    values = pd.Series(table.get("values", {}), dtype=float).sort_index()
    if values.empty:
        return pd.DataFrame(columns=["value", "frequency", "weight_with_tf", "weight_without_tf", "kind"])
    common = values.sort_values(ascending=False, kind="mergesort").head(n)
    rare_default = pd.Series({"(any value seen once)": float(table.get("default", values.min()))})
    rare = values.sort_values(kind="mergesort").head(max(n - 1, 0))
    frames = [common.rename("frequency").to_frame().assign(kind="common"),
              pd.concat([rare, rare_default]).rename("frequency").to_frame().assign(kind="rare")]
    df = pd.concat(frames)
    df = df[~df.index.duplicated()]
    minimum = float(table.get("minimum", 1e-6))
    df["weight_with_tf"] = np.log2(max(m_exact, 1e-9) / np.maximum(df["frequency"], minimum)).round(2)
    df["weight_without_tf"] = round(math.log2(max(m_exact, 1e-9) / max(u_exact, 1e-9)), 2)
    df.index.name = "value"
    df = df.reset_index()
    df.attrs["comparison"] = name
    return df[["value", "frequency", "weight_with_tf", "weight_without_tf", "kind"]]


# --- 03: clusters ---------------------------------------------------------------------------------
def top_clusters(store: EmbeddedStore, n: int = 5) -> pd.DataFrame:
    """The ``n`` highest-ranked clusters with readable categories and agencies."""
    from linkage.pipeline import _as_list

    df = store.clusters().head(int(n)).copy()
    for col in ("categories", "agencies"):
        if col in df.columns:
            df[col] = df[col].map(lambda v: ", ".join(str(x) for x in _as_list(v)))
    keep = [c for c in ("cluster_id", "rank", "score", "n_reports", "n_reporters", "categories", "agencies", "reason")
            if c in df.columns]
    return df[keep].reset_index(drop=True)


def signal_breakdown(store: EmbeddedStore, n: int = 10) -> pd.DataFrame:
    """Per top-``n`` cluster (rows, best first) the points of each signal (columns): the scorer's ``points``
    when stored, else ``value x weight``."""
    rows = {}
    for r in store.clusters().head(int(n)).to_dict("records"):
        signals = r.get("signals")
        if isinstance(signals, str):
            try:
                signals = json.loads(signals)
            except json.JSONDecodeError:
                signals = []
        contrib: dict[str, float] = {}
        for s in signals if isinstance(signals, list) else []:
            if not isinstance(s, dict):
                continue
            try:
                if s.get("points") is not None:
                    v = float(s["points"])
                else:
                    v = float(s.get("value") or 0) * float(s.get("weight") if s.get("weight") is not None else 1)
            except (TypeError, ValueError):
                continue
            contrib[str(s.get("name"))] = contrib.get(str(s.get("name")), 0.0) + v
        rows[r["cluster_id"]] = contrib
    df = pd.DataFrame.from_dict(rows, orient="index").fillna(0.0)
    if df.empty:
        return df
    df = df[df.sum().sort_values(ascending=False).index]
    df.index.name = "cluster_id"
    return df


def split_by_date(files: Sequence[Path | str], out_dir: Path | str, fraction: float = 0.7) -> list[Path]:
    """Write the earliest ``fraction`` of the reports (by ``received_at``) and their mentions into ``out_dir``.

    For showing how clusters change when more reports arrive: run once on the early part, then on all.
    """
    reports_path, mentions_path = Path(files[0]), Path(files[1])
    reports = pd.read_csv(reports_path, dtype=str, keep_default_na=False)
    mentions = pd.read_csv(mentions_path, dtype=str, keep_default_na=False)
    ordered = reports.sort_values(["received_at", "report_id"], kind="mergesort")
    early = ordered.head(int(len(ordered) * fraction))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = [out_dir / reports_path.name, out_dir / mentions_path.name]
    early.sort_index().to_csv(out[0], index=False)
    mentions[mentions["report_id"].isin(set(early["report_id"]))].to_csv(out[1], index=False)
    return out


def compare_runs(before: pd.DataFrame | pd.Series, after: pd.DataFrame | pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How clusters changed between two runs, from their ``report_id -> cluster_id`` assignments.

    Uses :func:`linkage.store.stable_ids.carry_over` (the rule that keeps cluster ids stable).

    Returns
    -------
    (events, sizes):
        ``events``: one row per cluster and event (``created``, ``kept``, ``merged``, ``split``,
        ``dissolved``) with the related cluster ids; ``sizes``: per cluster id its reports before and after.
    """
    from linkage.store.stable_ids import carry_over

    def series(x: pd.DataFrame | pd.Series) -> pd.Series:
        if isinstance(x, pd.DataFrame):
            return x.set_index("report_id")["cluster_id"] if len(x) else pd.Series(dtype=str)
        return x

    old, new = series(before), series(after)
    _rename, events = carry_over(old, new)
    ev = pd.DataFrame([{"cluster_id": e.group_id, "event": e.event, "related": ", ".join(e.related)} for e in events],
                      columns=["cluster_id", "event", "related"])
    sizes = pd.DataFrame({"before": old.value_counts(), "after": new.map(_rename).value_counts()}).fillna(0).astype(int)
    sizes.index.name = "cluster_id"
    sizes = sizes.sort_values(["after", "before"], ascending=False, kind="mergesort")
    return ev, sizes
