"""Blocking: which record pairs are worth comparing. Several rules; the union of their pairs is compared.

In:  a feature table (see :func:`linkage.resolve.features.prepare`) and the :class:`BlockingRule` objects of
     one entity type.
Out: :func:`block` gives :class:`Candidates` (record-index pairs ``left < right``, each with a bit mask of
     the rules that found it) and a :class:`BlockingReport` (records, blocks, pairs and new pairs per rule,
     the largest blocks, how many blocks were capped).

A block is the set of records that share every key of a rule (records with an empty key are left out of
that rule). A block of up to ``max_block`` records is compared all-against-all; a bigger one (a common
surname, a large flat) is compared as a sorted neighbourhood: records ordered by the rule's ``order_by``
columns, each compared with the next ``window`` records. So pairs grow at most like ``n * window`` per
rule: close to linear in the data. A record that lacks an ``order_by`` value has no place in that order (a
mention without birth date sorts before everyone), so with the rule's ``incomplete_block`` it is compared
with every record of its block that shares the ``order_by`` values it has, when those are few enough;
such records are rare, so the pairs stay close to linear. Everything is vectorised; the order of pairs is
deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from linkage.arrays import sorted_unique
from linkage.er_settings import BlockingRule

KEY_SEP = "\x1f"


@dataclass
class Candidates:
    """Candidate pairs as record indices (``left < right``), sorted, unique, with the finding rules."""

    left: np.ndarray
    right: np.ndarray
    rule_mask: np.ndarray
    rule_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(len(self.left))

    def by_rule(self, name: str) -> np.ndarray:
        """Boolean mask of the pairs that rule ``name`` found."""
        bit = np.uint32(1 << self.rule_names.index(name))
        return (self.rule_mask & bit) != 0


@dataclass
class RuleStats:
    """What one blocking rule did."""

    rule: str
    records_with_key: int
    blocks: int
    pairs: int
    new_pairs: int
    capped_blocks: int
    largest_blocks: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class BlockingReport:
    """Pairs per rule and the largest blocks; ``total_pairs`` is the size of the union."""

    entity_type: str
    n_records: int
    rules: list[RuleStats]
    total_pairs: int

    def to_dict(self) -> dict:
        return {
            "entity_type": self.entity_type,
            "n_records": self.n_records,
            "total_pairs": self.total_pairs,
            "rules": [vars(r) | {"largest_blocks": [list(b) for b in r.largest_blocks]} for r in self.rules],
        }

    def to_text(self) -> str:
        """Plain-words summary, one line per rule."""
        lines = [f"{self.entity_type}: {self.n_records} records, {self.total_pairs} pairs compared"]
        for r in self.rules:
            big = ", ".join(f"{k.replace(KEY_SEP, ' | ')} ({n})" for k, n in r.largest_blocks[:3])
            lines.append(f"  rule {r.rule}: {r.pairs} pairs ({r.new_pairs} not found by earlier rules) in {r.blocks} "
                         f"blocks; {r.capped_blocks} blocks capped; largest: {big or '-'}")
        return "\n".join(lines)


def _codes(values: pd.Series) -> np.ndarray:
    """Sort-order codes of a column (deterministic: factorize with sort)."""
    codes, _ = pd.factorize(values, sort=True)
    return codes.astype(np.int64)


class _Columns:
    """Sort-order codes of the columns of one feature table, made once and shared by its blocking rules.

    A rule's block of a record is its key string (:func:`block_keys`); :meth:`block_codes` numbers the blocks
    from the key columns' codes instead, in the same order: key strings join the values with
    :data:`KEY_SEP`, so they sort (and are equal) as the tuples of their values do, as long as no value holds
    a character at or below :data:`KEY_SEP` (checked; otherwise the caller uses the key strings).
    """

    def __init__(self, records: pd.DataFrame) -> None:
        self.records = records
        self._coded: dict[str, tuple[np.ndarray, np.ndarray, int, bool]] = {}

    def _column(self, name: str) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """(codes, distinct values in sorted order, code of '' or -1, codes usable: no missing value and no
        value holding a low character)."""
        if name not in self._coded:
            codes, uniques = pd.factorize(self.records[name].astype(str), sort=True)
            values = np.asarray(uniques, dtype=object)
            empty = int(np.flatnonzero(values == "")[0]) if (values == "").any() else -1
            # a missing value (NaN/None stays missing through astype(str) under pandas 3) has code -1, which
            # the code path cannot order as the key strings do: such a column takes the key-string path
            safe = not (codes < 0).any() and not any(v and min(v) <= KEY_SEP for v in values.tolist())
            self._coded[name] = (codes.astype(np.int64), values, empty, safe)
        return self._coded[name]

    def codes(self, name: str) -> np.ndarray:
        """Sort-order codes of one column (as :func:`_codes` of its text; over all records)."""
        return self._column(name)[0]

    def block_codes(self, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """``(idx, block_code)``: the records with every key non-empty, and their block numbers in the sort
        order of their key strings (what ``_codes`` of those strings gives); None when a key column is
        missing or a value holds a character at or below :data:`KEY_SEP`."""
        if not keys or any(k not in self.records.columns for k in keys):
            return None
        cols = [self._column(k) for k in keys]
        if not all(c[3] for c in cols):
            return None
        has = np.ones(len(self.records), dtype=bool)
        for codes, _, empty, _ in cols:
            if empty >= 0:
                has &= codes != empty
        idx = np.flatnonzero(has)
        combined = cols[0][0][idx]
        for codes, values, _, _ in cols[1:]:
            # dense ranks first, so the product stays far below 2**63 (ranks keep the tuple order)
            combined = np.unique(combined, return_inverse=True)[1].astype(np.int64) * len(values) + codes[idx]
        return idx, np.unique(combined, return_inverse=True)[1].astype(np.int64).reshape(-1)

    def key_of(self, keys: tuple[str, ...], record: int) -> str:
        """The key string of one record (as :func:`block_keys` writes it)."""
        return KEY_SEP.join(str(self._column(k)[1][self._column(k)[0][record]]) for k in keys)


def block_keys(records: pd.DataFrame, rule: BlockingRule) -> pd.Series:
    """The block key of every record for ``rule`` ('' when any key column is empty).

    >>> df = pd.DataFrame({"surname": ["vries", "vries", ""], "birth_year": ["1985", "1985", "1985"]})
    >>> list(block_keys(df, BlockingRule("r", ("surname", "birth_year"))))
    ['vries\\x1f1985', 'vries\\x1f1985', '']
    """
    missing = [k for k in rule.keys if k not in records.columns]
    if missing:
        return pd.Series([""] * len(records), index=records.index, dtype=object)
    key = records[rule.keys[0]].astype(str)
    empty = key == ""
    for k in rule.keys[1:]:
        col = records[k].astype(str)
        empty |= col == ""
        key = key + KEY_SEP + col
    return key.where(~empty, "").astype(object)


def rule_pairs(records: pd.DataFrame, rule: BlockingRule, largest: int = 10,
               columns: "_Columns | None" = None) -> tuple[np.ndarray, np.ndarray, RuleStats]:
    """All pairs one rule proposes, as record indices (left < right), plus its statistics. ``columns``: the
    coded columns of ``records`` (:class:`_Columns`), shared by the rules of one :func:`block` call.

    >>> df = pd.DataFrame({"k": ["a", "a", "a", "b", ""]})
    >>> left, right, stats = rule_pairs(df, BlockingRule("r", ("k",)))
    >>> sorted(zip(left.tolist(), right.tolist())), stats.blocks
    ([(0, 1), (0, 2), (1, 2)], 2)
    """
    columns = _Columns(records) if columns is None else columns
    coded = columns.block_codes(rule.keys)
    if coded is None:  # a key column is missing or holds a separator-like character: the key strings decide
        keys = block_keys(records, rule)
        idx = np.flatnonzero((keys != "").to_numpy())
        sub = keys.iloc[idx]
        block_code = _codes(sub) if len(idx) >= 2 else None
    else:
        idx, block_code = coded
        sub = None
    if len(idx) < 2:
        return (np.empty(0, np.int64), np.empty(0, np.int64),
                RuleStats(rule.name, int(len(idx)), int(len(idx)), 0, 0, 0, []))
    order_cols = [block_code]
    for col in rule.order_by:
        if col in records.columns:
            order_cols.append(columns.codes(col)[idx])
    order_cols.append(idx)  # final tie-break: record index
    order = np.lexsort(tuple(reversed(order_cols)))
    rec_sorted = idx[order]
    blk_sorted = block_code[order]
    n = len(rec_sorted)
    starts = np.flatnonzero(np.r_[True, blk_sorted[1:] != blk_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    block_end = np.repeat(starts + sizes, sizes)
    block_size = np.repeat(sizes, sizes)
    limit = np.where(block_size <= rule.max_block, block_size - 1, min(rule.window, rule.max_block))
    limit = np.minimum(limit, block_end - np.arange(n) - 1)
    lefts, rights = [], []
    active = np.flatnonzero(limit >= 1)
    k = 1
    while len(active):
        a = rec_sorted[active]
        b = rec_sorted[active + k]
        lefts.append(np.minimum(a, b))
        rights.append(np.maximum(a, b))
        k += 1
        active = active[limit[active] >= k]
    if rule.incomplete_block > 0 and (block_size > rule.max_block).any():
        extra_left, extra_right = _incomplete_pairs(records, rule, idx, order, rec_sorted, blk_sorted,
                                                    block_size > rule.max_block, order_cols[1:-1])
        lefts.append(extra_left)
        rights.append(extra_right)
    left = np.concatenate(lefts) if lefts else np.empty(0, np.int64)
    right = np.concatenate(rights) if rights else np.empty(0, np.int64)
    if rule.incomplete_block > 0 and len(left):
        key = sorted_unique(left.astype(np.int64) * len(records) + right)
        left, right = key // len(records), key % len(records)
    top = np.argsort(-sizes, kind="stable")[:largest]
    if sub is None:
        biggest = [(columns.key_of(rule.keys, int(rec_sorted[starts[t]])), int(sizes[t])) for t in top if sizes[t] > 1]
    else:
        sub_sorted = sub.to_numpy(dtype=object)[order]
        biggest = [(str(sub_sorted[starts[t]]), int(sizes[t])) for t in top if sizes[t] > 1]
    stats = RuleStats(rule.name, int(n), int(len(starts)), int(len(left)), 0, int((sizes > rule.max_block).sum()), biggest)
    return left.astype(np.int64), right.astype(np.int64), stats


def _incomplete_pairs(records: pd.DataFrame, rule: BlockingRule, idx: np.ndarray, order: np.ndarray,
                      rec_sorted: np.ndarray, blk_sorted: np.ndarray, oversized: np.ndarray,
                      order_codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of each record of an oversized block that lacks an ``order_by`` value with every record of its
    block sharing the ``order_by`` values it has (up to ``rule.incomplete_block`` records; see
    :class:`BlockingRule`). Positions are those of the sorted order of :func:`rule_pairs` (block, then
    ``order_by``), so each such group is one contiguous run; ``order_codes`` are the sort codes of the
    ``order_by`` columns present (over ``idx``, unsorted)."""
    cols = [c for c in rule.order_by if c in records.columns]
    if not cols:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    codes, first_empty = [], np.full(len(idx), len(cols), dtype=np.int64)
    for j, col in enumerate(cols):
        codes.append(order_codes[j][order])
        empty = (records[col].astype(str).to_numpy(dtype=object)[idx] == "")[order]
        first_empty = np.where(empty & (first_empty == len(cols)), j, first_empty)
    lefts, rights = [], []
    change = blk_sorted[1:] != blk_sorted[:-1]
    for j in range(len(cols)):
        if j:
            change = change | (codes[j - 1][1:] != codes[j - 1][:-1])
        pos = np.flatnonzero(oversized & (first_empty == j))
        if not len(pos):
            continue
        run_start = np.flatnonzero(np.r_[True, change])
        run_size = np.diff(np.r_[run_start, len(blk_sorted)])
        run_of = np.repeat(np.arange(len(run_start)), run_size)
        start, size = run_start[run_of[pos]], run_size[run_of[pos]]
        ok = (size > 1) & (size <= rule.incomplete_block)
        pos, start, size = pos[ok], start[ok], size[ok]
        if not len(pos):
            continue
        total = int(size.sum())
        me = np.repeat(pos, size)
        other = np.repeat(start, size) + np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(size) - size, size)
        keep = me != other
        a, b = rec_sorted[me[keep]], rec_sorted[other[keep]]
        lefts.append(np.minimum(a, b))
        rights.append(np.maximum(a, b))
    if not lefts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(lefts), np.concatenate(rights)


