"""Edge weights: how much one shared entity means, by how many reports share it (specificity).

In:  the resolved ``mentions`` table (report_id, entity_id, entity_type) and the graph policy
     (``linkage/graph/graph.toml``, loaded into a frozen :class:`GraphSettings`).
Out: per entity its number of distinct reports, its specificity weight and whether it is a hub
     (:func:`entity_weights`); the vectorised weight function itself (:func:`specificity`); the rows that
     carry links between reports, with name-only links weakened (:func:`link_rows`, :func:`link_factor`).

A rare shared identifier links strongly; a value that very many reports mention (a municipal office used
as briefadres, a large flat, a generic phone number) links weakly. Entities above ``hub_max_reports``
are *hubs*: they stay in the graph and in every signal, but never create a link between two reports on
their own (see :mod:`linkage.graph.communities`).

How sure a link is matters as much as how rare it is. A person is resolved by fuzzy matching; when a
mention gives the person's BSN or birth date (an *anchor*, ``[anchors]`` in ``graph.toml``) the resolution
rests on it, when it gives a name only the resolution is a guess among namesakes. On generated report data
a link between two reports through a shared person entity is a true shared person in 91 % of the cases
when both mentions carry an anchor, 54 % when one does and 37 % when neither does (10k reports, seed 7).
So a link through such an entity counts ``type_factor`` only when *both* reports' mentions are anchored,
and ``name_only_factor`` otherwise (:func:`link_rows`). The mentions say whether they are anchored in an
``anchored`` column (:func:`anchored_sql` computes it in the store); without that column every mention
counts as anchored (the caller gave no reason for doubt, e.g. benchmark runs on true entity ids).
"""
from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from linkage.errors import ConfigError
from linkage.model import ENTITY_TYPES

#: The default graph policy file.
DEFAULT_GRAPH_TOML = Path(__file__).with_name("graph.toml")

SPECIFICITY_FUNCTIONS = ("inverse_log", "inverse")

#: Mention fields that can anchor a resolution (``graph.toml`` [anchors]) -> their normalised store column.
ANCHOR_FIELDS = {"bsn": "bsn_norm", "birth_date": "birth_date_norm", "kvk": "kvk_norm", "iban": "iban_norm",
                 "phone": "phone_norm", "plate": "plate_norm", "email": "email_norm", "postcode": "postcode_norm"}

#: Suffix of the extra link rows that anchored mentions add (entity id and entity type get it).
ANCHORED_SUFFIX = "+anchored"
#: Suffix of the entity type of every mention's own link row when anchoring is known (:func:`link_rows`).
ANY_SUFFIX = "+any"
OBJECTIVES = ("CPM", "modularity")
#: Places two reports can share for a co-located possible match (linkage.graph.candidates): the first four
#: digits of a postcode, or a place name, given by any address-bearing mention of the report.
PLACES = ("postcode4", "city")


@dataclass(frozen=True)
class GraphSettings:
    """Graph and community policy, validated. Build with :func:`load_graph_settings`.

    Attributes mirror ``graph.toml``: ``specificity`` (function name), ``hub_max_reports``,
    ``type_factor`` (entity type -> multiplier), ``anchors`` (entity type -> mention fields that anchor
    its resolution), ``name_only_factor`` (entity type -> multiplier of a link that a side's anchor does not
    back), ``candidates_factor`` / ``candidates_min_probability`` and ``co_mentioned_factor`` /
    ``co_mentioned_by`` / ``co_mentioned_min_probability``, ``co_located_factor`` / ``co_located_on`` /
    ``co_located_min_probability`` (``[candidates]``: corroborated possible matches,
    :mod:`linkage.graph.candidates`), ``objective`` ("CPM" or "modularity"), ``resolution``,
    ``iterations``, ``seed``, ``min_cluster_size``.
    """

    specificity: str = "inverse_log"
    hub_max_reports: int = 40
    type_factor: Mapping[str, float] = field(default_factory=dict)
    anchors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    name_only_factor: Mapping[str, float] = field(default_factory=dict)
    candidates_factor: Mapping[str, float] = field(default_factory=dict)
    candidates_min_probability: float = 0.001
    co_mentioned_factor: Mapping[str, float] = field(default_factory=dict)
    co_mentioned_by: tuple[str, ...] = ()
    co_mentioned_min_probability: float = 0.01
    co_located_factor: Mapping[str, float] = field(default_factory=dict)
    co_located_on: Mapping[str, str] = field(default_factory=dict)
    co_located_min_probability: float = 0.01
    objective: str = "CPM"
    resolution: float = 0.02
    iterations: int = 3
    seed: int = 42
    min_cluster_size: int = 2

    def with_(self, **changes: Any) -> "GraphSettings":
        """A copy with some values changed (validated like a file).

        >>> load_graph_settings().with_(resolution=0.1).resolution
        0.1
        """
        return _validate(replace(self, **changes), "<override>")


