"""Scoring policy: signal weights, severity per category and signal parameters, loaded from TOML.

In:  ``linkage/triage/scoring.toml`` (default) or an analyst's copy.
Out: a frozen, validated :class:`ScoringPolicy`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from linkage.errors import ConfigError
from linkage.graph.weights import read_toml

#: The packaged scoring policy.
DEFAULT_SCORING_TOML = Path(__file__).with_name("scoring.toml")


@dataclass(frozen=True)
class Term:
    """How one signal's value becomes points: ``weight * clip((value - floor) / (cap - floor), 0, 1)``."""

    weight: float
    floor: float
    cap: float

    def points(self, value: float) -> float:
        """Points for ``value``.

        >>> Term(10, 1, 5).points(3)
        5.0
        >>> Term(10, 1, 5).points(0), Term(10, 1, 5).points(99)
        (0.0, 10.0)
        """
        frac = (float(value) - self.floor) / (self.cap - self.floor)
        return float(self.weight) * min(1.0, max(0.0, frac))


@dataclass(frozen=True)
class RecencyLevel:
    """One step of the recency ladder (``scoring.toml`` ``[[recency.levels]]``): a cluster whose newest report
    is at most ``within_days`` days before the reference date gets ``value``; ``label`` says so in its sentence."""

    within_days: int
    value: float
    label: str


#: The packaged ladder (``scoring.toml`` repeats it): used when a policy file has no ``[[recency.levels]]``.
DEFAULT_RECENCY_LEVELS = (
    RecencyLevel(30, 1.0, "within 30 days of the reference date"),
    RecencyLevel(90, 0.6, "within 90 days of the reference date"),
    RecencyLevel(180, 0.35, "within 180 days of the reference date"),
    RecencyLevel(365, 0.15, "within a year of the reference date"),
)


@dataclass(frozen=True)
class ScoringPolicy:
    """Validated scoring policy (see ``scoring.toml`` for what each value means)."""

    terms: Mapping[str, Term]
    severity: Mapping[str, int]
    default_severity: int = 2
    anonymous_weight: float = 0.5
    recency_levels: tuple[RecencyLevel, ...] = DEFAULT_RECENCY_LEVELS
    resident_roles: frozenset[str] = frozenset()
    source: str = field(default="", compare=False)

    def severity_of(self, category: str | None) -> int:
        """Severity of a category (``default`` when not listed).

        >>> load_scoring_policy().severity_of("mensenhandel")
        5
        """
        if not category:
            return self.default_severity
        return int(self.severity.get(str(category), self.default_severity))

    def recency_level(self, days: int) -> RecencyLevel | None:
        """The first level (by ``within_days``) that ``days`` does not exceed; None when older than every level.

        >>> p = load_scoring_policy()
        >>> p.recency_level(0).value, p.recency_level(30).value, p.recency_level(31).value, p.recency_level(400)
        (1.0, 1.0, 0.6, None)
        """
        for level in self.recency_levels:
            if days <= level.within_days:
                return level
        return None


