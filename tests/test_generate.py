"""Tests for linkage.generate: determinism, file contract, truth completeness, validity of identifiers,
planted networks, hubs, the wide export and the person-mention benchmark."""
from __future__ import annotations

import csv
import doctest
import random
import re
from collections import defaultdict
from pathlib import Path

import pytest
from stdnum import iban as std_iban
from stdnum.nl import bsn as std_bsn
from stdnum.nl import postcode as std_postcode

from linkage import model
from linkage.errors import LinkageError
from linkage.generate import (
    NETWORK_KINDS,
    WIDE_COLUMNS,
    generate,
    generate_person_mentions,
    write_wide_example,
)
from linkage.generate import background, core, identifiers, mentions, networks, noise, people, pools, wide, world

FILES = ("reports.csv", "mentions.csv", "truth_mentions.csv", "truth_reports.csv")


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh))


@pytest.fixture(scope="module")
def data500(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen500")
    generate(500, 42, out, wide=True)
    return out


@pytest.fixture(scope="module")
def tables(data500):
    return {name: _read(data500 / name) for name in FILES}


# -- determinism ----------------------------------------------------------------------------------------

def test_same_seed_gives_identical_files(tmp_path):
    generate(300, 5, tmp_path / "a", wide=True)
    generate(300, 5, tmp_path / "b", wide=True)
    for name in FILES + ("wide.csv",):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_different_seed_gives_different_files(tmp_path):
    generate(200, 1, tmp_path / "a")
    generate(200, 2, tmp_path / "b")
    assert (tmp_path / "a" / "mentions.csv").read_bytes() != (tmp_path / "b" / "mentions.csv").read_bytes()


def test_zero_reports_writes_headers_only(tmp_path):
    summary = generate(0, 1, tmp_path)
    assert summary.n_mentions == 0
    assert (tmp_path / "reports.csv").read_text(encoding="utf-8").count("\n") == 1


def test_negative_reports_raise(tmp_path):
    with pytest.raises(LinkageError):
        generate(-1, 1, tmp_path)


def test_progress_is_called_with_every_report(tmp_path):
    seen: list[int] = []
    generate(120, 3, tmp_path, progress=seen.append, chunk_size=50)
    assert seen == [50, 50, 20]


# -- the file contract ----------------------------------------------------------------------------------

def test_columns_exactly(data500):
    assert _header(data500 / "reports.csv") == list(model.REPORT_FIELDS)
    assert _header(data500 / "mentions.csv") == list(model.MENTION_FIELDS)
    assert _header(data500 / "truth_mentions.csv") == ["mention_id", "entity_id", "entity_type"]
    assert _header(data500 / "truth_reports.csv") == ["report_id", "network_id", "network_kind"]


def test_report_ids_unique_and_well_formed(tables):
    ids = [r["report_id"] for r in tables["reports.csv"]]
    assert len(ids) == 500 == len(set(ids))
    assert all(re.fullmatch(r"MLD-20\d\d-\d{6}", i) for i in ids)
    assert [r["report_id"] for r in tables["truth_reports.csv"]] == ids


def test_mention_ids_and_types(tables):
    report_ids = {r["report_id"] for r in tables["reports.csv"]}
    rows = tables["mentions.csv"]
    assert len({m["mention_id"] for m in rows}) == len(rows)
    per_report = defaultdict(int)
    for m in rows:
        assert m["report_id"] in report_ids
        assert m["mention_id"].startswith(m["report_id"] + "-M")
        assert m["entity_type"] in model.ENTITY_TYPES
        per_report[m["report_id"]] += 1
    assert set(per_report) == report_ids
    assert max(per_report.values()) <= 6
    assert 2.5 <= len(rows) / len(report_ids) <= 3.5


def test_reporters(tables):
    for r in tables["reports.csv"]:
        assert r["reporter_type"] in model.REPORTER_TYPES
        assert (r["reporter_id"] == "") == (r["reporter_type"] == "anoniem")
        assert r["reporter_id"] == "" or re.fullmatch(r"RPT-\d{4,}", r["reporter_id"])


def test_received_at_formats_and_range(tables):
    dates = [r["received_at"] for r in tables["reports.csv"]]
    dutch = [d for d in dates if re.fullmatch(r"\d\d-\d\d-\d{4}", d)]
    iso = [d for d in dates if re.fullmatch(r"\d{4}-\d\d-\d\d", d)]
    assert len(dutch) + len(iso) == len(dates)
    assert 0.03 < len(dutch) / len(dates) < 0.2
    as_iso = iso + [f"{d[6:]}-{d[3:5]}-{d[:2]}" for d in dutch]
    assert min(as_iso) >= "2024-11-01" and max(as_iso) < "2026-11-01"


def test_category_labels_normalise_back(tables):
    def norm(label: str) -> str:
        return re.sub(r"[\s-]+", "_", label.strip().lower())

    labels = [r["category"] for r in tables["reports.csv"]]
    known = [lab for lab in labels if norm(lab) in model.CATEGORIES]
    assert len(known) >= 0.98 * len(labels)
    assert any(lab != norm(lab) for lab in known)  # variants exist


# -- truth ----------------------------------------------------------------------------------------------

def test_truth_covers_every_mention_and_exactly_the_derived_ones(tables):
    truth = {t["mention_id"]: t for t in tables["truth_mentions.csv"]}
    expected = set()
    for m in tables["mentions.csv"]:
        expected.add(m["mention_id"])
        assert truth[m["mention_id"]]["entity_type"] == m["entity_type"]
        for carried in model.ENTITY_TYPES:
            if carried != m["entity_type"] and any(m[f] for f in model.TYPE_FIELDS[carried]):
                assert (m["entity_type"], carried) in model.LINK_TYPES
                derived = model.derived_mention_id(m["mention_id"], carried)
                expected.add(derived)
                assert truth[derived]["entity_type"] == carried
        if m["business_name"] or m["kvk"]:
            assert m["entity_type"] == "business" or m["role"] in {"bestuurder", "eigenaar"}
    assert set(truth) == expected
    derived_types = {t["mention_id"].split("~")[1] for t in truth.values() if "~" in t["mention_id"]}
    assert {"address", "business", "phone", "bank_account", "vehicle", "email"} <= derived_types


def test_entity_id_prefix_matches_type(tables):
    for t in tables["truth_mentions.csv"]:
        assert t["entity_id"][0] == world.ID_PREFIX[t["entity_type"]]


def test_a_true_person_never_has_two_valid_bsns(tables):
    truth = {t["mention_id"]: t["entity_id"] for t in tables["truth_mentions.csv"]}
    valid: dict[str, set[str]] = defaultdict(set)
    for m in tables["mentions.csv"]:
        if m["entity_type"] == "person" and m["bsn"]:
            digits = re.sub(r"\D", "", m["bsn"]).zfill(9)
            if std_bsn.is_valid(digits):
                valid[truth[m["mention_id"]]].add(digits)
    assert valid and all(len(v) == 1 for v in valid.values())
    owners = defaultdict(set)
    for eid, values in valid.items():
        for v in values:
            owners[v].add(eid)
    assert all(len(o) == 1 for o in owners.values())


def test_allocated_identifiers_are_valid_and_unique():
    al = identifiers.Allocators(random.Random(3))
    bsns = [al.bsn() for _ in range(5000)]
    assert len(set(bsns)) == 5000 and all(std_bsn.is_valid(b) for b in bsns)
    ibans = [al.iban() for _ in range(2000)]
    assert len(set(ibans)) == 2000 and all(std_iban.is_valid(i) for i in ibans)
    kvks = [al.kvk() for _ in range(2000)]
    assert len(set(kvks)) == 2000 and all(re.fullmatch(r"[1-9]\d{7}", k) for k in kvks)
    plates = [al.plate() for _ in range(3000)]
    assert len({p.replace("-", "") for p in plates}) == 3000
    phones = [al.mobile() for _ in range(1000)] + [al.landline() for _ in range(1000)]
    assert len(set(phones)) == 2000 and all(re.fullmatch(r"\+31\d{9}", p) for p in phones)


def test_single_digit_errors_never_make_another_valid_bsn():
    rng = random.Random(9)
    al = identifiers.Allocators(rng)
    for _ in range(3000):
        assert not identifiers.bsn_is_valid(noise.digit_typo(al.bsn(), rng))


def test_written_postcodes_are_valid(tables):
    written = [m["postcode"] for m in tables["mentions.csv"] if m["postcode"]]
    assert written and all(std_postcode.is_valid(p) for p in written)
    assert all(std_postcode.is_valid(f"1234{pair}") for pair in identifiers.POSTCODE_PAIRS)


# -- networks, hubs, population -------------------------------------------------------------------------

def test_networks_of_all_kinds(tables):
    rows = [r for r in tables["truth_reports.csv"] if r["network_id"]]
    kinds = {r["network_id"]: r["network_kind"] for r in rows}
    assert set(kinds.values()) == set(NETWORK_KINDS)
    sizes = defaultdict(int)
    for r in rows:
        sizes[r["network_id"]] += 1
    assert all(4 <= s <= 30 for s in sizes.values())
    assert 0.15 <= len(rows) / 500 <= 0.25


def test_networks_are_connected_in_the_truth(tables):
    truth = {t["mention_id"]: t["entity_id"] for t in tables["truth_mentions.csv"]}
    net_of = {r["report_id"]: r["network_id"] for r in tables["truth_reports.csv"] if r["network_id"]}
    entities = defaultdict(set)
    for mid, eid in truth.items():
        rid = mid.split("-M")[0]
        if rid in net_of:
            entities[rid].add(eid)
    by_net = defaultdict(list)
    for rid, net in net_of.items():
        by_net[net].append(rid)
    for net, rids in by_net.items():
        reached, frontier = {rids[0]}, [rids[0]]
        while frontier:
            rid = frontier.pop()
            for other in rids:
                if other not in reached and entities[rid] & entities[other]:
                    reached.add(other)
                    frontier.append(other)
        assert reached == set(rids), net


def test_hub_addresses_tie_unrelated_reports(tables):
    net_of = {r["report_id"]: r["network_id"] for r in tables["truth_reports.csv"]}
    places = defaultdict(set)   # (street, number) of flats and offices written in split form
    for m in tables["mentions.csv"]:
        if m["street"] and not net_of[m["report_id"]]:
            number = re.match(r"\d+", m["house_number"])
            places[(m["street"].lower(), number.group() if number else "")].add(m["report_id"])
    assert max(len(v) for v in places.values()) >= 3


def test_names_are_honestly_ambiguous():
    rng = random.Random(1)
    w = world.World(1, pools.build_pools(1))
    persons = [w.new_person(rng) for _ in range(3000)]
    surnames = defaultdict(int)
    names = defaultdict(set)
    for p in persons:
        surnames[(p.tv, p.core)] += 1
        names[(p.first, p.tv, p.core)].add(p.birth)
    assert max(surnames.values()) >= 30           # common surnames are common
    assert any(len(b) > 1 for b in names.values())  # namesakes with different birth dates


@pytest.mark.parametrize("text", ["", "a", "Jansen", "IJzerman", "van der Berg", "Ëlise", "12-BDF-3"])
def test_noise_never_raises(text):
    rng = random.Random(4)
    for _ in range(50):
        noise.typo(text, rng)
        noise.strip_diacritics(text)
        noise.ij_to_y(text)
        noise.abbreviate_street(text, rng)


def test_noise_kinds_present(tables):
    rows = [m for m in tables["mentions.csv"] if m["entity_type"] == "person"]
    names = " | ".join(m["name"] + " " + m["first_name"] + " " + m["last_name"] for m in rows)
    assert re.search(r"\b[A-Z]\.", names)                         # initials
    assert re.search(r"\w+, ", names)                             # inverted order
    assert re.search(r"\bVan\b|\bV\.d\.", names)                   # tussenvoegsel variants
    assert re.search(r"\w-\w", names)                             # double names
    births = [m["birth_date"] for m in rows if m["birth_date"]]
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d", b) for b in births)
    assert any(re.fullmatch(r"\d\d-\d\d-\d{4}", b) for b in births)
    bsn_share = sum(1 for m in rows if m["bsn"]) / len(rows)
    assert 0.15 < bsn_share < 0.45
    postcodes = [m["postcode"] for m in tables["mentions.csv"] if m["postcode"]]
    assert any(" " in p for p in postcodes) and any(re.fullmatch(r"\d{4}[A-Z]{2}", p) for p in postcodes)
    streets = [m["street"] for m in tables["mentions.csv"]] + [m["address"] for m in tables["mentions.csv"]]
    assert any("str." in s or s.endswith("str") for s in streets)


# -- wide export ----------------------------------------------------------------------------------------

def test_wide_example(data500, tmp_path):
    raw = (data500 / "wide.csv").read_bytes()
    text = raw.decode("cp1252")
    assert "\r\n" in text
    rows = list(csv.reader(text.splitlines(), delimiter=";"))
    assert tuple(rows[0]) == WIDE_COLUMNS
    assert len(rows) == 101
    assert sum(1 for r in rows[1:] if r[5]) > 50 and sum(1 for r in rows[1:] if r[7]) > 50
    assert write_wide_example(data500, tmp_path / "w.csv", n_reports=10) == 10


# -- person mentions for the ER benchmark ---------------------------------------------------------------

def test_generate_person_mentions_shapes():
    m, t = generate_person_mentions(3000, 7)
    assert list(m.columns) == ["mention_id", *model.TYPE_FIELDS["person"]]
    assert list(t.columns) == ["mention_id", "entity_id"]
    assert len(m) == len(t) == 3000 and m["mention_id"].is_unique
    assert (m["mention_id"] == t["mention_id"]).all()
    per_entity = t["entity_id"].value_counts()
    assert 1.7 <= len(t) / len(per_entity) <= 2.4
    assert (per_entity == 1).mean() > 0.35 and per_entity.max() <= 5
    assert ((m["name"] != "") | (m["last_name"] != "")).all()
    m2, t2 = generate_person_mentions(3000, 7)
    assert m.equals(m2) and t.equals(t2)


# -- docstrings run -------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [background, core, identifiers, mentions, networks, noise, people, pools,
                                    wide, world])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_reference_profile_is_benchmark_with_fewer_errors():
    from linkage.generate.people import PROFILE_SETTINGS

    b, r = PROFILE_SETTINGS["benchmark"], PROFILE_SETTINGS["reference"]
    for name in ("name_typo", "first_typo", "initials", "tv_variant", "date_swap", "date_typo", "bsn_typo"):
        assert getattr(r.rates, name) == pytest.approx(getattr(b.rates, name) * 0.2)
    assert 1 - r.quality.birth == pytest.approx((1 - b.quality.birth) * 0.2)
    assert r.namesake_p == b.namesake_p and r.quality.bsn == b.quality.bsn
    m, t = generate_person_mentions(2000, 7, profile="reference")
    assert len(m) == len(t) == 2000 and (m["birth_date"] != "").mean() > 0.95
    with pytest.raises(ValueError):
        generate_person_mentions(10, 7, profile="nope")
