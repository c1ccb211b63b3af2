"""Reach: the I/O half (DESIGN.md "Reach: what a job may name").

:mod:`airflow_python_exec.models.reach` decides, from the job-named value alone, which allowed root
a local place is under and the path below it. This module opens exactly that, and nothing else:

- the root is opened by its real path (it is the administrator's or the worker's folder), then each
  component below it with ``O_NOFOLLOW`` (``O_DIRECTORY`` on the way): a symbolic link anywhere
  below the root is refused, not followed, so a link swapped in between the check and the copy
  changes nothing (the same walk does both);
- the last component is ``lstat``-ed before it is opened, and must be a regular file or a folder
  (a FIFO would block, a device never ends): it is never opened otherwise;
- a copy counts the bytes it moves and stops past the cap, whatever size the file claims.

Every refusal is a :class:`ReachIOError` (a ``ValueError``) whose message is a short reason; the
caller puts the field and the value in front.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

#: Kernel file systems a job may never name, whatever a root allows.
KERNEL_PLACES = ("/proc", "/dev", "/sys")
#: Bytes per read when copying.
CHUNK = 1 << 20
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class ReachIOError(ValueError):
    """A job-named place cannot be opened as the rule says; the message is the reason."""


def real_places(paths: Iterable[str]) -> dict[str, str]:
    """Each of ``paths`` that exists -> its real path (one ``realpath`` each)."""
    return {p: os.path.realpath(p) for p in paths if p and os.path.lexists(p)}


def hidden_places(paths: Iterable[str] | dict[str, str]) -> tuple[str, ...]:
    """The real paths of the sandbox's hidden places that exist, and the kernel places.

    :param paths: :func:`airflow_python_exec.isolation.sandbox.hidden_paths`, or their
        :func:`real_places`.
    """
    real = paths if isinstance(paths, dict) else real_places(paths)
    return tuple(sorted(set(real.values()) | set(KERNEL_PLACES)))


def _parts(below: str) -> list[str]:
    parts = [p for p in below.split("/") if p]
    if any(p in (".", "..") for p in parts):  # the parser resolved these; never walk them
        raise ReachIOError("its path holds '..'")
    return parts


def _walk(root_real: str, parts: list[str], *, create: bool = False) -> int:
    """A descriptor of the folder ``root_real/parts...``, following no link below the root.

    :param create: make missing folders (``mkdir`` relative to the parent's descriptor).
    """
    fd = os.open(root_real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except OSError as exc:
                raise _reason(exc, part) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _reason(exc: OSError, part: str) -> ReachIOError | OSError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return ReachIOError(f"{part!r} on its path is a symbolic link or not a folder; links are not followed")
    return exc


def open_beneath(root_real: str, below: str) -> int:
    """Open ``root_real/below`` for reading: a regular file or a folder reached with no link at any
    component below the root.

    :returns: a descriptor (the caller closes it).
    :raises FileNotFoundError: it does not exist.
    :raises ReachIOError: a link on the way, or a FIFO, device or socket at the end.
    """
    parts = _parts(below)
    if not parts:
        return os.open(root_real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    parent = _walk(root_real, parts[:-1])
    try:
        mode = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise ReachIOError("it is a symbolic link; links are not followed")
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ReachIOError("it is a FIFO, a device or a socket, not a file or folder")
        try:
            fd = os.open(parts[-1], _FILE, dir_fd=parent)
        except OSError as exc:
            raise _reason(exc, parts[-1]) from None
    finally:
        os.close(parent)
    opened = os.fstat(fd).st_mode
    if stat.S_IFMT(opened) != stat.S_IFMT(mode):  # swapped between the lstat and the open
        os.close(fd)
        raise ReachIOError("it changed while it was opened")
    return fd


def create_beneath(root_real: str, below: str) -> int:
    """Create the new file ``root_real/below`` for writing (folders on the way made as needed),
    with no link at any component and never over an existing file.

    :raises ReachIOError: a link on the way; :raises FileExistsError: the file exists.
    """
    parts = _parts(below)
    if not parts:
        raise ReachIOError("it names a folder, not a file")
    parent = _walk(root_real, parts[:-1], create=True)
    try:
        return os.open(
            parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent
        )
    finally:
        os.close(parent)


def unlink_beneath(root_real: str, below: str) -> None:
    """Remove the file :func:`create_beneath` made (a failed copy leaves nothing)."""
    parts = _parts(below)
    try:
        parent = _walk(root_real, parts[:-1])
    except (OSError, ReachIOError):
        return
    try:
        os.unlink(parts[-1], dir_fd=parent)
    except OSError:
        pass
    finally:
        os.close(parent)


def copy_stream(source: BinaryIO, target_fd: int, cap: int, so_far: int = 0) -> int:
    """Copy ``source`` into ``target_fd``, counting bytes; return the new total.

    :raises ReachIOError: more than ``cap`` bytes in all (``so_far`` included).
    """
    total = so_far
    while chunk := source.read(CHUNK):
        total += len(chunk)
        if total > cap:
            raise ReachIOError(f"it is larger than {cap} bytes")
        view = memoryview(chunk)
        while view:
            view = view[os.write(target_fd, view) :]
    return total


def copy_out(fd: int, target: Path, cap: int) -> int:
    """Copy the file or folder open at ``fd`` to the new ``target``; return the bytes copied.

    A folder's entries are walked by descriptor: only folders and regular files, no link.

    :raises ReachIOError: a link, FIFO, device or socket inside, or more than ``cap`` bytes in all.
    """
    return _copy(fd, target, cap, 0)


def _copy(fd: int, target: Path, cap: int, total: int) -> int:
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        if os.fstat(fd).st_size > cap - total:
            raise ReachIOError(f"it is larger than {cap} bytes")
        with open(os.dup(fd), "rb") as src:
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                return copy_stream(src, out, cap, total)
            finally:
                os.close(out)
    if not stat.S_ISDIR(mode):  # swapped for a FIFO or a device after the folder was listed
        raise ReachIOError("it holds a FIFO, a device or a socket; a folder may hold only files and folders")
    target.mkdir()
    with os.scandir(fd) as entries:
        names = [(e.name, e.stat(follow_symlinks=False).st_mode) for e in entries]
    for name, kind in sorted(names):
        if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
            raise ReachIOError(
                f"it holds {name!r}, a symbolic link or a special file; a folder may hold only files and folders"
            )
        try:
            child = os.open(name, _DIR if stat.S_ISDIR(kind) else _FILE, dir_fd=fd)
        except OSError as exc:
            raise _reason(exc, name) from None
        try:
            total = _copy(child, target / name, cap, total)
        finally:
            os.close(child)
    return total
