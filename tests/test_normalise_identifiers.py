"""Identifier and date normalisers: table-driven cases and property tests (never raise, idempotent,
problems never quote the value)."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given, settings as hsettings, strategies as st

from linkage.normalise import identifiers as ids
from linkage.normalise.dates import parse_date, parse_timestamp

NORMALISERS = {
    "bsn": ids.normalise_bsn,
    "kvk": ids.normalise_kvk,
    "iban": ids.normalise_iban,
    "postcode": ids.normalise_postcode,
    "phone": ids.normalise_phone,
    "plate": ids.normalise_plate,
    "email": ids.normalise_email,
}
VALIDATORS = {
    "bsn": ids.is_valid_bsn,
    "kvk": ids.is_valid_kvk,
    "iban": ids.is_valid_iban,
    "postcode": ids.is_valid_postcode,
    "phone": ids.is_valid_phone,
    "plate": ids.is_valid_plate,
    "email": ids.is_valid_email,
}
#: One value per kind that is present but fails the check: gives the fixed reason text of that kind.
KNOWN_BAD = {
    "bsn": "111222334",
    "kvk": "123",
    "iban": "NL92ABNA0417164300",
    "postcode": "12345",
    "phone": "999",
    "plate": "ABCDEF",
    "email": "geen-adres",
}


def test_every_kind_is_covered():
    assert set(NORMALISERS) == set(VALIDATORS) == set(KNOWN_BAD) == set(ids.IDENTIFIER_KINDS)


# --- table-driven cases ----------------------------------------------------------------------------
# (kind, value as given, normalised form, valid?)
CASES = [
    # BSN: elfproef; an 8-digit BSN lost its leading zero (Excel) and gets it back.
    ("bsn", "111222333", "111222333", True),
    ("bsn", "1112.22.333", "111222333", True),
    ("bsn", " 111 222 333 ", "111222333", True),
    ("bsn", 111222333, "111222333", True),
    ("bsn", 111222333.0, "111222333", True),
    ("bsn", "12345672", "012345672", True),
    ("bsn", 12345672, "012345672", True),
    ("bsn", "123456782", "123456782", True),
    ("bsn", "111222334", "111222334", False),  # elfproef fails; canonical form kept
    ("bsn", "000000000", "000000000", False),
    ("bsn", "1234567", None, False),
    ("bsn", "1234567890", None, False),
    ("bsn", "BSN 111222333", None, False),
    ("bsn", "", None, False),
    ("bsn", None, None, False),
    ("bsn", float("nan"), None, False),
    # KvK: 8 digits; a 12-digit vestigingsnummer is kept whole but is not a KvK-nummer.
    ("kvk", "12345678", "12345678", True),
    ("kvk", "KvK 1234 5678", "12345678", True),
    ("kvk", 12345678, "12345678", True),
    ("kvk", "1234.5678", "12345678", True),
    ("kvk", "000012345678", "000012345678", False),
    ("kvk", "1234567", None, False),
    ("kvk", "123456789", None, False),
    ("kvk", None, None, False),
    # IBAN: mod 97.
    ("iban", "NL91ABNA0417164300", "NL91ABNA0417164300", True),
    ("iban", "NL91 ABNA 0417 1643 00", "NL91ABNA0417164300", True),
    ("iban", "nl91 abna 0417 1643 00", "NL91ABNA0417164300", True),
    ("iban", "NL91-ABNA-0417-1643-00", "NL91ABNA0417164300", True),
    ("iban", "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", True),
    ("iban", "NL92ABNA0417164300", "NL92ABNA0417164300", False),  # checksum wrong
    ("iban", "NL91ABNA041716430", "NL91ABNA041716430", False),  # one digit short
    ("iban", "0417164300", None, False),
    ("iban", "", None, False),
    # Postcode: 4 digits (first not 0) + 2 letters; SA, SD and SS are not used.
    ("postcode", "1234AB", "1234AB", True),
    ("postcode", "1234 AB", "1234AB", True),
    ("postcode", "1234 ab", "1234AB", True),
    ("postcode", "1234ab", "1234AB", True),
    ("postcode", "NL-1234AB", "1234AB", True),
    ("postcode", "nl 1234 ab", "1234AB", True),
    ("postcode", " 9999 ZZ ", "9999ZZ", True),
    ("postcode", "1234 SA", "1234SA", False),
    ("postcode", "1234 sd", "1234SD", False),
    ("postcode", "1234SS", "1234SS", False),
    ("postcode", "0123AB", None, False),
    ("postcode", "123AB", None, False),
    ("postcode", "12345", None, False),
    ("postcode", "1234 A", None, False),
    ("postcode", "1234 ABC", None, False),
    ("postcode", "AB 1234", None, False),
    ("postcode", "BE-1234AB", None, False),
    ("postcode", None, None, False),
    # Phone: to E.164.
    ("phone", "06-12345678", "+31612345678", True),
    ("phone", "0612345678", "+31612345678", True),
    ("phone", "06 1234 5678", "+31612345678", True),
    ("phone", "+31 6 1234 5678", "+31612345678", True),
    ("phone", "+31 (0)6 1234 5678", "+31612345678", True),
    ("phone", "+31612345678", "+31612345678", True),
    ("phone", "0031612345678", "+31612345678", True),
    ("phone", "0031 6 12345678", "+31612345678", True),
    ("phone", "010-1234567", "+31101234567", True),
    ("phone", "(010) 123 45 67", "+31101234567", True),
    ("phone", "020-1234567", "+31201234567", True),
    ("phone", "+32 470 12 34 56", "+32470123456", True),  # foreign numbers kept in E.164
    ("phone", "0032 470 12 34 56", "+32470123456", True),
    ("phone", "612345678", None, False),  # no trunk prefix, no country code
    ("phone", "06-1234567", None, False),  # one digit short
    ("phone", "06-123456789", None, False),
    ("phone", "+31 6 1234 567", None, False),
    ("phone", "12345", None, False),
    ("phone", "bel mij", None, False),
    ("phone", "+31 00 12345678", None, False),  # no Dutch number starts with 0 after +31
    ("phone", "+0031612345678", "+31612345678", True),
    ("phone", None, None, False),
    # Licence plates: Dutch sidecodes, with or without dashes.
    ("plate", "12-ABC-3", "12ABC3", True),
    ("plate", "12ABC3", "12ABC3", True),
    ("plate", "AB-123-C", "AB123C", True),
    ("plate", "ab-123-c", "AB123C", True),
    ("plate", "1-ABC-23", "1ABC23", True),
    ("plate", "XX-99-99", "XX9999", True),
    ("plate", "99-XX-99", "99XX99", True),
    ("plate", "99 XX 99", "99XX99", True),
    ("plate", "AB-12-CD", "AB12CD", True),
    ("plate", "ABC-12-D", "ABC12D", True),
    ("plate", "1-AB-234", "1AB234", True),
    ("plate", "ABCDEF", "ABCDEF", False),
    ("plate", "123456", "123456", False),
    ("plate", "ABC", None, False),
    ("plate", "AB-123-CD-EF", None, False),
    ("plate", "AB#123", None, False),
    # E-mail.
    ("email", "jan@example.nl", "jan@example.nl", True),
    ("email", " Jan.de.Vries@Example.NL ", "jan.de.vries@example.nl", True),
    ("email", "jan@example", "jan@example", False),
    ("email", "jan @example.nl", "jan @example.nl", False),
    ("email", "jan.example.nl", None, False),
    ("email", None, None, False),
]


@pytest.mark.parametrize("kind,value,expected,valid", CASES, ids=[f"{c[0]}:{c[1]!r}" for c in CASES])
def test_normalise_and_validate(kind, value, expected, valid):
    assert NORMALISERS[kind](value) == expected
    assert VALIDATORS[kind](value) is valid
    checked = ids.check(kind, value)
    assert checked.normalised == expected
    if valid:
        assert checked.problem is None
    elif ids._text(value):
        assert checked.problem is not None
    else:  # an empty value is not a problem
        assert checked == ids.Checked(None, None)


def test_check_problem_names_the_expected_shape():
    assert ids.check("bsn", "111222334").problem == "not a valid BSN (9 digits passing the elfproef)"
    assert "1234 AB" in ids.check("postcode", "1234 SS").problem
    assert "mod 97" in ids.check("iban", "NL92ABNA0417164300").problem


@pytest.mark.parametrize("kind", sorted(KNOWN_BAD))
def test_check_problem_never_quotes_the_value(kind):
    value = KNOWN_BAD[kind]
    problem = ids.check(kind, value).problem
    assert problem
    assert value not in problem


# --- dates -----------------------------------------------------------------------------------------
DATE_CASES = [
    ("2025-03-14", dt.date(2025, 3, 14), "2025-03-14"),
    ("2025-3-4", dt.date(2025, 3, 4), "2025-03-04"),
    ("14-03-2025", dt.date(2025, 3, 14), "2025-03-14"),
    ("14/03/2025", dt.date(2025, 3, 14), "2025-03-14"),
    ("14.3.2025", dt.date(2025, 3, 14), "2025-03-14"),
    ("4-3-2025", dt.date(2025, 3, 4), "2025-03-04"),  # day first, the Dutch order
    ("20250314", dt.date(2025, 3, 14), "2025-03-14"),
    ("2025-03-14T09:30:00", dt.date(2025, 3, 14), "2025-03-14T09:30:00"),
    ("2025-03-14 09:30", dt.date(2025, 3, 14), "2025-03-14T09:30:00"),
    ("2025-03-14T09:30:00Z", dt.date(2025, 3, 14), "2025-03-14T09:30:00"),
    ("14-03-2025 09:30", dt.date(2025, 3, 14), "2025-03-14T09:30:00"),
    (" 2025-03-14 ", dt.date(2025, 3, 14), "2025-03-14"),
    (dt.date(2025, 3, 14), dt.date(2025, 3, 14), "2025-03-14"),
    (dt.datetime(2025, 3, 14, 0, 0), dt.date(2025, 3, 14), "2025-03-14"),
    (dt.datetime(2025, 3, 14, 9, 30), dt.date(2025, 3, 14), "2025-03-14T09:30:00"),
    ("2024-02-29", dt.date(2024, 2, 29), "2024-02-29"),
    ("31-02-2025", None, None),
    ("2025-02-31", None, None),
    ("29-02-2025", None, None),
    ("2025-13-01", None, None),
    ("32-01-2025", None, None),
    ("14-03-2025 25:00", dt.date(2025, 3, 14), None),
    ("14-03-25", None, None),
    ("gisteren", None, None),
    ("", None, None),
    (None, None, None),
    (float("nan"), None, None),
]


@pytest.mark.parametrize("value,date,stamp", DATE_CASES, ids=[repr(c[0]) for c in DATE_CASES])
def test_dates(value, date, stamp):
    assert parse_date(value) == date
    assert parse_timestamp(value) == stamp


# --- properties ------------------------------------------------------------------------------------
ANY_VALUE = st.one_of(
    st.text(),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.from_regex(r"\A[0-9 +\-()./]{0,20}\Z"),  # digit-heavy text, where the normalisers do their work
    st.from_regex(r"\A(NL)?[ -]?[0-9]{4} ?[A-Za-z]{2}\Z"),
    # phone-like: an international or trunk prefix, then digits with separators
    st.tuples(st.sampled_from(["", "+", "+31", "+31 0", "0031", "00", "0", "+00", "+0031"]),
              st.from_regex(r"\A[0-9 \-]{0,14}\Z")).map("".join),
    st.text(alphabet=st.characters(categories=["Nd"]), min_size=4, max_size=14),  # digits of other scripts
)


@hsettings(max_examples=400, deadline=None)
@given(value=ANY_VALUE)
@example(value="+31 00 12345678")  # found by this test: '+31012345678' normalised to None the second time
@example(value="+0031612345678")
def test_normalisers_never_raise_are_idempotent_and_never_quote(value):
    """Every normaliser on every value: no exception; normalise(normalise(x)) == normalise(x);
    check() gives no problem or the kind's fixed reason (the same for every bad value, so it cannot
    carry the value)."""
    for kind in NORMALISERS:
        once = NORMALISERS[kind](value)
        valid = VALIDATORS[kind](value)
        if once is not None:
            assert isinstance(once, str), kind
            assert NORMALISERS[kind](once) == once, kind
            assert VALIDATORS[kind](once) == valid, kind  # the canonical form is valid exactly when the original is
        checked = ids.check(kind, value)
        assert checked.normalised == once or not ids._text(value), kind
        assert checked.problem in (None, ids.check(kind, KNOWN_BAD[kind]).problem), kind


@hsettings(max_examples=300, deadline=None)
@given(value=st.one_of(
    st.text(),
    st.text(alphabet=st.characters(categories=["Nd"]), min_size=8, max_size=12),  # digits of other scripts
    st.text(alphabet=st.characters(categories=["Nd", "Lu", "Zs"]), max_size=14),
))
@example(value="\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668")  # Arabic-Indic 12345678
@example(value="0\u0666\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668")  # 0612345678
@example(value="1\u0662\u0663\u0664AB")
@example(value="NL\u0669\u0661ABNA0417164300")
def test_canonical_forms_are_plain_ascii(value):
    for kind in ("bsn", "kvk", "iban", "postcode", "phone", "plate"):
        once = NORMALISERS[kind](value)
        if once is not None:
            assert once.isascii() and once == once.strip(), kind


@hsettings(max_examples=200, deadline=None)
@given(value=st.one_of(st.text(), st.none(), st.integers(), st.floats(), st.dates(), st.datetimes(),
                       st.from_regex(r"\A[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}( [0-9]{1,2}:[0-9]{2})?\Z")))
def test_dates_never_raise_and_are_idempotent(value):
    date = parse_date(value)
    stamp = parse_timestamp(value)
    if date is not None:
        assert parse_date(date.isoformat()) == date
    if stamp is not None:
        assert parse_timestamp(stamp) == stamp
        assert parse_date(stamp) == date


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_dutch_and_iso_spellings_agree(day):
    assert parse_date(day.strftime("%d-%m-%Y")) == parse_date(day.isoformat()) == day
    assert parse_date(day.strftime("%d/%m/%Y")) == day


@given(st.from_regex(r"\A[1-9][0-9]{3}[A-Z]{2}\Z"), st.sampled_from(["{d}{l}", "{d} {l}", "NL-{d}{l}", "{d} {lo}", " nl {d}{lo} "]))
def test_postcode_spellings_agree(code, spelling):
    written = spelling.format(d=code[:4], l=code[4:], lo=code[4:].lower())
    assert ids.normalise_postcode(written) == code
    assert ids.is_valid_postcode(written) == (code[4:] not in {"SA", "SD", "SS"})


@given(st.from_regex(r"\A[0-9]{8}\Z"))
def test_bsn_elfproef_matches_stdnum(digits):
    from stdnum.nl import bsn

    nine = "0" + digits
    assert ids.is_valid_bsn(digits) == (nine != "000000000" and bsn.is_valid(nine))
    assert ids.normalise_bsn(digits) == nine
