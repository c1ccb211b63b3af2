"""``PythonJobOperator``: run a job folder's script as an Airflow task."""

from __future__ import annotations

import contextlib
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    BaseOperator,
)

from airflow_python_exec.builder import to_macros
from airflow_python_exec.errors import JobConfigError, PythonExecError
from airflow_python_exec.hooks.python_exec import PythonExecutionHook
from airflow_python_exec.models import Macro, PythonEnv, PythonJob


class PythonJobOperator(BaseOperator):
    """Run a Python script job (a folder with ``app.py`` and optional ``.env``, ``job.json``,
    ``pylock.toml``) with its macros as environment variables and its output in the task log.

    :param job: a job folder, a ``job.json`` or a ``.py`` file; a relative path resolves against the
        folder of the DAG file, or the working directory when the task has no DAG (templated).
    :param macros: per-run macros overriding ``job.json`` ones: a ``{key: value}`` dict or a list of
        :class:`~airflow_python_exec.models.Macro` (``secure=True`` for a Fernet token) (templated).
    :param dotenv_as_macros: convert the job's ``.env`` into environment variables below macros;
        by default ``.env`` is left for the script to load with python-dotenv.
    :param install_path: override ``[python_exec] install_path`` for this task.
    :param inherit_env: override ``[python_exec] inherit_env`` (``None``: the setting, True by default).
    :param cwd: the script's working directory, relative to the job folder; default the job folder
        (templated).
    :param skip_on_exit_code: exit code(s) that skip the task instead of failing it.
    :param python_env: a ``pythonEnv`` (``PythonEnv`` or dict) replacing the job's own.
    :param refresh: ``True`` runs in an ephemeral environment removed afterwards.

    The task fails when the script exits non-zero (the code is in the message); it may be retried as
    its ``retries`` say, as may a failed provisioning. A job refused before it starts (bad job
    configuration or macros, disabled engine, bad install path, script not allowed) fails at once
    without retries (``AirflowFailException``): the same input would be refused again. The return value (XCom ``return_value``) is the
    script's last output line, secrets replaced, as with ``BashOperator``.
    """

    template_fields: Sequence[str] = ("job", "macros", "cwd")
    ui_color = "#ffd43b"
    ui_fgcolor = "#306998"

    def __init__(
        self,
        *,
        job: str | Path,
        macros: Mapping[str, Any] | Iterable[Macro | Mapping[str, Any]] | None = None,
        dotenv_as_macros: bool = False,
        install_path: str | None = None,
        inherit_env: bool | None = None,
        cwd: str | None = None,
        skip_on_exit_code: int | Container[int] | None = None,
        python_env: PythonEnv | Mapping[str, Any] | None = None,
        refresh: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = str(job) if isinstance(job, Path) else job
        self.macros = macros
        self.dotenv_as_macros = dotenv_as_macros
        self.install_path = install_path
        self.inherit_env = inherit_env
        self.cwd = cwd
        self.skip_on_exit_code = (
            (skip_on_exit_code,) if isinstance(skip_on_exit_code, int) else (skip_on_exit_code or ())
        )
        self.python_env = python_env
        self.refresh = refresh
        self._hook: PythonExecutionHook | None = None

    def execute(self, context: Any) -> str:
        """Run the job; return its last output line.

        :raises AirflowFailException: the job is refused before it starts (no retry).
        :raises AirflowException: provisioning failed, or the script exited with a non-zero code
            not in ``skip_on_exit_code``.
        :raises AirflowSkipException: the exit code is in ``skip_on_exit_code``.
        """
        with task_failures():
            job = load_job(self.job, context, self, self.python_env)
            macros = to_macros(self.macros, f"{type(self).__name__} macros")
            self._hook = PythonExecutionHook(install_path=self.install_path, inherit_env=self.inherit_env)
            result = self._hook.run_job(
                job,
                context=context,
                macros=macros,
                dotenv_as_macros=self.dotenv_as_macros,
                refresh=self.refresh,
                cwd=self.cwd,
            )
        if result.exit_code in self.skip_on_exit_code:
            raise AirflowSkipException(f"Python job {job.job_id!r} exited with code {result.exit_code}: skipped")
        if result.exit_code != 0:
            raise AirflowException(
                f"Python job {job.job_id!r} ({job.package_name}) exited with code {result.exit_code}"
            )
        return result.last_line

    def on_kill(self) -> None:
        """Stop the script's whole process group (task cancelled or ``execution_timeout``)."""
        if self._hook is not None:
            self._hook.stop()


@contextlib.contextmanager
def task_failures() -> Iterator[None]:
    """Turn a job refused before it starts (``PythonExecError`` with exit status 2) into
    ``AirflowFailException``, which fails the task without retries (Airflow's convention for an
    error that a retry cannot fix). A provisioning failure stays an ``AirflowException``: a network
    or disk problem may be gone on the next try."""
    try:
        yield
    except PythonExecError as exc:
        if exc.exit_code == 2:
            raise AirflowFailException(str(exc)) from None
        raise AirflowException(str(exc)) from None


def load_job(job: str, context: Any, task: BaseOperator, python_env: PythonEnv | Mapping[str, Any] | None) -> PythonJob:
    """Load a task's job: a relative path resolves against the DAG file's folder when the task has a
    DAG (else the working directory); ``python_env`` replaces the job's ``pythonEnv``.

    :raises JobConfigError: the job breaks the job rules.
    """
    try:
        path = Path(str(job)).expanduser()
    except RuntimeError as exc:  # ~user of an unknown user
        raise JobConfigError(f"job path {job!r} cannot be resolved ({exc}); fix the path") from None
    dag = (context or {}).get("dag") or (task.dag if task.has_dag() else None)
    if not path.is_absolute() and dag is not None and getattr(dag, "fileloc", None):
        path = Path(dag.fileloc).parent / path
    loaded = PythonJob.load(path)
    return loaded.with_python_env(python_env) if python_env is not None else loaded
