"""How a true value gets written down in a melding: format variants and errors.

In:  canonical values (names, dates, postcodes, identifiers) and a ``random.Random``.
Out: one written form of the value.

Two kinds of variation:
- *format variants* are drawn every time (the same value written another way: ``1234AB`` / ``1234 ab``,
  ``06-12345678`` / ``+31 6 1234 5678``); a normaliser should map them back to one form;
- *errors* are drawn with the probabilities in ``NoiseRates`` (typos, a swapped day and month, a dropped
  huisletter ...); they make resolution hard but stay moderate (each field ~0.1-0.2 per mention).

An error never turns one valid identifier into a different valid one: a single changed digit or two swapped
neighbouring digits always break the BSN elfproef and the IBAN mod-97 check.
"""
from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class NoiseRates:
    """Error probabilities per mention (format variants are not errors and have no rate here)."""

    name_typo: float = 0.07            # one-character edit in the surname core
    first_typo: float = 0.05           # ... in the first name
    initials: float = 0.18             # first name written as initials
    tv_variant: float = 0.12           # tussenvoegsel capitalised, abbreviated or dropped
    ij_y: float = 0.3                  # IJ written as Y, when the name has an IJ
    diacritics: float = 0.4            # diacritics dropped, when the name has any
    upper: float = 0.04                # surname in capitals
    date_swap: float = 0.06            # day and month swapped (only when both <= 12)
    date_typo: float = 0.02            # one digit of the birth date wrong
    bsn_typo: float = 0.03             # one digit wrong or two digits swapped
    bsn_zero_dropped: float = 0.5      # leading zero lost (Excel), when the BSN starts with 0
    street_typo: float = 0.05
    street_abbrev: float = 0.15        # Kerkstraat -> Kerkstr.
    letter_dropped: float = 0.08       # huisletter left out
    toev_dropped: float = 0.12         # toevoeging left out
    postcode_missing: float = 0.12
    postcode_typo: float = 0.02
    city_missing: float = 0.2
    city_typo: float = 0.03
    city_alias: float = 0.5            # Den Haag for 's-Gravenhage, when the town has an alias
    business_typo: float = 0.05
    ident_typo: float = 0.02           # plate, phone, IBAN, KvK, email


DEFAULT_RATES = NoiseRates()

#: Keyboard neighbours (qwerty) for substitution typos.
_KEYBOARD = {
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc", "g": "ftyhbv",
    "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop", "m": "njk", "n": "bhjm", "o": "iklp",
    "p": "ol", "q": "wa", "r": "edft", "s": "awedxz", "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase",
    "x": "zsdc", "y": "tghu", "z": "asx",
}

_SPECIAL_ASCII = {"ı": "i", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "đ": "d"}


def typo(text: str, rng: random.Random) -> str:
    """One character edit (keyboard substitution, deletion, doubling or neighbour swap) on a letter.

    Texts shorter than three letters come back unchanged.

    >>> typo("Jansen", random.Random(3)) != "Jansen"
    True
    """
    positions = [i for i, ch in enumerate(text) if ch.isalpha()]
    if len(positions) < 3:
        return text
    i = positions[int(rng.random() * len(positions))]
    ch = text[i]
    op = rng.random()
    if op < 0.4:
        near = _KEYBOARD.get(ch.lower())
        if not near:
            return text[:i] + text[i + 1:]
        new = near[int(rng.random() * len(near))]
        return text[:i] + (new.upper() if ch.isupper() else new) + text[i + 1:]
    if op < 0.65:
        return text[:i] + text[i + 1:]
    if op < 0.85:
        return text[:i] + ch + text[i:]
    j = i + 1 if i + 1 < len(text) and text[i + 1].isalpha() else i - 1
    if j < 0 or not text[j].isalpha() or text[j] == ch:
        return text[:i] + text[i + 1:]
    a, b = min(i, j), max(i, j)
    x, y = text[b], text[a]   # swap the letters, keep the case of each position
    x = x.upper() if text[a].isupper() else x.lower()
    y = y.upper() if text[b].isupper() else y.lower()
    return text[:a] + x + y + text[b + 1:]


def digit_typo(digits: str, rng: random.Random) -> str:
    """One digit replaced by another, or two different neighbouring digits swapped.

    >>> digit_typo("123456782", random.Random(1)) != "123456782"
    True
    """
    idx = [i for i, ch in enumerate(digits) if ch.isdigit()]
    if len(idx) < 2:
        return digits
    k = int(rng.random() * (len(idx) - 1))
    i, j = idx[k], idx[k + 1]
    if rng.random() < 0.3 and digits[i] != digits[j]:
        return digits[:i] + digits[j] + digits[i + 1:j] + digits[i] + digits[j + 1:]
    new = str((int(digits[i]) + 1 + int(rng.random() * 9)) % 10)
    return digits[:i] + new + digits[i + 1:]


