"""``PythonExecutionHook``: the Airflow adapter of :class:`~airflow_python_exec.service.PythonExecutionService`.

It writes every output line into the task log (the script's lines from the logger
``airflow_python_exec.job``, the provider's own from ``airflow_python_exec``), registers decrypted ``secure``
macro values with
Airflow's ``mask_secret`` (so Airflow masks them anywhere else they might appear), and passes the
task's context variables (``AIRFLOW_CTX_*``) to the script.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from airflow.providers.common.compat.sdk import BaseHook, context_to_airflow_vars

from airflow_python_exec.compat import mask_secret
from airflow_python_exec.logs import JOB_LOGGER, provider_line
from airflow_python_exec.models import PythonJob
from airflow_python_exec.run_result import RunResult
from airflow_python_exec.service import PythonExecutionService
from airflow_python_exec.settings import EngineSettings


class PythonExecutionHook(BaseHook):
    """Run Python script jobs from Airflow tasks.

    :param install_path: override ``[python_exec] install_path`` for this hook.
    :param inherit_env: override ``[python_exec] inherit_env`` for this hook.
    :param sandbox: override ``[python_exec] sandbox`` (``off``, ``bubblewrap`` or ``auto``) for this hook.
    :param data_store: override ``[python_exec] data_store`` (where a handler's outputs are stored).
    :param settings: complete engine settings (default: ``[python_exec]`` plus the overrides above).
    """

    hook_name = "Python Exec"

    def __init__(
        self,
        *,
        install_path: str | None = None,
        inherit_env: bool | None = None,
        sandbox: str | None = None,
        data_store: str | None = None,
        settings: EngineSettings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = (settings or EngineSettings.from_airflow_config()).override(
            install_path=install_path, inherit_env=inherit_env, sandbox=sandbox, data_store=data_store
        )
        self.service = PythonExecutionService(self.settings)

    def get_conn(self) -> PythonExecutionService:
        """Return the validated service (``init()`` done). No Airflow connection is involved."""
        self.service.init()
        return self.service

    def run_job(
        self, job: PythonJob | str | Path, *, context: Mapping[str, Any] | None = None, **run_kwargs: Any
    ) -> RunResult:
        """Run ``job`` with its output in the task log; see :meth:`PythonExecutionService.run`.

        :param context: the task's Airflow context; its ``AIRFLOW_CTX_*`` variables reach the script.
        :param run_kwargs: ``macros``, ``dotenv_as_macros``, ``refresh``, ``cwd``, ``inherit_env``,
            ``resolve_asset``.
        :raises PythonExecError: the job is refused or its environment cannot be provisioned.
        """
        context_env = context_to_airflow_vars(context, in_env_var_format=True) if context else None
        job = job if isinstance(job, PythonJob) else PythonJob.load(job)
        return self.service.run(
            job,
            context_env=context_env,
            on_line=job_line_writer(),
            on_setup_line=provider_line,
            on_secrets=self._mask,
            handler_context=handler_context(job, context) if context else None,
            **run_kwargs,
        )

    def stop(self) -> None:
        """Stop the running script's process group (Airflow's ``on_kill``)."""
        self.service.stop()

    @staticmethod
    def _mask(forms: frozenset[str]) -> None:
        """Give Airflow's ``mask_secret`` every form of the run's secrets (the service's ``on_secrets``)."""
        for form in forms:
            mask_secret(form)


def job_line_writer() -> Callable[[str], Any]:
    """Write one line of the script's output into the task log: one record per line, through
    structlog directly, as Airflow's ``SubprocessHook`` writes its lines.

    Through the stdlib logger ``airflow_python_exec.job`` each line became two records (Airflow
    bridges stdlib logging into structlog, with a ``findCaller`` per record): 26-27 us a line
    against SubprocessHook's 18 us. The logger keeps its name (the task log's "Sources" filter) and
    Airflow's masking processors still see every line. Bound when the run starts, once Airflow has
    configured structlog for the task (binding is what a lazy proxy repeats on every call).
    """
    return structlog.get_logger(JOB_LOGGER).bind().info


def handler_context(job: PythonJob, context: Mapping[str, Any]) -> dict[str, Any]:
    """The ``context`` a handler receives from an Airflow task: ``job_id``, ``dag_id``, ``task_id``,
    ``run_id``, ``logical_date`` (ISO 8601, or ``None``), ``try_number`` and ``params`` (values JSON
    cannot encode become strings)."""
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    logical_date: Any = context.get("logical_date")
    params = context.get("params") or {}
    return {
        "job_id": job.job_id,
        "dag_id": getattr(dag, "dag_id", None) or getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id"),
        "logical_date": logical_date.isoformat() if hasattr(logical_date, "isoformat") else logical_date,
        "try_number": getattr(ti, "try_number", None),
        "params": json.loads(json.dumps(dict(params), default=str)),
    }
