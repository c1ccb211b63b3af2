"""Containment of a run: every process a script starts ends with the run.

A script's own process group is easy to end (``killpg``), but a process can leave the group
(``setsid``, ``start_new_session=True``, a double fork) and would then be reparented to PID 1 and
outlive the job, still writing to the log pipe or holding files. On Linux the process that runs jobs
therefore makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``, see prctl(2)): an
orphaned descendant is reparented to it instead of PID 1, so once the script has exited every
process the job left behind is a child of ours, and :class:`RunContainment` can find and kill it.

Which of our children belong to a run: each job process gets ``PYTHON_EXEC_RUN_ID=<token>`` in its
environment, inherited by everything it starts; a child carrying the token is the run's. A process
that cleared its environment carries none; it is still the run's when it was started after the
script and this is the only run in the process (the operator and the CLI run one job at a time).
Everything below such a process (its own children) goes with it.

Only ``/proc`` is read; no extra dependency. Other platforms get the process-group kill only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import weakref

#: Environment variable naming the run a process belongs to.
RUN_ID_VAR = "PYTHON_EXEC_RUN_ID"
#: Rounds of "find what is left, kill it" after a run: each round may uncover processes that a
#: dying parent handed over to us.
SWEEP_ROUNDS = 20

_PR_SET_CHILD_SUBREAPER = 36
_lock = threading.Lock()
_running: set[RunContainment] = set()
#: Runs whose process is being started (tagged, not yet begun). While one is, no run is alone: its
#: child may already exist, still without its token (forked, not yet exec'd). Weak, so a start that
#: fails (``Popen`` raising) leaves nothing behind.
_starting: weakref.WeakSet[RunContainment] = weakref.WeakSet()
_subreaper = False


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux; once per process, later calls are free).

    :returns: ``True`` when orphaned descendants are now reparented to this process.
    """
    global _subreaper
    if _subreaper or not sys.platform.startswith("linux"):
        return _subreaper
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        _subreaper = prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _subreaper = False
    return _subreaper


class RunContainment:
    """The processes of one run, found through ``/proc`` and ended together.

    Use :meth:`tag` on the script's environment before it starts, :meth:`begin` once it has started
    (with its pid), :meth:`signal` to ask the escaped processes to stop, and :meth:`end` once the
    script has exited: it kills and reaps everything the run left. ``end`` is idempotent.
    """

    def __init__(self) -> None:
        self.token = os.urandom(8).hex()
        self._needle = f"{RUN_ID_VAR}={self.token}".encode()
        self._script = 0
        self._started_ticks = 0
        self._active = False

    def tag(self, env: dict[str, str]) -> dict[str, str]:
        """Return ``env`` with this run's token added (what marks the run's processes); the run
        counts as starting until :meth:`begin`."""
        with _lock:
            _starting.add(self)
        return {**env, RUN_ID_VAR: self.token}

    def begin(self, script_pid: int) -> None:
        """Start tracking: ``script_pid`` is the script; later children of ours may be the run's."""
        self._script = script_pid
        self._started_ticks = _start_ticks(script_pid) or 0
        self._active = script_pid > 1 and become_subreaper()
        with _lock:
            if self._active:
                _running.add(self)
            _starting.discard(self)  # last: a reader never sees this run in neither set

    def signal(self, sig: int) -> list[int]:
        """Send ``sig`` to the run's processes outside the script's group; return their pids.

        A no-op once :meth:`end` has run: the script's pid may then belong to another process."""
        if not self._active:
            return []
        pids = self._escaped()
        for pid in pids:
            _kill(pid, sig)
        return pids

    def end(self) -> None:
        """Kill (SIGKILL) and reap every process the run left; call once the script has exited."""
        if not self._active:
            return
        try:
            for _ in range(SWEEP_ROUNDS):
                pids = self._escaped()
                live = [pid for pid in pids if _alive(pid)]
                for pid in live:
                    _kill(pid, signal.SIGKILL)
                _reap(pids)
                if not live:
                    break
                time.sleep(0.005)  # let the kernel hand the killed processes' children over to us
        finally:
            self._active = False
            with _lock:
                _running.discard(self)

    def _escaped(self) -> list[int]:
        """The run's processes other than the script: below the script, and our children that are
        the run's (orphans handed over to us), with everything below them."""
        children = _children(os.getpid())
        # Not alone while another run is being started: its child may not carry its token yet. Read
        # after listing the children (a run tags itself before it forks), ``_starting`` before
        # ``_running`` (begin() adds to the one before leaving the other), and without the lock:
        # signal() may run in a signal handler that interrupted a holder of it.
        alone = not len(_starting) and len(_running) <= 1
        found = [pid for pid in children if pid != self._script and self._belongs(pid, alone)]
        # While the script runs, what it started is still below it, whatever session it is in.
        return [pid for pid in _with_descendants([*found, self._script]) if pid != self._script]

    def _belongs(self, pid: int, alone: bool) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # a zombie's environment is gone
            environ = b""
        if environ:
            if self._needle in environ.split(b"\0"):
                return True
            if RUN_ID_VAR.encode() + b"=" in environ:
                return False  # another run's process
        # No token (cleared environment, or a zombie whose environment is gone): ours only when
        # it started after the script and no other run could have started it.
        ticks = _start_ticks(pid)
        return alone and ticks is not None and ticks >= self._started_ticks



def _reap(pids: list[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our exited children (no zombies left)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: its own parent reaps it
            pass


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's), from ``/proc/<pid>/task/*/children``."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _with_descendants(pids: list[int]) -> list[int]:
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo.extend(_children(pid))
    return seen


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (proc(5), ``stat`` field 22)."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
