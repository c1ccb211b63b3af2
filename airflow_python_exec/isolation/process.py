"""A script's process: its own process group, merged output read line by line, and stopping.

The script runs in a new session (so a new process group) with stdout and stderr merged into one
pipe. :meth:`JobProcess.stream` reads that pipe in chunks and hands out lines as they arrive:
memory stays bounded whatever the output size (a line longer than ``MAX_LINE_CHARS`` comes out in
pieces, secrets replaced before it is cut), invalid UTF-8 is replaced with U+FFFD rather than
failing.

When the script ends, whatever it left running is killed: its process group (while the script's
zombie still holds the group id, so no unrelated group can be hit) and, on Linux, every process that
left the group (see :mod:`airflow_python_exec.isolation.containment`), so a background child can neither outlive
the job nor hold the log pipe open. Output is drained for at most ``DRAIN_S`` seconds after the
script ended, whatever still writes. On Linux the script is also killed if the process that started
it dies without cleaning up (parent-death signal). :meth:`JobProcess.stop` may
be called from any thread or from a signal handler: it sends a signal, notes the time and writes one
byte to a wake-up pipe; the reading loop escalates to SIGKILL after the grace period.

A script started through a *launcher* (the bubblewrap sandbox: ``bwrap`` runs the script as a
descendant, in its own PID namespace, in the same process group) is asked to stop differently: a
SIGTERM to the whole group would reach ``bwrap`` too, which dies of it at once, and its
``--die-with-parent`` then SIGKILLs the sandbox before the script's own SIGTERM handler has run. So
SIGTERM goes to the launcher's descendants only (the sandbox's pid 1 ignores it: the kernel delivers
to a namespace's init only the signals it handles), and the script's exit status comes back through
``bwrap``; SIGKILL still goes to the whole group, ``bwrap`` included, which ends the sandbox. The
script's end is watched past the launcher too (:mod:`airflow_python_exec.isolation.launcher_watch`): a
``bwrap`` that does not follow its script out (the job stopped the sandbox's pid 1) is killed.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from airflow_python_exec.isolation.containment import RunContainment
from airflow_python_exec.isolation.env_handoff import Handoff, shell_would_interpret
from airflow_python_exec.isolation.launcher_watch import wait_launched
from airflow_python_exec.isolation.limits import RunLimits
from airflow_python_exec.isolation.parent_death import PREEXEC_FOR, pdeathsig_prefix

CHUNK_BYTES = 64 * 1024
#: Longest line handed out in one piece, in characters.
MAX_LINE_CHARS = 64 * 1024
#: Seconds a stopped script gets between SIGTERM and SIGKILL.
STOP_GRACE_S = 5.0
#: Seconds to keep draining output after the script ended and its leftovers were killed; a process
#: we could not kill (another user's, or one out of reach) may still hold the pipe, and we do not
#: wait for it: the run ends at most this long after its script.
DRAIN_S = 2.0

_EXITED, _STOP = b"x", b"s"


def _check_executable(argv0: str, env: dict[str, str], cwd: Path) -> None:
    """Raise the ``OSError`` that starting ``argv0`` directly would raise: with setpriv in front,
    a missing or non-executable command would otherwise surface as setpriv's exit status 127."""
    if os.sep in argv0:
        path = os.path.join(cwd, argv0)  # as exec sees it, from the child's cwd
    else:
        import shutil

        found = shutil.which(argv0, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
        path = found
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), argv0)


