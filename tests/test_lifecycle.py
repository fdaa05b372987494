"""Report lifecycle: every legal transition, every illegal one refused, routing moves reports forward."""
from __future__ import annotations

import sys
from pathlib import Path
import itertools
import json
import sqlite3

import pandas as pd
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from lifecycle_paths import PATH_TO, bring  # noqa: E402

import cli
from linkage.errors import NotFoundError
from linkage.feedback.lifecycle import (
    FINAL_STATUSES,
    STATUSES,
    TRANSITIONS,
    TransitionError,
    active_case_clusters,
    advance_after_routing,
    advance_changed,
    cluster_history,
    current_status,
    current_statuses,
    history,
    record_cluster_events,
    set_case,
    set_status,
)
from linkage.store import EmbeddedStore

REPORTS = ["R-1001", "R-2002", "R-3003", "R-4004", "R-5005"]


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKAGE_USER", "tester")
    s = EmbeddedStore(tmp_path / "l.db")
    s.insert_rows("reports", [{"report_id": r, "received_at": "2025-03-03", "category": "overig", "content_hash": r}
                              for r in REPORTS], ["report_id", "received_at", "category", "content_hash"])
    yield s
    s.close()


LEGAL = [(f, t) for f, targets in TRANSITIONS.items() for t in targets]
ILLEGAL = [(f, t) for f, t in itertools.product(STATUSES, STATUSES) if (f, t) not in LEGAL]


def test_no_history_means_ontvangen(store):
    assert current_status(store, "R-1001") == "ontvangen"
    assert set(current_statuses(store).values()) == {"ontvangen"}


@pytest.mark.parametrize("from_status,to_status", LEGAL)
def test_every_legal_transition(store, from_status, to_status):
    bring(store, "R-1001", from_status)
    agency = "FIOD" if to_status == "doorgezet" else None
    set_status(store, "R-1001", to_status, note="checked", agency=agency)
    assert current_status(store, "R-1001") == to_status
    last = history(store, "R-1001").iloc[-1]
    assert (last["from_status"], last["to_status"], last["actor"], last["note"]) == (from_status, to_status, "tester", "checked")


@pytest.mark.parametrize("from_status,to_status", ILLEGAL)
def test_every_illegal_transition_is_refused(store, from_status, to_status):
    bring(store, "R-1001", from_status)
    before = len(history(store, "R-1001"))
    with pytest.raises(TransitionError) as exc:
        set_status(store, "R-1001", to_status, agency="Politie")
    msg = str(exc.value)
    assert "R-1001" in msg and f"'{from_status}'" in msg and f"'{to_status}'" in msg
    assert len(history(store, "R-1001")) == before
    assert current_status(store, "R-1001") == from_status


def test_doorgezet_again_needs_another_agency(store):
    bring(store, "R-1001", "doorgezet")
    with pytest.raises(TransitionError, match="another agency"):
        set_status(store, "R-1001", "doorgezet", agency="Politie")
    set_status(store, "R-1001", "doorgezet", agency="Belastingdienst")
    assert history(store, "R-1001")["agency"].tolist()[-1] == "Belastingdienst"


def test_doorgezet_needs_an_agency(store):
    bring(store, "R-1001", "gekoppeld")
    with pytest.raises(TransitionError, match="--agency"):
        set_status(store, "R-1001", "doorgezet")


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_final_statuses_reopen_only_explicitly(store, final):
    bring(store, "R-1001", final)
    with pytest.raises(TransitionError, match="final"):
        set_status(store, "R-1001", "in_behandeling")
    with pytest.raises(TransitionError, match="final"):
        set_status(store, "R-1001", "gekoppeld", reopen=True)
    set_status(store, "R-1001", "in_behandeling", reopen=True, note="nieuwe informatie")
    assert current_status(store, "R-1001") == "in_behandeling"


def test_reopen_of_open_report_is_refused(store):
    with pytest.raises(TransitionError, match="not in a final status"):
        set_status(store, "R-1001", "in_behandeling", reopen=True)


def test_unknown_status_and_unknown_report(store):
    with pytest.raises(TransitionError, match="is not a status"):
        set_status(store, "R-1001", "klaar")
    with pytest.raises(NotFoundError):
        set_status(store, "R-9999", "in_behandeling")


def test_history_is_append_only(store):
    set_status(store, "R-1001", "in_behandeling")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.conn.execute("UPDATE status_history SET to_status='afgehandeld'")
    assert current_status(store, "R-1001") == "in_behandeling"


