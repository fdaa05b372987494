"""One error family for linkage. Messages speak to the user and never contain personal data.

Library code raises these; only the CLI turns them into stderr text and an exit code.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class LinkageError(Exception):
    """Base of every error linkage raises on purpose. ``str(err)`` is the user-facing message."""

    exit_code = 1


class ConfigError(LinkageError):
    """A settings, mapping or rules file is malformed (the message names file and line)."""


class InputError(LinkageError):
    """An input file cannot be read at all (missing, unknown format, missing required column)."""


class StoreError(LinkageError):
    """The store is missing, locked, or from an incompatible version."""


class NotFoundError(LinkageError):
    """An id given on the command line is not in the store."""


class Neo4jUnavailable(LinkageError):
    """The Neo4j server cannot be reached or refused the credentials."""


@dataclass(frozen=True)
class Problem:
    """One validation finding about one field of one row. ``value`` is never included (personal data)."""

    file: str
    row: int | None
    field: str | None
    message: str
    severity: str = "error"  # "error" rejects the row; "warning" keeps it

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


@dataclass
class ValidationError(LinkageError):
    """Raised once with every problem collected, never one at a time."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:  # pragma: no cover - trivial
        head = f"{len(self.problems)} problem(s) found:"
        return "\n".join([head] + [f"  - {p}" for p in self.problems[:50]])
