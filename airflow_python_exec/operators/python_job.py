"""``PythonJobOperator``: run a job's script or handler function as an Airflow task."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    BaseOperator,
)

from airflow_python_exec.errors import JobConfigError, PythonExecError, ResultError
from airflow_python_exec.isolation import json_limits

# What only execute() needs (the hook, the service, the job models and pydantic, the command
# builder) is imported there: every DAG file using the operator is parsed again and again by the
# dag-processor, and those imports cost it ~13 ms over BashOperator's.
if TYPE_CHECKING:
    from airflow_python_exec.hooks.python_exec import PythonExecutionHook
    from airflow_python_exec.models import Macro, PythonEnv, PythonJob
    from airflow_python_exec.run_result import RunResult


class PythonJobOperator(BaseOperator):
    """Run a Python job as an Airflow task: a script (a folder with ``app.py`` and optional ``.env``,
    ``job.json``, ``pylock.toml``) or a handler function (``function`` in ``job.json``, or the
    ``handler`` argument), with its macros as environment variables and its output in the task log.

    :param job: a job folder, a ``job.json`` or a ``.py`` file; a relative path resolves against the
        folder of the DAG file, or the working directory when the task has no DAG (templated).
        Optional with ``handler``: the job is then made from the arguments, its ``jobId`` the task id
        and its folder the DAG file's folder.
    :param handler: ``module.path:function`` or a bare ``function`` of ``packageName`` (templated);
        overrides ``function.handler``.
    :param parameters: the handler's keyword arguments, JSON values, updating ``function.parameters``
        per key (templated: ``{{ params.x }}`` or an upstream task's XCom).
    :param source: a folder, ``.zip``, ``zip+https://`` or ``git+`` URL holding the handler (templated).
    :param code: the handler's Python source text, saved as the job's ``packageName`` (templated).
    :param requirements: PEP 508 strings (or a requirements file) resolved into the job's environment
        (templated); refused together with a ``pylock``.
    :param macros: per-run macros overriding ``job.json`` ones: a ``{key: value}`` dict or a list of
        :class:`~airflow_python_exec.models.Macro` (``secure=True`` for a Fernet token) (templated).
    :param dotenv_as_macros: convert the job's ``.env`` into environment variables below macros;
        by default ``.env`` is left for the script to load with python-dotenv.
    :param install_path: override ``[python_exec] install_path`` for this task.
    :param inherit_env: override ``[python_exec] inherit_env`` (``None``: the setting, True by default).
    :param sandbox: override ``[python_exec] sandbox`` for this task: ``off``, ``bubblewrap`` or ``auto``
        (``None``: the setting, ``off`` by default).
    :param cwd: the script's working directory, relative to the job folder; default the job folder
        (templated).
    :param skip_on_exit_code: exit code(s) that skip the task; they add to ``runtimeConfig.exitCodes``.
    :param python_env: a ``pythonEnv`` (``PythonEnv`` or dict) replacing the job's own.
    :param refresh: ``True`` runs in an ephemeral environment removed afterwards.
    :param inputs: the handler's data item inputs (templated): argument name -> a URI, an ``Asset`` or
        ``Asset.ref`` (its latest event), an ``ObjectStoragePath``, a spec ``{"uri"|"asset", "format"}``,
        or an upstream output ``op.output["name"]`` (that exact version; also the dependency). Updates
        ``function.inputs`` per key; each input reaches the handler as a ``DataItem``.
    :param outputs: the handler's declared outputs, replacing ``function.outputs``: names or specs
        ``{"name", "kind", "format", "uri"}``. Tables and artifacts are outlets (known at parse time).
    :param data_store: override ``[python_exec] data_store`` (where outputs are stored) for this task.
    :param resources: resource limits over the job's own, ``{"memory": "512Mi", "cpu": 1.5, "pids": 256,
        "tmp": "1Gi", "timeout": "30m"}``; also the pod's requests/limits under Kubernetes.

    The exit code decides the outcome: ``runtimeConfig.exitCodes`` maps codes to ``success``,
    ``skipped`` or ``failed``; an unmapped non-zero code fails (the code is in the message; a handler's
    exception type and message too). A failed run or provisioning may be retried as ``retries`` say.
    A job refused before it starts (bad job configuration or macros, disabled engine, bad install
    path, script not allowed, handler parameters that do not bind) fails at once without retries
    (``AirflowFailException``): the same input would be refused again. The return value (XCom
    ``return_value``) is the run's result: the JSON written to ``PYTHON_EXEC_RESULT_FILE`` (a handler's
    return value), else the last output line, as with ``BashOperator``; secrets replaced.
    """

    template_fields: Sequence[str] = (
        "job",
        "macros",
        "cwd",
        "handler",
        "parameters",
        "inputs",
        "source",
        "code",
        "requirements",
    )
    #: Rendered as native objects whatever the DAG says: they are JSON values by contract.
    native_template_fields: ClassVar[tuple[str, ...]] = ("parameters", "inputs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"parameters": "json", "code": "py"}
    ui_color = "#ffd43b"
    ui_fgcolor = "#306998"

    def __init__(
        self,
        *,
        job: str | Path | None = None,
        handler: str | None = None,
        parameters: Mapping[str, Any] | str | None = None,
        source: str | None = None,
        code: str | None = None,
        requirements: Sequence[str] | str | None = None,
        macros: Mapping[str, Any] | Iterable[Macro | Mapping[str, Any]] | None = None,
        dotenv_as_macros: bool = False,
        install_path: str | None = None,
        inherit_env: bool | None = None,
        sandbox: str | None = None,
        cwd: str | None = None,
        skip_on_exit_code: int | Collection[int] | None = None,
        python_env: PythonEnv | Mapping[str, Any] | None = None,
        refresh: bool | None = None,
        inputs: Mapping[str, Any] | None = None,
        outputs: Sequence[Any] | None = None,
        data_store: str | None = None,
        resources: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        from airflow_python_exec.operators.resources import with_pod_resources

        super().__init__(**with_pod_resources(resources, kwargs))
        self.job_resources = dict(resources) if resources else None  # BaseOperator.resources: Airflow's form
        self.job = str(job) if isinstance(job, Path) else job
        self.handler = handler
        self.parameters = parameters
        self.source = source
        self.code = code
        self.requirements = requirements
        self.macros = macros
        self.dotenv_as_macros = dotenv_as_macros
        self.install_path = install_path
        self.inherit_env = inherit_env
        self.sandbox = sandbox
        self.cwd = cwd
        self.skip_on_exit_code = (
            (skip_on_exit_code,) if isinstance(skip_on_exit_code, int) else (skip_on_exit_code or ())
        )
        self.python_env = python_env
        self.refresh = refresh
        self.inputs = inputs
        self.outputs = list(outputs) if outputs is not None else None
        self.data_store = data_store
        self._hook: PythonExecutionHook | None = None
        if type(self).template_fields is PythonJobOperator.template_fields:
            # Only the arguments given are templated: Airflow validates each template field's value
            # after rendering (our eight cost a plain task 1.2 ms); an unset one has nothing to render.
            self.template_fields = tuple(f for f in PythonJobOperator.template_fields if getattr(self, f) is not None)
        self._lineage: RunResult | None = None
        declare_assets(self)

    def execute(self, context: Any) -> Any:
        """Run the job; return its result.

        :raises AirflowFailException: the job is refused before it starts, or its handler refuses the
            parameters (no retry).
        :raises AirflowException: provisioning failed, the run's outcome is ``failed`` (a non-zero exit
            code not mapped otherwise, a handler's exception), or its result is invalid or too large.
        :raises AirflowSkipException: the outcome is ``skipped`` (``exitCodes`` or ``skip_on_exit_code``).
        """
        from airflow_python_exec.builder import to_macros
        from airflow_python_exec.hooks.python_exec import PythonExecutionHook
        from airflow_python_exec.models.exit_codes import exit_outcome
        from airflow_python_exec.operators.data_items import asset_resolver, record, without_results
        from airflow_python_exec.operators.resources import push_run_facts as push_facts

        with task_failures():
            job = self.make_job(context)
            macros = to_macros(self.macros, f"{type(self).__name__} macros")
            exit_outcome(0, job.exit_codes, self.skip_on_exit_code)  # a bad skip code is refused before the run
            self._hook = PythonExecutionHook(
                install_path=self.install_path,
                inherit_env=self.inherit_env,
                sandbox=self.sandbox,
                data_store=self.data_store,
            )
            result = self._hook.run_job(
                job,
                context=context,
                macros=macros,
                dotenv_as_macros=self.dotenv_as_macros,
                refresh=self.refresh,
                cwd=self.cwd,
                resolve_asset=asset_resolver(context),
                resources=self.job_resources,
            )
        push_facts(context, result.facts)
        value = run_outcome(job, result, self.skip_on_exit_code)
        self._lineage = result
        record(context, result, job.job_id, self.outlets)
        self.outlets = without_results(self.outlets, result, job.project)
        return value

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render ``parameters`` and ``inputs`` as native objects (an integer Param stays an int),
        the other fields as the DAG says."""
        native = [f for f in self.native_template_fields if f in self.template_fields]
        if native and not self._should_render_native(self.dag if self.has_dag() else None):
            from airflow.sdk.definitions._internal.templater import create_template_env

            env = self.dag.get_template_env() if self.has_dag() else None
            native_env = create_template_env(native=True)
            if env is not None:
                native_env.globals.update(env.globals)
                native_env.filters.update(env.filters)
            previous = self.render_template_as_native_obj
            self.render_template_as_native_obj = True
            try:
                self._do_render_template_fields(self, native, context, native_env, set())
            finally:
                self.render_template_as_native_obj = previous
            others = [f for f in self.template_fields if f not in native]
            self._do_render_template_fields(self, others, context, jinja_env or self.get_template_env(), set())
            return
        super().render_template_fields(context, jinja_env)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The inputs and outputs of the last run for the OpenLineage provider (``[openlineage]`` extra)."""
        from airflow_python_exec.operators.lineage import operator_lineage

        return operator_lineage(self._lineage)

    def make_job(self, context: Any) -> PythonJob:
        """The task's job: loaded from ``job`` or made from the arguments, with the arguments applied.

        :raises JobConfigError: neither ``job`` nor ``handler``, or the job breaks a job rule.
        """
        from airflow_python_exec.models import PythonJob

        if self.job:
            job = load_job(self.job, context, self, self.python_env)
        elif self.handler:
            function = {"handler": self.handler, "source": self.source, "code": self.code}
            config = {
                "jobId": self.task_id,
                "function": {k: v for k, v in function.items() if v is not None},
                **({"pythonEnv": _as_dict(self.python_env)} if self.python_env is not None else {}),
            }
            job = PythonJob.from_config(config, task_folder(context, self), source=f"task {self.task_id!r}")
        else:
            raise JobConfigError(f"task {self.task_id!r} has neither job nor handler; give a job path, or a handler")
        from airflow_python_exec.operators.data_items import input_value

        inputs = {k: input_value(k, v) for k, v in (self.inputs or {}).items()} if self.inputs else None
        job = job.with_function(
            handler=self.handler,
            parameters=_parameters(self.parameters),
            source=self.source,
            code=self.code,
            inputs=inputs,
            outputs=self.outputs,
        )
        if self.requirements is not None:
            env = job.python_env.model_dump(exclude_none=True) if job.python_env is not None else {}
            job = job.with_python_env({**env, "requirements": _requirements(self.requirements)})
        return job

    def on_kill(self) -> None:
        """Stop the script's whole process group (task cancelled or ``execution_timeout``)."""
        if self._hook is not None:
            self._hook.stop()


