"""Analyst judgements: "these two are the same / different / I am unsure", append-only, never edited.

In:  ``linkage judge A B --same|--different|--unsure|--withdraw`` on two mention ids or entity ids.
Out: rows in the store's ``judgements`` table (time, actor, ids, verdict, note; the representative
     mentions at judging time); :func:`current_judgements` folds the log into the
     ``(mention_a, mention_b, verdict)`` constraints the resolver honours on every run:
     ``same`` forces a merge, ``different`` forbids it, also through transitive links.

Folding: per unordered pair of ids the latest row wins; ``withdrawn`` and ``unsure`` give no
constraint. Entity ids are mapped to a representative mention (the one recorded when judging while it
still exists, else the smallest mention id of the entity in ``mention_entities``), so a judgement
survives re-runs that renumber entities.

>>> import tempfile, pathlib
>>> from linkage.store import EmbeddedStore
>>> s = EmbeddedStore(pathlib.Path(tempfile.mkdtemp()) / "j.db")
>>> for m in ("M1", "M2"):
...     _ = s.conn.execute("INSERT INTO mentions (mention_id, report_id, entity_type, content_hash) "
...                        "VALUES (?, 'R1', 'person', 'x')", (m,))
>>> _ = record_judgement(s, "M2", "M1", "different", actor="ana")
>>> current_judgements(s)
[('M1', 'M2', 'different')]
>>> _ = record_judgement(s, "M1", "M2", "withdrawn", actor="ana")
>>> current_judgements(s)
[]
"""
from __future__ import annotations

import datetime as dt
from typing import Iterable

import pandas as pd

from linkage.audit import current_actor, now_iso
from linkage.errors import LinkageError, NotFoundError

VERDICTS: tuple[str, ...] = ("same", "different", "unsure", "withdrawn")

#: Verdicts that constrain the resolver.
BINDING: frozenset[str] = frozenset({"same", "different"})


class JudgementError(LinkageError):
    """A judgement that cannot be recorded (same id twice, unknown verdict, nothing to withdraw)."""


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _representative(store, some_id: str) -> str | None:
    """The mention an id stands for: itself when a mention, else the entity's smallest mention id."""
    if store.conn.execute("SELECT 1 FROM mentions WHERE mention_id=?", (some_id,)).fetchone():
        return some_id
    row = store.conn.execute("SELECT MIN(mention_id) FROM mention_entities WHERE entity_id=?", (some_id,)).fetchone()
    return row[0] if row and row[0] else None


def _kind(store, some_id: str) -> str | None:
    if store.conn.execute("SELECT 1 FROM mentions WHERE mention_id=?", (some_id,)).fetchone():
        return "mention"
    if store.conn.execute(
        "SELECT 1 FROM entities WHERE entity_id=? UNION SELECT 1 FROM mention_entities WHERE entity_id=?",
        (some_id, some_id),
    ).fetchone():
        return "entity"
    return None


def record_judgement(store, id_a: str, id_b: str, verdict: str, actor: str | None = None, note: str | None = None,
                     now: dt.datetime | None = None) -> int:
    """Append one judgement on two mention or entity ids; returns its row id.

    ``withdrawn`` cancels the pair's earlier judgement (it stays in the log).

    Raises
    ------
    JudgementError
        When the ids are equal, the verdict is unknown, or there is nothing to withdraw.
    NotFoundError
        When an id is neither a mention nor an entity in the store.
    """
    if verdict not in VERDICTS:
        raise JudgementError(f"'{verdict[:20]}' is not a verdict; use one of {', '.join(VERDICTS)}.")
    if id_a == id_b:
        raise JudgementError(f"Cannot judge {id_a[:60]} against itself; give two different ids.")
    for some_id in (id_a, id_b):
        if _kind(store, some_id) is None:
            raise NotFoundError(f"{some_id[:60]} is neither a mention id nor an entity id in the store.")
    if verdict == "withdrawn":
        last = _latest(store).get(_pair(id_a, id_b))
        if last is None or last["verdict"] == "withdrawn":
            raise JudgementError(f"There is no judgement on {id_a[:60]} and {id_b[:60]} to withdraw.")
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO judgements (at, actor, id_a, id_b, verdict, note, mention_a, mention_b) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now_iso(now), actor or current_actor(), id_a, id_b, verdict, note,
             _representative(store, id_a), _representative(store, id_b)),
        )
    return int(cur.lastrowid)


