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
