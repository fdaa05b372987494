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
are not timed. CPU seconds are printed next to the wall time: the client's (this process, all
threads) and, for the local server of ``scripts/neo4j.sh`` (pid in ``.neo4j/neo4j.pid``), the
server's (utime + stime of the JVM from ``/proc``), because the machine is usually shared and wall
times then depend on the other jobs. ``--warmup N`` first pushes (and removes) the graph of N
reports, so that the timed first push runs on a JIT-compiled server rather than a freshly started
one. The target of issue 5: at least 20,000 elements/s for the first push on the development
machine, and a second push at least as fast.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

PID_FILE = Path(".neo4j/neo4j.pid")


def server_cpu() -> float | None:
    """CPU seconds (user + system) of the local Neo4j server so far; None when it is not ours/local."""
    try:
        pid = int(PID_FILE.read_text().strip())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# Server threads grouped by what they do, from the names in /proc/<pid>/task/*/comm (the kernel keeps
# the first 15 characters of a Java thread's name). Everything else is "other".
THREAD_GROUPS = (
    ("bolt", ("neo4j.BoltWorke",)),
    ("jit_c2", ("C2 CompilerThre",)),
    ("jit_c1", ("C1 CompilerThre",)),
    ("gc", ("GC Thread", "G1 ", "VM Thread")),
    ("checkpoint", ("neo4j.CheckPoin",)),
)


