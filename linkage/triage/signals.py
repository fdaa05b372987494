"""Signals: small documented functions that each say one thing about a cluster, with a value and a sentence.

In:  a :class:`ClusterContext` (one cluster's reports and the relations its reports state, as plain tuples;
     built by :func:`linkage.triage.scoring.build_contexts`, or literally in tests).
Out: a :class:`Signal` ``(name, value, sentence, inputs)`` per signal; :data:`SIGNALS` lists them all.

Every signal's ``value`` grows with suspicion; :mod:`linkage.triage.scoring` turns values into points with
the weights in ``scoring.toml``. Sentences are English and name entities by their label (analyst-facing);
``inputs`` carry ids and counts only, never reporter identities.

Relations in the context (all ids are resolved entity ids):

- ``mentioned``: (report, entity) - every entity each report mentions;

- ``residence``: (person, address) - a row stated ``LIVES_AT``, or a report mentions exactly one address and
  the person with a resident role (``scoring.toml`` ``[residence]``);
- ``directs``: (person, business) - ``DIRECTOR_OF`` or ``OWNER_OF``;
- ``located``: (business, address) - ``LOCATED_AT``;
- ``uses``: (person or business, vehicle or bank account) - a row stated ``USES``, or a report mentions
  exactly one person/business and the vehicle or bank account.

``labels`` hold the labels of the entities of these four relations only (:func:`linkage.triage.scoring.build_contexts`
reads no other): a signal names an entity by :meth:`ClusterContext.label` only when it takes the entity from a
relation; entities only in ``mentioned`` are counted or listed by id.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from linkage.triage.policy import ScoringPolicy, default_policy


@dataclass(frozen=True)
class Signal:
    """One explained fact about a cluster: ``value`` (higher = more suspicious), a sentence, the inputs."""

    name: str
    value: float
    sentence: str
    inputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportInfo:
    """What the signals need of one report (no reporter type or description; the reporter id only to count)."""

    report_id: str
    received_at: dt.date | None
    category: str | None
    reporter_id: str | None = None


@dataclass(frozen=True)
class ClusterContext:
    """Everything the signals read about one cluster."""

    cluster_id: str
    now: dt.date
    reports: tuple[ReportInfo, ...]
    residence: tuple[tuple[str, str], ...] = ()
    directs: tuple[tuple[str, str], ...] = ()
    located: tuple[tuple[str, str], ...] = ()
    uses: tuple[tuple[str, str], ...] = ()
    mentioned: tuple[tuple[str, str], ...] = ()
    entity_types: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    policy: ScoringPolicy = field(default_factory=default_policy)

    def label(self, entity_id: str) -> str:
        """The entity's label, or its id when it has none."""
        lab = self.labels.get(entity_id)
        return str(lab) if lab not in (None, "") else entity_id


def _plural(n: float, word: str, plural: str | None = None) -> str:
    n_txt = f"{n:g}" if isinstance(n, float) else str(n)
    return f"{n_txt} {word if n == 1 else (plural or word + 's')}"


def _max_group(pairs: Iterable[tuple[str, str]]) -> tuple[str | None, list[str]]:
    """The key with most distinct values (ties: smallest key) and its sorted values."""
    groups: dict[str, set[str]] = defaultdict(set)
    for k, v in pairs:
        groups[k].add(v)
    if not groups:
        return None, []
    key = min(groups, key=lambda k: (-len(groups[k]), k))
    return key, sorted(groups[key])


# ------------------------------------------------------------------------------------------------ signals
def n_reports(ctx: ClusterContext) -> Signal:
    """Number of reports in the cluster.

    >>> ctx = ClusterContext("c1", dt.date(2024, 5, 1), (ReportInfo("R1", None, "drugs"), ReportInfo("R2", None, "drugs")))
    >>> n_reports(ctx).value, n_reports(ctx).sentence
    (2, '2 reports in the cluster.')
    """
    n = len(ctx.reports)
    return Signal("n_reports", n, f"{_plural(n, 'report')} in the cluster.", {"n_reports": n})


