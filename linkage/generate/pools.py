"""Value pools the generator samples from: names, streets, cities, business names, descriptions.

In:  a seed. Faker (``nl_NL``) is called only here, a few hundred times, to add seed-dependent streets and
     towns; everything else is sampled from these pools with ``random.Random``, which keeps generation fast.
Out: a frozen ``Pools`` object with weighted lists and cumulative weights ready for ``bisect``.

The population is built to make entity resolution honest: a few common surnames (de Jong, Jansen, de Vries,
...) carry a large share of persons, so many different true persons share a surname, and first names are
drawn from pools small enough that namesakes occur.
"""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from faker import Faker
from faker.providers.person.nl_NL import Provider as _FakerPerson

#: Tussenvoegsels recognised when splitting a faker surname, longest first.
TUSSENVOEGSELS: tuple[str, ...] = (
    "van der", "van den", "van de", "in 't", "in het", "van 't", "van", "de", "den", "der", "ten", "ter",
    "te", "'t", "op de", "uit de", "van het",
)

#: The most common Dutch surnames (tussenvoegsel, core), most frequent first.
NL_TOP_SURNAMES: tuple[tuple[str, str], ...] = (
    ("de", "Jong"), ("", "Jansen"), ("de", "Vries"), ("van den", "Berg"), ("van", "Dijk"), ("", "Bakker"),
    ("", "Janssen"), ("", "Visser"), ("", "Smit"), ("", "Meijer"), ("de", "Boer"), ("", "Mulder"),
    ("de", "Groot"), ("", "Bos"), ("", "Vos"), ("", "Peters"), ("", "Hendriks"), ("van", "Leeuwen"),
    ("", "Dekker"), ("", "Brouwer"), ("de", "Wit"), ("", "Dijkstra"), ("", "Smits"), ("de", "Graaf"),
    ("van der", "Meer"), ("van der", "Linden"), ("", "Kok"), ("", "Jacobs"), ("de", "Haan"),
    ("", "Vermeulen"), ("van den", "Heuvel"), ("van der", "Veen"), ("van den", "Broek"), ("de", "Bruijn"),
    ("de", "Bruin"), ("van der", "Heijden"), ("", "Schouten"), ("van", "Beek"), ("", "Willems"),
    ("van", "Vliet"), ("van de", "Ven"), ("", "Hoekstra"), ("", "Maas"), ("", "Verhoeven"), ("", "Koster"),
    ("van", "Dam"), ("van der", "Wal"), ("", "Prins"), ("", "Blom"), ("", "Huisman"), ("", "Peeters"),
    ("de", "Jonge"), ("", "Kuipers"), ("van", "Veen"), ("", "Post"), ("", "Kuiper"), ("", "Veenstra"),
    ("", "Kramer"), ("van den", "Brink"), ("", "Scholten"), ("van", "Wijk"), ("", "Postma"),
    ("", "Martens"), ("", "Vink"), ("de", "Ruiter"), ("", "Timmermans"), ("", "Groen"), ("", "Gerritsen"),
    ("", "Jonker"), ("van", "Loon"), ("", "Boer"), ("van der", "Velde"), ("", "Willemsen"), ("", "Smeets"),
    ("de", "Lange"), ("de", "Vos"), ("", "Bosch"), ("van", "Dongen"), ("", "Schipper"), ("de", "Koning"),
    ("van der", "Laan"), ("", "Koning"), ("van der", "Velden"), ("", "Driessen"), ("van", "Doorn"),
    ("", "Hermans"), ("", "Evers"), ("van den", "Bosch"), ("van der", "Meulen"), ("", "Hofman"),
    ("", "Bosman"), ("", "Wolters"), ("", "Sanders"), ("van der", "Horst"), ("", "Mertens"),
    ("", "IJzerman"), ("van", "IJzendoorn"), ("", "Kuijpers"), ("", "Wijnands"), ("van", "Rijn"),
)

