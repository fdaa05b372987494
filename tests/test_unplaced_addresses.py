"""An address without postcode and city (a street and number only) joins an address only when it is its only
candidate (er_settings [address] unplaced): small hand-made data of known truth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from linkage.er_settings import load_er_settings
from linkage.resolve import explain_pair, resolve_mentions
from linkage.scoring import unplaced_ambiguous

STREETS = ["Lindelaan", "Beukenweg", "Eikenlaan", "Molenstraat", "Schoolstraat", "Dorpsstraat", "Stationsweg",
           "Nieuwstraat", "Julianastraat", "Wilhelminastraat"]
CITIES = [("Amsterdam", "10"), ("Utrecht", "35"), ("Zwolle", "80"), ("Tilburg", "50"), ("Leiden", "23")]


def _address(mid, street, number, postcode="", city=""):
    return {"mention_id": mid, "report_id": "R" + mid, "entity_type": "address", "street": street,
            "house_number": str(number), "postcode_norm": postcode, "postcode": postcode, "city": city,
            "address": f"{street} {number}"}


def _filler(n=300):
    rows = []
    for i in range(n):
        city, pc = CITIES[i % len(CITIES)]
        rows.append(_address(f"x{i:04d}", STREETS[i % len(STREETS)], 1 + i // 3, f"{pc}{10 + i % 90:02d}AB", city))
        if i % 2 == 0:  # the same address again, so that the model sees matches
            rows.append(_address(f"y{i:04d}", STREETS[i % len(STREETS)], 1 + i // 3, f"{pc}{10 + i % 90:02d}AB", city))
    return rows


def _entity(res, mid):
    a = res.assignments.set_index("mention_id")["entity_id"]
    return a[mid]


def _incremental_and_full(df, added):
    """Entity ids per mention after resolving ``df`` without ``added`` and then ``added`` incrementally, and
    after one full run of ``df``, both with the model fitted on ``df``; and the first run."""
    from linkage.resolve.incremental import resolve_new, state_from_resolution

    model = resolve_mentions(df).model
    first = resolve_mentions(df[df["mention_id"] != added], model=model, keep_records=True)
    state = state_from_resolution(first, first.diagnostics["records"], model, [])
    result = resolve_new(state, df[df["mention_id"] == added], model, [])
    got = first.assignments.set_index("mention_id")["entity_id"].copy()
    for upd in result.updates:
        got = got.drop(upd.touched_old)
        got = pd.concat([got, upd.assignments.set_index("mention_id")["entity_id"]])
    full = resolve_mentions(df, model=model)
    return got.sort_index(), full, first


def test_a_street_and_number_alone_joins_its_only_candidate_but_not_one_of_two_towns():
    rows = _filler() + [
        _address("k1", "Kerkstraat", 12, "1234AB", "Amsterdam"),
        _address("k2", "Kerkstraat", 12, "1234AB", "Amsterdam"),
        _address("k3", "Kerkstraat", 12),                           # bare: Amsterdam is the only Kerkstraat 12
        _address("h1", "Havenweg", 7, "1234AC", "Amsterdam"),
        _address("h2", "Havenweg", 7, "3511AA", "Utrecht"),
        _address("h3", "Havenweg", 7),                              # bare: Havenweg 7 exists in two towns
    ]
    res = resolve_mentions(pd.DataFrame(rows))
    assert _entity(res, "k3") == _entity(res, "k1") == _entity(res, "k2")
    assert len({_entity(res, "h1"), _entity(res, "h2"), _entity(res, "h3")}) == 3  # nothing bridges the two towns
    # the explanation names the rule
    text = explain_pair(pd.DataFrame(rows).set_index("mention_id").loc["h3"].to_dict() | {"mention_id": "h3"},
                        pd.DataFrame(rows).set_index("mention_id").loc["h1"].to_dict() | {"mention_id": "h1"},
                        res.model).to_text()
    assert "h3 gives no postcode or city" in text and "only candidate" in text


def test_the_rule_is_policy_and_off_without_fields():
    assert ("postcode", "city") in load_er_settings().policy("address").unplaced
    rec = pd.DataFrame({"postcode": ["1234AB", "3511AA", ""], "city": ["", "", ""]})
    l, r = np.array([0, 1]), np.array([2, 2])
    both = np.ones(2, bool)
    assert unplaced_ambiguous(rec, l, r, both, both, ("postcode", "city")).tolist() == [True, True]
    assert unplaced_ambiguous(rec, l, r, both, both, ()).tolist() == [False, False]
    # a pair that cannot join them (below the candidate probability, or contradicting an anchor: 86d is no
    # candidate for 86e) does not make the choice ambiguous
    assert unplaced_ambiguous(rec, l, r, np.array([True, False]), np.array([True, False]),
                              ("postcode", "city")).tolist() == [False, False]


def test_judgements_count_in_the_rule():
    rec = pd.DataFrame({"postcode": ["1234AB", "3511AA", "", ""], "city": ["", "", "", ""]})
    l, r = np.array([0, 1]), np.array([2, 2])
    both = np.ones(2, bool)
    # judged different from one of its two candidates: the other is its only one
    assert unplaced_ambiguous(rec, l, r, both, both, ("postcode", "city"), different=[(1, 2)]).tolist() == [False, False]
    # the two candidate places judged the same: one candidate group
    assert unplaced_ambiguous(rec, l, r, both, both, ("postcode", "city"), same=[(0, 1)]).tolist() == [False, False]
    # an unplaced record judged the same as another unplaced one shares its candidates
    l, r = np.array([0, 1]), np.array([2, 3])
    assert unplaced_ambiguous(rec, l, r, both, both, ("postcode", "city"), same=[(2, 3)]).tolist() == [True, True]
    assert unplaced_ambiguous(rec, l, r, both, both, ("postcode", "city")).tolist() == [False, False]


def test_a_number_without_huisletter_joins_the_one_dwelling_but_not_one_of_two():
    rows = _filler() + [
        _address("a1", "Veldweg", "11a", "1037LE", "Amsterdam"),
        _address("a2", "Veldweg", "11b", "1037LE", "Amsterdam"),
        _address("a3", "Veldweg", 11, "1037LE", "Amsterdam"),       # 11a or 11b? it stays apart from both
        _address("b1", "Beekweg", "4c", "3511AB", "Utrecht"),
        _address("b2", "Beekweg", 4, "3511AB", "Utrecht"),          # one dwelling known at this number: joins it
    ]
    res = resolve_mentions(pd.DataFrame(rows))
    assert len({_entity(res, "a1"), _entity(res, "a2"), _entity(res, "a3")}) == 3
    assert _entity(res, "b1") == _entity(res, "b2")
    assert ("suffix",) in load_er_settings().policy("address").unplaced


def test_incremental_equals_full_when_a_second_town_makes_a_bare_address_ambiguous():
    rows = _filler() + [
        _address("h1", "Havenweg", 7, "1234AC", "Amsterdam"),
        _address("h3", "Havenweg", 7),                              # first run: Amsterdam is its only candidate
        _address("h2", "Havenweg", 7, "3511AA", "Utrecht"),         # added later: now it has two
    ]
    df = pd.DataFrame(rows).sort_values("mention_id").reset_index(drop=True)
    got, full, first = _incremental_and_full(df, "h2")
    assert _entity(first, "h3") == _entity(first, "h1")
    assert len({_entity(full, "h1"), _entity(full, "h2"), _entity(full, "h3")}) == 3
    want = full.assignments.set_index("mention_id")["entity_id"]
    assert (got.sort_index() == want.sort_index()).all()


def test_a_pair_contradicting_a_huisletter_is_no_candidate_place_in_full_and_incremental_runs():
    """86d is never 86e: a bare 'Havenweg 7d' keeps Amsterdam's Havenweg 7 as its only candidate when a
    Havenweg 7e in Utrecht arrives, in a full run and in an incremental one alike."""
    rows = _filler() + [
        _address("h1", "Havenweg", 7, "1234AC", "Amsterdam"),
        _address("h3", "Havenweg", "7d"),                           # bare, huisletter d
        _address("h2", "Havenweg", "7e", "3511AA", "Utrecht"),      # added later: another dwelling
    ]
    df = pd.DataFrame(rows).sort_values("mention_id").reset_index(drop=True)
    got, full, _ = _incremental_and_full(df, "h2")
    want = full.assignments.set_index("mention_id")["entity_id"]
    assert (got.sort_index() == want.sort_index()).all()
    assert _entity(full, "h3") == _entity(full, "h1") != _entity(full, "h2")


def test_unplaced_must_be_a_list_of_lists(tmp_path):
    """``unplaced = ["postcode", "city"]`` would read as two one-field rules: it is refused, with the form named."""
    import pytest

    from linkage import er_settings
    from linkage.errors import ConfigError

    text = (Path(er_settings.__file__).with_name("er_settings.toml")).read_text(encoding="utf-8")
    assert 'unplaced = [["postcode", "city"], ["suffix"]]' in text
    for wrong in ('unplaced = ["postcode", "city"]', 'unplaced = "postcode"'):
        path = tmp_path / "er.toml"
        path.write_text(text.replace('unplaced = [["postcode", "city"], ["suffix"]]', wrong), encoding="utf-8")
        with pytest.raises(ConfigError, match=r"\[address\] unplaced must be a list of lists"):
            load_er_settings(path)
