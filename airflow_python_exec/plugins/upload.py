"""Uploaded job bundles: checked completely, then written to ``upload_folder`` atomically.

A bundle is a ``.zip`` of a job folder, in either layout a user gets from a zip tool:

- the folder itself (``hello/app.py``, ``hello/job.json``, ...): one top-level folder, nothing else;
- the folder's content (``app.py``, ``job.json``, ...) at the archive's root.

Its ``jobId`` is the one a run would use (:meth:`airflow_python_exec.models.PythonJob.load`):
``job.json``'s ``jobId``; without a ``job.json``, the top-level folder's name, else the zip file's
name without ``.zip``. It names the destination, ``upload_folder/<jobId>/``, so it must be a safe
folder name (:data:`SAFE_JOB_ID`).

Order of work, so that a refused bundle leaves ``upload_folder`` untouched:

1. the archive rules of Sources (:func:`airflow_python_exec.isolation.archive.check_archive`: absolute
   paths, ``..``, symlinks, devices, FIFOs, more than ``MAX_ENTRIES`` entries or
   ``max_source_bytes`` bytes), then unpacked (:func:`~airflow_python_exec.isolation.archive.extract_archive`)
   into a temporary folder outside ``upload_folder``;
2. every job rule, by loading it exactly as a run would (``PythonJob.load``);
3. only then: copied into ``upload_folder/.incoming-*`` (same file system), and, under a per-job
   lock, swapped with ``upload_folder/<jobId>`` by one ``rename`` (Linux
   ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames), the previous version kept as
   ``upload_folder/.versions/<jobId>/<UTC timestamp>/``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from airflow_python_exec.errors import JobConfigError, PythonExecError
from airflow_python_exec.isolation.archive import MAX_ENTRIES, MAX_SOURCE_BYTES, check_archive, extract_archive
from airflow_python_exec.models import PythonJob

#: A ``jobId`` usable as one folder name: letters, digits, ``.``, ``_``, ``-``; not starting with
#: ``.`` (no hidden folder, no ``..``), at most 100 characters.
SAFE_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
VERSIONS = ".versions"
#: Written into ``upload_folder`` so the DAG processor never parses an uploaded script as a DAG file.
IGNORE_FILE = ".airflowignore"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class UploadDisabledError(PythonExecError):
    """``[python_exec] upload_folder`` is unset: uploads are disabled."""


class UploadForbiddenError(PythonExecError):
    """The uploader may not edit the DAG the bundle's ``jobId`` makes (or replaces)."""


class JobIdTakenError(JobConfigError):
    """The bundle's ``jobId`` already belongs to another job folder (the first owner keeps its DAG)."""


