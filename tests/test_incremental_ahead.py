"""The incremental resolve stage's inputs read early: every type's stored state read ahead (in the run's
read-ahead thread, :func:`linkage.resolve.incremental.read_type_states`) and used only while it is still the
store's, and the new mentions read one type at a time (:func:`linkage.resolve.incremental._new_mentions_by_type`)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import linkage.resolve.incremental as incremental
from linkage.generate import generate
from linkage.pipeline import load_stage, resolve_stage
from linkage.resolve.features import INPUT_COLUMNS
from linkage.resolve.incremental import (
    _new_mentions, _new_mentions_by_type, load_type_state, read_type_states, state_meta,
)
from linkage.settings import load_settings
from linkage.store import EmbeddedStore
from linkage.store.embedded import bump_er_generation
from linkage.store.readahead import ReadAhead

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A store resolved once, with a second part loaded after (its mentions not resolved yet)."""
    from test_pipeline import _split

    folder = tmp_path_factory.mktemp("gen")
    generate(900, 13, folder)
    first, second = _split(folder, folder / "parts", 750)
    store = folder / "loaded.db"
    load_stage(first, store)
    with EmbeddedStore(store) as s:
        resolve_stage(s, load_settings(None))
    load_stage(second, store)
    with sqlite3.connect(store) as c:  # the log into the file: copies of the file are whole
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


def _copy(loaded: Path, to: Path) -> Path:
    shutil.copyfile(loaded, to)
    return to


def _ahead(store: Path):
    """The state as the run's thread reads it (its own read-only connection, one transaction)."""
    with ReadAhead(store, {"er_state": read_type_states}, "test") as ahead:
        return ahead.result("er_state", lambda: pytest.fail("the read ahead failed"))


