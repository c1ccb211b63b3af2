"""The job: ``Macro``, ``PythonEnv`` and ``PythonJob`` (pydantic v2).

A job is a folder holding ``app.py`` (the ``packageName``), an optional ``.env``, an optional
``job.json`` in the platform's job configuration format, and an optional PEP 751 ``pylock.toml``.
The rules (DESIGN.md, "The job folder") are enforced here, so a bad job is refused before any
process starts, with a one-line :class:`~airflow_python_exec.errors.JobConfigError`.
"""

from __future__ import annotations

from .fields import (
    ENV_NAME,
    HANDLER,
    PYTHON_VERSION,
    FunctionSpec,
    Macro,
    PythonEnv,
    RuntimeConfig,
    check_env_name,
    env_value,
)
from .job import PythonJob
from .rules import (
    DEFAULT_SCRIPT,
    JOB_FILE,
    MAX_INT_DIGITS,
    allowed_script,
    declares_script_metadata,
    edit_distance,
    near_miss,
    one_line,
)

__all__ = [
    "DEFAULT_SCRIPT",
    "ENV_NAME",
    "HANDLER",
    "JOB_FILE",
    "MAX_INT_DIGITS",
    "PYTHON_VERSION",
    "FunctionSpec",
    "Macro",
    "PythonEnv",
    "PythonJob",
    "RuntimeConfig",
    "allowed_script",
    "check_env_name",
    "declares_script_metadata",
    "edit_distance",
    "env_value",
    "near_miss",
    "one_line",
]
