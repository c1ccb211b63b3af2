"""Resource limits enforced by the kernel for one run (DESIGN.md, "Resource limits").

A run with limits gets a cgroup of its own where this process may create one: cgroup v2 (a
delegated subtree whose ``cgroup.subtree_control`` enables ``memory``, ``pids`` and ``cpu``: our
own cgroup's children), else the v1 ``memory``, ``pids`` and ``cpu`` hierarchies that are writable.
The process is born in it, so every process the job starts is inside, and :mod:`subprocess` keeps
its fast ``vfork`` start (no ``preexec_fn``): under cgroup v1, :meth:`RunLimits.entered` moves the
starting *thread* (v1 places threads one by one, through ``tasks``) into the run's cgroups for the
instant of the start and back, and the child inherits them (no extra program started); under v2,
where a thread cannot leave its process's cgroup, :meth:`RunLimits.prefix` is a one-line
``/bin/sh`` that writes its own pid into ``cgroup.procs`` and then execs the command, same pid.
What no cgroup covers falls back to rlimits set by
util-linux's ``prlimit`` in front of the command (``RLIMIT_AS`` for memory, ``RLIMIT_CPU`` as a
CPU-seconds budget ``cpu x timeout``, ``RLIMIT_FSIZE`` for ``tmp`` without a sandbox), with one
warning per process naming the weaker limits. Nothing samples memory: after the run,
``memory.events`` (v2) or ``memory.oom_control`` (v1) and ``pids.events`` say which limit ended it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from airflow_python_exec.logs import log

#: Set ``PYTHON_EXEC_LIMITS_NO_CGROUPS=1`` to force the rlimits fallback (tests, or a host whose
#: cgroups misbehave). Read once per process.
NO_CGROUPS_VAR = "PYTHON_EXEC_LIMITS_NO_CGROUPS"
CONTROLLERS = ("memory", "pids", "cpu")
#: The CFS period the cpu limit is expressed in, in microseconds (the kernel's default).
CPU_PERIOD_US = 100_000
#: Exit status of a run ended by one of its limits (as GNU ``timeout`` reports a timeout).
LIMIT_EXIT_CODE = 124
#: The sh placing its own pid in the run's cgroups, then becoming the command (args: files, ``--``).
_ENTER = 'for f do case $f in --) shift; break;; esac; echo $$ >"$f" || exit 125; shift; done; exec "$@"'

_counter = itertools.count()
_backend: dict[str, tuple[int, str]] | None = None  # controller -> (cgroup version, our own cgroup's folder)
_warned: set[frozenset[str]] = set()


def show_bytes(value: int) -> str:
    """``value`` bytes in the largest binary unit that keeps it readable: ``512 MiB``, ``1.5 GiB``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.4g} {unit}"
    return f"{value} B"


def cgroup_parents() -> dict[str, tuple[int, str]]:
    """Where runs' cgroups are made: controller -> (1 or 2, our own cgroup's folder), for each of
    ``memory``, ``pids`` and ``cpu`` that this process may limit (looked up once per process).

    cgroup v2 counts when our own cgroup's ``cgroup.subtree_control`` enables the controller (a
    delegated subtree) and the folder is writable; v1 when the controller's hierarchy is mounted and
    our cgroup there is writable.
    """
    global _backend
    if _backend is None:
        _backend = {} if os.environ.get(NO_CGROUPS_VAR) == "1" else _detect()
        for _, folder in set(_backend.values()):
            _sweep(folder)
    return _backend


