"""Entity resolution: mentions -> entities, with explanations and a generic-table entry point.

In:  mentions (see :mod:`linkage.resolve.engine`), or table files with a column mapping.
Out: :func:`resolve_mentions` -> :class:`Resolution`; :func:`explain_pair` / :func:`explain_entities` /
     :func:`explain_ids` -> :class:`Explanation`; :func:`resolve_table` -> :class:`TableSummary`.
"""
from linkage.er_settings import ERSettings, load_er_settings
from linkage.resolve.engine import Resolution, entity_id, resolve_mentions
from linkage.resolve.explain import Explanation, FieldRow, explain_entities, explain_ids, explain_pair
from linkage.resolve.table import TABLE_FIELDS, TableSummary, resolve_table

__all__ = [
    "ERSettings", "load_er_settings", "Resolution", "entity_id", "resolve_mentions", "Explanation", "FieldRow",
    "explain_pair", "explain_entities", "explain_ids", "TABLE_FIELDS", "TableSummary", "resolve_table",
]