#: Given names outside faker's (mostly baby-name) lists: the older generations.
NL_CLASSIC_MALE: tuple[str, ...] = (
    "Jan", "Piet", "Kees", "Henk", "Gerrit", "Willem", "Hendrik", "Johannes", "Cornelis", "Klaas", "Dirk",
    "Hans", "Peter", "Marcel", "Erik", "Rob", "Frank", "Paul", "Sjoerd", "IJsbrand", "René", "André",
    "Gerard", "Theo", "Wim", "Ruud", "Arie", "Hein", "Joost", "Maarten",
)
NL_CLASSIC_FEMALE: tuple[str, ...] = (
    "Maria", "Johanna", "Anna", "Cornelia", "Elisabeth", "Wilhelmina", "Hendrika", "Geertruida", "Ingrid",
    "Marian", "Petra", "Monique", "Sandra", "Linda", "Anja", "Karin", "Ellen", "Marieke", "Renée",
    "Hélène", "Inès", "Ëlise", "Annemiek", "Mirjam", "Wilma", "Astrid", "Marjolein", "Ilse", "Els", "Yvonne",
)

#: Name pools of the larger migrant communities: (male first names, female first names, surnames).
GROUP_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "ma": (
        ("Mohamed", "Mohammed", "Ahmed", "Youssef", "Yassine", "Bilal", "Hamza", "Ayoub", "Mustafa", "Karim",
         "Rachid", "Said", "Hicham", "Nordin", "Anouar", "Soufiane", "Ilias", "Adam", "Omar", "Abdelkader"),
        ("Fatima", "Khadija", "Samira", "Nadia", "Salma", "Imane", "Hafsa", "Yasmina", "Meryem", "Naima",
         "Loubna", "Soumaya", "Malika", "Zineb", "Hanane", "Ikram"),
        ("El Amrani", "Bouzid", "Benali", "El Idrissi", "Ouali", "Aziz", "Haddou", "El Ouardi", "Chaouch",
         "Bakkali", "Azzouz", "El Khattabi", "Boukhari", "Ait Said", "Ben Ali", "Amrani", "Tahiri", "Ziani",
         "El Mansouri", "Belhaj"),
    ),
    "tr": (
        ("Mehmet", "Mustafa", "Ahmet", "Ali", "Hüseyin", "Hasan", "Ibrahim", "Emre", "Murat", "Burak", "Can",
         "Yusuf", "Ömer", "Kemal", "Serkan", "Erkan"),
        ("Ayşe", "Fatma", "Emine", "Zeynep", "Elif", "Merve", "Esra", "Büşra", "Gül", "Hatice", "Özlem",
         "Derya", "Selin", "Çiğdem"),
        ("Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Yıldız", "Yıldırım", "Öztürk", "Aydın", "Özdemir",
         "Arslan", "Doğan", "Kılıç", "Aslan", "Çetin", "Kara", "Koç", "Kurt", "Özkan", "Şimşek"),
    ),
    "pl": (
        ("Piotr", "Krzysztof", "Andrzej", "Tomasz", "Paweł", "Marcin", "Michał", "Łukasz", "Grzegorz", "Jakub",
         "Kamil", "Mateusz", "Marek", "Adam", "Dariusz"),
        ("Anna", "Katarzyna", "Małgorzata", "Agnieszka", "Joanna", "Magdalena", "Monika", "Ewa", "Karolina",
         "Aleksandra", "Justyna", "Natalia"),
        ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski", "Zieliński",
         "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Jankowski", "Mazur", "Kwiatkowski", "Krawczyk",
         "Piotrowski", "Grabowski"),
    ),
    "sr": (
        ("Romano", "Errol", "Ricardo", "Glenn", "Roy", "Dennis", "Kenneth", "Edson", "Sharif", "Ravi", "Rajesh",
         "Sunil"),
        ("Shanti", "Priya", "Kavita", "Gina", "Sharon", "Natasha", "Chantal", "Melissa", "Rosita"),
        ("Ramdin", "Sewdien", "Biharie", "Kalloe", "Ramautar", "Jagesar", "Doekhie", "Lachman", "Mahabier",
         "Pinas", "Pengel", "Wijngaarde", "Zeefuik", "Kartodikromo", "Sadikin", "Amatsaleh"),
    ),
    "ro": (
        ("Ion", "Andrei", "Mihai", "Alexandru", "Constantin", "Gheorghe", "Florin", "Adrian", "Marius",
         "Cristian", "Vasile"),
        ("Maria", "Elena", "Ioana", "Andreea", "Mihaela", "Alina", "Cristina", "Gabriela"),
        ("Popescu", "Ionescu", "Popa", "Radu", "Dumitru", "Stan", "Stoica", "Gheorghe", "Matei", "Ciobanu",
         "Munteanu", "Rusu", "Lungu", "Tudor"),
    ),
    "bg": (
        ("Georgi", "Ivan", "Dimitar", "Nikolay", "Petar", "Hristo", "Stoyan", "Todor"),
        ("Maria", "Ivanka", "Elena", "Desislava", "Petya", "Silvia", "Yordanka"),
        ("Ivanov", "Georgiev", "Dimitrov", "Petrov", "Nikolov", "Hristov", "Stoyanov", "Todorov", "Iliev",
         "Angelov"),
    ),
}

