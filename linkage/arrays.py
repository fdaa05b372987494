"""Small vectorised helpers shared by blocking, entity resolution and the report graph."""
from __future__ import annotations

import hashlib
from json.encoder import encode_basestring  # what json.dumps(..., ensure_ascii=False) writes for a str
from typing import Iterable, Sequence

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
