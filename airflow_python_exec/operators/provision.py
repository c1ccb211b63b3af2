"""``ProvisionEnvironmentOperator``: build a job's cached environment ahead of its runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_python_exec.logs import provider_line
from airflow_python_exec.models import PythonEnv
from airflow_python_exec.operators.python_job import load_job, task_failures

if TYPE_CHECKING:
    from airflow_python_exec.environments import EnvironmentProvisioner


class ProvisionEnvironmentOperator(BaseOperator):
    """Provision (or find) the cached environment of a job, the platform's "build", without running it:
    from its ``pylock``, its ``requirements`` (resolved once), or its script's PEP 723 metadata.

    :param job: a job folder, ``job.json`` or ``.py`` file, relative to the DAG file's folder (templated).
    :param python_env: a ``pythonEnv`` replacing the job's own.
    :param install_path: override ``[python_exec] install_path``.

    Returns (XCom) the environment's folder. Provisioning lines go to the task log; a failure fails
    the task with uv's error.
    """

    template_fields: Sequence[str] = ("job",)
    ui_color = "#ffd43b"

    def __init__(
        self,
        *,
        job: str | Path,
        python_env: PythonEnv | Mapping[str, Any] | None = None,
        install_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job = str(job)
        self.python_env = python_env
        self.install_path = install_path
        self._provisioner: EnvironmentProvisioner | None = None

    def execute(self, context: Any) -> str:
        """Build the environment; return its path.

        :raises AirflowFailException: the job is refused (no retry).
        :raises AirflowException: provisioning failed (retried as ``retries`` say).
        """
        from airflow_python_exec.environments import EnvironmentProvisioner
        from airflow_python_exec.hooks.python_exec import PythonExecutionHook
        from airflow_python_exec.service import main_file

        with task_failures():
            job = load_job(self.job, context, self, self.python_env)
            hook = PythonExecutionHook(install_path=self.install_path)
            interpreter = hook.service.init()
            self._provisioner = provisioner = EnvironmentProvisioner(hook.settings, on_line=provider_line)
            script = main_file(job, hook.settings, provider_line)  # PEP 723 metadata, a handler's source
            return str(provisioner.provision(job, interpreter, script))

    def on_kill(self) -> None:
        """Stop uv's process group when the task is cancelled."""
        if self._provisioner is not None:
            self._provisioner.stop()