#: Share of each origin group in the general population and among labour migrants.
GROUP_WEIGHTS: dict[str, float] = {"nl": 0.74, "ma": 0.06, "tr": 0.055, "sr": 0.045, "pl": 0.06, "ro": 0.02,
                                    "bg": 0.02}
MIGRANT_WORKER_WEIGHTS: dict[str, float] = {"pl": 0.45, "ro": 0.25, "bg": 0.2, "nl": 0.05, "tr": 0.05}

#: Common street names (many occur in many towns).
STREETS: tuple[str, ...] = (
    "Kerkstraat", "Dorpsstraat", "Schoolstraat", "Molenweg", "Molenstraat", "Stationsweg", "Stationsstraat",
    "Nieuwstraat", "Julianastraat", "Wilhelminastraat", "Beatrixstraat", "Oranjestraat", "Hoofdstraat",
    "Parallelweg", "Marktstraat", "Lindelaan", "Eikenlaan", "Prinses Irenestraat", "Prins Bernhardlaan",
    "Van Goghstraat", "Rembrandtlaan", "Spoorstraat", "Industrieweg", "Kastanjelaan", "Beukenlaan",
    "Populierenlaan", "Sportlaan", "Tulpstraat", "Rozenstraat", "Irisstraat", "Dahliastraat",
    "Burgemeester de Withstraat", "Burgemeester van Roijensingel", "Koningin Julianaweg", "Sint Jansstraat",
    "Van der Helststraat", "Ferdinand Bolstraat", "Jan Steenstraat", "Vondelstraat", "Bilderdijkstraat",
    "Middenweg", "Havenstraat", "Zuidplein", "Noordsingel", "Oostzeedijk", "Westblaak", "Bijlmerdreef",
    "Amstelveenseweg", "Kanaalstraat", "Groenstraat", "Veldweg", "Zandweg", "Heuvelstraat", "Nassaulaan",
    "Emmastraat", "Mauritsstraat", "Willemstraat", "Hendrikstraat", "Brugstraat", "Dijkstraat", "Achterweg",
    "Kromme Nieuwegracht", "Lange Nieuwstraat", "Korte Kerkstraat", "Ambachtsweg", "Handelsweg",
    "Edisonstraat", "Marconistraat", "Kamerlingh Onnesweg", "Pieter de Hoochweg", "Vlinderweg",
)

