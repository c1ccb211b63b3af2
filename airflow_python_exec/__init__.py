"""airflow-python-exec: run uploaded Python script jobs as Apache Airflow 3 tasks.

The core (settings, models, validator, builder, environments, service) works without a running
Airflow; the Airflow-side names (hook, operators) are imported lazily on first use so that the CLI
and the service start quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "EngineSettings": "airflow_python_exec.settings",
    "PythonExecError": "airflow_python_exec.errors",
    "Macro": "airflow_python_exec.models",
    "PythonEnv": "airflow_python_exec.models",
    "PythonJob": "airflow_python_exec.models",
    "PythonEngineValidator": "airflow_python_exec.validator",
    "Interpreter": "airflow_python_exec.environments.interpreters",
    "PythonCommandBuilder": "airflow_python_exec.builder",
    "PythonExecutionService": "airflow_python_exec.service",
    "RunResult": "airflow_python_exec.run_result",
    "EnvironmentProvisioner": "airflow_python_exec.environments",
    "PythonExecutionHook": "airflow_python_exec.hooks.python_exec",
    "PythonJobOperator": "airflow_python_exec.operators.python_job",
    "ProvisionEnvironmentOperator": "airflow_python_exec.operators.provision",
}

# Spelled out (not built from _LAZY) so that type checkers, linters and the API docs can read it.
__all__ = [
    "EngineSettings",
    "EnvironmentProvisioner",
    "Interpreter",
    "Macro",
    "ProvisionEnvironmentOperator",
    "PythonCommandBuilder",
    "PythonEngineValidator",
    "PythonEnv",
    "PythonExecError",
    "PythonExecutionHook",
    "PythonExecutionService",
    "PythonJob",
    "PythonJobOperator",
    "RunResult",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from airflow_python_exec.builder import PythonCommandBuilder
    from airflow_python_exec.environments import EnvironmentProvisioner
    from airflow_python_exec.environments.interpreters import Interpreter
    from airflow_python_exec.errors import PythonExecError
    from airflow_python_exec.hooks.python_exec import PythonExecutionHook
    from airflow_python_exec.models import Macro, PythonEnv, PythonJob
    from airflow_python_exec.operators.provision import ProvisionEnvironmentOperator
    from airflow_python_exec.operators.python_job import PythonJobOperator
    from airflow_python_exec.run_result import RunResult
    from airflow_python_exec.service import PythonExecutionService
    from airflow_python_exec.settings import EngineSettings
    from airflow_python_exec.validator import PythonEngineValidator


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562), keeping ``import airflow_python_exec`` light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'airflow_python_exec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
