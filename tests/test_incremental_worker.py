"""linkage.resolve.incremental, the per-type update of an incremental run: the shortcuts of
cluster_changed_components give exactly what deciding everything again gives (small random data, the plain
computation as oracle)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from linkage.er_settings import TypePolicy
from linkage.resolve.engine import _links
from linkage.resolve.incremental import _flipped
from linkage.scoring import ComparisonParams, FittedModel

FIELDS = ("weight", "prob", "matched", "levels")
LEVELS = ("missing", "exact", "different")  # an anchor: exact agrees, different contradicts


def _model() -> FittedModel:
    return FittedModel("address", [ComparisonParams("suffix", LEVELS, np.ones(3), np.ones(3)),
                                   ComparisonParams("street", LEVELS, np.ones(3), np.ones(3))], 0.01, 0.9, 1e-4)


def _policy(unplaced=(("postcode", "city"), ("suffix",))) -> TypePolicy:
    return TypePolicy("address", (), (), anchors=("suffix",), candidate_probability=0.5, unplaced=unplaced)


def _records(rng, n: int) -> pd.DataFrame:
    return pd.DataFrame({"postcode": rng.choice(["", "1234AB"], n, p=[0.4, 0.6]),
                         "city": rng.choice(["", "Zwolle"], n, p=[0.7, 0.3]),
                         "suffix": rng.choice(["", "a"], n, p=[0.5, 0.5])})


def _pairs(rng, n: int, count: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Distinct random pairs; every one anchored (exact suffix) or contradicting it, never a name-only one."""
    key = np.unique(rng.integers(0, n * n, count))
    left, right = key // n, key % n
    ok = left < right
    left, right = left[ok], right[ok]
    m = len(left)
    levels = np.stack([rng.choice([1, 2], m, p=[0.85, 0.15]), rng.integers(0, 3, m)], axis=1).astype(np.int8)
    prob = rng.uniform(0, 1, m)
    matched = prob >= 0.3
    return left, right, {"weight": rng.normal(2.0, 5.0, m), "prob": prob, "matched": matched, "levels": levels}


def _oracle(records, left, right, pairs, earlier, gone_l, gone_r, gone, fitted, policy) -> set[int]:
    """The earlier pairs whose strong flag differs between now and the last run, both decided over all pairs."""
    now = _links(records, left, right, *(pairs[f] for f in FIELDS), fitted, policy, (), ())
    last_l, last_r = np.r_[left[earlier], gone_l], np.r_[right[earlier], gone_r]
    last = {f: np.concatenate([pairs[f][earlier], gone[f]]) for f in FIELDS}
    before = _links(records, last_l, last_r, *(last[f] for f in FIELDS), fitted, policy, (), ())
    return set(earlier[before.strong[:len(earlier)] != now.strong[earlier]].tolist())


