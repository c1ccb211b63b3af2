"""The data store: where outputs without their own ``uri`` go, and how a URI is opened.

``[python_exec] data_store`` (default ``file://$AIRFLOW_HOME/python_exec/data``) is any
``ObjectStoragePath`` base; a connection id may sit in it as user info (``s3://aws_default@bucket/dh``)
and is left out of every asset URI. A version of an output goes to
``{data_store}/{dataitem|artifact}/{name}/{version}/{file}``: a new ``version`` for every run, never
overwritten. ``ObjectStoragePath`` is Airflow's: it is imported inside the functions that use it.
"""

from __future__ import annotations

import datetime
import secrets
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow_python_exec.models.data_item_specs import OutputSpec, public_uri
from airflow_python_exec.models.reach import data_store_uri, default_data_store

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Bytes per read/write when copying between storages.
CHUNK = 1 << 20


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


__all__ = [
    "asset_uri",
    "data_store_uri",
    "default_data_store",
    "describe",
    "new_version",
    "storage_path",
    "version_uri",
    "write_new",
]
