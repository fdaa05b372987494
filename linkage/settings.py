"""Settings: the policy in ``linkage/settings.toml`` (or a file of the user's), loaded once, frozen.

In:  a TOML file path (or None for the bundled default; ``$LINKAGE_SETTINGS`` overrides).
Out: a frozen :class:`Settings`; a malformed file raises :class:`~linkage.errors.ConfigError`
     naming the file and line.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from linkage import model
from linkage.errors import ConfigError

DEFAULT_SETTINGS = Path(__file__).with_name("settings.toml")


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; errors name the file and line.

    Raises
    ------
    ConfigError
        When the file is missing or not valid TOML.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the file as UTF-8.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        where = f"{path}, line {line}" if line else str(path)
        msg = getattr(exc, "msg", str(exc))
        raise ConfigError(f"{where}: not valid TOML ({msg}).") from None


def label_key(label: str) -> str:
    """The comparable form of a label: lower case, separators as underscores.

    >>> label_key("  Illegale onder-verhuur ")
    'illegale_onder_verhuur'
    """
    return re.sub(r"[\s\-/]+", "_", str(label).strip().lower()).strip("_")


@dataclass(frozen=True)
class Settings:
    """The loaded policy. Build with :func:`load_settings`."""

    source: str
    categories: tuple[str, ...]
    category_aliases: Mapping[str, str]
    entity_type_aliases: Mapping[str, str]
    chunk_rows: int = 20000
    cluster_seed: int = 42
    resolve_processes: int = 2
    resolve_parallel_min_mentions: int = 20000
    load_workers: int = 2
    load_parallel_min_rows: int = 40000
    score_processes: int = 2
    score_parallel_min_clusters: int = 2000
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def category(self, label: object) -> tuple[str, bool]:
        """Map a category label onto the vocabulary: (category, known?). Unknown labels give 'overig'.

        >>> s = load_settings()
        >>> s.category("Hennepteelt "), s.category("geluidsoverlast")
        (('hennepteelt', True), ('overig', False))
        """
        key = label_key(str(label or ""))
        if key in self.categories:
            return key, True
        if key in self.category_aliases:
            return self.category_aliases[key], True
        return "overig", False

    def entity_type(self, label: object) -> str | None:
        """Map an entity-type label (English or Dutch) to an entity type, or None when unknown."""
        key = label_key(str(label or ""))
        if key in model.ENTITY_TYPES:
            return key
        return self.entity_type_aliases.get(key)


def _at_least(path: str, name: str, value: Any, low: int) -> int:
    """``value`` as a whole number of at least ``low``, or a ConfigError naming the file and the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{path}: {name} = {value!r} must be a whole number of at least {low}.")
    return value


def load_settings(path: Path | str | None = None) -> Settings:
    """Load settings from ``path``, ``$LINKAGE_SETTINGS`` or the bundled default (cached per path)."""
    chosen = path or os.environ.get("LINKAGE_SETTINGS") or DEFAULT_SETTINGS
    return _load(str(Path(chosen).resolve()))


@lru_cache(maxsize=8)
def _load(path: str) -> Settings:
    data = read_toml(Path(path))
    cats = data.get("categories", {})
    known = tuple(cats.get("known", model.CATEGORIES))
    if "overig" not in known:
        known = known + ("overig",)
    aliases = {label_key(k): v for k, v in cats.get("aliases", {}).items()}
    for alias, target in aliases.items():
        if target not in known:
            raise ConfigError(f"{path}: [categories.aliases] {alias} = '{target}' is not in categories.known.")
    et_aliases = {label_key(k): v for k, v in data.get("entity_types", {}).get("aliases", {}).items()}
    for alias, target in et_aliases.items():
        if target not in model.ENTITY_TYPES:
            raise ConfigError(
                f"{path}: [entity_types.aliases] {alias} = '{target}' is not one of {', '.join(model.ENTITY_TYPES)}."
            )
    loading = data.get("loading", {})
    clusters = data.get("clusters", {})
    resolving = data.get("resolve", {})
    scoring = data.get("scoring", {})
    processes = _at_least(path, "[resolve] processes", resolving.get("processes", 2), 1)
    return Settings(
        source=path,
        categories=known,
        category_aliases=aliases,
        entity_type_aliases=et_aliases,
        chunk_rows=int(loading.get("chunk_rows", 20000)),
        cluster_seed=int(clusters.get("seed", 42)),
        resolve_processes=processes,
        resolve_parallel_min_mentions=int(resolving.get("parallel_min_mentions", 20000)),
        load_workers=_at_least(path, "[loading] workers", loading.get("workers", 2), 0),
        load_parallel_min_rows=_at_least(path, "[loading] parallel_min_rows", loading.get("parallel_min_rows", 40000), 0),
        score_processes=_at_least(path, "[scoring] processes", scoring.get("processes", 2), 1),
        score_parallel_min_clusters=_at_least(path, "[scoring] parallel_min_clusters",
                                              scoring.get("parallel_min_clusters", 2000), 0),
        raw=data,
    )