def _sweep(parent: str) -> None:
    """Remove the runs' cgroups that a worker killed outright left behind (its pid is gone; the
    kernel refuses to remove one that still holds a process)."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith("python_exec-")]
    except OSError:
        return
    for name in names:
        pid, path = name.split("-")[1], os.path.join(parent, name)
        try:
            # A minute old at least: one made an instant ago (its process about to enter) by a worker
            # whose pid this process cannot see (another PID namespace) is never taken.
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}") and time.time() - os.stat(path).st_mtime > 60:
                os.rmdir(path)
        except OSError:
            continue


def _detect() -> dict[str, tuple[int, str]]:
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
        mounts = _cgroup_mounts()
    except OSError:
        return {}
    found: dict[str, tuple[int, str]] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "" and "cgroup2" in mounts:
            own = os.path.join(mounts["cgroup2"], path.lstrip("/"))
            # Our own cgroup, or its parent when we sit in a leaf of a delegated subtree (systemd's
            # Delegate=yes with the worker moved into a child: v2 allows no process beside children).
            for folder in (own, os.path.dirname(own.rstrip("/"))) if path.strip("/") else (own,):
                enabled = _read(os.path.join(folder, "cgroup.subtree_control")).split()
                for name in CONTROLLERS:
                    if name in enabled and name not in found and os.access(folder, os.W_OK):
                        found[name] = (2, folder)
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            if name in CONTROLLERS and name not in found and name in mounts:
                folder = os.path.join(mounts[name], path.lstrip("/"))
                if os.access(folder, os.W_OK):
                    found[name] = (1, folder)
    return found


def _cgroup_mounts() -> dict[str, str]:
    """``cgroup2`` and each v1 controller -> its mount point, from ``/proc/self/mountinfo``."""
    mounts: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields, rest = head.split(), tail.split()
            if len(fields) < 5 or len(rest) < 3 or fields[3] != "/":
                continue  # a cgroup mounted from below its root: paths in /proc/self/cgroup do not apply
            if rest[0] == "cgroup2":
                mounts.setdefault("cgroup2", fields[4])
            elif rest[0] == "cgroup":
                for option in rest[2].split(","):
                    mounts.setdefault(option, fields[4])
    return mounts


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(folder: str, name: str, value: object) -> bool:
    try:
        with open(os.path.join(folder, name), "w") as f:
            f.write(str(value))
        return True
    except OSError:
        return False


@dataclass
class RunLimits:
    """The limits of one run (or one build step), set up before it starts; :meth:`close` after it.

    :param memory: bytes, for the run and everything it starts; :param cpu: cores (``0.5``);
    :param pids: processes and threads at once; :param tmp: bytes (a per-file size limit here; the
    sandbox sizes its ``/tmp`` itself); :param timeout: seconds (only a CPU-seconds budget under
    rlimits; the service ends the run at the timeout); :param sandboxed: the run is in the sandbox.
    """

    memory: int | None = None
    cpu: float | None = None
    pids: int | None = None
    tmp: int | None = None
    timeout: float | None = None
    sandboxed: bool = False
    #: controller -> the run's own cgroup folder.
    groups: dict[str, tuple[int, str]] = field(default_factory=dict)
    rlimits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        wanted = {"memory": self.memory, "pids": self.pids, "cpu": self.cpu}
        parents = cgroup_parents() if any(v is not None for v in wanted.values()) else {}
        name = f"python_exec-{os.getpid()}-{next(_counter)}"
        for controller, value in wanted.items():
            if value is not None and controller in parents:
                version, parent = parents[controller]
                folder = os.path.join(parent, name)
                if self._make(controller, version, folder, value):
                    self.groups[controller] = (version, folder)
        self._fallback()

    @property
    def enforced_by(self) -> str:
        """``cgroup v2``, ``cgroup v1``, ``rlimits``, ``cgroup v1 and rlimits``, or ``none``."""
        kinds = sorted({f"cgroup v{v}" for v, _ in self.groups.values()})
        if self.rlimits:
            kinds.append("rlimits")
        return " and ".join(kinds) or "none"

    def _make(self, controller: str, version: int, folder: str, value: float) -> bool:
        try:
            os.mkdir(folder)
        except OSError:
            return False
        ok = _write_limit(controller, version, folder, value)
        if not ok:
            _remove(folder)
        return ok

    def _fallback(self) -> None:
        """rlimits for what no cgroup covers, and the one warning per process saying what is weaker."""
        weaker: dict[str, str] = {}
        if self.memory is not None and "memory" not in self.groups:
            self.rlimits["as"] = self.memory
            weaker["memory"] = "memory bounds each process's address space, not the job's total"
        if self.cpu is not None and "cpu" not in self.groups:
            if self.timeout is not None:
                self.rlimits["cpu"] = max(1, math.ceil(self.cpu * self.timeout))
                weaker["cpu"] = "cpu is a CPU-seconds budget (cpu x timeout) per process, not a share of a core"
            else:
                weaker["cpu"] = "cpu is not enforced (no timeout to make a CPU-seconds budget of)"
        if self.pids is not None and "pids" not in self.groups:
            weaker["pids"] = "pids is not enforced (RLIMIT_NPROC counts all of the user's processes)"
        if self.tmp is not None and not self.sandboxed:
            self.rlimits["fsize"] = self.tmp  # also what tmp means without a sandbox, cgroups or not
        if self.rlimits and shutil.which("prlimit") is None:
            weaker = {k: f"{k} is not enforced (util-linux's prlimit is missing)" for k in {*weaker, *self.rlimits}}
            self.rlimits.clear()
        key = frozenset(weaker)
        if weaker and key not in _warned:
            _warned.add(key)
            why = "set " + NO_CGROUPS_VAR if os.environ.get(NO_CGROUPS_VAR) == "1" else "no writable cgroup"
            log.warning("resource limits are weaker here (%s): %s", why, "; ".join(weaker.values()))

    def prefix(self) -> list[str]:
        """The argv to put in front of the command: enter the run's cgroups, set the rlimits, then
        ``exec`` the command with the same pid. Empty when the run has no limits."""
        argv: list[str] = []
        procs = [os.path.join(folder, "cgroup.procs") for version, folder in self.groups.values() if version == 2]
        if procs:
            argv += ["/bin/sh", "-c", _ENTER, "sh", *procs, "--"]
        if self.rlimits:
            # CPU: the soft limit sends SIGXCPU (named after the run), the hard one a second later SIGKILL.
            values = {k: f"{v}:{v + 1}" if k == "cpu" else str(v) for k, v in self.rlimits.items()}
            argv += [str(shutil.which("prlimit")), *(f"--{k}={v}" for k, v in values.items()), "--"]
        return argv

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Start the run's process inside this block (v1): the calling thread is in the run's v1
        cgroups for its duration, and back in its own ones after, however the block ends.

        :raises OSError: this thread cannot be moved into a cgroup.
        """
        moves = [(folder, cgroup_parents()[c][1]) for c, (version, folder) in self.groups.items() if version == 1]
        tid, done = str(threading.get_native_id()), []
        try:
            for folder, home in moves:
                _write_or_raise(folder, "tasks", tid)
                done.append(home)
            yield
        finally:
            for home in done:
                if not _write(home, "tasks", tid):  # never leave a worker thread under a job's limits
                    log.error("thread %s could not leave a job's cgroup for %s", tid, home)

    def ended_by(self, exit_code: int, argv0: str, pid: int | None) -> str | None:
        """Which limit ended a run that exited with ``exit_code``, in words, or ``None``.

        ``memory limit 512 MiB reached (the kernel killed python3, pid 4711)``, ``pids limit 256
        reached (12 process starts refused)``, ``cpu-time limit 30 s reached``, ``tmp limit 1 GiB
        reached``. A run that exited 0 was not ended by a limit, whatever it met on the way.
        """
        if exit_code == 0:
            return None
        if self.memory is not None and self._oom_kills() > 0:
            who = ""
            if exit_code == 128 + signal.SIGKILL:  # the script itself (in a sandbox: its pid there is its own)
                who = f"the kernel killed {os.path.basename(argv0)}" + (f", pid {pid}" if pid is not None else "")
            return f"memory limit {show_bytes(self.memory)} reached ({who or 'the kernel killed a process of the job'})"
        refused = self._event("pids", "pids.events", "max")
        if self.pids is not None and refused > 0:
            return f"pids limit {self.pids} reached ({refused} process starts refused)"
        if "cpu" in self.rlimits and exit_code == 128 + signal.SIGXCPU:
            return f"cpu-time limit {self.rlimits['cpu']} s reached (cpu x timeout)"
        if "fsize" in self.rlimits and exit_code == 128 + signal.SIGXFSZ:
            return f"tmp limit {show_bytes(self.rlimits['fsize'])} reached (a file grew past it)"
        return None

    def _oom_kills(self) -> int:
        version = self.groups.get("memory", (0, ""))[0]
        return self._event("memory", "memory.events" if version == 2 else "memory.oom_control", "oom_kill")

    def _event(self, controller: str, name: str, key: str) -> int:
        if controller not in self.groups:
            return 0
        for line in _read(os.path.join(self.groups[controller][1], name)).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
                return int(parts[1])
        return 0

    def close(self) -> None:
        """Kill whatever is still in the run's cgroups and remove them (idempotent)."""
        for _, folder in self.groups.values():
            _remove(folder)
        self.groups.clear()


