"""Errors raised by airflow-python-exec.

Every error is a :class:`PythonExecError`. Its message is one line that names the offending value
and the fix; ``exit_code`` is what the ``airflow-python-exec`` CLI exits with when it is raised
(DESIGN.md: ``2`` for a job refused before it starts, ``3`` when provisioning its environment fails).
"""

from __future__ import annotations


class PythonExecError(Exception):
    """Base class: a job refused before its script starts (CLI exit status 2)."""

    exit_code = 2


class EngineDisabledError(PythonExecError):
    """``[python_exec] enabled`` is ``False``: the platform's ``python.enabled=false``."""


class InstallPathError(PythonExecError):
    """``[python_exec] install_path`` is set but blank, missing, or not a folder."""


class InterpreterNotFoundError(PythonExecError):
    """No executable ``bin/python3`` or ``bin/python`` under the install path."""


class InterpreterNotRunnableError(PythonExecError):
    """The interpreter exists but does not run or does not report its version."""


class JobConfigError(PythonExecError):
    """The job folder, ``job.json``, a macro or a ``.env`` entry breaks the job rules."""


class ScriptNotAllowedError(JobConfigError):
    """``packageName`` (or a ``command`` path) is not a regular ``.py`` file inside the job folder."""


class ProvisioningError(PythonExecError):
    """The job's virtual environment could not be built (CLI exit status 3)."""

    exit_code = 3


class ResultError(PythonExecError):
    """The run ended but its result cannot be used: invalid JSON, or more than ``max_result_bytes``.

    The run failed (exit status 1 on the CLI); the same script would most likely fail the same way.
    """

    exit_code = 1


class SandboxUnavailableError(PythonExecError):
    """``[python_exec] sandbox = bubblewrap`` but ``bwrap`` is missing or cannot start a sandbox here."""
