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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from airflow_python_exec.errors import PythonExecError
from airflow_python_exec.models import PythonJob
from airflow_python_exec.plugins.upload import SAFE_JOB_ID, VERSIONS
from airflow_python_exec.sources import redact_url

log = logging.getLogger(__name__)
OPERATOR_MODULE = "airflow_python_exec.operators.python_job"
OPERATOR_TYPE = "PythonJobOperator"
SECURE = "secure"
#: A URL inside a longer text (a PEP 508 requirement, a pip option line).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
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


@dataclass
class TaskJob:
    """What a ``PythonJobOperator`` task names: a job folder path, or a job made from a handler."""

    dag_id: str
    task_id: str
    folder: Path | None
    job: str | None
    handler: str | None


@dataclass
class JobEntry:
    """One job of the catalog, safe to show (see the module docstring)."""

    job_id: str
    folder: str | None
    origin: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    used_by: list[TaskUse] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the API (camelCase, as in ``job.json``)."""
        return {
            "jobId": self.job_id,
            "folder": self.folder,
            "origin": self.origin,
            **self.details,
            "error": self.error,
            "usedBy": [vars(use) for use in self.used_by],
        }


def describe_job(job: PythonJob) -> dict[str, Any]:
    """The shown fields of a loaded job: script or handler, macros (secure ones as ``secure``), ``.env``
    keys, ``pythonEnv`` (``env`` as keys only). Never a secure value, a token, an environment value or
    the credentials of a URL (``function.source``, requirement or index URLs: shown as ``***``)."""
    function = job.function
    return {
        "script": job.package_name if function is None else None,
        "handler": function.handler if function is not None else None,
        "source": redact_urls(function.source) if function is not None and function.source else None,
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
    shown = job.python_env.model_dump(exclude_none=True, exclude_defaults=True)
    if "env" in shown:
        shown["env"] = sorted(shown["env"])
    return _redact_all(shown)


def redact_urls(text: str) -> str:
    """``text`` with the credentials of each URL in it replaced (:func:`~airflow_python_exec.sources.redact_url`)."""
    return _URL.sub(lambda match: redact_url(match.group()), text)


def _redact_all(value: Any) -> Any:
    """:func:`redact_urls` applied to every string in a JSON-like value."""
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, dict):
        return {key: _redact_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_all(item) for item in value]
    return value


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
    """A catalog entry for the job folder ``folder``; a job that breaks a rule gets ``error`` (one line)."""
    try:
        job = PythonJob.load(folder)
    except PythonExecError as exc:
        return JobEntry(job_id=folder.name, folder=str(folder), origin=[origin], error=str(exc))
    return JobEntry(job_id=job.job_id, folder=str(job.folder), origin=[origin], details=describe_job(job))


def uploaded_folders(upload_folder: Path | None) -> list[Path]:
    """The job folders under ``upload_folder`` (``upload_folder/<jobId>/``; ``.versions`` excluded)."""
    if upload_folder is None or not upload_folder.is_dir():
        return []
    return sorted(p for p in upload_folder.iterdir() if p.is_dir() and p.name != VERSIONS and SAFE_JOB_ID.match(p.name))


def task_jobs_of(dag: Any, fileloc: str | None = None) -> list[TaskJob]:
    """The ``PythonJobOperator`` tasks of a (deserialized) DAG and the job each one names.

    :param fileloc: the DAG file (default: the serialized DAG's own ``fileloc``); a relative ``job``
        resolves against its folder, as the operator resolves it at run time.

    A ``job`` holding a template (``{{ ... }}``) cannot be resolved before a run: it is kept as
    written, without a folder.
    """
    fileloc = fileloc or getattr(dag, "fileloc", None)
    base = Path(fileloc).parent if fileloc else None
    found = []
    for task in dag.tasks:
        if task.task_type != OPERATOR_TYPE or getattr(task, "_task_module", OPERATOR_MODULE) != OPERATOR_MODULE:
            continue
        job = _argument(task, "job")
        folder = None
        if isinstance(job, str) and job and "{{" not in job:
            path = Path(job).expanduser()
            folder = path if path.is_absolute() or base is None else base / path
            folder = folder.parent if folder.suffix in (".json", ".py") else folder
        found.append(
            TaskJob(dag.dag_id, task.task_id, folder, job if isinstance(job, str) else None, _argument(task, "handler"))
        )
    return found


def _argument(task: Any, name: str) -> Any:
    """A ``PythonJobOperator`` argument of ``task``; a mapped task (``.partial().expand()``) keeps the
    arguments it was not expanded over in ``partial_kwargs``."""
    value = getattr(task, name, None)
    return value if value is not None else (getattr(task, "partial_kwargs", None) or {}).get(name)


def dag_task_jobs() -> list[TaskJob]:
    """Every ``PythonJobOperator`` task of the DAGs in the metadata database (latest serialized version,
    stale DAGs left out). The DAG file is the one ``DagModel`` names (where the DAG processor last found
    the DAG; a serialized version is reused while the DAG is unchanged, even if its file moved). A DAG
    that cannot be deserialized is logged and skipped."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    found: list[TaskJob] = []
    with create_session() as session:
        filelocs = dict(
            session.execute(select(DagModel.dag_id, DagModel.fileloc).where(DagModel.is_stale.is_(False))).all()
        )
        for row in SerializedDagModel.get_latest_serialized_dags(dag_ids=list(filelocs), session=session):
            try:
                found.extend(task_jobs_of(row.dag, filelocs.get(row.dag_id)))
            except Exception:  # one broken serialization must not hide every other DAG
                log.exception("python-exec: cannot read the serialized DAG %s", row.dag_id)
    return found


def last_runs(uses: list[TaskUse]) -> None:
    """Fill each use's DAG last run (``run_id``, ``state``, ``run_after``) and its task's state there."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        for dag_id in sorted({use.dag_id for use in uses}):
            run = session.scalars(
                select(DagRun)
                .where(DagRun.dag_id == dag_id)
                .order_by(DagRun.run_after.desc(), DagRun.id.desc())
                .limit(1)
            ).first()
            if run is None:
                continue
            states = dict(
                session.execute(
                    select(TaskInstance.task_id, TaskInstance.state).where(
                        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
                    )
                ).all()
            )
            for use in (u for u in uses if u.dag_id == dag_id):
                use.last_run = {
                    "run_id": run.run_id,
                    "state": _text(run.state),
                    "run_after": run.run_after.isoformat() if run.run_after else None,
                }
                use.task_state = _text(states.get(use.task_id))


def build_catalog(
    upload_folder: Path | None,
    task_jobs: list[TaskJob] | None = None,
    with_runs: bool = True,
    readable_dags: set[str] | None = None,
) -> list[JobEntry]:
    """Every job: those under ``upload_folder`` first, then those the DAGs name (one entry per job folder,
    each with the tasks that run it), then handler jobs made from task arguments.

    :param task_jobs: the DAGs' tasks (default: read from the metadata database).
    :param with_runs: look up each DAG's last run.
    :param readable_dags: the DAG ids the viewer may read (``None``: all); tasks of other DAGs are
        left out, so neither their job folders nor their runs are shown.
    """
    task_jobs = dag_task_jobs() if task_jobs is None else task_jobs
    if readable_dags is not None:
        task_jobs = [tj for tj in task_jobs if tj.dag_id in readable_dags]
    entries: dict[str, JobEntry] = {}
    for folder in uploaded_folders(upload_folder):
        entries[str(folder.resolve())] = load_entry(folder, "upload")
    uses: list[TaskUse] = []
    for tj in task_jobs:
        use = TaskUse(tj.dag_id, tj.task_id, tj.job)
        uses.append(use)
        entry = _entry_for(tj, entries)
        entry.used_by.append(use)
        if "dag" not in entry.origin:
            entry.origin.append("dag")
    if with_runs and uses:
        last_runs(uses)
    return list(entries.values())


def find_job(catalog: list[JobEntry], job_id: str) -> JobEntry | None:
    """The entry of ``job_id`` (the first when several folders share it: uploaded ones come first)."""
    return next((entry for entry in catalog if entry.job_id == job_id), None)


def _entry_for(tj: TaskJob, entries: dict[str, JobEntry]) -> JobEntry:
    if tj.folder is not None:
        key = str(tj.folder.resolve())
        if key not in entries:
            entries[key] = load_entry(tj.folder, "dag")
        return entries[key]
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


def _text(state: Any) -> str | None:
    if state is None:
        return None
    return str(getattr(state, "value", state))


def job_dag_prefix() -> str:
    """``[python_exec] job_dag_prefix``: the DAG that ``load_job_dags`` makes of a job is
    ``<job_dag_prefix><jobId>`` (the pages link a job to it when one of its tasks is that DAG's)."""
    from airflow_python_exec.settings import EngineSettings

    return EngineSettings.from_airflow_config().job_dag_prefix
