"""Zip archives of job sources and uploads: the archive rules (checked before anything is
written) and unpacking within them."""

from __future__ import annotations

import os
import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from airflow_python_exec.errors import JobConfigError

#: Default of ``[python_exec] max_source_bytes``: the largest unpacked archive or git checkout.
MAX_SOURCE_BYTES = 536_870_912
#: Most entries (files and folders) an archive or a git tree may hold.
MAX_ENTRIES = 100_000
#: Deepest entry (path components), longest entry path (characters) and longest component (bytes,
#: the usual file system limit) an archive may hold: past these, unpacking or copying a tree hits
#: Python's recursion limit or the OS's name limits (an unclear 500 instead of a refusal).
MAX_DEPTH = 64
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
CHUNK = 1 << 20


def extract_archive(
    archive: Path,
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    dest: Path,
    display: str,
    max_bytes: int = MAX_SOURCE_BYTES,
) -> int:
    """Unpack the ``members`` that :func:`check_archive` returned into the existing folder ``dest``.

    Actual bytes are counted while unpacking, so a lying header cannot get past ``max_bytes``; no
    entry is ever written over another (``O_EXCL``). The caller removes ``dest`` on failure.

    :returns: the bytes written.
    :raises JobConfigError: two entries clash (a file ``a`` and an entry ``a/b``), an entry cannot be
        unpacked (corrupt, a size or CRC that lies, unsupported compression), or more than
        ``max_bytes`` bytes.
    """
    total = 0
    with zipfile.ZipFile(archive) as zf:
        for info, rel in members:
            target = dest.joinpath(*rel.parts)
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    total = _copy_member(zf, info, target, total, display, max_bytes)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                # A file "a" and an entry "a/b": valid names that cannot both exist.
                raise JobConfigError(
                    f"{display}: entry {info.filename!r} clashes with another entry; fix the archive"
                ) from None
    return total


def _copy_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, total: int, display: str, max_bytes: int
) -> int:
    """Copy one member, counting actual bytes; returns ``total`` plus the member's bytes."""
    mode = 0o755 if (info.external_attr >> 16) & 0o111 else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # O_EXCL: never over another entry
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as member:
            for block in iter(lambda: member.read(CHUNK), b""):
                total += len(block)
                if total > max_bytes:
                    raise JobConfigError(too_big(display, max_bytes))
                out.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # A corrupt entry, a size or CRC that lies, an unsupported compression method.
        raise JobConfigError(
            f"{display}: entry {info.filename!r} cannot be unpacked ({exc}); the archive is refused, rebuild it"
        ) from None
    return total


def check_archive(
    archive: Path, display: str, max_bytes: int = MAX_SOURCE_BYTES, max_entries: int = MAX_ENTRIES
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Check a zip archive against the archive rules from its directory alone (nothing is unpacked).

    :param display: the source in messages.
    :param max_bytes: most bytes the entries may declare in total.
    :returns: each member with its safe relative path, in archive order.
    :raises JobConfigError: not a zip archive, or an entry breaking a rule (the message names it).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise JobConfigError(f"{display} is not a readable zip archive ({exc}); upload a .zip file") from None
    if len(infos) > max_entries:
        raise JobConfigError(f"{display} has {len(infos)} entries, more than {max_entries}; pack fewer files")
    if sum(info.file_size for info in infos) > max_bytes:
        raise JobConfigError(too_big(display, max_bytes))
    seen: set[PurePosixPath] = set()
    members = []
    for info in infos:
        rel = _member_path(info, display)
        if rel in seen:
            raise JobConfigError(f"{display}: entry {info.filename!r} appears twice; fix the archive")
        seen.add(rel)
        members.append((info, rel))
    return members


def _member_path(info: zipfile.ZipInfo, display: str) -> PurePosixPath:
    """The member's relative path, or a refusal naming the entry and the rule it breaks."""
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    kind = stat.S_IFMT(info.external_attr >> 16)
    refusal = None
    if "\0" in name or not posix.parts:
        refusal = "has an invalid name"
    elif posix.is_absolute() or re.match(r"[A-Za-z]:", name):
        refusal = "has an absolute path"
    elif ".." in posix.parts:
        refusal = "contains '..'"
    elif kind == stat.S_IFLNK:
        refusal = "is a symlink"
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        refusal = "is a device"
    elif kind == stat.S_IFIFO:
        refusal = "is a FIFO"
    elif kind == stat.S_IFSOCK:
        refusal = "is a socket"
    elif info.flag_bits & 0x1:
        refusal = "is encrypted"
    else:
        refusal = _too_deep_or_long(posix)
    if refusal:
        shown = name if len(name) <= 120 else f"{name[:60]}...{name[-40:]}"  # a refusal stays readable
        raise JobConfigError(f"{display}: entry {shown!r} {refusal}; the archive is refused, remove that entry")
    return PurePosixPath(*(p for p in posix.parts if p != "."))


def _too_deep_or_long(posix: PurePosixPath) -> str | None:
    """Why an entry path breaks the depth or length limits, or ``None``."""
    if len(posix.parts) > MAX_DEPTH:
        return f"is nested {len(posix.parts)} levels deep, more than {MAX_DEPTH}"
    if len(str(posix)) > MAX_PATH_CHARS:
        return f"has a path of {len(str(posix))} characters, more than {MAX_PATH_CHARS}"
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in posix.parts):
        return f"has a name longer than {MAX_NAME_BYTES} bytes"
    return None


def too_big(display: str, limit: int) -> str:
    return (
        f"{display} unpacks to more than {limit} bytes ([python_exec] max_source_bytes); "
        "make it smaller or raise the limit"
    )
