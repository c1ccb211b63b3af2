"""A job's processes die with the worker that started them (Linux's parent-death signal).

A worker killed outright (SIGKILL, the OOM killer) gets no chance to stop its children; without the
parent-death signal a script or a uv install would run on as an orphan. Two ways to set it, the
cheaper first: util-linux's ``setpriv --pdeathsig KILL`` in front of the command, else a
``preexec_fn`` calling ``prctl(PR_SET_PDEATHSIG)`` in the child.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable


def _die_with_parent() -> Callable[[int], Callable[[], None]] | None:
    """Linux: a factory of ``preexec_fn`` asking the kernel to SIGKILL the child if its parent dies.

    A parent killed outright (SIGKILL, OOM killer) gets no chance to stop its children; without
    this, a script or a uv install would run on as an orphan and could write into an environment
    that the next run is rebuilding. prctl is looked up here, before any fork. A parent that died
    between the fork and the prctl call is caught by comparing the parent's pid.

    Used only where util-linux's ``setpriv`` is missing (see :data:`SETPRIV`): a ``preexec_fn``
    makes :mod:`subprocess` fork the whole process instead of using ``vfork``, which in an Airflow
    worker (a few hundred MB of memory, several threads) costs 20 to 30 ms per start.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec_for(parent: int) -> Callable[[], None]:
        def preexec() -> None:
            prctl(pr_set_pdeathsig, sigkill)
            if os.getppid() != parent:
                os._exit(1)

        return preexec

    return preexec_for


def _setpriv() -> str | None:
    """util-linux's ``setpriv`` when it can set the parent-death signal (Linux; ``--pdeathsig``,
    util-linux 2.33 and later), else ``None``. Told by the option's name in the binary (a read of
    a small file), not by running it: that would cost a process start in every task."""
    if not sys.platform.startswith("linux"):
        return None
    for folder in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        path = os.path.join(folder, "setpriv")
        if os.access(path, os.X_OK):
            try:
                with open(path, "rb") as f:
                    return path if b"pdeathsig" in f.read(8 << 20) else None
            except OSError:
                return None
    return None


#: ``setpriv --pdeathsig KILL --`` in front of the command sets the parent-death signal of the child
#: before it executes the command, and leaves :mod:`subprocess` free to start it with ``vfork``
#: (half a millisecond, against 20 to 30 ms for a ``fork`` of a large worker with a ``preexec_fn``).
#: setpriv keeps the pid: the script's pid is the child's. The one difference from the ``preexec_fn``:
#: a parent killed in the instant between the start and setpriv's own prctl call is not noticed.
#: Looked up once, on the first start (``None``: fall back to the ``preexec_fn``).
SETPRIV: str | bool | None = False

#: A ``preexec_fn`` factory (``PREEXEC_FOR(os.getpid())``), or ``None`` off Linux.
PREEXEC_FOR = _die_with_parent()


def pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --`` to put in front of a command, or ``[]`` without setpriv."""
    global SETPRIV
    if SETPRIV is False:
        SETPRIV = _setpriv()
    return [SETPRIV, "--pdeathsig", "KILL", "--"] if isinstance(SETPRIV, str) else []