#: Real towns with their four-digit postcode range (lowest, highest) and a population weight.
TOWNS: tuple[tuple[str, int, int, float], ...] = (
    ("Amsterdam", 1011, 1109, 9.0), ("Rotterdam", 3011, 3089, 6.5), ("'s-Gravenhage", 2491, 2599, 5.5),
    ("Utrecht", 3511, 3585, 3.6), ("Eindhoven", 5611, 5658, 2.4), ("Groningen", 9711, 9747, 2.4),
    ("Tilburg", 5011, 5049, 2.2), ("Almere", 1311, 1364, 2.2), ("Breda", 4811, 4839, 1.9),
    ("Nijmegen", 6511, 6546, 1.8), ("Apeldoorn", 7311, 7339, 1.7), ("Arnhem", 6811, 6846, 1.6),
    ("Haarlem", 2011, 2037, 1.7), ("Enschede", 7511, 7548, 1.6), ("Zaandam", 1501, 1509, 1.5),
    ("'s-Hertogenbosch", 5211, 5249, 1.6), ("Amersfoort", 3811, 3830, 1.6), ("Zwolle", 8011, 8043, 1.3),
    ("Leiden", 2311, 2334, 1.3), ("Dordrecht", 3311, 3329, 1.2), ("Schiedam", 3111, 3125, 0.8),
    ("Vlaardingen", 3131, 3137, 0.7), ("Zoetermeer", 2711, 2729, 1.2), ("Maastricht", 6211, 6229, 1.2),
    ("Delft", 2611, 2629, 1.0), ("Heerlen", 6411, 6422, 0.9), ("Venlo", 5911, 5935, 0.9),
    ("Helmond", 5701, 5709, 0.9),
)

#: Other names people write for a town (the first element is the canonical name).
TOWN_ALIASES: dict[str, tuple[str, ...]] = {
    "'s-Gravenhage": ("Den Haag", "Den Haag", "'s Gravenhage", "Den-Haag"),
    "'s-Hertogenbosch": ("Den Bosch", "'s Hertogenbosch"),
    "Zaandam": ("Zaanstad",),
}

#: Business name templates per sector; ``{x}`` is a sector word, ``{s}`` a surname.
BUSINESS_SECTORS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "shisha": (("Shisha Lounge {x}", "{x} Lounge", "Hookah Bar {x}"),
               ("Marrakech", "Sultan", "Royal", "Dubai", "Istanbul", "Cleopatra", "Layali", "Habibi", "Oasis",
                "Golden")),
    "nagelstudio": (("Nagelstudio {x}", "{x} Nails", "Nails & Beauty {x}"),
                    ("Lotus", "Diamond", "Queen", "Perfect", "Pearl", "Luxury", "Kim", "Star")),
    "carwash": (("Car Wash {x}", "{x} Carwash", "Poetsservice {x}"),
                ("Express", "Clean", "Sparkle", "Turbo", "Royal", "City", "Shine")),
    "minimarkt": (("Minimarkt {x}", "Supermarkt {x}", "{x} Market"),
                  ("Istanbul", "Al-Noor", "Anadolu", "Sofia", "Warszawa", "Euro", "Baraka", "Polonia")),
    "autohandel": (("Autohandel {s}", "Autobedrijf {x}", "{x} Cars", "{s} Auto's"),
                   ("Prestige", "Premium", "Elite", "Euro", "West", "Noord", "Select")),
    "kapsalon": (("Kapsalon {x}", "Barbershop {x}"),
                 ("Istanbul", "Royal", "Fresh", "Gentlemen", "Ali", "Diamond", "Classic")),
    "belwinkel": (("Belwinkel {x}", "{x} Telecom", "{x} GSM"), ("Global", "Euro", "City", "Smart", "Bel")),
    "uitzendbureau": (("Uitzendbureau {x}", "{x} Flex", "{x} Personeelsdiensten"),
                      ("Euro", "Work", "Flex", "Polonia", "Hollandia", "Tulip", "Green", "Staff")),
    "vastgoed": (("{s} Vastgoed", "{s} Beheer", "{s} Onroerend Goed", "{s} Vastgoedbeheer"), ("",)),
    "bouw": (("{s} Bouw", "Bouwbedrijf {s}", "{s} Klussenbedrijf"), ("",)),
    "schoonmaak": (("Schoonmaakbedrijf {x}", "{x} Cleaning", "{s} Schoonmaak"),
                   ("Sparkle", "Clean", "Blink", "Fresh", "Pro")),
    "horeca": (("Café {x}", "Eetcafé {x}", "Pizzeria {x}", "Snackbar {x}", "Grillroom {x}"),
               ("De Hoek", "Het Plein", "Roma", "Napoli", "Anatolia", "Centraal", "De Zon", "Sultan")),
}