def deletion_variants(value: str) -> list[str]:
    """The value and every string one deletion away (two values within one edit share a variant).

    >>> deletion_variants("abc")
    ['abc', 'bc', 'ac', 'ab']
    """
    return [value] + [value[:k] + value[k + 1:] for k in range(len(value))]


def _cross(sorted_recs: np.ndarray, start_a: np.ndarray, count_a: np.ndarray, start_b: np.ndarray,
           count_b: np.ndarray, other_recs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All pairs between group a and group b for each listed (a, b): vectorised cartesian products."""
    other = sorted_recs if other_recs is None else other_recs
    lengths = (count_a * count_b).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    which = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(total, dtype=np.int64) - offsets[which]
    cb = count_b[which]
    ra = sorted_recs[start_a[which] + within // cb]
    rb = other[start_b[which] + within % cb]
    keep = ra != rb
    ra, rb = ra[keep], rb[keep]
    return np.minimum(ra, rb), np.maximum(ra, rb)


def _fuzzy_rule_pairs(records: pd.DataFrame, rule: BlockingRule, largest: int):
    """Pairs sharing the exact keys whose ``fuzzy_key`` values are one edit apart (not equal)."""
    exact = block_keys(records, BlockingRule(rule.name, rule.keys)) if rule.keys else pd.Series("", index=records.index)
    fuzzy = records[rule.fuzzy_key].astype(str) if rule.fuzzy_key in records.columns else pd.Series("", index=records.index)
    has = ((exact != "") | (not rule.keys)) & (fuzzy != "")
    idx = np.flatnonzero(has.to_numpy())
    empty = RuleStats(rule.name, int(len(idx)), 0, 0, 0, 0, [])
    if len(idx) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), empty
    vocab_key = (exact.iloc[idx] + KEY_SEP + fuzzy.iloc[idx]).to_numpy(dtype=object)
    vcode, vocab = pd.factorize(pd.Series(vocab_key), sort=True)
    order = np.argsort(vcode, kind="stable")
    sorted_recs = idx[order]
    counts = np.bincount(vcode, minlength=len(vocab)).astype(np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    # deletion variants per vocabulary entry
    var_keys, var_owner = [], []
    for v, text in enumerate(vocab.tolist()):
        head, _, value = text.rpartition(KEY_SEP)
        for variant in set(deletion_variants(value)):
            var_keys.append(head + KEY_SEP + variant)
            var_owner.append(v)
    kcode, _ = pd.factorize(pd.Series(var_keys, dtype=object))
    owner = np.asarray(var_owner, dtype=np.int64)
    korder = np.lexsort((owner, kcode))
    ks, ow = kcode[korder], owner[korder]
    gstart = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    gsize = np.diff(np.r_[gstart, len(ks)])
    gend = np.repeat(gstart + gsize, gsize)
    a_list, b_list = [], []
    active = np.flatnonzero(gend - np.arange(len(ks)) > 1)
    k = 1
    while len(active):
        a_list.append(ow[active])
        b_list.append(ow[active + k])
        k += 1
        active = active[gend[active] - active > k]
    if not a_list:
        return np.empty(0, np.int64), np.empty(0, np.int64), empty
    va, vb = np.concatenate(a_list), np.concatenate(b_list)
    keep = va != vb
    vpair = sorted_unique(np.minimum(va[keep], vb[keep]) * len(vocab) + np.maximum(va[keep], vb[keep]))
    va, vb = vpair // len(vocab), vpair % len(vocab)
    product = counts[va] * counts[vb]
    ok = product <= rule.max_pairs
    left, right = _cross(sorted_recs, starts[va[ok]], counts[va[ok]], starts[vb[ok]], counts[vb[ok]])
    top = np.argsort(-product, kind="stable")[:largest]
    biggest = [(f"{vocab[va[t]]} ~ {vocab[vb[t]]}", int(product[t])) for t in top]
    return left, right, RuleStats(rule.name, int(len(idx)), int(len(vpair)), int(len(left)), 0, int((~ok).sum()), biggest)


def _empty_rule_pairs(records: pd.DataFrame, rule: BlockingRule, largest: int):
    """Pairs of each record with an empty ``pair_with_empty`` column and every record of its block."""
    keys = block_keys(records, rule)
    has = (keys != "").to_numpy()
    idx = np.flatnonzero(has)
    col = records[rule.pair_with_empty].astype(str).to_numpy() if rule.pair_with_empty in records.columns else np.full(len(records), "x")
    empty = RuleStats(rule.name, int(len(idx)), 0, 0, 0, 0, [])
    blanks = idx[col[idx] == ""]
    if len(blanks) == 0 or len(idx) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), empty
    codes, uniques = pd.factorize(keys.iloc[idx], sort=True)
    order = np.argsort(codes, kind="stable")
    sorted_recs = idx[order]
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    code_of = np.full(len(records), -1, np.int64)
    code_of[idx] = codes
    bcodes = code_of[blanks]
    border = np.lexsort((blanks, bcodes))
    blanks_sorted, bcodes = blanks[border], bcodes[border]
    bstart = np.flatnonzero(np.r_[True, bcodes[1:] != bcodes[:-1]])
    bcount = np.diff(np.r_[bstart, len(bcodes)])
    blk = bcodes[bstart]
    product = bcount * counts[blk]
    ok = product <= rule.max_pairs
    left, right = _cross(blanks_sorted, bstart[ok], bcount[ok], starts[blk[ok]], counts[blk[ok]], sorted_recs)
    if len(left):
        key = sorted_unique(left * len(records) + right)
        left, right = key // len(records), key % len(records)
    top = np.argsort(-product, kind="stable")[:largest]
    biggest = [(str(uniques[blk[t]]), int(product[t])) for t in top]
    return left, right, RuleStats(rule.name, int(len(idx)), int(len(blk)), int(len(left)), 0, int((~ok).sum()), biggest)


def block(records: pd.DataFrame, rules: tuple[BlockingRule, ...] | list[BlockingRule], entity_type: str = "",
          largest: int = 10, involving: np.ndarray | None = None) -> tuple[Candidates, BlockingReport]:
    """Union of the pairs of every rule, deduplicated, with per-rule statistics.

    Parameters
    ----------
    records:
        Feature table of one entity type.
    rules:
        Blocking rules (at most 32).
    involving:
        Optional boolean mask over records: keep only pairs with at least one side in it (incremental
        runs: new records against all).

    >>> df = pd.DataFrame({"a": ["x", "x", "y"], "b": ["1", "2", "2"]})
    >>> cand, report = block(df, [BlockingRule("a", ("a",)), BlockingRule("b", ("b",))])
    >>> list(zip(cand.left.tolist(), cand.right.tolist(), cand.rule_mask.tolist()))
    [(0, 1, 1), (1, 2, 2)]
    """
    n = len(records)
    parts = []
    columns = _Columns(records)
    for rule in rules:
        left, right, stats = _one_rule(records, rule, largest, columns)
        if involving is not None and len(left):
            keep = involving[left] | involving[right]
            left, right = left[keep], right[keep]
            stats.pairs = int(len(left))
        parts.append((left.astype(np.int64) * n + right, stats))
        del left, right
    return _union(n, rules, parts, entity_type)


def _one_rule(records: pd.DataFrame, rule: BlockingRule, largest: int, columns: _Columns | None = None):
    if rule.fuzzy_key:
        return _fuzzy_rule_pairs(records, rule, largest)
    if rule.pair_with_empty:
        return _empty_rule_pairs(records, rule, largest)
    return rule_pairs(records, rule, largest, columns)


def _rule_columns(rule: BlockingRule) -> list[str]:
    cols = list(rule.keys) + list(rule.order_by)
    for extra in (rule.fuzzy_key, rule.pair_with_empty):
        if extra:
            cols.append(extra)
    return list(dict.fromkeys(cols))


def _fuzzy_neighbours(values: np.ndarray, new_values: set) -> np.ndarray:
    """Mask over ``values``: equal to a value of ``new_values`` or one deletion-edit from one (shares a
    deletion variant), as :func:`_fuzzy_rule_pairs` pairs them."""
    variants = set()
    for v in new_values:
        variants.update(deletion_variants(v))
    inverse, uniq = pd.factorize(pd.Series(values, dtype=object))
    hit = np.fromiter((bool(variants.intersection(deletion_variants(str(u)))) for u in uniq.tolist()), dtype=bool,
                      count=len(uniq))
    return hit[inverse]


def block_involving(records: pd.DataFrame, rules: tuple[BlockingRule, ...] | list[BlockingRule],
                    involving: np.ndarray, order: np.ndarray, entity_type: str = "",
                    largest: int = 10, hashes: np.ndarray | None = None) -> tuple[Candidates, BlockingReport]:
    """The pairs :func:`block` gives with ``involving``, with work that grows with the involved records.

    Each rule looks only at the records of the blocks that hold an involved record (whole blocks, so that
    the ``max_block`` caps and sorted neighbourhoods are those of a run over everything). ``order`` is the
    sort key of the records in a run over everything (e.g. the mention ids when that run has them sorted):
    record-index ties break in that order, so the pairs are the same as :func:`block` on records in that
    order. Pairs come back as indices into ``records`` (``left < right``).

    ``hashes`` (optional, ``(records, rules)``: each record's block-key hash per rule, 0 for no key, as
    :func:`linkage.resolve.incremental.block_key_hashes` makes them) finds those blocks by comparing
    numbers instead of key values: the records sharing an involved record's hash hold its blocks whole (and,
    on a collision, another block whole, whose pairs involve no involved record and are dropped).

    >>> df = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["1", "2", "2", "3"]})
    >>> cand, _ = block_involving(df, [BlockingRule("a", ("a",)), BlockingRule("b", ("b",))],
    ...                           np.array([False, False, False, True]), np.arange(4))
    >>> list(zip(cand.left.tolist(), cand.right.tolist(), cand.rule_mask.tolist()))
    [(2, 3, 1)]
    """
    parts, _ = _involving_parts(records, rules, involving, order, largest, hashes, outgrown=False)
    return _union(len(records), rules, parts, entity_type)


def _union(n: int, rules, parts: list, entity_type: str) -> tuple[Candidates, BlockingReport]:
    """One sort over every rule's pairs (``left * n + right`` keys): the union, each pair's rule mask, and
    which rule found it first."""
    key_parts, rule_parts, stats_all = [], [], []
    for r_i, (key, stats) in enumerate(parts):
        key_parts.append(key)
        rule_parts.append(np.full(len(key), r_i, np.uint8))
        stats_all.append(stats)
    parts.clear()
    keys = np.concatenate(key_parts) if key_parts else np.empty(0, np.int64)
    rule_of = np.concatenate(rule_parts) if rule_parts else np.empty(0, np.uint8)
    del key_parts, rule_parts
    packed = np.sort(keys * 32 + rule_of.astype(np.int64))  # at most 32 rules
    keys, rule_of = packed // 32, (packed % 32).astype(np.uint8)
    del packed
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    bits = np.left_shift(np.uint32(1), rule_of.astype(np.uint32))
    mask_acc = np.bitwise_or.reduceat(bits, starts) if len(starts) else np.empty(0, np.uint32)
    new_per_rule = np.bincount(rule_of[starts], minlength=len(rules))
    for r_i, stats in enumerate(stats_all):
        stats.new_pairs = int(new_per_rule[r_i])
    keys_acc = keys[starts]
    del keys, rule_of, bits
    cand = Candidates(keys_acc // max(n, 1), keys_acc % max(n, 1), mask_acc, tuple(r.name for r in rules))
    return cand, BlockingReport(entity_type, n, stats_all, len(cand))


def _column_cache(records: pd.DataFrame):
    """``column(name)``: a column of ``records`` as an object array, made once."""
    values: dict[str, np.ndarray] = {}

    def column(name: str) -> np.ndarray:
        if name not in values:
            values[name] = records[name].to_numpy(dtype=object)
        return values[name]

    return column


def _involved_blocks(records: pd.DataFrame, rule: BlockingRule, j: int, new_idx: np.ndarray, order: np.ndarray,
                     hashes: np.ndarray | None, column) -> np.ndarray | None:
    """The records :func:`block_involving` gives ``rule`` (column ``j`` of ``hashes``) to pair the involved
    records ``new_idx`` as a blocking of everything does: the whole blocks that hold one (a fuzzy rule: the
    records one edit from one; a ``pair_with_empty`` rule: only blocks holding a record with the empty column),
    sorted by ``order``. None when the rule gives no pairs (no involved record, a key column missing)."""
    if not len(new_idx) or any(k not in records.columns for k in rule.keys) or (
            rule.fuzzy_key and rule.fuzzy_key not in records.columns):
        return None
    n = len(records)
    if hashes is not None and rule.keys:  # the records sharing an involved record's block-key hash
        wanted_h = np.unique(hashes[new_idx, j])
        mask = np.isin(hashes[:, j], wanted_h[wanted_h != 0])
    else:
        mask = np.ones(n, dtype=bool)
        for k in rule.keys:  # a superset of the blocks holding a new record (whole blocks)
            col = column(k)
            wanted = set(col[new_idx].tolist()) - {""}
            mask &= pd.Series(col, dtype=object).isin(wanted).to_numpy()
    if rule.fuzzy_key:
        sel = np.flatnonzero(mask)
        fuzzy = records[rule.fuzzy_key]
        wanted = set(fuzzy.iloc[new_idx[mask[new_idx]]].to_numpy(dtype=object).tolist()) - {""}
        mask[:] = False
        if wanted and len(sel):
            mask[sel[_fuzzy_neighbours(fuzzy.iloc[sel].to_numpy(dtype=object), wanted)]] = True
    sub = np.flatnonzero(mask)
    if rule.pair_with_empty and rule.pair_with_empty in records.columns and len(sub):
        # only blocks that hold a record with the empty column give pairs: keep those blocks
        keys = block_keys(records.iloc[sub], rule).to_numpy(dtype=object)
        blank = records[rule.pair_with_empty].iloc[sub].to_numpy(dtype=object) == ""
        sub = sub[pd.Series(keys, dtype=object).isin(set(keys[blank].tolist()) - {""}).to_numpy()]
    return sub[np.argsort(np.asarray(order)[sub], kind="stable")]


def block_involving_outgrown(records: pd.DataFrame, rules: tuple[BlockingRule, ...] | list[BlockingRule],
                             involving: np.ndarray, order: np.ndarray, entity_type: str = "", largest: int = 10,
                             hashes: np.ndarray | None = None
                             ) -> tuple[Candidates, BlockingReport, tuple[np.ndarray, np.ndarray]]:
    """:func:`block_involving`, and what adding the involved records takes away: ``(candidates, report,
    (keys, masks))``. ``keys`` (``left * n + right``, ``left < right``, sorted, unique) are the pairs between
    records outside ``involving`` that some rules make when blocking those records alone and no longer make
    with the involved ones; ``masks`` has bit ``i`` set for each such rule ``i`` (another rule may still make
    the pair: the caller knows which rules made it).

    Adding records never adds a pair between the earlier ones, it can only take pairs away: a block that
    grows past ``max_block`` is compared as a sorted neighbourhood instead of all against all; in a sorted
    neighbourhood new records push earlier ones out of each other's window; a run of records lacking an
    ``order_by`` value can grow past ``incomplete_block``; a fuzzy or ``pair_with_empty`` group can grow past
    ``max_pairs``. Each happens only in a block that holds an involved record, which the rule looks at anyway;
    a rule without ``fuzzy_key`` blocks the earlier records again only in its blocks now over their cap.

    >>> df = pd.DataFrame({"k": ["a"] * 4, "o": ["1", "2", "3", "4"]})
    >>> rule = BlockingRule("r", ("k",), max_block=3, window=1, order_by=("o",))
    >>> cand, _, (keys, masks) = block_involving_outgrown(df, [rule], np.array([False, True, False, False]),
    ...                                                   np.arange(4))
    >>> list(zip(cand.left.tolist(), cand.right.tolist())), [(k // 4, k % 4) for k in keys.tolist()], masks.tolist()
    ([(0, 1), (1, 2)], [(0, 2), (0, 3)], [1, 1])
    """
    parts, lost = _involving_parts(records, rules, involving, order, largest, hashes, outgrown=True)
    cand, report = _union(len(records), rules, parts, entity_type)
    if not lost:
        return cand, report, (np.empty(0, np.int64), np.empty(0, np.uint32))
    keys = np.concatenate([k for k, _ in lost])
    bits = np.concatenate([np.full(len(k), 1 << j, dtype=np.uint32) for k, j in lost])
    return cand, report, or_masks_by_key(keys, bits)


def or_masks_by_key(keys: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` sorted and made unique, each with the OR of its ``masks`` (rule bit masks of pairs).

    >>> k, m = or_masks_by_key(np.array([7, 3, 7]), np.array([1, 2, 4], dtype=np.uint32))
    >>> k.tolist(), m.tolist()
    ([3, 7], [2, 5])
    """
    order = np.argsort(keys, kind="stable")
    keys, masks = keys[order], masks[order]
    if not len(keys):
        return keys, masks
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.bitwise_or.reduceat(masks, starts)


def _involving_parts(records: pd.DataFrame, rules, involving: np.ndarray, order: np.ndarray, largest: int,
                     hashes: np.ndarray | None, outgrown: bool) -> tuple[list, list]:
    """Per rule the pairs (``left * n + right``) involving an involved record, with the rule's statistics, for
    :func:`_union`; with ``outgrown`` also per rule ``(keys, rule index)`` of the earlier pairs it no longer
    makes (:func:`block_involving_outgrown`)."""
    n = len(records)
    involving = np.asarray(involving, dtype=bool)
    new_idx = np.flatnonzero(involving)
    column = _column_cache(records)
    parts, lost = [], []
    for j, rule in enumerate(rules):
        sub = _involved_blocks(records, rule, j, new_idx, order, hashes, column)
        if sub is None:
            parts.append((np.empty(0, np.int64), RuleStats(rule.name, 0, 0, 0, 0, 0, [])))
            continue
        cols = [c for c in _rule_columns(rule) if c in records.columns]
        part = records[cols].iloc[sub].reset_index(drop=True)
        left, right, stats = _one_rule(part, rule, largest)
        if outgrown and len(sub) > 2:
            gone = _outgrown(part, rule, ~involving[sub], left, right,
                             None if hashes is None or not rule.keys else hashes[sub, j])
            if len(gone):
                a, b = sub[gone // len(sub)], sub[gone % len(sub)]
                lost.append((np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b), j))
        left, right = sub[left], sub[right]
        keep = involving[left] | involving[right]
        left, right = left[keep], right[keep]
        stats.pairs = int(len(left))
        parts.append((np.minimum(left, right).astype(np.int64) * n + np.maximum(left, right), stats))
    return parts, lost


def _outgrown(part: pd.DataFrame, rule: BlockingRule, earlier: np.ndarray, left: np.ndarray, right: np.ndarray,
              block_hash: np.ndarray | None) -> np.ndarray:
    """The pairs (``left * m + right`` over the ``m`` records of ``part``, sorted) between ``earlier`` records
    that ``rule`` makes over the earlier records alone and not over all of ``part`` (whose pairs are
    ``left``/``right``). ``part`` holds whole blocks; a rule without ``fuzzy_key`` looks only at those now
    over its cap (:func:`_over_cap`; ``block_hash`` tells blocks apart)."""
    m = len(part)
    looked = earlier.copy()
    if not rule.fuzzy_key:
        over = _over_cap(part, rule, block_hash)
        if not (over & ~earlier).any():  # no added record in a block over its cap: nothing changed
            return np.empty(0, np.int64)
        looked &= over
    pos = np.flatnonzero(looked)
    if len(pos) < 2:
        return np.empty(0, np.int64)
    ok = looked[left] & looked[right]
    now = sorted_unique(np.minimum(left[ok], right[ok]).astype(np.int64) * m + np.maximum(left[ok], right[ok]))
    bl, br, _ = _one_rule(part.iloc[pos].reset_index(drop=True), rule, 0)
    bl, br = pos[bl], pos[br]
    before = sorted_unique(np.minimum(bl, br).astype(np.int64) * m + np.maximum(bl, br))
    return before[~np.isin(before, now, assume_unique=True)]


def _over_cap(part: pd.DataFrame, rule: BlockingRule, block_hash: np.ndarray | None) -> np.ndarray:
    """Mask over ``part`` (whole blocks of a rule without ``fuzzy_key``): the records of the blocks the rule
    does not compare whole, a window rule's blocks over ``max_block``, a ``pair_with_empty`` rule's blocks
    whose pairs exceed ``max_pairs``. Blocks are told apart by ``block_hash`` (records of one hash hold whole
    blocks; a collision only makes a group look bigger) or, without it, by their key strings."""
    if not rule.keys:
        block_hash = np.zeros(len(part), dtype=np.uint64)
    elif block_hash is None:
        block_hash = block_keys(part, BlockingRule(rule.name, rule.keys)).to_numpy(dtype=object)
    codes, uniques = pd.factorize(pd.Series(block_hash, dtype=object if block_hash.dtype == object else None))
    size = np.bincount(codes, minlength=len(uniques))
    if rule.pair_with_empty:
        blank = (part[rule.pair_with_empty].astype(str).to_numpy(dtype=object) == "") if \
            rule.pair_with_empty in part.columns else np.zeros(len(part), dtype=bool)
        over = np.bincount(codes, weights=blank, minlength=len(uniques)) * size > rule.max_pairs
    else:
        over = size > rule.max_block
    return over[codes]
