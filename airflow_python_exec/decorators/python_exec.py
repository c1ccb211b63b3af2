"""``@task.python_exec``: a TaskFlow function run as a handler job in its own cached environment.

The decorated function's own source (without its decorators, as ``@task.virtualenv`` takes it)
becomes the job's inline code and its name the handler; the call's arguments (upstream XComs
resolved by Airflow) become the handler's parameters; its return value is the task's XCom::

    @task.python_exec(requirements=["pandas==2.2.3"], python_version="3.12")
    def summarize(rows: list[dict], context=None) -> dict:
        import pandas as pd
        return {"rows": len(pd.DataFrame(rows))}

The function runs in the job's interpreter, not Airflow's: it imports what it needs inside its
body, receives JSON values, and must return one (or, with ``outputs=[...]``, DataFrames and files stored
as data items). A parameter named ``context`` (default ``None``) receives the run's context as a JSON
dict; ``run`` the platform's run (``run.log_metric``); each name of ``inputs={...}`` a ``DataItem``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar

from airflow.providers.common.compat.sdk import DecoratedOperator, TaskDecorator, task_decorator_factory

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.operators.python_job import PythonJobOperator, task_failures


class _PythonExecDecoratedOperator(DecoratedOperator, PythonJobOperator):
    """Runs the decorated function's source as a handler job (see the module docstring)."""

    # ``code`` is the function's own source: never rendered as a template.
    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *(f for f in PythonJobOperator.template_fields if f not in ("code", "parameters", "handler")),
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {**DecoratedOperator.template_fields_renderers}
    custom_operator_name: str = "@task.python_exec"

    def __init__(
        self,
        *,
        python_callable: Callable,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        requirements: Sequence[str] | str | None = None,
        pylock: str | None = None,
        python_version: str | None = None,
        python_env: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        env = {
            **(python_env or {}),
            **{k: v for k, v in (("pylock", pylock), ("python_version", python_version)) if v is not None},
        }
        # Inputs arrive as DataItems when the job runs: @task's check of the call's arguments must
        # not miss them, and they are no parameters (placeholders, removed right after the check).
        inputs = kwargs.get("inputs")
        placeholders = [n for n in inputs if n not in (op_kwargs or {})] if isinstance(inputs, Mapping) else []
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs={**(op_kwargs or {}), **dict.fromkeys(placeholders)},
            handler=python_callable.__name__,
            requirements=requirements,
            python_env=env or None,
            **kwargs,
        )
        self.op_kwargs = {k: v for k, v in self.op_kwargs.items() if k not in placeholders}

    def execute(self, context: Any) -> Any:
        # The source is taken here, as @task.virtualenv does: parsing it (libcst) at DAG-parse time
        # would slow down every parse of the DAG file.
        self.code = self.get_python_source()
        with task_failures():
            self.parameters = call_parameters(self.python_callable, self.op_args, self.op_kwargs)
        return super().execute(context)


def call_parameters(function: Callable, args: Collection[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments as the handler's keyword parameters (JSON values).

    :raises JobConfigError: an argument the signature cannot take by name (``*args``), or a value
        JSON cannot encode; one line naming it.
    """
    signature = inspect.signature(function)
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise JobConfigError(f"{function.__name__}{signature} cannot take the call's arguments: {exc}") from None
    parameters: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            raise JobConfigError(
                f"{function.__name__}{signature}: *{name} cannot be passed to a handler; name each parameter"
            )
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            parameters.update(value)
        else:
            parameters[name] = value
    for name, value in parameters.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise JobConfigError(
                f"argument {name!r} of {function.__name__} is a {type(value).__name__}, which JSON "
                "cannot encode; pass JSON values (str, int, float, bool, None, list, dict)"
            ) from None
    return parameters


def python_exec_task(
    python_callable: Callable | None = None, multiple_outputs: bool | None = None, **kwargs: Any
) -> TaskDecorator:
    """Wrap a function into a handler job task (``requirements=``, ``pylock=``, ``python_version=``,
    ``macros=``, ``refresh=`` and the other :class:`PythonJobOperator` arguments)."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_PythonExecDecoratedOperator,
        **kwargs,
    )