@dataclass(frozen=True)
class Uploaded:
    """An accepted upload.

    :ivar job_id: the job's ``jobId``.
    :ivar folder: ``upload_folder/<jobId>``, now holding the new version.
    :ivar previous: where the version it replaced was kept, or ``None`` for a first upload.
    :ivar files: the job's files, relative to its folder.
    """

    job_id: str
    folder: Path
    previous: Path | None
    files: list[str]


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` when it is a safe folder name (:data:`SAFE_JOB_ID`).

    :raises JobConfigError: it is not; the message names it and the rule.
    """
    if not SAFE_JOB_ID.match(job_id) or job_id == VERSIONS:
        raise JobConfigError(
            f"jobId {job_id!r} cannot be a folder name in upload_folder; use letters, digits, '.', '_' "
            "and '-' (at most 100, not starting with '.')"
        )
    return job_id


def require_upload_folder(upload_folder: Path | None) -> Path:
    """The configured ``upload_folder``.

    :raises UploadDisabledError: it is unset (DESIGN.md: upload answers 403 naming the setting).
    """
    if upload_folder is None:
        raise UploadDisabledError(
            "uploads are disabled: [python_exec] upload_folder is not set; set it to a folder inside a DAG "
            "bundle (AIRFLOW__PYTHON_EXEC__UPLOAD_FOLDER)"
        )
    return upload_folder


def require_dedicated(upload_folder: Path) -> None:
    """Refuse an ``upload_folder`` that is a DAG bundle root or holds ``.py`` files of its own.

    An upload writes ``upload_folder/.airflowignore`` ignoring everything below it; in such a folder
    that would hide every DAG from the DAG processor.

    :raises JobConfigError: one line naming the setting and the fix.
    """
    roots = _bundle_roots()
    py_files = sorted(p.name for p in upload_folder.glob("*.py")) if upload_folder.is_dir() else []
    if upload_folder.resolve() in roots or py_files:
        why = f"holds DAG files ({', '.join(py_files[:3])})" if py_files else "is a DAG bundle root"
        raise JobConfigError(
            f"[python_exec] upload_folder {upload_folder} {why}: its .airflowignore would hide every DAG; "
            f"set upload_folder to a dedicated empty sub-folder, e.g. {upload_folder / 'uploads'}"
        )


def _bundle_roots() -> set[Path]:
    """``[core] dags_folder`` and the paths of the configured DAG bundles that have one."""
    from airflow.configuration import conf

    roots = {Path(conf.get("core", "dags_folder")).expanduser().resolve()}
    try:
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        for bundle in DagBundlesManager().get_all_dag_bundles():
            path = getattr(bundle, "path", None)
            if path:
                roots.add(Path(path).resolve())
    except Exception:  # noqa: BLE001 - a bundle that cannot be built here (git, credentials) has no local root to compare
        pass
    return roots


def upload_bundle(
    archive: Path,
    filename: str,
    upload_folder: Path,
    *,
    max_bytes: int = MAX_SOURCE_BYTES,
    max_entries: int | None = None,
    owner: Callable[[str, Path], str | None] | None = None,
    may_edit: Callable[[str], bool] | None = None,
) -> Uploaded:
    """Check the job bundle ``archive`` and, when every rule holds, install it under ``upload_folder``.

    :param archive: the uploaded ``.zip`` file (anywhere but inside ``upload_folder``).
    :param filename: its name as uploaded (messages; the folder name of a root-layout bundle).
    :param max_bytes: ``[python_exec] max_source_bytes``.
    :param max_entries: most entries; default :data:`airflow_python_exec.isolation.archive.MAX_ENTRIES`.
    :param owner: ``owner(job_id, destination)``: why that ``jobId`` belongs to another job folder, or
        ``None`` (default: not asked).
    :param may_edit: ``may_edit(job_id)``: whether the uploader may edit the DAG of that ``jobId``
        (asked before ``owner``, so a refused uploader learns nothing of another owner; default: not asked).
    :returns: what was installed and where the previous version went.
    :raises UploadForbiddenError: ``may_edit`` said no; ``upload_folder`` is then untouched.
    :raises JobIdTakenError: ``owner`` named another owner; ``upload_folder`` is then untouched.
    :raises JobConfigError: the archive or the job breaks a rule, or its ``jobId`` is not a safe
        folder name; ``upload_folder`` is then untouched.
    :raises OSError: ``upload_folder`` cannot be written.
    """
    display = f"upload {filename!r}"
    require_dedicated(upload_folder)
    max_entries = MAX_ENTRIES if max_entries is None else max_entries
    with unpacked(archive, filename, display, upload_folder, max_bytes, max_entries) as folder:
        job = PythonJob.load(folder)  # every job rule, as a run applies them
        job_id = check_job_id(job.job_id)
        if may_edit is not None and not may_edit(job_id):
            raise UploadForbiddenError(
                f"you may not edit the DAG of jobId {job_id!r}; upload it under a jobId whose DAG you may edit"
            )
        taken = owner(job_id, upload_folder / job_id) if owner is not None else None
        if taken:
            raise JobIdTakenError(taken)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        previous = install(folder, job_id, upload_folder)
    return Uploaded(job_id, upload_folder / job_id, previous, files)


@contextlib.contextmanager
def unpacked(
    archive: Path, filename: str, display: str, upload_folder: Path, max_bytes: int, max_entries: int
) -> Iterator[Path]:
    """Unpack a checked bundle into a temporary folder outside ``upload_folder``; yield its job folder.

    :raises JobConfigError: the archive breaks an archive rule, or its layout has no job folder.
    """
    members = check_archive(archive, display, max_bytes, max_entries)
    with tempfile.TemporaryDirectory(prefix="python-exec-upload-") as tmp:
        if Path(tmp).resolve().is_relative_to(upload_folder.resolve()):
            raise JobConfigError(
                f"the temporary folder {tmp} is inside upload_folder {upload_folder}; point TMPDIR elsewhere"
            )
        root = Path(tmp) / "bundle"
        root.mkdir()
        extract_archive(archive, members, root, display, max_bytes)
        yield job_folder_of(root, [rel for _, rel in members], filename)


def job_folder_of(root: Path, names: list[PurePosixPath], filename: str) -> Path:
    """The job folder inside an unpacked bundle: its single top-level folder, or the root itself,
    renamed after the zip file so that a bundle without ``job.json`` gets that name as ``jobId``.

    :raises JobConfigError: the archive is empty.
    """
    tops = {name.parts[0] for name in names if name.parts}
    if not tops:
        raise JobConfigError(f"upload {filename!r} is an empty archive; zip a job folder (app.py, job.json, ...)")
    if len(tops) == 1:
        only = root / next(iter(tops))
        if only.is_dir():
            return only
    stem = PurePosixPath(filename.replace("\\", "/")).name
    stem = stem[:-4] if stem.lower().endswith(".zip") else stem
    folder = root.parent / (stem if SAFE_JOB_ID.match(stem) else "job")
    root.rename(folder)
    return folder


def install(folder: Path, job_id: str, upload_folder: Path) -> Path | None:
    """Put the checked job ``folder`` in place as ``upload_folder/<job_id>``; keep the one it replaces.

    The copy comes first (into ``upload_folder/.incoming-*``, same file system as the target), and only
    once it succeeded are ``.versions/``, the lock and ``.airflowignore`` set up: a copy that fails
    leaves ``upload_folder`` as it was.

    :returns: ``upload_folder/.versions/<job_id>/<UTC timestamp>`` holding the previous version, or
        ``None`` when there was none.
    :raises JobConfigError: ``upload_folder/<job_id>`` exists and is not a folder.
    :raises OSError: ``upload_folder`` cannot be written (a partial copy is removed).
    """
    import filelock

    target = upload_folder / job_id
    require_replaceable(target)
    upload_folder.mkdir(parents=True, exist_ok=True)  # the configured folder may not exist yet
    staged = Path(tempfile.mkdtemp(prefix=".incoming-", dir=upload_folder))
    try:
        shutil.copytree(folder, staged, dirs_exist_ok=True)
        versions = upload_folder / VERSIONS / job_id
        versions.mkdir(parents=True, exist_ok=True)
        write_ignore_file(upload_folder)
        with filelock.FileLock(str(upload_folder / VERSIONS / f"{job_id}.lock")):
            require_replaceable(target)  # again under the lock: the check above may be stale
            return _swap(staged, target, versions / _timestamp(versions))
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def require_replaceable(target: Path) -> None:
    """Refuse a ``target`` that exists but is not a real folder (``lstat``: a symlink is refused too).

    A ``jobId`` such as ``README.txt`` or ``etl.py`` must not move an unrelated file of
    ``upload_folder`` away into ``.versions/``.

    :raises JobConfigError: it is a file, a symlink or anything else but a folder.
    """
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        raise JobConfigError(
            f"jobId {target.name!r}: upload_folder/{target.name} exists and is not a job folder; "
            "use another jobId or remove that entry"
        )


def write_ignore_file(upload_folder: Path) -> None:
    """Write ``upload_folder/.airflowignore`` ignoring everything below it (once): an uploaded
    script that mentions ``airflow`` and ``dag`` must not be imported by the DAG processor."""
    path = upload_folder / IGNORE_FILE
    if path.exists():
        return
    from airflow.configuration import conf

    syntax = conf.get("core", "dag_ignore_file_syntax", fallback="glob").lower()
    path.write_text(".*\n" if syntax == "regexp" else "*\n")


def _swap(staged: Path, target: Path, keep: Path) -> Path | None:
    """Make ``staged`` the content of ``target``; move the old ``target`` to ``keep``."""
    if not os.path.lexists(target):
        os.rename(staged, target)  # atomic: the folder appears complete
        return None
    if _exchange(staged, target):  # atomic: readers see the old folder or the new one, never none
        os.rename(staged, keep)
    else:
        os.rename(target, keep)
        os.rename(staged, target)
    return keep


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; ``False`` where it is unavailable."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


def _timestamp(versions: Path) -> str:
    """A UTC timestamp folder name not yet used in ``versions``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return stamp if not (versions / stamp).exists() else f"{stamp}-{len(os.listdir(versions))}"
