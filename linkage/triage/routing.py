"""Routing: which agency (or agencies) should act on each cluster, by rules analysts edit in TOML.

In:  scored clusters (``cluster_id, score, categories, signals`` from :func:`linkage.triage.score_clusters`)
     and a rules file (default ``linkage/routing.toml``; its header documents the format).
Out: ``DataFrame[cluster_id, agencies, agency_names, routing, unrouted_reason]``: ``agencies`` a list of
     agency ids (the short ids of the rules file's ``[agencies]`` table), ``agency_names`` their display
     names, ``routing`` a JSON list of ``{agency, agency_name, rule, reason}`` (one per rule that routed
     an agency; the RIEC entry names the RIEC rule), ``unrouted_reason`` None, or why no rule matched.

Every rule that fires adds its agencies. When the rules give ``[riec] min_partners`` partners or more,
the RIEC is added with the ``[riec]`` rule's name and reason. A cluster no rule matches stays in the
output with an empty agency list and the reason, naming the rule that came closest.

Rules files are validated once (:func:`load_rules`): a TOML syntax error or a schema problem becomes a
:class:`linkage.errors.ConfigError` naming the file and line.
"""
from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from linkage import model
from linkage.errors import ConfigError
from linkage.graph.weights import read_toml
from linkage.triage.signals import SIGNALS

#: The default rules file.
DEFAULT_RULES = Path(__file__).resolve().parents[1] / "routing.toml"

#: Bump when what :func:`route` makes of the same rules changes (conditions, RIEC, reasons, the routing
#: JSON): stored clusters' routing is re-used across incremental runs only under the same version
#: (``linkage.pipeline._routing_fingerprint``).
ROUTING_VERSION = 1

ROUTE_COLUMNS = ["cluster_id", "agencies", "agency_names", "routing", "unrouted_reason"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}
_EXPR = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_WHEN_KEYS = ("categories_any", "categories_all", "min_score", "max_score", "signals", "signals_any")
_RULE_KEYS = ("name", "agencies", "reason", "when")


@dataclass(frozen=True)
class Condition:
    """One signal comparison, e.g. ``persons_per_address >= 6``."""

    signal: str
    op: str
    threshold: float

    def holds(self, signals: Mapping[str, float]) -> bool:
        """Whether it holds for these signal values (a missing signal counts as 0)."""
        return _OPS[self.op](float(signals.get(self.signal, 0) or 0), self.threshold)

    def __str__(self) -> str:
        return f"{self.signal} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Rule:
    """A routing rule: conditions (all must hold), the agencies it routes to and why."""

    name: str
    agencies: tuple[str, ...]
    reason: str
    categories_any: tuple[str, ...] = ()
    categories_all: tuple[str, ...] = ()
    min_score: float | None = None
    max_score: float | None = None
    signals: tuple[Condition, ...] = ()
    signals_any: tuple[Condition, ...] = ()

    def failures(self, categories: Iterable[str], score: float, signals: Mapping[str, float]) -> list[str]:
        """The conditions that do not hold (empty: the rule fires), as short phrases.

        >>> r = Rule("r", ("politie",), "x", categories_any=("drugs",), min_score=30)
        >>> r.failures(["overig"], 12.0, {})
        ['no category among drugs', 'score 12 < 30']
        """
        cats = set(categories)
        out = []
        if self.categories_any and not cats & set(self.categories_any):
            out.append("no category among " + ", ".join(self.categories_any))
        missing = [c for c in self.categories_all if c not in cats]
        if missing:
            out.append("missing categories " + ", ".join(missing))
        if self.min_score is not None and score < self.min_score:
            out.append(f"score {score:g} < {self.min_score:g}")
        if self.max_score is not None and score > self.max_score:
            out.append(f"score {score:g} > {self.max_score:g}")
        out.extend(f"not {c}" for c in self.signals if not c.holds(signals))
        if self.signals_any and not any(c.holds(signals) for c in self.signals_any):
            out.append("none of " + " / ".join(str(c) for c in self.signals_any))
        return out

    def n_failures(self, cats: set[str], score: float, signals: Mapping[str, float]) -> int:
        """``len(self.failures(...))`` without building the phrases (``cats`` is a set)."""
        n = 0
        if self.categories_any and not cats.intersection(self.categories_any):
            n += 1
        if self.categories_all and any(c not in cats for c in self.categories_all):
            n += 1
        if self.min_score is not None and score < self.min_score:
            n += 1
        if self.max_score is not None and score > self.max_score:
            n += 1
        for c in self.signals:
            if not c.holds(signals):
                n += 1
        if self.signals_any and not any(c.holds(signals) for c in self.signals_any):
            n += 1
        return n


