"""Corroborated possible matches: evidence that entity resolution scored but did not act on, as report links.

In:  the scored pairs of entity resolution (per fuzzy type: mention ids, pair indices and match probability,
     as the store's ER state keeps them, :func:`linkage.resolve.incremental.stored_pair_probabilities`), the
     resolved ``mentions`` (``mention_id, report_id, entity_id, anchored``), the ``reports``
     (``report_id, reporter_id``) and the graph policy (``[candidates]`` in ``graph.toml``).
Out: :func:`candidate_rows` -> ``DataFrame[report_id, entity_id, entity_type, link_weight]``: two rows per
     linked report pair, sharing one *candidate link* id (``~cand:<report>|<report>|<type>``), which
     :func:`linkage.graph.communities.report_graph` turns into one report-report link of exactly
     ``link_weight``. Entity resolution's own decisions (``mention_entities``) are never changed, and these
     rows join only the mentions given to clustering (:func:`with_candidates`), never those that scoring,
     signals or exports read.

Why: entity resolution is precision-first. A person named without BSN or birth date, whose name several
persons carry (namesakes), stays a separate entity; so does a business named without KvK number whose
name recurs. The report that mentions it then loses its link to the rest of a network ("split by ER" in
``bench/bench_clusters.py --diagnose``). Entity resolution did compare and score such a pair: "possibly the
same". On its own that is weak evidence: on generated data (10k reports, seed 7) only 10-17 % of the unmerged
person pairs with a match probability of 0.1-0.5 are truly one person, and linking reports through them, even
through a mention's single best candidate, glued namesakes' reports to networks and lowered the planted
networks recovered (0.827 -> 0.70-0.80). Two reports *filed by the same reporter* that possibly mention the
same person, business or address are another matter: a case worker who reports on "M. Amrani" again most
likely means the same one. At 100k reports (seed 7) 70 % of such report pairs belong to one planted network.

So a candidate link joins two reports when

- entity resolution scored a pair of their mentions of a type listed in ``[candidates] factor`` with a match
  probability of at least ``min_probability`` and gave the two mentions different entities;
- the two reports come from the same known reporter (anonymous reports never corroborate);
- not both mentions are anchored (for a type with ``[anchors]``: a person with BSN or birth date on both
  sides was kept apart on identifying evidence, which a candidate link does not overrule).

Its weight is ``factor[type] * specificity(reports filed by that reporter)``: a reporter who files very many
reports corroborates less (the same specificity function as for shared entities). Several candidate pairs of
one type between the same two reports count once. A candidate link is never more than a link: Leiden decides
with all the others whether the two reports belong together.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.graph.weights import GraphSettings, as_graph_settings, specificity

#: Prefix of candidate link ids (a resolved entity id never starts with it).
CANDIDATE_PREFIX = "~cand:"
#: Suffix of the entity type of candidate rows (``person~candidate``).
CANDIDATE_SUFFIX = "~candidate"
CANDIDATE_COLUMNS = ["report_id", "entity_id", "entity_type", "link_weight"]
PAIR_COLUMNS = ["report_a", "report_b", "entity_type", "link_weight"]


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.float64 if c == "link_weight" else object) for c in columns})


def _arrow(values: pd.Series) -> pa.Array:
    """A column as one arrow string array (missing values null)."""
    arr = pa.array(values.astype("string[pyarrow]"), type=pa.string())
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _codes(values: pa.Array, within: pa.Array) -> np.ndarray:
    """Position of each value in ``within`` (-1: not there or null)."""
    return pc.fill_null(pc.index_in(values, value_set=within), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def candidate_pairs(scored: Iterable[Any], mentions: pd.DataFrame, reports: pd.DataFrame,
                    settings: GraphSettings | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The report pairs that corroborated possible matches link, with their weight (see the module docstring).

    Parameters
    ----------
    scored:
        Scored pairs per entity type: objects with ``entity_type``, ``mention_ids`` (record order) and
        ``left``, ``right`` (indices into them), ``prob`` (as :class:`~linkage.resolve.engine.ScoredPairs`).
    mentions:
        Resolved mentions: ``mention_id, report_id, entity_id`` and optionally ``anchored`` (missing: no
        mention counts as anchored). Pairs of mentions not in it (purged since) are ignored.
    reports:
        ``report_id, reporter_id`` (empty or missing: anonymous).
    settings:
        Graph policy (``candidates_factor``, ``candidates_min_probability``, ``specificity``, ``anchors``).

    Returns
    -------
    ``DataFrame[report_a, report_b, entity_type, link_weight]`` with ``report_a < report_b``, sorted.
    """
    s = as_graph_settings(settings)
    factors = {t: float(f) for t, f in s.candidates_factor.items() if f > 0}
    scored = [sp for sp in scored if str(sp.entity_type) in factors and len(sp.left)]
    if not scored or "reporter_id" not in reports.columns or len(reports) == 0:
        return _empty(PAIR_COLUMNS)
    # codes through arrow (C++ hashing): reports in sorted id order, the reporter of each (-1: anonymous)
    m = mentions[mentions["entity_id"].notna()]
    names = pc.unique(_arrow(reports["report_id"]).drop_null())
    names = names.take(pc.sort_indices(names))
    who = _arrow(reports["reporter_id"])
    who = pc.if_else(pc.equal(who, ""), pa.scalar(None, pa.string()), who)
    reporter_names = pc.unique(who.drop_null())
    filed = np.zeros(len(reporter_names), dtype=np.int64)
    reporter = np.full(len(names), -1, dtype=np.int64)
    at = _codes(_arrow(reports["report_id"]), names)
    code = _codes(who, reporter_names)
    known = (at >= 0) & (code >= 0)
    reporter[at[known]] = code[known]
    np.add.at(filed, code[known], 1)
    rep = _codes(_arrow(m["report_id"]), names)
    ent = m["entity_id"].astype(str).to_numpy(dtype=object)
    anchored = (m["anchored"].astype("boolean").fillna(False).to_numpy(dtype=bool) if "anchored" in m.columns
                else np.zeros(len(m), dtype=bool))
    mention_ids = _arrow(m["mention_id"])

    parts = []
    for sp in scored:
        etype = str(sp.entity_type)
        prob = np.asarray(sp.prob, dtype=np.float64)
        keep = np.flatnonzero(prob >= s.candidates_min_probability)
        pos = _codes(pa.array(np.asarray(sp.mention_ids, dtype=object), type=pa.string()), mention_ids)
        li, ri = pos[np.asarray(sp.left)[keep]], pos[np.asarray(sp.right)[keep]]
        ok = (li >= 0) & (ri >= 0)
        li, ri = li[ok], ri[ok]
        ra, rb = rep[li], rep[ri]
        # the corroboration first (cheap, integer codes): two reports of one known reporter
        ok = (ra >= 0) & (rb >= 0) & (ra != rb)
        ok[ok] = (reporter[ra[ok]] >= 0) & (reporter[ra[ok]] == reporter[rb[ok]])
        if etype in s.anchors:
            ok &= ~(anchored[li] & anchored[ri])
        li, ri, ra, rb = li[ok], ri[ok], ra[ok], rb[ok]
        apart = ent[li] != ent[ri]
        li, ri, ra, rb = li[apart], ri[apart], ra[apart], rb[apart]
        if len(ra) == 0:
            continue
        w = factors[etype] * specificity(filed[reporter[ra]], s.specificity)
        parts.append(pd.DataFrame({"a": np.minimum(ra, rb), "b": np.maximum(ra, rb), "t": etype, "w": w}))
    if not parts:
        return _empty(PAIR_COLUMNS)
    df = pd.concat(parts, ignore_index=True).drop_duplicates(["a", "b", "t"]).sort_values(["a", "b", "t"])
    report_names = np.asarray(names.to_pylist(), dtype=object)
    return pd.DataFrame({"report_a": report_names[df["a"].to_numpy()], "report_b": report_names[df["b"].to_numpy()],
                         "entity_type": df["t"].to_numpy(dtype=object),
                         "link_weight": np.round(df["w"].to_numpy(dtype=np.float64), 6)}).reset_index(drop=True)