def run_outcome(job: PythonJob, result: RunResult, skip_codes: Container[int] | Iterable[int]) -> Any:
    """Turn a run's exit code into the task's outcome (``exitCodes`` and ``skip_codes``); return its result.

    :raises AirflowSkipException: the outcome is ``skipped``.
    :raises AirflowFailException: a handler refused its parameters (no retry).
    :raises AirflowException: the outcome is ``failed``, or the result cannot be used.
    """
    from airflow_python_exec.models.exit_codes import Outcome, exit_outcome

    if result.limit is not None:  # a limit fails the task whatever exitCodes map (retries apply)
        raise AirflowException(f"Python job {job.job_id!r} ended: {result.limit}")
    outcome = exit_outcome(result.exit_code, job.exit_codes, tuple(skip_codes))  # type: ignore[arg-type]
    if outcome is Outcome.SKIPPED:
        raise AirflowSkipException(f"Python job {job.job_id!r} exited with code {result.exit_code}: skipped")
    if outcome is Outcome.FAILED:
        error = result.handler_error
        what = f"handler {job.function.handler}" if job.function is not None else f"({job.package_name})"
        if error is not None and error.kind == "refused":
            raise AirflowFailException(f"Python job {job.job_id!r} {what} refused: {error}")
        detail = f": {error}" if error is not None else ""
        raise AirflowException(f"Python job {job.job_id!r} {what} exited with code {result.exit_code}{detail}")
    try:
        return result.value()
    except ResultError as exc:
        raise AirflowException(f"Python job {job.job_id!r}: {exc}") from None


