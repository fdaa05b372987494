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

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from linkage.arrays import in_sorted, ranges, sorted_unique, unique_inverse
from linkage.er_settings import BlockingRule

KEY_SEP = "\x1f"
_LOW_CHAR = re.compile("[\x00-\x1f]")  # a character at or below KEY_SEP


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

    :meth:`take` gives the same columns for some rows: the codes of a column the table has coded are taken,
    one it has not is coded over the view's rows only (a view's codes order its own values; codes of two
    views are never compared). An incremental run thus codes only the records each rule looks at.
    """

    def __init__(self, records: pd.DataFrame | None, base: "_Columns | None" = None,
                 rows: np.ndarray | None = None, parent: "_Columns | None" = None,
                 parent_rows: np.ndarray | None = None) -> None:
        self._base = base  # the whole table (None: this is it); rows: this view's rows of it
        self._rows = rows
        self._parent = parent  # the table or view this one was taken from, and the rows of it taken
        self._parent_rows = parent_rows
        self._records = records
        self._coded: dict[str, tuple[np.ndarray, np.ndarray, int, bool]] = {}
        self._encodings: dict[str, Any] = {}  # a table's columns dictionary-encoded (_encoded)
        # a table's pooled columns (pool): name -> the table rows (sorted, unique) coded once for its views
        self._pools: dict[str, np.ndarray] = {}
        self._pool_coded: dict[str, tuple[np.ndarray, np.ndarray, int, bool]] = {}
        self._is_pool = False  # the view a pool is coded over (codes its own rows)
        # a table's deletion variants of some distinct values of a column (keep_variants / variants_of)
        self._variants: dict[str, tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = {}
        # a column coded from its table's encoding (_encoded): each value's number in that encoding's dictionary
        self._in_dictionary: dict[str, np.ndarray] = {}
        self.n = len(rows) if base is not None else len(records)

    def take(self, rows: np.ndarray) -> "_Columns":
        """The columns of the records at ``rows`` (indices into this table), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._base is not None:
            return _Columns(None, self._base, self._rows[rows], self, rows)
        return _Columns(None, self, rows, self, rows)

    def pool(self, name: str, rows: np.ndarray) -> None:
        """Have the views of this table (or of the table it is a view of) code column ``name`` once over ``rows``
        (table rows, sorted, unique), the union of those views' rows, instead of each coding its own: a view
        whose rows are all among them takes their codes (codes of a superset order and tell apart the view's
        values as its own would; ``values`` are then the pool's). The rules of an incremental run look at ~10
        views of a few thousand records, several of which read one column (person's surname: 6 views)."""
        table = self if self._base is None else self._base
        if name not in table._pools and name not in table._coded:
            table._pools[name] = np.asarray(rows, dtype=np.int64)

    def _pooled(self, name: str) -> tuple[np.ndarray, np.ndarray, int, bool] | None:
        """This view's codes of ``name`` from its table's pool (:meth:`pool`; None when there is none or it
        lacks one of the view's rows)."""
        base = self._base
        if base is None or self._is_pool or name not in base._pools:
            return None
        rows = base._pools[name]
        if not len(rows) or self.n > len(rows):  # (more rows than the pool: not all among them)
            return None
        at = np.minimum(np.searchsorted(rows, self._rows), len(rows) - 1)
        if not bool((rows[at] == self._rows).all()):
            return None
        if name not in base._pool_coded:
            view = _Columns(None, base, rows)
            view._is_pool = True
            base._pool_coded[name] = view._column(name)
        codes, values, empty, safe = base._pool_coded[name]
        return codes[at], values, empty, safe

    def keep_variants(self, name: str, numbers: np.ndarray, owner: np.ndarray, vcode: np.ndarray) -> None:
        """Keep :func:`variant_codes` ``(owner, vcode)`` of the values numbered ``numbers`` (sorted, unique) in
        the dictionary of this table's encoding of column ``name`` (:meth:`_encoded`), for :meth:`variants_of`
        (a fuzzy rule's groups and its pairs read the variants of one set of values)."""
        table = self if self._base is None else self._base
        encoded = table._encodings.get(name)
        if encoded is not None:
            table._variants[name] = (encoded[1], np.asarray(numbers, dtype=np.int64), owner, vcode)

    def variants_of(self, name: str, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`variant_codes` of this view's values ``values(name)[codes]``: rows of the kept ones
        (:meth:`keep_variants`) when the view coded the column from the table's encoding they were kept for
        and they cover those values, else made. Codes of variants are equal exactly when the variants are,
        as :func:`variant_codes` numbers them."""
        table = self if self._base is None else self._base
        kept = table._variants.get(name)
        codes = np.asarray(codes, dtype=np.int64)
        self._column(name)
        numbers = self._in_dictionary.get(name)
        encoded = table._encodings.get(name)
        if kept is not None and numbers is not None and encoded is not None and kept[0] is encoded[1] and len(kept[1]):
            _, have, owner, vcode = kept
            wanted = numbers[codes]
            at = np.minimum(np.searchsorted(have, wanted), len(have) - 1)
            if bool((have[at] == wanted).all()):
                first = np.searchsorted(owner, at)
                count = np.searchsorted(owner, at, side="right") - first
                return np.repeat(np.arange(len(codes), dtype=np.int64), count), vcode[np.repeat(first, count)
                                                                                     + ranges(count)]
        return variant_codes(np.asarray(self.values(name), dtype=object)[codes])

    @property
    def records(self) -> pd.DataFrame:
        """The feature table (a view's rows are taken from its base's table when first asked for)."""
        if self._records is None:
            self._records = self._base.records.iloc[self._rows].reset_index(drop=True)
        return self._records

    def has(self, name: str) -> bool:
        """Is ``name`` a column of the table?"""
        return name in (self._base.records if self._base is not None else self._records).columns

    def _column(self, name: str) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """(codes, distinct values in sorted order, code of '' or -1, codes usable: no missing value and no
        value holding a low character)."""
        if name not in self._coded:
            if self._parent is not None and name in self._parent._coded:
                codes, values, empty, safe = self._parent._coded[name]
                self._coded[name] = (codes[self._parent_rows], values, empty, safe)
                if name in self._parent._in_dictionary:
                    self._in_dictionary[name] = self._parent._in_dictionary[name]
                return self._coded[name]
            if self._base is not None and name in self._base._coded and self._base._coded[name][3]:
                # a view of a view takes the table's codes when the table has usable ones (then usable for any
                # of its rows): narrowed_pairs codes a fuzzy rule's column over the table, and the rule's
                # records of its involved groups, a view of its view, coded their ~56,000 surnames again
                # (person, 100,000 reports + 1,000: ~8 ms)
                codes, values, empty, safe = self._base._coded[name]
                self._coded[name] = (codes[self._rows], values, empty, safe)
                return self._coded[name]
            pooled = self._pooled(name)
            if pooled is not None:
                self._coded[name] = pooled
                return pooled
            # a view of a column the table it was taken from has not coded codes its own rows only (the
            # codes of a view need only order its own values): an incremental run looks at a few blocks of
            # ~130,000 records
            whole = self._records[name] if self._base is None else self._base._records[name]
            # a view of half its table or more shares the table's encoding of the column (made once),
            # a smaller one encodes its own rows; the table itself (a full run's blocking) as pandas codes it
            share = self._base is not None and (name in self._base._encodings or 2 * self.n >= self._base.n)
            # a view codes its own rows, shared encoding or not (one that cannot be shared, an object column or
            # an Arrow one with a missing value, takes the view's rows below)
            column = whole if self._base is None else None
            # a view's own rows of an Arrow column taken chunk by chunk (arrow_rows), not through pandas
            taken = None if self._base is None or share else arrow_rows(whole, self._rows)
            encoded = (None if self._base is None else self._base._encoded(name) if share
                       else _encode_arrow(taken) if taken is not None else None)
            if encoded is not None:
                codes, values, numbers = _sorted_codes_of(encoded, self._rows if share else None, numbers=True)
                if share:
                    self._in_dictionary[name] = numbers
            else:
                column = whole.iloc[self._rows] if column is None else column
                codes, uniques = pd.factorize(column.astype(str), sort=True)
                values = np.asarray(uniques, dtype=object)
            empty = int(np.flatnonzero(values == "")[0]) if (values == "").any() else -1
            # a missing value (NaN/None stays missing through astype(str) under pandas 3) has code -1, which
            # the code path cannot order as the key strings do: such a column takes the key-string path
            safe = not (codes < 0).any() and _LOW_CHAR.search("".join(values.tolist())) is None
            self._coded[name] = (codes.astype(np.int64), values, empty, safe)
        return self._coded[name]

    def _encoded(self, name: str):
        """The table's column ``name`` dictionary-encoded once (:func:`_arrow_encoded`; None when it is not an
        Arrow string column without missing values), shared by the views that code it."""
        if name not in self._encodings:
            self._encodings[name] = _arrow_encoded(self._records[name])
        return self._encodings[name]

    def codes(self, name: str) -> np.ndarray:
        """Sort-order codes of one column: equal values share a code, codes order as the values sort (over the
        whole table :func:`_codes` of its text; a view may keep the codes of the table it was taken from)."""
        return self._column(name)[0]

    def values(self, name: str) -> np.ndarray:
        """The distinct values of one column in sorted order (``values[codes]`` is the column)."""
        return self._column(name)[1]

    def safe(self, name: str) -> bool:
        """Can codes stand for the values of ``name`` (no missing value, none with a low character)?"""
        return self._column(name)[3]

    def empty(self, name: str) -> np.ndarray:
        """Mask: the records whose ``name`` is the empty string (as ``astype(str) == ""``)."""
        codes, _, empty, _ = self._column(name)
        return codes == empty if empty >= 0 else np.zeros(len(codes), dtype=bool)

    def empty_at(self, name: str, rows: np.ndarray) -> np.ndarray:
        """``empty(name)[rows]``, from the column's codes when this table (or the one it was taken from) has
        them, else from the values at ``rows`` alone (a few blocks need not code ~170,000 records)."""
        if name in self._coded or (self._parent is not None and name in self._parent._coded):
            return self.empty(name)[rows]
        table, at = (self, rows) if self._base is None else (self._base, self._rows[rows])
        taken = arrow_rows(table._records[name], at)
        if taken is not None:  # a missing value is not empty (as astype(str) leaves it missing)
            import pyarrow.compute as pc

            return pc.fill_null(pc.equal(taken, ""), False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
        values = table._records[name].iloc[np.asarray(at, dtype=np.int64)].astype(str)
        return np.asarray(values == "", dtype=bool)

    def block_codes(self, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """``(idx, block_code)``: the records with every key non-empty, and their block numbers in the sort
        order of their key strings (what ``_codes`` of those strings gives); None when a key column is
        missing or a value holds a character at or below :data:`KEY_SEP`."""
        if not keys or any(not self.has(k) for k in keys):
            return None
        cols = [self._column(k) for k in keys]
        if not all(c[3] for c in cols):
            return None
        has = np.ones(self.n, dtype=bool)
        for codes, _, empty, _ in cols:
            if empty >= 0:
                has &= codes != empty
        idx = np.flatnonzero(has)
        combined = cols[0][0][idx]
        # a view (an incremental run's, ~40 a run) numbers through a hash table (unique_inverse: the same numbers);
        # the table itself (a full run's blocking) as before
        dense = ((lambda x: unique_inverse(x)[1]) if self._base is not None
                 else (lambda x: np.unique(x, return_inverse=True)[1].astype(np.int64).reshape(-1)))
        for codes, values, _, _ in cols[1:]:
            # dense ranks first, so the product stays far below 2**63 (ranks keep the tuple order)
            combined = dense(combined) * len(values) + codes[idx]
        return idx, dense(combined)

    def key_of(self, keys: tuple[str, ...], record: int) -> str:
        """The key string of one record (as :func:`block_keys` writes it)."""
        return KEY_SEP.join(str(self._column(k)[1][self._column(k)[0][record]]) for k in keys)


def arrow_rows(column: pd.Series, rows: np.ndarray):
    """The Arrow array of an Arrow-backed string column at ``rows`` (any order, repeats allowed), taken chunk by
    chunk; None for another column. An incremental run's records are two chunks (the stored ones, then the new
    ones), and a take through pandas of such a column costs a fixed ~0.3 ms more than of one chunk (person
    records of 100,000 reports + 1,000, one column: 300 rows 0.49 -> 0.10 ms, 20,000 rows 1.03 -> 0.71 ms;
    the blocking codes ~40 such views per run).

    >>> s = pd.concat([pd.Series(["a", "b"], dtype="str"), pd.Series([None, "d"], dtype="str")], ignore_index=True)
    >>> arrow_rows(s, np.array([3, 0, 2, 3])).to_pylist(), arrow_rows(pd.Series([1, 2]), np.array([0]))
    (['d', 'a', None, 'd'], None)
    >>> arrow_rows(s, np.array([0, 1, 3])).to_pylist(), arrow_rows(s, np.array([], dtype=np.int64)).to_pylist()
    (['a', 'b', 'd'], [])
    """
    import pyarrow as pa

    arr = getattr(column.array, "_pa_array", None)
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and rows.min() < 0:  # the chunk search below would drop them: positions count from the start
        raise IndexError("arrow_rows: negative row positions")
    if not isinstance(arr, pa.ChunkedArray):
        return arr.take(pa.array(rows))
    chunks = [c for c in arr.chunks if len(c)]
    if not chunks:
        return pa.array([], type=arr.type) if not len(rows) else arr.combine_chunks().take(pa.array(rows))
    if len(chunks) == 1:
        return chunks[0].take(pa.array(rows))
    starts = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    which = np.searchsorted(starts, rows, side="right") - 1
    if len(which) < 2 or bool((which[1:] >= which[:-1]).all()):  # rows in chunk order: the pieces as they come
        bounds = np.searchsorted(which, np.arange(len(chunks) + 1))
        pieces = [chunks[k].take(pa.array(rows[bounds[k]:bounds[k + 1]] - starts[k]))
                  for k in range(len(chunks)) if bounds[k + 1] > bounds[k]]
        return pa.chunked_array(pieces, type=arr.type) if len(pieces) != 1 else pieces[0]
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(len(chunks) + 1))
    pieces = [chunks[k].take(pa.array(rows[order[bounds[k]:bounds[k + 1]]] - starts[k]))
              for k in range(len(chunks)) if bounds[k + 1] > bounds[k]]
    back = np.empty(len(order), dtype=np.int64)
    back[order] = np.arange(len(order), dtype=np.int64)
    return pa.concat_arrays(pieces).take(pa.array(back))


def _arrow_sorted_codes(column: pd.Series, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """``pd.factorize(column.iloc[rows].astype(str), sort=True)`` (codes as int64, distinct values as an object
    array) of an Arrow-backed string column without missing values, worked in Arrow (:func:`_arrow_encoded`,
    :func:`_sorted_codes_of`); None for another column (the caller factorizes it).

    >>> codes, values = _arrow_sorted_codes(pd.Series(["b", "a", "c", "a"], dtype="str"), np.array([3, 0, 1]))
    >>> codes.tolist(), values.tolist()
    ([0, 1, 0], ['a', 'b'])
    """
    encoded = _arrow_encoded(column)
    return None if encoded is None else _sorted_codes_of(encoded, rows)


def _arrow_encoded(column: pd.Series):
    """``(indices, dictionary)``: an Arrow-backed string column without missing values dictionary-encoded (the
    distinct strings numbered by a hash table, in order of first appearance); None for another column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = getattr(column.array, "_pa_array", None)
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    return _encode_arrow(arr)


