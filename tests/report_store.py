"""A small hand-made store for the picture and dossier tests: two clusters, one unclustered report.

Cluster ``C1`` (hennepteelt/witwassen, routed to politie and netbeheerder): 4 reports from reporters
``RPT-1001`` (twice), ``RPT-1002`` and one anonymous, about Jan de Vries, his address, a shisha lounge,
a car, a phone and a bank account. Cluster ``C2`` (overbewoning, routed to gemeente_woonfraude): 2 reports
about Petra Jansen at Dorpsweg 5. Report ``R9`` is in no cluster.
"""
from __future__ import annotations

import json
from pathlib import Path

from linkage.store import EmbeddedStore

REPORTS = [
    # report_id, received_at, category, description, reporter_id, reporter_type
    ("R1", "2025-01-10T09:00:00", "hennepteelt", "Ramen afgeplakt, sterke geur, warmte op het dak.", "RPT-1001", "bewoner"),
    ("R2", "2025-02-03T14:30:00", "witwassen", "Shisha lounge altijd leeg maar dure auto's voor de deur.", "RPT-1002", "medewerker"),
    ("R3", "2025-02-20T11:15:00", "hennepteelt", "Stroomverbruik opvallend hoog; buurman meldt gezoem.", "", "anoniem"),
    ("R4", "2025-03-01T08:45:00", "witwassen", "Contante betalingen; zelfde auto bij de lounge.", "RPT-1001", "bewoner"),
    ("R5", "2025-01-15T10:00:00", "overbewoning", "Acht mensen ingeschreven in een kleine woning.", "RPT-2001", "medewerker"),
    ("R6", "2025-02-11T10:00:00", "overbewoning", "Veel matrassen zichtbaar, wisselende bewoners.", "RPT-2002", "bewoner"),
    ("R9", "2025-02-12T10:00:00", "overig", "Losse melding zonder verband.", "RPT-3001", "bewoner"),
]

ENTITIES = [
    # entity_id, entity_type, label
    ("e_person_jan", "person", "Jan de Vries"),
    ("e_address_kerk", "address", "Kerkstraat 12, 1234 AB Utrecht"),
    ("e_business_noor", "business", "Shisha Lounge Noor B.V."),
    ("e_vehicle_abc", "vehicle", "12-ABC-3"),
    ("e_phone_06", "phone", "+31612345678"),
    ("e_bank_nl91", "bank_account", "NL91ABNA0417164300"),
    ("e_person_petra", "person", "Petra Jansen"),
    ("e_address_dorp", "address", "Dorpsweg 5, 3511 AA Utrecht"),
    ("e_person_kees", "person", "Kees Bakker"),
]

MENTIONS = [
    # mention_id, report_id, entity_type, role, entity_id, fields
    ("M1", "R1", "person", "bewoner", "e_person_jan", {"name": "Jan de Vries"}),
    ("M1~address", "R1", "address", "woonadres", "e_address_kerk", {"address": "Kerkstraat 12", "postcode": "1234AB"}),
    ("M2", "R2", "business", "onderneming", "e_business_noor", {"business_name": "Shisha Lounge Noor B.V."}),
    ("M3", "R2", "person", "eigenaar", "e_person_jan", {"name": "J. de Vries"}),
    ("M4", "R2", "vehicle", "voertuig", "e_vehicle_abc", {"plate": "12-ABC-3"}),
    ("M5", "R3", "address", "pand", "e_address_kerk", {"address": "Kerkstraat 12", "postcode": "1234 AB"}),
    ("M6", "R3", "phone", "contact", "e_phone_06", {"phone": "06-12345678"}),
    ("M7", "R4", "business", "onderneming", "e_business_noor", {"business_name": "Noor Shisha Lounge"}),
    ("M8", "R4", "bank_account", "", "e_bank_nl91", {"iban": "NL91 ABNA 0417 1643 00"}),
    ("M9", "R4", "vehicle", "kenteken", "e_vehicle_abc", {"plate": "12ABC3"}),
    ("M10", "R5", "person", "bewoner", "e_person_petra", {"name": "Petra Jansen"}),
    ("M11", "R5", "address", "adres", "e_address_dorp", {"address": "Dorpsweg 5", "postcode": "3511AA"}),
    ("M12", "R6", "address", "adres", "e_address_dorp", {"address": "Dorpsweg 5", "postcode": "3511 AA"}),
    ("M13", "R9", "person", "betrokkene", "e_person_kees", {"name": "Kees Bakker"}),
]

