"""Scoring's gathering (linkage.triage.scoring._gather): the plain-Python joins for few rows (_joined_small) give
exactly what the frame joins (_joined, any size) give: the same dict keys in the same order, the same tuples in the
same order, the same Python types (inputs_digest hashes them with marshal), on random small data of every kind."""
from __future__ import annotations

import dataclasses
import datetime as dt
import random

import numpy as np
import pandas as pd
import pytest

from linkage.triage import scoring
from linkage.triage.policy import as_policy

NOW = dt.date(2025, 6, 1)
TYPES = ["person", "address", "business", "vehicle", "bank_account", "phone", None]
ROLES = ["bewoner", " Bewoner ", "HUURDER", "eigenaar", "", "  ", None]
RELS = ["LIVES_AT", "DIRECTOR_OF", "OWNER_OF", "LOCATED_AT", "USES", "KNOWS", None]
DATES = ["2024-05-01", "2024-12-31T10:00:00", "2025-02-30", "garbage", "", None, "2023-01-09"]


def _random_inputs(rng: random.Random, text_dtype: bool):
    """(clusters, reports, mentions, links, entities, only) of a few clusters; missing values of every kind,
    mentions of reports in no cluster, links across clusters and to nowhere."""
    n_rep = rng.randint(0, 14)
    rids = [f"R{i}" for i in range(n_rep)]
    n_cl = rng.randint(1, 5)
    cmap = [(r, f"c{rng.randrange(n_cl)}") for r in rids if rng.random() < 0.85]
    if cmap and rng.random() < 0.2:  # a report in two clusters, and a clustered report without a row
        cmap.append((cmap[0][0], "c9"))
        cmap.append(("R-gone", "c8"))
    clusters = pd.DataFrame(cmap or [("R-none", "c0")], columns=["report_id", "cluster_id"])
    rep_rows = [(r, rng.choice(DATES), rng.choice(["drugs", "fraude", None, "overig"]),
                 rng.choice(["a", "b", "", "  ", None, "c"])) for r in rids]
    if rep_rows and rng.random() < 0.3:  # the same report id twice (once with other fields)
        rep_rows.append(rep_rows[0])
        rep_rows.append((rep_rows[0][0], "2020-01-01", "zzz", "z"))
    rng.shuffle(rep_rows)
    reports = pd.DataFrame(rep_rows, columns=["report_id", "received_at", "category", "reporter_id"])
    ents = [f"E{i}" for i in range(rng.randint(1, 12))]
    men_rows = []
    for j in range(rng.randint(0, 40)):
        rid = rng.choice(rids + ["R-unknown"]) if rids else "R-unknown"
        men_rows.append((f"M{j}", rid, rng.choice(TYPES), rng.choice(ROLES),
                         rng.choice(ents + [None])))
    mentions = pd.DataFrame(men_rows, columns=["mention_id", "report_id", "entity_type", "role", "entity_id"])
    mids = mentions["mention_id"].tolist() + ["M-nowhere"]
    link_rows = [(rng.choice(mids), rng.choice(mids), rng.choice(RELS), "x") for _ in range(rng.randint(0, 30))]
    links = pd.DataFrame(link_rows, columns=["src_mention_id", "dst_mention_id", "rel_type", "report_id"])
    entities = pd.DataFrame({"entity_id": ents, "label": [f"label {e}" if rng.random() < 0.9 else None
                                                          for e in ents]})
    if text_dtype:
        clusters, reports, mentions, links, entities = (f.astype("str") for f in
                                                        (clusters, reports, mentions, links, entities))
    cids = sorted(set(clusters["cluster_id"]))
    only = None if rng.random() < 0.4 else rng.sample(cids, rng.randint(0, len(cids)))
    return clusters, reports, mentions, links, entities, only


