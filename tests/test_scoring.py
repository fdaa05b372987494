"""Scoring: EM convergence on a planted set, term-frequency effect, serialisation, decisive identifiers."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from linkage.er_settings import load_er_settings
from linkage.scoring import ComparisonParams, FittedModel, em, random_pairs, rule_patterns, term_frequencies


def _planted(n_match=3000, n_non=9000, seed=0):
    rng = np.random.default_rng(seed)
    m_true = [np.array([.85, .1, .05]), np.array([.9, .07, .03]), np.array([.8, .2])]
    u_true = [np.array([.02, .08, .9]), np.array([.01, .04, .95]), np.array([.1, .9])]
    cols_m = [rng.choice(len(p), n_match, p=p) + 1 for p in m_true]
    cols_u = [rng.choice(len(p), n_non, p=p) + 1 for p in u_true]
    gamma = np.vstack([np.column_stack(cols_m), np.column_stack(cols_u)]).astype(np.int8)
    miss = rng.random(gamma.shape) < 0.1  # missing values are level 0
    gamma[miss] = 0
    u = [np.r_[1.0, p] for p in u_true]
    return gamma, u, m_true, n_match / (n_match + n_non)


def test_em_recovers_planted_m_and_match_share():
    gamma, u, m_true, share = _planted()
    m_init = [np.r_[1.0, np.full(len(p), 1 / len(p))] for p in m_true]
    m, lam, iterations, converged = em(gamma, u, m_init, max_iter=200, tol=1e-6)
    assert converged and iterations < 200
    assert abs(lam - share) < 0.02
    for fitted, truth in zip(m, m_true):
        assert np.allclose(fitted[1:], truth, atol=0.03)


def test_random_pairs_are_deterministic_and_distinct():
    a = random_pairs(1000, 500, 42)
    b = random_pairs(1000, 500, 42)
    assert all((x == y).all() for x, y in zip(a, b))
    assert (a[0] < a[1]).all()


def _model(tf_values):
    comp = ComparisonParams("surname", ("missing", "exact", "different"), np.array([1, .9, .1]), np.array([1, .01, .99]))
    return FittedModel("person", [comp], prior=1e-4, match_probability=0.5, cannot_link_probability=1e-4,
                       tf={"surname": {"column": "surname", "values": tf_values, "default": 1e-5, "minimum": 1e-6}})


def test_common_name_counts_for_less_than_rare_name():
    model = _model({"jong": 0.02})
    records = pd.DataFrame({"surname": ["jong", "jong", "zwartkruis", "zwartkruis"]})
    gamma = np.array([[1], [1]], dtype=np.int8)
    weight, prob, _ = model.score(records, np.array([0, 2]), np.array([1, 3]), gamma)
    assert weight[1] > weight[0] + 5
    assert prob[1] > prob[0]
    tf = term_frequencies(pd.DataFrame({"s": ["a"] * 3 + ["b"]}), "s", 1e-6)
    assert tf["values"] == {"a": 0.75} and tf["default"] == 0.25


def test_missing_weighs_nothing_and_model_round_trips_through_json():
    model = _model({})
    assert model.comparisons[0].weights[0] == 0.0
    again = FittedModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.comparisons[0].m, model.comparisons[0].m)
    assert again.prior == model.prior and again.tf == model.tf


def test_decisive_identifier_links_unless_contradicted():
    names = ComparisonParams("name", ("missing", "exact", "different"), np.array([1, .99, .01]), np.array([1, .01, .99]))
    bsn = ComparisonParams("bsn", ("missing", "exact", "different"), np.array([1, .5, .5]), np.array([1, .4, .6]))
    model = FittedModel("person", [names, bsn], prior=1e-6, match_probability=0.9, cannot_link_probability=1e-6,
                        decisive=("bsn",), decisive_min_other_weight=-5.0)
    records = pd.DataFrame({"x": ["a"] * 4})
    gamma = np.array([[0, 1], [2, 1]], dtype=np.int8)
    _, prob, decisive = model.score(records, np.array([0, 2]), np.array([1, 3]), gamma)
    assert decisive.tolist() == [True, False]
    assert prob[0] < 0.9  # the decision comes from the rule, not from the probability


def test_settings_load_and_validate():
    s = load_er_settings()
    assert set(s.types) == {"person", "address", "business"}
    assert s.policy("person").comparison("bsn").fixed_m


def test_parts_of_a_seen_double_name_weigh_as_a_shared_part_not_as_different():
    from linkage.scoring import double_name_table

    levels = ("missing", "exact", "shares part of a double name", "different")
    comp = ComparisonParams("surname", levels, np.array([1, .8, .1, .1]), np.array([1, .01, .001, .989]))
    records = pd.DataFrame({
        "part1": ["yilmaz", "yilmaz", "cornelisse", "cornelisse", "bakker"],
        "part2": ["cornelisse", "", "", "", ""],
        "birth_date": ["1971-02-18", "1971-02-18", "1971-02-18", "1968-05-01", "1971-02-18"]})
    table = double_name_table(records, {"comparison": "surname", "level": levels[2], "via": "birth_date"})
    model = FittedModel("person", [comp], prior=1e-4, match_probability=0.5, cannot_link_probability=1e-4,
                        double_names=table)
    # her own name ~ her partner's name, same birth date: the pair is in the table; bakker is not; the
    # partner himself (other birth date) still shares the name pair through her birth date
    left, right = np.array([1, 1, 1]), np.array([2, 4, 3])
    gamma = np.array([[3], [3], [3]], dtype=np.int8)
    w = model.pair_weights(records, left, gamma, right)[:, 0]
    assert w[0] == np.float32(comp.weights[2]) and w[1] == np.float32(comp.weights[3])
    assert w[2] == np.float32(comp.weights[2])
    # without the right-hand records (old callers) nothing changes; the table survives JSON
    assert (model.pair_weights(records, left, gamma)[:, 0] == np.float32(comp.weights[3])).all()
    back = FittedModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert (back.pair_weights(records, left, gamma, right) == model.pair_weights(records, left, gamma, right)).all()


def test_em_on_rule_patterns_equals_em_on_each_rules_pairs():
    """fit trains each rule on rows of rule_patterns (distinct mask and levels, with counts): bit for bit the
    EM of that rule's own pairs."""
    rng = np.random.default_rng(3)
    gamma = rng.integers(0, 4, size=(5000, 3)).astype(np.int8)
    mask = rng.integers(1, 8, size=5000).astype(np.uint32)
    u = [np.array([1, .2, .3, .5])] * 3
    m0 = [np.array([1, .6, .3, .1])] * 3
    masks, patterns, counts = rule_patterns(gamma, mask)
    assert int(counts.sum()) == len(gamma)
    for r in range(3):
        own = gamma[(mask & np.uint32(1 << r)) != 0][:, [0, 2]]
        rows = (masks & np.uint32(1 << r)) != 0
        direct = em(own, [u[0], u[2]], [m0[0], m0[2]])
        weighted = em(patterns[rows][:, [0, 2]], [u[0], u[2]], [m0[0], m0[2]], weights=counts[rows])
        assert direct[1:] == weighted[1:]
        assert all(np.array_equal(a, b) for a, b in zip(direct[0], weighted[0]))
