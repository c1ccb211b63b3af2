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

import io
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from airflow_python_exec.errors import JobConfigError, PythonExecError
from airflow_python_exec.isolation.job_files import folder_signature, read_capped
from airflow_python_exec.models import PythonJob
from airflow_python_exec.plugins.job_outputs import declared_outputs
from airflow_python_exec.plugins.listing import Page, Row, matches, page_rows, rows_of, tagged_dags, upload_names
from airflow_python_exec.plugins.operator_tasks import (
    OPERATOR_MODULE,
    OPERATOR_TYPE,
    TaskJob,
    dag_task_jobs,
    latest_runs,
    runs_a_job,
    task_job,
)
from airflow_python_exec.plugins.upload import SAFE_JOB_ID, VERSIONS
from airflow_python_exec.redaction import hide_credentials_in, hide_url_credentials

log = logging.getLogger(__name__)
__all__ = [
    "OPERATOR_MODULE",
    "OPERATOR_TYPE",
    "TaskJob",
    "build_catalog",
    "catalog_page",
    "dag_task_jobs",
    "find_job",
    "job_entry",
    "last_runs",
]
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
    #: ``job_id``, ``folder``, ``details`` and ``error`` have been through ``hide_credentials_in`` already (an entry
    #: kept between requests by :func:`load_entry`), so only the tasks are passed through it here.
    shown_already: bool = field(default=False, repr=False)
    #: An upload without a DAG yet and without an error: the DAG processor has not parsed it yet.
    parsing: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the API (camelCase, as in ``job.json``), as the page shows it: every string
        passed through :func:`~airflow_python_exec.redaction.hide_credentials_in` (no URL user info, error
        lines included)."""
        job = {"jobId": self.job_id, "folder": self.folder, **self.details, "error": self.error}
        job = job if self.shown_already else hide_credentials_in(job)
        used_by = [hide_credentials_in(vars(use)) for use in self.used_by]
        head = {"jobId": job["jobId"], "folder": job["folder"], "origin": hide_credentials_in(self.origin)}
        return {**head, **job, "parsing": self.parsing, "usedBy": used_by}


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
        "project": job.project,
        "outputs": declared_outputs(job),
    }


def shown_python_env(job: PythonJob) -> dict[str, Any] | None:
    """``pythonEnv`` as shown: ``env`` reduced to its keys (plain environment may hold secrets, as
    ``.env`` does) and every URL's credentials replaced by ``***`` (requirement, index, extra paths)."""
    if job.python_env is None:
        return None
    env = job.python_env.model_dump(exclude_none=True, exclude_defaults=True)
    if "env" in env:
        env["env"] = sorted(env["env"])
    return hide_credentials_in(env)


def dotenv_keys(path: Path) -> list[str]:
    """The keys of a ``.env`` file (python-dotenv syntax), without their values; ``[]`` when absent.

    Only valid variable names with a value: python-dotenv turns a bare line (a pasted token,
    ``password: hunter2``) into a key without value, which would show the secret itself.
    """
    if not os.path.lexists(path):
        return []
    try:
        values = dotenv_values(stream=io.StringIO(read_capped(path, ".env").decode("utf-8")), interpolate=False)
    except (JobConfigError, UnicodeError):
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
    signature = folder_signature(os.fspath(folder))
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


def _read_entry(folder: Path) -> tuple[str, str, str, dict[str, Any], str | None]:
    """``(job_id, folder, resolved folder, details, error)`` of a job folder, each shown value already
    through :func:`~airflow_python_exec.redaction.hide_credentials_in`."""
    resolved = str(folder.resolve())
    try:
        job = PythonJob.load(folder)
    except PythonExecError as exc:
        return (
            hide_credentials_in(folder.name),
            hide_credentials_in(str(folder)),
            resolved,
            {},
            hide_credentials_in(str(exc)),
        )
    return (
        hide_credentials_in(job.job_id),
        hide_credentials_in(str(job.folder)),
        resolved,
        hide_credentials_in(describe_job(job)),
        None,
    )


