"""Dates as analysts write them: ISO 8601 or Dutch ``dd-mm-yyyy`` (also with ``/`` or ``.``).

In:  str, datetime.date/datetime (from Excel), numbers, None.
Out: ``parse_date`` -> ``datetime.date`` or None; ``parse_timestamp`` -> ISO text (date, or date and time)
     or None. Never raises. Ambiguous day/month follows the Dutch order (day first) unless ISO.
"""
from __future__ import annotations

import datetime as dt
import math
import re

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_DUTCH = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def _parts(value: object) -> tuple[int, int, int, tuple[int, int, int] | None] | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.year, value.month, value.day, (value.hour, value.minute, value.second)
    if isinstance(value, dt.date):
        return value.year, value.month, value.day, None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    if not text:
        return None
    m = _ISO.match(text)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        time = (int(m[4]), int(m[5]), int(m[6] or 0)) if m[4] else None
        return y, mo, d, time
    m = _DUTCH.match(text)
    if m:
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
        time = (int(m[4]), int(m[5]), int(m[6] or 0)) if m[4] else None
        return y, mo, d, time
    m = _COMPACT.match(text)
    if m:
        return int(m[1]), int(m[2]), int(m[3]), None
    return None


def parse_date(value: object) -> dt.date | None:
    """The calendar date in ``value``, or None when absent or not a real date.

    >>> parse_date("2025-03-14"), parse_date("14-03-2025"), parse_date("14/3/2025")
    (datetime.date(2025, 3, 14), datetime.date(2025, 3, 14), datetime.date(2025, 3, 14))
    >>> parse_date("31-02-2025") is None, parse_date("gisteren") is None
    (True, True)
    """
    parts = _parts(value)
    if parts is None:
        return None
    try:
        return dt.date(parts[0], parts[1], parts[2])
    except ValueError:
        return None


def parse_timestamp(value: object) -> str | None:
    """ISO text of a date (``2025-03-14``) or date and time (``2025-03-14T09:30:00``), or None.

    >>> parse_timestamp("14-03-2025 09:30")
    '2025-03-14T09:30:00'
    >>> parse_timestamp("2025-03-14")
    '2025-03-14'
    """
    parts = _parts(value)
    if parts is None:
        return None
    try:
        day = dt.date(parts[0], parts[1], parts[2])
        if parts[3] is None or parts[3] == (0, 0, 0) and not isinstance(value, str):
            return day.isoformat()
        return dt.datetime(day.year, day.month, day.day, *parts[3]).isoformat()
    except ValueError:
        return None