def _resolved(store: Path) -> dict:
    with sqlite3.connect(store) as c:
        return {t: sorted(c.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("mention_entities", "entities", "er_state", "meta")}


def _counting_loads(monkeypatch) -> list:
    calls = []
    real = incremental.load_type_state

    def counted(conn, etype, meta):
        calls.append(etype)
        return real(conn, etype, meta)
    monkeypatch.setattr(incremental, "load_type_state", counted)
    return calls


class _Given:
    """A stand-in for the run's reads ahead, giving ``er_state`` once; its reads "go on" for the first
    ``busy`` questions (:meth:`reading`), and are over once it was taken."""

    def __init__(self, ready, busy: int = 0) -> None:
        self.ready, self.taken, self.busy, self.asked = ready, 0, busy, 0

    def result(self, name, fallback):
        assert name == "er_state"
        self.taken += 1
        return self.ready if self.taken == 1 else fallback()

    def reading(self, name):
        assert name == "er_state" and not self.taken
        self.asked += 1
        return self.asked <= self.busy


def test_the_states_read_ahead_are_those_the_resolve_stage_reads(loaded, tmp_path):
    """Every type's state, the meta row and the generation, equal to what the stage reads type by type."""
    store = _copy(loaded, tmp_path / "s.db")
    ready = _ahead(store)
    with EmbeddedStore(store) as s:
        import json

        meta = state_meta(s.conn, json.loads(s.get_meta("er_model")))
        assert ready.meta == meta
        assert ready.n_entities == s.count("entities")  # the count the write numbers fresh ids against
        assert set(ready.states) == set(meta["n"])
        for etype, got in ready.states.items():
            want = load_type_state(s.conn, etype, meta)
            pd.testing.assert_frame_equal(got.records, want.records)
            assert got.pairs.keys() == want.pairs.keys()
            assert all(np.array_equal(got.pairs[f], want.pairs[f]) for f in want.pairs)
            assert np.array_equal(got.region, want.region)
            assert (got.keys is None) == (want.keys is None) and got.key_rules == want.key_rules
            if want.keys is not None:
                assert np.array_equal(got.keys, want.keys)
            assert all(np.array_equal(a, b) for a, b in zip(got.edits, want.edits))
            assert (got.block_stats is None) == (want.block_stats is None)


def test_a_store_without_a_state_reads_none_ahead(tmp_path):
    store = tmp_path / "empty.db"
    EmbeddedStore(store).close()
    assert _ahead(store) is None


@pytest.mark.parametrize("processes", [1, 2])
def test_the_resolve_stage_uses_the_states_read_ahead_with_the_same_result(loaded, tmp_path, monkeypatch, processes):
    """With the states read ahead no type's state is read again (in this process, nor in the forked one: its
    reads fail here), and the stage writes what it writes reading them itself."""
    settings = dataclasses.replace(load_settings(None), resolve_processes=processes, resolve_parallel_min_mentions=0)
    plain = _copy(loaded, tmp_path / "plain.db")
    with EmbeddedStore(plain) as s:
        assert "touched_mentions" in resolve_stage(s, settings)
    store = _copy(loaded, tmp_path / "ahead.db")
    given = _Given(_ahead(store))

    def no_read(conn, etype, meta):
        raise AssertionError(f"{etype}: read again")
    monkeypatch.setattr(incremental, "load_type_state", no_read)
    with EmbeddedStore(store) as s:
        assert "touched_mentions" in resolve_stage(s, settings, ahead=given)
    assert given.taken == 1
    assert _resolved(store) == _resolved(plain)


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("busy", [1, 2, 99])
def test_new_mentions_prepared_while_the_reads_go_on_give_the_same_result(loaded, tmp_path, monkeypatch, processes,
                                                                          busy):
    """While the states are still read ahead, the stage reads and prepares types' new mentions itself (the most
    costly type first, one type per question while the reads go on, each prepared once: not again by the
    process that updates it) before it takes the states; it writes what a stage that waited writes."""
    settings = dataclasses.replace(load_settings(None), resolve_processes=processes, resolve_parallel_min_mentions=0)
    plain = _copy(loaded, tmp_path / "plain.db")
    with EmbeddedStore(plain) as s:
        assert "touched_mentions" in resolve_stage(s, settings)
    store = _copy(loaded, tmp_path / "ahead.db")
    given = _Given(_ahead(store), busy=busy)
    prepared: list = []
    real = incremental.prepare
    log = tmp_path / "prepared.log"  # every process's preparations (the forked one's too)

    def counted(sub, etype):
        prepared.append((etype, given.taken))
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {etype}\n")
        return real(sub, etype)
    monkeypatch.setattr(incremental, "prepare", counted)
    import linkage.forking

    monkeypatch.setattr(linkage.forking, "fork_would_wait", lambda: False)
    with EmbeddedStore(store) as s:
        meta = state_meta(s.conn, __import__("json").loads(s.get_meta("er_model")))
        new, _, _ = _new_mentions_by_type(s, defer=True)
        assert "touched_mentions" in resolve_stage(s, settings, ahead=given)
    assert given.taken == 1
    ahead = [etype for etype, taken in prepared if not taken]  # prepared before the states were taken
    order = incremental._claim_order(meta, new, sorted(set(new) | set(meta["n"])))
    assert ahead == [t for t in order if t in new][:min(busy, len(new))]
    if processes == 1:
        assert sorted(etype for etype, _ in prepared) == sorted(new)
    assert sorted(line.split()[1] for line in log.read_text().splitlines()) == sorted(new)  # once, by anyone
    assert _resolved(store) == _resolved(plain)


def test_the_stage_prepares_nothing_ahead_when_nothing_is_read_ahead(loaded, tmp_path, monkeypatch):
    """Reads already over (and no thread a fork waits for): every type's new mentions are prepared by the
    process that updates it, after the states are taken."""
    import linkage.forking

    monkeypatch.setattr(linkage.forking, "fork_would_wait", lambda: False)
    store = _copy(loaded, tmp_path / "s.db")
    given = _Given(_ahead(store))
    prepared: list = []
    real = incremental.prepare
    monkeypatch.setattr(incremental, "prepare", lambda sub, etype: prepared.append(given.taken) or real(sub, etype))
    settings = dataclasses.replace(load_settings(None), resolve_processes=1)
    with EmbeddedStore(store) as s:
        assert "touched_mentions" in resolve_stage(s, settings, ahead=given)
    assert prepared and all(prepared) and given.asked == 1


def test_states_read_before_the_state_changed_are_not_used(loaded, tmp_path, monkeypatch):
    """A generation or meta row that moved since the read (a resolve write in between): every type is read
    again, with the result of a stage that read them itself."""
    settings = load_settings(None)
    plain = _copy(loaded, tmp_path / "plain.db")
    with EmbeddedStore(plain) as s:
        n_types = len(s.conn.execute("SELECT DISTINCT entity_type FROM er_state").fetchall())
        assert "touched_mentions" in resolve_stage(s, settings)
    for case in ("generation", "meta"):
        store = _copy(loaded, tmp_path / f"{case}.db")
        ready = _ahead(store)
        if case == "generation":
            ready.generation -= 1
        else:
            ready.meta = dict(ready.meta, judgements=[["x", "y", "same"]])
        calls = _counting_loads(monkeypatch)
        with EmbeddedStore(store) as s:
            assert "touched_mentions" in resolve_stage(s, settings, ahead=_Given(ready))
        assert len(calls) == n_types
        assert _resolved(store) == _resolved(plain)
        monkeypatch.undo()


def test_a_generation_bumped_after_the_read_makes_the_stage_read_itself(loaded, tmp_path, monkeypatch):
    store = _copy(loaded, tmp_path / "s.db")
    ready = _ahead(store)
    with EmbeddedStore(store) as s:
        with s.transaction() as conn:
            bump_er_generation(conn)
        calls = _counting_loads(monkeypatch)
        assert "touched_mentions" in resolve_stage(s, load_settings(None), ahead=_Given(ready))
    assert calls


def test_a_store_the_incremental_path_refuses_drops_the_states_read_ahead(loaded, tmp_path):
    """The incremental path gives up before it takes the states (an assignment deleted outside the resolver):
    the states are taken and let go all the same, not held through the full path that follows."""
    store = _copy(loaded, tmp_path / "s.db")
    given = _Given(_ahead(store), busy=5)
    with EmbeddedStore(store) as s:
        with s.transaction() as conn:
            conn.execute("DELETE FROM mention_entities WHERE rowid = (SELECT MIN(rowid) FROM mention_entities)")
        assert "touched_mentions" not in resolve_stage(s, load_settings(None), ahead=given)
    assert given.taken == 1 and given.asked == 0


def test_a_full_resolve_stage_takes_and_drops_the_states_read_ahead(loaded, tmp_path):
    store = _copy(loaded, tmp_path / "s.db")
    given = _Given(_ahead(store))
    with EmbeddedStore(store) as s:
        assert "touched_mentions" not in resolve_stage(s, load_settings(None), full=True, ahead=given)
    assert given.taken == 1


def test_the_new_mentions_by_type_are_those_of_the_whole_frame(loaded, tmp_path):
    """Per type, the mentions without an entity (mention_id and the columns preparation reads of the type, as
    plain values, by mention id) whether the newest rows are read or every mention is checked."""
    from linkage import model as schema

    store = _copy(loaded, tmp_path / "s.db")
    cols = ", ".join(schema.STORED_MENTION_FIELDS)
    with EmbeddedStore(store) as s:
        k = s.count("mentions") - s.count("mention_entities")
        assert k > 0
        newest = s.conn.execute("SELECT mention_id FROM mentions ORDER BY rowid DESC LIMIT ?", (k,)).fetchall()
        older = s.conn.execute("SELECT mention_id FROM mentions ORDER BY rowid LIMIT 3").fetchall()
        for unassigned in ([], older):  # the k newest rows; also older ones (every mention checked)
            with s.transaction() as conn:
                conn.execute("SAVEPOINT t")
                conn.executemany("DELETE FROM mention_entities WHERE mention_id = ?", unassigned)
                whole, n, resolved = _new_mentions(s, cols)
                decided: list = []
                real = incremental._newest_unassigned

                def counted(*args, **kwargs):
                    decided.append(real(*args, **kwargs))
                    return decided[-1]

                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(incremental, "_newest_unassigned", counted)
                    got, n2, resolved2 = _new_mentions_by_type(s)
                # the k newest rows lacking an entity take the fast path; older ones the check of every mention
                assert len(decided) == 1 and (decided[0][2] is None) == bool(unassigned)
                assert (n, resolved) == (n2, resolved2)
                assert sorted(got) == sorted(set(whole["entity_type"]))
                assert sum(len(df) for df in got.values()) == len(whole) == n - resolved
                for etype, df in got.items():
                    want_cols = ["mention_id"] + [c for c in INPUT_COLUMNS[etype] if c != "mention_id"]
                    assert list(df.columns) == want_cols
                    want = whole[whole["entity_type"] == etype][want_cols].reset_index(drop=True).astype(object)
                    want = want.where(want.notna(), None)
                    assert df["mention_id"].is_monotonic_increasing
                    assert df.to_numpy().tolist() == want.to_numpy().tolist()
                    assert all(df[c].dtype == object for c in df.columns)
                conn.execute("ROLLBACK TO t")


def test_new_mentions_deferred_are_read_as_the_frames_read_at_once(loaded, tmp_path):
    """defer=True: on the fast path each type's new mentions are counted and read later (by the process that
    updates the type, through its own connection) as the same frames the read at once gives; a load committed in
    between is not read (the rowid bound); rows gone in between raise. Off the fast path the frames come at once."""
    from linkage.errors import LinkageError

    store = _copy(loaded, tmp_path / "s.db")
    with EmbeddedStore(store) as s:
        now, n, resolved = _new_mentions_by_type(s)
        later, n2, resolved2 = _new_mentions_by_type(s, defer=True)
        assert (n, resolved) == (n2, resolved2) and sorted(later) == sorted(now)
        assert all(isinstance(v, incremental._NewRows) for v in later.values())
        assert {t: len(v) for t, v in later.items()} == {t: len(v) for t, v in now.items()}
        other = sqlite3.connect(store)
        try:
            for etype, rows in later.items():
                got = rows.read(other)
                assert list(got.columns) == list(now[etype].columns)
                assert got.to_numpy().tolist() == now[etype].to_numpy().tolist()
                assert all(got[c].dtype == object for c in got.columns)
            # a mention appended after the count is past the bound: not read
            etype = sorted(later)[0]
            other.execute(f"INSERT INTO mentions (mention_id, report_id, entity_type, content_hash) "
                          f"VALUES ('zz-late', 'r', ?, 'h')", (etype,))
            assert later[etype].read(other).to_numpy().tolist() == now[etype].to_numpy().tolist()
            # one of the type's counted mentions deleted and another inserted under its rowid: as many rows in the
            # bounds, another mention among them
            rowid, mid = other.execute("SELECT rowid, mention_id FROM mentions WHERE rowid > ? AND rowid <= ? AND "
                                       "entity_type = ? ORDER BY rowid DESC LIMIT 1",
                                       (later[etype].after, later[etype].last, etype)).fetchone()
            other.execute("SAVEPOINT swap")
            other.execute("DELETE FROM mentions WHERE mention_id = ?", (mid,))
            other.execute("INSERT INTO mentions (rowid, mention_id, report_id, entity_type, content_hash) "
                          "VALUES (?, 'zz-swapped', 'r', ?, 'h')", (rowid, etype))
            with pytest.raises(LinkageError, match="changed while"):
                later[etype].read(other)
            other.execute("ROLLBACK TO swap")
            other.execute("DELETE FROM mentions WHERE mention_id = ?", (now[etype]["mention_id"].iloc[0],))
            with pytest.raises(LinkageError, match="changed while"):
                later[etype].read(other)
        finally:
            other.rollback()
            other.close()
        with s.transaction() as conn:  # an older mention without an entity: every mention checked, read at once
            conn.execute("SAVEPOINT t")
            conn.execute("DELETE FROM mention_entities WHERE mention_id = "
                         "(SELECT mention_id FROM mentions ORDER BY rowid LIMIT 1)")
            got, _, _ = _new_mentions_by_type(s, defer=True)
            assert got and all(isinstance(v, pd.DataFrame) for v in got.values())
            conn.execute("ROLLBACK TO t")


def test_a_run_reads_the_states_ahead_in_a_thread_of_their_own_and_ends_as_one_that_does_not(tmp_path, monkeypatch):
    """run(): the ER states are read by the thread ``linkage-readahead-er`` (not by the resolve stage), the
    cluster state by the other one; the stores end the same as a run whose resolve stage reads them itself."""
    import threading
    from contextlib import nullcontext

    import linkage.pipeline as pipeline
    from linkage.pipeline import run
    from test_pipeline import _split

    folder = tmp_path / "gen"
    generate(500, 17, folder)
    first, second = _split(folder, folder / "parts", 420)
    base = tmp_path / "base.db"
    run(first, base)
    real_read = incremental.read_type_states
    readers = []

    def spied(conn, progress=None):
        readers.append(threading.current_thread().name)
        return real_read(conn, progress)

    rows = {}
    for case in ("ahead", "plain"):
        store = _copy(base, tmp_path / f"{case}.db")
        for ext in ("-wal", "-shm"):
            assert not Path(str(base) + ext).exists()
        calls = _counting_loads(monkeypatch)
        monkeypatch.setattr(incremental, "read_type_states", spied)
        if case == "plain":
            monkeypatch.setattr(pipeline, "read_ahead", lambda store, full=False: nullcontext(None))
        summary = run(second, store)
        assert summary.counts["er_touched_mentions"] > 0  # the incremental path
        rows[case] = (_resolved(store), list(calls))
        monkeypatch.undo()
    assert readers == ["linkage-readahead-er"]
    # the costliest types' states are always read ahead; the others may be left to the resolve stage (its
    # taking the states ends the reading after the type being read)
    meta = json.loads(sqlite3.connect(base).execute("SELECT value FROM meta WHERE key = 'er_state'").fetchone()[0])
    first = incremental._claim_order(meta, {}, list(meta["n"]))[:incremental.FIRST_STATES]
    assert rows["plain"][1] and not set(rows["ahead"][1]) & set(first)
    assert rows["ahead"][0] == rows["plain"][0]


@pytest.mark.parametrize("processes", [1, 2])
def test_the_touched_assignments_read_by_each_type_write_what_one_read_writes(loaded, tmp_path, monkeypatch,
                                                                                processes):
    """The touched mentions' stored assignments read by the process of each type (in mention id order once put
    together) and the entities' count read ahead: the same stores as when the writing step reads them itself."""
    settings = dataclasses.replace(load_settings(None), resolve_processes=processes, resolve_parallel_min_mentions=0)
    got = {}
    for case in ("by type", "read at the write"):
        store = _copy(loaded, tmp_path / f"{case}.db")
        ready = _ahead(store)
        if case == "read at the write":
            monkeypatch.setattr(incremental, "_stored_assignments", lambda conn, ids: None)
            ready.n_entities = None
        parts = []
        real = incremental._write_update

        def noted(store_, outcomes, *args, **kwargs):
            parts.append([o.previous is not None for o in outcomes.values() if o.assignments is not None])
            return real(store_, outcomes, *args, **kwargs)
        monkeypatch.setattr(incremental, "_write_update", noted)
        with EmbeddedStore(store) as s:
            counts = resolve_stage(s, settings, ahead=_Given(ready))
        assert counts["touched_mentions"] > 0
        assert parts and all(parts[0]) == (case == "by type") and len(parts[0]) > 1
        got[case] = (_resolved(store), counts)
        monkeypatch.undo()
    assert got["by type"] == got["read at the write"]


def test_stored_assignments_are_those_of_the_query_in_mention_id_order(loaded):
    with EmbeddedStore(loaded) as s:
        ids = [r[0] for r in s.conn.execute("SELECT mention_id FROM mention_entities ORDER BY entity_id LIMIT 50")]
        got = incremental._stored_assignments(s.conn, ids + ids[:3] + ["not stored"])
        want = s.frame("SELECT mention_id, entity_id, entity_type FROM mention_entities ORDER BY mention_id")
        want = want[want["mention_id"].isin(ids)].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)
        assert incremental._stored_assignments(s.conn, ["a\x00b"]) is None