# --- routing moves reports forward ------------------------------------------------------------------
def _routing_setup(store):
    rc = pd.DataFrame({"report_id": ["R-1001", "R-2002", "R-3003", "R-4004"],
                       "cluster_id": ["C-1", "C-1", "C-2", "C-1"]})
    routing = pd.DataFrame({"cluster_id": ["C-1", "C-2"], "agencies": [["Politie"], []]})
    bring(store, "R-4004", "afgehandeld")
    return rc, routing


def test_advance_after_routing(store):
    rc, routing = _routing_setup(store)
    summary = advance_after_routing(store, rc, routing)
    statuses = current_statuses(store)
    assert statuses == {"R-1001": "doorgezet", "R-2002": "doorgezet", "R-3003": "gekoppeld",
                        "R-4004": "afgehandeld", "R-5005": "ontvangen"}
    assert (summary.gekoppeld, summary.doorgezet, summary.skipped_final) == (3, 2, 1)
    assert int(summary) == 5
    last = history(store, "R-1001").iloc[-1]
    assert (last["agency"], last["actor"]) == ("Politie", "linkage")


def test_advance_after_routing_is_idempotent(store):
    rc, routing = _routing_setup(store)
    advance_after_routing(store, rc, routing)
    n = store.count("status_history")
    again = advance_after_routing(store, rc, routing)
    assert int(again) == 0 and store.count("status_history") == n


def test_a_report_in_an_unrouted_and_a_routed_cluster_is_linked_and_routed_in_one_call(store):
    """A report in two clusters (possible outside the main job, which puts a report in one): the second
    cluster sees the status the first gave it, so one call writes gekoppeld and doorgezet and a second call
    writes nothing (it wrote doorgezet only on the second call before)."""
    rc = pd.DataFrame({"report_id": ["R-1001", "R-1001"], "cluster_id": ["C-A", "C-B"]})
    routing = pd.DataFrame({"cluster_id": ["C-A", "C-B"], "agencies": [[], ["Politie"]]})
    first = advance_after_routing(store, rc, routing)
    assert (first.gekoppeld, first.doorgezet) == (1, 1)
    assert history(store, "R-1001")["to_status"].tolist() == ["gekoppeld", "doorgezet"]
    assert int(advance_after_routing(store, rc, routing)) == 0


def test_new_agency_for_a_routed_cluster_adds_one_row(store):
    rc, routing = _routing_setup(store)
    advance_after_routing(store, rc, routing)
    routing2 = pd.DataFrame({"cluster_id": ["C-1", "C-1"], "agency": ["Politie", "FIOD"]})
    summary = advance_after_routing(store, rc, routing2)
    assert summary.doorgezet == 2
    assert history(store, "R-1001")["agency"].tolist()[-1] == "FIOD"
    assert int(advance_after_routing(store, rc, routing2)) == 0


def test_analyst_taking_a_report_back_is_not_overruled(store):
    rc, routing = _routing_setup(store)
    advance_after_routing(store, rc, routing)
    set_status(store, "R-3003", "in_behandeling", note="eerst zelf uitzoeken")
    advance_after_routing(store, rc, routing)
    assert current_status(store, "R-3003") == "in_behandeling"


def test_advance_reads_the_store_by_default(store):
    store.insert_rows("clusters", [{"cluster_id": "C-1", "agencies": json.dumps(["Politie", "RIEC"])}],
                      ["cluster_id", "agencies"])
    store.insert_rows("report_clusters", [{"report_id": "R-5005", "cluster_id": "C-1"}], ["report_id", "cluster_id"])
    advance_after_routing(store)
    assert current_status(store, "R-5005") == "doorgezet"
    assert history(store, "R-5005")["agency"].tolist()[-1] == "Politie; RIEC"


def _histories(store) -> list[tuple]:
    return store.conn.execute("SELECT id, report_id, actor, from_status, to_status, note, agency FROM status_history "
                              "ORDER BY id").fetchall()


