"""The cache key of a job environment: a digest of everything that decides what gets installed.

Inputs, and only these (DESIGN.md "The environment cache"): the host name, the base interpreter
(its path as configured or found, and its full version as it reports it), the lock file's content, each
local extra's content (a file's name and digest; for a folder, every entry's relative path and each
file's digest, nothing skipped), and :data:`LAYOUT_VERSION`; for a job
resolved from requirements instead of a lock, also their normalized form and uv's index settings
(:func:`.requirements.requirements_key`). Touching a
lock file without changing it keeps the key; changing one byte changes it. Paths and modification
times of the lock and extras are deliberately not inputs (the platform's known flaw).

A build never reads a local extra where the job keeps it: :func:`content_digest` copies it into a
private folder while hashing it (``copy_to``), the provisioner checks that the copy's digest is the
one in the key and builds from the copy. An extra changed between the key and the build (a
re-upload, a job writing into a shared folder) is refused, never built under another extra's key.

Only regular files are read. A FIFO, socket or device (or a symlink to one) in a local extra is
refused with one line before it is opened: reading a FIFO would wait forever and ``/dev/zero``
never ends, and uv could not install such a file either.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from airflow_python_exec.errors import ProvisioningError
from airflow_python_exec.isolation.job_files import file_kind

#: Bump when the layout of envs/<key>/ or the provisioning steps change incompatibly.
LAYOUT_VERSION = "2"  # 2: packages installed with compiled bytecode
#: Hex digits of the key; 128 bits is ample against collisions and keeps paths short.
KEY_CHARS = 32


def file_digest(path: Path, copy_to: Path | None = None) -> str:
    """SHA-256 of a regular file's bytes, hex (read in 1 MiB blocks), written to ``copy_to`` as they
    are hashed when given: the copy holds exactly the bytes the digest covers.

    :param copy_to: a new file to write (its folder must exist), or ``None``.
    :raises ProvisioningError: ``path`` is not a regular file, or cannot be read.
    """
    return _file_digest(path, copy_to)[0]


def _file_digest(path: Path, copy_to: Path | None, follow: bool = True) -> tuple[str, int]:
    """:func:`file_digest` and the ``st_mode`` of the file it read (``fstat`` of the open file: the
    mode the copy gets, so the one a key may hash).

    :param follow: ``False``: a symlink at ``path`` (one swapped in after the caller's check) is not
        followed but refused (``ELOOP``).
    """
    digest = hashlib.sha256()
    try:
        # O_NONBLOCK and fstat: a FIFO swapped in after the caller's check still cannot block us.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        fd = os.open(path, flags)
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise ProvisioningError(f"{path} is {file_kind(mode)}, not a regular file; replace it")
            with contextlib.ExitStack() as stack:
                out = stack.enter_context(open(copy_to, "xb")) if copy_to is not None else None
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
                    if out is not None:
                        out.write(block)
                if copy_to is not None:
                    os.chmod(copy_to, stat.S_IMODE(mode) & 0o755 | 0o600)
    except OSError as exc:
        raise ProvisioningError(f"{path} cannot be read ({exc.strerror or exc}); check the file") from None
    return digest.hexdigest(), mode


def content_digest(path: Path, copy_to: Path | None = None) -> str:
    """Digest of a local extra: its name and bytes, or for a folder every entry's relative path (and
    a file's bytes and executable bit), nothing left out (``__pycache__`` and ``*.pyc`` included:
    a build copies them, so they decide what is installed; DESIGN.md "The environment cache").

    :param copy_to: where to copy the extra while hashing it (a path that does not exist yet); the
        copy is exactly what the digest covers, so building from it builds what the key names.
    :raises ProvisioningError: the extra, or an entry of its folder, is not a regular file or a
        folder (a FIFO, a socket, a device, a dangling symlink, a symlink to a folder), or an entry
        of its folder is a symlink (never followed); nothing of the kind is opened.
    """
    mode = _mode(path, f"local extra {path}")
    if stat.S_ISREG(mode):
        return hashlib.sha256(os.fsencode(f"{path.name}\0{file_digest(path, copy_to)}")).hexdigest()
    if not stat.S_ISDIR(mode):
        raise ProvisioningError(
            f"local extra {path} is {file_kind(mode)}; local_extra_deps takes wheels, source archives and folders"
        )
    digest = hashlib.sha256(os.fsencode(f"{path.name}/\0"))  # fsencode: any file name, UTF-8 or not
    if copy_to is not None:
        copy_to.mkdir(mode=0o700)
    for root, dirs, files in os.walk(path, onerror=_walk_error):
        dirs.sort()
        for name in [*dirs]:
            rel = Path(root, name).relative_to(path).as_posix()
            if os.path.islink(Path(root, name)):
                raise ProvisioningError(
                    f"local extra folder {path} holds {rel}, a symlink to a folder; copy that folder in instead"
                )
            digest.update(os.fsencode(f"{rel}/\0"))
            if copy_to is not None:
                (copy_to / rel).mkdir(mode=0o700)
        for name in sorted(files):
            full = Path(root, name)
            rel = full.relative_to(path).as_posix()
            mode = _mode(full, f"local extra folder {path}: {rel}", follow=False)
            if stat.S_ISLNK(mode):
                # Followed, the worker would copy what the link names (AIRFLOW_HOME, its own
                # /proc/self/environ) into the extra the job's build backend reads: DESIGN.md "Reach".
                raise ProvisioningError(
                    f"local extra folder {path} holds {rel}, a symlink; copy the file it points to in instead"
                )
            if not stat.S_ISREG(mode):
                raise ProvisioningError(
                    f"local extra folder {path} holds {rel}, {file_kind(mode)}; only regular files can be hashed "
                    "and installed, so remove it from the folder"
                )
            # The mode of the open file, not of the stat above: a bit flipped in between is the
            # copy's, and the key must name what is built.
            content, mode = _file_digest(full, copy_to / rel if copy_to is not None else None, follow=False)
            digest.update(os.fsencode(f"{rel}\0{content}\0{mode & 0o111:o}\0"))
    return digest.hexdigest()


def stage_extras(extras: Sequence[Path], digests: Sequence[str], into: Path) -> list[Path]:
    """Copy each local extra into ``into/<n>/<its name>`` while hashing it; return the copies, which
    are what gets built and installed.

    :param digests: each extra's :func:`content_digest` as the environment's key was made with.
    :raises ProvisioningError: an extra changed since its key was made (its copy has another digest),
        or cannot be copied.
    """
    staged = []
    for n, (extra, expected) in enumerate(zip(extras, digests, strict=True)):
        (into / str(n)).mkdir(mode=0o700)
        copy = into / str(n) / extra.name
        if content_digest(extra, copy) != expected:
            raise ProvisioningError(
                f"local extra {extra} changed while its environment was being provisioned; run the job again"
            )
        staged.append(copy)
    return staged


def _mode(path: Path, what: str, follow: bool = True) -> int:
    """``st_mode`` of what ``path`` points to (of ``path`` itself when not ``follow``), without opening it."""
    try:
        return os.stat(path, follow_symlinks=follow).st_mode
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
    extra_digests: Iterable[str] | None = None,
    lock_digest: str | None = None,
    places: Iterable[str] = (),
) -> str:
    """Return the environment's key, ``KEY_CHARS`` hex digits.

    :param interpreter_path: the base interpreter the environment is created from.
    :param interpreter_version: its full version, e.g. ``"3.12.4"``.
    :param lock: the PEP 751 lock file, or ``None``.
    :param extras: local extra dependencies (wheels, source folders), in the job's order.
    :param requirements: for a job resolved from requirements instead of a lock, their
        contribution (:func:`.requirements.requirements_key`); ``None`` adds nothing, so the keys of
        lock-file jobs stay what they were.
    :param extra_digests: the extras' :func:`content_digest`, when the caller has them already
        (``extras`` is then not read).
    :param lock_digest: the lock's :func:`file_digest`, when the caller has it already (``lock`` is
        then not read; :func:`.job_paths.lock_digests`).
    :param places: what each local place the lock names holds (:func:`.job_paths.lock_digests`).
    """
    parts = [
        f"layout={LAYOUT_VERSION}",
        f"host={socket.gethostname()}",
        f"python={interpreter_path}",
        f"version={interpreter_version}",
        f"lock={lock_digest or (file_digest(lock) if lock is not None else '-')}",
        *(f"extra={d}" for d in (extra_digests if extra_digests is not None else map(content_digest, extras))),
        *([f"requirements={requirements}"] if requirements is not None else []),
        *(f"place={d}" for d in places),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:KEY_CHARS]
