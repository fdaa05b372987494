"""Planted networks: groups of reports linked through shared true entities, one class per kind.

In:  the ``World`` (to create entities), a network id, the number of reports it gets, its own
     ``random.Random`` (so a network's content does not depend on the background around it).
Out: per call of ``next_report()``: a category and the ``Spec`` rows of the next report, in time order.

Kinds (``KINDS``):
- ``landlord``: a huisjesmelker with a few overcrowded addresses (many residents each), his phone, IBAN and
  often a vastgoed BV; overbewoning / woonfraude / illegale_onderverhuur / adresfraude.
- ``cannabis``: grow sites over several addresses, tenants, helpers with phones, vans; hennepteelt / drugs.
- ``laundering``: cash businesses (shisha lounge, nagelstudio, car wash, minimarkt, autohandel ...) sharing
  directors and one registration address, with IBANs and expensive cars; witwassen / malafide_onderneming.
- ``strawman``: katvangers registered at many addresses and holding many cars (and shell companies);
  adresfraude / uitkeringsfraude / malafide_onderneming.

Every report after the first shares at least one true entity with an earlier report of its network, so
each network is connected in the truth.
"""
from __future__ import annotations

import random

from .mentions import Spec
from .pools import Weighted
from .world import Person, World

KINDS: tuple[str, ...] = ("landlord", "cannabis", "laundering", "strawman")

#: Most mention rows a report may have.
MAX_MENTIONS = 6


def _eids(specs: list[Spec]) -> list[str]:
    out = []
    for s in specs:
        out.append(s.entity.eid)
        out.extend(c.eid for c in s.carried if c is not None)
    return out


def _choice(rng: random.Random, items: list):
    return items[int(rng.random() * len(items))]


def _role(rng: random.Random, *roles: str) -> str:
    return roles[int(rng.random() * len(roles))]


class Network:
    """Base class: holds the network's entities and enforces connectivity between its reports."""

    kind = ""
    categories = Weighted(["overig"], [1.0])

    def __init__(self, world: World, net_id: str, n_reports: int, rng: random.Random) -> None:
        self.w, self.net_id, self.n_reports, self.rng = world, net_id, n_reports, rng
        self.seen: set[str] = set()   # membership only, never iterated (iteration order is not stable)
        self.past: list[Spec] = []    # rows mentioned so far (without what they carried)
        self.used_persons: list[Person] = []
        self._used_person_ids: set[str] = set()
        self.build()

    # subclasses implement these three
    def build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def report(self, category: str) -> list[Spec]:  # pragma: no cover - abstract
        raise NotImplementedError

    def anchor(self) -> Spec:  # pragma: no cover - abstract
        """A row mentioning a central entity of the network (used to keep reports connected)."""
        raise NotImplementedError

    def next_report(self) -> tuple[str, list[Spec]]:
        """The category and mention rows of the next report of this network."""
        category = self.categories.pick(self.rng)
        specs = self.report(category)[:MAX_MENTIONS]
        if not specs:
            specs = [self.anchor()]
        eids = _eids(specs)
        if self.seen and not any(e in self.seen for e in eids):
            anchor = self.anchor()
            if not any(e in self.seen for e in _eids([anchor])):
                # the central entity has not been mentioned yet: mention again something that was
                anchor = self.past[int(self.rng.random() * len(self.past))]
            if len(specs) >= MAX_MENTIONS:
                specs[-1] = anchor
            else:
                specs.insert(int(self.rng.random() * (len(specs) + 1)), anchor)
            eids = _eids(specs)
        self.seen.update(eids)
        self.past.extend(Spec(s.etype, s.role, s.entity) for s in specs)
        for s in specs:
            if isinstance(s.entity, Person) and s.entity.eid not in self._used_person_ids:
                self._used_person_ids.add(s.entity.eid)
                self.used_persons.append(s.entity)
        return category, specs

    def pick_person(self, people: list[Person], reuse_p: float = 0.5) -> Person:
        """One of ``people``, preferring (with ``reuse_p``) one already mentioned in this network."""
        used = [p for p in people if p.eid in self._used_person_ids]
        if used and self.rng.random() < reuse_p:
            return _choice(self.rng, used)
        return _choice(self.rng, people)


