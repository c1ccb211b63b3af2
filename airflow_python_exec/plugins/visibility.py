"""Who sees which job on the "Python jobs" page (DESIGN.md, "The UI plugin"): a task only when the
viewer may read its DAG, an upload only when the viewer may read its own DAG ``job_<jobId>`` or all
DAGs, asked of Airflow's auth manager."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_python_exec.plugins.operator_tasks import TaskJob


def readable_by(user: Any, task_jobs: list[TaskJob]) -> Callable[[str], bool]:
    """A function telling whether ``user`` (Airflow's authenticated user) may read a DAG id: one of
    ``get_authorized_dag_ids`` (one question for all DAGs); for an id none of ``task_jobs``' DAGs has
    (an upload's ``job_<jobId>`` not parsed yet), the auth manager's answer for that very id
    (``is_authorized_dag`` with its ``DagDetails``), asked once per id and request."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager = get_auth_manager()
    allowed = set(manager.get_authorized_dag_ids(user=user, method="GET"))
    listed = {tj.dag_id for tj in task_jobs}
    asked: dict[str, bool] = {}

    def readable(dag_id: str) -> bool:
        if dag_id in allowed or dag_id in listed:
            return dag_id in allowed
        if dag_id not in asked:
            asked[dag_id] = manager.is_authorized_dag(method="GET", user=user, details=DagDetails(id=dag_id))
        return asked[dag_id]

    return readable
