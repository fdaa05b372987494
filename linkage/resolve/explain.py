"""Explaining a match decision in plain words: every field's level, its weight, and the total.

In:  two mention rows (dicts or Series with the raw and normalised mention columns) and a fitted model
     (a :class:`~linkage.scoring.FittedModel`, its dict, or a whole ``Resolution.model`` keyed by type);
     or two groups of mentions (two entities).
Out: an :class:`Explanation`: one :class:`FieldRow` per comparison (field, the two compared values, level,
     weight in bits, a sentence), the prior, total weight, probability and decision; ``to_text()`` gives
     it as plain words, ``to_dict()`` as data.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from linkage.compare import compare
from linkage.errors import LinkageError
from linkage.er_settings import ERSettings, load_er_settings
from linkage.resolve.features import prepare
from linkage.scoring import FittedModel, gives_none


@dataclass(frozen=True)
class FieldRow:
    """One comparison of an explanation."""

    field: str
    left: str
    right: str
    level: str
    weight: float
    sentence: str


@dataclass(frozen=True)
class Explanation:
    """Why two mentions are (not) the same thing."""

    entity_type: str
    left_id: str
    right_id: str
    rows: tuple[FieldRow, ...]
    prior_weight: float
    total_weight: float
    probability: float
    matched: bool
    decisive: bool
    threshold: float
    #: Clustering rules that apply to this pair beyond its probability (e.g. an address without postcode or city).
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_text(self) -> str:
        """The explanation as plain words.

        >>> from linkage.resolve.engine import resolve_mentions  # doctest: +SKIP
        """
        head = f"{self.entity_type} {self.left_id} vs {self.right_id}"
        lines = [head, "-" * len(head)]
        width = max([len(r.field) for r in self.rows] + [5])
        for r in self.rows:
            lines.append(f"{r.field.ljust(width)}  {r.weight:+6.2f} bits  {r.sentence}")
        lines.append(f"{'prior'.ljust(width)}  {self.prior_weight:+6.2f} bits  two random {self.entity_type} "
                     f"records are the same one in {_odds(self.prior_weight)}")
        lines.append(f"{'total'.ljust(width)}  {self.total_weight + self.prior_weight:+6.2f} bits  "
                     f"match probability {self.probability:.4f}")
        if self.decisive:
            verdict = "SAME: they share a valid strong identifier and nothing strongly contradicts it"
        elif self.matched:
            verdict = f"SAME: the probability is at least the threshold {self.threshold:g}"
        else:
            verdict = f"DIFFERENT: the probability is below the threshold {self.threshold:g}"
        lines.append(verdict)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _odds(bits: float) -> str:
    odds = 2.0 ** (-bits)
    return f"about 1 in {odds:,.0f}" if odds >= 2 else f"{1 / (1 + odds):.0%} of cases"


def _model_for(model: Any, entity_type: str | None) -> FittedModel:
    if isinstance(model, FittedModel):
        return model
    if isinstance(model, Mapping):
        if "comparisons" in model:
            return FittedModel.from_dict(model)
        if entity_type and entity_type in model:
            return FittedModel.from_dict(model[entity_type])
    raise LinkageError(f"No fitted model for entity type '{entity_type}'; resolve the mentions first.")


def _as_dict(row: Any) -> dict:
    if isinstance(row, pd.Series):
        return row.to_dict()
    return dict(row)


_SHOW = {
    "first_name": ("first_name", "initials"), "surname": ("surname",), "birth_date": ("birth_date",),
    "bsn": ("bsn",), "national_id": ("national_id",), "postcode": ("postcode",), "house_number": ("house_number",),
    "suffix": ("suffix",), "street": ("street",), "city": ("city",), "name": ("name",), "kvk": ("kvk",),
}


def _shown(rec: pd.Series, comparison: str, column: str) -> str:
    cols = _SHOW.get(comparison, (column,))
    for c in cols:
        v = rec.get(c, "")
        if isinstance(v, str) and v:
            return v if c == cols[0] else f"{v} (initials)"
    return ""


def explain_pair(left: Any, right: Any, model: Any, settings: ERSettings | None = None) -> Explanation:
    """Explain the model's verdict on two mentions of the same entity type.

    Parameters
    ----------
    left, right:
        Mention rows (dict or Series) with ``mention_id``, ``entity_type`` and the value columns.
    model:
        A fitted model (object or dict), or ``Resolution.model`` (dict keyed by entity type).
    settings:
        The ER settings the model was fitted with (default settings when None); they define the ladders.

    Raises
    ------
    LinkageError
        When the two mentions are of different types, or there is no model for their type.
    """
    a, b = _as_dict(left), _as_dict(right)
    etype = str(a.get("entity_type") or "")
    if etype != str(b.get("entity_type") or ""):
        raise LinkageError("Only mentions of the same entity type can be compared.")
    fitted = _model_for(model, etype)
    cfg = settings or load_er_settings()
    policy = cfg.policy(etype)
    comps = [policy.comparison(c.name) for c in fitted.comparisons]
    for comp, params in zip(comps, fitted.comparisons):
        if tuple(comp.level_names) != tuple(params.level_names):
            raise LinkageError(f"The settings' levels of '{comp.name}' differ from the stored model's; "
                               "re-run the resolution with these settings.")
    frame = pd.DataFrame([a, b])
    records = prepare(frame, etype)
    left_idx, right_idx = np.array([0]), np.array([1])
    gamma = compare(records, left_idx, right_idx, comps, workers=1)
    w = fitted.pair_weights(records, left_idx, gamma, right_idx)[0]
    total, prob, decisive = fitted.score(records, left_idx, right_idx, gamma)
    notes = []
    for fields in policy.unplaced:
        none = gives_none(records, fields).tolist()
        if none[0] != none[1]:
            bare = (a, b)[none.index(True)].get("mention_id", "one side")
            notes.append(f"{bare} gives no {' or '.join(fields)}: it joins the other's {etype} only when that is its "
                         f"only candidate (match probability >= {policy.candidate_probability:g}) among those giving "
                         f"one; with several, it stays apart from all (er_settings [{etype}] unplaced)")
    rows = []
    for c, (comp, params) in enumerate(zip(comps, fitted.comparisons)):
        level = int(gamma[0, c])
        name = params.level_names[level]
        lv = _shown(records.iloc[0], comp.name, comp.column)
        rv = _shown(records.iloc[1], comp.name, comp.column)
        rows.append(FieldRow(comp.name, lv, rv, name, round(float(w[c]), 3),
                             _sentence(comp.name, name, level, float(w[c]), params, fitted, lv)))
    return Explanation(etype, str(a.get("mention_id", "left")), str(b.get("mention_id", "right")), tuple(rows),
                       round(fitted.prior_weight, 3), round(float(total[0]), 3), float(prob[0]),
                       bool(prob[0] >= fitted.match_probability or decisive[0]), bool(decisive[0]),
                       fitted.match_probability, tuple(notes))


def _sentence(field: str, level_name: str, level: int, weight: float, params, fitted: FittedModel, value: str) -> str:
    if level == 0:
        return f"{field}: missing on one or both sides, so it counts neither for nor against."
    m, u = float(params.m[level]), float(params.u[level])
    direction = "for" if weight > 0 else "against" if weight < 0 else "neither for nor against"
    text = (f"{field} is '{level_name}': true matches land here {m:.1%} of the time, "
            f"non-matches {u:.3%}; this counts {direction} a match")
    evidence = fitted.double_names
    if level == len(params.level_names) - 1 and evidence.get("comparison") == field \
            and evidence.get("level") in params.level_names \
            and np.float32(weight) == np.float32(params.weights[params.level_names.index(evidence["level"])]):
        return (f"{field}: the two names differ, but they are the two parts of a double name that a mention with "
                f"the same {evidence.get('via', 'birth date')} carries (her own name and her partner's), so this "
                f"counts as '{evidence['level']}', for a match.")
    if level == 1 and field in fitted.tf and value:
        freq = float(fitted.tf_frequency(field, np.array([value], dtype=object))[0])
        text += f" (adjusted for how common this value is: {freq:.3%} of records)"
    return text + "."


def explain_entities(left_mentions: pd.DataFrame, right_mentions: pd.DataFrame, model: Any,
                     settings: ERSettings | None = None) -> Explanation:
    """Explain two entities through their closest pair of mentions (the pair with the highest weight)."""
    best = None
    for _, a in left_mentions.iterrows():
        for _, b in right_mentions.iterrows():
            ex = explain_pair(a, b, model, settings)
            if best is None or ex.total_weight > best.total_weight:
                best = ex
    if best is None:
        raise LinkageError("Both entities need at least one mention to be explained.")
    return best


def explain_ids(mentions: pd.DataFrame, assignments: pd.DataFrame, a: str, b: str, model: Any,
                settings: ERSettings | None = None) -> Explanation:
    """Explain ``a`` and ``b``, each a mention id or an entity id (looked up in ``assignments``).

    Raises :class:`LinkageError` when an id is unknown.
    """
    def group(x: str) -> pd.DataFrame:
        if (mentions["mention_id"] == x).any():
            return mentions[mentions["mention_id"] == x]
        ids = assignments.loc[assignments["entity_id"] == x, "mention_id"]
        if len(ids):
            return mentions[mentions["mention_id"].isin(set(ids))]
        raise LinkageError(f"'{x}' is neither a mention id nor an entity id.")

    return explain_entities(group(a), group(b), model, settings)


def probability_from_bits(bits: float) -> float:
    """``1 / (1 + 2 ** -bits)``.

    >>> probability_from_bits(0.0)
    0.5
    """
    return 1.0 / (1.0 + math.pow(2.0, -bits))
