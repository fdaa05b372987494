"""The score stage's skip of re-clustered clusters whose inputs provably did not change
(:func:`linkage.graph.incremental.unchanged_clusters`, ``skip`` of :func:`linkage.triage.scoring.score_with_parts`):
a run that skips them writes what a run that gathers them and compares their digests writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import linkage.graph.incremental as incremental
import linkage.pipeline as pipeline
import linkage.triage.scoring as scoring
from linkage.generate import generate
from linkage.graph.incremental import load_state, unchanged_clusters
from linkage.resolve.judgements import record_judgement
from linkage.store import EmbeddedStore


def _rounds(folder: Path, out: Path, sizes: list[int], rng: np.random.Generator) -> list[list[Path]]:
    """The generated reports split into rounds of ``sizes`` reports: the first in date order, the later ones
    drawn at random from the rest (new reports join, merge and split earlier clusters anywhere in time)."""
    reports = pd.read_csv(folder / "reports.csv", dtype=str, keep_default_na=False)
    mentions = pd.read_csv(folder / "mentions.csv", dtype=str, keep_default_na=False)
    reports = reports.sort_values(["received_at", "report_id"], kind="stable")
    first = reports["report_id"].iloc[:sizes[0]].tolist()
    rest = reports["report_id"].iloc[sizes[0]:].to_numpy()
    rest = rest[rng.permutation(len(rest))]
    out.mkdir(parents=True, exist_ok=True)
    files, start = [], 0
    for k, size in enumerate(sizes):
        ids = set(first) if k == 0 else set(rest[start:start + size].tolist())
        start += 0 if k == 0 else size
        reports[reports["report_id"].isin(ids)].to_csv(out / f"reports_{k}.csv", index=False)
        mentions[mentions["report_id"].isin(ids)].to_csv(out / f"mentions_{k}.csv", index=False)
        files.append([out / f"reports_{k}.csv", out / f"mentions_{k}.csv"])
    return files


def _judge(store: Path, rng: np.random.Generator) -> None:
    """A 'different' judgement on a matched person pair and a 'same' on an unmatched one, picked at random (the
    resolver then splits and merges entities, relabelling some)."""
    from linkage.report.explore import er_pairs

    with EmbeddedStore(store) as s:
        pairs = er_pairs(s)
        persons = pairs[pairs["entity_type"] == "person"].reset_index(drop=True)
        for matched, verdict in ((True, "different"), (False, "same")):
            pick = persons[persons["matched"] == matched].reset_index(drop=True)
            if len(pick):
                row = pick.iloc[int(rng.integers(len(pick)))]
                record_judgement(s, row["left_id"], row["right_id"], verdict, actor="test")


def _kept_parts(store: Path) -> pd.DataFrame:
    with EmbeddedStore(store) as s:
        parts = load_state(s.conn)[1]["scores"]
    return parts[scoring.PART_COLUMNS].sort_values("cluster_id").reset_index(drop=True)


@pytest.mark.parametrize("seed", [3, 17])
def test_skipping_unchanged_clusters_writes_what_comparing_their_digests_writes(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    folder = tmp_path / "gen"
    generate(1300, seed, folder)
    rounds = _rounds(folder, tmp_path / "rounds", [1000, 100, 100, 100], rng)
    stores = {"skip": tmp_path / "skip.db", "digest": tmp_path / "digest.db"}
    skipped: list[set] = []
    score_with_parts = scoring.score_with_parts

    def spy(*args, skip=None, **kw):
        skipped.append(set(skip or ()))
        return score_with_parts(*args, skip=skip, **kw)

    for k, files in enumerate(rounds):
        if k == 2:  # judgements between rounds: entities split, merge and change labels
            for path in stores.values():
                _judge(path, np.random.default_rng(seed + 1))
        for name, path in stores.items():
            if name == "digest":  # nothing skipped: every re-clustered cluster gathered, its digest compared
                monkeypatch.setattr(incremental, "unchanged_clusters", lambda *a, **kw: set())
            monkeypatch.setattr(scoring, "score_with_parts", spy)
            pipeline.run(files, path)
            monkeypatch.undo()
    # skipped: the rounds of the "skip" store (each store's run calls score_with_parts once)
    assert any(skipped[0::2][1:]) and not any(skipped[1::2])
    with EmbeddedStore(stores["skip"]) as a, EmbeddedStore(stores["digest"]) as b:
        for table in ("clusters", "report_clusters", "status_inputs", "entities", "mention_entities"):
            pd.testing.assert_frame_equal(a.frame(f"SELECT * FROM {table} ORDER BY 1"),
                                          b.frame(f"SELECT * FROM {table} ORDER BY 1"))
        for sql in ("SELECT cluster_id, event, related_ids FROM cluster_history ORDER BY 1, 2, 3",
                    "SELECT report_id, from_status, to_status, agency FROM status_history ORDER BY 1, id"):
            pd.testing.assert_frame_equal(a.frame(sql), b.frame(sql))
    pd.testing.assert_frame_equal(_kept_parts(stores["skip"]), _kept_parts(stores["digest"]))


def test_unchanged_clusters_needs_the_same_id_the_same_reports_and_no_dirty_report():
    prev = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4", "R5", "R6", "R7"],
                         "cluster_id": ["a", "a", "b", "b", "c", "d", "d"]})
    fresh = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4", "R5", "R8", "R6", "R7"],
                          "cluster_id": ["a", "a", "b", "b", "c", "c", "e", "e"]})
    # a: same reports, clean; b: a dirty report; c: a new report joined; e: d's reports under another id
    assert unchanged_clusters(prev, fresh, {"R3"}) == {"a"}
    assert unchanged_clusters(prev, fresh, set()) == {"a", "b"}
    # a report that left: the cluster is not the same either
    assert unchanged_clusters(prev, fresh[fresh["report_id"] != "R2"], set()) == {"b"}
    assert unchanged_clusters(prev, fresh.iloc[:0], set()) == set()


def test_a_cluster_with_a_link_out_of_its_reports_is_not_skipped():
    clusters = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "cluster_id": ["a", "b", "c"]})
    mentions = pd.DataFrame({"mention_id": ["m1", "m1b", "m2", "m3"], "report_id": ["R1", "R1", "R2", "R3"]})
    links = pd.DataFrame({"src_mention_id": ["m1", "m2", "m3"], "dst_mention_id": ["m1b", "m3", "mX"],
                          "rel_type": ["LIVES_AT"] * 3})
    assert pipeline._own_links_only({"a", "b", "c"}, clusters, mentions, links) == {"a"}
    assert pipeline._own_links_only({"a"}, clusters, mentions, None) == set()
    assert pipeline._own_links_only({"a", "b"}, clusters, mentions, links.iloc[:0]) == {"a", "b"}


def test_watch_labels_notes_the_entities_whose_label_an_update_changed(tmp_path):
    with EmbeddedStore(tmp_path / "s.db") as s:
        s.conn.executemany("INSERT INTO entities (entity_id, entity_type, label, n_mentions, attributes) "
                           "VALUES (?, 'person', ?, 1, '{}')", [("e1", "Ann"), ("e2", "Bob"), ("e3", "Cy")])
        noted = pipeline.watch_labels(s)
        s.conn.executemany("UPDATE entities SET label = ?, n_mentions = 2 WHERE entity_id = ?",
                           [("Ann", "e1"), ("Bobby", "e2")])
        assert noted() == {"e2"}
        s.conn.execute("UPDATE entities SET label = 'Cyril' WHERE entity_id = 'e3'")  # after: not noted
        assert pipeline.watch_labels(s)() == set()
