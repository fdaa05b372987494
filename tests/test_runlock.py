"""The store writer lock (linkage.runlock): one run, load or purge per store at a time."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from linkage.errors import StoreError
from linkage.runlock import exclusive, lock_path

HOLD = """
import sys, time
from linkage.runlock import exclusive
with exclusive(sys.argv[1], "run"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(db):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_and_the_lock_is_released_after(tmp_path):
    db = tmp_path / "s.db"
    with exclusive(db, "run"):
        assert lock_path(db).exists()
        with pytest.raises(StoreError) as err:
            with exclusive(db, "purge"):
                pass
        assert str(db) in str(err.value) and "linkage purge" in str(err.value)
        assert f"process {os.getpid()}" in str(err.value) and "'linkage run'" in str(err.value)
    assert not lock_path(db).exists()
    with exclusive(db, "load"):  # free again
        pass


def test_released_when_the_body_raises(tmp_path):
    db = tmp_path / "s.db"
    with pytest.raises(ValueError):
        with exclusive(db, "run"):
            raise ValueError("boom")
    with exclusive(db, "run"):
        pass


def test_another_process_holds_it_until_it_dies(tmp_path):
    db = tmp_path / "s.db"
    proc = _holder(db)
    try:
        with pytest.raises(StoreError, match=f"process {proc.pid}"):
            with exclusive(db, "run"):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the operating system dropped the dead holder's lock; the stale file does not block
    assert lock_path(db).exists()
    with exclusive(db, "run"):
        pass
    assert not lock_path(db).exists()


def _cli_error(capsys, *args: str) -> tuple[int, str]:
    import cli

    with pytest.raises(SystemExit) as info:
        cli.main(list(args))
    return info.value.code, capsys.readouterr().err


def test_run_load_and_purge_refuse_a_store_another_job_changes(tmp_path, capsys):
    from pathlib import Path

    from linkage.pipeline import load_stage

    examples = Path(__file__).resolve().parent.parent / "examples"
    db = tmp_path / "s.db"
    load_stage([examples / "reports.csv"], db)
    before = sqlite3_count(db)
    proc = _holder(db)
    try:
        for args in (["run", str(examples / "mentions.csv")], ["load", str(examples / "mentions.csv")],
                     ["purge", "--older-than", "1d"]):
            code, text = _cli_error(capsys, *args, "--store", str(db))
            assert code == 1 and "another linkage job is changing this store" in text, text
            assert f"process {proc.pid}" in text and f"linkage {args[0]}" in text
        # a dry run only reads
        code, _ = _cli_error(capsys, "purge", "--older-than", "1d", "--dry-run", "--store", str(db))
        assert code in (0, None)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert sqlite3_count(db) == before  # nothing was touched
    code, text = _cli_error(capsys, "run", str(examples / "mentions.csv"), "--store", str(db))
    assert code in (0, None), text


def sqlite3_count(db) -> tuple[int, int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("reports", "mentions"))


def test_a_forked_child_left_behind_does_not_keep_the_store_locked(tmp_path):
    """A worker forked while the lock is held (and orphaned when its parent is killed) holds no copy of it."""
    db = tmp_path / "s.db"
    code = """
import os, sys, time
from linkage.runlock import exclusive
with exclusive(sys.argv[1], "run"):
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(w, b"x")  # running: its fork hook has run
        time.sleep(60)
        os._exit(0)
    os.read(r, 1)  # (on a busy machine the child may not run before the parent is killed)
    print(child, flush=True)
    time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    child = int(proc.stdout.readline())
    try:
        with pytest.raises(StoreError):
            with exclusive(db, "run"):
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with exclusive(db, "run"):  # the child still runs, the store is free
            pass
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