@pytest.mark.parametrize("as_text", [False, True])
def test_advance_changed_writes_what_advance_after_routing_writes(tmp_path, monkeypatch, as_text):
    """Two stores go through the same runs and analyst actions; one advances through advance_changed (looking
    only at reports whose inputs or history changed), the other through advance_after_routing: every history
    row, ids included, is the same after each step. Agencies as lists, and as the JSON texts a run's clusters
    hold (split once per distinct text)."""
    monkeypatch.setenv("LINKAGE_USER", "tester")
    reports = [f"R-{i:02d}" for i in range(12)]
    stores = []
    for name in ("changed", "all"):
        s = EmbeddedStore(tmp_path / f"{name}.db")
        s.insert_rows("reports", [{"report_id": r, "received_at": "2025-03-03", "category": "overig", "content_hash": r}
                                  for r in reports], ["report_id", "received_at", "category", "content_hash"])
        stores.append(s)
    runs = [  # (report -> cluster, cluster -> agencies, analyst action before the run)
        ({"R-00": "C1", "R-01": "C1", "R-02": "C2", "R-03": "C2"}, {"C1": ["politie"], "C2": []}, None),
        ({"R-00": "C1", "R-01": "C1", "R-02": "C2", "R-03": "C2"}, {"C1": ["politie"], "C2": []}, None),
        ({"R-00": "C1", "R-01": "C1", "R-02": "C2", "R-03": "C2", "R-04": "C2"}, {"C1": ["politie"], "C2": ["fiod"]},
         ("R-00", "in_behandeling")),
        ({"R-00": "C1", "R-01": "C3", "R-02": "C2", "R-04": "C2", "R-05": "C3"}, {"C1": ["politie", "riec"],
                                                                                 "C2": ["fiod"], "C3": ["politie"]},
         ("R-02", "afgehandeld")),
        ({"R-00": "C1", "R-01": "C3", "R-02": "C2", "R-04": "C2", "R-05": "C3", "R-06": "C3"},
         {"C1": ["politie", "riec"], "C2": ["fiod"], "C3": ["politie"]}, ("R-03", "in_behandeling")),
    ]
    for members, agencies, action in runs:
        rc = pd.DataFrame({"report_id": list(members), "cluster_id": list(members.values())})
        routing = pd.DataFrame({"cluster_id": list(agencies), "agencies": [
            json.dumps(a) if as_text else a for a in agencies.values()]})
        counts = []
        for s, advance in zip(stores, (advance_changed, advance_after_routing)):
            if action is not None:
                set_status(s, action[0], action[1], note="analist")
            counts.append(int(advance(s, rc, routing)))
        assert counts[0] == counts[1]
        assert _histories(stores[0]) == _histories(stores[1])
    assert len(_histories(stores[0])) >= 12  # the runs moved reports forward several times
    for s in stores:
        s.close()


@pytest.mark.parametrize("seed", range(6))
def test_advance_over_columns_writes_what_the_loop_writes(tmp_path, monkeypatch, seed):
    """The column-wise rules (one cluster per report) write the rows, in the order, that the report-by-report
    loop writes, from random histories (analyst statuses, agencies recorded before), random routing and
    reports that are not stored; and a report in two clusters takes the loop."""
    import random

    from linkage.feedback.lifecycle import _advance, _advance_arrays, _pairs, _routing_map

    monkeypatch.setenv("LINKAGE_USER", "tester")
    rnd = random.Random(seed)
    stored = [f"R-{i:02d}" for i in range(40)]
    agencies = ["politie", "fiod", "riec", "gemeente"]
    histories = {}
    for r in stored:
        a, b = rnd.sample(agencies, 2)
        histories[r] = rnd.choice([[], [("in_behandeling", None)], [("gekoppeld", None)],
                                   [("gekoppeld", None), ("in_behandeling", None)],
                                   [("gekoppeld", None), ("doorgezet", a)], [("in_behandeling", None), ("afgehandeld", None)],
                                   [("niet_ontvankelijk", None)],
                                   [("gekoppeld", None), ("doorgezet", a), ("doorgezet", f"{a}; {b}")]])
    members = {r: f"C{rnd.randrange(8)}" for r in stored + ["R-98", "R-99"] if rnd.random() < 0.8}
    routing = pd.DataFrame({"cluster_id": [f"C{i}" for i in range(8)],
                            "agencies": [rnd.sample(agencies, rnd.randrange(3)) for _ in range(8)]})
    if seed % 2:
        members_extra = [("R-01", "C9"), ("R-01", "C0")]  # one report in several clusters
    else:
        members_extra = []
    rows = list(members.items()) + members_extra
    rc = pd.DataFrame({"report_id": [r for r, _ in rows], "cluster_id": [c for _, c in rows]})
    out = []
    for name in ("columns", "loop"):
        s = EmbeddedStore(tmp_path / f"{name}.db")
        s.insert_rows("reports", [{"report_id": r, "received_at": "2025-03-03", "category": "overig",
                                   "content_hash": r} for r in stored],
                      ["report_id", "received_at", "category", "content_hash"])
        for r in stored:
            for to, agency in histories[r]:
                set_status(s, r, to, agency=agency, note="analist")
        rids, cids = _pairs(rc)
        with s.transaction():
            if name == "columns":
                summary = _advance_arrays(s.conn, rids, cids, _routing_map(routing), "linkage", "t", None)
            else:
                summary = _advance(s.conn, list(zip(rids.tolist(), cids.tolist())), _routing_map(routing),
                                   "linkage", "t", None)
        out.append((summary.to_dict(), summary.report_ids, _histories(s)))
        s.close()
    assert out[0] == out[1]
    assert out[0][0]["gekoppeld"] and out[0][0]["doorgezet"] and out[0][0]["skipped_final"]


