"""Small vectorised helpers on integer arrays, shared by blocking and the report graph."""
from __future__ import annotations

import numpy as np


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
