"""The data store: where outputs without their own ``uri`` go, and how a URI is opened.

``[python_exec] data_store`` (default ``file://$AIRFLOW_HOME/python_exec/data``) is any
``ObjectStoragePath`` base; a connection id may sit in it as user info (``s3://aws_default@bucket/dh``)
and is left out of every asset URI. A version of an output goes to
``{data_store}/{dataitem|artifact}/{name}/{version}/{file}``: a new ``version`` for every run, never
overwritten; a job with a ``project`` adds a level, ``{data_store}/{project}/...``. Beside each version
folder, ``{version}.json`` records what made it (rows, schema, size, job, inputs) for ``data-items``
and the project's ``get_dataitem``. ``ObjectStoragePath`` is Airflow's: it is imported inside the
functions that use it.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import secrets
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_python_exec.models.data_item_specs import OutputSpec, public_uri
from airflow_python_exec.models.reach import data_store_uri, default_data_store

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Bytes per read/write when copying between storages.
CHUNK = 1 << 20


def project_store(data_store: str, project: str | None) -> str:
    """The data store of a project: ``{data_store}/{project}``, or ``data_store`` without one."""
    return f"{data_store}/{project}" if project else data_store


#: A version id as :func:`new_version` makes it.
VERSION = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{6}\Z")
#: Largest version record written or read, in bytes.
MAX_RECORD_BYTES = 1 << 20


def new_version() -> str:
    """A new version id: UTC time to the microsecond and a random suffix (sorts by time)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def asset_uri(spec: OutputSpec, data_store: str) -> str:
    """The asset URI of an output: its own ``uri``, else ``{data_store}/{group}/{name}``, without user info."""
    return public_uri(spec.uri if spec.uri else f"{data_store}/{spec.group}/{spec.name}")


def version_uri(spec: OutputSpec, data_store: str, version: str, file_name: str) -> str:
    """Where one version is written: its own ``uri``, else under the data store (connection id kept)."""
    if spec.uri:
        return spec.uri
    return f"{data_store}/{spec.group}/{spec.name}/{version}/{file_name}"


def storage_path(uri: str) -> ObjectStoragePath:
    """``uri`` as an ``ObjectStoragePath`` (Airflow imported here, on first use)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri)


def write_new(source: BinaryIO, uri: str, *, cap: int) -> int:
    """Copy ``source`` to the new ``uri`` through ``ObjectStoragePath``'s file system; return the
    bytes written. A copy that fails (over ``cap`` included) is removed.

    :raises FileExistsError: ``uri`` exists (a version is never overwritten).
    :raises ValueError: more than ``cap`` bytes.
    """
    target = storage_path(uri)
    fs = target.fs  # the filesystem itself: ObjectStoragePath.open's hook-lineage wrapper needs a task
    if fs.exists(target.path):
        raise FileExistsError(f"{public_uri(uri)} exists already; a data item version is never overwritten")
    fs.makedirs(target.parent.path, exist_ok=True)
    size = 0
    try:
        with fs.open(target.path, "wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > cap:
                    raise ValueError(f"it is larger than {cap} bytes ([python_exec] max_data_bytes)")
                out.write(chunk)
    except BaseException:
        fs.rm(target.path)
        raise
    return size


def describe(uri: str) -> dict[str, Any]:
    """What a URI is: ``{"exists", "is_dir"}`` (used to refuse a missing input before the start)."""
    path = storage_path(uri)
    exists = path.fs.exists(path.path)
    return {"exists": exists, "is_dir": exists and path.fs.isdir(path.path)}


def write_version_record(data_store: str, published: Any, about: dict[str, Any]) -> None:
    """Write ``{data_store}/{group}/{name}/{version}.json``: the version's URI, kind, format, rows,
    schema, size, when it was made, and ``about`` (``job_id``, ``inputs``, ``project``)."""
    record = {
        "name": published.name,
        "uri": published.uri,
        "kind": published.kind,
        "format": published.format,
        "rows": published.rows,
        "schema": dict(published.schema) if published.schema is not None else None,
        "size": published.size,
        "version": published.version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **about,
    }
    target = f"{data_store}/{published.group}/{published.name}/{published.version}.json"
    write_new(io.BytesIO(json.dumps(record, default=str).encode()), target, cap=MAX_RECORD_BYTES)


def version_records(data_store: str, group: str, name: str) -> list[dict[str, Any]]:
    """The records of every version of a data item, oldest first (``[]`` when it has none)."""
    folder = storage_path(f"{data_store}/{group}/{name}")
    fs = folder.fs
    if not fs.exists(folder.path):
        return []
    records = []
    for entry in sorted(fs.ls(folder.path, detail=False)):
        if str(entry).endswith(".json") and fs.isfile(entry):  # a folder named *.json is an item's, not a record
            with fs.open(entry, "rb") as f:
                try:
                    value = json.loads(f.read(MAX_RECORD_BYTES))
                except ValueError:
                    continue  # not ours: never fatal for a listing
            if isinstance(value, dict):
                records.append(value)
    return records


def item_names(data_store: str) -> list[tuple[str, str]]:
    """``(group, name)`` of every data item and artifact in a data store (a project's store too)."""
    found = []
    for group in ("dataitem", "artifact"):
        folder = storage_path(f"{data_store}/{group}")
        if folder.fs.exists(folder.path):
            found += [(group, str(p).rstrip("/").rsplit("/", 1)[-1]) for p in folder.fs.ls(folder.path, detail=False)]
    return sorted(found)


__all__ = [
    "MAX_RECORD_BYTES",
    "VERSION",
    "asset_uri",
    "data_store_uri",
    "default_data_store",
    "describe",
    "item_names",
    "new_version",
    "project_store",
    "storage_path",
    "version_records",
    "version_uri",
    "write_new",
    "write_version_record",
]
