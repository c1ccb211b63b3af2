"""Entering a run's cgroup v1 hierarchies before its start (DESIGN.md, "Resource limits").

Under cgroup v1 a run's process is born in its cgroups because the thread that starts it is moved
there for the instant of the start (:meth:`.limits.RunLimits.entered`). Such a move (a write to
``tasks``) takes the kernel's ``cgroup_threadgroup_rwsem`` for writing, which first waits for an RCU
grace period when no other move happened during the last one: 5 to 20 ms on an idle machine, the
whole of what limits added to a warm start. A :class:`CgroupEntry` makes that move on a thread of
its own as soon as the run's limits are known, while the run is being prepared (its environment
found, its files and command made); the script is then started on that thread, already inside, and
the thread moves back out at once (the move back finds the lock's fast path still open).

The thread (a one-thread :class:`~concurrent.futures.ThreadPoolExecutor`, which hands back the
start's result or exception) lives until :meth:`CgroupEntry.close`, after the run: the kernel's
parent-death signal (``setpriv --pdeathsig``, :mod:`.parent_death`) follows the *thread* that forked
a process, so the script would be killed the moment a thread that started it ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from airflow_python_exec.logs import log

T = TypeVar("T")


class CgroupEntry:
    """A thread that moves itself into a run's v1 cgroups now and starts the run's process there later.

    :param moves: ``(the run's cgroup folder, the folder to return to)`` for each v1 hierarchy.
    """

    def __init__(self, moves: list[tuple[str, str]]) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="python-job-cgroup-entry")
        self._entered = self._thread.submit(_enter, moves)
        self._left = False

    def start(self, task: Callable[[], T]) -> T:
        """Call ``task`` (a ``subprocess.Popen``) on the thread, inside the run's cgroups, and return
        its result; the thread then leaves them. Called at most once.

        :raises OSError: the thread could not enter one of the cgroups (nothing was started).
        :raises Exception: whatever ``task`` raised.
        """
        homes = self._entered.result()  # the OSError of a failed move
        try:
            return self._thread.submit(task).result()
        finally:
            self._leave(homes)

    def close(self) -> None:
        """Let the thread end once it has left the run's cgroups (waited for: a cgroup with one of
        our threads inside lists our own pid, which its removal would kill). Idempotent."""
        try:
            self._leave(self._entered.result())
        except OSError:
            pass  # never entered: _enter left again what it had entered
        self._thread.shutdown(wait=True)

    def _leave(self, homes: list[str]) -> None:
        if not self._left:
            self._left = True
            self._thread.submit(_move, homes).result()


def _enter(moves: list[tuple[str, str]]) -> list[str]:
    """On the entry thread: join each run cgroup; return the folders to go back to.

    :raises OSError: a move failed (the moves made are undone first)."""
    homes: list[str] = []
    try:
        for folder, home in moves:
            with open(f"{folder}/tasks", "w") as tasks:
                tasks.write(str(threading.get_native_id()))
            homes.append(home)
    except OSError:
        _move(homes)
        raise
    return homes


def _move(homes: list[str]) -> None:
    """On the entry thread: go back to our own cgroups (never stay under a job's limits unsaid)."""
    tid = str(threading.get_native_id())
    for home in homes:
        try:
            with open(f"{home}/tasks", "w") as tasks:
                tasks.write(tid)
        except OSError:
            log.error("thread %s could not leave a job's cgroup for %s", tid, home)
