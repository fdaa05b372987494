"""The main job end to end on a small generated set with known truth (issues 4 and 6)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import shutil
import sqlite3

import pandas as pd
import pytest

import cli
from linkage.generate import generate
from linkage.inspect import escape_cell, export_csv
from linkage.pipeline import RunSummary, run
from linkage.store import EmbeddedStore

#: What each planted network kind must be routed to (among possibly more agencies).
EXPECTED_AGENCY = {"cannabis": "politie", "landlord": "woonfraude", "laundering": "belastingdienst",
                   "strawman": "burgerzaken"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gen")
    generate(1500, 7, folder)
    return folder


@pytest.fixture(scope="module")
def ran(generated, tmp_path_factory):
    store = tmp_path_factory.mktemp("run") / "s.db"
    summary = run([generated / "reports.csv", generated / "mentions.csv"], store)
    return store, summary


def _partition(series: pd.Series) -> set[frozenset]:
    """Groups of members as a set of frozensets (ids of the groups do not matter)."""
    return {frozenset(g.index) for _, g in series.groupby(series)}


def test_planted_networks_are_the_top_clusters_and_routed_as_expected(generated, ran):
    store_path, summary = ran
    truth = pd.read_csv(generated / "truth_reports.csv", dtype=str).fillna("")
    with EmbeddedStore(store_path) as store:
        members = store.report_clusters().merge(truth, on="report_id")
        clusters = store.clusters()
    top = clusters.head(10)
    assert len(top) == 10
    planted = 0
    for row in top.itertuples():
        sub = members[members.cluster_id == row.cluster_id]
        network = sub.network_id.value_counts()
        assert row.reason
        if network.index[0] == "" or network.iloc[0] / len(sub) < 0.8:
            continue  # background or mixed
        planted += 1
        kind = sub.loc[sub.network_id == network.index[0], "network_kind"].iloc[0]
        assert EXPECTED_AGENCY[kind] in json.loads(row.agencies), (row.rank, kind, row.agencies)
    assert planted >= 8, f"only {planted} of the top 10 clusters are (mostly) one planted network"


def test_every_cluster_is_routed_or_says_why(ran):
    store_path, _ = ran
    with EmbeddedStore(store_path) as store:
        clusters = store.clusters()
    assert len(clusters) > 0
    for row in clusters.itertuples():
        agencies = json.loads(row.agencies)
        assert agencies or row.unrouted_reason, row.cluster_id
        if len(set(agencies) - {"riec"}) >= 3:
            assert "riec" in agencies


def test_same_input_gives_same_ids_and_clusters(generated, ran, tmp_path):
    store_path, _ = ran
    other = tmp_path / "again.db"
    run([generated / "reports.csv", generated / "mentions.csv"], other)
    with EmbeddedStore(store_path) as a, EmbeddedStore(other) as b:
        pd.testing.assert_frame_equal(a.mention_entities(), b.mention_entities())
        pd.testing.assert_frame_equal(a.report_clusters(), b.report_clusters())
        pd.testing.assert_frame_equal(a.clusters()[["cluster_id", "rank", "score"]],
                                      b.clusters()[["cluster_id", "rank", "score"]])


def test_rerun_without_new_reports_changes_nothing(ran, tmp_path):
    store_path, _ = ran
    copy = tmp_path / "copy.db"
    with EmbeddedStore(store_path) as src:
        src.conn.execute("VACUUM INTO ?", (str(copy),))
    run([], copy)
    with EmbeddedStore(store_path) as a, EmbeddedStore(copy) as b:
        assert _partition(a.mention_entities().set_index("mention_id")["entity_id"]) == \
            _partition(b.mention_entities().set_index("mention_id")["entity_id"])
        pd.testing.assert_frame_equal(a.report_clusters(), b.report_clusters())


def _split(generated: Path, out: Path, first: int) -> tuple[list[Path], list[Path]]:
    """Write the first ``first`` reports (and their mentions) and the rest into two file pairs."""
    reports = pd.read_csv(generated / "reports.csv", dtype=str, keep_default_na=False)
    mentions = pd.read_csv(generated / "mentions.csv", dtype=str, keep_default_na=False)
    head_ids = set(reports.report_id.iloc[:first])
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for name, keep in (("a", True), ("b", False)):
        r = reports[reports.report_id.isin(head_ids) == keep]
        m = mentions[mentions.report_id.isin(head_ids) == keep]
        r.to_csv(out / f"reports_{name}.csv", index=False)
        m.to_csv(out / f"mentions_{name}.csv", index=False)
        parts.append([out / f"reports_{name}.csv", out / f"mentions_{name}.csv"])
    return parts[0], parts[1]


def _rounds(generated: Path, out: Path, bounds: tuple[int, ...]) -> list[list[Path]]:
    """The generated reports cut at ``bounds`` (report positions; the last round takes the rest), each round's
    reports and their mentions written as a file pair of its own: the files of one run per round."""
    reports = pd.read_csv(generated / "reports.csv", dtype=str, keep_default_na=False)
    mentions = pd.read_csv(generated / "mentions.csv", dtype=str, keep_default_na=False)
    cuts = (0,) + tuple(bounds) + (len(reports),)
    rounds = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        ids = set(reports.report_id.iloc[a:b])
        folder = out / f"round{i}"
        folder.mkdir()
        reports[reports.report_id.isin(ids)].to_csv(folder / "reports.csv", index=False)
        mentions[mentions.report_id.isin(ids)].to_csv(folder / "mentions.csv", index=False)
        rounds.append([folder / "reports.csv", folder / "mentions.csv"])
    return rounds


def test_incremental_run_equals_full_run_with_the_same_model(generated, tmp_path, candidate_policy):
    first, second = _split(generated, tmp_path / "parts", 1200)
    inc = tmp_path / "incremental.db"
    run(first, inc)
    run(second, inc)  # only the new mentions are compared, with the stored model
    full = tmp_path / "full.db"
    with EmbeddedStore(inc) as a, EmbeddedStore(full) as b:
        b.set_meta("er_model", a.get_meta("er_model"))
    run(first + second, full)
    with EmbeddedStore(inc) as a, EmbeddedStore(full) as b:
        ea = a.mention_entities().set_index("mention_id")["entity_id"]
        eb = b.mention_entities().set_index("mention_id")["entity_id"]
        assert _partition(ea) == _partition(eb)
        ca = a.report_clusters().set_index("report_id")["cluster_id"]
        cb = b.report_clusters().set_index("report_id")["cluster_id"]
        assert _partition(ca) == _partition(cb)


def _reuse_and_again(generated: Path, tmp_path: Path) -> tuple[list[Path], list[dict]]:
    """Two stores given the same first run; one forgets its graph state; both get the same second run.
    Returns the stores ("reuse", "again") and the second runs' counts."""
    first, second = _split(generated, tmp_path / "parts", 1200)
    stores = [tmp_path / "reuse.db", tmp_path / "again.db"]
    for store in stores:
        run(first, store)
    with EmbeddedStore(stores[1]) as s:
        s.conn.execute("DELETE FROM graph_state")
    return stores, [run(second, store).counts for store in stores]


def test_reused_clusters_and_scores_equal_clustering_and_scoring_everything_again(generated, tmp_path,
                                                                                    candidate_policy):
    # the same two runs into two stores; before the second run one store forgets the clusters and scores it
    # kept, so it clusters every component and scores every cluster again: every table must come out equal
    stores, counts = _reuse_and_again(generated, tmp_path)
    assert 0 < counts[0]["components_reclustered"] < counts[0]["components"]
    assert counts[1]["components_reclustered"] == counts[1]["components"]
    with EmbeddedStore(stores[0]) as a, EmbeddedStore(stores[1]) as b:
        for table in ("clusters", "report_clusters", "mention_entities", "entities"):
            pd.testing.assert_frame_equal(a.frame(f"SELECT * FROM {table} ORDER BY 1"),
                                          b.frame(f"SELECT * FROM {table} ORDER BY 1"))
        for sql in ("SELECT cluster_id, event, related_ids FROM cluster_history ORDER BY 1, 2, 3",
                    "SELECT report_id, to_status FROM status_history ORDER BY 1, id"):
            pd.testing.assert_frame_equal(a.frame(sql), b.frame(sql))