def _write_or_raise(folder: str, name: str, value: object) -> None:
    with open(os.path.join(folder, name), "w") as f:
        f.write(str(value))


def _write_limit(controller: str, version: int, folder: str, value: float) -> bool:
    if controller == "memory":
        if version == 2:
            _write(folder, "memory.swap.max", 0)  # absent without swap accounting: no swap to escape to
            return _write(folder, "memory.max", int(value))
        ok = _write(folder, "memory.limit_in_bytes", int(value))
        _write(folder, "memory.memsw.limit_in_bytes", int(value))  # absent without swap accounting
        return ok
    if controller == "pids":
        return _write(folder, "pids.max", int(value))
    quota = max(1000, int(value * CPU_PERIOD_US))
    if version == 2:
        return _write(folder, "cpu.max", f"{quota} {CPU_PERIOD_US}")
    return _write(folder, "cpu.cfs_period_us", CPU_PERIOD_US) and _write(folder, "cpu.cfs_quota_us", quota)


def _remove(folder: str, wait_s: float = 2.0) -> None:
    """SIGKILL every process left in ``folder`` (a daemon the job started), then remove the cgroup."""
    deadline = time.monotonic() + wait_s
    killed: set[int] = set()
    while True:
        for pid in map(int, _read(os.path.join(folder, "cgroup.procs")).split()):
            if pid == os.getpid():  # a thread of ours still inside (v1 lists its process): never kill it
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.rmdir(folder)  # empty: every process of it has exited
            _reap(killed)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                log.warning("cgroup %s could not be removed; remove it by hand", folder)
                return
            time.sleep(0.005)  # killed processes take a moment to leave the cgroup


def _reap(pids: set[int]) -> None:
    """Reap those of ``pids`` that were our children (a daemon handed to us, the child subreaper):
    they have exited, and must not stay zombies."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


class Timeout:
    """Call ``stop`` after ``seconds`` of wall time (``None``: never); :attr:`fired` says whether it did.

    One timer thread, no polling; :meth:`cancel` once the run has ended."""

    def __init__(self, seconds: float | None, stop: Callable[[], None]) -> None:
        self.fired = False
        self._stop = stop
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        self._stop()

    def cancel(self) -> None:
        """Forget the timeout (the run ended first)."""
        if self._timer is not None:
            self._timer.cancel()
