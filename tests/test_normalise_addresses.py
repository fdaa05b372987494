"""Address and business-name normalisation: table-driven cases and properties."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from linkage.normalise.addresses import (
    normalise_address, normalise_city, normalise_street, parse_address, parse_house_number, street_key,
)
from linkage.normalise.business import business_key, legal_form, normalise_business_name


@pytest.mark.parametrize("text, expected", [
    ("Kerkstraat 12a, 1234 AB Amsterdam", ("kerkstraat", 12, "a", "", "1234AB", "amsterdam")),
    ("Kerkstr. 12 A 1234ab", ("kerkstraat", 12, "a", "", "1234AB", "")),
    ("Laan van Meerdervoort 100 hs, 2517 AB Den Haag", ("laan van meerdervoort", 100, "", "hs", "2517AB", "'s-gravenhage")),
    ("1e Jacob van Campenstraat 12-III, 1072 BE Amsterdam", ("1e jacob van campenstraat", 12, "", "3", "1072BE", "amsterdam")),
    ("Stationsln 3-2, Utrecht", ("stationslaan", 3, "", "2", "", "utrecht")),
])
def test_parse_one_string_addresses(text, expected):
    a = parse_address(text)
    assert (a.street, a.house_number, a.house_letter, a.addition, a.postcode, a.city) == expected


@pytest.mark.parametrize("text, expected", [
    ("12", (12, "", "")), ("12a", (12, "a", "")), ("12 A", (12, "a", "")), ("12-2", (12, "", "2")),
    ("12-II", (12, "", "2")), ("12 hs", (12, "", "hs")), ("12 huis", (12, "", "hs")), ("12 bis", (12, "", "bis")),
    ("12-bv", (12, "", "bv")), ("", (None, "", "")),
])
def test_house_numbers(text, expected):
    assert parse_house_number(text) == expected


def test_fields_win_over_the_one_string():
    a = parse_address(street="Kerk straat", house_number="7", postcode="1234 ab", city="A'dam")
    assert (a.street, a.house_number, a.postcode, a.city) == ("kerk straat", 7, "1234AB", "amsterdam")
    assert street_key("Kerk straat") == street_key("Kerkstraat") == street_key("Kerkstr.")


def test_abbreviations_and_cities():
    assert normalise_street("Burg. de Withstr.") == "burgemeester de withstraat"
    assert normalise_city("Den Haag") == normalise_city("'s-Gravenhage")


@pytest.mark.parametrize("name, expected", [
    ("Bakkerij de Boer B.V.", "bakkerij de boer"), ("Bakkerij De Boer BV", "bakkerij de boer"),
    ("V.O.F. Snackbar 't Hoekje", "snackbar t hoekje"), ("Stichting Wonen & Zorg", "wonen en zorg"),
    ("De Boer Holding B.V.", "de boer"), ("Holding B.V.", "holding"),
])
def test_business_names_lose_legal_forms(name, expected):
    assert normalise_business_name(name) == expected


def test_business_helpers():
    assert legal_form("Nagelstudio Lotus b.v.") == "b v"
    assert business_key("De Boer Bouw BV") == business_key("deboer bouw")
    assert normalise_business_name(None) is None


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_address_never_raises_and_is_idempotent(text):
    once = normalise_address(text)
    assert once is None or normalise_address(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="Kerkstr.aln 0123456789-ABhsIV,", max_size=40))
def test_address_idempotent_on_address_like_text(text):
    once = normalise_address(text)
    assert once is None or normalise_address(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_business_never_raises_and_is_idempotent(text):
    once = normalise_business_name(text)
    assert once is None or normalise_business_name(once) == once


# -- a place name after the house number, without comma or postcode, is the city, not a toevoeging --------------
@pytest.mark.parametrize("text, expected", [
    ("Stadhuisplein 32 Tilburg", ("stadhuisplein", 32, "", "", "", "tilburg")),
    ("Hoofdstraat 142b Rotterdam", ("hoofdstraat", 142, "b", "", "", "rotterdam")),
    ("Tulpstr 42 H AMSTERDAM", ("tulpstraat", 42, "", "hs", "", "amsterdam")),
    ("Lorenzohof 6-1 HEKENDORP", ("lorenzohof", 6, "", "1", "", "hekendorp")),
    ("Keizersgracht 12 Den Haag", ("keizersgracht", 12, "", "", "", "'s-gravenhage")),
    ("Kerkstraat 12 III Utrecht", ("kerkstraat", 12, "", "3", "", "utrecht")),
    # toevoeging words stay toevoegingen
    ("Kerkstraat 12 begane grond", ("kerkstraat", 12, "", "bg", "", "")),
    ("Kerkstraat 12 achter", ("kerkstraat", 12, "", "achter", "", "")),
    ("Kerkstraat 12 bis", ("kerkstraat", 12, "", "bis", "", "")),
    # a city found elsewhere (comma, postcode) is kept; the old reading stays
    ("Kerkstraat 12 A, Utrecht", ("kerkstraat", 12, "a", "", "", "utrecht")),
    ("Julianastraat 58-A 9742LA", ("julianastraat", 58, "a", "", "9742LA", "")),
])
def test_trailing_city_is_not_a_toevoeging(text, expected):
    a = parse_address(text)
    assert (a.street, a.house_number, a.house_letter, a.addition, a.postcode, a.city) == expected


@pytest.mark.parametrize("left, right", [
    ("Stadhuisplein 32 Tilburg", "Stadhuisplein 32, 5024 LE Tilburg"),
    ("Hoofdstraat 142b Rotterdam", "Hoofdstraat 142B, 3020 JP Rotterdam"),
])
def test_trailing_city_gives_the_same_suffix(left, right):
    assert parse_address(left).suffix == parse_address(right).suffix
    assert parse_address(left).city == parse_address(right).city


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Kerkstraat", "Stationsln", "Burg. de Withstr."]), st.integers(1, 999),  # "1000 hs" reads as a postcode
       st.sampled_from(["", "a", " A", "-2", "-II", " hs", " bis", "/3"]),
       st.sampled_from(["", " Tilburg", " Den Haag", ", Utrecht", " 1234 AB Amsterdam"]))
def test_built_addresses_keep_number_and_are_idempotent(street, number, suffix, place):
    text = f"{street} {number}{suffix}{place}"
    a = parse_address(text)
    assert a.house_number == number
    once = normalise_address(text)
    assert once is not None and normalise_address(once) == once


# -- resolution of flats: both toevoegingen given and different -> never one entity ---------------------------
def _resolve_addresses(rows):
    import pandas as pd

    from linkage.resolve import resolve_mentions
    from linkage.resolve.features import normalise_mention_values

    df = pd.DataFrame([normalise_mention_values({"mention_id": f"m{k}", "entity_type": "address", **r})
                       for k, r in enumerate(rows)])
    a = resolve_mentions(df).assignments.set_index("mention_id")["entity_id"]
    return [a[f"m{k}"] for k in range(len(rows))]


def test_distinct_flats_are_not_merged_but_a_missing_toevoeging_may_link():
    flats = [{"address": f"Bijlmerdreef 13-{t}, 1102 AB Amsterdam"} for t in ("1", "2", "3") for _ in range(3)]
    plain = [{"address": f"Kerkstraat {n}, 1234 AB Amsterdam"} for n in range(1, 40)]
    ids = _resolve_addresses(flats + plain + [{"address": "Bijlmerdreef 13, 1102 AB Amsterdam"}])
    f = ids[:9]
    # 13-1, 13-2, 13-3 are three dwellings, also with a "13" (toevoeging unknown) that looks like each of them
    assert not {f[0], f[1], f[2]} & {f[3], f[4], f[5]} and not {f[0], f[1], f[2], f[3], f[4], f[5]} & {f[6], f[7], f[8]}


def test_house_number_with_a_toevoeging_is_not_read_as_a_postcode():
    a = parse_address("Kerkstraat 1000 hs")
    assert (a.street, a.house_number, a.addition, a.postcode) == ("kerkstraat", 1000, "hs", "")
    # a comma before it, or a house number already given, keeps it a postcode
    assert parse_address("Kerkstraat, 1000 HS Amsterdam").postcode == "1000HS"
    assert parse_address("Kerkstraat 12 1000 HS").postcode == "1000HS"


def test_cached_parts_depend_on_the_text_only():
    # street, city and house-number parsing are cached per text: a value of another type gives what its
    # text gives, and True (== 1 as a dict key) is not taken for 1
    from linkage.normalise.addresses import normalise_city, normalise_street, parse_house_number

    assert parse_house_number(12.0) == parse_house_number("12") == parse_house_number(12) == (12, "", "")
    assert parse_house_number(True) == (None, "", "") and parse_house_number(1) == (1, "", "")
    assert normalise_city(None) == normalise_city(float("nan")) == ""
    assert normalise_street("Kerkstr.") == normalise_street("Kerkstr.") == "kerkstraat"
    assert normalise_street("Čapekstraat") == "capekstraat"  # non-ASCII still loses its accents
