"""The cached environments on disk: list them, prune the unused ones (``airflow-python-exec envs``)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .provisioner import LAST_USED, MARKER


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


def list_environments(cache_dir: Path) -> list[CachedEnvironment]:
    """Every folder under ``<cache_dir>/envs``, most recently used first."""
    envs_dir = cache_dir / "envs"
    found = []
    for path in sorted(p for p in envs_dir.glob("*") if p.is_dir()) if envs_dir.is_dir() else []:
        marker = path / MARKER
        info = json.loads(marker.read_text()) if marker.is_file() else {}
        created = marker.stat().st_mtime if marker.is_file() else path.stat().st_mtime
        last = path / LAST_USED
        found.append(CachedEnvironment(
            key=path.name, path=path, size_bytes=_size(path), created=created,
            last_used=max(created, last.stat().st_mtime if last.exists() else 0.0),
            job_id=info.get("job_id", "?"), provisioned=marker.is_file(),
        ))
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def prune(cache_dir: Path, unused_for_s: float, dry_run: bool = False) -> tuple[list[CachedEnvironment], list[str]]:
    """Remove environments unused for ``unused_for_s`` seconds, never one a running job holds.

    Also removes ephemeral folders whose owning process is gone (left by a killed worker).

    :returns: ``(removed, skipped_in_use_keys)``; with ``dry_run`` nothing is removed.
    """
    now = time.time()
    removed, busy = [], []
    for env in list_environments(cache_dir):
        if now - env.last_used < unused_for_s:
            continue
        fd = os.open(cache_dir / "envs" / f"{env.key}.inuse", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(env.key)
                continue
            if not dry_run:
                (env.path / MARKER).unlink(missing_ok=True)  # first, so no new run trusts it
                shutil.rmtree(env.path, ignore_errors=True)
            removed.append(env)
        finally:
            os.close(fd)
    if not dry_run:
        _remove_orphaned_ephemeral(cache_dir / "ephemeral")
    return removed, busy


def _remove_orphaned_ephemeral(folder: Path) -> None:
    for path in folder.glob("env_*_*") if folder.is_dir() else []:
        pid = path.name.split("_")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _size(path: Path) -> int:
    seen, total = set(), 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