def strip_diacritics(text: str) -> str:
    """Drop accents and map the few letters without a decomposition.

    >>> strip_diacritics("Ëlise Yılmaz-Wiśniewski")
    'Elise Yilmaz-Wisniewski'
    """
    if text.isascii():
        return text
    text = "".join(_SPECIAL_ASCII.get(ch, ch) for ch in text)
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def ij_to_y(text: str) -> str:
    """Write the Dutch IJ as Y (``IJzerman`` -> ``Yzerman``, ``Dijkstra`` -> ``Dykstra``).

    >>> ij_to_y("IJzerman"), ij_to_y("Dijkstra")
    ('Yzerman', 'Dykstra')
    """
    return text.replace("IJ", "Y").replace("Ij", "Y").replace("ij", "y")


def tussenvoegsel_variant(tv: str, rng: random.Random) -> str:
    """A variant spelling of a tussenvoegsel: capitalised, abbreviated, or dropped.

    >>> tussenvoegsel_variant("", random.Random(1))
    ''
    """
    if not tv:
        return tv
    u = rng.random()
    if u < 0.35:
        return tv.title()                       # Van Der
    if u < 0.5:
        return tv[0].upper() + tv[1:]           # Van der
    if u < 0.65 and " " in tv:
        parts = tv.split()
        return ".".join(p[0] for p in parts) + "."   # v.d.
    return ""                                   # dropped


def initials(*given: str, style: int = 0) -> str:
    """Initials of the given names; style 0 ``J.P.``, 1 ``JP``, 2 ``J P``, 3 ``J.P`` .

    IJ counts as one letter.

    >>> initials("Jan", "Pieter"), initials("IJsbrand", style=1), initials("Jan", "Pieter", style=2)
    ('J.P.', 'IJ', 'J P')
    """
    letters = [("IJ" if g[:2].upper() == "IJ" else g[:1].upper()) for g in given if g]
    if style == 1:
        return "".join(letters)
    if style == 2:
        return " ".join(letters)
    if style == 3:
        return ".".join(letters)
    return "".join(x + "." for x in letters)


