"""Hand-over dossiers: only the routed cluster, pseudonymised reporters, refusal when not routed, audited."""
from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from report_store import REPORTS, make_store  # noqa: E402

import cli  # noqa: E402
from linkage import audit  # noqa: E402
from linkage.errors import LinkageError, NotFoundError  # noqa: E402
from linkage.report import dossier  # noqa: E402

NOW = dt.datetime(2025, 3, 5, 10, 30, tzinfo=dt.timezone.utc)
OTHER_CLUSTER = ["Petra Jansen", "Dorpsweg", "Kees Bakker", "Acht mensen", "matrassen", "Losse melding", "R5", "R6",
                 "R9", "C2"]


@pytest.fixture()
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LINKAGE_USER", "analist-ana")
    monkeypatch.delenv("LINKAGE_PSEUDONYM_KEY", raising=False)
    s = make_store(tmp_path / "s.db")
    yield s
    s.close()


def _write(store, tmp_path, agency="politie", cluster="C1"):
    return dossier.write_dossier(store, cluster, agency, tmp_path / "out", pdf=False, now=NOW)


def test_dossier_holds_this_cluster_for_this_agency(store, tmp_path):
    result = _write(store, tmp_path)
    assert result.html.name == "dossier-c1-politie.html" and result.pdf is None
    assert (result.reports, result.entities) == (4, 6)
    text = result.html.read_text(encoding="utf-8")
    for heading in ("Overdrachtsdossier", "Samenvatting", "Waarom naar deze instantie", "Meldingen in tijdsvolgorde",
                    "Betrokken entiteiten en verbanden", "Signalen"):
        assert heading in text
    # routing reason for this agency, signals, entities, links, the picture
    assert "Hennepteelt vraagt strafrechtelijk onderzoek." in text
    assert "3 onafhankelijke melders" in text
    for label in ("Jan de Vries", "Kerkstraat 12, 1234 AB Utrecht", "Shisha Lounge Noor B.V.", "12-ABC-3",
                  "NL91ABNA0417164300", "+31612345678"):
        assert label in text
    assert "woont op" in text and "eigenaar van" in text
    assert "<svg" in text and 'class="lk-net"' in text
    # reports in time order, numbered M1..M4
    dates = [m for m in re.findall(r"\d\d-\d\d-2025", text.split("Meldingen in tijdsvolgorde")[1].split("</table>")[0])]
    assert dates == ["10-01-2025", "03-02-2025", "20-02-2025", "01-03-2025"]
    # footer: confidentiality, AVG purpose, version, time
    assert "VERTROUWELIJK" in text and "AVG" in text and "Doelbinding" in text
    assert dossier.linkage_version() in text and "5 maart 2025" in text


def test_no_other_cluster_and_no_other_agency_reasons(store, tmp_path):
    text = _write(store, tmp_path).html.read_text(encoding="utf-8")
    for value in OTHER_CLUSTER:
        assert not re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", text), value
    assert "stroomdiefstal" not in text.lower()  # the netbeheerder's reason stays with the netbeheerder
    assert "Netbeheerder" in text  # but the co-recipient is named, so they can coordinate


def test_no_reporter_identity(store, tmp_path):
    store.conn.execute("UPDATE reports SET description = description || ' Terugbellen via RPT-1002.' "
                       "WHERE report_id = 'R2'")
    text = _write(store, tmp_path).html.read_text(encoding="utf-8")
    for _, _, _, _, reporter_id, _ in REPORTS:
        if reporter_id:
            assert reporter_id not in text
    assert "reporter_id" not in text
    pseudonyms = re.findall(r"melder-[0-9a-f]{8}", text)
    assert len(set(pseudonyms)) == 2  # RPT-1001 (twice) and RPT-1002
    assert "anoniem" in text
    # the same reporter keeps the same pseudonym within an agency, another one for another agency
    again = _write(store, tmp_path).html.read_text(encoding="utf-8")
    assert set(re.findall(r"melder-[0-9a-f]{8}", again)) == set(pseudonyms)
    other = dossier.write_dossier(store, "C1", "netbeheerder", tmp_path / "nb", pdf=False, now=NOW)
    assert not set(re.findall(r"melder-[0-9a-f]{8}", other.html.read_text(encoding="utf-8"))) & set(pseudonyms)


def test_refused_when_not_routed_and_audited(store, tmp_path):
    with pytest.raises(dossier.NotRoutedError, match="not routed to 'politie'") as info:
        _write(store, tmp_path, agency="politie", cluster="C2")
    assert isinstance(info.value, LinkageError)
    assert "Petra" not in str(info.value)
    with pytest.raises(NotFoundError):
        _write(store, tmp_path, cluster="C404")
    assert not (tmp_path / "out").exists()
    log = audit.audit_log(store, command="dossier")
    assert log.iloc[-1]["touched"]["outcome"] == "refused:not_routed"