def candidate_rows(scored: Iterable[Any], mentions: pd.DataFrame, reports: pd.DataFrame,
                   settings: GraphSettings | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Corroborated possible matches as rows the report graph takes: two per linked report pair.

    >>> from types import SimpleNamespace as NS
    >>> reports = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "reporter_id": ["rep-a", "rep-a", ""]})
    >>> mentions = pd.DataFrame({"mention_id": ["a", "b", "c"], "report_id": ["R1", "R2", "R3"],
    ...                          "entity_id": ["P1", "P2", "P3"], "anchored": [0, 1, 0]})
    >>> sp = NS(entity_type="person", mention_ids=np.array(["a", "b", "c"], dtype=object),
    ...         left=np.array([0, 0]), right=np.array([1, 2]), prob=np.array([0.3, 0.9]))
    >>> s = {"candidates_factor": {"person": 1.0}, "candidates_min_probability": 0.01}
    >>> candidate_rows([sp], mentions, reports, s).values.tolist()  # R3 is anonymous: no corroboration
    [['R1', '~cand:R1|R2|person', 'person~candidate', 1.0], ['R2', '~cand:R1|R2|person', 'person~candidate', 1.0]]
    """
    pairs = candidate_pairs(scored, mentions, reports, settings)
    if len(pairs) == 0:
        return _empty(CANDIDATE_COLUMNS)
    a, b = pairs["report_a"].to_numpy(dtype=object), pairs["report_b"].to_numpy(dtype=object)
    t = pairs["entity_type"].to_numpy(dtype=object)
    eid = np.array([f"{CANDIDATE_PREFIX}{x}|{y}|{z}" for x, y, z in zip(a, b, t)], dtype=object)
    return pd.DataFrame({"report_id": np.column_stack([a, b]).ravel(), "entity_id": np.repeat(eid, 2),
                         "entity_type": np.repeat(np.array([f"{z}{CANDIDATE_SUFFIX}" for z in t], dtype=object), 2),
                         "link_weight": np.repeat(pairs["link_weight"].to_numpy(dtype=np.float64), 2)})


def with_candidates(mentions: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The mentions clustering takes: ``mentions`` (``link_weight`` empty) followed by candidate ``rows``.

    Give the result to clustering only (:func:`linkage.graph.find_clusters`,
    :func:`linkage.graph.incremental.update_clusters`): the rows are links, not mentions.

    >>> m = pd.DataFrame({"report_id": ["R1"], "entity_id": ["P1"], "entity_type": ["person"]})
    >>> with_candidates(m, pd.DataFrame(columns=CANDIDATE_COLUMNS)).columns.tolist()
    ['report_id', 'entity_id', 'entity_type', 'link_weight']
    """
    out = mentions.assign(link_weight=np.nan)
    if len(rows) == 0:
        return out
    return pd.concat([out, rows[CANDIDATE_COLUMNS]], ignore_index=True)