def test_advance_changed_looks_at_a_report_whose_history_changed_since(store):
    """An analyst's row since the last call makes the report looked at again, even with unchanged inputs."""
    rc, routing = _routing_setup(store)
    advance_changed(store, rc, routing)
    set_status(store, "R-1001", "in_behandeling", note="terug")
    set_status(store, "R-1001", "gekoppeld", note="toch")
    routing2 = pd.DataFrame({"cluster_id": ["C-1", "C-2"], "agencies": [["Politie"], ["FIOD"]]})
    summary = advance_changed(store, rc, routing2)
    assert summary.doorgezet == 1 and current_status(store, "R-3003") == "doorgezet"
    assert current_status(store, "R-1001") == "gekoppeld"  # Politie was recorded for it already
    assert int(advance_changed(store, rc, routing2)) == 0


def test_purge_forgets_what_the_status_stage_saw_of_purged_reports(store):
    import datetime as dt

    from linkage.retention import purge

    rc, routing = _routing_setup(store)
    advance_changed(store, rc, routing)
    assert store.count("status_inputs") == 4
    purge(store, 30, now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), actor="test")
    assert store.count("reports") == 0 and store.count("status_inputs") == 0


# --- clusters: cases and history --------------------------------------------------------------------
def test_cases_last_row_wins(store):
    store.insert_rows("report_clusters", [{"report_id": "R-1001", "cluster_id": "C-1"}], ["report_id", "cluster_id"])
    set_case(store, "C-1", True, note="casus 17")
    assert active_case_clusters(store) == {"C-1"}
    set_case(store, "C-1", False)
    assert active_case_clusters(store) == set()
    assert store.count("cluster_cases") == 2
    with pytest.raises(NotFoundError):
        set_case(store, "C-404", True)


def test_cluster_history_storage(store):
    record_cluster_events(store, [("C-1", "created", []), ("C-2", "merged", ["C-7", "C-3"])], run_id=1)
    record_cluster_events(store, [{"cluster_id": "C-3", "event": "dissolved"}], run_id=2)
    hist = cluster_history(store, "C-3")
    assert hist["event"].tolist() == ["merged", "dissolved"]
    assert hist["related_ids"].tolist()[0] == ["C-3", "C-7"]
    with pytest.raises(Exception, match="not one of"):
        record_cluster_events(store, [("C-1", "renamed", [])])


# --- CLI ---------------------------------------------------------------------------------------------
def test_cli_status_show_set_and_refuse(store, tmp_path, capsys):
    db = str(store.path)
    runner = CliRunner()
    res = runner.invoke(cli.app, ["status", "R-1001", "--set", "in_behandeling", "--note", "opgepakt", "--store", db])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli.app, ["status", "R-1001", "--store", db, "--json"])
    data = json.loads(res.stdout)
    assert data["status"] == "in_behandeling" and data["history"][0]["note"] == "opgepakt"
    with pytest.raises(SystemExit) as exc:
        cli.main(["status", "R-1001", "--set", "doorgezet", "--agency", "Politie", "--store", db])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "R-1001" in err and "'in_behandeling'" in err and "'doorgezet'" in err and "Traceback" not in err


