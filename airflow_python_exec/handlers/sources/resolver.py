"""The source cache: resolve a job's source into a local folder under ``<cache_dir>/sources/``, each
entry built once under its lock and marked when complete (see :mod:`airflow_python_exec.handlers.sources`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from airflow_python_exec.environments.build_once import (
    acquire_or_see_marker,
    disk_errors_as_provisioning,
    write_marker,
)
from airflow_python_exec.environments.key import file_digest
from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.isolation.archive import MAX_ENTRIES, MAX_SOURCE_BYTES, check_archive, extract_archive
from airflow_python_exec.logs import PREFIX, provider_line
from airflow_python_exec.models.reach import Reach, check_local
from airflow_python_exec.models.source_spec import (
    HEX_DIGITS,
    ResolvedSource,
    SourceSpec,
    inside_job_folder,
    parse_source,
)
from airflow_python_exec.redaction import hide_url_credentials

from .download import Downloader
from .git import GitFetcher, refuse_borrowed_objects

MARKER_SUFFIX = ".provisioned"


class SourceResolver:
    """Resolve job sources into local folders, through the source cache.

    :param cache_dir: ``[python_exec] cache_dir``; entries go to ``<cache_dir>/sources/``.
    :param max_source_bytes: largest unpacked archive or checkout, in bytes (also the largest
        archive downloaded).
    :param max_entries: most entries an archive or a git tree may hold.
    :param lock_timeout: seconds to wait while another process builds the same entry.
    :param timeout_s: seconds allowed for each ``git`` command, and per network read of a download.
    :param on_line: receives progress lines, prefixed ``[python_exec]``; default: discarded.
    :param reach: where a local git source may be read from, and whether a URL may be fetched
        (:func:`~airflow_python_exec.models.reach.code_reach`); ``None``: not checked (tests).
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        max_source_bytes: int = MAX_SOURCE_BYTES,
        max_entries: int = MAX_ENTRIES,
        lock_timeout: float = 600.0,
        timeout_s: float = 600.0,
        on_line: Callable[[str], None] | None = None,
        reach: Reach | None = None,
    ) -> None:
        self.reach = reach
        self.sources_dir = Path(cache_dir).absolute() / "sources"
        self.max_source_bytes = max_source_bytes
        self.max_entries = max_entries
        self.lock_timeout = lock_timeout
        self.timeout_s = timeout_s
        self.on_line = on_line or provider_line

    def resolve(self, source: str | SourceSpec, job_folder: Path) -> ResolvedSource:
        """Return the local folder of ``source`` (see the module docstring for the forms).

        :param job_folder: the job folder; relative folder and zip paths resolve against it.
        :raises JobConfigError: bad input: an unknown form, a path leaving the job folder, a
            missing file or subdirectory, an unknown git ref, an archive breaking the rules.
        :raises ProvisioningError: fetching failed: download, ``git``, or the cache folder.
        """
        spec = source if isinstance(source, SourceSpec) else parse_source(source)
        job_folder = Path(job_folder).resolve()
        if self.reach is not None:
            spec = reached(spec, self.reach, job_folder)
        if spec.kind == "folder":
            return ResolvedSource(
                inside_job_folder(job_folder, spec.location, "function.source", want_dir=True), "folder"
            )
        if spec.kind == "git":
            return self._git(spec)
        return self._zip(spec, job_folder)

    def resolve_code(self, code: str, name: str) -> ResolvedSource:
        """Save inline code (``function.code`` or ``base64``) as ``sources/<sha256>/<name>`` (the digest
        of ``name`` and the code).

        Content-addressed beside the archives, so a read-only or shared job folder is never written
        and the same code is saved once; the entry is built under its lock and marked like the others.

        :param name: the job's ``packageName`` (a relative ``.py`` path, checked by the job model).
        :raises JobConfigError: the code is larger than ``max_source_bytes``.
        :raises ProvisioningError: the cache folder cannot be written.
        """
        data = code.encode("utf-8")
        if len(data) > self.max_source_bytes:
            raise JobConfigError(
                f"inline code has {len(data)} bytes, more than {self.max_source_bytes} "
                "([python_exec] max_source_bytes); use a zip or git source"
            )
        digest = hashlib.sha256(name.encode() + b"\0" + data).hexdigest()  # the file's name and content
        spec = SourceSpec("code", f"inline code {digest[:12]}")
        if self._complete(digest):
            return self._hit(spec, digest)

        def fill(dest: Path) -> dict[str, object]:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self._say(f"source {spec.display}: saved as {target}")
            return {"file": name, "bytes": len(data)}

        fetched = self._build(digest, spec, fill)
        return ResolvedSource(self.sources_dir / digest, "code", digest, fetched=fetched)

    # -- zip --------------------------------------------------------------------------------

    def _zip(self, spec: SourceSpec, job_folder: Path) -> ResolvedSource:
        if spec.sha256 and self._complete(spec.sha256):  # digest known: read nothing at all
            return self._hit(spec, spec.sha256)
        if spec.kind == "zip":
            archive = inside_job_folder(job_folder, spec.location, "function.source", want_dir=False)
            digest = file_digest(archive)
            if spec.sha256 and digest != spec.sha256:
                raise JobConfigError(
                    f"{spec.display} has sha256 {digest}, not {spec.sha256} as its #sha256 says; "
                    "fix the digest or the archive"
                )
            return self._unpack_cached(spec, archive, digest)
        known = self._known_url(spec)
        with Downloader(self.sources_dir, self.timeout_s, self.max_source_bytes, self._say).download(
            spec, known
        ) as got:
            if got is None:  # 304 Not Modified: the archive unpacked last time is still current
                return self._hit(spec, known["sha256"])  # type: ignore[index]
            archive, digest, validators = got
            resolved = self._unpack_cached(spec, archive, digest)
        self._remember_url(spec, digest, validators)
        return resolved

    def _url_record(self, spec: SourceSpec) -> Path:
        return self.sources_dir / f"url-{hashlib.sha256(spec.location.encode()).hexdigest()[:32]}.json"

    def _known_url(self, spec: SourceSpec) -> dict[str, str] | None:
        """What the last download of this URL said (``sha256``, ``etag``, ``last_modified``), when its
        archive is still cached; ``None`` otherwise."""
        try:
            record = json.loads(self._url_record(spec).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not HEX_DIGITS.match(str(record.get("sha256", ""))):
            return None
        return record if self._complete(record["sha256"]) else None

    def _remember_url(self, spec: SourceSpec, digest: str, validators: dict[str, str]) -> None:
        """Keep the URL's digest and HTTP validators, so the next run asks "changed since?" (an
        optimization: a record that cannot be written only costs a download)."""
        if not validators:
            return
        record = self._url_record(spec)
        tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"url": hide_url_credentials(spec.location), "sha256": digest, **validators}))
            os.replace(tmp, record)
        except OSError:
            tmp.unlink(missing_ok=True)

    def _unpack_cached(self, spec: SourceSpec, archive: Path, digest: str) -> ResolvedSource:
        if self._complete(digest):
            return self._hit(spec, digest)
        members = check_archive(archive, spec.display, self.max_source_bytes, self.max_entries)
        fetched = self._build(digest, spec, lambda dest: self._extract(archive, members, dest, spec.display))
        if not fetched:
            return self._hit(spec, digest)
        return ResolvedSource(self._root(spec, digest), spec.kind, digest, fetched=True)

    def _extract(
        self, archive: Path, members: list[tuple[zipfile.ZipInfo, PurePosixPath]], dest: Path, display: str
    ) -> dict[str, object]:
        self._say(f"source {display}: unpacking {len(members)} entries into {dest}")
        total = extract_archive(archive, members, dest, display, self.max_source_bytes)
        return {"entries": len(members), "bytes": total}

    # -- git --------------------------------------------------------------------------------

    def _git(self, spec: SourceSpec) -> ResolvedSource:
        git = GitFetcher(self.timeout_s, self.max_entries, self.max_source_bytes, self._say)
        commit = git.commit_of(spec)
        self._say(f"source {spec.display}: commit {commit}")
        if self._complete(commit):
            return self._hit(spec, commit)
        fetched = self._build(commit, spec, lambda dest: git.checkout(spec, commit, dest))
        if not fetched:
            return self._hit(spec, commit)
        return ResolvedSource(self._root(spec, commit), "git", commit, fetched=True)

    # -- the cache entry --------------------------------------------------------------------

    def _complete(self, entry: str) -> bool:
        return (self.sources_dir / f"{entry}{MARKER_SUFFIX}").is_file() and (self.sources_dir / entry).is_dir()

    def _hit(self, spec: SourceSpec, entry: str) -> ResolvedSource:
        self._say(f"source {spec.display}: cache hit {entry}")
        return ResolvedSource(self._root(spec, entry), spec.kind, entry, fetched=False)

    def _root(self, spec: SourceSpec, entry: str) -> Path:
        base = self.sources_dir / entry
        if not spec.subdirectory:
            return base
        root = (base / spec.subdirectory).resolve()
        if not root.is_relative_to(base.resolve()) or not root.is_dir():  # a git symlink may point out
            raise JobConfigError(f"{spec.display} has no folder {spec.subdirectory!r} (in {entry}); fix #subdirectory")
        return root

    def _build(self, entry: str, spec: SourceSpec, fill: Callable[[Path], dict[str, object]]) -> bool:
        """Build ``sources/<entry>/`` with ``fill`` under the entry's lock; marker last.

        :returns: ``True`` when this call built it, ``False`` when another process did meanwhile.
        """
        import filelock

        dest, marker = self.sources_dir / entry, self.sources_dir / f"{entry}{MARKER_SUFFIX}"
        with disk_errors_as_provisioning("source cache"):
            self.sources_dir.mkdir(parents=True, exist_ok=True)
            lock = filelock.FileLock(str(self.sources_dir / f"{entry}.lock"))
            if not acquire_or_see_marker(lock, marker, timeout_s=self.lock_timeout, what=f"source {entry}"):
                return False
            try:
                if self._complete(entry):
                    return False
                marker.unlink(missing_ok=True)  # a marker without its folder: no one may trust it
                if dest.exists():
                    self._say(f"removing unfinished source {dest}")
                    shutil.rmtree(dest)
                self._fill(dest, marker, spec, fill)
            finally:
                lock.release()
        return True

    def _fill(self, dest: Path, marker: Path, spec: SourceSpec, fill: Callable[[Path], dict[str, object]]) -> None:
        started = time.monotonic()
        try:
            dest.mkdir()
            details = fill(dest)
            write_marker(
                marker,
                {
                    "kind": spec.kind,
                    "source": spec.display,
                    **details,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "provisioning_s": round(time.monotonic() - started, 3),
                },
            )
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)  # never leave a partial entry behind
            raise

    def _say(self, message: str) -> None:
        self.on_line(f"{PREFIX} {message}")