def independent_reporters(ctx: ClusterContext) -> Signal:
    """Independent confirmations: distinct named reporters, plus each anonymous report at a reduced weight.

    One reporter filing five times is one confirmation. An empty ``reporter_id`` is anonymous; each such
    report counts ``anonymous_weight`` (``scoring.toml`` ``[reporters]``), since it may be anyone, even a
    named reporter again.

    >>> rs = tuple(ReportInfo(f"R{i}", None, "drugs", r) for i, r in enumerate(["a", "a", "a", "b", None, ""]))
    >>> s = independent_reporters(ClusterContext("c1", dt.date(2024, 5, 1), rs))
    >>> s.value, s.inputs["named_reporters"], s.inputs["anonymous_reports"]
    (3.0, 2, 2)
    """
    named = {r.reporter_id for r in ctx.reports if r.reporter_id}
    anon = sum(1 for r in ctx.reports if not r.reporter_id)
    w = ctx.policy.anonymous_weight
    value = round(len(named) + w * anon, 3)
    sentence = (f"{value:g} independent reporters: {_plural(len(named), 'named reporter')}"
                f" and {_plural(anon, 'anonymous report')} counted {w:g} each.")
    return Signal("independent_reporters", value, sentence,
                  {"named_reporters": len(named), "anonymous_reports": anon, "anonymous_weight": w,
                   "n_reports": len(ctx.reports)})


def recency(ctx: ClusterContext) -> Signal:
    """How recent the newest report is, as a level of the ladder in ``scoring.toml`` (``[[recency.levels]]``):
    the days between the newest report and ``now`` (the reference date: the newest report's date in the store)
    fall into the first level whose ``within_days`` they do not exceed; the value is that level's value, 0 when
    older than every level.

    A ladder rather than a continuous decay, so that the signal (its value, sentence and inputs) changes only
    when the newest report crosses a level boundary: a run that moves the reference date by a few days leaves
    every other cluster's score and explanation as they were. The sentence and inputs therefore name the level,
    not the reference date or the day count. Reports without a date are ignored; a cluster without any dated
    report gets 0.

    >>> rs = (ReportInfo("R1", dt.date(2024, 1, 1), "drugs"), ReportInfo("R2", dt.date(2024, 3, 31), "drugs"))
    >>> s = recency(ClusterContext("c1", dt.date(2024, 6, 29), rs))
    >>> s.value, s.inputs["within_days"], s.sentence
    (0.6, 90, 'Newest report 2024-03-31, within 90 days of the reference date.')
    >>> recency(ClusterContext("c1", dt.date(2025, 6, 29), rs)).sentence
    'Newest report 2024-03-31, more than 365 days before the reference date.'
    """
    dates = [r.received_at for r in ctx.reports if r.received_at is not None]
    if not dates:
        return Signal("recency", 0.0, "No report in the cluster has a date.", {})
    newest = max(dates)
    days = max(0, (ctx.now - newest).days)
    level = ctx.policy.recency_level(days)
    inputs = {"newest": newest.isoformat(), "oldest": min(dates).isoformat()}
    if level is None:
        beyond = ctx.policy.recency_levels[-1].within_days if ctx.policy.recency_levels else 0
        return Signal("recency", 0.0,
                      f"Newest report {newest.isoformat()}, more than {_plural(beyond, 'day')} before the reference date.",
                      {**inputs, "within_days": None, "older_than_days": beyond})
    return Signal("recency", float(level.value), f"Newest report {newest.isoformat()}, {level.label}.",
                  {**inputs, "within_days": level.within_days})


def category_severity(ctx: ClusterContext) -> Signal:
    """How serious the reported categories are: severity (1-5, ``scoring.toml`` ``[severity]``) averaged over
    the cluster's reports.

    The average, not the maximum: one stray report in a serious category should not make a mixed bag of
    reports look like a serious case; a cluster where every report says ``mensenhandel`` scores 5. The most
    serious category is named in the inputs either way.

    >>> rs = (ReportInfo("R1", None, "overbewoning"), ReportInfo("R2", None, "hennepteelt"))
    >>> s = category_severity(ClusterContext("c1", dt.date(2024, 5, 1), rs))
    >>> s.value, s.inputs["most_severe"], s.sentence
    (3.5, 'hennepteelt', 'Average category severity 3.5 of 5 (most serious: hennepteelt, 1 report).')
    """
    counts: dict[str, int] = defaultdict(int)
    for r in ctx.reports:
        counts[r.category or "overig"] += 1
    if not counts:
        return Signal("category_severity", ctx.policy.default_severity, "The cluster has no categories.", {})
    sev = {c: ctx.policy.severity_of(c) for c in counts}
    top = min(sev, key=lambda c: (-sev[c], c))
    value = round(sum(sev[c] * n for c, n in counts.items()) / sum(counts.values()), 2)
    return Signal("category_severity", value,
                  f"Average category severity {value:g} of 5 (most serious: {top}, {_plural(counts[top], 'report')}).",
                  {"most_severe": top, "max_severity": sev[top], "severity": dict(sorted(sev.items())),
                   "reports_per_category": dict(sorted(counts.items()))})