def is_upload_name(name: str) -> bool:
    """A child of ``upload_folder`` that is a job folder's name (not ``.versions``, not hidden)."""
    return name != VERSIONS and bool(SAFE_JOB_ID.match(name))


def task_jobs_of(dag: Any, fileloc: str | None = None) -> list[TaskJob]:
    """The ``PythonJobOperator`` tasks of a (deserialized) DAG and the job each one names
    (:func:`~airflow_python_exec.plugins.operator_tasks.task_job`).

    :param fileloc: the DAG file (default: the DAG's own ``fileloc``); a relative ``job`` resolves
        against its folder, as the operator resolves it at run time.
    """
    fileloc = fileloc or getattr(dag, "fileloc", None)
    return [
        task_job(dag.dag_id, task.task_id, _argument(task, "job"), _argument(task, "handler"), fileloc)
        for task in dag.tasks
        if runs_a_job(task.task_type, getattr(task, "_task_module", None))
    ]


def _argument(task: Any, name: str) -> Any:
    """A ``PythonJobOperator`` argument of ``task``; a mapped task (``.partial().expand()``) keeps the
    arguments it was not expanded over in ``partial_kwargs``."""
    value = getattr(task, name, None)
    return value if value is not None else (getattr(task, "partial_kwargs", None) or {}).get(name)


def last_runs(uses: list[TaskUse]) -> None:
    """Fill each use's DAG last run (``run_id``, ``state``, ``run_after``) and its task's state there
    (:func:`~airflow_python_exec.plugins.operator_tasks.latest_runs` of these uses' DAGs only: two queries)."""
    if uses:
        fill_runs(uses, latest_runs(sorted({use.dag_id for use in uses})))


def fill_runs(uses: list[TaskUse], runs: dict[str, Any]) -> None:
    """Fill each use from ``runs`` (what :func:`~airflow_python_exec.plugins.operator_tasks.latest_runs` returns)."""
    for use in uses:
        if use.dag_id in runs:
            run, states = runs[use.dag_id]
            use.last_run = dict(run)
            use.task_state = states.get(use.task_id)


def add_ran_with(entry: JobEntry) -> None:
    """Fill each use's :attr:`TaskUse.ran_with` from its last run's XCom (one query for the job)."""
    from pydantic import ValidationError

    from airflow_python_exec.models.resources import Resources
    from airflow_python_exec.plugins.operator_tasks import run_facts
    from airflow_python_exec.run_result import describe_facts

    keys = {(u.dag_id, u.last_run["run_id"], u.task_id): u for u in entry.used_by if u.last_run}
    for key, facts in run_facts(list(keys)).items():
        try:
            limits = Resources.from_facts(facts["resources"]).describe()
            keys[key].ran_with = describe_facts(facts, f"{limits} ({facts['resources']['enforced_by']})")
        except (KeyError, TypeError, AttributeError, ValidationError):  # another version wrote it: not shown
            continue


def dag_view() -> list[TaskJob]:
    """What the DAGs say, for every viewer alike: every ``PythonJobOperator`` task (:func:`dag_task_jobs`).
    Filtered per viewer by :func:`rows_for`; the page shares one call between the requests that arrive
    together (:class:`~airflow_python_exec.plugins.threads.Shared`), and keeps nothing afterwards."""
    return dag_task_jobs()


def rows_for(
    upload_folder: Path | None, task_jobs: list[TaskJob], readable: Callable[[str], bool] | None = None
) -> list[Row]:
    """Every job the viewer may see, before any folder is read (:func:`~.listing.rows_of`).

    :param readable: whether the viewer may read a DAG id (default: every one).
    """
    root, names = upload_names(upload_folder, is_upload_name)
    return rows_of(task_jobs, names, root, job_dag_prefix(), readable or (lambda dag_id: True))


