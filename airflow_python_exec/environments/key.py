"""The cache key of a job environment: a digest of everything that decides what gets installed.

Inputs, and only these (DESIGN.md "The environment cache"): the host name, the base interpreter
(its path as configured or found, and its full version as it reports it), the lock file's content, each
local extra's content (a file's
digest; for a folder, every file's relative path and digest), and :data:`LAYOUT_VERSION`; for a job
resolved from requirements instead of a lock, also their normalized form and uv's index settings
(:func:`.requirements.requirements_key`). Touching a
lock file without changing it keeps the key; changing one byte changes it. Paths and modification
times of the lock and extras are deliberately not inputs (the platform's known flaw).

Only regular files are read. A FIFO, socket or device (or a symlink to one) in a local extra is
refused with one line before it is opened: reading a FIFO would wait forever and ``/dev/zero``
never ends, and uv could not install such a file either.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from collections.abc import Iterable
from pathlib import Path

from airflow_python_exec.errors import ProvisioningError
from airflow_python_exec.isolation.job_files import file_kind

#: Bump when the layout of envs/<key>/ or the provisioning steps change incompatibly.
LAYOUT_VERSION = "2"  # 2: packages installed with compiled bytecode
#: Hex digits of the key; 128 bits is ample against collisions and keeps paths short.
KEY_CHARS = 32


def file_digest(path: Path) -> str:
    """SHA-256 of a regular file's bytes, hex (read in 1 MiB blocks; Python 3.10 has no hashlib.file_digest).

    :raises ProvisioningError: ``path`` is not a regular file, or cannot be read.
    """
    digest = hashlib.sha256()
    try:
        # O_NONBLOCK and fstat: a FIFO swapped in after the caller's check still cannot block us.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise ProvisioningError(f"{path} is {file_kind(mode)}, not a regular file; replace it")
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ProvisioningError(f"{path} cannot be read ({exc.strerror or exc}); check the file") from None
    return digest.hexdigest()


def content_digest(path: Path) -> str:
    """Digest of a local extra: the file's bytes, or for a folder each file's relative path and bytes.

    Folders skip ``__pycache__`` and ``*.pyc`` (build by-products that change without the source).

    :raises ProvisioningError: the extra, or a file in its folder, is not a regular file (a FIFO, a
        socket, a device, a dangling symlink); nothing of the kind is opened.
    """
    mode = _mode(path, f"local extra {path}")
    if stat.S_ISREG(mode):
        return file_digest(path)
    if not stat.S_ISDIR(mode):
        raise ProvisioningError(
            f"local extra {path} is {file_kind(mode)}; local_extra_deps takes wheels, source archives and folders"
        )
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path, onerror=_walk_error):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            full = Path(root, name)
            rel = full.relative_to(path).as_posix()
            mode = _mode(full, f"local extra folder {path}: {rel}")
            if not stat.S_ISREG(mode):
                raise ProvisioningError(
                    f"local extra folder {path} holds {rel}, {file_kind(mode)}; only regular files can be hashed "
                    "and installed, so remove it from the folder"
                )
            digest.update(rel.encode() + b"\0" + file_digest(full).encode() + b"\0")
    return digest.hexdigest()


def _mode(path: Path, what: str) -> int:
    """``st_mode`` of what ``path`` points to, without opening it."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        raise ProvisioningError(f"{what} is a broken symlink or was removed; fix or remove it") from None
    except OSError as exc:
        raise ProvisioningError(f"{what} cannot be read ({exc.strerror or exc}); check it") from None


def _walk_error(exc: OSError) -> None:
    raise ProvisioningError(f"{exc.filename} cannot be read ({exc.strerror or exc}); check the local extra")


def environment_key(
    interpreter_path: Path,
    interpreter_version: str,
    lock: Path | None,
    extras: Iterable[Path],
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