def _encode_arrow(arr):
    """:func:`_arrow_encoded` of an Arrow string array (or chunked array); None when it holds a missing value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr.null_count:
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    encoded = pc.dictionary_encode(arr)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def _sorted_codes_of(encoded, rows: np.ndarray | None, numbers: bool = False):
    """Sort-order codes and sorted distinct values (object array) of the rows ``rows`` (None: all) of a column
    :func:`_arrow_encoded` encoded: the rows' dictionary numbers made dense, and only their strings sorted (in
    C++; pandas sorts them as Python objects, most of coding a column in an incremental run). A table's views
    share its encoding: no string is hashed again per view. With ``numbers`` also each value's number in the
    encoding's dictionary (a third array)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from linkage.arrays import unique_inverse

    indices, dictionary = encoded
    if rows is None:
        strings, inverse = dictionary, indices  # a dictionary holds only values that occur
    else:
        distinct, inverse = unique_inverse(indices[np.asarray(rows, dtype=np.int64)])
        strings = dictionary.take(pa.array(distinct))
    order = pc.sort_indices(strings).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    values = np.asarray(strings.take(pa.array(order)).to_numpy(zero_copy_only=False), dtype=object)
    if not numbers:
        return rank[inverse], values
    return rank[inverse], values, (order if rows is None else distinct[order]).astype(np.int64)


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


