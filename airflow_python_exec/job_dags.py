"""Jobs as DAGs: one DAG per job folder, without a DAG file per job (DESIGN.md, "Jobs as DAGs").

A deployment adds one DAG file, once::

    from airflow_python_exec.job_dags import load_job_dags

    load_job_dags(globals())    # or load_job_dags(globals(), folders=["/srv/jobs"])

Every child folder of ``[python_exec] upload_folder`` (and of each folder in ``folders``) holding a
``job.json`` or an ``app.py`` becomes the DAG ``<job_dag_prefix><jobId>`` (``job_<jobId>``): one
``PythonJobOperator`` task running that folder, tagged ``python-job``, with

- a ``Param`` per plain macro (its value the default, its ``description`` the description), passed
  back to the job as that macro, so the UI's Trigger form changes it; a secure macro is never a
  ``Param`` (its token stays in ``job.json`` and is decrypted only when the job runs);
- a handler job's ``function.parameters`` as ``Param`` objects typed from their JSON defaults,
  passed to the handler with those types;
- ``job.json``'s ``dag`` object (:class:`~airflow_python_exec.models.dag_spec.JobDagSpec`): ``schedule``,
  ``description``, ``tags``, ``retries``, ``max_active_runs``; ``catchup`` is always off.

Parsing reads ``job.json`` only (through :meth:`PythonJob.load`, which checks every job rule): no
job code is imported or run, so a DAG file of hundreds of jobs parses in well under a second. A job
folder that breaks a rule gets no DAG and one warning line naming the folder and the error; the
other jobs' DAGs are made as usual.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.logs import log
from airflow_python_exec.models import DEFAULT_SCRIPT, JOB_FILE, PythonJob
from airflow_python_exec.models.dag_spec import JobDagSpec
from airflow_python_exec.operators.python_job import PythonJobOperator
from airflow_python_exec.settings import EngineSettings

#: Every job DAG has this tag (the UI's tag filter lists them together).
TAG = "python-job"
#: A fixed start date in the past: the serialized DAG stays the same from parse to parse (no new DAG
#: version), and with ``catchup`` off a scheduled DAG runs only its latest interval.
START_DATE = pendulum.datetime(2025, 1, 1, tz="UTC")
#: JSON types of a handler parameter's default -> the ``Param`` type (JSON Schema).
_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def load_job_dags(
    namespace: MutableMapping[str, Any], folders: Iterable[str | os.PathLike[str]] | None = None
) -> dict[str, DAG]:
    """Make a DAG of every job folder under ``upload_folder`` and ``folders``; put each in ``namespace``.

    :param namespace: the calling DAG file's ``globals()``: the DAG processor finds DAGs there, and each
        DAG's ``fileloc`` is that file (``namespace["__file__"]``).
    :param folders: more folders whose child folders are jobs (e.g. ``["/srv/jobs"]``; one path alone is
        taken as ``[path]``), read after ``[python_exec] upload_folder`` (unset: only ``folders``). A
        missing folder is skipped silently (``upload_folder`` exists only after the first upload).
    :returns: the DAGs made, by DAG id.

    A child folder counts as a job when it holds ``job.json`` or ``app.py``; hidden folders (``.versions``,
    an upload in progress) do not. A job that breaks a job rule, whose DAG cannot be built, or whose DAG
    id another job already has, is logged as one warning (``[python_exec] job folder <folder> has no
    DAG: <error>``) and skipped. Never raises for a job folder.
    """
    settings = EngineSettings.from_airflow_config()
    roots = [settings.upload_folder] if settings.upload_folder is not None else []
    if isinstance(folders, (str, os.PathLike)):  # one folder given as such, not a list of its characters
        folders = [folders]
    roots += [Path(folder).expanduser() for folder in folders or ()]
    fileloc = namespace.get("__file__")
    defaults = dag_defaults()
    made: dict[str, DAG] = {}
    origin: dict[str, Path] = {}
    for folder in job_folders(roots):
        try:
            job = PythonJob.load(folder)
            dag_id = job_dag_id(job.job_id, settings.job_dag_prefix)
            if dag_id in origin:
                raise JobConfigError(
                    f"jobId {job.job_id!r} is also the job in {origin[dag_id]}, which has the DAG {dag_id}; "
                    "give one of them another jobId"
                )
            dag = job_dag(job, settings.job_dag_prefix, fileloc=fileloc, defaults=defaults)
        except Exception as exc:  # noqa: BLE001 - one broken job must never take the file's other DAGs with it
            log.warning("job folder %s has no DAG: %s", folder, _one_line(exc, folder))
            continue
        made[dag_id], origin[dag_id] = dag, folder
        namespace[dag_id] = dag
    return made


def job_folders(roots: Iterable[Path]) -> list[Path]:
    """The job folders in ``roots``: child folders holding ``job.json`` or ``app.py``, not hidden, by name."""
    found = []
    for root in roots:
        try:
            children = sorted(os.scandir(root), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in children:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            path = Path(entry.path)
            if os.path.lexists(path / JOB_FILE) or os.path.lexists(path / DEFAULT_SCRIPT):
                found.append(path)
    return found


def job_dag_id(job_id: str, prefix: str | None = None) -> str:
    """The DAG id of the job ``job_id``: ``<job_dag_prefix><jobId>`` (``prefix`` default: the setting)."""
    if prefix is None:
        prefix = EngineSettings.from_airflow_config().job_dag_prefix
    return f"{prefix}{job_id}"


def dag_defaults() -> dict[str, Any]:
    """The DAG arguments whose defaults Airflow's ``DAG`` reads from its configuration for every DAG it
    makes, read once: the same values, without 200 DAGs paying 200 reads each (a third of the parse
    time of a file of 200 jobs went there)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow before 3.2: the Task SDK read Airflow's own configuration
        from airflow.configuration import conf

    read = {
        "max_active_tasks": lambda: conf.getint("core", "max_active_tasks_per_dag"),
        "max_active_runs": lambda: conf.getint("core", "max_active_runs_per_dag"),
        "max_consecutive_failed_dag_runs": lambda: conf.getint("core", "max_consecutive_failed_dag_runs_per_dag"),
        "disable_bundle_versioning": lambda: conf.getboolean("dag_processor", "disable_bundle_versioning"),
    }
    accepted = inspect.signature(DAG.__init__).parameters  # only what this Airflow's DAG takes
    return {name: value() for name, value in read.items() if name in accepted}


