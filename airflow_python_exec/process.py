"""A script's process: its own process group, merged output read line by line, and stopping.

The script runs in a new session (so a new process group) with stdout and stderr merged into one
pipe. :meth:`JobProcess.stream` reads that pipe in chunks and hands out lines as they arrive:
memory stays bounded whatever the output size (a line longer than ``max_line_chars`` comes out in
pieces), invalid UTF-8 is replaced with U+FFFD rather than failing.

When the script ends, whatever it left running in its process group is killed, so a background
child can neither outlive the job nor hold the log pipe open. On Linux the script is also killed
if the process that started it dies without cleaning up (parent-death signal). :meth:`JobProcess.stop` may be called
from any thread or from a signal handler: it only sends a signal and writes one byte to a wake-up
pipe (both async-signal-safe); the reading loop escalates to SIGKILL after the grace period.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK_BYTES = 64 * 1024
#: Longest line handed out in one piece, in characters.
MAX_LINE_CHARS = 64 * 1024
#: Seconds a stopped script gets between SIGTERM and SIGKILL.
STOP_GRACE_S = 5.0
#: Seconds to keep draining output after the script ended and its group was killed; a process that
#: left the group (setsid) may still hold the pipe, and we do not wait for it forever.
DRAIN_S = 2.0

_EXITED, _STOP = b"x", b"s"


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` asking the kernel to SIGKILL the child if its parent dies.

    A parent killed outright (SIGKILL, OOM killer) gets no chance to stop its children; without
    this, a script or a uv install would run on as an orphan and could write into an environment
    that the next run is rebuilding. prctl is looked up here, before any fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill)


_PREEXEC = _die_with_parent()


class JobProcess:
    """One started script.

    :param argv: the command; ``argv[0]`` is executed directly, never through a shell.
    :param env: the complete child environment.
    :param cwd: its working directory.
    :param grace_s: seconds between SIGTERM and SIGKILL when stopped.
    :raises OSError: the executable cannot be started.
    """

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, grace_s: float = STOP_GRACE_S) -> None:
        self.grace_s = grace_s
        self.stopped = False
        self._closed = False
        self._popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_PREEXEC,
        )
        self.pid = self._popen.pid
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # Only a thread blocked in waitpid learns at once that the script ended while a child it
        # left behind still holds the pipe open.
        self._reaper = threading.Thread(target=self._reap, name=f"python-job-reaper-{self.pid}", daemon=True)
        self._reaper.start()

    def stream(self) -> Iterator[str]:
        """Yield output lines (without the newline) until the pipe closes; handles stop escalation."""
        assert self._popen.stdout is not None
        out = self._popen.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        kill_at: float | None = None
        drain_until: float | None = None
        with selectors.DefaultSelector() as sel:
            sel.register(out, selectors.EVENT_READ, "out")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                deadline = min(t for t in (kill_at, drain_until, float("inf")) if t is not None)
                timeout = None if deadline == float("inf") else max(0.0, deadline - time.monotonic())
                events = sel.select(timeout)
                now = time.monotonic()
                if kill_at is not None and now >= kill_at:
                    self._signal_group(signal.SIGKILL)
                    kill_at = None
                if drain_until is not None and now >= drain_until:
                    break  # someone outside the group holds the pipe; the job itself is over
                for key, _ in events:
                    if key.data == "wake":
                        note = os.read(self._wake_r, 64)
                        if _STOP in note and kill_at is None and self._popen.returncode is None:
                            kill_at = now + self.grace_s
                        if _EXITED in note:
                            self._signal_group(signal.SIGKILL)  # leftovers of a finished script
                            drain_until = now + DRAIN_S
                        continue
                    data = os.read(out, CHUNK_BYTES)
                    if drain_until is not None:
                        drain_until = now + DRAIN_S  # still flowing: keep draining
                    if not data:
                        tail = pending + decoder.decode(b"", final=True)
                        if tail:
                            yield tail
                        return
                    lines = (pending + decoder.decode(data)).split("\n")
                    pending = lines.pop()
                    for line in lines:
                        if len(line) > MAX_LINE_CHARS:
                            yield from _pieces(line)
                        else:
                            yield line[:-1] if line.endswith("\r") else line
                    while len(pending) >= MAX_LINE_CHARS:
                        yield pending[:MAX_LINE_CHARS]
                        pending = pending[MAX_LINE_CHARS:]

    def wait(self) -> int:
        """Wait for the script and return its exit status; a signal N is reported as 128 + N."""
        code = self._popen.wait()
        return 128 - code if code < 0 else code

    def stop(self) -> None:
        """Ask the whole process group to end: SIGTERM now, SIGKILL after ``grace_s`` seconds.

        Safe from any thread and from a signal handler; a no-op once the script has ended.
        """
        self.stopped = True
        if self._popen.returncode is None:
            self._signal_group(signal.SIGTERM)
        self._wake(_STOP)

    def kill(self) -> None:
        """End the process group now and reap the script (used when the reader is interrupted)."""
        self._signal_group(signal.SIGTERM)
        try:
            self._popen.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        self._popen.wait()

    def close(self) -> None:
        """Release the pipes. Call after :meth:`wait` or :meth:`kill`."""
        self._reaper.join()  # it writes to the wake-up pipe once more; never to a closed fd
        self._closed = True
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _reap(self) -> None:
        self._popen.wait()
        self._wake(_EXITED)

    def _wake(self, note: bytes) -> None:
        if self._closed:
            return
        try:
            os.write(self._wake_w, note)
        except OSError:  # full (already woken) or closed (already finished)
            pass

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _pieces(line: str) -> Iterator[str]:
    """A line longer than ``MAX_LINE_CHARS`` as consecutive pieces of at most that length."""
    line = line[:-1] if line.endswith("\r") else line
    for start in range(0, len(line), MAX_LINE_CHARS):
        yield line[start : start + MAX_LINE_CHARS]
