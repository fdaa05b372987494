"""Blocking: rules, union with rule masks, caps on oversized blocks, the report."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from linkage.blocking import block, deletion_variants, rule_pairs
from linkage.er_settings import BlockingRule, load_er_settings
from linkage.resolve.features import prepare


def test_all_pairs_inside_small_blocks_only():
    df = pd.DataFrame({"k": ["a", "a", "b", "b", "b", ""]})
    left, right, stats = rule_pairs(df, BlockingRule("r", ("k",)))
    assert sorted(zip(left.tolist(), right.tolist())) == [(0, 1), (2, 3), (2, 4), (3, 4)]
    assert (stats.blocks, stats.pairs, stats.capped_blocks) == (2, 4, 0)


def test_oversized_block_is_capped_to_a_window():
    n = 1000
    df = pd.DataFrame({"surname": ["jong"] * n, "first": [f"{i:04d}" for i in range(n)]})
    rule = BlockingRule("big", ("surname",), max_block=100, window=5, order_by=("first",))
    left, right, stats = rule_pairs(df, rule)
    assert stats.capped_blocks == 1
    assert len(left) <= n * 5 < n * (n - 1) // 2
    assert stats.largest_blocks[0] == ("jong", n)
    # neighbours in the sort order are compared
    assert set(zip(left.tolist(), right.tolist())) >= {(0, 1), (0, 5), (998, 999)}


def test_record_without_order_value_meets_its_whole_block_not_a_window():
    # a big "jansen" block ordered by birth date; record 0 has no birth date, so a window would only show it
    # the earliest-born records: with incomplete_block it meets all of them
    dates = [""] + [f"19{i:02d}-01-01" for i in range(30)]
    df = pd.DataFrame({"surname": ["jansen"] * 31, "birth_date": dates})
    windowed = BlockingRule("r", ("surname",), max_block=10, window=3, order_by=("birth_date",))
    left, right, _ = rule_pairs(df, windowed)
    assert sum(1 for a in left.tolist() if a == 0) == 3
    full = BlockingRule("r", ("surname",), max_block=10, window=3, order_by=("birth_date",), incomplete_block=100)
    left, right, stats = rule_pairs(df, full)
    pairs = set(zip(left.tolist(), right.tolist()))
    assert {(0, k) for k in range(1, 31)} <= pairs
    assert len(pairs) == len(left)  # no pair twice
    assert (1, 30) not in pairs  # complete records keep their window
    small = BlockingRule("r", ("surname",), max_block=10, window=3, order_by=("birth_date",), incomplete_block=20)
    assert sum(1 for a in rule_pairs(df, small)[0].tolist() if a == 0) == 3  # block too big: window only


def test_incomplete_record_meets_records_sharing_the_order_values_it_has():
    # order by (first name, birth date): "klaas" without birth date meets every klaas, not every jansen
    first = ["klaas"] * 6 + ["piet"] * 6
    dates = [""] + [f"19{i:02d}-01-01" for i in range(11)]
    df = pd.DataFrame({"surname": ["jansen"] * 12, "first_name": first, "birth_date": dates})
    rule = BlockingRule("r", ("surname",), max_block=4, window=1, order_by=("first_name", "birth_date"),
                        incomplete_block=50)
    pairs = set(zip(*(a.tolist() for a in rule_pairs(df, rule)[:2])))
    assert {(0, k) for k in range(1, 6)} <= pairs
    assert not any(a == 0 and b >= 6 for a, b in pairs)


def test_pairs_grow_about_linearly_with_capped_blocks():
    def count(n):
        df = pd.DataFrame({"k": ["x"] * n, "o": np.arange(n).astype(str)})
        return len(rule_pairs(df, BlockingRule("r", ("k",), max_block=50, window=10, order_by=("o",)))[0])
    assert count(20000) / count(2000) < 11


def test_union_marks_every_rule_that_found_a_pair():
    df = pd.DataFrame({"a": ["x", "x", "y"], "b": ["1", "1", "2"]})
    cand, report = block(df, [BlockingRule("a", ("a",)), BlockingRule("b", ("b",))])
    assert list(zip(cand.left.tolist(), cand.right.tolist())) == [(0, 1)]
    assert cand.rule_mask.tolist() == [3]
    assert [r.new_pairs for r in report.rules] == [1, 0]
    assert "rule a" in report.to_text()


def test_fuzzy_key_finds_one_typo_apart_and_skips_equal():
    assert set(deletion_variants("ab")) == {"ab", "a", "b"}
    df = pd.DataFrame({"i": ["j", "j", "j", "k"], "s": ["schouten", "chouten", "schouten", "chouten"]})
    cand, _ = block(df, [BlockingRule("f", ("i",), fuzzy_key="s")])
    assert sorted(zip(cand.left.tolist(), cand.right.tolist())) == [(0, 1), (1, 2)]


def test_pair_with_empty_pairs_only_records_missing_the_column():
    df = pd.DataFrame({"s": ["broeders"] * 3 + ["x"], "fi": ["", "t", "t", ""]})
    cand, _ = block(df, [BlockingRule("e", ("s",), pair_with_empty="fi")])
    assert sorted(zip(cand.left.tolist(), cand.right.tolist())) == [(0, 1), (0, 2)]


def test_involving_keeps_only_pairs_with_a_new_record():
    df = pd.DataFrame({"k": ["a", "a", "a"]})
    cand, _ = block(df, [BlockingRule("r", ("k",))], involving=np.array([False, False, True]))
    assert sorted(zip(cand.left.tolist(), cand.right.tolist())) == [(0, 2), (1, 2)]


def test_person_rules_find_typical_variants():
    mentions = pd.DataFrame([
        {"mention_id": "1", "entity_type": "person", "name": "Jan de Vries", "birth_date_norm": "1985-03-07"},
        {"mention_id": "2", "entity_type": "person", "name": "Vries, J. de", "birth_date_norm": "1985-07-03"},
        {"mention_id": "3", "entity_type": "person", "first_name": "Jan", "last_name": "Vriess"},
        {"mention_id": "4", "entity_type": "person", "last_name": "de Vries"},
    ])
    records = prepare(mentions, "person")
    cand, report = block(records, load_er_settings().policy("person").blocking)
    found = set(zip(cand.left.tolist(), cand.right.tolist()))
    assert {(0, 1), (0, 2), (0, 3)} <= found
    assert report.to_dict()["total_pairs"] == len(cand)


def test_new_pairs_count_each_pair_once_for_the_first_rule_that_found_it():
    df = pd.DataFrame({"a": ["x", "x", "x", "y"], "b": ["1", "1", "2", "2"]})
    cand, report = block(df, [BlockingRule("a", ("a",)), BlockingRule("b", ("b",)), BlockingRule("a2", ("a",))])
    assert len(cand) == 4
    assert [r.new_pairs for r in report.rules] == [3, 1, 0]
    assert sum(r.new_pairs for r in report.rules) == report.total_pairs
    assert cand.by_rule("a2").sum() == 3


def test_block_codes_number_blocks_as_the_key_strings_sort():
    """The coded blocks of a rule equal the sort-order codes of its key strings (prefixes, empties and
    non-ASCII included); a value holding a character at or below the key separator falls back to strings."""
    from linkage.blocking import KEY_SEP, _codes, _Columns, block_keys

    df = pd.DataFrame({"a": ["ab", "abc", "ab", "", "zoë", "ab c", "abc", "b"],
                       "b": ["1", "1", "2", "1", "", "1", "1", "10"]})
    rule = BlockingRule("r", ("a", "b"))
    idx, codes = _Columns(df).block_codes(rule.keys)
    keys = block_keys(df, rule)
    expect_idx = np.flatnonzero((keys != "").to_numpy())
    assert idx.tolist() == expect_idx.tolist()
    assert codes.tolist() == _codes(keys.iloc[expect_idx]).tolist()
    assert _Columns(df).key_of(rule.keys, 1) == "abc" + KEY_SEP + "1"
    low = df.assign(a=df["a"].where(df.index != 2, "a\tb"))
    assert _Columns(low).block_codes(rule.keys) is None
    left, right, stats = rule_pairs(low, rule)  # the key strings decide
    assert sorted(zip(left.tolist(), right.tolist())) == [(1, 6)] and stats.blocks == 5
    # a missing value (None/NaN: records from outside features.prepare) also takes the key-string path, so
    # (x, 2) is never paired with (y, missing)
    gaps = pd.DataFrame({"a": ["x", "x", None, None, "y", "y"], "b": ["1", "2", "1", "2", None, None]}, dtype=object)
    assert _Columns(gaps).block_codes(rule.keys) is None
    left, right, _ = rule_pairs(gaps, rule)
    assert (1, 4) not in set(zip(left.tolist(), right.tolist()))


def test_more_blocking_rules_than_mask_bits_are_refused(tmp_path):
    """A pair keeps the rules that make it as the bits of a uint32: a 33rd rule of one type is a config error
    naming the type, not silently wrong pairs."""
    import pytest

    from linkage import er_settings
    from linkage.errors import ConfigError

    text = er_settings.DEFAULT_ER_SETTINGS.read_text(encoding="utf-8")
    extra = "".join(f'\n[[business.blocking]]\nname = "extra{k}"\nkeys = ["kvk"]\n' for k in range(33))
    path = tmp_path / "er.toml"
    path.write_text(text + extra, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[\[business\.blocking\]\]: at most 32 blocking rules"):
        load_er_settings(path)


def test_variant_codes_number_the_deletion_variants_of_every_value():
    """variant_codes (vectorised) gives each value its deletion variants, once each, and equal variants of any
    values one code: the same relation as deletion_variants."""
    from linkage.blocking import variant_codes

    rng = np.random.default_rng(3)
    letters = list("abcéij-")
    values = ["", "a", "ab", "aa", "zoë"] + ["".join(rng.choice(letters, rng.integers(0, 9))) for _ in range(300)]
    owner, code = variant_codes(np.array(values, dtype=object))
    assert np.all(np.diff(owner) >= 0)
    pairs = list(zip(owner.tolist(), code.tolist()))
    assert len(pairs) == len(set(pairs))
    per_value = [set() for _ in values]
    for o, c in pairs:
        per_value[o].add(c)
    assert [len(s) for s in per_value] == [len(set(deletion_variants(v))) for v in values]
    # two values share a code exactly when they share a variant
    for i in range(0, len(values), 7):
        for j in range(0, len(values), 5):
            assert bool(per_value[i] & per_value[j]) == bool(set(deletion_variants(values[i]))
                                                               & set(deletion_variants(values[j])))
    empty = variant_codes(np.array([], dtype=object))
    assert len(empty[0]) == len(empty[1]) == 0


def test_a_view_of_coded_columns_codes_only_its_rows_in_their_sort_order():
    """_Columns.take: a column the table coded is taken from its codes; one it did not is coded over the view's
    rows only. Either way the view's codes order its values as sorting them does (what block_codes needs)."""
    from linkage.blocking import _Columns

    df = pd.DataFrame({"a": ["k", "b", "k", "a", "z", "b"], "b": ["2", "1", "", "1", "3", "2"]})
    cols = _Columns(df)
    cols.codes("a")  # coded over the whole table
    rows = np.array([4, 0, 5, 1])
    view = cols.take(rows)
    assert "b" not in cols._coded
    for name in ("a", "b"):
        codes, values = view.codes(name), view.values(name)
        assert values[codes].tolist() == df[name].iloc[rows].tolist()
        assert np.array_equal(np.argsort(codes, kind="stable"), np.argsort(df[name].iloc[rows].to_numpy(), kind="stable"))
    assert len(view.values("b")) == 3  # only the view's own values
    sub = view.take(np.array([3, 1]))  # a view of a view takes its parent's codes
    assert sub.values("b").tolist() == view.values("b").tolist()
    assert sub.values("b")[sub.codes("b")].tolist() == df["b"].iloc[[1, 0]].tolist()
    assert view.empty("b").tolist() == [False, False, False, False]
    assert cols.take(np.array([2, 3])).empty("b").tolist() == [True, False]


