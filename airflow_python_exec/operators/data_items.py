"""The Airflow side of data items (DESIGN.md, "Data items"): assets, events, XCom, lineage.

- :func:`outlets_for` / :func:`inlets_for`: the assets a task declares at DAG-parse time: every table
  or artifact output is ``Asset(name, uri={data_store}/{dataitem|artifact}/{name}, group)``, every
  asset input ``Asset.ref(name=...)``, every URI input ``Asset(uri=...)``.
- :func:`input_value`: what the operator's ``inputs`` accepts (a URI, an ``Asset``/``Asset.ref``, an
  ``ObjectStoragePath``, a spec, an upstream output reference) as a ``function.inputs`` value.
- :func:`asset_resolver`: an asset input's latest event, read through the Task SDK.
- :func:`record`: after a successful run, an asset event per published output (its ``extra``: the
  version, rows, schema, size, the input URIs that made it) and the XComs per output and result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.handlers.outputs import Published
from airflow_python_exec.handlers.store import asset_uri, data_store_uri, project_store
from airflow_python_exec.models.data_item_specs import OutputSpec, parse_outputs, public_uri

if TYPE_CHECKING:
    from airflow_python_exec.run_result import RunResult


def configured_data_store(data_store: str | None) -> str:
    """The data store URI: the operator's ``data_store``, else ``[python_exec] data_store``, else the default.

    Read through :class:`~airflow_python_exec.settings.EngineSettings`, as the run that publishes the
    outputs reads it, so the assets declared when the DAG is parsed name the URIs the run writes.

    :raises JobConfigError: a ``data_store`` that is no URI or absolute folder.
    :raises PythonExecError: a ``[python_exec]`` option with a value of the wrong type.
    """
    from airflow_python_exec.settings import EngineSettings

    settings = EngineSettings.from_airflow_config(data_store=data_store)
    try:
        return data_store_uri(settings.data_store)
    except ValueError as exc:
        raise JobConfigError(str(exc)) from None


def asset_name(name: str, project: str | None) -> str:
    """An output's asset name: ``{project}/{name}`` in a project, else ``name``."""
    return f"{project}/{name}" if project else name


def outlets_for(outputs: Iterable[OutputSpec], data_store: str, project: str | None = None) -> list[Any]:
    """The assets of the stored outputs (a result is an XCom, not an asset); in a project, named
    ``{project}/{name}`` with URIs under ``{data_store}/{project}``."""
    from airflow.sdk import Asset

    store = project_store(data_store, project)
    return [
        Asset(name=asset_name(o.name, project), uri=asset_uri(o, store), group=o.group) for o in outputs if o.stored
    ]


def without_results(outlets: Iterable[Any], result: RunResult, project: str | None) -> list[Any]:
    """``outlets`` less the assets of outputs declared by name only that received a JSON value (a
    result, an XCom): Airflow emits an event for every outlet of a successful task, and a result has
    no version to announce."""
    results = set(result.outputs.results) if result.outputs is not None else set()
    drop = {asset_name(name, project) for name in results}
    return [a for a in outlets if getattr(a, "name", None) not in drop]


def inlets_for(inputs: Mapping[str, Any] | None) -> list[Any]:
    """The assets a task reads, as far as they are known at parse time (not templates, not upstream outputs)."""
    from airflow.sdk import Asset

    inlets: list[Any] = []
    for value in (inputs or {}).values():
        value = _plain(value)
        if isinstance(value, Mapping) and isinstance(value.get("asset"), str) and "kind" not in value:
            inlets.append(Asset.ref(name=value["asset"]))
            continue
        uri = value.get("uri") if isinstance(value, Mapping) and "kind" not in value else value
        if isinstance(uri, str) and "://" in uri and "{{" not in uri:
            inlets.append(Asset(uri=public_uri(uri)))
    return inlets


def parse_time_job(job: Any, folder: Any) -> Any:
    """The job of a job path that is not a template, read when the DAG is parsed, else ``None`` (a job
    that cannot be read now fails its task with the one-line error when it runs)."""
    if not isinstance(job, str) or "{{" in job:
        return None
    from pathlib import Path

    from airflow_python_exec.models import PythonJob

    path = Path(job).expanduser()
    if not path.is_absolute() and folder is not None:
        path = Path(folder) / path
    try:
        return PythonJob.load(path)
    except Exception:  # noqa: BLE001
        return None


