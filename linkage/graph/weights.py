"""Edge weights: how much one shared entity means, by how many reports share it (specificity).

In:  the resolved ``mentions`` table (report_id, entity_id, entity_type) and the graph policy
     (``linkage/graph/graph.toml``, loaded into a frozen :class:`GraphSettings`).
Out: per entity its number of distinct reports, its specificity weight and whether it is a hub
     (:func:`entity_weights`); the vectorised weight function itself (:func:`specificity`).

A rare shared identifier links strongly; a value that very many reports mention (a municipal office used
as briefadres, a large flat, a generic phone number) links weakly. Entities above ``hub_max_reports``
are *hubs*: they stay in the graph and in every signal, but never create a link between two reports on
their own (see :mod:`linkage.graph.communities`).
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

#: The default graph policy file.
DEFAULT_GRAPH_TOML = Path(__file__).with_name("graph.toml")

SPECIFICITY_FUNCTIONS = ("inverse_log", "inverse")
OBJECTIVES = ("CPM", "modularity")


@dataclass(frozen=True)
class GraphSettings:
    """Graph and community policy, validated. Build with :func:`load_graph_settings`.

    Attributes mirror ``graph.toml``: ``specificity`` (function name), ``hub_max_reports``,
    ``type_factor`` (entity type -> multiplier), ``objective`` ("CPM" or "modularity"),
    ``resolution``, ``iterations``, ``seed``, ``min_cluster_size``.
    """

    specificity: str = "inverse_log"
    hub_max_reports: int = 40
    type_factor: Mapping[str, float] = field(default_factory=dict)
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
    known = {"specificity": {"function", "hub_max_reports"}, "type_factor": None,
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
    s = GraphSettings(
        specificity=spec.get("function", "inverse_log"),
        hub_max_reports=spec.get("hub_max_reports", 40),
        type_factor=dict(doc.get("type_factor", {})),
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