def test_variant_hashes_meet_exactly_when_deletion_variants_do():
    """Values sharing a deletion variant share a variant hash (no pair missed, also with non-ASCII, NUL and
    characters beyond the BMP); on these values no hashes meet without a shared variant."""
    import random

    from linkage.blocking import deletion_variants, variant_hashes

    rng = random.Random(5)
    alphabet = "abé\x00😀z"
    values = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(600)})
    owner, h = variant_hashes(np.array(values, dtype=object))
    assert len(h) == sum(len(v) + 1 for v in values)
    hashes = [set(h[owner == i].tolist()) for i in range(len(values))]
    variants = [set(deletion_variants(v)) for v in values]
    for i in range(0, len(values), 7):
        for j in range(len(values)):
            assert bool(hashes[i] & hashes[j]) == bool(variants[i] & variants[j]), (values[i], values[j])


def test_fuzzy_groups_filtered_by_variant_hashes_are_the_same(monkeypatch):
    """_fuzzy_groups_coded filters many distinct values by variant hashes first: the groups are those of the
    unfiltered computation."""
    import linkage.resolve.incremental as incremental

    rng = np.random.default_rng(3)
    letters = np.array(list("abcdefgh"))
    values = np.array(sorted({"".join(rng.choice(letters, rng.integers(1, 6))) for _ in range(3000)} | {""}),
                      dtype=object)
    codes = rng.integers(0, len(values), 20000)
    hashes = rng.integers(0, 4, 20000).astype(np.uint64)
    involving = np.zeros(20000, dtype=bool)
    involving[rng.choice(20000, 40, replace=False)] = True
    monkeypatch.setattr(incremental, "_VARIANT_FILTER_FROM", 10**9)
    plain = incremental._fuzzy_groups_coded(codes, values, hashes, involving)
    monkeypatch.setattr(incremental, "_VARIANT_FILTER_FROM", 0)
    filtered = incremental._fuzzy_groups_coded(codes, values, hashes, involving)
    assert 0 < len(filtered) < 20000
    assert filtered.tolist() == plain.tolist()