class Landlord(Network):
    """A huisjesmelker owning a few overcrowded addresses."""

    kind = "landlord"
    categories = Weighted(["overbewoning", "woonfraude", "illegale_onderverhuur", "adresfraude",
                           "arbeidsuitbuiting"], [0.36, 0.2, 0.2, 0.19, 0.05])

    def build(self) -> None:
        w, r = self.w, self.rng
        town = w.pools.towns.pick(r)
        group = Weighted(["nl", "tr", "ma", "sr"], [0.5, 0.2, 0.2, 0.1]).pick(r)
        self.landlord = w.new_person(r, group=group, age=(38, 72))
        self.landlord.phone = w.new_phone(r, mobile_p=0.8)
        self.landlord.iban = w.new_iban(r)
        self.company = None
        if r.random() < 0.6:
            self.company = w.new_business(r, "vastgoed", owner=self.landlord, address=w.new_address(r, town))
        n_addr = max(2, min(8, 2 + self.n_reports // 5 + int(r.random() * 2)))
        street = w.pools.streets.pick(r)
        self.addresses = [w.new_address(r, town, street if r.random() < 0.4 else None) for _ in range(n_addr)]
        self.residents = {}
        for a in self.addresses:
            people: list[Person] = []
            for _ in range(3 + int(r.random() * 6)):
                fam = _choice(r, people) if people and r.random() < 0.25 else None
                p = w.new_person(r, group=fam.group if fam else w.pools.worker_groups.pick(r), age=(19, 58),
                                 surname=(fam.tv, fam.core) if fam else None)
                p.home = a
                if r.random() < 0.2:
                    p.phone = w.new_phone(r)
                people.append(p)
            self.residents[a.eid] = people
        self.visited: set[str] = set()
        self.next_new = 0

    def _landlord_spec(self) -> Spec:
        r, ll = self.rng, self.landlord
        u = r.random()
        if u < 0.45:
            carried = []
            if r.random() < 0.45:
                carried.append(ll.phone)
            if r.random() < 0.25:
                carried.append(ll.iban)
            if self.company is not None and r.random() < 0.3:
                return Spec("person", "eigenaar", ll, tuple(carried + [self.company]))
            return Spec("person", "verhuurder", ll, tuple(carried))
        if u < 0.65:
            return Spec("phone", "verhuurder", ll.phone)
        if u < 0.8:
            return Spec("bank_account", "huurbetaling", ll.iban)
        if self.company is not None:
            return Spec("business", "verhuurder", self.company,
                        (self.company.address,) if r.random() < 0.3 else ())
        return Spec("person", "verhuurder", ll, (ll.phone,))

    def anchor(self) -> Spec:
        return self._landlord_spec()

    def report(self, category: str) -> list[Spec]:
        r = self.rng
        if self.next_new < len(self.addresses) and (not self.visited or r.random() < 0.55):
            a = self.addresses[self.next_new]
            self.next_new += 1
        else:
            a = _choice(r, self.addresses[: max(1, self.next_new)])
        new_address = a.eid not in self.visited and bool(self.visited)
        self.visited.add(a.eid)
        specs: list[Spec] = []
        as_row = r.random() < 0.75
        if as_row:
            specs.append(Spec("address", _role(r, "adres", "adres", "pand", "woonadres"), a))
        people = self.residents[a.eid]
        k = 1 + int(r.random() * 3) + (1 if category == "overbewoning" and r.random() < 0.5 else 0)
        chosen: list[Person] = []
        for _ in range(k):
            p = self.pick_person(people, reuse_p=0.6)
            if p not in chosen:
                chosen.append(p)
        for i, p in enumerate(chosen):
            carried = []
            if (not as_row and i == 0) or r.random() < 0.35:
                carried.append(a)
            if p.phone is not None and r.random() < 0.3:
                carried.append(p.phone)
            specs.append(Spec("person", _role(r, "bewoner", "bewoner", "ingeschrevene", "huurder"), p,
                              tuple(carried)))
        if new_address or r.random() < 0.3:
            specs.insert(min(len(specs), 1 + int(r.random() * 2)), self._landlord_spec())
        return specs


class Cannabis(Network):
    """Cannabis grow sites over several addresses, linked by vans, helpers and phones."""

    kind = "cannabis"
    categories = Weighted(["hennepteelt", "drugs"], [0.7, 0.3])

    def build(self) -> None:
        w, r = self.w, self.rng
        town = w.pools.towns.pick(r)
        self.boss = w.new_person(r, group=Weighted(["nl", "ma", "tr"], [0.5, 0.3, 0.2]).pick(r), age=(26, 58),
                                 gender="M")
        self.boss.phone = w.new_phone(r)
        self.boss.vehicle = w.new_vehicle(r, modern=True)
        n_sites = max(2, min(6, 2 + self.n_reports // 5))
        self.sites = [w.new_address(r, town if r.random() < 0.7 else None) for _ in range(n_sites)]
        self.tenants = []
        for a in self.sites:
            t = w.new_person(r, age=(20, 65))
            t.home = a
            self.tenants.append(t)
        self.helpers = []
        for _ in range(1 + int(r.random() * 3)):
            h = w.new_person(r, group=Weighted(["nl", "ma", "tr", "pl"], [0.5, 0.25, 0.15, 0.1]).pick(r),
                             age=(19, 45), gender="M" if r.random() < 0.85 else "F")
            h.phone = w.new_phone(r)
            if r.random() < 0.4:
                h.home = w.new_address(r, town)
            self.helpers.append(h)
        self.vans = [w.new_vehicle(r) for _ in range(1 + int(r.random() * 3))]
        self.burners = [w.new_phone(r, mobile_p=1.0) for _ in range(1 + int(r.random() * 2))]
        self.next_site = 0

    def _link_spec(self) -> Spec:
        r = self.rng
        u = r.random()
        if u < 0.45:
            return Spec("vehicle", _role(r, "voertuig", "voertuig", "kenteken"), _choice(r, self.vans))
        if u < 0.75:
            h = self.pick_person(self.helpers, reuse_p=0.7)
            carried = [h.phone] if r.random() < 0.6 else []
            if h.home is not None and r.random() < 0.3:
                carried.append(h.home)
            return Spec("person", "betrokkene", h, tuple(carried))
        if u < 0.92:
            return Spec("phone", _role(r, "telefoon", "contact"), _choice(r, self.burners))
        return Spec("person", "betrokkene", self.boss, (self.boss.vehicle,) if r.random() < 0.6 else ())

    def anchor(self) -> Spec:
        return self._link_spec()

    def report(self, category: str) -> list[Spec]:
        r = self.rng
        if self.next_site < len(self.sites) and (self.next_site == 0 or r.random() < 0.5):
            i = self.next_site
            self.next_site += 1
            new_site = i > 0
        else:
            i = int(r.random() * max(1, self.next_site))
            new_site = False
        site, tenant = self.sites[i], self.tenants[i]
        specs: list[Spec] = []
        as_row = r.random() < 0.75
        if as_row:
            specs.append(Spec("address", _role(r, "pand", "adres", "adres"), site))
        if not as_row or r.random() < 0.45:
            specs.append(Spec("person", _role(r, "huurder", "bewoner", "betrokkene"), tenant,
                              (site,) if (not as_row or r.random() < 0.3) else ()))
        n_links = (1 if new_site else 0) + (1 if r.random() < 0.55 else 0) + (1 if r.random() < 0.2 else 0)
        for _ in range(n_links):
            specs.append(self._link_spec())
        return specs


class Laundering(Network):
    """A ring of cash businesses sharing directors and one registration address."""

    kind = "laundering"
    categories = Weighted(["witwassen", "malafide_onderneming"], [0.55, 0.45])
    SECTORS = ("shisha", "nagelstudio", "carwash", "minimarkt", "autohandel", "kapsalon", "belwinkel")

    def build(self) -> None:
        w, r = self.w, self.rng
        town = w.pools.towns.pick(r)
        self.shared = w.new_address(r, town)
        group = Weighted(["tr", "ma", "nl", "bg"], [0.35, 0.3, 0.25, 0.1]).pick(r)
        self.directors = []
        for _ in range(2 + int(r.random() * 3)):
            d = w.new_person(r, group=group if r.random() < 0.7 else None, age=(24, 64))
            if r.random() < 0.5:
                d.phone = w.new_phone(r)
            if r.random() < 0.5:
                d.home = w.new_address(r, town if r.random() < 0.6 else None)
            self.directors.append(d)
        sectors = list(self.SECTORS)
        r.shuffle(sectors)
        n_bus = max(3, min(6, 3 + self.n_reports // 6))
        self.businesses = []
        self.board = {}
        for k in range(n_bus):
            owner = _choice(r, self.directors)
            b = w.new_business(r, sectors[k % len(sectors)], owner=owner,
                               address=self.shared if r.random() < 0.5 else w.new_address(r, town))
            b.iban = w.new_iban(r)
            if r.random() < 0.3:
                b.phone = w.new_phone(r, mobile_p=0.4)
            board = [owner]
            other = _choice(r, self.directors)
            if other is not owner and r.random() < 0.6:
                board.append(other)
            self.board[b.eid] = board
            self.businesses.append(b)
        self.cars = [w.new_vehicle(r, modern=True) for _ in range(1 + int(r.random() * 3))]
        self.next_bus = 0

    def _business_spec(self, b, role: str = "onderneming") -> Spec:
        r = self.rng
        carried = []
        if r.random() < 0.5:
            carried.append(b.address)
        if r.random() < 0.25:
            carried.append(b.iban)
        if b.phone is not None and r.random() < 0.3:
            carried.append(b.phone)
        return Spec("business", role, b, tuple(carried))

    def _director_spec(self, b) -> Spec:
        r = self.rng
        d = self.pick_person(self.board[b.eid], reuse_p=0.5)
        carried = [b] if r.random() < 0.7 else []
        if d.home is not None and r.random() < 0.3:
            carried.append(d.home)
        if d.phone is not None and r.random() < 0.2:
            carried.append(d.phone)
        role = _role(r, "bestuurder", "bestuurder", "eigenaar") if carried and carried[0] is b else "betrokkene"
        return Spec("person", role, d, tuple(carried))

    def anchor(self) -> Spec:
        r = self.rng
        if r.random() < 0.5:
            return Spec("address", _role(r, "vestigingsadres", "adres"), self.shared)
        d = self.pick_person(self.directors, reuse_p=0.8)
        return Spec("person", "betrokkene", d, ())

    def report(self, category: str) -> list[Spec]:
        r = self.rng
        if self.next_bus < len(self.businesses) and (self.next_bus == 0 or r.random() < 0.5):
            b = self.businesses[self.next_bus]
            self.next_bus += 1
        else:
            b = self.businesses[int(r.random() * max(1, self.next_bus))]
        specs = [self._business_spec(b)]
        if r.random() < 0.55:
            specs.append(self._director_spec(b))
        if r.random() < 0.25:
            other = _choice(r, self.businesses)
            if other is not b:
                specs.append(self._business_spec(other, "gelieerde onderneming"))
        if r.random() < 0.25:
            specs.append(Spec("vehicle", _role(r, "voertuig", "kenteken"), _choice(r, self.cars)))
        if r.random() < 0.12:
            specs.append(Spec("bank_account", "rekening", b.iban))
        if r.random() < 0.2:
            specs.append(Spec("address", _role(r, "vestigingsadres", "adres"), self.shared))
        return specs


class Strawman(Network):
    """Katvangers registered at many addresses, holding many cars and shell companies."""

    kind = "strawman"
    categories = Weighted(["adresfraude", "uitkeringsfraude", "malafide_onderneming", "woonfraude"],
                          [0.4, 0.35, 0.15, 0.1])

    def build(self) -> None:
        w, r = self.w, self.rng
        n_k = 1 if r.random() < 0.7 else 2
        self.katvangers = []
        for _ in range(n_k):
            age = (19, 28) if r.random() < 0.6 else (58, 78)
            self.katvangers.append(w.new_person(r, age=age))
        n_addr = max(3, min(12, 3 + self.n_reports // 3))
        self.addresses = [w.new_address(r) for _ in range(n_addr)]
        n_cars = max(2, min(10, 2 + self.n_reports // 3))
        self.cars = [w.new_vehicle(r, modern=r.random() < 0.6) for _ in range(n_cars)]
        self.businesses = []
        if r.random() < 0.6:
            for _ in range(1 + int(r.random() * 3)):
                sector = _choice(r, ["bouw", "schoonmaak", "autohandel", "uitzendbureau"])
                self.businesses.append(w.new_business(r, sector, address=_choice(r, self.addresses)))
        self.handler = w.new_person(r, age=(30, 60), gender="M")
        self.handler.phone = w.new_phone(r)
        self.reg = 0  # index of the current registration address

    def anchor(self) -> Spec:
        k = self.pick_person(self.katvangers, reuse_p=0.9)
        return Spec("person", "betrokkene", k, ())

    def report(self, category: str) -> list[Spec]:
        r = self.rng
        if r.random() < 0.6 and self.reg < len(self.addresses) - 1:
            self.reg += 1
        addr = self.addresses[self.reg]
        specs: list[Spec] = []
        k = self.pick_person(self.katvangers, reuse_p=0.7)
        if r.random() < 0.88:
            carried = []
            if r.random() < 0.6:
                carried.append(addr)
            if r.random() < 0.2:
                carried.append(_choice(r, self.cars))
            specs.append(Spec("person", _role(r, "betrokkene", "ingeschrevene", "kentekenhouder"), k,
                              tuple(carried)))
            if not carried and r.random() < 0.5:
                specs.append(Spec("address", _role(r, "adres", "inschrijfadres"), addr))
        else:
            specs.append(Spec("address", _role(r, "adres", "inschrijfadres"), addr))
        for _ in range(int(r.random() * 2.6)):
            specs.append(Spec("vehicle", _role(r, "voertuig", "kenteken"), _choice(r, self.cars)))
        if self.businesses and (category == "malafide_onderneming" or r.random() < 0.15):
            b = _choice(r, self.businesses)
            if specs[0].entity is k and r.random() < 0.5:
                specs[0] = Spec("person", "bestuurder", k, specs[0].carried + (b,))
            else:
                specs.append(Spec("business", "onderneming", b, (b.address,) if r.random() < 0.5 else ()))
        if r.random() < 0.1:
            specs.append(Spec("person", "betrokkene", self.handler,
                              (self.handler.phone,) if r.random() < 0.7 else ()))
        return specs


NETWORK_CLASSES: dict[str, type[Network]] = {
    "landlord": Landlord, "cannabis": Cannabis, "laundering": Laundering, "strawman": Strawman,
}
