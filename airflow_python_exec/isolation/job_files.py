"""Reading files a job could write, as hostile input (DESIGN.md "Containment and sandbox").

A job (sandboxed or not) can write its run folder: it can leave a symlink to a file the sandbox
hides where the worker expects its result, a FIFO that blocks whoever opens it, a sparse file of
terabytes, or rename the folder and leave a symlink in its place. The worker, outside the sandbox,
reads these files with more rights than the job, so every read of a job-writable file goes through
:func:`read_job_file`:

- relative to a directory file descriptor (:func:`open_folder`) taken when the worker made the
  folder, so a folder renamed or replaced by a symlink afterwards is not followed;
- ``O_NOFOLLOW``: a symlink is refused, never followed; ``O_NONBLOCK``: opening a FIFO does not
  wait for a writer (``fstat`` then refuses it);
- only a regular file is read, and at most ``limit + 1`` bytes of it: memory stays bounded whatever
  size the file claims.

Every refusal is a :class:`~airflow_python_exec.errors.ResultError` of one line.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

from airflow_python_exec.errors import JobConfigError, ResultError

#: What a file is, by its ``st_mode``, in messages (the one table: job files, job.json, local extras).
FILE_KINDS = (
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISLNK, "a symlink"),
)
_FOLLOW_NOTHING = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def file_kind(mode: int) -> str:
    """What a file is, from its ``st_mode``, for messages: ``a folder``, ``a FIFO``, ``a socket``,
    ``a device``, ``a symlink``, ``a regular file``; ``a special file`` for anything else."""
    return next((name for test, name in FILE_KINDS if test(mode)), "a special file")


def open_folder(path: str | os.PathLike[str]) -> int:
    """A file descriptor of the folder ``path`` (not following a symlink), for :func:`read_job_file`.

    :raises OSError: ``path`` is not a folder (``ELOOP``/``ENOTDIR`` for a symlink or a file).
    """
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


class NotRegularFile(ValueError):
    """What :func:`open_regular` found is no regular file; ``kind`` says what it is (``"a FIFO"``)."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(f"{name} is {kind}, not a regular file")
        self.kind = kind


def open_regular(relative: str, *, dir_fd: int) -> int:
    """A descriptor of the regular file ``relative`` (``name`` or ``sub/name``) inside the folder
    ``dir_fd``, reached without following a link at any level and without blocking on a FIFO.

    :raises FileNotFoundError: it does not exist.
    :raises OSError: ``ELOOP`` for a symlink on the way; any other failure to open it.
    :raises NotRegularFile: it is a FIFO, a folder, a device or a socket.
    """
    parts = relative.split("/")
    opened: list[int] = []
    try:
        current = dir_fd
        for part in parts[:-1]:
            current = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            opened.append(current)
        fd = os.open(parts[-1], _FOLLOW_NOTHING, dir_fd=current)
    finally:
        for folder in opened:
            os.close(folder)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(relative, file_kind(mode))
    return fd


def read_job_file(
    name: str, *, dir_fd: int, limit: int, what: str, fix: str, too_big_fix: str = "return less, or raise the limit"
) -> bytes | None:
    """The bytes of the regular file ``name`` inside the folder ``dir_fd``; ``None`` when it does not exist.

    :param name: a file name (no ``/``) inside the folder.
    :param dir_fd: from :func:`open_folder`.
    :param limit: the most bytes accepted; the file is never read further than ``limit + 1`` bytes.
    :param what: names the file in messages (``"the result file PYTHON_EXEC_RESULT_FILE"``).
    :param fix: what the job should do instead, ending each message.
    :param too_big_fix: ends the message for a file over ``limit``.
    :raises ResultError: ``<what> is a symlink, not a regular file; <fix>`` (also a FIFO, a folder,
        a device, a socket), ``<what> is larger than <limit> bytes ...``, or unreadable.
    """
    if "/" in name:
        raise ValueError(f"{name!r} is not a file name")
    try:
        fd = open_regular(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except NotRegularFile as exc:
        raise ResultError(f"{what} is {exc.kind}, not a regular file; {fix}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            raise ResultError(f"{what} is a symlink, not a regular file; {fix}") from None
        raise ResultError(f"{what} cannot be read ({exc.strerror or exc}); {fix}") from None
    try:
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ResultError(f"{what} cannot be read ({exc.strerror or exc}); {fix}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ResultError(f"{what} is larger than {limit} bytes ([python_exec] max_result_bytes); {too_big_fix}")
    return data


#: Largest ``job.json`` or ``.env`` read, in bytes: a job's configuration is a few KiB, and a parse of
#: every job folder (the DAG file, the Python jobs page) must not be stalled by one huge file.
MAX_JOB_FILE_BYTES = 4 << 20


def read_capped(path: Path, what: str, limit: int = MAX_JOB_FILE_BYTES) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (``job.json``, ``.env``).

    The size is checked on the open file (``fstat``, then a read of at most ``limit + 1`` bytes), not
    by a ``stat`` before the open: a file swapped or grown in between is still caught, and a huge or
    sparse file costs the worker neither time nor memory (DESIGN.md "Reach: what a job may name").

    :param what: the file's role in messages (``job.json``, ``.env``).
    :raises JobConfigError: one line: a dangling symlink, not a regular file (a FIFO is not waited
        for), larger than ``limit``, or unreadable.
    """
    if path.is_symlink() and not path.exists():
        raise JobConfigError(
            f"{path} is a symlink to {os.readlink(path)}, which does not exist; fix the link or remove it"
        )
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then rejects it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise JobConfigError(
                    f"{path} is {file_kind(info.st_mode)}, not a file; replace it with the job's {what}"
                )
            data = b"" if info.st_size > limit else _read_up_to(fd, limit + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise JobConfigError(f"{path} cannot be read ({exc}); check the file") from None
    if info.st_size > limit or len(data) > limit:
        raise JobConfigError(
            f"{path} is larger than the {limit >> 20} MiB a {what} may hold "
            f"({max(info.st_size, len(data))} bytes); make it smaller"
        )
    return data


def _read_up_to(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from ``fd`` (fewer at its end)."""
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def folder_signature(folder: str) -> tuple[Any, ...]:
    """``(dev, inode, size, mtime_ns)`` of ``folder``, its ``job.json`` and its ``.env`` (``None`` when
    missing): what a reader of job folders compares to know a folder is unchanged without reading it."""
    found: list[tuple[int, int, int, int] | None] = []
    for path in (folder, os.path.join(folder, "job.json"), os.path.join(folder, ".env")):
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
            continue
        found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)
