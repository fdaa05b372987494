"""Cluster scores: every signal of every cluster, weighted into one ranked, explained score.

In:  ``clusters`` (report_id, cluster_id) from :func:`linkage.graph.find_clusters`, and the resolved tables
     ``reports`` (report_id, received_at ``YYYY-MM-DD``, category, reporter_id), ``mentions``
     (mention_id, report_id, entity_type, role, entity_id), ``links`` (src_mention_id, dst_mention_id,
     rel_type, report_id), ``entities`` (entity_id, label; optional; or a function giving ``{entity_id: label}``
     of the entity ids it is given, called in each scoring process with the entities that process needs: those
     of its clusters' relations, the only entities signals name by label).
Out: ``DataFrame[cluster_id, rank, score, n_reports, n_reporters, categories, signals, reason]``, ranked by
     score (desc) then cluster_id (asc). ``categories`` is a list (most frequent first); ``signals`` a JSON
     list of ``{name, value, weight, points, sentence, inputs}``; ``reason`` the sentences of the (up to)
     three signals that scored most points. ``n_reporters`` = distinct named reporters + anonymous reports.

Score = sum of ``weight * clip((value - floor) / (cap - floor), 0, 1)`` over the signals, with weight,
floor and cap per signal in ``scoring.toml`` (0 to 100 with the packaged weights).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import marshal
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from linkage.arrays import isin_text as _isin
from linkage.triage.policy import ScoringPolicy, as_policy
from linkage.triage.signals import SIGNALS, ClusterContext, ReportInfo, Signal

SCORED_COLUMNS = ["cluster_id", "rank", "score", "n_reports", "n_reporters", "categories", "signals", "reason"]
_PARTIES = ("person", "business")
_IDENTIFIERS = ("vehicle", "bank_account")


def _obj(s: pd.Series) -> np.ndarray:
    """A column as an object array of str/None (pandas' arrow strings iterate slowly)."""
    out = s.astype(object).to_numpy()
    mask = pd.isna(s).to_numpy()
    if mask.any():
        out = out.copy()
        out[mask] = None
    return out


def _dates(s: pd.Series) -> np.ndarray:
    d = pd.to_datetime(s.astype(str).str[:10], format="%Y-%m-%d", errors="coerce")
    out = np.empty(len(d), dtype=object)
    ok = d.notna().to_numpy()
    # the days as datetime.date (numpy's day unit converts to them; times are midnight: the format has none),
    # not each value boxed as a Timestamp first
    out[ok] = d.to_numpy()[ok].astype("datetime64[D]").tolist()
    out[~ok] = None
    return out


def data_now(reports: pd.DataFrame) -> dt.date:
    """The default reference date: the newest ``received_at`` in ``reports`` (today when there is none).

    Pass ``now`` explicitly for reproducible scores across data sets.

    >>> data_now(pd.DataFrame({"received_at": ["2024-01-02", "2024-03-04", None]}))
    datetime.date(2024, 3, 4)
    """
    if len(reports) == 0 or "received_at" not in reports.columns:
        return dt.date.today()
    d = [x for x in _dates(reports["received_at"]) if x is not None]
    return max(d) if d else dt.date.today()


def _group_bounds(keys: pd.Series) -> tuple[list, np.ndarray, list[int], list[int]]:
    """(sorted distinct keys, row order grouping them, group starts, group ends) for one key column."""
    codes, uniq = pd.factorize(keys, sort=True)
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    brk = (np.flatnonzero(sc[1:] != sc[:-1]) + 1).tolist()
    starts = [0] + brk
    ends = brk + [len(sc)]
    names = list(uniq) if len(sc) else []
    return names, order, starts, ends


def _grouped(df: pd.DataFrame, cols: list[str]) -> dict[str, tuple]:
    """cluster_id -> tuple of row tuples over ``cols`` (distinct, sorted)."""
    if len(df) == 0:
        return {}
    codes = [pd.factorize(df[c], sort=True)[0] for c in ["cluster_id"] + cols]
    order = np.lexsort(codes[::-1])  # by cluster, then the columns in their (sorted) value order
    sorted_codes = np.column_stack([c[order] for c in codes])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = (sorted_codes[1:] != sorted_codes[:-1]).any(axis=1)
    order = order[keep]
    arrays = [_obj(df[c])[order].tolist() for c in cols]
    rows = list(zip(*arrays))
    cl = codes[0][order]
    brk = (np.flatnonzero(cl[1:] != cl[:-1]) + 1).tolist()
    starts, ends = [0] + brk, brk + [len(cl)]
    cids = _obj(df["cluster_id"])[order].tolist()
    return {cids[a]: tuple(rows[a:b]) for a, b in zip(starts, ends)}


@dataclass
class _Gathered:
    """What :func:`build_contexts` gathers once for all clusters (vectorised joins); :func:`_context` makes one
    cluster's :class:`ClusterContext` from it. Plain arrays, tuples and dicts: forked scoring workers read it as
    it is (:func:`_score_clusters`)."""

    now: dt.date
    policy: ScoringPolicy
    rep_groups: dict          # cluster_id -> tuple of the cluster's ReportInfo, by report id
    relations: dict           # relation name -> cluster_id -> tuple of (src, dst) rows (distinct, sorted)
    mentioned: dict           # cluster_id -> tuple of (report_id, entity_id) rows (distinct, sorted)
    types: dict               # entity_id -> entity_type
    labels: Mapping[str, str]
    sizes: dict = field(default_factory=dict)  # cluster_id -> report rows + mention rows (the work it takes)


def _clustered_mentions(mentions: pd.DataFrame, cmap: pd.DataFrame) -> pd.DataFrame:
    """The mentions (with an entity) of the reports in ``cmap`` (report_id, cluster_id as text), each with its
    report's cluster; ids as text."""
    m = mentions[mentions["entity_id"].notna()].assign(report_id=lambda d: d["report_id"].astype(str))
    m = m.merge(cmap, on="report_id", how="inner")
    return m.assign(entity_id=m["entity_id"].astype(str))


def _gather(clusters: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame, links: pd.DataFrame | None,
            entities: pd.DataFrame | None, now: dt.date, policy: ScoringPolicy,
            only: Sequence[str] | None = None) -> _Gathered:
    """The joins of :func:`build_contexts`, done once over all clusters, or over the clusters ``only`` (a forked
    scoring worker's share, :func:`_gather_and_score`): each of those gets what the gathering over all clusters
    gives it. A stated link is joined to the cluster of its source mention and to its target mention wherever
    that is: a target outside ``only``'s clusters (a link across reports of two clusters) is looked up among
    all clustered mentions."""
    cmap = clusters[["report_id", "cluster_id"]].astype({"report_id": str, "cluster_id": str})
    every = cmap
    if only is not None:
        cmap = cmap[_isin(cmap["cluster_id"], only)]
        reports = reports[_isin(reports["report_id"].astype(str), cmap["report_id"])]
    full_m = mentions
    if only is not None:
        mentions = mentions[_isin(mentions["report_id"].astype(str), cmap["report_id"])]
    small = _small_enough(cmap, reports, mentions, links)
    joined = (_joined_small if small else _joined)(cmap, every, reports, mentions, full_m, links, policy,
                                                   only is not None)
    rep_groups, relations, g_men, types, named = joined
    wanted = [e for e in types if e in named]
    labels: Mapping[str, str] = {}
    if callable(entities):  # a reader of the labels of given entity ids (read by each scoring process)
        labels = entities(wanted)
    elif entities is not None and len(entities) and "label" in entities.columns:
        e = entities[_isin(entities["entity_id"].astype(str), wanted)]
        labels = dict(zip(_obj(e["entity_id"].astype(str)), _obj(e["label"])))
    sizes = {cid: len(idx) + len(g_men.get(cid, ())) for cid, idx in rep_groups.items()}
    return _Gathered(now, policy, rep_groups, relations, g_men, types, labels, sizes)


def _joined(cmap: pd.DataFrame, every: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame,
            full_m: pd.DataFrame, links: pd.DataFrame | None, policy: ScoringPolicy, share: bool) -> tuple:
    """The joins of :func:`_gather` as vectorised frame operations (any size): ``(rep_groups, relations,
    mentioned, types, named)``, ``named`` the set of the relations' entity ids. ``cmap``: the gathered clusters'
    (report_id, cluster_id) as text; ``every``: all clusters' (``cmap`` itself unless ``share``); ``reports``
    and ``mentions``: those of ``cmap``'s reports (or more); ``full_m``: all mentions (where the targets of
    links into other clusters are looked up when ``share``)."""
    rep = reports.assign(report_id=reports["report_id"].astype(str)).merge(cmap, on="report_id", how="inner")
    m = _clustered_mentions(mentions, cmap)
    role = m["role"].fillna("").astype(str).str.strip().str.lower() if "role" in m.columns else pd.Series("", index=m.index)

    # ---- stated links, as entity pairs
    rel_frames: dict[str, pd.DataFrame] = {}
    extra_types: dict = {}
    if links is not None and len(links):
        mm = m.set_index(m["mention_id"].astype(str))[["entity_id", "entity_type", "cluster_id"]]
        lk = links[["src_mention_id", "dst_mention_id", "rel_type"]].astype(str)
        lk = lk.join(mm, on="src_mention_id", how="inner").rename(columns={"entity_id": "src", "entity_type": "src_type"})
        targets = mm.drop(columns="cluster_id")
        if share:
            away = lk["dst_mention_id"][~_isin(lk["dst_mention_id"], mm.index)].unique().tolist()
            if away:  # targets in other clusters' reports (or in no cluster: not found there either)
                far = full_m[_isin(full_m["mention_id"].astype(str), away)]
                far = _clustered_mentions(far, every)
                targets = pd.concat([targets, far.set_index(far["mention_id"].astype(str))[["entity_id", "entity_type"]]])
                extra_types = dict(zip(_obj(far["entity_id"]), _obj(far["entity_type"])))
        lk = lk.join(targets, on="dst_mention_id", how="inner").rename(
            columns={"entity_id": "dst", "entity_type": "dst_type"})
        rel_frames = {k: g for k, g in lk.groupby("rel_type", sort=True)}
    empty = pd.DataFrame(columns=["src", "dst", "src_type", "dst_type", "cluster_id"])

    def rel(*names: str) -> pd.DataFrame:
        parts = [rel_frames[n] for n in names if n in rel_frames]
        return pd.concat(parts, ignore_index=True) if parts else empty

    lives = rel("LIVES_AT")
    lives = lives[(lives["src_type"] == "person") & (lives["dst_type"] == "address")]
    # co-mention: a report with exactly one address, persons with a resident role
    addr = m[m["entity_type"] == "address"].drop_duplicates(["report_id", "entity_id"])
    one_addr = addr.groupby("report_id")["entity_id"].agg(["first", "size"])
    one_addr = one_addr[one_addr["size"] == 1]["first"]
    pers = m[(m["entity_type"] == "person") & role.isin(policy.resident_roles)]
    pers = pers[_isin(pers["report_id"], one_addr.index)]
    comention = pd.DataFrame({"cluster_id": pers["cluster_id"], "src": pers["entity_id"],
                              "dst": pers["report_id"].map(one_addr)})
    residence = pd.concat([lives[["cluster_id", "src", "dst"]], comention], ignore_index=True)

    directs = rel("DIRECTOR_OF", "OWNER_OF")
    directs = directs[(directs["src_type"] == "person") & (directs["dst_type"] == "business")]
    located = rel("LOCATED_AT")
    located = located[(located["src_type"] == "business") & (located["dst_type"] == "address")]
    uses = rel("USES")
    uses = uses[uses["src_type"].isin(_PARTIES) & uses["dst_type"].isin(_IDENTIFIERS)]
    parties = m[m["entity_type"].isin(_PARTIES)].drop_duplicates(["report_id", "entity_id"])
    one_party = parties.groupby("report_id")["entity_id"].agg(["first", "size"])
    one_party = one_party[one_party["size"] == 1]["first"]
    idents = m[m["entity_type"].isin(_IDENTIFIERS).to_numpy() & _isin(m["report_id"], one_party.index)]
    uses = pd.concat([uses[["cluster_id", "src", "dst"]],
                      pd.DataFrame({"cluster_id": idents["cluster_id"], "src": idents["report_id"].map(one_party),
                                    "dst": idents["entity_id"]})], ignore_index=True)

    # ---- per-cluster tuples
    rep_rows = pd.DataFrame({
        "cluster_id": rep["cluster_id"], "report_id": rep["report_id"],
        "received_at": _dates(rep["received_at"]) if "received_at" in rep.columns else None,
        "category": rep["category"] if "category" in rep.columns else None,
        "reporter_id": rep["reporter_id"].where(rep["reporter_id"].astype(str).str.strip() != "", None)
        if "reporter_id" in rep.columns else None,
    })
    rep_arrays = [_obj(rep_rows[c]) if c != "received_at" else rep_rows[c].to_numpy(object)
                  for c in ("report_id", "received_at", "category", "reporter_id")]
    # the rows by cluster, then report id (a stable sort: what sorting each cluster's rows by id gives), so
    # that each cluster's ReportInfo tuple is one slice, made once here rather than sorted per cluster
    names, order, starts, ends = _group_bounds(rep_rows["cluster_id"])
    if len(order):
        by_report = pd.factorize(rep_rows["report_id"], sort=True)[0]
        order = order[np.lexsort((by_report[order], np.repeat(np.arange(len(starts)), np.subtract(ends, starts))))]
    infos = [ReportInfo(*row) for row in zip(*(a[order].tolist() for a in rep_arrays))]
    rep_groups = {cid: tuple(infos[a:b]) for cid, a, b in zip(names, starts, ends)}
    relations = {"residence": _grouped(residence, ["src", "dst"]), "directs": _grouped(directs, ["src", "dst"]),
                 "located": _grouped(located, ["src", "dst"]), "uses": _grouped(uses, ["src", "dst"])}
    g_men = _grouped(m, ["report_id", "entity_id"])

    types = dict(zip(_obj(m["entity_id"]), _obj(m["entity_type"])))
    for e, t in extra_types.items():  # an entity has one type (its id says which)
        types.setdefault(e, t)
    # signals name entities (by label) only from the relations (linkage.triage.signals: ``labels``): only
    # those entities' labels are read (about two thirds of the clusters' entities; each a look-up in the store)
    named = set(pd.unique(pd.concat([f[c] for f in (residence, directs, located, uses) for c in ("src", "dst")],
                                    ignore_index=True).dropna().astype(str)).tolist())
    return rep_groups, relations, g_men, types, named


#: The most report rows plus mention rows (of the clusters gathered) that :func:`_gather` joins in plain Python
#: (:func:`_joined_small`) instead of with frame operations (:func:`_joined`). Measured on the 100k +1k run's
#: inputs (~900 reports, ~3,800 mentions of ~215 clusters): ~0.03 against ~0.065 s; per further row ~7 against
#: ~4 microseconds (pandas' cost is mostly fixed), so they meet at ~16,000 rows. Only the time depends on it:
#: both give the same result (tests/test_scoring_gather.py).
SMALL_GATHER_ROWS = 12_000


def _small_enough(cmap: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame,
                  links: pd.DataFrame | None) -> bool:
    """Whether :func:`_gather` joins in plain Python: few rows, the columns it reads there, and no missing ids
    where a frame join would match a missing value with a missing one (those inputs take :func:`_joined`)."""
    if len(reports) + len(mentions) > SMALL_GATHER_ROWS:
        return False
    if not {"report_id", "mention_id", "entity_id", "entity_type"} <= set(mentions.columns):
        return False
    if "report_id" not in reports.columns or cmap.isna().to_numpy().any():
        return False
    if links is not None and len(links):
        if not {"src_mention_id", "dst_mention_id", "rel_type"} <= set(links.columns):
            return False
        if links["src_mention_id"].isna().any() or links["dst_mention_id"].isna().any():
            return False
        if mentions["mention_id"].isna().any():
            return False
    return True


def _by_report(cmap: pd.DataFrame) -> dict[str, list[str]]:
    """report id -> its clusters (in ``cmap``'s order: what an inner merge on the report id gives)."""
    out: dict[str, list[str]] = {}
    for r, c in zip(_obj(cmap["report_id"]).tolist(), _obj(cmap["cluster_id"]).tolist()):
        out.setdefault(r, []).append(c)
    return out


def _runs(keys: list, items: list) -> dict:
    """key -> tuple of the ``items`` of each run of equal ``keys`` (sorted keys: one run each)."""
    out, at = {}, 0
    for key, run in itertools.groupby(keys):
        n = len(list(run))
        out[key] = tuple(items[at:at + n])
        at += n
    return out


def _rows_by_cluster(cids: Iterable[str], a: Iterable[str], b: Iterable[str]) -> dict[str, tuple]:
    """cluster_id -> tuple of the distinct (a, b) rows of the rows (cids[i], a[i], b[i]), sorted; the clusters
    sorted: what :func:`_grouped` gives for the same rows."""
    rows = sorted(set(zip(cids, a, b)))
    if not rows:
        return {}
    cs, xs, ys = zip(*rows)
    return _runs(list(cs), list(zip(xs, ys)))


def _joined_small(cmap: pd.DataFrame, every: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame,
                  full_m: pd.DataFrame, links: pd.DataFrame | None, policy: ScoringPolicy, share: bool) -> tuple:
    """:func:`_joined` for few rows (:func:`_small_enough`): the same result, joined in plain Python over the
    columns made as :func:`_joined` makes them (each an element-wise frame operation, so the values are
    those it joins), the frame joins' row order kept where it shows (which row of an entity id gives its
    type, which of a report's rows comes first)."""
    clusters_of = _by_report(cmap)

    # ---- reports, each with its clusters (an inner merge: report order, then cmap's), by cluster then report
    # id, ties in the merge's order (a stable sort: what _joined's ordering gives)
    n = len(reports)
    rids = _obj(reports["report_id"].astype(str)).tolist()
    dates = _dates(reports["received_at"]).tolist() if "received_at" in reports.columns else [None] * n
    cats = _obj(reports["category"]).tolist() if "category" in reports.columns else [None] * n
    if "reporter_id" in reports.columns:
        who = reports["reporter_id"]
        whos = _obj(who.where(who.astype(str).str.strip() != "", None)).tolist()
    else:
        whos = [None] * n
    merged = [(cid, rid, i) for i, rid in enumerate(rids) for cid in clusters_of.get(rid, ())]
    merged = [(cid, rid, k, i) for k, (cid, rid, i) in enumerate(merged)]
    merged.sort()
    rep_groups = _runs([r[0] for r in merged], [ReportInfo(rid, dates[i], cats[i], whos[i])
                                                for _, rid, _, i in merged])

    # ---- mentions with an entity, each with its report's clusters: columns (cluster, mention, report, type,
    # entity, role)
    def clustered(frame: pd.DataFrame, where: dict[str, list[str]], with_role: bool) -> list[list]:
        has = frame["entity_id"].notna().to_numpy().tolist()
        rid = _obj(frame["report_id"].astype(str)).tolist()
        pick = [(i, c) for i, (ok, r) in enumerate(zip(has, rid)) if ok for c in where.get(r, ())]
        at = [i for i, _ in pick]
        cols = [_obj(frame["mention_id"].astype(str)).tolist(), rid, _obj(frame["entity_type"]).tolist(),
                _obj(frame["entity_id"].astype(str)).tolist()]
        if with_role:
            cols.append(_obj(frame["role"].fillna("").astype(str).str.strip().str.lower()).tolist()
                        if "role" in frame.columns else [""] * len(frame))
        return [[c for _, c in pick]] + [list(map(col.__getitem__, at)) for col in cols]

    m_cid, m_mid, m_rid, m_typ, m_eid, m_role = clustered(mentions, clusters_of, True)
    types = dict(zip(m_eid, m_typ))

    # ---- stated links, as entity pairs: rows (cluster of the source mention, src, src type, dst, dst type, rel)
    lk: list[tuple] = []
    if links is not None and len(links):
        # mention id -> its rows (cluster, entity, type) as a source, (entity, type) as a target, in m's order
        sources: dict[str, tuple] = dict(zip(m_mid, zip(zip(m_cid, m_eid, m_typ))))  # one row each ...
        targets: dict[str, tuple] = dict(zip(m_mid, zip(zip(m_eid, m_typ))))
        if len(sources) < len(m_mid):  # ... unless a mention id has several rows
            sources, targets = {}, {}
            for mid, c, e, t in zip(m_mid, m_cid, m_eid, m_typ):
                sources[mid] = sources.get(mid, ()) + ((c, e, t),)
                targets[mid] = targets.get(mid, ()) + ((e, t),)
        chosen = links[_isin(links["src_mention_id"].astype(str), list(sources))]
        src, dst, rels = (_obj(chosen[c].astype(str)).tolist() for c in ("src_mention_id", "dst_mention_id",
                                                                          "rel_type"))
        if share:
            away = list(dict.fromkeys(d for d in dst if d not in targets))
            if away:  # targets in other clusters' reports (or in no cluster: not found there either)
                _, f_mid, _, f_typ, f_eid = clustered(full_m[_isin(full_m["mention_id"].astype(str), away)],
                                                      _by_report(every), False)
                for mid, e, t in zip(f_mid, f_eid, f_typ):
                    targets[mid] = targets.get(mid, ()) + ((e, t),)
                for e, t in dict(zip(f_eid, f_typ)).items():
                    types.setdefault(e, t)  # an entity has one type (its id says which)
        lk = [(cid, se, st, de, dt_, rel) for s, d, rel in zip(src, dst, rels) for cid, se, st in sources[s]
              for de, dt_ in targets.get(d, ())]

    def rel(names: tuple, src_types: tuple, dst_types: tuple) -> list[tuple]:
        return [(c, s, d) for c, s, st, d, dt_, r in lk if r in names and st in src_types and dt_ in dst_types]

    # co-mention: a report with exactly one address, persons with a resident role; a report with exactly one
    # party, the identifiers it mentions
    addrs: dict[str, set] = {}
    parties: dict[str, set] = {}
    for r, t, e in zip(m_rid, m_typ, m_eid):
        if t == "address":
            addrs.setdefault(r, set()).add(e)
        elif t in _PARTIES:
            parties.setdefault(r, set()).add(e)
    one_addr = {r: next(iter(es)) for r, es in addrs.items() if len(es) == 1}
    one_party = {r: next(iter(es)) for r, es in parties.items() if len(es) == 1}
    resident = set(policy.resident_roles)
    residence = rel(("LIVES_AT",), ("person",), ("address",)) + [
        (c, e, one_addr[r]) for c, r, t, e, role in zip(m_cid, m_rid, m_typ, m_eid, m_role)
        if t == "person" and r in one_addr and role in resident]
    directs = rel(("DIRECTOR_OF", "OWNER_OF"), ("person",), ("business",))
    located = rel(("LOCATED_AT",), ("business",), ("address",))
    uses = rel(("USES",), _PARTIES, _IDENTIFIERS) + [
        (c, one_party[r], e) for c, r, t, e in zip(m_cid, m_rid, m_typ, m_eid) if r in one_party and t in _IDENTIFIERS]

    relations = {name: _rows_by_cluster(*zip(*rows)) if rows else {} for name, rows in
                 (("residence", residence), ("directs", directs), ("located", located), ("uses", uses))}
    g_men = _rows_by_cluster(m_cid, m_rid, m_eid)
    named = {x for rows in (residence, directs, located, uses) for _, s, d in rows for x in (s, d)}
    return rep_groups, relations, g_men, types, named


def _context(g: _Gathered, cid: str) -> ClusterContext:
    """The :class:`ClusterContext` of cluster ``cid`` (one of ``g.rep_groups``)."""
    rel = g.relations
    return ClusterContext(cluster_id=cid, now=g.now, reports=g.rep_groups[cid], residence=rel["residence"].get(cid, ()),
                          directs=rel["directs"].get(cid, ()), located=rel["located"].get(cid, ()),
                          uses=rel["uses"].get(cid, ()), mentioned=g.mentioned.get(cid, ()),
                          entity_types=g.types, labels=g.labels, policy=g.policy)


def inputs_digest(ctx: ClusterContext) -> str:
    """A digest (32 hex digits) of everything the signals read of a cluster but the reference date ``now`` and
    the policy: its id; its reports (id, date, category, and which of them share a named reporter: the
    reporter ids themselves stay out); the mentioned entities and the relations, with the labels of the
    relations' entities (the only ones a sentence names, :mod:`linkage.triage.signals`), and the type of each
    mentioned entity (an entity has one type, the one its id names, so this only guards against ids made
    otherwise). Two contexts with the same digest give the same signals at the same
    ``now`` under the same policy (:data:`PARTS_VERSION` names the signals' code), so a run may take a
    cluster's kept parts when its digest is the one they were made with (:func:`score_with_parts`).

    The values are Python ``str``, ``int`` and None (what :func:`_gather` makes of the columns), in tuples
    and lists, serialised by :mod:`marshal` (format 2: no references, so equal values give equal bytes; each
    such value is written with its type and length, so other values give other bytes; numpy scalars would be
    written as their raw bytes, type lost, and must not be given), or by ``repr`` when one of them is of a
    type marshal does not write; the digest is the first half of their SHA-256.

    >>> r = (ReportInfo("R1", dt.date(2024, 5, 1), "drugs", "a"), ReportInfo("R2", None, None, "a"))
    >>> one = ClusterContext("c_1", dt.date(2024, 5, 1), r, mentioned=(("R1", "P"), ("R2", "P")))
    >>> later = ClusterContext("c_1", dt.date(2024, 9, 1), r, mentioned=(("R1", "P"), ("R2", "P")))
    >>> other = ClusterContext("c_1", dt.date(2024, 5, 1), r, mentioned=(("R1", "P"), ("R2", "Q")))
    >>> inputs_digest(one) == inputs_digest(later) != inputs_digest(other)
    True
    """
    seen: dict = {}
    reports = [(r.report_id, None if r.received_at is None else r.received_at.toordinal(), r.category,
                seen.setdefault(r.reporter_id, len(seen)) if r.reporter_id else None) for r in ctx.reports]
    label_of = ctx.labels.get
    related = (ctx.residence, ctx.directs, ctx.located, ctx.uses)
    type_of = ctx.entity_types.get
    values = (ctx.cluster_id, reports, ctx.mentioned, related,
              [(label_of(a), label_of(b)) for rel in related for a, b in rel], [type_of(e) for _, e in ctx.mentioned])
    try:
        data = b"m" + marshal.dumps(values, 2)
    except ValueError:  # a value of a type marshal does not write (a str subclass, a date): its repr
        data = b"r" + repr(values).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:32]


