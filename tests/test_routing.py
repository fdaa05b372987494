"""Tests for linkage.triage.routing: rules, multi-agency, RIEC, unrouted, malformed files."""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from linkage.errors import ConfigError, LinkageError
from linkage.triage import DEFAULT_RULES, load_rules, route
from linkage.triage.routing import ROUTE_COLUMNS

DOMAIN_AGENCIES = {
    "Gemeente: Burgerzaken (BRP-adresonderzoek)",
    "Gemeente: Toezicht & Handhaving / team Woonfraude",
    "Gemeente: Werk & Inkomen (Sociale Zaken)",
    "Gemeente: Bibob",
    "Woningcorporatie",
    "Politie",
    "Openbaar Ministerie",
    "Belastingdienst / FIOD",
    "UWV, SVB",
    "Nederlandse Arbeidsinspectie",
    "IND",
    "Netbeheerder",
    "RIEC (Regionaal Informatie- en Expertisecentrum)",
}

RULES = textwrap.dedent("""\
    # test rules
    [agencies]
    politie = "Politie"
    netbeheerder = "Netbeheerder"
    woonfraude = "Gemeente: Toezicht & Handhaving / team Woonfraude"
    burgerzaken = "Gemeente: Burgerzaken (BRP-adresonderzoek)"
    riec = "RIEC (Regionaal Informatie- en Expertisecentrum)"

    [riec]
    agency = "riec"
    min_partners = 3
    rule = "riec-3-partners"
    reason = "Several partners."

    [[rule]]
    name = "hennep"
    agencies = ["politie", "netbeheerder"]
    reason = "Cannabis."
    when.categories_any = ["hennepteelt", "drugs"]
    when.min_score = 30

    [[rule]]
    name = "overbewoning"
    agencies = ["woonfraude"]
    reason = "Too many residents."
    [rule.when]
    signals = ["persons_per_address >= 6"]

    [[rule]]
    name = "brp"
    agencies = ["burgerzaken"]
    reason = "Check registrations."
    when.signals_any = ["persons_per_address >= 6", "addresses_per_person >= 3"]
    when.max_score = 90
    """)


def sigs(**values) -> str:
    return json.dumps([{"name": k, "value": v, "weight": 1, "sentence": "", "inputs": {}} for k, v in values.items()])


@pytest.fixture()
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "rules.toml"
    p.write_text(RULES, encoding="utf-8")
    return p