def rule_pairs(records: pd.DataFrame | None, rule: BlockingRule, largest: int = 10,
               columns: "_Columns | None" = None) -> tuple[np.ndarray, np.ndarray, RuleStats]:
    """All pairs one rule proposes, as record indices (left < right), plus its statistics. ``columns``: the
    coded columns of ``records`` (:class:`_Columns`), shared by the rules of one :func:`block` call (with
    ``columns``, ``records`` may be None: the columns are read through them).

    >>> df = pd.DataFrame({"k": ["a", "a", "a", "b", ""]})
    >>> left, right, stats = rule_pairs(df, BlockingRule("r", ("k",)))
    >>> sorted(zip(left.tolist(), right.tolist())), stats.blocks
    ([(0, 1), (0, 2), (1, 2)], 2)
    """
    columns = _Columns(records) if columns is None else columns
    n_records = columns.n
    coded = columns.block_codes(rule.keys)
    if coded is None:  # a key column is missing or holds a separator-like character: the key strings decide
        keys = block_keys(columns.records, rule)
        idx = np.flatnonzero((keys != "").to_numpy())
        sub = keys.iloc[idx]
        block_code = _codes(sub) if len(idx) >= 2 else None
    else:
        idx, block_code = coded
        sub = None
    if len(idx) < 2:
        return (np.empty(0, np.int64), np.empty(0, np.int64),
                RuleStats(rule.name, int(len(idx)), int(len(idx)), 0, 0, 0, []))
    order_cols, order, rec_sorted, blk_sorted, starts, sizes = _window_order(columns, rule, idx, block_code)
    n = len(rec_sorted)
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
        extra_left, extra_right = _incomplete_pairs(columns, rule, idx, order, rec_sorted, blk_sorted,
                                                    block_size > rule.max_block, order_cols[1:-1])
        lefts.append(extra_left)
        rights.append(extra_right)
    left = np.concatenate(lefts) if lefts else np.empty(0, np.int64)
    right = np.concatenate(rights) if rights else np.empty(0, np.int64)
    if rule.incomplete_block > 0 and len(left):
        key = sorted_unique(left.astype(np.int64) * n_records + right)
        left, right = key // n_records, key % n_records
    if sub is None:
        biggest = _biggest(columns, rule, rec_sorted, starts, sizes, largest)
    else:
        top = np.argsort(-sizes, kind="stable")[:largest]
        sub_sorted = sub.to_numpy(dtype=object)[order]
        biggest = [(str(sub_sorted[starts[t]]), int(sizes[t])) for t in top if sizes[t] > 1]
    stats = RuleStats(rule.name, int(n), int(len(starts)), int(len(left)), 0, int((sizes > rule.max_block).sum()), biggest)
    return left.astype(np.int64), right.astype(np.int64), stats


def _window_order(columns: _Columns, rule: BlockingRule, idx: np.ndarray, block_code: np.ndarray):
    """The sorted order :func:`rule_pairs` pairs in: ``(order_cols, order, rec_sorted, blk_sorted, starts,
    sizes)``: the sort columns (block code, the ``order_by`` codes present, record index), the order of ``idx``
    by them, the records and block codes in that order, and each block's start and size there."""
    order_cols = [block_code]
    for col in rule.order_by:
        if columns.has(col):
            order_cols.append(columns.codes(col)[idx])
    order_cols.append(idx)  # final tie-break: record index
    order = _lex_order(order_cols)
    rec_sorted = idx[order]
    blk_sorted = block_code[order]
    starts = np.flatnonzero(np.r_[True, blk_sorted[1:] != blk_sorted[:-1]])
    sizes = np.diff(np.r_[starts, len(rec_sorted)])
    return order_cols, order, rec_sorted, blk_sorted, starts, sizes


def _lex_order(columns: list[np.ndarray]) -> np.ndarray:
    """``np.lexsort(tuple(reversed(columns)))`` (the first column the primary key) of integer columns: one
    stable sort of the columns packed into one int64 key when their ranges multiply to below 2**62 (a sort per
    column otherwise): an incremental run's window rules sort ~20 views by three or four columns (18,000
    records, four columns: ~5 -> ~2 ms).

    >>> _lex_order([np.array([1, 0, 1, 0]), np.array([-1, 5, -1, 2]), np.array([3, 2, 1, 0])]).tolist()
    [3, 1, 2, 0]
    """
    n = len(columns[0]) if columns else 0
    if n < 64 or len(columns) < 3:
        return np.lexsort(tuple(reversed(columns)))
    spans, total = [], 1
    for c in columns:
        lo, hi = int(c.min()), int(c.max())
        spans.append((lo, hi - lo + 1))
        total *= hi - lo + 1
    if total >= 1 << 62:
        return np.lexsort(tuple(reversed(columns)))
    key = np.zeros(n, dtype=np.int64)
    for c, (lo, span) in zip(columns, spans):
        key *= span
        key += np.asarray(c, dtype=np.int64) - lo
    return np.argsort(key, kind="stable")


def _biggest(columns: _Columns, rule: BlockingRule, rec_sorted: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
             largest: int) -> list[tuple[str, int]]:
    """The ``largest`` biggest blocks (key string, size) of :func:`rule_pairs`'s report, from the coded keys."""
    top = np.argsort(-sizes, kind="stable")[:largest]
    return [(columns.key_of(rule.keys, int(rec_sorted[starts[t]])), int(sizes[t])) for t in top if sizes[t] > 1]


