"""The files of the environment cache, shared by the provisioner and ``envs list``/``prune``
(kept apart so listing the cache imports neither pydantic nor the job model)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["LAST_USED", "MARKER", "OWNER", "SIZE", "check_venv_cfg", "open_lock_file"]

MARKER = ".provisioned"
LAST_USED = ".last_used"
#: Beside the marker: the environment's disk usage, walked once when it is provisioned
#: (:func:`airflow_python_exec.environments.registry.record_size`), read by ``envs list``/``prune``.
SIZE = ".size"
#: In an ephemeral folder: the host and process that own it, so prune removes only true orphans.
OWNER = ".owner"


def open_lock_file(path: Path) -> int | None:
    """Open ``path`` to ``flock`` it: read-write, created if missing; else, where this process may
    not write, read-only (``flock`` takes shared and exclusive locks on any descriptor).

    :returns: the descriptor, or ``None`` when the file is missing and cannot be created.
    :raises OSError: any other failure.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def check_venv_cfg(path: Path, original: bytes, job_id: str) -> None:
    """Refuse an environment whose ``pyvenv.cfg`` a package rewrote (a wheel may ship
    ``<name>.data/data/pyvenv.cfg``): its ``home`` decides which standard library the environment's
    interpreter loads, so the next program to start that interpreter on the worker (uv itself, to
    inspect it) would run the job's code outside the sandbox.

    :param path: the environment's folder.
    :param original: the file as ``uv venv`` wrote it.
    :raises ProvisioningError: the file changed.
    """
    from airflow_python_exec.errors import ProvisioningError

    try:
        current = (path / "pyvenv.cfg").read_bytes()
    except OSError:
        current = b""
    if current != original:
        raise ProvisioningError(
            f"a package of job {job_id!r} replaced its environment's pyvenv.cfg (a wheel's "
            ".data/data/pyvenv.cfg); remove that file from the package"
        )