def read_toml(path: Path | str) -> tuple[dict, str]:
    """Parse a TOML file; a syntax error becomes :class:`ConfigError` naming the file and line.

    Returns the parsed document and its text (callers search the text to name lines of schema errors).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"{path}, line {m.group(1)}" if m else str(path)
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg) or "invalid TOML"
        raise ConfigError(f"{where}: invalid TOML: {detail}. Fix the syntax on that line.") from None


def load_graph_settings(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None) -> GraphSettings:
    """Load ``graph.toml`` (default: the packaged one) into validated :class:`GraphSettings`.

    ``overrides`` are flat keys of :class:`GraphSettings` (e.g. ``{"resolution": 0.05}``), as a
    caller's own settings file may give them.

    Raises
    ------
    ConfigError
        The file is unreadable, not TOML (names the line), or holds an unknown key or bad value.

    >>> s = load_graph_settings()
    >>> s.objective, s.hub_max_reports > 2
    ('CPM', True)
    """
    path = Path(path) if path is not None else DEFAULT_GRAPH_TOML
    doc, _text = read_toml(path)
    problems: list[str] = []
    known = {"specificity": {"function", "hub_max_reports"}, "type_factor": None, "anchors": None,
             "name_only_factor": None, "candidates": {"factor", "min_probability", "co_mentioned_factor",
                                                                        "co_mentioned_by", "co_mentioned_min_probability",
                                                                        "co_located_factor", "co_located_on",
                                                                        "co_located_min_probability"},
             "communities": {"objective", "resolution", "iterations", "seed", "min_cluster_size"}}
    for section, value in doc.items():
        if section not in known:
            problems.append(f"unknown section [{section}]")
        elif known[section] is not None and isinstance(value, dict):
            problems.extend(f"unknown key '{k}' in [{section}]" for k in value if k not in known[section])
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    spec = doc.get("specificity", {})
    comm = doc.get("communities", {})
    cand = doc.get("candidates", {})
    s = GraphSettings(
        specificity=spec.get("function", "inverse_log"),
        hub_max_reports=spec.get("hub_max_reports", 40),
        type_factor=dict(doc.get("type_factor", {})),
        anchors={k: tuple(v) if isinstance(v, list) else v for k, v in doc.get("anchors", {}).items()},
        name_only_factor=dict(doc.get("name_only_factor", {})),
        candidates_factor=dict(cand.get("factor", {})),
        candidates_min_probability=cand.get("min_probability", 0.001),
        co_mentioned_factor=dict(cand.get("co_mentioned_factor", {})),
        co_mentioned_by=_as_tuple(cand.get("co_mentioned_by", ())),
        co_mentioned_min_probability=cand.get("co_mentioned_min_probability", 0.01),
        co_located_factor=dict(cand.get("co_located_factor", {})),
        co_located_on=dict(cand.get("co_located_on", {})),
        co_located_min_probability=cand.get("co_located_min_probability", 0.01),
        objective=comm.get("objective", "CPM"),
        resolution=comm.get("resolution", 0.02),
        iterations=comm.get("iterations", 3),
        seed=comm.get("seed", 42),
        min_cluster_size=comm.get("min_cluster_size", 2),
    )
    if overrides:
        bad = [k for k in overrides if k not in GraphSettings.__dataclass_fields__]
        if bad:
            raise ConfigError(f"graph settings: unknown key(s) {', '.join(sorted(bad))}")
        s = replace(s, **dict(overrides))
    return _validate(s, str(path))


def _validate(s: GraphSettings, where: str) -> GraphSettings:
    problems = []
    if s.specificity not in SPECIFICITY_FUNCTIONS:
        problems.append(f"specificity.function must be one of {', '.join(SPECIFICITY_FUNCTIONS)}")
    if not isinstance(s.hub_max_reports, int) or s.hub_max_reports < 2:
        problems.append("specificity.hub_max_reports must be an integer >= 2")
    for k, v in s.type_factor.items():
        if not isinstance(v, (int, float)) or v < 0:
            problems.append(f"type_factor.{k} must be a number >= 0")
    for k, v in s.anchors.items():
        if not isinstance(v, (list, tuple)) or not v or any(f not in ANCHOR_FIELDS for f in v):
            problems.append(f"anchors.{k} must be a non-empty list of fields from {', '.join(ANCHOR_FIELDS)}")
    for k, v in s.name_only_factor.items():
        full = s.type_factor.get(k, 1.0)
        if not isinstance(v, (int, float)) or not 0 <= v <= full:
            problems.append(f"name_only_factor.{k} must be a number between 0 and type_factor.{k} ({full})")
        if k not in s.anchors:
            problems.append(f"name_only_factor.{k} needs anchors.{k} (which fields make a mention anchored)")
    def number(v: Any) -> bool:  # True/False are ints to Python, never a weight to an analyst
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for name, factors in (("factor", s.candidates_factor), ("co_mentioned_factor", s.co_mentioned_factor),
                          ("co_located_factor", s.co_located_factor)):
        for k, v in factors.items():
            if k not in ENTITY_TYPES:
                problems.append(f"candidates.{name}.{k}: unknown entity type (one of {', '.join(ENTITY_TYPES)})")
            if not number(v) or v < 0:
                problems.append(f"candidates.{name}.{k} must be a number >= 0")
            elif name == "co_located_factor" and v > 0 and s.co_located_on.get(k) not in PLACES:
                problems.append(f"candidates.co_located_on.{k} must be one of {', '.join(PLACES)}")
    for name in ("min_probability", "co_mentioned_min_probability", "co_located_min_probability"):
        v = getattr(s, "candidates_min_probability" if name == "min_probability" else name)
        if not number(v) or not 0 < v <= 1:
            problems.append(f"candidates.{name} must be a number in (0, 1]")
    if (not isinstance(s.co_mentioned_by, (list, tuple))
            or not all(isinstance(t, str) and t in ENTITY_TYPES for t in s.co_mentioned_by)):
        problems.append(f"candidates.co_mentioned_by must be a list of entity types ({', '.join(ENTITY_TYPES)})")
    if s.objective not in OBJECTIVES:
        problems.append(f"communities.objective must be one of {', '.join(OBJECTIVES)}")
    if not isinstance(s.resolution, (int, float)) or s.resolution <= 0:
        problems.append("communities.resolution must be a number > 0")
    if not isinstance(s.iterations, int) or s.iterations < 1:
        problems.append("communities.iterations must be an integer >= 1")
    if not isinstance(s.seed, int):
        problems.append("communities.seed must be an integer")
    if not isinstance(s.min_cluster_size, int) or s.min_cluster_size < 2:
        problems.append("communities.min_cluster_size must be an integer >= 2 (a singleton is never a cluster)")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return s


def _as_tuple(value: Any) -> Any:
    """A TOML list as a tuple; anything else unchanged, so that validation names it (``"address"`` is not
    the list ``["address"]``)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def as_graph_settings(settings: GraphSettings | Mapping[str, Any] | None) -> GraphSettings:
    """Accept settings as :class:`GraphSettings`, a mapping of overrides, or None (packaged defaults)."""
    if settings is None:
        return load_graph_settings()
    if isinstance(settings, GraphSettings):
        return settings
    return load_graph_settings(overrides=settings)


