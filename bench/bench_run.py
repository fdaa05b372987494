"""Benchmark of the main job (``linkage run``) on generated data: time per stage, CPU and peak memory.

Usage:  make bench ARGS="--sizes 10000,100000,1000000"
        python -m bench.bench_run --sizes 10000,100000 --seed 1 [--json]
        python -m bench.bench_run --sizes 100000 --seed 1 --incremental 1000
        python -m bench.bench_run --sizes 10000 --seed 1 --digest   (also a digest of every table; not with
                                                                      --incremental)

Each size runs in a fresh subprocess, so its peak memory (max RSS) is its own. Generated data is cached
under ``--data`` (default ``out/bench-data``) by size and seed; generation time is not counted. The stores
go to ``--stores`` (default ``out/bench-stores``), never into the data cache, which may be shared.
Prints a table (reports, mentions, wall (CPU) seconds per stage, total, CPU seconds, peak GB) and, with
``--json``, the raw figures.

``--incremental K`` measures issue 6 ("adding 1,000 reports to a store of 100,000"): the generator makes
``N + K`` reports of one world (report ids in date order) and the newest ``K`` reports, with their
mentions, are split off into a second pair of files. Then, in one subprocess per size:

1. ``run`` on the first ``N`` reports into a new store (the first run);
2. a copy of that store is made;
3. ``run`` with the ``K`` new files on the store (incremental, the default);
4. ``run --full`` with the same ``K`` files on the copy (refit and score everything again).

It prints one row per run, the ratio incremental / full, and checks whether both runs ended with the
same clusters (they need not: a full run refits the entity-resolution model).
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("load", "resolve", "clusters", "score", "store", "status")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the resolve stage forks workers)."""
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _peak_gb() -> float:
    """Peak resident memory of this process or of its largest child (KiB -> GiB)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024 / 1024


def _data(size: int, seed: int, data: Path) -> Path:
    from linkage.generate import generate

    folder = data / f"reports-{size}-seed-{seed}"
    if not (folder / "mentions.csv").exists():
        generate(size, seed, folder)
    return folder


def _fresh(store: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)


def store_digest(store: Path) -> dict[str, list]:
    """``{table: [rows, sha256 of its sorted rows]}`` for every user table of a store, rowids included (where a
    table has them), and for every view (its rows: ``SELECT *``), and ``quarantine.csv`` for the quarantine file
    next to it: two loads or runs of the same files wrote the same store when their digests are equal. For
    "same output" proofs of a change. Tables that record when a run happened (``runs``; ``at`` and ``run_id``
    in ``cluster_history`` and ``status_history``) differ between any two runs; rows name their file, so compare
    stores loaded from the same paths.

    Across store layouts (schema 1 kept ``clusters`` as a table, schema 2 as a view over ``cluster_rows`` and
    ``cluster_ranks``) a table and a view of one name compare by their rows: a table's entry is then that of
    its rows without rowids, under ``NAME (rows)`` (:func:`view_rows_digest`), next to its usual entry.
    """
    import sqlite3

    out: dict[str, list] = {}
    conn = sqlite3.connect(Path(store).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        objects = conn.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
                               "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        for t, kind in objects:
            if kind == "view":
                out[t] = _rows_digest(conn.execute(f"SELECT * FROM {t}").fetchall())
                continue
            try:
                rows = conn.execute(f"SELECT rowid, * FROM {t}").fetchall()
            except sqlite3.OperationalError:  # a WITHOUT ROWID table
                rows = conn.execute(f"SELECT * FROM {t}").fetchall()
            out[t] = _rows_digest(rows)
            if t in _VIEWS_OF_LAYOUTS:
                out[f"{t} (rows)"] = _rows_digest(conn.execute(f"SELECT * FROM {t}").fetchall())
    finally:
        conn.close()
    out.update(_quarantine_digest(store))
    return out


#: Tables of an older store layout that a newer one reads through a view of the same name.
_VIEWS_OF_LAYOUTS = ("clusters",)


def view_rows_digest(digest: dict[str, list]) -> dict[str, list]:
    """A :func:`store_digest` with each table of :data:`_VIEWS_OF_LAYOUTS` given by its rows (``NAME (rows)``)
    instead of its rows with rowids: the digest of a store of either layout says the same of those names."""
    out = {k: v for k, v in digest.items() if not k.endswith(" (rows)")}
    for t in _VIEWS_OF_LAYOUTS:
        if f"{t} (rows)" in digest:
            out[t] = digest[f"{t} (rows)"]
    return out


def _rows_digest(rows: list) -> list:
    import hashlib

    rows.sort(key=repr)
    return [len(rows), hashlib.sha256(repr(rows).encode("utf-8")).hexdigest()[:16]]


def _quarantine_digest(store: Path) -> dict[str, list]:
    import hashlib

    from loaders import quarantine_path

    q = quarantine_path(Path(store))
    return {"quarantine.csv": [None, hashlib.sha256(q.read_bytes()).hexdigest()[:16] if q.exists() else None]}


def _timed_run(files: list[Path], store: Path, **kwargs) -> dict:
    from linkage.pipeline import run

    t0, c0 = time.perf_counter(), _cpu()
    summary = run(files, store, **kwargs)
    total, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"reports": summary.counts.get("reports"), "mentions": summary.counts.get("mentions"),
            "entities": summary.counts.get("er_entities"), "clusters": summary.counts.get("clusters"),
            "seconds": {k: round(v, 2) for k, v in summary.seconds.items()},
            "cpu_stage_seconds": {k: round(v, 2) for k, v in getattr(summary, "cpu_seconds", {}).items()},
            "total_seconds": round(total, 2), "cpu_seconds": round(cpu, 2)}


def _one(size: int, seed: int, data: Path, neo4j: bool, stores: Path, digest: bool = False) -> dict:
    folder = _data(size, seed, data)
    stores.mkdir(parents=True, exist_ok=True)
    store = stores / f"reports-{size}-seed-{seed}.db"
    _fresh(store)
    out = _timed_run([folder / "reports.csv", folder / "mentions.csv"], store, neo4j=neo4j)
    out["reports"] = size
    out["peak_gb"] = round(_peak_gb(), 2)
    if digest:
        out["digest"] = store_digest(store)
    return out


# --- incremental (issue 6) -------------------------------------------------------------------------
def split_newest(folder: Path, k: int, out: Path) -> tuple[Path, Path]:
    """Split a generated data set into ``out/first`` (all but the newest ``k`` reports) and ``out/added``.

    Reports are written in date order with ids in date order, so the last ``k`` rows are the newest.
    Mentions follow their report. Returns the two folders (each with reports.csv and mentions.csv).
    """
    first, added = out / "first", out / "added"
    if (added / "mentions.csv").exists() and (first / "mentions.csv").exists():
        return first, added
    for d in (first, added):
        d.mkdir(parents=True, exist_ok=True)
    with open(folder / "reports.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if not 0 < k < len(body):
        raise SystemExit(f"--incremental {k}: the data set has {len(body)} reports")
    rid = header.index("report_id")
    new_ids = {r[rid] for r in body[-k:]}
    for d, part in ((first, body[:-k]), (added, body[-k:])):
        with open(d / "reports.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(header)
            w.writerows(part)
    with open(folder / "mentions.csv", encoding="utf-8", newline="") as fh, \
            open(first / "mentions.csv", "w", encoding="utf-8", newline="") as f1, \
            open(added / "mentions.csv", "w", encoding="utf-8", newline="") as f2:
        reader = csv.reader(fh)
        mheader = next(reader)
        mrid = mheader.index("report_id")
        w1, w2 = csv.writer(f1, lineterminator="\n"), csv.writer(f2, lineterminator="\n")
        w1.writerow(mheader)
        w2.writerow(mheader)
        for row in reader:
            (w2 if row[mrid] in new_ids else w1).writerow(row)
    return first, added


def _one_incremental(size: int, k: int, seed: int, data: Path, stores: Path) -> dict:
    from linkage.store import EmbeddedStore

    folder = _data(size + k, seed, data)
    first, added = split_newest(folder, k, data / f"split-{size}+{k}-seed-{seed}")
    stores.mkdir(parents=True, exist_ok=True)
    store = stores / f"split-{size}+{k}-seed-{seed}-incremental.db"
    copy = stores / f"split-{size}+{k}-seed-{seed}-full.db"
    _fresh(store)
    _fresh(copy)
    out = {"reports": size, "added": k}
    out["first"] = _timed_run([first / "reports.csv", first / "mentions.csv"], store)
    shutil.copyfile(store, copy)  # closed store: the WAL was checkpointed into the file
    files = [added / "reports.csv", added / "mentions.csv"]
    out["incremental"] = _timed_run(files, store)
    out["full"] = _timed_run(files, copy, full=True)
    out["ratio"] = round(out["incremental"]["total_seconds"] / max(out["full"]["total_seconds"], 1e-9), 3)
    out["ratio_to_first"] = round(out["incremental"]["total_seconds"] / max(out["first"]["total_seconds"], 1e-9), 3)
    out["cpu_ratio"] = round(out["incremental"]["cpu_seconds"] / max(out["full"]["cpu_seconds"], 1e-9), 3)
    with EmbeddedStore(store) as a, EmbeddedStore(copy) as b:
        out["same_clusters"] = bool(a.report_clusters().equals(b.report_clusters()))
    out["peak_gb"] = round(_peak_gb(), 2)
    return out


# --- driver ----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path("out/bench-data"))
    ap.add_argument("--stores", type=Path, default=Path("out/bench-stores"),
                    help="where the benchmark's stores are written (kept apart from the data cache, which may be "
                         "shared and is only read)")
    ap.add_argument("--neo4j", action="store_true", help="also push to Neo4j (stage 'neo4j')")
    ap.add_argument("--incremental", type=int, metavar="K",
                    help="measure adding K new reports to a store of each size (incremental vs --full)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--digest", action="store_true",
                    help="after each run, print a digest of every table of its store (see store_digest)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        if args.incremental:
            print(json.dumps(_one_incremental(args.one, args.incremental, args.seed, args.data, args.stores)))
        else:
            print(json.dumps(_one(args.one, args.seed, args.data, args.neo4j, args.stores, args.digest)))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        cmd = [sys.executable, "-m", "bench.bench_run", "--one", str(size), "--seed", str(args.seed),
               "--data", str(args.data), "--stores", str(args.stores)] + (["--neo4j"] if args.neo4j else []) \
            + (["--incremental", str(args.incremental)] if args.incremental else []) \
            + (["--digest"] if args.digest else [])
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"size {size}: failed\n{res.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        if not args.json:
            if args.incremental:
                _print_incremental(rows[-1], header=len(rows) == 1)
            else:
                _print_row(rows[-1], header=len(rows) == 1)
            if rows[-1].get("digest"):
                print("digest " + json.dumps(rows[-1]["digest"], sort_keys=True))
    if args.json:
        print(json.dumps(rows, indent=2))


def _stage_cells(r: dict) -> list:
    """Per stage ``wall (CPU)`` seconds: on a shared machine the CPU figure is the steadier one."""
    cpu = r.get("cpu_stage_seconds") or {}
    return [f"{r['seconds'][s]} ({cpu[s]})" if s in cpu else r["seconds"].get(s, "") for s in STAGES]


def _table_header(first: list[str]) -> None:
    cols = first + [f"{s} s" for s in STAGES] + ["total s", "CPU s", "peak GB"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" if i < 1 else "---:" for i in range(len(cols))) + "|")


def _print_row(r: dict, header: bool) -> None:
    if header:
        _table_header(["reports", "mentions", "entities", "clusters"])
    cells = [f"{r['reports']:,}", f"{r['mentions']:,}", f"{r['entities']:,}", f"{r['clusters']:,}"] \
        + _stage_cells(r) + [r["total_seconds"], r["cpu_seconds"], r["peak_gb"]]
    print("| " + " | ".join(str(x) for x in cells) + " |", flush=True)


def _print_incremental(r: dict, header: bool) -> None:
    if header:
        _table_header(["store", "run"])
    n, k = r["reports"], r["added"]
    for label, key in ((f"first run, {n:,} reports", "first"), (f"+{k:,} reports, incremental", "incremental"),
                       (f"+{k:,} reports, `--full`", "full")):
        x = r[key]
        cells = [f"{x['reports']:,} reports", label] + _stage_cells(x) + [x["total_seconds"], x["cpu_seconds"], ""]
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
    print(f"\nStage cells: wall seconds (CPU seconds). incremental / full: {r['ratio']:.1%} of wall time, "
          f"{r.get('cpu_ratio', float('nan')):.1%} of CPU time; incremental / first run: {r['ratio_to_first']:.1%}; "
          f"same clusters after both: {r['same_clusters']}; peak {r['peak_gb']} GB", flush=True)


if __name__ == "__main__":
    main()
