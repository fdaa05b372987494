"""Synthetic meldingen with ground truth, for tests, demos and benchmarks.

In:  a number of reports and a seed.
Out: CSV files in the canonical input format (``reports.csv``, ``mentions.csv``) plus the truth
     (``truth_mentions.csv``: every mention id, derived ``<mention_id>~<type>`` ids included, to its true entity;
     ``truth_reports.csv``: report to planted network), optionally the wide export example (``wide.csv``).

Public functions:
- ``generate(n_reports, seed, out_dir, progress=None, wide=False) -> GenerateSummary``
- ``generate_person_mentions(n_mentions, seed) -> (mentions DataFrame, truth DataFrame)``
- ``write_wide_example(source_dir, out_path, n_reports=100) -> rows written``

Modules, in the order data flows: ``pools`` (names, streets, towns; faker ``nl_NL`` is used only there),
``identifiers`` (valid unique BSN/IBAN/KvK/kenteken/phone/postcode), ``world`` (true entities and hub
addresses), ``networks`` (planted networks), ``background`` (unrelated reports, reporters, categories),
``noise`` + ``mentions`` (how an entity is written in a row), ``core`` (plan and write), ``wide``, ``people``.
"""
from __future__ import annotations

from .core import GenerateSummary, generate
from .networks import KINDS as NETWORK_KINDS
from .people import generate_person_mentions
from .wide import WIDE_COLUMNS, write_wide_example
from .world import REFERENCE_DATE

__all__ = [
    "GenerateSummary",
    "NETWORK_KINDS",
    "REFERENCE_DATE",
    "WIDE_COLUMNS",
    "generate",
    "generate_person_mentions",
    "write_wide_example",
]
