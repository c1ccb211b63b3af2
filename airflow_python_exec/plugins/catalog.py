"""The jobs the "Python jobs" page lists: every job folder a DAG's ``PythonJobOperator`` names (read
from the serialized DAGs in the metadata database) and every job folder under ``upload_folder``.

A job is shown without any secret (DESIGN.md, "The UI plugin"): a secure macro's value is replaced
by the word ``secure`` (its Fernet token is never sent, nor decrypted), and of ``.env`` only the
keys are read. Tasks of DAGs are found by their serialized ``task_type``/``_task_module`` and their
``job`` template field (a relative path resolves against the DAG file's folder, as the operator
resolves it at run time); tasks made from a ``handler`` without ``job`` are listed too, under the
task id, as the operator names them.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from airflow_python_exec.errors import PythonExecError
from airflow_python_exec.models import PythonJob
from airflow_python_exec.plugins.dag_jobs import (
    OPERATOR_MODULE,
    OPERATOR_TYPE,
    TaskJob,
    dag_task_jobs,
    latest_runs,
    task_job,
)
from airflow_python_exec.plugins.shown import shown
from airflow_python_exec.plugins.upload import SAFE_JOB_ID, VERSIONS
from airflow_python_exec.redaction import hide_url_credentials

log = logging.getLogger(__name__)
__all__ = ["OPERATOR_MODULE", "OPERATOR_TYPE", "TaskJob", "build_catalog", "dag_task_jobs", "find_job", "last_runs"]
SECURE = "secure"
#: Most job folders whose entries are kept between requests (:func:`load_entry`); past it, all are dropped.
MAX_CACHED_FOLDERS = 20_000
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class TaskUse:
    """One task that runs a job, with its DAG's last run.

    :ivar last_run: ``{"run_id", "state", "run_after"}`` of the DAG's latest run, or ``None``.
    :ivar task_state: the task's state in that run, or ``None``.
    """

    dag_id: str
    task_id: str
    job: str | None
    last_run: dict[str, Any] | None = None
    task_state: str | None = None
    #: What the task's last run ran with (Python, environment, sandbox, limits), on a job's own page.
    ran_with: str | None = None


@dataclass
class JobEntry:
    """One job of the catalog, safe to show (see the module docstring)."""

    job_id: str
    folder: str | None
    origin: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    used_by: list[TaskUse] = field(default_factory=list)
    #: The resolved folder: one entry per folder however it is named (not shown).
    key: str = field(default="", repr=False)
    #: ``job_id``, ``folder``, ``details`` and ``error`` have been through ``shown`` already (an entry
    #: kept between requests by :func:`load_entry`), so only the tasks are passed through it here.
    shown_already: bool = field(default=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the API (camelCase, as in ``job.json``), as the page shows it: every string
        passed through :func:`~airflow_python_exec.plugins.shown.shown` (no URL user info, error
        lines included)."""
        job = {"jobId": self.job_id, "folder": self.folder, **self.details, "error": self.error}
        job = job if self.shown_already else shown(job)
        used_by = [shown(vars(use)) for use in self.used_by]
        return {"jobId": job["jobId"], "folder": job["folder"], "origin": shown(self.origin), **job, "usedBy": used_by}


def describe_job(job: PythonJob) -> dict[str, Any]:
    """The shown fields of a loaded job: script or handler, macros (secure ones as ``secure``), ``.env``
    keys, ``pythonEnv`` (``env`` as keys only). Never a secure value, a token, an environment value or
    the credentials of a URL (``function.source``, requirement or index URLs: shown as ``***``)."""
    function = job.function
    return {
        "script": job.package_name if function is None else None,
        "handler": function.handler if function is not None else None,
        "source": hide_url_credentials(function.source) if function is not None and function.source else None,
        "macros": [
            {"key": m.key, "value": SECURE if m.secure else m.value, "secure": m.secure, "description": m.description}
            for m in job.macros
        ],
        "envKeys": dotenv_keys(job.dotenv_path),
        "pythonEnv": shown_python_env(job),
    }


def shown_python_env(job: PythonJob) -> dict[str, Any] | None:
    """``pythonEnv`` as shown: ``env`` reduced to its keys (plain environment may hold secrets, as
    ``.env`` does) and every URL's credentials replaced by ``***`` (requirement, index, extra paths)."""
    if job.python_env is None:
        return None
    env = job.python_env.model_dump(exclude_none=True, exclude_defaults=True)
    if "env" in env:
        env["env"] = sorted(env["env"])
    return shown(env)


def dotenv_keys(path: Path) -> list[str]:
    """The keys of a ``.env`` file (python-dotenv syntax), without their values; ``[]`` when absent.

    Only valid variable names with a value: python-dotenv turns a bare line (a pasted token,
    ``password: hunter2``) into a key without value, which would show the secret itself.
    """
    if not path.is_file():
        return []
    try:
        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeError):
        return []
    return [key for key, value in values.items() if value is not None and _ENV_NAME.match(key)]


