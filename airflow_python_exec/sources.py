"""A job's source, resolved to a local folder: a folder, a zip archive, or a git repository.

Accepted forms of ``function.source`` (DESIGN.md, "Functions: handler jobs"):

- ``src/``: a folder, relative to the job folder and inside it; used in place.
- ``code.zip[#sha256=<hex>]``: a zip file, relative to the job folder and inside it.
- ``zip+https://host/code.zip[#sha256=<hex>]`` (or ``zip+http://``): a zip file, downloaded.
- ``git+<url>[@<ref>][#subdirectory=<dir>]``: pip's VCS URL form ("VCS Support" in pip's docs),
  for any URL ``git`` accepts over the protocols it allows by default (``https``, ``ssh``, ``git``,
  ``file``; never ``ext::``); ``<ref>`` is a branch, a tag or a full commit sha (default: the remote's ``HEAD``).

A zip form also takes ``#subdirectory=<dir>`` (e.g. the ``project-main/`` folder of a GitHub
download). ``#sha256=<hex>`` names the archive's digest up front: when that archive is already
cached, nothing is read or downloaded. Without it, a ``zip+https://`` archive's digest and HTTP
validators (``ETag``, ``Last-Modified``) are kept in ``sources/url-<digest of the URL>.json``, and the
next run asks the server with ``If-None-Match`` / ``If-Modified-Since``: a 304 answer reuses the
cached archive without downloading it.

Archives are unpacked into ``<cache_dir>/sources/<sha256 of the archive>/``, git commits checked out
into ``<cache_dir>/sources/<commit sha>/`` (without ``.git``). Each entry is built once under a
``filelock`` lock (``sources/<id>.lock``) and used only once its marker ``sources/<id>.provisioned``
exists, written last by an atomic rename (see :mod:`airflow_python_exec.cache_entry`). The marker
sits beside the folder, not in it, so no file of the source can pose as a marker.

Archive rules: an entry with an absolute path, ``..``, a symlink, a device, a FIFO or a socket, an
encrypted entry, a name that appears twice, more than :data:`MAX_ENTRIES` entries, or more than
``max_source_bytes`` unpacked (declared sizes checked first, actual bytes counted while unpacking)
refuses the whole archive; nothing is left behind but the entry's (empty) lock file. A git commit
is held to the same entry and byte limits (from ``git ls-tree`` before checkout); symlinks in a git
tree are kept (git writes them itself and never follows them), submodules are not fetched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from airflow_python_exec.cache_entry import acquire_or_see_marker, disk_errors_as_provisioning, ms, write_marker
from airflow_python_exec.environments.key import file_digest
from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.logs import PREFIX, provider_line

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
MARKER_SUFFIX = ".provisioned"

_HEX = re.compile(r"[0-9a-f]+\Z")
#: A full git object name: SHA-1 (40 hex digits) or SHA-256 (64).
_FULL_SHA = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64})\Z")
#: Refs we pass to git: no option look-alikes, no revision syntax (``..``, ``^``, ``~``, ``:``).
_REF = re.compile(r"(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]+\Z")
_CHUNK = 1 << 20
_FORMS = "a folder or .zip file in the job folder, zip+https://..., or git+<url>[@<ref>][#subdirectory=<dir>]"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``function.source``.

    :ivar kind: ``"folder"``, ``"zip"`` (a local file), ``"zip_url"`` or ``"git"``.
    :ivar location: the path (relative to the job folder) or URL, without ``zip+``/``git+``,
        ``@<ref>`` or ``#fragment``.
    :ivar ref: git only: the branch, tag or commit, or ``None`` for the remote's ``HEAD``.
    :ivar subdirectory: the folder inside the archive or repository that is the source root.
    :ivar sha256: zip forms only: the archive's expected digest (lowercase hex), if given.
    """

    kind: str
    location: str
    ref: str | None = None
    subdirectory: str | None = None
    sha256: str | None = None

    @property
    def display(self) -> str:
        """The source as written, with any password or token in the URL replaced by ``***``."""
        location = redact_url(self.location)
        text = {"git": f"git+{location}", "zip_url": f"zip+{location}"}.get(self.kind, location)
        return text + (f"@{self.ref}" if self.ref else "")


@dataclass(frozen=True)
class ResolvedSource:
    """Where a job's source is on this machine.

    :ivar root: the folder to put first on ``sys.path`` (absolute).
    :ivar kind: as :attr:`SourceSpec.kind`.
    :ivar digest: the archive's SHA-256 or the git commit sha; ``None`` for a folder.
    :ivar fetched: ``True`` when this call downloaded, unpacked or checked out anything.
    """

    root: Path
    kind: str
    digest: str | None = None
    fetched: bool = False


