"""The Neo4j writer against the real server that ``make test`` starts (no mocks).

Data: a small generated set plus a few literal reports with awkward values (quotes, backticks,
braces, Cypher keywords) and known structure (one director of three businesses, one person at three
addresses), run through the pipeline once per module. Oracles come from the embedded store (SQL),
``linkage.inspect``, the CLI and networkx. Community Neo4j has one database: the module starts by
emptying it, and every test that needs the main graph pushes the main store first (a push makes the
graph equal to the store, so a test that pushed another store leaves nothing behind).
"""
from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest

import cli
from linkage.store import EmbeddedStore
from linkage.store import neo4j as neo

pytestmark = pytest.mark.neo4j

DOCS = Path(__file__).resolve().parent.parent / "docs"

REPORT_COLUMNS = ["report_id", "received_at", "category", "description", "reporter_id", "reporter_type"]
MENTION_COLUMNS = ["report_id", "mention_id", "entity_type", "role", "name", "first_name", "last_name", "birth_date",
                   "bsn", "address", "street", "house_number", "postcode", "city", "business_name", "kvk", "plate",
                   "phone", "iban", "email"]

DIRECTOR = 'Kees "de Baas" O\'Brien-`Dam` {x}'
RESIDENT = "Piet {Kamer} de Vries"
BUSINESSES = ["Lounge {MERGE} B.V.", "Return 'Cash' V.O.F.", "Autohandel `DELETE` BV"]
AWKWARD_DESCRIPTIONS = [
    'Zegt: "MATCH (n) DETACH DELETE n" // en dan {x} `y` $param',
    "Backslash \\ en 'enkele' quotes; RETURN 1 UNION MATCH (m) DELETE m",
    "Regel een\nregel twee met {{dubbele}} accolades en ${template}",
]


def _quirky_rows() -> tuple[list[dict], list[dict]]:
    reports, mentions = [], []
    for i, business in enumerate(BUSINESSES, start=1):
        rid = f"Q-D{i}"
        reports.append({"report_id": rid, "received_at": f"2026-09-0{i}", "category": "malafide_onderneming",
                        "description": AWKWARD_DESCRIPTIONS[i - 1], "reporter_id": f"RPT-Q{i}",
                        "reporter_type": "medewerker"})
        mentions.append({"report_id": rid, "mention_id": f"{rid}-M1", "entity_type": "person", "role": "bestuurder",
                         "name": DIRECTOR, "birth_date": "1971-05-04", "bsn": "111222333", "business_name": business})
        mentions.append({"report_id": rid, "mention_id": f"{rid}-M2", "entity_type": "business", "role": "onderneming",
                         "business_name": business, "street": "Keizersgracht", "house_number": f"{100 + i}",
                         "postcode": "1015 CJ", "city": "Amsterdam"})
    for i, (street, number, postcode) in enumerate(
            [("Keizersgracht", "101", "1015 CJ"), ("Oudegracht", "7", "3511 AB"), ("Lange Nieuwstraat", "45", "3512 PE")],
            start=1):
        rid = f"Q-R{i}"
        reports.append({"report_id": rid, "received_at": f"2026-09-1{i}", "category": "adresfraude",
                        "description": f"Ingeschreven op adres {i}: \"{{kamer}}\" `{i}`", "reporter_id": "",
                        "reporter_type": "anoniem"})
        mentions.append({"report_id": rid, "mention_id": f"{rid}-M1", "entity_type": "person", "role": "bewoner",
                         "name": RESIDENT, "birth_date": "1980-02-03", "bsn": "123456782", "street": street,
                         "house_number": number, "postcode": postcode, "city": "Utrecht" if i > 1 else "Amsterdam"})
    return reports, mentions


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    return path


def _generated(folder: Path, n: int, seed: int) -> tuple[Path, Path]:
    from linkage.generate import generate

    generate(n, seed, folder)
    return folder / "reports.csv", folder / "mentions.csv"


def _copy_store(src: Path, dst: Path) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return dst


def expected_counts(store: EmbeddedStore) -> dict[str, int]:
    """What the graph must hold, counted from the store with SQL (independently of the writer)."""
    c = store.conn
    out = {"Report": store.count("reports"), "Entity": store.count("entities"), "Cluster": store.count("clusters"),
           "IN_CLUSTER": store.count("report_clusters")}
    for etype, label in neo.ENTITY_LABELS.items():
        out[label] = store.count("entities", "WHERE entity_type = ?", (etype,))
    out["MENTIONS"] = c.execute("SELECT COUNT(*) FROM mentions JOIN mention_entities USING (mention_id)").fetchone()[0]
    for rel in neo.LINK_RELS:
        out[rel] = 0
    for rel, n in c.execute(
            "SELECT rel_type, COUNT(*) FROM (SELECT DISTINCT ea.entity_id, eb.entity_id, l.rel_type FROM mention_links l "
            "JOIN mention_entities ea ON ea.mention_id = l.src_mention_id "
            "JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id) GROUP BY rel_type"):
        out[rel] = n
    routed = set()
    for cid, agencies, routing in c.execute("SELECT cluster_id, agencies, routing FROM clusters"):
        routed |= {(cid, str(a)) for a in json.loads(agencies or "[]")}
        routed |= {(cid, str(d["agency"])) for d in json.loads(routing or "[]") if d.get("agency")}
    out["ROUTED_TO"] = len(routed)
    out["Agency"] = len({a for _, a in routed})
    return out


