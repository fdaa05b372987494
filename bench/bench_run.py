"""Benchmark of the main job (``linkage run``) on generated data: wall time per stage and peak memory.

Usage:  make bench ARGS="--sizes 10000,100000,1000000"
        python -m bench.bench_run --sizes 10000,100000 --seed 1 [--json]

Each size runs in a fresh subprocess, so its peak memory (max RSS) is its own. Generated data is cached
under ``--data`` (default ``out/bench-data``) by size and seed; generation time is not counted.
Prints a table (reports, mentions, seconds per stage, total, peak GB) and, with ``--json``, the raw figures.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _one(size: int, seed: int, data: Path, neo4j: bool) -> dict:
    from linkage.generate import generate
    from linkage.pipeline import run

    folder = data / f"reports-{size}-seed-{seed}"
    if not (folder / "mentions.csv").exists():
        generate(size, seed, folder)
    store = folder / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    summary = run([folder / "reports.csv", folder / "mentions.csv"], store, neo4j=neo4j)
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # KiB -> GiB
    return {"reports": size, "mentions": summary.counts.get("mentions"), "entities": summary.counts.get("er_entities"),
            "clusters": summary.counts.get("clusters"), "seconds": {k: round(v, 2) for k, v in summary.seconds.items()},
            "total_seconds": round(total, 2), "peak_gb": round(peak, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path("out/bench-data"))
    ap.add_argument("--neo4j", action="store_true", help="also push to Neo4j (stage 'neo4j')")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.seed, args.data, args.neo4j)))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        cmd = [sys.executable, "-m", "bench.bench_run", "--one", str(size), "--seed", str(args.seed),
               "--data", str(args.data)] + (["--neo4j"] if args.neo4j else [])
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"size {size}: failed\n{res.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        if not args.json:
            _print_row(rows[-1], header=len(rows) == 1)
    if args.json:
        print(json.dumps(rows, indent=2))


def _print_row(r: dict, header: bool) -> None:
    stages = list(r["seconds"])
    if header:
        print(" | ".join(["reports", "mentions", "entities", "clusters"] + [f"{s} s" for s in stages] + ["total s", "peak GB"]))
    print(" | ".join(str(x) for x in [r["reports"], r["mentions"], r["entities"], r["clusters"]]
                     + [r["seconds"][s] for s in stages] + [r["total_seconds"], r["peak_gb"]]), flush=True)


if __name__ == "__main__":
    main()
