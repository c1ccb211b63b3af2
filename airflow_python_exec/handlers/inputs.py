"""Inputs: resolved and copied into the run's private folder before the job's process starts.

An input is read by the worker (with its connections), never by the job: the job gets a local copy
(read-only, and mounted read-only in the sandbox) and the URI it came from, without credentials. An
input that does not exist refuses the job before it starts, in one line
(``input 'raw': <uri> does not exist``, ``input 'raw': asset 'x' has no event``).

Every input goes through the Reach rule (:mod:`airflow_python_exec.models.reach`): parsed once, the
same parsed value checked against the allow-list and then opened by descriptor with no link at any
component (:mod:`airflow_python_exec.isolation.reach_io`), copied with a byte cap
(``max_data_bytes``). ``http(s)`` inputs are read with fsspec's HTTP file system.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.handlers import store
from airflow_python_exec.isolation.reach_io import ReachIOError, copy_out, copy_stream, open_beneath
from airflow_python_exec.models.data_item_specs import InputSpec
from airflow_python_exec.models.reach import WEB_SCHEMES, Location, Reach, Root, parse_location

#: An asset name -> ``(uri, extra)`` of its latest event, or ``None`` when it has none.
AssetResolver = Callable[[str], "tuple[str, Mapping[str, Any]] | None"]
#: Largest input when the caller gives no cap (``[python_exec] max_data_bytes``' default).
DEFAULT_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class ResolvedInput:
    """An input whose source is known, allowed and exists.

    :ivar argument: the handler's argument; :ivar name: the data item's name (asset or output name,
        else the argument).
    :ivar uri: what is read (may carry a connection id); :ivar public: the same without user info.
    :ivar location: the parsed place (the one value both checked and opened).
    :ivar root: the allowed root of a local input, else ``None``; :ivar below: its path below the root.
    :ivar asset: the asset read, for an asset input.
    """

    argument: str
    name: str
    uri: str
    public: str
    format: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)
    location: Location | None = None
    root: Root | None = None
    below: str = ""
    asset: str | None = None


def job_reach(job_folder: Path) -> Reach:
    """The narrowest reach: the job folder only (callers without settings)."""
    return Reach((Root(str(job_folder), os.path.realpath(job_folder), writable=False),))


def resolve_inputs(
    specs: Mapping[str, InputSpec],
    job_folder: Path,
    resolve_asset: AssetResolver | None = None,
    reach: Reach | None = None,
) -> list[ResolvedInput]:
    """Resolve every input, check it against the Reach rule, and check that it exists.

    :param resolve_asset: finds an asset's latest event (Airflow); ``None``: asset inputs are refused.
    :param reach: what the job may name (default: its own folder only).
    :raises JobConfigError: one line per the contract (the task fails without retries, the CLI exits 2).
    """
    reach = reach or job_reach(job_folder)
    resolved = []
    for spec in specs.values():
        extra: Mapping[str, Any] = dict(spec.pinned) if spec.pinned else {}
        name = str(spec.pinned.get("name") or spec.name) if spec.pinned else spec.name
        if spec.asset is not None:
            uri, extra = _asset(spec, resolve_asset)
            name = spec.asset
        else:
            uri = str(spec.uri)
        item = resolve_place(spec.name, name, uri, spec.format, extra, job_folder, reach)
        resolved.append(item if spec.asset is None else _with_asset(item, spec.asset))
    return resolved


def resolve_place(
    argument: str,
    name: str,
    uri: str,
    file_format: str | None,
    extra: Mapping[str, Any],
    job_folder: Path,
    reach: Reach,
) -> ResolvedInput:
    """One input's place parsed once, checked against the Reach rule and known to exist.

    :raises JobConfigError: a place the job may not name, or ``input 'x': <uri> does not exist``.
    """
    what = f"input {argument!r}"
    location = parse_location(uri, str(job_folder), what)
    root, below = reach.local_root(location, what) if location.local else (None, "")
    if root is None:
        reach.check_remote(location, what)
    if not _exists(location, root, below, reach, what):
        raise JobConfigError(f"{what}: {location.public} does not exist")
    return ResolvedInput(argument, name, location.uri, location.public, file_format, extra, location, root, below)


def _with_asset(item: ResolvedInput, asset: str) -> ResolvedInput:
    from dataclasses import replace

    return replace(item, asset=asset)


def _asset(spec: InputSpec, resolve_asset: AssetResolver | None) -> tuple[str, Mapping[str, Any]]:
    """The URI and extra of an asset input's latest event."""
    if resolve_asset is None:
        raise JobConfigError(
            f"input {spec.name!r}: asset {spec.asset!r} is read from Airflow's asset events; "
            f"outside Airflow give its URI (--input {spec.name}=URI)"
        )
    found = resolve_asset(str(spec.asset))
    if found is None:
        raise JobConfigError(f"input {spec.name!r}: asset {spec.asset!r} has no event")
    if not found[0]:
        raise JobConfigError(
            f"input {spec.name!r}: asset {spec.asset!r}'s latest event has no uri in its extra; "
            "give the input's URI instead"
        )
    return found[0], dict(found[1])


