"""Generate a synthetic data set: reports, mentions and the ground truth behind them.

In:  a number of reports, a seed, an output directory.
Out: ``reports.csv``, ``mentions.csv`` (columns ``model.REPORT_FIELDS`` / ``model.MENTION_FIELDS``),
     ``truth_mentions.csv`` (every mention id, derived ``~<type>`` ids included -> true entity id) and
     ``truth_reports.csv`` (report -> planted network), optionally ``wide.csv``.

Truth convention (the loader must derive the same ids): a row of type T that also carries fields of another
type U (a person row with address fields, a business row with an IBAN ...) stands for two mentions: the row
itself (``mention_id``) and ``model.derived_mention_id(mention_id, U)`` = ``<mention_id>~<U>``, for every U with
at least one non-empty field in the row. Person rows carry business fields only with role ``bestuurder`` or
``eigenaar``.

Steps: plan (network sizes and kinds, a date per report, report ids in date order), then stream: reports are
generated and written in chunks, so memory stays flat at a million reports. Networks and their entities
are built up front; background entities live only as long as their chunk (except a bounded pool of
recurring ones).
"""
from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Callable

import numpy as np

from .. import model
from ..errors import LinkageError
from .background import Background, Reporters, category_label, description
from .mentions import QUALITY, render_spec
from .networks import KINDS, NETWORK_CLASSES, Network
from .pools import build_pools
from .world import REFERENCE_DATE, World

#: Reports cover this many days before ``REFERENCE_DATE``.
SPAN_DAYS = 730
#: Share of received_at written day-first (``14-03-2025``) instead of ISO.
DUTCH_DATE_P = 0.1
#: Share of reports in planted networks (drawn per run in this range).
NETWORK_SHARE = (0.17, 0.23)
MIN_NETWORK, MAX_NETWORK = 4, 30
#: Chance that a network report comes from a reporter who already reported on the same network.
SAME_REPORTER_P = 0.3
#: Chance that a mention row has no role.
NO_ROLE_P = 0.03

REPORTS_FILE, MENTIONS_FILE = "reports.csv", "mentions.csv"
TRUTH_MENTIONS_FILE, TRUTH_REPORTS_FILE, WIDE_FILE = "truth_mentions.csv", "truth_reports.csv", "wide.csv"
TRUTH_MENTION_FIELDS: tuple[str, ...] = ("mention_id", "entity_id", "entity_type")
TRUTH_REPORT_FIELDS: tuple[str, ...] = ("report_id", "network_id", "network_kind")

_ROLE_KEEP = frozenset({"bestuurder", "eigenaar"})


@dataclass(frozen=True)
class GenerateSummary:
    """What ``generate`` wrote."""

    out_dir: Path
    seed: int
    n_reports: int
    n_mentions: int                 # rows of mentions.csv
    n_truth_mentions: int           # rows of truth_mentions.csv (mentions plus derived ~<type> mentions)
    n_network_reports: int
    networks: dict[str, int]        # network kind -> number of networks
    n_hubs: int
    entities: dict[str, int]        # entity type -> true entities created
    files: tuple[str, ...] = field(default=())


def plan_networks(n_reports: int, rng: random.Random) -> list[tuple[str, int]]:
    """Kinds and sizes of the planted networks: ~17-23% of reports, sizes 4-30, every kind once before
    any kind repeats (as far as the budget allows).

    >>> sorted({kind for kind, _ in plan_networks(500, random.Random(1))}) == sorted(KINDS)
    True
    >>> plan_networks(10, random.Random(1))
    []
    """
    budget = round(n_reports * (NETWORK_SHARE[0] + rng.random() * (NETWORK_SHARE[1] - NETWORK_SHARE[0])))
    first = list(KINDS)
    rng.shuffle(first)
    weights = (0.3, 0.3, 0.2, 0.2)
    plan: list[tuple[str, int]] = []
    while budget >= MIN_NETWORK:
        i = len(plan)
        size = min(MAX_NETWORK, MIN_NETWORK + int(rng.expovariate(1 / 7)))
        if i < len(first):
            reserve = MIN_NETWORK * (len(first) - 1 - i)
            size = min(size, budget - reserve) if budget - reserve >= MIN_NETWORK else min(size, budget)
            kind = first[i]
        else:
            u, acc, kind = rng.random(), 0.0, KINDS[-1]
            for k, w in zip(KINDS, weights):
                acc += w
                if u < acc:
                    kind = k
                    break
        size = min(size, budget)
        if 0 < budget - size < MIN_NETWORK and budget <= MAX_NETWORK:
            size = budget  # absorb a remainder too small for another network
        plan.append((kind, size))
        budget -= size
    return plan