def shared_entities(ctx: ClusterContext) -> Signal:
    """How many distinct entities tie the cluster together: entities mentioned by two or more of its reports.

    A cluster held together by one address that many people report is one place reported often; a cluster
    tied by many persons, addresses, phones, vehicles and businesses is a network.

    >>> m = (("R1", "A"), ("R2", "A"), ("R2", "T"), ("R3", "T"), ("R3", "X"))
    >>> s = shared_entities(ClusterContext("c1", dt.date(2024, 5, 1), (), mentioned=m,
    ...                                    entity_types={"A": "address", "T": "phone", "X": "person"}))
    >>> s.value, s.inputs["per_type"], s.sentence
    (2, {'address': 1, 'phone': 1}, '2 entities link reports of the cluster (1 address, 1 phone).')
    """
    reports_of: dict[str, set[str]] = defaultdict(set)
    for rid, eid in ctx.mentioned:
        reports_of[eid].add(rid)
    shared = sorted(e for e, rs in reports_of.items() if len(rs) >= 2)
    per_type: dict[str, int] = defaultdict(int)
    for e in shared:
        per_type[ctx.entity_types.get(e, "entity")] += 1
    if not shared:
        return Signal("shared_entities", 0, "No entity is mentioned by two reports of the cluster.", {})
    parts = ", ".join(f"{n} {t}" for t, n in sorted(per_type.items()))
    return Signal("shared_entities", len(shared),
                  f"{_plural(len(shared), 'entity', 'entities')} link reports of the cluster ({parts}).",
                  {"per_type": dict(sorted(per_type.items())), "entity_ids": shared[:25]})


def persons_per_address(ctx: ClusterContext) -> Signal:
    """Most distinct persons living at (or reported as residents of) one address: overbewoning, adresfraude.

    >>> res = tuple((f"P{i}", "A1") for i in range(8)) + (("P9", "A2"),)
    >>> s = persons_per_address(ClusterContext("c1", dt.date(2024, 5, 1), (), residence=res, labels={"A1": "Kerkstraat 1"}))
    >>> s.value, s.sentence
    (8, '8 persons registered at or reported living at Kerkstraat 1.')
    """
    addr, persons = _max_group((a, p) for p, a in ctx.residence)
    if addr is None:
        return Signal("persons_per_address", 0, "No person is linked to an address as resident.", {})
    n_addr = len({a for _, a in ctx.residence})
    return Signal("persons_per_address", len(persons),
                  f"{_plural(len(persons), 'person')} registered at or reported living at {ctx.label(addr)}.",
                  {"address_id": addr, "person_ids": persons, "addresses_with_residents": n_addr})


def addresses_per_person(ctx: ClusterContext) -> Signal:
    """Most distinct addresses one person is registered at or reported living at: katvanger, adresfraude.

    >>> res = (("P1", "A1"), ("P1", "A2"), ("P1", "A3"), ("P2", "A1"))
    >>> s = addresses_per_person(ClusterContext("c1", dt.date(2024, 5, 1), (), residence=res))
    >>> s.value, s.inputs["person_id"]
    (3, 'P1')
    """
    person, addrs = _max_group(ctx.residence)
    if person is None:
        return Signal("addresses_per_person", 0, "No person is linked to an address as resident.", {})
    return Signal("addresses_per_person", len(addrs),
                  f"{ctx.label(person)} is linked to {_plural(len(addrs), 'address', 'addresses')} as resident.",
                  {"person_id": person, "address_ids": addrs})


