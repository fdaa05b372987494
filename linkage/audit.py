"""The audit log: who ran which command that read or changed personal data, and what it touched.

In:  a store, a command name, and a ``touched`` dict of ids and counts (never values: no names,
     addresses, BSNs, notes).
Out: append-only rows in the store's ``audit_log`` table (time, actor, command, touched as JSON);
     :func:`audit_log` reads them back for ``linkage audit``.

The actor is ``$LINKAGE_USER`` when set, else the OS user. Three ways to record:

* :func:`record` with an open store;
* :func:`record_at` with a store path (opens and closes the store itself; does nothing when the store
  does not exist, e.g. when the command failed before creating it);
* the :func:`audited` decorator for CLI commands, with :func:`touch` inside the command to add counts.

>>> import tempfile, pathlib
>>> from linkage.store import EmbeddedStore
>>> s = EmbeddedStore(pathlib.Path(tempfile.mkdtemp()) / "a.db")
>>> record(s, "status", {"report_ids": ["R1"], "changed": 1}, actor="ana") > 0
True
>>> audit_log(s)[["actor", "command", "touched"]].to_dict("records")
[{'actor': 'ana', 'command': 'status', 'touched': {'changed': 1, 'report_ids': ['R1']}}]
"""
from __future__ import annotations

import contextvars
import datetime as dt
import functools
import getpass
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pandas as pd

from linkage.errors import InputError, LinkageError

#: Longest list of ids kept per key in ``touched``; longer lists are cut and their length recorded.
MAX_IDS = 1000


def current_actor() -> str:
    """``$LINKAGE_USER`` when set, else the OS user name, else ``'unknown'``.

    >>> os.environ["LINKAGE_USER"] = "ana"; current_actor()
    'ana'
    >>> del os.environ["LINKAGE_USER"]
    """
    user = os.environ.get("LINKAGE_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no login name in some containers
        return "unknown"


def now_iso(now: dt.datetime | None = None) -> str:
    """A timestamp as ISO text in UTC, to the second (naive datetimes are taken as UTC).

    >>> now_iso(dt.datetime(2025, 3, 3, 9, 30))
    '2025-03-03T09:30:00+00:00'
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def parse_since(text: str | dt.date | None) -> str | None:
    """A ``--since`` value (``2025-03-01`` or ``2025-03-01T12:00``) as comparable ISO text, or None.

    Raises
    ------
    InputError
        When the text is not a date.

    >>> parse_since("2025-03-01"), parse_since(None)
    ('2025-03-01', None)
    >>> parse_since("gisteren")
    Traceback (most recent call last):
    linkage.errors.InputError: --since 'gisteren' is not a date; use 2025-03-01 or 2025-03-01T12:00.
    """
    if text is None or text == "":
        return None
    if isinstance(text, dt.datetime):
        return now_iso(text)
    if isinstance(text, dt.date):
        return text.isoformat()
    raw = str(text).strip()
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"--since '{raw[:20]}' is not a date; use 2025-03-01 or 2025-03-01T12:00.") from None
    if len(raw) <= 10:
        return parsed.date().isoformat()
    return now_iso(parsed)


def clean_touched(touched: Mapping[str, Any]) -> dict[str, Any]:
    """``touched`` reduced to ids and counts: numbers, booleans, short id strings and lists of them.

    Lists longer than :data:`MAX_IDS` are cut, with ``<key>_total`` giving the full length. Any other
    value (dicts are flattened one level as ``key.sub``) is replaced by its type name, so a value can
    never slip into the log by mistake.

    >>> clean_touched({"report_ids": ["R1", "R2"], "rows": 3, "x": object()})
    {'report_ids': ['R1', 'R2'], 'rows': 3, 'x': '<object>'}
    """
    out: dict[str, Any] = {}

    def one(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float)):
            return v
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            try:
                return one(v.item())
            except (AttributeError, ValueError):
                pass
        if isinstance(v, str) and len(v) <= 80:
            return v
        return f"<{type(v).__name__}>"

    for key, value in touched.items():
        if isinstance(value, Mapping):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = one(v)
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
            out[key] = [one(v) for v in items[:MAX_IDS]]
            if len(items) > MAX_IDS:
                out[f"{key}_total"] = len(items)
        else:
            out[key] = one(value)
    return out


def record(store, command: str, touched: Mapping[str, Any] | None = None, actor: str | None = None,
           now: dt.datetime | None = None) -> int:
    """Append one audit row; returns its id. ``touched`` holds ids and counts only (see :func:`clean_touched`)."""
    payload = json.dumps(clean_touched(touched or {}), ensure_ascii=False, sort_keys=True)
    cur = store.conn.execute(
        "INSERT INTO audit_log (at, actor, command, touched) VALUES (?, ?, ?, ?)",
        (now_iso(now), actor or current_actor(), command, payload),
    )
    return int(cur.lastrowid)


def record_at(store_path: Path | str | None, command: str, touched: Mapping[str, Any] | None = None,
              actor: str | None = None) -> int | None:
    """Like :func:`record`, given a store path (None: the default store); None when there is no store."""
    from linkage.store import EmbeddedStore, default_store_path

    path = Path(store_path) if store_path else default_store_path()
    if not path.exists():
        return None
    with EmbeddedStore(path) as store:
        return record(store, command, touched, actor)


def audit_log(store, since: str | dt.date | None = None, command: str | None = None) -> pd.DataFrame:
    """Audit rows (oldest first) at or after ``since``, optionally of one command; ``touched`` parsed."""
    where, params = [], []
    cutoff = parse_since(since)
    if cutoff:
        where.append("at >= ?")
        params.append(cutoff)
    if command:
        where.append("command = ?")
        params.append(command)
    sql = "SELECT id, at, actor, command, touched FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    df = store.frame(sql + " ORDER BY id", params)
    df["touched"] = [json.loads(t) if t else {} for t in df["touched"]]
    return df


# --- the CLI helper -------------------------------------------------------------------------------
_touched: contextvars.ContextVar[Optional[dict]] = contextvars.ContextVar("linkage_audit_touched", default=None)


def touch(**counts: Any) -> None:
    """Add ids and counts to the audit row of the running :func:`audited` command (no-op outside one)."""
    current = _touched.get()
    if current is not None:
        current.update(counts)


def audited(command: str, store_param: str = "store") -> Callable[[Callable], Callable]:
    """Decorate a CLI command so each run appends an audit row, also when it fails with a LinkageError.

    The store path is taken from the command's ``store_param`` keyword (None: the default store);
    inside the command, :func:`touch` adds ids and counts. Put it *below* ``@app.command()``::

        @app.command()
        @audited("clusters")
        def clusters(store: StoreOpt = None, ...):
            ...
            touch(clusters=len(df))
    """

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _touched.set({})
            try:
                result = func(*args, **kwargs)
            except LinkageError as exc:
                touched = dict(_touched.get() or {})
                touched["outcome"] = f"error:{type(exc).__name__}"
                _safe_record(kwargs.get(store_param), command, touched)
                raise
            else:
                _safe_record(kwargs.get(store_param), command, dict(_touched.get() or {}))
                return result
            finally:
                _touched.reset(token)

        return wrapper

    return wrap


def _safe_record(store_path: Any, command: str, touched: dict) -> None:
    try:
        record_at(store_path, command, touched)
    except LinkageError:  # a damaged store already produced its own error
        pass