def judgement_log(store) -> pd.DataFrame:
    """The whole log, oldest first: id, at, actor, id_a, id_b, verdict, note, mention_a, mention_b."""
    return store.frame("SELECT id, at, actor, id_a, id_b, verdict, note, mention_a, mention_b FROM judgements ORDER BY id")


def _latest(store) -> dict[tuple[str, str], dict]:
    latest: dict[tuple[str, str], dict] = {}
    for row in judgement_log(store).to_dict("records"):
        latest[_pair(row["id_a"], row["id_b"])] = row
    return latest


def folded_judgements(store) -> pd.DataFrame:
    """The standing judgement per pair (latest row wins; withdrawn pairs left out, ``unsure`` kept)."""
    rows = [r for r in _latest(store).values() if r["verdict"] != "withdrawn"]
    cols = ["id", "at", "actor", "id_a", "id_b", "verdict", "note", "mention_a", "mention_b"]
    return pd.DataFrame(sorted(rows, key=lambda r: r["id"]), columns=cols)


def _existing_mentions(store, ids: Iterable[str | None]) -> set[str]:
    """Those of ``ids`` that are stored mentions (looked up by key, not by reading every mention id)."""
    wanted = sorted({str(i) for i in ids if i is not None})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        found.update(r[0] for r in store.conn.execute(
            f"SELECT mention_id FROM mentions WHERE mention_id IN ({','.join('?' for _ in chunk)})", chunk))
    return found


def current_judgements(store) -> list[tuple[str, str, str]]:
    """The constraints for the resolver: sorted ``(mention_a, mention_b, verdict)``, verdict same/different.

    Each id is mapped to a mention: the mention recorded at judging time if it still exists, else the
    id itself when it is a mention, else the entity's smallest mention. Pairs whose ids no longer
    resolve (purged) or resolve to one mention are left out.
    """
    rows = [row for row in _latest(store).values() if row["verdict"] in BINDING]
    existing = _existing_mentions(store, {row[k] for row in rows for k in ("mention_a", "mention_b")})
    out: set[tuple[str, str, str]] = set()
    for row in rows:
        ends = []
        for recorded, given in ((row["mention_a"], row["id_a"]), (row["mention_b"], row["id_b"])):
            ends.append(recorded if recorded in existing else _representative(store, given))
        if None in ends or ends[0] == ends[1]:
            continue
        a, b = _pair(ends[0], ends[1])
        out.add((a, b, row["verdict"]))
    return sorted(out)


def different_pairs(store) -> list[tuple[str, str]]:
    """The standing ``different`` constraints of :func:`current_judgements` as mention pairs: what clustering's
    candidate links (:mod:`linkage.graph.candidates`) must not overrule either."""
    return [(a, b) for a, b, verdict in current_judgements(store) if verdict == "different"]


def judgements_for(store, ids: Iterable[str]) -> pd.DataFrame:
    """Standing judgements that involve any of ``ids`` (mention or entity ids) - for ``linkage explain``.

    An entity id also matches judgements made on its mentions, and a mention id those made on its entity.
    """
    wanted = set(ids)
    if not wanted:
        return folded_judgements(store).iloc[0:0]
    q = ",".join("?" for _ in wanted)
    params = list(wanted)
    related = store.conn.execute(
        f"SELECT mention_id, entity_id FROM mention_entities WHERE mention_id IN ({q}) OR entity_id IN ({q})",
        params + params,
    ).fetchall()
    for mid, eid in related:
        wanted.update((mid, eid))
    df = folded_judgements(store)
    mask = df["id_a"].isin(wanted) | df["id_b"].isin(wanted) | df["mention_a"].isin(wanted) | df["mention_b"].isin(wanted)
    return df[mask].reset_index(drop=True)
