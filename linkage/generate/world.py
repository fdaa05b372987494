"""The true world behind the synthetic meldingen: entities with ids and canonical values.

In:  the seed's ``Pools`` and identifier ``Allocators``.
Out: entity objects (``Person``, ``Address``, ``Business``, ``Token`` for vehicles, phones, bank accounts and
     emails), each with a stable true id (``P000123``, ``A000045``, ``B000007``, ``V..``, ``T..``, ``I..``,
     ``E..``), plus the hub addresses that many unrelated reports mention.

Canonical values are valid and unique where reality makes them unique (BSN, IBAN, KvK, kenteken, phone,
postcode + huisnummer + huisletter + toevoeging). Names are not unique: namesakes are made on purpose.
"""
from __future__ import annotations

import random
import zlib
from datetime import date

from .identifiers import POSTCODE_PAIRS, Allocators
from .noise import strip_diacritics
from .pools import BUSINESS_SECTORS, Pools, Town

#: The fixed "today" of every generated data set (never the real today: output must not drift).
REFERENCE_DATE = date(2026, 11, 1)

#: Id prefix per entity type.
ID_PREFIX: dict[str, str] = {
    "person": "P", "address": "A", "business": "B", "vehicle": "V", "phone": "T", "bank_account": "I",
    "email": "E",
}

_LETTERS = ("A", "A", "A", "B", "B", "C", "D")
_TOEVOEGINGEN = ("1", "2", "3", "4", "1", "2", "I", "II", "III", "hs", "bis", "bv", "H", "A", "B")


class Person:
    """A true person; ``ptv``/``pcore`` is the partner's surname some married people add (double name)."""

    etype = "person"
    __slots__ = ("eid", "group", "gender", "first", "second", "tv", "core", "ptv", "pcore", "birth", "bsn",
                 "home", "phone", "email", "iban", "vehicle")

    def __init__(self, eid, group, gender, first, second, tv, core, ptv, pcore, birth, bsn):
        self.eid, self.group, self.gender = eid, group, gender
        self.first, self.second, self.tv, self.core = first, second, tv, core
        self.ptv, self.pcore, self.birth, self.bsn = ptv, pcore, birth, bsn
        self.home = self.phone = self.email = self.iban = self.vehicle = None

    def full_name(self) -> str:
        """First name, tussenvoegsel and surname, as a register would print it."""
        return " ".join(x for x in (self.first, self.tv, self.core) if x)


class Address:
    """A true address (a BAG verblijfsobject): street, number, huisletter, toevoeging, postcode, town."""

    etype = "address"
    __slots__ = ("eid", "street", "number", "letter", "toev", "postcode", "town")

    def __init__(self, eid, street, number, letter, toev, postcode, town):
        self.eid, self.street, self.number, self.letter = eid, street, number, letter
        self.toev, self.postcode, self.town = toev, postcode, town

    def one_line(self) -> str:
        """``Kerkstraat 12A-2, 1234 AB Amsterdam``."""
        hn = f"{self.number}{self.letter}" + (f"-{self.toev}" if self.toev else "")
        return f"{self.street} {hn}, {self.postcode[:4]} {self.postcode[4:]} {self.town.name}"


class Business:
    """A true business: trade name, statutory name (with legal form), KvK number, sector, location."""

    etype = "business"
    __slots__ = ("eid", "trade", "statutory", "legal_form", "kvk", "sector", "address", "phone", "iban",
                 "email", "vehicle")

    def __init__(self, eid, trade, statutory, legal_form, kvk, sector):
        self.eid, self.trade, self.statutory, self.legal_form = eid, trade, statutory, legal_form
        self.kvk, self.sector = kvk, sector
        self.address = self.phone = self.iban = self.email = self.vehicle = None


class Token:
    """A true single-value entity: vehicle (kenteken), phone (E.164), bank account (IBAN) or email."""

    __slots__ = ("eid", "etype", "value")

    def __init__(self, eid, etype, value):
        self.eid, self.etype, self.value = eid, etype, value


class Hub:
    """A place many unrelated reports mention: a municipal office (one address) or a large flat (many units
    that share street, number and postcode and differ only in toevoeging)."""

    __slots__ = ("kind", "street", "number", "postcode", "town", "floors", "doors", "units", "office")

    def __init__(self, kind, street, number, postcode, town, floors=0, doors=0):
        self.kind, self.street, self.number, self.postcode, self.town = kind, street, number, postcode, town
        self.floors, self.doors = floors, doors
        self.units: dict[str, Address] = {}
        self.office: Address | None = None