def test_arrow_sorted_codes_are_pandas_factorize():
    """Coding an Arrow string column in Arrow gives what pd.factorize(sort=True) gives (code-point order, also
    for non-ASCII and characters beyond the BMP; a chunked column; rows taken); other columns are left to
    pandas (None)."""
    import random

    from linkage.blocking import _arrow_sorted_codes

    rng = random.Random(9)
    alphabet = "aAzé\x00\x1f ñ😀Ω"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))) for _ in range(3000)]
    column = pd.concat([pd.Series(values[:1000], dtype="str"), pd.Series(values[1000:], dtype="str")],
                       ignore_index=True)
    rows = np.array(rng.sample(range(3000), 700))
    for r in (None, rows):
        want = column if r is None else column.iloc[r]
        codes, uniques = pd.factorize(want.astype(str), sort=True)
        got = _arrow_sorted_codes(column, r)
        assert got is not None
        assert got[0].tolist() == codes.tolist()
        assert got[1].tolist() == list(uniques)
    assert _arrow_sorted_codes(pd.Series(values, dtype=object), None) is None
    assert _arrow_sorted_codes(pd.Series(["a", None], dtype="str"), None) is None


def test_column_views_code_their_rows_as_pandas_does():
    """A view of a table (large: it shares the table's encoding of the column; small: it encodes its own rows;
    a view of a view) codes a column as pd.factorize(sort=True) of its rows."""
    from linkage.blocking import _Columns

    rng = np.random.default_rng(4)
    words = np.array(["jansen", "de vries", "", "bakker", "él", "visser", "😀x"], dtype=object)
    records = pd.DataFrame({"s": pd.Series(words[rng.integers(0, len(words), 400)], dtype="str"),
                            "o": words[rng.integers(0, len(words), 400)]})
    table = _Columns(records)
    big = table.take(rng.choice(400, 300, replace=False))
    small = table.take(rng.choice(400, 20, replace=False))
    inner = big.take(np.arange(0, 300, 7))
    for view, rows in ((big, big._rows), (small, small._rows), (inner, inner._rows)):
        for name in ("s", "o"):
            codes, uniques = pd.factorize(records[name].iloc[rows].astype(str), sort=True)
            assert view.codes(name).tolist() == codes.tolist()
            assert view.values(name).tolist() == list(uniques)