def build_contexts(clusters: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame,
                   links: pd.DataFrame | None, entities: pd.DataFrame | None, now: dt.date,
                   policy: ScoringPolicy) -> Iterator[ClusterContext]:
    """One :class:`ClusterContext` per cluster (sorted by cluster_id), built with vectorised joins.

    Relations are gathered as documented in :mod:`linkage.triage.signals`.
    """
    g = _gather(clusters, reports, mentions, links, entities, now, policy)
    for cid in sorted(g.rep_groups):
        yield _context(g, cid)


def _record(s: Signal, policy: ScoringPolicy) -> dict[str, Any]:
    """One signal as stored: name, value, its term's weight, the points it earns, sentence and inputs."""
    term = policy.terms.get(s.name)
    pts = round(term.points(s.value), 3) if term else 0.0
    return {"name": s.name, "value": s.value, "weight": term.weight if term else 0.0, "points": pts,
            "sentence": s.sentence, "inputs": dict(s.inputs)}


def _summary(points: list[float], sentence: Callable[[int], str]) -> tuple[float, str]:
    """(score, reason) of signals with these ``points`` in registry order; ``sentence(i)`` gives signal i's
    sentence (only the up to three that make the reason are asked for)."""
    total = 0.0
    for p in points:  # summed in record order, so the score is the same float wherever it is computed
        total += p
    order = sorted(range(len(points)), key=lambda i: (-points[i], i))
    top = [sentence(i).rstrip(".") for i in order[:3] if points[i] > 0]
    return round(total, 2), ("; ".join(top) + "." if top else "No signal scored.")


