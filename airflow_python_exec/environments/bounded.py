"""Build steps under the job's resource limits (DESIGN.md, "The environment cache": the bytecode
compile is "bounded in memory and time like a run").

A wheel's module is the job's data: an 8 MiB one-line literal made the compile take 36 s and
3.3 GiB outside the sandbox. So sources over :data:`MAX_COMPILE_SOURCE_BYTES` are not compiled (they
are compiled, in memory, if and when the job imports them, inside its own limits), and the compile
process runs in the job's cgroup or under its rlimits (memory, cpu, pids) and its timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from airflow_python_exec.isolation.limits import RunLimits, Timeout
from airflow_python_exec.models import PythonJob
from airflow_python_exec.models.resources import Resources, effective_resources
from airflow_python_exec.settings import EngineSettings

#: Largest ``.py`` file the provisioning compiles to bytecode, in bytes.
MAX_COMPILE_SOURCE_BYTES = 4 * 2**20


def build_resources(job: PythonJob, settings: EngineSettings) -> Resources:
    """The limits a job's builds run under: its own over ``default_resources``, under
    ``max_resources`` (a run has merged them already; ``provision`` has not).

    :raises JobConfigError: the job asks for more than ``max_resources``.
    """
    return effective_resources(job.resources, None, settings.default_resources, settings.max_resources)


def build_limits(resources: Resources | None) -> RunLimits | None:
    """The limits of one build step: the job's memory, cpu and pids (never its ``tmp``: a build
    writes wheels and packages, not the job's files); ``None`` without limits."""
    if resources is None or not (resources.memory or resources.cpu or resources.pids):
        return None
    return RunLimits(memory=resources.memory, cpu=resources.cpu, pids=resources.pids, timeout=resources.timeout)


def compilable(files: Sequence[str], limit: int = MAX_COMPILE_SOURCE_BYTES) -> list[str]:
    """``files`` (``.py`` paths) without those larger than ``limit`` bytes (links not followed)."""
    kept = []
    for path in files:
        try:
            if os.lstat(path).st_size <= limit:
                kept.append(path)
        except OSError:
            continue
    return kept


def run_bounded(argv: Sequence[str], resources: Resources | None, say: Callable[[str], None]) -> int:
    """Run a build step (output discarded) under the job's limits; return its exit status.

    A step ended by a limit or the timeout is reported in one line through ``say``; the whole
    process group is killed, nothing is left running.
    """
    limits = build_limits(resources)
    with limits.entered() if limits is not None else contextlib.nullcontext():
        process = subprocess.Popen(
            [*(limits.prefix() if limits else ()), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    timer = Timeout(resources.timeout if resources else None, lambda: _kill_group(process.pid))
    code = 1
    try:
        code = process.wait()
    except BaseException:
        _kill_group(process.pid)
        process.wait()
        raise
    finally:
        timer.cancel()
        _kill_group(process.pid)  # compileall's worker processes end with it
        reason = limits.ended_by(code, argv[0], process.pid) if limits else None
        if limits is not None:
            limits.close()
    if timer.fired or reason:
        say(f"{Path(argv[0]).name} ended: {reason or 'timeout reached'}; continuing without its result")
    return code


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
