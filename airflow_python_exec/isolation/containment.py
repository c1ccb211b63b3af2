"""Containment of a run: every process a script starts ends with the run.

A script's own process group is easy to end (``killpg``), but a process can leave the group
(``setsid``, ``start_new_session=True``, a double fork) and would then be reparented to PID 1 and
outlive the job, still writing to the log pipe or holding files. On Linux the process that runs jobs
therefore makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``, see prctl(2)): an
orphaned descendant is reparented to it instead of PID 1, so once the script has exited every
process the job left behind is a child of ours, and :class:`RunContainment` can find and kill it.

Which of our children belong to a run: each job process gets ``PYTHON_EXEC_RUN_ID=<token>`` in its
environment, inherited by everything it starts; a child carrying the token is the run's. A process
that cleared its environment entirely (or forged a token of no live run) is still the run's when it
started after the script and this is the only run in the process (the operator and the CLI run one
job at a time). A child with an ordinary environment and no token was started by other code of this
process and is left alone, so a job that starts a detached process with a hand-made environment
lacking the token can escape (the bubblewrap sandbox closes that). Everything below a run's process
goes with it. Processes are stopped (SIGSTOP) before they are killed, so one that forks in a loop
cannot outrun the sweep.

Only ``/proc`` is read; no extra dependency. Other platforms get the process-group kill only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

#: Environment variable naming the run a process belongs to.
RUN_ID_VAR = "PYTHON_EXEC_RUN_ID"
#: Rescans while freezing a run's processes (each may uncover children of the ones just stopped).
SWEEP_ROUNDS = 20
#: Seconds, at most, to sweep after a run: killed processes must die and be reaped, none a zombie.
REAP_S = 5.0

_PR_SET_CHILD_SUBREAPER = 36
_running: set[RunContainment] = set()
#: Every run's script until its ``Popen`` has reaped it: never another run's leftover, even as a
#: zombie (reaping it would free its pid and process group id while its run still signals them).
_scripts: set[int] = set()
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

    Call :meth:`release` once the script has been reaped. Create it before the script is started (a run
    counts from then on, so no other run in this
    process takes the new child, still without its token, for an orphan of its own), use :meth:`tag`
    on the script's environment, :meth:`begin` once it has started (with its pid), :meth:`signal` to
    ask the escaped processes to stop, and :meth:`end` once the script has exited (or could not be
    started): it kills and reaps everything the run left. ``end`` is idempotent.
    """

    def __init__(self) -> None:
        self.token = os.urandom(8).hex()
        self._needle = f"{RUN_ID_VAR}={self.token}".encode()
        self._script = 0
        self._started_ticks = 0
        self._active = False
        _running.add(self)  # one atomic operation: no lock (see _escaped)

    def tag(self, env: dict[str, str]) -> dict[str, str]:
        """Return ``env`` with this run's token added (what marks the run's processes)."""
        return {**env, RUN_ID_VAR: self.token}

    def begin(self, script_pid: int) -> None:
        """Start tracking: ``script_pid`` is the script; later children of ours may be the run's."""
        self._script = script_pid
        _scripts.add(script_pid)
        self._started_ticks = _start_ticks(script_pid) or 0
        self._active = script_pid > 1 and become_subreaper()

    def release(self) -> None:
        """The script has been reaped by its ``Popen``: its pid is free for others."""
        _scripts.discard(self._script)

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
        ended: set[int] = set()  # the run's processes that died or were killed, until reaped
        deadline = time.monotonic() + REAP_S
        try:
            while self._active and time.monotonic() < deadline:
                frozen, seen = self._freeze(ended)
                for pid in frozen:
                    _kill(pid, signal.SIGKILL)
                ended.update(frozen)
                _reap(ended)  # those already dead (a sandbox's pid 1, left to us by bwrap) go at once
                # Done only after a scan that found nothing of the run: a process reaped just now
                # may have handed a child over to us after that scan read our children.
                if not seen and not ended:
                    break
                # Let the kernel finish the killed processes and hand their children over to us;
                # on a busy machine that takes a moment, and nothing may stay a zombie.
                time.sleep(0.005)
        finally:
            self._active = False
            _running.discard(self)

    def _freeze(self, dead: set[int]) -> tuple[list[int], bool]:
        """SIGSTOP the run's live processes, scanning again until a scan finds none new: a stopped
        process cannot fork, so one forking in a loop cannot stay ahead of the sweep. The run's
        processes found already dead (zombies waiting for us) are added to ``dead`` for reaping.

        :returns: the processes stopped, and whether any process of the run was found at all."""
        stopped: list[int] = []
        seen = False
        for _ in range(SWEEP_ROUNDS):
            found = {pid: _stat(pid) for pid in self._escaped() if pid not in stopped}
            seen = seen or bool(found)
            for fields in found.values():
                _stop_group(fields)
            dead.update(pid for pid, fields in found.items() if not _running_stat(fields))
            new = [pid for pid, fields in found.items() if _running_stat(fields)]
            if not new:
                break
            for pid in new:
                _kill(pid, signal.SIGSTOP)
            stopped.extend(new)
            _reap(dead)  # thousands of zombies (a fork loop's) would slow every later scan
        return stopped, seen or bool(stopped)

    def _escaped(self) -> list[int]:
        """The run's processes other than the script: below the script, and our children that are
        the run's (orphans handed over to us), with everything below them."""
        # Children first, the runs after: a run joins _running before it forks its script, so every
        # child read here belongs to a run that the snapshot below still holds (or to one that has
        # ended). Taken the other way round, a run starting in between would be missing from the
        # snapshot: its new script, with a token of "no live run", would be judged by time, and
        # SIGKILLed as this run's orphan.
        children = _children(os.getpid())
        # No lock: signal() may run in a signal handler that interrupted this very thread while it
        # changed the set; list() copies it in one step under the GIL.
        runs = list(_running)
        alone = len(runs) <= 1
        tokens = {run.token.encode() for run in runs}
        scripts = set(_scripts)
        found = [pid for pid in children if pid not in scripts and self._belongs(pid, alone, tokens)]
        # While the script runs, what it started is still below it, whatever session it is in.
        return [pid for pid in _with_descendants([*found, self._script]) if pid != self._script]

    def _belongs(self, pid: int, alone: bool, tokens: set[bytes]) -> bool:
        """Whether our child ``pid`` is this run's: it carries the run's token; or it has no usable
        token and no environment at all (cleared, or a zombie's) and started after the script while
        no other run could have started it. A child with an ordinary environment but no token was
        started by other code of this process, never by a job (a job's processes inherit the token).
        A child in the script's process group is the run's whatever its environment: a sandbox's
        pid 1, which ``bwrap`` leaves to exit after itself, comes to us often already a zombie."""
        fields = _stat(pid)
        if fields is not None and fields[2] == str(self._script):  # the group id is the script's pid
            return True
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                entries = f.read().split(b"\0")
        except OSError:  # a zombie's environment is gone
            entries = []
        prefix = RUN_ID_VAR.encode() + b"="
        token = next((e[len(prefix) :] for e in entries if e.startswith(prefix)), None)
        if token is not None and token in tokens:
            return token == self.token.encode()
        if token is None and any(entries):
            return False
        # No environment, or a token of no live run (a script can forge one): judged by time.
        return alone and fields is not None and _ticks(fields) >= self._started_ticks