def wipe(driver) -> None:
    with driver.session() as s:
        s.run("MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()


def rows(driver, query: str, **params) -> list:
    with driver.session() as s:
        return list(s.run(query, **params))


# --- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory, neo4j_driver):
    """Files and the main store: 250 generated reports + the literal ones; the graph starts empty."""
    from linkage.pipeline import run

    wipe(neo4j_driver)
    folder = tmp_path_factory.mktemp("neo4j-data")
    gen_reports, gen_mentions = _generated(folder / "gen", 250, 11)
    q_reports, q_mentions = _quirky_rows()
    files = [gen_reports, gen_mentions, _write_csv(folder / "quirky_reports.csv", REPORT_COLUMNS, q_reports),
             _write_csv(folder / "quirky_mentions.csv", MENTION_COLUMNS, q_mentions)]
    store = folder / "main.db"
    run(files, store)
    return {"folder": folder, "files": files, "store": store}


@pytest.fixture
def graph(data, neo4j_driver):
    """The main store, pushed: (driver, open store, push summary)."""
    with EmbeddedStore(data["store"], must_exist=True) as store:
        summary = neo.push(store, neo4j_driver)
        yield neo4j_driver, store, summary


@pytest.fixture
def neo4j_env(monkeypatch, neo4j_driver):
    """The LINKAGE_NEO4J_* settings in the environment, for the CLI and ``delete_reports``."""
    for key, value in neo4j_driver.linkage_env.items():
        monkeypatch.setenv(key, value)
    return neo4j_driver.linkage_env


# --- writing -------------------------------------------------------------------------------------------

def test_schema_is_created_idempotently(neo4j_driver):
    neo.ensure_schema(neo4j_driver)
    neo.ensure_schema(neo4j_driver)
    names = {r["name"] for r in rows(neo4j_driver, "SHOW CONSTRAINTS YIELD name RETURN name")}
    assert {"report_id", "entity_id", "cluster_id", "agency_id"} <= names
    indexes = {r["name"] for r in rows(neo4j_driver, "SHOW INDEXES YIELD name RETURN name")}
    assert {"cluster_rank", "report_received", "person_label", "address_label"} <= indexes


def test_counts_in_neo4j_equal_the_store(graph):
    driver, store, summary = graph
    want = expected_counts(store)
    assert want["Report"] > 250 and want["MENTIONS"] > want["Report"] and want["Cluster"] > 0
    got = neo.counts(driver)
    assert {k: got[k] for k in want} == want
    assert summary.nodes["Report"] == want["Report"]
    assert summary.relationships["MENTIONS"] == want["MENTIONS"]
    assert summary.elements == sum(v for k, v in want.items() if k != "Entity")


def test_pushing_twice_changes_nothing(graph):
    driver, store, _ = graph
    before = neo.counts(driver)
    again = neo.push(store, driver)
    assert neo.counts(driver) == before
    assert (again.written, again.removed) == (0, 0)
    assert again.elements == sum(v for k, v in before.items() if k != "Entity")
    full = neo.push(store, driver, full=True)  # every row through MERGE again
    assert neo.counts(driver) == before
    assert full.written == full.elements and full.removed == 0
    props = rows(driver, "MATCH (r:Report) RETURN r.report_id AS id, properties(r) AS p ORDER BY id LIMIT 5")
    assert all(set(r["p"]) >= {"report_id", "received_at", "received_date", "category", "push_hash"} for r in props)


def test_batched_writes_keep_their_plans(neo4j_driver):
    """Every batched write asks the server to keep its cached plan (``replan=skip``) and the server accepts it."""
    queries = [k.query() for k in (neo.REPORT, neo.CLUSTER, neo.AGENCY, neo.OTHER_ENTITY)]
    queries += [k.create_query() for k in (neo.REPORT, neo.CLUSTER, neo.AGENCY, neo.OTHER_ENTITY)]
    for kind in (neo.MENTIONS, neo.IN_CLUSTER, neo.ROUTED_TO, *neo.LINK_KINDS.values()):
        queries += [kind.query(by_id=b) for b in (False, True)] + [kind.create_query(by_id=b) for b in (False, True)]
    assert all(q.startswith("CYPHER replan=skip UNWIND $rows AS r ") for q in queries)
    with neo4j_driver.session() as s:
        for q in queries:
            s.run("EXPLAIN " + q, rows=[]).consume()


def test_awkward_values_are_stored_verbatim(graph):
    driver, store, _ = graph
    got = {r["id"]: r["d"] for r in rows(driver, "MATCH (r:Report) WHERE r.report_id STARTS WITH 'Q-' "
                                                 "RETURN r.report_id AS id, r.description AS d")}
    want = dict(store.conn.execute("SELECT report_id, description FROM reports WHERE report_id LIKE 'Q-%'"))
    assert got == want and len(got) == 6
    assert set(AWKWARD_DESCRIPTIONS) <= set(got.values())
    # mentions keep the values as given; entity labels equal the store's
    given = [json.loads(r["g"]) for r in rows(
        driver, "MATCH (:Report)-[m:MENTIONS]->(:Person) WHERE m.mention_id STARTS WITH 'Q-D' RETURN m.as_given AS g")]
    assert len(given) == 3 and {g["name"] for g in given} == {DIRECTOR}
    business_given = {json.loads(r["g"])["business_name"] for r in rows(
        driver, "MATCH (:Report)-[m:MENTIONS]->(:Business) WHERE m.mention_id STARTS WITH 'Q-D' RETURN m.as_given AS g")}
    assert business_given == set(BUSINESSES)
    labels = {r["id"]: r["label"] for r in rows(driver, "MATCH (e:Entity) RETURN e.entity_id AS id, e.label AS label")}
    assert labels == dict(store.conn.execute("SELECT entity_id, label FROM entities"))
    # a value that looks like Cypher is data: the graph is still all there
    assert neo.counts(driver)["Report"] == store.count("reports")


# --- the documented queries ----------------------------------------------------------------------------

def documented_queries() -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (query, {param: example}) from docs/queries.cypher."""
    text = (DOCS / "queries.cypher").read_text(encoding="utf-8")
    parts = re.split(r"^// name: *(\S+) *$", text, flags=re.M)
    out = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        params = dict(re.findall(r"^// :param (\w+) => (.+)$", body, flags=re.M))
        query = "\n".join(ln for ln in body.splitlines() if not ln.lstrip().startswith("//")).strip()
        assert query.endswith(";") and query.count(";") == 1, f"{name}: one statement ending in ';'"
        out[name] = (query[:-1], params)
    return out


QUERIES = documented_queries()


def test_the_queries_file_documents_its_parameters():
    assert len(QUERIES) >= 9
    for name, (query, params) in QUERIES.items():
        used = set(re.findall(r"\$(\w+)", query))
        assert used == set(params), f"{name}: ':param' lines {sorted(params)} but the query uses {sorted(used)}"
        assert not re.search(r"'[^']*\b(e|c)_[0-9a-f]{8}", query), f"{name}: ids belong in parameters"


def _links(store, rel: str) -> list[tuple[str, str]]:
    return sorted(set(store.conn.execute(
        "SELECT ea.entity_id, eb.entity_id FROM mention_links l "
        "JOIN mention_entities ea ON ea.mention_id = l.src_mention_id "
        "JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id WHERE l.rel_type = ?", (rel,))))


def _labels(store) -> dict[str, str]:
    return dict(store.conn.execute("SELECT entity_id, label FROM entities"))


def _entity_of(store, mention_id: str) -> str:
    return store.conn.execute("SELECT entity_id FROM mention_entities WHERE mention_id = ?", (mention_id,)).fetchone()[0]


def _grouped(pairs, labels, key_of, member_of, minimum):
    groups: dict[str, set[str]] = {}
    for pair in pairs:
        groups.setdefault(key_of(pair), set()).add(member_of(pair))
    out = []
    for key, members in groups.items():
        if len(members) >= minimum:
            ordered = sorted(members, key=lambda m: (labels[m], m))
            out.append((key, labels[key], len(members), [labels[m] for m in ordered], ordered))
    return sorted(out, key=lambda r: (-r[2], r[1], r[0]))


def _path_graph(store) -> nx.MultiGraph:
    g = nx.MultiGraph()
    g.add_edges_from(store.conn.execute(
        "SELECT m.report_id, me.entity_id FROM mentions m JOIN mention_entities me USING (mention_id)"))
    g.add_edges_from(store.conn.execute(
        "SELECT ea.entity_id, eb.entity_id FROM mention_links l JOIN mention_entities ea ON ea.mention_id = l.src_mention_id "
        "JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id"))
    return g


def case_top_clusters(store):
    from linkage.inspect import list_clusters

    want = list_clusters(store, limit=5)
    return {"limit": 5}, lambda got: (
        [r["cluster_id"] for r in got] == list(want["cluster_id"])
        and [r["rank"] for r in got] == list(want["rank"]) and [r["score"] for r in got] == list(want["score"]))


def case_top_clusters_for_agency(store):
    from linkage.inspect import list_clusters

    routed = Counter(a for (agencies,) in store.conn.execute("SELECT agencies FROM clusters")
                     for a in json.loads(agencies or "[]"))
    agency = "politie" if routed.get("politie") else routed.most_common(1)[0][0]
    want = list(list_clusters(store, agency=agency, limit=5)["cluster_id"])
    assert want
    return {"agency": agency, "limit": 5}, lambda got: [r["cluster_id"] for r in got] == want and all(
        r["routing_reasons"] for r in got)


def _top_cluster(store) -> str:
    return store.clusters()["cluster_id"].iloc[0]


def case_cluster_reports(store):
    from linkage.inspect import cluster_detail

    cid = _top_cluster(store)
    want = [r["report_id"] for r in cluster_detail(store, cid)["reports"]]
    assert len(want) >= 2
    return {"cluster_id": cid}, lambda got: [r["report_id"] for r in got] == want and [
        r["received_at"] for r in got] == sorted(r["received_at"] for r in got)


def case_cluster_graph(store):
    cid = _top_cluster(store)
    want = set(store.conn.execute(
        "SELECT rc.report_id, me.entity_id FROM report_clusters rc JOIN mentions m USING (report_id) "
        "JOIN mention_entities me USING (mention_id) WHERE rc.cluster_id = ?", (cid,)))
    return {"cluster_id": cid}, lambda got: {(r["r"]["report_id"], r["e"]["entity_id"]) for r in got} == want and all(
        r["c"]["cluster_id"] == cid for r in got)


def case_find_entity(store):
    text = "straat"
    counts = dict(store.conn.execute("SELECT entity_id, COUNT(*) FROM mention_entities GROUP BY entity_id"))
    found = [(eid, etype, label, counts.get(eid, 0)) for eid, etype, label in
             store.conn.execute("SELECT entity_id, entity_type, label FROM entities")
             if label is not None and text in label.lower()]
    want = sorted(found, key=lambda r: (-r[3], r[2], r[0]))[:25]
    assert len(want) >= 2
    return {"text": text.upper()}, lambda got: [(r["entity_id"], r["type"], r["label"], r["mentions"]) for r in got] == want


def case_around_entity(store):
    eid = _entity_of(store, "Q-D1-M1")  # the director of three businesses
    q = lambda sql: set(store.conn.execute(sql, {"e": eid}))  # noqa: E731
    want = {("report", rid, role) for rid, role in q(
        "SELECT m.report_id, m.role FROM mentions m JOIN mention_entities me USING (mention_id) WHERE me.entity_id = :e")}
    want |= {("linked", other, rel) for other, rel in q(
        "SELECT CASE WHEN ea.entity_id = :e THEN eb.entity_id ELSE ea.entity_id END, l.rel_type FROM mention_links l "
        "JOIN mention_entities ea ON ea.mention_id = l.src_mention_id JOIN mention_entities eb ON eb.mention_id = l.dst_mention_id "
        "WHERE ea.entity_id = :e OR eb.entity_id = :e")}
    want |= {("mentioned with", other, rid) for other, rid in q(
        "SELECT DISTINCT o.entity_id, m2.report_id FROM mention_entities me JOIN mentions m USING (mention_id) "
        "JOIN mentions m2 ON m2.report_id = m.report_id JOIN mention_entities o ON o.mention_id = m2.mention_id "
        "WHERE me.entity_id = :e AND o.entity_id <> :e")}
    want |= {("cluster", cid, "IN_CLUSTER") for (cid,) in q(
        "SELECT DISTINCT rc.cluster_id FROM mention_entities me JOIN mentions m USING (mention_id) "
        "JOIN report_clusters rc ON rc.report_id = m.report_id WHERE me.entity_id = :e")}
    assert {k for k, *_ in want} >= {"report", "linked", "mentioned with"}
    return {"entity_id": eid}, lambda got: {(r["kind"], r["id"], r["via"]) for r in got} == want


def case_paths_between(store):
    g = _path_graph(store)
    src, dst = _entity_of(store, "Q-D1-M1"), _entity_of(store, "Q-R1-M1")  # director -> resident of his address
    want = {tuple(p) for p in nx.all_shortest_paths(nx.Graph(g), src, dst)}
    assert 2 <= len(next(iter(want))) - 1 <= 8 and len(want) <= 25
    return {"from_id": src, "to_id": dst}, lambda got: (
        {tuple(r["ids"]) for r in got} == want and all(r["steps"] == len(r["ids"]) - 1 for r in got))


def case_persons_at_many_addresses(store):
    want = _grouped(_links(store, "LIVES_AT"), _labels(store), lambda p: p[0], lambda p: p[1], 3)
    assert _entity_of(store, "Q-R1-M1") in [w[0] for w in want]
    return {"min_addresses": 3}, lambda got: [
        (r["entity_id"], r["person"], r["n_addresses"], r["addresses"], r["address_ids"]) for r in got] == want


def case_addresses_with_many_persons(store):
    want = _grouped(_links(store, "LIVES_AT"), _labels(store), lambda p: p[1], lambda p: p[0], 2)
    assert want
    return {"min_persons": 2}, lambda got: [
        (r["entity_id"], r["address"], r["n_persons"], r["persons"], r["person_ids"]) for r in got] == want


def case_businesses_sharing_a_director(store):
    labels = _labels(store)
    want = _grouped(_links(store, "DIRECTOR_OF"), labels, lambda p: p[0], lambda p: p[1], 2)
    director = _entity_of(store, "Q-D1-M1")
    assert any(w[0] == director and w[2] == 3 for w in want), "the literal director runs three businesses"
    return {"min_businesses": 2}, lambda got: [
        (r["director_id"], r["director"], r["n_businesses"], r["businesses"], r["business_ids"]) for r in got] == want


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def test_every_documented_query_has_a_case():
    assert set(QUERIES) == set(CASES)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_documented_query_returns_the_expected_rows(graph, name):
    driver, store, _ = graph
    query, documented = QUERIES[name]
    params, check = CASES[name](store)
    assert set(params) == set(documented)
    got = rows(driver, query, **params)
    assert got, f"{name} returned no rows"
    assert check(got), f"{name}: unexpected rows {[r.data() for r in got][:5]}"


def test_top_cluster_by_cypher_equals_the_cli(graph, capsys):
    driver, store, _ = graph
    query, _ = QUERIES["top_clusters"]
    top = rows(driver, query, limit=1)[0]
    try:
        cli.main(["clusters", "--store", str(store.path), "--limit", "1", "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    shown = json.loads(capsys.readouterr().out)
    assert shown[0]["cluster_id"] == top["cluster_id"] and shown[0]["rank"] == top["rank"] == 1


# --- the command line ----------------------------------------------------------------------------------

def _main(args: list[str]) -> int:
    try:
        cli.main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_push_writes_and_prints_a_summary(data, tmp_path, neo4j_env, neo4j_driver, capsys):
    store = _copy_store(data["store"], tmp_path / "copy.db")
    assert _main(["push", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "Neo4j:" in out and "relationships in sync" in out
    assert _main(["push", "--store", str(store), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 0 and summary["removed"] == 0 and summary["elements"] > 0
    with EmbeddedStore(store) as s:
        assert neo.counts(neo4j_driver)["Report"] == s.count("reports")


def test_cli_run_with_neo4j(tmp_path, neo4j_env, neo4j_driver, capsys):
    reports, mentions = _generated(tmp_path / "gen", 80, 3)
    store = tmp_path / "run.db"
    assert _main(["run", str(reports), str(mentions), "--store", str(store), "--neo4j", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "Neo4j:" in out and "nodes" in out
    with EmbeddedStore(store) as s:
        want = expected_counts(s)
    got = neo.counts(neo4j_driver)
    assert {k: got[k] for k in want} == want


def test_cli_wrong_password_exits_1_without_showing_it(data, neo4j_env, monkeypatch, capsys):
    secret = "Wrong-Secret-4711"
    monkeypatch.setenv("LINKAGE_NEO4J_PASSWORD", secret)
    assert _main(["push", "--store", str(data["store"])]) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "refused" in captured.err and "LINKAGE_NEO4J_PASSWORD" in captured.err
    assert secret not in text and "Traceback" not in text
    real = Path(neo4j_env["LINKAGE_NEO4J_PASSWORD_FILE"]).read_text(encoding="utf-8").strip() \
        if "LINKAGE_NEO4J_PASSWORD_FILE" in neo4j_env else None
    assert not real or real not in text


# --- keeping the graph in step with the store ----------------------------------------------------------

def _split(src: Path, dst: Path, keep: set[str]) -> Path:
    with src.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        kept = [r for r in reader if r["report_id"] in keep]
        columns = reader.fieldnames
    return _write_csv(dst, list(columns), kept)


def _bridge(store: EmbeddedStore, folder: Path) -> tuple[set[str], list[Path]]:
    """Three new reports that each mention the busiest entity of the two smallest clusters."""
    from linkage import model

    clusters = [c for (c,) in store.conn.execute("SELECT cluster_id FROM clusters ORDER BY n_reports, cluster_id LIMIT 2")]
    hubs = []
    for cid in clusters:
        (eid,) = store.conn.execute(
            "SELECT me.entity_id FROM report_clusters rc JOIN mentions m USING (report_id) JOIN mention_entities me "
            "USING (mention_id) WHERE rc.cluster_id = ? GROUP BY me.entity_id ORDER BY COUNT(*) DESC, me.entity_id LIMIT 1",
            (cid,)).fetchone()
        cur = store.conn.execute(
            f"SELECT m.entity_type, {', '.join('m.' + f for f in model.VALUE_FIELDS)} FROM mentions m "
            "JOIN mention_entities me USING (mention_id) WHERE me.entity_id = ? AND m.parent_mention_id IS NULL "
            "ORDER BY m.mention_id LIMIT 1", (eid,))
        hubs.append({k: v for k, v in zip([d[0] for d in cur.description], cur.fetchone()) if v is not None})
    reports, mentions = [], []
    for i in range(3):
        rid = f"BR-{i}"
        reports.append({"report_id": rid, "received_at": "2026-10-01", "category": "overig",
                        "description": "Zelfde mensen op beide adressen.", "reporter_id": f"RPT-B{i}",
                        "reporter_type": "bewoner"})
        mentions += [{"report_id": rid, "mention_id": f"{rid}-M{j}", **hub} for j, hub in enumerate(hubs)]
    return set(clusters), [_write_csv(folder / "bridge_reports.csv", REPORT_COLUMNS, reports),
                           _write_csv(folder / "bridge_mentions.csv", MENTION_COLUMNS, mentions)]


def test_rerun_after_new_reports_removes_clusters_that_no_longer_exist(data, tmp_path, neo4j_driver):
    from linkage.pipeline import run

    gen_reports, gen_mentions = data["files"][:2]
    with gen_reports.open(encoding="utf-8", newline="") as f:
        ids = sorted((r["received_at"], r["report_id"]) for r in csv.DictReader(f))
    first = {rid for _, rid in ids[: len(ids) * 3 // 5]}
    store_path = tmp_path / "rerun.db"
    run([_split(gen_reports, tmp_path / "r1.csv", first), _split(gen_mentions, tmp_path / "m1.csv", first)], store_path)
    with EmbeddedStore(store_path) as store:
        neo.push(store, neo4j_driver)
        before = {r["id"] for r in rows(neo4j_driver, "MATCH (c:Cluster) RETURN c.cluster_id AS id")}
        assert before == {c for (c,) in store.conn.execute("SELECT cluster_id FROM clusters")}
        bridged, bridge_files = _bridge(store, tmp_path)
    # the rest of the reports arrive, and three that join two small clusters into one
    run([gen_reports, gen_mentions] + bridge_files, store_path)
    with EmbeddedStore(store_path) as store:
        summary = neo.push(store, neo4j_driver)
        now = {c for (c,) in store.conn.execute("SELECT cluster_id FROM clusters")}
        got = neo.counts(neo4j_driver)
        want = expected_counts(store)
    after = {r["id"] for r in rows(neo4j_driver, "MATCH (c:Cluster) RETURN c.cluster_id AS id")}
    assert bridged - now, "the bridging reports should merge the two clusters"
    assert after == now and not (before - now) & after
    assert summary.removed > 0
    assert {k: got[k] for k in want} == want
    stale = rows(neo4j_driver, "MATCH (r:Report)-[:IN_CLUSTER]->(c:Cluster) WITH r, count(c) AS n WHERE n > 1 "
                               "RETURN count(r) AS n")[0]["n"]
    assert stale == 0


def test_purge_removes_the_reports_from_neo4j(data, tmp_path, neo4j_env, neo4j_driver):
    import datetime as dt

    from linkage.retention import purge

    store_path = _copy_store(data["store"], tmp_path / "purge.db")
    with EmbeddedStore(store_path) as store:
        neo.push(store, neo4j_driver)
        dates = sorted(d for (d,) in store.conn.execute("SELECT substr(received_at, 1, 10) FROM reports"))
        newest = dt.date.fromisoformat(dates[-1])
        cutoff = dt.date.fromisoformat(dates[len(dates) // 2])
        now = dt.datetime.combine(newest, dt.time(12), tzinfo=dt.timezone.utc)
        summary = purge(store, (newest - cutoff).days, now=now, on_purge=neo.delete_reports)
        assert summary.counts["reports"] > 10
        left = {r["id"] for r in rows(neo4j_driver, "MATCH (r:Report) RETURN r.report_id AS id")}
        assert not left & set(summary.report_ids)
        assert left == {r for (r,) in store.conn.execute("SELECT report_id FROM reports")}
        got, want = neo.counts(neo4j_driver), expected_counts(store)
        assert {k: got[k] for k in want} == want
        leftover = rows(neo4j_driver, "MATCH ()-[x]->() WHERE any(i IN x.report_ids WHERE i IN $ids) RETURN count(x) AS n",
                        ids=summary.report_ids)[0]["n"]
        assert leftover == 0
        healed = neo.push(store, neo4j_driver)  # a push afterwards only rewrites the shortened links
        assert neo.counts(neo4j_driver) == got and healed.removed <= healed.written


def _duplicates(driver) -> int:
    """Relationships that exist more than once (same type, endpoints and mention id)."""
    return rows(driver, "MATCH (a)-[x]->(b) WITH type(x) AS t, a, b, x.mention_id AS m, count(*) AS n WHERE n > 1 "
                        "RETURN count(*) AS n")[0]["n"]


def test_first_push_creates_and_a_rerun_after_a_crash_leaves_no_duplicates(data, neo4j_driver, monkeypatch):
    """New nodes and their relationships go through CREATE; a push that died halfway, run again, heals."""
    from neo4j.exceptions import ServiceUnavailable

    from linkage.errors import Neo4jUnavailable

    wipe(neo4j_driver)
    real_write = neo._write
    calls = []

    def dying_write(driver, query, rows_, *args, **kwargs):
        calls.append(query)
        if "CREATE (a)-[x:MENTIONS" in query:  # half of the mentions are committed, then the server goes
            real_write(driver, query, rows_[: len(rows_) // 2], *args, **kwargs)
            raise ServiceUnavailable("simulated crash")
        return real_write(driver, query, rows_, *args, **kwargs)

    monkeypatch.setattr(neo, "_write", dying_write)
    with EmbeddedStore(data["store"], must_exist=True) as store:
        with pytest.raises(Neo4jUnavailable, match="idempotent"):
            neo.push(store, neo4j_driver)
        assert any("UNWIND $rows AS r CREATE (n:Report" in q for q in calls)
        monkeypatch.setattr(neo, "_write", real_write)
        half = neo.counts(neo4j_driver)["MENTIONS"]
        want = expected_counts(store)
        assert 0 < half < want["MENTIONS"]
        again = neo.push(store, neo4j_driver)  # nodes exist now: their relationships go through MERGE
        got = neo.counts(neo4j_driver)
        assert {k: got[k] for k in want} == want
        assert _duplicates(neo4j_driver) == 0
        assert again.removed == 0 and again.written == want["MENTIONS"] - half + sum(
            want[r] for r in ("IN_CLUSTER", "ROUTED_TO") + neo.LINK_RELS)
        assert neo.push(store, neo4j_driver).written == 0


def _graph_dump(driver) -> list[str]:
    """Every node and relationship with its labels / type, endpoints' keys and properties, sorted."""
    keys = "coalesce(n.report_id, n.entity_id, n.cluster_id, n.agency_id)"
    nodes = rows(driver, f"MATCH (n) RETURN labels(n) AS l, {keys} AS k, properties(n) AS p")
    rels = rows(driver, f"MATCH (n)-[x]->(m) WITH n, x, m, {keys} AS a "
                        "RETURN type(x) AS t, a, coalesce(m.report_id, m.entity_id, m.cluster_id, m.agency_id) AS b, "
                        "properties(x) AS p")
    return sorted([json.dumps([sorted(r["l"]), r["k"], r["p"]], sort_keys=True, default=str) for r in nodes]
                  + [json.dumps([r["t"], r["a"], r["b"], r["p"]], sort_keys=True, default=str) for r in rels])


def test_a_pipelined_push_gives_the_same_graph_as_a_serial_one(data, neo4j_driver, monkeypatch):
    """Two sessions, batch k+1 sent while batch k commits: the same nodes, relationships and properties."""
    monkeypatch.setattr(neo, "BATCH", 97)  # many small batches
    graphs = []
    with EmbeddedStore(data["store"], must_exist=True) as store:
        for writers in (1, 2, 3):
            wipe(neo4j_driver)
            first = neo.push(store, neo4j_driver, writers=writers)
            want = expected_counts(store)
            got = neo.counts(neo4j_driver)
            assert {k: got[k] for k in want} == want and _duplicates(neo4j_driver) == 0
            assert first.written == first.elements
            assert neo.push(store, neo4j_driver, writers=writers).written == 0
            graphs.append(_graph_dump(neo4j_driver))
    assert graphs[0] == graphs[1] == graphs[2] and len(graphs[0]) == first.elements


@pytest.mark.parametrize("writers", [1, 2])
def test_a_failing_batch_names_its_kind_and_batch_and_what_was_committed(neo4j_driver, monkeypatch, writers):
    """Batch 3 of 5 breaks the uniqueness constraint: the error names it; no batch after it starts
    (serial) or only the one already in flight (pipelined), and the graph holds exactly the batches
    the error says were committed."""
    monkeypatch.setattr(neo, "BATCH", 4)
    wipe(neo4j_driver)
    ids = [f"R-{i:02d}" for i in range(20)]
    ids[9] = ids[1]  # batch 3 (rows 9-12) repeats a report of batch 1
    query = neo.REPORT.create_query()
    with pytest.raises(neo.BatchFailed) as caught:
        neo._write(neo4j_driver, query, [[0, rid] + [None] * 6 for rid in ids], writers, what="Report")
    err = caught.value
    assert (err.what, err.number, err.total) == ("Report", 3, 5)
    assert str(err).startswith("Report: batch 3 of 5 (rows 9-12) failed (ConstraintError); batches committed: 1-2")
    assert 3 not in err.committed and err.committed[:2] == [1, 2]
    assert set(err.committed) <= {1, 2, 4}  # pipelined: batch 4 may have been in flight
    if writers == 1:
        assert err.committed == [1, 2]
    have = sorted(r["k"] for r in rows(neo4j_driver, "MATCH (n:Report) RETURN n.report_id AS k"))
    assert have == sorted(rid for b in err.committed for rid in ids[(b - 1) * 4:b * 4])


def test_a_push_that_fails_in_a_batch_says_where(data, neo4j_driver, monkeypatch):
    """The push's error names the kind and batch (and says a rerun completes it); never a row's values."""
    from linkage.errors import Neo4jUnavailable

    monkeypatch.setattr(neo, "BATCH", 10)
    wipe(neo4j_driver)
    with neo4j_driver.session() as s:  # a node that only the Cluster writes' CREATE can collide with
        s.run("CREATE (:Cluster {cluster_id: 'X'})").consume()
    real_write = neo._write

    def clashing_write(driver, query, rows_, *args, what="", **kwargs):
        if what == "Cluster" and "CREATE (n:Cluster" in query:  # the third batch collides with the node above
            rows_ = [list(r) for r in rows_]
            rows_[25][1] = "X"
        return real_write(driver, query, rows_, *args, what=what, **kwargs)

    monkeypatch.setattr(neo, "_write", clashing_write)
    with EmbeddedStore(data["store"], must_exist=True) as store:
        if store.count("clusters") <= 25:
            pytest.skip("the small set has too few clusters for a third batch")
        with pytest.raises(Neo4jUnavailable, match=r"at Cluster: batch 3 of \d+ \(rows 21-\d+\) failed "
                                                     r"\(ConstraintError\); batches committed: 1-2\b.*idempotent"):
            neo.push(store, neo4j_driver)


def test_relationships_by_an_internal_id_that_no_longer_holds_its_node_are_written_by_key(neo4j_driver):
    """Endpoints found by internal id are checked against their keys; a mismatch rolls the batch back and
    writes it by key, so a stale id never links the wrong node and never loses a row."""
    wipe(neo4j_driver)
    with neo4j_driver.session() as s:
        ids = s.run("CREATE (r:Report {report_id: 'R-1'}), (p:Entity:Person {entity_id: 'E-p'}), "
                    "(a:Entity:Address {entity_id: 'E-a'}) RETURN id(r) AS r, id(p) AS p, id(a) AS a").single()
    wrong = [[1, "R-1", "E-p", "M-1", "subject", "{}", ids["r"], ids["a"]],  # E-a's id for E-p
             [2, "R-1", "E-a", "M-2", "address", "{}", ids["r"], -1]]  # an id no node has
    n, _ = neo._write(neo4j_driver, neo.MENTIONS.create_query(by_id=True), wrong,
                      fallback=neo.MENTIONS.create_query())
    assert n == 2
    got = rows(neo4j_driver, "MATCH (:Report {report_id: 'R-1'})-[m:MENTIONS]->(e) "
                             "RETURN m.mention_id AS m, e.entity_id AS e ORDER BY m")
    assert [(r["m"], r["e"]) for r in got] == [("M-1", "E-p"), ("M-2", "E-a")]


def test_a_push_leaves_the_garbage_collector_as_it_found_it(graph, monkeypatch):
    """The push pauses Python's cyclic collector while it holds its rows, and only then."""
    import gc

    driver, store, _ = graph
    seen: list[bool] = []
    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            neo.push(store, driver, progress=lambda kind, n: seen.append(gc.isenabled()))
            assert gc.isenabled() is enabled
        gc.enable()
        monkeypatch.setattr(neo, "_report_rows", lambda store: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            neo.push(store, driver)
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert seen and not any(seen)


def test_remove_stale_deletes_only_what_the_store_does_not_hold(graph):
    driver, store, _ = graph
    before = neo.counts(driver)
    with driver.session() as s:
        s.run("CREATE (:Cluster {cluster_id: 'c_gone'})<-[:IN_CLUSTER]-(:Report {report_id: 'R-gone'})").consume()
    assert neo.remove_stale(store, driver) == 2
    assert neo.counts(driver) == before


# --- the Browser style -----------------------------------------------------------------------------------

def test_browser_style_gives_each_label_a_colour_and_caption():
    text = (DOCS / "linkage.grass").read_text(encoding="utf-8")
    # GraSS: "selector {" on its own line, "property: value;" lines, "}" on its own line
    rules = {sel: dict(re.findall(r"^\s*([\w-]+)\s*:\s*(.+?);\s*$", body, flags=re.M))
             for sel, body in re.findall(r"^([\w.]+)\s*\{\s*$(.*?)^\}\s*$", text, flags=re.M | re.S)}
    assert {"node", "relationship", "node.Report", "node.Cluster"} <= set(rules)
    captions = {"Report": "{category}", "Person": "{label}", "Address": "{label}", "Business": "{label}",
                "Vehicle": "{label}", "Phone": "{label}", "BankAccount": "{label}", "Email": "{label}",
                "Cluster": "{rank}", "Agency": "{name}"}
    colours = {}
    for label, caption in captions.items():
        rule = rules[f"node.{label}"]
        assert caption in rule["caption"], label
        colours[label] = rule["color"].strip().upper()
    assert len(set(colours.values())) == len(colours), colours
    assert "{score}" in rules["node.Cluster"]["caption"]
    # the generic Entity rule comes first, so the specific labels win in the Browser
    assert text.index("node.Entity") < min(text.index(f"node.{label} ") for label in captions)


def test_bench_server_threads_groups_every_thread(tmp_path, monkeypatch):
    """The benchmark's per-thread CPU: every live thread of the process lands in one group."""
    import os
    import time

    from bench import bench_neo4j

    pid_file = tmp_path / "neo4j.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    monkeypatch.setattr(bench_neo4j, "PID_FILE", pid_file)
    end = time.process_time() + 0.05
    while time.process_time() < end:  # some CPU for this (main) thread, which falls under "other"
        pass
    threads = bench_neo4j.server_threads()
    assert threads is not None
    assert set(threads) == {name for name, _ in bench_neo4j.THREAD_GROUPS} | {"other"}
    assert all(v >= 0 for v in threads.values())
    assert threads["other"] > 0
    # threads that have ended (e.g. a push's writer thread earlier in this run) drop out of the groups
    assert 0 < sum(threads.values()) <= bench_neo4j.server_cpu() + 0.1
    pid_file.write_text("not a pid\n")
    assert bench_neo4j.server_threads() is None
