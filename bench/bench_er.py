"""Entity-resolution benchmark: linkage (and Splink, if installed) on generated Dutch person mentions.

Usage::

    python -m bench.bench_er --sizes 10000,100000,1000000 --seed 7 [--profile benchmark|reference|reports]
        [--no-splink] [--splink-sweep] [--json out.json] [--splink-timeout 600]

For each size the project's generator (``linkage.generate.generate_person_mentions``) makes the mentions
and their truth once (cached under ``$LINKAGE_BENCH_DIR`` or /tmp/linkage_bench); each tool then runs in a
fresh subprocess so that peak memory (max RSS) is per size and per tool. Printed per row: pairwise
precision, recall and F1 against the truth, blocking recall (share of true pairs among the compared
pairs), pairs compared, wall time of the resolution (reading the cached input excluded) and peak memory.
No threshold is tuned on the truth: both tools run with their defaults (linkage: settings file; Splink:
match probability 0.9).

Splink is a benchmark-only extra: ``pip install splink``. When it is missing or fails, its row says why.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CACHE = Path(os.environ.get("LINKAGE_BENCH_DIR", "/tmp/linkage_bench"))


# -- data -----------------------------------------------------------------------------------------------

def supported_profiles() -> tuple[str, ...]:
    """The generator's completeness profiles (empty when it has none: older generator)."""
    import inspect

    from linkage.generate.people import generate_person_mentions

    if "profile" not in inspect.signature(generate_person_mentions).parameters:
        return ()
    from linkage.generate import people

    return tuple(getattr(people, "PROFILES", ("reports", "benchmark")))


def default_profile() -> str:
    """``benchmark`` when the generator has it (calibrated to the reference data), else its only data."""
    profiles = supported_profiles()
    return "benchmark" if "benchmark" in profiles else (profiles[0] if profiles else "default")


def data_paths(size: int, seed: int, profile: str = "default") -> tuple[Path, Path]:
    tag = "" if profile in ("default", "reports") else f"_{profile}"
    return CACHE / f"persons_{size}_{seed}{tag}.parquet", CACHE / f"truth_{size}_{seed}{tag}.parquet"


def ensure_data(size: int, seed: int, profile: str = "default") -> None:
    """Generate and cache the mentions and truth for one size and profile (no-op when cached)."""
    mpath, tpath = data_paths(size, seed, profile)
    if mpath.exists() and tpath.exists():
        return
    from linkage.generate.people import generate_person_mentions

    CACHE.mkdir(parents=True, exist_ok=True)
    if profile in supported_profiles():
        mentions, truth = generate_person_mentions(size, seed, profile=profile)
    else:
        mentions, truth = generate_person_mentions(size, seed)
    mentions = mentions.copy()
    mentions["entity_type"] = "person"
    mentions["report_id"] = "R" + mentions["mention_id"].str[2:]
    mentions.to_parquet(mpath, index=False)
    truth.to_parquet(tpath, index=False)


def add_normalised(mentions: pd.DataFrame) -> pd.DataFrame:
    """What the loader adds: ``birth_date_norm`` and ``bsn_norm`` (computed once per distinct value)."""
    from linkage.normalise.dates import parse_date
    from linkage.normalise.identifiers import normalise_bsn

    out = mentions.copy()
    for col, func in (("birth_date", lambda v: (d.isoformat() if (d := parse_date(v)) else None)),
                      ("bsn", normalise_bsn)):
        codes, uniques = pd.factorize(out[col].fillna(""))
        mapped = np.array([func(u) if u else None for u in uniques], dtype=object)
        out[f"{col}_norm"] = mapped[codes] if len(uniques) else None
    return out


# -- evaluation -----------------------------------------------------------------------------------------

