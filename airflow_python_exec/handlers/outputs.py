"""Publishing a successful run's outputs: the job wrote them into its private folder, the worker
copies each one to its version's URI (DESIGN.md, "Data items").

Every file the job wrote is treated as hostile: the manifest and each output file are opened
without following symbolic links (the outputs folder itself too), must be regular files, and the
manifest is read up to ``max_result_bytes``; names must be data item names. A failed run never gets
here, so it publishes nothing.

Where an output is written follows the Reach rule (:mod:`airflow_python_exec.models.reach`): only
under the data store or a ``data_allowed_uris`` prefix, with an allowed connection; a local file is
created with no link at any component and never over an existing one; every output is copied with
a byte cap (``max_data_bytes``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from airflow_python_exec.errors import JobConfigError, PythonExecError
from airflow_python_exec.handlers import store
from airflow_python_exec.isolation.job_files import open_folder, open_regular
from airflow_python_exec.isolation.reach_io import ReachIOError, copy_stream, create_beneath, unlink_beneath
from airflow_python_exec.models.data_item_specs import ARTIFACT, FORMATS, NAME, TABLE, OutputSpec, public_uri
from airflow_python_exec.models.reach import WEB_SCHEMES, Location, Reach, parse_location
from airflow_python_exec.redaction import Redactor

MANIFEST = "manifest.json"
#: An artifact's ``format`` when it is a folder (stored whole, one version).
FOLDER = "folder"
#: Most folder levels inside a folder artifact (as the archive rules of Sources allow).
MAX_FOLDER_DEPTH = 64


class PublishError(PythonExecError):
    """The run succeeded but an output cannot be published (a retry may succeed): exit status 1."""

    exit_code = 1


@dataclass(frozen=True)
class Published:
    """One published output version.

    :ivar name: the output's name; :ivar kind: ``table`` or ``artifact``; :ivar format: ``parquet``,
        ``csv`` or an artifact's extension.
    :ivar uri: this version's URI (no connection id); :ivar asset_uri: the asset's URI, or ``None`` for
        an output that was not declared (no asset, no event); :ivar asset_name: the asset's name
        (``{project}/{name}`` in a project).
    :ivar rows: a table's row count; :ivar schema: its Table Schema; :ivar size: bytes written.
    """

    name: str
    kind: str
    format: str | None
    uri: str
    asset_uri: str | None
    version: str
    size: int
    rows: int | None = None
    schema: Mapping[str, Any] | None = None
    asset_name: str | None = None

    @property
    def group(self) -> str:
        return "artifact" if self.kind == ARTIFACT else "dataitem"

    def xcom(self) -> dict[str, Any]:
        """The output's XCom: ``{"name", "uri", "kind", "format", "rows", "schema", "asset"}``."""
        return {
            "name": self.name,
            "uri": self.uri,
            "kind": self.kind,
            "format": self.format,
            "rows": self.rows,
            "schema": dict(self.schema) if self.schema is not None else None,
            "asset": (self.asset_name or self.name) if self.asset_uri is not None else None,
        }


@dataclass(frozen=True)
class Outputs:
    """What a run published: its outputs, named results and metrics (secrets replaced).

    The named results are the ``results`` of the run's result (read from the result file once, see
    :meth:`~airflow_python_exec.handlers.data_items.DataRun.publish`); the rest comes from the manifest.
    """

    items: tuple[Published, ...] = ()
    results: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    declared: bool = False


