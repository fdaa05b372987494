"""The command line: every command has help with an example; ``linkage load`` through the runner and
through ``cli.main`` (exit codes, stderr, no tracebacks)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import cli

runner = CliRunner()

REPORTS = """\
report_id;received_at;category;description
R1;14-03-2025;hennep;Ramen afgeplakt
R2;2025-03-15;woonfraude;
R3;31-02-2025;woonfraude;geen echte datum
"""
MENTIONS = """\
report_id;mention_id;entity_type;name;postcode;bsn
R1;M1;person;Jan de Vries;1234AB;111222334
R2;M2;persoon;Piet;;
R9;M3;person;Kees;;
"""


def command_names() -> list[str]:
    return sorted(typer.main.get_command(cli.app).commands)


@pytest.fixture
def files(tmp_path):
    r = tmp_path / "reports.csv"
    m = tmp_path / "mentions.csv"
    r.write_text(REPORTS, encoding="utf-8")
    m.write_text(MENTIONS, encoding="utf-8")
    return r, m


def test_root_help():
    result = runner.invoke(cli.app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    for name in command_names():
        assert name in result.output


def test_there_are_commands_and_load_is_one():
    assert "load" in command_names()


@pytest.mark.parametrize("name", command_names())
def test_every_command_has_help_with_an_example(name):
    result = runner.invoke(cli.app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"'linkage {name} --help' shows no example"
    assert "Usage" in result.output


def test_load_prints_the_reconcile_line(tmp_path, files):
    db = tmp_path / "out" / "s.db"
    result = runner.invoke(cli.app, ["load", str(files[0]), str(files[1]), "--store", str(db)])
    assert result.exit_code == 0, result.output
    assert "Rows read 6 = loaded 4 + quarantined 2 (reconciles: yes)." in result.output
    assert f"Quarantine: {tmp_path / 'out' / 's.quarantine.csv'}" in result.output
    assert "reports.csv" in result.output and "mentions.csv" in result.output
    assert "warning  mentions.csv, field 'bsn': not a valid BSN" in result.output
    assert "111222334" not in result.output  # warnings never quote the value
    assert db.exists()
    # Again: nothing new, still reconciles.
    again = runner.invoke(cli.app, ["load", str(files[0]), str(files[1]), "--store", str(db)])
    assert again.exit_code == 0, again.output
    assert "Rows read 6 = loaded 4 + quarantined 2 (reconciles: yes)." in again.output


def test_load_json(tmp_path, files):
    db = tmp_path / "s.db"
    result = runner.invoke(cli.app, ["load", str(files[1]), str(files[0]), "--store", str(db), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["reconciles"] is True
    assert (data["rows_read"], data["loaded"], data["quarantined"]) == (6, 4, 2)
    assert data["quarantine_file"] == str(tmp_path / "s.quarantine.csv")
    by_kind = {f["kind"]: f for f in data["files"]}
    assert by_kind["reports"]["rows_read"] == 3 and by_kind["reports"]["quarantined"] == 1
    assert by_kind["mentions"]["new"] == 2 and by_kind["mentions"]["reconciles"] is True
    assert [w["field"] for w in by_kind["mentions"]["warnings"]] == ["bsn"]
    assert [f["kind"] for f in data["files"]] == ["reports", "mentions"]


def test_load_store_from_environment(tmp_path, files, monkeypatch):
    db = tmp_path / "env.db"
    monkeypatch.setenv("LINKAGE_STORE", str(db))
    result = runner.invoke(cli.app, ["load", str(files[0])])
    assert result.exit_code == 0, result.output
    assert f"Store: {db}" in result.output and db.exists()


def test_missing_file_exits_1_with_a_message_and_no_traceback(tmp_path, files, capsys):
    db = tmp_path / "s.db"
    with pytest.raises(SystemExit) as exc:
        cli.main(["load", str(files[0]), str(tmp_path / "nergens.csv"), "--store", str(db)])
    assert exc.value.code == 1
    captured = capsys.readouterr()
    assert "linkage: error:" in captured.err and "nergens.csv: file not found" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert "Rows read" not in captured.out


def test_unreadable_files_exit_1(tmp_path, capsys):
    (tmp_path / "oud.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "vreemd.csv").write_text("a;b\n1;2\n", encoding="utf-8")
    for path, needle in [("oud.xls", ".xlsx"), ("vreemd.csv", "cannot tell what this file holds")]:
        with pytest.raises(SystemExit) as exc:
            cli.main(["load", str(tmp_path / path), "--store", str(tmp_path / "s.db")])
        assert exc.value.code == 1
        err = capsys.readouterr().err
        assert path in err and needle in err and "Traceback" not in err


def test_bad_mapping_exits_1_naming_the_file(tmp_path, files, capsys):
    mapping = tmp_path / "kapot.toml"
    mapping.write_text("[report\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        cli.main(["load", str(files[0]), "--mapping", str(mapping), "--store", str(tmp_path / "s.db")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "kapot.toml" in err and "Traceback" not in err


def test_main_succeeds_on_good_files(tmp_path, files, capsys):
    try:
        cli.main(["load", str(files[0]), str(files[1]), "--store", str(tmp_path / "s.db"), "--json"])
    except SystemExit as exc:  # click may exit 0 explicitly
        assert exc.code in (0, None)
    data = json.loads(capsys.readouterr().out)
    assert data["reconciles"] is True


def test_unknown_option_exits_2(tmp_path, files, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["load", str(files[0]), "--bestaat-niet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--bestaat-niet" in err and "Traceback" not in err
    result = runner.invoke(cli.app, ["load", str(files[0]), "--bestaat-niet"])
    assert result.exit_code == 2


def test_unknown_command_and_missing_argument_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bestaat-niet"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["load"])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_file_that_cannot_be_loaded_leaves_no_new_store(tmp_path, files, capsys):
    (tmp_path / "vreemd.csv").write_text("a;b\n1;2\n", encoding="utf-8")
    db = tmp_path / "nieuw.db"
    with pytest.raises(SystemExit):
        cli.main(["load", str(tmp_path / "vreemd.csv"), "--store", str(db)])
    assert not any(tmp_path.glob("nieuw.db*"))
    with pytest.raises(SystemExit):  # the main job likewise
        cli.main(["run", str(tmp_path / "vreemd.csv"), "--store", str(db)])
    assert not any(tmp_path.glob("nieuw.db*"))
    # an existing store is kept as it was
    with pytest.raises(SystemExit) as ok:
        cli.main(["load", str(files[0]), "--store", str(db)])
    assert ok.value.code in (0, None)
    with pytest.raises(SystemExit):
        cli.main(["load", str(tmp_path / "vreemd.csv"), "--store", str(db)])
    assert db.exists()
    capsys.readouterr()