def specificity(n_reports: np.ndarray | int, function: str = "inverse_log") -> np.ndarray:
    """Weight of a link made by an entity that ``n_reports`` distinct reports mention (1.0 at 2 reports).

    Monotone decreasing; an entity of one report links nothing, but gets weight 1.0 for display.

    >>> [round(float(x), 2) for x in specificity(np.array([1, 2, 5, 20, 1000]))]
    [1.0, 1.0, 0.61, 0.36, 0.16]
    >>> [round(float(x), 2) for x in specificity(np.array([2, 5]), "inverse")]
    [1.0, 0.25]
    """
    d = np.maximum(np.asarray(n_reports, dtype=np.float64), 2.0)
    if function == "inverse_log":
        return np.round(math.log(3.0) / np.log1p(d), 6)
    if function == "inverse":
        return np.round(1.0 / (d - 1.0), 6)
    raise ConfigError(f"unknown specificity function '{function}'")


def entity_weights(mentions: pd.DataFrame, settings: GraphSettings | None = None) -> pd.DataFrame:
    """Per entity: distinct reports mentioning it, its link weight and whether it is a hub.

    Parameters
    ----------
    mentions:
        Resolved mentions with at least ``report_id``, ``entity_id``, ``entity_type``.
    settings:
        Graph policy; default the packaged ``graph.toml``.

    Returns
    -------
    DataFrame indexed by nothing, columns ``entity_id, entity_type, n_reports, weight, is_hub``, sorted by
    ``entity_id``. ``weight = specificity(n_reports) * type_factor[entity_type]``.

    >>> m = pd.DataFrame({"report_id": ["R1", "R2", "R2"], "entity_id": ["A", "A", "B"],
    ...                   "entity_type": ["address", "address", "phone"]})
    >>> entity_weights(m)[["entity_id", "n_reports", "weight", "is_hub"]].values.tolist()
    [['A', 2, 0.8, False], ['B', 1, 1.0, False]]
    """
    s = settings or load_graph_settings()
    m = mentions[["report_id", "entity_id", "entity_type"]].dropna(subset=["entity_id"])
    pairs = m.drop_duplicates(["report_id", "entity_id"])
    counts = pairs.groupby("entity_id", sort=True).agg(entity_type=("entity_type", "first"),
                                                      n_reports=("report_id", "size")).reset_index()
    factor = counts["entity_type"].map(lambda t: float(s.type_factor.get(t, 1.0)))
    counts["weight"] = np.round(specificity(counts["n_reports"].to_numpy(), s.specificity) * factor.to_numpy(), 6)
    counts["is_hub"] = counts["n_reports"] > s.hub_max_reports
    counts["n_reports"] = counts["n_reports"].astype(int)
    return counts


