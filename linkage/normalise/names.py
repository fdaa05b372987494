"""Dutch person names to a comparable form: given names, initials, tussenvoegsel and surname split apart.

In:  a full name as written (``Jan de Vries``, ``J.P. de Vries``, ``Vries, J. de``, ``de Vries, Jan``,
     ``Jansen-de Vries``), or separate first/last name fields.
Out: :func:`parse_name` gives a :class:`PersonName` (folded, lower case: diacritics dropped, ``ij`` written
     as ``y`` so that ``IJsbrand`` and ``Ysbrand`` meet); :func:`normalise_name` gives one canonical string
     (``jan de vries``) that parses back to itself. Nothing here raises; unusable input gives empty parts.

Sorting and matching use the surname *without* the tussenvoegsel (``vries``); the tussenvoegsel is kept
next to it for display. Double names keep their parts (``jansen-de vries`` -> parts ``jansen``, ``vries``)
so that a person who uses only one part can still be matched.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

#: Words that make up tussenvoegsels (``van der``, ``in 't`` ...). A name token in this set that stands
#: before the surname belongs to the tussenvoegsel.
TUSSENVOEGSEL_WORDS: frozenset[str] = frozenset({
    "van", "de", "der", "den", "het", "ten", "ter", "te", "t", "in", "op", "uit", "aan", "bij", "onder",
    "over", "voor", "la", "le", "du", "da", "di", "del", "della", "dos", "das", "von", "vander", "vd",
    "el", "al",
})

_SPECIAL = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
                          "ı": "i", "’": "'", "‘": "'", "`": "'", "´": "'"})
_NOT_NAME = re.compile(r"[^a-z'\-., ]+")
_SPACES = re.compile(r"\s+")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    try:
        return str(value)
    except Exception:  # pragma: no cover - exotic objects
        return ""


def fold(value: object) -> str:
    """Lower case, diacritics dropped, ``ij`` as ``y``, only letters, spaces, hyphens and apostrophes kept.

    >>> fold("IJsbrand Zoë  Müller")
    'ysbrand zoe muller'
    >>> fold(None)
    ''
    """
    return _fold_text(_text(value))


@lru_cache(maxsize=1 << 18)
def _fold_text(value: str) -> str:
    text = unicodedata.normalize("NFKD", value.lower().translate(_SPECIAL))
    if not text.isascii():
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("ĳ", "y").replace("ij", "y")
    text = _NOT_NAME.sub(" ", text).replace(".", " ").replace(",", " ")
    return _SPACES.sub(" ", text).strip()


@dataclass(frozen=True)
class PersonName:
    """A parsed person name; every part folded (see :func:`fold`), empty when unknown.

    ``given`` holds the written-out given names (``("jan", "willem")``), ``initials`` one letter per given
    name (also when only initials were written), ``tussenvoegsel`` e.g. ``"van der"``, ``surname`` the
    surname without tussenvoegsels (double names joined by ``-``: ``"jansen-vries"``), ``surname_parts``
    the parts of a double name, ``surname_full`` the surname as written with its tussenvoegsels.
    """

    given: tuple[str, ...] = ()
    initials: str = ""
    tussenvoegsel: str = ""
    surname: str = ""
    surname_parts: tuple[str, ...] = ()
    surname_full: str = ""

    @property
    def first_name(self) -> str:
        """The first written-out given name, or ''."""
        return self.given[0] if self.given else ""

    @property
    def first_initial(self) -> str:
        """The first initial, or ''."""
        return self.initials[:1]

    def canonical(self) -> str:
        """Given names (or single-letter initials), then the surname with its tussenvoegsels.

        >>> parse_name("Vries, J.P. de").canonical()
        'j p de vries'
        """
        front = list(self.given) if self.given else list(self.initials)
        return " ".join(front + ([self.surname_full] if self.surname_full else [])).strip()


def _is_tussen(token: str) -> bool:
    return token.strip("'") in TUSSENVOEGSEL_WORDS or token == "'t"


def _split_surname(words: list[str] | tuple[str, ...]) -> tuple[str, str, tuple[str, ...], str]:
    """(tussenvoegsel, core surname, parts, full surname) from the surname words (cached per word tuple)."""
    return _split_surname_cached(tuple(words))


@lru_cache(maxsize=1 << 17)
def _split_surname_cached(words: tuple[str, ...]) -> tuple[str, str, tuple[str, ...], str]:
    full = " ".join(words)
    full = re.sub(r"\s*-\s*", "-", full).strip("- ")
    if not full:
        return "", "", (), ""
    tussen_words: list[str] = []
    parts: list[str] = []
    for k, piece in enumerate(p for p in full.split("-") if p.strip()):
        toks = piece.split()
        lead: list[str] = []
        while len(toks) > 1 and _is_tussen(toks[0]):
            lead.append(toks.pop(0))
        if k == 0:
            tussen_words = lead
        core = "".join(t.strip("'") for t in toks)
        if core:
            parts.append(core)
    return " ".join(tussen_words), "-".join(parts), tuple(parts), full


def _given_tokens(tokens: list[str] | tuple[str, ...], raw_tokens: list[str] | tuple[str, ...]
                  ) -> tuple[tuple[str, ...], str]:
    """Written-out given names and initials from given-name tokens (raw tokens tell initials apart)."""
    return _given_tokens_cached(tuple(tokens), tuple(raw_tokens))


@lru_cache(maxsize=1 << 17)
def _given_tokens_cached(tokens: tuple[str, ...], raw_tokens: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    given: list[str] = []
    initials = ""
    for tok, raw in zip(tokens, raw_tokens):
        raw_letters = re.sub(r"[^A-Za-z]", "", unicodedata.normalize("NFKD", raw))
        dotted = "." in raw
        pieces = [fold(p).replace(" ", "") for p in re.split(r"[\s.]+", raw)] if dotted else [tok]
        pieces = [p for p in pieces if p]
        # "J.P.", "J", "JP" (all capitals, no vowels-only words), "Th." count as initials.
        as_initials = (
            (dotted and all(len(p.replace("-", "")) <= 2 for p in pieces))
            or len(tok.replace("-", "")) == 1
            or (raw_letters.isupper() and 2 <= len(raw_letters) <= 3 and not re.search(r"[AEIOUY]", raw_letters))
        )
        if as_initials:
            for p in pieces:
                if p == "y" or (p.startswith("y") and raw.upper().startswith("IJ")):
                    initials += "y"
                elif len(p) == 2 and not dotted:
                    initials += p
                else:
                    initials += p[:1]
        else:
            name = tok.strip("-'")
            if name:
                given.append(name)
                initials += "".join(part[:1] for part in name.split("-") if part)
    return tuple(given), initials


def parse_name(full: object = None, first: object = None, last: object = None) -> PersonName:
    """Parse a person name written in any of the usual Dutch ways.

    Parameters
    ----------
    full:
        The whole name (``Jan de Vries``, ``Vries, J. de``); used when ``first``/``last`` are empty.
    first, last:
        Separate given names and surname (the surname may carry its tussenvoegsel: ``de Vries``, or
        ``Vries, de``).

    Returns
    -------
    PersonName
        Folded parts; all empty when nothing usable was given. Never raises.

    >>> p = parse_name("Vries, J. de")
    >>> p.initials, p.tussenvoegsel, p.surname
    ('j', 'de', 'vries')
    >>> parse_name("Jan-Willem van der Berg").given
    ('jan-willem',)
    >>> parse_name("Jansen-de Vries").surname_parts
    ('jansen', 'vries')
    >>> parse_name(first="IJsbrand", last="de Jong").first_name
    'ysbrand'
    """
    try:
        return _parse(full, first, last)
    except Exception:  # pragma: no cover - defensive: a normaliser never raises
        return PersonName()


def _tokens(text: str) -> tuple[list[str], list[str]]:
    """Folded tokens and the raw tokens they came from (same length; fresh lists, cached per text)."""
    out, out_raw = _tokens_cached(text)
    return list(out), list(out_raw)


@lru_cache(maxsize=1 << 17)
def _tokens_cached(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    raw = [t for t in re.split(r"\s+", re.sub(r"\s*-\s*", "-", text.replace(",", " ").strip())) if t]
    out_raw, out = [], []
    for r in raw:
        f = fold(r).replace(" ", "")
        if f.strip("-'"):
            out_raw.append(r)
            out.append(f)
    return tuple(out), tuple(out_raw)


@lru_cache(maxsize=1 << 16)
def _first_field(first_t: str) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """(given names, initials, tussenvoegsel words moved to the surname) of a first-name field."""
    g_tok, g_raw = _tokens(first_t)
    # trailing tussenvoegsel words in the first-name field ("Jan de") belong to the surname
    moved: list[str] = []
    while g_tok and _is_tussen(g_tok[-1]) and len(g_tok) > 1:
        moved.insert(0, g_tok.pop())
        g_raw.pop()
    given, initials = _given_tokens(g_tok, g_raw)
    return given, initials, tuple(moved)


@lru_cache(maxsize=1 << 16)
def _last_field(last_t: str) -> tuple[str, ...]:
    """Folded surname tokens of a last-name field (``Vries, de`` read as ``de Vries``)."""
    if "," in last_t:  # "Vries, de"
        core, _, rest = last_t.partition(",")
        last_t = f"{rest.strip()} {core.strip()}".strip()
    return _tokens_cached(last_t)[0]


def given_field(first: object) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
    """A first-name field as :func:`parse_name` reads it: ``(given names, initials, tussenvoegsel words that
    belong to the surname)`` ("Jan de" -> ``(("jan",), "j", ("de",))``). Cached per value; raises what the
    parsing raises (:func:`parse_name` turns that into an empty name).

    >>> given_field("Jan de")
    (('jan',), 'j', ('de',))
    """
    return _first_field(_text(first).strip())


def surname_field(last: object, moved: tuple[str, ...] = ()) -> tuple[str, str, tuple[str, ...], str]:
    """A surname field as :func:`parse_name` reads it, after the words ``moved`` from the first-name field
    (:func:`given_field`): ``(tussenvoegsel, surname, surname parts, surname as written)``. Cached per value.
    With :func:`given_field` it gives ``parse_name(first=..., last=...)`` one field at a time, so a table is
    parsed once per distinct first name and once per distinct surname.

    >>> p = parse_name(first="Jan de", last="Vries-Smit")
    >>> given, initials, moved = given_field("Jan de")
    >>> (given, initials) + surname_field("Vries-Smit", moved) == (p.given, p.initials, p.tussenvoegsel,
    ...                                                           p.surname, p.surname_parts, p.surname_full)
    True
    """
    return _split_surname_cached(tuple(moved) + _last_field(_text(last).strip()))


def _parse(full: object, first: object, last: object) -> PersonName:
    first_t, last_t = _text(first).strip(), _text(last).strip()
    if first_t or last_t:
        given, initials, moved = _first_field(first_t)
        tussen, core, parts, sfull = _split_surname_cached(moved + _last_field(last_t))
        return PersonName(given, initials, tussen, core, parts, sfull)
    return _parse_full(_text(full).strip())


@lru_cache(maxsize=1 << 16)
def _parse_full(text: str) -> PersonName:
    if "," in text:
        left, _, right = text.partition(",")
        s_tok, _ = _tokens(left)
        g_tok, g_raw = _tokens(right)
        trailing: list[str] = []
        while g_tok and _is_tussen(g_tok[-1]):
            trailing.insert(0, g_tok.pop())
            g_raw.pop()
        if not s_tok and g_tok:  # ", Jan" -> nothing on the left
            s_tok = [g_tok.pop()]
            g_raw.pop()
        given, initials = _given_tokens(g_tok, g_raw)
        tussen, core, parts, sfull = _split_surname(trailing + s_tok)
        return PersonName(given, initials, tussen, core, parts, sfull)

    tok, raw = _tokens(text)
    if not tok:
        return PersonName()
    start = len(tok) - 1
    while start > 0:
        prev = tok[start - 1]
        tail = prev.rsplit("-", 1)[-1] if "-" in prev else None
        if _is_tussen(prev) or (tail is not None and _is_tussen(tail)):
            start -= 1
        else:
            break
    given, initials = _given_tokens(tok[:start], raw[:start])
    tussen, core, parts, sfull = _split_surname(tok[start:])
    return PersonName(given, initials, tussen, core, parts, sfull)


def normalise_name(value: object) -> str | None:
    """The canonical folded form of a full name (given names or initials, tussenvoegsel, surname).

    Idempotent: the result parses back to itself. None when there is no name.

    >>> normalise_name("Vries, Jan de")
    'jan de vries'
    >>> normalise_name("J.P. de Vries")
    'j p de vries'
    >>> normalise_name("  ") is None
    True
    """
    text = parse_name(value).canonical()
    for _ in range(3):  # reach the fixed point (parsing canonical text is stable after one step)
        again = parse_name(text).canonical()
        if again == text:
            break
        text = again
    return text or None


def surname_key(value: object) -> str:
    """The sort/match key of a surname: folded, without tussenvoegsels, parts joined by ``-``.

    >>> surname_key("van der Berg"), surname_key("Vries, de"), surname_key("Jansen - de Vries")
    ('berg', 'vries', 'jansen-vries')
    """
    return parse_name(last=value).surname