def format_date(d: date, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """A birth date as written: ISO or Dutch day-first forms, sometimes with day and month swapped.

    >>> format_date(date(1985, 3, 7), random.Random(2)) in {"1985-03-07", "07-03-1985", "7-3-1985",
    ...     "07/03/1985", "19850307", "1985-07-03", "03-07-1985", "3-7-1985", "03/07/1985", "19850703"}
    True
    """
    y, m, dd = d.year, d.month, d.day
    if dd <= 12 and dd != m and rng.random() < rates.date_swap:
        m, dd = dd, m
    u = rng.random()
    if u < 0.5:
        out = f"{y:04d}-{m:02d}-{dd:02d}"
    elif u < 0.88:
        out = f"{dd:02d}-{m:02d}-{y:04d}"
    elif u < 0.93:
        out = f"{dd}-{m}-{y}"
    elif u < 0.97:
        out = f"{dd:02d}/{m:02d}/{y:04d}"
    else:
        out = f"{y:04d}{m:02d}{dd:02d}"
    if rng.random() < rates.date_typo:
        # a wrong digit in the year's last position or the day: a plausible but wrong date string
        out = digit_typo(out, rng)
    return out


def format_postcode(pc: str, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """A compact postcode (``1234AB``) as written: ``1234 AB``, ``1234AB``, ``1234 ab``, ``NL-1234AB``.

    >>> format_postcode("1234AB", random.Random(0)) in {"1234 AB", "1234AB", "1234 ab", "1234ab", "NL-1234AB"}
    True
    """
    digits, letters = pc[:4], pc[4:]
    if rng.random() < rates.postcode_typo:
        if rng.random() < 0.5:
            digits = digit_typo(digits, rng)
            if digits[0] == "0":
                digits = "1" + digits[1:]
        else:
            if letters[::-1] not in ("SA", "SD", "SS"):
                letters = letters[::-1]
    u = rng.random()
    if u < 0.48:
        return f"{digits} {letters}"
    if u < 0.83:
        return digits + letters
    if u < 0.91:
        return f"{digits} {letters.lower()}"
    if u < 0.96:
        return digits + letters.lower()
    return f"NL-{digits}{letters}"


def format_house_number(number: int, letter: str, toev: str, rng: random.Random,
                        rates: NoiseRates = DEFAULT_RATES) -> str:
    """A house number as written: ``12a``, ``12 A``, ``12-A``, ``12-2``, ``12 hs`` ...

    >>> format_house_number(12, "", "", random.Random(0))
    '12'
    """
    out = str(number)
    if letter and rng.random() >= rates.letter_dropped:
        u = rng.random()
        if u < 0.45:
            out += letter.lower()
        elif u < 0.7:
            out += letter.upper()
        elif u < 0.85:
            out += " " + letter.upper()
        else:
            out += "-" + letter.upper()
    if toev and rng.random() >= rates.toev_dropped:
        u = rng.random()
        if u < 0.5:
            out += "-" + toev
        elif u < 0.85:
            out += " " + toev
        else:
            out += " " + toev.upper() if not toev.isdigit() else "/" + toev
    return out


_ABBREVIATIONS = (
    ("straat", ("str.", "str.", "str")), ("Burgemeester ", ("Burg. ", "Burgem. ")), ("Prinses ", ("Pr. ",)),
    ("Koningin ", ("Kon. ",)), ("Sint ", ("St. ",)), ("plein", ("pl.",)),
)


def abbreviate_street(street: str, rng: random.Random) -> str:
    """An abbreviated street name (``Kerkstraat`` -> ``Kerkstr.``), or the name itself if none applies.

    >>> abbreviate_street("Kerkstraat", random.Random(0)) in {"Kerkstr.", "Kerkstr"}
    True
    """
    options = []
    for long, shorts in _ABBREVIATIONS:
        if long.endswith(" ") and long in street:
            options.append(street.replace(long, shorts[int(rng.random() * len(shorts))], 1))
        elif not long.endswith(" ") and street.endswith(long) and len(street) > len(long) + 2:
            options.append(street[: -len(long)] + shorts[int(rng.random() * len(shorts))])
    if not options:
        return street
    return options[0]


def format_phone(e164: str, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """A phone number (E.164) as written: ``06-12345678``, ``+31 6 1234 5678``, ``0031612345678``,
    ``010-1234567`` ...

    >>> format_phone("+31612345678", random.Random(1)).replace(" ", "").replace("-", "")[-8:]
    '12345678'
    """
    national = e164[3:]
    if rng.random() < rates.ident_typo:
        national = digit_typo(national, rng)
    if national.startswith("6"):
        sub = national[1:]
        u = rng.random()
        if u < 0.3:
            return f"06-{sub}"
        if u < 0.55:
            return f"06{sub}"
        if u < 0.7:
            return f"+31 6 {sub[:4]} {sub[4:]}"
        if u < 0.8:
            return f"+316{sub}"
        if u < 0.85:
            return f"00316{sub}"
        if u < 0.95:
            return f"06 {sub[:2]} {sub[2:4]} {sub[4:6]} {sub[6:]}"
        return f"06-{sub[:4]} {sub[4:]}"
    area, sub = national[:2], national[2:]
    u = rng.random()
    if u < 0.4:
        return f"0{area}-{sub}"
    if u < 0.6:
        return f"0{area}{sub}"
    if u < 0.8:
        return f"+31 {area} {sub[:3]} {sub[3:]}"
    if u < 0.9:
        return f"(0{area}) {sub}"
    return f"0031{area}{sub}"


def format_plate(plate: str, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """A licence plate as written: dashed, compact, lower case or with spaces.

    >>> format_plate("12-BDF-3", random.Random(0)).upper().replace("-", "").replace(" ", "")
    '12BDF3'
    """
    if rng.random() < rates.ident_typo:
        plate = typo(plate, rng) if rng.random() < 0.5 else digit_typo(plate, rng)
    u = rng.random()
    if u < 0.6:
        return plate
    if u < 0.85:
        return plate.replace("-", "")
    if u < 0.93:
        return plate.lower()
    return plate.replace("-", " ")


def format_iban(iban: str, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """An IBAN as written: compact, in groups of four, lower case.

    >>> format_iban("NL91ABNA0417164300", random.Random(5)).replace(" ", "").upper()
    'NL91ABNA0417164300'
    """
    if rng.random() < rates.ident_typo:
        iban = iban[:8] + digit_typo(iban[8:], rng)
    u = rng.random()
    if u < 0.5:
        return iban
    if u < 0.92:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban.lower()


def format_bsn(bsn: str, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """A BSN as written: nine digits, with dots or spaces, or with its leading zero lost.

    >>> format_bsn("111222333", random.Random(4)).replace(".", "").replace(" ", "")
    '111222333'
    """
    if rng.random() < rates.bsn_typo:
        bsn = digit_typo(bsn, rng)
    if bsn.startswith("0") and rng.random() < rates.bsn_zero_dropped:
        return bsn[1:]
    u = rng.random()
    if u < 0.88:
        return bsn
    if u < 0.94:
        return f"{bsn[:4]}.{bsn[4:6]}.{bsn[6:]}"
    return f"{bsn[:3]} {bsn[3:6]} {bsn[6:]}"


def format_kvk(kvk: str, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """A KvK number as written: eight digits, sometimes split ``1234 5678``.

    >>> format_kvk("12345678", random.Random(1)).replace(" ", "")
    '12345678'
    """
    if rng.random() < rates.ident_typo:
        kvk = digit_typo(kvk, rng)
    return kvk if rng.random() < 0.9 else f"{kvk[:4]} {kvk[4:]}"


def format_email(email: str, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> str:
    """An email address as written: mostly as is, sometimes capitalised, rarely with a typo.

    >>> format_email("jan.devries@gmail.com", random.Random(0)).lower()
    'jan.devries@gmail.com'
    """
    if rng.random() < rates.ident_typo:
        local, _, domain = email.partition("@")
        email = typo(local, rng) + "@" + domain
    u = rng.random()
    if u < 0.85:
        return email
    if u < 0.95:
        return email[:1].upper() + email[1:]
    return email.upper()
