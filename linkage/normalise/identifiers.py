"""Dutch identifiers to one canonical form: BSN, KvK, IBAN, postcode, phone, licence plate, e-mail.

In:  any value as given (str, int, float, None).
Out: ``normalise_<kind>(value)`` gives the canonical string or None (absent or not of that shape);
     ``is_valid_<kind>(value)`` tells whether the value passes the official check (elfproef, mod 97, ...);
     ``check(kind, value)`` gives both plus a reason, for the loader's warnings.
Nothing here raises on bad input.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Callable, NamedTuple

from stdnum import iban as _iban

_NON_DIGIT = re.compile(r"[^0-9]")  # ASCII digits only: "\D" keeps digits of other scripts
_SPACES = re.compile(r"[\s\-./()]+")


def _text(value: object) -> str:
    """The value as stripped text; '' for None/NaN."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            value = int(value)
    return str(value).strip()


# --- BSN -------------------------------------------------------------------------------------------

def normalise_bsn(value: object) -> str | None:
    """Nine digits (an 8-digit BSN gets its leading zero back), or None when not 8-9 digits.

    >>> normalise_bsn("1112.22.333")
    '111222333'
    >>> normalise_bsn(12345672)
    '012345672'
    >>> normalise_bsn("abc") is None
    True
    """
    text = _text(value)
    if not text or re.search(r"[A-Za-z]", text):
        return None
    digits = _NON_DIGIT.sub("", text)
    if len(digits) == 8:
        digits = "0" + digits
    return digits if len(digits) == 9 else None


def is_valid_bsn(value: object) -> bool:
    """True when the value is a BSN that passes the elfproef.

    >>> is_valid_bsn("111222333"), is_valid_bsn("111222334")
    (True, False)
    """
    return _valid_bsn(normalise_bsn(value))


_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def _valid_bsn(norm: str | None) -> bool:
    # The elfproef on the nine ASCII digits normalise_bsn gives (what stdnum's bsn.is_valid checks
    # for such a string, without its cleaning steps).
    if not norm or norm == "000000000":
        return False
    return sum(w * (ord(ch) - 48) for w, ch in zip(_BSN_WEIGHTS, norm)) % 11 == 0


# --- KvK -------------------------------------------------------------------------------------------

def normalise_kvk(value: object) -> str | None:
    """Eight digits of a KvK-nummer (the first 8 of a 12-digit vestigingsnummer are not the KvK-nummer,
    so those are kept whole), or None.

    >>> normalise_kvk("KvK 1234 5678")
    '12345678'
    >>> normalise_kvk("123") is None
    True
    """
    text = _text(value)
    if not text:
        return None
    digits = _NON_DIGIT.sub("", text)
    return digits if len(digits) in (8, 12) else None


def is_valid_kvk(value: object) -> bool:
    """True for an 8-digit KvK-nummer (the format is the only check there is).

    >>> is_valid_kvk("12345678"), is_valid_kvk("000012345678")
    (True, False)
    """
    return _valid_kvk(normalise_kvk(value))


def _valid_kvk(norm: str | None) -> bool:
    return bool(norm) and len(norm) == 8


# --- IBAN ------------------------------------------------------------------------------------------

def normalise_iban(value: object) -> str | None:
    """Upper case without spaces, or None when it does not look like an IBAN.

    >>> normalise_iban("nl91 abna 0417 1643 00")
    'NL91ABNA0417164300'
    """
    text = _SPACES.sub("", _text(value)).upper()
    if re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{8,30}", text):
        return text
    return None


def is_valid_iban(value: object) -> bool:
    """True when the IBAN passes mod 97 and its country's format.

    >>> is_valid_iban("NL91 ABNA 0417 1643 00"), is_valid_iban("NL92ABNA0417164300")
    (True, False)
    """
    return _valid_iban(normalise_iban(value))


@lru_cache(maxsize=1 << 16)
def _valid_iban(norm: str | None) -> bool:
    return bool(norm) and _iban.is_valid(norm)


# --- Postcode --------------------------------------------------------------------------------------

_POSTCODE = re.compile(r"^(?:NL)?[\s\-]*([1-9][0-9]{3})\s*([A-Z]{2})$")
_UNUSED_PAIRS = frozenset({"SA", "SD", "SS"})


def normalise_postcode(value: object) -> str | None:
    """``1234AB`` from any spacing or case (``1234 ab``, ``NL-1234AB``), or None.

    >>> normalise_postcode(" nl-1234 ab")
    '1234AB'
    >>> normalise_postcode("0123AB") is None
    True
    """
    match = _POSTCODE.match(_text(value).upper())
    return match.group(1) + match.group(2) if match else None


def is_valid_postcode(value: object) -> bool:
    """True for a Dutch postcode that can exist (the letter pairs SA, SD and SS are not used).

    >>> is_valid_postcode("1234 AB"), is_valid_postcode("1234 SS")
    (True, False)
    """
    return _valid_postcode(normalise_postcode(value))


def _valid_postcode(norm: str | None) -> bool:
    return bool(norm) and norm[4:] not in _UNUSED_PAIRS


# --- Phone -----------------------------------------------------------------------------------------