def load_entry(folder: Path, origin: str) -> JobEntry:
    """A catalog entry for the job folder ``folder``; a job that breaks a rule gets ``error`` (one line).

    What a folder shows is kept between requests (:data:`_FOLDERS`) while the folder, its ``job.json``
    and its ``.env`` keep their inode, size and modification time (an upload swaps the whole folder in;
    an edit changes the file's mtime), so a request reads only a few ``stat`` results per folder. The
    kept entry is what any viewer may see of an uploaded or DAG-named folder: no secret (secure
    macros as ``secure``, ``.env`` keys only); who sees a DAG's folders is decided per request.
    """
    key = str(folder)
    signature = _signature(folder)
    cached = _FOLDERS.get(key)
    if cached is None or cached[0] != signature:
        cached = (signature, _read_entry(folder))
        with _FOLDERS_LOCK:
            if len(_FOLDERS) >= MAX_CACHED_FOLDERS:
                _FOLDERS.clear()
            _FOLDERS[key] = cached
    job_id, shown_folder, resolved, details, error = cached[1]
    return JobEntry(job_id, shown_folder, [origin], details, error, key=resolved, shown_already=True)


#: ``str(folder) -> (signature, (job_id, folder shown, resolved folder, details, error))``.
_FOLDERS: dict[str, tuple[tuple[Any, ...], tuple[str, str, str, dict[str, Any], str | None]]] = {}
_FOLDERS_LOCK = threading.Lock()


def _signature(folder: Path) -> tuple[Any, ...]:
    """Inode, size and mtime of the folder, its ``job.json`` and its ``.env`` (``None`` for a missing one)."""
    found: list[tuple[int, int, int, int] | None] = []
    base = os.fspath(folder)
    for path in (base, base + "/job.json", base + "/.env"):
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
            continue
        found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


def _read_entry(folder: Path) -> tuple[str, str, str, dict[str, Any], str | None]:
    """``(job_id, folder, resolved folder, details, error)`` of a job folder, each shown value already
    through :func:`~airflow_python_exec.plugins.shown.shown`."""
    resolved = str(folder.resolve())
    try:
        job = PythonJob.load(folder)
    except PythonExecError as exc:
        return shown(folder.name), shown(str(folder)), resolved, {}, shown(str(exc))
    return shown(job.job_id), shown(str(job.folder)), resolved, shown(describe_job(job)), None


def uploaded_folders(upload_folder: Path | None) -> list[Path]:
    """The job folders under ``upload_folder`` (``upload_folder/<jobId>/``; ``.versions`` excluded)."""
    if upload_folder is None:
        return []
    try:
        listing = os.scandir(upload_folder)
    except OSError:
        return []
    with listing:  # scandir's file types save a stat per entry (a symlink to a folder is followed)
        names = [e.name for e in listing if e.name != VERSIONS and SAFE_JOB_ID.match(e.name) and _is_dir(e)]
    return [upload_folder / name for name in sorted(names)]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def task_jobs_of(dag: Any, fileloc: str | None = None) -> list[TaskJob]:
    """The ``PythonJobOperator`` tasks of a (deserialized) DAG and the job each one names
    (:func:`~airflow_python_exec.plugins.dag_jobs.task_job`).

    :param fileloc: the DAG file (default: the DAG's own ``fileloc``); a relative ``job`` resolves
        against its folder, as the operator resolves it at run time.
    """
    fileloc = fileloc or getattr(dag, "fileloc", None)
    return [
        task_job(dag.dag_id, task.task_id, _argument(task, "job"), _argument(task, "handler"), fileloc)
        for task in dag.tasks
        if task.task_type == OPERATOR_TYPE and getattr(task, "_task_module", OPERATOR_MODULE) == OPERATOR_MODULE
    ]


def _argument(task: Any, name: str) -> Any:
    """A ``PythonJobOperator`` argument of ``task``; a mapped task (``.partial().expand()``) keeps the
    arguments it was not expanded over in ``partial_kwargs``."""
    value = getattr(task, name, None)
    return value if value is not None else (getattr(task, "partial_kwargs", None) or {}).get(name)


def last_runs(uses: list[TaskUse]) -> None:
    """Fill each use's DAG last run (``run_id``, ``state``, ``run_after``) and its task's state there
    (:func:`~airflow_python_exec.plugins.dag_jobs.latest_runs`: two queries for every DAG)."""
    fill_runs(uses, latest_runs([use.dag_id for use in uses], {use.task_id for use in uses}))


