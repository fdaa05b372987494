"""Incremental entity resolution: new mentions against a stored state, with work that grows with the new ones.

In:  the state of the last run (:class:`ERState`: per entity type the prepared feature table, every scored
     pair as record indices, and per record the label of its *cluster region*), the frozen model of that run,
     the new mentions and the human judgements.
Out: :func:`resolve_new` gives an :class:`IncrementalResult`: per type the new records, the newly scored
     pairs, the assignments and entities of the mentions whose entity may have changed (everything else keeps
     its entity), and the updated state.

Why the answer equals a full run with the same model: a cluster region is a connected component of the
graph of anchored links, name-only candidate links and "same" judgements, the only pairs through which
clustering (:func:`linkage.resolve.cluster.cluster`, :func:`~linkage.resolve.cluster.attach_name_only`) lets
one record influence another. New pairs all involve a new mention, so only the regions that a new link
reaches (and the regions of judgements that changed) can change; they are clustered again from all their
stored and new pairs, with record indices in the order of a full run (mention ids sorted), so ties break
alike; a region without judgements or name-only links only in the components of strong links a new mention
reaches (:func:`cluster_changed_components`: clustering decides each such component on its own). Blocking
looks only at the blocks that hold a new record (:func:`linkage.blocking.block_involving`; the fuzzy rule's
only at the groups a new record can pair with, :func:`fuzzy_groups`), comparing and scoring only at the new
pairs. Each rule codes the blocking columns of the records it looks at into integers and works on those codes; a fuzzy or ``pair_with_empty`` rule pairs only the groups that hold a new record (and
counts the others for its ``max_pairs`` cap). Blocks that outgrow a cap: adding records never adds a pair
between earlier records, but it can take some away (a block past ``max_block`` is compared as a sorted
neighbourhood instead of all against all, new records push earlier ones out of each other's window, a run or
group passes ``incomplete_block`` or ``max_pairs``). The blocking finds those pairs in the same blocks it
looks at anyway (:func:`linkage.blocking.block_involving_outgrown`); every stored pair keeps the bit mask of
the rules that make it, the rules that no longer do are cleared (an edit stored with the run), and a pair
left with no rule is dead: a full run would not have it, so it is left out of the clustering (its regions are clustered again)
and of everything that reads the state. Blocks that shrink (a purge) go the other way; the run after a purge
takes the full path, which blocks everything and scores only the pairs the stored ones lack
(:func:`linkage.resolve.engine._split_scored`).

On a store (:func:`resolve_store_incremental`) each entity type is updated on its own: its part of the state is
read, its new mentions worked in and its state writes encoded (:func:`_update_store_type`), so with
``[resolve] processes = 2`` the types are spread over this process and a forked one; the writes are made in
type order afterwards, so the store is the same for any number of processes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from linkage.arrays import LISTED_TEXT, in_sorted, ranges, sorted_unique, unique_inverse
from linkage.blocking import (
    _Columns, _member_ints, arrow_rows, block_involving, block_involving_outgrown, or_masks_by_key, variant_codes,
    variant_hashes,
)
from linkage.compare import compare
from linkage.er_settings import FUZZY_TYPES, BlockingRule, ERSettings
from linkage.resolve.cluster import cluster, components
from linkage.resolve.engine import (
    ScoredPairs, _cluster_scored, _entities, _finalise, _links, _pair_flags, _resolve_simple, _score, _settings,
    equal_value_pairs,
)
from linkage.resolve.features import prepare
from linkage.scoring import FittedModel
from linkage.store.embedded import bump_er_generation, er_generation

#: 2: pairs keep the bit mask of the blocking rules that make them, and an incremental run records the pairs a
#: block that outgrew a cap no longer makes (``masks`` edits); a version-1 state may hold such pairs: rebuilt once.
STATE_VERSION = 2
#: An incremental run writes a type's pairs again without the dead ones once they pass this share of its pairs
#: (until then they stay in the stored chunks and are skipped by every reader).
COMPACT_DEAD_SHARE = 0.1
_PAIR_FIELDS = ("left", "right", "weight", "prob", "matched", "levels", "reason", "rule_mask")
_CLUSTER_FIELDS = _PAIR_FIELDS[:-1]  # what the clustering reads


@dataclass
class TypeState:
    """What one entity type needs from the last run: records (feature table, in state order: the order
    mentions were added), scored pairs as indices into them, each record's cluster-region label, and (fuzzy
    types) each record's block-key hash per blocking rule (:func:`block_key_hashes`; None: not kept, or kept
    for other rules; ``key_rules`` is the :func:`rules_digest` they were made for).

    ``edits`` (``positions, masks``; positions sorted, unique) overrides the stored ``rule_mask`` of the pairs
    that a later run found some rules no longer make (a block outgrew a cap,
    :func:`linkage.blocking.block_involving_outgrown`); a pair whose mask is 0 is made by no rule: a full run
    would not have it, so it is *dead* and counts as gone everywhere. Dead pairs stay in the stored chunks
    (rewriting ~150 MB of pairs at 100,000 reports to take out a few costs more than the run) until they pass
    :data:`COMPACT_DEAD_SHARE` of the type's pairs; then :func:`save_state` writes the live ones again.

    ``block_stats`` (:class:`BlockStats`; kept with ``keys``, for types with ``pair_with_empty`` rules): what an
    update needs to leave out blocks that cannot make or lose a pair. Stored as the ``bstats`` part (a whole
    chunk, then one small chunk per update); statistics that do not cover every record are not used, so a state
    written without them (or by a version that did not keep them) needs no new :data:`STATE_VERSION`: the next
    update makes them once."""

    records: pd.DataFrame
    pairs: dict[str, np.ndarray]
    region: np.ndarray
    keys: np.ndarray | None = None
    key_rules: str = ""
    edits: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: _no_edits())
    block_stats: "BlockStats | None" = None  # kept with ``keys`` (None: not kept; made by the next update)

    @property
    def mention_ids(self) -> np.ndarray:
        return self.records["mention_id"].to_numpy(dtype=object)

    def dead(self) -> np.ndarray:
        """Sorted positions of the dead pairs."""
        return self.edits[0][self.edits[1] == 0]

    def masks_at(self, pos: np.ndarray) -> np.ndarray:
        """The rule masks (``uint32``, edits applied) of the pairs at ``pos``."""
        out = np.asarray(self.pairs["rule_mask"][pos], dtype=np.uint32).copy()
        epos, emask = self.edits
        if len(epos) and len(pos):
            at = np.minimum(np.searchsorted(epos, pos), len(epos) - 1)
            hit = epos[at] == pos
            out[hit] = emask[at[hit]]
        return out

    def live_pairs(self) -> dict[str, np.ndarray]:
        """The pair fields without the dead pairs, rule masks with the edits applied ({} without pairs)."""
        if not self.pairs:
            return {}
        return _live({f: self.pairs[f] for f in _PAIR_FIELDS}, self.edits)


def _no_edits() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.uint32)


def _merge_edits(*edits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rule-mask edits applied in order (a later edit of a position wins), as sorted unique positions.

    >>> pos, mask = _merge_edits((np.array([5, 2]), np.array([1, 3], np.uint32)), (np.array([5]), np.array([0], np.uint32)))
    >>> pos.tolist(), mask.tolist()
    ([2, 5], [3, 0])
    """
    pos = np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in edits]) if edits else np.empty(0, np.int64)
    mask = np.concatenate([np.asarray(m, dtype=np.uint32) for _, m in edits]) if edits else np.empty(0, np.uint32)
    if not len(pos):
        return _no_edits()
    last = len(pos) - 1 - np.unique(pos[::-1], return_index=True)[1]  # the last edit of each position
    return pos[last], mask[last]