def job_dag(
    job: PythonJob, prefix: str = "job_", fileloc: str | None = None, defaults: dict[str, Any] | None = None
) -> DAG:
    """The DAG of one loaded job (see the module docstring).

    :param fileloc: the DAG file the DAG belongs to (default: where Airflow's ``DAG`` says it was made).
    :param defaults: :func:`dag_defaults` (default: Airflow's ``DAG`` reads them itself).
    :raises JobConfigError: a plain macro and a handler parameter share a name (both would be that Param).
    :raises Exception: what Airflow raises for an invalid DAG id, tag or schedule.
    """
    spec = job.dag or JobDagSpec()
    macro_params = macro_param_map(job)
    handler_params = handler_param_map(job)
    both = sorted(set(macro_params) & set(handler_params))
    if both:
        raise JobConfigError(
            f"job {job.job_id!r}: {both[0]!r} is both a macro and a function parameter, and a DAG has one "
            "Param per name; rename one of them"
        )
    dag = DAG(
        dag_id=job_dag_id(job.job_id, prefix),
        description=spec.description or _description(job),
        schedule=spec.schedule,
        start_date=START_DATE,
        catchup=False,
        tags=[TAG, *spec.tags],
        params={**macro_params, **handler_params},
        **{**(defaults or {}), **({"max_active_runs": spec.max_active_runs} if spec.max_active_runs else {})},
    )
    if fileloc:
        dag.fileloc = fileloc
    retries: dict[str, Any] = {"retries": spec.retries} if spec.retries is not None else {}
    JobDagOperator(
        task_id=job.job_id,
        job=str(job.folder),
        param_macros=list(macro_params),
        param_arguments=list(handler_params),
        dag=dag,
        **retries,
    )
    return dag


class JobDagOperator(PythonJobOperator):
    """The task of a job DAG: a :class:`PythonJobOperator` that takes its macros and handler arguments
    from the run's Params by name when it runs.

    No template is made from what a job folder holds (DESIGN.md "Reach: what a job may name"): a
    parameter name or macro key is looked up in ``context["params"]``, never written into Jinja text,
    so a name such as ``{{ conn.db.password }}`` (refused anyway: names are identifiers) could never
    be rendered, and Param values reach the job as the values they are.

    :param param_macros: plain macro keys whose Param is passed as that macro (a string; a ``None``
        value skips it, as a ``null`` macro value does).
    :param param_arguments: handler parameter names whose Param is passed with its JSON type.
    """

    #: Nothing is templated: every argument comes from the job folder (``job`` is its path, whose
    #: name the author chose: a folder named ``{{ var.value.x }}`` must stay that path).
    template_fields: Sequence[str] = ()

    def __init__(self, *, param_macros: Iterable[str] = (), param_arguments: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.param_macros = tuple(param_macros)
        self.param_arguments = tuple(param_arguments)

    def execute(self, context: Any) -> Any:
        """Fill ``macros`` and ``parameters`` from the run's Params, then run the job."""
        params = context["params"]
        if self.param_macros:
            self.macros = {key: str(params[key]) for key in self.param_macros if params.get(key) is not None}
        if self.param_arguments:
            self.parameters = {name: params[name] for name in self.param_arguments if name in params}
        return super().execute(context)


def macro_param_map(job: PythonJob) -> dict[str, Param]:
    """A string ``Param`` per plain macro with a value (a ``null`` value skips the macro, and so its Param)."""
    return {
        macro.key: Param(macro.value, type="string", description=macro.description or f"macro {macro.key}")
        for macro in job.macros
        if not macro.secure and macro.value is not None
    }


def handler_param_map(job: PythonJob) -> dict[str, Param]:
    """A ``Param`` per ``function.parameters`` entry, typed from its JSON default (``null``: any type)."""
    if job.function is None:
        return {}
    described = f"argument of {job.function.handler}"
    return {
        name: Param(value, description=described, **_typed(value)) for name, value in job.function.parameters.items()
    }


def _one_line(exc: Exception, folder: Path) -> str:
    """``exc`` as one line, without the folder a job error already starts with (the warning names it)."""
    text = " ".join(str(exc).split())
    for prefix in (f"{folder}: ", f"{folder / JOB_FILE}: "):
        text = text.removeprefix(prefix)
    return text


def _json_type(value: Any) -> str:
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def _description(job: PythonJob) -> str:
    what = f"handler {job.function.handler}" if job.function is not None else (job.package_name or "pythonEnv.command")
    return f"Python job {job.job_id}: {what} in {job.folder}"


def _typed(value: Any) -> dict[str, Any]:
    """``Param``'s ``type`` for a JSON default; none for ``null`` (any type)."""
    return {"type": _json_type(value)} if value is not None else {}