@pytest.mark.parametrize("processes", [1, 2])
def test_states_read_ahead_only_in_part_give_the_same_store(loaded, tmp_path, processes):
    """read_type_states told to stop (StatesReading.stop set before it starts): only the FIRST_STATES costliest
    types are read (``first`` set), in cost order; the resolve stage reads the others itself, and the store ends
    the same as with every state read ahead."""
    settings = dataclasses.replace(load_settings(None), resolve_processes=processes, resolve_parallel_min_mentions=0)
    full = _ahead(loaded)
    progress = incremental.StatesReading()
    progress.stop.set()
    with ReadAhead(loaded, {"er_state": lambda conn: read_type_states(conn, progress)}, "test") as ahead:
        part = ahead.result("er_state", lambda: pytest.fail("the read ahead failed"))
    assert progress.first.is_set()
    order = incremental._claim_order(full.meta, {}, list(full.meta["n"]))
    assert list(part.states) == order[:incremental.FIRST_STATES] and len(full.states) > incremental.FIRST_STATES
    assert part.meta == full.meta and part.generation == full.generation and part.n_entities == full.n_entities
    for etype, ts in part.states.items():
        assert ts.records.equals(full.states[etype].records)
        assert all(np.array_equal(ts.pairs[f], full.states[etype].pairs[f]) for f in full.states[etype].pairs)
    rows = {}
    for case, given in (("part", part), ("full", full)):
        store = _copy(loaded, tmp_path / f"{case}-{processes}.db")
        with EmbeddedStore(store) as s:
            resolve_stage(s, settings, ahead=_Given(given))
        rows[case] = _resolved(store)
    assert rows["part"] == rows["full"]


