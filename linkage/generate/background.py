"""Background reports (not part of any network), reporters, categories and descriptions.

In:  the ``World`` and one ``random.Random`` for the whole background stream.
Out: per report: category, ``Spec`` rows (mostly fresh entities; sometimes a hub address, a recurring person
     or a recurring address), reporter and the written category label and description.

Recurrence in the background is deliberate: a few persons and addresses come back in 2-3 unrelated
reports, and hub addresses (a municipal office used as briefadres, large flats whose units share street,
number and postcode) tie many unrelated reports together.
"""
from __future__ import annotations

import random

from .mentions import Spec
from .networks import MAX_MENTIONS
from .identifiers import Scramble
from .pools import DESCRIPTION_SUFFIXES, DESCRIPTIONS, UNKNOWN_CATEGORIES, UNKNOWN_DESCRIPTIONS, Weighted
from .world import Address, Person, World

#: Category mix of background reports.
BACKGROUND_CATEGORIES = Weighted(
    ["woonfraude", "adresfraude", "overbewoning", "illegale_onderverhuur", "hennepteelt", "drugs", "witwassen",
     "mensenhandel", "arbeidsuitbuiting", "prostitutie", "uitkeringsfraude", "malafide_onderneming", "overig"],
    [0.12, 0.13, 0.12, 0.1, 0.07, 0.1, 0.05, 0.03, 0.04, 0.03, 0.1, 0.05, 0.06],
)

_GROUP_OF = {
    "woonfraude": "housing", "adresfraude": "housing", "overbewoning": "housing",
    "illegale_onderverhuur": "housing", "hennepteelt": "drugs", "drugs": "drugs", "witwassen": "business",
    "malafide_onderneming": "business", "mensenhandel": "labour", "arbeidsuitbuiting": "labour",
    "prostitutie": "labour", "uitkeringsfraude": "benefit", "overig": "other",
}

#: Share of reports with an unknown category label, and with a variant spelling of a known one.
UNKNOWN_CATEGORY_P = 0.005
LABEL_VARIANT_P = 0.1

#: Share of anonymous reports; reporter types of known reporters.
ANONYMOUS_P = 0.2
REPORTER_TYPES = Weighted(["medewerker", "bewoner", "partner"], [0.45, 0.35, 0.2])

#: Recurrence in the background.
HUB_P = 0.06
RECUR_PERSON_P = 0.06
RECUR_ADDRESS_P = 0.03
MAX_RECURRENCE = 3
RECENT_POOL = 3000


def category_label(category: str, rng: random.Random) -> str:
    """The category as a reporter's system writes it: mostly canonical, sometimes a variant that a simple
    normaliser (lower case, strip, spaces and hyphens to underscores) maps back.

    >>> label = category_label("illegale_onderverhuur", random.Random(5))
    >>> label.strip().lower().replace(" ", "_").replace("-", "_")
    'illegale_onderverhuur'
    """
    if rng.random() >= LABEL_VARIANT_P:
        return category
    u = rng.random()
    if u < 0.3:
        return category.capitalize().replace("_", " ")
    if u < 0.5:
        return category.capitalize() + " "
    if u < 0.6:
        return category.upper()
    if u < 0.75:
        return category.replace("_", " ")
    if u < 0.9:
        return category.replace("_", "-").capitalize()
    return " " + category.replace("_", " ").title()


def description(category: str, rng: random.Random) -> str:
    """A short Dutch description fitting ``category`` (templates; no personal data)."""
    options = DESCRIPTIONS.get(category, UNKNOWN_DESCRIPTIONS)
    text = options[int(rng.random() * len(options))]
    if rng.random() < 0.3:
        text += DESCRIPTION_SUFFIXES[int(rng.random() * len(DESCRIPTION_SUFFIXES))]
    return text


