"""The cache key of a job environment: a digest of everything that decides what gets installed.

Inputs, and only these (DESIGN.md "The environment cache"): the host name, the base interpreter
(its path as configured or found, and its full version as it reports it), the lock file's content, each local extra's content (a file's
digest; for a folder, every file's relative path and digest), and :data:`LAYOUT_VERSION`; for a job
resolved from requirements instead of a lock, also their normalized form and uv's index settings
(:func:`.requirements.requirements_key`). Touching a
lock file without changing it keeps the key; changing one byte changes it. Paths and modification
times of the lock and extras are deliberately not inputs (the platform's known flaw).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterable
from pathlib import Path

#: Bump when the layout of envs/<key>/ or the provisioning steps change incompatibly.
LAYOUT_VERSION = "1"
#: Hex digits of the key; 128 bits is ample against collisions and keeps paths short.
KEY_CHARS = 32


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, hex (read in 1 MiB blocks; Python 3.10 has no hashlib.file_digest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_digest(path: Path) -> str:
    """Digest of a local extra: the file's bytes, or for a folder each file's relative path and bytes.

    Folders skip ``__pycache__`` and ``*.pyc`` (build by-products that change without the source).
    """
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            full = Path(root, name)
            digest.update(full.relative_to(path).as_posix().encode() + b"\0" + file_digest(full).encode() + b"\0")
    return digest.hexdigest()


def environment_key(
    interpreter_path: Path, interpreter_version: str, lock: Path | None, extras: Iterable[Path],
    requirements: str | None = None,
) -> str:
    """Return the environment's key, ``KEY_CHARS`` hex digits.

    :param interpreter_path: the base interpreter the environment is created from.
    :param interpreter_version: its full version, e.g. ``"3.12.4"``.
    :param lock: the PEP 751 lock file, or ``None``.
    :param extras: local extra dependencies (wheels, source folders), in the job's order.
    :param requirements: for a job resolved from requirements instead of a lock, their
        contribution (:func:`.requirements.requirements_key`); ``None`` adds nothing, so the keys of
        lock-file jobs stay what they were.
    """
    parts = [
        f"layout={LAYOUT_VERSION}",
        f"host={socket.gethostname()}",
        f"python={interpreter_path}",
        f"version={interpreter_version}",
        f"lock={file_digest(lock) if lock is not None else '-'}",
        *(f"extra={content_digest(p)}" for p in extras),
        *([f"requirements={requirements}"] if requirements is not None else []),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:KEY_CHARS]