def load_scoring_policy(path: Path | str | None = None) -> ScoringPolicy:
    """Load and validate a scoring policy TOML (default: the packaged ``scoring.toml``).

    Raises
    ------
    ConfigError
        Unreadable file, TOML syntax error (names the line), unknown signal, or a bad number; every
        problem is listed at once.
    """
    from linkage.triage.signals import SIGNALS  # the registry names the known signals

    path = Path(path) if path is not None else DEFAULT_SCORING_TOML
    doc, text = read_toml(path)
    problems: list[str] = []

    def line_of(needle: str) -> str:
        for i, line in enumerate(text.splitlines(), 1):
            if needle in line:
                return f"line {i}: "
        return ""

    known_sections = {"score", "reporters", "recency", "residence", "severity"}
    for sec in doc:
        if sec not in known_sections:
            problems.append(f"{line_of('[' + sec)}unknown section [{sec}]")
    terms: dict[str, Term] = {}
    for name, spec in doc.get("score", {}).items():
        if name not in SIGNALS:
            problems.append(f"{line_of('[score.' + name)}unknown signal '{name}' (known: {', '.join(SIGNALS)})")
            continue
        if not isinstance(spec, dict):
            problems.append(f"{line_of(name)}[score.{name}] must be a table with weight, floor, cap")
            continue
        bad = [k for k in spec if k not in ("weight", "floor", "cap")]
        if bad:
            problems.append(f"{line_of('[score.' + name)}[score.{name}]: unknown key(s) {', '.join(bad)}")
        try:
            t = Term(float(spec.get("weight", 0)), float(spec.get("floor", 0)), float(spec.get("cap", 1)))
        except (TypeError, ValueError):
            problems.append(f"{line_of('[score.' + name)}[score.{name}]: weight, floor and cap must be numbers")
            continue
        if t.cap <= t.floor:
            problems.append(f"{line_of('[score.' + name)}[score.{name}]: cap must be greater than floor")
        if t.weight < 0:
            problems.append(f"{line_of('[score.' + name)}[score.{name}]: weight must be >= 0")
        terms[name] = t
    sev_raw = dict(doc.get("severity", {}))
    default = sev_raw.pop("default", 2)
    severity: dict[str, int] = {}
    for cat, v in list(sev_raw.items()) + [("default", default)]:
        if not isinstance(v, int) or not 1 <= v <= 5:
            problems.append(f"{line_of(cat + ' =')}severity.{cat} must be a whole number from 1 to 5")
        elif cat != "default":
            severity[cat] = v
    anon = doc.get("reporters", {}).get("anonymous_weight", 0.5)
    if not isinstance(anon, (int, float)) or not 0 <= anon <= 1:
        problems.append(f"{line_of('anonymous_weight')}reporters.anonymous_weight must be between 0 and 1")
    def level_line(i: int) -> str:  # the line of the i-th [[recency.levels]] table
        heads = [n for n, line in enumerate(text.splitlines(), 1) if line.strip().startswith("[[recency.levels]]")]
        return f"line {heads[i - 1]}: " if 0 < i <= len(heads) else line_of("levels")

    levels = _recency_levels(doc.get("recency", {}), line_of, problems, level_line)
    roles = doc.get("residence", {}).get("resident_roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        problems.append(f"{line_of('resident_roles')}residence.resident_roles must be a list of strings")
        roles = []
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return ScoringPolicy(terms=terms, severity=severity, default_severity=int(default), anonymous_weight=float(anon),
                         recency_levels=levels, resident_roles=frozenset(r.strip().lower() for r in roles),
                         source=str(path))


def _recency_levels(section: Any, line_of, problems: list[str], level_line) -> tuple[RecencyLevel, ...]:
    """The ``[[recency.levels]]`` ladder of a policy document (the packaged ladder when absent); each problem
    is added to ``problems`` naming the line and the level."""
    if not isinstance(section, dict):
        problems.append(f"{line_of('[recency')}[recency] must be a table")
        return DEFAULT_RECENCY_LEVELS
    bad = [k for k in section if k != "levels"]
    if bad:
        problems.append(f"{line_of(bad[0])}[recency]: unknown key(s) {', '.join(bad)} (the ladder is [[recency.levels]])")
    raw = section.get("levels")
    if raw is None:
        return DEFAULT_RECENCY_LEVELS
    if not isinstance(raw, list) or not raw or not all(isinstance(x, dict) for x in raw):
        problems.append(f"{level_line(1)}[[recency.levels]] must be one or more tables")
        return DEFAULT_RECENCY_LEVELS
    out: list[RecencyLevel] = []
    for i, spec in enumerate(raw, 1):
        where = level_line(i)
        unknown = [k for k in spec if k not in ("within_days", "value", "label")]
        if unknown:
            problems.append(f"{where}recency level {i}: unknown key(s) {', '.join(unknown)}")
        days, value, label = spec.get("within_days"), spec.get("value"), spec.get("label")
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            problems.append(f"{where}recency level {i}: within_days must be a whole number >= 0")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            problems.append(f"{where}recency level {i}: value must be a number from 0 to 1")
            continue
        if not isinstance(label, str) or not label.strip():
            problems.append(f"{where}recency level {i}: label must be a non-empty text")
            continue
        if out and days <= out[-1].within_days:
            problems.append(f"{where}recency level {i}: within_days must grow from level to level")
            continue
        out.append(RecencyLevel(days, float(value), label.strip()))
    return tuple(out)


@lru_cache(maxsize=1)
def default_policy() -> ScoringPolicy:
    """The packaged policy, loaded once."""
    return load_scoring_policy()


def as_policy(settings: ScoringPolicy | Path | str | Mapping[str, Any] | None) -> ScoringPolicy:
    """Accept a :class:`ScoringPolicy`, a path to a scoring TOML, or None (packaged default)."""
    if settings is None:
        return default_policy()
    if isinstance(settings, ScoringPolicy):
        return settings
    if isinstance(settings, (str, Path)):
        return load_scoring_policy(settings)
    raise ConfigError("scoring settings must be a ScoringPolicy or the path of a scoring TOML file")