def publish(
    folder: Path,
    declared: Iterable[OutputSpec],
    data_store: str,
    reach: Reach,
    *,
    max_bytes: int,
    redact: Redactor | None = None,
    max_data_bytes: int,
    on_line: Callable[[str], None] | None = None,
    project: str | None = None,
    about: Mapping[str, Any] | None = None,
) -> Outputs:
    """Publish the outputs the job's process wrote into ``folder``.

    :param declared: the job's declared outputs (their own ``uri``, their asset).
    :param data_store: the data store base URI (with the project's level already added).
    :param reach: where the job may write (the data store, ``data_allowed_uris``).
    :param max_bytes: largest manifest read.
    :param max_data_bytes: largest output copied (a folder artifact: all its files together).
    :param redact: the run's secrets: an output's file name holding one is refused; schemas and
        metrics have each occurrence replaced by ``***``.
    :param project: the job's project: asset names are ``{project}/{name}``.
    :param about: what made the version (``job_id``, ``inputs``), kept beside it for ``data-items show``.
    :raises PublishError: a manifest or output the job tampered with, or storage that cannot be written.
    """
    manifest = _read_manifest(folder, max_bytes)
    if manifest is None:
        return Outputs()
    specs = {s.name: s for s in declared}
    version = store.new_version()
    items = []
    redact = redact or Redactor(())
    with _open_folder(folder) as dir_fd:
        for entry in manifest.get("outputs") or []:
            spec, file_name = _checked(entry, specs)
            if redact(file_name) != file_name:  # it would be in the store's path, the URI, XCom, events
                raise PublishError(
                    f"output {spec.name!r}: its file name holds a secret value; name the file without it"
                )
            target = store.version_uri(spec, data_store, version, file_name)
            try:
                if entry.get("format") == FOLDER and spec.kind == ARTIFACT:
                    size = _publish_folder(dir_fd, entry["file"], target, spec.name, reach, max_data_bytes)
                else:
                    with _open_output(dir_fd, entry["file"]) as source:
                        size = write_output(source, target, reach, max_data_bytes, f"output {spec.name!r}")
            except ReachIOError as exc:
                raise PublishError(f"output {spec.name!r} is not published: {_with_setting(exc)}") from None
            except JobConfigError as exc:
                raise PublishError(str(exc)) from None
            except (OSError, ValueError) as exc:
                raise PublishError(f"output {spec.name!r} cannot be published ({exc}); check the data store") from None
            declared_spec = specs.get(spec.name)
            published = Published(
                name=spec.name,
                kind=str(spec.kind),
                format=entry.get("format") if spec.kind == ARTIFACT else spec.format,
                uri=public_uri(target),
                asset_uri=store.asset_uri(declared_spec, data_store) if declared_spec is not None else None,
                version=version,
                size=size,
                rows=entry.get("rows") if isinstance(entry.get("rows"), int) else None,
                schema=redact.mask_value(entry.get("schema")) if isinstance(entry.get("schema"), dict) else None,
                asset_name=f"{project}/{spec.name}" if project else spec.name,
            )
            if spec.uri is None:
                store.write_version_record(data_store, published, {**(about or {}), "project": project})
            items.append(published)
            if on_line is not None:
                rows = f", {published.rows:,} rows" if published.rows is not None else ""
                on_line(
                    f"[python_exec] output {spec.name!r} ({spec.kind}{rows}, {size:,} bytes) written to {published.uri}"
                )
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    return Outputs(tuple(items), metrics=redact.mask_value(metrics), declared=bool(manifest.get("declared")))


def check_outputs(declared: Iterable[OutputSpec], reach: Reach) -> None:
    """Check each declared output's own ``uri`` before the job starts: allowed, not there yet.

    :raises JobConfigError: ``outputs[0].uri: '/x' is outside the data store or ...``.
    """
    for i, spec in enumerate(declared):
        if spec.uri is None:
            continue
        what = f"outputs[{i}].uri"
        location = _target(spec.uri, reach, what)
        if location.local and os.path.lexists(location.path):
            raise JobConfigError(
                f"{what}: {location.shown!r} exists already; an output is never overwritten: name a new "
                "file, or leave uri out to get a new version under the data store on each run"
            )


def _target(uri: str, reach: Reach, what: str) -> Location:
    """The parsed place an output may be written to, or a one-line refusal."""
    location = parse_location(uri, None, what)
    if location.local:
        reach.local_root(location, what, write=True)
    elif location.scheme in WEB_SCHEMES:
        raise JobConfigError(f"{what}: {location.shown!r} cannot be written; name a data store or storage URI")
    else:
        reach.check_remote(location, what)
    return location


def write_output(source: Any, uri: str, reach: Reach, cap: int, what: str) -> int:
    """Copy ``source`` (a job's file) to the new ``uri``, counting bytes; return the bytes written.

    Local: created under its allowed root with no link at any component, never over an existing
    file. Elsewhere: through ``ObjectStoragePath``, refused when it exists. A copy over ``cap``
    leaves nothing behind.

    :raises ReachIOError: over ``cap``, or a link on the way; :raises FileExistsError: it exists.
    :raises JobConfigError: a place the job may not write.
    """
    location = _target(uri, reach, what)
    if os.fstat(source.fileno()).st_size > cap:
        raise ReachIOError(f"it is larger than {cap} bytes")
    if location.local:
        root, below = reach.local_root(location, what, write=True)
        os.makedirs(root.real, exist_ok=True)
        fd = create_beneath(root.real, below)
        try:
            return copy_stream(source, fd, cap)
        except BaseException:
            unlink_beneath(root.real, below)
            raise
        finally:
            os.close(fd)
    return store.write_new(source, location.uri, cap=cap)


def _with_setting(exc: ReachIOError) -> str:
    text = str(exc)
    return f"{text} ([python_exec] max_data_bytes)" if "larger than" in text else text


