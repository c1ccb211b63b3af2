"""The cached environments on disk: list them, prune the unused ones (``airflow-python-exec envs``).

An environment's size is walked once, when it is provisioned, and kept beside its marker
(``envs/<key>/.size``, :func:`record_size`): listing and pruning read that one small file instead of
every file of every environment. An environment provisioned before sizes were recorded gets its
size walked and recorded the first time it is listed (or pruned); ``prune`` never walks an
environment it keeps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from airflow_python_exec.errors import PythonExecError

from .cache_files import LAST_USED, MARKER, OWNER, SIZE, open_lock_file


@dataclass(frozen=True)
class CachedEnvironment:
    """One ``envs/<key>/`` folder.

    :ivar size_bytes: disk usage of its files (hard links to uv's cache counted once per folder).
    :ivar created: / :ivar last_used: POSIX timestamps, seconds.
    :ivar job_id: the job that built it; ``provisioned`` is False for an unfinished folder.
    """

    key: str
    path: Path
    size_bytes: int
    created: float
    last_used: float
    job_id: str
    provisioned: bool


def list_environments(cache_dir: Path, with_size: bool = True) -> list[CachedEnvironment]:
    """Every folder under ``<cache_dir>/envs``, most recently used first (``size_bytes`` 0 without
    ``with_size``; with it, the recorded size: :func:`size_of`)."""
    envs_dir = cache_dir / "envs"
    found = []
    for path in sorted(p for p in envs_dir.glob("*") if p.is_dir()) if envs_dir.is_dir() else []:
        try:
            found.append(_describe(path, with_size))
        except OSError:  # removed or rebuilt while we looked: not ours to report
            continue
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def _describe(path: Path, with_size: bool) -> CachedEnvironment:
    marker = path / MARKER
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        info = {}  # unfinished, or a damaged marker: shown as unfinished
    created = marker.stat().st_mtime if info else path.stat().st_mtime
    return CachedEnvironment(
        key=path.name,
        path=path,
        size_bytes=size_of(path, record=bool(info)) if with_size else 0,
        created=created,
        last_used=_last_used(path, created),
        job_id=info.get("job_id", "?"),
        provisioned=bool(info),
    )


def size_of(path: Path, record: bool = True) -> int:
    """The disk usage of environment ``path`` in bytes: the one recorded in ``<path>/.size`` when it
    was provisioned; else walked now (:func:`walk_size`) and, with ``record`` (a finished
    environment), recorded for the next time."""
    try:
        return int(json.loads((path / SIZE).read_text())["bytes"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # provisioned before sizes were recorded, or unfinished
    if record:
        return record_size(path)
    return walk_size(path)


def record_size(path: Path, site_packages_bytes: int | None = None) -> int:
    """Walk environment ``path`` (:func:`walk_size`) and record the result in ``<path>/.size``
    (``{"bytes": N}``, written atomically); returns it. A cache this process may not write keeps no
    record: the size is walked again next time.

    :param site_packages_bytes: ``site-packages``' usage when the build already walked it (its
        bytecode left out, as the bytecode store counts it): only the rest is walked.
    """
    if site_packages_bytes is None:
        size = walk_size(path)
    else:
        size = _usage(path, skip_site_packages=True) + site_packages_bytes
    tmp = path / f"{SIZE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps({"bytes": size}))
        os.replace(tmp, path / SIZE)
    except OSError:  # read-only cache, another user's, or removed meanwhile
        with contextlib.suppress(OSError):
            tmp.unlink()
    return size


def walk_size(path: Path) -> int:
    """Disk usage of every file under ``path``, bytes (``st_blocks``; a file hard-linked several times
    inside it, as uv links from its cache, counted once; a ``.pyc`` file linked from the bytecode
    store not at all: the store counts it)."""
    return _usage(path, skip_site_packages=False)


def _usage(path: Path, skip_site_packages: bool) -> int:
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        if skip_site_packages and "site-packages" in dirs and os.path.basename(root).startswith("python"):
            dirs.remove("site-packages")
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if name.endswith(".pyc") and st.st_nlink > 1 and not st.st_mode & 0o222:
                continue  # read-only and linked: the bytecode store's
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _last_used(path: Path, created: float) -> float:
    try:
        return max(created, (path / LAST_USED).stat().st_mtime)
    except OSError:
        return created


def prune(cache_dir: Path, unused_for_s: float, dry_run: bool = False) -> tuple[list[CachedEnvironment], list[str]]:
    """Remove environments unused for ``unused_for_s`` seconds, never one a running job holds.

    Also removes ephemeral folders whose owning process is gone (left by a killed worker).

    :returns: ``(removed, skipped_in_use_keys)``; with ``dry_run`` nothing is removed.
    :raises PythonExecError: an environment cannot be removed (a read-only cache, another user's);
        one line saying how many were removed before it.
    """
    now = time.time()
    removed: list[CachedEnvironment] = []
    busy: list[str] = []
    for env in list_environments(cache_dir, with_size=False):  # sizes only of those removed, below
        if now - env.last_used < unused_for_s:
            continue
        fd = _open_lock(cache_dir / "envs" / f"{env.key}.inuse")
        try:
            if fd is not None:  # None: no lock file, and this user cannot create one to lock
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    busy.append(env.key)
                    continue
            if now - _last_used(env.path, env.created) < unused_for_s:
                continue  # a run used it between our listing and the lock
            env = dataclasses.replace(env, size_bytes=_size_or_zero(env, keep_record=dry_run))
            if not dry_run:
                remove_environment(env, len(removed))
            removed.append(env)
        finally:
            if fd is not None:
                os.close(fd)
    if not dry_run:
        _remove_orphaned_ephemeral(cache_dir / "ephemeral")
    return removed, busy


def _size_or_zero(env: CachedEnvironment, keep_record: bool) -> int:
    """The size of an environment about to be removed (recorded: no walk); one without a record is
    walked, and recorded only when it stays (``--dry-run``)."""
    try:
        return size_of(env.path, record=keep_record and env.provisioned)
    except OSError:
        return 0


def _open_lock(path: Path) -> int | None:
    try:
        return open_lock_file(path)
    except OSError as exc:
        raise PythonExecError(f"cannot open {path} ({exc.strerror or exc}); check [python_exec] cache_dir") from None


def remove_environment(env: CachedEnvironment, removed_before: int) -> None:
    """Remove one environment, its marker first (the caller holds its ``.inuse`` lock exclusively).

    :param removed_before: how many were removed before it, for the message.
    :raises PythonExecError: it cannot be removed.
    """
    try:
        (env.path / MARKER).unlink(missing_ok=True)  # first, so no new run trusts it
        shutil.rmtree(env.path)
    except FileNotFoundError:
        pass  # already gone
    except OSError as exc:
        raise PythonExecError(
            f"cannot remove environment {env.key} from {env.path.parent} ({exc.strerror or exc}; "
            f"{removed_before} removed before it); run envs prune as the user that owns [python_exec] "
            "cache_dir, or make the cache writable"
        ) from None


def _remove_orphaned_ephemeral(folder: Path) -> None:
    """Remove ephemeral folders whose owner process on this host is gone (a cache shared between
    workers keeps the other hosts' folders)."""
    for path in folder.glob("env_*") if folder.is_dir() else []:
        try:
            owner = json.loads((path / OWNER).read_text())
        except (OSError, ValueError):
            continue  # being created right now, or not ours to judge
        if owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", 0))):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # unknown owner: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