def parse_source(source: str) -> SourceSpec:
    """Parse ``function.source`` without touching the disk or the network (fit for job loading).

    :raises JobConfigError: not one of the accepted forms, or a malformed ref, fragment or path.
    """
    if not isinstance(source, str) or not source.strip() or any(c in source for c in "\0\n\r"):
        raise JobConfigError(f"function.source {source!r} is empty or not one line; give {_FORMS}")
    source = source.strip()
    if source.startswith("git+"):
        return _parse_git(source)
    body, fragment = _split_fragment(source)
    if source.startswith(("zip+https://", "zip+http://")):
        options = _fragment_options(source, fragment, {"sha256", "subdirectory"})
        return SourceSpec("zip_url", body[len("zip+") :], None, options.get("subdirectory"), _sha256(source, options))
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source):
        raise JobConfigError(
            f"function.source {redact_url(source)!r} is not a supported form (a zip URL takes "
            f"the zip+ prefix); give {_FORMS}"
        )
    _check_relative(body, "function.source")
    if body.lower().endswith(".zip"):
        options = _fragment_options(source, fragment, {"sha256", "subdirectory"})
        return SourceSpec("zip", body, None, options.get("subdirectory"), _sha256(source, options))
    if fragment:
        raise JobConfigError(f"function.source {source!r}: a folder takes no #fragment; remove it")
    return SourceSpec("folder", body)


