"""The end of a script started through a launcher (the bubblewrap sandbox), whatever the job did to
the launcher's own processes (DESIGN.md "Containment and sandbox": a run ends within a few seconds of
its script's end).

``bwrap`` runs three processes deep: ``bwrap`` in our PID namespace (the process we started), the
sandbox's pid 1 (bwrap's init, which reaps) and the script. bwrap learns that the script ended from
its pid 1, which reaps it and tells the outer process through an eventfd; the outer process then
exits with the script's status. A job can stop that pid 1 (``ptrace`` attach, then exit: the traced
pid 1 stays stopped once its tracer is gone), or hijack it: the script then stays an unreaped
zombie and the outer ``bwrap`` waits for ever.

:func:`wait_launched` therefore watches the script itself from outside, through a pidfd (Linux 5.3+,
no polling once the script is found): when the script has ended and the launcher has not followed
within :data:`GRACE_S`, the caller kills the launcher (its ``--die-with-parent`` takes the whole
sandbox with it, stopped processes included: SIGKILL needs no cooperation) and reports the exit
status the kernel kept for the zombie (``/proc/<pid>/stat`` field 52). The sandbox's processes are
killed, never waited for.
"""

from __future__ import annotations

import contextlib
import os
import select

#: How deep below the launcher the script runs: bwrap's outer process, the sandbox's pid 1, the script.
SCRIPT_DEPTH = 2
#: Seconds the launcher gets to exit by itself once its script has ended (normally milliseconds).
GRACE_S = 1.0
#: Seconds between looks for the script while the sandbox starts (doubling from the first value).
#: Once found (a zombie script stays findable until its pid 1 reaps it), the script is not polled.
FIRST_LOOK_S, LAST_LOOK_S = 0.005, 0.1


def wait_launched(launcher: int) -> tuple[bool, int | None]:
    """Wait until the ``launcher`` process exits, or its script has ended and it did not follow.

    :param launcher: the pid of the launcher (our child).
    :returns: ``(False, None)`` once the launcher has exited by itself (or when this cannot be
        watched: no pidfd support); ``(True, status)`` when it must be killed, ``status`` being the
        script's exit code as :func:`os.waitstatus_to_exitcode` gives it (negative: a signal), or
        ``None`` when the kernel no longer holds it.
    """
    try:
        launcher_fd = os.pidfd_open(launcher)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux) or already reaped
        return False, None
    script, script_fd = 0, -1
    try:
        look = FIRST_LOOK_S
        while True:
            if script_fd < 0:
                script = _launched(launcher)
                if script:
                    with contextlib.suppress(OSError):
                        script_fd = os.pidfd_open(script)
            watched = [launcher_fd] if script_fd < 0 else [launcher_fd, script_fd]
            ready = _ready(watched, look if script_fd < 0 else None)
            if launcher_fd in ready:
                return False, None
            if script_fd in ready:
                return _after_script(launcher_fd, script)
            look = min(look * 2, LAST_LOOK_S)
    finally:
        os.close(launcher_fd)
        if script_fd >= 0:
            os.close(script_fd)


def _after_script(launcher_fd: int, script: int) -> tuple[bool, int | None]:
    """The script has ended: give the launcher :data:`GRACE_S` to exit, twice if its pid 1 has
    reaped the script in the meantime (it is then about to report)."""
    status = None
    for _ in range(2):
        if _ready([launcher_fd], GRACE_S):
            return False, None
        status = _zombie_status(script)
        if status is not None:  # still unreaped after the grace: its pid 1 is stopped or hijacked
            return True, status
    return True, status


def _ready(fds: list[int], timeout_s: float | None) -> list[int]:
    """Those of ``fds`` (pidfds) whose process has exited, waiting up to ``timeout_s`` (``None``: no
    limit). ``poll``, not ``select``: a worker may hold more than 1024 descriptors."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(None if timeout_s is None else timeout_s * 1000)]


def _launched(launcher: int) -> int:
    """The pid of the process :data:`SCRIPT_DEPTH` levels below ``launcher`` (the oldest), or 0."""
    level = [launcher]
    for _ in range(SCRIPT_DEPTH):
        level = [child for pid in level for child in _children(pid)]
        if not level:
            return 0
    return min(level, key=_start_ticks)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return []
    return text[text.rfind(")") + 2 :].split()  # the fields from the state on: field N at N - 3


def _start_ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[19]) if len(fields) > 19 else 0


def _zombie_status(pid: int) -> int | None:
    """The exit code of ``pid`` while it is an unreaped zombie (proc(5) ``stat`` field 52), else ``None``."""
    fields = _stat(pid)
    if len(fields) < 50 or fields[0] != "Z":
        return None
    return os.waitstatus_to_exitcode(int(fields[49]))
