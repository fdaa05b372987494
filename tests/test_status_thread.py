"""The status stage's store-free computing made in a thread while the store stage writes
(:class:`linkage.pipeline.InThread`, :func:`linkage.feedback.lifecycle.advance_inputs`): the same rows as computing
it in place, run after run, and a run whose thread failed writes what the threaded run writes."""
from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from linkage import pipeline
from linkage.pipeline import InThread


def test_in_thread_gives_the_value_or_none():
    assert InThread(sorted, [3, 1, 2]).result() == [1, 2, 3]
    assert InThread(int, "not a number").result() is None


def test_advance_inputs_ahead_give_the_rows_computed_in_place(tmp_path, monkeypatch):
    """advance_changed with its inputs computed ahead (advance_inputs, the kept inputs compared ahead or not)
    writes the rows, ids included, that it writes computing them itself, run after run."""
    from linkage.feedback.lifecycle import advance_changed, advance_inputs, read_kept_inputs
    from linkage.store import EmbeddedStore

    monkeypatch.setenv("LINKAGE_USER", "tester")
    reports = [f"R-{i:02d}" for i in range(8)]
    stores = {}
    for name in ("ahead", "kept_in_place", "plain"):
        s = EmbeddedStore(tmp_path / f"{name}.db")
        s.insert_rows("reports", [{"report_id": r, "received_at": "2025-03-03", "category": "overig",
                                   "content_hash": r} for r in reports],
                      ["report_id", "received_at", "category", "content_hash"])
        stores[name] = s
    runs = [({"R-00": "C1", "R-01": "C1", "R-02": "C2"}, {"C1": ["politie"], "C2": []}),
            ({"R-00": "C1", "R-01": "C1", "R-02": "C2", "R-03": "C2"}, {"C1": ["politie"], "C2": ["fiod"]}),
            ({"R-00": "C3", "R-02": "C2", "R-03": "C2", "R-05": "C3"}, {"C2": ["fiod"], "C3": ["politie", "riec"]})]
    for members, agencies in runs:
        rc = pd.DataFrame({"report_id": list(members), "cluster_id": list(members.values())})
        routing = pd.DataFrame({"cluster_id": list(agencies), "agencies": [json.dumps(a) for a in agencies.values()]})
        counts = {}
        for name, s in stores.items():
            if name == "ahead":
                s.conn.execute("CREATE TABLE IF NOT EXISTS status_inputs (report_id TEXT PRIMARY KEY, cluster_id TEXT, "
                               "agencies TEXT)")
                prepared = advance_inputs(rc, routing, read_kept_inputs(s.conn))
                assert prepared.changed is not None
            elif name == "kept_in_place":
                prepared = advance_inputs(rc, routing)
                assert prepared.changed is None
            else:
                prepared = None
            counts[name] = int(advance_changed(s, rc, routing, prepared=prepared))
        assert len(set(counts.values())) == 1
        rows = {name: s.conn.execute("SELECT id, report_id, from_status, to_status, note, agency FROM status_history "
                                     "ORDER BY id").fetchall() for name, s in stores.items()}
        kept = {name: sorted(s.conn.execute("SELECT * FROM status_inputs").fetchall()) for name, s in stores.items()}
        assert rows["ahead"] == rows["kept_in_place"] == rows["plain"]
        assert kept["ahead"] == kept["kept_in_place"] == kept["plain"]
    assert len(rows["plain"]) >= 5
    for s in stores.values():
        s.close()



@pytest.fixture(scope="module")
def two_parts(tmp_path_factory):
    import sys
    from pathlib import Path

    from linkage.generate import generate

    sys.path.insert(0, str(Path(__file__).parent))
    from test_pipeline import _split

    folder = tmp_path_factory.mktemp("gen")
    generate(900, 3, folder)
    return _split(folder, folder / "parts", 700)


def _tables(store):
    """Every table's rows (bench.bench_run.store_digest), the time-stamped ones without their times."""
    from bench.bench_run import store_digest

    digest = store_digest(store)
    for name in ("runs", "cluster_history", "status_history"):
        digest.pop(name, None)
    with sqlite3.connect(store) as c:
        digest["status_history"] = c.execute("SELECT id, report_id, actor, from_status, to_status, note, agency "
                                             "FROM status_history ORDER BY id").fetchall()
        digest["cluster_history"] = c.execute("SELECT cluster_id, event, related_ids FROM cluster_history "
                                              "ORDER BY rowid").fetchall()
    return digest


def _failing(fn, *args, name="work"):
    """An InThread whose computing raises (the status stage then computes in place)."""
    def boom(*_):
        raise RuntimeError("no")
    return InThread(boom, *args, name=name)


def test_run_with_the_status_thread_writes_what_computing_in_place_writes(two_parts, tmp_path, monkeypatch):
    """A +k run whose status inputs come from the thread leaves every table as the same run does when the
    thread's computing failed (the status stage computes them itself); the thread is used on both paths."""
    from linkage.pipeline import run

    first, second = two_parts
    base = tmp_path / "base.db"
    run(first, base)
    started = []
    real = pipeline.InThread

    def spied(fn, *args, name="work"):
        started.append(name)
        return real(fn, *args, name=name)
    results = {}
    for case in ("thread", "failed"):
        store = tmp_path / f"{case}.db"
        store.write_bytes(base.read_bytes())
        started.clear()
        with monkeypatch.context() as m:
            m.setattr(pipeline, "InThread", spied if case == "thread" else _failing)
            summary = run(second, store)
        assert summary.counts["components_reclustered"] < summary.counts["components"]  # incremental
        if case == "thread":
            assert started == ["status-inputs"]
        # a failed thread is said in the run's counts (the class name of its error stays in the InThread)
        assert summary.counts.get("status_inputs_in_place") == (1 if case == "failed" else None)
        results[case] = _tables(store)
    assert results["thread"] == results["failed"]
    assert results["thread"]["status_history"] and results["thread"]["report_clusters"][0]