def _dates(n_background: int, network_sizes: list[int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Day offsets (0 = first day) per report, the owning network (-1 = background), and the output order."""
    gen = np.random.Generator(np.random.PCG64(seed))
    start_ord = REFERENCE_DATE.toordinal() - SPAN_DAYS
    bg = gen.integers(0, SPAN_DAYS, size=n_background)
    # fewer reports on weekends: redraw 60% of weekend days once
    weekday = np.array([date.fromordinal(start_ord + d).weekday() for d in range(SPAN_DAYS)])
    weekend = weekday[bg] >= 5
    redraw = weekend & (gen.random(n_background) < 0.6)
    bg[redraw] = gen.integers(0, SPAN_DAYS, size=int(redraw.sum()))
    days = [bg]
    owner = [np.full(n_background, -1, dtype=np.int64)]
    for k, size in enumerate(network_sizes):
        length = 30 + int(gen.integers(0, 330))
        begin = int(gen.integers(0, SPAN_DAYS - length))
        days.append(begin + gen.integers(0, length, size=size))
        owner.append(np.full(size, k, dtype=np.int64))
    all_days = np.concatenate(days) if days else np.zeros(0, dtype=np.int64)
    all_owner = np.concatenate(owner)
    tiebreak = gen.random(len(all_days))
    order = np.lexsort((tiebreak, all_days))
    return all_days, all_owner, order


def _net_seed(seed: int, k: int) -> int:
    return int(model.stable_hash("network", seed, k), 16)


def generate(n_reports: int, seed: int, out_dir: Path, progress: Callable[[int], None] | None = None,
             wide: bool = False, chunk_size: int = 5000) -> GenerateSummary:
    """Generate ``n_reports`` synthetic meldingen with ground truth into ``out_dir``.

    Same ``seed`` and ``n_reports`` give byte-identical files on any machine (for one faker version).

    Parameters:
        n_reports: number of reports (0 writes the headers only).
        seed: the seed of every random choice.
        out_dir: directory to write into (created if missing; existing files are overwritten).
        progress: optional ``callable(advance)``, called with the number of reports written per chunk.
        wide: also write ``wide.csv``, the single-file export example (first 100 reports).
        chunk_size: reports generated and written per chunk.

    Returns:
        a ``GenerateSummary`` with counts and the file names written.

    Raises:
        LinkageError: when ``n_reports`` is negative.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     s = generate(30, 1, Path(tmp))
    >>> s.n_reports, s.n_mentions >= 30
    (30, True)
    """
    if n_reports < 0:
        raise LinkageError(f"The number of reports must be 0 or more, not {n_reports}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pools = build_pools(seed)
    world = World(seed, pools)
    plan_rng = random.Random(f"plan:{seed}")
    plan = plan_networks(n_reports, plan_rng)
    n_network_reports = sum(size for _, size in plan)
    world.build_hubs(2 + n_reports // 20000, random.Random(f"hubs:{seed}"))
    networks: list[Network] = []
    for k, (kind, size) in enumerate(plan):
        networks.append(NETWORK_CLASSES[kind](world, f"NET-{k + 1:04d}", size, random.Random(_net_seed(seed, k))))
    bg_rng = random.Random(f"background:{seed}")
    background = Background(world, bg_rng)
    reporters = Reporters(n_reports, random.Random(f"reporters:{seed}"))
    net_reporters: list[list[str]] = [[] for _ in networks]

    days, owner, order = _dates(n_reports - n_network_reports, [size for _, size in plan], seed)
    start = REFERENCE_DATE - timedelta(days=SPAN_DAYS)
    day_iso = [(start + timedelta(days=d)).isoformat() for d in range(SPAN_DAYS)]
    day_nl = [(start + timedelta(days=d)).strftime("%d-%m-%Y") for d in range(SPAN_DAYS)]
    day_year = [(start + timedelta(days=d)).year for d in range(SPAN_DAYS)]
    seq_per_year: dict[int, int] = {}
    fmt_rng = random.Random(f"format:{seed}")

    n_mentions = n_truth = 0
    value_fields = model.VALUE_FIELDS
    files = (REPORTS_FILE, MENTIONS_FILE, TRUTH_MENTIONS_FILE, TRUTH_REPORTS_FILE)
    handles = [open(out_dir / name, "w", encoding="utf-8", newline="") for name in files]
    try:
        w_rep, w_men, w_tm, w_tr = (csv.writer(h, lineterminator="\n") for h in handles)
        w_rep.writerow(model.REPORT_FIELDS)
        w_men.writerow(model.MENTION_FIELDS)
        w_tm.writerow(TRUTH_MENTION_FIELDS)
        w_tr.writerow(TRUTH_REPORT_FIELDS)
        for chunk_start in range(0, n_reports, chunk_size):
            rep_rows, men_rows, tm_rows, tr_rows = [], [], [], []
            chunk = order[chunk_start: chunk_start + chunk_size]
            for day, k in zip(days[chunk].tolist(), owner[chunk].tolist()):
                year = day_year[day]
                seq_per_year[year] = seq_per_year.get(year, 0) + 1
                rid = f"MLD-{year}-{seq_per_year[year]:06d}"
                received = day_nl[day] if fmt_rng.random() < DUTCH_DATE_P else day_iso[day]
                if k >= 0:
                    net = networks[k]
                    rng = net.rng
                    category, specs = net.next_report()
                    previous = [x for x in net_reporters[k] if x]
                    if previous and rng.random() < SAME_REPORTER_P:
                        reporter_id = previous[int(rng.random() * len(previous))]
                        reporter_type = reporters.type_of(reporter_id)
                    else:
                        reporter_id, reporter_type = reporters.draw(rng)
                    net_reporters[k].append(reporter_id)
                    tr_rows.append((rid, net.net_id, net.kind))
                else:
                    rng = bg_rng
                    category = background.category()
                    specs = background.specs(category)
                    reporter_id, reporter_type = reporters.draw(rng)
                    tr_rows.append((rid, "", ""))
                label = category_label(category, rng) if category in model.CATEGORIES else category
                rep_rows.append((rid, received, label, description(category, rng), reporter_id, reporter_type))
                quality = QUALITY[reporter_type]
                for j, spec in enumerate(specs, 1):
                    mid = f"{rid}-M{j}"
                    fields, truth = render_spec(spec, rng, quality)
                    role = spec.role
                    if role not in _ROLE_KEEP and rng.random() < NO_ROLE_P:
                        role = ""
                    men_rows.append([rid, mid, spec.etype, role] + [fields.get(f, "") for f in value_fields])
                    for suffix, eid, etype in truth:
                        tm_rows.append((mid + suffix, eid, etype))
            w_rep.writerows(rep_rows)
            w_men.writerows(men_rows)
            w_tm.writerows(tm_rows)
            w_tr.writerows(tr_rows)
            n_mentions += len(men_rows)
            n_truth += len(tm_rows)
            if progress is not None:
                progress(len(chunk))
    finally:
        for h in handles:
            h.close()
    written = list(files)
    if wide:
        from .wide import write_wide_example

        write_wide_example(out_dir, out_dir / WIDE_FILE)
        written.append(WIDE_FILE)
    kinds: dict[str, int] = {kind: 0 for kind in KINDS}
    for kind, _ in plan:
        kinds[kind] += 1
    return GenerateSummary(
        out_dir=out_dir,
        seed=seed,
        n_reports=n_reports,
        n_mentions=n_mentions,
        n_truth_mentions=n_truth,
        n_network_reports=n_network_reports,
        networks=kinds,
        n_hubs=len(world.hubs),
        entities=dict(world.counts),
        files=tuple(written),
    )


__all__ = ["GenerateSummary", "generate", "plan_networks"]
