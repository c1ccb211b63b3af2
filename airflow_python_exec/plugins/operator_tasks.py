"""The ``PythonJobOperator`` tasks of the DAGs in the metadata database and their DAGs' last runs, in a
fixed number of queries whatever the number of DAGs.

Tasks: one query lists the latest serialized version of every DAG that is not stale (its id and
``dag_hash``, and the DAG file ``DagModel`` names); only a version this process has not read yet is
fetched (a second query) and read as JSON, without deserializing the DAG: a task is a
``PythonJobOperator`` by its ``task_type`` and ``_task_module``, and its ``job``/``handler`` are plain
values of the serialized task (``partial_kwargs`` for a mapped one). What is kept between requests
(:data:`_VERSIONS`) is per DAG version: task ids and the ``job``/``handler`` the DAG's author wrote,
the same for every viewer; which DAGs a viewer may see is decided per request by the caller.

Runs: one query for the latest run of each listed DAG (``run_after``, then ``id``, newest first) and
one for its task instances.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
OPERATOR_MODULE = "airflow_python_exec.operators.python_job"
OPERATOR_TYPE = "PythonJobOperator"
#: ``(task_type, _task_module)`` of the operators that run a job: ours, and the task of a job DAG
#: (``load_job_dags``' subclass).
JOB_OPERATORS = frozenset({(OPERATOR_TYPE, OPERATOR_MODULE), ("JobDagOperator", "airflow_python_exec.job_dags")})


def runs_a_job(task_type: Any, task_module: Any) -> bool:
    """Whether a task of that serialized ``task_type`` and ``_task_module`` runs a job (see
    :data:`JOB_OPERATORS`; a task without ``_task_module`` is taken as ours, as older versions wrote)."""
    return (task_type, task_module or OPERATOR_MODULE) in JOB_OPERATORS


#: Ids per ``IN (...)`` list: below every database's limit on bound parameters (SQLite: 32,766).
CHUNK = 5_000


@dataclass(frozen=True)
class TaskJob:
    """What a ``PythonJobOperator`` task names: a job folder path, or a job made from a handler."""

    dag_id: str
    task_id: str
    folder: Path | None
    job: str | None
    handler: str | None


def task_job(dag_id: str, task_id: str, job: Any, handler: Any, fileloc: str | None) -> TaskJob:
    """The :class:`TaskJob` of one task: a relative ``job`` resolves against the DAG file's folder, as the
    operator resolves it at run time; a ``job`` holding a template (``{{ ... }}``) cannot be resolved
    before a run and is kept as written, without a folder; a ``job.json`` or ``.py`` names its folder."""
    base = Path(fileloc).parent if fileloc else None
    folder = None
    if isinstance(job, str) and job and "{{" not in job:
        path = Path(job).expanduser()
        folder = path if path.is_absolute() or base is None else base / path
        folder = folder.parent if folder.suffix in (".json", ".py") else folder
    return TaskJob(dag_id, task_id, folder, job if isinstance(job, str) else None, handler)


def tasks_of_serialized(data: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(task_id, job, handler)`` of each ``PythonJobOperator`` task of a serialized DAG (the JSON the
    DAG processor stores), in the DAG's task order, without deserializing it.

    :raises KeyError: / :raises TypeError: the JSON is not a serialized DAG.
    """
    found = []
    for item in data["dag"]["tasks"]:
        task = item.get("__var", item) if isinstance(item, dict) else {}
        if not runs_a_job(task.get("task_type"), task.get("_task_module")):
            continue
        partial = task.get("partial_kwargs") or {}
        job = task["job"] if task.get("job") is not None else partial.get("job")
        handler = task["handler"] if task.get("handler") is not None else partial.get("handler")
        found.append((task["task_id"], job, handler if isinstance(handler, str) else None))
    return found


#: ``dag_id -> (serialized DAG id, dag_hash, fileloc, its tasks)``: a DAG's tasks are read again only
#: when a new serialized version (another id or hash) or another DAG file is listed.
_VERSIONS: dict[str, tuple[Any, str, str | None, list[TaskJob]]] = {}
_VERSIONS_LOCK = threading.Lock()


