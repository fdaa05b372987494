"""Entity resolution end to end: mentions in, one ``entity_id`` per mention out.

In:  mentions (columns of :data:`linkage.model.STORED_MENTION_FIELDS`, all entity types mixed), optional ER
     settings, human judgements ``(mention_id_a, mention_id_b, "same"|"different")``, an optional frozen
     model (incremental runs) and a progress callback ``progress(stage_name)``.
Out: a :class:`Resolution` with ``assignments`` (every mention exactly once), ``entities`` (id, type,
     label, size, key attributes as JSON), ``scored`` (every scored pair per fuzzy type, compact: record
     indices, float weights, level codes; ``pairs`` gives them as one table with mention ids, built on first
     use), ``model`` (per type, JSON-able) and ``blocking_report``.

Person, address and business mentions go through block -> compare -> score -> cluster; vehicles, phones,
bank accounts and e-mails resolve on their normalised value (a cleaned raw value when that is missing).
Entity ids are ``e_<type>_`` + a hash of the smallest mention id in the entity: the same input gives the
same ids, and an entity keeps its id as long as its smallest mention stays in it.

Incremental runs (design): pass ``model=`` (a fitted model dict from an earlier run) to skip fitting,
``new_mention_ids=`` to score only pairs with at least one new mention, and ``existing_pairs=`` (the
``pairs`` table or the compact ``scored`` pairs of the earlier run). With a frozen model every pair a full
run makes is blocked and only those the earlier run did not score are compared (a block that outgrew or fell
back under a cap since changes which pairs those are, :func:`_split_scored`), so it gives what a full run
with that model gives. :mod:`linkage.resolve.incremental` does the same with work proportional to the new
mentions: it keeps the prepared features and scored pairs of the last run and re-clusters only the part
of the data the new pairs reach.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # json.dumps(str, ensure_ascii=False)'s text (tested)
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from linkage.arrays import sorted_unique, stable_hashes
from linkage.blocking import BlockingReport, _arrow_sorted_codes, block
from linkage.compare import compare
from linkage.model import stable_hash
from linkage.resolve.cluster import attach_name_only, cluster
from linkage.er_settings import FUZZY_TYPES, ERSettings, load_er_settings
from linkage.resolve.features import SIMPLE_TYPES, prepare
from linkage.scoring import FittedModel, fit, unplaced_ambiguous


REASONS: tuple[str, ...] = ("", "match probability", "decisive identifier")


@dataclass
class ScoredPairs:
    """The scored pairs of one entity type, compact: record indices, numbers and level codes, no strings.

    ``left``/``right`` index ``mention_ids`` (``int32``; the ids as a NumPy object array, or as the column of
    Arrow strings an incremental run's records hold: read them through ``np.asarray(..., dtype=object)``);
    ``weight`` and ``prob`` are the match weight (bits) and probability (``float64``, exactly what clustering
    used); ``levels`` holds one level index per comparison (``int8``, pairs x comparisons); ``reason`` indexes
    :data:`REASONS`. Strings are made only in :meth:`frame` (writing, explaining). ``rule_mask`` (optional) has
    bit ``i`` set when blocking rule ``i`` of the type's policy makes the pair (the incremental state keeps it:
    a pair no rule makes any more after a block outgrew a cap is dropped, :mod:`linkage.resolve.incremental`).
    """

    entity_type: str
    mention_ids: np.ndarray
    left: np.ndarray
    right: np.ndarray
    weight: np.ndarray
    prob: np.ndarray
    matched: np.ndarray
    levels: np.ndarray
    reason: np.ndarray
    rule_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.left))

    def frame(self) -> pd.DataFrame:
        """The pairs as a table: ``left_id, right_id, entity_type, match_weight, match_probability, matched,
        levels, reason`` (levels as digit strings, see :func:`_level_strings`)."""
        mids = np.asarray(self.mention_ids, dtype=object)
        return pd.DataFrame({
            "left_id": mids[self.left], "right_id": mids[self.right], "entity_type": self.entity_type,
            "match_weight": self.weight, "match_probability": self.prob, "matched": self.matched,
            "levels": _level_strings(self.levels), "reason": np.asarray(REASONS, dtype=object)[self.reason],
        })


PAIR_COLUMNS = ["left_id", "right_id", "entity_type", "match_weight", "match_probability", "matched", "levels", "reason"]


@dataclass
class Resolution:
    """The outcome of :func:`resolve_mentions`.

    ``scored`` holds every scored pair per fuzzy type in compact form (:class:`ScoredPairs`); ``pairs`` is
    the same as one table with mention ids and level strings, built on first use. When
    :func:`resolve_mentions` was given ``finish_type``, the pairs went to that step instead: ``scored`` is
    then empty, and ``diagnostics["finished"][type]`` holds what the step returned for each type.
    """

    assignments: pd.DataFrame
    entities: pd.DataFrame
    scored: list[ScoredPairs]
    model: dict[str, Any]
    blocking_report: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def pairs(self) -> pd.DataFrame:
        """Every scored pair as a table (see :meth:`ScoredPairs.frame`); built once, on first use."""
        cached = self.__dict__.get("_pairs")
        if cached is None:
            frames = [sp.frame() for sp in self.scored]
            cached = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PAIR_COLUMNS)
            self.__dict__["_pairs"] = cached
        return cached

    def mentions_of(self, entity_id: str) -> list[str]:
        """The mention ids an entity was made of (sorted)."""
        a = self.assignments
        return sorted(a.loc[a["entity_id"] == entity_id, "mention_id"].tolist())

    def fitted(self, entity_type: str) -> FittedModel:
        """The fitted model of one fuzzy type."""
        return FittedModel.from_dict(self.model[entity_type])


def _settings(settings: ERSettings | str | Path | None) -> ERSettings:
    if settings is None or isinstance(settings, (str, Path)):
        return load_er_settings(settings)
    return settings


def entity_id(entity_type: str, smallest_mention_id: str) -> str:
    """Deterministic entity id.

    >>> entity_id("person", "m1") == entity_id("person", "m1"), entity_id("person", "m1")[:9]
    (True, 'e_person_')
    """
    return f"e_{entity_type}_{stable_hash(entity_type, smallest_mention_id)}"


def _entity_ids(entity_type: str, smallest_mention_ids: list[str]) -> list[str]:
    """:func:`entity_id` for many mention ids at once (same digest as :func:`linkage.model.stable_hash`).

    >>> _entity_ids("person", ["m1"]) == [entity_id("person", "m1")]
    True
    """
    prefix = f"e_{entity_type}_"
    return [prefix + h for h in stable_hashes([entity_type], smallest_mention_ids)]


def _judgement_pairs(judgements: Iterable | None, index: Mapping[str, int]) -> tuple[list, list]:
    same, different = [], []
    for item in judgements or ():
        a, b, verdict = item[0], item[1], str(item[2]).strip().lower()
        if a not in index or b not in index or a == b:
            continue
        pair = (index[a], index[b])
        if verdict == "same":
            same.append(pair)
        elif verdict == "different":
            different.append(pair)
    return sorted(set(same)), sorted(set(different))


@dataclass(frozen=True)
class MentionsByType:
    """Mentions that are read one entity type at a time, by the process that resolves that type (a store's
    mentions: see :func:`linkage.store.embedded.mentions_by_type`). ``read(entity_type)`` gives the type's
    mentions sorted by ``mention_id``, the rows ``mentions[mentions.entity_type == entity_type]`` of the whole
    table would give (index aside; the columns may be only those the type's feature preparation reads,
    :data:`linkage.resolve.features.INPUT_COLUMNS`, as plain object values); ``counts`` gives the number of
    mentions per type. Mention ids are unique. ``read``
    must be safe to call in a forked process (open its own connection)."""

    counts: Mapping[str, int]
    read: Callable[[str], pd.DataFrame]


def resolve_mentions(mentions: pd.DataFrame | MentionsByType, settings: ERSettings | str | Path | None = None,
                     judgements: Iterable[tuple[str, str, str]] | None = None,
                     progress: Callable[[str], None] | None = None, model: Mapping[str, Any] | None = None,
                     new_mention_ids: Iterable[str] | None = None,
                     existing_pairs: pd.DataFrame | None = None, keep_candidates: bool = False,
                     keep_records: bool = False, processes: int = 1,
                     finish_type: Callable[[str, dict[str, Any]], Any] | None = None) -> Resolution:
    """Resolve every mention into an entity.

    Parameters
    ----------
    mentions:
        One row per mention; at least ``mention_id`` and ``entity_type`` plus the value columns. Or a
        :class:`MentionsByType`: each type is then read by the process that resolves it, in parallel.
    settings:
        :class:`ERSettings`, a path to a settings TOML, or None for the default.
    judgements:
        ``(mention_id_a, mention_id_b, verdict)`` with verdict "same" (forces a merge) or "different"
        (forbids the two in one entity, also through other links).
    progress:
        Called with a stage name (``"person: blocking"``...) as work proceeds. Nothing is printed.
    model:
        A ``Resolution.model`` dict from an earlier run: reuse its fitted parameters instead of fitting.
    new_mention_ids, existing_pairs:
        Incremental run: ``existing_pairs`` (an earlier ``Resolution.pairs`` table, or its compact
        ``Resolution.scored``) are re-used; with ``model`` given, only the candidate pairs they lack are scored
        (a new mention's, those of a block that fell back under a cap) and those no rule makes any more are
        left out; without, the pairs involving a new mention are scored and all of them added.
    keep_candidates:
        Keep the candidate pairs of this run in ``Resolution.diagnostics[type]`` (for measuring blocking):
        ``candidate_index`` (left and right record indices) into ``mention_ids``.
    keep_records:
        Keep each type's prepared feature table in ``Resolution.diagnostics["records"][type]`` (the state
        of incremental runs, :mod:`linkage.resolve.incremental`).
    processes:
        Resolve the entity types in up to this many processes (this one included; forked workers, Linux
        only). The types are independent, so the result is the same as with 1 (serial); the heaviest types
        are spread first (:func:`type_groups`), and this process, done with its own, takes back the types
        no worker has started (:func:`_run_types`). Progress messages of workers arrive when this process
        reports its own, and as each worker type finishes.
    finish_type:
        Work on one type's results that needs none of the other types (the incremental state of a full run,
        :func:`linkage.resolve.incremental.encode_type_state`), done in the process that resolved the type, so
        in parallel too: called there as ``finish_type(entity_type, outcome)`` once the type is resolved, with
        ``outcome`` holding ``records`` (its prepared feature table, in record order), ``pairs`` (its
        :class:`ScoredPairs`; None for an exact type) and ``model`` (its fitted model dict; None for an exact
        type). What it returns is kept in ``Resolution.diagnostics["finished"][type]``; the type's scored
        pairs are then not sent back (``Resolution.scored`` leaves them out; ``keep_candidates`` still works).

    Returns
    -------
    Resolution

    Raises
    ------
    ValueError
        When ``mentions`` lacks ``mention_id`` or ``entity_type``, or mention ids repeat.

    >>> df = pd.DataFrame([
    ...     {"mention_id": "a", "entity_type": "vehicle", "plate": "12-ABC-3", "plate_norm": "12ABC3"},
    ...     {"mention_id": "b", "entity_type": "vehicle", "plate": "12abc3", "plate_norm": "12ABC3"}])
    >>> res = resolve_mentions(df)
    >>> res.assignments["entity_id"].nunique()
    1
    """
    cfg = _settings(settings)
    if isinstance(mentions, MentionsByType):
        types = None
        counts = {str(t): int(n) for t, n in mentions.counts.items() if n}
    else:
        for col in ("mention_id", "entity_type"):
            if col not in mentions.columns:
                raise ValueError(f"mentions need a '{col}' column")
        if mentions["mention_id"].duplicated().any():
            raise ValueError("mention_id values must be unique")
        types = mentions["entity_type"].astype(str)
        counts = {str(t): int(n) for t, n in types.value_counts().items()}
    say = progress or (lambda stage: None)
    judgements = list(judgements or ())
    new_ids = set(new_mention_ids) if new_mention_ids is not None else None
    assignments, entities, pair_tables, models, reports, timings, diag = [], [], [], {}, {}, {}, {}
    order = sorted(counts)
    job = _TypeJob(mentions, types, counts, cfg, judgements, model, new_ids, existing_pairs, keep_candidates,
                   keep_records, finish_type)
    for etype, out in _run_types(job, order, processes, say):
        if out.get("model") is not None:
            if keep_candidates:
                diag[etype] = out["candidates"]
            models[etype] = out["model"]
            reports[etype] = out["report"]
            if out["pairs"] is not None:
                pair_tables.append(out["pairs"])
        if finish_type is not None:
            diag.setdefault("finished", {})[etype] = out["finished"]
        if keep_records:
            diag.setdefault("records", {})[etype] = out["records"]
        assignments.append(out["assignments"])
        entities.append(out["entities"])
        timings[etype] = out["seconds"]
    cols_a = ["mention_id", "entity_id", "entity_type"]
    return Resolution(
        assignments=pd.concat(assignments, ignore_index=True) if assignments else pd.DataFrame(columns=cols_a),
        entities=pd.concat(entities, ignore_index=True) if entities else pd.DataFrame(
            columns=["entity_id", "entity_type", "label", "n_mentions", "attributes"]),
        scored=pair_tables,
        model=models,
        blocking_report=reports,
        timings=timings,
        diagnostics=diag,
    )


@dataclass
class _TypeJob:
    """What resolving one entity type needs (workers inherit it through fork, nothing is pickled in)."""

    mentions: pd.DataFrame | MentionsByType
    types: pd.Series | None          # the entity type per row of a mentions table (None: MentionsByType)
    counts: Mapping[str, int]        # mentions per type
    cfg: ERSettings
    judgements: list
    model: Mapping[str, Any] | None
    new_ids: set | None
    existing_pairs: Any
    keep_candidates: bool
    keep_records: bool
    finish: Callable[[str, dict[str, Any]], Any] | None = None  # resolve_mentions' finish_type


def _resolve_type(job: _TypeJob, etype: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Resolve the mentions of one entity type (the body of the per-type loop of :func:`resolve_mentions`)."""
    import time

    t0 = time.perf_counter()
    sub = job.mentions.read(etype) if job.types is None else job.mentions[job.types == etype]
    say(f"{etype}: preparing {len(sub)} mentions")
    records = prepare(sub, etype)
    index = {mid: k for k, mid in enumerate(records["mention_id"].tolist())}
    same, different = _judgement_pairs(job.judgements, index)
    out: dict[str, Any] = {"pairs": None, "model": None}
    if etype in FUZZY_TYPES:
        labels, pairs, fitted, report, n_cand = _resolve_fuzzy(records, etype, job.cfg, same, different, say,
                                                             (job.model or {}).get(etype), job.new_ids,
                                                             job.existing_pairs, index)
        out.update(pairs=pairs, model=fitted.to_dict(), report=report.to_dict())
        if job.keep_candidates:
            out["candidates"] = {"candidate_index": (pairs.left[:n_cand], pairs.right[:n_cand]),
                                 "mention_ids": pairs.mention_ids}
    else:
        labels = _resolve_simple(records, same, different)
    say(f"{etype}: naming entities")
    out["assignments"], out["entities"] = _entities(records, labels, etype)
    if job.finish is not None:
        say(f"{etype}: encoding the incremental state")
        out["finished"] = job.finish(etype, {"records": records, "pairs": out["pairs"], "model": out["model"]})
        out["pairs"] = None  # the finishing step had them; not sent back from a worker
    out["records"] = records if job.keep_records else None
    out["seconds"] = time.perf_counter() - t0
    return out


