"""The cache's size and its cap, ``[python_exec] max_cache_bytes`` (DESIGN.md "The environment cache").

The cache's size is the recorded size of every cached environment plus the bytecode store's
entries (an environment's ``.pyc`` files linked from the store count once, in the store). After a
build takes it past the cap, the least recently used environments that no run holds are removed,
each followed by the store entries no environment uses any more, until the cache is under the cap
or nothing more may go. The environment just built is held by its own run, so it always stays.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from airflow_python_exec.errors import PythonExecError

from .registry import CachedEnvironment, list_environments, remove_environment
from .store import list_entries, prune_store


@dataclasses.dataclass(frozen=True)
class CacheSize:
    """:ivar environments_bytes: / :ivar store_bytes: recorded sizes, bytes.
    :ivar environments: / :ivar store_entries: how many environments (finished or not) and bytecode
        store entries they count."""

    environments_bytes: int
    store_bytes: int
    environments: int = 0
    store_entries: int = 0

    @property
    def total(self) -> int:
        """Both together, bytes."""
        return self.environments_bytes + self.store_bytes


def cache_size(cache_dir: Path, envs: list[CachedEnvironment] | None = None) -> CacheSize:
    """The cache's recorded size (reads one small file per environment and store entry)."""
    envs = list_environments(cache_dir) if envs is None else envs
    entries = list_entries(cache_dir)
    return CacheSize(sum(e.size_bytes for e in envs), sum(e.size_bytes for e in entries), len(envs), len(entries))


def enforce_cap(cache_dir: Path, max_bytes: int, say: Callable[[str], None]) -> list[str]:
    """Bring the cache under ``max_bytes``: remove unused store entries, then least recently used
    environments that no run holds (each followed by the store entries it alone used).

    :param say: receives one line per removal and a closing line.
    :returns: the keys of the environments removed.
    :raises PythonExecError: an environment cannot be removed (a read-only cache).
    """
    envs = list_environments(cache_dir)
    total = cache_size(cache_dir, envs).total
    if total <= max_bytes:
        return []
    freed = sum(entry.size_bytes for entry in prune_store(cache_dir))
    removed: list[str] = []
    for env in sorted(envs, key=lambda e: e.last_used):  # least recently used first
        if total - freed <= max_bytes:
            break
        if _remove_if_unheld(cache_dir, env, len(removed)):
            removed.append(env.key)
            freed += env.size_bytes + sum(entry.size_bytes for entry in prune_store(cache_dir))
            say(f"max_cache_bytes: removed environment {env.key} (last used by job {env.job_id})")
    left = total - freed
    state = "under" if left <= max_bytes else "still over (the rest is in use)"
    say(f"max_cache_bytes: cache {_mib(left)} {state} the cap of {_mib(max_bytes)}; {len(removed)} removed")
    return removed


def cap_after_build(cache_dir: Path, max_bytes: int, say: Callable[[str], None]) -> None:
    """:func:`enforce_cap` after a build; a failure is reported in one line and the build stands
    (the next build tries again)."""
    try:
        enforce_cap(cache_dir, max_bytes, say)
    except (OSError, PythonExecError) as exc:
        say(f"max_cache_bytes: {exc}")


def _remove_if_unheld(cache_dir: Path, env: CachedEnvironment, removed_before: int) -> bool:
    """Remove ``env`` while holding its ``.inuse`` lock exclusively; ``False`` when a run holds it."""
    try:
        fd = os.open(cache_dir / "envs" / f"{env.key}.inuse", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return False  # cannot be locked, so not removed
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        remove_environment(env, removed_before)
        return True
    finally:
        os.close(fd)


def human_bytes(n: float) -> str:
    """``n`` bytes as ``envs list`` and the Python jobs page show it: ``512 B``, ``3.4 MiB``, ``1.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"