LINKS = [
    # src_mention_id, dst_mention_id, rel_type, report_id
    ("M1", "M1~address", "LIVES_AT", "R1"),
    ("M3", "M2", "OWNER_OF", "R2"),
    ("M3", "M4", "USES", "R2"),
    ("M7", "M8", "USES", "R4"),
    ("M10", "M11", "LIVES_AT", "R5"),
]

SIGNALS_C1 = [
    {"name": "independent_reporters", "value": 3, "weight": 1.5,
     "sentence": "3 onafhankelijke melders (2 bekend, 1 anoniem) melden hetzelfde netwerk."},
    {"name": "theme_hennep", "value": 2, "weight": 2.0,
     "sentence": "2 meldingen wijzen op hennepteelt op Kerkstraat 12."},
    {"name": "cash_business", "value": 1, "weight": 1.0,
     "sentence": "Een contant-intensieve onderneming (shisha lounge) is betrokken."},
]
ROUTING_C1 = [
    {"agency": "politie", "rule": "hennep_politie", "reason": "Hennepteelt vraagt strafrechtelijk onderzoek."},
    {"agency": "netbeheerder", "rule": "hennep_stroom", "reason": "Mogelijke stroomdiefstal bij hennepteelt."},
]
SIGNALS_C2 = [{"name": "many_at_address", "value": 8, "weight": 1.0,
               "sentence": "8 personen ingeschreven op Dorpsweg 5."}]
ROUTING_C2 = [{"agency": "gemeente_woonfraude", "rule": "overbewoning", "reason": "Overbewoning is woonfraude."}]


def make_store(path: Path | str) -> EmbeddedStore:
    """Create the store at ``path`` and return it open."""
    store = EmbeddedStore(path)
    with store.transaction():
        store.insert_rows("reports", [
            {"report_id": r, "received_at": at, "category": cat, "description": desc, "reporter_id": rid or None,
             "reporter_type": rtype, "content_hash": "h" + r} for r, at, cat, desc, rid, rtype in REPORTS],
            ["report_id", "received_at", "category", "description", "reporter_id", "reporter_type", "content_hash"])
        store.insert_rows("entities", [
            {"entity_id": e, "entity_type": t, "label": label,
             "n_mentions": sum(1 for m in MENTIONS if m[4] == e), "attributes": json.dumps({})}
            for e, t, label in ENTITIES], ["entity_id", "entity_type", "label", "n_mentions", "attributes"])
        value_cols = sorted({k for m in MENTIONS for k in m[5]})
        store.insert_rows("mentions", [
            {"mention_id": mid, "report_id": rid, "entity_type": t, "role": role or None, "content_hash": "h" + mid,
             **fields} for mid, rid, t, role, _e, fields in MENTIONS],
            ["mention_id", "report_id", "entity_type", "role", "content_hash"] + value_cols)
        store.insert_rows("mention_entities", [
            {"mention_id": mid, "entity_id": e, "entity_type": t} for mid, _r, t, _role, e, _f in MENTIONS],
            ["mention_id", "entity_id", "entity_type"])
        store.insert_rows("mention_links", [
            {"src_mention_id": a, "dst_mention_id": b, "rel_type": rel, "report_id": r} for a, b, rel, r in LINKS],
            ["src_mention_id", "dst_mention_id", "rel_type", "report_id"])
        store.insert_rows("clusters", [
            {"cluster_id": "C1", "rank": 1, "score": 7.25, "n_reports": 4, "n_reporters": 3.0,
             "categories": ["hennepteelt", "witwassen"], "agencies": ["politie", "netbeheerder"],
             "reason": "Hennepteelt en witwassen rond één adres en een shisha lounge, gemeld door 3 melders.",
             "signals": SIGNALS_C1, "routing": ROUTING_C1, "unrouted_reason": None},
            {"cluster_id": "C2", "rank": 2, "score": 3.5, "n_reports": 2, "n_reporters": 2.0,
             "categories": ["overbewoning"], "agencies": ["gemeente_woonfraude"],
             "reason": "Overbewoning op Dorpsweg 5.", "signals": SIGNALS_C2, "routing": ROUTING_C2,
             "unrouted_reason": None},
        ], ["cluster_id", "rank", "score", "n_reports", "n_reporters", "categories", "agencies", "reason", "signals",
            "routing", "unrouted_reason"])
        store.insert_rows("report_clusters", [
            {"report_id": r, "cluster_id": c} for r, c in
            [("R1", "C1"), ("R2", "C1"), ("R3", "C1"), ("R4", "C1"), ("R5", "C2"), ("R6", "C2")]],
            ["report_id", "cluster_id"])
    return store
