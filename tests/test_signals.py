"""Tests for linkage.triage.signals, .policy and .scoring: every signal, contexts from frames, ranking."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from linkage.errors import ConfigError
from linkage.triage import SIGNALS, ClusterContext, ReportInfo, Signal, build_contexts, load_scoring_policy, score_clusters
from linkage.triage.policy import Term
from linkage.triage.scoring import SCORED_COLUMNS, data_now, explain
from linkage.triage.signals import (
    addresses_per_person,
    category_severity,
    independent_reporters,
    n_reports,
    persons_per_address,
    shared_entities,
    recency,
    shared_director_address,
    shared_vehicle_account,
)

NOW = dt.date(2024, 6, 30)
POLICY = load_scoring_policy()


def ctx(**kw) -> ClusterContext:
    kw.setdefault("reports", ())
    return ClusterContext("c_test", NOW, policy=POLICY, **kw)


def reps(*rows) -> tuple[ReportInfo, ...]:
    return tuple(ReportInfo(*r) for r in rows)


# ------------------------------------------------------------------------------------------------ signals
def test_every_signal_returns_name_value_sentence_inputs():
    c = ctx(reports=reps(("R1", NOW, "drugs", "a")))
    for name, fn in SIGNALS.items():
        s = fn(c)
        assert isinstance(s, Signal) and s.name == name
        assert isinstance(s.value, (int, float)) and s.sentence.endswith(".")
        json.dumps(dict(s.inputs))  # inputs are JSON-ready


def test_n_reports():
    s = n_reports(ctx(reports=reps(("R1", None, "x"), ("R2", None, "x"), ("R3", None, "x"))))
    assert (s.value, s.sentence) == (3, "3 reports in the cluster.")


@pytest.mark.parametrize("reporters, expected", [
    (["a", "a", "a", "a", "a"], 1.0),           # one reporter filing five times is one confirmation
    (["a", "b", "c"], 3.0),
    ([None, None], 1.0),                          # anonymous reports count half
    (["a", None, "", "b"], 3.0),                  # empty reporter id is anonymous too
])
def test_independent_reporters(reporters, expected):
    s = independent_reporters(ctx(reports=reps(*[(f"R{i}", None, "x", r) for i, r in enumerate(reporters)])))
    assert s.value == expected
    assert "reporter" in s.sentence and s.inputs["anonymous_weight"] == 0.5


def test_independent_reporters_anonymous_weight_is_policy(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text("[reporters]\nanonymous_weight = 0.25\n", encoding="utf-8")
    c = ClusterContext("c", NOW, reps(("R1", None, "x", None), ("R2", None, "x", None)), policy=load_scoring_policy(p))
    assert independent_reporters(c).value == 0.5


@pytest.mark.parametrize("days, expected, within", [(0, 1.0, 30), (30, 1.0, 30), (31, 0.6, 90), (90, 0.6, 90),
                                                     (91, 0.35, 180), (365, 0.15, 365), (366, 0.0, None)])
def test_recency_is_the_level_of_the_newest_reports_age(days, expected, within):
    s = recency(ctx(reports=reps(("R1", NOW - dt.timedelta(days=days + 30), "x"), ("R2", NOW - dt.timedelta(days=days), "x"))))
    assert s.value == expected and s.inputs["within_days"] == within
    assert s.inputs["newest"] == (NOW - dt.timedelta(days=days)).isoformat()
    # the explanation names the level, never the reference date or the day count (they move every run)
    assert not {"now", "days_since_newest"} & set(s.inputs)
    level = POLICY.recency_level(days)
    tail = level.label if level else "more than 365 days before the reference date"
    assert s.sentence == f"Newest report {s.inputs['newest']}, {tail}."


def test_recency_changes_only_when_the_newest_report_crosses_a_level():
    """Moving the reference date leaves the signal exactly as it was (value, sentence, inputs) until the
    newest report's age crosses a level boundary."""
    rs = reps(("R1", dt.date(2024, 5, 1), "x"), ("R2", dt.date(2024, 6, 1), "x"))
    at = {d: recency(ClusterContext("c", dt.date(2024, 6, 1) + dt.timedelta(days=d), rs, policy=POLICY))
          for d in (0, 10, 30, 31, 89, 90, 91)}
    assert at[0] == at[10] == at[30] != at[31]
    assert at[31] == at[89] == at[90] != at[91]