class Reporters:
    """The reporters of one run: pseudonymous ids (``RPT-4821``), a type each, and a skewed activity (a few
    medewerkers file many reports)."""

    def __init__(self, n_reports: int, rng: random.Random) -> None:
        n = max(20, n_reports // 6)
        scramble = Scramble(max(9000, 10 * n), rng)
        self.ids = [f"RPT-{1000 + scramble(k)}" for k in range(n)]
        self.types = [REPORTER_TYPES.pick(rng) for _ in range(n)]
        self.activity = Weighted(range(n), [1.0 / (k + 10) ** 0.8 for k in range(n)])
        self.index = {rid: k for k, rid in enumerate(self.ids)}

    def draw(self, rng: random.Random) -> tuple[str, str]:
        """``(reporter_id, reporter_type)``; anonymous reports have an empty id and type ``anoniem``."""
        if rng.random() < ANONYMOUS_P:
            return "", "anoniem"
        k = self.activity.pick(rng)
        return self.ids[k], self.types[k]

    def type_of(self, reporter_id: str) -> str:
        """The type of a known reporter id (``anoniem`` for the empty id)."""
        return self.types[self.index[reporter_id]] if reporter_id else "anoniem"


class _Recent:
    """A bounded pool of recently mentioned entities that may recur (each at most ``MAX_RECURRENCE`` times)."""

    def __init__(self) -> None:
        self.items: list = []
        self.uses: list[int] = []

    def add(self, item, rng: random.Random) -> None:
        if len(self.items) < RECENT_POOL:
            self.items.append(item)
            self.uses.append(1)
        else:
            k = int(rng.random() * RECENT_POOL)
            self.items[k], self.uses[k] = item, 1

    def take(self, rng: random.Random):
        k = int(rng.random() * len(self.items))
        item = self.items[k]
        self.uses[k] += 1
        if self.uses[k] >= MAX_RECURRENCE:
            self.items[k], self.uses[k] = self.items[-1], self.uses[-1]
            self.items.pop()
            self.uses.pop()
        return item


class Background:
    """Generates the mention rows of background reports."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.w, self.rng = world, rng
        self.persons = _Recent()
        self.addresses = _Recent()

    def category(self) -> str:
        """A background category, or (rarely) an unknown label outside the vocabulary."""
        r = self.rng
        if r.random() < UNKNOWN_CATEGORY_P:
            return UNKNOWN_CATEGORIES[int(r.random() * len(UNKNOWN_CATEGORIES))]
        return BACKGROUND_CATEGORIES.pick(r)

    def address(self, hub_ok: bool = True) -> Address:
        """A hub address, a recurring address or (mostly) a fresh one."""
        r = self.rng
        u = r.random()
        if hub_ok and self.w.hubs and u < HUB_P:
            return self.w.hub_address(r)
        if self.addresses.items and u < HUB_P + RECUR_ADDRESS_P:
            return self.addresses.take(r)
        a = self.w.new_address(r)
        if r.random() < 0.3:
            self.addresses.add(a, r)
        return a

    def person(self, group: str | None = None, age=(18, 85), home: Address | None = None) -> Person:
        """A recurring person or (mostly) a fresh one living at ``home``."""
        r = self.rng
        if self.persons.items and r.random() < RECUR_PERSON_P:
            return self.persons.take(r)
        p = self.w.new_person(r, group=group, age=age)
        p.home = home
        if r.random() < 0.3:
            self.persons.add(p, r)
        return p

    def _person_spec(self, p: Person, role: str, carry_home_p: float, extra_p: float = 0.1) -> Spec:
        r = self.rng
        carried = []
        if p.home is not None and r.random() < carry_home_p:
            carried.append(p.home)
        if r.random() < extra_p:
            u = r.random()
            if u < 0.5:
                if p.phone is None:
                    p.phone = self.w.new_phone(r)
                carried.append(p.phone)
            elif u < 0.7:
                if p.email is None:
                    p.email = self.w.new_email(r, person=p)
                carried.append(p.email)
            elif u < 0.85:
                if p.iban is None:
                    p.iban = self.w.new_iban(r)
                carried.append(p.iban)
            else:
                if p.vehicle is None:
                    p.vehicle = self.w.new_vehicle(r)
                carried.append(p.vehicle)
        return Spec("person", role, p, tuple(carried))

    def _n(self, weights: tuple[float, ...]) -> int:
        u, acc = self.rng.random(), 0.0
        for k, w in enumerate(weights):
            acc += w
            if u < acc:
                return k
        return len(weights) - 1

    def specs(self, category: str) -> list[Spec]:
        """The mention rows of one background report of ``category``."""
        w, r = self.w, self.rng
        group = _GROUP_OF.get(category, "other")
        specs: list[Spec] = []
        if group == "housing":
            a = self.address()
            if r.random() < 0.85:
                specs.append(Spec("address", _pick(r, ("adres", "adres", "woonadres", "pand")), a))
            for _ in range(self._n((0.04, 0.26, 0.32, 0.22, 0.16))):
                p = self.person(home=a)
                specs.append(self._person_spec(p, _pick(r, ("bewoner", "huurder", "ingeschrevene", "betrokkene")),
                                               0.45 if specs else 1.0))
            if r.random() < 0.12:
                owner = w.new_person(r, age=(35, 75))
                if r.random() < 0.5:
                    b = w.new_business(r, "vastgoed", owner=owner)
                    specs.append(Spec("business", "verhuurder", b))
                else:
                    specs.append(self._person_spec(owner, "verhuurder", 0.0, 0.5))
            if r.random() < 0.06:
                specs.append(Spec("vehicle", "voertuig", w.new_vehicle(r)))
        elif group == "drugs":
            a = self.address()
            if r.random() < 0.85:
                specs.append(Spec("address", _pick(r, ("pand", "adres", "adres")), a))
            for _ in range(self._n((0.15, 0.45, 0.3, 0.1))):
                p = self.person(home=a if r.random() < 0.7 else None)
                specs.append(self._person_spec(p, _pick(r, ("bewoner", "betrokkene", "huurder")),
                                               0.4 if specs else 1.0, 0.2))
            for _ in range(self._n((0.45, 0.4, 0.15))):
                specs.append(Spec("vehicle", _pick(r, ("voertuig", "kenteken")), w.new_vehicle(r)))
            if r.random() < 0.15:
                specs.append(Spec("phone", "telefoon", w.new_phone(r)))
        elif group == "business":
            sector = _pick(r, ("shisha", "nagelstudio", "carwash", "minimarkt", "autohandel", "kapsalon",
                               "belwinkel", "horeca", "bouw", "schoonmaak"))
            loc = self.address(hub_ok=False)
            b = w.new_business(r, sector, address=loc)
            carried = [loc] if r.random() < 0.5 else []
            if r.random() < 0.2:
                b.iban = w.new_iban(r)
                carried.append(b.iban)
            specs.append(Spec("business", "onderneming", b, tuple(carried)))
            for _ in range(self._n((0.15, 0.55, 0.3))):
                d = self.person(age=(22, 70))
                if r.random() < 0.6:
                    specs.append(Spec("person", _pick(r, ("bestuurder", "eigenaar")), d, (b,)))
                else:
                    specs.append(self._person_spec(d, _pick(r, ("bestuurder", "betrokkene")), 0.3, 0.15))
            if r.random() < 0.15:
                specs.append(Spec("vehicle", "voertuig", w.new_vehicle(r, modern=True)))
            if r.random() < 0.1:
                specs.append(Spec("bank_account", "rekening", w.new_iban(r)))
            if r.random() < 0.2:
                specs.append(Spec("address", "vestigingsadres", loc))
        elif group == "labour":
            a = self.address()
            if r.random() < 0.7:
                specs.append(Spec("address", _pick(r, ("adres", "werkadres", "pand")), a))
            if r.random() < 0.45:
                sector = _pick(r, ("uitzendbureau", "schoonmaak", "bouw", "horeca", "nagelstudio"))
                specs.append(Spec("business", "werkgever", w.new_business(r, sector)))
            for _ in range(1 + self._n((0.45, 0.35, 0.2))):
                p = self.person(group=w.pools.worker_groups.pick(r), age=(18, 55), home=a)
                specs.append(self._person_spec(p, _pick(r, ("slachtoffer", "werknemer", "betrokkene")),
                                               0.35 if specs else 1.0, 0.15))
            if r.random() < 0.25:
                specs.append(Spec("phone", "telefoon", w.new_phone(r)))
            if r.random() < 0.2:
                specs.append(Spec("vehicle", "voertuig", w.new_vehicle(r)))
        elif group == "benefit":
            a = self.address()
            p = self.person(home=a)
            specs.append(self._person_spec(p, "betrokkene", 0.6, 0.15))
            if r.random() < 0.55:
                partner = self.person(home=a)
                specs.append(self._person_spec(partner, _pick(r, ("partner", "huisgenoot")), 0.3, 0.1))
            if r.random() < 0.6:
                specs.append(Spec("address", _pick(r, ("adres", "woonadres", "verblijfadres")), a))
            if r.random() < 0.15:
                specs.append(Spec("vehicle", "voertuig", w.new_vehicle(r)))
            if r.random() < 0.1:
                specs.append(Spec("bank_account", "rekening", w.new_iban(r)))
        else:
            for _ in range(1 + self._n((0.2, 0.4, 0.4))):
                u = r.random()
                if u < 0.45:
                    specs.append(self._person_spec(self.person(home=self.address()), "betrokkene", 0.4, 0.15))
                elif u < 0.8:
                    specs.append(Spec("address", "adres", self.address()))
                elif u < 0.9:
                    specs.append(Spec("vehicle", "voertuig", w.new_vehicle(r)))
                else:
                    specs.append(Spec("business", "onderneming", w.new_business(r, _pick(r, ("horeca", "bouw")))))
        if not specs:
            specs.append(Spec("address", "adres", self.address()))
        return specs[:MAX_MENTIONS]


def _pick(rng: random.Random, options: tuple):
    return options[int(rng.random() * len(options))]