def test_member_ints_is_isin_for_every_kind_of_integers():
    """_member_ints (low bits first for 64-bit integers) gives pandas' isin: random hashes, small integers,
    values whose low bits all agree (every one goes to the hash table), other dtypes, nothing wanted."""
    from linkage.blocking import _member_ints

    rng = np.random.default_rng(11)
    cases = []
    for dtype in (np.int64, np.uint64):
        big = rng.integers(0, 2**62, 4000).astype(dtype)
        cases.append((big, np.r_[big[:300], rng.integers(0, 2**62, 300).astype(dtype)].astype(dtype)))
        cases.append((rng.integers(0, 3000, 4000).astype(dtype), rng.integers(0, 3000, 900).astype(dtype)))
        cases.append(((rng.integers(0, 40, 4000) << 24).astype(dtype), (rng.integers(0, 40, 25) << 24).astype(dtype)))
        cases.append((big, np.empty(0, dtype)))
    cases.append((np.array([-5, 7, -(2**40), 3], dtype=np.int64), np.array([-(2**40), 3], dtype=np.int64)))
    cases.append((rng.integers(0, 100, 500).astype(np.int32), rng.integers(0, 100, 30).astype(np.int32)))
    for dtype in (np.int64, np.uint64):  # wanted sorted and unique already (not sorted again), or not
        big = rng.integers(0, 2**62, 6000).astype(dtype)
        wanted = np.unique(np.r_[big[:2500], rng.integers(0, 2**62, 100).astype(dtype)])
        cases.append((big, wanted))
        cases.append((big, wanted[::-1].copy()))
        cases.append((big, np.r_[wanted, wanted[:50]]))
    for values, wanted in cases:
        want = pd.Series(values).isin(wanted).to_numpy() if len(wanted) else np.zeros(len(values), bool)
        got = _member_ints(values, wanted)
        assert got.dtype == bool and got.tolist() == want.tolist()


