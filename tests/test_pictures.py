"""Cluster pictures: the graph of one cluster, deterministic layouts, PNG/SVG/HTML files with a legend."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import networkx as nx
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from report_store import make_store  # noqa: E402

import cli  # noqa: E402
from linkage.errors import InputError, NotFoundError  # noqa: E402
from linkage.report import pictures  # noqa: E402

C1_ENTITIES = {"e_person_jan", "e_address_kerk", "e_business_noor", "e_vehicle_abc", "e_phone_06", "e_bank_nl91"}


@pytest.fixture()
def store(tmp_path):
    s = make_store(tmp_path / "s.db")
    yield s
    s.close()


def test_cluster_graph_holds_only_this_cluster(store):
    g = pictures.cluster_graph(pictures.cluster_data(store, "C1"))
    reports = {d["id"] for _, d in g.nodes(data=True) if d["kind"] == "report"}
    entities = {d["id"] for _, d in g.nodes(data=True) if d["kind"] == "entity"}
    assert reports == {"R1", "R2", "R3", "R4"}
    assert entities == C1_ENTITIES
    assert nx.is_connected(g)
    rels = {d["rel"] for _, _, d in g.edges(data=True)}
    assert rels == {"MENTIONS", "LIVES_AT", "OWNER_OF", "USES"}
    # report -> entity edges come from the mentions; R2 names Jan, the lounge and the car
    assert set(g.neighbors("r:R2")) == {"e:e_person_jan", "e:e_business_noor", "e:e_vehicle_abc"}
    # sized by reports: Jan is mentioned in two of the cluster's reports
    assert g.nodes["e:e_person_jan"]["n_reports"] == 2
    # the graph never carries reporter ids
    text = repr(list(g.nodes(data=True)))
    assert "RPT-" not in text and "reporter_id" not in text


def test_layout_is_seeded_and_bounded(store):
    g = pictures.cluster_graph(pictures.cluster_data(store, "C1"))
    a, b = pictures.layout(g, seed=3), pictures.layout(g, seed=3)
    assert a == b
    assert all(-1.0 <= c <= 1.0 for p in a.values() for c in p)
    assert pictures.layout(nx.Graph()) == {}


def test_large_layout_without_scipy_falls_back(monkeypatch):
    g = nx.barabasi_albert_graph(520, 1, seed=1)

    def no_scipy(*args, **kwargs):
        raise ImportError("scipy")

    monkeypatch.setattr(pictures.nx, "spring_layout", no_scipy)
    pos = pictures.layout(g, seed=1, iterations=20)
    assert len(pos) == 520 and all(-1.0 <= c <= 1.0 for p in pos.values() for c in p)


@pytest.mark.parametrize("suffix", [".png", ".svg", ".html"])
def test_draw_cluster_writes_each_format(store, tmp_path, suffix):
    path = pictures.draw_cluster(store, "C1", tmp_path / "pics" / f"c1{suffix}")
    assert path.exists() and path.stat().st_size > 1000
    if suffix == ".png":
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return
    text = path.read_text(encoding="utf-8")
    for word in ("person", "address", "business", "report", "Jan de Vries"):
        assert word in text  # legend and labels
    assert "Petra Jansen" not in text and "RPT-" not in text
    if suffix == ".html":
        assert "<script" in text and "<script src" not in text
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?https?:", text)
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_svg_file_is_deterministic(store, tmp_path):
    a = pictures.draw_cluster(store, "C1", tmp_path / "a.svg").read_bytes()
    b = pictures.draw_cluster(store, "C1", tmp_path / "b.svg").read_bytes()
    assert a == b


def test_large_cluster_labels_only_hubs():
    g = nx.Graph()
    for i in range(250):
        g.add_node(f"r:{i}", kind="report", type="report", id=str(i), label=str(i), short=str(i), n_reports=1)
    hubs = [f"e:h{i}" for i in range(5)]
    for i, h in enumerate(hubs):
        g.add_node(h, kind="entity", type="address", id=h, label=f"Hubstraat {i}", short=f"Hubstraat {i}", n_reports=50)
    for i in range(250):
        g.add_edge(f"r:{i}", hubs[i % 5], rel="MENTIONS", rels=["MENTIONS"], weight=1.0)
        leaf = f"e:p{i}"
        g.add_node(leaf, kind="entity", type="person", id=leaf, label=f"Persoon {i}", short=f"Persoon {i}", n_reports=1)
        g.add_edge(f"r:{i}", leaf, rel="MENTIONS", rels=["MENTIONS"], weight=1.0)
    labelled = pictures.labelled_nodes(g)
    assert set(hubs) <= labelled and len(labelled) <= pictures.HUB_LABELS
    svg = pictures.cluster_svg(g)
    assert len(re.findall(r'class="lk-lab[ "]', svg)) == len(labelled)
    assert "Hubstraat 0" in svg and "Persoon 17" in svg  # leaves keep their details as a tooltip


def test_unknown_suffix_and_cluster(store, tmp_path):
    with pytest.raises(InputError, match=r"\.png, \.svg or \.html"):
        pictures.draw_cluster(store, "C1", tmp_path / "c1.jpg")
    with pytest.raises(NotFoundError):
        pictures.draw_cluster(store, "nope", tmp_path / "c1.png")


def test_cli_cluster_picture(store, tmp_path):
    out = tmp_path / "c1.html"
    res = CliRunner().invoke(cli.app, ["cluster", "C1", "--picture", str(out), "--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert out.exists() and "Picture:" in res.output