def anchored_sql(settings: GraphSettings | None = None, alias: str = "m") -> str:
    """SQL expression (over the store's ``mentions`` table as ``alias``) that is 1 when a mention is anchored.

    A mention of a type listed in ``[anchors]`` is anchored when any of its anchor fields is non-empty;
    mentions of other types are always anchored (the entity is the identifier itself). Field names come from
    the validated settings and map to fixed column names (:data:`ANCHOR_FIELDS`), so no text from a file
    reaches the SQL.

    >>> anchored_sql(load_graph_settings().with_(anchors={"person": ("bsn",)}, name_only_factor={}))
    "CASE m.entity_type WHEN 'person' THEN (coalesce(m.bsn_norm, '') <> '') ELSE 1 END"
    """
    s = settings or load_graph_settings()
    if not s.anchors:
        return "1"
    whens = []
    for etype, fields in sorted(s.anchors.items()):
        if not re.fullmatch(r"[a-z_]+", etype):
            raise ConfigError(f"anchors: entity type '{etype}' must be lower-case letters and '_'")
        test = " OR ".join(f"coalesce({alias}.{ANCHOR_FIELDS[f]}, '') <> ''" for f in fields)
        whens.append(f"WHEN '{etype}' THEN ({test})")
    return f"CASE {alias}.entity_type {' '.join(whens)} ELSE 1 END"