def declare_assets(task: PythonJobOperator) -> None:
    """Add the task's data item outlets and inlets at DAG-parse time (besides any given by hand).

    :raises JobConfigError: bad ``outputs`` (refused when the DAG is parsed, as a typo should be).
    """
    folder = Path(task.dag.fileloc).parent if task.has_dag() and getattr(task.dag, "fileloc", None) else None
    from airflow_python_exec.handlers.declared import job_json_declares_data

    if task.outputs is None and not task.inputs and not job_json_declares_data(task.job, folder):
        return  # the common case: nothing to declare, and nothing more imported at parse time
    from airflow_python_exec.operators.data_items import (
        configured_data_store,
        inlets_for,
        outlets_for,
        parse_time_job,
        parse_time_outputs,
    )

    loaded = parse_time_job(task.job, folder)
    outputs = parse_time_outputs(task.outputs, loaded)
    if outputs:
        known = {getattr(a, "name", None) for a in task.outlets}
        store = configured_data_store(task.data_store)
        project = loaded.project if loaded is not None else None
        task.outlets = [*task.outlets, *(a for a in outlets_for(outputs, store, project) if a.name not in known)]
    inputs = dict(loaded.function.inputs) if loaded is not None and loaded.function is not None else {}
    inputs.update(task.inputs if isinstance(task.inputs, Mapping) else {})
    inlets = inlets_for(inputs)
    if inlets:
        task.inlets = [*task.inlets, *inlets]


