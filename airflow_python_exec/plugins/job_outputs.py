"""A function job's outputs as the Python jobs page shows them: the names it declares and each
one's latest version in the data store (DESIGN.md "Data items": a job's outputs on the page)."""

from __future__ import annotations

import logging
from typing import Any

from airflow_python_exec.errors import PythonExecError
from airflow_python_exec.models import PythonJob
from airflow_python_exec.redaction import hide_credentials_in

log = logging.getLogger(__name__)


def declared_outputs(job: PythonJob) -> list[dict[str, Any]]:
    """A function job's outputs: ``function.outputs``, else its ``@handler(outputs=[...])`` (read from
    the file, never run), as ``[{"name", "kind"}]`` (``kind`` ``None``: the returned value's)."""
    from airflow_python_exec.handlers.declared import decorator_outputs, handler_file
    from airflow_python_exec.models.data_item_specs import parse_outputs

    function = job.function
    if function is None:
        return []
    found: Any = function.outputs
    if not found and function.inline_code is None and function.source is None:
        main = job.folder / job.main_file_name
        found = decorator_outputs(
            handler_file(job.folder, function.handler, main if main.is_file() else None), function.handler
        )
    try:
        return [{"name": o.name, "kind": o.kind} for o in parse_outputs(found or [])]
    except ValueError:
        return []


def latest_versions(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job page's outputs, each with its latest version in the data store (``None`` before the
    first), read from the version records (a few small files per output)."""
    from airflow_python_exec.handlers.store import project_store, version_records
    from airflow_python_exec.operators.data_items import configured_data_store

    try:
        store = project_store(configured_data_store(None), job.get("project"))
    except PythonExecError:
        return [{**o, "latest": None} for o in job.get("outputs") or []]
    rows = []
    for output in job.get("outputs") or []:
        records: list[dict[str, Any]] = []
        for group in ("dataitem", "artifact"):
            try:
                records += version_records(store, group, output["name"])
            except Exception:  # noqa: BLE001 - an unreachable store: the page still shows the job
                log.warning("data store %s cannot be listed", store)
        latest = max(records, key=lambda r: str(r.get("version")), default=None)
        rows.append({**output, "latest": hide_credentials_in(latest) if latest is not None else None})
    return rows