#: Relative cost of resolving one mention of a type, for spreading types over processes (measured at
#: 100,000 reports: person and address cost about the same in total, business a tenth, exact types little).
TYPE_COST: Mapping[str, float] = {"person": 1.0, "address": 1.0, "business": 0.5}
SIMPLE_TYPE_COST = 0.05


def type_costs(counts: Mapping[str, int]) -> dict[str, float]:
    """Estimated cost of resolving each type: its mention count times :data:`TYPE_COST` (rough, relative)."""
    return {t: n * TYPE_COST.get(t, SIMPLE_TYPE_COST) for t, n in counts.items()}


def type_groups(counts: Mapping[str, int], processes: int) -> list[list[str]]:
    """Spread entity types over ``processes`` groups by estimated cost (largest first, each to the least
    loaded group; ties by name), every group in sorted type order. Empty groups are left out.

    >>> type_groups({"person": 100, "address": 90, "business": 20, "phone": 50}, 2)
    [['person', 'phone'], ['address', 'business']]
    """
    cost = type_costs(counts)
    groups: list[list[str]] = [[] for _ in range(max(1, processes))]
    load = [0.0] * len(groups)
    for t in sorted(cost, key=lambda t: (-cost[t], t)):
        k = min(range(len(groups)), key=lambda g: (load[g], g))
        groups[k].append(t)
        load[k] += cost[t]
    return [sorted(g) for g in groups if g]


