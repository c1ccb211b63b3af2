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
other jobs' DAGs are made as usual. A folder is read once per process while it, its ``job.json`` and
its ``.env`` keep their inode, size and modification time (:func:`loaded_job`).

Thousands of folders: ``load_job_dags(globals(), shard=(i, n))`` in each of ``n`` DAG files (``i`` from
0 to ``n - 1``) makes the DAGs of the jobs whose ``jobId`` falls in share ``i`` (:func:`shard_of`: a
hash of the ``jobId``, the same in every process and on every machine), so no single file nears the
DAG processor's import timeout, and a file that fails to import takes only its own share with it.
"""

from __future__ import annotations

import inspect
import os
import threading
import zlib
from collections.abc import Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.isolation.job_files import folder_signature
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
    namespace: MutableMapping[str, Any],
    folders: Iterable[str | os.PathLike[str]] | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, DAG]:
    """Make a DAG of every job folder under ``folders`` and ``upload_folder``; put each in ``namespace``.

    :param namespace: the calling DAG file's ``globals()``: the DAG processor finds DAGs there, and each
        DAG's ``fileloc`` is that file (``namespace["__file__"]``).
    :param folders: more folders whose child folders are jobs (e.g. ``["/srv/jobs"]``; one path alone is
        taken as ``[path]``), read before ``[python_exec] upload_folder`` (unset: only ``folders``), so
        a shipped job keeps its DAG when an upload names the same ``jobId``. A missing folder is
        skipped silently (``upload_folder`` exists only after the first upload).
    :param shard: ``(i, n)``: only the jobs of share ``i`` of ``n`` (:func:`shard_of`); default: all.
    :returns: the DAGs made, by DAG id.
    :raises ValueError: ``shard`` is not ``(i, n)`` with ``0 <= i < n``.

    A child folder counts as a job when it holds ``job.json`` or ``app.py``; hidden folders (``.versions``,
    an upload in progress) do not. A job that breaks a job rule, whose DAG cannot be built, or whose DAG
    id another job already has (the first folder keeps it), is logged as one warning (``[python_exec]
    job folder <folder> has no DAG: <error>``) and skipped. Never raises for a job folder.
    """
    index, count = check_shard(shard)
    settings = EngineSettings.from_airflow_config()
    if isinstance(folders, (str, os.PathLike)):  # one folder given as such, not a list of its characters
        folders = [folders]
    roots = [Path(folder).expanduser() for folder in folders or ()]
    roots += [settings.upload_folder] if settings.upload_folder is not None else []
    fileloc = namespace.get("__file__")
    defaults = dag_defaults()
    made: dict[str, DAG] = {}
    origin: dict[str, Path] = {}
    for folder in job_folders(roots):
        try:
            job = loaded_job(folder)
            if shard_of(job.job_id, count) != index:
                continue
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


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """``shard`` as ``(i, n)``; ``None`` is ``(0, 1)`` (every job).

    :raises ValueError: not two integers with ``0 <= i < n``; the message names the value and the fix.
    """
    if shard is None:
        return 0, 1
    try:
        index, count = shard
    except (TypeError, ValueError):
        index, count = None, None
    if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
        raise ValueError(f"load_job_dags: shard={shard!r} is not (i, n) with 0 <= i < n; e.g. shard=(0, 4)")
    return index, count


def shard_of(job_id: str, count: int) -> int:
    """The share (``0`` to ``count - 1``) of the job ``job_id``: CRC-32 of its UTF-8 bytes modulo
    ``count``, so every process on every machine puts a job in the same file (Python's ``hash`` of a
    string changes from process to process)."""
    return zlib.crc32(job_id.encode("utf-8")) % count


#: ``str(folder) -> (signature, job)``: the jobs read by this process (:func:`loaded_job`).
_JOBS: dict[str, tuple[tuple[Any, ...], PythonJob]] = {}
_JOBS_LOCK = threading.Lock()
#: Most folders kept by :func:`loaded_job`; past it, all are dropped (a deployment's folders are far fewer).
MAX_CACHED_JOBS = 20_000


def loaded_job(folder: Path) -> PythonJob:
    """:meth:`PythonJob.load` of ``folder``, read again only when the folder, its ``job.json`` or its
    ``.env`` changed inode, size or modification time (an upload swaps the whole folder in; an edit
    changes the file's mtime): a process that parses the DAG file again reads no unchanged folder.

    :raises JobConfigError: the job breaks a rule (not kept: the next parse reads it again).
    """
    key = os.fspath(folder)
    signature = folder_signature(key)
    cached = _JOBS.get(key)
    if cached is not None and cached[0] == signature:
        return cached[1]
    job = PythonJob.load(folder)
    with _JOBS_LOCK:
        if len(_JOBS) >= MAX_CACHED_JOBS:
            _JOBS.clear()
        _JOBS[key] = (signature, job)
    return job


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

    #: ``job`` is serialized with the DAG (the Python jobs page reads which folder a job DAG runs),
    #: but never rendered: see :meth:`render_template_fields`.
    template_fields: Sequence[str] = ("job",)

    def __init__(self, *, param_macros: Iterable[str] = (), param_arguments: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.param_macros = tuple(param_macros)
        self.param_arguments = tuple(param_arguments)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render nothing: every argument comes from the job folder (``job`` is its path, whose name
        the author chose: a folder named ``{{ var.value.x }}`` must stay that path)."""

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
