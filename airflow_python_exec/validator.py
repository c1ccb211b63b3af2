"""``PythonEngineValidator``: checks the configured Python installation before anything runs.

This is the platform's engine validator (``python.enabled``, ``python.installPath``): the engine
must be enabled, and the install path must be a folder holding an executable ``bin/python3``
(else ``bin/python``) that runs and reports its version.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from airflow_python_exec.environments.interpreters import Interpreter, probe_version
from airflow_python_exec.errors import (
    EngineDisabledError,
    InstallPathError,
    InterpreterNotFoundError,
)
from airflow_python_exec.logs import log
from airflow_python_exec.settings import EngineSettings

#: Tried in this order, as the platform does (``python3``, fallback ``python``).
CANDIDATES = ("bin/python3", "bin/python")


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
