"""Entity types resolved in worker processes give exactly what one process gives (issue 4, speed)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from linkage.errors import ConfigError
from linkage.generate import generate
from linkage.pipeline import run
from linkage.resolve import resolve_mentions
from linkage.resolve.engine import type_groups
from linkage.settings import DEFAULT_SETTINGS, load_settings


def _person(i: int, first: str, last: str, dob: str) -> dict:
    return {"mention_id": f"p{i:04d}", "report_id": f"RP{i}", "entity_type": "person", "name": f"{first} {last}",
            "first_name": first, "last_name": last, "birth_date_norm": dob, "bsn_norm": None}


FIRSTS = ["Anna", "Bram", "Carla", "Daan", "Eva", "Finn", "Gijs", "Hanna", "Iris", "Joris", "Lotte", "Milan"]
LASTS = ["Visser", "Smits", "Mulder", "Bos", "Vos", "Peters", "Hendriks", "Dekker", "Brouwer", "Kok"]
MIXED = [_person(i, FIRSTS[i % 12], LASTS[(i // 12) % 10] + ("" if i % 5 else "s"), f"{1940 + i % 60}-0{1 + i % 9}-1{i % 9}")
         for i in range(400)] + [
    {"mention_id": "v1", "report_id": "R1", "entity_type": "vehicle", "plate": "12-ABC-3", "plate_norm": "12ABC3"},
    {"mention_id": "v2", "report_id": "R2", "entity_type": "vehicle", "plate": "12abc3", "plate_norm": "12ABC3"},
    {"mention_id": "ph1", "report_id": "R3", "entity_type": "phone", "phone": "06-12345678", "phone_norm": None},
    {"mention_id": "ph2", "report_id": "R3", "entity_type": "phone", "phone": "+31612345678",
     "phone_norm": "+31612345678"},
]

ADDRESSES = [
    {"mention_id": f"a{i:03d}", "report_id": f"RA{i}", "entity_type": "address",
     "street": ["Dorpsstraat", "Kerkweg", "Molenlaan"][i % 3], "house_number": str(1 + i % 17),
     "postcode": f"{1000 + i % 40}AB", "city": "Utrecht"}
    for i in range(120)
]


def _resolve(processes: int, messages: list[str]):
    return resolve_mentions(pd.DataFrame(MIXED + ADDRESSES), keep_records=True, keep_candidates=True,
                            progress=messages.append, processes=processes)


def test_two_processes_give_exactly_the_serial_result():
    said_serial, said_parallel = [], []
    serial, parallel = _resolve(1, said_serial), _resolve(2, said_parallel)
    pd.testing.assert_frame_equal(serial.assignments, parallel.assignments)
    pd.testing.assert_frame_equal(serial.entities, parallel.entities)
    pd.testing.assert_frame_equal(serial.pairs, parallel.pairs)
    assert [sp.entity_type for sp in serial.scored] == [sp.entity_type for sp in parallel.scored]
    for a, b in zip(serial.scored, parallel.scored):
        for f in ("mention_ids", "left", "right", "weight", "prob", "matched", "levels", "reason"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
            assert getattr(a, f).dtype == getattr(b, f).dtype
    assert serial.model == parallel.model
    assert serial.blocking_report == parallel.blocking_report
    assert list(serial.timings) == list(parallel.timings)
    assert list(serial.diagnostics) == list(parallel.diagnostics)
    for etype, records in serial.diagnostics["records"].items():
        pd.testing.assert_frame_equal(records, parallel.diagnostics["records"][etype])
    # every stage message still arrives (worker messages forwarded), plus one "done" per worker type
    assert set(said_serial) <= set(said_parallel)
    groups = type_groups(pd.DataFrame(MIXED + ADDRESSES)["entity_type"].value_counts().to_dict(), 2)
    assert {m for m in said_parallel if m.endswith(": done")} == {f"{t}: done" for t in groups[1]}


def test_types_no_worker_started_yet_are_taken_back_with_the_same_result(monkeypatch):
    """A worker slow on its first type: this process, done with its own, resolves the types not started yet."""
    import os
    import time

    from linkage.resolve import engine

    parent, original = os.getpid(), engine._resolve_type

    def slow_in_worker(job, etype, say):
        if os.getpid() != parent:
            time.sleep(2.0)
        out = original(job, etype, say)
        out["resolved_by"] = "worker" if os.getpid() != parent else "main"
        return out

    rows = MIXED + ADDRESSES + [
        {"mention_id": f"{t}{i}", "report_id": f"R{t}{i}", "entity_type": t, col: v, f"{col}_norm": v}
        for t, col, v in (("email", "email", "a@b.nl"), ("bank_account", "iban", "NL91ABNA0417164300"))
        for i in range(2)]
    serial = resolve_mentions(pd.DataFrame(rows), keep_records=True)
    said: list[str] = []
    seen: dict[str, str] = {}
    monkeypatch.setattr(engine, "_resolve_type", slow_in_worker)
    for etype, out in engine._run_types(engine._TypeJob(pd.DataFrame(rows), pd.DataFrame(rows)["entity_type"],
                                                        pd.DataFrame(rows)["entity_type"].value_counts().to_dict(),
                                                        engine._settings(None), [], None, None, None, False, True),
                                        sorted(set(r["entity_type"] for r in rows)), 2, said.append):
        seen[etype] = out["resolved_by"]
        part = serial.assignments[serial.assignments["entity_type"] == etype].reset_index(drop=True)
        pd.testing.assert_frame_equal(part, out["assignments"].reset_index(drop=True))
    groups = type_groups(pd.DataFrame(rows)["entity_type"].value_counts().to_dict(), 2)
    assert all(seen[t] == "main" for t in groups[0])
    # the worker claims only the heaviest handed type before this process takes back all the others (also the
    # ones the pool had already queued for the worker: a queued task claims its type only when it starts)
    cost = engine.type_costs(pd.DataFrame(rows)["entity_type"].value_counts().to_dict())
    heaviest = sorted(groups[1], key=lambda t: (-cost[t], t))[0]
    assert len(groups[1]) >= 3
    assert {t for t in groups[1] if seen[t] == "worker"} == {heaviest}
    assert {m for m in said if m.endswith(": done")} == {f"{t}: done" for t in groups[1]}


def test_a_worker_killed_mid_resolve_is_a_clear_error_not_a_broken_pool(monkeypatch):
    """A worker process that dies (the kernel's OOM killer: SIGKILL) stops the resolve with a LinkageError
    naming the types not resolved and the way round it, not a bare BrokenProcessPool."""
    import os
    import signal

    from linkage.errors import LinkageError
    from linkage.resolve import engine

    parent, original = os.getpid(), engine._resolve_type

    def dies_in_worker(job, etype, say):
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(job, etype, say)

    rows = MIXED + ADDRESSES
    frame = pd.DataFrame(rows)
    monkeypatch.setattr(engine, "_resolve_type", dies_in_worker)
    job = engine._TypeJob(frame, frame["entity_type"], frame["entity_type"].value_counts().to_dict(),
                          engine._settings(None), [], None, None, None, False, True)
    with pytest.raises(LinkageError, match=r"worker process stopped unexpectedly.*processes = 1"):
        list(engine._run_types(job, sorted(set(frame["entity_type"])), 2, lambda stage: None))


def test_types_are_spread_heaviest_first_and_deterministically():
    counts = {"person": 40_000, "address": 45_000, "business": 8_000, "phone": 9_000, "vehicle": 5_000,
              "email": 1_000, "bank_account": 2_000}
    groups = type_groups(counts, 2)
    assert groups == type_groups(dict(reversed(list(counts.items()))), 2)
    assert sorted(t for g in groups for t in g) == sorted(counts)
    # person and address, the two heavy types, go to different processes
    assert not any("person" in g and "address" in g for g in groups)
    assert type_groups(counts, 1) == [sorted(counts)]
    assert type_groups({"phone": 3}, 4) == [["phone"]]


def test_processes_setting(tmp_path):
    assert load_settings().resolve_processes == 2
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(DEFAULT_SETTINGS).read_text().replace("processes = 2", "processes = 0"))
    with pytest.raises(ConfigError, match="processes"):
        load_settings(bad)


def _tables(path: Path) -> dict[str, list]:
    con = sqlite3.connect(path)
    out = {}
    for t in ("mention_entities", "entities", "er_state", "report_clusters", "clusters", "mention_links"):
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({t})") if r[1] not in ("at", "started_at")]
        out[t] = con.execute(f"SELECT {', '.join(cols)} FROM {t} ORDER BY {', '.join(cols)}").fetchall()
    con.close()
    return out


def test_pipeline_with_worker_processes_equals_one_process(tmp_path):
    folder = tmp_path / "gen"
    generate(400, 3, folder)
    files = [folder / "reports.csv", folder / "mentions.csv"]
    text = Path(DEFAULT_SETTINGS).read_text()
    serial_toml, parallel_toml = tmp_path / "serial.toml", tmp_path / "parallel.toml"
    serial_toml.write_text(text.replace("processes = 2", "processes = 1"))
    parallel_toml.write_text(text.replace("parallel_min_mentions = 20000", "parallel_min_mentions = 0"))
    run(files, tmp_path / "serial.db", settings_path=serial_toml)
    run(files, tmp_path / "parallel.db", settings_path=parallel_toml)
    assert _tables(tmp_path / "serial.db") == _tables(tmp_path / "parallel.db")


def test_mentions_read_per_type_by_each_process_give_the_result_of_the_whole_table(tmp_path):
    from functools import partial

    from linkage.resolve.engine import MentionsByType
    from linkage.store import EmbeddedStore
    from linkage.store.embedded import mentions_of_type
    from loaders import load_files

    folder = tmp_path / "gen"
    generate(300, 5, folder)
    with EmbeddedStore(tmp_path / "s.db") as store:
        load_files([folder / "reports.csv", folder / "mentions.csv"], store)
        whole = store.mentions()
        by_type = MentionsByType(store.mention_type_counts(), partial(mentions_of_type, store.path))
        assert sum(by_type.counts.values()) == len(whole) and len(by_type.counts) >= 5
        for etype in by_type.counts:
            part = by_type.read(etype)
            assert part["mention_id"].tolist() == whole.loc[whole["entity_type"] == etype, "mention_id"].tolist()
            assert list(part.columns) == list(whole.columns)
        expected = resolve_mentions(whole, keep_records=True)
        for processes in (1, 2):
            got = resolve_mentions(by_type, keep_records=True, processes=processes)
            pd.testing.assert_frame_equal(expected.assignments, got.assignments)
            pd.testing.assert_frame_equal(expected.entities, got.entities)
            pd.testing.assert_frame_equal(expected.pairs, got.pairs)
            assert expected.model == got.model
            for etype, records in expected.diagnostics["records"].items():
                pd.testing.assert_frame_equal(records, got.diagnostics["records"][etype])


def _er_state(write) -> tuple[list, str]:
    """The ``er_state`` rows (rowid included) and the state's ``meta`` row that ``write(conn)`` leaves."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    write(conn)
    return (conn.execute("SELECT rowid, * FROM er_state ORDER BY rowid").fetchall(),
            conn.execute("SELECT value FROM meta WHERE key = 'er_state'").fetchone()[0])


def test_state_encoded_where_each_type_is_resolved_is_the_state_save_state_writes():
    """pipeline.resolve_stage has each type's process make and encode its part of the incremental state
    (``finish_type``); that writes the rows and meta row a full ``save_state`` of ``state_from_resolution`` does."""
    import json
    from functools import partial

    from linkage.pipeline import _encoded_state
    from linkage.resolve.incremental import save_encoded_state, save_state, state_from_resolution, state_hash

    mentions = pd.DataFrame(MIXED + ADDRESSES)
    judgements = [("p0001", "p0013", "same"), ("a001", "a004", "different")]
    whole = resolve_mentions(mentions, judgements=judgements, keep_records=True)
    model = json.loads(json.dumps(whole.model, default=str))
    expected = _er_state(lambda conn: save_state(conn, state_from_resolution(whole, whole.diagnostics["records"], model,
                                                                             judgements)))
    for processes in (1, 2):
        res = resolve_mentions(mentions, judgements=judgements, processes=processes,
                               finish_type=partial(_encoded_state, judgements=judgements))
        encoded = res.diagnostics["finished"]
        assert res.scored == [] and list(encoded) == sorted(encoded)  # pairs stay where they were encoded
        assert {t: n for t, (_, n) in encoded.items() if n} == {sp.entity_type: len(sp) for sp in whole.scored}
        pd.testing.assert_frame_equal(res.assignments, whole.assignments)
        got = _er_state(lambda conn: save_encoded_state(conn, state_hash(model), judgements,
                                                        {t: enc for t, (enc, _) in encoded.items()}))
        assert got == expected
