"""``RunResult``: the outcome of one run of a job, as :meth:`PythonExecutionService.run
<airflow_python_exec.service.PythonExecutionService.run>` returns it (also importable from
:mod:`airflow_python_exec.service` and the package root)."""

from __future__ import annotations

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

    def value(self) -> Any:
        """The run's result.

        :raises ResultError: the result file holds invalid JSON or more than ``max_result_bytes``.
        """
        if self.result_error is not None:
            raise ResultError(self.result_error)
        return self.result