def catalog_page(
    upload_folder: Path | None, task_jobs: list[TaskJob], page: Page, readable: Callable[[str], bool] | None = None
) -> tuple[list[JobEntry], int]:
    """One page of the jobs the viewer may see (:mod:`.listing`), each with its DAGs' last runs.

    :returns: ``(the page's entries, how many jobs match in all)``.
    """
    rows = matches(rows_for(upload_folder, task_jobs, readable), page.search, tagged_dags(page.search))
    return entries_of(page_rows(rows, page)), len(rows)


def build_catalog(
    upload_folder: Path | None,
    task_jobs: list[TaskJob] | None = None,
    with_runs: bool = True,
    readable_dags: set[str] | None = None,
) -> list[JobEntry]:
    """Every job at once, unpaged: uploads, then the job folders the DAGs name (one entry per folder,
    each with the tasks that run it), then handler and template jobs made from task arguments.

    :param task_jobs: the DAGs' tasks (default: read from the metadata database).
    :param with_runs: look up each DAG's last run.
    :param readable_dags: the DAG ids the viewer may read (``None``: all).
    """
    task_jobs = dag_task_jobs() if task_jobs is None else task_jobs
    readable = None if readable_dags is None else readable_dags.__contains__
    return entries_of(rows_for(upload_folder, task_jobs, readable), with_runs)


def entries_of(rows: list[Row], with_runs: bool = True) -> list[JobEntry]:
    """The shown entries of ``rows`` (their folders read through :func:`load_entry`), with the tasks
    that run each and, with ``with_runs``, those tasks' last runs (:func:`last_runs`)."""
    entries, uses = [], []
    for row in rows:
        entry = _entry_of(row)
        for tj in row.tasks:
            use = TaskUse(tj.dag_id, tj.task_id, tj.job)
            entry.used_by.append(use)
            uses.append(use)
        entries.append(entry)
    if with_runs:
        last_runs(uses)
    return entries


def job_entry(
    upload_folder: Path | None, task_jobs: list[TaskJob], job_id: str, readable: Callable[[str], bool] | None = None
) -> JobEntry | None:
    """The entry of ``job_id`` the viewer may see, with its runs: the rows named so are read first; only
    when none is that job (a folder named unlike its ``jobId``) are the others read."""
    rows = rows_for(upload_folder, task_jobs, readable)
    named = [row for row in rows if row.name == job_id]
    entry = find_job(entries_of(named, with_runs=False), job_id)
    if entry is None:
        entry = find_job(entries_of([row for row in rows if row.name != job_id], with_runs=False), job_id)
    if entry is not None:
        last_runs(entry.used_by)
    return entry


def find_job(catalog: list[JobEntry], job_id: str) -> JobEntry | None:
    """The entry of ``job_id`` (the first when several folders share it: uploaded ones come first)."""
    return next((entry for entry in catalog if entry.job_id == job_id), None)


def _entry_of(row: Row) -> JobEntry:
    if row.folder is not None:
        entry = load_entry(row.folder, row.origin[0])
        entry.origin = list(row.origin)
        entry.parsing = row.own_dag is None and entry.error is None
        return entry
    tj = row.tasks[0]
    if tj.job is not None:
        error = f"job path {tj.job!r} is a template, resolved only when the task runs"
        return JobEntry(job_id=tj.task_id, folder=None, origin=["dag"], error=error)
    details: dict[str, Any] = {"script": None, "handler": tj.handler, "macros": [], "envKeys": [], "pythonEnv": None}
    return JobEntry(job_id=tj.task_id, folder=None, origin=["dag"], details=details)


def job_dag_prefix() -> str:
    """``[python_exec] job_dag_prefix``: the DAG that ``load_job_dags`` makes of a job is
    ``<job_dag_prefix><jobId>`` (the pages link a job to it when one of its tasks is that DAG's)."""
    from airflow_python_exec.settings import EngineSettings

    return EngineSettings.from_airflow_config().job_dag_prefix
