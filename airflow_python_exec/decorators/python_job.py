"""``@task.python_job``: a TaskFlow function that returns the job to run.

The decorated function runs at execution time and returns a job path (folder, ``job.json`` or
``.py``); it then runs as :class:`~airflow_python_exec.operators.python_job.PythonJobOperator` with
the decorator's keyword arguments (``macros``, ``dotenv_as_macros``, ``python_env``, ...)::

    @task.python_job(macros={"APP_NAME": "from the decorator"})
    def hello(ds=None):
        return "jobs/hello"
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from airflow.providers.common.compat.sdk import (
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_python_exec.operators.python_job import PythonJobOperator


class _PythonJobDecoratedOperator(DecoratedOperator, PythonJobOperator):
    """Calls the decorated function for the job path, then runs it as ``PythonJobOperator``."""

    template_fields: Sequence[str] = (*DecoratedOperator.template_fields, *PythonJobOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {**DecoratedOperator.template_fields_renderers}
    custom_operator_name: str = "@task.python_job"

    def __init__(
        self,
        *,
        python_callable: Callable,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, job="", **kwargs)

    def execute(self, context: Any) -> Any:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        job = self.python_callable(*self.op_args, **kwargs)
        if not isinstance(job, (str, Path)) or not str(job).strip():
            raise TypeError("a @task.python_job function must return a job path (folder, job.json or .py)")
        self.job = str(job)
        return super().execute(context)


def python_job_task(python_callable: Callable | None = None, **kwargs: Any) -> TaskDecorator:
    """Wrap a function returning a job path into a :class:`PythonJobOperator` task."""
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=_PythonJobDecoratedOperator, **kwargs
    )