def test_states_read_ahead_without_a_stop_read_every_type(loaded):
    """Without ``stop`` every usable type is read (``first`` set at the end too)."""
    progress = incremental.StatesReading()
    with ReadAhead(loaded, {"er_state": lambda conn: read_type_states(conn, progress)}, "test") as ahead:
        got = ahead.result("er_state", lambda: None)
    assert progress.first.is_set() and set(got.states) == set(got.meta["n"])


def test_states_read_ahead_stopped_between_any_two_blobs_hold_whole_types_only(loaded):
    """``stop`` set at any point after the first types: the states given are those of the first types in cost
    order, each whole and equal to what an unstopped read gives (a type stopped part way is left out)."""
    full = _ahead(loaded)
    order = incremental._claim_order(full.meta, {}, list(full.meta["n"]))

    class _After:
        """Says "stop" from its ``k``-th question on."""

        def __init__(self, k: int) -> None:
            self.k, self.asked = k, 0

        def is_set(self) -> bool:
            self.asked += 1
            return self.asked > self.k

    seen = set()
    for k in range(0, 40):
        progress = incremental.StatesReading()
        progress.stop = _After(k)
        with ReadAhead(loaded, {"er_state": lambda conn: read_type_states(conn, progress)}, "test") as ahead:
            got = ahead.result("er_state", lambda: pytest.fail("the read ahead failed"))
        assert list(got.states) == order[:len(got.states)] and len(got.states) >= incremental.FIRST_STATES
        for etype, ts in got.states.items():
            want = full.states[etype]
            assert ts.records.equals(want.records) and np.array_equal(ts.region, want.region)
            assert all(np.array_equal(ts.pairs[f], want.pairs[f]) for f in want.pairs)
            assert (ts.keys is None) == (want.keys is None)
        seen.add(len(got.states))
    assert len(seen) > 2 and max(seen) == len(full.states)


def test_the_reading_of_the_states_ends_once_the_first_are_read_or_they_are_taken():
    """``_reading_first_states``: reads go on until the first types' states are read, then the reading is told
    to stop; ``_take_states`` tells it to stop before it takes them; without a StatesReading both only ask."""
    from linkage.pipeline import _reading_first_states, _take_states
    from linkage.resolve.incremental import StatesReading

    class Ahead:
        def __init__(self, progress):
            self.er_progress, self.asked = progress, 0

        def reading(self, name):
            self.asked += 1
            return True

        def result(self, name, fallback):
            return "states"

    progress = StatesReading()
    ahead = Ahead(progress)
    assert _reading_first_states(ahead) and not progress.stop.is_set()
    progress.first.set()
    assert not _reading_first_states(ahead) and progress.stop.is_set()
    progress = StatesReading()
    assert _take_states(Ahead(progress)) == "states" and progress.stop.is_set()
    plain = Ahead(None)
    assert _reading_first_states(plain) and plain.asked == 1 and _take_states(plain) == "states"