def fill_runs(uses: list[TaskUse], runs: dict[str, Any]) -> None:
    """Fill each use from ``runs`` (what :func:`~airflow_python_exec.plugins.dag_jobs.latest_runs` returns)."""
    for use in uses:
        if use.dag_id in runs:
            run, states = runs[use.dag_id]
            use.last_run = dict(run)
            use.task_state = states.get(use.task_id)


def add_ran_with(entry: JobEntry) -> None:
    """Fill each use's :attr:`TaskUse.ran_with` from its last run's XCom (one query for the job)."""
    from pydantic import ValidationError

    from airflow_python_exec.models.resources import Resources
    from airflow_python_exec.plugins.dag_jobs import run_facts
    from airflow_python_exec.run_result import describe_facts

    keys = {(u.dag_id, u.last_run["run_id"], u.task_id): u for u in entry.used_by if u.last_run}
    for key, facts in run_facts(list(keys)).items():
        try:
            limits = Resources.from_facts(facts["resources"]).describe()
            keys[key].ran_with = describe_facts(facts, f"{limits} ({facts['resources']['enforced_by']})")
        except (KeyError, TypeError, AttributeError, ValidationError):  # another version wrote it: not shown
            continue


def dag_view() -> tuple[list[TaskJob], dict[str, Any]]:
    """What the DAGs say, for every viewer alike: every ``PythonJobOperator`` task
    (:func:`dag_task_jobs`) and the last run of each of their DAGs
    (:func:`~airflow_python_exec.plugins.dag_jobs.latest_runs`). Filtered per viewer by
    :func:`build_catalog`; the page shares one call between the requests that arrive together
    (:class:`~airflow_python_exec.plugins.threads.Shared`), and keeps nothing afterwards."""
    task_jobs = dag_task_jobs()
    return task_jobs, latest_runs([tj.dag_id for tj in task_jobs], {tj.task_id for tj in task_jobs})


def build_catalog(
    upload_folder: Path | None,
    task_jobs: list[TaskJob] | None = None,
    with_runs: bool = True,
    readable_dags: set[str] | None = None,
    runs: dict[str, Any] | None = None,
) -> list[JobEntry]:
    """Every job: those under ``upload_folder`` first, then those the DAGs name (one entry per job folder,
    each with the tasks that run it), then handler jobs made from task arguments.

    :param task_jobs: the DAGs' tasks (default: read from the metadata database).
    :param with_runs: look up each DAG's last run.
    :param readable_dags: the DAG ids the viewer may read (``None``: all); tasks of other DAGs are
        left out, so neither their job folders nor their runs are shown.
    :param runs: the DAGs' last runs already read (:func:`dag_view`); default: looked up here.
    """
    task_jobs = dag_task_jobs() if task_jobs is None else task_jobs
    if readable_dags is not None:
        task_jobs = [tj for tj in task_jobs if tj.dag_id in readable_dags]
    entries: dict[str, JobEntry] = {}
    for folder in uploaded_folders(upload_folder):
        entry = load_entry(folder, "upload")
        entries[entry.key] = entry
    uses: list[TaskUse] = []
    for tj in task_jobs:
        use = TaskUse(tj.dag_id, tj.task_id, tj.job)
        uses.append(use)
        entry = _entry_for(tj, entries)
        entry.used_by.append(use)
        if "dag" not in entry.origin:
            entry.origin.append("dag")
    if with_runs and uses:
        if runs is None:
            last_runs(uses)
        else:
            fill_runs(uses, runs)
    return list(entries.values())


def find_job(catalog: list[JobEntry], job_id: str) -> JobEntry | None:
    """The entry of ``job_id`` (the first when several folders share it: uploaded ones come first)."""
    return next((entry for entry in catalog if entry.job_id == job_id), None)


def _entry_for(tj: TaskJob, entries: dict[str, JobEntry]) -> JobEntry:
    if tj.folder is not None:
        entry = load_entry(tj.folder, "dag")
        return entries.setdefault(entry.key, entry)
    key = f"task:{tj.dag_id}.{tj.task_id}"
    if key not in entries:
        if tj.job is not None:
            error = f"job path {tj.job!r} is a template, resolved only when the task runs"
            entries[key] = JobEntry(job_id=tj.task_id, folder=None, error=error)
        else:
            entries[key] = JobEntry(
                job_id=tj.task_id,
                folder=None,
                details={"script": None, "handler": tj.handler, "macros": [], "envKeys": [], "pythonEnv": None},
            )
    return entries[key]


def job_dag_prefix() -> str:
    """``[python_exec] job_dag_prefix``: the DAG that ``load_job_dags`` makes of a job is
    ``<job_dag_prefix><jobId>`` (the pages link a job to it when one of its tasks is that DAG's)."""
    from airflow_python_exec.settings import EngineSettings

    return EngineSettings.from_airflow_config().job_dag_prefix