def _exists(location: Location, root: Root | None, below: str, reach: Reach, what: str) -> bool:
    """Whether the input exists: a local one opened as it will be copied (and then closed)."""
    if root is not None:
        try:
            fd = _open_local(root, below, reach, what, location)
        except FileNotFoundError:
            return False
        os.close(fd)
        return True
    try:
        if location.scheme in WEB_SCHEMES:
            return bool(_http().exists(location.uri))
        return bool(store.describe(location.uri)["exists"])
    except Exception as exc:  # noqa: BLE001 - a storage or connection error: say which input
        raise JobConfigError(f"{what}: {location.shown} cannot be read ({exc})") from None


def _open_local(root: Root, below: str, reach: Reach, what: str, location: Location) -> int:
    """A descriptor of a local input (no link at any component); a folder may hold no hidden place.

    :raises FileNotFoundError: it does not exist; :raises JobConfigError: anything else refused.
    """
    try:
        fd = open_beneath(root.real, below)
    except ReachIOError as exc:
        raise JobConfigError(f"{what}: {location.shown!r} is refused: {exc}") from None
    except NotADirectoryError:
        raise FileNotFoundError(location.path) from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise JobConfigError(f"{what}: {location.shown!r} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        hidden = reach.hidden_inside(posixpath.join(root.real, below) if below else root.real)
        if hidden is not None:
            os.close(fd)
            raise JobConfigError(
                f"{what}: {location.shown!r} holds {hidden}, which a job may not reach; name a folder inside it"
            )
    return fd


def _http() -> Any:
    """fsspec's HTTP file system (aiohttp), imported on first use."""
    import fsspec

    return fsspec.filesystem("http")


def stage(
    inputs: Iterable[ResolvedInput], folder: Path, reach: Reach | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> dict[str, dict[str, Any]]:
    """Copy each input into ``folder/<argument>/`` and make the copies read-only.

    A local input is opened again exactly as :func:`resolve_inputs` checked it (the same root and
    path, no link at any component): a link swapped in since is refused, not followed.

    :param max_bytes: the most bytes an input may have (a folder: all its files).
    :returns: argument -> ``{"name", "uri", "path", "extra", "format"}`` for the job's data file.
    :raises JobConfigError: an input that disappeared, changed, is too large or cannot be copied.
    """
    staged: dict[str, dict[str, Any]] = {}
    for item in inputs:
        target_dir = folder / item.argument
        target_dir.mkdir(parents=True)
        base = PurePosixPath(item.public.rstrip("/")).name or item.argument
        target = target_dir / base
        what = f"input {item.argument!r}"
        location = item.location or parse_location(item.uri, None, what)
        try:
            if item.root is not None:
                fd = _open_local(item.root, item.below, reach or Reach((item.root,)), what, location)
                try:
                    copy_out(fd, target, max_bytes)
                finally:
                    os.close(fd)
            else:
                _copy_remote(location, target, max_bytes)
        except ReachIOError as exc:
            raise JobConfigError(f"{what}: {location.shown!r} is refused: {_with_setting(exc)}") from None
        except (OSError, ValueError) as exc:
            raise JobConfigError(f"{what}: {item.public} cannot be copied ({exc})") from None
        _read_only(target)
        staged[item.argument] = {
            "name": item.name,
            "uri": item.public,
            "path": str(target),
            "extra": dict(item.extra),
            "format": item.format,
        }
    return staged


def _with_setting(exc: ReachIOError) -> str:
    text = str(exc)
    return f"{text} ([python_exec] max_data_bytes)" if "larger than" in text else text


def _copy_remote(location: Location, target: Path, max_bytes: int) -> None:
    """Copy a remote input (fsspec) with the byte cap; a folder's files one by one."""
    if location.scheme in WEB_SCHEMES:
        fs, path = _http(), location.uri
    else:
        opened = store.storage_path(location.uri)
        fs, path = opened.fs, opened.path
    if location.scheme not in WEB_SCHEMES and fs.isdir(path):
        total = 0
        for name in sorted(fs.find(path)):
            relative = name[len(path.rstrip("/")) + 1 :]
            if not relative or ".." in relative.split("/"):
                continue
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            total = _copy_file(fs, name, target / relative, max_bytes, total)
        return
    _copy_file(fs, path, target, max_bytes, 0)


def _copy_file(fs: Any, path: str, target: Path, max_bytes: int, total: int) -> int:
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with fs.open(path, "rb") as source:
            return copy_stream(source, out, max_bytes, total)
    finally:
        os.close(out)


def _read_only(path: Path) -> None:
    """Files 0444: a job (even unsandboxed) does not change its input by mistake. Folders stay
    writable by their owner, so the run folder can always be removed."""
    for root, _dirs, files in os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]:
        for name in files:
            os.chmod(os.path.join(root, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
