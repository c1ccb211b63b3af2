"""Parse ``function.source`` into a :class:`SourceSpec` (pure: no file or network access besides
checking a relative path); see :mod:`airflow_python_exec.handlers.sources` for the accepted forms."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.redaction import hide_url_credentials

HEX_DIGITS = re.compile(r"[0-9a-f]+\Z")
#: A full git object name: SHA-1 (40 hex digits) or SHA-256 (64).
FULL_SHA = re.compile(r"([0-9a-f]{40}|[0-9a-f]{64})\Z")
#: Refs we pass to git: no option look-alikes, no revision syntax (``..``, ``^``, ``~``, ``:``).
_REF = re.compile(r"(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]+\Z")
#: Longest ``function.source`` looked at (a path or URL, not data).
MAX_SOURCE_LENGTH = 4096
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
    :ivar written: the location as the job wrote it, when :attr:`location` was replaced by the
        checked place (a local git source: its git folder), for messages.
    """

    kind: str
    location: str
    ref: str | None = None
    subdirectory: str | None = None
    sha256: str | None = None
    written: str | None = None

    @property
    def display(self) -> str:
        """The source as written, with any password or token in the URL replaced by ``***``."""
        location = hide_url_credentials(self.written or self.location)
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
    if len(source) > MAX_SOURCE_LENGTH:
        raise JobConfigError(f"function.source: a value of {len(source)} characters is not a source; give {_FORMS}")
    if source.startswith("git+"):
        return _parse_git(source)
    body, fragment = _split_fragment(source)
    if source.startswith(("zip+https://", "zip+http://")):
        options = _fragment_options(source, fragment, {"sha256", "subdirectory"})
        return SourceSpec("zip_url", body[len("zip+") :], None, options.get("subdirectory"), _sha256(source, options))
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source):
        raise JobConfigError(
            f"function.source {hide_url_credentials(source)!r} is not a supported form (a zip URL takes "
            f"the zip+ prefix); give {_FORMS}"
        )
    _check_relative(body, "function.source")
    if body.lower().endswith(".zip"):
        options = _fragment_options(source, fragment, {"sha256", "subdirectory"})
        return SourceSpec("zip", body, None, options.get("subdirectory"), _sha256(source, options))
    if fragment:
        raise JobConfigError(f"function.source {source!r}: a folder takes no #fragment; remove it")
    return SourceSpec("folder", body)


def inside_job_folder(base: Path, rel: str, what: str, *, want_dir: bool) -> Path:
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
            f"function.source {hide_url_credentials(source)!r} has no usable repository URL; "
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
            f"function.source {hide_url_credentials(source)!r}: unknown #{unknown[0]}; "
            f"use {' or '.join('#' + a + '=' for a in sorted(allowed - {'egg'}))}"
        )
    if "subdirectory" in options:
        sub = options["subdirectory"].strip("/")
        if not sub:
            raise JobConfigError(
                f"function.source {hide_url_credentials(source)!r}: #subdirectory is empty; name a folder"
            )
        _check_relative(sub, "#subdirectory")
        options["subdirectory"] = sub
    return options


def _sha256(source: str, options: dict[str, str]) -> str | None:
    value = options.get("sha256")
    if value is None:
        return None
    value = value.lower()
    if len(value) != 64 or not HEX_DIGITS.match(value):
        raise JobConfigError(f"function.source {hide_url_credentials(source)!r}: #sha256 must be 64 hex digits")
    return value