class World:
    """Factory and registry of true entities for one generator run.

    >>> from .pools import build_pools
    >>> w = World(1, build_pools(1))
    >>> p = w.new_person(random.Random(1))
    >>> p.eid, len(p.bsn)
    ('P000001', 9)
    """

    def __init__(self, seed: int, pools: Pools) -> None:
        self.seed = seed
        self.pools = pools
        self.alloc = Allocators(random.Random(f"ids:{seed}"))
        self.counts: dict[str, int] = {t: 0 for t in ID_PREFIX}
        self._address_keys: set[str] = set()
        self._emails: set[str] = set()
        self.hubs: list[Hub] = []
        self._hub_cum: list[float] = []
        self._recent_named: list[Person] = []

    # -- ids -----------------------------------------------------------------------------------------
    def new_id(self, etype: str) -> str:
        """The next true id for ``etype`` (``P000001``, ``P000002`` ...)."""
        self.counts[etype] += 1
        return f"{ID_PREFIX[etype]}{self.counts[etype]:06d}"

    # -- persons -------------------------------------------------------------------------------------
    def new_person(self, rng: random.Random, group: str | None = None, gender: str | None = None,
                   age: tuple[int, int] = (18, 85), surname: tuple[str, str] | None = None,
                   namesake_p: float = 0.02) -> Person:
        """A fresh true person with a valid, unique BSN.

        With probability ``namesake_p`` the person copies first name and surname of a recently made person
        (a namesake: same name, different birth date and BSN).
        """
        pools = self.pools
        birth = date.fromordinal(REFERENCE_DATE.toordinal() - int((age[0] + rng.random() * (age[1] - age[0]))
                                                                  * 365.25))
        if self._recent_named and rng.random() < namesake_p:
            twin = self._recent_named[int(rng.random() * len(self._recent_named))]
            p = Person(self.new_id("person"), twin.group, twin.gender, twin.first, "", twin.tv, twin.core,
                       "", "", birth, self.alloc.bsn())
            return p
        if group is None:
            group = pools.groups.pick(rng)
        if gender is None:
            gender = "M" if rng.random() < 0.5 else "F"
        firsts = (pools.first_male if gender == "M" else pools.first_female)[group]
        first = firsts.pick(rng)
        second = firsts.pick(rng) if rng.random() < 0.45 else ""
        if second == first:
            second = ""
        tv, core = surname if surname is not None else pools.surnames[group].pick(rng)
        core = _gendered(core, gender, group)
        ptv = pcore = ""
        if gender == "F" and age[1] > 30 and rng.random() < 0.22:
            ptv, pcore = pools.surnames[group if rng.random() < 0.8 else "nl"].pick(rng)
        p = Person(self.new_id("person"), group, gender, first, second, tv, core, ptv, pcore, birth,
                   self.alloc.bsn())
        if len(self._recent_named) < 500:
            self._recent_named.append(p)
        elif rng.random() < 0.05:
            self._recent_named[int(rng.random() * 500)] = p
        return p

    # -- addresses -----------------------------------------------------------------------------------
    def postcode_for(self, town: Town, street: str, number: int) -> str:
        """The postcode of ``number`` in ``street``: stable per (town, street, block of 30 numbers)."""
        h = zlib.crc32(f"{self.seed}|{town.name}|{street}|{number // 30}".encode())
        digits = town.pc_low + h % (town.pc_high - town.pc_low + 1)
        return f"{digits}{POSTCODE_PAIRS[(h >> 8) % len(POSTCODE_PAIRS)]}"

    def new_address(self, rng: random.Random, town: Town | None = None, street: str | None = None) -> Address:
        """A fresh true address, unique on postcode + number + huisletter + toevoeging."""
        pools = self.pools
        town = town or pools.towns.pick(rng)
        street = street or pools.streets.pick(rng)
        for _ in range(50):
            number = 1 + min(int(rng.expovariate(1 / 40)), 400)
            letter = _LETTERS[int(rng.random() * len(_LETTERS))] if rng.random() < 0.1 else ""
            toev = _TOEVOEGINGEN[int(rng.random() * len(_TOEVOEGINGEN))] if rng.random() < 0.12 else ""
            postcode = self.postcode_for(town, street, number)
            key = f"{postcode}|{number}|{letter}|{toev}"
            if key not in self._address_keys:
                self._address_keys.add(key)
                return Address(self.new_id("address"), street, number, letter, toev, postcode, town)
            street = pools.streets.pick(rng)
        raise RuntimeError("address space exhausted")  # pragma: no cover - 50 misses in a row

    def _fixed_address(self, street: str, number: int, toev: str, postcode: str, town: Town) -> Address:
        key = f"{postcode}|{number}||{toev}"
        self._address_keys.add(key)
        return Address(self.new_id("address"), street, number, "", toev, postcode, town)

    def build_hubs(self, n_hubs: int, rng: random.Random) -> None:
        """Make ``n_hubs`` hub places: every fourth (starting with the first) an office, the rest flats."""
        offices = ("Stadhuisplein", "Raadhuisplein", "Stationsplein", "Markt")
        for i in range(n_hubs):
            town = self.pools.towns.pick(rng)
            if i % 4 == 0:
                street = offices[(i // 4) % len(offices)]
                number = 1 + int(rng.random() * 40)
                hub = Hub("office", street, number, self.postcode_for(town, street, number), town)
                hub.office = self._fixed_address(street, number, "", hub.postcode, town)
            else:
                street = self.pools.streets.pick(rng)
                number = 100 + int(rng.random() * 1100)
                hub = Hub("flat", street, number, self.postcode_for(town, street, number), town,
                          floors=4 + int(rng.random() * 10), doors=6 + int(rng.random() * 14))
            self.hubs.append(hub)
        weights = [2.0 if h.kind == "office" else 1.0 for h in self.hubs]
        total, acc = sum(weights), 0.0
        self._hub_cum = []
        for w in weights:
            acc += w / total
            self._hub_cum.append(acc)

    def hub_address(self, rng: random.Random) -> Address:
        """An address at a hub: the office itself, or one unit of a flat (units are distinct entities)."""
        u = rng.random()
        hub = self.hubs[-1]
        for i, c in enumerate(self._hub_cum):
            if u < c:
                hub = self.hubs[i]
                break
        if hub.office is not None:
            return hub.office
        toev = f"{1 + int(rng.random() * hub.floors)}{1 + int(rng.random() * hub.doors):02d}"
        unit = hub.units.get(toev)
        if unit is None:
            key = f"{hub.postcode}|{hub.number}||{toev}"
            if key in self._address_keys:  # pragma: no cover - a flat never collides with itself
                return self.new_address(rng, hub.town, hub.street)
            unit = self._fixed_address(hub.street, hub.number, toev, hub.postcode, hub.town)
            hub.units[toev] = unit
        return unit

    # -- businesses ----------------------------------------------------------------------------------
    def new_business(self, rng: random.Random, sector: str, owner: Person | None = None,
                     address: Address | None = None) -> Business:
        """A fresh true business of ``sector`` (see ``pools.BUSINESS_SECTORS``) with a unique KvK number."""
        templates, words = BUSINESS_SECTORS[sector]
        surname = owner.core if owner is not None else self.pools.surnames["nl"].pick(rng)[1]
        tmpl = templates[int(rng.random() * len(templates))]
        trade = tmpl.format(x=words[int(rng.random() * len(words))], s=surname).strip()
        legal = self.pools.legal_forms.pick(rng)
        if legal == "Stichting":
            statutory = f"Stichting {trade}"
        elif legal == "Eenmanszaak":
            statutory = trade
        elif legal == "Holding B.V.":
            statutory = f"{surname} Holding B.V."
        else:
            statutory = f"{trade} {legal}"
        b = Business(self.new_id("business"), trade, statutory, legal, self.alloc.kvk(), sector)
        b.address = address
        return b

    # -- single-value entities -----------------------------------------------------------------------
    def new_vehicle(self, rng: random.Random, modern: bool = False) -> Token:
        """A fresh vehicle with a unique kenteken (``modern`` restricts to recent sidecodes)."""
        return Token(self.new_id("vehicle"), "vehicle", self.alloc.plate(modern))

    def new_phone(self, rng: random.Random, mobile_p: float = 0.88) -> Token:
        """A fresh phone number (mobile with probability ``mobile_p``)."""
        value = self.alloc.mobile() if rng.random() < mobile_p else self.alloc.landline()
        return Token(self.new_id("phone"), "phone", value)

    def new_iban(self, rng: random.Random) -> Token:
        """A fresh bank account (IBAN)."""
        return Token(self.new_id("bank_account"), "bank_account", self.alloc.iban())

    def new_email(self, rng: random.Random, person: Person | None = None, business: Business | None = None) -> Token:
        """A fresh, unique email address built from the person's or business's name."""
        domain = self.pools.email_domains.pick(rng)
        if person is not None:
            first = _ascii_token(person.first)
            last = _ascii_token(person.tv + person.core)
            u = rng.random()
            if u < 0.4:
                local = f"{first}.{last}"
            elif u < 0.6:
                local = f"{first[:1]}{last}"
            elif u < 0.8:
                local = f"{first}{last}{person.birth.year % 100:02d}"
            else:
                local = f"{last}.{first}"
        else:
            name = business.trade if business is not None else "info"
            local, domain = "info", _ascii_token(name)[:20] + ".nl"
        email = f"{local}@{domain}"
        while email in self._emails:
            email = f"{local}{int(rng.random() * 1000)}@{domain}"
        self._emails.add(email)
        return Token(self.new_id("email"), "email", email)


def _ascii_token(text: str) -> str:
    return "".join(ch for ch in strip_diacritics(text).lower() if ch.isalnum())


def _gendered(core: str, gender: str, group: str) -> str:
    """Polish and Bulgarian surnames take a female form (Kowalski -> Kowalska, Ivanov -> Ivanova)."""
    if gender != "F":
        return core
    if group == "pl" and core.endswith("ski"):
        return core[:-1] + "a"
    if group == "pl" and core.endswith("cki"):
        return core[:-1] + "a"
    if group == "bg" and (core.endswith("ov") or core.endswith("ev")):
        return core + "a"
    return core
