"""Pools of forked worker processes that end when the process that made them dies.

In:  a number of workers and, optionally, an initializer run in each worker.
Out: :func:`fork_pool` gives a :class:`concurrent.futures.ProcessPoolExecutor` on the ``fork`` start method, or
     ``None`` where the platform cannot fork (the caller then does the work in its own process).

Why: the loader, the resolve stage and the scoring stage hand work to forked workers that inherit the large
inputs instead of receiving them pickled. A forked worker waits on a pipe whose writing end it inherited itself,
so it never sees end-of-file: when the job that started it is killed (``kill -9``, the out-of-memory killer),
it would wait forever, holding its share of memory. Each worker of :func:`fork_pool` watches its parent and
exits at once when the parent is gone (its parent process id changes), within ``watch_every`` seconds.

A worker started by :func:`fork_pool` can also ignore Ctrl-C (``ignore_interrupt``): the job that owns the pool
handles the interrupt and stops its workers itself.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Optional

WATCH_EVERY = 0.5  # seconds between a worker's checks that its parent is alive

#: Threads a fork of this process waits for (:func:`fork_waits_for`).
_FORK_WAITS_FOR: set = set()


def fork_waits_for(thread: threading.Thread) -> None:
    """Make every fork of this process (``os.fork``, and so every pool of :func:`fork_pool`) wait until
    ``thread`` has ended, until :func:`fork_need_not_wait` is called for it (the thread does so as its last
    step). For threads that use SQLite (background checkpoints, reads ahead): a child forked while such a
    thread holds one of SQLite's locks would start with that lock held by a thread it does not have."""
    _FORK_WAITS_FOR.add(thread)


def fork_need_not_wait(thread: threading.Thread) -> None:
    """Forks no longer wait for ``thread`` (:func:`fork_waits_for`)."""
    _FORK_WAITS_FOR.discard(thread)


def fork_would_wait() -> bool:
    """Whether a fork now would wait for a thread (:func:`fork_waits_for`) that has not ended yet."""
    return any(thread.is_alive() for thread in list(_FORK_WAITS_FOR))


def _wait_before_fork() -> None:
    for thread in list(_FORK_WAITS_FOR):
        thread.join()


if hasattr(os, "register_at_fork"):  # POSIX
    # through the module's name, so that the function in effect at the fork runs (a test may wrap it)
    os.register_at_fork(before=lambda: _wait_before_fork())


def can_fork() -> bool:
    """Whether this platform has the ``fork`` start method (Linux, macOS; not Windows)."""
    import multiprocessing as mp

    return "fork" in mp.get_all_start_methods()


def fork_pool(workers: int, initializer: Optional[Callable[[], Any]] = None, ignore_interrupt: bool = False,
              watch_every: float = WATCH_EVERY):
    """A ``ProcessPoolExecutor`` of ``workers`` forked processes that exit when this process dies.

    ``initializer`` (no arguments) runs in each worker after the parent watch starts; with ``ignore_interrupt``
    the workers ignore SIGINT. ``None`` where the platform cannot fork."""
    if not can_fork():  # pragma: no cover - Linux has fork
        return None
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_start_worker,
                               initargs=(os.getpid(), watch_every, ignore_interrupt, initializer))


def _start_worker(parent: int, watch_every: float, ignore_interrupt: bool,
                  initializer: Optional[Callable[[], Any]]) -> None:
    if ignore_interrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:  # the parent died between the fork and here
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent, watch_every), name="linkage-parent-watch",
                     daemon=True).start()
    if initializer is not None:
        initializer()


def _watch_parent(parent: int, every: float) -> None:
    """Exit this worker as soon as its parent is gone (an orphan is re-parented, so its parent id changes)."""
    while True:
        time.sleep(every)
        if os.getppid() != parent:
            os._exit(1)
