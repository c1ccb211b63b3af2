"""``<cache_dir>/interpreters.json``: what finding and probing interpreters found, shared by processes.

Two things are slow to learn and rarely change: which Pythons are installed (``uv python list``
runs every interpreter it finds, pyenv's shims included: seconds) and an interpreter's full
version (one interpreter start: tens of milliseconds). Every task runs in a new process, so a
per-process cache saves nothing across tasks; this small JSON file does, for every process using
the same ``cache_dir``.

- ``discovery``: the installed Pythons, with the *fingerprint* of what the listing was built from
  (each ``PATH`` entry's folder, pyenv's ``versions/`` folder, uv's managed-Python folder, their
  identity and modification time, the uv binary, the ``UV_PYTHON*`` variables, ``PYENV_ROOT``, ``PYENV_VERSION`` and
  ``python_downloads``) and each interpreter's file identity. Installing or removing a Python
  changes one of those folders, so the fingerprint no longer matches and the listing is rebuilt;
  an interpreter replaced in place changes its file identity, which is checked on every use.
- ``probes``: ``path -> [device, inode, size, mtime_ns, ctime_ns, version]``: the version an
  interpreter reported, valid while its file is that same file.

Writes are atomic (a temporary file renamed over the index); two processes writing at once lose
at most one's additions, which the next use finds again. A cache folder this process cannot write
is only read. A damaged or foreign index is ignored and rewritten.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

INDEX = "interpreters.json"
#: Bump when the index's layout or the meaning of its fingerprint changes.
INDEX_VERSION = 1


def file_identity(path: Path | str) -> list[int] | None:
    """``[device, inode, size, mtime_ns, ctime_ns]`` of the file ``path`` points to, or ``None``."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def load(cache_dir: Path) -> dict[str, Any]:
    """The index's content (an empty one when missing, unreadable or of another layout)."""
    try:
        data = json.loads((Path(cache_dir) / INDEX).read_text())
    except (OSError, ValueError):
        return {"version": INDEX_VERSION}
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION:
        return {"version": INDEX_VERSION}
    return data


def update(cache_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the index (read, change, atomic rename); errors are ignored: the index
    only saves time."""
    folder = Path(cache_dir)
    data = load(folder)
    change(data)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".interpreters-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, folder / INDEX)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def cached_probe(cache_dir: Path, exe: Path) -> str | None:
    """The version ``exe`` reported before, if the index holds it for this very file."""
    entry = load(cache_dir).get("probes", {}).get(str(exe))
    identity = file_identity(exe)
    if not isinstance(entry, list) or len(entry) != 6 or identity is None or entry[:5] != identity:
        return None
    return str(entry[5])


def store_probe(cache_dir: Path, exe: Path, version: str) -> None:
    """Remember that ``exe`` (this very file) reported ``version``."""
    identity = file_identity(exe)
    if identity is None:
        return

    def change(data: dict[str, Any]) -> None:
        probes = data.get("probes")
        data["probes"] = {**(probes if isinstance(probes, dict) else {}), str(exe): [*identity, version]}

    update(cache_dir, change)
