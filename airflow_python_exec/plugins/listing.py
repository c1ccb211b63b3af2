"""One page of the "Python jobs" list, as Airflow's DAG list pages: ``limit`` (default 50, at most
``[api] maximum_page_limit``), ``offset``, ``search`` (jobId, DAG id, task id or tag, case-insensitive
substring), most recent run first; the total is counted without reading any job folder.

The rows come from what is already in memory: the DAGs' ``PythonJobOperator`` tasks
(:func:`~airflow_python_exec.plugins.operator_tasks.dag_task_jobs`, kept per serialized DAG version) and
the names of the folders under ``upload_folder`` (one ``scandir``, kept while the folder's mtime
holds). A row is one job folder (or one task's template or handler job); its order is the last run of
its DAG (an upload: its own ``job_<jobId>``; otherwise the first DAG, by id, that runs it), asked
of the database in that order (:func:`ordered_dags`), so only the page's rows are fetched.
Uploads that have no DAG yet (the DAG processor has not parsed them, or they break a rule) come
first. Only the page's rows are then read (:func:`~airflow_python_exec.plugins.catalog.load_entry`)
and only their DAGs' last runs looked up. What still grows with the deployment: the DAG ids the
viewer may read (asked of the auth manager, as Airflow's own DAG list asks) and one row per DAG's
latest serialized version, so a request at 3,000 DAGs costs about 2.8 times one at 100 (Airflow's
list: 2.2 times).

Who sees what (DESIGN.md, "The UI plugin"): a task only when the viewer may read its DAG
(``get_authorized_dag_ids``); an upload only when the viewer may read its own DAG ``job_<jobId>``, by
the auth manager's answer for that DAG id even before the DAG exists, or all DAGs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Query

from airflow_python_exec.plugins.operator_tasks import TaskJob

#: Rows per page when the request names no ``limit`` (Airflow's own default).
DEFAULT_LIMIT = 50
#: Most DAG ids :func:`ordered_dags` names in its query; past it, it reads every DAG in order instead.
MAX_LISTED_IDS = 500


@dataclass(frozen=True)
class Page:
    """What a request asks for: ``limit`` rows from ``offset`` (both counted in jobs), matching ``search``."""

    limit: int = DEFAULT_LIMIT
    offset: int = 0
    search: str | None = None


@dataclass
class Row:
    """A job of the list before its folder is read.

    :ivar key: the job folder (real path), or ``task:<dag_id>.<task_id>`` for a job made from a task.
    :ivar name: its ``jobId`` as known without reading ``job.json`` (an upload's folder name, else the
        folder's name, else the task id).
    :ivar own_dag: the DAG whose last run orders the row; ``None`` for an upload without a DAG yet.
    """

    key: str
    folder: Path | None
    name: str
    origin: list[str] = field(default_factory=list)
    tasks: list[TaskJob] = field(default_factory=list)
    own_dag: str | None = None


#: Largest ``offset`` taken (past it: an empty page, as any offset past the last job): a database's
#: ``OFFSET`` is a signed 64-bit integer, and SQLite's driver raises on a larger Python int (a 500).
MAX_OFFSET = 2**62


def max_limit() -> int:
    """``[api] maximum_page_limit``: the most rows a page holds, as for Airflow's own lists."""
    from airflow.configuration import conf

    return conf.getint("api", "maximum_page_limit", fallback=100)


def page_of(limit: int | None, offset: int | None, search: str | None) -> Page:
    """A :class:`Page` from request values: ``limit`` capped at :func:`max_limit` (as Airflow caps it),
    ``offset`` at :data:`MAX_OFFSET`, a blank ``search`` is none."""
    limit = DEFAULT_LIMIT if limit is None else limit
    offset = min(max(offset or 0, 0), MAX_OFFSET)
    return Page(min(max(limit, 1), max_limit()), offset, (search or "").strip() or None)


def page_query(
    limit: int = Query(DEFAULT_LIMIT, ge=0),
    offset: int = Query(0, ge=0),
    search: str | None = Query(None, max_length=250),
) -> Page:
    """Dependency: the page asked for (``limit`` capped at ``[api] maximum_page_limit``)."""
    return page_of(limit, offset, search)


def rows_of(
    task_jobs: list[TaskJob],
    upload_names: list[str],
    upload_root: str | None,
    prefix: str,
    readable: Callable[[str], bool],
) -> list[Row]:
    """Every row the viewer may see: the tasks of DAGs they may read, grouped by job folder, and the
    uploads whose own DAG they may read.

    :param upload_names: folder names under ``upload_folder`` (:func:`upload_names`).
    :param upload_root: the real path of ``upload_folder`` (``None``: unset).
    :param prefix: ``[python_exec] job_dag_prefix``.
    :param readable: whether the viewer may read a DAG id (one that need not exist yet).
    """
    rows: dict[str, Row] = {}
    if upload_root is not None:
        for name in upload_names:
            if readable(prefix + name):
                key = os.path.join(upload_root, name)
                rows[key] = Row(key, Path(key), name, ["upload"])
    for tj in task_jobs:
        if not readable(tj.dag_id):
            continue
        key = real_path(tj.folder) if tj.folder is not None else f"task:{tj.dag_id}.{tj.task_id}"
        row = rows.get(key)
        if row is None:
            name = tj.folder.name if tj.folder is not None else tj.task_id
            row = rows[key] = Row(key, tj.folder, name)
        row.tasks.append(tj)
        if "dag" not in row.origin:
            row.origin.append("dag")
    for row in rows.values():
        dag_ids = [tj.dag_id for tj in row.tasks]
        row.own_dag = prefix + row.name if prefix + row.name in dag_ids else min(dag_ids, default=None)
    return list(rows.values())


def matches(rows: list[Row], search: str | None, tagged: set[str]) -> list[Row]:
    """The rows whose jobId, DAG id or task id holds ``search`` (any case), or whose DAG has a tag that
    does (``tagged``: those DAG ids, :func:`tagged_dags`)."""
    if not search:
        return rows
    needle = search.casefold()

    def hit(row: Row) -> bool:
        if needle in row.name.casefold():
            return True
        return any(needle in f"{tj.dag_id}\0{tj.task_id}".casefold() or tj.dag_id in tagged for tj in row.tasks)

    return [row for row in rows if hit(row)]


def page_rows(rows: list[Row], page: Page) -> list[Row]:
    """The page's rows: uploads without a DAG (by name), then the others by their DAG's last run,
    newest first (never run: last, by DAG id), ordered and cut by the database (:func:`ordered_dags`)."""
    waiting = sorted((row for row in rows if row.own_dag is None), key=lambda row: row.name)
    shown = waiting[page.offset : page.offset + page.limit]
    wanted = page.limit - len(shown)
    if wanted <= 0:
        return shown
    skip = max(page.offset - len(waiting), 0)
    by_dag: dict[str, list[Row]] = {}
    for row in rows:
        if row.own_dag is not None:
            by_dag.setdefault(row.own_dag, []).append(row)
    single = all(len(group) == 1 for group in by_dag.values())
    dag_ids = ordered_dags(sorted(by_dag), limit=wanted if single else skip + wanted, offset=skip if single else 0)
    following = [row for dag_id in dag_ids for row in sorted(by_dag[dag_id], key=lambda row: row.key)]
    return shown + (following if single else following[skip : skip + wanted])


def ordered_dags(dag_ids: list[str], limit: int, offset: int = 0) -> list[str]:
    """``dag_ids`` ordered by their latest run (``run_after``), newest first, DAGs never run last (by
    id); rows ``offset`` to ``offset + limit`` only.

    Up to :data:`MAX_LISTED_IDS` ids: one query naming them (``IN``), cut by the database
    (``LIMIT``/``OFFSET``). More (a deployment's job DAGs, when the page is not searched): no list of
    ids is sent; the database orders every DAG the same way and the rows are read in that order, a
    batch at a time, until ``offset + limit`` of ``dag_ids`` have come (the first batch, when most
    DAGs run jobs), so the cost follows the page, not the number of DAGs."""
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import case, func, select

    if limit <= 0 or not dag_ids:
        return []
    dag, run = DagModel.__table__.c, DagRun.__table__.c
    last = (
        select(func.max(run.run_after)).where(run.dag_id == dag.dag_id).correlate(DagModel.__table__).scalar_subquery()
    )
    never = case((last.is_(None), 1), else_=0)
    query = select(dag.dag_id).order_by(never, last.desc(), dag.dag_id)
    with create_session() as session:
        if len(dag_ids) <= MAX_LISTED_IDS:
            return list(session.scalars(query.where(dag.dag_id.in_(dag_ids)).limit(limit).offset(offset)))
        wanted, found = set(dag_ids), []
        result = session.execute(query.execution_options(yield_per=min(max(2 * (offset + limit), 200), 10_000)))
        try:
            for dag_id in result.scalars():
                if dag_id in wanted:
                    found.append(dag_id)
                    if len(found) == offset + limit:
                        break
        finally:
            result.close()
    return found[offset:]


def tagged_dags(search: str | None) -> set[str]:
    """The DAG ids with a tag holding ``search`` (any case); one query, only when searching."""
    if not search:
        return set()
    from airflow.models.dag import DagTag
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    pattern = "%" + search.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with create_session() as session:
        query = select(DagTag.dag_id).where(func.lower(DagTag.name).like(pattern, escape="\\")).distinct()
        return set(session.scalars(query))


#: ``upload_folder -> ((inode, mtime_ns), names)``: its listing, read again when its mtime moves (an
#: upload renames a folder in; removing one changes it too).
_LISTINGS: dict[str, tuple[tuple[int, int], list[str]]] = {}
#: ``path -> real path`` of the job folders DAG tasks name (a folder's real path rarely moves).
_REAL: dict[str, str] = {}
_LOCK = threading.Lock()
_MAX_KEPT = 20_000


def upload_names(upload_folder: Path | None, safe: Callable[[str], bool]) -> tuple[str | None, list[str]]:
    """``(real path of upload_folder, names of its job folders)``; ``(None, [])`` when it is unset or
    unreadable. ``safe``: which names are job ids (hidden folders such as ``.versions`` are not)."""
    if upload_folder is None:
        return None, []
    root = os.path.realpath(upload_folder)
    try:
        st = os.stat(root)
    except OSError:
        return root, []
    stamp = (st.st_ino, st.st_mtime_ns)
    kept = _LISTINGS.get(root)
    if kept is not None and kept[0] == stamp:
        return root, kept[1]
    try:
        with os.scandir(root) as listing:
            names = sorted(e.name for e in listing if safe(e.name) and _is_dir(e))
    except OSError:
        return root, []
    with _LOCK:
        _LISTINGS[root] = (stamp, names)
    return root, names


def real_path(folder: Path) -> str:
    """``os.path.realpath`` of ``folder``, kept per path: one row per folder however a DAG names it."""
    key = os.fspath(folder)
    found = _REAL.get(key)
    if found is None:
        found = os.path.realpath(key)
        with _LOCK:
            if len(_REAL) >= _MAX_KEPT:
                _REAL.clear()
            _REAL[key] = found
    return found


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
