"""Inputs: resolved and copied into the run's private folder before the job's process starts.

An input is read by the worker (with its connections), never by the job: the job gets a local copy
(read-only, and mounted read-only in the sandbox) and the URI it came from, without credentials. An
input that does not exist refuses the job before it starts, in one line
(``input 'raw': <uri> does not exist``, ``input 'raw': asset 'x' has no event``).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.handlers import store
from airflow_python_exec.models.data_item_specs import InputSpec, public_uri

#: An asset name -> ``(uri, extra)`` of its latest event, or ``None`` when it has none.
AssetResolver = Callable[[str], "tuple[str, Mapping[str, Any]] | None"]


@dataclass(frozen=True)
class ResolvedInput:
    """An input whose source is known and exists.

    :ivar argument: the handler's argument; :ivar name: the data item's name (asset or output name,
        else the argument).
    :ivar uri: what is read (may carry a connection id); :ivar public: the same without user info.
    :ivar local: a local file or folder to copy (a job-folder path or ``file://``), else ``None``.
    :ivar asset: the asset read, for an asset input.
    """

    argument: str
    name: str
    uri: str
    public: str
    format: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)
    local: Path | None = None
    asset: str | None = None


def resolve_inputs(
    specs: Mapping[str, InputSpec],
    job_folder: Path,
    resolve_asset: AssetResolver | None = None,
    hidden: Iterable[str] = (),
    allowed: Iterable[str] = (),
) -> list[ResolvedInput]:
    """Resolve every input and check that it exists.

    :param resolve_asset: finds an asset's latest event (Airflow); ``None``: asset inputs are refused.
    :param hidden: folders a sandboxed job must not see: a local input inside one is refused...
    :param allowed: ...unless it is inside one of these (a ``file://`` data store).
    :raises JobConfigError: one line per the contract (the task fails without retries, the CLI exits 2).
    """
    resolved = []
    hidden = tuple(hidden)
    allowed = tuple(os.path.realpath(a) for a in allowed)
    for spec in specs.values():
        extra: Mapping[str, Any] = dict(spec.pinned) if spec.pinned else {}
        name = str(spec.pinned.get("name") or spec.name) if spec.pinned else spec.name
        if spec.asset is not None:
            if resolve_asset is None:
                raise JobConfigError(
                    f"input {spec.name!r}: asset {spec.asset!r} is read from Airflow's asset events; "
                    f"outside Airflow give its URI (--input {spec.name}=URI)"
                )
            found = resolve_asset(spec.asset)
            if found is None:
                raise JobConfigError(f"input {spec.name!r}: asset {spec.asset!r} has no event")
            uri, extra = found[0], dict(found[1])
            name = spec.asset
            if not uri:
                raise JobConfigError(
                    f"input {spec.name!r}: asset {spec.asset!r}'s latest event has no uri in its extra; "
                    "give the input's URI instead"
                )
        else:
            uri = str(spec.uri)
        local = _local_path(spec.name, uri, job_folder, hidden, allowed)
        if local is not None:
            exists = local.exists()
        else:
            try:
                exists = store.describe(uri)["exists"]
            except Exception as exc:  # noqa: BLE001 - a storage or connection error: say which input
                raise JobConfigError(f"input {spec.name!r}: {public_uri(uri)} cannot be read ({exc})") from None
        public = public_uri(uri) if "://" in uri else f"file://{local}"
        if not exists:
            raise JobConfigError(f"input {spec.name!r}: {public} does not exist")
        resolved.append(ResolvedInput(spec.name, name, uri, public, spec.format, extra, local, spec.asset))
    return resolved


def _local_path(
    argument: str, uri: str, job_folder: Path, hidden: Iterable[str], allowed: Iterable[str]
) -> Path | None:
    """The local file of an input (a job-folder path or a ``file://`` URI), else ``None``."""
    if "://" in uri:
        if not uri.startswith("file://"):
            return None
        path = Path(uri[len("file://") :])
    else:
        posix = PurePosixPath(uri)
        if posix.is_absolute():
            path = Path(uri)
        else:
            if ".." in posix.parts:
                raise JobConfigError(f"input {argument!r}: {uri!r} leaves the job folder; keep it inside, without '..'")
            path = (job_folder / posix).resolve()
            if not path.is_relative_to(job_folder.resolve()):
                raise JobConfigError(f"input {argument!r}: {uri!r} is a link out of the job folder; copy the file in")
            return path
    path = Path(os.path.abspath(path))
    real = os.path.realpath(path)
    if any(_within(real, a) for a in allowed):
        return path
    for folder in hidden:
        top = os.path.realpath(folder)
        if _within(real, top):
            raise JobConfigError(
                f"input {argument!r}: {uri} is inside {top}, which a sandboxed job may not read; "
                "move the file, or read it from the data store"
            )
    return path


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def stage(inputs: Iterable[ResolvedInput], folder: Path) -> dict[str, dict[str, Any]]:
    """Copy each input into ``folder/<argument>/`` and make the copies read-only.

    :returns: argument -> ``{"name", "uri", "path", "extra", "format"}`` for the job's data file.
    :raises JobConfigError: an input that disappeared or cannot be copied.
    """
    staged: dict[str, dict[str, Any]] = {}
    for item in inputs:
        target_dir = folder / item.argument
        target_dir.mkdir(parents=True)
        base = PurePosixPath(item.public.rstrip("/")).name or item.argument
        target = target_dir / base
        try:
            if item.local is not None:
                if item.local.is_dir():
                    _copy_folder(item.local, target, item.argument)
                else:
                    shutil.copyfile(item.local, target)
            else:
                path = store.storage_path(item.uri)
                path.fs.get(path.path, str(target), recursive=path.fs.isdir(path.path))
        except (OSError, ValueError) as exc:
            raise JobConfigError(f"input {item.argument!r}: {item.public} cannot be copied ({exc})") from None
        _read_only(target)
        staged[item.argument] = {
            "name": item.name,
            "uri": item.public,
            "path": str(target),
            "extra": dict(item.extra),
            "format": item.format,
        }
    return staged


def _read_only(path: Path) -> None:
    """Files 0444: a job (even unsandboxed) does not change its input by mistake. Folders stay
    writable by their owner, so the run folder can always be removed."""
    for root, _dirs, files in os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]:
        for name in files:
            os.chmod(os.path.join(root, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def _copy_folder(source: Path, target: Path, argument: str) -> None:
    """Copy a folder input holding only folders and regular files, following no link.

    A link inside the folder could name what the sandbox hides (``airflow.cfg``): the worker, which
    can read it, would copy it in for the job. Only the folder's own path is checked against the
    hidden places, so every entry below it must be a plain file or folder.

    :raises JobConfigError: a symbolic link, FIFO, socket or device inside ``source``.
    """
    target.mkdir()
    with os.scandir(source) as entries:
        for entry in entries:
            destination = target / entry.name
            if entry.is_dir(follow_symlinks=False):
                _copy_folder(Path(entry.path), destination, argument)
            elif entry.is_file(follow_symlinks=False):
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as src, open(destination, "xb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                raise JobConfigError(
                    f"input {argument!r}: {entry.path} is a symbolic link or a special file; "
                    "an input folder may hold only files and folders"
                )
