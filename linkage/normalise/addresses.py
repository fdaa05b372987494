"""Dutch addresses to a comparable form: street, house number, huisletter, toevoeging, postcode, city.

In:  one-string addresses (``Kerkstr. 12-II, 1234 AB A'dam``) or separate fields.
Out: :func:`parse_address` gives an :class:`Address` whose parts are folded (lower case, no diacritics,
     abbreviations written out: ``str.`` -> ``straat``, ``ln`` -> ``laan``); :func:`street_key` gives the
     street without spaces and punctuation for matching; :func:`normalise_address` one canonical string
     that parses back to itself. Nothing here raises.

Postcodes use the lead's :func:`linkage.normalise.identifiers.normalise_postcode`.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from linkage.normalise.identifiers import normalise_postcode

#: Whole-word abbreviations in street names, written out.
STREET_WORDS: dict[str, str] = {
    "str": "straat", "st": "straat", "ln": "laan", "pl": "plein", "wg": "weg", "gr": "gracht", "grt": "gracht",
    "kd": "kade", "sngl": "singel", "dk": "dijk", "pln": "plein", "prk": "park", "pad": "pad", "hf": "hof",
    "burg": "burgemeester", "burgem": "burgemeester", "mr": "meester", "dr": "dokter", "pr": "prins",
    "prof": "professor", "v": "van", "vd": "van der", "gen": "generaal", "kon": "koning", "kon.": "koning",
    "past": "pastoor", "ir": "ingenieur", "jhr": "jonkheer", "o": "oude", "n": "nieuwe", "z": "zuid",
    "nz": "nieuwezijds", "oz": "oudezijds",
}
#: Abbreviated street-name endings glued to the word (``Kerkstr.`` -> ``kerkstraat``).
STREET_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("str", "straat"), ("ln", "laan"), ("pln", "plein"), ("pl", "plein"), ("gr", "gracht"), ("grt", "gracht"),
    ("kd", "kade"), ("sngl", "singel"), ("dk", "dijk"), ("wg", "weg"),
)
#: Other ways of writing a city, mapped to the BAG name (folded).
CITY_ALIASES: dict[str, str] = {
    "a'dam": "amsterdam", "adam": "amsterdam", "r'dam": "rotterdam", "rdam": "rotterdam",
    "den haag": "'s-gravenhage", "s-gravenhage": "'s-gravenhage", "'s gravenhage": "'s-gravenhage",
    "s gravenhage": "'s-gravenhage", "the hague": "'s-gravenhage", "dh": "'s-gravenhage",
    "den bosch": "'s-hertogenbosch", "s-hertogenbosch": "'s-hertogenbosch", "'s hertogenbosch": "'s-hertogenbosch",
    "s hertogenbosch": "'s-hertogenbosch", "a'foort": "amersfoort",
}
#: Toevoeging words, written one way (``huis`` -> ``hs``).
ADDITION_WORDS: dict[str, str] = {
    "huis": "hs", "hs": "hs", "h": "hs", "bg": "bg", "beg": "bg", "begane grond": "bg", "bel": "bg",
    "bv": "bv", "boven": "bv", "bov": "bv", "bis": "bis", "zw": "zw", "rd": "rd", "achter": "achter",
    "voor": "voor", "a": "a",
}
_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "vii": "7", "viii": "8", "ix": "9", "x": "10"}
_SPECIAL = str.maketrans({"ß": "ss", "’": "'", "‘": "'", "`": "'", "´": "'"})
_POSTCODE_IN = re.compile(r"(?<![0-9])(?:nl[\s\-]*)?([1-9][0-9]{3})\s?([a-z]{2})(?![a-z])")
_NUMBER = re.compile(r"(?<![0-9a-z])([0-9]{1,5})(?![0-9])\s*(.*)$")
_NUMBER_AT = re.compile(r"(?<![0-9a-z])([0-9]{1,5})(?![0-9])")
_ORDINAL = re.compile(r"(?:e|ste|de)\s+[a-z]")  # "2e Hugo de Grootstraat": the number is part of the street
_LETTER = re.compile(r"^([a-z])(?![a-z])[\s\-/.]*(.*)$")
_NUMBERISH = re.compile(r"[0-9]+[a-z]?|[a-z]?[0-9]+")
_THREE_LETTERS = re.compile(r"[a-z]{3}")
_DIGIT = re.compile(r"[0-9]")
_SPACES = re.compile(r"\s+")
_WORD_SPLIT = re.compile(r"[\s,]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_NOT_ALNUM_SPACE = re.compile(r"[^a-z0-9 ]")


def _text(value: object) -> str:
    if value.__class__ is str:  # the common case (a parse reads five fields): as str(value) gives it
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    try:
        return str(value)
    except Exception:  # pragma: no cover
        return ""


def _fold(value: object) -> str:
    return _fold_text(_text(value))


#: Size of the per-distinct-text caches below: street names, cities and house numbers repeat across
#: many addresses, so each is folded and parsed once (the functions are pure; results are immutable).
_CACHE = 1 << 18


@lru_cache(maxsize=_CACHE)
def _fold_text(value: str) -> str:
    text = unicodedata.normalize("NFKD", value.lower().translate(_SPECIAL))
    if not (text.isascii() and text.isprintable()):  # ASCII has no combining marks: nothing to drop
        text = "".join(ch for ch in text if not unicodedata.combining(ch) and ch.isprintable())
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class Address:
    """A parsed address; parts folded, empty (or None for the number) when unknown."""

    street: str = ""
    house_number: int | None = None
    house_letter: str = ""
    addition: str = ""
    postcode: str = ""
    city: str = ""

    @property
    def suffix(self) -> str:
        """Huisletter and toevoeging together (``a``, ``2``, ``a-2``); '' when neither."""
        return "-".join(p for p in (self.house_letter, self.addition) if p)

    def canonical(self) -> str:
        """``kerkstraat 12a-2, 1234AB amsterdam`` (parts that are unknown left out).

        >>> parse_address("Kerkstr. 12 A, 1234 ab A'dam").canonical()
        'kerkstraat 12a, 1234AB amsterdam'
        """
        number = ""
        if self.house_number is not None:
            number = f"{self.house_number}{self.house_letter}" + (f"-{self.addition}" if self.addition else "")
        first = " ".join(p for p in (self.street, number) if p)
        second = " ".join(p for p in (self.postcode, self.city) if p)
        return ", ".join(p for p in (first, second) if p)


def normalise_street(value: object) -> str:
    """Folded street name with abbreviations written out.

    >>> normalise_street("Burg. de Withstr."), normalise_street("Stationsln"), normalise_street("Kerk straat")
    ('burgemeester de withstraat', 'stationslaan', 'kerk straat')
    """
    return _street_text(_text(value))


@lru_cache(maxsize=_CACHE)
def _street_text(value: str) -> str:
    text = _fold_text(value).replace(".", ". ")
    words = [w for w in _WORD_SPLIT.split(text) if w]
    out: list[str] = []
    for w in words:
        bare = w.strip(".")
        if not bare:
            continue
        if bare in STREET_WORDS and (len(words) > 1):
            out.append(STREET_WORDS[bare])
            continue
        for short, long in STREET_SUFFIXES:
            if bare.endswith(short) and len(bare) > len(short) + 2 and not bare.endswith(long):
                bare = bare[: -len(short)] + long
                break
        out.append(bare)
    return " ".join(out).strip()


def street_key(value: object) -> str:
    """The street for matching: written out, only letters and digits (``Kerk straat`` = ``Kerkstraat``).

    >>> street_key("Kerk straat") == street_key("Kerkstr.")
    True
    """
    return _NOT_ALNUM.sub("", normalise_street(value))


def normalise_city(value: object) -> str:
    """Folded city name, with common short forms mapped (``A'dam`` -> ``amsterdam``, ``Den Haag`` ->
    ``'s-gravenhage``).

    >>> normalise_city("Den Haag"), normalise_city(" Utrecht ")
    ("'s-gravenhage", 'utrecht')
    """
    return _city_text(_text(value))


@lru_cache(maxsize=_CACHE)
def _city_text(value: str) -> str:
    text = _fold_text(value).strip(" ,.")
    return CITY_ALIASES.get(text, text)


def parse_house_number(value: object) -> tuple[int | None, str, str]:
    """(number, huisletter, toevoeging) from ``12``, ``12a``, ``12 A``, ``12-2``, ``12-II``, ``12 hs``, ``12 bis``.

    >>> parse_house_number("12 A"), parse_house_number("12-II"), parse_house_number("12 huis")
    ((12, 'a', ''), (12, '', '2'), (12, '', 'hs'))
    >>> parse_house_number("12a-3"), parse_house_number("geen")
    ((12, 'a', '3'), (None, '', ''))
    """
    return _house_number_text(_text(value))


@lru_cache(maxsize=_CACHE)
def _house_number_text(value: str) -> tuple[int | None, str, str]:
    text = _fold_text(value)
    m = _NUMBER.search(text)
    if not m:
        return None, "", ""
    number = int(m.group(1))
    rest = m.group(2).strip(" -/.,")
    letter, addition = "", ""
    lm = _LETTER.match(rest)
    if lm and lm.group(1) not in ("h",) and not (lm.group(1) in ("i", "v", "x") and not lm.group(2) and rest.startswith("-")):
        letter, rest = lm.group(1), lm.group(2)
    rest = _NOT_ALNUM_SPACE.sub(" ", rest).strip()
    rest = _SPACES.sub(" ", rest)
    if rest:
        if rest in _ROMAN:
            addition = _ROMAN[rest]
        elif rest in ADDITION_WORDS:
            addition = ADDITION_WORDS[rest]
        else:
            addition = rest.replace(" ", "")
    return number, letter, addition


#: Words that may follow a house number as (part of) the toevoeging, besides :data:`ADDITION_WORDS`.
_ADDITION_EXTRA = frozenset({"begane", "grond", "verdieping", "etage", "beneden", "hoog", "huis", "bis", "ter"})


def _split_trailing_city(text: str) -> tuple[str, str]:
    """Split ``"32 b tilburg"`` into the house-number part and trailing place words (``("32 b", "tilburg")``).

    The number part runs as long as the words look like a toevoeging: digits, one or two letters, roman
    numerals or known toevoeging words; the first longer word starts the place name.

    >>> _split_trailing_city("142b rotterdam"), _split_trailing_city("12 begane grond"), _split_trailing_city("6-1")
    (('142b', 'rotterdam'), ('12 begane grond', ''), ('6-1', ''))
    """
    words = text.split(" ")
    for k, word in enumerate(words[1:], start=1):
        bare = word.strip("-/.,")
        if (not bare or len(bare) <= 2 or _NUMBERISH.fullmatch(bare) or bare in _ROMAN
                or bare in ADDITION_WORDS or bare in _ADDITION_EXTRA or not _THREE_LETTERS.search(bare)):
            continue
        return " ".join(words[:k]).strip(), " ".join(words[k:]).strip(" ,.")
    return text, ""


def parse_address(address: object = None, street: object = None, house_number: object = None,
                  postcode: object = None, city: object = None) -> Address:
    """Parse an address given as one string, as separate fields, or both (fields win when given).

    >>> a = parse_address("Kerkstraat 12a, 1234 AB Amsterdam")
    >>> (a.street, a.house_number, a.house_letter, a.postcode, a.city)
    ('kerkstraat', 12, 'a', '1234AB', 'amsterdam')
    >>> parse_address("1234AB 7-II").canonical()
    '7-2, 1234AB'
    >>> parse_address(street="Stationsln", house_number="3 bis", city="R'dam").canonical()
    'stationslaan 3-bis, rotterdam'
    """
    try:
        return _parse(address, street, house_number, postcode, city)
    except Exception:  # pragma: no cover - defensive
        return Address()


#: Two-letter toevoegingen that are also valid postcode letters (hs = huis, bg = begane grond, ...).
_TWO_LETTER_ADDITIONS = frozenset({"hs", "bg", "hg", "rd", "zw", "bv", "bs"})


def _is_number_with_addition(text: str, pm: re.Match) -> bool:
    """Does a postcode-shaped match ("1000 hs") read better as a house number with a toevoeging?

    Only when a street comes right before it (no comma, no other number), nothing with a digit follows, and
    the letters are a common toevoeging.

    >>> _is_number_with_addition("kerkstraat 1000 hs", _POSTCODE_IN.search("kerkstraat 1000 hs"))
    True
    >>> _is_number_with_addition("kerkstraat, 1000 hs amsterdam", _POSTCODE_IN.search("kerkstraat, 1000 hs amsterdam"))
    False
    >>> _is_number_with_addition("kerkstraat 12 1000 hs", _POSTCODE_IN.search("kerkstraat 12 1000 hs"))
    False
    """
    before, after = text[: pm.start()], text[pm.end():]
    return (pm.group(2) in _TWO_LETTER_ADDITIONS and bool(before.strip()) and "," not in before
            and not _DIGIT.search(before) and not _DIGIT.search(after))


def _parse(address: object, street: object, house_number: object, postcode: object, city: object) -> Address:
    s_street, s_num, s_letter, s_add, s_pc, s_city = "", None, "", "", "", ""
    text = _fold(address)
    if text:
        pm = _POSTCODE_IN.search(text)
        if pm and _is_number_with_addition(text, pm):
            pm = None  # "Kerkstraat 1000 hs": house number 1000, toevoeging "hs" (huis), not postcode 1000HS
        if pm:
            s_pc = normalise_postcode(pm.group(1) + pm.group(2)) or ""
            before, after = text[: pm.start()].strip(" ,"), text[pm.end():].strip(" ,.")
            if before or not _DIGIT.search(after):
                s_city, text = after, before
            else:  # "1234AB 7-II": the number follows the postcode
                text = after
        parts = [p.strip() for p in text.split(",")]
        if not pm and len(parts) > 1:
            s_city = parts[-1]
            parts = parts[:-1]
        text = " ".join(p for p in parts if p)
        nm = None
        for cand in _NUMBER_AT.finditer(text):
            if _ORDINAL.match(text, cand.end()):  # "2e Hugo de Grootstraat"
                continue
            nm = cand
            break
        if nm:
            s_street = text[: nm.start()]
            number_part, trailing = _split_trailing_city(text[nm.start():])
            if trailing and not s_city:  # "Stadhuisplein 32 Tilburg": the city is not a toevoeging
                s_city = trailing
            else:
                number_part = text[nm.start():]
            s_num, s_letter, s_add = parse_house_number(number_part)
        else:
            s_street = text
    f_num = parse_house_number(house_number) if _text(house_number).strip() else (None, "", "")
    pc = normalise_postcode(postcode) if _text(postcode).strip() else None
    number = f_num[0] if f_num[0] is not None else s_num
    letter, addition = (f_num[1], f_num[2]) if f_num[0] is not None else (s_letter, s_add)
    return Address(
        street=normalise_street(street) if _text(street).strip() else normalise_street(s_street),
        house_number=number,
        house_letter=letter,
        addition=addition,
        postcode=pc or s_pc,
        city=normalise_city(city) if _text(city).strip() else normalise_city(s_city),
    )


def normalise_address(value: object) -> str | None:
    """The canonical folded string of a one-string address; None when nothing usable.

    >>> normalise_address("Kerkstr. 12-II, 1234ab a'dam")
    'kerkstraat 12-2, 1234AB amsterdam'
    """
    text = parse_address(value).canonical()
    for _ in range(3):
        again = parse_address(text).canonical()
        if again == text:
            break
        text = again
    return text or None
