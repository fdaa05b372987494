"""Small vectorised helpers (linkage.arrays)."""
from __future__ import annotations

import numpy as np
import pytest

from linkage.arrays import sorted_unique, unique_inverse


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint64])
@pytest.mark.parametrize("seed", [1, 2])
def test_unique_inverse_is_numpys_unique_with_inverse(dtype, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 50, 1000).astype(dtype)
    if dtype == np.uint64:
        values[::7] = np.iinfo(np.uint64).max - values[::7]  # past the int64 range too
    u, inv = unique_inverse(values)
    nu, ninv = np.unique(values, return_inverse=True)
    assert u.dtype == values.dtype and inv.dtype == np.int64
    assert np.array_equal(u, nu) and np.array_equal(inv, ninv.reshape(-1))
    assert np.array_equal(u, sorted_unique(values))


def test_unique_inverse_wants_integers():
    with pytest.raises(TypeError):
        unique_inverse(np.array([1.5, 2.0]))


def test_in_sorted_is_isin():
    from linkage.arrays import in_sorted

    rng = np.random.default_rng(2)
    for n_keys in (0, 1, 50):
        keys = np.unique(rng.integers(0, 100, n_keys))
        values = rng.integers(-5, 110, 500)
        assert in_sorted(values, keys).tolist() == np.isin(values, keys).tolist()


def test_codes_after_numbers_new_values_by_their_place_among_the_old():
    """Random texts: a new value's number is its place in ``old`` when there, else one number per distinct value
    not in ``old`` (equal values, equal numbers); None for a missing value or an ``old`` that repeats one."""
    import pyarrow as pa

    from linkage.arrays import codes_after

    rng = np.random.default_rng(3)
    for _ in range(200):
        old = list(dict.fromkeys(f"r{v}" for v in rng.integers(0, 30, size=rng.integers(0, 15))))
        new = [f"r{v}" for v in rng.integers(0, 40, size=rng.integers(0, 15))]
        got = codes_after(pa.array(old, type=pa.large_string()), pa.array(new))
        place = {v: i for i, v in enumerate(old)}
        assert [place.get(v, -1) for v in new] == [g if g < len(old) else -1 for g in got.tolist()]
        outside = [g for g, v in zip(got.tolist(), new) if v not in place]
        assert len(set(outside)) == len({v for v in new if v not in place})
    assert codes_after(pa.array(["a", "a"]), pa.array(["a"])) is None
    assert codes_after(pa.array(["a", None]), pa.array(["a"])) is None
    assert codes_after(pa.array(["a"]), pa.array([None, "a"])) is None
