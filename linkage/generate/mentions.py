"""Render true entities as mention rows (the raw fields of ``model.MENTION_FIELDS``) plus their truth.

In:  a ``Spec`` (entity type, role, the entity, the entities its row also carries), a ``random.Random`` and
     a ``Quality`` (how complete the reporter writes).
Out: the row's value fields and truth rows ``(suffix, entity_id, entity_type)``: suffix ``""`` for the row
     itself and ``"~address"``, ``"~business"`` ... (``model.derived_mention_id``) for each carried entity
     whose fields are non-empty in the row, in ``model.ENTITY_TYPES`` order.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

from .. import model
from .noise import (
    DEFAULT_RATES,
    NoiseRates,
    abbreviate_street,
    format_bsn,
    format_date,
    format_email,
    format_house_number,
    format_iban,
    format_kvk,
    format_phone,
    format_plate,
    format_postcode,
    ij_to_y,
    initials,
    strip_diacritics,
    tussenvoegsel_variant,
    typo,
)
from .pools import TOWN_ALIASES
from .world import Address, Business, Person, Token


class Spec(NamedTuple):
    """One mention row to write: its entity type and role, the entity, and the entities it carries."""

    etype: str
    role: str
    entity: object
    carried: tuple = ()


@dataclass(frozen=True)
class Quality:
    """How complete a reporter writes: chance that a person mention has a BSN, a birth date; a business
    mention a KvK number."""

    bsn: float
    birth: float
    kvk: float


#: Quality per reporter type (medewerkers look things up; residents rarely know a BSN).
QUALITY: dict[str, Quality] = {
    "medewerker": Quality(bsn=0.5, birth=0.72, kvk=0.7),
    "partner": Quality(bsn=0.35, birth=0.6, kvk=0.6),
    "bewoner": Quality(bsn=0.08, birth=0.3, kvk=0.25),
    "anoniem": Quality(bsn=0.05, birth=0.25, kvk=0.2),
}

_LEGAL_VARIANTS = {
    "B.V.": ("B.V.", "BV", "bv", "B.V", "b.v."),
    "V.O.F.": ("V.O.F.", "VOF", "vof", "v.o.f."),
    "Holding B.V.": ("Holding B.V.", "Holding BV", "holding bv"),
}


def _name_noise(text: str, rng: random.Random, typo_p: float, strip: bool, rates: NoiseRates) -> str:
    if not text:
        return text
    if rng.random() < typo_p:
        text = typo(text, rng)
    if ("ij" in text or "IJ" in text or "Ij" in text) and rng.random() < rates.ij_y:
        text = ij_to_y(text)
    if strip:
        text = strip_diacritics(text)
    return text


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def render_person(p: Person, rng: random.Random, q: Quality, rates: NoiseRates = DEFAULT_RATES) -> dict[str, str]:
    """The person fields of one mention of ``p``: either ``name`` or ``first_name``/``last_name``, and
    sometimes ``birth_date`` and ``bsn``.

    >>> from datetime import date
    >>> p = Person("P1", "nl", "M", "Jan", "", "de", "Vries", "", "", date(1985, 3, 7), "111222333")
    >>> row = render_person(p, random.Random(1), QUALITY["medewerker"])
    >>> bool(row.get("name") or row.get("last_name"))
    True
    """
    # which surname this mention uses (double names: both, own, or partner's)
    tv, core = p.tv, p.core
    if p.pcore:
        u = rng.random()
        if u < 0.4:
            tv, core = p.ptv, f"{p.pcore}-{_join(p.tv, p.core)}"
        elif u < 0.5:
            core = f"{p.core}-{_join(p.ptv, p.pcore)}"
        elif u < 0.75:
            pass
        else:
            tv, core = p.ptv, p.pcore
    strip = not (p.first + core).isascii() and rng.random() < rates.diacritics
    core = _name_noise(core, rng, rates.name_typo, strip, rates)
    first = _name_noise(p.first, rng, rates.first_typo, strip, rates)
    if rng.random() < rates.upper:
        core = core.upper()
    if tv and rng.random() < rates.tv_variant:
        tv = tussenvoegsel_variant(tv, rng)
    given = first
    if rng.random() < rates.initials:
        second = p.second if rng.random() < 0.6 else ""
        given = initials(first, second, style=int(rng.random() * 4) if rng.random() < 0.4 else 0)
    out: dict[str, str] = {}
    if rng.random() < 0.45:
        u = rng.random()
        if u < 0.4:
            out["name"] = _join(given, tv, core)
        elif u < 0.6:
            init = given if given != first else initials(first)
            out["name"] = _join(init, tv, core)
        elif u < 0.72:
            init = given if given != first else initials(first)
            out["name"] = f"{core}, " + _join(init, tv)
        elif u < 0.84:
            out["name"] = f"{_join(tv, core)}, {given}"
        elif u < 0.92:
            out["name"] = f"{core}, " + _join(given, tv)
        elif u < 0.96 and p.second and given == first:
            out["name"] = _join(first, p.second, tv, core)
        else:
            out["name"] = _join(given, tv, core)
    else:
        u = rng.random()
        if u < 0.85 or not tv:
            out["first_name"], out["last_name"] = given, _join(tv, core)
        elif u < 0.93:
            out["first_name"], out["last_name"] = given, f"{core}, {tv}"
        else:
            out["first_name"], out["last_name"] = _join(given, tv), core
        if rng.random() < 0.04:
            out["first_name"] = ""
    if rng.random() < q.birth:
        out["birth_date"] = format_date(p.birth, rng, rates)
    if rng.random() < q.bsn:
        out["bsn"] = format_bsn(p.bsn, rng, rates)
    return out


def render_address(a: Address, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> dict[str, str]:
    """The address fields of one mention of ``a``: one string in ``address``, or split fields.

    Street and house number are always present.

    >>> from .pools import Town
    >>> a = Address("A1", "Kerkstraat", 12, "A", "", "1234AB", Town("Amsterdam", 1011, 1109))
    >>> row = render_address(a, random.Random(3))
    >>> "Kerk" in (row.get("address") or row.get("street"))
    True
    """
    street = a.street
    if rng.random() < rates.street_typo:
        street = typo(street, rng)
    if rng.random() < rates.street_abbrev:
        street = abbreviate_street(street, rng)
    hn = format_house_number(a.number, a.letter, a.toev, rng, rates)
    pc = "" if rng.random() < rates.postcode_missing else format_postcode(a.postcode, rng, rates)
    city = a.town.name
    aliases = TOWN_ALIASES.get(city)
    if aliases and rng.random() < rates.city_alias:
        city = aliases[int(rng.random() * len(aliases))]
    if rng.random() < rates.city_typo:
        city = typo(city, rng)
    if rng.random() < 0.08:
        city = city.upper()
    if rng.random() < rates.city_missing:
        city = ""
    if rng.random() < 0.4:
        u = rng.random()
        if u < 0.5:
            tail = _join(pc, city)
            text = f"{street} {hn}, {tail}" if tail else f"{street} {hn}"
        elif u < 0.72:
            text = _join(street, hn, pc, city)
        elif u < 0.87:
            text = f"{street} {hn}, {city}" if city else f"{street} {hn}"
        elif u < 0.97:
            text = _join(street, hn, pc)
        else:
            text = f"{street} {hn}"
        return {"address": text}
    return {"street": street, "house_number": hn, "postcode": pc, "city": city}


def render_business(b: Business, rng: random.Random, q: Quality, rates: NoiseRates = DEFAULT_RATES) -> dict[str, str]:
    """The business fields of one mention of ``b``: a trade or statutory name, sometimes a KvK number.

    >>> b = Business("B1", "Nagelstudio Lotus", "Nagelstudio Lotus B.V.", "B.V.", "12345678", "nagelstudio")
    >>> row = render_business(b, random.Random(2), QUALITY["partner"])
    >>> bool(row.get("business_name") or row.get("kvk"))
    True
    """
    u = rng.random()
    if u < 0.45:
        name = b.trade
    elif u < 0.8 and b.legal_form in _LEGAL_VARIANTS and b.statutory.endswith(b.legal_form):
        variants = _LEGAL_VARIANTS[b.legal_form]
        name = b.statutory[: -len(b.legal_form)] + variants[int(rng.random() * len(variants))]
    else:
        name = b.statutory
    if rng.random() < rates.business_typo:
        name = typo(name, rng)
    if rng.random() < 0.05:
        name = name.upper()
    out = {"business_name": name}
    if rng.random() < q.kvk:
        out["kvk"] = format_kvk(b.kvk, rng, rates)
        if rng.random() < 0.05:
            out["business_name"] = ""
    return out


def render_token(t: Token, rng: random.Random, rates: NoiseRates = DEFAULT_RATES) -> dict[str, str]:
    """The single field of a vehicle, phone, bank account or email mention.

    >>> render_token(Token("V1", "vehicle", "12-BDF-3"), random.Random(0))["plate"].upper().replace("-", "")
    '12BDF3'
    """
    if t.etype == "vehicle":
        return {"plate": format_plate(t.value, rng, rates)}
    if t.etype == "phone":
        return {"phone": format_phone(t.value, rng, rates)}
    if t.etype == "bank_account":
        return {"iban": format_iban(t.value, rng, rates)}
    return {"email": format_email(t.value, rng, rates)}


def render_entity(entity, rng: random.Random, q: Quality, rates: NoiseRates = DEFAULT_RATES) -> dict[str, str]:
    """The fields of one mention of any entity."""
    if isinstance(entity, Person):
        return render_person(entity, rng, q, rates)
    if isinstance(entity, Address):
        return render_address(entity, rng, rates)
    if isinstance(entity, Business):
        return render_business(entity, rng, q, rates)
    return render_token(entity, rng, rates)


def render_spec(spec: Spec, rng: random.Random, q: Quality,
                rates: NoiseRates = DEFAULT_RATES) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Render one mention row and its truth.

    Returns ``(fields, truth)``: ``fields`` maps value-field names to strings (absent = empty), ``truth``
    lists ``(suffix, entity_id, entity_type)`` with ``""`` for the row itself and ``"~<type>"`` for every
    carried entity whose fields ended up non-empty.
    """
    fields = render_entity(spec.entity, rng, q, rates)
    truth = [("", spec.entity.eid, spec.etype)]
    if spec.carried:
        by_type = {}
        for c in spec.carried:
            if c is None or c.etype == spec.etype or c.etype in by_type:
                continue
            by_type[c.etype] = c
            fields.update(render_entity(c, rng, q, rates))
        for etype in model.ENTITY_TYPES:
            c = by_type.get(etype)
            if c is not None and any(fields.get(f) for f in model.TYPE_FIELDS[etype]):
                truth.append(("~" + etype, c.eid, etype))
    return fields, truth