def task_folder(context: Any, task: BaseOperator) -> Path:
    """The folder of a job made from arguments: the DAG file's folder, else the working directory."""
    dag = (context or {}).get("dag") or (task.dag if task.has_dag() else None)
    fileloc = getattr(dag, "fileloc", None)
    return Path(fileloc).parent if fileloc else Path.cwd()


def _as_dict(python_env: PythonEnv | Mapping[str, Any]) -> dict[str, Any]:
    from airflow_python_exec.models import PythonEnv

    return python_env.model_dump(exclude_none=True) if isinstance(python_env, PythonEnv) else dict(python_env)


def _parameters(parameters: Any) -> dict[str, Any] | None:
    """Rendered ``parameters``: a mapping (a JSON object string, from a template, is parsed)."""
    if parameters is None or isinstance(parameters, Mapping):
        return dict(parameters) if parameters else None
    if isinstance(parameters, str):
        try:
            parsed = json_limits.loads(parameters, "parameters")
        except json_limits.JSONDepthError as exc:
            raise JobConfigError(str(exc)) from None
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    raise JobConfigError(f"parameters must be a dict of JSON values, not {type(parameters).__name__}")


def _requirements(requirements: Sequence[str] | str) -> list[str] | str:
    return requirements if isinstance(requirements, str) else list(requirements)


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
    from airflow_python_exec.models import PythonJob

    return PythonJob.load(path).with_python_env(python_env) if python_env is not None else PythonJob.load(path)
