"""Build steps under the job's resource limits (DESIGN.md, "The environment cache": the bytecode
compile is "bounded in memory and time like a run").

A wheel's module is the job's data: an 8 MiB one-line literal made the compile take 36 s and
3.3 GiB outside the sandbox. So sources over :data:`MAX_COMPILE_SOURCE_BYTES` are not compiled (they
are compiled, in memory, if and when the job imports them, inside its own limits), and the compile
process runs in the job's cgroup or under its rlimits (memory, cpu, pids) and its timeout. It is
started (:class:`Bounded`) before the store's bytecode is linked and waited for after, so the two
overlap; stopping the provisioning kills it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
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


#: Run by the base interpreter with ``-I -S`` (no ``site``: no ``.pth`` file of the job's runs):
#: compiles the NUL-separated ``.py`` paths listed in the file ``argv[1]``, on every core when they
#: are many. A few files (a second environment's new package) are compiled by ``py_compile`` alone,
#: as ``compileall.compile_file(quiet=2, force=True)`` would (a file that does not compile is left
#: without bytecode): importing ``compileall`` (``pathlib``) and ``concurrent.futures`` cost more
#: than compiling them. Exit status 3: a file ran out of memory (a limit, not the file's fault), so
#: what was compiled must not be stored for other environments.
COMPILE_SCRIPT = """\
import os, py_compile, sys
files = [f for f in open(sys.argv[1], encoding='utf-8', errors='surrogateescape').read().split('\\0') if f]
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
def one(f):
    try:
        py_compile.compile(f, doraise=True, invalidation_mode=mode)
    except py_compile.PyCompileError as exc:
        return exc.exc_type_name != 'MemoryError'
    except (SyntaxError, UnicodeError, OSError):
        pass
    return True
if len(files) > 64 and (os.cpu_count() or 1) > 1:  # a pool costs more than a few files
    import compileall, concurrent.futures, functools
    work = functools.partial(compileall.compile_file, quiet=2, force=True, invalidation_mode=mode)
    with concurrent.futures.ProcessPoolExecutor() as pool:
        files = [f for f, done in zip(files, pool.map(work, files, chunksize=16)) if not done]  # again, to see why
sys.exit(0 if all([one(f) for f in files if f.endswith('.py') and os.path.isfile(f)]) else 3)
"""


def start_compile(
    python: Path, files: list[str], resources: Resources | None = None, say: Callable[[str], None] = lambda _: None
) -> Bounded:
    """Start compiling ``files`` (absolute ``.py`` paths) in one subprocess using every core, under
    the job's resource limits and without the sources over :data:`MAX_COMPILE_SOURCE_BYTES` (a
    wheel's module is the job's data, see above); :meth:`Bounded.wait` for it (always).

    ``python`` is the base interpreter the environment was made from (same version, so the same
    bytecode), started with ``-I -S`` (no ``site``, no user site, no ``PYTHON*`` variables): the
    environment's own interpreter would run every installed ``.pth`` file, as the worker, outside the
    sandbox, and a wheel's ``.data/data/pyvenv.cfg`` could name another standard library. Compiling
    only parses files. A file that does not compile is left without bytecode, as pip leaves it.
    """
    fd, listing = tempfile.mkstemp(suffix=".txt")
    try:
        with open(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
            out.write("\0".join(compilable(files)))
        return Bounded([str(python), "-I", "-S", "-c", COMPILE_SCRIPT, listing], resources, say, cleanup=listing)
    except BaseException:
        os.unlink(listing)
        raise


class Bounded:
    """A build step started under the job's limits (output discarded), for the caller to do other
    work while it runs; :meth:`wait` for it (always: it releases the limits), :meth:`kill` it from
    any thread. Its whole process group is killed once it ended, so nothing is left running.

    :param cleanup: a file the step reads, removed once it ended.
    """

    def __init__(
        self,
        argv: Sequence[str],
        resources: Resources | None,
        say: Callable[[str], None],
        cleanup: str | None = None,
    ) -> None:
        self.argv, self._say, self._ended, self._cleanup = list(argv), say, False, cleanup
        self._limits = limits = build_limits(resources)
        try:
            with limits.entered() if limits is not None else contextlib.nullcontext():
                self._process = subprocess.Popen(
                    [*(limits.prefix() if limits else ()), *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except BaseException:
            if limits is not None:
                limits.close()
            raise
        self._timer = Timeout(resources.timeout if resources else None, self.kill)

    def kill(self) -> None:
        """Kill the step's whole process group (idempotent; safe from any thread; nothing once it
        ended: its process id may be another's by then)."""
        if not self._ended:
            _kill_group(self._process.pid)

    def wait(self) -> int:
        """Wait for the step to end; return its exit status. A step ended by a limit or the timeout
        is reported in one line; interrupted (``KeyboardInterrupt``...), it is killed first."""
        process, limits, code = self._process, self._limits, 1
        try:
            code = process.wait()
        except BaseException:
            self.kill()
            process.wait()
            raise
        finally:
            self._timer.cancel()
            _kill_group(process.pid)  # compileall's worker processes end with it
            self._ended = True
            reason = limits.ended_by(code, self.argv[0], process.pid) if limits else None
            if limits is not None:
                limits.close()
            if self._cleanup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._cleanup)
        if self._timer.fired or reason:
            self._say(f"{Path(self.argv[0]).name} ended: {reason or 'timeout reached'}; continuing without its result")
        return code


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