@pytest.mark.parametrize("seed", range(40))
def test_flipped_finds_every_changed_strong_flag_that_matters(seed):
    """_flipped decides the last run's flags again only where the unplaced rule can differ and a record is not
    clustered again anyway: every pair the plain computation finds flipped with a record not clustered again is
    found, and nothing that did not flip."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    records = _records(rng, n)
    fitted, policy = _model(), _policy()
    left, right, pairs = _pairs(rng, n, int(rng.integers(5, 4 * n)))
    new = rng.uniform(0, 1, n) < 0.15
    earlier = np.flatnonzero(~new[left] & ~new[right])
    gone_l, gone_r, gone = _pairs(rng, n, int(rng.integers(0, 12)))
    old = ~new[gone_l] & ~new[gone_r]  # a gone pair is one of the last run's: between earlier records
    gone_l, gone_r, gone = gone_l[old], gone_r[old], {f: v[old] for f, v in gone.items()}
    redone = rng.uniform(0, 1, n) < rng.uniform(0, 1)
    now = _links(records, left, right, *(pairs[f] for f in FIELDS), fitted, policy, (), ())
    got = _flipped(records, left, right, pairs, fitted, policy, earlier, now.strong, redone, gone_l, gone_r,
                   gone)
    truth = _oracle(records, left, right, pairs, earlier, gone_l, gone_r, gone, fitted, policy)
    got = set(got.tolist())
    assert got <= truth
    matters = {int(i) for i in truth if not (redone[left[i]] and redone[right[i]])}
    assert matters <= got


def test_flipped_without_the_rule_is_empty():
    rng = np.random.default_rng(1)
    records = _records(rng, 30)
    left, right, pairs = _pairs(rng, 30, 80)
    earlier = np.arange(len(left))
    strong = np.ones(len(left), dtype=bool)
    got = _flipped(records, left, right, pairs, _model(), _policy(unplaced=()), earlier, strong,
                   np.zeros(30, dtype=bool), np.empty(0, np.int64), np.empty(0, np.int64), None)
    assert len(got) == 0


def test_the_forked_worker_ends_on_its_own_after_giving_its_result(tmp_path):
    """_run_store_types does not wait for its worker's exit once the worker gave its result (the exit overlaps
    the writes): the worker still ends, soon, and the store is the one a single process writes."""
    import multiprocessing
    import time

    from linkage.generate import generate
    from linkage.pipeline import load_stage, resolve_stage
    from linkage.settings import load_settings
    from linkage.store import EmbeddedStore

    data = tmp_path / "data"
    generate(400, 7, data)
    reports = pd.read_csv(data / "reports.csv", dtype=str, keep_default_na=False)
    mentions = pd.read_csv(data / "mentions.csv", dtype=str, keep_default_na=False)
    newest = set(reports["report_id"].tail(20))
    files = {}
    for name, keep in (("first", False), ("second", True)):
        folder = tmp_path / name
        folder.mkdir()
        reports[reports["report_id"].isin(newest) == keep].to_csv(folder / "reports.csv", index=False)
        mentions[mentions["report_id"].isin(newest) == keep].to_csv(folder / "mentions.csv", index=False)
        files[name] = [folder / "reports.csv", folder / "mentions.csv"]
    base = tmp_path / "base.db"
    load_stage(files["first"], base)
    with EmbeddedStore(base) as s:
        resolve_stage(s, load_settings(None))
    load_stage(files["second"], base)
    rows = {}
    from concurrent.futures import ProcessPoolExecutor

    waits = []
    real_shutdown = ProcessPoolExecutor.shutdown

    def noted_shutdown(self, wait=True, **kwargs):
        waits.append(wait)
        return real_shutdown(self, wait=wait, **kwargs)

    ProcessPoolExecutor.shutdown = noted_shutdown
    try:
        _resolve_both(tmp_path, base, rows)
    finally:
        ProcessPoolExecutor.shutdown = real_shutdown
    assert False in waits  # the worker's pool was left to end on its own
    assert rows[1] == rows[2]
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


def _resolve_both(tmp_path, base, rows) -> None:
    """The incremental resolve stage on copies of ``base`` in one process and with a forked worker."""
    import dataclasses
    import shutil

    from linkage.pipeline import resolve_stage
    from linkage.settings import load_settings
    from linkage.store import EmbeddedStore

    for processes in (1, 2):
        store = tmp_path / f"p{processes}.db"
        shutil.copyfile(base, store)
        settings = dataclasses.replace(load_settings(None), resolve_processes=processes,
                                       resolve_parallel_min_mentions=0)
        with EmbeddedStore(store) as s:
            assert "touched_mentions" in resolve_stage(s, settings)  # the incremental path
            rows[processes] = {t: sorted(s.conn.execute(f"SELECT rowid, * FROM {t}").fetchall(), key=repr)
                               for t in ("mention_entities", "entities", "er_state")}


@pytest.mark.parametrize("dense,gone_n", [(2, 0), (4, 12), (8, 40)])
def test_changed_components_cluster_as_the_whole_region_does(dense, gone_n):
    """cluster_changed_components (stored entities kept, the changed parts clustered again, flags of the last
    run decided again only where they can change) gives the labels _cluster_scored gives over the whole region
    now, with the last run's entities made by _cluster_scored over its pairs (the earlier and the gone ones)."""
    from linkage.resolve.engine import _cluster_scored
    from linkage.resolve.incremental import cluster_changed_components

    fitted, policy = _model(), _policy()
    decided = 0
    for seed in range(60):
        rng = np.random.default_rng(1000 * dense + seed)
        n = int(rng.integers(8, 60))
        records = _records(rng, n)
        left, right, pairs = _pairs(rng, n, int(rng.integers(5, dense * n)))
        new = rng.uniform(0, 1, n) < 0.15
        gl, gr, gone = _pairs(rng, n, int(rng.integers(0, gone_n + 1)))
        now = set(zip(left.tolist(), right.tolist()))  # a gone pair joins earlier records and is not made now
        ok = ~new[gl] & ~new[gr] & np.array([(a, b) not in now for a, b in zip(gl.tolist(), gr.tolist())], dtype=bool)
        gone = {f: v[ok] for f, v in gone.items()}
        gone["left"], gone["right"] = gl[ok], gr[ok]
        earlier = ~new[left] & ~new[right]
        ll, lr = np.r_[left[earlier], gone["left"]], np.r_[right[earlier], gone["right"]]
        last = {f: np.concatenate([pairs[f][earlier], gone[f]]) for f in FIELDS}
        order = np.lexsort((lr, ll))
        ll, lr, last = ll[order], lr[order], {f: v[order] for f, v in last.items()}
        before, _, _ = _cluster_scored(records, ll, lr, *(last[f] for f in FIELDS), np.zeros(len(ll), np.uint8),
                                       fitted, policy, [], [])
        whole, _, _ = _cluster_scored(records, left, right, *(pairs[f] for f in FIELDS),
                                      np.zeros(len(left), np.uint8), fitted, policy, [], [])
        got = cluster_changed_components(records, left, right, pairs, fitted, policy, new,
                                         lambda where: np.array([f"e{before[w]}" for w in where], dtype=object),
                                         gone if len(gone["left"]) else None)
        if got is not None:
            decided += 1
            assert got[0].tolist() == whole.tolist()
    assert decided >= 30  # the shortcut was taken, not given up