def test_recency_ladder_is_policy(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[[recency.levels]]\nwithin_days = 7\nvalue = 1\nlabel = "this week"\n', encoding="utf-8")
    policy = load_scoring_policy(p)
    rs = reps(("R1", NOW - dt.timedelta(days=7), "x"))
    s = recency(ClusterContext("c", NOW, rs, policy=policy))
    assert (s.value, s.sentence) == (1.0, f"Newest report {(NOW - dt.timedelta(days=7)).isoformat()}, this week.")
    old = recency(ClusterContext("c", NOW + dt.timedelta(days=1), rs, policy=policy))
    assert old.value == 0.0 and "more than 7 days before the reference date" in old.sentence


def test_recency_without_dates_is_zero():
    assert recency(ctx(reports=reps(("R1", None, "x")))).value == 0.0


def test_category_severity_averages_over_reports_and_names_the_most_serious():
    s = category_severity(ctx(reports=reps(("R1", None, "overbewoning"), ("R2", None, "mensenhandel"), ("R3", None, None))))
    assert s.value == 3.0 and s.inputs["most_severe"] == "mensenhandel" and s.inputs["max_severity"] == 5  # (3+5+1)/3
    assert s.inputs["reports_per_category"] == {"mensenhandel": 1, "overbewoning": 1, "overig": 1}
    assert category_severity(ctx(reports=reps(("R1", None, "nieuw_soort")))).value == POLICY.default_severity


def test_shared_entities_counts_entities_that_link_two_reports():
    mentioned = (("R1", "A1"), ("R2", "A1"), ("R2", "TL"), ("R3", "TL"), ("R3", "P9"), ("R1", "P1"), ("R1", "P1"))
    s = shared_entities(ctx(mentioned=mentioned, entity_types={"A1": "address", "TL": "phone"}))
    assert s.value == 2 and s.inputs["entity_ids"] == ["A1", "TL"]
    assert s.sentence == "2 entities link reports of the cluster (1 address, 1 phone)."
    # a hotspot: one address, many reports
    hot = shared_entities(ctx(mentioned=tuple((f"R{i}", "A") for i in range(20)), entity_types={"A": "address"}))
    assert hot.value == 1
    assert shared_entities(ctx()).value == 0


def test_persons_per_address_landlord_three_addresses_of_eight():
    residence = tuple((f"P{a}{i}", f"A{a}") for a in (1, 2, 3) for i in range(8 if a != 2 else 9))
    s = persons_per_address(ctx(residence=residence, labels={"A2": "Dorpsstraat 2"}))
    assert s.value == 9 and s.inputs["address_id"] == "A2" and s.inputs["addresses_with_residents"] == 3
    assert s.sentence == "9 persons registered at or reported living at Dorpsstraat 2."
    assert persons_per_address(ctx()).value == 0


def test_addresses_per_person_straw_man():
    residence = (("K", "A1"), ("K", "A2"), ("K", "A3"), ("K", "A4"), ("Q", "A1"))
    s = addresses_per_person(ctx(residence=residence, labels={"K": "K. Vos"}))
    assert s.value == 4 and s.inputs["address_ids"] == ["A1", "A2", "A3", "A4"]
    assert s.sentence.startswith("K. Vos is linked to 4 addresses")


def test_shared_director_address_needs_both_director_and_address():
    directs = (("D1", "B1"), ("D1", "B2"), ("D1", "B3"), ("D2", "B4"))
    located = (("B1", "AW"), ("B2", "AW"), ("B3", "AW"), ("B4", "AW"))
    s = shared_director_address(ctx(directs=directs, located=located))
    assert s.value == 3 and s.inputs == {"director_id": "D1", "address_id": "AW", "business_ids": ["B1", "B2", "B3"]}
    # same address, different directors: nothing shared
    none = shared_director_address(ctx(directs=(("D1", "B1"), ("D2", "B2")), located=(("B1", "A"), ("B2", "A"))))
    assert none.value < 2 and "No two businesses" in none.sentence


def test_shared_vehicle_account_counts_unrelated_groups():
    uses = (("P1", "V"), ("P2", "V"), ("P3", "V"), ("B1", "V"), ("P4", "I"))
    residence = (("P1", "A"), ("P2", "A"), ("P3", "B"))
    directs = (("P3", "B1"),)
    s = shared_vehicle_account(ctx(uses=uses, residence=residence, directs=directs, entity_types={"V": "vehicle"},
                                   labels={"V": "12-ABC-3"}))
    # P1 and P2 share an address; P3 directs B1: two unrelated groups behind vehicle V
    assert s.value == 2 and s.inputs["groups"] == [["B1", "P3"], ["P1", "P2"]]
    assert s.sentence.startswith("Vehicle 12-ABC-3 is used by 2 unrelated parties")
    alone = shared_vehicle_account(ctx(uses=(("P1", "I"),), entity_types={"I": "bank_account"}))
    assert alone.value == 1 and "No vehicle or bank account is shared" in alone.sentence
    assert shared_vehicle_account(ctx()).value == 0


# ------------------------------------------------------------------------------------------------ policy
def test_term_points_clip_between_floor_and_cap():
    t = Term(weight=20, floor=1, cap=5)
    assert [t.points(v) for v in (0, 1, 3, 5, 9)] == [0.0, 0.0, 10.0, 20.0, 20.0]


def test_packaged_policy_weights_sum_to_100_and_cover_every_signal():
    assert set(POLICY.terms) == set(SIGNALS)
    assert sum(t.weight for t in POLICY.terms.values()) == 100


@pytest.mark.parametrize("text, match", [
    ("[score.n_reports]\nweight = = 3\n", r"line 2"),
    ("[score.no_such_signal]\nweight = 3\n", r"line 1: unknown signal 'no_such_signal'"),
    ("[score.n_reports]\nweight = 3\nfloor = 5\ncap = 2\n", "cap must be greater than floor"),
    ("[severity]\ndrugs = 9\n", r"line 2: severity.drugs must be a whole number from 1 to 5"),
    ("[reporters]\nanonymous_weight = 2\n", "anonymous_weight"),
    ("[recency]\nhalf_life_days = 90\n", r"line 2: \[recency\]: unknown key\(s\) half_life_days"),
    ('[[recency.levels]]\nwithin_days = 30\nvalue = 2\nlabel = "x"\n', "recency level 1: value must be a number from 0 to 1"),
    ('[[recency.levels]]\nwithin_days = 30\nvalue = 1\nlabel = "a"\n[[recency.levels]]\nwithin_days = 30\nvalue = 0.5\n'
     'label = "b"\n', r"line 5: recency level 2: within_days must grow"),
    ('# [[recency.levels]] a comment first\n[[recency.levels]]\nwithin_days = 30\nvalue = 2\nlabel = "x"\n',
     r"line 2: recency level 1: value must be"),
    ('[[recency.levels]]\nwithin_days = -1\nvalue = 1\nlabel = "a"\n', "within_days must be a whole number"),
    ('[[recency.levels]]\nwithin_days = 3\nvalue = 1\n', "label must be a non-empty text"),
])
def test_policy_errors_name_the_problem(tmp_path, text, match):
    p = tmp_path / "scoring.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        load_scoring_policy(p)


# ------------------------------------------------------------------------------------------------ scoring
REPORTS = pd.DataFrame({
    "report_id": ["L1", "L2", "L3", "C1", "C2", "S1"],
    "received_at": ["2024-06-01", "2024-06-20", "2024-06-25", "2024-01-10", "2024-02-01", "2024-06-30"],
    "category": ["overbewoning", "overbewoning", "illegale_onderverhuur", "hennepteelt", "drugs", "overig"],
    "reporter_id": ["r1", "r1", None, "r2", "r3", "r4"],
    "reporter_type": ["medewerker", "medewerker", "anoniem", "partner", "bewoner", "bewoner"],
})
MENTIONS = pd.DataFrame([
    # L1: address + two residents (co-mention, resident role) ; L2: a person row carrying the address
    ["L1-M1", "L1", "address", "adres", "A1"],
    ["L1-M2", "L1", "person", "bewoner", "P1"],
    ["L1-M3", "L1", "person", "huurder", "P2"],
    ["L1-M4", "L1", "person", "verhuurder", "LL"],     # landlord: not a resident
    ["L2-M1", "L2", "person", "", "P3"],
    ["L2-M1~address", "L2", "address", "", "A1"],
    ["L3-M1", "L3", "address", "adres", "A1"],
    ["L3-M2", "L3", "person", "bewoner", "P4"],
    # C1, C2: two tenants, each alone in their report with the same van (co-mention USES)
    ["C1-M1", "C1", "person", "huurder", "T1"],
    ["C1-M2", "C1", "vehicle", "voertuig", "V1"],
    ["C2-M1", "C2", "person", "huurder", "T2"],
    ["C2-M2", "C2", "vehicle", "voertuig", "V1"],
    ["S1-M1", "S1", "person", "betrokkene", "PZ"],
], columns=["mention_id", "report_id", "entity_type", "role", "entity_id"])
LINKS = pd.DataFrame([["L2-M1", "L2-M1~address", "LIVES_AT", "L2"]],
                     columns=["src_mention_id", "dst_mention_id", "rel_type", "report_id"])
CLUSTERS = pd.DataFrame({"report_id": ["L1", "L2", "L3", "C1", "C2"],
                         "cluster_id": ["c_land", "c_land", "c_land", "c_cann", "c_cann"]})
ENTITIES = pd.DataFrame({"entity_id": ["A1", "V1"], "label": ["Kerkstraat 1", "12-ABC-3"]})


def test_build_contexts_gathers_relations_from_links_and_comentions():
    cs = {c.cluster_id: c for c in build_contexts(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, NOW, POLICY)}
    assert sorted(cs) == ["c_cann", "c_land"]
    land = cs["c_land"]
    assert land.residence == (("P1", "A1"), ("P2", "A1"), ("P3", "A1"), ("P4", "A1"))  # landlord LL not a resident
    assert [r.report_id for r in land.reports] == ["L1", "L2", "L3"]
    assert land.reports[2].reporter_id is None and land.reports[0].received_at == dt.date(2024, 6, 1)
    assert cs["c_cann"].uses == (("T1", "V1"), ("T2", "V1"))
    assert ("C1", "V1") in cs["c_cann"].mentioned and ("L2", "A1") in land.mentioned


def test_score_clusters_columns_ranking_and_explanations():
    out = score_clusters(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=NOW)
    assert list(out.columns) == SCORED_COLUMNS
    assert out["rank"].tolist() == [1, 2]
    assert out["score"].is_monotonic_decreasing
    land = out.set_index("cluster_id").loc["c_land"]
    assert land["n_reports"] == 3 and land["n_reporters"] == 2  # r1 twice + one anonymous
    assert land["categories"] == ["overbewoning", "illegale_onderverhuur"]
    sigs = {s["name"]: s for s in json.loads(land["signals"])}
    assert set(sigs) == set(SIGNALS)
    assert sigs["persons_per_address"]["value"] == 4
    assert sigs["persons_per_address"]["sentence"] == "4 persons registered at or reported living at Kerkstraat 1."
    assert all({"name", "value", "weight", "points", "sentence", "inputs"} <= set(s) for s in sigs.values())
    assert land["score"] == pytest.approx(sum(s["points"] for s in sigs.values()), abs=0.01)
    cann = {s["name"]: s for s in json.loads(out.set_index("cluster_id").loc["c_cann", "signals"])}
    assert cann["shared_vehicle_account"]["value"] == 2
    assert cann["recency"]["inputs"]["newest"] == "2024-02-01" and cann["recency"]["value"] == 0.35


def test_score_is_deterministic_and_ties_break_on_cluster_id():
    a = score_clusters(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=NOW)
    b = score_clusters(CLUSTERS.iloc[::-1], REPORTS.iloc[::-1], MENTIONS.iloc[::-1], LINKS, ENTITIES, now=NOW)
    pd.testing.assert_frame_equal(a, b)
    twins = pd.DataFrame({"report_id": ["C1", "C2", "L1", "L3"], "cluster_id": ["c_b", "c_b", "c_a", "c_a"]})
    same = REPORTS.assign(category="overig", reporter_id=None, received_at="2024-06-30")
    bare = MENTIONS[MENTIONS["entity_type"] == "vehicle"]
    out = score_clusters(twins, same, bare, None, None, now=NOW)
    assert out["score"].nunique() == 1 and out["cluster_id"].tolist() == ["c_a", "c_b"]


def test_reason_names_the_strongest_signals():
    sigs = [Signal("n_reports", 12, "12 reports in the cluster."), Signal("recency", 0.0, "Old."),
            Signal("persons_per_address", 10, "10 persons at X.")]
    score, records, reason = explain(sigs, POLICY)
    assert reason == "10 persons at X; 12 reports in the cluster."  # most points first
    assert score == 15.0 and records[1]["points"] == 0.0  # 10 + 5 with the packaged weights


def test_now_defaults_to_newest_report():
    assert data_now(REPORTS) == dt.date(2024, 6, 30)
    default = score_clusters(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES)
    explicit = score_clusters(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=dt.date(2024, 6, 30))
    pd.testing.assert_frame_equal(default, explicit)


def test_no_clusters_gives_empty_frame_with_columns():
    out = score_clusters(CLUSTERS.iloc[:0], REPORTS, MENTIONS, LINKS, ENTITIES, now=NOW)
    assert out.empty and list(out.columns) == SCORED_COLUMNS


def _rescored(parts: pd.DataFrame, scored: pd.DataFrame, when: dt.date) -> pd.DataFrame:
    """The rows rescore gives from ``parts`` at ``when`` (counts and categories from ``scored``), ranked."""
    from linkage.triage.scoring import rank_scored, rescore

    scores, signals, reasons, _ = rescore(parts, when)
    base = scored.set_index("cluster_id").loc[parts["cluster_id"]].reset_index()
    return rank_scored([base.assign(score=scores, signals=signals, reason=reasons)])


@pytest.mark.parametrize("later", [-30, 0, 1, 45, 400])
def test_rescore_equals_scoring_again_at_the_new_date(later):
    from linkage.triage.scoring import PART_COLUMNS, rescore, score_with_parts

    before, parts = score_with_parts(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=NOW)
    pd.testing.assert_frame_equal(before, score_clusters(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=NOW))
    assert list(parts.columns) == PART_COLUMNS
    when = NOW + dt.timedelta(days=later)
    want = score_clusters(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=when)
    pd.testing.assert_frame_equal(_rescored(parts, before, when), want)
    # the values routing reads are the signals' values at ``when``
    _, _, _, values = rescore(parts, when)
    for cid, vals in zip(parts["cluster_id"], values):
        sigs = json.loads(want.set_index("cluster_id").loc[cid, "signals"])
        assert vals == {r["name"]: float(r["value"]) for r in sigs}


def test_rescore_survives_a_parquet_round_trip_and_quotes_in_sentences(tmp_path):
    """Parts are kept as parquet between runs; a sentence with quotes and backslashes stays as it was."""
    from linkage.triage.scoring import score_with_parts

    ents = ENTITIES.assign(label=ENTITIES["label"].astype(str) + ' "quoted" \\ x')
    before, parts = score_with_parts(CLUSTERS, REPORTS, MENTIONS, LINKS, ents, now=NOW)
    parts.to_parquet(tmp_path / "p.parquet", index=False)
    back = pd.read_parquet(tmp_path / "p.parquet")
    when = NOW + dt.timedelta(days=10)
    want = score_clusters(CLUSTERS, REPORTS, MENTIONS, LINKS, ents, now=when)
    assert any('\\"quoted\\"' in s for s in want["signals"])
    pd.testing.assert_frame_equal(_rescored(back, before, when), want)


def test_rescore_shares_records_by_dates_and_handles_undated_clusters():
    """rescore makes one recency record per (newest, oldest): clusters sharing a newest date (with different
    oldest dates), a cluster with an undated report and a cluster without any date all equal scoring them
    again."""
    from linkage.triage.scoring import score_with_parts

    reports = pd.concat([REPORTS, pd.DataFrame({
        "report_id": ["D1", "D2", "D3", "U1", "U2"],
        # D*: c_land's newest date (another oldest) plus an undated report
        "received_at": ["2024-06-10", "2024-06-25", None, None, None],
        "category": ["overbewoning", "drugs", "overig", "overig", "drugs"],
        "reporter_id": ["r7", "r8", None, "r9", None],
        "reporter_type": ["bewoner", "bewoner", "anoniem", "bewoner", "anoniem"],
    })], ignore_index=True)
    mentions = pd.concat([MENTIONS, pd.DataFrame([
        ["D1-M1", "D1", "person", "bewoner", "PD"], ["D2-M1", "D2", "person", "bewoner", "PD"],
        ["D3-M1", "D3", "person", "bewoner", "PD"],
        ["U1-M1", "U1", "person", "bewoner", "PU"], ["U2-M1", "U2", "person", "bewoner", "PU"],
    ], columns=MENTIONS.columns)], ignore_index=True)
    clusters = pd.concat([CLUSTERS, pd.DataFrame({"report_id": ["D1", "D2", "D3", "U1", "U2"],
                                                  "cluster_id": ["c_d", "c_d", "c_d", "c_u", "c_u"]})],
                         ignore_index=True)
    before, parts = score_with_parts(clusters, reports, mentions, LINKS, ENTITIES, now=NOW)
    assert parts.set_index("cluster_id").loc["c_u", "newest"] == ""
    for later in (3, 200):
        when = NOW + dt.timedelta(days=later)
        want = score_clusters(clusters, reports, mentions, LINKS, ENTITIES, now=when)
        pd.testing.assert_frame_equal(_rescored(parts, before, when), want)


def test_recency_records_equal_the_record_of_each_clusters_own_dates():
    """_recency_records fills each cluster's oldest date into a record made once per newest date; the text
    equals the record made from the cluster's own dates, also for one date, no date and the stand-in's date."""
    import json

    from linkage.triage.policy import as_policy
    from linkage.triage.scoring import _record, _recency_records
    from linkage.triage.signals import ClusterContext, ReportInfo

    policy = as_policy(None)
    when = dt.date(2024, 7, 1)
    pairs = [("2024-06-10", "2024-01-02"), ("2024-06-10", "2023-12-31"), ("2024-06-10", "2024-06-10"),
             ("", ""), ("2024-05-01", "0001-01-01"), ("0001-01-01", "0001-01-01")]
    got = _recency_records([n for n, _ in pairs], [o for _, o in pairs], when, policy)
    for (newest, oldest), (points, value, text, sentence) in zip(pairs, got):
        dates = tuple(ReportInfo(f"R{i}", dt.date.fromisoformat(d), None)
                      for i, d in enumerate(sorted({newest, oldest} - {""})))
        sig = recency(ClusterContext("c", when, dates, policy=policy))
        rec = _record(sig, policy)
        assert (points, value, sentence) == (rec["points"], float(sig.value), sig.sentence)
        assert text == json.dumps(rec, ensure_ascii=False, default=str)


def test_recency_level_moved_agrees_with_the_signal_s_level_rule():
    """The level rule is written twice: a loop in ``ScoringPolicy.recency_level`` (what the recency signal
    reads) and a searchsorted in ``recency_level_moved`` (what decides which stored rows an incremental run
    re-uses). They must agree, future dates included."""
    import random

    from linkage.triage.policy import load_scoring_policy
    from linkage.triage.scoring import recency_level_moved

    policy = load_scoring_policy()
    rng = random.Random(7)
    base = dt.date(2024, 1, 1)
    newest, befores, nows = [], [], []
    for _ in range(3000):
        newest.append(base + dt.timedelta(days=rng.randint(-50, 900)))
        befores.append(base + dt.timedelta(days=rng.randint(0, 800)))
        nows.append(base + dt.timedelta(days=rng.randint(0, 800)))
    for n, b, w in zip(newest, befores, nows):
        def lv(at):
            level = policy.recency_level(max(0, (at - n).days))
            return None if level is None else level.within_days
        want = lv(b) != lv(w)
        assert recency_level_moved([n.isoformat()], b, w, policy).tolist() == [want], (n, b, w)


def _many_clusters(copies: int) -> tuple[pd.DataFrame, ...]:
    """CLUSTERS, REPORTS, MENTIONS, LINKS and ENTITIES repeated ``copies`` times under other ids (every copy
    its own reports, mentions and entities), the copies' clusters of different sizes and dates."""
    def ids(frame: pd.DataFrame, cols: list[str], i: int) -> pd.DataFrame:
        return frame.assign(**{c: frame[c].astype(str) + f"~{i}" for c in cols})

    parts: list[list[pd.DataFrame]] = [[], [], [], [], []]
    for i in range(copies):
        keep = CLUSTERS if i % 3 else CLUSTERS[CLUSTERS["report_id"] != "L3"]  # some clusters smaller
        parts[0].append(ids(keep, ["report_id", "cluster_id"], i))
        day = (dt.date(2024, 6, 30) - dt.timedelta(days=7 * i)).isoformat()
        parts[1].append(ids(REPORTS.assign(received_at=[day] + REPORTS["received_at"].tolist()[1:]), ["report_id"], i))
        parts[2].append(ids(MENTIONS, ["mention_id", "report_id", "entity_id"], i))
        parts[3].append(ids(LINKS, ["src_mention_id", "dst_mention_id", "report_id"], i))
        parts[4].append(ids(ENTITIES, ["entity_id"], i))
    return tuple(pd.concat(p, ignore_index=True) for p in parts)


def test_scoring_in_several_processes_gives_what_one_process_gives():
    """Forked workers each score a run of consecutive clusters; the rows, their order and the parts are
    those one process gives (the small set is forced into two and three processes with min_parallel=0)."""
    from linkage.triage.scoring import score_with_parts

    clusters, reports, mentions, links, ents = _many_clusters(25)
    one, one_parts = score_with_parts(clusters, reports, mentions, links, ents, now=NOW)
    assert len(one) == 50
    for n in (2, 3):
        got, got_parts = score_with_parts(clusters, reports, mentions, links, ents, now=NOW, processes=n,
                                          min_parallel=0)
        pd.testing.assert_frame_equal(got, one)
        pd.testing.assert_frame_equal(got_parts, one_parts)
    pd.testing.assert_frame_equal(score_clusters(clusters, reports, mentions, links, ents, now=NOW, processes=2,
                                                 min_parallel=0), one)
    # below min_parallel: one process, same rows
    pd.testing.assert_frame_equal(score_clusters(clusters, reports, mentions, links, ents, now=NOW, processes=2,
                                                 min_parallel=10_000), one)


def _dies_in_a_worker(parent_pid, chunk, arg):
    """A chunk function for scoring._in_processes: kills the forked worker that runs it (SIGKILL, as the
    kernel's OOM killer sends); in the parent process it returns the chunk."""
    import os
    import signal

    if os.getpid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    return chunk


def test_a_scoring_worker_killed_is_a_clear_error_not_a_broken_pool():
    """A scoring worker process that dies stops the stage with a LinkageError that names it and the way round
    it, not a bare BrokenProcessPool."""
    import os

    from linkage.errors import LinkageError
    from linkage.triage import scoring

    with pytest.raises(LinkageError, match=r"scoring clusters: a worker process stopped.*processes = 1"):
        scoring._in_processes(_dies_in_a_worker, os.getpid(), [["c1"], ["c2"]], None)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_chunks_are_consecutive_nonempty_runs_of_about_equal_work(n):
    from linkage.triage.scoring import _chunks

    cids = [f"c{i:03d}" for i in range(40)]
    sizes = {c: (50 if i == 3 else 1 + i % 4) for i, c in enumerate(cids)}  # one large cluster
    chunks = _chunks(cids, sizes, n)
    assert len(chunks) == n and all(chunks)
    assert [c for ch in chunks for c in ch] == cids  # joined in order: the clusters in order
    total = sum(sizes.values())
    if n > 1:  # no run takes much more than its share (a run may hold one cluster larger than the share)
        assert max(sum(sizes[c] for c in ch) for ch in chunks) <= total / n + max(sizes.values())
    assert _chunks(cids[:2], sizes, 5) == [["c000"], ["c001"]]


def test_scoring_workers_gathering_their_own_clusters_give_what_one_process_gives():
    """Forked workers gather only their clusters' inputs; a link whose target mention is in another cluster's
    report (here: in the last copy, scored by another worker), a link to an unclustered report's mention and a
    cluster whose reports are all missing give the rows and parts one process gives."""
    from linkage.triage.scoring import score_with_parts

    clusters, reports, mentions, links, ents = _many_clusters(12)
    across = pd.DataFrame([
        ["L1-M2~0", "C1-M2~11", "USES", "L1~0"],          # person in copy 0 uses the van of copy 11
        ["C2-M1~1", "L1-M1~10", "LIVES_AT", "C2~1"],      # tenant of copy 1 lives at copy 10's address
        ["L3-M2~2", "S1-M1~5", "DIRECTOR_OF", "L3~2"],    # target in an unclustered report
        ["L1-M3~3", "no-such-mention", "LIVES_AT", "L1~3"],
    ], columns=links.columns)
    links = pd.concat([links, across], ignore_index=True)
    clusters = pd.concat([clusters, pd.DataFrame({"report_id": ["gone"], "cluster_id": ["c_gone"]})],
                         ignore_index=True)
    one, one_parts = score_with_parts(clusters, reports, mentions, links, ents, now=NOW)
    assert "c_gone" not in set(one["cluster_id"]) and len(one) == 24
    for n in (2, 3, 5):
        got, got_parts = score_with_parts(clusters, reports, mentions, links, ents, now=NOW, processes=n,
                                          min_parallel=0)
        pd.testing.assert_frame_equal(got, one)
        pd.testing.assert_frame_equal(got_parts, one_parts)


def test_entities_given_as_a_label_reader_give_what_the_table_gives():
    """``entities`` may be a function giving the labels of the ids asked for (each scoring process asks for its
    own clusters' entities): the rows are those the entities table gives."""
    from linkage.triage.scoring import score_with_parts

    clusters, reports, mentions, links, ents = _many_clusters(6)
    table = dict(zip(ents["entity_id"], ents["label"]))
    asked: list = []

    def reader(ids):
        asked.append(len(ids))
        return {e: table[e] for e in ids if e in table}

    one, parts = score_with_parts(clusters, reports, mentions, links, ents, now=NOW)
    for n in (1, 2):
        got, got_parts = score_with_parts(clusters, reports, mentions, links, reader, now=NOW, processes=n,
                                          min_parallel=0)
        pd.testing.assert_frame_equal(got, one)
        pd.testing.assert_frame_equal(got_parts, parts)
    assert asked and any("Kerkstraat 1" in s for s in one["signals"])


def test_routing_in_the_scoring_processes_gives_what_routing_all_rows_gives():
    """``router`` routes each scoring process's clusters; the routing rows, made one frame, are what one routing
    of all the scored rows gives (per cluster: its score, categories and signal values)."""
    from linkage.triage import SIGNALS, route
    from linkage.triage.routing import ROUTE_COLUMNS, route_rows
    from linkage.triage.scoring import score_with_parts

    clusters, reports, mentions, links, ents = _many_clusters(12)
    plain, parts = score_with_parts(clusters, reports, mentions, links, ents, now=NOW)
    values = {c: dict(zip(SIGNALS, v)) for c, v in zip(parts["cluster_id"], parts["values"])}
    want = plain.merge(route(plain[["cluster_id", "score", "categories"]].assign(
        signals=[values[c] for c in plain["cluster_id"]])), on="cluster_id", how="left")
    assert want["agencies"].map(len).gt(0).any()
    for n in (1, 2, 3):
        got, got_parts = score_with_parts(clusters, reports, mentions, links, ents, now=NOW, processes=n,
                                          min_parallel=0, router=route_rows)
        routed = pd.DataFrame(got.pop("routed").tolist(), columns=ROUTE_COLUMNS)
        pd.testing.assert_frame_equal(got.merge(routed, on="cluster_id", how="left"), want)
        pd.testing.assert_frame_equal(got_parts, parts)


# ------------------------------------------------------------------------------------------------ inputs digest
def test_inputs_digest_changes_with_every_input_the_signals_read_and_only_with_those():
    """The digest changes when a report's id, date or category changes, when the reports share their named
    reporters otherwise, when a mention or relation changes and when a relation entity's label changes; not
    with the reference date, the reporter ids themselves, or the label of an entity in no relation."""
    import dataclasses

    from linkage.triage.scoring import inputs_digest

    base = ctx(reports=reps(("R1", dt.date(2024, 5, 1), "drugs", "a"), ("R2", dt.date(2024, 5, 2), "drugs", "b")),
               mentioned=(("R1", "A"), ("R1", "P"), ("R2", "A")), residence=(("P", "A"),),
               labels={"A": "Kerkstraat 1", "P": "Jan", "X": "unnamed"})
    digest = inputs_digest(base)

    def other(**kw) -> str:
        return inputs_digest(dataclasses.replace(base, **kw))

    same = [other(now=NOW + dt.timedelta(days=400)),
            other(reports=reps(("R1", dt.date(2024, 5, 1), "drugs", "x"), ("R2", dt.date(2024, 5, 2), "drugs", "y"))),
            other(labels={"A": "Kerkstraat 1", "P": "Jan", "X": "other"})]
    assert same == [digest] * len(same)
    changed = [other(cluster_id="c_other"),
               other(reports=reps(("R1", dt.date(2024, 5, 1), "drugs", "a"), ("R3", dt.date(2024, 5, 2), "drugs", "b"))),
               other(reports=reps(("R1", dt.date(2024, 5, 3), "drugs", "a"), ("R2", dt.date(2024, 5, 2), "drugs", "b"))),
               other(reports=reps(("R1", dt.date(2024, 5, 1), "drugs", "a"), ("R2", dt.date(2024, 5, 2), None, "b"))),
               other(reports=reps(("R1", dt.date(2024, 5, 1), "drugs", "a"), ("R2", dt.date(2024, 5, 2), "drugs", "a"))),
               other(reports=reps(("R1", dt.date(2024, 5, 1), "drugs", "a"), ("R2", dt.date(2024, 5, 2), "drugs", None))),
               other(mentioned=(("R1", "A"), ("R1", "P"), ("R2", "B"))),
               other(residence=()), other(uses=(("P", "A"),)),
               other(labels={"A": "Kerkstraat 2", "P": "Jan", "X": "unnamed"}),
               other(labels={"P": "Jan", "X": "unnamed"})]
    assert digest not in changed and len(set(changed)) == len(changed)


def test_score_with_parts_leaves_out_the_clusters_whose_inputs_digest_is_known():
    """A cluster whose digest is the one given is neither scored nor given parts and is named in ``unchanged``;
    a cluster given another digest is scored as without ``known``, each in any number of processes."""
    from linkage.triage.scoring import score_with_parts

    scored, parts = score_with_parts(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=NOW)
    ids = parts["cluster_id"].tolist()
    assert len(ids) >= 2
    known = {ids[0]: parts["inputs"][0], ids[1]: "0" * 32}
    for n in (1, 2):
        same: list = []
        got, got_parts = score_with_parts(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, now=NOW, known=known,
                                          unchanged=same, processes=n, min_parallel=1)
        assert same == [ids[0]]
        want = parts[parts["cluster_id"] != ids[0]].reset_index(drop=True)
        pd.testing.assert_frame_equal(got_parts, want)
        assert got["cluster_id"].tolist() == [c for c in scored["cluster_id"] if c != ids[0]]


@pytest.mark.parametrize("seed", [1, 2])
def test_rank_scored_orders_as_the_pandas_sort_by_score_then_id(seed):
    """rank_scored's order (found by Arrow when it can) is that of a stable pandas sort by score (descending),
    then cluster id, over tied scores, non-ASCII ids, object and string columns; NaN scores, missing ids and
    ids that are not text are sorted by pandas."""
    from linkage.triage.scoring import _rank_order, rank_scored

    rng = np.random.default_rng(seed)
    n = 300
    ids = [f"{rng.choice(['C', 'c', 'É', 'Z', '€'])}{int(rng.integers(0, 60)):03d}" for _ in range(n)]
    frame = pd.DataFrame({"cluster_id": ids, "score": rng.integers(0, 5, n) / 2.0, "tag": np.arange(n)})

    def want(f):
        return f.sort_values(["score", "cluster_id"], ascending=[False, True], kind="stable")["tag"].tolist()

    for f in (frame, frame.astype({"cluster_id": object}), frame.assign(score=frame["score"].astype(int))):
        assert _rank_order(f) is not None
        got = rank_scored([f], columns=None)
        assert got["tag"].tolist() == want(f)
        assert got["rank"].tolist() == list(range(1, n + 1))
    odd = [frame.assign(score=frame["score"].where(frame["tag"] % 7 != 0)),
           frame.assign(cluster_id=frame["cluster_id"].astype(object).where(frame["tag"] % 5 != 0, None)),
           frame.assign(cluster_id=np.arange(n)[::-1]),
           frame.assign(score=frame["score"].astype(np.float16)),  # Arrow's sort has no half floats
           frame.assign(cluster_id=pd.Categorical(ids, categories=sorted(set(ids))[::-1]))]
    for f in odd:
        assert _rank_order(f) is None
        assert rank_scored([f], columns=None)["tag"].tolist() == want(f)
