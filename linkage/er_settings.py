"""Entity-resolution settings: ``linkage/er_settings.toml`` loaded once into frozen, validated objects.

In:  a TOML path (or None: ``$LINKAGE_ER_SETTINGS`` or the bundled default), or an already-parsed dict.
Out: :class:`ERSettings` holding one :class:`TypePolicy` per fuzzy entity type (person, address,
     business) with its :class:`BlockingRule` and :class:`Comparison` objects.
Raises :class:`~linkage.errors.ConfigError` naming the file and the offending key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from linkage.errors import ConfigError
from linkage.settings import read_toml

DEFAULT_ER_SETTINGS = Path(__file__).resolve().with_name("er_settings.toml")
#: Blocking rules per entity type at most: each scored pair keeps the rules that make it as the bits of a
#: ``uint32`` (:mod:`linkage.resolve.incremental`).
MAX_BLOCKING_RULES = 32

#: Level tests the comparison compiler knows (see linkage.compare).
LEVEL_TESTS: frozenset[str] = frozenset({
    "exact", "jaro_winkler", "levenshtein", "damerau", "ratio", "token_set", "first_char", "prefix",
    "any_part", "date_swapped", "date_parts", "year_within", "one_empty", "exact_or_both_empty", "initials_only",
})
#: Entity types that get the fuzzy pipeline; the others resolve by exact normalised value.
FUZZY_TYPES: tuple[str, ...] = ("person", "address", "business")


@dataclass(frozen=True)
class Level:
    """One rung of a comparison ladder."""

    name: str
    test: str
    threshold: float | None = None
    column: str | None = None


@dataclass(frozen=True)
class Comparison:
    """A declarative comparison: missing, then ``levels`` top to bottom, then ``else_name``.

    Level index 0 is always "missing"; ``level_names`` lists all of them in index order.
    """

    name: str
    column: str
    levels: tuple[Level, ...]
    else_name: str = "different"
    missing_when_empty: tuple[str, ...] = ()
    m_default: tuple[float, ...] = ()
    fixed_m: bool = False

    @property
    def level_names(self) -> tuple[str, ...]:
        return ("missing",) + tuple(lv.name for lv in self.levels) + (self.else_name,)

    @property
    def n_levels(self) -> int:
        return len(self.levels) + 2


@dataclass(frozen=True)
class BlockingRule:
    """Records sharing all ``keys`` (none empty) are compared; blocks above ``max_block`` records are
    compared as a sorted neighbourhood of ``window`` records in ``order_by`` order.

    With ``fuzzy_key`` the records must share ``keys`` and have values of ``fuzzy_key`` at most one edit
    apart but not equal (found through their one-deletion variants); with ``pair_with_empty`` only the
    records whose ``pair_with_empty`` column is empty are paired, with everyone in their block. Both
    kinds skip a group whose pair count would exceed ``max_pairs`` (reported as capped).

    A record without a value in an ``order_by`` column has no place in the sorted order (a mention without
    birth date sorts before all the others), so a window would compare it with arbitrary neighbours. With
    ``incomplete_block`` > 0 such a record in an oversized block is instead compared with every record of
    its block that shares the ``order_by`` values it does have (the columns before the first empty one),
    when those are at most ``incomplete_block`` records; beyond that it keeps its window."""

    name: str
    keys: tuple[str, ...]
    uses: tuple[str, ...] = ()
    max_block: int = 300
    window: int = 30
    order_by: tuple[str, ...] = ()
    fuzzy_key: str | None = None
    pair_with_empty: str | None = None
    max_pairs: int = 2500
    incomplete_block: int = 0


@dataclass(frozen=True)
class TypePolicy:
    """Everything about resolving one entity type."""

    entity_type: str
    blocking: tuple[BlockingRule, ...]
    comparisons: tuple[Comparison, ...]
    match_probability: float = 0.9
    cannot_link_probability: float = 0.0001
    decisive: tuple[str, ...] = ()
    decisive_min_other_weight: float = -12.0
    tf_columns: Mapping[str, str] = field(default_factory=dict)
    #: Identifying comparisons (birth date, BSN). A link without agreement on any of them ("name only")
    #: joins two groups only when it is unambiguous; their ``else`` level is a contradiction that keeps
    #: two records apart (unless another anchor agrees exactly). Empty: every link counts alike.
    anchors: tuple[str, ...] = ()
    #: A name-only link to one of several candidate groups is taken only when it beats the runner-up by
    #: at least this many bits.
    ambiguity_margin: float = 6.0
    #: A name-only pair at or above this probability makes a group a *candidate* for an unanchored group
    #: (it joins only the one clear candidate); unanchored groups join each other only at ``match_probability``.
    #: Name-only pairs below it play no part (above ``match_probability`` it is the bar for name-only links).
    candidate_probability: float = 0.5
    #: Two single surnames that are the two parts of a double name carried by a mention with the same ``via``
    #: value (birth date) weigh as ``level`` of ``comparison`` instead of its "different" level (her own name,
    #: her partner's, or both). Keys ``comparison``, ``level``, ``via``; empty: off.
    double_name_evidence: Mapping[str, str] = field(default_factory=dict)
    #: Sets of record columns, each a rule: a record giving none of a set's columns (an address without postcode
    #: and city; one without huisletter/toevoeging) joins a group of records giving one only when that group is its
    #: only candidate (see :func:`linkage.scoring.unplaced_ambiguous`). Empty: off.
    unplaced: tuple[tuple[str, ...], ...] = ()

    def comparison(self, name: str) -> Comparison:
        for comp in self.comparisons:
            if comp.name == name:
                return comp
        raise KeyError(name)


@dataclass(frozen=True)
class ERSettings:
    """The loaded entity-resolution policy."""

    source: str
    types: Mapping[str, TypePolicy]
    seed: int = 42
    random_pairs_for_u: int = 2_000_000
    em_max_iterations: int = 60
    em_tolerance: float = 1e-4
    workers: int = -1
    min_pairs_for_training: int = 200
    tf_minimum: float = 1e-6
    largest_blocks_reported: int = 10

    def policy(self, entity_type: str) -> TypePolicy:
        return self.types[entity_type]


def load_er_settings(path: Path | str | None = None) -> ERSettings:
    """Load the ER policy from ``path``, ``$LINKAGE_ER_SETTINGS`` or the bundled default (cached).

    >>> s = load_er_settings()
    >>> s.policy("person").comparison("birth_date").level_names
    ('missing', 'exact', 'day and month swapped', 'one part differs', 'different')
    """
    chosen = path or os.environ.get("LINKAGE_ER_SETTINGS") or DEFAULT_ER_SETTINGS
    return _load(str(Path(chosen).resolve()))


@lru_cache(maxsize=8)
def _load(path: str) -> ERSettings:
    return settings_from_dict(read_toml(Path(path)), source=path)


def settings_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ERSettings:
    """Build and validate :class:`ERSettings` from parsed TOML; every problem is reported at once."""
    problems: list[str] = []
    general = dict(data.get("general", {}))
    types: dict[str, TypePolicy] = {}
    for etype in FUZZY_TYPES:
        section = data.get(etype)
        if section is None:
            problems.append(f"[{etype}] is missing")
            continue
        comps: list[Comparison] = []
        for k, c in enumerate(section.get("comparisons", [])):
            where = f"[[{etype}.comparisons]] #{k + 1}"
            levels = []
            for lv in c.get("levels", []):
                if lv.get("test") not in LEVEL_TESTS:
                    problems.append(f"{where}: level '{lv.get('name')}' has unknown test '{lv.get('test')}' "
                                    f"(known: {', '.join(sorted(LEVEL_TESTS))})")
                    continue
                levels.append(Level(str(lv["name"]), str(lv["test"]), lv.get("threshold"), lv.get("column")))
            if "name" not in c or "column" not in c:
                problems.append(f"{where}: needs 'name' and 'column'")
                continue
            m_default = tuple(float(x) for x in c.get("m_default", ()))
            if m_default and len(m_default) != len(levels) + 1:
                problems.append(f"{where} ({c['name']}): m_default needs {len(levels) + 1} values "
                                f"(one per level and one for '{c.get('else', 'different')}')")
            comps.append(Comparison(str(c["name"]), str(c["column"]), tuple(levels), str(c.get("else", "different")),
                                    tuple(c.get("missing_when_empty", ())), m_default, bool(c.get("fixed_m", False))))
        names = {c.name for c in comps}
        rules: list[BlockingRule] = []
        for k, r in enumerate(section.get("blocking", [])):
            where = f"[[{etype}.blocking]] #{k + 1}"
            if not r.get("keys"):
                problems.append(f"{where}: needs 'keys'")
                continue
            unknown = [u for u in r.get("uses", []) if u not in names]
            if unknown:
                problems.append(f"{where}: 'uses' names unknown comparisons {unknown}")
            rules.append(BlockingRule(str(r.get("name", f"rule{k + 1}")), tuple(r["keys"]), tuple(r.get("uses", ())),
                                      int(r.get("max_block", 300)), int(r.get("window", 30)),
                                      tuple(r.get("order_by", ())), r.get("fuzzy_key"), r.get("pair_with_empty"),
                                      int(r.get("max_pairs", 2500)), int(r.get("incomplete_block", 0))))
        if len(section.get("blocking", [])) > MAX_BLOCKING_RULES:  # a pair's rules are the bits of a uint32
            problems.append(f"[[{etype}.blocking]]: at most {MAX_BLOCKING_RULES} blocking rules per type "
                            f"(found {len(section.get('blocking', []))})")
        for d in section.get("anchors", []):
            if d not in names:
                problems.append(f"[{etype}] anchors names unknown comparison '{d}'")
        columns = {c.column for c in comps} | {lv.column for c in comps for lv in c.levels if lv.column}
        unplaced = section.get("unplaced", [])
        if not isinstance(unplaced, list) or not all(isinstance(fs, list) and fs and all(isinstance(d, str) for d in fs)
                                                      for fs in unplaced):
            problems.append(f"[{etype}] unplaced must be a list of lists of column names, one list per rule "
                            '(e.g. [["postcode", "city"], ["suffix"]])')
            unplaced = []
        for fields in unplaced:
            for d in fields:
                if d not in columns:
                    problems.append(f"[{etype}] unplaced names '{d}', which no comparison reads")
        for d in section.get("decisive", []):
            if d not in names:
                problems.append(f"[{etype}] decisive names unknown comparison '{d}'")
        tf = dict(section.get("tf_columns", {}))
        for cname in tf:
            if cname not in names:
                problems.append(f"[{etype}] tf_columns names unknown comparison '{cname}'")
        evidence = dict(section.get("double_name_evidence", {}))
        if evidence:
            target = next((c for c in comps if c.name == evidence.get("comparison")), None)
            if target is None or evidence.get("level") not in target.level_names or not evidence.get("via"):
                problems.append(f"[{etype}] double_name_evidence needs a known 'comparison', one of its level names "
                                "as 'level' and a 'via' column")
        p_match = float(section.get("match_probability", 0.9))
        p_cannot = float(section.get("cannot_link_probability", 0.0001))
        if not 0 < p_cannot < p_match < 1:
            problems.append(f"[{etype}] needs 0 < cannot_link_probability < match_probability < 1")
        types[etype] = TypePolicy(etype, tuple(rules), tuple(comps), p_match, p_cannot,
                                  tuple(section.get("decisive", ())),
                                  float(section.get("decisive_min_other_weight", -12.0)), tf,
                                  tuple(section.get("anchors", ())), float(section.get("ambiguity_margin", 6.0)),
                                  float(section.get("candidate_probability", p_match)), evidence,
                                  tuple(tuple(fs) for fs in unplaced))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems) + ".")
    return ERSettings(
        source=source,
        types=types,
        seed=int(general.get("seed", 42)),
        random_pairs_for_u=int(general.get("random_pairs_for_u", 2_000_000)),
        em_max_iterations=int(general.get("em_max_iterations", 60)),
        em_tolerance=float(general.get("em_tolerance", 1e-4)),
        workers=int(general.get("workers", -1)),
        min_pairs_for_training=int(general.get("min_pairs_for_training", 200)),
        tf_minimum=float(general.get("tf_minimum", 1e-6)),
        largest_blocks_reported=int(general.get("largest_blocks_reported", 10)),
    )
