"""``RunResult``: the outcome of one run of a job, as :meth:`PythonExecutionService.run
<airflow_python_exec.service.PythonExecutionService.run>` returns it (also importable from
:mod:`airflow_python_exec.service` and the package root)."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_python_exec.errors import ResultError
from airflow_python_exec.handlers.outputs import Outputs
from airflow_python_exec.handlers.results import HandlerError


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run.

    :ivar exit_code: the script's exit status; a script ended by signal N reports 128 + N.
    :ivar duration_s: wall time from start of the script to its end, in seconds.
    :ivar last_line: the last output line (secrets replaced), ``""`` if none.
    :ivar stopped: ``True`` when :meth:`PythonExecutionService.stop` ended the run.
    :ivar result: the JSON the run wrote to ``PYTHON_EXEC_RESULT_FILE`` (a handler's return value),
        else ``last_line``; secrets replaced. Read it with :meth:`value`.
    :ivar result_error: why the result cannot be used (invalid JSON, over ``max_result_bytes``), or ``None``.
    :ivar handler_error: a handler job's failure (exception type and message), or ``None``.
    """

    exit_code: int
    duration_s: float
    last_line: str
    stopped: bool = False
    result: Any = None
    result_error: str | None = None
    handler_error: HandlerError | None = None
    #: A function job's published outputs, named results and metrics (``None`` for a script job).
    outputs: Outputs | None = None
    #: A function job's inputs: argument -> the URI read (the lineage).
    inputs: Mapping[str, str] | None = None
    #: The resource limit that ended the run, in words (``memory limit 512 MiB reached (...)``), or ``None``.
    limit: str | None = None
    #: What the run ran with (:func:`run_facts`): ``python``, ``environment``, ``sandbox``, ``resources``.
    facts: Mapping[str, Any] | None = None

    def value(self) -> Any:
        """The run's result.

        :raises ResultError: the result file holds invalid JSON or more than ``max_result_bytes``.
        """
        if self.result_error is not None:
            raise ResultError(self.result_error)
        return self.result


def run_facts(
    python: str, environment: Mapping[str, Any] | None, sandbox: Mapping[str, Any], resources: Mapping[str, Any]
) -> dict[str, Any]:
    """The facts of a run for its start line, its XCom metadata and the Python jobs page.

    :param python: the interpreter's full version; :param environment: ``key``, ``cache`` (``hit``,
        ``built`` or ``ephemeral``) and ``packages`` (a count), or ``None`` without an environment;
    :param sandbox: ``mode`` (``bubblewrap`` or ``off``) and ``network`` (bool);
    :param resources: the limits in force (``Resources.facts()``) plus ``enforced_by``.
    """
    return {"python": python, "environment": environment, "sandbox": sandbox, "resources": dict(resources)}


def describe_facts(facts: Mapping[str, Any], limits: str) -> str:
    """The parenthesis of the start line: ``Python 3.12.4, environment 3f2a… cache hit, 41 packages;
    sandbox bubblewrap, network on; memory 512 MiB, cpu 1.5``."""
    env = facts.get("environment")
    where = (
        "no environment"
        if env is None
        else f"environment {str(env['key'])[:8]}… {_cache(env)}, {env['packages']} packages"
    )
    box = facts["sandbox"]
    sandbox = (
        f"sandbox bubblewrap, network {'on' if box.get('network') else 'off'}"
        if box["mode"] != "off"
        else "sandbox off"
    )
    return f"Python {facts['python']}, {where}; {sandbox}; {limits}"


def _cache(env: Mapping[str, Any]) -> str:
    return {"hit": "cache hit", "built": "built"}.get(str(env.get("cache")), str(env.get("cache")))


def ending(result: RunResult) -> str:
    """How a run ended, in words: ``exited with code 0``, ``stopped by SIGTERM (exit code 143)``."""
    if result.stopped and result.exit_code > 128:
        try:
            name = signal.Signals(result.exit_code - 128).name
        except ValueError:
            name = f"signal {result.exit_code - 128}"
        return f"stopped by {name} (exit code {result.exit_code})"
    if result.stopped:
        return f"stopped (exit code {result.exit_code})"
    return f"exited with code {result.exit_code}"


def interruption(exc: BaseException) -> str:
    """How an interrupted run is described. The core does not import Airflow, so its task timeout
    (``AirflowTaskTimeout``, raised into the running task by ``execution_timeout``) is known by name."""
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "AirflowTaskTimeout":
        return "timed out"
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by SIGINT"
    return f"interrupted by {type(exc).__name__}"