def _same(a, b, where="") -> None:
    """a == b, with the same types all the way down and dict keys in the same order."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif dataclasses.is_dataclass(a):
        _same(dataclasses.astuple(a), dataclasses.astuple(b), where)
    else:
        assert a == b, (where, a, b)


def _gathered(monkeypatch, small: bool, args, only, entities):
    monkeypatch.setattr(scoring, "SMALL_GATHER_ROWS", 10**9 if small else -1)
    asked: list = []

    def reader(ids):
        asked.append(list(ids))
        return {e: f"L{e}" for e in ids}

    ent = reader if isinstance(entities, str) else entities
    g = scoring._gather(*args[:4], ent, NOW, as_policy(None), only=only)
    return g, asked


def _fields(g):
    return (g.rep_groups, g.relations, g.mentioned, g.types, dict(g.labels), g.sizes)


@pytest.mark.parametrize("text_dtype", [False, True])
def test_small_gathering_gives_exactly_what_the_frame_joins_give(monkeypatch, text_dtype):
    rng = random.Random(7 + text_dtype)
    took_small = 0
    for case in range(250):
        clusters, reports, mentions, links, entities, only = _random_inputs(rng, text_dtype)
        if case % 7 == 3:  # no links at all, or None
            links = links.iloc[:0] if case % 2 else None
        if case % 11 == 5:  # no role column
            mentions = mentions.drop(columns="role")
        if case % 13 == 6:  # no date, category nor reporter columns
            reports = reports[["report_id"]]
        args = (clusters, reports, mentions, links)
        for ent in (entities, "reader"):
            old, old_asked = _gathered(monkeypatch, False, args, only, ent)
            new, new_asked = _gathered(monkeypatch, True, args, only, ent)
            _same(_fields(old), _fields(new), f"case {case}")
            assert old_asked == new_asked
        took_small += scoring._small_enough(clusters[["report_id", "cluster_id"]].astype(str), reports, mentions,
                                            links)
    assert took_small > 200  # the property is about the small path: most inputs take it


def test_missing_ids_in_links_take_the_frame_joins(monkeypatch):
    """A missing link end or mention id (a frame join may match a missing value with a missing one) takes
    _joined: _small_enough says no."""
    clusters = pd.DataFrame({"report_id": ["R1"], "cluster_id": ["c1"]})
    reports = pd.DataFrame({"report_id": ["R1"], "received_at": ["2024-01-01"]})
    mentions = pd.DataFrame({"mention_id": ["M1", None], "report_id": ["R1", "R1"],
                             "entity_type": ["person", "address"], "entity_id": ["P", "A"]})
    links = pd.DataFrame({"src_mention_id": ["M1"], "dst_mention_id": [None], "rel_type": ["LIVES_AT"]})
    assert not scoring._small_enough(clusters, reports, mentions, links)
    assert not scoring._small_enough(clusters, reports, mentions, links.fillna("M1"))
    assert scoring._small_enough(clusters, reports, mentions.fillna("M2"), links.fillna("M1"))
    assert scoring._small_enough(clusters, reports, mentions, None)
    monkeypatch.setattr(scoring, "SMALL_GATHER_ROWS", 2)
    assert not scoring._small_enough(clusters, reports, mentions, None)


def test_small_gathering_of_the_signals_fixture(monkeypatch):
    """The hand-made data of tests/test_signals.py: the same contexts both ways (and the digests)."""
    from tests.test_signals import CLUSTERS, ENTITIES, LINKS, MENTIONS, POLICY, REPORTS

    got = {}
    for small in (False, True):
        monkeypatch.setattr(scoring, "SMALL_GATHER_ROWS", 10**9 if small else -1)
        g = scoring._gather(CLUSTERS, REPORTS, MENTIONS, LINKS, ENTITIES, NOW, POLICY)
        got[small] = (_fields(g), [scoring.inputs_digest(scoring._context(g, c)) for c in g.rep_groups])
    _same(got[False], got[True])
    assert got[True][1]


def test_numeric_ids_are_text_both_ways(monkeypatch):
    """Ids given as numbers are joined as their text, the same both ways."""
    clusters = pd.DataFrame({"report_id": [1, 2, 3], "cluster_id": [7, 7, 8]})
    reports = pd.DataFrame({"report_id": [1, 2, 3], "received_at": ["2024-01-01", None, "2024-02-01"],
                            "category": ["a", "b", None], "reporter_id": [5, np.nan, 6]})
    mentions = pd.DataFrame({"mention_id": [10, 11, 12, 13], "report_id": [1, 1, 2, 3],
                             "entity_type": ["person", "address", "person", "vehicle"],
                             "role": ["bewoner", None, "huurder", None], "entity_id": [100, 200, 100, 300]})
    links = pd.DataFrame({"src_mention_id": [10, 12], "dst_mention_id": [11, 13], "rel_type": ["LIVES_AT", "USES"]})
    got = []
    for small in (False, True):
        monkeypatch.setattr(scoring, "SMALL_GATHER_ROWS", 10**9 if small else -1)
        for only in (None, ["7"]):
            got.append(_fields(scoring._gather(clusters, reports, mentions, links, None, NOW, as_policy(None),
                                               only=only)))
    _same(got[:2], got[2:])