def dag_task_jobs() -> list[TaskJob]:
    """Every ``PythonJobOperator`` task of the DAGs in the metadata database (latest serialized version,
    stale DAGs left out), by DAG id. The DAG file is the one ``DagModel`` names (where the DAG
    processor last found the DAG; a serialized version is reused while the DAG is unchanged, even if
    its file moved). A DAG whose serialization cannot be read is logged and skipped."""
    from airflow.models.dag import DagModel
    from airflow.models.dag_version import DagVersion
    from airflow.models.serialized_dag import SerializedDagModel as SDM
    from airflow.utils.session import create_session
    from sqlalchemy import String, cast, func, select

    # The tables' columns, not the ORM's attributes: the rows are plain tuples (no ORM loading per row),
    # and the version's id is read as text (not one uuid.UUID made per DAG per request).
    dag, sdm, version = DagModel.__table__.c, SDM.__table__.c, DagVersion.__table__.c
    latest = (
        select(version.dag_id, func.max(version.version_number).label("number"))
        .join(SDM.__table__, sdm.dag_version_id == version.id)
        .group_by(version.dag_id)
        .subquery()
    )
    index = (
        select(dag.dag_id, dag.fileloc, cast(sdm.id, String).label("id"), sdm.dag_hash)
        .select_from(DagModel.__table__)
        .join(SDM.__table__, sdm.dag_id == dag.dag_id)
        .join(DagVersion.__table__, sdm.dag_version_id == version.id)
        .join(latest, (version.dag_id == latest.c.dag_id) & (version.version_number == latest.c.number))
        .where(dag.is_stale.is_(False))
        .order_by(dag.dag_id)
    )
    with create_session() as session:
        rows = session.execute(index).all()
        known = dict(_VERSIONS)
        missing = [
            row for row in rows if known.get(row.dag_id, (None, None, None))[:3] != (row.id, row.dag_hash, row.fileloc)
        ]
        for chunk in _chunks([row.id for row in missing]):
            data = session.execute(
                select(cast(sdm.id, String).label("id"), sdm.data, sdm.data_compressed.label("compressed")).where(
                    sdm.id.in_([uuid.UUID(value) for value in chunk])
                )
            ).all()
            by_id = {r.id: r for r in data}
            for row in (m for m in missing if m.id in by_id):
                known[row.dag_id] = (row.id, row.dag_hash, row.fileloc, _read(row.dag_id, row.fileloc, by_id[row.id]))
    listed = {row.dag_id for row in rows}
    with _VERSIONS_LOCK:
        _VERSIONS.clear()  # DAGs gone from the database leave the cache with them
        _VERSIONS.update((dag_id, value) for dag_id, value in known.items() if dag_id in listed)
    return [task for row in rows for task in known.get(row.dag_id, (None, None, None, []))[3]]


def _read(dag_id: str, fileloc: str | None, row: Any) -> list[TaskJob]:
    """The tasks of one serialized DAG row; ``[]`` (logged) when its JSON cannot be read."""
    try:
        data = json.loads(zlib.decompress(row.compressed)) if row.compressed else row.data
        if isinstance(data, str):
            data = json.loads(data)
        fileloc = fileloc or data["dag"].get("fileloc")
        return [task_job(dag_id, task_id, job, handler, fileloc) for task_id, job, handler in tasks_of_serialized(data)]
    except Exception:  # one broken serialization must not hide every other DAG
        log.exception("python-exec: cannot read the serialized DAG %s", dag_id)
        return []


def latest_runs(
    dag_ids: list[str], task_ids: set[str] | None = None
) -> dict[str, tuple[dict[str, Any], dict[str, str | None]]]:
    """The latest run of each DAG (``run_after``, then ``id``, newest first) and its task states.

    :param task_ids: only these tasks' states are needed (``None``: every task's).
    :returns: ``dag_id -> ({"run_id", "state", "run_after"}, {task_id: state})`` for the DAGs that
        have a run. Two queries, whatever the number of DAGs (more past :data:`CHUNK` DAGs).
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    found: dict[str, tuple[dict[str, Any], dict[str, str | None]]] = {}
    with create_session() as session:
        for chunk in _chunks(sorted(set(dag_ids))):
            order = (DagRun.run_after.desc(), DagRun.id.desc())
            rank = func.row_number().over(partition_by=DagRun.dag_id, order_by=order).label("rank")
            ranked = (
                select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_after, rank)
                .where(DagRun.dag_id.in_(chunk))
                .subquery()
            )
            latest = select(ranked).where(ranked.c.rank == 1).subquery()
            for run in session.execute(select(latest)).all():
                shown = {
                    "run_id": run.run_id,
                    "state": text(run.state),
                    "run_after": run.run_after.isoformat() if run.run_after else None,
                }
                found[run.dag_id] = (shown, {})
            # Joined with the same latest runs: a (dag_id, run_id) pair list would make the database
            # look up every DAG with every run id.
            states = (
                select(TI.dag_id, TI.task_id, TI.state)
                .join(latest, (TI.dag_id == latest.c.dag_id) & (TI.run_id == latest.c.run_id))
                .order_by(TI.map_index)
            )
            if task_ids is not None and len(task_ids) <= CHUNK:
                states = states.where(TI.task_id.in_(sorted(task_ids)))
            for ti in session.execute(states).all():
                found[ti.dag_id][1][ti.task_id] = text(ti.state)
    return found


def run_facts(runs: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], Any]:
    """What each ``(dag_id, run_id, task_id)`` ran with: its XCom ``python_exec_run`` (environment,
    sandbox, resources; see :func:`airflow_python_exec.run_result.run_facts`). One query, for the
    few runs one job's page shows."""
    from airflow.models.xcom import XComModel as XCom
    from airflow.utils.session import create_session
    from sqlalchemy import select

    wanted = set(runs)
    if not wanted:
        return {}
    query = select(XCom).where(
        XCom.key == "python_exec_run",
        XCom.map_index == -1,
        XCom.dag_id.in_(sorted({r[0] for r in wanted})),
        XCom.run_id.in_(sorted({r[1] for r in wanted})),
    )
    with create_session() as session:
        rows = session.scalars(query).all()
        return {
            (row.dag_id, row.run_id, row.task_id): XCom.deserialize_value(row)
            for row in rows
            if (row.dag_id, row.run_id, row.task_id) in wanted
        }


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


def text(state: Any) -> str | None:
    """A state enum (or string) as its string value; ``None`` stays ``None``."""
    if state is None:
        return None
    return str(getattr(state, "value", state))