#: A URL git reaches over the network: ``scheme://`` (not ``file:``) or scp-like ``[user@]host:path``.
_GIT_NETWORK = re.compile(r"(?!(?i:file|local):)[A-Za-z][A-Za-z0-9+.-]*://|[^/:]+:(?!//)")
#: The schemes git may fetch over the network for a job (no transport helpers, no other protocols).
_GIT_SCHEMES = ("https", "http", "ssh", "git")


def reached(spec: SourceSpec, reach: Reach, job_folder: Path) -> SourceSpec:
    """``spec`` under the Reach rule: no URL fetched without network, a local git repository only in
    the job folder or a ``data_allowed_uris`` folder (and then named by the path that was checked).

    :raises JobConfigError: one line naming the source and the setting.
    """
    network = spec.kind == "zip_url" or (spec.kind == "git" and _GIT_NETWORK.match(spec.location) is not None)
    if spec.kind == "git" and "::" in spec.location:
        raise JobConfigError(f"function.source {spec.display!r} names a git transport helper; give a URL or a path")
    scheme = spec.location.split("://", 1)[0].lower() if "://" in spec.location else "ssh"
    if spec.kind == "git" and network and scheme not in _GIT_SCHEMES:
        raise JobConfigError(
            f"function.source {spec.display!r}: git fetches only {', '.join(_GIT_SCHEMES)} or local paths"
        )
    if network and not reach.network:
        raise JobConfigError(
            f"function.source {spec.display!r} would be fetched over the network, and [python_exec] "
            "sandbox_network is False; put the source in the job folder"
        )
    if spec.kind != "git" or network:
        return spec
    location = check_local(reach, spec.location, str(job_folder), "function.source")
    git_dir = refuse_borrowed_objects(Path(location.path), spec.display)
    # The checked git folder itself, never a file:// URL: git decodes %2e%2e and %2F in one, reading elsewhere.
    return replace(spec, location=str(git_dir), written=spec.location)