def explain(signals: list[Signal], policy: ScoringPolicy) -> tuple[float, list[dict[str, Any]], str]:
    """(score, signal records with weight and points, reason line) for one cluster's signals.

    The reason joins the sentences of the (up to) three signals with the most points (ties: registry order).
    """
    records = [_record(s, policy) for s in signals]
    score, reason = _summary([r["points"] for r in records], lambda i: records[i]["sentence"])
    return score, records, reason


def score_clusters(clusters: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame,
                   links: pd.DataFrame | None = None, entities: pd.DataFrame | None = None,
                   now: dt.date | None = None, settings: ScoringPolicy | str | None = None,
                   processes: int = 1, min_parallel: int | None = None) -> pd.DataFrame:
    """Score and rank every cluster (see the module docstring for the columns).

    Parameters
    ----------
    clusters:
        ``report_id, cluster_id`` (clustered reports only).
    reports, mentions, links, entities:
        The resolved tables; ``links`` and ``entities`` may be None.
    now:
        Reference date for recency. Default: the newest ``received_at`` in ``reports``
        (:func:`data_now`), so a re-run on the same data gives the same scores.
    settings:
        A :class:`ScoringPolicy`, the path of a scoring TOML, or None for ``linkage/triage/scoring.toml``.
    processes:
        Score the clusters in up to this many processes (this one and forked workers, Linux; each takes a run
        of consecutive clusters of about equal work and the rows are joined in cluster order, so the result is
        the same for any number). Fewer than ``min_parallel`` clusters (default
        :data:`PARALLEL_MIN_CLUSTERS`): one process.

    Raises
    ------
    ConfigError
        The scoring policy file is malformed.

    ``skip`` (cluster ids of ``clusters``): clusters the caller knows to have the inputs the former run scored
    them from (:func:`linkage.graph.incremental.unchanged_clusters`): neither gathered nor scored, and left out
    of ``scored``, ``parts`` and ``unchanged`` alike; the others get what they get with them (their links to
    mentions of the skipped clusters' reports are joined as before: :func:`_gather`'s ``only``).

    >>> clusters = pd.DataFrame({"report_id": ["R1", "R2"], "cluster_id": ["c_1", "c_1"]})
    >>> reports = pd.DataFrame({"report_id": ["R1", "R2"], "received_at": ["2024-05-01", "2024-05-02"],
    ...                         "category": ["drugs", "hennepteelt"], "reporter_id": ["a", None]})
    >>> mentions = pd.DataFrame({"mention_id": ["m1", "m2"], "report_id": ["R1", "R2"], "entity_type": ["phone"] * 2,
    ...                          "role": [None, None], "entity_id": ["T1", "T1"]})
    >>> out = score_clusters(clusters, reports, mentions)
    >>> out[["cluster_id", "rank", "n_reports", "n_reporters"]].values.tolist(), out["categories"][0]
    ([['c_1', 1, 2, 2]], ['drugs', 'hennepteelt'])
    """
    return _score_clusters(clusters, reports, mentions, links, entities, now, settings, keep_parts=False,
                           processes=processes, min_parallel=min_parallel)[0]