def link_factor(entity_type: str, settings: GraphSettings) -> float:
    """Multiplier of a link-row type made by :func:`link_rows`.

    ``<type>+any`` rows (every mention of a type with a ``name_only_factor``, when anchoring is known) link
    with ``name_only_factor``; ``<type>+anchored`` rows add ``type_factor - name_only_factor`` to pairs whose
    both mentions are anchored, so those get the full ``type_factor``. A plain type: ``type_factor`` (1.0
    when not listed).

    >>> s = load_graph_settings().with_(type_factor={"person": 0.6}, name_only_factor={"person": 0.1},
    ...                                 anchors={"person": ("bsn",)})
    >>> [round(link_factor(t, s), 6) for t in ("person+any", "person+anchored", "person", "phone")]
    [0.1, 0.5, 0.6, 1.0]
    """
    if entity_type.endswith(ANCHORED_SUFFIX):
        base = entity_type[: -len(ANCHORED_SUFFIX)]
        return float(settings.type_factor.get(base, 1.0)) - float(settings.name_only_factor.get(base, 0.0))
    if entity_type.endswith(ANY_SUFFIX):
        base = entity_type[: -len(ANY_SUFFIX)]
        return float(settings.name_only_factor.get(base, settings.type_factor.get(base, 1.0)))
    return float(settings.type_factor.get(entity_type, 1.0))


def link_rows(mentions: pd.DataFrame, settings: GraphSettings | None = None) -> pd.DataFrame:
    """The (report, entity) rows that link reports, with links resting on a name match only weakened.

    For a type with a ``name_only_factor`` (persons by default) every mention's row gets the type
    ``<type>+any`` and every anchored mention adds a row for the entity ``<entity_id>+anchored`` of type
    ``<type>+anchored``. Two reports whose mentions of one person are both anchored thus share two link
    entities (``name_only_factor`` + the rest of ``type_factor``, see :func:`link_factor`); a pair where a
    side gives the name only shares one (``name_only_factor``). Each row is weighted by the specificity of
    its own entity, so the anchored part of a person mentioned by many reports is at least as specific as
    the whole; likewise the hub test: a person named in more than ``hub_max_reports`` reports whose
    anchored mentions are fewer still links those anchored reports (they identify one person).

    Without an ``anchored`` column (or with no ``name_only_factor``) the mentions are returned unchanged and
    every link counts its full ``type_factor``; a missing value in ``anchored`` counts as anchored.

    Returns ``DataFrame[report_id, entity_id, entity_type]``.

    >>> m = pd.DataFrame({"report_id": ["R1", "R2", "R3"], "entity_id": ["P"] * 3,
    ...                   "entity_type": ["person"] * 3, "anchored": [True, True, False]})
    >>> s = load_graph_settings().with_(name_only_factor={"person": 0.1}, anchors={"person": ("bsn",)})
    >>> link_rows(m, s)[["entity_id", "entity_type"]].values.tolist()[2:]
    [['P', 'person+any'], ['P+anchored', 'person+anchored'], ['P+anchored', 'person+anchored']]
    """
    s = settings or load_graph_settings()
    cols = ["report_id", "entity_id", "entity_type"]
    if "anchored" not in mentions.columns or not s.name_only_factor:
        return mentions[cols]
    anchored = mentions["anchored"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    weak_type = mentions["entity_type"].isin(list(s.name_only_factor)).to_numpy()
    base = mentions[cols].copy()
    base.loc[weak_type, "entity_type"] = base.loc[weak_type, "entity_type"].astype(str) + ANY_SUFFIX
    extra = mentions.loc[anchored & weak_type & mentions["entity_id"].notna().to_numpy(), cols]
    extra = extra.assign(entity_id=extra["entity_id"].astype(str) + ANCHORED_SUFFIX,
                         entity_type=extra["entity_type"].astype(str) + ANCHORED_SUFFIX)
    return pd.concat([base, extra], ignore_index=True)