def _checked(entry: Any, specs: Mapping[str, OutputSpec]) -> tuple[OutputSpec, str]:
    """The spec of a manifest entry and the file name it is published under; refuses anything odd."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not NAME.match(entry["name"]):
        raise PublishError("the job's output manifest names an output badly; outputs are not published")
    name, kind, file = entry["name"], entry.get("kind"), entry.get("file")
    if kind not in (TABLE, ARTIFACT) or not isinstance(file, str):
        raise PublishError(f"output {name!r}: the job's manifest is invalid; outputs are not published")
    parts = file.split("/")
    expected = [f"{name}.{entry.get('format')}"] if kind == TABLE else [name, parts[-1]]
    if parts != expected or (kind == TABLE and entry.get("format") not in FORMATS) or parts[-1] in ("", ".", ".."):
        raise PublishError(f"output {name!r}: the job's manifest names the file {file!r}; outputs are not published")
    spec = specs.get(name) or OutputSpec(name, kind, str(entry["format"]) if kind == TABLE else "parquet")
    if spec.kind is None:  # declared by name only: the kind is the value's
        spec = replace(spec, kind=kind, format=str(entry["format"]) if kind == TABLE else spec.format)
    if spec.kind != kind:
        raise PublishError(f"output {name!r} is declared as {spec.kind} but the job wrote a {kind}")
    return spec, parts[-1]


def _read_manifest(folder: Path, max_bytes: int) -> dict[str, Any] | None:
    try:
        with _open_folder(folder) as dir_fd, _open_output(dir_fd, MANIFEST, missing_ok=True) as f:
            if f is None:
                return None
            data = f.read(max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise PublishError(f"the job's output manifest cannot be read ({exc}); outputs are not published") from None
    if len(data) > max_bytes:
        raise PublishError(f"the job's output manifest is larger than {max_bytes} bytes; outputs are not published")
    try:
        value = json.loads(data)
    except ValueError:
        raise PublishError("the job's output manifest is not JSON; outputs are not published") from None
    return value if isinstance(value, dict) else None


def _publish_folder(dir_fd: int, relative: str, target: str, name: str, reach: Reach, cap: int) -> int:
    """Copy the folder ``relative`` (under ``dir_fd``) to ``target``, following no link; return the bytes.

    Each file goes through :func:`write_output` (the Reach rule), with what is left of ``cap``.

    :raises PublishError: a link, FIFO or device inside it (the job may have put one there), or more
        than :data:`MAX_FOLDER_DEPTH` levels.
    :raises ReachIOError: more than ``cap`` bytes in all.
    """
    folder_fd = dir_fd
    opened = []
    try:
        for part in relative.split("/"):
            folder_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
            opened.append(folder_fd)
        return _copy_tree(folder_fd, target, name, relative, reach, cap)
    finally:
        for fd in opened:
            os.close(fd)


def _copy_tree(folder_fd: int, target: str, name: str, where: str, reach: Reach, cap: int, depth: int = 0) -> int:
    if depth >= MAX_FOLDER_DEPTH:  # a deeper tree would exhaust Python's recursion and the open files
        raise PublishError(
            f"output {name!r}: {where} is more than {MAX_FOLDER_DEPTH} folders deep; an artifact folder may "
            f"nest at most {MAX_FOLDER_DEPTH} levels"
        )
    size = 0
    for entry in sorted(os.scandir(folder_fd), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder_fd)
            try:
                size += _copy_tree(
                    sub, f"{target}/{entry.name}", name, f"{where}/{entry.name}", reach, cap - size, depth + 1
                )
            finally:
                os.close(sub)
        elif entry.is_file(follow_symlinks=False):
            with open(open_regular(entry.name, dir_fd=folder_fd), "rb") as source:
                size += write_output(source, f"{target}/{entry.name}", reach, cap - size, f"output {name!r}")
        else:
            raise PublishError(
                f"output {name!r}: {where}/{entry.name} is a link or a special file; an artifact folder may "
                "hold only files and folders"
            )
    return size


@contextmanager
def _open_folder(folder: Path) -> Iterator[int]:
    """The outputs folder as a file descriptor, not following a link the job may have put there."""
    fd = open_folder(folder)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _open_output(dir_fd: int, relative: str, missing_ok: bool = False) -> Iterator[Any]:
    """Open ``relative`` (``a`` or ``a/b``) under ``dir_fd`` as hostile input: a regular file reached
    without following any link (:func:`~airflow_python_exec.isolation.job_files.open_regular`)."""
    try:
        fd = open_regular(relative, dir_fd=dir_fd)
    except FileNotFoundError:
        if not missing_ok:
            raise
        yield None
        return
    with open(fd, "rb") as f:
        yield f
