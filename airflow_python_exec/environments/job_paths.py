"""The paths a job names in ``pythonEnv`` (``pylock``, ``local_extra_deps``, the lock's own local
package places) under the Reach rule
(DESIGN.md "Reach: what a job may name"): only in the job folder or a ``data_allowed_uris`` folder,
reached with no link at any component; the checked path is the one handed on to uv."""

from __future__ import annotations

from pathlib import Path

from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.models.reach import Reach, check_local, code_reach

__all__ = ["check_lock_places", "code_reach", "extra_paths", "job_path", "lock_digests"]


def job_path(reach: Reach, job_folder: Path, value: str, what: str) -> Path:
    """The checked absolute path of a job-named ``pythonEnv`` path.

    :param reach: the job's reach (:func:`code_reach`, made once per environment spec).
    :param value: as the job wrote it (relative to ``job_folder``, or absolute, or ``file:``).
    :param what: names the field in messages (``pythonEnv.pylock``).
    :raises JobConfigError: outside the job folder and the allowed folders, in a hidden place, or
        reached through a link.
    :raises ProvisioningError: it does not exist.
    """
    try:
        return Path(check_local(reach, value, str(job_folder), what).path)
    except JobConfigError as exc:
        if str(exc).endswith("does not exist"):
            raise ProvisioningError(
                f"{exc}; add it to the job folder or fix {what.split()[-1].split('[')[0]}"
            ) from None
        raise


def extra_paths(reach: Reach, job_folder: Path, extras: list[str]) -> tuple[Path, ...]:
    """The checked paths of ``pythonEnv.local_extra_deps`` (see :func:`job_path`)."""
    where = "local extra pythonEnv.local_extra_deps"
    return tuple(job_path(reach, job_folder, p, f"{where}[{i}]") for i, p in enumerate(extras))


#: Found in a lock's text, lowercased, whenever it may name a local place: a ``path`` key, a ``file:``
#: or ``local:`` URL, or any backslash (a TOML escape such as ``\\u0070``, or a line-ending backslash
#: inside a multi-line string, can spell either without the text holding it). A false hit only
#: costs a parse.
_PLACE_MARKS = (b"path", b"file:", b"local:", b"\\")
#: A URL reader drops every tab and newline in a URL (``'fi<TAB>le:///x.whl'`` is ``file:///x.whl``
#: to uv), and a TOML literal string holds them as written: they are dropped before looking.
_URL_BLANKS = b"\t\n\r"


def _may_name_a_place(text: bytes) -> bool:
    """Whether ``text`` may name a local place; ``bytes.lower`` and ``in``, not a case-insensitive
    regular expression: 0.27 ms instead of 1.5 ms for a 77 KB lock, paid on every start."""
    lowered = text.lower().translate(None, _URL_BLANKS)
    return any(mark in lowered for mark in _PLACE_MARKS)


def check_lock_places(reach: Reach, lock: Path, text: bytes | None = None) -> tuple[Path, ...]:
    """Hold every local place the lock names (a package's ``path``, relative to the lock's folder, or
    ``file:`` URL; :func:`.lockfile.local_places`) to the Reach rule before uv reads it: uv reads them
    with the worker's rights, and a sibling job's private wheel would end up in this environment.
    A lock whose text cannot name a place (no ``path``, ``file:``, ``local:`` or backslash) is not
    parsed: an index-only lock of pandas takes 10-15 ms to parse, on every start.

    :param text: the lock's bytes when the caller has read them (:func:`.lockfile.read_lock`).
    :returns: the checked paths.
    :raises JobConfigError: one line naming the lock, the entry and the value; or the lock cannot
        be read, is not a regular file or is over its cap (:func:`.lockfile.read_lock`).
    :raises ProvisioningError: the lock cannot be parsed, or a named place does not exist.
    """
    from .lockfile import local_places, read_lock

    text = read_lock(lock) if text is None else text  # capped: also what the places are parsed from
    if not _may_name_a_place(text):
        return ()
    places = local_places(lock, text)
    return tuple(job_path(reach, lock.parent, value, f"{lock.name} {where}") for value, where in places)


def lock_digests(reach: Reach, lock: Path) -> tuple[str, tuple[str, ...]]:
    """Check the lock file and its local places (:func:`check_lock_places`) on every start, from one
    read of the lock; return the SHA-256 of those bytes (hex, what the environment's key covers) and
    what each place holds (:func:`.key.content_digest`): two jobs with the same lock text naming
    ``path = "private.whl"`` never share the environment built from one job's wheel.

    :raises JobConfigError: as :func:`check_lock_places`.
    :raises ProvisioningError: as :func:`.lockfile.check_lock_file` and :func:`check_lock_places`.
    """
    import hashlib

    from .key import content_digest
    from .lockfile import check_lock_file, read_lock

    check_lock_file(lock)
    text = read_lock(lock)
    places = tuple(content_digest(path) for path in check_lock_places(reach, lock, text))
    return hashlib.sha256(text).hexdigest(), places