def _incomplete_pairs(columns: _Columns, rule: BlockingRule, idx: np.ndarray, order: np.ndarray,
                      rec_sorted: np.ndarray, blk_sorted: np.ndarray, oversized: np.ndarray,
                      order_codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of each record of an oversized block that lacks an ``order_by`` value with every record of its
    block sharing the ``order_by`` values it has (up to ``rule.incomplete_block`` records; see
    :class:`BlockingRule`). Positions are those of the sorted order of :func:`rule_pairs` (block, then
    ``order_by``), so each such group is one contiguous run; ``order_codes`` are the sort codes of the
    ``order_by`` columns present (over ``idx``, unsorted); ``columns`` the coded columns of the records."""
    cols = [c for c in rule.order_by if columns.has(c)]
    if not cols:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    codes, first_empty = [], np.full(len(idx), len(cols), dtype=np.int64)
    for j, col in enumerate(cols):
        codes.append(order_codes[j][order])
        empty = columns.empty(col)[idx][order]
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


def variant_codes(values) -> tuple[np.ndarray, np.ndarray]:
    """Every value's :func:`deletion_variants`, numbered: ``(owner, code)``, one row per distinct (value,
    variant), sorted by ``owner`` (the value's index) then ``code``; equal variants (of any values) share a
    code. Made with vectorised string slicing (Arrow), not a Python loop per value: an incremental run makes
    the variants of ~15,000 surnames several times.

    >>> owner, code = variant_codes(["abc", "ab", ""])
    >>> owner.tolist()
    [0, 0, 0, 0, 1, 1, 1, 2]
    >>> sorted(zip(owner.tolist(), code.tolist())) == sorted(set(zip(owner.tolist(), code.tolist())))
    True
    >>> texts, owners = _variant_table(["abc", "ab", ""])
    >>> [set(deletion_variants(v)) for v in ["abc", "ab", ""]] == [
    ...     {t for t, o in zip(texts.to_pylist(), owners.tolist()) if o == k} for k in range(3)]
    True
    """
    texts, owner = _variant_table(values)
    if not len(owner):
        return owner, owner
    code = texts.dictionary_encode().indices.to_numpy(zero_copy_only=False).astype(np.int64)
    key = sorted_unique(owner * (int(code.max()) + 1) + code)
    return key // (int(code.max()) + 1), key % (int(code.max()) + 1)


_VARIANT_BASE = 1099511628211  # odd, so invertible modulo 2**64
_VARIANT_BASE_INV = pow(_VARIANT_BASE, -1, 1 << 64)


def variant_hashes(values) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of every value's :func:`deletion_variants`: ``(owner, hash)``, one row per value and
    deleted position plus one for the value itself (not made distinct), unordered. Equal variants (of any values) have equal hashes; two different ones rarely do. A
    filter, not an answer: values whose hashes meet may share a variant (:func:`variant_codes` tells), values
    whose hashes do not meet share none.

    Made without building the variant strings: over a matrix of code points (``numpy`` fixed-width strings),
    a polynomial hash of each prefix (``sum c_i * B**i`` modulo 2**64), and the hash of the value with its
    character ``k`` deleted is ``prefix[k] + (whole - prefix[k + 1]) / B`` (``B`` is odd, so dividing is
    multiplying by its inverse), mixed with the variant's length.

    >>> owner, h = variant_hashes(["abc", "xbc", "ab", ""])
    >>> hashes = [set(h[owner == i].tolist()) for i in range(4)]
    >>> bool(hashes[0] & hashes[1]), bool(hashes[0] & hashes[2]), bool(hashes[1] & hashes[2]), len(h)
    (True, True, False, 12)
    """
    vals = [str(v) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]
    n = len(vals)
    if not n:
        return np.empty(0, np.int64), np.empty(0, np.uint64)
    length = np.fromiter(map(len, vals), dtype=np.int64, count=n)
    width = max(int(length.max()), 1)
    # code points, padded with 0 (numpy drops trailing NULs of a value, which stand as 0 here too), one row per
    # position over the values longest first: the values having a position k are the first of its row
    order = np.argsort(-length, kind="stable")
    cp = np.ascontiguousarray(np.array(vals, dtype=f"<U{width}").view(np.uint32).reshape(n, width)[order].T)
    has = np.searchsorted(-length[order], -np.arange(width), side="left")  # how many are longer than k
    powers = [np.uint64(pow(_VARIANT_BASE, i, 1 << 64)) for i in range(width)]
    inverse = np.uint64(_VARIANT_BASE_INV)
    whole = np.zeros(n, dtype=np.uint64)
    for k in range(width):
        m = int(has[k])
        whole[:m] += cp[k, :m].astype(np.uint64) * powers[k]
    owners, hashes, sizes = [order], [whole.copy()], [length[order]]
    prefix = np.zeros(n, dtype=np.uint64)
    for k in range(width):
        m = int(has[k])
        if not m:
            break
        after = prefix[:m] + cp[k, :m].astype(np.uint64) * powers[k]
        hashes.append(prefix[:m] + (whole[:m] - after) * inverse)  # the value without its character k
        owners.append(order[:m])
        sizes.append(length[order[:m]] - 1)
        prefix[:m] = after
    size = np.concatenate(sizes).astype(np.uint64)
    return np.concatenate(owners).astype(np.int64), _mix64(np.concatenate(hashes) ^ (size * np.uint64(0x9E3779B97F4A7C15)))


def _mix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (splitmix64's), spreading every input bit over the output."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


#: Values longer than this (code points) get their variants from :func:`deletion_variants` one by one: the
#: vectorised loop runs once per position of the longest value.
_VECTOR_VARIANTS_UP_TO = 64


def _variant_table(values):
    """``(texts, owner)``: the deletion variants of ``values`` (an Arrow string array, or a sequence of texts;
    no missing values: a missing one counts as ``""``) and the index of the value each belongs to (not made
    distinct), in no particular order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(
        np.asarray(values, dtype=object), type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if not n:
        return pa.array([], type=pa.string()), np.empty(0, np.int64)
    if arr.null_count:  # callers pass none; counted as the empty text
        arr = pc.fill_null(arr, "")
    lengths = pc.utf8_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
    texts, owners = [arr], [np.arange(n, dtype=np.int64)]
    long_rows = np.flatnonzero(lengths > _VECTOR_VARIANTS_UP_TO)
    for k in range(min(int(lengths.max()), _VECTOR_VARIANTS_UP_TO)):
        rows = np.flatnonzero((lengths > k) & (lengths <= _VECTOR_VARIANTS_UP_TO))
        if not len(rows):
            break
        sub = arr.take(pa.array(rows)) if len(rows) < n else arr
        texts.append(pc.binary_join_element_wise(pc.utf8_slice_codeunits(sub, 0, k),
                                                 pc.utf8_slice_codeunits(sub, k + 1, 1 << 30), ""))
        owners.append(rows)
    if len(long_rows):  # the rare long value: its variants (but the value itself, taken above) one by one
        made = [deletion_variants(v)[1:] for v in arr.take(pa.array(long_rows)).to_pylist()]
        texts.append(pa.array([t for ts in made for t in ts], type=pa.string()))
        owners.append(np.repeat(long_rows, [len(ts) for ts in made]))
    return pa.concat_arrays([t.cast(pa.string()) for t in texts]), np.concatenate(owners)


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


def _pairs_in_runs(keys: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)``: ``owners[i], owners[j]`` for every two positions ``i < j`` in one run of equal ``keys``
    (``keys`` sorted, so equal keys are adjacent); two empty int64 arrays when no run has two positions.

    >>> a, b = _pairs_in_runs(np.array([1, 1, 1, 2, 3, 3]), np.array([10, 11, 12, 13, 14, 15]))
    >>> sorted(zip(a.tolist(), b.tolist()))
    [(10, 11), (10, 12), (11, 12), (14, 15)]
    """
    n = len(keys)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    size = np.diff(np.r_[start, n])
    end = np.repeat(start + size, size)  # one past the last position of each position's run
    a_list, b_list, k = [], [], 1
    active = np.flatnonzero(end - np.arange(n) > 1)
    while len(active):
        a_list.append(owners[active])
        b_list.append(owners[active + k])
        k += 1
        active = active[end[active] - active > k]
    if not a_list:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(a_list), np.concatenate(b_list)


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
    va, vb = _pairs_in_runs(kcode[korder], owner[korder])
    if not len(va):
        return np.empty(0, np.int64), np.empty(0, np.int64), empty
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


def _one_rule(records: pd.DataFrame | None, rule: BlockingRule, largest: int, columns: _Columns | None = None):
    """One rule's pairs and statistics (``records`` may be None when ``columns`` are given)."""
    if rule.fuzzy_key:
        return _fuzzy_rule_pairs(records if records is not None else columns.records, rule, largest)
    if rule.pair_with_empty:
        return _empty_rule_pairs(records if records is not None else columns.records, rule, largest)
    return rule_pairs(records, rule, largest, columns)


def block_involving(records: pd.DataFrame | None, rules: tuple[BlockingRule, ...] | list[BlockingRule],
                    involving: np.ndarray, order: np.ndarray, entity_type: str = "",
                    largest: int = 10, hashes: np.ndarray | None = None,
                    columns: _Columns | None = None,
                    skip: Mapping[int, np.ndarray] | None = None) -> tuple[Candidates, BlockingReport]:
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

    ``columns`` (optional): the coded columns of ``records`` (:class:`_Columns`; then ``records`` may be
    None), when the caller blocks the same records more than once. The columns a rule reads are coded into
    integers (a view of a quarter of the table or more shares the table's coding; a smaller one codes its own
    rows); the rules then work on those codes of the records they look at. A ``pair_with_empty`` or fuzzy rule
    pairs only the groups that hold an involved record (counting the others; the report's statistics are
    those of the records looked at), and only their pairs with an involved record; any other rule makes only
    the pairs of the involved records' positions in its sorted blocks (:func:`_window_involving`; the
    report's statistics are those of the whole blocks).

    ``skip``: as :func:`block_involving_outgrown` takes it.

    >>> df = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["1", "2", "2", "3"]})
    >>> cand, _ = block_involving(df, [BlockingRule("a", ("a",)), BlockingRule("b", ("b",))],
    ...                           np.array([False, False, False, True]), np.arange(4))
    >>> list(zip(cand.left.tolist(), cand.right.tolist(), cand.rule_mask.tolist()))
    [(2, 3, 1)]
    """
    columns = _Columns(records) if columns is None else columns
    parts, _ = _involving_parts(columns, rules, involving, order, largest, hashes, outgrown=False, skip=skip)
    return _union(columns.n, rules, parts, entity_type)


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


def _member(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Mask over ``values``: equal to one of ``wanted`` (a hash table of ``wanted``, probed once per value: about
    twice as fast as :func:`numpy.isin`, which sorts both).

    >>> _member(np.array([5, 1, 7, 5], dtype=np.uint64), np.array([5, 6], dtype=np.uint64)).tolist()
    [True, False, False, True]
    """
    if not len(wanted):
        return np.zeros(len(values), dtype=bool)
    return pd.Series(np.ascontiguousarray(values), copy=False).isin(wanted).to_numpy(copy=True)