#: Legal forms and their share.
LEGAL_FORMS: tuple[tuple[str, float], ...] = (
    ("B.V.", 0.55), ("V.O.F.", 0.12), ("Eenmanszaak", 0.2), ("Holding B.V.", 0.08), ("Stichting", 0.05),
)

#: Short Dutch descriptions per category (templates carry no personal data).
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "woonfraude": (
        "Vermoeden dat de woning niet door de huurder zelf wordt bewoond.",
        "Huurder woont volgens buren al maanden elders.",
        "Signalen van woonfraude, steeds andere mensen in en uit.",
        "Woning lijkt leeg te staan maar er staan meerdere personen ingeschreven.",
    ),
    "adresfraude": (
        "Persoon staat ingeschreven maar woont hier niet.",
        "Post voor onbekende personen op dit adres.",
        "Vermoedelijk onjuiste inschrijving in de BRP.",
        "Meerdere inschrijvingen op een adres waar niemand woont.",
    ),
    "overbewoning": (
        "Veel wisselende bewoners, vermoedelijk arbeidsmigranten.",
        "Te veel personen in een kleine woning, matrassen zichtbaar.",
        "Elke ochtend busje dat een groep mensen ophaalt.",
        "Overlast en veel bewoners in een eengezinswoning.",
    ),
    "illegale_onderverhuur": (
        "Sociale huurwoning wordt vermoedelijk onderverhuurd.",
        "Woning wordt via internet aangeboden voor korte verhuur.",
        "Hoofdhuurder woont elders en verhuurt kamers door.",
        "Steeds andere toeristen met koffers bij deze woning.",
    ),
    "hennepteelt": (
        "Sterke hennepgeur en afgeplakte ramen.",
        "Zoemend geluid en warmte uit de zolder, ramen altijd dicht.",
        "Netbeheerder meldt afwijkend stroomverbruik.",
        "Veel bezoek op rare tijden, ramen geblindeerd.",
    ),
    "drugs": (
        "Vermoedelijke drugshandel vanuit de woning.",
        "Veel korte bezoekjes, vermoeden van dealen.",
        "Chemische lucht en vaten in de schuur.",
        "Auto's die kort stoppen en weer wegrijden.",
    ),
    "witwassen": (
        "Zaak is altijd leeg maar draait blijkbaar goed.",
        "Dure auto's bij een onderneming met weinig klanten.",
        "Veel contante betalingen, weinig zichtbare omzet.",
        "Eigenaar leeft ver boven zijn stand.",
    ),
    "mensenhandel": (
        "Vermoeden van uitbuiting, bewoners lijken niet vrij te kunnen gaan.",
        "Jonge vrouwen worden steeds op andere tijden opgehaald.",
        "Paspoorten zouden worden ingehouden door de werkgever.",
    ),
    "arbeidsuitbuiting": (
        "Werknemers werken lange dagen en slapen op de werkplek.",
        "Arbeidsmigranten worden met een busje naar het werk gebracht.",
        "Loon wordt ingehouden voor huur en vervoer.",
    ),
    "prostitutie": (
        "Vermoeden van illegale prostitutie in een woning.",
        "Advertenties met dit adres, veel mannelijk bezoek.",
        "Massagesalon met verdachte openingstijden.",
    ),
    "uitkeringsfraude": (
        "Persoon ontvangt bijstand maar woont samen.",
        "Vermoeden van verzwegen inkomsten naast de uitkering.",
        "Woont volgens melder niet op het opgegeven adres.",
    ),
    "malafide_onderneming": (
        "Veel bedrijven op een adres, geen activiteit zichtbaar.",
        "Bestuurders wisselen steeds, vermoedelijk een brievenbusfirma.",
        "Onderneming sluit en heropent onder andere naam.",
        "Ondernemer gebruikt een katvanger als bestuurder.",
    ),
    "overig": (
        "Algemene zorgen over deze situatie.",
        "Melder vraagt of de gemeente kan kijken.",
        "Verdachte situatie, niet duidelijk wat er aan de hand is.",
    ),
}