class JobProcess:
    """One started script.

    :param argv: the command; ``argv[0]`` is executed directly, never through a shell.
    :param env: the complete environment of the script (never of the wrappers that start it: see
        :mod:`airflow_python_exec.isolation.env_handoff`).
    :param cwd: its working directory.
    :param grace_s: seconds between SIGTERM and SIGKILL when stopped.
    :param launcher: a command that starts ``argv`` as its descendant (``bwrap ... --``); stops then
        send SIGTERM past it (see the module's docstring).
    :param wrapper: commands that ``exec`` the rest with the same pid, put before the launcher (the
        resource limits' cgroup entry and ``prlimit``, see :mod:`airflow_python_exec.isolation.limits`).
    :param limits: the run's limits: the process is started inside their :meth:`entered` block.
    :raises OSError: the executable cannot be started.
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        grace_s: float = STOP_GRACE_S,
        launcher: tuple[str, ...] | list[str] = (),
        wrapper: tuple[str, ...] | list[str] = (),
        limits: RunLimits | None = None,
    ) -> None:
        self.grace_s = grace_s
        self._launcher = tuple(launcher)
        self.stopped = False
        self._stop_at: float | None = None
        self._exited = False  # set by the reaper once the script has ended and its leftovers died
        self._killed = False  # SIGKILL sent: no deadline left to wake up for
        self._script_status: int | None = None  # a launched script's status when its launcher was killed
        self._containment = RunContainment()
        self._closed = False
        self._wake_lock = threading.Lock()
        try:
            prefix = pdeathsig_prefix()
            if prefix and not self._launcher and shell_would_interpret(env):
                # The handoff's /bin/sh would act on one of the job's variables (a non-numeric
                # OPTIND stops dash): start the script itself, the parent-death signal set in the
                # child, its environment exactly the job's (DESIGN.md "Reach: what a job may name").
                prefix = []
            wrapper = [*wrapper, *(limits.prefix() if limits is not None else ())]
            if prefix or wrapper:
                _check_executable(argv[0], env, cwd)
            # The wrappers run with the worker's cleaned environment; the job's reaches its script only.
            with (
                limits.entered() if limits is not None else contextlib.nullcontext(),
                Handoff([*prefix, *wrapper], self._launcher, argv, self._containment.tag(env)) as start,
            ):
                self._popen = self._start(start, cwd, setpriv=bool(prefix))
        except BaseException:
            self._containment.end()  # nothing started: only forget the run
            raise
        self.pid = self._popen.pid
        self._containment.begin(self.pid)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # Only a thread blocked in waitid learns at once that the script ended while a child it
        # left behind still holds the pipe open.
        self._reaper = threading.Thread(target=self._reap, name=f"python-job-reaper-{self.pid}", daemon=True)
        self._reaper.start()

    def _start(self, start: Handoff, cwd: Path, setpriv: bool) -> subprocess.Popen[bytes]:
        """Start the hand-off's command; without ``setpriv`` the child sets its parent-death signal itself."""
        return subprocess.Popen(
            start.argv,
            env=self._containment.tag(start.env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=start.pass_fds,
            preexec_fn=PREEXEC_FOR(os.getpid()) if PREEXEC_FOR and not setpriv else None,
        )

    def stream(self, redact: Callable[[str], str] | None = None, hold: int = 0) -> Iterator[str]:
        """Yield output lines (without the newline) until the pipe closes; handles stop escalation.

        :param redact: applied to every line before it is cut into pieces or handed out.
        :param hold: characters of an unfinished long line kept back so that a value up to
            ``hold + 1`` characters long is whole when ``redact`` sees it.
        """
        assert self._popen.stdout is not None
        out = self._popen.stdout.fileno()
        lines = _Lines(redact, hold)
        drain_until: float | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ, "out")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                events = sel.select(self._timeout(drain_until))
                now = time.monotonic()
                self._escalate_if_due(now)
                if drain_until is not None and now >= drain_until:
                    yield from lines.flush()  # a process outside the group holds the pipe
                    return
                for key, _ in events:
                    if key.data == "wake":
                        if _EXITED in os.read(self._wake_r, 64):
                            drain_until = now + DRAIN_S
                        continue
                    data = os.read(out, CHUNK_BYTES)
                    if not data:
                        yield from lines.flush()
                        return
                    yield from lines.feed(data)

    def wait(self) -> int:
        """Wait for the script and return its exit status; a signal N is reported as 128 + N."""
        while self._reaper.is_alive():  # returns as soon as the reaper is done
            self._reaper.join(timeout=0.05)
            self._escalate_if_due(time.monotonic())
        code = self._popen.wait()
        self._containment.release()
        if self._script_status is not None:
            code = self._script_status
        return 128 - code if code < 0 else code

    def stop(self) -> None:
        """Ask the whole process group to end: SIGTERM now, SIGKILL after ``grace_s`` seconds.

        Safe from any thread and from a signal handler; a no-op once the script has ended.
        """
        self.stopped = True
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        if not self._exited:
            self._terminate()
        self._wake(_STOP)

    def kill(self) -> None:
        """End the process group now and reap the script (used when the reader is interrupted)."""
        try:
            self._terminate()
            self._reaper.join(timeout=self.grace_s)
        finally:
            if self._reaper.is_alive():  # the script is still running: its group id is still its own
                self._signal_group(signal.SIGKILL)
                self._reaper.join()
            self._popen.wait()
            self._containment.release()

    def close(self) -> None:
        """Release the pipes. Call after :meth:`wait` or :meth:`kill`."""
        self._reaper.join()
        with self._wake_lock:  # no stop() is writing to the wake-up pipe while it closes
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
        if self._popen.stdout is not None:
            self._popen.stdout.close()

    def _timeout(self, drain_until: float | None) -> float | None:
        deadlines = [t for t in (drain_until, self._kill_at()) if t is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _kill_at(self) -> float | None:
        if self._stop_at is None or self._exited or self._killed:
            return None
        return self._stop_at + self.grace_s

    def _escalate_if_due(self, now: float) -> None:
        kill_at = self._kill_at()
        if kill_at is not None and now >= kill_at and self._reaper.is_alive():
            self._killed = True
            self._signal_group(signal.SIGKILL)

    def _reap(self) -> None:
        """Wait for the script to end without reaping it, end its leftovers, then wake the reader."""
        if self._launcher:
            # A launcher whose script has ended but which does not follow (the job stopped the
            # sandbox's pid 1) is killed; the script's own status is the run's.
            try:
                kill, self._script_status = wait_launched(self.pid)
            except Exception:  # noqa: BLE001 - the watch is a safety net: never the reason a run hangs
                kill = False
            if kill:
                self._signal_group(signal.SIGKILL)
        if hasattr(os, "waitid"):
            try:
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                self._signal_group(signal.SIGKILL)  # the zombie leader still holds the group id
            except ChildProcessError:
                pass  # already reaped: the group id may belong to someone else now
        else:  # pragma: no cover - platforms without waitid (macOS)
            self._popen.wait()
            self._signal_group(signal.SIGKILL)
        self._containment.end()
        self._exited = True
        self._wake(_EXITED, blocking=True)  # this wake-up must not be lost: the reader may need it

    def _wake(self, note: bytes, blocking: bool = False) -> None:
        # Non-blocking by default: a signal handler must never wait for close() on the thread it
        # interrupted. Losing a stop note is harmless (the stop already signalled the group).
        if not self._wake_lock.acquire(blocking=blocking):
            return
        try:
            if not self._closed:
                os.write(self._wake_w, note)
        except OSError:  # full: the reader is already awake
            pass
        finally:
            self._wake_lock.release()

    def _terminate(self) -> None:
        """SIGTERM to the script's group and to what left it; past the launcher when there is one."""
        if not self._launcher:
            self._signal_group(signal.SIGTERM)
            self._containment.signal(signal.SIGTERM)
        elif not self._containment.signal(signal.SIGTERM):
            # Nothing started below the launcher yet (or no /proc): no handler to give a chance to.
            self._signal_group(signal.SIGTERM)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class _Lines:
    """Bytes in, lines out: incremental UTF-8 decoding, ``\\n`` splitting, redaction, long-line pieces."""

    def __init__(self, redact: Callable[[str], str] | None, hold: int) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._redact = redact or (lambda line: line)
        self._hold = hold
        self._pending = ""

    def feed(self, data: bytes) -> list[str]:
        """The complete lines ``data`` finishes, plus the head of an over-long unfinished one."""
        lines = (self._pending + self._decoder.decode(data)).split("\n")
        self._pending = lines.pop()
        out = [piece for line in lines for piece in _pieces(self._redact(line.removesuffix("\r")))]
        while len(self._pending) >= MAX_LINE_CHARS + self._hold:
            # Any value starting in the head lies wholly inside the pending text: mask, then cut.
            self._pending = self._redact(self._pending)
            if len(self._pending) < MAX_LINE_CHARS + self._hold:
                break
            out.append(self._pending[:MAX_LINE_CHARS])
            self._pending = self._pending[MAX_LINE_CHARS:]
        return out

    def flush(self) -> list[str]:
        """What is left once the output has ended (a last line without a newline)."""
        tail, self._pending = self._pending + self._decoder.decode(b"", final=True), ""
        return list(_pieces(self._redact(tail))) if tail else []


def _pieces(line: str) -> Iterator[str]:
    """``line`` as consecutive pieces of at most ``MAX_LINE_CHARS`` (an empty line stays one line)."""
    if len(line) <= MAX_LINE_CHARS:
        yield line
        return
    for start in range(0, len(line), MAX_LINE_CHARS):
        yield line[start : start + MAX_LINE_CHARS]