_FORKED: dict[str, Any] = {}


def _claim(from_front: bool) -> str | None:
    """The next handed type not claimed yet (``from_front``: the heaviest, for a worker; else the cheapest, for
    this process once its own group is done), or None when every handed type is claimed."""
    handed, front, back = _FORKED["handed"], _FORKED["front"], _FORKED["back"]
    with _FORKED["claim"]:
        if front.value >= back.value:
            return None
        if from_front:
            front.value += 1
            return handed[front.value - 1]
        back.value -= 1
        return handed[back.value]


def _worker() -> dict[str, dict[str, Any]]:
    """Resolve the heaviest handed type nobody has claimed yet (``{}`` when none is left)."""
    job, queue = _FORKED["job"], _FORKED["queue"]
    etype = _claim(from_front=True)
    if etype is None:
        return {}

    def say(stage: str) -> None:
        queue.put(stage)

    out = {etype: _resolve_type(job, etype, say)}
    queue.put(f"{etype}: done")
    return out


def _run_types(job: _TypeJob, order: list[str], processes: int, say: Callable[[str], None]):
    """``(type, result)`` in ``order``: serially, or with the types spread over forked worker processes
    (this process takes the first group) when ``processes > 1``, fork is available and there are at least
    two types.

    The workers' types are claimed one at a time, heaviest first, through a shared counter (a task the pool
    has queued claims its type only when it starts); when this process is done with its own group it claims,
    cheapest first, those no worker has started yet (the cost estimates of :func:`type_groups` are rough:
    whichever process is free does the rest). Each type is resolved alone, so who resolves it does not change
    its result."""
    import multiprocessing as mp

    if processes <= 1 or len(order) < 2 or "fork" not in mp.get_all_start_methods():
        for etype in order:
            yield etype, _resolve_type(job, etype, say)
        return
    from concurrent.futures.process import BrokenProcessPool
    import queue as queue_mod

    from linkage.forking import fork_pool

    counts = {t: int(job.counts[t]) for t in order}
    groups = type_groups(counts, min(processes, len(order)))
    ctx = mp.get_context("fork")
    messages = ctx.Queue()

    def drain() -> None:
        while True:
            try:
                say(messages.get_nowait())
            except queue_mod.Empty:
                return

    def say_here(stage: str) -> None:
        drain()
        say(stage)

    if job.cfg.workers == -1:
        # rapidfuzz threads: share the cores between the processes instead of each taking all of them
        import dataclasses
        import os

        job = dataclasses.replace(job, cfg=dataclasses.replace(job.cfg, workers=max(1, (os.cpu_count() or 1)
                                                                                   // len(groups))))
    results: dict[str, dict[str, Any]] = {}
    cost = type_costs(counts)
    handed = sorted((t for g in groups[1:] for t in g), key=lambda t: (-cost[t], t))
    _FORKED.update(job=job, queue=messages, handed=handed, claim=ctx.Lock(), front=ctx.Value("i", 0, lock=False),
                   back=ctx.Value("i", len(handed), lock=False))
    try:
        with fork_pool(len(groups) - 1) as pool:  # its workers end if this process is killed
            pending = [pool.submit(_worker) for _ in handed]  # each claims a type when it starts
            for etype in groups[0]:
                results[etype] = _resolve_type(job, etype, say_here)
            while (etype := _claim(from_front=False)) is not None:  # not started by a worker yet: done here
                results[etype] = _resolve_type(job, etype, say_here)
                say_here(f"{etype}: done")
            while pending:
                for f in list(pending):
                    try:
                        results.update(f.result(timeout=0.2))
                        pending.remove(f)
                    except TimeoutError:
                        pass
                drain()
            drain()
    except BrokenProcessPool:
        from linkage.errors import LinkageError

        missing = ", ".join(t for t in order if t not in results)
        raise LinkageError(
            f"entity resolution: a worker process stopped unexpectedly (killed, or out of memory?) while resolving "
            f"one of: {missing}. Nothing was written; run again, or set [resolve] processes = 1 to resolve every "
            "type in this process") from None
    finally:
        _FORKED.clear()
    for etype in order:
        yield etype, results.pop(etype)


def equal_value_pairs(records: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Pairs chaining the records of equal non-empty ``value`` (each record to the next one with its value,
    in record order); records with an empty value are in no pair."""
    values = records["value"].to_numpy(dtype=object)
    n = len(values)
    codes, _ = pd.factorize(pd.Series(values))
    codes = np.where(values == "", -1 - np.arange(n), codes)
    order = np.lexsort((np.arange(n), codes))
    sc = codes[order]
    follow = np.flatnonzero(sc[1:] == sc[:-1])
    return order[follow], order[follow + 1]


def _resolve_simple(records: pd.DataFrame, same: list, different: list) -> np.ndarray:
    """Exact normalised value; empty values stay alone. Judgements apply as for fuzzy types."""
    left, right = equal_value_pairs(records)
    return cluster(len(records), left, right, np.full(len(left), 30.0), same=same, different=different)


def _resolve_fuzzy(records: pd.DataFrame, etype: str, cfg: ERSettings, same: list, different: list, say,
                   frozen: Mapping[str, Any] | None, new_ids: set | None, existing_pairs: Any,
                   index: Mapping[str, int]):
    policy = cfg.policy(etype)
    n = len(records)
    involving = None
    if new_ids is not None:
        involving = records["mention_id"].isin(new_ids).to_numpy()
    say(f"{etype}: blocking")
    reuse = frozen is not None and existing_pairs is not None and involving is not None
    cand, report = block(records, policy.blocking, etype, cfg.largest_blocks_reported, None if reuse else involving)
    n_candidates = len(cand)  # this run's candidate pairs, before those the earlier run scored are set apart
    old = None
    if reuse:  # every pair a full run makes; the earlier run scored most of them (inc12: _split_scored)
        old = _old_pairs(existing_pairs, etype, records, len(policy.comparisons))
        if old is not None:
            cand, old = _split_scored(cand, old, n)
    say(f"{etype}: comparing {len(cand)} pairs")
    codes_cache: dict = {}
    kept: dict = {}  # fit's pair weights, for scoring the same pairs
    gamma = compare(records, cand.left, cand.right, policy.comparisons, cfg.workers, codes_cache)
    if frozen is not None:
        fitted = FittedModel.from_dict(frozen)
    else:
        say(f"{etype}: estimating the model")
        fitted = fit(records, gamma, cand.rule_mask, policy, cfg, cand.left, codes_cache, right=cand.right, kept=kept)
    say(f"{etype}: scoring")
    del codes_cache
    weight, prob, matched, reason = _score(fitted, records, cand.left, cand.right, gamma, kept.pop("weights", None))
    left, right, levels = cand.left.astype(np.int32), cand.right.astype(np.int32), gamma
    if not reuse:
        old = _old_pairs(existing_pairs, etype, records, gamma.shape[1])
    rule_mask = cand.rule_mask
    if old is not None:
        left, right = np.r_[left, old.left], np.r_[right, old.right]
        weight, prob = np.r_[weight, old.weight], np.r_[prob, old.prob]
        matched, reason = np.r_[matched, old.matched], np.r_[reason, old.reason]
        levels = np.vstack([levels, old.levels])
        rule_mask = np.r_[rule_mask, old.rule_mask if old.rule_mask is not None else  # unknown: any rule
                          np.full(len(old.left), np.iinfo(np.uint32).max, dtype=np.uint32)]
    del cand
    say(f"{etype}: clustering")
    labels, matched, reason = _cluster_scored(records, left, right, weight, prob, matched, levels, reason, fitted,
                                              policy, same, different)
    # Incremental runs re-cluster from the stored pairs, and the clustering weighs every scored pair (negative
    # evidence included), so every scored pair that blocking still makes is kept (earlier pairs of a block that
    # outgrew a cap are not, as a full run would not make them): that is what makes incremental equal to full.
    pairs = ScoredPairs(etype, records["mention_id"].to_numpy(dtype=object), left.astype(np.int32, copy=False),
                        right.astype(np.int32, copy=False), weight, prob, matched, levels, reason, rule_mask)
    return labels, pairs, fitted, report, n_candidates


def _score(fitted: FittedModel, records: pd.DataFrame, left: np.ndarray, right: np.ndarray, gamma: np.ndarray,
           weights: np.ndarray | None = None):
    """(weight, probability, matched, reason code) of freshly compared pairs (``weights``: the model's pair
    weights of them, when fit kept them)."""
    weight, prob, decisive = fitted.score(records, left, right, gamma, weights)
    above = prob >= fitted.match_probability
    matched = above | decisive
    reason = np.where(decisive & ~above, 2, np.where(matched, 1, 0)).astype(np.uint8)
    return weight, prob, matched, reason


def _split_scored(cand: Any, old: ScoredPairs, n: int) -> tuple[Any, ScoredPairs]:
    """The candidate pairs (:class:`linkage.blocking.Candidates` of a blocking of all ``n`` records) that
    ``old`` did not score, and ``old`` cut to the pairs still among the candidates (its order kept), with the
    candidates' rule masks.

    So a run that re-uses the earlier run's scores compares exactly the pairs a full run compares: the new
    mentions' pairs, and the pairs of a block that fell back under a cap (a purge); an earlier pair of a block
    that has since outgrown a cap is left out (:func:`linkage.blocking.block_involving_outgrown`).

    >>> from linkage.blocking import Candidates
    >>> cand = Candidates(np.array([0, 0, 1]), np.array([1, 2, 2]), np.array([1, 1, 1], dtype=np.uint32))
    >>> old = ScoredPairs("x", np.array(["a", "b", "c"]), np.array([2, 1]), np.array([0, 0]), np.zeros(2),
    ...                   np.zeros(2), np.zeros(2, bool), np.zeros((2, 1), np.int8), np.zeros(2, np.uint8))
    >>> fresh, kept = _split_scored(cand, old, 3)
    >>> list(zip(fresh.left.tolist(), fresh.right.tolist())), kept.left.tolist(), kept.right.tolist()
    ([(1, 2)], [2, 1], [0, 0])
    """
    from linkage.blocking import Candidates

    keys = cand.left.astype(np.int64) * n + cand.right  # sorted and unique (blocking's order)
    ol, orr = old.left.astype(np.int64), old.right.astype(np.int64)
    old_keys = np.minimum(ol, orr) * n + np.maximum(ol, orr)
    at = np.minimum(np.searchsorted(keys, old_keys), max(len(keys) - 1, 0))
    still = (keys[at] == old_keys) if len(keys) else np.zeros(len(old_keys), dtype=bool)
    fresh = np.ones(len(keys), dtype=bool)
    fresh[at[still]] = False
    kept = ScoredPairs(old.entity_type, old.mention_ids, *(getattr(old, f)[still] for f in
                                                           ("left", "right", "weight", "prob", "matched", "levels",
                                                            "reason")), cand.rule_mask[at[still]])
    return Candidates(cand.left[fresh], cand.right[fresh], cand.rule_mask[fresh], cand.rule_names), kept


def _old_pairs(existing: Any, etype: str, records: pd.DataFrame, width: int) -> ScoredPairs | None:
    """Earlier scored pairs of ``etype`` (a ``Resolution.pairs`` table or :class:`ScoredPairs`) re-indexed onto
    ``records``; pairs whose mentions are gone are dropped."""
    if existing is None:
        return None
    mids = records["mention_id"].to_numpy(dtype=object)
    where = pd.Index(mids)
    if isinstance(existing, pd.DataFrame):
        if not len(existing):
            return None
        old = existing[existing["entity_type"] == etype]
        li = where.get_indexer(old["left_id"].to_numpy(dtype=object))
        ri = where.get_indexer(old["right_id"].to_numpy(dtype=object))
        ok = (li >= 0) & (ri >= 0)
        old = old[ok]
        reason_code = {r: k for k, r in enumerate(REASONS)}
        return ScoredPairs(etype, mids, li[ok], ri[ok], old["match_weight"].to_numpy(float),
                           old["match_probability"].to_numpy(float), old["matched"].to_numpy(bool),
                           _parse_levels(old["levels"].to_numpy(dtype=object), width),
                           np.array([reason_code.get(r, 0) for r in old["reason"].tolist()], dtype=np.uint8))
    parts = [p for p in (existing if isinstance(existing, (list, tuple)) else [existing]) if p.entity_type == etype]
    if not parts:
        return None
    out = []
    for p in parts:
        pos = where.get_indexer(np.asarray(p.mention_ids, dtype=object))
        li, ri = pos[p.left], pos[p.right]
        ok = (li >= 0) & (ri >= 0)
        out.append(ScoredPairs(etype, mids, li[ok], ri[ok], p.weight[ok], p.prob[ok], p.matched[ok], p.levels[ok],
                               p.reason[ok], None if p.rule_mask is None else np.asarray(p.rule_mask)[ok]))
    if len(out) == 1:
        return out[0]
    masks = None  # kept only when every part knows its pairs' rules
    if all(o.rule_mask is not None for o in out):
        masks = np.concatenate([o.rule_mask.astype(np.uint32) for o in out])
    return ScoredPairs(etype, mids, *(np.concatenate([getattr(o, f) for o in out]) for f in
                                      ("left", "right", "weight", "prob", "matched", "levels", "reason")), masks)


def _cluster_scored(records: pd.DataFrame, left: np.ndarray, right: np.ndarray, weight: np.ndarray,
                    prob: np.ndarray, matched: np.ndarray, levels: np.ndarray, reason: np.ndarray,
                    fitted: FittedModel, policy, same: list, different: list):
    """Labels per record from scored pairs, and the pairs' final ``matched`` and reason codes (a pair that
    contradicts an anchor is never a link)."""
    links = _links(records, left, right, weight, prob, matched, levels, fitted, policy, same, different)
    matched, logodds, link_lo, strong, weak = links.matched, links.logodds, links.link_lo, links.strong, links.weak
    reason = np.where(links.contradiction, 0, reason).astype(np.uint8)
    other = ~strong
    labels = cluster(len(records), left[strong], right[strong], link_lo[strong], left[other], right[other],
                     logodds[other], cannot_logodds=links.cannot, same=same, different=different)
    if weak.any():
        dob, ident = _identity(records)
        labels = attach_name_only(labels, left[weak], right[weak], link_lo[weak], dob, ident,
                                  policy.ambiguity_margin, different, joins=matched[weak])
    return labels, matched, reason


class Links(NamedTuple):
    """How the clustering reads scored pairs (:func:`_links`)."""

    matched: np.ndarray  #: links, less those contradicting an anchor
    logodds: np.ndarray  #: pair log-odds, a contradiction pushed below ``cannot``
    link_lo: np.ndarray  #: the log-odds a link counts with (a decisive link at least 1)
    strong: np.ndarray  #: links agreeing on an anchor, less those the ``unplaced`` rules take out
    weak: np.ndarray  #: name-only links or candidates
    contradiction: np.ndarray
    cannot: float  #: the cannot-link log-odds


def _links(records: pd.DataFrame, left: np.ndarray, right: np.ndarray, weight: np.ndarray, prob: np.ndarray,
           matched: np.ndarray, levels: np.ndarray, fitted: FittedModel, policy, same, different) -> Links:
    """The link decisions :func:`_cluster_scored` clusters with, for the pairs given (the incremental run's
    :func:`linkage.resolve.incremental.cluster_changed_components` decides them the same way)."""
    logodds = weight + fitted.prior_weight
    cannot = math.log2(fitted.cannot_link_probability / (1 - fitted.cannot_link_probability))
    anchored, contradiction = _anchor_flags(levels, fitted, policy.anchors)
    # a contradiction (two valid BSNs, or clearly different birth dates, with no exact identifier) is never
    # a link and keeps its two records apart
    matched = matched & ~contradiction
    logodds = np.where(contradiction, np.minimum(logodds, cannot - 1.0), logodds)
    # decisive links count as strong links in the clustering
    link_lo = np.where(matched & (logodds < 1.0), 1.0, logodds)
    strong, weak = _link_kinds(matched, anchored, contradiction, prob, policy)
    joinable = strong | weak  # the pairs an incremental run's regions are built from (_pair_flags)
    for fields in policy.unplaced:  # e.g. an address without postcode or city joins only its one candidate place
        strong &= ~unplaced_ambiguous(records, left, right, strong, joinable, fields, same, different)
    return Links(matched, logodds, link_lo, strong, weak, contradiction, cannot)


def _link_kinds(matched: np.ndarray, anchored: np.ndarray, contradiction: np.ndarray, prob: np.ndarray, policy):
    """(strong, weak) per pair: links agreeing on an anchor, and name-only links or candidates."""
    strong = matched & anchored
    weak = ~anchored & ~contradiction & (prob >= policy.candidate_probability)
    return strong, weak


def _pair_flags(levels: np.ndarray, prob: np.ndarray, matched: np.ndarray, fitted: FittedModel,
                policy) -> np.ndarray:
    """Per pair: can it join two records in the clustering (a strong or a name-only link or candidate)?
    Records not connected through such pairs (or "same" judgements) never influence each other's entity."""
    anchored, contradiction = _anchor_flags(levels, fitted, policy.anchors)
    strong, weak = _link_kinds(matched & ~contradiction, anchored, contradiction, prob, policy)
    return strong | weak


def _finalise(levels: np.ndarray, matched: np.ndarray, reason: np.ndarray, fitted: FittedModel, policy):
    """``matched`` and reason codes as stored: a pair contradicting an anchor is no link."""
    _, contradiction = _anchor_flags(levels, fitted, policy.anchors)
    return matched & ~contradiction, np.where(contradiction, 0, reason).astype(np.uint8)


def _parse_levels(levels: np.ndarray, width: int) -> np.ndarray:
    """Level strings (``'1130'``, see :func:`_level_strings`) back to an ``int8`` level matrix."""
    if len(levels) == 0:
        return np.zeros((0, width), dtype=np.int8)
    text = "".join(levels.tolist()).encode("ascii")
    return (np.frombuffer(text, dtype=np.uint8).reshape(len(levels), width) - ord("0")).astype(np.int8)


def _anchor_flags(gamma: np.ndarray, fitted: FittedModel, anchors: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: does it agree on an identifying comparison (any level above "else"), and does it
    contradict one (its "else" level)? A contradiction on a decisive identifier (two different valid BSNs)
    always counts; one on another anchor (clearly different birth dates) is overruled by an exact decisive
    identifier. Without anchors every pair is anchored and none contradicts.

    >>> from linkage.scoring import ComparisonParams
    >>> lv = ("missing", "exact", "close", "different")
    >>> fm = FittedModel("person", [ComparisonParams("birth_date", lv, np.ones(4), np.ones(4))], 1e-6, .5, 1e-4)
    >>> a, c = _anchor_flags(np.array([[0], [1], [2], [3]], dtype=np.int8), fm, ("birth_date",))
    >>> a.tolist(), c.tolist()
    ([False, True, True, False], [False, False, False, True])
    """
    n = len(gamma)
    names = fitted.names
    cols = [names.index(a) for a in anchors if a in names]
    if not cols or n == 0:
        return np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    agree = np.zeros(n, dtype=bool)
    id_exact = np.zeros(n, dtype=bool)
    id_contra = np.zeros(n, dtype=bool)
    contra = np.zeros(n, dtype=bool)
    for c in cols:
        top = len(fitted.comparisons[c].level_names) - 1
        g = gamma[:, c]
        agree |= (g >= 1) & (g < top)
        if names[c] in fitted.decisive:  # two different valid identifiers: always two people
            id_exact |= g == 1
            id_contra |= g == top
        else:
            contra |= g == top
    return agree, id_contra | (contra & ~id_exact)


def _identity(records: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Birth date as ``yyyymmdd`` (0 unknown) and a BSN code (-1 unknown) per record, for cluster checks."""
    n = len(records)
    if "by" in records.columns:
        dob = (records["by"].to_numpy(np.int64) * 10000 + records["bm"].to_numpy(np.int64) * 100
               + records["bd"].to_numpy(np.int64))
        dob = np.where(records["by"].to_numpy(np.int64) > 0, dob, 0)
    else:
        dob = np.zeros(n, dtype=np.int64)
    if "bsn" in records.columns:
        codes, uniques = pd.factorize(pd.Series(records["bsn"].to_numpy(dtype=object)))
        empty = np.flatnonzero(np.asarray(uniques, dtype=object) == "")
        ident = codes.astype(np.int64)
        if len(empty):
            ident[ident == empty[0]] = -1
    else:
        ident = np.full(n, -1, dtype=np.int64)
    return dob, ident


def _level_strings(gamma: np.ndarray) -> np.ndarray:
    """Level indices as one digit per comparison (``'1130'``), compact and enough to re-explain.

    >>> _level_strings(np.array([[1, 1, 3, 0], [0, 2, 0, 9]], dtype=np.int8)).tolist()
    ['1130', '0209']
    """
    if gamma.size == 0:
        return np.empty(len(gamma), dtype=object)
    digits = np.ascontiguousarray(gamma.astype(np.uint8) + np.uint8(ord("0")))
    return digits.view(f"S{gamma.shape[1]}").ravel().astype(str).astype(object)


def _strings(column: pd.Series) -> pd.Series:
    """A text column as :func:`_entities` factorizes it (sorted), a missing value as '': as it is when it holds
    pandas strings (Arrow), else as a Series of its values as Python objects, which pandas makes strings of when
    they all are. (A Series made of a string column's values as Python strings is turned back into Arrow
    strings: at a few thousand records that costs more than the factorizing.)

    >>> _strings(pd.Series(["b", "a"], dtype=object)).dtype == _strings(pd.Series(["b", "a"], dtype="str")).dtype
    True
    >>> _strings(pd.Series(["b", None], dtype=object)).tolist()
    ['b', '']
    """
    if column.hasnans:
        column = column.fillna("")
    if isinstance(column.dtype, pd.StringDtype):
        return column.reset_index(drop=True)
    return pd.Series(column.to_numpy(dtype=object))


def _sorted_codes(column: pd.Series, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(column.iloc[rows], sort=True)`` (all rows when None) of a text column without missing
    values: codes (int64) and the distinct values sorted (object array). An Arrow column is worked in Arrow
    (:func:`linkage.blocking._arrow_sorted_codes`: the strings sorted in C++, not as Python objects), another
    by pandas.

    >>> c, v = _sorted_codes(pd.Series(["b", "a", "b", "c"], dtype="str"), np.array([0, 1, 2]))
    >>> c.tolist(), v.tolist()
    ([1, 0, 1], ['a', 'b'])
    >>> c, v = _sorted_codes(pd.Series(["b", "a", "b"], dtype=object))
    >>> c.tolist(), v.tolist()
    ([1, 0, 1], ['a', 'b'])
    """
    got = _arrow_sorted_codes(column, rows)
    if got is not None:
        return got
    codes, uniques = pd.factorize(column if rows is None else column.iloc[rows], sort=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


def _entities(records: pd.DataFrame, labels: np.ndarray, etype: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Assignments and the entity table, vectorised over groups (ids, sizes, labels, attributes)."""
    mids = records["mention_id"].to_numpy(dtype=object)
    n = len(mids)
    if n == 0:
        return (pd.DataFrame(columns=["mention_id", "entity_id", "entity_type"]),
                pd.DataFrame(columns=["entity_id", "entity_type", "label", "n_mentions", "attributes"]))
    group, _ = pd.factorize(np.asarray(labels), sort=True)
    n_groups = int(group.max()) + 1
    # smallest mention id per group: order by (group, mention id), take each group's first row
    mid_rank, _ = _sorted_codes(_strings(records["mention_id"]))
    order = np.lexsort((mid_rank, group))
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    smallest = mids[order[starts]]
    ids = np.array(_entity_ids(etype, smallest.tolist()), dtype=object)
    row_ids = ids[group]
    assignments = pd.DataFrame({"mention_id": mids, "entity_id": row_ids, "entity_type": etype})
    sizes = np.bincount(group, minlength=n_groups)
    # label: the most frequent label of the group; ties -> the longest, then alphabetical
    # a missing label counts as '' (its code would otherwise be -1, which indexes the last label of the table)
    lcode, luniq = _sorted_codes(_strings(records["label"]))
    lens = np.fromiter((len(x) for x in luniq.tolist()), dtype=np.int64, count=len(luniq))
    # each (group, label) once with its count; per group the first by (count desc, length desc, label asc)
    width = len(luniq)
    gl, n_gl = np.unique(group.astype(np.int64) * width + lcode, return_counts=True)
    g_of, l_of = gl // width, gl % width
    order = np.lexsort((l_of, -lens[l_of], -n_gl, g_of))
    best = order[np.flatnonzero(np.r_[True, g_of[order][1:] != g_of[order][:-1]])]
    label_of = np.empty(n_groups, dtype=object)
    label_of[g_of[best]] = luniq[l_of[best]]
    attrs = _attributes(records, group, n_groups, etype)
    columns = {"entity_id": ids, "entity_type": etype, "label": label_of, "n_mentions": sizes.astype(int),
               "attributes": attrs}
    if n_groups > _SORT_BEFORE_UP_TO:
        return assignments, pd.DataFrame(columns).sort_values("entity_id").reset_index(drop=True)
    # the entities in entity-id order (distinct ids: one order) put in that order before the table is made:
    # sorting the table costs a fixed ~5 ms (an incremental run names the entities of each of 7 types)
    by_id = pc.sort_indices(pa.array(ids, type=pa.string())).to_numpy()
    columns = {k: v if k == "entity_type" else np.asarray(v, dtype=object if k != "n_mentions" else None)[by_id]
               for k, v in columns.items()}
    return assignments, pd.DataFrame(columns)


#: :func:`_entities` orders up to this many entities before making their table, more by sorting the table
#: (which is faster at a full run's numbers: 100,000 entities 75 against 130 ms)
_SORT_BEFORE_UP_TO = 20_000


_ATTRIBUTES = {
    "person": ("first_name", "surname", "birth_date", "bsn"),
    "address": ("street", "house_number", "suffix", "postcode", "city"),
    "business": ("name", "kvk"),
}


def _attributes(records: pd.DataFrame, group: np.ndarray, n_groups: int, etype: str) -> np.ndarray:
    """Per group a JSON object of the distinct non-empty key values (sorted lists), keys sorted.

    >>> recs = pd.DataFrame({"name": ["b", "a", "a", ""], "kvk": ["1", "", "1", ""]})
    >>> _attributes(recs, np.array([0, 0, 1, 2]), 3, "business").tolist()
    ['{"kvk": ["1"], "name": ["a", "b"]}', '{"kvk": ["1"], "name": ["a"]}', '{}']
    """
    cols = sorted(c for c in _ATTRIBUTES.get(etype, ("value",)) if c in records.columns)
    pieces = []  # per column: the group's '"col": [...]' text, '' when it has no value there
    for c in cols:
        vals = _strings(records[c])  # a missing value counts as '' (none)
        has = np.flatnonzero((vals != "").to_numpy(dtype=bool))
        if not len(has):
            continue
        vcode, vuniq = _sorted_codes(vals, has)  # codes in sorted value order
        head = json.dumps(c) + ": ["
        # a str's JSON text as json.dumps(v, ensure_ascii=False) writes it, without its per-call set-up
        encoded = [encode_basestring(v) if v.__class__ is str else json.dumps(v, ensure_ascii=False)
                   for v in vuniq.tolist()]
        alone = np.array([head + e + "]" for e in encoded], dtype=object)  # a group's only value, per value
        key = sorted_unique(group[has].astype(np.int64) * (len(vuniq) + 1) + vcode)
        g, v = key // (len(vuniq) + 1), key % (len(vuniq) + 1)
        bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        counts = np.diff(np.r_[bounds, len(g)])
        piece = np.full(n_groups, "", dtype=object)
        single = counts == 1
        piece[g[bounds[single]]] = alone[v[bounds[single]]]
        v_list = v.tolist()
        for b, k in zip(bounds[~single].tolist(), counts[~single].tolist()):
            piece[g[b]] = head + ", ".join([encoded[x] for x in v_list[b:b + k]]) + "]"
        pieces.append(piece)
    if not pieces:
        return np.full(n_groups, "{}", dtype=object)
    if len(pieces) == 1:
        return "{" + pieces[0] + "}"
    out = np.empty(n_groups, dtype=object)
    out[:] = ["{" + ", ".join([p for p in row if p]) + "}" for row in zip(*(p.tolist() for p in pieces))]
    return out