def candidates_on(settings: GraphSettings | Mapping[str, Any] | None = None) -> bool:
    """Whether ``[candidates]`` lists a type with a factor above 0 (off by default: see ``graph.toml``).

    >>> candidates_on({"candidates_factor": {"person": 1.0}}), candidates_on({"candidates_factor": {}})
    (True, False)
    """
    return any(f > 0 for f in as_graph_settings(settings).candidates_factor.values())


def stored_candidate_rows(conn, reports: pd.DataFrame, mentions: pd.DataFrame,
                          settings: GraphSettings | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """:func:`candidate_rows` from the scored pairs a store keeps (its ER state, read only, through
    :func:`linkage.resolve.incremental.stored_pair_probabilities`); no rows when ``[candidates]`` lists no
    type or the store has no state.

    ``conn`` is the store's SQLite connection; ``reports`` and ``mentions`` as :func:`linkage.pipeline.graph_inputs`
    reads them.
    """
    s = as_graph_settings(settings)
    if not candidates_on(s):
        return _empty(CANDIDATE_COLUMNS)
    from linkage.resolve.incremental import stored_pair_probabilities  # the graph reads ER's state, never writes

    scored = [p for p in stored_pair_probabilities(conn, s.candidates_min_probability)
              if s.candidates_factor.get(p.entity_type, 0) > 0]
    return candidate_rows(scored, mentions, reports, s)