def _pairs(counts: pd.Series) -> int:
    c = counts.to_numpy(dtype=np.int64)
    return int((c * (c - 1) // 2).sum())


def pairwise_scores(pred: pd.Series, truth: pd.Series) -> dict[str, float]:
    """Pairwise precision, recall and F1 of a clustering (``pred``) against ``truth`` (same index).

    >>> pairwise_scores(pd.Series([1, 1, 2, 2]), pd.Series(["a", "a", "a", "b"]))
    {'precision': 0.5, 'recall': 0.3333333333333333, 'f1': 0.4}
    """
    df = pd.DataFrame({"p": pred.to_numpy(), "t": truth.to_numpy()})
    tp = _pairs(df.groupby(["p", "t"]).size())
    predicted = _pairs(df.groupby("p").size())
    actual = _pairs(df.groupby("t").size())
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def blocking_recall(left_ids, right_ids, truth: pd.DataFrame) -> float:
    """Share of true pairs found among the candidate pairs (candidates unique)."""
    t = truth.set_index("mention_id")["entity_id"]
    same = int((t.reindex(pd.Index(left_ids)).to_numpy() == t.reindex(pd.Index(right_ids)).to_numpy()).sum())
    actual = _pairs(truth.groupby("entity_id").size())
    return same / actual if actual else 1.0


def blocking_recall_index(left: np.ndarray, right: np.ndarray, mention_ids: np.ndarray, truth: pd.DataFrame) -> float:
    """:func:`blocking_recall` for candidates given as record indices into ``mention_ids`` (no id strings per pair).

    >>> t = pd.DataFrame({"mention_id": ["a", "b", "c"], "entity_id": [1, 1, 1]})
    >>> blocking_recall_index(np.array([0]), np.array([1]), np.array(["a", "b", "c"], dtype=object), t)
    0.3333333333333333
    """
    t = truth.set_index("mention_id")["entity_id"]
    codes, _ = pd.factorize(t.reindex(pd.Index(mention_ids)))
    same = int(((codes[left] == codes[right]) & (codes[left] >= 0)).sum())
    actual = _pairs(truth.groupby("entity_id").size())
    return same / actual if actual else 1.0


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


# -- tools ----------------------------------------------------------------------------------------------

def run_linkage(size: int, seed: int, profile: str = "default") -> dict:
    from linkage.resolve import resolve_mentions

    mpath, tpath = data_paths(size, seed, profile)
    mentions = add_normalised(pd.read_parquet(mpath))
    stages: list[tuple[str, float]] = []
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = resolve_mentions(mentions, progress=lambda s: stages.append((s, time.perf_counter() - t0)),
                           keep_candidates=True)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = peak_gb()  # of the resolution itself, before the evaluation below
    truth = pd.read_parquet(tpath)
    a = res.assignments.set_index("mention_id")["entity_id"]
    scores = pairwise_scores(a.reindex(truth["mention_id"]), truth["entity_id"])
    diag = res.diagnostics["person"]
    left, right = diag["candidate_index"]
    return {
        "tool": "linkage", **scores, "blocking_recall": blocking_recall_index(left, right, diag["mention_ids"], truth),
        "pairs": int(len(left)), "wall_s": wall, "cpu_s": cpu, "peak_gb": peak,
        "largest_blocks": _largest_blocks(res.blocking_report.get("person", {})),
        "stages": [(s, round(t, 2)) for s, t in stages],
        "prior": res.model["person"]["prior"],
    }


def _largest_blocks(report: dict, k: int = 3) -> list:
    """The biggest blocks over all rules: (rule, key, pairs or records)."""
    out = []
    for r in report.get("rules", []):
        for key, size in r.get("largest_blocks", [])[:k]:
            out.append((r["rule"], str(key).replace("\x1f", " | "), int(size)))
    return sorted(out, key=lambda t: -t[2])[:k * 2]


#: Thresholds tried for Splink's best truth-tuned F1 (``--splink-sweep``): what a user with the truth could pick.
SWEEP_THRESHOLDS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)


def run_splink(size: int, seed: int, profile: str = "default", threshold: float = 0.9, sweep: bool = False) -> dict:
    """Splink 5 on DuckDB with a careful setup: blocking rules like linkage's, name/dob/bsn comparisons
    with term frequencies, u by random sampling, m by EM on two blocking rules, then predict at 0.9.

    With ``sweep`` (after the timed run) the same model's predictions are also clustered at each of
    :data:`SWEEP_THRESHOLDS` and the best F1 against the truth is reported (``f1_best``, ``best_threshold``):
    the figure "with a threshold tuned on the truth"."""
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    mpath, tpath = data_paths(size, seed, profile)
    raw = add_normalised(pd.read_parquet(mpath))
    c0 = time.process_time()
    t0 = time.perf_counter()
    from linkage.resolve.features import prepare

    rec = prepare(raw, "person")
    df = pd.DataFrame({
        "unique_id": rec["mention_id"],
        "first_name": rec["first_name"].where(rec["first_name"] != "", None),
        "initial": rec["first_initial"].where(rec["first_initial"] != "", None),
        "surname": rec["surname"].where(rec["surname"] != "", None),
        "dob": rec["birth_date"].where(rec["birth_date"] != "", None),
        "birth_year": rec["birth_year"].where(rec["birth_year"] != "", None),
        "bsn": rec["bsn"].where(rec["bsn"] != "", None),
    })
    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[
            block_on("surname", "birth_year"),
            block_on("dob"),
            block_on("bsn"),
            block_on("first_name", "surname"),
            block_on("initial", "dob"),
        ],
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("bsn"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    db_api = DuckDBAPI()
    sdf = db_api.register(df)
    linker = Linker(sdf, settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "dob"), block_on("bsn")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("surname", "birth_year"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    preds = linker.inference.predict(threshold_match_probability=threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(preds, threshold)
    cdf = clusters.as_pandas_dataframe()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0  # DuckDB threads included (process CPU time)
    truth = pd.read_parquet(tpath)
    a = cdf.set_index("unique_id")["cluster_id"]
    scores = pairwise_scores(a.reindex(truth["mention_id"]), truth["entity_id"])
    n_pairs = None
    try:
        from splink.internals.blocking_analysis import count_comparisons_from_blocking_rules

        recs = count_comparisons_from_blocking_rules(
            sdf, blocking_rules=[block_on("surname", "birth_year"), block_on("dob"), block_on("bsn"),
                                 block_on("first_name", "surname"), block_on("initial", "dob")],
            link_type="dedupe_only", record_sample_proportion=1.0)
        last = recs[-1]
        n_pairs = int(getattr(last, "cumulative_comparison_count", None) or last["cumulative_comparison_count"])
    except Exception:
        n_pairs = None
    best = {}
    if sweep:
        low = linker.inference.predict(threshold_match_probability=min(SWEEP_THRESHOLDS))
        tried = []
        for thr in SWEEP_THRESHOLDS:
            cl = linker.clustering.cluster_pairwise_predictions_at_threshold(low, thr).as_pandas_dataframe()
            f1 = pairwise_scores(cl.set_index("unique_id")["cluster_id"].reindex(truth["mention_id"]),
                                 truth["entity_id"])["f1"]
            tried.append((f1, thr))
        f1_best, thr_best = max(tried)
        best = {"f1_best": f1_best, "best_threshold": thr_best, "sweep": [(t, round(f, 4)) for f, t in tried]}
    return {"tool": "splink", **scores, "blocking_recall": None, "pairs": n_pairs, "wall_s": wall, "cpu_s": cpu,
            "peak_gb": peak_gb(), **best}


# -- driver ---------------------------------------------------------------------------------------------

def _one(size: int, seed: int, tool: str, out: Path, profile: str = "default", sweep: bool = False) -> None:
    try:
        result = run_linkage(size, seed, profile) if tool == "linkage" else run_splink(size, seed, profile, sweep=sweep)
    except Exception as exc:  # report, don't crash the whole benchmark
        result = {"tool": tool, "error": f"{type(exc).__name__}: {exc}"[:300], "peak_gb": peak_gb()}
    result["size"] = size
    out.write_text(json.dumps(result))


def _subprocess(args: list[str], timeout: float) -> int:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        return subprocess.run([sys.executable, "-m", "bench.bench_er", *args], env=env, timeout=timeout,
                              cwd=root).returncode
    except subprocess.TimeoutExpired:
        return -1


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[dict]) -> None:
    head = (f"{'size':>9}  {'tool':<8} {'precision':>9} {'recall':>7} {'F1':>7} {'block rec':>9} {'pairs':>11} "
            f"{'wall s':>8} {'CPU s':>8} {'peak GB':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['size']:>9}  {r['tool']:<8} failed: {r['error']}")
            continue
        print(f"{r['size']:>9}  {r['tool']:<8} {_fmt(r['precision'], '.4f'):>9} {_fmt(r['recall'], '.4f'):>7} "
              f"{_fmt(r['f1'], '.4f'):>7} {_fmt(r.get('blocking_recall'), '.4f'):>9} {_fmt(r.get('pairs'), ',d'):>11} "
              f"{_fmt(r['wall_s'], '.1f'):>8} {_fmt(r.get('cpu_s'), '.1f'):>8} {_fmt(r['peak_gb'], '.2f'):>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--splink", dest="splink", action="store_true", default=True)
    ap.add_argument("--no-splink", dest="splink", action="store_false")
    ap.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    ap.add_argument("--profile", default=None,
                    help="generator profile (default: 'benchmark' when the generator has it)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per linkage run")
    ap.add_argument("--splink-timeout", type=float, default=600, help="seconds per Splink run")
    ap.add_argument("--splink-sweep", action="store_true",
                    help="also report Splink's best F1 over thresholds tuned on the truth (after the timed run)")
    ap.add_argument("--one", nargs=3, metavar=("SIZE", "TOOL", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    profile = args.profile or default_profile()
    if args.generate is not None:
        ensure_data(args.generate, args.seed, profile)
        return 0
    if args.one:
        _one(int(args.one[0]), args.seed, args.one[1], Path(args.one[2]), profile, args.splink_sweep)
        return 0
    rows = []
    tools = ["linkage"] + (["splink"] if args.splink else [])
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        common = ["--seed", str(args.seed), "--profile", profile]
        _subprocess(["--generate", str(size), *common], args.timeout)
        for tool in tools:
            out = CACHE / f"result_{size}_{args.seed}_{profile}_{tool}.json"
            out.unlink(missing_ok=True)
            limit = args.timeout if tool == "linkage" else args.splink_timeout
            code = _subprocess(["--one", str(size), tool, str(out), *common,
                                *(["--splink-sweep"] if args.splink_sweep else [])], limit)
            if out.exists():
                rows.append(json.loads(out.read_text()))
            elif code == -1:
                rows.append({"size": size, "tool": tool, "error": f"timeout (> {limit:.0f} s)"})
            else:
                rows.append({"size": size, "tool": tool, "error": f"subprocess ended with code {code} (out of memory?)"})
            print(f"# done: size {size}, {tool}", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(f"# seed {args.seed}; generator profile '{profile}'; pairwise scores against the generator's truth; "
          f"{os.cpu_count()}-core machine, load average at the end {load[0]:.1f}")
    print_table(rows)
    for r in rows:
        if r.get("f1_best") is not None:
            print(f"# Splink at {r['size']}: best F1 {r['f1_best']:.4f} at threshold {r['best_threshold']} "
                  f"(tuned on the truth; sweep {r['sweep']})")
    for r in rows:
        if r.get("largest_blocks"):
            print(f"# largest blocks, linkage at {r['size']}: " + "; ".join(f"{rule}: {key} ({n:,d})"
                                                                        for rule, key, n in r["largest_blocks"]))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
