"""What an upload asks of Airflow's metadata database: whether its ``jobId`` already belongs to another
job folder, and, once written, a re-parse of the DAG files that expose uploaded jobs.

Re-parse: the same request as the UI's "Reparse" button (``PUT /api/v2/parseDagFile/{file_token}``):
a ``DagPriorityParsingRequest`` row per DAG file, which the DAG processor puts at the front of its
queue, so a new upload is a DAG within about a minute instead of at the next scan of the DAG folder.
The files are those holding a DAG tagged ``python-job`` (``load_job_dags``): every shard of a
deployment that splits its jobs (``shard=(i, n)``). Each file's modification time is also set to
now: the request makes the DAG processor refresh the bundle, which sorts its queue again by
modification time, newest first (``[dag_processor] file_parsing_sort_mode = modified_time``, the
default), and an older file went back behind every other one (622 s at 3,000 DAG files).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from airflow_python_exec.plugins.operator_tasks import dag_task_jobs

log = logging.getLogger(__name__)
#: The tag of every DAG ``load_job_dags`` makes (``airflow_python_exec.job_dags.TAG``, not imported:
#: that module builds DAGs and imports the Task SDK, which the page does not need).
JOB_DAG_TAG = "python-job"


def job_owner(job_id: str, target: Path, prefix: str) -> str | None:
    """Why ``job_id`` may not be uploaded to ``target``, or ``None`` when it may.

    It may not when the DAG ``<prefix><jobId>`` exists (not stale) and runs another job folder that is
    still there (a job shipped in ``load_job_dags(folders=...)``, another upload folder), or is a DAG
    of its own: the first owner keeps its DAG (DESIGN.md, "Reach"). A folder gone from the disk owns
    nothing (its DAG goes at the next parse).

    :returns: a one-line reason naming the owner and the fix.
    """
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_id = prefix + job_id
    mine = os.path.realpath(target)
    folders = {os.path.realpath(tj.folder) for tj in dag_task_jobs() if tj.dag_id == dag_id and tj.folder is not None}
    if folders:  # a job DAG: taken when it runs another folder
        others = sorted(folder for folder in folders - {mine} if os.path.isdir(folder))
        if not others:
            return None
        return f"jobId {job_id!r} is already the job of {others[0]} (DAG {dag_id}); give the upload another jobId"
    with create_session() as session:
        found = session.execute(
            select(DagModel.fileloc).where(DagModel.dag_id == dag_id, DagModel.is_stale.is_(False))
        ).first()
    if found is None:
        return None
    return f"jobId {job_id!r} would be the DAG {dag_id}, which {found.fileloc} already defines; choose another jobId"


def request_reparse() -> list[str]:
    """Ask the DAG processor to re-parse every DAG file that holds a ``python-job`` DAG (one
    ``DagPriorityParsingRequest`` per file; one already pending is left as it is).

    :returns: the files asked for (``bundle:relative path``); ``[]`` before any job DAG exists (the
        DAG processor's regular scan then finds the first upload). Never raises: the upload is
        written already, and the regular scan parses it anyway (a failure is logged).
    """
    from airflow.models.dag import DagModel, DagTag
    from airflow.models.dagbag import DagPriorityParsingRequest as Request
    from airflow.utils.session import create_session
    from sqlalchemy import select

    try:
        with create_session() as session:
            files = session.execute(
                select(DagModel.bundle_name, DagModel.relative_fileloc, DagModel.fileloc)
                .join(DagTag, DagTag.dag_id == DagModel.dag_id)
                .where(DagTag.name == JOB_DAG_TAG, DagModel.is_stale.is_(False))
                .where(DagModel.relative_fileloc.is_not(None))
                .distinct()
            ).all()
            requested = session.execute(select(Request.bundle_name, Request.relative_fileloc))
            pending = {(row.bundle_name, row.relative_fileloc) for row in requested}
            wanted = sorted({(row.bundle_name, row.relative_fileloc) for row in files})
            for bundle, path in wanted:
                if (bundle, path) not in pending:
                    session.add(Request(bundle_name=bundle, relative_fileloc=path))
        for fileloc in sorted({row.fileloc for row in files if row.fileloc}):
            _make_newest(fileloc)
        return [f"{bundle}:{path}" for bundle, path in wanted]
    except Exception:  # the upload is in place; its DAG then comes at the DAG processor's regular scan
        log.exception("python-exec: could not ask for a re-parse of the job DAG files")
        return []


def _make_newest(fileloc: str) -> None:
    """Set a DAG file's modification time to now, so the DAG processor's queue, sorted newest first,
    keeps it at the front (an api-server on another machine, or a read-only DAG folder: the request
    alone then, logged)."""
    try:
        os.utime(fileloc)
    except OSError as exc:
        log.info("python-exec: could not touch %s to hurry its re-parse: %s", fileloc, exc.strerror or exc)
