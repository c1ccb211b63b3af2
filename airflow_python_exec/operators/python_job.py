"""``PythonJobOperator``: run a job folder's script as an Airflow task."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException, BaseOperator

from airflow_python_exec.hooks.python_exec import PythonExecutionHook
from airflow_python_exec.models import Macro, PythonEnv, PythonJob


class PythonJobOperator(BaseOperator):
    """Run a Python script job (a folder with ``app.py`` and optional ``.env``, ``job.json``,
    ``pylock.toml``) with its macros as environment variables and its output in the task log.

    :param job: a job folder, a ``job.json`` or a ``.py`` file; a relative path resolves against the
        folder of the DAG file (templated).
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

    The task fails when the script exits non-zero (the code is in the message), and before any
    process starts when the job is refused. The return value (XCom ``return_value``) is the
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

        :raises PythonExecError: the job is refused before it starts.
        :raises AirflowSkipException: the exit code is in ``skip_on_exit_code``.
        :raises AirflowException: the script exited with any other non-zero code.
        """
        job = load_job(self.job, context, self.dag, self.python_env)
        self._hook = PythonExecutionHook(install_path=self.install_path, inherit_env=self.inherit_env)
        result = self._hook.run_job(
            job,
            context=context,
            macros=self.macros,
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



def load_job(job: str, context: Any, dag: Any, python_env: PythonEnv | Mapping[str, Any] | None) -> PythonJob:
    """Load a task's job: a relative path resolves against the DAG file's folder; ``python_env``
    replaces the job's ``pythonEnv``.

    :raises JobConfigError: the job breaks the job rules.
    """
    path = Path(str(job)).expanduser()
    if not path.is_absolute():
        path = Path((context.get("dag") or dag).fileloc).parent / path
    loaded = PythonJob.load(path)
    return loaded.with_python_env(python_env) if python_env is not None else loaded