def shared_director_address(ctx: ClusterContext) -> Signal:
    """Most businesses that share one director/owner *and* one registered address (malafide, witwassen).

    >>> ctx = ClusterContext("c1", dt.date(2024, 5, 1), (), directs=(("D", "B1"), ("D", "B2"), ("D", "B3")),
    ...                      located=(("B1", "A"), ("B2", "A"), ("B3", "X")))
    >>> s = shared_director_address(ctx)
    >>> s.value, s.inputs["business_ids"]
    (2, ['B1', 'B2'])
    """
    at: dict[str, set[str]] = defaultdict(set)
    for b, a in ctx.located:
        at[b].add(a)
    key, businesses = _max_group(((d, a), b) for d, b in ctx.directs for a in at.get(b, ()))
    if key is None or len(businesses) < 2:
        return Signal("shared_director_address", len(businesses) if key else 0,
                      "No two businesses share both a director and an address.", {})
    d, a = key
    return Signal("shared_director_address", len(businesses),
                  f"{_plural(len(businesses), 'business', 'businesses')} at {ctx.label(a)} share director/owner "
                  f"{ctx.label(d)}.",
                  {"director_id": d, "address_id": a, "business_ids": businesses})


def shared_vehicle_account(ctx: ClusterContext) -> Signal:
    """Most otherwise unrelated parties using one vehicle or bank account (katvanger, witwassen, transport).

    Parties are *related* when they share an address (residence or business location) or one directs or
    owns the other; related parties count as one. The value is the largest number of unrelated groups
    behind one vehicle or bank account (1 = nothing shared).

    >>> ctx = ClusterContext("c1", dt.date(2024, 5, 1), (), uses=(("P1", "V"), ("P2", "V"), ("P3", "V")),
    ...                      residence=(("P1", "A"), ("P2", "A"), ("P3", "B")), entity_types={"V": "vehicle"})
    >>> s = shared_vehicle_account(ctx)
    >>> s.value, s.inputs["groups"]
    (2, [['P1', 'P2'], ['P3']])
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_place: dict[str, list[str]] = defaultdict(list)
    for p, a in ctx.residence:
        by_place[a].append(p)
    for b, a in ctx.located:
        by_place[a].append(b)
    for members in by_place.values():
        for m in members[1:]:
            union(members[0], m)
    for d, b in ctx.directs:
        union(d, b)

    users: dict[str, set[str]] = defaultdict(set)
    for u, ident in ctx.uses:
        users[ident].add(u)
    best: tuple[int, str, list[list[str]]] | None = None
    for ident in sorted(users):
        groups: dict[str, list[str]] = defaultdict(list)
        for u in sorted(users[ident]):
            groups[find(u)].append(u)
        gl = sorted(groups.values())
        if best is None or len(gl) > best[0]:
            best = (len(gl), ident, gl)
    if best is None:
        return Signal("shared_vehicle_account", 0, "No vehicle or bank account is linked to a person or business.", {})
    n, ident, gl = best
    kind = {"vehicle": "Vehicle", "bank_account": "Bank account"}.get(ctx.entity_types.get(ident, ""), "Identifier")
    if n < 2:
        return Signal("shared_vehicle_account", n, "No vehicle or bank account is shared by unrelated parties.",
                      {"identifier_id": ident, "groups": gl})
    return Signal("shared_vehicle_account", n,
                  f"{kind} {ctx.label(ident)} is used by {n} unrelated parties "
                  f"({_plural(sum(len(g) for g in gl), 'person/business', 'persons/businesses')}).",
                  {"identifier_id": ident, "groups": gl})


#: Every signal, by name, in the order they are reported.
SIGNALS: dict[str, Callable[[ClusterContext], Signal]] = {
    f.__name__: f
    for f in (n_reports, independent_reporters, recency, category_severity, shared_entities, persons_per_address,
              addresses_per_person, shared_director_address, shared_vehicle_account)
}


def all_signals(ctx: ClusterContext) -> list[Signal]:
    """Every signal of :data:`SIGNALS` for one cluster, in registry order."""
    return [fn(ctx) for fn in SIGNALS.values()]