def redact_url(url: str) -> str:
    """``url`` with its password, or any http(s) user part (often a token), replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    user, _, host = parts.netloc.rpartition("@")
    if parts.scheme in ("http", "https"):
        user = "***"
    elif ":" in user:
        user = user.split(":", 1)[0] + ":***"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}"))


class SourceResolver:
    """Resolve job sources into local folders, through the source cache.

    :param cache_dir: ``[python_exec] cache_dir``; entries go to ``<cache_dir>/sources/``.
    :param max_source_bytes: largest unpacked archive or checkout, in bytes (also the largest
        archive downloaded).
    :param max_entries: most entries an archive or a git tree may hold.
    :param lock_timeout: seconds to wait while another process builds the same entry.
    :param timeout_s: seconds allowed for each ``git`` command, and per network read of a download.
    :param on_line: receives progress lines, prefixed ``[python_exec]``; default: discarded.
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
    ) -> None:
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
        if spec.kind == "folder":
            return ResolvedSource(_inside(job_folder, spec.location, "function.source", want_dir=True), "folder")
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
            archive = _inside(job_folder, spec.location, "function.source", want_dir=False)
            digest = file_digest(archive)
            if spec.sha256 and digest != spec.sha256:
                raise JobConfigError(
                    f"{spec.display} has sha256 {digest}, not {spec.sha256} as its #sha256 says; "
                    "fix the digest or the archive"
                )
            return self._unpack_cached(spec, archive, digest)
        known = self._known_url(spec)
        with self._download(spec, known) as got:
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
        if not isinstance(record, dict) or not _HEX.match(str(record.get("sha256", ""))):
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
            tmp.write_text(json.dumps({"url": redact_url(spec.location), "sha256": digest, **validators}))
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

    @contextlib.contextmanager
    def _download(
        self, spec: SourceSpec, known: dict[str, str] | None = None
    ) -> Iterator[tuple[Path, str, dict[str, str]] | None]:
        """Download the archive into a temporary file in ``sources/``; yield it, its SHA-256 and the
        response's validators (``etag``, ``last_modified``), or ``None`` when the server says the
        ``known`` download is still current (HTTP 304).

        The file is removed on leaving, whatever happens.
        """
        with disk_errors_as_provisioning("source cache"):
            self.sources_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=self.sources_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                fetched = self._fetch(spec, out, known)
            if fetched is None:
                yield None
                return
            digest, validators = fetched
            if spec.sha256 and digest != spec.sha256:
                raise ProvisioningError(
                    f"downloaded {spec.display} has sha256 {digest}, not {spec.sha256} as "
                    "its #sha256 says; check the URL or update the digest"
                )
            yield path, digest, validators
        finally:
            path.unlink(missing_ok=True)

    def _fetch(
        self, spec: SourceSpec, out: BinaryIO, known: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]] | None:
        """Stream the URL into ``out``; return the SHA-256 of what was written and the response's
        validators, or ``None`` when a conditional request (from ``known``) is answered 304."""
        started = time.monotonic()
        headers = {"User-Agent": "airflow-python-exec"}
        if known and known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known and known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
        request = urllib.request.Request(spec.location, headers=headers)
        digest, size = hashlib.sha256(), 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                validators = {
                    key: response.headers[name]
                    for key, name in (("etag", "ETag"), ("last_modified", "Last-Modified"))
                    if response.headers.get(name)
                }
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_source_bytes:
                    raise JobConfigError(_too_big(spec.display, self.max_source_bytes))
                for block in iter(lambda: response.read(_CHUNK), b""):
                    size += len(block)
                    if size > self.max_source_bytes:
                        raise JobConfigError(_too_big(spec.display, self.max_source_bytes))
                    digest.update(block)
                    out.write(block)
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and known:
                self._say(f"source {spec.display}: not modified since the last download (HTTP 304)")
                return None
            raise ProvisioningError(
                f"downloading {spec.display} failed: HTTP {exc.code} {exc.reason}; check the URL and its access rights"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ProvisioningError(
                f"downloading {spec.display} failed: {reason}; check the URL and the network"
            ) from None
        self._say(f"source {spec.display}: downloaded {size} bytes ({ms(started)})")
        return digest.hexdigest(), validators

    # -- git --------------------------------------------------------------------------------

    def _git(self, spec: SourceSpec) -> ResolvedSource:
        commit = self._commit_of(spec)
        self._say(f"source {spec.display}: commit {commit}")
        if self._complete(commit):
            return self._hit(spec, commit)
        fetched = self._build(commit, spec, lambda dest: self._checkout(spec, commit, dest))
        if not fetched:
            return self._hit(spec, commit)
        return ResolvedSource(self._root(spec, commit), "git", commit, fetched=True)

    def _commit_of(self, spec: SourceSpec) -> str:
        """The commit sha of ``spec.ref``: a full sha as is, else asked with ``git ls-remote``."""
        if spec.ref and _FULL_SHA.match(spec.ref):
            return spec.ref
        ref = spec.ref or "HEAD"
        out = self._run_git(["ls-remote", "--", spec.location, ref, f"{ref}^{{}}"], spec, "ls-remote")
        refs = {}  # ref name -> sha, from "<sha>\t<name>" lines
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            refs[name] = sha
        for name in [ref] if ref == "HEAD" or ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]:
            found = refs.get(f"{name}^{{}}") or refs.get(name)  # a peeled tag names its commit
            if found:
                return found
        hint = " (a short sha cannot be looked up: give all 40 characters)" if _HEX.match(ref) else ""
        raise JobConfigError(
            f"{spec.display}: {ref!r} is not a branch or tag of the repository{hint}; "
            "give an existing branch, tag or a full commit sha"
        )

    def _checkout(self, spec: SourceSpec, commit: str, dest: Path) -> dict[str, object]:
        started = time.monotonic()
        self._say(f"source {spec.display}: fetching commit {commit}")
        self._run_git(["init", "-q", str(dest)], spec, "init")
        try:
            self._run_git(
                ["-C", str(dest), "fetch", "-q", "--depth", "1", "--no-tags", "--", spec.location, commit],
                spec,
                "fetch",
            )
        except ProvisioningError:
            # Servers that refuse a bare commit in a shallow fetch: fetch every branch and tag.
            self._run_git(
                [
                    "-C",
                    str(dest),
                    "fetch",
                    "-q",
                    "--no-tags",
                    "--",
                    spec.location,
                    "+refs/heads/*:refs/remotes/all/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                spec,
                "fetch",
            )
        entries, size = self._check_tree(spec, commit, dest)
        self._run_git(
            ["-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit], spec, "checkout"
        )
        shutil.rmtree(dest / ".git")  # an immutable snapshot: history and packs only cost space
        self._say(f"source {spec.display}: checked out {entries} file(s) ({ms(started)})")
        return {"commit": commit, "ref": spec.ref, "entries": entries, "bytes": size}

    def _check_tree(self, spec: SourceSpec, commit: str, dest: Path) -> tuple[int, int]:
        """Hold the commit's tree to the entry and byte limits before anything is checked out."""
        out = self._run_git(["-C", str(dest), "ls-tree", "-r", "-l", "-z", "--full-tree", commit], spec, "ls-tree")
        entries, size = 0, 0
        for record in filter(None, out.split("\0")):
            entries += 1
            fields = record.split("\t", 1)[0].split()
            if len(fields) == 4 and fields[3].isdigit():
                size += int(fields[3])
        if entries > self.max_entries:
            raise JobConfigError(
                f"{spec.display} has {entries} files, more than {self.max_entries}; "
                "use a smaller repository or a subdirectory of one"
            )
        if size > self.max_source_bytes:
            raise JobConfigError(_too_big(spec.display, self.max_source_bytes))
        return entries, size

    def _run_git(self, args: list[str], spec: SourceSpec, what: str) -> str:
        # No prompt for credentials (nobody would answer); C locale so "fatal:" lines are found.
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        try:
            done = subprocess.run(
                ["git", *args],
                capture_output=True,
                text=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=self.timeout_s,
            )
        except FileNotFoundError:
            raise ProvisioningError(f"git is not installed on this worker; install it to use {spec.display}") from None
        except subprocess.TimeoutExpired:
            raise ProvisioningError(
                f"git {what} of {spec.display} did not finish within {self.timeout_s:g} s; "
                "check the repository and the network"
            ) from None
        if done.returncode != 0:
            lines = [ln.strip() for ln in done.stderr.replace(spec.location, redact_url(spec.location)).splitlines()]
            detail = next(
                (ln for ln in lines if ln.startswith("fatal:")), lines[0] if lines else f"exit {done.returncode}"
            )
            raise ProvisioningError(
                f"git {what} of {spec.display} failed: {detail}; check the URL, the ref and access to the repository"
            )
        return done.stdout

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
            for block in iter(lambda: member.read(_CHUNK), b""):
                total += len(block)
                if total > max_bytes:
                    raise JobConfigError(_too_big(display, max_bytes))
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
        raise JobConfigError(_too_big(display, max_bytes))
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


def _too_big(display: str, limit: int) -> str:
    return (
        f"{display} unpacks to more than {limit} bytes ([python_exec] max_source_bytes); "
        "make it smaller or raise the limit"
    )


def _inside(base: Path, rel: str, what: str, *, want_dir: bool) -> Path:
    """Resolve ``rel`` under ``base``; it must exist, stay inside (symlinks too) and be a folder or a file."""
    _check_relative(rel, what)
    path = (base / rel).resolve()
    if not path.is_relative_to(base.resolve()):
        raise JobConfigError(f"{what} {rel!r} leads to {path}, outside {base}; keep it inside")
    if not path.exists():
        raise JobConfigError(f"{what} {rel!r} does not exist in {base}; upload it or fix the path")
    if want_dir and not path.is_dir():
        raise JobConfigError(f"{what} {rel!r} is not a folder; name a folder")
    if not want_dir and not path.is_file():
        raise JobConfigError(f"{what} {rel!r} is not a regular file; name the .zip file")
    return path


def _check_relative(rel: str, what: str) -> None:
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or rel.startswith("~"):
        raise JobConfigError(f"{what} {rel!r} is an absolute path; give a path relative to the job folder")
    if ".." in posix.parts:
        raise JobConfigError(f"{what} {rel!r} contains '..'; it must stay inside the job folder")


def _parse_git(source: str) -> SourceSpec:
    """Split pip's ``git+<url>[@<ref>][#subdirectory=<dir>]`` (the ``@`` of a user part is not a ref)."""
    body, fragment = _split_fragment(source[len("git+") :])
    options = _fragment_options(source, fragment, {"subdirectory", "egg"})
    if "://" in body:
        scheme, rest = body.split("://", 1)
        netloc, slash, path = rest.partition("/")
        head, path = f"{scheme}://{netloc}{slash}", path
    elif re.match(r"[^/@:]+@[^/:]+:", body):  # scp-like user@host:path
        user_host, _, path = body.partition(":")
        head = f"{user_host}:"
    else:
        head, path = "", body
    ref = None
    if "@" in path:
        path, ref = path.rsplit("@", 1)
        if not _REF.match(ref):
            raise JobConfigError(
                f"function.source {source!r}: {ref!r} is not a git branch, tag or commit; fix the @ref"
            )
    url = head + path
    if not path.strip("/") or url.startswith("-") or any(c.isspace() for c in url):
        raise JobConfigError(
            f"function.source {redact_url(source)!r} has no usable repository URL; "
            "write git+https://host/repo.git[@ref]"
        )
    return SourceSpec("git", url, ref, options.get("subdirectory"))


def _split_fragment(value: str) -> tuple[str, str]:
    body, _, fragment = value.partition("#")
    return body, fragment


def _fragment_options(source: str, fragment: str, allowed: set[str]) -> dict[str, str]:
    options = dict(urllib.parse.parse_qsl(fragment, keep_blank_values=True)) if fragment else {}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise JobConfigError(
            f"function.source {redact_url(source)!r}: unknown #{unknown[0]}; "
            f"use {' or '.join('#' + a + '=' for a in sorted(allowed - {'egg'}))}"
        )
    if "subdirectory" in options:
        sub = options["subdirectory"].strip("/")
        if not sub:
            raise JobConfigError(f"function.source {redact_url(source)!r}: #subdirectory is empty; name a folder")
        _check_relative(sub, "#subdirectory")
        options["subdirectory"] = sub
    return options


def _sha256(source: str, options: dict[str, str]) -> str | None:
    value = options.get("sha256")
    if value is None:
        return None
    value = value.lower()
    if len(value) != 64 or not _HEX.match(value):
        raise JobConfigError(f"function.source {redact_url(source)!r}: #sha256 must be 64 hex digits")
    return value
