"""bench_run's store digest, the check behind "this change writes the same store": equal for two loads of
the same files, different when one value, one row's rowid or the quarantine file differs."""
from __future__ import annotations

from bench.bench_run import store_digest
from linkage.store import EmbeddedStore
from loaders import load_files

REPORTS = "report_id;received_at;category\nR1;2025-03-14;hennep\nR2;2025-03-15;woonfraude\nR3;nope;hennep\n"
MENTIONS = "report_id,mention_id,entity_type,name\nR1,M1,person,Jan de Vries\nR2,M2,person,Piet\nR9,M9,person,X\n"


def _load(folder, reports=REPORTS):
    """A new store in ``folder`` from these files (rows name their file: compare loads of one folder)."""
    folder.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        (folder / f"s.db{suffix}").unlink(missing_ok=True)
    (folder / "reports.csv").write_text(reports, encoding="utf-8")
    (folder / "mentions.csv").write_text(MENTIONS, encoding="utf-8")
    with EmbeddedStore(folder / "s.db") as store:
        load_files([folder / "reports.csv", folder / "mentions.csv"], store)
    return folder / "s.db"


def test_same_files_same_digest_and_every_table_listed(tmp_path):
    a, b = store_digest(_load(tmp_path)), store_digest(_load(tmp_path))
    assert a["reports"][0] == 2 and a["mentions"][0] == 2 and a["quarantine"][0] == 2
    assert {"reports", "mentions", "mention_links", "quarantine", "meta", "quarantine.csv"} <= set(a)
    assert a["quarantine.csv"][1] is not None
    assert a == b


def test_a_changed_value_or_row_order_changes_the_digest(tmp_path):
    base = store_digest(_load(tmp_path))
    other = store_digest(_load(tmp_path, REPORTS.replace("woonfraude", "hennep")))
    assert other["reports"] != base["reports"] and other["mentions"] == base["mentions"]
    swapped = REPORTS.splitlines()
    swapped = "\n".join([swapped[0], swapped[2], swapped[1], swapped[3]]) + "\n"
    moved = store_digest(_load(tmp_path, swapped))
    assert moved["reports"][0] == base["reports"][0] and moved["reports"] != base["reports"]  # rowids and source rows differ
