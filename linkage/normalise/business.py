"""Business names to a comparable form: legal-form words removed, folded, tokens kept in order.

In:  a business (trade or statutory) name as written (``Bakkerij de Boer B.V.``).
Out: :func:`normalise_business_name` gives the folded name without legal-form words (``bakkerij de boer``);
     :func:`business_key` the same without spaces; :func:`legal_form` the legal form found, if any.
Nothing here raises; a name made only of legal-form words keeps its first word (``Holding B.V.`` becomes
``holding``) rather than becoming empty.
"""
from __future__ import annotations

import math
import re
import unicodedata

#: Legal-form words and phrases that are noise for matching (folded, dots removed), longest first.
LEGAL_FORMS: tuple[str, ...] = (
    "besloten vennootschap", "naamloze vennootschap", "vennootschap onder firma", "commanditaire vennootschap",
    "cooperatieve vereniging", "eenmanszaak", "stichting", "vereniging", "holding", "beheer", "groep",
    "b v i o", "bv io", "bvio", "b v", "bv", "n v", "nv", "v o f", "vof", "c v", "cv", "u a", "ua", "ltd",
    "limited", "gmbh", "bvba", "sarl", "inc", "llc", "en zn", "en zonen", "zn",
)
_LEGAL_RES = [re.compile(r"(?:(?<=\s)|^)" + re.escape(f) + r"(?=\s|$)") for f in LEGAL_FORMS]
_SPECIAL = str.maketrans({"&": " en ", "+": " en ", "ß": "ss", "’": "'", "‘": "'", "`": "'", "´": "'"})


def _fold(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = unicodedata.normalize("NFKD", str(value).lower().translate(_SPECIAL))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"(?<=\b[a-z])\.(?=[a-z]\b)", " ", text)  # b.v. -> b v.
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def legal_form(value: object) -> str:
    """The first legal-form word found in the name (folded), or ''.

    >>> legal_form("Bakkerij de Boer B.V."), legal_form("Stichting Wonen")
    ('b v', 'stichting')
    """
    text = _fold(value)
    for form, rx in zip(LEGAL_FORMS, _LEGAL_RES):
        if rx.search(text):
            return form
    return ""


def normalise_business_name(value: object) -> str | None:
    """Folded name with legal-form words removed; None when empty. Idempotent.

    >>> normalise_business_name("Bakkerij de Boer B.V."), normalise_business_name("V.O.F. Snackbar 't Hoekje")
    ('bakkerij de boer', 'snackbar t hoekje')
    >>> normalise_business_name("Holding B.V.")
    'holding'
    """
    text = _fold(value)
    if not text:
        return None
    stripped = text
    for rx in _LEGAL_RES:
        stripped = rx.sub(" ", stripped)
    stripped = re.sub(r"\s+", " ", stripped).strip()
    return stripped or text.split()[0]


def business_key(value: object) -> str:
    """The name for exact matching: :func:`normalise_business_name` without spaces.

    >>> business_key("Bakker Ij B.V.") == business_key("bakkeryij")
    False
    >>> business_key("De Boer Bouw BV") == business_key("deboer bouw")
    True
    """
    return (normalise_business_name(value) or "").replace(" ", "")