def normalise_phone(value: object) -> str | None:
    """E.164 (``+31612345678``) for Dutch numbers written nationally or internationally, or None.

    >>> normalise_phone("06-12345678")
    '+31612345678'
    >>> normalise_phone("+31 (0)6 1234 5678")
    '+31612345678'
    >>> normalise_phone("0031 10 1234567")
    '+31101234567'
    """
    text = _text(value)
    if not text or re.search(r"[A-Za-z]", text):
        return None
    text = text.replace("(0)", "")
    plus = text.lstrip().startswith("+")
    digits = _NON_DIGIT.sub("", text)
    if digits.startswith("00"):  # 0031..., and the mixed +0031...
        plus, digits = True, digits[2:]
    if plus:
        if digits.startswith("31"):
            rest = digits[2:]
            if rest.startswith("0"):
                rest = rest[1:]
            return "+31" + rest if len(rest) == 9 and not rest.startswith("0") else None
        return "+" + digits if 8 <= len(digits) <= 15 and not digits.startswith("0") else None
    if digits.startswith("0") and len(digits) == 10:
        return "+31" + digits[1:]
    return None


def is_valid_phone(value: object) -> bool:
    """True when the value normalises to a Dutch number (+31 and nine digits) or a plausible foreign one.

    >>> is_valid_phone("010-1234567"), is_valid_phone("12345")
    (True, False)
    """
    return _valid_phone(normalise_phone(value))


def _valid_phone(norm: str | None) -> bool:
    return norm is not None


# --- Licence plate ---------------------------------------------------------------------------------

# Dutch sidecodes 1-14 on the six characters without dashes (X = letter, 9 = digit).
_SIDECODES = [
    "XX9999", "9999XX", "99XX99", "XX99XX", "XXXX99", "99XXXX", "99XXX9",
    "9XXX99", "XX999X", "X999XX", "XXX99X", "X99XXX", "9XX999", "999XX9",
]
_SIDECODE_RES = [re.compile("^" + code.replace("X", "[A-Z]").replace("9", r"\d") + "$") for code in _SIDECODES]


def normalise_plate(value: object) -> str | None:
    """Upper case without dashes or spaces (``12-ABC-3`` -> ``12ABC3``), or None when not 4-8 characters.

    >>> normalise_plate("ab-123-c")
    'AB123C'
    """
    text = re.sub(r"[\s\-.]", "", _text(value)).upper()
    return text if re.fullmatch(r"[A-Z0-9]{4,8}", text) else None


def is_valid_plate(value: object) -> bool:
    """True when the plate fits one of the Dutch sidecodes.

    >>> is_valid_plate("12-ABC-3"), is_valid_plate("ABCDEF")
    (True, False)
    """
    return _valid_plate(normalise_plate(value))


_SIDECODE_ANY = re.compile("|".join(f"(?:{rx.pattern})" for rx in _SIDECODE_RES))


def _valid_plate(norm: str | None) -> bool:
    return bool(norm) and _SIDECODE_ANY.match(norm) is not None


# --- E-mail ----------------------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_email(value: object) -> str | None:
    """Lower case, stripped; None when there is no ``@``.

    >>> normalise_email(" Jan@Example.NL ")
    'jan@example.nl'
    """
    text = _text(value).lower()
    return text if "@" in text else None


def is_valid_email(value: object) -> bool:
    """True for ``local@domain.tld`` shapes.

    >>> is_valid_email("a@b.nl"), is_valid_email("a@b")
    (True, False)
    """
    return _valid_email(normalise_email(value))


def _valid_email(norm: str | None) -> bool:
    return bool(norm) and bool(_EMAIL.match(norm))


# --- One entry point for the loader ----------------------------------------------------------------

class Checked(NamedTuple):
    """A checked value: its canonical form (None when unusable) and a reason when it is not valid."""

    normalised: str | None
    problem: str | None


# kind -> (normalise, is the normalised form valid, reason). ``is_valid_<kind>(v)`` is exactly
# ``valid(normalise_<kind>(v))``, so check() normalises once.
_KINDS: dict[str, tuple[Callable[[object], str | None], Callable[[str | None], bool], str]] = {
    "bsn": (normalise_bsn, _valid_bsn, "not a valid BSN (9 digits passing the elfproef)"),
    "kvk": (normalise_kvk, _valid_kvk, "not a valid KvK-nummer (8 digits)"),
    "iban": (normalise_iban, _valid_iban, "not a valid IBAN (checksum mod 97 fails or wrong shape)"),
    "postcode": (normalise_postcode, _valid_postcode, "not a valid Dutch postcode (like 1234 AB)"),
    "phone": (normalise_phone, _valid_phone, "not a recognisable phone number (like 06-12345678)"),
    "plate": (normalise_plate, _valid_plate, "not a Dutch licence plate (like 12-ABC-3)"),
    "email": (normalise_email, _valid_email, "not an e-mail address"),
}

IDENTIFIER_KINDS: tuple[str, ...] = tuple(_KINDS)


def check(kind: str, value: object) -> Checked:
    """Normalise and validate one identifier; an empty value is not a problem.

    The canonical form is kept even when the check fails (a BSN failing the elfproef is still a
    9-digit string that can match itself); the problem text never repeats the value.

    >>> check("bsn", "111222333")
    Checked(normalised='111222333', problem=None)
    >>> check("postcode", "12345").problem
    'not a valid Dutch postcode (like 1234 AB)'
    >>> check("iban", None)
    Checked(normalised=None, problem=None)
    """
    normalise, valid, reason = _KINDS[kind]
    if not _text(value):
        return Checked(None, None)
    norm = normalise(value)
    return Checked(norm, None if valid(norm) else reason)
