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