#: :func:`_member_ints` looks integers up by their low bits (:func:`_member_by_low_bits`) for up to this many
#: wanted values (a table of 8 to 16 slots per wanted value: at the most, 2**20 slots, a 4 MB table with a 8 MB
#: count and a 1 MB mask beside it); more go to :func:`_member`.
MEMBER_LOW_BITS_MAX = 1 << 16


def _member_ints(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """:func:`_member`; 64-bit integers of one dtype, with at most :data:`MEMBER_LOW_BITS_MAX` wanted, looked
    up by their low bits (:func:`_member_by_low_bits`). For the few-against-many tests of an incremental
    run's blocking (block-key hashes of ~170,000 records against those of ~1,000 new ones, per rule).

    >>> _member_ints(np.array([5, 1, 7, 5], dtype=np.uint64), np.array([5, 6], dtype=np.uint64)).tolist()
    [True, False, False, True]
    """
    values, wanted = np.ascontiguousarray(values), np.asarray(wanted)
    if (len(wanted) and values.dtype.kind in "iu" and values.dtype.itemsize == 8 and wanted.dtype == values.dtype
            and len(wanted) <= MEMBER_LOW_BITS_MAX):
        return _member_by_low_bits(values, wanted)
    return _member(values, wanted)


def _member_by_low_bits(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """:func:`_member` of 64-bit integers (``values`` and ``wanted`` of one dtype, ``wanted`` not empty: the
    caller, :func:`_member_ints`, sees to it): a table indexed by the low
    bits of a value gives the one wanted value with those bits, which is then compared whole; the values whose
    low bits several wanted values share (few: the table has 8 to 16 slots per wanted value) go to a hash table.
    Block-key hashes (an incremental run tests ~170,000 of them against ~1,000 per rule) take a few passes of
    arithmetic instead of a hash probe each (a +1,000 run on 100,000 reports, narrowed_pairs once per fresh
    process, mean of 8: person 0.376 -> 0.337 CPU s, address 0.207 -> 0.189). The table holds the wanted values
    themselves (an empty slot a number no value with its low bits equals): a value is looked up and compared in
    three passes, with no copy of the values into indices (person's 13 rules: 0.029 -> 0.022 CPU s).

    >>> v = np.array([5, 1 << 40, (1 << 40) + 5, -3, 9], dtype=np.int64)
    >>> _member_by_low_bits(v, np.array([5, -3, (1 << 40) + 5], dtype=np.int64)).tolist()
    [True, False, True, True, False]
    """
    if len(wanted) > 1 and not bool((wanted[1:] > wanted[:-1]).all()):  # most callers pass them sorted, unique
        wanted = np.unique(wanted)
    bits = max(10, len(wanted).bit_length() + 3)
    low = (1 << bits) - 1
    as_int = np.int64 if values.dtype.kind == "u" else values.dtype  # the bits as signed (indices need no copy)
    w, v = wanted.view(as_int), values.view(as_int)
    slot_w = w & low
    # each slot's wanted value; an empty slot holds a number whose low bits are not the slot's (no value meets it)
    table = np.arange(1 << bits, dtype=as_int) ^ low
    table[slot_w] = w
    slot = v & low
    hit = table[slot] == v
    shared = np.bincount(slot_w, minlength=1 << bits) > 1  # several wanted values with those low bits
    if shared.any():
        rest = np.flatnonzero(shared[slot])
        # (wanted is sorted and unique: a binary search of those few, not a hash table built per call)
        hit[rest] = in_sorted(values[rest], wanted)
    return hit


def _involved_blocks(columns: _Columns, rule: BlockingRule, j: int, new_idx: np.ndarray, order: np.ndarray,
                     hashes: np.ndarray | None, fuzzy_groups: bool = False,
                     skip: np.ndarray | None = None, skip_blankless: bool = False) -> np.ndarray | None:
    """The records :func:`block_involving` gives ``rule`` (column ``j`` of ``hashes``) to pair the involved
    records ``new_idx`` as a blocking of everything does: the whole blocks that hold one (a fuzzy rule: the
    records one edit from one; a ``pair_with_empty`` rule: only blocks holding a record with the empty column),
    sorted by ``order``. None when the rule gives no pairs (no involved record, a key column missing).

    ``skip`` (with ``hashes`` only): block-key hashes whose records are left out, because the caller knows
    their blocks make no pair and lose none with the involved records (see :func:`block_involving_outgrown`);
    with ``skip_blankless`` it holds every involved hash of a ``pair_with_empty`` rule whose blocks hold no
    record with the empty column, so the blocks left hold one and that column is not read."""
    if not len(new_idx) or any(not columns.has(k) for k in rule.keys) or (
            rule.fuzzy_key and not columns.has(rule.fuzzy_key)):
        return None
    n = columns.n
    if hashes is not None and rule.keys:  # the records sharing an involved record's block-key hash
        col = hashes[:, j]
        wanted_h = np.unique(col[new_idx])
        wanted_h = wanted_h[wanted_h != 0]
        if skip is not None and len(skip):
            wanted_h = wanted_h[~np.isin(wanted_h, skip)]
        mask = _member_ints(col, wanted_h)
    else:
        mask = np.ones(n, dtype=bool)
        for k in rule.keys:  # a superset of the blocks holding a new record (whole blocks)
            codes, values, empty, _ = columns._column(k)
            table = np.zeros(len(values) + 1, dtype=bool)  # the last slot: a missing value (code -1)
            table[codes[new_idx]] = True
            if empty >= 0:
                table[empty] = False
            mask &= table[codes]
    if rule.fuzzy_key and not (fuzzy_groups and hashes is not None and rule.keys):
        # the records whose value is one deletion from an involved record's (equal included); with
        # ``fuzzy_groups`` the records are those already (linkage.resolve.incremental.fuzzy_groups)
        sel = np.flatnonzero(mask)
        codes, values = columns.codes(rule.fuzzy_key), columns.values(rule.fuzzy_key)
        wanted = {values[c] for c in np.unique(codes[new_idx[mask[new_idx]]]).tolist() if c >= 0} - {""}
        mask[:] = False
        if wanted and len(sel):
            variants = set()
            for v in wanted:
                variants.update(deletion_variants(v))
            distinct, inverse = np.unique(codes[sel], return_inverse=True)
            hit = np.fromiter((c >= 0 and bool(variants.intersection(deletion_variants(str(values[c]))))
                               for c in distinct.tolist()), dtype=bool, count=len(distinct))
            mask[sel[hit[inverse.reshape(-1)]]] = True
    sub = np.flatnonzero(mask)
    # (with skip_blankless the hashes left hold an empty-column record each: the caller left out those that do not)
    if (rule.pair_with_empty and columns.has(rule.pair_with_empty) and len(sub) and hashes is not None and rule.keys
            and not (skip_blankless and skip is not None)):
        # only blocks that hold a record with the empty column give pairs: keep the records of the block-key
        # hashes of those (whole blocks; on a collision another block too, which gives no pairs)
        # (the empty column read at those records alone: coding it over the whole table cost more than the rule)
        h = hashes[sub, j]
        sub = sub[_member_ints(h, np.unique(h[columns.empty_at(rule.pair_with_empty, sub)]))]
    elif rule.pair_with_empty and columns.has(rule.pair_with_empty) and len(sub):
        # only blocks that hold a record with the empty column give pairs: keep those blocks
        part = columns.take(sub)
        coded = part.block_codes(rule.keys)
        if coded is not None:
            idx, blk = coded
            with_blank = np.zeros(int(blk.max()) + 1 if len(blk) else 0, dtype=bool)
            with_blank[blk[part.empty(rule.pair_with_empty)[idx]]] = True
            keep = np.zeros(len(sub), dtype=bool)
            keep[idx[with_blank[blk]]] = True
            sub = sub[keep]
        else:
            keys = block_keys(part.records, rule).to_numpy(dtype=object)
            blank = part.empty(rule.pair_with_empty)
            sub = sub[pd.Series(keys, dtype=object).isin(set(keys[blank].tolist()) - {""}).to_numpy()]
    return sub[np.argsort(np.asarray(order)[sub], kind="stable")]


def block_involving_outgrown(records: pd.DataFrame | None, rules: tuple[BlockingRule, ...] | list[BlockingRule],
                             involving: np.ndarray, order: np.ndarray, entity_type: str = "", largest: int = 10,
                             hashes: np.ndarray | None = None, columns: _Columns | None = None,
                             fuzzy_groups: bool = False, skip: Mapping[int, np.ndarray] | None = None,
                             skip_blankless: bool = False
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
    a rule without ``fuzzy_key`` blocks the earlier records again only in its blocks now over their cap, a
    fuzzy or ``pair_with_empty`` rule counts each group's records with and without the involved ones.

    ``fuzzy_groups``: the records are already those a fuzzy rule with keys can pair with an involved record
    (:func:`linkage.resolve.incremental.fuzzy_groups` of that rule, with ``hashes``): such a rule does not
    look for them again.

    ``skip`` (optional, with ``hashes``; rule index -> block-key hashes): blocks left out of rule ``i``
    because they make no pair involving an involved record and lose none, as the caller knows from statistics
    it keeps (:func:`linkage.resolve.incremental.skip_hashes`: a ``pair_with_empty`` block without an
    empty-column record before and after, or one over ``max_pairs`` before the involved records came). Leaving
    such a block out changes only the report's statistics, not the pairs. ``skip_blankless``: ``skip`` leaves
    out, for each ``pair_with_empty`` rule it has, every involved block-key hash whose blocks hold no record with
    the empty column (as ``skip_hashes`` does): the blocks left are not read for one.

    >>> df = pd.DataFrame({"k": ["a"] * 4, "o": ["1", "2", "3", "4"]})
    >>> rule = BlockingRule("r", ("k",), max_block=3, window=1, order_by=("o",))
    >>> cand, _, (keys, masks) = block_involving_outgrown(df, [rule], np.array([False, True, False, False]),
    ...                                                   np.arange(4))
    >>> list(zip(cand.left.tolist(), cand.right.tolist())), [(k // 4, k % 4) for k in keys.tolist()], masks.tolist()
    ([(0, 1), (1, 2)], [(0, 2), (0, 3)], [1, 1])
    """
    columns = _Columns(records) if columns is None else columns
    parts, lost = _involving_parts(columns, rules, involving, order, largest, hashes, outgrown=True,
                                   fuzzy_groups=fuzzy_groups, skip=skip, skip_blankless=skip_blankless)
    cand, report = _union(columns.n, rules, parts, entity_type)
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


def _involving_parts(columns: _Columns, rules, involving: np.ndarray, order: np.ndarray, largest: int,
                     hashes: np.ndarray | None, outgrown: bool, fuzzy_groups: bool = False,
                     skip: Mapping[int, np.ndarray] | None = None, skip_blankless: bool = False
                     ) -> tuple[list, list]:
    """Per rule the pairs (``left * n + right``) involving an involved record, with the rule's statistics, for
    :func:`_union`; with ``outgrown`` also per rule ``(keys, rule index)`` of the earlier pairs it no longer
    makes (:func:`block_involving_outgrown`; ``skip`` and ``skip_blankless`` as it takes them)."""
    n = columns.n
    involving = np.asarray(involving, dtype=bool)
    new_idx = np.flatnonzero(involving)
    parts, lost = [], []
    empty = np.empty(0, np.int64)
    subs = [_involved_blocks(columns, rule, j, new_idx, order, hashes, fuzzy_groups,
                             None if skip is None else skip.get(j), skip_blankless) for j, rule in enumerate(rules)]
    _pool_columns(columns, rules, subs)
    for j, rule in enumerate(rules):
        sub = subs[j]
        if sub is None or not len(sub):
            parts.append((empty, RuleStats(rule.name, 0, 0, 0, 0, 0, [])))
            continue
        part, inv = columns.take(sub), involving[sub]
        look_back = outgrown and len(sub) > 2
        got = (_group_involving(part, rule, inv, look_back) if rule.fuzzy_key or rule.pair_with_empty
               else _window_involving(part, rule, inv, look_back, largest))
        if got is not None:  # only the pairs and lost pairs near involved records made
            left, right, stats, gone = got
        else:
            left, right, stats = _one_rule(None, rule, largest, part)
            gone = _outgrown(part, rule, ~inv, left, right, None if hashes is None or not rule.keys
                             else hashes[sub, j]) if look_back else empty
            keep = inv[left] | inv[right]
            left, right = left[keep], right[keep]
        if len(gone):
            a, b = sub[gone // len(sub)], sub[gone % len(sub)]
            lost.append((np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b), j))
        left, right = sub[left], sub[right]
        stats.pairs = int(len(left))
        parts.append((np.minimum(left, right).astype(np.int64) * n + np.maximum(left, right), stats))
    return parts, lost


def _pool_columns(columns: _Columns, rules, subs: list) -> None:
    """Pool (:meth:`_Columns.pool`) each column that the views of two or more rules read (keys, ``order_by``,
    ``fuzzy_key``) over the union of those views' rows (``subs``: per rule its rows of ``columns``, or None),
    when the views are views of a table (``columns`` or its table) not coded already."""
    readers: dict[str, list[np.ndarray]] = {}
    for rule, sub in zip(rules, subs):
        if sub is None or not len(sub):
            continue
        for name in dict.fromkeys(rule.keys + rule.order_by + ((rule.fuzzy_key,) if rule.fuzzy_key else ())):
            if columns.has(name):
                readers.setdefault(name, []).append(sub)
    for name, rows in readers.items():
        if len(rows) < 2 or name in columns._coded:
            continue
        union = sorted_unique(np.concatenate(rows))
        columns.pool(name, union if columns._base is None else columns._rows[union])


def _group_involving(part: _Columns, rule: BlockingRule, inv: np.ndarray, outgrown: bool):
    """For a fuzzy or ``pair_with_empty`` rule: ``(left, right, stats, gone)`` over ``part`` (whole groups),
    the pairs it makes that involve an ``inv`` record and (with ``outgrown``) the keys of the earlier pairs it
    no longer makes, as :func:`_one_rule` followed by :func:`_outgrown` give them, but pairing only the groups
    that hold an involved record; None for other rules or when the codes cannot stand for the values."""
    if rule.fuzzy_key:
        return _fuzzy_involving(part, rule, inv, outgrown)
    if rule.pair_with_empty:
        return _empty_involving(part, rule, inv, outgrown)
    return None


def _groups(members: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``members`` ordered by ``group`` (stable), with each group's start and size in that order. Up to 65,536
    groups the numbers are sorted as 16-bit integers (numpy sorts those stably by radix, others by merging:
    a fuzzy rule's ~56,000 records in ~40,000 groups, 5 -> 1 ms)."""
    group = np.asarray(group)
    order = np.argsort(group.astype(np.uint16) if n_groups <= 1 << 16 else group, kind="stable")
    size = np.bincount(group, minlength=n_groups).astype(np.int64)
    return members[order], np.r_[0, np.cumsum(size)[:-1]].astype(np.int64), size


def _empty_involving(part: _Columns, rule: BlockingRule, inv: np.ndarray, outgrown: bool):
    """:func:`_group_involving` for a ``pair_with_empty`` rule (:func:`_empty_rule_pairs`): in a block whose
    records with the empty column times its records are at most ``max_pairs``, those are paired with
    everyone; a block is paired here only when it holds an involved record, and its earlier pairs are gone
    when it was under the cap without the involved records and is over it with them."""
    coded = part.block_codes(rule.keys)
    if coded is None:
        return None
    m, none = part.n, np.empty(0, np.int64)
    idx, blk = coded
    # the empty column read at the keyed records alone (empty_at): coding it over them cost more than the rule
    blank = part.empty_at(rule.pair_with_empty, idx) if part.has(rule.pair_with_empty) else np.zeros(len(idx), bool)
    stats = RuleStats(rule.name, int(len(idx)), 0, 0, 0, 0, [])
    if not blank.any() or len(idx) < 2:
        return none, none, stats, none
    nb = int(blk.max()) + 1
    new = inv[idx]
    size, n_blank = np.bincount(blk, minlength=nb), np.bincount(blk[blank], minlength=nb)
    ok = (n_blank > 0) & (n_blank * size <= rule.max_pairs)
    touched = np.zeros(nb, dtype=bool)
    touched[blk[new]] = True

    def pairs(rows: np.ndarray, others: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """Keys of the pairs of every empty-column record among ``rows`` (into idx) of the ``chosen`` blocks
        with the records of its block among ``others``, sorted and unique."""
        rows, others = rows[chosen[blk[rows]] & blank[rows]], others[chosen[blk[others]]]
        if not len(rows) or not len(others):
            return none
        recs, start, count = _groups(idx[others], blk[others], nb)
        b_recs, b_start, b_count = _groups(idx[rows], blk[rows], nb)
        use = np.flatnonzero(b_count > 0)
        a, b = _cross(b_recs, b_start[use], b_count[use], start[use], count[use], recs)
        return sorted_unique(a.astype(np.int64) * m + b)

    # the pairs with an involved record only: its own (an empty-column one with its block), and the earlier
    # empty-column records' with it (a block of ~300 earlier records makes its pairs with the few added ones)
    old, fresh, chosen = np.flatnonzero(~new), np.flatnonzero(new), ok & touched
    key = sorted_unique(np.r_[pairs(fresh, np.arange(len(idx)), chosen), pairs(old, fresh, chosen)])
    gone = none
    if outgrown:
        size_o, blank_o = np.bincount(blk[old], minlength=nb), np.bincount(blk[old[blank[old]]], minlength=nb)
        was_ok = (blank_o > 0) & (blank_o * size_o <= rule.max_pairs)
        gone = pairs(old, old, touched & was_ok & ~ok)
    stats.blocks, stats.capped_blocks = int(touched.sum()), int((touched & ~ok & (n_blank > 0)).sum())
    return key // m, key % m, stats, gone


def _fuzzy_involving(part: _Columns, rule: BlockingRule, inv: np.ndarray, outgrown: bool):
    """:func:`_group_involving` for a fuzzy rule (:func:`_fuzzy_rule_pairs`): groups are the records of one
    (key, value); two groups of one key whose values share a deletion variant (not equal) are paired when
    their sizes multiply to at most ``max_pairs``. Only pairs of groups of which one holds an involved record
    are looked at; such a pair's earlier pairs are gone when it was under the cap without the involved
    records and is over it with them."""
    fk = rule.fuzzy_key
    if not part.has(fk) or not part.safe(fk):
        return None
    m, none = part.n, np.empty(0, np.int64)
    if rule.keys:
        coded = part.block_codes(rule.keys)
        if coded is None:
            return None
        idx, kb = coded
    else:
        idx, kb = np.arange(m), np.zeros(m, dtype=np.int64)
    codes, values, empty, _ = part._column(fk)
    fc = codes[idx]
    has = fc != empty
    idx, kb, fc = idx[has], kb[has], fc[has]
    stats = RuleStats(rule.name, int(len(idx)), 0, 0, 0, 0, [])
    if len(idx) < 2:
        return none, none, stats, none
    # groups: distinct (key, value), numbered in that order
    distinct, group = unique_inverse(kb * len(values) + fc)
    ng = len(distinct)
    g_key, g_value = distinct // len(values), distinct % len(values)
    new = inv[idx]
    size, size_o = np.bincount(group, minlength=ng), np.bincount(group[~new], minlength=ng)
    touched = size > size_o
    # each group's deletion variants (per distinct value), as codes; (key, variant) -> the groups having it
    value_codes, value_of = unique_inverse(g_value)
    owner, vcode = part.variants_of(fk, value_codes)  # kept by the fuzzy groups, when they were made
    v_start = np.searchsorted(owner, np.arange(len(value_codes)))
    v_count = np.bincount(owner, minlength=len(value_codes))
    per_group = v_count[value_of.reshape(-1)]
    rows_g = np.repeat(np.arange(ng), per_group)
    within = np.arange(len(rows_g)) - np.repeat(np.cumsum(per_group) - per_group, per_group)
    rows_v = vcode[v_start[value_of.reshape(-1)][rows_g] + within]
    shared = g_key[rows_g] * (int(vcode.max()) + 1) + rows_v
    # only (key, variant) groups that hold a group with an involved record
    hot = sorted_unique(shared[touched[rows_g]])
    sel = _member_ints(shared, hot)
    shared, rows_g = shared[sel], rows_g[sel]
    order = np.lexsort((rows_g, shared))
    ga, gb = _pairs_in_runs(shared[order], rows_g[order])
    if not len(ga):
        return none, none, stats, none
    keep = (ga != gb) & (touched[ga] | touched[gb])
    gpair = sorted_unique(np.minimum(ga[keep], gb[keep]) * ng + np.maximum(ga[keep], gb[keep]))
    ga, gb = gpair // ng, gpair % ng
    ok = size[ga] * size[gb] <= rule.max_pairs
    # each group's records, its earlier ones first: the pairs of two groups with an involved record are the
    # involved ones of the first with the second and the earlier ones of the first with the involved ones of
    # the second (two big name groups make ~300 pairs, a few of them with an added record)
    recs, g_start, _ = _groups(idx, group * 2 + new, 2 * ng)
    g_start = g_start[0::2]
    size_n = size - size_o
    ga, gb = ga[ok], gb[ok]
    a, b = _cross(recs, g_start[ga] + size_o[ga], size_n[ga], g_start[gb], size[gb])
    c, d = _cross(recs, g_start[ga], size_o[ga], g_start[gb] + size_o[gb], size_n[gb])
    key = sorted_unique(np.r_[a.astype(np.int64) * m + b, c.astype(np.int64) * m + d])
    gone = none
    if outgrown:
        ga, gb = gpair // ng, gpair % ng
        prod_o = size_o[ga] * size_o[gb]
        lost = (size[ga] * size[gb] > rule.max_pairs) & (prod_o > 0) & (prod_o <= rule.max_pairs)
        if lost.any():
            a, b = _cross(recs, g_start[ga[lost]], size_o[ga[lost]], g_start[gb[lost]], size_o[gb[lost]])
            gone = sorted_unique(a.astype(np.int64) * m + b)
    stats.blocks, stats.capped_blocks = int(len(gpair)), int((~ok).sum())
    return key // m, key % m, stats, gone


def _window_involving(part: _Columns, rule: BlockingRule, inv: np.ndarray, outgrown: bool, largest: int):
    """For a rule without ``fuzzy_key`` and ``pair_with_empty`` (a block compared all against all, or as a sorted
    neighbourhood over ``max_block``): ``(left, right, stats, gone)`` over ``part`` (whole blocks) as
    :func:`rule_pairs` with its pairs kept when they involve an ``inv`` record, followed (with ``outgrown``) by
    :func:`_outgrown`, give them, with work that grows with the involved records' neighbourhoods rather than
    with the blocks' pairs (an address block of a large building over its cap: ~200,000 pairs, ~1,000 of them
    involving an added record). None when the codes cannot stand for the key values (the caller pairs whole).

    In the sorted order of :func:`rule_pairs` (block, ``order_by``, record) a record at position ``p`` pairs
    with the next ``limit[p]`` ones, so the pairs with an involved record at ``q`` are those to ``q``'s right
    up to ``limit[q]`` and those from the positions left of it that reach it: the whole block under the cap,
    the ``window`` before it over it. ``incomplete_block`` pairs (rare records) are made whole and kept when
    they involve one.

    Pairs between earlier records are lost only in a block over the cap now that holds an involved record;
    the earlier records keep their relative order, so their pairs before (their block alone, in that order)
    are those of their positions among themselves, and a pair ``(i, j)`` of earlier records is still made
    when ``j`` is within ``window`` of ``i`` in the order of all (or an ``incomplete_block`` pair now). A
    record whose farthest partner before is still within the window keeps all of them: only the others are
    looked at."""
    coded = part.block_codes(rule.keys)
    if coded is None:
        return None
    m, none = part.n, np.empty(0, np.int64)
    idx, block_code = coded
    if len(idx) < 2:
        return none, none, RuleStats(rule.name, int(len(idx)), int(len(idx)), 0, 0, 0, []), none
    order_cols, order, rec_sorted, blk_sorted, starts, sizes = _window_order(part, rule, idx, block_code)
    n = len(rec_sorted)
    block_of = np.repeat(np.arange(len(starts)), sizes)
    capped = sizes > rule.max_block
    w = min(rule.window, rule.max_block)
    new_sorted = inv[rec_sorted]
    new_pos = np.flatnonzero(new_sorted)
    stats = RuleStats(rule.name, int(n), int(len(starts)), 0, 0, int(capped.sum()),
                      _biggest(part, rule, rec_sorted, starts, sizes, largest))
    b = block_of[new_pos]
    start, end = starts[b], starts[b] + sizes[b]
    # to the right of an involved position: up to its limit (the block's end, or the window over the cap)
    hi = np.where(capped[b], np.minimum(new_pos + w, end - 1), end - 1)
    count = np.maximum(hi - new_pos, 0)
    p1 = np.repeat(new_pos, count)
    q1 = p1 + ranges(count) + 1
    # from the left: the earlier positions that reach it (an involved one there paired it above)
    lo = np.where(capped[b], np.maximum(new_pos - w, start), start)
    count = np.maximum(new_pos - lo, 0)
    q2 = np.repeat(new_pos, count)
    p2 = np.repeat(lo, count) + ranges(count)
    keep = ~new_sorted[p2]
    a, c = rec_sorted[np.r_[p1, p2[keep]]], rec_sorted[np.r_[q1, q2[keep]]]
    left, right = np.minimum(a, c).astype(np.int64), np.maximum(a, c).astype(np.int64)
    now_extra = none  # the incomplete_block pairs of all records (keys), sorted
    if rule.incomplete_block > 0 and capped.any():
        el, er = _incomplete_pairs(part, rule, idx, order, rec_sorted, blk_sorted, np.repeat(capped, sizes),
                                   order_cols[1:-1])
        now_extra = sorted_unique(el.astype(np.int64) * m + er)
        mine = now_extra[inv[now_extra // m] | inv[now_extra % m]]
        key = sorted_unique(np.r_[left * m + right, mine])
        left, right = key // m, key % m
    gone = none
    if outgrown:
        gone = _window_lost(part, rule, new_sorted, rec_sorted, blk_sorted, block_of, capped, order_cols, order,
                            idx, now_extra, w)
    return left, right, stats, gone


def _window_lost(part: _Columns, rule: BlockingRule, new_sorted: np.ndarray, rec_sorted: np.ndarray,
                 blk_sorted: np.ndarray, block_of: np.ndarray, capped: np.ndarray, order_cols: list, order: np.ndarray,
                 idx: np.ndarray, now_extra: np.ndarray, w: int) -> np.ndarray:
    """The ``gone`` of :func:`_window_involving` (keys ``left * m + right`` over ``part``, sorted, unique)."""
    m, none = part.n, np.empty(0, np.int64)
    hot = np.zeros(len(capped), dtype=bool)
    hot[block_of[new_sorted]] = True
    hot &= capped
    if not hot.any():
        return none
    sel = np.flatnonzero(hot[block_of] & ~new_sorted)  # earlier records of those blocks, positions in order
    if len(sel) < 2:
        return none
    eb = block_of[sel]
    e_starts = np.flatnonzero(np.r_[True, eb[1:] != eb[:-1]])
    e_sizes = np.diff(np.r_[e_starts, len(sel)])
    e_end = np.repeat(e_starts + e_sizes, e_sizes)
    e_capped = np.repeat(e_sizes > rule.max_block, e_sizes)
    at = np.arange(len(sel))
    limit = np.where(e_capped, np.minimum(w, e_end - at - 1), e_end - at - 1)
    # a position whose farthest partner before is still within the window now keeps every pair
    looked = np.flatnonzero(sel[at + limit] - sel > w)
    parts = []
    if len(looked):
        count = limit[looked]
        i = np.repeat(looked, count)
        j = i + ranges(count) + 1
        far = sel[j] - sel[i] > w
        a, c = rec_sorted[sel[i[far]]], rec_sorted[sel[j[far]]]
        parts.append(np.minimum(a, c).astype(np.int64) * m + np.maximum(a, c))
    if rule.incomplete_block > 0 and e_capped.any():
        # the incomplete_block pairs of the earlier records alone, in their order (their runs among themselves)
        el, er = _incomplete_pairs(part, rule, rec_sorted[sel], np.arange(len(sel)), rec_sorted[sel],
                                   blk_sorted[sel], e_capped, [c[order][sel] for c in order_cols[1:-1]])
        if len(el):
            pos = np.empty(m, dtype=np.int64)
            pos[rec_sorted] = np.arange(len(rec_sorted))
            far = np.abs(pos[el] - pos[er]) > w
            parts.append(el[far].astype(np.int64) * m + er[far])
    if not parts:
        return none
    before = sorted_unique(np.concatenate(parts))
    return before[~in_sorted(before, now_extra)]


def _outgrown(part: _Columns, rule: BlockingRule, earlier: np.ndarray, left: np.ndarray, right: np.ndarray,
              block_hash: np.ndarray | None) -> np.ndarray:
    """The pairs (``left * m + right`` over the ``m`` records of ``part``, sorted) between ``earlier`` records
    that ``rule`` makes over the earlier records alone and not over all of ``part`` (whose pairs are
    ``left``/``right``). ``part`` (coded columns) holds whole blocks; a rule without ``fuzzy_key`` looks only
    at those now over its cap (:func:`_over_cap`; ``block_hash`` tells blocks apart)."""
    m = part.n
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
    bl, br, _ = _one_rule(None, rule, 0, part.take(pos))
    bl, br = pos[bl], pos[br]
    before = sorted_unique(np.minimum(bl, br).astype(np.int64) * m + np.maximum(bl, br))
    return before[~in_sorted(before, now)]


def _over_cap(part: _Columns, rule: BlockingRule, block_hash: np.ndarray | None) -> np.ndarray:
    """Mask over ``part`` (coded columns of whole blocks of a rule without ``fuzzy_key``): the records of the
    blocks the rule does not compare whole, a window rule's blocks over ``max_block``, a ``pair_with_empty``
    rule's blocks whose pairs exceed ``max_pairs``. Blocks are told apart by ``block_hash`` (records of one
    hash hold whole blocks; a collision only makes a group look bigger) or, without it, by their key
    strings."""
    if not rule.keys:
        block_hash = np.zeros(part.n, dtype=np.uint64)
    elif block_hash is None:
        block_hash = block_keys(part.records, BlockingRule(rule.name, rule.keys)).to_numpy(dtype=object)
    codes, uniques = pd.factorize(pd.Series(block_hash, dtype=object if block_hash.dtype == object else None))
    size = np.bincount(codes, minlength=len(uniques))
    if rule.pair_with_empty:
        blank = part.empty(rule.pair_with_empty) if part.has(rule.pair_with_empty) else np.zeros(part.n, dtype=bool)
        over = np.bincount(codes, weights=blank, minlength=len(uniques)) * size > rule.max_pairs
    else:
        over = size > rule.max_block
    return over[codes]