def _reap(pids: set[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our exited children; forget the reaped
    ones and those that are gone. One that is not (yet) our child stays: its parent, killed too,
    hands it over to us in a moment."""
    for pid in list(pids):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = 0 if _stat(pid) is not None else pid
        if done:
            pids.discard(pid)


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
    return _ticks(fields) if fields else None


def _ticks(fields: list[str]) -> int:
    return int(fields[19])


def _alive(pid: int) -> bool:
    return _running_stat(_stat(pid))


def _running_stat(fields: list[str] | None) -> bool:
    return fields is not None and fields[0] not in ("Z", "X")


def _stop_group(fields: list[str] | None) -> None:
    """SIGSTOP the process group of one of the run's processes (its ``stat`` fields), when that
    group lies outside our own session. A signal to a group reaches every member at once, and a
    fork racing with it fails, so a process forking in a loop (each child exits after its fork, the
    pid moves on every iteration, faster than a scan of ``/proc``) is frozen with its whole
    offspring in one call. The script's session, and every session its processes made, are theirs
    alone; a group of our own session (a process judged the run's by time only could be in one) is
    never signalled."""
    if fields is None:
        return
    group, session = int(fields[2]), int(fields[3])
    if group > 1 and session != os.getsid(0):
        try:
            os.killpg(group, signal.SIGSTOP)
        except (ProcessLookupError, PermissionError):
            pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
