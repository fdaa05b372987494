"""bench_clusters.er_ties: the true ties entity resolution left apart in split networks (small data, known truth)."""
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd

from bench.bench_clusters import er_ties


def _data():
    # network N: R1-R2 share phone E1 (its largest part), R3 names R2's person by name only (its own entity P2)
    # network M: R4-R5 share a business: not split, so its ties (none) are not counted
    tr = pd.DataFrame({"report_id": ["R1", "R2", "R3", "R4", "R5", "R9"], "network_id": ["N", "N", "N", "M", "M", ""]})
    m = pd.DataFrame({
        "mention_id": ["a", "b", "c", "d", "e", "f", "g"],
        "report_id": ["R1", "R2", "R2", "R3", "R4", "R5", "R9"],
        "entity_id": ["E1", "E1", "P1", "P2", "B1", "B1", "P1"],
        "entity_type": ["phone", "phone", "person", "person", "business", "business", "person"],
        "anchored": [1, 1, 1, 0, 1, 1, 0],
    })
    truth = pd.Series({"a": "T1", "b": "T1", "c": "X", "d": "X", "e": "B", "f": "B", "g": "Y"})
    return m, tr, truth


def test_a_name_only_tie_is_counted_in_its_probability_band():
    m, tr, truth = _data()
    sp = NS(entity_type="person", mention_ids=np.array(["c", "d", "g"], dtype=object),
            left=np.array([0, 0]), right=np.array([1, 2]), prob=np.array([0.3, 0.9]))
    out = er_ties(m, tr, truth, [sp], anchor_types=["person"])
    assert out.to_dict("records") == [{"entity_type": "person", "anchored": "one", "band": "0.15-0.5", "ties": 1, "reports": 1}]


def test_types_without_anchors_are_marked_and_unscored_ties_say_so():
    m, tr, truth = _data()
    m = m.assign(entity_type=m["entity_type"].replace({"person": "vehicle"}))
    out = er_ties(m, tr, truth, None, anchor_types=["person"])
    assert out[["entity_type", "anchored", "band", "ties"]].values.tolist() == [["vehicle", "-", "not scored", 1]]


def test_no_split_network_no_ties():
    m, tr, truth = _data()
    m.loc[m["mention_id"] == "d", "entity_id"] = "P1"   # resolved together: R3 joins its network
    assert len(er_ties(m, tr, truth)) == 0
