"""``PythonEngineValidator``: checks the configured Python installation before anything runs.

This is the platform's engine validator (``python.enabled``, ``python.installPath``): the engine
must be enabled, and the install path must be a folder holding an executable ``bin/python3``
(else ``bin/python``) that runs and reports its version.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from airflow_python_exec import interpreter_index
from airflow_python_exec.errors import (
    EngineDisabledError,
    InstallPathError,
    InterpreterNotFoundError,
    InterpreterNotRunnableError,
)
from airflow_python_exec.logs import log
from airflow_python_exec.settings import EngineSettings

#: Tried in this order, as the platform does (``python3``, fallback ``python``).
CANDIDATES = ("bin/python3", "bin/python")
PROBE_TIMEOUT_S = 30.0
_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass(frozen=True)
class Interpreter:
    """A validated base interpreter.

    :ivar path: the executable, e.g. ``/usr/local/bin/python3`` (not resolved through symlinks).
    :ivar version: its full version, ``"3.12.4"``.
    :ivar install_path: the installation prefix it was found under.
    """

    path: Path
    version: str
    install_path: Path

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``version`` as integers, e.g. ``(3, 12, 4)``."""
        return tuple(int(p) for p in self.version.split("."))


_probe_cache: dict[tuple[str, int, int], str] = {}
_probe_lock = threading.Lock()


class PythonEngineValidator:
    """Validate ``[python_exec]`` settings and find the interpreter jobs run with.

    :param settings: the engine settings; ``enabled`` and ``install_path`` are read.
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings

    def validate(self) -> Interpreter:
        """Return the interpreter to run, or raise before anything else happens.

        With ``install_path`` unset, the base installation of the Python running Airflow
        (``sys.base_prefix``) is used and the log says so. The interpreter's version is probed once
        per path and file identity in this process, not once per task.

        :raises EngineDisabledError: ``enabled = False``.
        :raises InstallPathError: ``install_path`` set but blank, missing, or not a folder.
        :raises InterpreterNotFoundError: no executable ``bin/python3`` or ``bin/python`` under it.
        :raises InterpreterNotRunnableError: the interpreter does not run or report its version.
        """
        if not self.settings.enabled:
            raise EngineDisabledError(
                "python execution is disabled ([python_exec] enabled = False); set it to True "
                "(AIRFLOW__PYTHON_EXEC__ENABLED=True) to run Python jobs"
            )
        prefix = self._install_path()
        exe = self._find_executable(prefix)
        return Interpreter(path=exe, version=probe_version(exe, self.settings.cache_dir), install_path=prefix)

    def _install_path(self) -> Path:
        raw = self.settings.install_path
        if raw is None:
            prefix = Path(sys.base_prefix)
            log.debug("install_path is unset: using the base installation of the Python running Airflow, %s", prefix)
            return prefix
        if not raw.strip():
            raise InstallPathError(
                "[python_exec] install_path is set but blank; set it to a Python installation prefix "
                "(the folder holding bin/python3) or remove it to use Airflow's own Python"
            )
        prefix = _prefix(raw.strip())
        if not prefix.exists():
            raise InstallPathError(
                f"install_path {prefix} does not exist; set [python_exec] install_path to an installed "
                "Python prefix such as /usr/local"
            )
        if not prefix.is_dir():
            raise InstallPathError(
                f"install_path {prefix} is not a folder; set it to the installation prefix that holds "
                f"bin/python3 (e.g. {prefix.parent.parent if prefix.parent.name == 'bin' else '/usr/local'}), "
                "not to a file"
            )
        return prefix

    @staticmethod
    def _find_executable(prefix: Path) -> Path:
        present = [prefix / c for c in CANDIDATES if (prefix / c).exists()]
        for exe in present:
            if exe.is_file() and os.access(exe, os.X_OK):
                return exe
        if present:
            raise InterpreterNotFoundError(
                f"{present[0]} is not an executable file; make it executable (chmod +x) or point "
                "install_path at a working Python installation"
            )
        raise InterpreterNotFoundError(
            f"no bin/python3 or bin/python under install_path {prefix}; point it at a Python "
            "installation prefix (the folder that contains bin/)"
        )


def _prefix(raw: str) -> Path:
    """``install_path`` as an absolute path; ``~`` of an unknown user or a NUL byte is refused."""
    if "\x00" in raw:
        raise InstallPathError(f"install_path {raw!r} contains a NUL byte; fix [python_exec] install_path")
    try:
        return Path(raw).expanduser().absolute()
    except RuntimeError:  # expanduser: no such user
        raise InstallPathError(
            f"install_path {raw!r} starts with the home of a user that does not exist; set "
            "[python_exec] install_path (or --install-path) to an installed Python prefix such as /usr/local"
        ) from None


def probe_version(exe: Path, cache_dir: Path | None = None) -> str:
    """Run ``exe`` once to read its full version (``"3.12.4"``); cached per (path, inode, mtime) in
    this process, so a worker probes each interpreter once, not once per task.

    :param cache_dir: also keep the version in ``<cache_dir>/interpreters.json`` for every process
        (each task runs in a new one), valid while ``exe`` is the same file (device, inode, size,
        modification and change times); see :mod:`airflow_python_exec.interpreter_index`.
    :raises InterpreterNotRunnableError: it does not run or report a version.
    """
    st = exe.stat()
    key = (str(exe), st.st_ino, st.st_mtime_ns)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    if cache_dir is not None:
        known = interpreter_index.cached_probe(cache_dir, exe)
        if known is not None:
            with _probe_lock:
                _probe_cache[key] = known
            return known
    try:
        out = subprocess.run(
            [str(exe), "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise InterpreterNotRunnableError(
            f"{exe} does not run ({reason}); repair or reinstall that Python, or change install_path"
        ) from None
    lines = out.stdout.split()
    if out.returncode != 0 or not lines:
        detail = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise InterpreterNotRunnableError(
            f"{exe} does not run ({detail}); repair or reinstall that Python, or change install_path"
        )
    with _probe_lock:
        _probe_cache[key] = lines[0]
    if cache_dir is not None:
        interpreter_index.store_probe(cache_dir, exe, lines[0])
    return lines[0]
