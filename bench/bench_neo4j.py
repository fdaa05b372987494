"""Benchmark of the Neo4j writer: the graph of N generated reports pushed into the local server, twice.

Usage:  make bench-neo4j ARGS="--reports 100000 --seed 1"
        python -m bench.bench_neo4j --reports 100000 --seed 1 [--full] [--json]

Steps: generate N reports (cached in ``--data``, default ``out/bench-data/reports-N-seed-S``), run the
pipeline into an embedded store next to them (reused when it already holds clusters; ``--rebuild``
forces a new one), then EMPTY the Neo4j database (the local development server of
``scripts/neo4j.sh``; ``LINKAGE_NEO4J_*`` as for ``linkage push``), push once (a first load) and push
again (idempotent: nothing changed). With ``--full`` a third push rewrites every element through
MERGE regardless of the stored hashes. For every push it prints the graph elements (nodes +
relationships in sync with the store), how many were written, seconds and elements per second,
and checks that the counts in Neo4j equal the store's after each push. Generation and the pipeline
are not timed. The target of issue 5: at least 20,000 elements/s for the first push on the
development machine, and a second push at least as fast.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path


def _store(reports: int, seed: int, data: Path, rebuild: bool) -> Path:
    from linkage.generate import generate
    from linkage.pipeline import run
    from linkage.store import EmbeddedStore

    folder = data / f"reports-{reports}-seed-{seed}"
    if not (folder / "mentions.csv").exists():
        print(f"generating {reports} reports into {folder} ...", file=sys.stderr, flush=True)
        generate(reports, seed, folder)
    store = folder / "neo4j.db"
    if store.exists() and not rebuild:
        with EmbeddedStore(store) as s:
            if s.count("clusters") and s.count("reports") == reports:
                return store
    for suffix in ("", "-wal", "-shm"):
        Path(str(store) + suffix).unlink(missing_ok=True)
    print(f"running the pipeline into {store} ...", file=sys.stderr, flush=True)
    run([folder / "reports.csv", folder / "mentions.csv"], store)
    return store


def _rust_extension() -> bool:
    try:
        from neo4j._codec.packstream import v1

        return getattr(v1, "_rust_pack", None) is not None
    except ImportError:  # pragma: no cover - driver internals moved
        return False


def expected_counts(store) -> dict[str, int]:
    """What the graph must hold for ``store``: the same numbers, counted from the store itself."""
    from linkage.store.neo4j import ENTITY_LABELS

    c = store.conn
    out = {"Report": store.count("reports"), "Entity": store.count("entities"), "Cluster": store.count("clusters"),
           "IN_CLUSTER": store.count("report_clusters")}
    for etype, label in ENTITY_LABELS.items():
        out[label] = store.count("entities", "WHERE entity_type = ?", (etype,))
    out["MENTIONS"] = int(c.execute("SELECT COUNT(*) FROM mentions JOIN mention_entities USING (mention_id)").fetchone()[0])
    for rel, n in c.execute(
            "SELECT rel_type, COUNT(*) FROM (SELECT DISTINCT ea.entity_id, eb.entity_id, l.rel_type FROM mention_links l "
            "JOIN mention_entities ea ON ea.mention_id = l.src_mention_id "
            "JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id) GROUP BY rel_type"):
        out[rel] = int(n)
    routed: set[tuple[str, str]] = set()
    for cid, agencies, routing in c.execute("SELECT cluster_id, agencies, routing FROM clusters"):
        for a in json.loads(agencies) if agencies else []:
            routed.add((cid, str(a)))
        for d in json.loads(routing) if routing else []:
            if isinstance(d, dict) and d.get("agency"):
                routed.add((cid, str(d["agency"])))
    out["ROUTED_TO"] = len(routed)
    out["Agency"] = len({a for _, a in routed})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path("out/bench-data"))
    ap.add_argument("--rebuild", action="store_true", help="run the pipeline again even if the store exists")
    ap.add_argument("--full", action="store_true", help="a third push that rewrites everything through MERGE")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    from linkage.store import EmbeddedStore
    from linkage.store.neo4j import connect, counts, push

    store_path = _store(args.reports, args.seed, args.data, args.rebuild)
    driver = connect()
    rows = []
    try:
        with driver.session(database=getattr(driver, "_linkage_database", None)) as session:
            print("emptying the Neo4j database ...", file=sys.stderr, flush=True)
            session.run("MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS").consume()
        with EmbeddedStore(store_path, must_exist=True) as store:
            want = expected_counts(store)
            pushes = [("first", False), ("second (idempotent)", False)] + ([("full rewrite", True)] if args.full else [])
            for name, full in pushes:
                load = os.getloadavg()[0]
                s = push(store, driver, full=full)
                got = counts(driver)
                bad = {k: (got.get(k, 0), v) for k, v in want.items() if got.get(k, 0) != v}
                rows.append({"push": name, "elements": s.elements, "nodes": sum(s.nodes.values()),
                             "relationships": sum(s.relationships.values()), "written": s.written,
                             "removed": s.removed, "seconds": round(s.seconds, 2),
                             "elements_per_second": round(s.elements / s.seconds), "load_before": round(load, 2),
                             "counts_equal_store": not bad})
                if bad:
                    print(f"counts differ after the {name} push (neo4j, store): {bad}", file=sys.stderr)
    finally:
        driver.close()

    info = {"reports": args.reports, "seed": args.seed, "store": str(store_path), "cpus": os.cpu_count(),
            "python": platform.python_version(), "rust_packstream": _rust_extension(), "pushes": rows}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{args.reports} reports (seed {args.seed}), {os.cpu_count()} CPUs, driver Rust extension: "
              f"{'yes' if info['rust_packstream'] else 'no (pip install neo4j-rust-ext for faster packing)'}")
        print(f"{'push':<22}{'elements':>10}{'nodes':>9}{'rels':>9}{'written':>10}{'removed':>9}{'seconds':>9}"
              f"{'elements/s':>12}{'load':>6}  counts = store")
        for r in rows:
            print(f"{r['push']:<22}{r['elements']:>10}{r['nodes']:>9}{r['relationships']:>9}{r['written']:>10}"
                  f"{r['removed']:>9}{r['seconds']:>9}{r['elements_per_second']:>12}{r['load_before']:>6}  "
                  f"{'yes' if r['counts_equal_store'] else 'NO'}")
    return 0 if all(r["counts_equal_store"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