ON = {"candidates_factor": {"person": 1.0, "business": 1.0, "address": 1.0},
      "co_mentioned_factor": {"person": 0.3, "business": 0.3}, "co_located_factor": {"person": 0.5, "business": 0.5}}


@pytest.fixture(params=["packaged", "candidates on"])
def candidate_policy(request, monkeypatch):
    """The packaged graph policy (candidate links off: an incremental run takes the changed-components path,
    ``update_changed``, guarded by ``er_generation``) and the same with all three [candidates] corroborations
    on as graph.toml documents them (every run then clusters all mentions again): the tests that take it must
    hold on both paths."""
    if request.param == "candidates on":
        from linkage.graph import weights

        packaged = weights.load_graph_settings

        def with_candidates(path=None, overrides=None):
            return packaged(path, {**ON, **(overrides or {})})

        monkeypatch.setattr(weights, "load_graph_settings", with_candidates)
    return request.param


@pytest.mark.parametrize("candidate_policy", ["candidates on"], indirect=True)
def test_with_candidate_links_on_an_incremental_run_equals_clustering_everything_again(generated, tmp_path,
                                                                                      candidate_policy):
    # candidate links come from all stored ER pairs, so the run reads everything; it must still give what
    # clustering and scoring everything again gives, and the links must be there to matter
    from linkage.graph.candidates import stored_candidate_rows
    from linkage.pipeline import graph_inputs

    stores, _ = _reuse_and_again(generated, tmp_path)
    with EmbeddedStore(stores[0]) as a, EmbeddedStore(stores[1]) as b:
        reports, mentions, _, _ = graph_inputs(a, entities=False, links=False)
        assert len(stored_candidate_rows(a.conn, reports, mentions)) > 0
        for table in ("clusters", "report_clusters", "mention_entities"):
            pd.testing.assert_frame_equal(a.frame(f"SELECT * FROM {table} ORDER BY 1"),
                                          b.frame(f"SELECT * FROM {table} ORDER BY 1"))


def test_a_run_interrupted_after_resolving_does_not_leave_stale_clusters(generated, tmp_path, candidate_policy):
    # a judgement splits the entity behind a two-report cluster; the next run dies after its resolve stage
    # (a broken routing file); the run after that must still cluster what is resolved, as a store that
    # forgot its graph state does
    from linkage.resolve.judgements import record_judgement

    a, b = tmp_path / "a.db", tmp_path / "b.db"
    run([generated / "reports.csv", generated / "mentions.csv"], a)
    with EmbeddedStore(a) as s:
        rc = s.report_clusters()
        me = s.frame("SELECT m.mention_id, m.report_id, e.entity_id "
                     "FROM mentions m JOIN mention_entities e USING (mention_id)")
        pick = None
        for cid, g in rc.groupby("cluster_id"):
            if len(g) != 2:
                continue
            shared = set(me[me.report_id == g.report_id.iloc[0]].entity_id) & set(
                me[me.report_id == g.report_id.iloc[1]].entity_id)
            if len(shared) == 1 and (me.entity_id == next(iter(shared))).sum() == 2:
                pick = (cid, me[me.entity_id == next(iter(shared))].mention_id.tolist())
                break
        assert pick is not None
        record_judgement(s, pick[1][0], pick[1][1], "different", actor="test")
    bad = tmp_path / "bad.toml"
    bad.write_text("[agencies\n", encoding="utf-8")
    with pytest.raises(Exception):
        run([], a, rules=bad)
    shutil.copyfile(a, b)
    with EmbeddedStore(b) as s:
        s.conn.execute("DELETE FROM graph_state")
    run([], a)
    run([], b)
    with EmbeddedStore(a) as x, EmbeddedStore(b) as y:
        assert x.count("report_clusters", "WHERE cluster_id = ?", (pick[0],)) == 0
        for table in ("clusters", "report_clusters", "mention_entities"):
            pd.testing.assert_frame_equal(x.frame(f"SELECT * FROM {table} ORDER BY 1"),
                                          y.frame(f"SELECT * FROM {table} ORDER BY 1"))


def test_cluster_ids_carry_over_and_history_records_changes(generated, tmp_path):
    first, second = _split(generated, tmp_path / "parts", 1200)
    store = tmp_path / "s.db"
    run(first, store)
    with EmbeddedStore(store) as s:
        before = s.report_clusters().set_index("report_id")["cluster_id"]
    run(second, store)
    with EmbeddedStore(store) as s:
        after = s.report_clusters().set_index("report_id")["cluster_id"]
        history = s.frame("SELECT event FROM cluster_history")
    common = before.index.intersection(after.index)
    kept = (before[common] == after[common]).mean()
    assert kept > 0.9, f"only {kept:.0%} of clustered reports kept their cluster id"
    assert len(history) > 0  # new clusters at least are recorded as created