def test_arrow_rows_of_a_column_of_several_chunks_are_its_iloc():
    """arrow_rows takes the rows of each chunk alone (an incremental run's records: the stored ones, then the
    new ones): in any order, with repeats and missing values, the values of ``column.iloc[rows]``."""
    from linkage.blocking import arrow_rows

    rng = np.random.default_rng(8)
    words = np.array(["jansen", "de vries", "", "él", None, "😀x"], dtype=object)
    parts = [pd.Series(words[rng.integers(0, len(words), n)], dtype="str") for n in (50, 0, 7, 30)]
    column = pd.concat(parts, ignore_index=True)
    assert column.array._pa_array.num_chunks > 1
    for rows in (np.arange(len(column)), np.sort(rng.choice(len(column), 20, replace=False)),
                 rng.integers(0, len(column), 40), np.array([], dtype=np.int64), np.array([86, 0, 55])):
        got = arrow_rows(column, rows).to_pylist()
        assert got == [None if pd.isna(v) else v for v in column.iloc[rows].tolist()]
    assert arrow_rows(pd.Series([1, 2]), np.array([0])) is None
    assert arrow_rows(pd.Series(["a"], dtype=object), np.array([0])) is None


def test_column_views_of_a_chunked_table_code_and_find_empties_as_of_one_chunk():
    """A view of a table whose columns are two chunks codes its rows (and finds its empty values) as a view of
    the same table in one chunk does."""
    from linkage.blocking import _Columns

    rng = np.random.default_rng(9)
    words = np.array(["jansen", "de vries", "", "bakker", "él"], dtype=object)
    whole = pd.DataFrame({"s": pd.Series(words[rng.integers(0, len(words), 300)], dtype="str")})
    chunked = pd.concat([whole.iloc[:250], whole.iloc[250:]], ignore_index=True)
    assert chunked["s"].array._pa_array.num_chunks == 2
    for rows in (np.sort(rng.choice(300, 40, replace=False)), rng.choice(300, 40, replace=False)):
        one, two = _Columns(whole).take(rows), _Columns(chunked).take(rows)
        assert two.codes("s").tolist() == one.codes("s").tolist()
        assert two.values("s").tolist() == one.values("s").tolist()
        at = np.arange(0, 40, 3)
        assert _Columns(chunked).take(rows).empty_at("s", at).tolist() == (whole["s"].iloc[rows[at]] == "").tolist()


@pytest.mark.parametrize("dtype", ["object", "str with a missing value", "str"])
def test_views_code_their_own_rows_as_the_rows_alone_code(dtype):
    """A view's codes, values and empties are those of its rows coded alone (``iloc``), for a view small or
    large, whether the table's coding of the column can be shared or not (an object column or an Arrow one
    with a missing value cannot: the view then codes its own rows, never the table's)."""
    from linkage.blocking import _Columns

    rng = np.random.default_rng(4)
    words = np.array(["jansen", "", "bakker", "de vries", "x", "y", "z", "w", "q"], dtype=object)
    values = words[rng.integers(0, len(words), 400)]
    if dtype == "str with a missing value":
        values[7] = None
    column = pd.Series(values, dtype=object if dtype == "object" else "str")
    table = _Columns(pd.DataFrame({"s": column}))
    for rows in (np.array([0, 1, 3]), np.sort(rng.choice(400, 150, replace=False)), rng.choice(400, 20, replace=False)):
        view = table.take(rows)  # the second view of a column finds the table's coding (or its None) cached
        want_codes, want_values = pd.factorize(column.iloc[rows].astype(str), sort=True)
        assert len(view.codes("s")) == len(rows)
        if view.safe("s"):
            assert view.values("s")[view.codes("s")].tolist() == np.asarray(want_values, dtype=object)[want_codes].tolist()
        assert view.empty("s").tolist() == (column.iloc[rows].astype(str) == "").tolist()


def test_arrow_rows_refuses_negative_positions():
    from linkage.blocking import arrow_rows

    s = pd.concat([pd.Series(["a", "b"], dtype="str"), pd.Series(["c"], dtype="str")], ignore_index=True)
    with pytest.raises(IndexError):
        arrow_rows(s, np.array([-1, 0, 1]))