#: Categories outside the vocabulary that still turn up now and then.
UNKNOWN_CATEGORIES: tuple[str, ...] = ("geluidsoverlast", "afval", "parkeeroverlast", "burenruzie")
UNKNOWN_DESCRIPTIONS: tuple[str, ...] = (
    "Overlast van de buren, 's avonds laat.",
    "Afval naast de container.",
    "Auto's worden steeds fout geparkeerd.",
)

#: Suffixes added to a description now and then.
DESCRIPTION_SUFFIXES: tuple[str, ...] = (
    " Al eerder gemeld.", " Melder wil graag een terugkoppeling.", " Graag met spoed bekijken.",
    " Situatie speelt al langer.", "",
)

#: Email domains.
EMAIL_DOMAINS: tuple[tuple[str, float], ...] = (
    ("gmail.com", 0.45), ("hotmail.com", 0.2), ("outlook.com", 0.1), ("live.nl", 0.07), ("ziggo.nl", 0.06),
    ("kpnmail.nl", 0.05), ("icloud.com", 0.04), ("yahoo.com", 0.03),
)


class Weighted:
    """A weighted list sampled with one uniform draw.

    >>> w = Weighted(["a", "b"], [1.0, 0.0])
    >>> w.pick(random.Random(1))
    'a'
    """

    __slots__ = ("items", "cum")

    def __init__(self, items, weights) -> None:
        self.items = list(items)
        total = float(sum(weights))
        acc, cum = 0.0, []
        for w in weights:
            acc += w / total
            cum.append(acc)
        cum[-1] = 1.0
        self.cum = cum

    def pick(self, rng: random.Random):
        """One item, drawn with its weight."""
        return self.items[bisect.bisect_right(self.cum, rng.random())]

    def __len__(self) -> int:
        return len(self.items)


def split_surname(full: str) -> tuple[str, str]:
    """Split a surname into tussenvoegsel and core.

    >>> split_surname("van der Veen"), split_surname("Bakker")
    (('van der', 'Veen'), ('', 'Bakker'))
    """
    low = full.lower()
    for tv in TUSSENVOEGSELS:
        if low.startswith(tv + " "):
            return full[: len(tv)].lower(), full[len(tv) + 1:]
    return "", full


@dataclass(frozen=True)
class Town:
    """A town with the postcode numbers its streets use."""

    name: str
    pc_low: int
    pc_high: int


@dataclass(frozen=True)
class Pools:
    """Everything the generator samples values from; built once per seed by ``build_pools``."""

    surnames: dict[str, Weighted]          # group -> Weighted[(tv, core)]
    first_male: dict[str, Weighted]        # group -> Weighted[str]
    first_female: dict[str, Weighted]
    groups: Weighted                       # general population origin groups
    worker_groups: Weighted                # labour migrants
    streets: Weighted
    towns: Weighted                        # Weighted[Town]
    legal_forms: Weighted
    email_domains: Weighted