def test_every_dossier_is_audited(store, tmp_path):
    _write(store, tmp_path, agency="POLITIE")  # agency matched case-insensitively
    log = audit.audit_log(store, command="dossier")
    assert len(log) == 1
    row = log.iloc[0]
    assert row["actor"] == "analist-ana" and row["at"]
    assert row["touched"]["cluster_id"] == "C1" and row["touched"]["agency"] == "politie"
    assert row["touched"]["reports"] == 4 and row["touched"]["report_ids"] == ["R1", "R2", "R3", "R4"]
    assert "Jan de Vries" not in str(row["touched"])
    dossier.write_dossier(store, "C1", "politie", tmp_path / "o2", actor="coordinator", pdf=False)
    assert audit.audit_log(store, command="dossier").iloc[-1]["actor"] == "coordinator"


def test_pdf_with_chromium(store, tmp_path):
    if dossier.find_chromium() is None:
        pytest.skip("chromium is not installed; the dossier is still written as HTML")
    result = dossier.write_dossier(store, "C1", "politie", tmp_path / "out", now=NOW)
    assert result.pdf is not None and result.pdf.read_bytes()[:5] == b"%PDF-"


def test_pdf_skipped_without_chromium(store, tmp_path, monkeypatch):
    monkeypatch.setenv(dossier.CHROMIUM_ENV, str(tmp_path / "no-such-chromium"))
    result = dossier.write_dossier(store, "C1", "politie", tmp_path / "out", now=NOW)
    assert result.pdf is None and "chromium" in result.pdf_note and result.html.exists()


def test_cli_dossier(store, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli.app, ["dossier", "C1", "--agency", "politie", "--out", str(tmp_path / "d"), "--no-pdf",
                                  "--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "dossier-c1-politie.html").exists()
    res = runner.invoke(cli.app, ["dossier", "--help"])
    assert res.exit_code == 0 and "Example:" in res.output


def test_cli_dossier_refusal_exit_code(store, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["dossier", "C2", "--agency", "politie", "--out", str(tmp_path / "d"), "--no-pdf",
                  "--store", str(store.path)])
    assert info.value.code == 1
    assert "not routed" in capsys.readouterr().err


# --- a generated cluster, end to end --------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from linkage.generate import generate
    from linkage.pipeline import run

    base = tmp_path_factory.mktemp("gen")
    generate(400, 11, base / "data")
    db = base / "g.db"
    run([base / "data" / "reports.csv", base / "data" / "mentions.csv"], db)
    return base, db


@pytest.mark.slow
def test_generated_cluster_picture_and_dossier(generated, tmp_path):
    from linkage.report import pictures
    from linkage.store import EmbeddedStore

    base, db = generated
    with EmbeddedStore(db) as s:
        clusters = s.clusters()
        routed = [r for r in clusters.to_dict("records") if dossier._as_list(r.get("agencies"))]
        assert routed, "the generated data should give at least one routed cluster"
        top = routed[0]
        agency = str(dossier._as_list(top["agencies"])[0])
        png = pictures.draw_cluster(s, top["cluster_id"], tmp_path / "top.png")
        html_pic = pictures.draw_cluster(s, top["cluster_id"], tmp_path / "top.html")
        result = dossier.write_dossier(s, top["cluster_id"], agency, tmp_path / "d", pdf=False)
        members = set(s.frame("SELECT report_id FROM report_clusters WHERE cluster_id = ?",
                              (top["cluster_id"],))["report_id"])
        others = set(s.frame("SELECT report_id FROM report_clusters WHERE cluster_id != ?",
                             (top["cluster_id"],))["report_id"])
    assert png.stat().st_size > 1000 and html_pic.stat().st_size > 1000
    text = result.html.read_text(encoding="utf-8")
    reports = pd.read_csv(base / "data" / "reports.csv", dtype=str, keep_default_na=False)
    reporter_ids = {r for r in reports["reporter_id"] if r}
    assert not [r for r in reporter_ids if re.search(rf"(?<![\w-]){re.escape(r)}(?![\w-])", text)]
    # every report of the cluster is numbered in the dossier; no report of another cluster appears
    assert result.reports == len(members) == len(re.findall(r'<td class="ref">M\d+<', text))
    assert not [r for r in others if re.search(rf"(?<![\w-]){re.escape(r)}(?![\w-])", text)]
    assert f"Cluster <b>{top['cluster_id']}</b>" in text