class ChainedPairs(Mapping[str, np.ndarray]):
    """Pair fields (``left, right, weight, ...``) kept as consecutive chunks and joined into one array per field
    on first use. An incremental run appends its new pairs to the stored ones and saves only the new ones, so
    the joined arrays are seldom wanted: joining 4.9 M pairs of every field each run cost 0.19 CPU s at 100,000
    reports.

    >>> p = ChainedPairs([{f: np.arange(2) for f in _PAIR_FIELDS}, {f: np.arange(3) for f in _PAIR_FIELDS}])
    >>> pair_count(p), p["left"].tolist(), sorted(p) == sorted(_PAIR_FIELDS)
    (5, [0, 1, 0, 1, 2], True)
    """

    def __init__(self, chunks: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._chunks: list[Mapping[str, np.ndarray]] = []
        for chunk in chunks:
            if isinstance(chunk, ChainedPairs):
                self._chunks.extend(chunk._chunks)
            elif chunk:
                self._chunks.append(chunk)
        self._joined: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in _PAIR_FIELDS:
            raise KeyError(name)
        if name not in self._joined:
            parts = [c[name] for c in self._chunks]
            self._joined[name] = np.concatenate(parts) if len(parts) != 1 else parts[0]
        return self._joined[name]

    def __iter__(self):
        return iter(_PAIR_FIELDS)

    def __len__(self) -> int:
        return len(_PAIR_FIELDS)

    def count(self) -> int:
        return sum(len(c["left"]) for c in self._chunks)


def pair_count(pairs: Mapping[str, np.ndarray]) -> int:
    """The number of pairs in a type's pair fields (0 for none)."""
    if isinstance(pairs, ChainedPairs):
        return pairs.count()
    return len(pairs["left"]) if pairs else 0


@dataclass
class ERState:
    """The per-type states, the hash of the model they were scored with, and the judgements they saw."""

    model_hash: str
    types: dict[str, TypeState] = field(default_factory=dict)
    judgements: list[tuple[str, str, str]] = field(default_factory=list)

    def n_mentions(self) -> int:
        return sum(len(t.records) for t in self.types.values())


def model_hash(model: Mapping[str, Any]) -> str:
    """A digest of a model dict (the state is only valid for the model it was scored with)."""
    return hashlib.sha1(json.dumps(model, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def state_hash(model: Mapping[str, Any], settings: ERSettings | None = None) -> str:
    """A digest of what a state's pairs and groups were made with: the model, each type's blocking rules
    (:func:`blocking_digest`) and each type's clustering policy (anchors, candidate probability, ambiguity
    margin, ``unplaced``), which the model dict does not hold. A state made under other ones is not used: the
    full path takes over (and scores every pair again when the blocking rules changed)."""
    cfg = _settings(settings)
    policy = {t: [list(p.anchors), p.candidate_probability, p.ambiguity_margin, [list(f) for f in p.unplaced]]
              for t, p in sorted(cfg.types.items())}
    return model_hash({"model": model, "clustering": policy, "blocking": blocking_digest(cfg)})


def blocking_digest(settings: ERSettings | None = None) -> str:
    """A digest of every type's blocking rules, all their fields (keys, caps, windows, order): the candidate
    pairs a store keeps were made with them, so stored pairs are only re-used under the same digest (a store
    made before a change of caps keeps pairs the new rules would not make, and misses ones they would)."""
    import dataclasses

    cfg = _settings(settings)
    return model_hash({t: [dataclasses.asdict(r) for r in p.blocking] for t, p in sorted(cfg.types.items())})


def rules_digest(rules: Iterable[BlockingRule]) -> str:
    """A digest of what decides the block keys of a list of rules (their ``keys`` columns, in order)."""
    return hashlib.sha1(json.dumps([list(r.keys) for r in rules]).encode("utf-8")).hexdigest()


_MIX = np.uint64(0x100000001B3)


def block_key_hashes(records: pd.DataFrame, rules: Iterable[BlockingRule]) -> np.ndarray:
    """Per record and rule a 64-bit hash of the record's block key for that rule (the ``keys`` columns that
    :func:`linkage.blocking.block_keys` joins), as an ``(n, rules)`` uint64 array; 0 when a key column is
    empty (the record is in no block of that rule), when a column is missing or the rule has no keys.

    Equal keys give equal hashes in every process (:func:`pandas.util.hash_array` with its fixed key), so the
    hashes of stored records can be kept and compared with those of new records. Two keys may share a hash:
    the records of a hash are a superset of a block, which is all :func:`narrowed_blocking` needs.

    >>> df = pd.DataFrame({"s": ["vries", "vries", "", "bakker"], "y": ["1985", "1985", "1985", "1985"]})
    >>> h = block_key_hashes(df, [BlockingRule("r", ("s", "y"))])
    >>> bool(h[0, 0] == h[1, 0] != h[3, 0]), int(h[2, 0])
    (True, 0)
    """
    rules = list(rules)
    n = len(records)
    out = np.zeros((n, len(rules)), dtype=np.uint64)
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for j, rule in enumerate(rules):
        if not rule.keys or any(k not in records.columns for k in rule.keys):
            continue
        h = np.zeros(n, dtype=np.uint64)
        empty = np.zeros(n, dtype=bool)
        for k in rule.keys:
            if k not in columns:  # each distinct value hashed once
                codes, uniques = pd.factorize(records[k].astype(str), use_na_sentinel=False)
                uniques = np.asarray(uniques, dtype=object)
                columns[k] = (pd.util.hash_array(uniques, categorize=False)[codes], (uniques == "")[codes])
            hk, ek = columns[k]
            h = (h * _MIX) ^ hk  # order matters: ("a", "b") and ("b", "a") are other keys
            empty |= ek
        h[h == 0] = 1
        h[empty] = 0
        out[:, j] = h
    return out


@dataclass
class BlockStats:
    """What a type keeps of the blocks of its ``pair_with_empty`` rules, so that an incremental run leaves out
    the blocks that cannot make or lose a pair (:func:`skip_hashes`), instead of reading the empty column of
    every record of every block an added record falls in (100,000 reports + 1,000: 114,564 records for
    ``surname_without_first_name``, of which 21,882 are in blocks that can).

    Per rule index (of the type's blocking rules; a rule with keys and ``pair_with_empty``):

    - ``blank[j]``: the block-key hashes (sorted, unique) of every record whose empty column is empty. A hash not
      in it has no such record in any of its blocks (a hash holds one or more whole blocks).
    - ``capped[j]``: ``(hashes, records)``, sorted by hash: the blocks over ``max_pairs`` (empty-column records
      times records) that were alone under their hash when the statistics were made, each with one of its
      records. Adding records never takes a block back under its cap, and an added record with such a hash is
      in that block when its key equals that record's (otherwise it is another block sharing the hash).
      Blocks that outgrow the cap later are not added (the list only has to be right, not complete).

    ``n``: the records they cover (the type's first ``n`` records); statistics covering fewer records than the
    type has are not used (:func:`_type_state_of`: a run that did not keep them added records)."""

    n: int
    blank: dict[int, np.ndarray]
    capped: dict[int, tuple[np.ndarray, np.ndarray]]


def _stats_rules(records: pd.DataFrame, rules: list[BlockingRule]) -> list[int]:
    """Indices of the rules :class:`BlockStats` keeps blocks of: ``pair_with_empty`` rules with keys, all
    present in ``records``."""
    return [j for j, r in enumerate(rules)
            if r.pair_with_empty and r.keys and all(k in records.columns for k in r.keys)]


def _arrow_texts(column: pd.Series):
    """The Arrow array of a string column held in Arrow (None for another column)."""
    if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
        return column.array.__arrow_array__()
    return None


def _texts_at(column: pd.Series, rows: np.ndarray | None) -> np.ndarray:
    """The values of ``column`` at ``rows`` (None: all) as ``astype(str)`` gives them (an object array)."""
    taken = column if rows is None else column.iloc[np.asarray(rows, dtype=np.int64)]
    return taken.astype(str).to_numpy(dtype=object)


def _empty_texts(column: pd.Series, rows: np.ndarray | None) -> np.ndarray:
    """Mask over ``rows`` (None: all rows) of ``column``: the value is empty (as ``astype(str) == ""``, what the
    blocking reads); an Arrow column is compared in Arrow (no Python strings)."""
    arr = _arrow_texts(column)
    if arr is None:
        return _texts_at(column, rows) == ""
    if rows is not None:
        arr = arrow_rows(column, rows)  # taken chunk by chunk (the records are two chunks in an update)
    return pc.fill_null(pc.equal(arr, ""), False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _equal_texts(column: pd.Series, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mask: the values of ``column`` at rows ``a`` and ``b`` are equal (as ``astype(str)`` gives them; a
    missing value equals nothing)."""
    arr = _arrow_texts(column)
    if arr is None:
        return _texts_at(column, a) == _texts_at(column, b)
    x, y = arrow_rows(column, a), arrow_rows(column, b)
    return pc.fill_null(pc.equal(x, y), False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _blank_hashes(records: pd.DataFrame, rule: BlockingRule, hashes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The block-key hashes (``hashes``: one rule's column over ``records``; sorted, unique, no 0) of the
    ``rows`` whose ``pair_with_empty`` column is empty (as ``astype(str) == ""``, what the blocking reads)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rule.pair_with_empty not in records.columns or not len(rows):
        return np.empty(0, np.uint64)
    h = hashes[rows]
    blank = _empty_texts(records[rule.pair_with_empty], rows)
    h = np.unique(h[blank])
    return h[h != 0]


def block_stats(records: pd.DataFrame, rules: Iterable[BlockingRule], hashes: np.ndarray) -> BlockStats:
    """The :class:`BlockStats` of ``records`` (a type's whole state) for its blocking ``rules``, with their
    block-key hashes (:func:`block_key_hashes`). A hash over its cap is taken for a capped block only when all
    its records have one key (compared as text), so a hash shared by two blocks never is.

    >>> df = pd.DataFrame({"s": ["a", "a", "a", "b", "b"], "f": ["", "", "x", "x", "x"]})
    >>> rules = [BlockingRule("r", ("s",), pair_with_empty="f", max_pairs=5)]
    >>> st = block_stats(df, rules, block_key_hashes(df, rules))
    >>> len(st.blank[0]), st.capped[0][1].tolist()
    (1, [0])
    >>> none = pd.DataFrame({"s": ["", ""], "f": ["", "x"]})  # no record has the rule's key
    >>> st = block_stats(none, rules, block_key_hashes(none, rules))
    >>> len(st.blank[0]), len(st.capped[0][0])
    (0, 0)
    """
    rules = list(rules)
    blank, capped = {}, {}
    for j in _stats_rules(records, rules):
        rule, h = rules[j], np.ascontiguousarray(hashes[:, j])
        is_blank = (_empty_texts(records[rule.pair_with_empty], None) if rule.pair_with_empty in records.columns
                    else np.zeros(len(h), dtype=bool))
        keyed = np.flatnonzero(h != 0)
        blank[j] = np.unique(h[keyed[is_blank[keyed]]]).astype(np.uint64)
        if not len(keyed):  # no record has this rule's key (no birth dates at all, say): no block, none capped
            capped[j] = (np.empty(0, np.uint64), np.empty(0, np.int64))
            continue
        # hashes numbered in order of first appearance (a hash table: sorting ~130,000 hashes cost more)
        group, group_hash = pd.factorize(h[keyed])
        group = group.astype(np.int64, copy=False)
        first = keyed[np.flatnonzero(np.r_[True, group[1:] > np.maximum.accumulate(group)[:-1]])]
        size = np.bincount(group, minlength=len(group_hash))
        n_blank = np.bincount(group[is_blank[keyed]], minlength=len(group_hash))
        over = (n_blank > 0) & (n_blank * size > rule.max_pairs)  # a hash's blocks together over the cap
        rows = keyed[over[group]]
        if len(rows):  # one key per hash: the hash is one block, over its cap (else not taken)
            rep = first[group[over[group]]]
            same = np.ones(len(rows), dtype=bool)
            for k in rule.keys:
                same &= _equal_texts(records[k], rows, rep)
            mixed = np.zeros(len(group_hash), dtype=bool)
            mixed[group[over[group]][~same]] = True
            over &= ~mixed
        sel = np.flatnonzero(over)
        sel = sel[np.argsort(group_hash[sel], kind="stable")]
        capped[j] = (group_hash[sel].astype(np.uint64), first[sel])
    return BlockStats(len(records), blank, capped)


def added_blanks(stats: BlockStats, records: pd.DataFrame, rules: Iterable[BlockingRule], hashes: np.ndarray,
                 n_old: int) -> dict[int, np.ndarray]:
    """Per rule of ``stats`` the block-key hashes (sorted, unique) of the records after the first ``n_old``
    whose empty column is empty: what they add to ``stats.blank``."""
    rules, rows = list(rules), np.arange(n_old, len(records))
    return {j: _blank_hashes(records, rules[j], hashes[:, j], rows) for j in stats.blank}


def extend_block_stats(stats: BlockStats, records: pd.DataFrame, rules: Iterable[BlockingRule], hashes: np.ndarray,
                       n_old: int, added: Mapping[int, np.ndarray] | None = None
                       ) -> tuple[BlockStats, dict[int, np.ndarray]]:
    """``stats`` (covering the first ``n_old`` of ``records``) extended to all of them: the hashes of the added
    records with an empty column (``added``: :func:`added_blanks`, made when not given) join ``blank`` (returned
    alone too, per rule, for the stored state); ``capped`` stays (a block over its cap stays over it)."""
    added = dict(added_blanks(stats, records, rules, hashes, n_old) if added is None else added)
    blank = {j: _merge_sorted(b, added[j]) if len(added[j]) else b for j, b in stats.blank.items()}
    return BlockStats(len(records), blank, stats.capped), added


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.union1d(a, b)`` as uint64 of two sorted, unique arrays: ``b``'s values not in ``a`` inserted where
    they belong (one pass over ``a``; union1d sorts both again: person's ~4 x 30,000 hashes, ~3 ms a run).

    >>> _merge_sorted(np.array([2, 5, 9], dtype=np.uint64), np.array([1, 5, 7, 10], dtype=np.uint64)).tolist()
    [1, 2, 5, 7, 9, 10]
    """
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    b = b[~in_sorted(b, a)]
    return np.insert(a, np.searchsorted(a, b), b) if len(b) else a


def skip_hashes(records: pd.DataFrame, rules: list[BlockingRule], hashes: np.ndarray, new_idx: np.ndarray,
                stats: BlockStats, added: Mapping[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """Per ``pair_with_empty`` rule (index into ``rules``) the block-key hashes of the added records ``new_idx``
    whose records :func:`linkage.blocking.block_involving_outgrown` can leave out (its ``skip``): the pairs it
    gives and takes away are those of blocks holding an added record in which an empty-column record times the
    records is at most ``max_pairs`` after or before the records were added. A hash gives neither when

    - neither its records before (``stats.blank``) nor the added ones have an empty column: no block of it
      pairs anyone; or
    - it is a capped block's (``stats.capped``) and every added record with it has that block's key: the block
      was over its cap before and is bigger now, and no other block of the hash holds an added record.

    ``stats`` covers the records before ``new_idx`` (all others); ``added``: :func:`added_blanks` of the
    ``new_idx`` records (made when not given)."""
    out = {}
    for j, blank_before in stats.blank.items():
        rule = rules[j]
        h = hashes[new_idx, j]
        keyed = h != 0
        rows, h = np.asarray(new_idx)[keyed], h[keyed]
        if not len(h):
            continue
        involved = np.unique(h)
        blank_now = _blank_hashes(records, rule, hashes[:, j], rows) if added is None else added[j]
        # (both sorted: looked up by binary search, not sorted again as np.isin does: 4 rules, ~6 ms a run)
        quiet = ~in_sorted(involved, blank_before) & ~in_sorted(involved, blank_now)
        capped_h, capped_rec = stats.capped.get(j, (np.empty(0, np.uint64), np.empty(0, np.int64)))
        if len(capped_h):
            at = np.minimum(np.searchsorted(capped_h, h), len(capped_h) - 1)
            hit = np.flatnonzero(capped_h[at] == h)
            if len(hit):
                same = np.ones(len(hit), dtype=bool)
                for k in rule.keys:  # the added record's key against the capped block's (as the hashes read it)
                    same &= _equal_texts(records[k], rows[hit], capped_rec[at[hit]])
                whole = np.setdiff1d(h[hit], h[hit[~same]])  # hashes whose added records all join the block
                quiet |= np.isin(involved, whole)
        out[j] = involved[quiet]
    return out


def _order_rank_checked(ids: np.ndarray | pd.Series) -> tuple[np.ndarray, bool]:
    """Each id's position in sorted order, as int64 (a sort key equal to the ids themselves that sorts as
    integers: blocking sorts many subsets by it; sorting Python strings is slow), and whether two ids are equal
    (then the ranks break ties by position),
    from one sort (a hash index of ~130,000 mention ids only to find duplicates cost as much again). A column
    of Arrow strings is sorted as it is (no conversion of its values to Python strings and back).

    >>> rank, dup = _order_rank_checked(np.array(["m3", "m1", "m2"], dtype=object))
    >>> rank.tolist(), dup, _order_rank_checked(np.array(["a", "b", "a"], dtype=object))[1]
    ([2, 0, 1], False, True)
    >>> _order_rank_checked(pd.Series(["m3", "m1", "m2"], dtype=pd.StringDtype("pyarrow")))[0].tolist()
    [2, 0, 1]
    >>> rank, dup = _order_rank_checked(np.array(["m1", "m2", "m3"], dtype=object))  # sorted already: no sort
    >>> rank.tolist(), dup, _order_rank_checked(np.array(["a", "a"], dtype=object))[1]
    ([0, 1, 2], False, True)
    """
    dtype = getattr(ids, "dtype", None)
    if isinstance(ids, pd.Series) and isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        arr = ids.array.__arrow_array__()
    else:
        arr = pa.array(np.asarray(ids, dtype=object), type=pa.string())
    n = len(ids)
    if n >= 2 and pc.all(pc.less(arr.slice(0, n - 1), arr.slice(1)), skip_nulls=False).as_py():
        # already in strictly increasing order (a store's records: each run's mentions sorted, later ids
        # larger): one pass, no sort (167,746 person ids: 0.016 -> 0.001 CPU s)
        return np.arange(n, dtype=np.int64), False
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    order = pc.sort_indices(arr).to_numpy()
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids), dtype=np.int64)
    if len(ids) < 2:
        return rank, False
    ordered = arr.take(pa.array(order))
    return rank, bool(pc.any(pc.equal(ordered.slice(1), ordered.slice(0, len(ids) - 1))).as_py())


@dataclass
class Narrowed:
    """What :func:`narrowed_pairs` finds: the pairs involving an involved record (record indices, ``left <
    right``, sorted) with their rule masks (bit ``i``: rule ``i`` makes the pair), and the earlier pairs that
    some rules no longer make (``lost_*``; ``lost_mask`` holds the bits of those rules)."""

    left: np.ndarray
    right: np.ndarray
    rule_mask: np.ndarray
    lost_left: np.ndarray
    lost_right: np.ndarray
    lost_mask: np.ndarray


def narrowed_pairs(records: pd.DataFrame, rules: Iterable[BlockingRule], hashes: np.ndarray,
                   involving: np.ndarray, order: np.ndarray, entity_type: str = "", largest: int = 10,
                   outgrown: bool = True, skip: Mapping[int, np.ndarray] | None = None) -> Narrowed:
    """The pairs :func:`linkage.blocking.block_involving` gives, each rule looking only at the records whose
    block-key hash (``hashes``, from :func:`block_key_hashes`) is that of an involved record
    (``block_involving``'s ``hashes``), a rule without keys at all records; with ``outgrown`` also the earlier
    pairs a rule no longer makes (:func:`linkage.blocking.block_involving_outgrown`).

    A rule with keys and a ``fuzzy_key`` looks only at the records :func:`fuzzy_groups` finds (the groups of
    key and value an involved record can pair with), not at whole blocks: with ``first_initial`` as its key a
    block is a tenth of everyone, and pairing all its surnames one edit apart to keep those of 1,000 new
    mentions cost more than every other rule together (100,000 reports: 132,000 records looked at). Those
    groups are whole, so the pairs a group outgrowing ``max_pairs`` takes away are found there too.

    ``skip`` (optional; rule index -> block-key hashes, :func:`skip_hashes` from the :class:`BlockStats` of the
    records outside ``involving``): a ``pair_with_empty`` rule leaves out those blocks, which can neither make
    nor lose a pair; the pairs are the same. Those are every involved block without an empty-column record, so
    the rule does not read that column to find the blocks having one.
    """
    rules = list(rules)
    n = len(records)
    fuzzy = [j for j, r in enumerate(rules)
             if r.fuzzy_key and r.keys and r.fuzzy_key in records.columns and all(k in records.columns for k in r.keys)]
    rest = [j for j in range(len(rules)) if j not in fuzzy]
    order = np.asarray(order)
    found, lost = [], []
    columns = _Columns(records)  # each rule codes the columns it reads over the records it looks at
    skip = skip or {}

    def rebit(mask: np.ndarray, where: list[int]) -> np.ndarray:
        """Bits of rules ``where[i]`` from bits ``i``."""
        out = np.zeros(len(mask), dtype=np.uint32)
        for i, j in enumerate(where):
            out |= ((mask >> np.uint32(i)) & np.uint32(1)) << np.uint32(j)
        return out

    def one(part: _Columns, sub: np.ndarray | None, where: list[int], inv: np.ndarray, hs: np.ndarray) -> None:
        left_out = {i: skip[j] for i, j in enumerate(where) if j in skip and sub is None}
        if outgrown:
            cand, _, (keys, masks) = block_involving_outgrown(None, [rules[j] for j in where], inv, order if sub is None
                                                              else order[sub], entity_type, largest, hashes=hs,
                                                              columns=part, fuzzy_groups=sub is not None,
                                                              skip=left_out, skip_blankless=True)
        else:
            cand, _ = block_involving(None, [rules[j] for j in where], inv, order if sub is None else order[sub],
                                      entity_type, largest, hashes=hs, columns=part, skip=left_out)
            keys, masks = np.empty(0, np.int64), np.empty(0, np.uint32)
        a, b = (cand.left, cand.right) if sub is None else (sub[cand.left], sub[cand.right])
        found.append((a.astype(np.int64) * n + b, rebit(cand.rule_mask, where)))
        if len(keys):
            m = part.n
            a, b = keys // m, keys % m
            if sub is not None:
                a, b = sub[a], sub[b]
            lost.append((np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b), rebit(masks, where)))

    if rest:
        # each rule's column contiguous (the rules read their columns whole: no strided copy per rule)
        one(columns, None, rest, involving, _column_major(hashes, rest))
    for j in fuzzy:
        fk = rules[j].fuzzy_key
        encoded = columns._encoded(fk)  # the column's values numbered (not sorted: equal or not is all it needs)
        if encoded is not None:
            # the views of the rule code their rows from this encoding, and read the variants made here
            sub = _fuzzy_groups_coded(encoded[0], np.asarray(encoded[1].to_numpy(zero_copy_only=False), dtype=object),
                                      np.ascontiguousarray(hashes[:, j]), involving,
                                      lambda d, o, v: columns.keep_variants(fk, d, o, v))
        elif columns.safe(fk):
            sub = _fuzzy_groups_coded(columns.codes(fk), columns.values(fk), np.ascontiguousarray(hashes[:, j]),
                                      involving)
        else:
            sub = fuzzy_groups(records[fk], hashes[:, j], involving)
        if len(sub) >= 2:
            one(columns.take(sub), sub, [j], involving[sub], hashes[sub, j:j + 1])
    (keys, masks), (lost_keys, lost_masks) = _or_by_key(found), _or_by_key(lost)
    return Narrowed(keys // max(n, 1), keys % max(n, 1), masks, lost_keys // max(n, 1), lost_keys % max(n, 1),
                    lost_masks)


#: rows per block of :func:`_column_major` (a block of 13 columns of uint64 fits a core's L2 cache)
_TRANSPOSE_ROWS = 2048


def _column_major(matrix: np.ndarray, columns: list[int]) -> np.ndarray:
    """``matrix[:, columns]`` with each column contiguous (Fortran order), copied a block of rows at a time: a
    strided copy of a whole column per column reads every cache line of the matrix once per column (person's
    block-key hashes at 100,000 reports + 1,000, 169,522 x 12: 9 -> 4 ms).

    >>> m = np.arange(15, dtype=np.uint64).reshape(5, 3)
    >>> got = _column_major(m, [2, 0])
    >>> got.tolist() == m[:, [2, 0]].tolist(), got.flags["F_CONTIGUOUS"]
    (True, True)
    """
    out = np.empty((len(columns), len(matrix)), dtype=matrix.dtype)
    for start in range(0, len(matrix), _TRANSPOSE_ROWS):
        out[:, start:start + _TRANSPOSE_ROWS] = matrix[start:start + _TRANSPOSE_ROWS, columns].T
    return out.T


def _or_by_key(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Keys sorted and unique, each with the OR of its masks (:func:`linkage.blocking.or_masks_by_key`)."""
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.uint32)
    return or_masks_by_key(np.concatenate([k for k, _ in parts]), np.concatenate([m for _, m in parts]))


def narrowed_blocking(records: pd.DataFrame, rules: Iterable[BlockingRule], hashes: np.ndarray,
                      involving: np.ndarray, order: np.ndarray, entity_type: str = "",
                      largest: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of :func:`narrowed_pairs` (record indices, ``left < right``, sorted by ``(left, right)``)."""
    got = narrowed_pairs(records, rules, hashes, involving, order, entity_type, largest, outgrown=False)
    return got.left, got.right


def _stored_positions(pairs: Mapping[str, np.ndarray], keys: np.ndarray, n: int,
                      dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (sorted) of the stored ``pairs`` that are not ``dead`` and are among the record pairs ``keys``
    (``left * n + right``, ``left < right``, sorted; ``n`` bounds the record indices), and for each the index
    of its key."""
    ends = np.zeros(n, dtype=bool)
    ends[keys // n] = True
    ends[keys % n] = True
    pl, pr = pairs["left"], pairs["right"]
    sel = _both_ends_in(ends, pl, pr)
    a, b = pl[sel].astype(np.int64), pr[sel].astype(np.int64)
    key = np.minimum(a, b) * n + np.maximum(a, b)
    at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    hit = (keys[at] == key) & ~np.isin(sel, dead)
    return sel[hit], at[hit]


def _both_ends_in(marked: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Positions (sorted) of the pairs ``left``/``right`` whose two records are both ``marked`` (one bool per
    record): ``np.flatnonzero(marked[left] & marked[right])``, with the right ends looked at only where the left
    one is marked (a few of millions of stored pairs: one full gather instead of two; ``np.take``, not fancy
    indexing, which costs more per element).

    >>> _both_ends_in(np.array([True, False, True]), np.array([0, 0, 1, 2]), np.array([2, 1, 2, 0])).tolist()
    [0, 3]

    Stored pairs are sorted by their left ends in each run's chunk (a full run's all, an incremental run's the
    new ones): then the pairs whose left end is marked are found by binary search in each sorted stretch of
    ``left``, not by a gather over all of them (person's 1,789,749 stored pairs at 100,000 reports, ~5,000
    records marked: ~7 -> ~3 ms a scan, two scans a type).

    >>> _both_ends_in(np.array([True, False, True]), np.array([0, 0, 2, 0, 1]), np.array([2, 1, 0, 2, 2])).tolist()
    [0, 2, 3]
    """
    sel = _marked_left(marked, left)
    return sel[np.take(marked, np.take(right, sel))]


#: :func:`_marked_left` searches the sorted stretches of the left ends when the marked records times the
#: stretches are at most this share of the pairs (else one gather over all of them is cheaper)
_SEARCH_SHARE = 1 / 16
#: ... and when there are at most this many stretches
_SEARCH_STRETCHES = 64


def _marked_left(marked: np.ndarray, left: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(marked[left])`` (positions, sorted), found by binary search in each non-decreasing
    stretch of ``left`` when there are few stretches and few marked records (see :func:`_both_ends_in`).
    ``left`` holds indices of ``marked`` (0 <= value < len(marked)): the search path does not check them (a
    negative one, which the gather would wrap, is never found there).

    >>> _marked_left(np.array([False, True, True]), np.array([0, 1, 1, 2, 0, 2, 1])).tolist()
    [1, 2, 3, 5, 6]
    """
    marked = np.asarray(marked, dtype=bool)
    m = len(left)
    wanted = np.flatnonzero(marked) if m >= 1024 else None
    cuts = np.flatnonzero(left[1:] < left[:-1]) + 1 if wanted is not None and len(wanted) <= m * _SEARCH_SHARE \
        else None
    if cuts is None or len(cuts) >= _SEARCH_STRETCHES or len(wanted) * (len(cuts) + 1) > m * _SEARCH_SHARE:
        return np.flatnonzero(np.take(marked, left))  # the gather: few pairs, many marked or many stretches
    if left.dtype.kind in "iu" and len(marked) <= np.iinfo(left.dtype).max:
        wanted = wanted.astype(left.dtype)
    pieces = []
    for start, stop in zip(np.r_[0, cuts].tolist(), np.r_[cuts, m].tolist()):
        part = left[start:stop]
        lo = np.searchsorted(part, wanted, side="left")
        count = np.searchsorted(part, wanted, side="right") - lo
        pieces.append(start + np.repeat(lo, count) + ranges(count))
    return np.concatenate(pieces).astype(np.int64, copy=False) if pieces else np.empty(0, np.int64)


def fuzzy_groups(values: pd.Series, hashes: np.ndarray, involving: np.ndarray) -> np.ndarray:
    """Sorted indices of the records that a fuzzy blocking rule can pair with an involved record: those whose
    block-key hash (``hashes``, one rule's column of :func:`block_key_hashes`) is an involved record's and whose
    ``values`` (the rule's ``fuzzy_key``) share a deletion variant with that record's (equal included).

    Every record of such a (hash, value) group is in it, so the groups keep the sizes the rule's
    ``max_pairs`` cap reads, and every pair the rule forms with an involved record is among them
    (:func:`linkage.blocking.block` forms pairs only within a key and between values sharing a variant).

    >>> v = pd.Series(["jansen", "janssen", "janssen", "visser", "jansen", ""])
    >>> h = np.array([1, 1, 2, 1, 1, 1], dtype=np.uint64)
    >>> fuzzy_groups(v, h, np.array([True, False, False, False, False, False])).tolist()
    [0, 1, 4]
    """
    values = values.astype(str).to_numpy(dtype=object)
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    return _fuzzy_groups_coded(codes.astype(np.int64), np.asarray(uniques, dtype=object), hashes, involving)


#: from how many distinct values :func:`_fuzzy_groups_coded` filters them by variant hashes first
_VARIANT_FILTER_FROM = 2_000


def _fuzzy_groups_coded(codes: np.ndarray, values: np.ndarray, hashes: np.ndarray, involving: np.ndarray,
                        keep: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:
    """:func:`fuzzy_groups` over a coded column (``values[codes]`` is the column; no missing values): the
    deletion variants of each distinct value are made once and numbered, and the (hash, value) groups are
    tested as numbers: a group is kept when one of its variants is one of an involved record's under the
    same hash.

    >>> v = np.array(["", "jansen", "janssen", "visser"], dtype=object)
    >>> h = np.array([1, 1, 2, 1, 1, 1], dtype=np.uint64)
    >>> _fuzzy_groups_coded(np.array([1, 2, 2, 3, 1, 0]), v, h, np.array([1, 0, 0, 0, 0, 0], bool)).tolist()
    [0, 1, 4]
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    nonempty = (np.asarray(values, dtype=object) != "")[codes]
    new = np.flatnonzero(np.asarray(involving, dtype=bool) & (hashes != 0) & nonempty)
    if not len(new):
        return np.empty(0, np.int64)
    involved_h = np.unique(hashes[new])
    sel = np.flatnonzero(_member_ints(hashes, involved_h) & nonempty)
    if len(values) > _VARIANT_FILTER_FROM:
        # most values (~15,000 surnames under first initials) share no variant with an involved record's
        # value: their variant hashes (no strings made) leave out those that cannot, and only the rest have
        # their variants made and compared below (the same groups come out). The values are the column's
        # distinct ones, all of them looked at (the records looked at have nearly all: not numbered first)
        sel = sel[_variant_hash_groups(codes, np.asarray(values, dtype=object), hashes, new, sel)]
    # the distinct values there, each with its deletion variants (as codes)
    distinct, inverse = unique_inverse(codes[sel])
    owner, vcode = variant_codes(np.asarray(values, dtype=object)[distinct])
    if keep is not None:  # the variants of the values looked at, for the rule's pairs (_Columns.keep_variants)
        keep(distinct, owner, vcode)
    # the hashes of sel numbered (each is an involved record's); (variant, hash) of every involved record
    hid = _position_in(involved_h, hashes[sel])
    width = len(involved_h)
    is_new = np.asarray(involving, dtype=bool)[sel] & (hashes[sel] != 0)
    new_u = np.unique(inverse[is_new] * width + hid[is_new])  # distinct (value, hash) of involved records
    # expand each involved (value, hash) over its value's variants: reach = sorted (variant, hash) keys
    first = np.searchsorted(owner, new_u // width)
    count = np.searchsorted(owner, new_u // width, side="right") - first
    at = np.repeat(first, count) + ranges(count)
    reach = np.unique(vcode[at] * width + np.repeat(new_u % width, count))
    # a (value, hash) of sel is allowed when one of its value's variants is reached under its hash
    key = sorted_unique(inverse * width + hid)  # the distinct (value, hash) groups of sel
    first = np.searchsorted(owner, key // width)
    count = np.searchsorted(owner, key // width, side="right") - first
    at = np.repeat(first, count) + ranges(count)
    hit = _member_ints(vcode[at] * width + np.repeat(key % width, count), reach)
    allowed = np.unique(np.repeat(key, count)[hit])
    return sel[_member_ints(inverse * width + hid, allowed)]


def _variant_hash_groups(codes: np.ndarray, values: np.ndarray, hashes: np.ndarray, new: np.ndarray,
                         sel: np.ndarray) -> np.ndarray:
    """Mask over ``sel`` (records whose block-key hash is one of the records ``new``'s: the caller sees to it):
    the records whose
    (hash, value) group may share a deletion variant with an involved record's value under the same hash, told
    by :func:`linkage.blocking.variant_hashes` (a superset: two different variants rarely share a hash; the
    caller compares the variants themselves). Filtering by (variant, hash), not by variant alone, leaves the
    groups of a value that meets an involved value's variant only under another first initial: person at
    100,000 reports + 1,000 keeps ~57,000 of 165,000 records (~3,000 distinct surnames) where the variant alone
    kept 132,000 (~6,500), and the variants the caller makes and compares shrink with them.

    >>> v = np.array(["jansen", "janssen", "visser"], dtype=object)
    >>> codes, h = np.array([0, 1, 1, 2, 2]), np.array([1, 1, 2, 2, 1], dtype=np.uint64)
    >>> # involved: jansen under 1, visser under 2 (janssen under 2 and visser under 1 meet neither there)
    >>> _variant_hash_groups(codes, v, h, np.array([0, 3]), np.arange(5)).tolist()
    [True, True, False, True, False]
    """
    uh = np.unique(hashes[new])  # every record of sel has one of these hashes
    width = len(uh)
    owner, vh = variant_hashes(values)
    # the involved (value, hash) groups, sorted by value then hash; per value its first group and their number
    groups = np.unique(codes[new] * width + _position_in(uh, hashes[new]))
    per_value = np.bincount(groups // width, minlength=len(values))
    first_of = np.cumsum(per_value) - per_value
    rows = np.flatnonzero(per_value[owner] > 0)  # the variants of the involved values, each under their hashes
    first, count = first_of[owner[rows]], per_value[owner[rows]]
    reach_v = np.repeat(vh[rows], count)
    reach_h = groups[np.repeat(first, count) + ranges(count)] % width
    order = np.argsort(reach_v, kind="stable")
    reach_v, reach_h = reach_v[order], reach_h[order]
    # every value's variants that meet one reached, each with the hashes it is reached under
    distinct = sorted_unique(reach_v)
    starts = np.searchsorted(reach_v, distinct)
    sizes = np.diff(np.r_[starts, len(reach_v)])
    hit = np.flatnonzero(_member_ints(vh, distinct))
    at = np.searchsorted(distinct, vh[hit])
    first, count = starts[at], sizes[at]
    allowed = np.repeat(owner[hit], count) * width + reach_h[np.repeat(first, count) + ranges(count)]
    key = codes[sel] * width + _position_in(uh, hashes[sel])
    if len(values) * width <= _DENSE_GROUPS_UP_TO:  # a flag per (value, hash): no sort, no hash table
        table = np.zeros(len(values) * width, dtype=bool)
        table[allowed] = True
        return table[key]
    return _member_ints(key, np.unique(allowed))


def _position_in(wanted: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(wanted, values)`` (int64) for ``values`` that are all among ``wanted`` (sorted, unique,
    64-bit integers; few): by a table indexed by the fewest low bits that tell the wanted values apart, not by a
    binary search per value (person's ~165,000 records under 26 first-initial hashes: ~5 -> ~1 ms).

    >>> _position_in(np.array([3, 10, 1 << 40], dtype=np.uint64), np.array([1 << 40, 3, 3, 10], dtype=np.uint64)).tolist()
    [2, 0, 0, 1]
    """
    wanted, values = np.asarray(wanted), np.asarray(values)
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8 and wanted.dtype == values.dtype:
        as_int = np.int64 if values.dtype.kind == "u" else values.dtype
        w, v = wanted.view(as_int), values.view(as_int)
        for bits in range(max(1, (len(wanted) - 1).bit_length()), 17):
            low = (1 << bits) - 1
            slot = w & low
            if len(np.unique(slot)) == len(wanted):
                table = np.zeros(1 << bits, dtype=np.int64)
                table[slot] = np.arange(len(wanted), dtype=np.int64)
                return table[v & low]
    return np.searchsorted(wanted, values).astype(np.int64)


#: :func:`_variant_hash_groups` marks the allowed (value, hash) groups in a table of one flag per value and hash
#: up to this many (person at 100,000 reports + 1,000: 15,710 surnames x 26 first initials, 0.4 MB)
_DENSE_GROUPS_UP_TO = 1 << 24


def region_labels(n: int, left: np.ndarray, right: np.ndarray, flags: np.ndarray | None,
                  same: list[tuple[int, int]], finer: np.ndarray | None = None) -> np.ndarray:
    """Cluster-region label (smallest member index) per record: components of the pairs whose ``flags``
    mark them as anchored or name-only links (``None``: every pair) and of the "same" judgements.

    ``finer`` (optional): the labels (smallest member) of the components of some of those pairs (the strong
    links :func:`cluster_changed_components` found): each record is joined to its part's label and only the
    pairs between two parts are looked at (the same components: +1k address, 158,592 pairs, ~5 ms less).

    >>> l, r = np.array([0, 1, 3]), np.array([1, 2, 4])
    >>> region_labels(5, l, r, None, []).tolist(), region_labels(5, l, r, None, [], np.array([0, 0, 2, 3, 3])).tolist()
    ([0, 0, 0, 3, 3], [0, 0, 0, 3, 3])
    """
    if flags is not None:
        left, right = left[flags], right[flags]
    if finer is not None:
        finer = np.asarray(finer, dtype=np.int64)
        across = finer[left] != finer[right]
        left = np.r_[np.arange(n, dtype=np.int64), np.asarray(left, dtype=np.int64)[across]]
        right = np.r_[finer, np.asarray(right, dtype=np.int64)[across]]
    sl = np.array([a for a, _ in same], dtype=np.int64)
    sr = np.array([b for _, b in same], dtype=np.int64)
    return components(n, np.r_[left.astype(np.int64), sl], np.r_[right.astype(np.int64), sr])


def state_from_resolution(resolution, mentions_by_type: Mapping[str, pd.DataFrame], model: Mapping[str, Any],
                          judgements: list, settings: ERSettings | None = None) -> ERState:
    """The state after a full run: ``mentions_by_type`` are the prepared records each type was resolved on
    (same order as in the run)."""
    cfg = _settings(settings)
    state = ERState(state_hash(model, cfg), judgements=sorted(_norm_judgements(judgements)))
    scored = {sp.entity_type: sp for sp in resolution.scored}
    for etype, records in mentions_by_type.items():
        state.types[etype] = type_state(etype, records, scored.get(etype), model.get(etype), judgements, cfg)
    return state


def type_state(etype: str, records: pd.DataFrame, scored: ScoredPairs | None, model: Mapping[str, Any] | None,
               judgements: list, settings: ERSettings | None = None) -> TypeState:
    """One type's part of :func:`state_from_resolution`: its prepared ``records``, its ``scored`` pairs (None
    for an exact type) and its fitted ``model`` dict (as the stored model gives it back: JSON). Needs nothing
    of the other types, so the process that resolved the type can make it (:func:`encode_type_state`)."""
    cfg = _settings(settings)
    index = pd.Index(records["mention_id"].to_numpy(dtype=object))
    same = _judgement_index(judgements, index, "same")
    if scored is not None:
        sp = scored
        fitted = FittedModel.from_dict(model)
        flags = _pair_flags(sp.levels, sp.prob, sp.matched, fitted, cfg.policy(etype))
        region = region_labels(len(records), sp.left, sp.right, flags, same)
        pairs = {f: getattr(sp, f) for f in _PAIR_FIELDS if f != "rule_mask"}
        pairs["rule_mask"] = _compact_masks(sp.rule_mask, len(sp.left), len(cfg.policy(etype).blocking))
    else:
        region = _simple_regions(records, same)
        pairs = {}
    keys, key_rules, stats = None, "", None
    if etype in FUZZY_TYPES:
        rules = cfg.policy(etype).blocking
        keys, key_rules = block_key_hashes(records, rules), rules_digest(rules)
        stats = block_stats(records, rules, keys) if _stats_rules(records, list(rules)) else None
    return TypeState(records.reset_index(drop=True), pairs, region, keys, key_rules, block_stats=stats)


def _compact_masks(masks: np.ndarray | None, n: int, n_rules: int) -> np.ndarray:
    """Rule masks in the smallest unsigned type that holds ``n_rules`` bits (None: unknown, every bit set)."""
    dtype = np.uint8 if n_rules <= 8 else np.uint16 if n_rules <= 16 else np.uint32
    if masks is None:
        return np.full(n, np.iinfo(dtype).max, dtype=dtype)
    return np.asarray(masks).astype(dtype, copy=False)


def _simple_regions(records: pd.DataFrame, same: list) -> np.ndarray:
    left, right = equal_value_pairs(records)
    return region_labels(len(records), left, right, None, same)


def _norm_judgements(judgements: Iterable) -> set[tuple[str, str, str]]:
    return {(str(a), str(b), str(v).strip().lower()) for a, b, v, *_ in (tuple(j) for j in judgements or ())}


def _judgement_index(judgements: Iterable, index: pd.Index, verdict: str) -> list[tuple[int, int]]:
    out = set()
    for a, b, v in _norm_judgements(judgements):
        if v != verdict:
            continue
        i, j = index.get_indexer([a, b])
        if i >= 0 and j >= 0 and i != j:
            out.add((int(i), int(j)))
    return sorted(out)


@dataclass
class TypeUpdate:
    """What an incremental run changed for one entity type."""

    entity_type: str
    new_records: pd.DataFrame
    new_pairs: ScoredPairs | None
    touched_old: np.ndarray          # mention ids of earlier mentions whose entity may have changed
    assignments: pd.DataFrame        # mention_id, entity_id, entity_type for every touched and new mention
    entities: pd.DataFrame           # the entities of those mentions
    new_keys: np.ndarray | None = None  # block-key hashes of the new records (None: all were made again)
    new_edits: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: _no_edits())  # rule masks changed
    # per rule the block-key hashes the new records added to the kept block statistics (None: made again whole)
    new_stats: dict[int, np.ndarray] | None = None


@dataclass
class IncrementalResult:
    """Per type what changed; ``state`` is the state to store for the next run."""

    updates: list[TypeUpdate]
    state: ERState


def resolve_new(state: ERState, new_mentions: pd.DataFrame, model: Mapping[str, Any],
                judgements: Iterable[tuple[str, str, str]] | None = None, settings: ERSettings | str | None = None,
                progress: Callable[[str], None] | None = None,
                previous_entities: Callable[[np.ndarray], np.ndarray] | None = None) -> IncrementalResult:
    """Resolve ``new_mentions`` against ``state`` with the frozen ``model``.

    ``previous_entities`` (optional) gives the stored entity id of each of the given earlier mention ids (None
    where it has none): with it a region whose clustering allows it is clustered again only in the parts a new
    mention reaches (:func:`cluster_changed_components`); the other parts keep their entities.

    Raises
    ------
    ValueError
        When a new mention id is already in the state.
    """
    cfg = _settings(settings)
    say = progress or (lambda stage: None)
    judgements = sorted(_norm_judgements(judgements or ()))
    changed = set(judgements) ^ set(state.judgements)
    changed_ids = {a for a, _, _ in changed} | {b for _, b, _ in changed}
    types = new_mentions["entity_type"].astype(str) if len(new_mentions) else pd.Series([], dtype=object)
    updates = []
    new_state = ERState(state.model_hash, dict(state.types), judgements)
    for etype in sorted(set(types.unique()) | set(state.types)):
        sub = new_mentions[types == etype] if len(new_mentions) else new_mentions
        old = state.types.get(etype)
        if old is None and etype in FUZZY_TYPES and etype not in model:
            raise ValueError(f"no model for {etype}")
        say(f"{etype}: preparing {len(sub)} new mentions")
        new_records = prepare(sub, etype) if len(sub) else None
        upd, tstate = _update_type(etype, old, new_records, model, judgements, changed_ids, cfg, say,
                                   previous_entities)
        if upd is not None:
            updates.append(upd)
        if tstate is not None:
            new_state.types[etype] = tstate
    return IncrementalResult(updates, new_state)


def _update_type(etype, old: TypeState | None, new_records: pd.DataFrame | None, model, judgements, changed_ids,
                 cfg: ERSettings, say, previous_entities: Callable[[np.ndarray], np.ndarray] | None = None):
    n_old = 0 if old is None else len(old.records)
    if new_records is None or not len(new_records):
        new_records = None
    if changed_ids and old is not None:
        touched_by_judgement = np.flatnonzero(pd.Series(old.mention_ids).isin(changed_ids).to_numpy())
    else:
        touched_by_judgement = np.empty(0, np.int64)
    if new_records is None and not len(touched_by_judgement):
        return None, old
    halves = None  # (stored records, new ones in their dtypes): rows are taken from each (_take_records)
    if old is None:
        records = new_records.reset_index(drop=True) if new_records is not None else None
    elif new_records is None:
        records = old.records
    else:
        cols = list(old.records.columns)
        added = new_records.reindex(columns=cols, fill_value="")
        # the new rows in the stored columns' dtypes (Arrow strings as read back), so that joining them is cheap:
        # joined with object columns every stored column was converted to Python strings (0.2 s for person)
        halves = (old.records, added.astype(old.records.dtypes.to_dict()))
        records = pd.concat(halves, ignore_index=True)
    # the mention ids as stored (Arrow strings): made Python strings only where wanted (every record's id as a
    # Python string cost ~7 ms a type at 100,000 reports; the new pairs keep the column, ScoredPairs.frame
    # converts it when asked)
    id_column = records["mention_id"]
    mids = id_column.array

    def ids_at(rows: np.ndarray) -> np.ndarray:
        return id_column.take(rows).to_numpy(dtype=object)
    n = len(records)
    rank, duplicated = _order_rank_checked(records["mention_id"])
    if duplicated:
        raise ValueError(f"{etype}: new mention ids already resolved")
    involving = np.zeros(n, dtype=bool)
    involving[n_old:] = True
    region = np.r_[old.region if old is not None else np.empty(0, np.int64), np.arange(n_old, n, dtype=np.int64)]
    seeds = [np.arange(n_old, n), touched_by_judgement]
    new_pairs = None
    edits = _no_edits()  # rule masks of stored pairs that some rules no longer make
    dead_now = np.empty(0, np.int64)  # stored pairs no rule makes any more since this run
    fuzzy = etype in FUZZY_TYPES
    if fuzzy:
        policy = cfg.policy(etype)
        fitted = FittedModel.from_dict(model[etype])
        key_rules = rules_digest(policy.blocking)
        if old is not None and old.keys is not None and old.key_rules == key_rules and len(old.keys) == n_old:
            new_keys = block_key_hashes(records.iloc[n_old:], policy.blocking)
            keys = np.concatenate([old.keys, new_keys])
        else:  # no hashes kept, or kept for other rules: make them all (and store them all)
            new_keys, keys = None, block_key_hashes(records, policy.blocking)
        kept_rules = _stats_rules(records, list(policy.blocking))
        kept_stats = old.block_stats if old is not None and new_keys is not None else None
        if kept_stats is not None and (kept_stats.n != n_old or set(kept_stats.blank) != set(kept_rules)):
            kept_stats = None
        if kept_stats is None and n_old and kept_rules:  # none kept (a state made before them): made once, kept
            kept_stats = block_stats(records.iloc[:n_old], policy.blocking, keys[:n_old])
        say(f"{etype}: blocking")
        stored = old is not None and old.pairs and pair_count(old.pairs) > 0
        skip, blanks = None, None
        if kept_stats is not None:
            blanks = added_blanks(kept_stats, records, policy.blocking, keys, n_old)
            skip = skip_hashes(records, list(policy.blocking), keys, np.arange(n_old, n), kept_stats, blanks)
        found = narrowed_pairs(records, policy.blocking, keys, involving, rank, etype,
                               cfg.largest_blocks_reported, outgrown=bool(stored), skip=skip)
        if kept_stats is not None:
            stats, added_stats = extend_block_stats(kept_stats, records, policy.blocking, keys, n_old, blanks)
            if old.block_stats is not kept_stats:  # made in this run: written whole
                added_stats = None
        else:
            stats, added_stats = (block_stats(records, policy.blocking, keys) if kept_rules else None), None
        left, right = found.left, found.right
        # each pair oriented as in a full run (records in mention-id order): the smaller mention id left (the
        # ranks order as the ids do, which are distinct: compared as integers, not as strings)
        swap = rank[left] > rank[right]
        left, right = np.where(swap, right, left), np.where(swap, left, right)
        # compare and score on the records these pairs touch only (values, not positions, decide)
        # (marked per record, not sorted out of the pairs: 36,021 person pairs, 172,000 records: 12 -> 2 ms)
        at = np.zeros(n, dtype=np.int64)
        at[left] = 1
        at[right] = 1
        used = np.flatnonzero(at)
        at[used] = np.arange(len(used))
        part = _take_records(records, used, halves)
        ll, rr = at[left], at[right]
        say(f"{etype}: comparing {len(left)} pairs")
        gamma = compare(part, ll, rr, policy.comparisons, cfg.workers)
        weight, prob, matched, reason = _score(fitted, part, ll, rr, gamma)
        matched, reason = _finalise(gamma, matched, reason, fitted, policy)
        new_pairs = ScoredPairs(etype, mids, left.astype(np.int32), right.astype(np.int32), weight, prob, matched,
                                gamma, reason, _compact_masks(found.rule_mask, len(left), len(policy.blocking)))
        flags = _pair_flags(gamma, prob, matched, fitted, policy)
        seeds.append(left[flags])
        seeds.append(right[flags])
        if stored and len(found.lost_left):
            # stored pairs of blocks the new records pushed past a cap: a rule that made one may no longer make
            # it; one that no rule makes any more is not in a full run (dead)
            pos, at = _stored_positions(old.pairs, found.lost_left * n + found.lost_right, n, old.dead())
            before = old.masks_at(pos)
            after = before & ~found.lost_mask[at]
            moved = after != before
            edits = (pos[moved], after[moved])
            dead_now = pos[moved & (after == 0)]
            if len(dead_now):
                # a dead pair matters to the clustering only when it could join its records or lies inside one
                # region (evidence against); their regions are clustered again
                d = {f: old.pairs[f][dead_now] for f in ("left", "right", "levels", "prob", "matched")}
                inside = _pair_flags(d["levels"], d["prob"], d["matched"], fitted, policy) | (
                    old.region[d["left"]] == old.region[d["right"]])
                seeds.append(d["left"][inside])
                seeds.append(d["right"][inside])
                dead_now = dead_now[inside]
    else:
        values = records["value"]  # as stored (Arrow strings): only the new ones made Python strings
        wanted = set(values.iloc[n_old:].tolist()) - {""}
        if wanted and n_old:
            seeds.append(np.flatnonzero(values.iloc[:n_old].isin(wanted).to_numpy()))
    seed = np.concatenate([np.asarray(s, dtype=np.int64) for s in seeds])
    # the records of the regions hit (a region's label is one of its records: marked per record, not sorted)
    hit = np.zeros(n, dtype=bool)
    hit[region[seed]] = True
    members = np.flatnonzero(hit[region])
    # the region's records in the order of a full run (mention ids sorted)
    members = members[np.argsort(rank[members], kind="stable")]  # rank: the mention ids' sort order
    k = len(members)
    local = np.full(n, -1, dtype=np.int64)
    local[members] = np.arange(k)
    rec_r = _take_records(records, members, halves)
    r_index = pd.Index(ids_at(members))
    same = _judgement_index(judgements, r_index, "same")
    different = _judgement_index(judgements, r_index, "different")
    say(f"{etype}: clustering {k} records")
    if fuzzy:
        parts = []
        gone = None
        if old is not None and old.pairs and len(old.pairs["left"]):
            ol, orr = old.pairs["left"], old.pairs["right"]
            inside = local >= 0  # one byte per record: gathers over millions of pairs, not of int64s
            keep = _both_ends_in(inside, ol, orr)  # a few of millions: one scan, not one per field
            drop = np.r_[old.dead(), edits[0][edits[1] == 0]]
            if len(drop):
                keep = keep[~np.isin(keep, drop)]
            parts.append({f: old.pairs[f][keep] for f in _CLUSTER_FIELDS})
            if len(dead_now):
                gone = {f: old.pairs[f][dead_now] for f in _CLUSTER_FIELDS}
                gone["left"], gone["right"] = local[gone["left"]], local[gone["right"]]
        keep = (local[new_pairs.left] >= 0) & (local[new_pairs.right] >= 0)
        parts.append({f: getattr(new_pairs, f)[keep] for f in _CLUSTER_FIELDS})
        p = {f: np.concatenate([x[f] for x in parts]) for f in _CLUSTER_FIELDS}
        a, b = local[p["left"]], local[p["right"]]
        pl, pr = np.minimum(a, b), np.maximum(a, b)
        # a full run's pair order: sorted by (left, right). One key, sorted stably, gives lexsort's order (also
        # stable); the sort takes runs already in order (the stored pairs) whole: at the +1k address region
        # (158,592 pairs) 1 ms against lexsort's 27
        order = np.argsort(pl * k + pr, kind="stable")
        pl, pr = pl[order], pr[order]
        p = {f: v[order] for f, v in p.items()}
        redo = None
        flags_r = _pair_flags(p["levels"], p["prob"], p["matched"], fitted, policy)
        strong_parts: list = []
        if previous_entities is not None and not same and not different and not changed_ids:
            # no judgement in the region: only the parts of it a new mention reaches are clustered again
            got = cluster_changed_components(rec_r, pl, pr, p, fitted, policy, members >= n_old,
                                             lambda where: previous_entities(ids_at(members[where])), gone, flags_r,
                                             strong_parts)
            if got is not None:
                labels, redo = got
        if redo is None:
            labels, _, _ = _cluster_scored(rec_r, pl, pr, p["weight"], p["prob"], p["matched"], p["levels"],
                                           p["reason"], fitted, policy, same, different)
        # (the strong links' components refine the regions: their links are among the flagged pairs)
        region_r = region_labels(k, pl, pr, flags_r, same, strong_parts[0] if strong_parts and not same else None)
    else:
        redo = None
        labels = _resolve_simple(rec_r, same, different)
        region_r = _simple_regions(rec_r, same)
    region = region.copy()
    region[members] = members[region_r]
    say(f"{etype}: naming entities")
    if redo is not None:  # the entities of the parts clustered again; the others keep theirs
        again = np.flatnonzero(redo)
        rec_r, labels, members = rec_r.iloc[again].reset_index(drop=True), labels[again], members[again]
    assignments, entities = _entities(rec_r, labels, etype)
    touched_old = ids_at(members[members < n_old])
    # stored as prepared (object columns), as the full run stores its records
    new_part = (added if old is not None and new_records is not None else records.iloc[n_old:]).reset_index(drop=True)
    pairs_state = old.pairs if old is not None and old.pairs else {}
    if new_pairs is not None:
        added = {f: getattr(new_pairs, f) for f in _PAIR_FIELDS}
        pairs_state = ChainedPairs([pairs_state, added]) if pairs_state else added
    if not fuzzy:
        keys, key_rules, new_keys, stats, added_stats = None, "", None, None, None
    all_edits = _merge_edits(old.edits, edits) if old is not None and len(edits[0]) else (
        old.edits if old is not None else _no_edits())
    upd = TypeUpdate(etype, new_part, new_pairs, touched_old, assignments, entities, new_keys, edits, added_stats)
    return upd, TypeState(records, pairs_state, region, keys, key_rules, all_edits, stats)


def _take_records(records: pd.DataFrame, rows: np.ndarray, halves: tuple[pd.DataFrame, pd.DataFrame] | None
                  ) -> pd.DataFrame:
    """``records.iloc[rows].reset_index(drop=True)``; with ``halves`` (the two frames ``records`` joins: the
    stored records and the new ones) and ``rows`` in increasing order, taken from each half: a column of the
    joined frame is two Arrow chunks, and a take from one chunk costs less (person, 100,000 reports + 1,000:
    20,000 rows 15 -> 12 ms, 5,000 rows 11 -> 7 ms).

    >>> a, b = pd.DataFrame({"x": ["p", "q"]}, dtype="str"), pd.DataFrame({"x": ["r"]}, dtype="str")
    >>> both = pd.concat([a, b], ignore_index=True)
    >>> _take_records(both, np.array([1, 2]), (a, b)).equals(both.iloc[[1, 2]].reset_index(drop=True))
    True
    """
    rows = np.asarray(rows, dtype=np.int64)
    if halves is None or not len(rows) or not bool((rows[1:] >= rows[:-1]).all()):
        return records.iloc[rows].reset_index(drop=True)
    first, second = halves
    k = int(np.searchsorted(rows, len(first)))
    if k == len(rows):
        return first.iloc[rows].reset_index(drop=True)
    if k == 0:
        return second.iloc[rows - len(first)].reset_index(drop=True)
    return pd.concat([first.iloc[rows[:k]], second.iloc[rows[k:] - len(first)]], ignore_index=True)


def cluster_changed_components(records: pd.DataFrame, left: np.ndarray, right: np.ndarray,
                               pairs: Mapping[str, np.ndarray], fitted: FittedModel, policy, new: np.ndarray,
                               previous: Callable[[np.ndarray], np.ndarray],
                               gone: Mapping[str, np.ndarray] | None = None,
                               joins: np.ndarray | None = None, parts: list | None = None
                               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The labels :func:`linkage.resolve.engine._cluster_scored` gives a region without judgements, clustering
    again only the components of strong links that a new record is in or whose links changed; with which
    records were clustered again. None when that is not provably the same (then cluster the whole region).

    ``records`` are the region's records (full-run order), ``left``/``right`` its scored pairs (sorted, local
    indices) with the ``pairs`` fields, ``new`` marks the records added by this run and ``previous(where)``
    gives the stored entity ids of the earlier records at the positions ``where`` (None: no entity). ``gone``
    (optional, the same fields, ``left``/``right`` local) holds the pairs of the last run that blocking no
    longer makes (dead: :class:`TypeState`). ``joins`` (optional): the pairs'
    :func:`linkage.resolve.engine._pair_flags`, when the caller has them (else made here when wanted).
    ``parts`` (optional): a list that receives the components of the strong links (labels, smallest member),
    a finer partition than the regions (:func:`region_labels`' ``finer``).

    Why it is the same: without name-only links or candidates (``weak``), the clustering is
    :func:`linkage.resolve.cluster.cluster` over the strong links (links agreeing on an anchor, less those
    the ``unplaced`` rule takes out), and that decides each connected component of the strong links from the
    strong links and the other scored pairs inside it alone (pairs between components are ignored), with ties
    broken by record order, which adding records keeps. New pairs all involve a new record. So a component
    now that holds no new record, no end of a gone pair and no end of an earlier pair whose strong flag changed
    (the ``unplaced`` rule is decided over the region and may change with new candidates or gone pairs; the
    flags before are decided over the earlier and the gone pairs, the last run's) has exactly the links and
    pairs of a component of the last run: its entities are the stored ones. The rest is clustered again as a
    full run clusters it (the same pairs in the same order). Name-only links in the region now or before: None.
    """
    from linkage.resolve.engine import _anchor_flags, _link_kinds

    new = np.asarray(new, dtype=bool)
    k = len(records)

    def links_of(pl: np.ndarray, pr: np.ndarray, got: Mapping[str, np.ndarray]):
        """_cluster_scored's link decisions over the pairs given alone; None when a name-only one is among them."""
        got = _links(records, pl, pr, got["weight"], got["prob"], got["matched"], got["levels"], fitted, policy, (), ())
        return None if got.weak.any() else got

    links = links_of(left, right, pairs)
    if links is None:
        return None
    strong = links.strong
    comp = components(k, left[strong], right[strong])
    if parts is not None:
        parts.append(comp)
    earlier = np.flatnonzero(~new[left] & ~new[right])
    gone_l = gone_r = np.empty(0, np.int64)
    if gone is not None and len(gone["left"]):
        gone_l, gone_r = np.asarray(gone["left"], dtype=np.int64), np.asarray(gone["right"], dtype=np.int64)
        anchored, contradiction = _anchor_flags(gone["levels"], fitted, policy.anchors)
        if _link_kinds(gone["matched"] & ~contradiction, anchored, contradiction, gone["prob"], policy)[1].any():
            return None  # a name-only link among the last run's pairs
    changed = np.zeros(k, dtype=bool)
    changed[comp[new]] = changed[comp[gone_l]] = changed[comp[gone_r]] = True
    flipped = _flipped(records, left, right, pairs, fitted, policy, earlier, strong, changed[comp], gone_l, gone_r,
                       gone, joins)
    changed[comp[left[flipped]]] = changed[comp[right[flipped]]] = True
    redo = changed[comp]
    kept = np.flatnonzero(~redo)
    labels = np.empty(k, dtype=np.int64)
    if len(kept):
        ids = np.asarray(previous(kept), dtype=object)
        if any(e is None or e != e for e in ids.tolist()):
            return None
        code, _ = pd.factorize(pd.Series(ids, dtype=object))
        first = np.full(int(code.max()) + 1, k, dtype=np.int64)
        np.minimum.at(first, code, kept)
        labels[kept] = first[code]  # each stored entity labelled by its smallest record, as cluster() labels
    again = np.flatnonzero(redo)
    at = np.full(k, -1, dtype=np.int64)
    at[again] = np.arange(len(again))
    inside = redo[left] & redo[right]
    sl, sr = at[left[inside]], at[right[inside]]
    lo, link_lo = links.logodds[inside], links.link_lo[inside]
    s_in, o_in = strong[inside], ~strong[inside]
    # the strong links' components there are those of comp (redo is a union of them, ``again`` ascending: the
    # smallest member keeps its place), not made again
    sub = cluster(len(again), sl[s_in], sr[s_in], link_lo[s_in], sl[o_in], sr[o_in], lo[o_in],
                  cannot_logodds=links.cannot, same=[], different=[], linked=at[comp[again]])
    labels[again] = again[sub]
    return labels, redo


def _flipped(records: pd.DataFrame, left: np.ndarray, right: np.ndarray, pairs: Mapping[str, np.ndarray],
             fitted: FittedModel, policy, earlier: np.ndarray, strong: np.ndarray, redone: np.ndarray,
             gone_l: np.ndarray, gone_r: np.ndarray, gone: Mapping[str, np.ndarray] | None,
             joins: np.ndarray | None = None) -> np.ndarray:
    """For :func:`cluster_changed_components`: the earlier pairs (positions ``earlier`` of ``left``/``right``)
    whose strong flag now (``strong``) differs from the last run's, decided over the earlier and the ``gone``
    pairs, leaving out pairs whose records are all clustered again anyway (``redone``, per record).

    Only the ``unplaced`` rule can tell the two runs apart (every other part of a link decision is the pair's
    own), and it only takes out a pair that is a link before the rule between a record giving none of the rule's
    fields and one giving some. So the last run's decisions are made again only for the connected parts (of
    pairs that can join records, :func:`linkage.resolve.engine._pair_flags`) holding such a pair with a record
    that is not clustered again: the rule decides each such part from its pairs alone (groups and candidates
    are made of those pairs), so they come out as over all the last run's pairs. ``joins``: the pairs'
    :func:`linkage.resolve.engine._pair_flags` when at hand (else made here)."""
    from linkage.scoring import gives_none

    none = np.empty(0, np.int64)
    if not policy.unplaced or not len(earlier):
        return none
    el, er = left[earlier], right[earlier]
    mixed = np.zeros(len(earlier), dtype=bool)
    for fields in policy.unplaced:
        bare = gives_none(records, fields)
        mixed |= bare[el] != bare[er]
    may = np.flatnonzero(mixed & ~(redone[el] & redone[er]))
    if not len(may):
        return none
    if joins is None:
        joins = _pair_flags(pairs["levels"], pairs["prob"], pairs["matched"], fitted, policy)
    joins = joins[earlier]
    may = may[joins[may]]
    if not len(may):
        return none
    last_l, last_r = el, er
    if len(gone_l):
        last_l, last_r = np.r_[last_l, gone_l], np.r_[last_r, gone_r]
        joins = np.r_[joins, _pair_flags(gone["levels"], gone["prob"], gone["matched"], fitted, policy)]
    part = components(len(records), last_l[joins], last_r[joins])
    pick = np.zeros(len(records), dtype=bool)
    pick[part[el[may]]] = True
    sel = np.flatnonzero(joins & pick[part[last_l]])
    mine = sel < len(earlier)  # the earlier pairs among them (the gone ones come after)
    at, gone_at = earlier[sel[mine]], sel[~mine] - len(earlier)
    fields = ("weight", "prob", "matched", "levels")
    last = {f: pairs[f][at] if not len(gone_at) else np.concatenate([pairs[f][at], gone[f][gone_at]]) for f in fields}
    before = _links(records, last_l[sel], last_r[sel], *(last[f] for f in fields), fitted, policy, (), ())
    return at[before.strong[:len(at)] != strong[at]]


# -- persistence ---------------------------------------------------------------------------------------

STATE_TABLE = ("CREATE TABLE IF NOT EXISTS er_state (entity_type TEXT NOT NULL, part TEXT NOT NULL, "
               "seq INTEGER NOT NULL, data BLOB, PRIMARY KEY (entity_type, part, seq))")


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


#: Prepared records are kept in the Arrow IPC file format, LZ4-compressed (every incremental run reads all of
#: them): at 100,000 reports 0.17 CPU s to read against 0.68 for parquet, 0.31 to write against 0.49, at twice
#: parquet's size (31 against 16 MB). Chunks an earlier version wrote as parquet are still read.
RECORDS_CODEC = "lz4" if pa.Codec.is_available("lz4") else None


def _records_blob(df: pd.DataFrame) -> bytes:
    """A records chunk as an Arrow IPC file (the frame's pandas metadata kept, so it reads back equal)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression=RECORDS_CODEC)) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _records_chunk(blob: bytes, columns: list[str] | None = None) -> pd.DataFrame:
    """A records chunk from :func:`_records_blob`, or from the parquet blob an earlier version wrote.

    >>> df = pd.DataFrame({"mention_id": ["m1", "m2"], "surname": ["vries", ""], "n": [1, 2]})
    >>> _records_chunk(_records_blob(df)).equals(df), _records_chunk(_records_blob(df), ["n"])["n"].tolist()
    (True, [1, 2])
    """
    if bytes(blob[:6]) == b"ARROW1":
        table = ipc.open_file(pa.BufferReader(blob)).read_all()
        return (table.select(columns) if columns is not None else table).to_pandas()
    return pd.read_parquet(io.BytesIO(blob), columns=columns)


#: Rows per stored chunk: SQLite refuses a blob over 1 GB, and 1,000,000 mentions of one type can score over
#: 30 M pairs. A pair takes ~30 bytes, a prepared record well under 100 bytes compressed.
PAIRS_PER_CHUNK = 4_000_000
RECORDS_PER_CHUNK = 1_000_000


def _records_rows(seq: int, records: pd.DataFrame) -> Iterator[tuple[str, int, bytes]]:
    """``er_state`` rows ``(part, seq, blob)`` of ``records`` as LZ4 Arrow IPC blobs (:func:`_records_blob`) of at
    most :data:`RECORDS_PER_CHUNK` rows, from ``seq`` on, in order."""
    for k, start in enumerate(range(0, max(len(records), 1), RECORDS_PER_CHUNK)):
        part = records.iloc[start:start + RECORDS_PER_CHUNK].reset_index(drop=True)
        yield "records", seq + k, _records_blob(part)


def _keys_rows(seq: int, keys: np.ndarray) -> Iterator[tuple[str, int, bytes]]:
    """``er_state`` rows of block-key hashes as npy blobs of at most :data:`RECORDS_PER_CHUNK` rows."""
    for k, start in enumerate(range(0, max(len(keys), 1), RECORDS_PER_CHUNK)):
        yield "keys", seq + k, _npz({"keys": keys[start:start + RECORDS_PER_CHUNK]})


def _pairs_rows(seq: int, pairs: Mapping[str, np.ndarray]) -> Iterator[tuple[str, int, bytes]]:
    """``er_state`` rows of pair arrays as npz blobs of at most :data:`PAIRS_PER_CHUNK` pairs."""
    n = len(next(iter(pairs.values())))
    for k, start in enumerate(range(0, max(n, 1), PAIRS_PER_CHUNK)):
        yield "pairs", seq + k, _npz({f: a[start:start + PAIRS_PER_CHUNK] for f, a in pairs.items()})


def _stats_row(seq: int, stats: BlockStats, added: Mapping[int, np.ndarray] | None = None) -> tuple[str, int, bytes]:
    """The ``bstats`` row of a type's :class:`BlockStats`: the whole of them (chunk 0), or with ``added`` only
    the hashes the records of one update added to ``blank`` (a later chunk), with the records covered."""
    arrays = {"n": np.array([stats.n], dtype=np.int64), "rules": np.array(sorted(stats.blank), dtype=np.int64)}
    for j in sorted(stats.blank):
        arrays[f"b{j}"] = (stats.blank if added is None else added)[j]
        if added is None:
            arrays[f"c{j}"], arrays[f"r{j}"] = stats.capped[j]
    return "bstats", seq, _npz(arrays)


def _block_stats_of(blobs: list[bytes] | None, n: int) -> BlockStats | None:
    """The :class:`BlockStats` the ``bstats`` chunks hold, when they cover all ``n`` records (else None: a run
    that kept none added records; the next update makes them again)."""
    if not blobs:
        return None
    chunks = [_npz_arrays(b) for b in blobs]
    first = chunks[0]
    rules = [int(j) for j in first["rules"]]
    covered = [int(c["n"][0]) for c in chunks]
    if covered[-1] != n or any(b <= a for a, b in zip(covered, covered[1:])) or any(
            f"c{j}" not in first for j in rules):
        return None
    blank = {j: (np.unique(np.concatenate([c[f"b{j}"] for c in chunks])) if len(chunks) > 1
                 else np.asarray(first[f"b{j}"])).astype(np.uint64, copy=False) for j in rules}
    capped = {j: (np.asarray(first[f"c{j}"], dtype=np.uint64), np.asarray(first[f"r{j}"], dtype=np.int64))
              for j in rules}
    return BlockStats(n, blank, capped)


def _insert(conn, etype: str, rows: Iterable[tuple[str, int, bytes]]) -> None:
    """Write ``(part, seq, blob)`` rows of ``etype`` into ``er_state``."""
    conn.executemany("INSERT INTO er_state VALUES (?, ?, ?, ?)", ((etype, part, seq, blob) for part, seq, blob in rows))


def _insert_records(conn, etype: str, seq: int, records: pd.DataFrame) -> None:
    """Store ``records`` as LZ4 Arrow IPC blobs (:func:`_records_rows`), from ``seq`` on, in order."""
    _insert(conn, etype, _records_rows(seq, records))


def _insert_keys(conn, etype: str, seq: int, keys: np.ndarray) -> None:
    """Store block-key hashes as npy blobs (:func:`_keys_rows`), from ``seq`` on, in order."""
    _insert(conn, etype, _keys_rows(seq, keys))


def _insert_pairs(conn, etype: str, seq: int, pairs: Mapping[str, np.ndarray]) -> None:
    """Store pair arrays as npz blobs (:func:`_pairs_rows`), from ``seq`` on, in order."""
    _insert(conn, etype, _pairs_rows(seq, pairs))


@dataclass
class EncodedTypeState:
    """One type's :class:`TypeState` as :func:`save_state` writes it: its ``er_state`` rows ``(part, seq, blob)``
    and what the state's ``meta`` row says of it (records, and the blocking rules its block keys were made for:
    None when it keeps none)."""

    n: int
    key_rules: str | None
    rows: list[tuple[str, int, bytes]]


def encode_type_state(ts: TypeState) -> EncodedTypeState:
    """The rows a full :func:`save_state` writes for one type (dead pairs left out, rule-mask edits applied):
    made where the type was resolved, so that the writing process only stores blobs
    (:func:`save_encoded_state`)."""
    rows = list(_records_rows(0, ts.records))
    if ts.pairs:
        rows.extend(_pairs_rows(0, ts.live_pairs()))
    if ts.keys is not None:
        rows.extend(_keys_rows(0, ts.keys))
        if ts.block_stats is not None:
            rows.append(_stats_row(0, ts.block_stats))
    rows.append(("region", 0, _npz({"region": ts.region})))
    return EncodedTypeState(len(ts.records), ts.key_rules if ts.keys is not None else None, rows)


def save_encoded_state(conn, model_hash: str, judgements: list, types: Mapping[str, EncodedTypeState]) -> None:
    """Replace the ``er_state`` table and its ``meta`` row with encoded types (:func:`encode_type_state`, in
    the state's type order) of a state made with ``model_hash`` (:func:`state_hash`) and ``judgements``: what
    :func:`save_state` writes for the whole state (:func:`state_from_resolution`'s, for a full run)."""
    conn.execute(STATE_TABLE)
    conn.execute("DELETE FROM er_state")
    for etype, enc in types.items():
        _insert(conn, etype, enc.rows)
    _write_meta(conn, model_hash, sorted(_norm_judgements(judgements)), {t: e.n for t, e in types.items()},
                {t: e.key_rules for t, e in types.items() if e.key_rules is not None})


def save_state(conn, state: ERState) -> None:
    """Write ``state`` into the ``er_state`` table of a SQLite connection (inside the caller's transaction),
    replacing what it held (dead pairs left out, rule-mask edits applied). An incremental run adds to the
    stored state instead (:func:`type_writes`, then :func:`apply_writes`)."""
    conn.execute(STATE_TABLE)
    conn.execute("DELETE FROM er_state")
    for etype, ts in state.types.items():
        _insert(conn, etype, encode_type_state(ts).rows)
    _write_meta(conn, state.model_hash, state.judgements, {t: len(s.records) for t, s in state.types.items()},
                {t: s.key_rules for t, s in state.types.items() if s.keys is not None})


@dataclass
class TypeWrites:
    """What an incremental run writes into ``er_state`` for one updated type (:func:`type_writes`): ``ops`` in
    order, each ``("delete", parts)`` (the type's rows of those parts) or ``("insert", part, seq, blob)``, then
    the type's region labels (``region``, an npz blob that replaces the stored one)."""

    entity_type: str
    ops: list[tuple]
    region: bytes


def type_writes(conn, etype: str, ts: TypeState, records: pd.DataFrame | None, pairs, new_keys: np.ndarray | None,
                edits: tuple[np.ndarray, np.ndarray] | None,
                new_stats: Mapping[int, np.ndarray] | None = None) -> TypeWrites:
    """The ``er_state`` writes that append one type's update to the stored state (read-only on ``conn``, which
    gives each part's next chunk number): its new ``records``, new ``pairs`` (:class:`ScoredPairs` or a mapping
    of the pair fields; None: none), block-key hashes (``new_keys``; None: all of ``ts.keys`` written again)
    and rule-mask ``edits`` of stored pairs, and the block statistics (``ts.block_stats``: ``new_stats``, the hashes
    the new records added to them, appended; None: all of them written again, or none when ``ts`` has none); a
    type whose dead pairs pass :data:`COMPACT_DEAD_SHARE` has its
    live pairs written again instead (no edits left). ``ts`` is the type's state after the update. Made where
    the type was updated (a forked process), so the writing process only stores blobs (:func:`apply_writes`)."""
    def next_seq(part: str) -> int:
        return conn.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM er_state WHERE entity_type = ? AND part = ?",
                            (etype, part)).fetchone()[0]

    ops: list[tuple] = []
    if records is not None and len(records):
        ops.extend(("insert", *row) for row in _records_rows(next_seq("records"), records))
    compact = bool(ts.pairs) and len(ts.dead()) > COMPACT_DEAD_SHARE * pair_count(ts.pairs)
    if compact:  # enough dead pairs: the type's pairs written again without them, no edits left
        ops.append(("delete", ("pairs", "masks")))
        live = ts.live_pairs()
        ops.extend(("insert", *row) for row in _pairs_rows(0, {**live, "rule_mask": _narrow(live["rule_mask"])}))
    elif pairs is not None and len(pairs["left"] if isinstance(pairs, Mapping) else pairs):
        fields = {f: (pairs[f] if isinstance(pairs, Mapping) else getattr(pairs, f)) for f in _PAIR_FIELDS}
        ops.extend(("insert", *row) for row in _pairs_rows(next_seq("pairs"), fields))
    if new_keys is not None and len(new_keys):
        ops.extend(("insert", *row) for row in _keys_rows(next_seq("keys"), new_keys))
    elif new_keys is None:
        ops.append(("delete", ("keys",)))
        if ts.keys is not None:
            ops.extend(("insert", *row) for row in _keys_rows(0, ts.keys))
    if new_stats is not None and ts.block_stats is not None:
        if records is not None and len(records):  # no record added (a judgement alone): the kept ones hold
            ops.append(("insert", *_stats_row(next_seq("bstats"), ts.block_stats, new_stats)))
    elif ts.block_stats is not None or new_keys is None:
        ops.append(("delete", ("bstats",)))
        if ts.block_stats is not None:
            ops.append(("insert", *_stats_row(0, ts.block_stats)))
    if edits is not None and len(edits[0]) and not compact:
        ops.append(("insert", "masks", next_seq("masks"), _npz({"pos": np.asarray(edits[0], dtype=np.int64),
                                                                "mask": np.asarray(edits[1], dtype=np.uint32)})))
    return TypeWrites(etype, ops, _npz({"region": ts.region}))


def apply_writes(conn, writes: Iterable[TypeWrites]) -> None:
    """Carry out :func:`type_writes` of several types (inside the caller's transaction): each type's ``ops`` in
    turn, then each type's region labels (rows get their rowids in that order)."""
    writes = list(writes)
    for w in writes:
        for op in w.ops:
            if op[0] == "delete":
                conn.execute(f"DELETE FROM er_state WHERE entity_type = ? AND part IN ({', '.join('?' for _ in op[1])})",
                             (w.entity_type, *op[1]))
            else:
                conn.execute("INSERT INTO er_state VALUES (?, ?, ?, ?)", (w.entity_type, *op[1:]))
    for w in writes:  # a type without an update kept its region (resolve_new returns it unchanged)
        conn.execute("INSERT OR REPLACE INTO er_state VALUES (?, 'region', 0, ?)", (w.entity_type, w.region))


def _write_meta(conn, model_hash: str, judgements: list, n: Mapping[str, int], key_rules: Mapping[str, str]) -> None:
    """The state's ``meta`` row: its version, model hash, judgements, records per type and block-key rules."""
    meta = {"version": STATE_VERSION, "model_hash": model_hash, "judgements": judgements, "n": dict(n),
            "key_rules": dict(key_rules)}
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('er_state', ?)", (json.dumps(meta),))


def _narrow(masks: np.ndarray) -> np.ndarray:
    """Rule masks in the smallest unsigned type that holds their largest value (edits only clear bits)."""
    top = int(masks.max()) if len(masks) else 0
    return masks.astype(np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint32, copy=False)


def _edits(blobs: list[bytes] | None) -> tuple[np.ndarray, np.ndarray]:
    """The rule-mask edits of a type's ``masks`` chunks, applied in order (:func:`_merge_edits`)."""
    if not blobs:
        return _no_edits()
    return _merge_edits(*((a["pos"], a["mask"]) for a in (_npz_arrays(b) for b in blobs)))


def outdated_state(conn) -> bool:
    """True when the store holds an ER state of an earlier version: it is not used, and the full path rebuilds
    it once from the stored pairs (a version-1 state may keep pairs of blocks that outgrew a cap)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'er_state'").fetchone()
    return row is not None and json.loads(row[0]).get("version") != STATE_VERSION


def load_state(conn, model: Mapping[str, Any], settings: ERSettings | None = None) -> ERState | None:
    """The stored state when it exists and was made with ``model`` and the clustering policy of ``settings``
    (:func:`state_hash`); None otherwise."""
    meta = state_meta(conn, model, settings)
    if meta is None:
        return None
    state = ERState(meta["model_hash"], judgements=[tuple(j) for j in meta.get("judgements", [])])
    for etype, parts in _read_chunks(conn, _STATE_PARTS).items():
        ts = _type_state_of(etype, parts, meta)
        if ts is None:
            return None
        state.types[etype] = ts
    return state


_STATE_PARTS = ("records", "pairs", "region", "keys", "masks", "bstats")


def state_meta(conn, model: Mapping[str, Any], settings: ERSettings | None = None) -> dict | None:
    """The stored state's ``meta`` row (``version``, ``model_hash``, ``judgements``, records per type ``n``,
    ``key_rules``) when the state exists and was made with ``model`` and the clustering policy of ``settings``
    (:func:`state_hash`); None otherwise. Each type is then read on its own (:func:`load_type_state`)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'er_state'").fetchone()
    if row is None:
        return None
    meta = json.loads(row[0])
    if meta.get("version") != STATE_VERSION or meta.get("model_hash") != state_hash(model, settings):
        return None
    if not _has_state_table(conn):
        return None
    return meta


def load_type_state(conn, etype: str, meta: Mapping[str, Any]) -> TypeState | None:
    """One type's stored state (:func:`state_meta` gives ``meta``); None when it does not hold what ``meta``
    says (then the whole state is unusable). Its blobs are read with the store file mapped (:func:`_mapped`)."""
    with _mapped(conn, STATE_READ_MMAP):
        chunks = _read_chunks(conn, _STATE_PARTS, etype)
    return _type_state_of(etype, chunks.get(etype, {}), meta)


@dataclass
class ReadyStates:
    """Every entity type's stored state read at once, ahead of the resolve stage (:func:`read_type_states`):
    the state's ``meta`` row as read, the ER generation (:func:`~linkage.store.embedded.er_generation`) and
    the usable types' states, all of one snapshot of the store, and how many entities it holds."""

    meta: dict
    generation: int
    states: dict[str, TypeState]
    n_entities: int | None = None


class StatesReading:
    """How far a :func:`read_type_states` in another thread has come, and a way to end it early: ``first`` is
    set once the states of the :data:`FIRST_STATES` costliest types are read (each process of the resolve
    stage's first type, what it cannot start without — as ordered by the stored records alone: a large batch of
    new mentions of one type may change which type a process takes first, costing time, never results);
    ``stop`` (set by the resolve stage when it takes the states) ends the reading after the type being read. The types
    left unread are read by the process that updates them (:func:`_update_store_type`), after the fork, while the
    other process works."""

    def __init__(self) -> None:
        import threading

        self.first = threading.Event()
        self.stop = threading.Event()


#: Types whose states :func:`read_type_states` reads before it heeds :attr:`StatesReading.stop`: the first type
#: of each of the resolve stage's two processes (the costliest ones, :func:`_claim_order`).
FIRST_STATES = 2


def read_type_states(conn, progress: StatesReading | None = None) -> ReadyStates | None:
    """Every type's stored state (:func:`load_type_state`, each type whose blobs hold what ``meta`` says; the
    others are left out, for the resolve stage to find unusable itself), the ``meta`` row and the ER generation,
    read inside the caller's read transaction (one snapshot), with the stored entities' count; None without a
    state of this version.

    For :func:`linkage.pipeline.read_ahead`: a thread reads them while the job loads (no load writes the state,
    its meta row or the generation); :func:`resolve_store_incremental` uses them only when its own ``meta``
    and generation are equal to these. The model is not checked here (:func:`state_meta` does, there). Each
    type's blobs are read and decoded before the next one's are read, the costliest type first
    (:func:`_claim_order`: the order the resolve stage's processes take them). ``progress``: its ``first`` is
    set once the first :data:`FIRST_STATES` types are read (or all, when fewer), and after those the reading
    ends, with the types read whole so far, as soon as its ``stop`` is set (asked before each blob and before a
    type's blobs are decoded; a type left out is read by the process that updates it: at 100,000 reports +
    1,000 business and the simple types, ~0.03-0.05 s, read after the fork instead of the fork waiting for
    them)."""
    try:
        return _read_type_states(conn, progress)
    finally:
        if progress is not None:
            progress.first.set()


def _read_type_states(conn, progress: StatesReading | None) -> ReadyStates | None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'er_state'").fetchone()
    if row is None:
        return None
    meta = json.loads(row[0])
    if meta.get("version") != STATE_VERSION or not _has_state_table(conn) or not isinstance(meta.get("n"), dict):
        return None
    ready = ReadyStates(meta, er_generation(conn), {},
                        int(conn.execute("SELECT COUNT(*) FROM entities").fetchone()[0]))
    for k, etype in enumerate(_claim_order(meta, {}, list(meta["n"]))):
        stop = None
        if progress is not None and k >= FIRST_STATES:
            progress.first.set()
            stop = progress.stop.is_set
        chunks = _read_chunks(conn, _STATE_PARTS, etype, stop)
        if chunks is None or (stop is not None and stop()):  # told to stop: the type is left (read as it is used)
            break
        ts = _type_state_of(etype, chunks.get(etype, {}), meta)
        if ts is not None:
            ready.states[etype] = ts
    return ready


#: Bytes of the store file SQLite maps into memory while an incremental run reads a type's state
#: (:func:`load_type_state`): a blob is then copied out of the mapping instead of read a page at a time, one
#: system call per 4 KB page (100,000 reports + 1,000, one read per fresh process, mean of 6: person ~95 MB
#: of blobs 0.150 -> 0.131 CPU s (0.226 -> 0.198 wall), address 0.092 -> 0.081, business 0.052 -> 0.042).
#: The mapping is given up once the state is read (the connection's setting is put back).
STATE_READ_MMAP = 1 << 31


@contextlib.contextmanager
def _mapped(conn, size: int):
    """Inside: ``conn`` reads through a memory mapping of up to ``size`` bytes of the store file (``PRAGMA
    mmap_size``; SQLite caps it at its build's limit, 0 where it maps nothing); afterwards the connection's
    own setting again. Not inside a transaction of ``conn`` (a mapping is set up when one starts): as is.
    linkage never shrinks a store file (no VACUUM, no auto-vacuum), which a mapping needs: a file cut short
    by something else while mapped would end the process (SIGBUS) instead of raising "damaged"."""
    if conn.in_transaction:
        yield
        return
    before = int(conn.execute("PRAGMA mmap_size").fetchone()[0])
    if before >= size:
        yield
        return
    conn.execute(f"PRAGMA mmap_size={int(size)}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA mmap_size={before}")


def _type_state_of(etype: str, parts: Mapping[str, list[bytes]], meta: Mapping[str, Any]) -> TypeState | None:
    if not parts.get("records") or not parts.get("region"):
        return None
    rec = _records(parts["records"])
    pairs = _pairs(parts.get("pairs", []), views=True)
    region = _npz_arrays(parts["region"][0])["region"]
    if len(region) != len(rec) or meta["n"].get(etype) != len(rec):
        return None
    edits = _edits(parts.get("masks"))
    if len(edits[0]) and (edits[0][-1] >= pair_count(pairs) or "rule_mask" not in pairs):
        return None
    key_rules = meta.get("key_rules", {})
    keys = None
    if parts.get("keys") and etype in key_rules:
        keys = [_npz_arrays(b)["keys"] for b in parts["keys"]]
        keys = np.concatenate(keys) if len(keys) > 1 else keys[0]
        if len(keys) != len(rec):  # not kept for every record: made again by the next update
            keys = None
    stats = _block_stats_of(parts.get("bstats"), len(rec)) if keys is not None else None
    return TypeState(rec, pairs, region, keys, key_rules.get(etype, "") if keys is not None else "", edits,
                     stats)


@contextlib.contextmanager
def _read_snapshot(conn):
    """Inside: ``conn`` reads one snapshot of the store: the caller's transaction, or a read transaction opened
    here and ended when the block is left."""
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if own:
            conn.execute("COMMIT")


def _read_chunks(conn, parts: tuple[str, ...], etype: str | None = None,
                 stop: Callable[[], bool] | None = None) -> dict[str, dict[str, list[bytes]]] | None:
    """The stored blobs of ``parts`` per entity type (only ``etype`` when given), each part's chunks in order;
    None when ``stop`` (asked before each blob) says to stop.

    Each blob is read through SQLite's incremental blob I/O (one copy, into the bytes returned) instead of as a
    column of the query (copied twice): ~200 MB of state at 100,000 reports, 0.2 -> 0.1 CPU s for the pairs.
    Read inside one read transaction (the caller's, or one opened here), so all chunks are of one state."""
    sql = (f"SELECT entity_type, part, rowid FROM er_state WHERE part IN ({', '.join('?' for _ in parts)})"
           + (" AND entity_type = ?" if etype is not None else "") + " ORDER BY entity_type, part, seq")
    out: dict[str, dict[str, list[bytes]]] = {}
    with _read_snapshot(conn):
        for t, part, rowid in conn.execute(sql, tuple(parts) + ((etype,) if etype is not None else ())).fetchall():
            if stop is not None and stop():
                return None
            out.setdefault(t, {}).setdefault(part, []).append(_blob(conn, rowid))
    return out


def _blob(conn, rowid: int) -> bytes:
    """The ``data`` blob of one ``er_state`` row (b"" for NULL)."""
    try:
        with conn.blobopen("er_state", "data", rowid, readonly=True) as blob:
            return blob.read()
    except sqlite3.OperationalError:  # NULL (or not a blob): read it as a value
        data = conn.execute("SELECT data FROM er_state WHERE rowid = ?", (rowid,)).fetchone()[0]
        return b"" if data is None else data


def _records(blobs: list[bytes], columns: list[str] | None = None) -> pd.DataFrame:
    """Record chunks as one table, in order."""
    frames = [_records_chunk(b, columns) for b in blobs]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _pairs(blobs: list[bytes], views: bool = False) -> dict[str, np.ndarray]:
    """Pair chunks as one array per field, in order ({} without chunks). ``views=True``: the arrays of a
    single chunk are read-only views into its blob (:func:`_npz_arrays`), not copies."""
    loaded = [_npz_arrays(b) if views else np.load(io.BytesIO(b)) for b in blobs]
    if not loaded:
        return {}
    fields = [f for f in _PAIR_FIELDS if all(f in x for x in loaded)]  # a version-1 chunk has no rule_mask
    return {f: np.concatenate([x[f] for x in loaded]) if len(loaded) > 1 else loaded[0][f] for f in fields}


def _npz_arrays(blob: bytes) -> Mapping[str, np.ndarray]:
    """The arrays of an ``np.savez`` blob as read-only views into ``blob`` (no copy, no checksum pass: the
    members of ``np.savez`` are stored uncompressed); what ``np.load`` gives when a member is compressed or
    holds Python objects. Reading ~150 MB of pairs this way saves copying them (and faulting in the pages).

    >>> arrays = _npz_arrays(_npz({"a": np.arange(3), "b": np.ones((2, 2), dtype=np.int8)}))
    >>> arrays["a"].tolist(), arrays["b"].shape, arrays["a"].flags.writeable
    ([0, 1, 2], (2, 2), False)
    """
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for info in z.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                return np.load(io.BytesIO(blob))
            n_name, n_extra = struct.unpack_from("<HH", blob, info.header_offset + 26)  # local file header
            start = info.header_offset + 30 + n_name + n_extra
            head = io.BytesIO(blob[start:start + min(info.file_size, 65_536)])
            version = np.lib.format.read_magic(head)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(head) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(head))
            if dtype.hasobject:
                return np.load(io.BytesIO(blob))
            count = int(np.prod(shape, dtype=np.int64))
            arr = np.frombuffer(blob, dtype=dtype, count=count, offset=start + head.tell())
            out[name] = arr.reshape(shape, order="F" if fortran else "C")
    return out


def _has_state_table(conn) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'er_state'").fetchone() is not None


def stored_scored_pairs(conn) -> list[ScoredPairs] | None:
    """Every live scored pair the stored state holds (dead pairs, which no blocking rule makes any more, left
    out), per fuzzy type as :class:`ScoredPairs` over that type's records (mention ids in state order), with
    their rule masks; None when the store has no state (an older store: read the ``er_pairs`` table instead).

    This reads the record and pair blobs only, not the state's meta, so it also serves the full path when the
    state cannot be used incrementally (mentions deleted since, judgements changed): the pairs of mentions that
    are gone are dropped by the resolver (:func:`linkage.resolve.engine._old_pairs`).
    """
    if not _has_state_table(conn):
        return None
    chunks = _read_chunks(conn, ("records", "pairs", "masks"))
    if not any(parts.get("records") for parts in chunks.values()):
        return None
    out = []
    for etype, parts in sorted(chunks.items()):
        if not parts.get("pairs") or not parts.get("records"):
            continue
        p = _live(_pairs(parts["pairs"]), _edits(parts.get("masks")))
        ids = _records(parts["records"], ["mention_id"])["mention_id"].to_numpy(dtype=object)
        out.append(ScoredPairs(etype, ids, p["left"].astype(np.int32, copy=False), p["right"].astype(np.int32, copy=False),
                               p["weight"], p["prob"], p["matched"].astype(bool, copy=False), p["levels"],
                               p["reason"], p.get("rule_mask")))
    return out


def _live(pairs: dict[str, np.ndarray], edits: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """Pair fields with the rule-mask edits applied and the dead pairs (mask 0) left out."""
    if not len(edits[0]) or not pairs:
        return pairs
    pairs = dict(pairs)
    pairs["rule_mask"] = pairs["rule_mask"].astype(np.uint32)
    pairs["rule_mask"][edits[0]] = edits[1]
    keep = pairs["rule_mask"] != 0
    return {f: a[keep] for f, a in pairs.items()}


@dataclass(frozen=True)
class PairProbabilities:
    """The scored pairs of one type, reduced to what the graph reads: record mention ids, pair indices into
    them and match probabilities (:func:`stored_pair_probabilities`)."""

    entity_type: str
    mention_ids: np.ndarray
    left: np.ndarray
    right: np.ndarray
    prob: np.ndarray


def stored_pair_probabilities(conn, min_probability: float = 0.0) -> list[PairProbabilities]:
    """Read-only: per fuzzy type the stored scored pairs with a match probability of at least
    ``min_probability`` (indices, probabilities and the records' mention ids only; [] without a state).

    Loads only the ``left``, ``right`` and ``prob`` arrays of each pair chunk and the ``mention_id`` column of
    the records, so the graph stage can read the pairs of 1,000,000 reports cheaply
    (:mod:`linkage.graph.candidates`).
    """
    if not _has_state_table(conn):
        return []
    out = []
    for etype, parts in sorted(_read_chunks(conn, ("records", "pairs", "masks")).items()):
        if not parts.get("pairs") or not parts.get("records"):
            continue
        left, right, prob = [], [], []
        pos, mask = _edits(parts.get("masks"))
        dead, start = pos[mask == 0], 0
        for blob in parts["pairs"]:
            with np.load(io.BytesIO(blob)) as z:
                p = z["prob"]
                ok = p >= min_probability
                gone = dead[(dead >= start) & (dead < start + len(p))] - start
                ok[gone] = False
                start += len(p)
                keep = np.flatnonzero(ok)
                left.append(z["left"][keep])
                right.append(z["right"][keep])
                prob.append(p[keep])
        ids = _records(parts["records"], ["mention_id"])["mention_id"].to_numpy(dtype=object)
        out.append(PairProbabilities(etype, ids, np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64),
                                     np.concatenate(prob)))
    return out


def pairs_table(scored: Iterable[ScoredPairs]) -> pd.DataFrame:
    """Scored pairs as the rows ``er_pairs`` held: ``left_id, right_id, entity_type, weight, probability,
    matched, levels, reason``, ids oriented smallest first, sorted by ``left_id, right_id``."""
    from linkage.resolve.engine import REASONS, _level_strings

    frames = []
    reasons = np.asarray(REASONS, dtype=object)
    for sp in scored:
        mids = np.asarray(sp.mention_ids, dtype=object)
        lid, rid = mids[sp.left], mids[sp.right]
        swap = lid > rid
        lid, rid = np.where(swap, rid, lid), np.where(swap, lid, rid)
        frames.append(pd.DataFrame({
            "left_id": lid, "right_id": rid, "entity_type": sp.entity_type, "weight": sp.weight,
            "probability": sp.prob, "matched": sp.matched.astype(int), "levels": _level_strings(sp.levels),
            "reason": reasons[sp.reason]}))
    cols = ["left_id", "right_id", "entity_type", "weight", "probability", "matched", "levels", "reason"]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    out = pd.concat(frames, ignore_index=True)
    out = out.drop_duplicates(["left_id", "right_id"], keep="first")  # as INSERT OR IGNORE into er_pairs did
    return out.sort_values(["left_id", "right_id"], kind="stable").reset_index(drop=True)[cols]


def prune_state(conn, mention_ids: Iterable[str]) -> int:
    """Remove ``mention_ids`` from the stored state (their prepared records and every pair they are in), for
    retention: no personal data of a purged mention stays behind in the state. Returns the pairs removed.

    The state is then marked unusable for an incremental run (its cluster regions and the entities of the
    remaining mentions may change), so the next run takes the full path, which re-reads the remaining pairs
    (:func:`stored_scored_pairs`) instead of scoring them again. Call inside the caller's transaction.
    """
    gone = set(str(m) for m in mention_ids)
    if not gone or not _has_state_table(conn):
        return 0
    removed = 0
    types = [r[0] for r in conn.execute("SELECT DISTINCT entity_type FROM er_state ORDER BY entity_type")]
    for etype in types:
        parts = _read_chunks(conn, ("records", "pairs", "masks"), etype).get(etype, {})
        if not parts.get("records"):
            continue
        records = _records(parts["records"])
        drop = records["mention_id"].astype(str).isin(gone).to_numpy()
        if not drop.any():
            continue
        keep_idx = np.flatnonzero(~drop)
        new_pos = np.full(len(records), -1, dtype=np.int64)
        new_pos[keep_idx] = np.arange(len(keep_idx))
        pairs = _live(_pairs(parts.get("pairs", [])), _edits(parts.get("masks")))  # the dead pairs go for good
        # the block-key hashes go too (the next run is a full one and makes them again)
        conn.execute("DELETE FROM er_state WHERE entity_type = ? AND part IN ('records', 'pairs', 'region', 'keys', "
                     "'masks', 'bstats')", (etype,))
        _insert_records(conn, etype, 0, records.iloc[keep_idx].reset_index(drop=True))
        if pairs:
            ok = (new_pos[pairs["left"]] >= 0) & (new_pos[pairs["right"]] >= 0)
            removed += int((~ok).sum())
            kept = {f: a[ok] for f, a in pairs.items()}
            kept["left"] = new_pos[kept["left"]].astype(pairs["left"].dtype)
            kept["right"] = new_pos[kept["right"]].astype(pairs["right"].dtype)
            _insert_pairs(conn, etype, 0, kept)
    conn.execute("DELETE FROM meta WHERE key = 'er_state'")  # regions and counts no longer hold: full path next
    return removed


# -- the store side ------------------------------------------------------------------------------------

def _executemany(conn, table: str, columns: list[str], rows: Iterable[tuple], mode: str = "INSERT") -> None:
    sql = f"{mode} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    conn.executemany(sql, rows)


def write_frame(conn, table: str, df: pd.DataFrame, columns: list[str]) -> None:
    """Insert a frame's rows (plain str/int values, no NaN) in one executemany."""
    if len(df):
        cols = [df[c].tolist() for c in columns]
        _executemany(conn, table, columns, zip(*cols))


def resolve_store_incremental(store, model: Mapping[str, Any], judgements: list, progress=None,
                              settings: ERSettings | None = None, changed: list | None = None,
                              processes: int = 1, parallel_min_mentions: int = 0,
                              ready: "ReadyStates | Callable[[], ReadyStates | None] | None" = None,
                              reading: Callable[[], bool] | None = None) -> dict[str, int] | None:
    """Resolve the mentions added to ``store`` since the last run against its stored state, writing only what
    changed: the new records and pairs are appended to the state; ``mention_entities`` and ``entities`` change only for
    the touched entities (ids carried over as in a full run). Returns counts, or None when the store has no
    usable state (no state, another model, or mentions were deleted): then run the full path.

    ``changed``, when given, is extended with the ids of the mentions whose assignment was written (the new
    ones and the touched ones): every other mention kept its entity. Left as it was when None is returned.

    Each entity type is updated on its own (:func:`_update_store_type`: its part of the state read, the new
    mentions prepared, blocked, scored and clustered, its state writes encoded), so with ``processes`` 2 or
    more and at least ``parallel_min_mentions`` stored mentions the types are spread over this process and a
    forked one (:func:`_run_store_types`); the writes are then made here, in type order, so the store is the
    same for any number of processes.

    ``ready``: the types' states read ahead (:func:`read_type_states`), used instead of reading them here when
    their ``meta`` row and ER generation equal the store's now (else each type is read as without them); the
    forked process inherits them. It may be a function giving them (waiting for the reads), called at most
    once (not when None is returned before the states are needed), after the state's meta row and the new
    mentions are read; ``reading``: whether those reads (or a thread a fork
    waits for, :func:`linkage.forking.fork_would_wait`, when the types are spread over two processes) still go
    on. While they do, the new mentions of the types are read and prepared here, one type at a time in the
    order the processes take them (:func:`_prepare_ahead`): work either process would do after the fork, done
    in time this process would spend waiting.
    """
    from linkage.retention import _temp_ids  # noqa: F401 (imported before forking: each process would import it)

    conn = store.conn
    meta = state_meta(conn, model, settings)
    if meta is None:
        return None
    new, n_mentions, n_resolved = _new_mentions_by_type(store, defer=True)
    n_new = sum(len(df) for df in new.values())
    n_state = sum(int(v) for v in meta["n"].values())
    if n_mentions != n_state + n_new or n_resolved != n_state:
        return None  # mentions were deleted or assignments changed outside the resolver: rebuild
    if any(t in FUZZY_TYPES and t not in model for t in new):
        return None  # a type without a fitted model: the full path fits it
    judged = sorted(_norm_judgements(judgements or ()))
    moved = set(judged) ^ set(tuple(j) for j in meta.get("judgements", []))
    state_types = sorted(meta["n"])
    order = sorted(set(new) | set(state_types))
    parallel = processes > 1 and n_mentions >= parallel_min_mentions
    say = progress or (lambda stage: None)
    prepared = _prepare_ahead(conn, new, _claim_order(meta, new, order), _waiting(reading, parallel), say)
    if callable(ready):
        ready = ready()
    usable = ready is not None and ready.meta == meta and ready.generation == er_generation(conn)
    n_entities = ready.n_entities if usable else None  # the entities are written with the generation
    job = _StoreJob(Path(store.path), meta, new, model, judged, {a for a, _, _ in moved} | {b for _, b, _ in moved},
                    _settings(settings), dict(ready.states) if usable else {}, prepared)
    ready = None  # the job holds the states now (each is let go once its type is updated)
    outcomes = _run_store_types(job, store, order, processes if parallel else 1, say)
    job.ready.clear()  # the states of types the forked process updated
    job.prepared.clear()  # and their new mentions prepared before the fork
    if outcomes is None:
        return None  # a type's stored state does not hold what its meta row says: rebuild
    try:
        counts, written = _write_update(store, outcomes, job, state_types + [t for t in order if t not in meta["n"]],
                                        n_mentions, n_new, n_entities)
    except _Rebuild:
        return None
    if changed is not None:
        changed.extend(written)
    return counts


@dataclass
class _StoreJob:
    """What updating each entity type of a store needs (a forked process inherits it; nothing is pickled in):
    the store's path, the state's meta row (:func:`state_meta`), the new mentions per type
    (:func:`_new_mentions_by_type`), the model,
    the judgements now (sorted) and the mentions of judgements that changed since the state; ``ready``: types'
    states read ahead (:func:`read_type_states`; each taken out by the process that updates its type);
    ``prepared``: types' new mentions read and prepared before the processes start (:func:`_prepare_ahead`:
    ``{type: prepared records or None}``), each taken out by the process that updates its type."""

    path: Path
    meta: Mapping[str, Any]
    new: Mapping[str, "pd.DataFrame | _NewRows"]  # a _NewRows is read by the process updating its type
    model: Mapping[str, Any]
    judgements: list
    changed_ids: set
    cfg: ERSettings
    ready: dict = field(default_factory=dict)
    prepared: dict = field(default_factory=dict)


@dataclass
class TypeOutcome:
    """One entity type after an incremental update (:func:`_update_store_type`): the mentions whose entity may
    have changed (``touched_old``) and the assignments and entities of those and the new ones (None when the
    type had nothing to update), its state writes (:func:`type_writes`; None: nothing written), and what the
    state's meta row and the counts say of it (records, block-key rules when it keeps hashes, live pairs);
    ``previous``: the stored assignments of ``touched_old`` (:func:`_stored_assignments`, read by the process
    that updated the type; None: not read there)."""

    entity_type: str
    touched_old: np.ndarray | None
    assignments: pd.DataFrame | None
    entities: pd.DataFrame | None
    writes: TypeWrites | None
    n_records: int
    key_rules: str | None
    n_pairs: int
    previous: pd.DataFrame | None = None


def _update_store_type(job: _StoreJob, etype: str, conn, previous_entities, say) -> TypeOutcome | None:
    """Update one type: read its stored state through ``conn`` (:func:`load_type_state`), prepare its new
    mentions and work them in (:func:`_update_type`), and encode its state writes; None when its stored state
    is unusable. ``previous_entities`` as :func:`resolve_new` takes it."""
    old = None
    if etype in job.meta["n"]:
        old = job.ready.pop(etype, None)
        if old is None:
            old = load_type_state(conn, etype, job.meta)
        if old is None:
            return None
    if etype in job.prepared:  # read and prepared ahead, before the processes started
        new_records = job.prepared.pop(etype)
    else:
        new_records = _prepared(etype, job.new.get(etype), conn, say)
    upd, ts = _update_type(etype, old, new_records, job.model, job.judgements, job.changed_ids, job.cfg, say,
                           previous_entities)
    n_pairs = pair_count(ts.pairs) - len(ts.dead()) if ts.pairs else 0
    key_rules = ts.key_rules if ts.keys is not None else None
    if upd is None:
        return TypeOutcome(etype, None, None, None, None, len(ts.records), key_rules, n_pairs)
    writes = type_writes(conn, etype, ts, upd.new_records, upd.new_pairs, upd.new_keys, upd.new_edits, upd.new_stats)
    return TypeOutcome(etype, upd.touched_old, upd.assignments, upd.entities, writes, len(ts.records), key_rules,
                       n_pairs, _stored_assignments(conn, upd.touched_old))


#: Relative cost of updating one stored record of a type in an incremental run, for spreading the types over
#: processes (measured at 100,000 reports + 1,000: person and address about equal, business a fifth).
UPDATE_COST: Mapping[str, float] = {"person": 1.0, "address": 1.0, "business": 0.6}
SIMPLE_UPDATE_COST = 0.03
_FORKED: dict[str, Any] = {}


def _run_store_types(job: _StoreJob, store, order: list[str], processes: int, say) -> dict[str, TypeOutcome] | None:
    """``{type: outcome}`` of :func:`_update_store_type` for every type of ``order``; None when a type's stored
    state is unusable. With ``processes`` > 1 (and fork available) one forked process and this one each take
    the most costly type nobody has taken yet (:func:`_claim_order`: :data:`UPDATE_COST` times its stored and
    new records) until none is left; each reads its types' state through a connection of its own. Each type is
    updated alone, so who updates it does not change its outcome."""
    import multiprocessing as mp

    if processes <= 1 or len(order) < 2 or "fork" not in mp.get_all_start_methods():
        out = {}
        for etype in order:
            got = _update_store_type(job, etype, store.conn, stored_entities(store), say)
            if got is None:
                return None
            out[etype] = got
        return out
    import dataclasses
    import os
    from concurrent.futures.process import BrokenProcessPool

    from linkage.forking import fork_pool

    if job.cfg.workers == -1:  # rapidfuzz threads: share the cores between the two processes
        job = dataclasses.replace(job, cfg=dataclasses.replace(job.cfg, workers=max(1, (os.cpu_count() or 1) // 2)))
    ctx = mp.get_context("fork")
    _FORKED.update(job=job, order=_claim_order(job.meta, job.new, order), lock=ctx.Lock(),
                   next=ctx.Value("i", 0, lock=False), stopped=ctx.Value("i", 0, lock=False))
    out: dict[str, TypeOutcome | None] = {}
    try:
        pool = fork_pool(1)  # its worker ends if this process is killed
        returned = False
        try:
            worker = pool.submit(_store_types_worker)
            try:
                # a worker that failed (raised, or died) ends the run at once: no type more is taken
                while (not (worker.done() and worker.exception() is not None)
                       and (etype := _claim_type(alive=lambda: not worker.done())) is not None):
                    _drop_others(job, etype, out)
                    out[etype] = _update_store_type(job, etype, store.conn, stored_entities(store), say)
                    say(f"{etype}: done")
                    if out[etype] is None:
                        _claim_type(stop=True)
            except BaseException:  # this process failed or was interrupted: the worker takes no type more
                _claim_type(stop=True)
                raise
            _claim_type(stop=True)
            out.update(worker.result())
            returned = True
        finally:
            # a worker that gave its result is told to end and not waited for: its exit (freeing what it
            # made) overlaps this process's writes; the pool's own thread joins it. Otherwise it is waited for.
            pool.shutdown(wait=not returned)
    except BrokenProcessPool:
        from linkage.errors import LinkageError

        raise LinkageError(
            "entity resolution: a worker process stopped unexpectedly (killed, or out of memory?) while updating "
            "the entity types. Nothing was written; run again, or set [resolve] processes = 1 to update every "
            "type in this process") from None
    finally:
        _FORKED.clear()
    if any(o is None for o in out.values()):
        return None
    return {t: out[t] for t in order}


def _claim_order(meta: Mapping[str, Any], new: Mapping[str, Any], order: list[str]) -> list[str]:
    """The types of ``order`` in the order the processes take them (:func:`_run_store_types`): the most costly
    first (:data:`UPDATE_COST` times its stored and new records), ties by name.

    >>> _claim_order({"n": {"person": 10, "phone": 50}}, {"address": range(9), "phone": range(1)},
    ...              ["address", "person", "phone"])
    ['person', 'address', 'phone']
    """
    n = {t: int(meta["n"].get(t, 0)) + (len(new[t]) if t in new else 0) for t in order}
    cost = {t: n[t] * UPDATE_COST.get(t, SIMPLE_UPDATE_COST) for t in order}
    return sorted(order, key=lambda t: (-cost[t], t))


def _waiting(reading: Callable[[], bool] | None, parallel: bool) -> Callable[[], bool]:
    """Whether this process would wait now before it can update the types: for the reads ahead of their states
    (``reading``), or, when they are spread over two processes (``parallel``), for a thread every fork waits for
    (:func:`linkage.forking.fork_would_wait`: a background checkpoint, another read ahead)."""
    from linkage.forking import fork_would_wait

    return lambda: bool((reading is not None and reading()) or (parallel and fork_would_wait()))


def _prepared(etype: str, sub: "pd.DataFrame | _NewRows | None", conn, say) -> pd.DataFrame | None:
    """The prepared records of one type's new mentions (None without any): ``sub`` read through ``conn``
    when it is not read yet (:class:`_NewRows`, by the process that prepares it), then prepared
    (:func:`~linkage.resolve.features.prepare`)."""
    if isinstance(sub, _NewRows):
        sub = sub.read(conn)
    n_sub = 0 if sub is None else len(sub)
    say(f"{etype}: preparing {n_sub} new mentions")
    return prepare(sub, etype) if n_sub else None


def _prepare_ahead(conn, new: Mapping[str, "pd.DataFrame | _NewRows"], order: list[str],
                   waiting: Callable[[], bool], say) -> dict[str, pd.DataFrame | None]:
    """``{type: prepared records}`` (:func:`_prepared`, read through ``conn``) of the types of
    ``order`` that have new mentions, one after the other in that order, for as long as ``waiting()`` says this
    process would wait anyway (a type is read and prepared whole once begun: the last may outlast the wait).

    At 100,000 reports + 1,000 the resolve stage waited 0.02-0.11 s for the ER states read ahead, while a big
    type's new mentions take ~0.02 s to read and 0.05-0.08 s to prepare in the process that takes the type after
    the fork, before its update can start. Prepared here, in that wait, they are work of neither process. The
    records are the same whoever prepares them (:func:`~linkage.resolve.features.prepare` of the same rows)."""
    out: dict[str, pd.DataFrame | None] = {}
    for etype in order:
        if etype not in new:
            continue
        if not waiting():
            break
        out[etype] = _prepared(etype, new[etype], conn, say)
    return out


def _drop_others(job: _StoreJob, claimed: str, mine: Mapping[str, Any]) -> None:
    """Let go of the states read ahead (``job.ready``) and the new mentions prepared (``job.prepared``) of the
    types before ``claimed`` in the forked job's order that this process did not take (``mine``): the other
    process updates them. Each process holds the states it was forked with (the worker shares the parent's
    pages); a state's memory is freed once neither does."""
    order = _FORKED["order"]
    for taken in order[:order.index(claimed)]:
        if taken not in mine:
            job.ready.pop(taken, None)
            job.prepared.pop(taken, None)


def _claim_type(stop: bool = False, alive: Callable[[], bool] | None = None) -> str | None:
    """The next type of the forked job's order nobody has taken (None when none is left or the job is stopped);
    ``stop``: leave the rest untaken (a type's state was unusable, or one process failed), without waiting for
    the lock. ``alive`` (the parent's view of the worker): while the lock is busy and the worker is gone (it may
    have died holding it), give up instead of waiting for ever."""
    order, counter, stopped, lock = _FORKED["order"], _FORKED["next"], _FORKED["stopped"], _FORKED["lock"]
    if stop:
        stopped.value = 1
        return None
    while not lock.acquire(timeout=0.5):
        if alive is not None and not alive():
            return None
    try:
        i = counter.value
        if stopped.value or i >= len(order):
            return None
        counter.value = i + 1
        return order[i]
    finally:
        lock.release()


class _ReadStore:
    """A read-only connection dressed as the store :func:`stored_entities` reads (in a forked process)."""

    def __init__(self, conn) -> None:
        self.conn = conn

    @contextlib.contextmanager
    def transaction(self):
        yield self.conn
        self.conn.commit()


def _store_types_worker() -> dict[str, TypeOutcome | None]:
    """In the forked process: update the types it takes (:func:`_claim_type`) through a connection of its own."""
    from linkage.store.embedded import read_only

    job = _FORKED["job"]
    conn = read_only(job.path)
    try:
        out: dict[str, TypeOutcome | None] = {}
        while (etype := _claim_type()) is not None:
            _drop_others(job, etype, out)
            out[etype] = _update_store_type(job, etype, conn, stored_entities(_ReadStore(conn)), lambda stage: None)
            if out[etype] is None:
                _claim_type(stop=True)
        return out
    finally:
        conn.close()


def _new_mentions(store, cols: str) -> tuple[pd.DataFrame, int, int]:
    """``(the mentions without an entity (columns ``cols``, by mention id), mentions, assignments)``, read in one
    snapshot.

    A load appends rows, so the ``k`` (mentions less assignments) mentions added since the last run are
    normally the ``k`` newest rows: those are read (work that grows with the new mentions, not the store) and
    used when all of them lack an entity and the row before them has one. Otherwise (rows added between older
    ones, assignments of deleted mentions) every mention is checked, as before. Not detected on the fast path:
    an assignment of a mention that no longer exists together with an older mention that lost its assignment
    (the counts cancel). linkage itself never writes that (a purge deletes a mention with its assignment);
    only an edit of the store from outside can, and ``linkage run --full`` repairs it."""
    with _read_snapshot(store.conn):
        n_mentions, n_resolved, before = _newest_unassigned(store)
        if before is None:
            return _all_unassigned(store, cols), n_mentions, n_resolved
        new = store.frame(f"SELECT {cols} FROM mentions WHERE rowid > ?", (before,))
    return new.sort_values("mention_id", kind="stable").reset_index(drop=True), n_mentions, n_resolved


def _all_unassigned(store, cols: str) -> pd.DataFrame:
    """Every mention without an entity (columns ``cols``, by mention id): the whole table checked."""
    return store.frame(f"SELECT {cols} FROM mentions WHERE mention_id NOT IN "
                       "(SELECT mention_id FROM mention_entities) ORDER BY mention_id")


def _newest_unassigned(store) -> tuple[int, int, int | None]:
    """``(mentions, assignments, rowid)``: the rowid after which the ``k`` (mentions less assignments) newest
    mention rows lie, when exactly those rows lack an entity (every older row has one; :func:`_new_mentions`'
    fast path); None otherwise (no new mentions, nothing resolved yet, or rows without an entity among older
    ones). Reads only the newest ``k + 1`` rows' ids; inside the caller's read transaction."""
    conn = store.conn
    n_mentions, n_resolved = store.count("mentions"), store.count("mention_entities")
    k = n_mentions - n_resolved
    if not 0 < k < n_mentions:
        return n_mentions, n_resolved, None
    # the newest k + 1 rows: how many lack an entity, and the oldest of those
    lacking, oldest = conn.execute(
        "SELECT COUNT(*), MIN(rowid) FROM (SELECT rowid, mention_id FROM mentions ORDER BY rowid DESC "
        "LIMIT ?) WHERE mention_id NOT IN (SELECT mention_id FROM mention_entities)", (k + 1,)).fetchone()
    before = conn.execute("SELECT rowid FROM mentions ORDER BY rowid DESC LIMIT 1 OFFSET ?", (k,)).fetchone()[0]
    return n_mentions, n_resolved, (before if lacking == k and oldest > before else None)


@dataclass(frozen=True)
class _NewRows:
    """A type's new mentions not read yet (:func:`_new_mentions_by_type` with ``defer``): the rows of type
    ``etype`` among the mention rows ``after < rowid <= last``, whose mention ids were ``ids`` (in mention id
    order) when counted, read by :meth:`read` (columns ``columns``)."""

    etype: str
    ids: tuple[str, ...]
    after: int
    last: int
    columns: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, conn) -> pd.DataFrame:
        """The rows as :func:`_new_mentions_by_type` reads them at once (object columns, None for NULL, by
        mention id), through ``conn``; ``LinkageError`` when they are no longer the mentions counted (one deleted,
        or another inserted in its place). A row's other values edited in place between the count and the read
        are not seen: only an outside writer could do that, as one job at a time changes a store
        (:mod:`linkage.runlock`)."""
        rows = conn.execute(f"SELECT mention_id, {', '.join(self.columns)} FROM mentions WHERE rowid > ? "
                            "AND rowid <= ? AND entity_type = ? ORDER BY +mention_id",
                            (self.after, self.last, self.etype)).fetchall()
        if len(rows) != len(self.ids) or any(r[0] != i for r, i in zip(rows, self.ids)):
            from linkage.errors import LinkageError

            raise LinkageError(f"entity resolution: the new {self.etype} mentions changed while they were resolved "
                               f"({len(self.ids)} counted, {len(rows)} read); run again")
        return _mention_frame([r[1:] for r in rows], self.columns)


def _mention_frame(rows: list, columns: tuple[str, ...]) -> pd.DataFrame:
    """Mention rows as :func:`_new_mentions_by_type` gives them: object columns, sorted by mention id."""
    df = pd.DataFrame(rows if rows else None, columns=list(columns), dtype=object)
    return df.sort_values("mention_id", kind="stable").reset_index(drop=True)


def _new_mentions_by_type(store, defer: bool = False) -> tuple[dict[str, "pd.DataFrame | _NewRows"], int, int]:
    """``({type: its mentions without an entity}, mentions, assignments)``, read in one snapshot (but see
    ``defer``): each type's
    frame holds ``mention_id`` and the columns feature preparation reads of that type
    (:data:`linkage.resolve.features.INPUT_COLUMNS`; every stored column of a type not listed there) as plain
    values (object columns, None for NULL; what the full path prepares, :func:`linkage.store.embedded.mentions_of_type`),
    sorted by mention id; types without new mentions are left out.

    As :func:`_new_mentions`: the ``k`` (mentions less assignments) newest rows, when all of them lack an
    entity and the row before them has one (checked by a query that reads only their ids), are read one type at
    a time: a new person mention's 7 columns instead of all 32, most of them NULL (4,094 new mentions at
    100,000 reports + 1,000: 0.06 -> 0.015 s; :func:`_newest_unassigned` decides). Otherwise every mention is
    checked (as :func:`_new_mentions` does).

    ``defer``: on the fast path each type's rows are counted here and read by the process that updates the type
    (:class:`_NewRows` in place of its frame: the same rows, read in parallel by the two processes instead of
    before they start; 4,094 new mentions at 100,000 reports + 1,000: ~0.025 s CPU of reads and frames), each
    checked then to be the mentions counted (:meth:`_NewRows.read`)."""
    from linkage import model as schema
    from linkage.resolve.features import INPUT_COLUMNS

    def fields(etype: str) -> tuple[str, ...]:
        wanted = INPUT_COLUMNS.get(etype)
        if wanted is None:
            return schema.STORED_MENTION_FIELDS
        return ("mention_id",) + tuple(c for c in dict.fromkeys(wanted)
                                       if c in schema.STORED_MENTION_FIELDS and c != "mention_id")

    conn = store.conn
    with _read_snapshot(conn):
        n_mentions, n_resolved, before = _newest_unassigned(store)
        # deferred: each type's new mention ids only (~4,000 at 100,000 reports + 1,000: a few ms)
        ids = conn.execute("SELECT entity_type, mention_id FROM mentions WHERE rowid > ? ORDER BY entity_type, "
                           "+mention_id", (before,)).fetchall() if before is not None and defer else None
        if ids and all(isinstance(etype, str) for etype, _ in ids):
            last = conn.execute("SELECT MAX(rowid) FROM mentions").fetchone()[0]
            by_type: dict[str, list] = {}
            for etype, mid in ids:
                by_type.setdefault(etype, []).append(mid)
            return ({etype: _NewRows(etype, tuple(m), before, last, fields(etype)) for etype, m in by_type.items()},
                    n_mentions, n_resolved)
        if before is not None:
            out = {}
            # (+rowid, +mention_id: the rowid range, not the mention_id index, and sorted after)
            for (etype,) in conn.execute("SELECT DISTINCT entity_type FROM mentions WHERE rowid > ? "
                                         "ORDER BY 1", (before,)).fetchall():
                cols = fields(str(etype))
                rows = conn.execute(f"SELECT {', '.join(cols)} FROM mentions WHERE rowid > ? AND entity_type = ? "
                                    "ORDER BY +mention_id", (before, etype)).fetchall()
                out[str(etype)] = _mention_frame(rows, cols)
            return out, n_mentions, n_resolved
        new = _all_unassigned(store, ", ".join(schema.STORED_MENTION_FIELDS))  # rows without one among older ones
    out = {}
    if len(new):
        types = new["entity_type"].astype(str).to_numpy(dtype=object)
        for etype in sorted(set(types.tolist())):
            cols = fields(etype)
            sub = new[types == etype][list(cols)].astype(object)
            sub = sub.where(sub.notna(), None)  # None for NULL, as read by type
            out[etype] = _mention_frame(list(sub.itertuples(index=False, name=None)), cols)
    return out, n_mentions, n_resolved


def stored_entities(store) -> Callable[[np.ndarray], np.ndarray]:
    """``f(mention_ids)``: the entity id ``mention_entities`` holds for each mention id (None for none), in
    order; for :func:`resolve_new`'s ``previous_entities``."""
    from linkage.retention import _temp_ids  # retention imports this module: import here

    def lookup(mention_ids: np.ndarray) -> np.ndarray:
        ids = [str(m) for m in np.asarray(mention_ids, dtype=object).tolist()]
        if not any("\x00" in m for m in ids):
            # the ids as one JSON parameter (json_each): 8x less than filling and joining a temporary table
            # (5,000 ids: 10 against 80 ms); json_each cuts an id at a NUL, which the store never holds
            found = dict(store.conn.execute(
                "SELECT e.mention_id, e.entity_id FROM mention_entities e "
                "WHERE e.mention_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids, ensure_ascii=False),)).fetchall())
        else:
            with store.transaction():
                _temp_ids(store.conn, "er_previous", ids)
            found = dict(store.conn.execute("SELECT p.id, e.entity_id FROM temp.er_previous p "
                                            "JOIN mention_entities e ON e.mention_id = p.id").fetchall())
            store.conn.execute("DROP TABLE temp.er_previous")
        return np.array([found.get(m) for m in ids], dtype=object)

    return lookup


#: The stored assignments of a set of mentions (``{}``: where the ids come from), in mention id order.
_ASSIGNMENTS_SQL = "SELECT mention_id, entity_id, entity_type FROM mention_entities WHERE mention_id IN {}"


def _stored_assignments(conn, mention_ids: Iterable[str]) -> pd.DataFrame | None:
    """The stored assignments (``mention_id, entity_id, entity_type``) of ``mention_ids`` read through ``conn``,
    by mention id, as :func:`_write_update` reads them; None when an id cannot go into JSON (:func:`_ids_json`:
    :func:`_write_update` reads them itself). Read by the process that updated a type, in parallel with the
    other's types: a +1,000 run on 100,000 reports touches ~4,000 stored mentions, ~0.02-0.08 s of reads that
    were made after both processes were done."""
    got = _ids_json(mention_ids)
    if got is None:
        return None
    cur = conn.execute(_ASSIGNMENTS_SQL.format("(SELECT value FROM json_each(?))"), (got,))
    return pd.DataFrame.from_records(cur.fetchall(), columns=[d[0] for d in cur.description])


def _write_update(store, outcomes: Mapping[str, TypeOutcome], job: _StoreJob, state_order: list[str],
                  n_mentions: int, n_new: int, n_entities: int | None = None) -> tuple[dict[str, int], list[str]]:
    """Write the outcomes of every type (in type order): the assignments and entities of the touched mentions
    (ids carried over; only the rows that differ are written, :func:`_write_changed`), the state's writes, its
    meta row (types in ``state_order``: the stored ones, then new ones). Returns the counts (``entities``: the
    stored entities afterwards) and the mention ids whose assignment may have changed (touched and new).

    The touched mentions' stored assignments are those the types' outcomes carry (``previous``), when all do
    (else read here); ``n_entities``: the entities stored now, when known (read ahead with the states, of the
    same ER generation), else counted here."""
    from linkage.store.stable_ids import carry_over

    conn = store.conn
    updates = [o for o in outcomes.values() if o.assignments is not None]
    assignments = [u.assignments for u in updates if len(u.assignments)]
    touched_old = [x for u in updates for x in u.touched_old.tolist()]
    fresh = pd.concat(assignments, ignore_index=True) if assignments else pd.DataFrame(
        columns=["mention_id", "entity_id", "entity_type"])
    ents = pd.concat([u.entities for u in updates if len(u.entities)], ignore_index=True) if assignments else \
        pd.DataFrame(columns=["entity_id", "entity_type", "label", "n_mentions", "attributes"])
    read = [u.previous for u in updates]
    with _write_cache(conn), store.transaction():
        if read and all(p is not None for p in read):
            # each type's part read by its process; in mention id order as the query below gives them
            previous = pd.concat(read, ignore_index=True) if len(read) > 1 else read[0]
            previous = previous.sort_values("mention_id", kind="stable").reset_index(drop=True)
        else:
            in_touched, params = _in_ids(conn, "er_touched", touched_old)
            previous = store.frame(_ASSIGNMENTS_SQL.format(in_touched), params)
        rename, _ = carry_over(previous.set_index("mention_id")["entity_id"], fresh.set_index("mention_id")["entity_id"],
                               events=False)
        old_ids = set(previous["entity_id"].tolist())
        final = {g: rename.get(g, g) for g in set(fresh["entity_id"].tolist())}
        # carry_over numbers a fresh id that an old entity still has ("<id>.<k>") by how many ids were
        # claimed or made before it; over the whole store that count includes every untouched entity
        # (each keeps its id), so add those to the count made over the touched part
        untouched = (store.count("entities") if n_entities is None else n_entities) - len(old_ids)
        for g, f in final.items():
            if f != g and f not in old_ids:
                stem, _, k = f.rpartition(".")
                final[g] = f"{stem}.{int(k) + untouched}"
        # a fresh id equal to an untouched entity's id is numbered against the whole store in a full run:
        # let the caller do the full run then
        clash = [f for f in final.values() if f not in old_ids]
        if clash:
            in_clash, params = _in_ids(conn, "er_clash", clash)
            if conn.execute(f"SELECT COUNT(*) FROM entities WHERE entity_id IN {in_clash}", params).fetchone()[0]:
                raise _Rebuild()
        fresh["entity_id"] = _mapped_values(fresh["entity_id"], final)
        ents["entity_id"] = _mapped_values(ents["entity_id"], final)
        ents["n_mentions"] = ents["n_mentions"].astype(int)
        n_entities = _write_changed(conn, previous, fresh, ents, old_ids, untouched + len(old_ids))
        bump_er_generation(conn)
        # the scored pairs live in the state only (see :func:`stored_scored_pairs`); rows an older version
        # wrote into ``er_pairs`` would be stale now
        conn.execute("DELETE FROM er_pairs")
        conn.execute(STATE_TABLE)
        apply_writes(conn, [o.writes for o in outcomes.values() if o.writes is not None])
        _write_meta(conn, job.meta["model_hash"], job.judgements, {t: outcomes[t].n_records for t in state_order},
                    {t: outcomes[t].key_rules for t in state_order if outcomes[t].key_rules is not None})
    n_pairs = sum(o.n_pairs for o in outcomes.values())
    return ({"mentions": n_mentions, "entities": n_entities, "new_mentions": n_new, "pairs": n_pairs,
             "touched_mentions": len(fresh)}, fresh["mention_id"].astype(str).tolist())


_ENTITY_COLUMNS = ["entity_id", "entity_type", "label", "n_mentions", "attributes"]


def _mapped_values(column: pd.Series, mapping: Mapping[Any, Any]) -> pd.Series:
    """``column.map(mapping)`` (a value not among the keys gives a missing value). A column of the dtype pandas
    gives a list of texts (:data:`~linkage.arrays.LISTED_TEXT`), mapped by a plain ``dict`` to texts, is made
    through a list of its values, in its dtype and index (anything else is mapped by pandas, which infers the
    result's dtype): pandas maps an Arrow string column through an index of the mapping's keys. The ~8,000 touched
    and new mentions' entity ids of a +1,000 run on 100,000 reports and their ~3,700 entities' (after both processes
    are done): 2.8 and 2.2 ms against 1.9 and 0.9 (medians of 21 calls in one process; pandas' first calls cost
    more: 5.5 and 4.4 over 7).

    >>> s = pd.Series(["a", "b", "a", "c"], dtype="str", index=[3, 1, 2, 0])
    >>> got = _mapped_values(s, {"a": "x", "b": "y"})
    >>> got.equals(s.map({"a": "x", "b": "y"})), got.tolist()[:3], got.isna().tolist()
    (True, ['x', 'y', 'x'], [False, False, False, True])
    >>> _mapped_values(pd.Series([], dtype=object), {}).equals(pd.Series([], dtype=object).map({}))
    True
    """
    if not len(column) or column.dtype != LISTED_TEXT or type(mapping) is not dict:
        return column.map(mapping)  # (pandas infers another column's dtype; a dict subclass may have __missing__)
    get = mapping.get
    values = [get(v) for v in column.tolist()]
    if {type(v) for v in values} - {type(None)} != {str}:
        return column.map(mapping)  # no value mapped, or not to texts: pandas infers the result's dtype
    return pd.Series(values, index=column.index, dtype=column.dtype, name=column.name)


#: SQLite page cache (KiB, as ``PRAGMA cache_size`` takes it negated) and memory mapping of the store file while
#: :func:`_write_update` writes. Its rows land on pages all over the indexes of ``mention_entities`` and
#: ``entities`` (entity ids are hashes): a +1,000 run on 100,000 reports dirties ~8,000 pages (~32 MB), which a
#: default cache (2 MB) spills into the log in the middle of the transaction and reads back; read through the
#: mapping a page costs no system call. Alternating in one process, 8 rounds each: the write's CPU 0.155 ->
#: 0.137 s (median). Both are put back afterwards (the cache shrinks to the connection's own size again).
WRITE_CACHE_KIB = 64 * 1024
WRITE_MMAP = STATE_READ_MMAP


@contextlib.contextmanager
def _write_cache(conn):
    """Inside (around, not in, a transaction of ``conn``): a page cache of :data:`WRITE_CACHE_KIB` and a
    mapping of :data:`WRITE_MMAP` bytes of the store file (:func:`_mapped`), when the connection has less;
    afterwards its own settings again."""
    before = int(conn.execute("PRAGMA cache_size").fetchone()[0])
    # a positive size counts pages, a negative one KiB: compared in KiB (pages of the store's page size)
    have = before * int(conn.execute("PRAGMA page_size").fetchone()[0]) // 1024 if before > 0 else -before
    grow = have < WRITE_CACHE_KIB
    if grow:
        conn.execute(f"PRAGMA cache_size=-{WRITE_CACHE_KIB}")
    try:
        with _mapped(conn, WRITE_MMAP):
            yield
    finally:
        if grow:
            conn.execute(f"PRAGMA cache_size={before}")


def _ids_json(ids: Iterable[str]) -> str | None:
    """The ids (sorted, unique) as one JSON list for ``json_each``, or None when one holds a NUL (json_each
    cuts a text there; the store never holds one).

    >>> _ids_json(["b", "a", "b"]), _ids_json(["a" + chr(0) + "b"])
    ('["a", "b"]', None)
    """
    ids = sorted({str(i) for i in ids})
    return None if any("\x00" in i for i in ids) else json.dumps(ids, ensure_ascii=False)


def _in_ids(conn, name: str, ids: Iterable[str]) -> tuple[str, tuple]:
    """``(sql, params)`` for ``x IN <sql>`` over ``ids``: one JSON parameter read by ``json_each``, or a
    temporary table ``name`` filled here when an id cannot go into JSON (:func:`_ids_json`). The 4,034 touched
    mentions of a +1,000 run on 100,000 reports as one parameter instead of a table filled row by row: their
    stored assignments read in 20-23 instead of 31-34 ms CPU (the rows come in the same order)."""
    from linkage.retention import _temp_ids  # retention imports this module: import here

    ids = [str(i) for i in ids]  # read twice when an id cannot go into JSON
    got = _ids_json(ids)
    if got is not None:
        return "(SELECT value FROM json_each(?))", (got,)
    _temp_ids(conn, name, ids)
    return f"(SELECT id FROM temp.{name})", ()


def _write_changed(conn, previous: pd.DataFrame, fresh: pd.DataFrame, ents: pd.DataFrame, old_ids: set,
                   n_before: int) -> int:
    """Make ``mention_entities`` and ``entities`` hold what a rewrite of the touched part would write, writing
    only the rows that differ (inside the caller's transaction); returns the entities stored afterwards.

    ``previous`` (``mention_id, entity_id, entity_type``) are the stored assignments of the touched mentions,
    ``fresh`` the assignments of the touched and new mentions now (final ids), ``ents`` the entities of those
    (final ids), ``old_ids`` the ids the touched mentions had, ``n_before`` the entities stored before. Most
    touched mentions keep their entity and most of their entities stay as they were (a +1,000 run on 100,000
    reports touches ~8,000 mentions and changes ~30): deleting and writing them all again dirtied most pages
    of both tables and their indexes (0.3 s of commit). Rows that stay keep their rowids, a changed one is
    updated in place, new ones are appended in ``fresh``/``ents`` order; every reader orders by id."""
    from linkage.retention import _temp_ids  # retention imports this module: import here

    f_ids = fresh["mention_id"].astype(str).tolist()
    f_ent, f_type = fresh["entity_id"].tolist(), fresh["entity_type"].astype(str).tolist()
    stored = {m: (e, t) for m, e, t in zip(previous["mention_id"].astype(str).tolist(), previous["entity_id"].tolist(),
                                           previous["entity_type"].astype(str).tolist())}
    now = set(f_ids)
    gone = [m for m in stored if m not in now]
    if gone:  # a touched mention without an assignment now (not expected): its row goes, as the rewrite did
        _temp_ids(conn, "er_gone", gone)
        conn.execute("DELETE FROM mention_entities WHERE mention_id IN (SELECT id FROM temp.er_gone)")
    update, insert = [], []
    for m, e, t in zip(f_ids, f_ent, f_type):
        was = stored.get(m)
        if was is None:
            insert.append((m, e, t))
        elif was != (e, t):
            update.append((e, t, m))
    conn.executemany("UPDATE mention_entities SET entity_id = ?, entity_type = ? WHERE mention_id = ?", update)
    _executemany(conn, "mention_entities", ["mention_id", "entity_id", "entity_type"], insert)

    cols = ", ".join(_ENTITY_COLUMNS)
    in_old, params = _in_ids(conn, "er_old_entities", old_ids)
    was_rows = {r[0]: tuple(r) for r in conn.execute(
        f"SELECT {cols} FROM entities WHERE entity_id IN {in_old}", params).fetchall()}
    rows = list(zip(*(ents[c].tolist() for c in _ENTITY_COLUMNS))) if len(ents) else []
    keep = {r[0] for r in rows}
    dropped = [e for e in was_rows if e not in keep]
    if dropped:
        _temp_ids(conn, "er_dropped", dropped)
        conn.execute("DELETE FROM entities WHERE entity_id IN (SELECT id FROM temp.er_dropped)")
    changed = [r[1:] + r[:1] for r in rows if r[0] in was_rows and was_rows[r[0]] != r]
    conn.executemany("UPDATE entities SET entity_type = ?, label = ?, n_mentions = ?, attributes = ? "
                     "WHERE entity_id = ?", changed)
    added = [r for r in rows if r[0] not in was_rows]
    _executemany(conn, "entities", _ENTITY_COLUMNS, added)
    return n_before - len(dropped) + len(added)


class _Rebuild(Exception):
    """Raised inside the incremental write when only a full carry-over gives the ids a full run gives."""