# --- CLI on the result ----------------------------------------------------------------------------
def _cli(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(list(args))
        raise SystemExit(0)
    captured = capsys.readouterr()
    assert info.value.code in (0, None), captured.err
    return captured.out


def test_cli_clusters_cluster_entity_export(ran, capsys, tmp_path):
    store_path, _ = ran
    data = json.loads(_cli(capsys, "clusters", "--store", str(store_path), "--json"))
    assert data and data[0]["rank"] == 1
    politie = json.loads(_cli(capsys, "clusters", "--agency", "politie", "--store", str(store_path), "--json"))
    assert politie and all("politie" in c["agencies"] for c in politie)
    top = data[0]["cluster_id"]
    text = _cli(capsys, "cluster", top, "--store", str(store_path))
    assert top in text and "Reports (oldest first)" in text and "Routing" in text
    detail = json.loads(_cli(capsys, "cluster", top, "--store", str(store_path), "--json"))
    dates = [r["received_at"] for r in detail["reports"]]
    assert dates == sorted(dates)
    entity_id = detail["entities"][0]["entity_id"]
    ent = json.loads(_cli(capsys, "entity", entity_id, "--store", str(store_path), "--json"))
    assert ent["entity"]["entity_id"] == entity_id and ent["mentions"]
    out_dir = tmp_path / "export"
    _cli(capsys, "export", str(out_dir), "--store", str(store_path))
    with open(out_dir / "clusters.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["cluster_id", "rank", "score", "n_reports", "agencies", "reasons"]
    with open(out_dir / "report_clusters.csv", encoding="utf-8") as fh:
        rc = list(csv.DictReader(fh))
    assert any(r["cluster_id"] == "" for r in rc) and any(r["cluster_id"] == top for r in rc)


def test_unknown_cluster_is_a_clear_error(ran, capsys):
    store_path, _ = ran
    with pytest.raises(SystemExit) as info:
        cli.main(["cluster", "c_nope", "--store", str(store_path)])
    assert info.value.code == 1
    assert "No cluster 'c_nope'" in capsys.readouterr().err


def test_export_escapes_formula_cells(tmp_path):
    reports = tmp_path / "r.csv"
    reports.write_text("report_id,received_at,category\n=1+1,2025-01-01,drugs\n@SUM(A1),2025-01-02,drugs\n",
                       encoding="utf-8")
    mentions = tmp_path / "m.csv"
    mentions.write_text("report_id,mention_id,entity_type,plate\n=1+1,+cmd,vehicle,12-ABC-3\n"
                        "@SUM(A1),-2,vehicle,12-ABC-3\n", encoding="utf-8")
    store = tmp_path / "s.db"
    run([reports, mentions], store)
    with EmbeddedStore(store) as s:
        export_csv(s, tmp_path / "out")
    for name in ("entities.csv", "report_clusters.csv"):
        with open(tmp_path / "out" / name, encoding="utf-8") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    assert not cell.startswith(("=", "+", "-", "@")), (name, cell)
    assert escape_cell("=A1") == "'=A1"


# --- stable ids and the store stage on literal data -----------------------------------------------
def _carry_over_reference(old: pd.Series, new: pd.Series):
    """The carry-over rule written plainly (row by row), as an oracle for the vectorised version."""
    if new.empty:
        return {}, [(g, "dissolved", ()) for g in sorted(set(old.values))]
    old_d, new_d = dict(old.items()), dict(new.items())
    old_size = pd.Series(list(old_d.values()), dtype=object).value_counts().to_dict() if old_d else {}
    new_size = pd.Series(list(new_d.values()), dtype=object).value_counts().to_dict()
    overlap: dict[tuple, int] = {}
    for m, g in new_d.items():
        if m in old_d:
            overlap[(g, old_d[m])] = overlap.get((g, old_d[m]), 0) + 1
    rows = sorted(((n, n / old_size[o], o, g, n / new_size[g]) for (g, o), n in overlap.items()),
                  key=lambda r: (-r[0], -r[1], r[2], r[3]))
    rename, taken = {}, set()
    for n, so, o, g, sn in rows:
        if g not in rename and o not in taken and (so > 0.5 or sn > 0.5):
            rename[g] = o
            taken.add(o)
    used = set(rename.values())
    for g in sorted(set(new_d.values())):
        if g not in rename:
            final = f"{g}.{len(used)}" if (g in used or g in old_size) else g
            rename[g] = final
            used.add(final)
    events = []
    for final in sorted(set(rename.values())):
        olds = tuple(sorted({o for (g, o) in overlap if rename[g] == final}))
        if final in taken:
            others = tuple(o for o in olds if o != final)
            events.append((final, "merged" if others else "kept", others))
        else:
            events.append((final, "split" if olds else "created", olds))
    for o in sorted(set(old_size) - taken):
        succ = tuple(sorted({rename[g] for (g, oo) in overlap if oo == o}))
        events.append((o, "dissolved" if len(succ) <= 1 else "split", succ))
    return {k: rename[k] for k in sorted(rename)}, sorted(events, key=lambda e: (e[0], e[1]))


def test_carry_over_matches_the_plain_rule_on_random_partitions():
    import random

    from linkage.store.stable_ids import carry_over

    rng = random.Random(3)
    for _ in range(400):
        members = [f"m{i}" for i in range(rng.randint(0, 25))]
        pool = [f"g{i}" for i in range(rng.randint(1, 6))] + ["A", "B"]  # old and new ids may coincide
        old = pd.Series({m: rng.choice(pool) for m in members if rng.random() < 0.8}, dtype=object)
        new = pd.Series({m: rng.choice(pool) for m in members if rng.random() < 0.8}, dtype=object)
        rename, events = carry_over(old, new)
        assert (rename, [tuple(e) for e in events]) == _carry_over_reference(old, new)


def _literal_store(tmp_path: Path) -> EmbeddedStore:
    store = EmbeddedStore(tmp_path / "lit.db")
    store.conn.executemany("INSERT INTO reports (report_id, received_at, category, content_hash) VALUES (?, ?, ?, 'x')",
                           [(f"R{i}", "2025-01-0{}".format(1 + i % 9), "overig") for i in range(8)])
    return store


def _scored(ids: list[str], ranks: list[int], scores: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"cluster_id": ids, "rank": ranks, "score": scores, "n_reports": [2] * len(ids),
                         "n_reporters": [2] * len(ids), "categories": [["overig"]] * len(ids),
                         "agencies": [[]] * len(ids), "reason": ["r"] * len(ids), "signals": ["[]"] * len(ids),
                         "routing": ["[]"] * len(ids), "unrouted_reason": ["none matched"] * len(ids)})


def test_store_clusters_writes_what_a_full_rewrite_writes_and_returns_the_stored_rows(tmp_path):
    from linkage.pipeline import store_clusters

    store = _literal_store(tmp_path)
    rc1 = pd.DataFrame({"report_id": ["R0", "R1", "R2", "R3"], "cluster_id": ["a", "a", "b", "b"]})
    out1 = store_clusters(store, rc1, _scored(["a", "b"], [1, 2], [9.0, 5.0]), run_id=1)
    pd.testing.assert_frame_equal(out1, store.clusters())
    # second run: b keeps its members and row but drops a rank, a loses R1, c is new
    rc2 = pd.DataFrame({"report_id": ["R0", "R4", "R2", "R3", "R5", "R6"],
                        "cluster_id": ["x", "x", "y", "y", "z", "z"]})
    scored2 = _scored(["x", "y", "z"], [1, 3, 2], [9.5, 5.0, 7.0])
    full = tmp_path / "full.db"
    store.conn.execute("VACUUM INTO ?", (str(full),))
    out2 = store_clusters(store, rc2, scored2, run_id=2)
    with EmbeddedStore(full) as other:
        out_full = store_clusters(other, rc2, scored2, run_id=2, full=True)
        pd.testing.assert_frame_equal(store.clusters(), other.clusters())
        pd.testing.assert_frame_equal(store.report_clusters(), other.report_clusters())
    pd.testing.assert_frame_equal(out2, store.clusters())
    pd.testing.assert_frame_equal(out2, out_full)
    # y kept all of b's reports, so it keeps b's id (with its new rank); a lost half: x and z are new ids
    assert store.clusters()[["cluster_id", "rank"]].values.tolist() == [["x", 1], ["z", 2], ["b", 3]]
    store.close()


def test_bulk_replace_leaves_the_rows_and_indexes_that_row_inserts_leave(tmp_path):
    with EmbeddedStore(tmp_path / "b.db") as s:
        indexes = s.frame("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'mention_entities' ORDER BY name")
        s.insert_rows("mention_entities", [{"mention_id": "old", "entity_id": "E0", "entity_type": "x"}],
                      ["mention_id", "entity_id", "entity_type"])
        df = pd.DataFrame({"mention_id": ["m3", "m1", "m2"], "entity_id": ["E2", "E1", "E1"], "entity_type": ["x"] * 3})
        with s.transaction():
            assert s.bulk_replace("mention_entities", df, ["mention_id", "entity_id", "entity_type"], "mention_id") == 3
        got = s.frame("SELECT * FROM mention_entities ORDER BY mention_id")
        pd.testing.assert_frame_equal(got, df.sort_values("mention_id").reset_index(drop=True))
        pd.testing.assert_frame_equal(indexes, s.frame("SELECT name, sql FROM sqlite_master "
                                                       "WHERE tbl_name = 'mention_entities' ORDER BY name"))


def test_entity_rows_by_scan_equals_entity_rows_by_join(ran, monkeypatch):
    import linkage.pipeline as pipeline

    with EmbeddedStore(ran[0]) as store:
        every = store.frame("SELECT entity_id FROM entities ORDER BY entity_id")["entity_id"].tolist()
        for wanted in (every[::3] + ["e_unknown"], every, every[:1], []):
            monkeypatch.setattr(pipeline, "ENTITY_SCAN_SHARE", 0.0)
            scanned = pipeline.entity_rows(store, list(reversed(wanted)))
            monkeypatch.setattr(pipeline, "ENTITY_SCAN_SHARE", 2.0)
            joined = pipeline.entity_rows(store, list(reversed(wanted)))
            pd.testing.assert_frame_equal(scanned, joined)
            assert scanned["entity_id"].tolist() == sorted(set(wanted) - {"e_unknown"})


def test_entity_rows_of_some_columns_are_those_columns_of_the_full_rows(ran, monkeypatch):
    """What scoring reads (entity_id, label) is the full rows cut to those columns, by scan and by join."""
    import linkage.pipeline as pipeline

    with EmbeddedStore(ran[0]) as store:
        every = store.frame("SELECT entity_id FROM entities ORDER BY entity_id")["entity_id"].tolist()
        for share in (0.0, 2.0):
            monkeypatch.setattr(pipeline, "ENTITY_SCAN_SHARE", share)
            full = pipeline.entity_rows(store, every[::2])
            some = pipeline.entity_rows(store, every[::2], columns=("entity_id", "label"))
            pd.testing.assert_frame_equal(some, full[["entity_id", "label"]])
        with pytest.raises(ValueError):
            pipeline.entity_rows(store, every, columns=("label", "entity_id"))


def test_report_links_are_the_links_of_those_reports_source_mentions_in_order(ran):
    """report_links (what the incremental scoring reads) equals store.links() cut to the links whose source
    mention is in the given reports, in the same row order."""
    from linkage.pipeline import report_links

    store_path, _ = ran
    with EmbeddedStore(store_path) as store:
        every = store.links()
        assert len(every)
        of = store.frame("SELECT mention_id, report_id FROM mentions")
        wanted = sorted(set(every["report_id"]))[::3]
        src_in = set(of.loc[of["report_id"].isin(wanted), "mention_id"])
        want = every[every["src_mention_id"].isin(src_in)].reset_index(drop=True)
        got = report_links(store, wanted)
        pd.testing.assert_frame_equal(got, want)
        assert report_links(store, []).empty


def test_an_unreadable_rules_file_is_a_config_error_naming_it_in_an_incremental_run(tmp_path):
    """The stored rows' routing fingerprint reads the rules file before routing does: a missing file is the same
    ConfigError a first run gives, not an internal error."""
    import pytest

    from linkage.errors import ConfigError
    from linkage.pipeline import _routing_fingerprint

    with pytest.raises(ConfigError, match="nope.toml: cannot read file"):
        _routing_fingerprint(tmp_path / "nope.toml")
    assert _routing_fingerprint(None) == _routing_fingerprint(None)


def test_an_incremental_run_takes_the_region_mentions_from_the_incidence_as_the_query_gives_them(
        generated, tmp_path, monkeypatch):
    """The clusters stage of an incremental run takes the re-clustered region's mentions from the graph
    state's incidence (every mention resolved; the rows update_changed picked, or picked again from the whole
    incidence): the same frame as reading them from the store, and when a mention has no entity the store is
    read."""
    import copy

    import linkage.pipeline as pipeline

    first, second = _split(generated, tmp_path / "parts", 1200)
    store = tmp_path / "s.db"
    run(first, store)
    calls = []
    real = pipeline._region_mentions

    def checked(st, incidence, report_ids, n_resolved, rows=None, n_mentions=None):
        from linkage.graph.incremental import PendingIncidenceState

        got = real(st, incidence, report_ids, n_resolved, rows, n_mentions=n_mentions)
        assert n_mentions == st.count("mentions")  # counted in the stage's thread
        assert rows is not None
        # the stage hands over the state: its incidence is not made for this (only its size is read)
        assert isinstance(incidence, PendingIncidenceState) and incidence.__dict__["pending"] is not None
        pd.testing.assert_frame_equal(got, pipeline._graph_mentions(st, "report_id", report_ids))
        # picked again from the whole incidence, of a copy: the state the run saves stays pending, as it
        # would without this check
        pd.testing.assert_frame_equal(got, real(st, copy.copy(incidence), report_ids, n_resolved))
        assert incidence.__dict__["pending"] is not None
        calls.append((len(report_ids), len(got)))
        return got

    monkeypatch.setattr(pipeline, "_region_mentions", checked)
    run(second, store)
    assert calls and calls[0][0] > 0 and calls[0][1] > 0
    # a mention without an entity: the incidence lacks it, so the store is read
    with EmbeddedStore(store) as s:
        from linkage.graph.incremental import load_state

        inc = load_state(s.conn)[0].incidence
        region = sorted(set(inc.column("report_id").to_pylist()))[:50]
        n = s.count("mention_entities")
        cols = [r[1] for r in s.conn.execute("PRAGMA table_info(mentions)").fetchall()]
        picked = ", ".join("'M-extra'" if c == "mention_id" else c for c in cols)
        s.conn.execute(f"INSERT INTO mentions ({', '.join(cols)}) SELECT {picked} FROM mentions "
                       "WHERE report_id = ? LIMIT 1", (region[0],))
        s.conn.execute("INSERT INTO mention_entities VALUES ('M-extra', '', 'person')")
        got = real(s, inc, region, n)
        assert "M-extra" in got["mention_id"].tolist()
        pd.testing.assert_frame_equal(got, pipeline._graph_mentions(s, "report_id", region))


def test_rounds_that_keep_the_incidence_as_edits_equal_clustering_everything_again(generated, tmp_path,
                                                                                    monkeypatch):
    """Four rounds into one store whose graph state keeps the incidence and the kept scores as a base plus
    edits (the share made small, so some runs write only edits and some the base again), against the same
    rounds into a store that forgets its graph state before each run: every cluster table, the incidence and
    the kept scores end equal."""
    import linkage.graph.incremental as gi

    monkeypatch.setattr(gi, "INCIDENCE_EDITS_SHARE", 0.2)
    monkeypatch.setattr(gi, "TABLE_EDITS_SHARE", 0.2)
    rounds = _rounds(generated, tmp_path, (1200, 1300, 1400))
    kept, again = tmp_path / "kept.db", tmp_path / "again.db"
    layouts = []
    for i, files in enumerate(rounds):
        run(files, kept)
        if i:
            with EmbeddedStore(again) as s:
                s.conn.execute("DELETE FROM graph_state")
        run(files, again)
        with EmbeddedStore(kept) as s:
            layouts.append({p for (p,) in s.conn.execute("SELECT part FROM graph_state")})
    assert any("incidence_added" in p for p in layouts[1:]) and any("incidence_added" not in p for p in layouts[1:])
    assert any("scores:added" in p for p in layouts[1:]) and any("scores:added" not in p for p in layouts[1:])
    with EmbeddedStore(kept) as a, EmbeddedStore(again) as b:
        for table in ("clusters", "report_clusters"):
            pd.testing.assert_frame_equal(a.frame(f"SELECT * FROM {table} ORDER BY 1"),
                                          b.frame(f"SELECT * FROM {table} ORDER BY 1"))
        for sql in ("SELECT cluster_id, event, related_ids FROM cluster_history ORDER BY 1, 2, 3",
                    "SELECT report_id, to_status FROM status_history ORDER BY 1, id"):
            pd.testing.assert_frame_equal(a.frame(sql), b.frame(sql))
        from linkage.graph.incremental import load_state

        (sa, ta, _), (sb, tb, _) = load_state(a.conn), load_state(b.conn)
        assert sorted(sa.incidence.to_pylist(), key=lambda r: r["mention_id"]) == \
            sorted(sb.incidence.to_pylist(), key=lambda r: r["mention_id"])
        # the kept scores (base + edits) are those scoring every cluster again keeps, row for row, but for the
        # recency part (a kept cluster keeps the recency of the run that scored it; rescoring recomputes it) and
        # the types (a count taken from a stored row is a float, as the REAL column gives it back)
        from linkage.triage import SIGNALS

        at = list(SIGNALS).index("recency")

        def without_recency(df: pd.DataFrame) -> pd.DataFrame:
            df = df.sort_values("cluster_id").reset_index(drop=True)
            return df.assign(**{c: [[v for i, v in enumerate(x) if i != at] for x in df[c]]
                                for c in ("points", "values")})

        pd.testing.assert_frame_equal(without_recency(ta["scores"]), without_recency(tb["scores"]),
                                      check_dtype=False)


def test_a_store_path_with_uri_characters_gives_the_same_clusters(generated, ran, tmp_path):
    """The scoring processes read entity labels through a read-only connection of their own; a store path with
    ``?``, ``#`` or ``%41`` in it (a URI would cut or decode it) gives the same clusters as any other path."""
    store_path, _ = ran
    odd = tmp_path / "odd?#%41 dir" / "s.db"
    odd.parent.mkdir()
    run([generated / "reports.csv", generated / "mentions.csv"], odd)
    cols = "cluster_id, score, n_reports, agencies, reason"
    with sqlite3.connect(store_path) as a, sqlite3.connect(odd) as b:
        assert a.execute(f"SELECT {cols} FROM clusters ORDER BY cluster_id").fetchall() == \
            b.execute(f"SELECT {cols} FROM clusters ORDER BY cluster_id").fetchall()
    assert not (tmp_path / "odd").exists()  # no stray database at the cut-off path


def test_an_incremental_run_summary_reads_its_clusters_from_the_store(generated, tmp_path):
    """An incremental run re-uses stored rows without reading their long texts: its summary reads the clusters
    when asked (every row, equal to ``store.clusters()``), ``top_clusters`` only the first rows, and the CLI
    shows the same table either way."""
    first, second = _split(generated, tmp_path / "parts", 1200)
    store = tmp_path / "s.db"
    run(first, store)
    summary = run(second, store)
    assert summary.counts["clusters_reused"] > 0 and summary._clusters is None
    with EmbeddedStore(store) as s:
        every = s.clusters()
        pd.testing.assert_frame_equal(s.top_clusters(5), every.head(5))
        pd.testing.assert_frame_equal(s.top_clusters(0), every.head(0))
    pd.testing.assert_frame_equal(summary.top_clusters(3), every.head(3))
    assert summary.n_clusters == len(every) == summary.counts["clusters"]
    assert summary._clusters is None  # top_clusters and n_clusters read no more than they give
    pd.testing.assert_frame_equal(summary.clusters, every)
    assert summary.to_dict(top=2)["clusters"] == summary.to_dict()["clusters"][:2]
    # a later run on the store: the earlier summary refuses to show that run's clusters as its own
    later = run(second, store)
    fresh = RunSummary(store=summary.store, counts=summary.counts, run_id=summary.run_id)  # nothing read yet
    from linkage.errors import StoreError

    assert later.run_id != summary.run_id
    with pytest.raises(StoreError, match="later run"):
        fresh.top_clusters(3)
    with pytest.raises(StoreError, match="later run"):
        fresh.clusters
    store.unlink()
    with pytest.raises(StoreError, match="No store"):
        fresh.top_clusters(3)


def test_store_clusters_keeps_reused_rows_as_stored(tmp_path):
    """Rows named in ``reused`` keep their stored values (what the caller passes for them but the rank is not
    read); one whose id changed is copied from its stored row under the new id; a stored id the table lacks is
    an error. ``read_back=False`` gives the ids, ranks and agencies only."""
    from linkage.errors import StoreError
    from linkage.pipeline import store_clusters

    store = _literal_store(tmp_path)
    rc1 = pd.DataFrame({"report_id": ["R0", "R1", "R2", "R3"], "cluster_id": ["a", "a", "b", "b"]})
    first = _scored(["a", "b"], [1, 2], [9.0, 5.0]).assign(signals=['["sa"]', '["sb"]'], reason=["ra", "rb"])
    store_clusters(store, rc1, first, run_id=1)
    before = store.clusters().set_index("cluster_id")
    # b kept its members: taken as stored (its long texts not given), ranked first now; c is new
    rc2 = pd.DataFrame({"report_id": ["R2", "R3", "R5", "R6"], "cluster_id": ["y", "y", "z", "z"]})
    second = _scored(["y", "z"], [1, 2], [5.0, 4.0]).assign(signals=[None, '["sz"]'], reason=[None, "rz"],
                                                            routing=[None, "[]"])
    light = store_clusters(store, rc2, second, run_id=2, reused={"y": "b"}, read_back=False)
    assert light.columns.tolist() == ["cluster_id", "rank", "agencies"]
    got = store.clusters().set_index("cluster_id")
    assert got.index.tolist() == ["b", "z"] and got.loc["b", "rank"] == 1
    assert got.loc["b", ["signals", "reason", "score"]].tolist() == before.loc["b", ["signals", "reason", "score"]].tolist()
    assert light[["cluster_id", "rank"]].values.tolist() == [["b", 1], ["z", 2]]
    # a row taken from the table whose id changes is copied from its stored row under the new id
    rc3 = pd.DataFrame({"report_id": ["R7", "R8"], "cluster_id": ["w", "w"]})
    out = store_clusters(store, rc3, _scored(["w"], [1], [1.0]).assign(signals=[None]), run_id=3, reused={"w": "z"})
    assert out[["cluster_id", "rank", "signals", "reason"]].values.tolist() == [["w", 1, '["sz"]', "rz"]]
    pd.testing.assert_frame_equal(out, store.clusters())
    with pytest.raises(StoreError, match="does not hold it"):
        store_clusters(store, pd.DataFrame({"report_id": ["R0", "R1"], "cluster_id": ["v", "v"]}),
                       _scored(["v"], [1], [1.0]), run_id=4, reused={"v": "nope"})
    # a full rewrite deletes the table first: a re-used row under its own id is written whole, not blank
    kept = store.clusters().set_index("cluster_id").loc["w"]
    store_clusters(store, rc3, _scored(["w"], [1], [2.0]).assign(signals=[None]), run_id=5, full=True,
                   reused={"w": "w"})
    again = store.clusters().set_index("cluster_id").loc["w"]
    assert again[["score", "signals", "reason"]].tolist() == kept[["score", "signals", "reason"]].tolist()
    store.close()


def test_stored_rows_give_the_same_rows_from_the_memberships_read_up_front(tmp_path):
    """``_stored_rows`` with the stored memberships given (what ``run`` reads once) gives what it gives looking the
    first reports up in the table: stored ids, short columns, lists and agency names; a cluster whose report
    count changed or whose first report is not stored is left out either way."""
    from linkage.pipeline import _stored_rows, store_clusters

    store = _literal_store(tmp_path)
    rc1 = pd.DataFrame({"report_id": ["R0", "R1", "R2", "R3", "R4", "R5"], "cluster_id": ["a", "a", "b", "b", "c", "c"]})
    first = _scored(["a", "b", "c"], [1, 2, 3], [9.0, 5.0, 4.0]).assign(agencies=[["politie"], [], ["fiod", "politie"]])
    store_clusters(store, rc1, first, run_id=1)
    # raw ids of this run; q has a report more than its stored row, s's first report was never stored
    rc2 = pd.DataFrame({"report_id": ["R3", "R2", "R1", "R0", "R4", "R5", "R6", "R7"],
                        "cluster_id": ["p", "p", "r", "r", "q", "q", "q", "s"]})
    kept = pd.DataFrame({"cluster_id": ["p", "q", "r", "s"], "n_reports": [2, 3, 2, 1]})
    names = {"politie": "Politie", "fiod": "FIOD"}
    looked_up = _stored_rows(store, rc2, kept, names)
    given = _stored_rows(store, rc2, kept, names, previous=store.report_clusters())
    pd.testing.assert_frame_equal(given, looked_up)
    assert given[["cluster_id", "stored_id"]].values.tolist() == [["r", "a"], ["p", "b"]]  # by first report
    assert given["agency_names"].tolist()[0] == ["Politie"] and given["signals"].isna().all()
    empty = _stored_rows(store, rc2, kept.iloc[:0], names, previous=store.report_clusters())
    assert len(empty) == 0 and set(given.columns) == set(empty.columns)
    store.close()


def test_stored_rows_order_clusters_by_their_first_report_as_python_compares_ids(tmp_path):
    """``_stored_rows`` finds each kept cluster's first member report (the smallest id as Python compares text,
    non-ASCII ids included) and gives the rows in the order of those reports, as a loop over the memberships
    would."""
    import random

    from linkage.pipeline import _stored_rows, store_clusters

    rng = random.Random(11)
    letters = ["a", "B", "z", "é", "Ω", "€", "😀", "0", "~"]
    reports = sorted({"R" + "".join(rng.choice(letters) for _ in range(3)) for _ in range(60)})
    stored_ids = [f"s{i % 12:02d}" for i in range(len(reports))]
    store = _literal_store(tmp_path)
    clusters = sorted(set(stored_ids))
    store_clusters(store, pd.DataFrame({"report_id": reports, "cluster_id": stored_ids}),
                   _scored(clusters, list(range(1, len(clusters) + 1)), [float(len(clusters) - i) for i in
                                                                          range(len(clusters))]), run_id=1)
    raw = {s: f"raw-{s}" for s in clusters}
    shuffled = list(zip(reports, stored_ids))
    rng.shuffle(shuffled)
    rc = pd.DataFrame({"report_id": [r for r, _ in shuffled], "cluster_id": [raw[s] for _, s in shuffled]})
    kept = pd.DataFrame({"cluster_id": list(raw.values()), "n_reports": [2] * len(raw)})  # _scored's count
    first: dict = {}
    for r, c in zip(rc["report_id"], rc["cluster_id"]):
        first[c] = min(first.get(c, r), r)
    got = _stored_rows(store, rc, kept, {}, previous=store.report_clusters())
    assert got["cluster_id"].tolist() == sorted(first, key=first.__getitem__)
    assert got["stored_id"].tolist() == [c[len("raw-"):] for c in got["cluster_id"]]
    # a report first in two clusters (never in a run): the clusters in the order they first occur
    two = pd.DataFrame({"report_id": [reports[0], reports[0], reports[1]], "cluster_id": ["y", "x", "x"]})
    got = _stored_rows(store, two, pd.DataFrame({"cluster_id": ["x", "y"], "n_reports": [2, 2]}), {},
                       previous=store.report_clusters())
    assert got["cluster_id"].tolist() == ["y", "x"]
    store.close()


def test_write_changed_clusters_writes_only_changed_rows_and_every_rank(tmp_path):
    """Clusters kept as stored (``unchanged``) keep their wide rows untouched (same rowids) however their rank
    moves; a gone cluster's row and rank are deleted, a new one's written; ``SELECT * FROM clusters`` then reads
    what a full rewrite leaves (ranks are written anew: no stale one is left)."""
    from linkage.pipeline import CLUSTER_TABLE_COLUMNS, _sqlite_values, _write_changed_clusters, store_clusters

    stores = []
    for name in ("changed", "full"):
        store = EmbeddedStore(tmp_path / f"{name}.db")
        rc = pd.DataFrame({"report_id": [f"R{i}" for i in range(8)], "cluster_id": list("aabbccdd")})
        store_clusters(store, rc, _scored(list("abcd"), [1, 2, 3, 4], [9.0, 8.0, 7.0, 6.0]), run_id=1)
        stores.append(store)
    changed, full = stores
    rowids = dict(changed.conn.execute("SELECT cluster_id, rowid FROM cluster_rows").fetchall())
    # d is gone, e is new and ranked first: a, b, c keep their rows with ranks one lower; b's values given as None
    new = _scored(list("eabc"), [1, 2, 3, 4], [9.5, 9.0, 8.0, 7.0]).assign(categories='["overig"]', agencies="[]")
    cols = list(CLUSTER_TABLE_COLUMNS)
    rows = _sqlite_values(new, cols)
    rows[2] = ("b", 3) + (None,) * (len(cols) - 2)
    with changed.transaction():
        _write_changed_clusters(changed, rows, cols, {"a", "b", "c"})
    with full.transaction():
        full.conn.execute("DELETE FROM cluster_rows")
        full.conn.execute("DELETE FROM cluster_ranks")
        full.insert_tuples("clusters", _sqlite_values(new, cols), cols)  # through the view's trigger
    sql = "SELECT * FROM clusters ORDER BY cluster_id"
    pd.testing.assert_frame_equal(changed.frame(sql), full.frame(sql))
    assert changed.frame("SELECT cluster_id, rank FROM clusters ORDER BY rank")["cluster_id"].tolist() == list("eabc")
    assert {k: v for k, v in changed.conn.execute("SELECT cluster_id, rowid FROM cluster_rows")} == \
        {"a": rowids["a"], "b": rowids["b"], "c": rowids["c"], "e": max(rowids.values())}  # d's rowid was the top one
    assert changed.conn.execute("SELECT cluster_id FROM cluster_ranks ORDER BY cluster_id").fetchall() == \
        [("a",), ("b",), ("c",), ("e",)]
    # rows compared (none given as unchanged): a changed score is written, the rest keep their rowids
    rows = _sqlite_values(new.assign(score=[9.5, 9.0, 8.5, 7.0]), cols)
    with changed.transaction():
        _write_changed_clusters(changed, rows, cols)
    got = dict(changed.conn.execute("SELECT cluster_id, rowid FROM cluster_rows").fetchall())
    assert {k: got[k] for k in "ace"} == {"a": rowids["a"], "c": rowids["c"], "e": max(rowids.values())}
    assert got["b"] > got["e"] and changed.frame(sql)["score"].tolist() == [9.0, 8.5, 7.0, 9.5]
    for store in stores:
        store.close()


def test_write_changed_clusters_without_ranks_keeps_the_ranks_of_rows_not_written(tmp_path):
    """Without a rank column the rows written lose their rank and the others keep theirs (as a table that
    held the rank in each row was left: a row written whole had none)."""
    from linkage.pipeline import _sqlite_values, _write_changed_clusters, store_clusters

    store = EmbeddedStore(tmp_path / "s.db")
    rc = pd.DataFrame({"report_id": [f"R{i}" for i in range(6)], "cluster_id": list("aabbcc")})
    store_clusters(store, rc, _scored(list("abc"), [1, 2, 3], [9.0, 8.0, 7.0]), run_id=1)
    cols = ["cluster_id", "score"]
    with store.transaction():
        _write_changed_clusters(store, _sqlite_values(pd.DataFrame({"cluster_id": list("ab"), "score": [9.0, 1.0]}),
                                                      cols), cols)
    got = store.conn.execute("SELECT cluster_id, rank, score FROM clusters ORDER BY cluster_id").fetchall()
    assert got == [("a", 1, 9.0), ("b", None, 1.0)]
    assert store.conn.execute("SELECT * FROM cluster_ranks ORDER BY cluster_id").fetchall() == [("a", 1), ("b", None)]
    store.close()


def _strict_json(text: str):
    def refuse(name: str):
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict_json(ran, capsys, generated, tmp_path):
    """``--json`` is JSON a strict parser reads: a missing value (an unrouted reason of a routed cluster) is
    null, never NaN."""
    store_path, _ = ran
    clusters = _strict_json(_cli(capsys, "clusters", "--store", str(store_path), "--json"))
    assert any(c.get("unrouted_reason") is None for c in clusters)
    _strict_json(_cli(capsys, "cluster", clusters[0]["cluster_id"], "--store", str(store_path), "--json"))
    first, second = _split(generated, tmp_path / "parts", 1200)
    store = tmp_path / "s.db"
    run(first, store)
    summary = _strict_json(_cli(capsys, "run", *map(str, second), "--store", str(store), "--json"))
    assert summary["clusters"] and summary["counts"]["clusters_reused"] > 0


class _RecordingStore:
    """A store whose connection only records the ``executemany`` calls it is given (statement, rows)."""

    def __init__(self):
        self.conn = SimpleNamespace(calls=[])
        self.conn.executemany = lambda sql, rows: self.conn.calls.append((sql, list(rows)))


def test_write_changed_members_writes_what_the_loop_writes(tmp_path):
    """The whole-column comparison of memberships (Arrow) sends the statements the row-by-row loop sends: the
    stored reports no longer given deleted in stored order, every given row whose cluster is not the stored one
    written in the given order; with nothing stored every row is written."""
    import random

    from linkage.pipeline import _write_changed_members, _write_changed_members_loop

    rng = random.Random(7)
    stored_ids = sorted(f"R{i:03d}" for i in range(80))
    previous = pd.DataFrame({"report_id": stored_ids, "cluster_id": [rng.choice("abcd") for _ in stored_ids]})
    given = [r for r in stored_ids if rng.random() > 0.2] + ["R900", "R901"]
    rng.shuffle(given)
    current = pd.DataFrame({"report_id": given, "cluster_id": [rng.choice("abcde") for _ in given]})
    for prev in (previous, previous.iloc[:0]):
        calls = []
        for fn in (_write_changed_members, _write_changed_members_loop):
            store = _RecordingStore()
            fn(store, prev, current)
            calls.append(store.conn.calls)
        assert calls[0] == calls[1] and calls[0]


def test_write_changed_members_of_every_kind_of_input_writes_what_the_loop_writes():
    """Memberships numbered together with the stored ones (_member_places, a missing cluster included) and those
    it leaves to the loop (a report given twice) or that find nothing stored send what the loop sends,
    for pandas text columns as for object ones; _member_places gives each new report's stored place."""
    import random

    import pyarrow as pa

    from linkage.pipeline import _REPEATED, _member_places, _write_changed_members, _write_changed_members_loop

    rng = random.Random(9)
    stored_ids = [f"R{i:03d}" for i in rng.sample(range(300), 200)]
    previous = pd.DataFrame({"report_id": stored_ids, "cluster_id": [rng.choice("abcd") for _ in stored_ids]})
    given = [r for r in stored_ids if rng.random() > 0.3] + [f"N{i}" for i in range(20)]
    rng.shuffle(given)
    current = pd.DataFrame({"report_id": given, "cluster_id": [rng.choice("abcde") for _ in given]})
    twice = pd.concat([current, current.iloc[[3, 0]]], ignore_index=True)
    no_cluster = current.assign(cluster_id=[None if i % 7 == 0 else c for i, c in enumerate(current["cluster_id"])])
    # (stored ids that repeat, which the table's key rules out, go to the look-up as before: not compared here)
    cases = [(previous, current), (previous, twice), (previous, no_cluster), (previous, current.iloc[:0]),
             (previous.iloc[:0], current)]
    for prev, cur in cases:
        for dtype in (object, "str"):
            prev_t, cur_t = prev.astype(dtype), cur.astype(dtype)
            calls = []
            for fn in (_write_changed_members, _write_changed_members_loop):
                store = _RecordingStore()
                fn(store, prev_t, cur_t)
                # a missing cluster: the loop sends NaN where the columns send None (both NULL to SQLite)
                calls.append([(sql, [tuple(None if v != v else v for v in row) for row in rows])
                              for sql, rows in store.conn.calls])
            assert calls[0] == calls[1]
    places = _member_places(pa.array(stored_ids, type=pa.large_string()), pa.array(given, type=pa.large_string()))
    assert places.tolist() == [stored_ids.index(r) if r in stored_ids else -1 for r in given]
    assert _member_places(pa.array(stored_ids), pa.array(given + given[:1])) is _REPEATED
    assert _member_places(pa.array(stored_ids + stored_ids[:1]), pa.array(given)) is None
    assert _member_places(pa.array(stored_ids), pa.array(given + [None])) is None


def test_by_rank_sorts_as_rank_then_id():
    """_by_rank gives sort_values by rank then id (index reset) for distinct integer ranks (its own path) and
    for repeated, missing (float) and nullable ranks (the two keys'), with the frame's other columns intact."""
    import numpy as np

    from linkage.pipeline import _by_rank

    rng = np.random.default_rng(4)
    for n in (0, 1, 2, 50, 3000):
        ids = pd.array([f"c_{i:05d}" for i in rng.permutation(max(n, 1))[:n]], dtype="str")
        frames = [pd.DataFrame({"cluster_id": ids, "rank": rng.permutation(n) + 1, "score": rng.random(n)}),
                  pd.DataFrame({"cluster_id": ids, "rank": rng.integers(1, max(n // 3, 2), n), "score": rng.random(n)})]
        with_nan = frames[1].assign(rank=frames[1]["rank"].astype(float))
        if n:
            with_nan.loc[0, "rank"] = np.nan
        frames += [with_nan, frames[0].assign(rank=frames[0]["rank"].astype("Int64"))]
        for frame in frames:
            frame.index = frame.index[::-1] if n else frame.index  # the result's index is reset whatever it was
            expected = frame.sort_values(["rank", "cluster_id"]).reset_index(drop=True)
            pd.testing.assert_frame_equal(_by_rank(frame), expected)


def test_text_column_makes_the_column_the_list_makes():
    """A frame made with _text_column(values) holds the column ``values.tolist()`` gives it, whatever the type of
    ``values`` (pandas' text types, objects, numbers; missing values included)."""
    import numpy as np

    from linkage.pipeline import _text_column

    texts = ["c_2", None, "c_1", "c_2"]
    for values in (pd.Series(texts), pd.Series(texts, dtype=object), pd.Series(texts, dtype="string[pyarrow]"),
                   pd.Series(texts, dtype="string[python]"), pd.Series(["a", "b"], dtype=object),
                   pd.Series([1, 2, 3]), pd.Series([1.5, np.nan]), pd.Series([], dtype="str"),
                   pd.Series([None, None], dtype="str")):
        pd.testing.assert_frame_equal(pd.DataFrame({"c": _text_column(values), "n": range(len(values))}),
                                      pd.DataFrame({"c": values.tolist(), "n": range(len(values))}))


def test_signals_read_only_the_labels_of_relation_entities(ran):
    """Scoring reads the labels of the entities of the clusters' relations only: every signal of every cluster
    of a generated store (planted networks: residents, directors, shared vehicles) is the same with the labels of
    all the store's entities, and no signal asks for the label of an entity outside its cluster's relations."""
    import dataclasses
    import datetime as dt

    from linkage.triage import SIGNALS, build_contexts, load_scoring_policy

    store_path, _ = ran
    with EmbeddedStore(store_path) as store:
        from linkage.pipeline import graph_inputs

        rc, (reports, mentions, links, entities) = store.report_clusters(), graph_inputs(store)
    every = dict(zip(entities["entity_id"].astype(str), entities["label"]))

    class Spy(dict):
        asked: set = set()

        def get(self, key, default=None):
            Spy.asked.add(key)
            return super().get(key, default)

    named_some, all_related, read = 0, set(), set()
    for ctx in build_contexts(rc, reports, mentions, links, entities, dt.date(2026, 1, 1), load_scoring_policy()):
        related = {e for rel in (ctx.residence, ctx.directs, ctx.located, ctx.uses) for row in rel for e in row}
        all_related |= related
        read |= set(ctx.labels)  # one mapping for all clusters: the labels read for every cluster's relations
        Spy.asked = set()
        full = dataclasses.replace(ctx, labels=Spy(every))
        assert [fn(ctx) for fn in SIGNALS.values()] == [fn(full) for fn in SIGNALS.values()]
        assert Spy.asked <= related
        named_some += bool(Spy.asked)
    assert named_some > 10 and read == all_related & set(every)


def test_mention_links_are_the_links_of_those_source_mentions_in_report_links_order(ran):
    """mention_links (what the incremental scoring reads: the links of the clustered mentions with an entity)
    equals report_links of their reports cut to those source mentions, in the same row order; scoring the
    clusters of those reports with either gives the same rows."""
    from linkage.pipeline import graph_inputs, mention_links, report_links
    from linkage.triage.scoring import score_with_parts

    store_path, _ = ran
    with EmbeddedStore(store_path) as store:
        every = store.links()
        assert len(every)
        wanted = sorted(set(every["report_id"]))[::3]
        reports, mentions, _, ents = graph_inputs(store)
        of = mentions[mentions["report_id"].isin(wanted) & mentions["entity_id"].notna()]
        by_reports = report_links(store, wanted)
        want = by_reports[by_reports["src_mention_id"].isin(set(of["mention_id"]))].reset_index(drop=True)
        got = mention_links(store, of["mention_id"].tolist())
        pd.testing.assert_frame_equal(got, want)
        assert mention_links(store, []).empty
        clusters = store.report_clusters()
        clusters = clusters[clusters["report_id"].isin(wanted)]
        assert len(clusters)
        one = score_with_parts(clusters, reports, mentions, by_reports, ents, now=None)
        two = score_with_parts(clusters, reports, mentions, got, ents, now=None)
        pd.testing.assert_frame_equal(one[0], two[0])
        pd.testing.assert_frame_equal(one[1], two[1])


def test_store_clusters_given_the_stored_ids_writes_what_it_writes_reading_them(tmp_path):
    """The ids of cluster_rows given (what score_stage read with the stored rows, ClusterStep.stored_ids) leave
    the same tables as store_clusters reading them itself."""
    from linkage.pipeline import store_clusters

    results = []
    for given in (False, True):
        (tmp_path / str(given)).mkdir()
        store = _literal_store(tmp_path / str(given))
        rc1 = pd.DataFrame({"report_id": ["R0", "R1", "R2", "R3", "R4"], "cluster_id": ["a", "a", "b", "b", "c"]})
        first = _scored(["a", "b", "c"], [1, 2, 3], [9.0, 5.0, 1.0]).assign(signals=['["sa"]', '["sb"]', '["sc"]'],
                                                                            reason=["ra", "rb", "rc"])
        store_clusters(store, rc1, first, run_id=1)
        ids = {r[0] for r in store.conn.execute("SELECT cluster_id FROM cluster_rows")} if given else None
        rc2 = pd.DataFrame({"report_id": ["R2", "R3", "R5", "R6"], "cluster_id": ["y", "y", "z", "z"]})
        second = _scored(["y", "z"], [2, 1], [5.0, 6.0]).assign(signals=[None, '["sz"]'], reason=[None, "rz"])
        out = store_clusters(store, rc2, second, run_id=2, reused={"y": "b"}, read_back=False, stored_ids=ids)
        results.append((out, store.clusters(), store.report_clusters()))
        store.close()
    for a, b in zip(*results):
        pd.testing.assert_frame_equal(a, b)
    assert results[1][1]["cluster_id"].tolist() == ["z", "b"]  # a and c gone, b kept, ranked second


def test_a_small_load_leaves_its_log_to_the_copy_after_the_resolve_stage(generated, tmp_path, monkeypatch):
    """The write-ahead log is copied behind the job's back after the load only for a load of
    CHECKPOINT_AFTER_LOAD_ROWS rows or more (a copy still running holds up the resolve stage's fork)."""
    import linkage.pipeline as pipeline

    stages = []
    real = EmbeddedStore.checkpoint_behind

    def noted(self):
        stages.append(self.path)
        real(self)

    monkeypatch.setattr(EmbeddedStore, "checkpoint_behind", noted)
    files = [generated / "reports.csv", generated / "mentions.csv"]
    rows = sum(1 for f in files for _ in open(f, encoding="utf-8")) - len(files)

    def calls(threshold: int, store: Path) -> int:
        stages.clear()
        monkeypatch.setattr(pipeline, "CHECKPOINT_AFTER_LOAD_ROWS", threshold)
        run(files, store)
        return len(stages)

    assert rows < pipeline.CHECKPOINT_AFTER_LOAD_ROWS
    assert calls(pipeline.CHECKPOINT_AFTER_LOAD_ROWS, tmp_path / "small.db") == 2  # after resolve and store
    assert calls(rows, tmp_path / "big.db") == 3  # after load too


def test_stored_rows_from_the_kept_short_rows_equal_those_read_from_the_table(tmp_path):
    """``_stored_rows`` given the last run's kept short rows (``short_rows``, by raw id) and the kept counts and
    categories gives the frame it gives reading the table's rows (same values and types, as SQLite gives them
    back); a cluster the kept rows lack, whose stored row is gone or whose report count differs is left out as
    then; kept rows of an older layout (a column missing) or ``kept`` without the kept columns: the table is
    read."""
    from linkage.pipeline import _json_lists, _stored_rows, short_rows, store_clusters

    store = _literal_store(tmp_path)
    rc1 = pd.DataFrame({"report_id": ["R0", "R1", "R2", "R3", "R4", "R5"], "cluster_id": ["a", "a", "b", "b", "c", "c"]})
    first = _scored(["a", "b", "c"], [1, 2, 3], [9.25, 5.0, float("nan")]).assign(
        agencies=[["politie"], [], ["fiod", "politie"]], n_reporters=[2, 1.5, 2],
        categories=[["drugs", "overig"], [], ["overig"]])
    store_clusters(store, rc1, first, run_id=1)
    rc2 = pd.DataFrame({"report_id": ["R3", "R2", "R1", "R0", "R4", "R5", "R6", "R7"],
                        "cluster_id": ["p", "p", "r", "r", "q", "q", "q", "s"]})
    raw_of = {"a": "r", "b": "p", "c": "q"}
    # what the last run kept: its clusters under their raw ids (the first run's raw ids were r, p, q)
    kept_rows = short_rows(first.assign(cluster_id=[raw_of[c] for c in first["cluster_id"]]))
    # q: the same two reports as c had, with c's score missing (NaN, NULL in the table: None read back)
    scores = pd.DataFrame({"cluster_id": ["p", "q", "r", "s"], "n_reports": [2, 2, 2, 1],
                           "n_reporters": [1.5, 2, 2, 1], "categories": _json_lists([[], ["overig"], ["drugs", "overig"],
                                                                                    ["overig"]])})
    names = {"politie": "Politie", "fiod": "FIOD"}
    previous = store.report_clusters()
    read, held_read = _stored_rows(store, rc2, scores, names, previous=previous, stored_ids=(held := set())), held
    kept, held_kept = _stored_rows(store, rc2, scores, names, previous=previous, stored_ids=(other := set()),
                                   kept_rows=kept_rows), other
    pd.testing.assert_frame_equal(kept, read)
    assert held_kept == held_read == {"a", "b", "c"}
    assert kept[["cluster_id", "stored_id"]].values.tolist() == [["r", "a"], ["p", "b"], ["q", "c"]]
    assert kept["score"].tolist()[:2] == [9.25, 5.0] and pd.isna(kept["score"].iloc[2])
    assert kept["n_reporters"].tolist() == [2.0, 1.5, 2.0]
    assert [type(v) for v in kept["n_reports"]] == [int, int, int]
    # a raw id the kept rows lack is left out; so is one whose stored row is gone
    assert _stored_rows(store, rc2, scores, names, previous=previous,
                        kept_rows=kept_rows[kept_rows["cluster_id"] != "p"])["cluster_id"].tolist() == ["r", "q"]
    store.conn.execute("DELETE FROM cluster_rows WHERE cluster_id = 'a'")
    gone = _stored_rows(store, rc2, scores, names, previous=previous, kept_rows=kept_rows)
    pd.testing.assert_frame_equal(gone, _stored_rows(store, rc2, scores, names, previous=previous))
    assert gone["cluster_id"].tolist() == ["p", "q"]
    # kept rows without a column (an older layout), or no kept counts: the table's rows
    pd.testing.assert_frame_equal(_stored_rows(store, rc2, scores, names, previous=previous,
                                               kept_rows=kept_rows.drop(columns=["agencies"])), gone)
    pd.testing.assert_frame_equal(_stored_rows(store, rc2, scores[["cluster_id", "n_reports"]], names,
                                               previous=previous, kept_rows=kept_rows), gone)
    store.close()


def test_short_rows_are_none_when_a_value_is_not_a_number():
    from linkage.pipeline import short_rows

    frame = pd.DataFrame({"cluster_id": ["c"], "score": ["high"], "n_reports": [1], "agencies": [[]]})
    assert short_rows(frame) is None and short_rows(frame.drop(columns=["agencies"])) is None


def test_runs_without_the_kept_short_rows_or_with_an_old_layout_of_them_write_the_same_store(generated, tmp_path,
                                                                                           monkeypatch):
    """Three rounds into three stores: one keeps its short cluster rows (the kept table ``cluster_rows``, whole and
    then as edits: their share made large), one loses them before each run (the rows are read from the clusters
    table), one has them in an older layout (a column missing): every cluster table ends equal, and the re-used
    rows were re-used in all three."""
    import linkage.graph.incremental as gi
    from linkage.graph.incremental import load_state
    from linkage.pipeline import KEPT_ROWS

    monkeypatch.setattr(gi, "TABLE_EDITS_SHARE", 0.95)

    rounds = _rounds(generated, tmp_path, (1300, 1400))
    kept, lost, old = tmp_path / "kept.db", tmp_path / "lost.db", tmp_path / "old.db"
    counts: dict = {}
    layouts = []
    for i, files in enumerate(rounds):
        for store in (kept, lost, old):
            if i and store != kept:
                with EmbeddedStore(store) as s:
                    parts = {p for (p,) in s.conn.execute("SELECT part FROM graph_state")}
                    assert KEPT_ROWS in parts
                    if store == lost:
                        s.conn.execute("DELETE FROM graph_state WHERE part LIKE ?", (KEPT_ROWS + "%",))
                    else:  # the same table without its agencies
                        from linkage.graph.incremental import _read_table, _table_blob

                        blob = s.conn.execute("SELECT data FROM graph_state WHERE part = ?", (KEPT_ROWS,)).fetchone()[0]
                        s.conn.execute("UPDATE graph_state SET data = ? WHERE part = ?",
                                       (_table_blob(_read_table(blob).drop(columns=["agencies"])), KEPT_ROWS))
            counts.setdefault(store, []).append(run(files, store).counts)
        with EmbeddedStore(kept) as s:
            layouts.append({p for (p,) in s.conn.execute("SELECT part FROM graph_state")})
    assert any(f"{KEPT_ROWS}:added" in parts for parts in layouts)
    with EmbeddedStore(kept) as s:
        rows = load_state(s.conn)[1][KEPT_ROWS]
        stored = s.frame("SELECT cluster_id, score, n_reports, agencies FROM clusters")
        assert len(rows) == len(stored)
    assert all(c[-1]["clusters_reused"] > 0 for c in counts.values())
    assert counts[kept][1:] == counts[lost][1:] == counts[old][1:]
    with EmbeddedStore(kept) as a:
        for other in (lost, old):
            with EmbeddedStore(other) as b:
                for table in ("clusters", "report_clusters", "status_history"):
                    pd.testing.assert_frame_equal(
                        a.frame(f"SELECT * FROM {table} ORDER BY 1").drop(columns=["at", "run_id", "id"],
                                                                          errors="ignore"),
                        b.frame(f"SELECT * FROM {table} ORDER BY 1").drop(columns=["at", "run_id", "id"],
                                                                          errors="ignore"))
                assert a.conn.execute("SELECT group_concat(rowid) FROM cluster_rows").fetchone() == \
                    b.conn.execute("SELECT group_concat(rowid) FROM cluster_rows").fetchone()