def score_with_parts(clusters: pd.DataFrame, reports: pd.DataFrame, mentions: pd.DataFrame,
                     links: pd.DataFrame | None = None, entities: pd.DataFrame | None = None,
                     now: dt.date | None = None, settings: ScoringPolicy | str | None = None,
                     processes: int = 1, min_parallel: int | None = None,
                     router: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                     known: Mapping[str, str] | None = None, unchanged: list | None = None,
                     skip: Collection[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(scored, parts)``: what :func:`score_clusters` gives, and per cluster the :data:`PART_COLUMNS` that
    let :func:`rescore` give the same row at another reference date without the cluster's reports.
    ``processes`` and ``min_parallel`` as for :func:`score_clusters`.

    ``router`` (routing of scored rows, e.g. :func:`linkage.triage.routing.route_rows` with its rules): called
    in each scoring process on its clusters' ``cluster_id, score, categories`` and ``signals`` (name -> value),
    giving one row (a dict) per cluster in that order; ``scored`` then has a column ``routed`` holding each
    cluster's row (the routing of each cluster is its own, so routing the runs apart gives what routing them
    together gives).

    ``known`` (cluster id -> the ``inputs`` digest a former run kept in its parts): a cluster whose inputs
    digest (:func:`inputs_digest`) is the one given for it is not scored: it is left out of ``scored`` and
    ``parts`` and its id put into ``unchanged`` (a list, in cluster order). Its signals but the recency, its
    score at the former run's reference date and its parts are then what that run kept (the signals read
    nothing else): :func:`rescore` gives its row at ``now`` from the kept parts.

    >>> clusters = pd.DataFrame({"report_id": ["R1", "R2"], "cluster_id": ["c_1", "c_1"]})
    >>> reports = pd.DataFrame({"report_id": ["R1", "R2"], "received_at": ["2024-05-01", "2024-05-02"],
    ...                         "category": ["drugs", "drugs"], "reporter_id": ["a", "b"]})
    >>> mentions = pd.DataFrame({"mention_id": ["m1", "m2"], "report_id": ["R1", "R2"], "entity_type": ["phone"] * 2,
    ...                          "role": [None, None], "entity_id": ["T1", "T1"]})
    >>> scored, parts = score_with_parts(clusters, reports, mentions)
    >>> parts[["cluster_id", "newest", "oldest"]].values.tolist()
    [['c_1', '2024-05-02', '2024-05-01']]
    >>> same: list = []
    >>> again, _ = score_with_parts(clusters, reports, mentions, known=dict(zip(parts["cluster_id"], parts["inputs"])),
    ...                            unchanged=same)
    >>> len(again), same
    (0, ['c_1'])
    """
    return _score_clusters(clusters, reports, mentions, links, entities, now, settings, keep_parts=True,
                           processes=processes, min_parallel=min_parallel, router=router, known=known,
                           unchanged=unchanged, skip=skip)


#: The only signal that reads the reference date ``now``; every other signal is a function of the cluster's own
#: reports, mentions and links (see :func:`rescore`).
NOW_SIGNAL = "recency"
#: What :func:`score_with_parts` keeps per cluster: the newest and oldest report date (``YYYY-MM-DD``, '' when
#: no report has a date), every signal's points and value in :data:`SIGNALS` order, the (up to) three
#: other signals that scored most, as JSON ``[[index, points, sentence], ...]``, the signals JSON text
#: before and after the recency record (``head + recency record + tail`` is the ``signals`` column), and
#: ``inputs``, the digest of everything the signals read of the cluster but the reference date
#: (:func:`inputs_digest`): a later run whose cluster has the same digest takes these parts as they are.
PART_COLUMNS = ["cluster_id", "newest", "oldest", "points", "values", "top", "head", "tail", "inputs"]
#: Version of the kept parts and of the signals' sentences and points: raise it whenever a signal's
#: computation or sentence, :data:`PART_COLUMNS` or the record layout changes, so that scores kept by a run
#: of older code are computed again instead of mixed with new ones (``linkage.pipeline._scores_usable``).
PARTS_VERSION = 3


#: One encoder for every JSON text the scores hold: ``_dumps(v)`` is ``json.dumps(v, ensure_ascii=False,
#: default=str)`` (json.dumps builds this same encoder on every call with these arguments), without the
#: check for circular references: the records are fresh dicts and lists (a cycle cannot occur), and the
#: check only raises on one, it never changes a text.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=False, default=str, check_circular=False)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


#: Fewer clusters than this are scored in this process even when more processes are allowed (starting a
#: worker costs more than it saves); :func:`score_with_parts`' ``min_parallel`` overrides it.
PARALLEL_MIN_CLUSTERS = 2000


def _score_clusters(clusters, reports, mentions, links, entities, now, settings, keep_parts: bool,
                    processes: int = 1, min_parallel: int | None = None, router: Callable | None = None,
                    known: Mapping[str, str] | None = None, unchanged: list | None = None,
                    skip: Collection[str] | None = None):
    if known is not None and unchanged is None:
        raise ValueError("_score_clusters: known= leaves out clusters; pass unchanged= to learn which")
    policy = as_policy(settings)
    if now is None:
        now = data_now(reports)
    least = PARALLEL_MIN_CLUSTERS if min_parallel is None else min_parallel
    n = 1
    only = None
    if skip:  # the others gathered as a share of all (links to the skipped clusters' mentions joined as before)
        skip = set(skip)
        only = [c for c in pd.unique(clusters["cluster_id"].astype(str)).tolist() if c not in skip]
    if processes > 1 and _can_fork():
        cids, sizes = _cluster_work(clusters)
        if skip:
            cids = [c for c in cids if c not in skip]
        n = processes if len(cids) >= max(least, 2) else 1
    if n > 1:  # each process gathers its own clusters' inputs (forked before gathering)
        job = (clusters, reports, mentions, links, entities, now, policy)
        results = _in_processes(_gather_and_score, job, _chunks(cids, sizes, n), (keep_parts, router, known))
    else:
        g = _gather(clusters, reports, mentions, links, entities, now, policy, only=only)
        results = [_score_chunk(g, sorted(g.rep_groups), keep_parts, router, known)]
    rows, parts = [], []
    for chunk_rows, chunk_parts, chunk_same in results:
        rows.extend(chunk_rows)
        parts.extend(chunk_parts)
        if unchanged is not None:
            unchanged.extend(chunk_same)
    parts_df = pd.DataFrame(parts, columns=PART_COLUMNS)
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SCORED_COLUMNS}), parts_df
    out = pd.DataFrame(rows).sort_values(["score", "cluster_id"], ascending=[False, True], kind="stable")
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return out[SCORED_COLUMNS + (["routed"] if router is not None else [])].reset_index(drop=True), parts_df


def _score_chunk(g: _Gathered, cids: Sequence[str], keep_parts: bool, router: Callable | None = None,
                 known: Mapping[str, str] | None = None) -> tuple[list[dict], list[dict], list[str]]:
    """``(rows, parts, same)`` of the clusters ``cids`` (in that order): every signal, the score, reason and
    signals JSON of each, with ``keep_parts`` its :data:`PART_COLUMNS`, and with ``router`` its routing row
    (``routed``). Each cluster's row depends on its own context alone, so any split of the clusters gives the
    same rows. With ``keep_parts``, a cluster whose :func:`inputs_digest` is ``known[cluster id]`` is not
    scored: its id goes into ``same`` instead."""
    policy = g.policy
    names = list(SIGNALS)
    k = names.index(NOW_SIGNAL) if keep_parts else -1
    rows, parts, values, same = [], [], [], []
    known = known or {}
    for cid in cids:
        ctx = _context(g, cid)
        if keep_parts:
            digest = inputs_digest(ctx)
            if known.get(cid) == digest:
                same.append(cid)
                continue
        sigs = [fn(ctx) for fn in SIGNALS.values()]
        records = [_record(s, policy) for s in sigs]
        points = [r["points"] for r in records]
        score, reason = _summary(points, lambda i: records[i]["sentence"])
        if keep_parts:  # [r0, .., rk-1] + rk + [rk+1, ..]: json.dumps joins list items with ", "
            head, rec, tail = _dumps(records[:k]), _dumps(records[k]), _dumps(records[k + 1:])
            head = head[:-1] + ", " if k else "["
            tail = ", " + tail[1:] if k + 1 < len(records) else "]"
            signals = head + rec + tail
            dates = [r.received_at for r in ctx.reports if r.received_at is not None]
            top = sorted((i for i in range(len(points)) if i != k and points[i] > 0), key=lambda i: (-points[i], i))
            parts.append({
                "cluster_id": ctx.cluster_id,
                "newest": max(dates).isoformat() if dates else "", "oldest": min(dates).isoformat() if dates else "",
                "points": [float(p) for p in points], "values": [float(s.value) for s in sigs],
                "top": _dumps([[i, points[i], records[i]["sentence"]] for i in top[:3]]), "head": head, "tail": tail,
                "inputs": digest})
        else:
            signals = _dumps(records)
        cats: dict[str, int] = {}
        for r in ctx.reports:
            c = r.category or "overig"
            cats[c] = cats.get(c, 0) + 1
        if router is not None:
            values.append(dict(zip(names, [float(s.value) for s in sigs])))
        named = {r.reporter_id for r in ctx.reports if r.reporter_id}
        anon = sum(1 for r in ctx.reports if not r.reporter_id)
        rows.append({
            "cluster_id": ctx.cluster_id, "score": score, "n_reports": len(ctx.reports),
            "n_reporters": len(named) + anon,
            "categories": sorted(cats, key=lambda c: (-cats[c], c)),
            "signals": signals,
            "reason": reason,
        })
    if router is not None and rows:
        routed = router(pd.DataFrame({"cluster_id": [r["cluster_id"] for r in rows],
                                      "score": [r["score"] for r in rows],
                                      "categories": [r["categories"] for r in rows], "signals": values}))
        for row, r in zip(rows, routed):
            row["routed"] = r
    return rows, parts, same


def _gather_and_score(job: tuple, cids: Sequence[str], opts: tuple) -> tuple[list[dict], list[dict], list[str]]:
    """:func:`_score_chunk` of the clusters ``cids`` (sorted), gathering only their inputs (``job``: the
    arguments of :func:`_gather`; ``opts``: ``keep_parts``, ``router`` and ``known``). A cluster of ``cids`` none of whose
    reports is in ``reports`` is left out, as the gathering over all clusters leaves it out."""
    clusters, reports, mentions, links, entities, now, policy = job
    g = _gather(clusters, reports, mentions, links, entities, now, policy, only=cids)
    return _score_chunk(g, sorted(g.rep_groups), *opts)


def _cluster_work(clusters: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    """(sorted distinct cluster ids as text, cluster -> its number of reports): the work each cluster takes
    (reports have about as many mentions each), to cut the clusters into runs of about equal work
    (:func:`_chunks`; only the cut depends on it, never a result)."""
    work = clusters["cluster_id"].astype(str).value_counts()
    return sorted(work.index.tolist()), dict(zip(work.index.tolist(), work.tolist()))


def _chunks(cids: list[str], sizes: Mapping[str, int], n: int) -> list[list[str]]:
    """``cids`` (sorted) cut into ``n`` consecutive runs of about equal work (``sizes``: rows per cluster), so
    that joining the runs' results in order gives the clusters in order. Never an empty run.

    >>> _chunks(["a", "b", "c", "d"], {"a": 5, "b": 1, "c": 2, "d": 2}, 2)
    [['a'], ['b', 'c', 'd']]
    >>> _chunks(["a", "b"], {}, 1)
    [['a', 'b']]
    """
    n = max(1, min(n, len(cids)))
    if n == 1:
        return [list(cids)]
    work = np.cumsum([max(1, int(sizes.get(c, 1))) for c in cids])
    bounds = [0]
    for i in range(1, n):  # run i ends after the cluster where the work reaches i/n; every run keeps one
        cut = int(np.searchsorted(work, work[-1] * i / n, side="left")) + 1
        bounds.append(min(max(cut, bounds[-1] + 1), len(cids) - (n - i)))
    bounds.append(len(cids))
    return [list(cids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _can_fork() -> bool:
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


#: What forked scoring workers inherit (set only while :func:`_in_processes` runs).
_FORKED: dict[str, Any] = {}


def _forked_chunk(i: int) -> Any:
    fn, g, chunks, arg = _FORKED["job"]
    return fn(g, chunks[i], arg)


def _in_processes(fn: Callable, g: Any, chunks: list[list[str]], arg: Any) -> list:
    """``[fn(g, chunk, arg) for chunk in chunks]``: the first chunk in this process, each other one in a forked
    worker process that inherits ``g`` (gathered inputs, or the tables to gather from: nothing is pickled in;
    only the results come back)."""
    if len(chunks) <= 1:
        return [fn(g, c, arg) for c in chunks]
    from concurrent.futures.process import BrokenProcessPool

    from linkage.forking import fork_pool

    _FORKED["job"] = (fn, g, chunks, arg)
    try:
        with fork_pool(len(chunks) - 1) as pool:  # its workers end if this process is killed
            futures = [pool.submit(_forked_chunk, i) for i in range(1, len(chunks))]
            first = fn(g, chunks[0], arg)
            return [first] + [f.result() for f in futures]
    except BrokenProcessPool:
        from linkage.errors import LinkageError

        raise LinkageError(
            "scoring clusters: a worker process stopped unexpectedly (killed, or out of memory?). Nothing was "
            "written; run again, or set [scoring] processes = 1 to score every cluster in this process") from None
    finally:
        _FORKED.clear()


def rescore(parts: pd.DataFrame, now: dt.date, settings: ScoringPolicy | str | None = None
            ) -> tuple[list[float], list[str], list[str], list[dict[str, float]]]:
    """``(scores, signals JSON texts, reasons, signal values)`` of clusters at reference date ``now``, from the
    :data:`PART_COLUMNS` :func:`score_with_parts` kept (rows in the order given).

    Only :data:`NOW_SIGNAL` reads ``now``, and it reads only the newest and oldest report date: its record is
    made once per distinct newest date (:func:`_recency_records`, the oldest date put into its text); the score is
    the other signals' kept points plus its points, summed in registry order as :func:`explain` sums
    (vectorised over the clusters); the reason is picked from the kept top three and the recency sentence. So
    each row equals what :func:`score_clusters` gives for that cluster at ``now``. ``values`` (name -> value,
    per cluster) is what routing reads.

    >>> clusters = pd.DataFrame({"report_id": ["R1", "R2"], "cluster_id": ["c_1", "c_1"]})
    >>> reports = pd.DataFrame({"report_id": ["R1", "R2"], "received_at": ["2024-05-01", "2024-05-02"],
    ...                         "category": ["drugs", "drugs"], "reporter_id": ["a", "b"]})
    >>> mentions = pd.DataFrame({"mention_id": ["m1", "m2"], "report_id": ["R1", "R2"], "entity_type": ["phone"] * 2,
    ...                          "role": [None, None], "entity_id": ["T1", "T1"]})
    >>> later = dt.date(2024, 8, 1)
    >>> _, parts = score_with_parts(clusters, reports, mentions)
    >>> again = score_clusters(clusters, reports, mentions, now=later)
    >>> scores, signals, reasons, values = rescore(parts, later)
    >>> (scores, signals, reasons) == (again["score"].tolist(), again["signals"].tolist(), again["reason"].tolist())
    True
    """
    policy = as_policy(settings)
    names = list(SIGNALS)
    k = names.index(NOW_SIGNAL)
    n = len(parts)
    if n == 0:
        return [], [], [], []
    records = _recency_records(parts["newest"].tolist(), parts["oldest"].tolist(), now, policy)
    rec_points = np.fromiter((r[0] for r in records), dtype=np.float64, count=n)
    rec_values = [r[1] for r in records]
    rec_texts = [r[2] for r in records]
    rec_sentences = [r[3] for r in records]
    points = _matrix(parts["points"], len(names))
    points[:, k] = rec_points
    total = np.zeros(n, dtype=np.float64)
    for j in range(len(names)):  # in registry order, as explain sums: the same floats
        total = total + points[:, j]
    scores = [round(t, 2) for t in total.tolist()]
    signals = [h + r + t for h, r, t in zip(parts["head"].tolist(), rec_texts, parts["tail"].tolist())]
    reasons = []
    for top, p, sentence in zip(parts["top"].tolist(), rec_points.tolist(), rec_sentences):
        cands = [(i, q, s) for i, q, s in json.loads(top)]
        if p > 0:
            cands.append((k, p, sentence))
        cands.sort(key=lambda c: (-c[1], c[0]))
        reasons.append("; ".join(s.rstrip(".") for _, _, s in cands[:3]) + "." if cands else "No signal scored.")
    values = []
    for row, v in zip(_matrix(parts["values"], len(names)).tolist(), rec_values):  # Python floats
        d = dict(zip(names, row))
        d[NOW_SIGNAL] = v
        values.append(d)
    return scores, signals, reasons, values


def recency_level_moved(newest: list[str], before: dt.date, now: dt.date,
                        settings: ScoringPolicy | str | None = None) -> np.ndarray:
    """Per cluster (its newest report date, ``YYYY-MM-DD`` or '' when none is dated): whether its recency level
    (``[[recency.levels]]``) at reference date ``now`` differs from the one at ``before``. Every other cluster's
    recency signal, and so its score, signals and reason, is exactly what it was at ``before``
    (:func:`linkage.triage.signals.recency` reads nothing else).

    >>> recency_level_moved(["2024-06-01", "2024-05-02", ""], dt.date(2024, 6, 1), dt.date(2024, 6, 5)).tolist()
    [False, True, False]
    """
    policy = as_policy(settings)
    bounds = np.asarray([lv.within_days for lv in policy.recency_levels], dtype=np.int64)
    dated = np.asarray([bool(d) for d in newest], dtype=bool)
    days = np.zeros(len(newest), dtype=np.int64)
    if dated.any():
        stamp = np.asarray([d for d in newest if d], dtype="datetime64[D]")
        days[dated] = stamp.astype(np.int64)

    def level(at: dt.date) -> np.ndarray:
        age = np.maximum(np.datetime64(at.isoformat(), "D").astype(np.int64) - days, 0)
        return np.searchsorted(bounds, age, side="left")  # the first level with within_days >= age

    return dated & (level(before) != level(now))


#: A stand-in oldest date for :func:`_recency_records`: no report is dated on it, so its text occurs in a
#: recency record only where the record repeats the oldest date (its ``inputs``).
_OLDEST_MARK = dt.date(1, 1, 1)


def _recency_records(newest: list[str], oldest: list[str], now: dt.date, policy: ScoringPolicy
                     ) -> list[tuple[float, float, str, str]]:
    """Per cluster ``(points, value, record JSON text, sentence)`` of :data:`NOW_SIGNAL` at ``now``, from its
    newest and oldest report dates (``YYYY-MM-DD``, '' when no report has a date).

    The signal is computed once per distinct newest date, from a stand-in context holding that date and
    :data:`_OLDEST_MARK`: its value, points and sentence read only the newest date, the oldest is only
    repeated in the record's inputs, so each cluster's record text is the stand-in's with the mark's JSON
    text replaced by its own oldest date. When the mark's text does not occur exactly once (a signal that
    reads the oldest date otherwise), the record is made per ``(newest, oldest)`` instead. Either way each
    text is the one :func:`_record` gives for the cluster's own reports.
    """
    fn = SIGNALS[NOW_SIGNAL]
    mark = _dumps(_OLDEST_MARK.isoformat())

    def made(dates: tuple[dt.date, ...]) -> tuple[float, float, str, str]:
        stand_in = tuple(ReportInfo("", d, None) for d in dates)
        sig = fn(ClusterContext(cluster_id="", now=now, reports=stand_in, policy=policy))
        rec = _record(sig, policy)
        return rec["points"], float(sig.value), _dumps(rec), sig.sentence

    by_newest: dict[str, tuple] = {}
    by_pair: dict[tuple[str, str], tuple[float, float, str, str]] = {}
    out = []
    for new, old in zip(newest, oldest):
        if not new:
            got = by_pair.get(("", ""))
            if got is None:
                got = by_pair[("", "")] = made(())
            out.append(got)
            continue
        tpl = by_newest.get(new)
        if tpl is None:
            points, value, text, sentence = made((_OLDEST_MARK, dt.date.fromisoformat(new)))
            pieces = text.split(mark)
            tpl = by_newest[new] = (points, value, pieces, sentence) if len(pieces) == 2 else None
        if tpl is not None and old and old != _OLDEST_MARK.isoformat():
            points, value, pieces, sentence = tpl
            out.append((points, value, pieces[0] + _dumps(old) + pieces[1], sentence))
            continue
        got = by_pair.get((new, old))
        if got is None:
            dates = tuple(dt.date.fromisoformat(d) for d in sorted({old, new} - {""}))
            got = by_pair[(new, old)] = made(dates)
        out.append(got)
    return out


def _matrix(column: pd.Series, width: int) -> np.ndarray:
    """A column of equal-length number lists (or arrays, as parquet gives them back) as a float64 matrix."""
    rows = column.tolist()
    if not rows:
        return np.zeros((0, width), dtype=np.float64)
    return np.vstack([np.asarray(r, dtype=np.float64) for r in rows]).reshape(len(rows), width)


def rank_scored(parts: list[pd.DataFrame], columns: Sequence[str] | None = SCORED_COLUMNS) -> pd.DataFrame:
    """Scored rows of several parts (fresh and carried over) as one ranked table, as :func:`score_clusters`
    ranks: by score (desc), then cluster_id; ``rank`` second. ``columns=None`` keeps every column of the parts
    (routed rows), otherwise only ``columns``."""
    parts = [p.drop(columns=["rank"], errors="ignore") for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SCORED_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    order = _rank_order(out)
    out = out.sort_values(["score", "cluster_id"], ascending=[False, True], kind="stable") if order is None \
        else out.take(order)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return (out if columns is None else out[list(columns)]).reset_index(drop=True)


#: Score dtypes :func:`_rank_order` sorts in Arrow (Arrow's sort has no half floats).
_ARROW_SORTED_SCORES = frozenset(np.dtype(t) for t in ("float64", "float32", "int64", "int32", "int16", "int8",
                                                        "uint64", "uint32", "uint16", "uint8"))


def _rank_order(frame: pd.DataFrame) -> np.ndarray | None:
    """The row order of ``frame.sort_values(["score", "cluster_id"], ascending=[False, True], kind="stable")``
    found by Arrow (a stable sort over both keys; ids compared as UTF-8 bytes, the code point order pandas
    compares in; 10,700 clusters: ~8 -> ~3 ms), when the scores are numbers Arrow sorts (no half floats) without
    NaN and the ids text (not categorical) without a missing one; None otherwise (the caller sorts with pandas).

    >>> f = pd.DataFrame({"cluster_id": ["b", "a", "c", "é"], "score": [1.0, 1.0, 2.0, 1.0]})
    >>> _rank_order(f).tolist()
    [2, 1, 0, 3]
    >>> _rank_order(f.assign(score=[1.0, None, 2.0, 1.0])) is None
    True
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from linkage.arrays import arrow_text

    score = frame["score"].to_numpy()
    if score.dtype not in _ARROW_SORTED_SCORES or (score.dtype.kind == "f" and np.isnan(score).any()):
        return None
    if isinstance(frame["cluster_id"].dtype, pd.CategoricalDtype):  # pandas sorts those by category order
        return None
    try:
        ids = arrow_text(frame["cluster_id"])
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
        return None
    if ids.null_count:
        return None
    keys = pa.table({"score": pa.array(score), "cluster_id": ids})
    return pc.sort_indices(keys, sort_keys=[("score", "descending"), ("cluster_id", "ascending")]).to_numpy()
