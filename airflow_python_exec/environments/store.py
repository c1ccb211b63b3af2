"""The bytecode store on disk (see :mod:`.bytecode`): its entries and their sizes, which of them the
environments use, and the removal of the unused ones (``envs prune``, ``max_cache_bytes``).

An entry is used while any folder under ``envs/`` or ``ephemeral/`` (finished or being built) names it
in its ``.bytecode`` file. Removing an entry never breaks an environment: its ``.pyc`` files are hard
links, which live on in the environments that link them; a later environment compiles them again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from .bytecode import INDEX, LISTING, USES, store_dir


@dataclass(frozen=True)
class StoreEntry:
    """One complete entry of the store. :ivar size_bytes: disk usage of its ``.pyc`` files."""

    name: str
    path: Path
    size_bytes: int


def list_entries(cache_dir: Path) -> list[StoreEntry]:
    """The store's complete entries (a ``.files`` listing inside), by name."""
    store = store_dir(cache_dir)
    found = []
    for path in sorted(store.iterdir()) if store.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            size = int(json.loads((path / LISTING).read_text())["bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a lock file, or removed while we looked
        found.append(StoreEntry(path.name, path, size))
    return found


def used_entries(cache_dir: Path) -> set[str]:
    """The entries that some environment (cached or ephemeral, finished or not) links."""
    used: set[str] = set()
    for folder in (cache_dir / "envs", cache_dir / "ephemeral"):
        for uses in folder.glob(f"*/{USES}") if folder.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, TypeError):
                used.update(str(name) for name in json.loads(uses.read_text()))
    return used


def prune_store(cache_dir: Path, dry_run: bool = False) -> list[StoreEntry]:
    """Remove the entries no environment uses, and the temporary folders of stores that were killed.

    :returns: the entries removed (with ``dry_run``: that would be).
    :raises OSError: an entry cannot be removed (the caller reports it in one line).
    """
    used = used_entries(cache_dir)
    unused = [entry for entry in list_entries(cache_dir) if entry.name not in used]
    if dry_run:
        return unused
    removed = [entry for entry in unused if remove_entry(entry.path)]
    _remove_abandoned(store_dir(cache_dir))
    _remove_stale_index(store_dir(cache_dir))
    return removed


def _remove_stale_index(store: Path) -> None:
    """Index files (``.index/<files' identities>``) naming an entry that is gone."""
    for path in (store / INDEX).iterdir() if (store / INDEX).is_dir() else []:
        with contextlib.suppress(OSError):
            if not (store / path.read_text() / LISTING).is_file():
                path.unlink()


def remove_entry(path: Path) -> bool:
    """Remove one entry unless a provisioner holds its lock: renamed away first (atomic: no new
    environment links it from then on), then deleted. ``False`` when it was held or already gone."""
    import filelock

    lock = filelock.FileLock(str(path.parent / f"{path.name}.lock"))
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        return False
    try:
        trash = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash)
        return True
    finally:
        lock.release()


def _remove_abandoned(store: Path) -> None:
    """``.tmp-<entry>-<pid>-<random>`` folders whose writer is gone (its entry's lock is free) and
    ``.trash-`` folders a killed removal left."""
    import filelock

    for path in store.glob(".t*-*") if store.is_dir() else []:
        if path.name.startswith(".trash-"):
            shutil.rmtree(path, ignore_errors=True)
            continue
        if not path.name.startswith(".tmp-"):
            continue
        entry = path.name[len(".tmp-") :].rsplit("-", 2)[0]
        lock = filelock.FileLock(str(store / f"{entry}.lock"))
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            continue  # being written right now
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            lock.release()
