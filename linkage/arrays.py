"""Small vectorised helpers shared by blocking, entity resolution and the report graph."""
from __future__ import annotations

import hashlib
from json.encoder import encode_basestring  # what json.dumps(..., ensure_ascii=False) writes for a str
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

#: The dtype pandas gives a column made from a list of texts (its default text type).
LISTED_TEXT = pd.Series(["a"]).dtype


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array: a plain sort and a neighbour test (numpy 2's hash-based
    ``np.unique`` is several times slower on millions of int64 keys).

    >>> sorted_unique(np.array([5, 1, 5, 3])).tolist()
    [1, 3, 5]
    >>> sorted_unique(np.array([], dtype=np.int64)).tolist()
    []
    """
    if len(keys) == 0:
        return keys
    keys = np.sort(keys)
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def in_sorted(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mask over ``values``: equal to one of ``keys`` (sorted ascending), by binary search; ``np.isin`` sorts
    both arrays again (most of :func:`linkage.blocking._outgrown` on a +1,000 run of 100,000 reports).

    >>> in_sorted(np.array([5, 1, 9, 3]), np.array([1, 3, 4])).tolist()
    [False, True, False, True]
    >>> in_sorted(np.array([2]), np.array([], dtype=np.int64)).tolist()
    [False]
    """
    if not len(keys):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
    return keys[at] == values


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of an integer array (sorted distinct values, and each value's
    index among them, as int64), through a hash table instead of a sort of every value: 2-3x faster on the
    ~130,000 block-key hashes or codes an incremental run numbers several times per rule.

    >>> u, inv = unique_inverse(np.array([7, 3, 7, 5], dtype=np.uint64))
    >>> u.tolist(), inv.tolist()
    ([3, 5, 7], [2, 0, 2, 1])
    >>> [a.tolist() for a in unique_inverse(np.array([], dtype=np.int64))]
    [[], []]
    """
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise TypeError(f"unique_inverse: an integer array is needed, not {values.dtype}")
    codes, uniques = pd.factorize(values, sort=True)
    return np.asarray(uniques, dtype=values.dtype), codes.astype(np.int64, copy=False)


def ranges(count: np.ndarray) -> np.ndarray:
    """``0 .. count[i] - 1`` for every ``i``, concatenated (int64): the position of each element inside its run
    when runs of ``count`` elements are laid end to end.

    >>> ranges(np.array([2, 0, 3])).tolist()
    [0, 1, 0, 1, 2]
    """
    count = np.asarray(count, dtype=np.int64)
    return np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)


def run_starts(*columns: Any) -> np.ndarray:
    """Mask over the rows of equally long Arrow arrays (sorted, say): True where a row differs from the row
    before it in any of ``columns`` (the first row is True): the first row of each run of equal rows. Null
    compares as differing.

    >>> import pyarrow as pa
    >>> run_starts(pa.array(["a", "a", "b", "b"]), pa.array(["x", "x", "x", "y"])).tolist()
    [True, False, True, True]
    >>> run_starts(pa.array([], type=pa.string())).tolist()
    []
    """
    import pyarrow.compute as pc

    n = len(columns[0])
    out = np.ones(n, dtype=bool)
    if n > 1:
        differs = None
        for col in columns:
            step = pc.fill_null(pc.not_equal(col.slice(1), col.slice(0, n - 1)), True)
            differs = step if differs is None else pc.or_(differs, step)
        out[1:] = differs.to_numpy(zero_copy_only=False)
    return out


def stable_hashes(head: Sequence[object], values: Iterable[object], length: int = 16) -> list[str]:
    r""":func:`linkage.model.stable_hash` of ``(*head, value)`` for every value (the same digests), without
    a ``json.dumps`` per value: the JSON list is written directly, its fixed head once.

    >>> from linkage.model import stable_hash
    >>> vals = ["R1", 'a "b" \\ c', "Zoë", None, 7]
    >>> stable_hashes(["person"], vals) == [stable_hash("person", v) for v in vals]
    True
    >>> stable_hashes([42], ["R1"], length=15) == [stable_hash(42, "R1", length=15)]
    True
    """
    sha1 = hashlib.sha1
    prefix = "[" + "".join(("null" if h is None else encode_basestring(str(h))) + ", " for h in head)
    return [sha1((prefix + ("null" if v is None else encode_basestring(str(v))) + "]").encode("utf-8"))
            .hexdigest()[:length] for v in values]


def isin_text(s: Any, values: Any) -> np.ndarray:
    """``s.isin(values)`` as a boolean array (missing values: False), fast for text: a hash lookup in Arrow
    instead of pandas boxing every value. ``s`` and ``values`` may be pandas columns, numpy arrays or any
    iterable of text (a pandas string column is read as the Arrow array it is); non-text ``s`` (a Series) takes
    pandas' own way.

    >>> isin_text(np.array(["a", None, "c"], dtype=object), ("a", "b")).tolist()
    [True, False, False]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = arrow_text(s)
        value_set = arrow_text(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not strings: pandas' own way
        return s.isin(values.tolist() if hasattr(values, "tolist") else list(values)).to_numpy()
    return pc.fill_null(pc.is_in(arr, value_set=value_set), False).to_numpy(zero_copy_only=False)


def index_in_text(s: Any, values: Any) -> np.ndarray:
    """Position of each text of ``s`` in ``values`` (its first one; -1 when absent or missing), by a hash
    look-up in Arrow. Both as :func:`isin_text` takes them (text only).

    >>> index_in_text(np.array(["b", None, "x", "a"], dtype=object), ["a", "b", "a"]).tolist()
    [1, -1, -1, 0]
    """
    import pyarrow.compute as pc

    if not len(values):
        return np.full(len(s), -1, dtype=np.int64)
    return pc.fill_null(pc.index_in(arrow_text(s), value_set=arrow_text(values)), -1).to_numpy().astype(np.int64)


def arrow_text(values: Any) -> "pa.Array":
    """Text values as one Arrow ``large_string`` array (missing values null): an Arrow array or a pandas string
    column as it is stored, anything else converted value by value. Raises ArrowInvalid / ArrowTypeError for
    non-text."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    elif isinstance(values, (pd.Series, pd.Index)) and isinstance(values.dtype, pd.StringDtype):
        # the column's own array (Arrow's, as stored): ``pa.array`` of a Series with an index other than a
        # RangeIndex (a filtered or re-indexed frame) makes every value a Python object first (41,000 ids: ~8 ms)
        arr = pa.array(values.array)
    elif isinstance(values, (pd.Series, pd.Index, np.ndarray)):
        arr = pa.array(np.asarray(values, dtype=object), type=pa.large_string(), from_pandas=True)
    else:
        arr = pa.array(list(values), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def codes_after(old: "pa.Array", new: "pa.Array") -> "np.ndarray | None":
    """``new``'s numbers in one Arrow numbering of ``old`` followed by ``new`` (numbered in order of first
    appearance, one hash pass): a number below ``len(old)`` is the place of that value in ``old``, any other a
    value not in ``old`` (equal values, equal numbers). None when either holds a missing value or ``old``
    repeats a value (its values are then not numbered 0, 1, ... in turn): the caller looks them up another way.
    ``new`` is cast to ``old``'s type when they differ.

    >>> import pyarrow as pa
    >>> codes_after(pa.array(["r1", "r2", "r3"]), pa.array(["r3", "r9", "r1", "r9"])).tolist()
    [2, 3, 0, 3]
    >>> codes_after(pa.array(["r1", "r1"]), pa.array(["r1"])) is None
    True
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if old.null_count or new.null_count:
        return None
    if old.type != new.type:
        new = new.cast(old.type)
    codes = pc.dictionary_encode(pa.concat_arrays([old, new])).indices.to_numpy(zero_copy_only=False)
    if not np.array_equal(codes[: len(old)], np.arange(len(old))):
        return None
    return codes[len(old):].astype(np.intp)