@dataclass(frozen=True)
class Rules:
    """A validated rules file."""

    source: str
    agencies: Mapping[str, str]
    rules: tuple[Rule, ...]
    riec_agency: str
    riec_min_partners: int
    riec_rule: str
    riec_reason: str


# ------------------------------------------------------------------------------------------------ loading
class _Locator:
    """Finds the line of a rule's key in the TOML text, for error messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers = [i for i, ln in enumerate(self.lines) if re.match(r"^\s*\[\[\s*rule\s*\]\]", ln)]

    def rule_line(self, index: int) -> int | None:
        return self.headers[index] + 1 if index < len(self.headers) else None

    def key_line(self, index: int | None, key: str, section: str | None = None) -> int | None:
        if index is None:
            if section is None:
                return None
            start = next((i for i, ln in enumerate(self.lines) if re.match(rf"^\s*\[\s*{re.escape(section)}\s*\]", ln)), None)
            if start is None:
                return None
            end = next((i for i in range(start + 1, len(self.lines)) if self.lines[i].lstrip().startswith("[")),
                       len(self.lines))
        else:
            if index >= len(self.headers):
                return None
            start = self.headers[index]
            end = self.headers[index + 1] if index + 1 < len(self.headers) else len(self.lines)
            nxt = next((i for i in range(start + 1, end)
                        if self.lines[i].lstrip().startswith("[") and not re.match(r"^\s*\[\s*rule\.when\s*\]", self.lines[i])),
                       end)
            end = nxt
        pat = re.compile(rf"^\s*(when\.)?{re.escape(key)}\s*=")
        for i in range(start, end):
            if pat.match(self.lines[i]):
                return i + 1
        return None


def _known_categories() -> tuple[str, ...]:
    try:
        from linkage.settings import load_settings

        return tuple(load_settings().categories)
    except Exception:  # pragma: no cover - settings module absent or broken: fall back to the model
        return model.CATEGORIES


def load_rules(path: Path | str | None = None, categories: Sequence[str] | None = None) -> Rules:
    """Load and validate a routing rules TOML (default ``linkage/routing.toml``).

    Parameters
    ----------
    path:
        The rules file.
    categories:
        The category vocabulary rules may name (default: ``linkage/settings.toml``'s known categories).

    Raises
    ------
    ConfigError
        Unreadable file; TOML syntax error (``file, line N: ...``); or schema problems (unknown key,
        unknown agency id, category or signal, bad expression, missing name/agencies, duplicate name),
        all listed at once, each with its rule and line.

    >>> rules = load_rules()
    >>> rules.agencies["riec"], rules.riec_min_partners
    ('RIEC (Regionaal Informatie- en Expertisecentrum)', 3)
    """
    path = Path(path) if path is not None else DEFAULT_RULES
    doc, text = read_toml(path)
    loc = _Locator(text)
    known_cats = set(categories if categories is not None else _known_categories())
    problems: list[str] = []

    def problem(line: int | None, msg: str) -> None:
        problems.append((f"line {line}: " if line else "") + msg)

    for key in doc:
        if key not in ("agencies", "riec", "rule"):
            problem(loc.key_line(None, key, key) or _first_line(text, key), f"unknown top-level key or table '{key}'")

    agencies = doc.get("agencies")
    if not isinstance(agencies, dict) or not agencies:
        problem(None, "an [agencies] table (id = \"display name\") is required")
        agencies = {}
    for aid, name in agencies.items():
        if not isinstance(name, str) or not name.strip():
            problem(loc.key_line(None, aid, "agencies"), f"[agencies] {aid} must be a non-empty display name")

    riec = doc.get("riec", {})
    if not isinstance(riec, dict):
        problem(_first_line(text, "riec"), "[riec] must be a table")
        riec = {}
    for key in riec:
        if key not in ("agency", "min_partners", "rule", "reason"):
            problem(loc.key_line(None, key, "riec"), f"[riec]: unknown key '{key}'")
    riec_agency = riec.get("agency", "riec")
    if riec_agency not in agencies:
        problem(loc.key_line(None, "agency", "riec"), f"[riec] agency '{riec_agency}' is not in [agencies]")
    min_partners = riec.get("min_partners", 3)
    if not isinstance(min_partners, int) or min_partners < 2:
        problem(loc.key_line(None, "min_partners", "riec"), "[riec] min_partners must be a whole number >= 2")
        min_partners = 3
    riec_rule = riec.get("rule", "riec")
    riec_reason = riec.get("reason", "Several partners are needed; the RIEC coordinates.")
    for key, val in (("rule", riec_rule), ("reason", riec_reason)):
        if not isinstance(val, str) or not val.strip():
            problem(loc.key_line(None, key, "riec"), f"[riec] {key} must be a non-empty string")

    raw_rules = doc.get("rule", [])
    if not isinstance(raw_rules, list):
        problem(_first_line(text, "rule"), "rules must be written as [[rule]] tables")
        raw_rules = []
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(raw_rules):
        label = f"rule #{i + 1}" + (f" '{r.get('name')}'" if isinstance(r, dict) and isinstance(r.get("name"), str) else "")
        start = loc.rule_line(i)

        def at(key: str) -> int | None:
            return loc.key_line(i, key) or start

        for key in r:
            if key not in _RULE_KEYS:
                problem(at(key), f"{label}: unknown key '{key}' (allowed: {', '.join(_RULE_KEYS)})")
        name = r.get("name")
        if not isinstance(name, str) or not name.strip():
            problem(start, f"{label}: 'name' is required")
            name = f"rule-{i + 1}"
        elif name in seen:
            problem(at("name"), f"{label}: name '{name}' is also used by rule #{seen[name] + 1}")
        seen.setdefault(name, i)
        ags = r.get("agencies")
        if not isinstance(ags, list) or not ags or not all(isinstance(a, str) for a in ags):
            problem(at("agencies"), f"{label}: 'agencies' must be a non-empty list of agency ids")
            ags = []
        for a in ags:
            if a not in agencies:
                problem(at("agencies"), f"{label}: agency '{a}' is not in [agencies] (known: {', '.join(agencies)})")
        reason = r.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problem(at("reason"), f"{label}: 'reason' is required (say why these agencies act)")
            reason = ""
        when = r.get("when", {})
        if not isinstance(when, dict):
            problem(at("when"), f"{label}: 'when' must be a table of conditions")
            when = {}
        for key in when:
            if key not in _WHEN_KEYS:
                problem(at(key), f"{label}: unknown condition 'when.{key}' (allowed: {', '.join(_WHEN_KEYS)})")
        cats: dict[str, tuple[str, ...]] = {}
        for key in ("categories_any", "categories_all"):
            val = when.get(key, [])
            if not isinstance(val, list) or not all(isinstance(c, str) for c in val):
                problem(at(key), f"{label}: when.{key} must be a list of categories")
                val = []
            for c in val:
                if c not in known_cats:
                    problem(at(key), f"{label}: unknown category '{c}' in when.{key}")
            cats[key] = tuple(val)
        scores: dict[str, float | None] = {}
        for key in ("min_score", "max_score"):
            val = when.get(key)
            if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
                problem(at(key), f"{label}: when.{key} must be a number")
                val = None
            scores[key] = None if val is None else float(val)
        conds: dict[str, tuple[Condition, ...]] = {}
        for key in ("signals", "signals_any"):
            val = when.get(key, [])
            if isinstance(val, str):
                val = [val]
            if not isinstance(val, list):
                problem(at(key), f"{label}: when.{key} must be a list of expressions like \"persons_per_address >= 6\"")
                val = []
            parsed = []
            for expr in val:
                m = _EXPR.match(expr) if isinstance(expr, str) else None
                if not m:
                    problem(at(key), f"{label}: cannot read when.{key} expression {expr!r}; "
                                     "write \"<signal> <op> <number>\" with op one of >= > <= < == !=")
                    continue
                if m.group(1) not in SIGNALS:
                    problem(at(key), f"{label}: unknown signal '{m.group(1)}' (known: {', '.join(SIGNALS)})")
                    continue
                parsed.append(Condition(m.group(1), m.group(2), float(m.group(3))))
            conds[key] = tuple(parsed)
        rules.append(Rule(name=name, agencies=tuple(ags), reason=reason, categories_any=cats["categories_any"],
                          categories_all=cats["categories_all"], min_score=scores["min_score"],
                          max_score=scores["max_score"], signals=conds["signals"], signals_any=conds["signals_any"]))
    if not raw_rules:
        problem(None, "no [[rule]] tables: every cluster would be unrouted")
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s) in the routing rules:\n  - " + "\n  - ".join(problems))
    return Rules(source=str(path), agencies=dict(agencies), rules=tuple(rules), riec_agency=riec_agency,
                 riec_min_partners=min_partners, riec_rule=riec_rule, riec_reason=riec_reason)


def _first_line(text: str, word: str) -> int | None:
    for i, ln in enumerate(text.splitlines(), 1):
        if re.search(rf"\b{re.escape(word)}\b", ln):
            return i
    return None


# ------------------------------------------------------------------------------------------------ routing
def _categories(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str):
        if value.startswith("["):
            return [str(v) for v in json.loads(value)]
        return [v for v in value.split(";") if v]
    return [str(v) for v in value]


def _signal_values(value: Any) -> dict[str, float]:
    if value is None or (isinstance(value, float) and value != value):
        return {}
    recs = json.loads(value) if isinstance(value, str) else value
    if isinstance(recs, Mapping):
        return {str(k): float(v) for k, v in recs.items()}
    return {str(r["name"]): float(r["value"]) for r in recs}


def route_one(rules: Rules, categories: Iterable[str], score: float,
              signals: Mapping[str, float]) -> tuple[list[str], list[dict[str, str]], str | None]:
    """Route one cluster: (agency ids, routing decisions, unrouted reason or None).

    >>> rules = load_rules()
    >>> ags, routing, why = route_one(rules, ["hennepteelt"], 60.0, {})
    >>> ags, routing[0]["rule"], why
    (['politie', 'netbeheerder'], 'hennep-politie-netbeheerder', None)
    >>> route_one(rules, ["overig"], 5.0, {})[2].split(";")[0]
    'no rule matched (categories: overig'
    >>> route_one(rules, ["overig"], 5.0, {})[2].split("; closest: ")[1]
    "rule 'woonfraude-handhaving' failed on: no category among overbewoning, woonfraude, illegale_onderverhuur, score 5 < 20"
    """
    cats = list(categories)
    cat_set = set(cats)
    best: tuple[int, Rule] | None = None
    fired: list[Rule] = []
    for rule in rules.rules:
        n_fails = rule.n_failures(cat_set, score, signals)
        if n_fails:
            if best is None or n_fails < best[0]:
                best = (n_fails, rule)
        else:
            fired.append(rule)
    if fired:
        return _routed(rules, fired)
    return [], [], _unrouted_reason(cats, score, signals, best[1] if best is not None else None)


def route(scored_clusters: pd.DataFrame, rules_path: Path | str | None = None,
          categories: Sequence[str] | None = None) -> pd.DataFrame:
    """Route every scored cluster (see the module docstring for the output columns).

    Parameters
    ----------
    scored_clusters:
        At least ``cluster_id, score, categories`` (list, JSON list or ';'-joined) and ``signals`` (JSON list
        of ``{name, value, ...}`` as :func:`linkage.triage.score_clusters` writes it, a list of dicts, or a
        mapping name -> value).
    rules_path:
        Rules TOML; default ``linkage/routing.toml``.
    categories:
        Category vocabulary for validating the rules (default: the settings' known categories).

    Each row is what :func:`route_one` gives for that cluster; the conditions are counted for all clusters at
    once (:func:`failure_counts`) and the routing of each distinct set of fired rules is made once.

    Raises
    ------
    ConfigError
        The rules file is malformed (names file and line).

    >>> scored = pd.DataFrame({"cluster_id": ["c_a"], "score": [70.0], "categories": [["witwassen"]],
    ...                        "signals": ['[{"name": "shared_director_address", "value": 3}]']})
    >>> route(scored)["agencies"].tolist()
    [['belastingdienst', 'bibob']]
    """
    rules = load_rules(rules_path, categories)
    if not len(scored_clusters):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ROUTE_COLUMNS})
    return pd.DataFrame(_route_rows(rules, scored_clusters), columns=ROUTE_COLUMNS)


def route_rows(scored_clusters: pd.DataFrame, rules_path: "Rules | Path | str | None" = None,
               categories: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of :func:`route` (one dict per cluster, keys :data:`ROUTE_COLUMNS`), before they are made a
    frame: rows routed apart and joined make the frame one :func:`route` call makes of them all.
    ``rules_path`` may be rules :func:`load_rules` already read (so that the chunks of one run, routed in
    several processes, are routed by one reading of the rules file).

    >>> scored = pd.DataFrame({"cluster_id": ["c_a"], "score": [70.0], "categories": [["witwassen"]],
    ...                        "signals": ['[{"name": "shared_director_address", "value": 3}]']})
    >>> [r["agencies"] for r in route_rows(scored)]
    [['belastingdienst', 'bibob']]
    """
    if not len(scored_clusters):
        return []
    rules = rules_path if isinstance(rules_path, Rules) else load_rules(rules_path, categories)
    return _route_rows(rules, scored_clusters)


def _route_rows(rules: Rules, scored_clusters: pd.DataFrame) -> list[dict[str, Any]]:
    sig_col = scored_clusters["signals"] if "signals" in scored_clusters.columns else [None] * len(scored_clusters)
    cats = [_categories(c) for c in scored_clusters["categories"].tolist()]
    scores = [float(x) for x in scored_clusters["score"].tolist()]
    signals = [_signal_values(x) for x in list(sig_col)]
    fails = failure_counts(rules, cats, scores, signals)
    made: dict[tuple[int, ...], tuple[list[str], list[str], str]] = {}
    rows = []
    for i, cid in enumerate(scored_clusters["cluster_id"].tolist()):
        f = fails[i]
        fired = tuple(np.flatnonzero(f == 0).tolist())
        if fired:
            got = made.get(fired)
            if got is None:
                ags, routing, _ = _routed(rules, [rules.rules[k] for k in fired])
                got = made[fired] = (ags, [rules.agencies[a] for a in ags], json.dumps(routing, ensure_ascii=False))
            ags, names, routing_text = got
            rows.append({"cluster_id": cid, "agencies": list(ags), "agency_names": list(names),
                         "routing": routing_text, "unrouted_reason": None})
            continue
        # the first rule with the fewest failures, as route_one picks
        closest = rules.rules[int(np.argmin(f))] if len(f) else None
        why = _unrouted_reason(cats[i], scores[i], signals[i], closest)
        rows.append({"cluster_id": cid, "agencies": [], "agency_names": [], "routing": "[]", "unrouted_reason": why})
    return rows


def _unrouted_reason(cats: list[str], score: float, signals: Mapping[str, float], closest: Rule | None) -> str:
    """Why no rule matched, naming the rule that came closest (fewest failed conditions) and its failures."""
    why = f"no rule matched (categories: {', '.join(cats) or 'none'}; score {score:g})"
    if closest is not None:
        why += f"; closest: rule '{closest.name}' failed on: {', '.join(closest.failures(cats, score, signals))}"
    return why


def _routed(rules: Rules, fired: Sequence[Rule]) -> tuple[list[str], list[dict[str, str]], None]:
    """(agency ids, routing decisions, None) of a cluster whose fired rules are ``fired`` (in rule order, at
    least one), with the RIEC added when the cluster needs ``riec_min_partners`` partners or more."""
    agencies: list[str] = []
    routing: list[dict[str, str]] = []
    for rule in fired:
        for a in rule.agencies:
            routing.append({"agency": a, "agency_name": rules.agencies[a], "rule": rule.name, "reason": rule.reason})
            if a not in agencies:
                agencies.append(a)
    partners = [a for a in agencies if a != rules.riec_agency]
    if len(partners) >= rules.riec_min_partners and rules.riec_agency not in agencies:
        agencies.append(rules.riec_agency)
        routing.append({"agency": rules.riec_agency, "agency_name": rules.agencies[rules.riec_agency],
                        "rule": rules.riec_rule,
                        "reason": f"{rules.riec_reason} ({len(partners)} partners: {', '.join(partners)})"})
    return agencies, routing, None


def failure_counts(rules: Rules, categories: Sequence[Iterable[str]], scores: Sequence[float],
                   signals: Sequence[Mapping[str, float]]) -> np.ndarray:
    """``(clusters, rules)`` array: for each cluster and rule, :meth:`Rule.n_failures` (0: the rule fires),
    counted with array operations over all clusters.

    >>> rules = load_rules()
    >>> f = failure_counts(rules, [["hennepteelt"], ["overig"]], [60.0, 5.0], [{}, {}])
    >>> [rules.rules[k].name for k in np.flatnonzero(f[0] == 0)]
    ['hennep-politie-netbeheerder']
    >>> f[1].tolist() == [r.n_failures({"overig"}, 5.0, {}) for r in rules.rules]
    True
    """
    n, k = len(scores), len(rules.rules)
    out = np.zeros((n, k), dtype=np.int64)
    if n == 0 or k == 0:
        return out
    cat_sets = [set(c) for c in categories]
    score = np.asarray(scores, dtype=np.float64)
    values: dict[str, np.ndarray] = {}

    def holds(c: Condition) -> np.ndarray:
        if c.signal not in values:
            values[c.signal] = np.array([float(s.get(c.signal, 0) or 0) for s in signals], dtype=np.float64)
        return _OPS[c.op](values[c.signal], c.threshold)

    def has(cat: str) -> np.ndarray:
        return np.fromiter((cat in cs for cs in cat_sets), dtype=bool, count=n)

    for j, rule in enumerate(rules.rules):
        f = out[:, j]
        if rule.categories_any:
            any_of = np.zeros(n, dtype=bool)
            for cat in rule.categories_any:
                any_of |= has(cat)
            f += ~any_of
        if rule.categories_all:
            f += ~np.logical_and.reduce([has(cat) for cat in rule.categories_all])
        if rule.min_score is not None:
            f += score < rule.min_score
        if rule.max_score is not None:
            f += score > rule.max_score
        for c in rule.signals:
            f += ~holds(c)
        if rule.signals_any:
            f += ~np.logical_or.reduce([holds(c) for c in rule.signals_any])
    return out