def test_cli_case(store):
    store.insert_rows("report_clusters", [{"report_id": "R-1001", "cluster_id": "C-1"}], ["report_id", "cluster_id"])
    runner = CliRunner()
    res = runner.invoke(cli.app, ["case", "C-1", "--active", "--note", "casus 17", "--store", str(store.path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["active"] is True
    res = runner.invoke(cli.app, ["case", "C-1", "--closed", "--store", str(store.path), "--json"])
    assert json.loads(res.stdout)["active"] is False


@pytest.mark.parametrize("command", ["status", "feedback", "judge", "judgements", "audit", "purge", "case"])
def test_every_new_command_has_help_with_an_example(command):
    res = CliRunner().invoke(cli.app, [command, "--help"])
    assert res.exit_code == 0 and "Example:" in res.stdout


def test_inputs_changed_agrees_with_a_row_by_row_comparison():
    """``_inputs_changed`` (the status stage's comparison of the kept inputs, in Arrow) marks exactly the reports
    whose kept row is missing or differs and names the kept reports no longer current, on the path for the same
    reports (compared row by row) and on the one with reports added and gone."""
    import random

    import numpy as np

    from linkage.feedback.lifecycle import _inputs_changed

    rng = random.Random(3)
    ids = sorted(f"R{i:03d}" for i in range(60))
    kept = [(r, rng.choice("abc"), rng.choice(['[]', '["politie"]', '["fiod", "politie"]'])) for r in ids]
    for current_ids in (ids, sorted(set(ids[5:]) | {"R900", "R901"}), []):
        cur = [(r, rng.choice("abc"), rng.choice(['[]', '["politie"]'])) for r in current_ids]
        arrays = [np.array([row[k] for row in cur], dtype=object) for k in range(3)]
        changed, gone = _inputs_changed(tuple(zip(*kept)), *arrays)
        by_id = {r: (c, a) for r, c, a in kept}
        assert changed.tolist() == [by_id.get(r) != (c, a) for r, c, a in cur]
        assert gone == [r for r, _, _ in kept if r not in set(current_ids)]
    changed, gone = _inputs_changed(([], [], []), np.array(["R1"], dtype=object), np.array(["a"], dtype=object),
                                    np.array(["[]"], dtype=object))
    assert changed.tolist() == [True] and gone == []


def test_agency_texts_are_what_the_routing_map_gives():
    """``_agency_texts`` (one split per distinct agencies text) gives every routed cluster the JSON list
    ``_routing_map`` gives it, for one row per cluster and for several rows of a cluster (the map's union)."""
    import random

    from linkage.feedback.lifecycle import _agency_texts, _routing_map

    rng = random.Random(5)
    values = ['["politie", "fiod"]', '["fiod"]', "[]", "", None, "politie; riec", "riec|politie", '["x"]']
    texts = [v for v in values if v is not None]
    for ids, pick in (([f"C{i}" for i in range(40)], values), ([f"C{rng.randrange(10)}" for _ in range(40)], values),
                      ([f"C{i}" for i in range(40)], texts)):  # the last: no missing text, one row a cluster
        routing = pd.DataFrame({"cluster_id": ids, "agencies": [rng.choice(pick) for _ in ids]})
        got_ids, got_texts = _agency_texts(routing)
        expect = {c: json.dumps(a) for c, a in _routing_map(routing).items()}
        assert dict(zip(got_ids.to_pylist(), got_texts.to_pylist())) == expect
        assert len(got_ids) == len(expect)


def test_kept_inputs_read_as_one_text_or_row_by_row(store):
    """The kept status inputs read as one text are the table's rows; a text longer than SQLite allows, or a
    value holding a separator (never written by a run), makes the reader take the rows one by one, with the
    same result."""
    from linkage.feedback.lifecycle import STATUS_INPUTS_TABLE, read_kept_inputs

    store.conn.execute(STATUS_INPUTS_TABLE)
    assert read_kept_inputs(store.conn) == ([], [], [])
    rows = [("R1", "c_1", '["politie"]'), ("R2", "c_1", "[]"), ("R3", "c_2", '["fiod", "politie"]')]
    store.conn.executemany("INSERT INTO status_inputs VALUES (?, ?, ?)", rows)

    class Spy:  # the connection, naming the queries read_kept_inputs makes
        def __init__(self, conn):
            self.conn, self.queries = conn, []

        def execute(self, sql, *args):
            self.queries.append(sql)
            return self.conn.execute(sql, *args)

    def read(conn=store.conn):
        return sorted(zip(*(list(col) if isinstance(col, list) else col.to_pylist() for col in read_kept_inputs(conn))))

    assert read() == rows
    whole = store.conn.execute("SELECT group_concat(report_id || cluster_id || agencies) FROM status_inputs")
    limit = len(whole.fetchone()[0])  # shorter than the one text (which adds separators): too long for SQLite
    before = store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)
    try:
        spy = Spy(store.conn)
        assert read(spy) == rows
        assert len(spy.queries) == 2 and "group_concat" not in spy.queries[1]  # the one text failed: row by row
    finally:
        store.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, before)
    for odd in (("R4", "c_3", '["a\x1fb"]'), ("R5", "c_3\x1e", "[]")):
        store.conn.execute("INSERT INTO status_inputs VALUES (?, ?, ?)", odd)
        rows.append(odd)
        assert read() == sorted(rows)