def server_threads() -> dict[str, float] | None:
    """CPU seconds of the local server's threads so far, summed per group of THREAD_GROUPS (+ "other").

    A thread that ended between two readings drops out of its group, so a difference of two readings
    can undercount "other" (short-lived threads); the named groups live as long as the server.
    ``bolt_waited_for_cpu`` (from ``/proc/<pid>/task/*/schedstat``) is not CPU time but the seconds the
    Bolt workers were runnable and waited for a CPU: on a shared machine, the part of the wall that the
    other jobs cost the server.
    """
    try:
        pid = int(PID_FILE.read_text().strip())
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (OSError, ValueError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    out = {name: 0.0 for name, _ in THREAD_GROUPS} | {"other": 0.0}
    for task in tasks:
        try:
            comm = (task / "comm").read_text().rstrip("\n")
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = next((name for name, prefixes in THREAD_GROUPS if comm.startswith(prefixes)), "other")
        out[group] += (int(fields[11]) + int(fields[12])) / tick
        if group == "bolt":  # time the Bolt workers were ready to run but waited for a CPU (other jobs)
            try:
                out["bolt_waited_for_cpu"] = (out.get("bolt_waited_for_cpu", 0.0)
                                              + int((task / "schedstat").read_text().split()[1]) / 1e9)
            except (OSError, IndexError, ValueError):
                pass
    return out


def _wait_idle(limit: float = 180.0, interval: float = 2.0) -> float:
    """Wait until the local server uses less than a tenth of a core (at most ``limit`` seconds).

    Emptying a large graph leaves the server busy for a while afterwards (freed ids, index cleanup,
    a checkpoint); a push timed right after it would be charged for that work. Returns the seconds
    waited (0 when the server's CPU cannot be read).
    """
    before, t0 = server_cpu(), time.perf_counter()
    while before is not None and time.perf_counter() - t0 < limit:
        time.sleep(interval)
        now = server_cpu()
        if now is None or now - before < 0.1 * interval:
            break
        before = now
    return time.perf_counter() - t0


def _empty(driver) -> None:
    with driver.session(database=getattr(driver, "_linkage_database", None)) as session:
        session.run("MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS").consume()


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
    ap.add_argument("--warmup", type=int, default=0, metavar="N",
                    help="push the graph of N reports first (not timed) so that the server's JIT is warm")
    ap.add_argument("--writers", type=int, default=None, help="sessions the batches of a kind are pipelined over (default: the writer's; 1 = serial)")
    args = ap.parse_args(argv)

    from linkage.store import EmbeddedStore
    from linkage.store.neo4j import connect, counts, push

    store_path = _store(args.reports, args.seed, args.data, args.rebuild)
    warm_path = _store(args.warmup, args.seed, args.data, False) if args.warmup else None
    driver = connect()
    rows = []
    try:
        if warm_path:
            print(f"warm-up: pushing the graph of {args.warmup} reports (not timed) ...", file=sys.stderr, flush=True)
            _empty(driver)
            with EmbeddedStore(warm_path, must_exist=True) as store:
                push(store, driver, writers=args.writers)
        print("emptying the Neo4j database ...", file=sys.stderr, flush=True)
        _empty(driver)
        print(f"waited {_wait_idle():.0f} s for the server to finish its clean-up", file=sys.stderr, flush=True)
        with EmbeddedStore(store_path, must_exist=True) as store:
            want = expected_counts(store)
            pushes = [("first", False), ("second (idempotent)", False)] + ([("full rewrite", True)] if args.full else [])
            for name, full in pushes:
                load = os.getloadavg()[0]
                cpu0, server0, threads0 = time.process_time(), server_cpu(), server_threads()
                s = push(store, driver, full=full, writers=args.writers)
                client_cpu, server1, threads1 = time.process_time() - cpu0, server_cpu(), server_threads()
                got = counts(driver)
                bad = {k: (got.get(k, 0), v) for k, v in want.items() if got.get(k, 0) != v}
                rows.append({"push": name, "elements": s.elements, "nodes": sum(s.nodes.values()),
                             "relationships": sum(s.relationships.values()), "written": s.written,
                             "removed": s.removed, "seconds": round(s.seconds, 2),
                             "elements_per_second": round(s.elements / s.seconds), "load_before": round(load, 2),
                             "client_cpu_s": round(client_cpu, 1),
                             "server_cpu_s": round(server1 - server0, 1) if server0 is not None and server1 else None,
                             "server_threads_cpu_s": {k: round(threads1[k] - threads0.get(k, 0.0), 1) for k in threads1}
                             if threads0 is not None and threads1 else None,
                             "counts_equal_store": not bad})
                if bad:
                    print(f"counts differ after the {name} push (neo4j, store): {bad}", file=sys.stderr)
    finally:
        driver.close()

    info = {"reports": args.reports, "seed": args.seed, "warmup": args.warmup, "store": str(store_path),
            "cpus": os.cpu_count(),
            "python": platform.python_version(), "rust_packstream": _rust_extension(), "pushes": rows}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{args.reports} reports (seed {args.seed}), {os.cpu_count()} CPUs, driver Rust extension: "
              f"{'yes' if info['rust_packstream'] else 'no (pip install neo4j-rust-ext for faster packing)'}"
              f"{f', warm-up push of {args.warmup} reports' if args.warmup else ', server not warmed up'}")
        print(f"{'push':<22}{'elements':>10}{'nodes':>9}{'rels':>9}{'written':>10}{'removed':>9}{'seconds':>9}"
              f"{'elements/s':>12}{'client CPU s':>14}{'server CPU s':>14}{'load':>6}  counts = store")
        for r in rows:
            server = "-" if r["server_cpu_s"] is None else r["server_cpu_s"]
            print(f"{r['push']:<22}{r['elements']:>10}{r['nodes']:>9}{r['relationships']:>9}{r['written']:>10}"
                  f"{r['removed']:>9}{r['seconds']:>9}{r['elements_per_second']:>12}{r['client_cpu_s']:>14}"
                  f"{server:>14}{r['load_before']:>6}  {'yes' if r['counts_equal_store'] else 'NO'}")
        for r in rows:
            if r["server_threads_cpu_s"]:
                threads = dict(r["server_threads_cpu_s"])
                waited = threads.pop("bolt_waited_for_cpu", None)  # waiting time, not CPU time
                print(f"  server threads, {r['push']}: " + ", ".join(f"{k} {v}" for k, v in threads.items())
                      + " CPU s" + (f"; Bolt workers waited {max(waited, 0.0)} s for a CPU" if waited is not None
                                    else ""))
    return 0 if all(r["counts_equal_store"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