def scored(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cluster_id", "score", "categories", "signals"])


def test_single_rule_routes_to_its_agencies_with_the_rule_named(rules_file):
    out = route(scored(("c_1", 50.0, ["hennepteelt"], sigs())), rules_file)
    assert list(out.columns) == ROUTE_COLUMNS
    row = out.iloc[0]
    assert row["agencies"] == ["politie", "netbeheerder"]
    assert row["agency_names"] == ["Politie", "Netbeheerder"]
    assert json.loads(row["routing"]) == [
        {"agency": "politie", "agency_name": "Politie", "rule": "hennep", "reason": "Cannabis."},
        {"agency": "netbeheerder", "agency_name": "Netbeheerder", "rule": "hennep", "reason": "Cannabis."},
    ]
    assert row["unrouted_reason"] is None


def test_several_rules_give_several_agencies_and_three_partners_add_the_riec(rules_file):
    out = route(scored(("c_1", 50.0, ["drugs"], sigs(persons_per_address=8))), rules_file).iloc[0]
    assert out["agencies"] == ["politie", "netbeheerder", "woonfraude", "burgerzaken", "riec"]
    routing = json.loads(out["routing"])
    assert [r["rule"] for r in routing] == ["hennep", "hennep", "overbewoning", "brp", "riec-3-partners"]
    assert routing[-1]["agency"] == "riec" and "4 partners" in routing[-1]["reason"]


def test_two_partners_do_not_need_the_riec(rules_file):
    out = route(scored(("c_1", 20.0, ["overig"], sigs(persons_per_address=7))), rules_file).iloc[0]
    assert out["agencies"] == ["woonfraude", "burgerzaken"]


def test_conditions_on_score(rules_file):
    low = route(scored(("c_1", 29.9, ["hennepteelt"], sigs())), rules_file).iloc[0]
    assert low["agencies"] == []
    high = route(scored(("c_1", 95.0, ["overig"], sigs(addresses_per_person=4))), rules_file).iloc[0]
    assert high["agencies"] == []  # brp has max_score 90
    brp = load_rules(rules_file).rules[2]
    assert brp.failures(["overig"], 95.0, {"addresses_per_person": 4}) == ["score 95 > 90"]


def test_unrouted_cluster_is_kept_with_the_reason(rules_file):
    out = route(scored(("c_1", 10.0, ["overig"], sigs(persons_per_address=2)), ("c_2", 50.0, ["drugs"], sigs())),
                rules_file)
    assert out["cluster_id"].tolist() == ["c_1", "c_2"]  # never dropped
    un = out.iloc[0]
    assert un["agencies"] == [] and json.loads(un["routing"]) == []
    assert un["unrouted_reason"].startswith("no rule matched (categories: overig; score 10)")
    assert un["unrouted_reason"].endswith("closest: rule 'overbewoning' failed on: not persons_per_address >= 6")


def test_categories_and_signals_in_other_shapes(rules_file):
    out = route(scored(("c_1", 50.0, "overig;hennepteelt", [{"name": "persons_per_address", "value": 1}]),
                       ("c_2", 50.0, '["drugs"]', None)), rules_file)
    assert out["agencies"].tolist() == [["politie", "netbeheerder"], ["politie", "netbeheerder"]]


def test_empty_input_gives_empty_frame(rules_file):
    out = route(scored(), rules_file)
    assert out.empty and list(out.columns) == ROUTE_COLUMNS


# ------------------------------------------------------------------------------------------------ the default file
def test_default_rules_use_the_primers_agency_names():
    rules = load_rules()
    assert Path(rules.source) == DEFAULT_RULES and DEFAULT_RULES.name == "routing.toml"
    assert set(rules.agencies.values()) == DOMAIN_AGENCIES
    assert rules.agencies[rules.riec_agency].startswith("RIEC")


@pytest.mark.parametrize("categories, signals, expected", [
    (["hennepteelt", "drugs"], {}, {"politie", "netbeheerder"}),
    (["witwassen", "malafide_onderneming"], {"shared_director_address": 3}, {"belastingdienst", "bibob"}),
    (["overbewoning", "illegale_onderverhuur"], {"persons_per_address": 8},
     {"woonfraude", "burgerzaken", "woningcorporatie", "riec"}),
    (["adresfraude", "uitkeringsfraude"], {"addresses_per_person": 5},
     {"burgerzaken", "werk_inkomen", "uwv_svb", "riec"}),
])
def test_default_rules_route_the_planted_network_kinds(categories, signals, expected):
    out = route(scored(("c_1", 60.0, categories, sigs(**signals)))).iloc[0]
    assert set(out["agencies"]) == expected
    assert all(r["rule"] for r in json.loads(out["routing"]))


def test_default_rules_leave_weak_clusters_unrouted():
    out = route(scored(("c_1", 12.0, ["overbewoning"], sigs(persons_per_address=2)))).iloc[0]
    assert out["agencies"] == [] and "score 12 < 20" in out["unrouted_reason"]


# ------------------------------------------------------------------------------------------------ malformed files
def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_toml_syntax_error_names_file_and_line(tmp_path):
    text = RULES.replace('reason = "Too many residents."', 'reason = "Too many residents.')
    p = _write(tmp_path, text)
    line = text.splitlines().index('reason = "Too many residents.') + 1
    with pytest.raises(ConfigError, match=rf"bad.toml, line {line}: invalid TOML") as err:
        route(scored(("c_1", 1.0, [], None)), p)
    assert isinstance(err.value, LinkageError)


@pytest.mark.parametrize("old, new, message", [
    ('agencies = ["woonfraude"]', 'agencies = ["woonfraud"]', r"rule #2 'overbewoning': agency 'woonfraud' is not in \[agencies\]"),
    ('signals = ["persons_per_address >= 6"]', 'signals = ["persons_per_adres >= 6"]',
     r"rule #2 'overbewoning': unknown signal 'persons_per_adres'"),
    ('signals = ["persons_per_address >= 6"]', 'signals = ["persons_per_address => 6"]', r"cannot read when.signals expression"),
    ('when.categories_any = ["hennepteelt", "drugs"]', 'when.categories_any = ["hennep"]', r"unknown category 'hennep'"),
    ('when.min_score = 30', 'when.min_score = "hoog"', r"when.min_score must be a number"),
    ('when.min_score = 30', 'when.minscore = 30', r"unknown condition 'when.minscore'"),
    ('name = "brp"', 'name = "hennep"', r"name 'hennep' is also used by rule #1"),
    ('min_partners = 3', 'min_partners = 1', r"min_partners must be a whole number >= 2"),
    ('reason = "Check registrations."', 'reden = "Check registrations."', r"unknown key 'reden'"),
])
def test_schema_errors_name_rule_key_and_line(tmp_path, old, new, message):
    text = RULES.replace(old, new)
    assert text != RULES
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_rules(p)
    msg = str(err.value)
    assert re.search(message, msg), msg
    lines = text.splitlines()
    target = new.split("=")[0].strip()
    line_no = int(re.search(r"line (\d+):", msg).group(1))
    assert target.split(".")[-1] in lines[line_no - 1]


def test_all_problems_are_reported_at_once(tmp_path):
    text = RULES.replace('agencies = ["woonfraude"]', 'agencies = ["x"]').replace('when.min_score = 30', 'when.min_score = "y"')
    with pytest.raises(ConfigError, match=r"2 problem\(s\)"):
        load_rules(_write(tmp_path, text))


def test_missing_rules_and_agencies(tmp_path):
    with pytest.raises(ConfigError, match=r"\[agencies\] table .* is required"):
        load_rules(_write(tmp_path, "[[rule]]\nname = \"a\"\nagencies = [\"politie\"]\nreason = \"r\"\n"))
    with pytest.raises(ConfigError, match="no \\[\\[rule\\]\\] tables"):
        load_rules(_write(tmp_path, "[agencies]\nriec = \"RIEC\"\n"))
    with pytest.raises(ConfigError, match="cannot read file"):
        load_rules(tmp_path / "missing.toml")


def test_rules_file_override_is_used(rules_file):
    default = route(scored(("c_1", 60.0, ["witwassen"], sigs(category_severity=4))))
    custom = route(scored(("c_1", 60.0, ["witwassen"], sigs(category_severity=4))), rules_file)
    assert default.iloc[0]["agencies"] == ["belastingdienst", "bibob"]
    assert custom.iloc[0]["agencies"] == []


@pytest.mark.parametrize("categories, score, signals", [
    (["overig"], 5.0, {}),
    (["hennepteelt"], 29.9, {}),
    (["hennepteelt", "drugs"], 95.0, {"persons_per_address": 7}),
    (["overbewoning"], 25.0, {"persons_per_address": 2, "addresses_per_person": 4}),
    ([], 0.0, {"shared_vehicle_account": 3, "shared_director_address": 2}),
])
def test_counting_failures_agrees_with_the_phrases(categories, score, signals):
    for rule in load_rules().rules:
        assert rule.n_failures(set(categories), score, signals) == len(rule.failures(categories, score, signals))


def test_route_gives_what_route_one_gives_for_every_cluster():
    """route counts the conditions for all clusters at once and makes each fired-rule set's routing once;
    every row must equal route_one's for that cluster (random categories, scores and signal values)."""
    import numpy as np

    from linkage.triage import SIGNALS, route_one
    from linkage.triage.routing import _known_categories

    rng = np.random.default_rng(3)
    cats = sorted(_known_categories())
    rows = []
    for i in range(400):
        chosen = list(rng.choice(cats, size=int(rng.integers(0, 4)), replace=False))
        values = {name: float(rng.choice([0, 1, 2, 3, 4, 6, 8, 0.5])) for name in SIGNALS if rng.random() < 0.7}
        rows.append((f"c_{i:03d}", float(rng.choice([0.0, 5.5, 19.99, 20.0, 29.9, 30.0, 45.0, 60.0, 90.0, 95.5])),
                     chosen, values))
    frame = pd.DataFrame(rows, columns=["cluster_id", "score", "categories", "signals"])
    rules = load_rules()
    got = route(frame)
    for (cid, score, chosen, values), row in zip(rows, got.to_dict("records")):
        ags, routing, why = route_one(rules, chosen, score, values)
        row["unrouted_reason"] = None if pd.isna(row["unrouted_reason"]) else row["unrouted_reason"]
        assert row == {"cluster_id": cid, "agencies": ags, "agency_names": [rules.agencies[a] for a in ags],
                       "routing": json.dumps(routing, ensure_ascii=False), "unrouted_reason": why}
    assert got["unrouted_reason"].isna().any() and got["unrouted_reason"].notna().any()