def parse_time_outputs(outputs: Any, loaded: Any) -> tuple[OutputSpec, ...]:
    """The declared outputs known when the DAG is parsed: ``outputs=``, else those of the job's
    ``job.json`` (``loaded``, from :func:`parse_time_job`).

    :raises JobConfigError: bad ``outputs=``.
    """
    if outputs is not None:
        try:
            return parse_outputs(outputs)
        except ValueError as exc:
            raise JobConfigError(str(exc)) from None
    if loaded is None or loaded.function is None:
        return ()
    declared = parse_outputs(loaded.function.outputs)
    if declared or loaded.function.inline_code is not None or loaded.function.source is not None:
        return declared
    from airflow_python_exec.handlers.declared import decorator_outputs, handler_file

    main = loaded.folder / loaded.main_file_name
    path = handler_file(loaded.folder, loaded.function.handler, main if main.is_file() else None)
    try:  # the platform's @handler(outputs=[...]) in the job's own file, read, never run
        return parse_outputs(decorator_outputs(path, loaded.function.handler))
    except ValueError:
        return ()  # the run refuses it in one line


def _plain(value: Any) -> Any:
    """An ``Asset``, ``Asset.ref`` or ``ObjectStoragePath`` as ``function.inputs`` JSON; others unchanged."""
    kind = type(value).__name__
    if kind == "Asset":
        return {"asset": value.name}
    if kind == "AssetNameRef":
        return {"asset": value.name}
    if kind == "AssetUriRef":
        return {"uri": value.uri}
    if kind == "ObjectStoragePath":
        return str(value)
    return value


def input_value(name: str, value: Any) -> Any:
    """One rendered ``inputs`` value as a ``function.inputs`` value.

    :raises JobConfigError: a value of another type.
    """
    value = _plain(value)
    if isinstance(value, (str, Mapping)):
        return dict(value) if isinstance(value, Mapping) else value
    raise JobConfigError(
        f"input {name!r}: a {type(value).__name__} is not an input; give a URI, an Asset, an "
        'ObjectStoragePath, a spec {"uri": ...} or an upstream output op.output["name"]'
    )


def asset_resolver(context: Mapping[str, Any]):
    """An :data:`~airflow_python_exec.handlers.data_items.AssetResolver` reading the latest event of an asset
    by name through the Task SDK (``None`` when it has no event)."""

    def resolve(name: str) -> tuple[str, Mapping[str, Any]] | None:
        from airflow.sdk.execution_time.context import InletEventsAccessor

        try:
            events = InletEventsAccessor(asset_name=name).ascending(False).limit(1)
            latest = events[0] if len(events) else None
        except Exception:  # noqa: BLE001 - an unknown asset has no event either
            return None
        if latest is None:
            return None
        extra = dict(latest.extra or {})
        return str(extra.get("uri") or ""), extra

    return resolve


def event_extra(item: Published, result: RunResult, job_id: str) -> dict[str, Any]:
    """The ``extra`` of an output's asset event, as JSON (its schema, results and metrics were masked
    when the outputs were published, and a file name holding a secret is never published)."""
    extra: dict[str, Any] = {
        "uri": item.uri,
        "kind": item.kind,
        "format": item.format,
        "rows": item.rows,
        "schema": dict(item.schema) if item.schema is not None else None,
        "size": item.size,
        "version": item.version,
        "job_id": job_id,
        "inputs": dict(result.inputs or {}),
    }
    if result.outputs is not None and result.outputs.metrics:
        extra["metrics"] = dict(result.outputs.metrics)
    return json.loads(json.dumps(extra, default=str))


def record(context: Mapping[str, Any], result: RunResult, job_id: str, outlets: Iterable[Any]) -> None:
    """Push the XCom of every output, named result and the metrics; attach each declared output's
    ``extra`` to its asset event (Airflow emits the events when the task succeeds)."""
    outputs = result.outputs
    if outputs is None:
        return
    ti = context.get("ti") or context.get("task_instance")
    by_name = {getattr(a, "name", None): a for a in outlets}
    for item in outputs.items:
        if ti is not None:
            ti.xcom_push(key=item.name, value=item.xcom())
        asset = by_name.get(item.asset_name or item.name) if item.asset_uri is not None else None
        if asset is not None and "outlet_events" in context:
            context["outlet_events"][asset].extra = event_extra(item, result, job_id)
    if ti is not None:
        for name, value in outputs.results.items():
            ti.xcom_push(key=name, value=value)
        if outputs.metrics:
            ti.xcom_push(key="metrics", value=dict(outputs.metrics))
