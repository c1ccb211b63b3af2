"""The job's environment reaches only the job's own process, never its launcher (DESIGN.md "Reach:
what a job may name").

A script may be started through wrappers that run as the worker before any namespace exists:
util-linux's ``setpriv`` (the parent-death signal) and ``bwrap`` (the sandbox). Whatever is in their
environment when they are executed acts on them: ``LD_PRELOAD`` set by a macro, a ``.env`` entry or
``pythonEnv.env`` makes the dynamic loader run the job's shared object inside ``setpriv`` and
``bwrap``, as the worker, outside the sandbox. No list of dangerous names is kept: the wrappers are
executed with the worker's cleaned environment (:func:`launcher_environment`), and the job's own
variables are handed over by a memory file descriptor to the last step before the script:

- with the sandbox, to ``bwrap`` itself: ``--args <fd>`` reads ``--clearenv`` and one ``--setenv``
  per variable from it (NUL-separated, so no value is ever in a process's argv), and bwrap sets them
  only for the script it executes inside the namespaces;
- without it, to ``/bin/sh`` started by ``setpriv``: it sources ``/dev/fd/<fd>`` (``export
  NAME='value'`` lines, quoted with :func:`shlex.quote`) and ``exec``\\ s the script, whose ``execve``
  is the first to see the job's variables (the shell itself was executed without them).

A script started without a wrapper gets its environment directly from its own ``execve``.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
from collections.abc import Mapping, Sequence

from airflow_python_exec.isolation.base_env import base_environment

#: The shell that hands a job's variables to an unsandboxed script (a POSIX shell on every Linux).
SHELL = "/bin/sh"
#: Sources the variables, then becomes the script (same pid: the script is the process we started).
_SHELL_SCRIPT = '. /dev/fd/{fd} && exec "$@"'
#: Longest string of an argv or environment that ``execve`` takes on Linux (32 pages), in bytes.
MAX_ARG_STRLEN = 32 * 4096
#: Variables a POSIX shell sets or exports by itself at start-up.
_SHELL_SETS = ("PWD", "OLDPWD")
#: What a shell can export (every name a job may set is one: DESIGN.md "The job folder").
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Names a POSIX shell (dash, or bash as ``sh``) acts on when they are assigned: it validates them
#: (dash refuses a non-numeric ``OPTIND``), keeps them read-only (bash's ``SHELLOPTS``, ``UID``...),
#: or changes its own behaviour (locale, ``POSIXLY_CORRECT``, ``EXECIGNORE``...). A job that sets one
#: is not handed over by the shell: :func:`shell_would_interpret`.
SHELL_NAMES = frozenset(
    "CDPATH EGID ENV EUID EXECIGNORE FCEDIT FUNCNAME GLOBIGNORE GROUPS HISTCMD HISTCONTROL HISTFILE "
    "HISTFILESIZE HISTIGNORE HISTSIZE HOSTFILE IFS IGNOREEOF INPUTRC LANG LINENO MAIL MAILCHECK MAILPATH "
    "OPTARG OPTERR OPTIND PIPESTATUS POSIXLY_CORRECT PPID PROMPT_COMMAND PS0 PS1 PS2 PS3 PS4 RANDOM "
    "REPLY SECONDS SHELLOPTS SHLVL SRANDOM TIMEFORMAT TMOUT UID".split()
)
#: ``PATH`` is not among them: the shell only looks the script up with it, as a direct start would.
_SHELL_PREFIXES = ("BASH", "LC_", "COMP_", "READLINE_", "EPOCH")


def launcher_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What a wrapper is executed with: the worker's cleaned environment (base_env's layer 1), and of
    it only the variables ``env`` (the job's) holds with the same value, so nothing the job set or
    changed is among them."""
    worker = base_environment(os.environ, inherit=True)
    return {name: value for name, value in worker.items() if env.get(name) == value}


def shell_would_interpret(env: Mapping[str, str]) -> bool:
    """Whether ``env`` (the job's) sets or changes, against the launcher's environment, a variable that
    :data:`SHELL` would act on rather than only pass on: such a start does not go through the shell
    (the caller starts the script directly, with the parent-death signal set in the child)."""
    launcher = launcher_environment(env)
    return any(
        name in SHELL_NAMES or name.startswith(_SHELL_PREFIXES)
        for name, value in env.items()
        if launcher.get(name) != value and name not in _SHELL_SETS
    )


class Handoff:
    """The argv, environment and inherited descriptor that start ``argv`` with ``env`` through
    ``wrapper`` (``setpriv ... --``, empty for none) and ``launcher`` (``bwrap ... --``, empty for
    none).

    Use as a context manager around the start: the descriptor is closed on exit (the child keeps
    its own copy).

    :ivar argv: the full command to execute.
    :ivar env: the environment to execute it with.
    :ivar pass_fds: descriptors the command inherits (the memory file), empty without a wrapper.
    :raises ValueError: a variable name a shell cannot export (only a job-set name would be one, and
        those are checked as environment variable names before any start).
    """

    def __init__(
        self, wrapper: Sequence[str], launcher: Sequence[str], argv: Sequence[str], env: Mapping[str, str]
    ) -> None:
        self._fd = -1
        self.pass_fds: tuple[int, ...] = ()
        if not wrapper and not launcher:
            self.argv, self.env = [*argv], dict(env)
            return
        _check_exec_limits(argv, env)
        self.env = launcher_environment(env)
        if launcher:
            data = b"".join(os.fsencode(arg) + b"\0" for arg in _bwrap_args(env))  # undecodable bytes kept
            self._fd = _memory_file(data)
            self.argv = [*wrapper, launcher[0], "--args", str(self._fd), *launcher[1:], *argv]
        else:
            changed = {name: value for name, value in env.items() if self.env.get(name) != value}
            for name in changed:
                if not _NAME.match(name):
                    raise ValueError(f"environment variable name {name!r} cannot be exported; rename it")
            lines = [f"export {n}={shlex.quote(v)}\n" for n, v in changed.items()]
            # What the shell sets itself: the job's own value, or none, as a direct start would give.
            lines += [f"export {n}={shlex.quote(env[n])}\n" if n in env else f"unset {n}\n" for n in _SHELL_SETS]
            data = os.fsencode("".join(lines))
            self._fd = _memory_file(data)
            self.argv = [*wrapper, SHELL, "-c", _SHELL_SCRIPT.format(fd=self._fd), "sh", *argv]
        self.pass_fds = (self._fd,)

    def __enter__(self) -> Handoff:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _check_exec_limits(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Raise the ``OSError`` (``E2BIG``) the script's ``execve`` would raise, now: past a wrapper it
    would only be the wrapper's exit status. Linux limits each string to ``MAX_ARG_STRLEN`` and all
    of them, with their pointers, to ``ARG_MAX`` (execve(2))."""
    strings = [*argv, *(f"{name}={value}" for name, value in env.items())]
    sizes = [len(text.encode(errors="surrogateescape")) + 1 for text in strings]
    if max(sizes, default=0) > MAX_ARG_STRLEN or sum(sizes) + 8 * len(sizes) > os.sysconf("SC_ARG_MAX"):
        raise OSError(errno.E2BIG, os.strerror(errno.E2BIG))


def _bwrap_args(env: Mapping[str, str]) -> list[str]:
    """bwrap options that give the sandboxed command exactly ``env``."""
    args = ["--clearenv"]
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args


def _memory_file(data: bytes) -> int:
    """A close-on-exec anonymous memory file holding ``data``, read from its start by the child."""
    fd = os.memfd_create("python-exec-env", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
