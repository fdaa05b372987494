"""linkage.forking: pools of forked workers that end with their parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linkage.forking import can_fork, fork_pool

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs the fork start method")

_SEEN: list[str] = []


def _mark() -> None:
    _SEEN.append("initialised")


def _seen() -> tuple[int, list[str]]:
    return os.getpid(), list(_SEEN)


def test_pool_runs_work_in_forked_workers_after_the_initializer():
    pool = fork_pool(1, initializer=_mark)
    with pool:
        pid, seen = pool.submit(_seen).result(timeout=30)
    assert pid != os.getpid()
    assert seen == ["initialised"]
    assert _SEEN == []  # the initializer ran in the worker only


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie left for a non-reaping init counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in state


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_workers_exit_when_their_parent_is_killed():
    code = """
import os, sys, time
from linkage.forking import fork_pool
pool = fork_pool(1, watch_every=0.1)
print(pool.submit(os.getpid).result(), flush=True)
pool.submit(time.sleep, 60)   # busy in a task ...
time.sleep(60)                # ... when this parent is killed
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    worker = int(proc.stdout.readline())
    try:
        assert not _gone(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while not _gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(worker), "an orphaned worker kept running"
    finally:
        if not _gone(worker):
            os.kill(worker, signal.SIGKILL)


def test_fork_would_wait_while_a_thread_forks_wait_for_runs(monkeypatch):
    """:func:`fork_would_wait` is true while a thread of :func:`fork_waits_for` runs, false once it has ended
    (or forks need not wait for it), and false for a live thread no fork waits for."""
    import threading

    import linkage.forking
    from linkage.forking import fork_need_not_wait, fork_waits_for, fork_would_wait

    monkeypatch.setattr(linkage.forking, "_FORK_WAITS_FOR", set())  # no thread of an earlier test counts
    go = threading.Event()
    thread = threading.Thread(target=go.wait)
    fork_waits_for(thread)
    other = threading.Thread(target=go.wait)
    try:
        other.start()
        assert not fork_would_wait()  # a live thread, but not one forks wait for (nor started yet)
        thread.start()
        assert fork_would_wait()
        go.set()
        thread.join()
        assert not fork_would_wait()
    finally:
        go.set()
        other.join()
        fork_need_not_wait(thread)