def build_pools(seed: int) -> Pools:
    """Build the value pools for ``seed`` (faker ``nl_NL`` seeded with ``seed`` adds streets and towns).

    >>> p = build_pools(1)
    >>> p.surnames["nl"].pick(random.Random(0))[1] != ""
    True
    """
    fake = Faker("nl_NL")
    fake.seed_instance(seed)
    rng = random.Random(f"pools:{seed}")

    # Dutch surnames: a heavy head of common names plus faker's long tail (single-token cores only).
    tail: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set(NL_TOP_SURNAMES)
    for full in _FakerPerson.last_names:
        tv, core = split_surname(full)
        if " " in core or not core[:1].isupper() or "," in core or (tv, core) in seen:
            continue
        seen.add((tv, core))
        tail.append((tv, core))
    head_w = [1.0 / (rank + 1) ** 0.75 for rank in range(len(NL_TOP_SURNAMES))]
    head_total = sum(head_w)
    # the head carries ~40% of all persons; the tail shares the rest evenly
    nl_items = list(NL_TOP_SURNAMES) + tail
    nl_weights = [w / head_total * 0.4 for w in head_w] + [0.6 / len(tail)] * len(tail)
    surnames = {"nl": Weighted(nl_items, nl_weights)}
    first_male = {"nl": Weighted(list(_FakerPerson.first_names_male) + list(NL_CLASSIC_MALE),
                                 [0.5 / len(_FakerPerson.first_names_male)] * len(_FakerPerson.first_names_male)
                                 + [0.5 / len(NL_CLASSIC_MALE)] * len(NL_CLASSIC_MALE))}
    first_female = {"nl": Weighted(list(_FakerPerson.first_names_female) + list(NL_CLASSIC_FEMALE),
                                   [0.5 / len(_FakerPerson.first_names_female)]
                                   * len(_FakerPerson.first_names_female)
                                   + [0.5 / len(NL_CLASSIC_FEMALE)] * len(NL_CLASSIC_FEMALE))}
    for group, (males, females, sur) in GROUP_NAMES.items():
        # a Zipf-like skew inside each group as well
        surnames[group] = Weighted([("", s) for s in sur], [1.0 / (i + 1) ** 0.6 for i in range(len(sur))])
        first_male[group] = Weighted(males, [1.0 / (i + 1) ** 0.5 for i in range(len(males))])
        first_female[group] = Weighted(females, [1.0 / (i + 1) ** 0.5 for i in range(len(females))])

    # streets: the common list plus faker's street names for this seed
    faker_streets = _unique(fake.street_name() for _ in range(400))
    streets = Weighted(list(STREETS) + faker_streets,
                       [8.0] * len(STREETS) + [1.0] * len(faker_streets))

    # towns: the big towns with their real postcode ranges plus faker's villages with a random range
    towns = [Town(name, lo, hi) for name, lo, hi, _ in TOWNS]
    weights = [w for *_, w in TOWNS]
    big = sum(weights)
    villages = [c for c in _unique(fake.city() for _ in range(300)) if c not in {t.name for t in towns}]
    for name in villages:
        lo = rng.randrange(1000, 9990)
        towns.append(Town(name, lo, lo + rng.randrange(0, 4)))
        weights.append(big / 3 / len(villages))

    return Pools(
        surnames=surnames,
        first_male=first_male,
        first_female=first_female,
        groups=Weighted(list(GROUP_WEIGHTS), list(GROUP_WEIGHTS.values())),
        worker_groups=Weighted(list(MIGRANT_WORKER_WEIGHTS), list(MIGRANT_WORKER_WEIGHTS.values())),
        streets=streets,
        towns=Weighted(towns, weights),
        legal_forms=Weighted([f for f, _ in LEGAL_FORMS], [w for _, w in LEGAL_FORMS]),
        email_domains=Weighted([d for d, _ in EMAIL_DOMAINS], [w for _, w in EMAIL_DOMAINS]),
    )


def _unique(values) -> list[str]:
    out, seen = [], set()
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out
