"""Scoring: an unsupervised Fellegi-Sunter model with EM-estimated m, sampled u, and term frequencies.

In:  comparison levels of candidate pairs (from :mod:`linkage.compare`), the feature table, the blocking
     candidates and the :class:`~linkage.er_settings.TypePolicy` of one entity type.
Out: :func:`fit` gives a :class:`FittedModel` (m and u per comparison level, the prior, term-frequency
     tables) that serialises with :meth:`FittedModel.to_dict` and comes back with
     :meth:`FittedModel.from_dict`; :meth:`FittedModel.score` gives each pair's match weight (bits) and
     probability.

How the numbers are found, without labels:

* **u** (how often a *non*-matching pair lands in a level) from random record pairs, which are almost all
  non-matches;
* **m** (how often a *matching* pair lands in a level) by expectation-maximisation on the candidate pairs
  of each blocking rule, leaving out the comparisons that rule forces to agree (their agreement says
  nothing there), u held fixed; per comparison the estimate of the purest rule (highest estimated share
  of matches, e.g. pairs sharing a BSN) is used, because in mixed blocks look-alike non-matches (namesakes)
  pull m towards u;
* the **prior** (chance that two random records match) as the fixed point of "expected matches among the
  candidates / all record pairs";
* **term frequency**: an exact agreement on a value is worth ``log2(m / f)`` where ``f`` is that value's
  frequency, so a shared rare surname counts for more than a shared ``de Jong``.

A level's weight is ``log2(m / u)`` bits; "missing" weighs 0. A pair's match weight is the sum over its
comparisons; its probability is ``1 / (1 + 2 ** -(prior_weight + match_weight))``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from linkage.blocking import KEY_SEP
from linkage.compare import compare
from linkage.er_settings import ERSettings, TypePolicy

MODEL_VERSION = 1
_EPS = 1e-9


@dataclass
class ComparisonParams:
    """Fitted m and u of one comparison, one value per level (index 0 "missing" is not used)."""

    name: str
    level_names: tuple[str, ...]
    m: np.ndarray
    u: np.ndarray
    m_source: str = "default"

    @property
    def weights(self) -> np.ndarray:
        """Bits per level; 0 for "missing"."""
        w = np.log2(np.maximum(self.m, _EPS) / np.maximum(self.u, _EPS))
        w[0] = 0.0
        return w


@dataclass
class FittedModel:
    """A fitted model for one entity type: what :meth:`score` and the explanations use."""

    entity_type: str
    comparisons: list[ComparisonParams]
    prior: float
    match_probability: float
    cannot_link_probability: float
    decisive: tuple[str, ...] = ()
    decisive_min_other_weight: float = -12.0
    tf: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_records: int = 0
    training: dict[str, Any] = field(default_factory=dict)
    #: Double names seen in the data (see :func:`double_name_table`): two single surnames that are the two
    #: parts of a double name carried by a mention with the same birth date count as that level, not "different"
    double_names: dict[str, Any] = field(default_factory=dict)

    # -- weights ---------------------------------------------------------------------------------
    @property
    def prior_weight(self) -> float:
        """The prior as bits: ``log2(prior / (1 - prior))``."""
        p = min(max(self.prior, 1e-15), 1 - 1e-12)
        return math.log2(p / (1 - p))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.comparisons]

    def tf_frequency(self, comparison: str, values: np.ndarray) -> np.ndarray:
        """Frequencies of ``values`` in the TF table of ``comparison`` (the table's default for unseen)."""
        table = self.tf[comparison]
        codes, uniques = pd.factorize(pd.Series(values, dtype=object))
        known = table["values"]
        default = float(table["default"])
        per_unique = np.fromiter((known.get(v, default) if isinstance(v, str) else default for v in uniques.tolist()),
                                 dtype=float, count=len(uniques))
        out = np.full(len(codes), default, dtype=float)
        ok = codes >= 0
        out[ok] = per_unique[codes[ok]]
        return out

    def level_weight_matrix(self, gamma: np.ndarray) -> np.ndarray:
        """Bits per pair and comparison (float32), before term-frequency adjustment."""
        out = np.zeros(gamma.shape, dtype=np.float32)
        for c, comp in enumerate(self.comparisons):
            out[:, c] = comp.weights.astype(np.float32)[gamma[:, c]]
        return out

    def pair_weights(self, records: pd.DataFrame, left: np.ndarray, gamma: np.ndarray,
                     right: np.ndarray | None = None) -> np.ndarray:
        """Bits per pair and comparison with the exact levels of TF comparisons adjusted by value frequency,
        and (given ``right``) "different" surnames that are the parts of one seen double name weighed as
        :attr:`double_names` says."""
        w = self.level_weight_matrix(gamma)
        if right is not None and self.double_names and self.double_names.get("comparison") in self.names:
            c = self.names.index(self.double_names["comparison"])
            comp = self.comparisons[c]
            other = np.flatnonzero(gamma[:, c] == len(comp.level_names) - 1)
            if len(other):
                hit = double_name_pairs(records, left[other], right[other], self.double_names)
                level = comp.level_names.index(self.double_names["level"])
                w[other[hit], c] = np.float32(comp.weights[level])
        for c, comp in enumerate(self.comparisons):
            if comp.name not in self.tf:
                continue
            exact = np.flatnonzero(gamma[:, c] == 1)
            if not len(exact):
                continue
            column = self.tf[comp.name]["column"]
            # frequency per record once (few records, many pairs), then per pair by index; only of the records
            # read (the left ends of the exact pairs: an incremental run's person pairs read a third of their
            # records, and factorizing Python strings is most of the scoring)
            rows = left[exact]
            wanted = np.zeros(len(records), dtype=bool)
            wanted[rows] = True
            read = np.flatnonzero(wanted)
            if len(read) * 2 > len(records):
                per_record = self.tf_frequency(comp.name, records[column].to_numpy(dtype=object))
            else:
                per_record = np.zeros(len(records), dtype=float)
                per_record[read] = self.tf_frequency(comp.name, records[column].take(read).to_numpy(dtype=object))
            freq = np.maximum(per_record[rows], self.tf[comp.name].get("minimum", 1e-6))
            w[exact, c] = np.log2(np.maximum(comp.m[1], _EPS) / freq).astype(np.float32)
        return w

    def score(self, records: pd.DataFrame, left: np.ndarray, right: np.ndarray, gamma: np.ndarray,
              weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(match weight in bits, match probability, decisive flag) per pair. ``weights``: this model's
        :meth:`pair_weights` of these pairs when already at hand (:func:`fit` keeps them), else computed.

        A pair is *decisive* when a decisive comparison (BSN, KvK) is exact and the other comparisons
        together weigh at least ``decisive_min_other_weight``: it is then linked whatever the total.
        """
        w = self.pair_weights(records, left, gamma, right) if weights is None else weights
        total = w.sum(axis=1, dtype=np.float64)
        prob = 1.0 / (1.0 + np.exp2(-(self.prior_weight + total)))
        decisive = np.zeros(len(total), dtype=bool)
        for name in self.decisive:
            if name in self.names:
                c = self.names.index(name)
                hit = gamma[:, c] == 1
                decisive |= hit & ((total - w[:, c]) >= self.decisive_min_other_weight)
        return total, prob, decisive

    # -- (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (store it; :meth:`from_dict` restores it)."""
        return {
            "version": MODEL_VERSION,
            "entity_type": self.entity_type,
            "prior": self.prior,
            "match_probability": self.match_probability,
            "cannot_link_probability": self.cannot_link_probability,
            "decisive": list(self.decisive),
            "decisive_min_other_weight": self.decisive_min_other_weight,
            "n_records": self.n_records,
            "comparisons": [
                {"name": c.name, "levels": list(c.level_names), "m": [float(x) for x in c.m],
                 "u": [float(x) for x in c.u], "m_source": c.m_source}
                for c in self.comparisons
            ],
            "tf": self.tf,
            "training": self.training,
            "double_names": self.double_names,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FittedModel":
        comps = [ComparisonParams(c["name"], tuple(c["levels"]), np.asarray(c["m"], float), np.asarray(c["u"], float),
                                  c.get("m_source", "")) for c in data["comparisons"]]
        return cls(data["entity_type"], comps, float(data["prior"]), float(data["match_probability"]),
                   float(data["cannot_link_probability"]), tuple(data.get("decisive", ())),
                   float(data.get("decisive_min_other_weight", -12.0)), dict(data.get("tf", {})),
                   int(data.get("n_records", 0)), dict(data.get("training", {})),
                   dict(data.get("double_names", {})))


# -- fitting ------------------------------------------------------------------------------------------

def random_pairs(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` random distinct record pairs (all pairs when there are fewer), deterministic for a seed.

    >>> l, r = random_pairs(4, 100, 1)
    >>> len(l), bool((l < r).all())
    (6, True)
    """
    total = n * (n - 1) // 2
    if total <= k:
        i, j = np.triu_indices(n, 1)
        return i.astype(np.int64), j.astype(np.int64)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, size=int(k * 1.1) + 10)
    b = rng.integers(0, n, size=len(a))
    keep = a != b
    a, b = a[keep][:k], b[keep][:k]
    return np.minimum(a, b), np.maximum(a, b)


def estimate_u(records: pd.DataFrame, policy: TypePolicy, settings: ERSettings,
               codes_cache: dict | None = None) -> list[np.ndarray]:
    """u per comparison level from random pairs (missing excluded; empty levels get half a count)."""
    left, right = random_pairs(len(records), settings.random_pairs_for_u, settings.seed)
    gamma = compare(records, left, right, policy.comparisons, settings.workers, codes_cache)
    out = []
    for c, comp in enumerate(policy.comparisons):
        counts = np.bincount(gamma[:, c], minlength=comp.n_levels).astype(float)
        counts[0] = 0.0
        counts[1:] = np.maximum(counts[1:], 0.5)
        u = counts / max(counts[1:].sum(), 1.0)
        u[0] = 1.0
        out.append(u)
    return out


def _default_m(comp) -> np.ndarray:
    m = np.ones(comp.n_levels, dtype=float)
    if comp.m_default:
        m[1:] = np.asarray(comp.m_default, float)
    else:
        m[1:] = np.linspace(1.0, 0.1, comp.n_levels - 1)
    m[1:] /= m[1:].sum()
    m[0] = 1.0
    return m


def em(gamma: np.ndarray, u: list[np.ndarray], m_init: list[np.ndarray], max_iter: int = 60, tol: float = 1e-4,
       lam: float = 0.3, weights: np.ndarray | None = None) -> tuple[list[np.ndarray], float, int, bool]:
    """Expectation-maximisation of m (u fixed) and the match share on aggregated level patterns.

    Parameters
    ----------
    gamma:
        Level indices (pairs x comparisons); 0 is "missing" and adds nothing.
    u, m_init:
        Per comparison, one value per level.
    weights:
        Optional whole-number count per row of ``gamma`` (rows then stand for that many pairs): the result is
        exactly that of the rows repeated, since the rows are aggregated into patterns either way.

    Returns
    -------
    (m, lambda, iterations, converged)

    >>> rng = np.random.default_rng(0)
    >>> match = np.column_stack([rng.choice([1, 2], 4000, p=[.9, .1]), rng.choice([1, 2], 4000, p=[.95, .05])])
    >>> non = np.column_stack([rng.choice([1, 2], 6000, p=[.1, .9]), rng.choice([1, 2], 6000, p=[.2, .8])])
    >>> u = [np.array([1, .1, .9]), np.array([1, .2, .8])]
    >>> m, lam, it, ok = em(np.vstack([match, non]).astype(np.int8), u, [np.array([1, .6, .4])] * 2)
    >>> ok, round(lam, 1), [round(float(x), 1) for x in m[0][1:]]
    (True, 0.4, [0.9, 0.1])
    """
    n_comp = gamma.shape[1]
    if n_comp == 0 or len(gamma) == 0:
        return [m.copy() for m in m_init], lam, 0, False
    radix = np.array([max(len(x), 2) for x in u], dtype=np.int64)
    mult = np.cumprod(np.r_[1, radix[:-1]])
    code = (gamma.astype(np.int64) * mult).sum(axis=1)
    if weights is None:
        patterns, counts = np.unique(code, return_counts=True)
        counts = counts.astype(float)
    else:
        patterns, inverse = np.unique(code, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=np.asarray(weights, dtype=np.int64),
                             minlength=len(patterns)).astype(float)
    pg = (patterns[:, None] // mult) % radix  # patterns x comparisons
    log_u = np.stack([np.log(np.maximum(u[c][pg[:, c]], _EPS)) * (pg[:, c] > 0) for c in range(n_comp)], axis=1)
    m = [x.copy() for x in m_init]
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        log_m = np.stack([np.log(np.maximum(m[c][pg[:, c]], _EPS)) * (pg[:, c] > 0) for c in range(n_comp)], axis=1)
        lm = math.log(max(lam, _EPS)) + log_m.sum(axis=1)
        lu = math.log(max(1 - lam, _EPS)) + log_u.sum(axis=1)
        post = 1.0 / (1.0 + np.exp(np.clip(lu - lm, -700, 700)))
        wp = counts * post
        lam_new = float(wp.sum() / counts.sum())
        change = abs(lam_new - lam)
        new_m = []
        for c in range(n_comp):
            levels = len(m[c])
            num = np.bincount(pg[:, c], weights=wp, minlength=levels)
            num[0] = 0.0
            total = num[1:].sum()
            mc = m[c].copy()
            if total > 0:
                mc[1:] = (num[1:] + 1e-3) / (total + 1e-3 * (levels - 1))
            change = max(change, float(np.abs(mc - m[c]).max()))
            new_m.append(mc)
        m, lam = new_m, min(max(lam_new, 1e-6), 1 - 1e-6)
        if change < tol:
            converged = True
            break
    return m, lam, it, converged


def term_frequencies(records: pd.DataFrame, column: str, minimum: float, keep_min_count: int = 2) -> dict[str, Any]:
    """Value frequencies of a column among records that have it; rare values fall back to ``default``.

    >>> tf = term_frequencies(pd.DataFrame({"s": ["jong", "jong", "vries", ""]}), "s", 1e-6)
    >>> tf["values"], round(tf["default"], 3)
    ({'jong': 0.667}, 0.333)
    """
    col = records[column] if column in records.columns else pd.Series([], dtype=object)
    col = col[col != ""]
    n = max(len(col), 1)
    counts = col.value_counts()
    default = max(1.0 / n, minimum)
    common = counts[counts >= keep_min_count]
    values = {str(k): round(float(v) / n, 12 if n > 1000 else 3) for k, v in common.items()}
    return {"column": column, "values": values, "default": default, "minimum": minimum}


def rule_patterns(gamma: np.ndarray, rule_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (rule mask, level pattern) rows of the candidate pairs, with how many pairs each has:
    ``(masks, patterns, counts)``. One pass over the pairs, after which each blocking rule's training set is
    a selection of these few rows (its pairs are the rows whose mask holds its bit).

    >>> masks, pats, counts = rule_patterns(np.array([[1, 2], [1, 2], [2, 2]], np.int8), np.array([1, 1, 3], np.uint32))
    >>> masks.tolist(), pats.tolist(), counts.tolist()
    ([1, 3], [[1, 2], [2, 2]], [2, 1])
    """
    n_comp = gamma.shape[1] if gamma.ndim == 2 else 0
    if len(gamma) == 0 or n_comp == 0:
        return np.empty(0, np.uint32), np.empty((0, n_comp), np.int64), np.empty(0, np.int64)
    radix = np.full(n_comp, max(int(gamma.max()) + 1, 2), dtype=np.int64)
    span = int(radix[0]) ** n_comp  # Python ints: the guard below must not itself overflow
    if span * (int(rule_mask.max()) + 1) >= 2 ** 62:  # too many comparisons or levels for one int64 key
        rows, counts = np.unique(np.column_stack([rule_mask.astype(np.int64), gamma.astype(np.int64)]), axis=0,
                                 return_counts=True)
        return rows[:, 0].astype(np.uint32), rows[:, 1:], counts.astype(np.int64)
    mult = np.cumprod(np.r_[1, radix[:-1]])
    code = np.zeros(len(gamma), np.int64)
    for c in range(n_comp):  # column by column: no pairs x comparisons int64 temporary
        code += gamma[:, c].astype(np.int64) * mult[c]
    code += rule_mask.astype(np.int64) * span
    keys, counts = np.unique(code, return_counts=True)
    del code
    rest = keys % span
    patterns = (rest[:, None] // mult) % radix
    return (keys // span).astype(np.uint32), patterns, counts.astype(np.int64)


def fit(records: pd.DataFrame, gamma: np.ndarray, rule_mask: np.ndarray, policy: TypePolicy, settings: ERSettings,
        left: np.ndarray | None = None, codes_cache: dict | None = None, right: np.ndarray | None = None,
        kept: dict | None = None) -> FittedModel:
    """Fit m, u, the prior and the TF tables of one entity type (no labels).

    Parameters
    ----------
    records:
        Feature table.
    gamma:
        Level indices of the candidate pairs.
    rule_mask:
        For each pair the bit mask of the blocking rules that found it (bit k: ``policy.blocking[k]``).
    left, right:
        Record indices of each pair (needed for the TF- and double-name-aware prior); optional.
    kept:
        Optional dict: receives ``"weights"``, the fitted model's :meth:`FittedModel.pair_weights` of the
        pairs (the prior needs them; scoring the same pairs right after can pass them on, not recompute).
    """
    comps = policy.comparisons
    u = estimate_u(records, policy, settings, codes_cache)
    fits: list[list[tuple[float, np.ndarray, str]]] = [[] for _ in comps]
    per_rule: dict[str, Any] = {}
    masks, patterns, counts = rule_patterns(gamma, rule_mask)
    for r, rule in enumerate(policy.blocking):
        rows = np.flatnonzero((masks & np.uint32(1 << r)) != 0)
        n_sel = int(counts[rows].sum())
        free = [c for c, comp in enumerate(comps) if comp.name not in rule.uses]
        if n_sel < settings.min_pairs_for_training or not free:
            per_rule[rule.name] = {"pairs": n_sel, "trained": False}
            continue
        # comparisons missing in (almost) every pair of this rule carry no information here
        g, w = patterns[np.ix_(rows, free)], counts[rows]
        present = ((g > 0) * w[:, None]).sum(axis=0)
        informative = [k for k in range(len(free)) if present[k] > 0]
        if not informative:
            per_rule[rule.name] = {"pairs": n_sel, "trained": False}
            continue
        free = [free[k] for k in informative]
        g = g[:, informative]
        m_fit, lam, iters, ok = em(g, [u[c] for c in free], [_default_m(comps[c]) for c in free],
                                   settings.em_max_iterations, settings.em_tolerance, weights=w)
        per_rule[rule.name] = {"pairs": n_sel, "trained": True, "match_share": lam, "iterations": iters,
                               "converged": ok, "comparisons": [comps[c].name for c in free]}
        for k, c in enumerate(free):
            if present[informative[k]] >= settings.min_pairs_for_training // 2 and len(free) >= 3:
                fits[c].append((lam, m_fit[k], rule.name))
    params = []
    for c, comp in enumerate(comps):
        if comp.fixed_m:
            m = _default_m(comp)
            source = "fixed by policy (settings)"
        elif fits[c]:
            # the purest rule (highest estimated match share) is least mixed with look-alike non-matches
            lam, m, rule_name = max(fits[c], key=lambda f: (f[0], f[2]))
            m = m.copy()
            source = f"EM on the pairs of blocking rule '{rule_name}' (estimated match share {lam:.2f})"
        else:
            m = _default_m(comp)
            source = "default (settings)"
        m[0] = 1.0
        params.append(ComparisonParams(comp.name, comp.level_names, m, u[c], source))
    tf = {name: term_frequencies(records, column, settings.tf_minimum) for name, column in policy.tf_columns.items()
          if name in [c.name for c in comps]}
    model = FittedModel(policy.entity_type, params, prior=1e-6, match_probability=policy.match_probability,
                        cannot_link_probability=policy.cannot_link_probability, decisive=policy.decisive,
                        decisive_min_other_weight=policy.decisive_min_other_weight, tf=tf,
                        n_records=len(records), training={"rules": per_rule},
                        double_names=double_name_table(records, policy.double_name_evidence))
    model.prior = estimate_prior(model, records, left, gamma, right=right, kept=kept)
    model.training["prior"] = model.prior
    return model


def estimate_prior(model: FittedModel, records: pd.DataFrame, left: np.ndarray | None, gamma: np.ndarray,
                   iterations: int = 30, right: np.ndarray | None = None, kept: dict | None = None) -> float:
    """The chance that two random records match: fixed point of expected candidate matches / all pairs.
    ``kept`` (optional dict) receives the pair weights under ``"weights"`` (given ``left``)."""
    n = len(records)
    all_pairs = max(n * (n - 1) / 2, 1.0)
    if len(gamma) == 0:
        return 1.0 / all_pairs
    if left is None:
        total = model.level_weight_matrix(gamma).sum(axis=1, dtype=np.float64)
    else:
        weights = model.pair_weights(records, left, gamma, right)
        total = weights.sum(axis=1, dtype=np.float64)
        if kept is not None:
            kept["weights"] = weights
        del weights
    prior = min(max(n / all_pairs, 1e-12), 0.5)
    for _ in range(iterations):
        pw = math.log2(prior / (1 - prior))
        expected = float((1.0 / (1.0 + np.exp2(-(pw + total)))).sum())
        new = min(max(expected / all_pairs, 1e-12), 0.5)
        if abs(new - prior) <= 1e-3 * prior:
            prior = new
            break
        prior = new
    return prior


def double_name_table(records: pd.DataFrame, evidence: Mapping[str, str]) -> dict[str, Any]:
    """The double names of the data with the ``via`` value (birth date) of the mention carrying them.

    A woman may be written with her own surname, her partner's, or both as a double name; when a mention
    ``Yilmaz-Cornelisse`` born 1971-02-18 exists, ``Esra Yilmaz`` and ``Esra Cornelisse`` with that birth date
    are evidence of one person, not a surname that differs. ``evidence`` is the policy's
    ``double_name_evidence`` (``comparison``, ``level``, ``via``); empty gives an empty table.

    >>> df = pd.DataFrame({"part1": ["yilmaz", "yilmaz"], "part2": ["cornelisse", ""],
    ...                    "birth_date": ["1971-02-18", "1971-02-18"]})
    >>> [k.split(chr(31)) for k in double_name_table(df, {"comparison": "surname", "level": "x", "via": "birth_date"})["keys"]]
    [['cornelisse', 'yilmaz', '1971-02-18']]
    """
    if not evidence or "part1" not in records.columns or evidence.get("via") not in records.columns:
        return {}
    p1 = records["part1"].to_numpy(dtype=object)
    p2 = records["part2"].to_numpy(dtype=object)
    via = records[evidence["via"]].to_numpy(dtype=object)
    double = np.flatnonzero((p1 != "") & (p2 != "") & (via != "") & pd.notna(via))  # a missing via: no key
    keys = sorted({KEY_SEP.join(sorted((p1[i], p2[i]))) + KEY_SEP + via[i] for i in double.tolist()})
    return {**dict(evidence), "keys": keys}


def double_name_pairs(records: pd.DataFrame, left: np.ndarray, right: np.ndarray, table: Mapping[str, Any]
                      ) -> np.ndarray:
    """Per pair: are the two single surnames the two parts of a double name in ``table`` (see
    :func:`double_name_table`) seen with the ``via`` value of one of the two records?

    >>> df = pd.DataFrame({"part1": ["yilmaz", "cornelisse", "bakker"], "part2": ["", "", ""],
    ...                    "birth_date": ["1971-02-18", "1971-02-18", "1971-02-18"]})
    >>> t = {"via": "birth_date", "keys": [chr(31).join(["cornelisse", "yilmaz", "1971-02-18"])]}
    >>> double_name_pairs(df, np.array([0, 0]), np.array([1, 2]), t).tolist()
    [True, False]

    A missing ``via`` value (None, NaN) is part of no double name, whichever records are read:

    >>> df = pd.DataFrame({"part1": ["yilmaz", "cornelisse", "yilmaz", "bakker", "cornelisse"],
    ...                    "part2": [""] * 5, "birth_date": ["1968-05-01", "1971-02-18", "1971-02-18", None, None]})
    >>> double_name_pairs(df, np.array([2, 0, 2]), np.array([3, 4, 1]), t).tolist()
    [False, False, True]
    """
    out = np.zeros(len(left), dtype=bool)
    keys = table.get("keys") or []
    via_col = table.get("via")
    if not keys or not len(left) or via_col not in records.columns or "part1" not in records.columns:
        return out
    ka, kb, kv = (np.array(x, dtype=object) for x in zip(*(k.split(KEY_SEP) for k in keys)))
    # only the records of the pairs are read (the values decide, per record): an incremental run's person
    # pairs given here have a few thousand of their ~30,000 records
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    wanted = np.zeros(len(records), dtype=bool)
    wanted[left] = True
    wanted[right] = True
    read = np.flatnonzero(wanted)
    if len(read) * 2 > len(records):
        p1, p2 = records["part1"].to_numpy(dtype=object), records["part2"].to_numpy(dtype=object)
        via = records[via_col].to_numpy(dtype=object)
    else:
        at = np.zeros(len(records), dtype=np.int64)
        at[read] = np.arange(len(read))
        left, right = at[left], at[right]
        p1, p2, via = (records[c].take(read).to_numpy(dtype=object) for c in ("part1", "part2", via_col))
    n, t = len(p1), len(ka)
    # integer codes shared by the records and the table: names (k of them) and via values (v of them)
    pcodes, puniques = pd.factorize(np.concatenate([p1, ka, kb]))
    vcodes, vuniques = pd.factorize(np.concatenate([via, kv]))
    k, v = np.int64(len(puniques)), np.int64(len(vuniques))
    name, ta, tb = pcodes[:n].astype(np.int64), pcodes[n:n + t].astype(np.int64), pcodes[n + t:].astype(np.int64)
    rv, tv = vcodes[:n].astype(np.int64), vcodes[n:].astype(np.int64)
    seen = np.unique((np.minimum(ta, tb) * k + np.maximum(ta, tb)) * v + tv)
    # only single-named records whose (name, via) is a part of a seen double name can take part (few):
    # per record first, then per pair by index
    # a missing via value (None, NaN: code -1) is part of no seen double name; left as -1 it would make the key
    # of another (name, via) (prepared records hold '' there, never None)
    single = (p1 != "") & (p2 == "")
    own = single & (rv >= 0) & np.isin(name * v + rv, np.unique(np.r_[ta * v + tv, tb * v + tv]))
    todo = np.flatnonzero(own[left] | own[right])
    lt, rt = left[todo], right[todo]
    keep = single[lt] & single[rt] & (name[lt] != name[rt])
    todo, lt, rt = todo[keep], lt[keep], rt[keep]
    names = np.minimum(name[lt], name[rt]) * k + np.maximum(name[lt], name[rt])
    out[todo] = ((np.isin(names * v + rv[lt], seen) & (rv[lt] >= 0))
                 | (np.isin(names * v + rv[rt], seen) & (rv[rt] >= 0)))
    return out


def gives_none(records: pd.DataFrame, fields: tuple[str, ...]) -> np.ndarray:
    """Per record: does it give none of ``fields`` (missing, NaN, empty or blank in each; a field the records
    lack counts as not given)? The test of :func:`unplaced_ambiguous` and of ``linkage explain``'s note.

    >>> gives_none(pd.DataFrame({"postcode": ["1234AB", None, " "], "city": ["", "", ""]}), ("postcode", "city")).tolist()
    [False, True, True]
    """
    bare = np.ones(len(records), dtype=bool)
    for f in fields:
        if f in records.columns:
            bare &= records[f].fillna("").astype(str).str.strip().to_numpy(dtype=object) == ""
    return bare


def unplaced_ambiguous(records: pd.DataFrame, left: np.ndarray, right: np.ndarray, link: np.ndarray,
                       candidate: np.ndarray, fields: tuple[str, ...], same=(), different=()) -> np.ndarray:
    """Per pair: is it a link of an *unplaced* record to one of several candidate places (then it is not taken)?

    A record is unplaced when it gives none of ``fields`` (an address: no postcode and no city, only a street
    and a house number). "Kerkstraat 12" matches every "Kerkstraat 12" in every town equally well: linking it
    to all of them merges addresses that have nothing in common but their street name (session 6, 10k
    reports: 124 of 152 false address merges). So an unplaced group (unplaced records linked to each other)
    joins a placed group (placed records linked to each other) only when it is its ONLY candidate: a pair of
    the two that could join them in the clustering (``candidate``: a link, or a pair at ``candidate_probability``
    or more that contradicts no anchor; 86d is no candidate place for 86e). With two or more candidate groups,
    its links to placed records are all left out of the clustering (the pairs keep their scores and stored
    decisions; ``linkage explain`` notes the rule for such a pair). Links between placed records, and between
    unplaced ones, are untouched. Analyst judgements count: ``same`` pairs (record indices) join groups as
    links do, a pair judged ``different`` is no candidate.

    ``link``: the pairs that would link (strong links); ``fields`` empty: the rule is off (all False). The
    candidates are the same pairs an incremental run's regions are built from, so incremental equals full.

    >>> rec = pd.DataFrame({"postcode": ["1234AB", "3511AA", "", ""], "city": ["Amsterdam", "", "", ""]})
    >>> l, r = np.array([0, 1, 0]), np.array([2, 2, 3])   # record 2 looks like both 0 and 1; 3 only like 0
    >>> unplaced_ambiguous(rec, l, r, np.ones(3, bool), np.ones(3, bool), ("postcode", "city")).tolist()
    [True, True, False]
    >>> # judged different from 1, record 2 has one candidate left (the clustering keeps it apart from 1)
    >>> unplaced_ambiguous(rec, l, r, np.ones(3, bool), np.ones(3, bool), ("postcode", "city"), different=[(2, 1)]).tolist()
    [False, False, False]
    >>> # 2 and 3 linked to each other are one group, whose candidates are 0 and 1: none of its places is taken
    >>> l, r = np.array([0, 1, 0, 2]), np.array([2, 2, 3, 3])
    >>> unplaced_ambiguous(rec, l, r, np.ones(4, bool), np.ones(4, bool), ("postcode", "city")).tolist()
    [True, True, True, False]
    """
    from linkage.resolve.cluster import components

    n, out = len(records), np.zeros(len(left), dtype=bool)
    if not any(f in records.columns for f in fields) or len(left) == 0:
        return out
    bare = gives_none(records, fields)
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    link = np.asarray(link, dtype=bool)
    bl, br = bare[left], bare[right]
    mixed = bl != br
    if not mixed.any():
        return out
    # groups: placed records through links among placed ones, unplaced through links among unplaced ones
    inner = link & ~mixed
    sl = np.array([a for a, b in same if bare[a] == bare[b]], dtype=np.int64)
    sr = np.array([b for a, b in same if bare[a] == bare[b]], dtype=np.int64)
    group = components(n, np.r_[left[inner], sl], np.r_[right[inner], sr])
    cand = mixed & (np.asarray(candidate, dtype=bool) | link)
    if len(different):
        apart = {(min(a, b), max(a, b)) for a, b in different}
        idx = np.flatnonzero(cand)  # few: the mixed candidate pairs
        lo, hi = np.minimum(left[idx], right[idx]).tolist(), np.maximum(left[idx], right[idx]).tolist()
        cand[idx[[(a, b) in apart for a, b in zip(lo, hi)]]] = False
    u = np.where(bl, left, right)[cand]
    p = np.where(bl, right, left)[cand]
    gu, gp = group[u], group[p]
    # distinct candidate placed groups per unplaced group
    key = np.unique(gu * np.int64(n) + gp)
    owners, counts = np.unique(key // n, return_counts=True)
    ambiguous = np.zeros(n, dtype=bool)
    ambiguous[owners[counts > 1]] = True
    return link & mixed & ambiguous[group[np.where(bl, left, right)]]
