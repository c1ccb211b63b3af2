"""Requirements without a lock: PEP 723 inline script metadata, ``pythonEnv.requirements``, and their
resolution into a PEP 751 lock (DESIGN.md, "Requirements without a lock, and PEP 723 scripts").

- :func:`read_script_metadata`: a script's ``# /// script`` block (PEP 723, parsed with the PEP's
  reference regular expression and ``tomllib``): its ``dependencies`` and ``requires-python``.
- :func:`normalize_requirements`: PEP 508 strings, or a requirements file, validated with
  ``packaging`` and normalized so that equivalent spellings give the same cache key.
- :func:`python_for`: the interpreter that satisfies ``requires-python``.
- :func:`requirements_key`: the cache-key contribution of requirements (see
  :func:`.key.environment_key`): the normalized requirements, uv's index settings and how we lock.
- :func:`compile_lock`: ``uv pip compile --format pylock.toml`` for one interpreter, wheels only
  (installs use ``--no-build``), returning the resolved ``(name, version)`` pairs for the log.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from airflow_python_exec.environments.build_once import ms
from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.redaction import hide_url_credentials

from .interpreters import installed_pythons
from .lockfile import LOCK_NAME, locked_packages
from .uv import Uv

if TYPE_CHECKING:
    from airflow_python_exec.models.reach import Reach

#: PEP 723's reference regular expression for a metadata block.
PEP723_BLOCK = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")

#: uv's environment variables that change what a resolution finds (indexes, and how versions are
#: chosen among them), hence part of the key. ``PIP_*`` variables are not: uv never reads them.
INDEX_SETTINGS = (
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_INDEX_STRATEGY",
    "UV_PRERELEASE",
    "UV_RESOLUTION",
    "UV_EXCLUDE_NEWER",
    "UV_CONFIG_FILE",
    "UV_NO_CONFIG",
)
#: How :func:`compile_lock` calls uv; part of the key, so changing it re-resolves every environment.
COMPILE_OPTIONS = ("--format", "pylock.toml", "--no-header", "--only-binary", ":all:")


@dataclass(frozen=True)
class ScriptMetadata:
    """A script's PEP 723 ``script`` block.

    :ivar dependencies: the PEP 508 strings as written (each checked).
    :ivar requires_python: the version specifier, or ``None``.
    """

    dependencies: tuple[str, ...]
    requires_python: str | None


def read_script_metadata(script: str | Path) -> ScriptMetadata | None:
    """Read PEP 723 inline metadata (``# /// script`` ... ``# ///``) from a script.

    :param script: the script's path, or its text.
    :returns: the ``script`` block's ``dependencies`` and ``requires-python``, or ``None`` when the
        script has no such block (blocks of other types are ignored, as the PEP says).
    :raises JobConfigError: more than one ``script`` block, invalid TOML, or a value of the wrong type
        or syntax; one line naming it.
    """
    name = str(script) if isinstance(script, Path) else "the script"
    text = script.read_text(encoding="utf-8") if isinstance(script, Path) else script
    blocks = [m for m in PEP723_BLOCK.finditer(text) if m.group("type") == "script"]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise JobConfigError(f"{name} has {len(blocks)} '# /// script' blocks; PEP 723 allows one, merge them")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:] for line in blocks[0].group("content").splitlines(keepends=True)
    )
    data = _toml(content, name)
    deps = data.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise JobConfigError(f"{name}: PEP 723 'dependencies' must be a list of strings, like [\"requests<3\"]")
    for dep in deps:
        _normalized(dep, f" in {name}")
    requires = data.get("requires-python")
    if requires is not None:
        _specifier(requires, name)
    return ScriptMetadata(tuple(deps), requires)


def normalize_requirements(
    requirements: Sequence[str] | str | Path, job_folder: Path | None = None, reach: Reach | None = None
) -> tuple[str, ...]:
    """Validate and normalize ``pythonEnv.requirements``.

    :param requirements: PEP 508 strings, or the path of a requirements file (one requirement a
        line; ``#`` comments and ``\\`` continuations allowed, option lines such as ``-r`` or
        ``--index-url`` not: index settings come from uv's environment, see :data:`INDEX_SETTINGS`).
    :param job_folder: relative file paths resolve against it.
    :param reach: the Reach rule (:func:`~airflow_python_exec.models.reach.code_reach`): the file
        stays inside the job folder, a ``file:`` URL inside the job folder or an allowed folder, and
        no URL is fetched without network. ``None``: not checked.
    :returns: each requirement normalized (canonical names and extras, sorted specifiers), sorted,
        without duplicates: equivalent spellings give equal tuples.
    :raises JobConfigError: a string that is not a PEP 508 requirement, an option line, a place the
        job may not name. A message about a file quotes its path and a line number, never a line.
    :raises ProvisioningError: the requirements file does not exist or cannot be read.
    """
    if isinstance(requirements, (str, Path)):
        path = Path(requirements).expanduser()
        if job_folder is not None and not path.is_absolute():
            path = job_folder / path
        if reach is not None and job_folder is not None:
            path = _checked_file(str(requirements), job_folder, reach)
        lines = _requirement_lines(path)
        return tuple(sorted({_normalized(req, where, reach, job_folder, quote=False) for req, where in lines}))
    if not all(isinstance(r, str) for r in requirements):
        raise JobConfigError("pythonEnv.requirements must be a list of strings or a requirements file path")
    return tuple(sorted({_normalized(req, " in pythonEnv.requirements", reach, job_folder) for req in requirements}))


def _checked_file(value: str, job_folder: Path, reach: Reach) -> Path:
    """A requirements file inside the job folder (only there), reached with no link."""
    from airflow_python_exec.models.reach import check_local

    inside = replace(reach, roots=reach.roots[:1])
    try:
        return Path(check_local(inside, value, str(job_folder), "requirements file").path)
    except JobConfigError as exc:
        if str(exc).endswith("does not exist"):
            raise ProvisioningError(f"{exc}; add it or fix pythonEnv.requirements") from None
        raise


def _check_url(url: str, reach: Reach, job_folder: Path | None, what: str) -> None:
    """A requirement's direct URL under the Reach rule: ``file:`` (also ``git+file:``) inside the job
    folder or an allowed folder; a network URL only with network."""
    from urllib.parse import unquote

    from airflow_python_exec.models.reach import check_local

    inner = url.split("+", 1)[1] if re.match(r"[A-Za-z]+\+[A-Za-z]", url) else url
    scheme = inner.split(":", 1)[0].lower()
    if scheme not in ("file", "local", "http", "https", "ssh", "git"):
        raise JobConfigError(f"{what}: uv fetches only https, http, ssh, git and file URLs; not {scheme!r}")
    if scheme in ("file", "local"):
        path = inner.split("#", 1)[0]
        if url.lower().startswith(("git+", "hg+", "svn+", "bzr+")):
            path = re.sub(r"@[^/@]*$", "", path)  # pip's @<ref> after the repository
        if not path.split(":", 1)[1].startswith("/"):  # uv takes it from its working folder, the worker's
            raise JobConfigError(f"{what}: a relative file: URL; write file:///<the absolute path>")
        # Decoded as uv reads it: a literal %2e%2e folder in the job folder must not pass for ..
        check_local(reach, unquote(path), str(job_folder) if job_folder else None, what)
    elif not reach.network:
        raise JobConfigError(
            f"{what}: {hide_url_credentials(url)!r} would be fetched over the network, and [python_exec] "
            "sandbox_network is False; put the file in the job folder"
        )


def requirements_key(requirements: Sequence[str], environ: Mapping[str, str] | None = None) -> str:
    """The requirements' contribution to an environment key (pass it to ``environment_key``).

    The interpreter is already part of the environment key. Unpinned requirements are resolved
    once per key: a newer release on the index does not change the key (refresh, or prune, to
    re-resolve).

    :param requirements: as :func:`normalize_requirements` returns them.
    :param environ: where uv's settings are read (default ``os.environ``, as uv reads them).
    :returns: a SHA-256 hex digest.
    """
    environ = os.environ if environ is None else environ
    parts = [
        f"compile={' '.join(COMPILE_OPTIONS)}",
        *(f"req={r}" for r in requirements),
        *(f"{name}={environ[name]}" for name in INDEX_SETTINGS if environ.get(name)),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def python_for(
    requires_python: str | None, python: Path, version: str, python_downloads: str = "never"
) -> tuple[Path, str]:
    """The interpreter for a script whose PEP 723 metadata says ``requires-python``.

    :param python: the base interpreter (the validated install path, or ``python_version``'s).
    :param version: its full version.
    :returns: the base interpreter when it satisfies ``requires_python`` (or there is none), else
        the newest installed Python that does.
    :raises JobConfigError: ``requires_python`` is not a version specifier.
    :raises ProvisioningError: no installed Python satisfies it; the message lists those found.
    """
    if requires_python is None:
        return python, version
    wanted = _specifier(requires_python)
    if wanted.contains(version, prereleases=True):
        return python, version
    for found_version, exe in installed_pythons(python_downloads):  # newest first
        if wanted.contains(found_version, prereleases=True):
            return exe, found_version
    found = sorted({v for v, _ in installed_pythons(python_downloads)}, key=Version)
    raise ProvisioningError(
        f"the script requires Python {requires_python} (PEP 723 requires-python) and no installed Python "
        f"matches (base {version}; found: {', '.join(found) or 'none'}); install one or change requires-python"
    )


def check_requires_python(requires_python: str | None, version: str) -> None:
    """Check a chosen interpreter's ``version`` against the script's ``requires-python``.

    For a job whose ``python_version`` is set: that choice stands, and must satisfy the script.

    :raises ProvisioningError: it does not.
    """
    if requires_python is not None and not _specifier(requires_python).contains(version, prereleases=True):
        raise ProvisioningError(
            f"the script requires Python {requires_python} (PEP 723 requires-python), not {version}; set "
            "pythonEnv.python_version to a matching Python or change requires-python"
        )


def compile_lock(requirements: Sequence[str], python: Path, lock: Path, uv: Uv) -> tuple[tuple[str, str], ...]:
    """Resolve ``requirements`` for ``python`` into the PEP 751 lock ``lock`` with uv.

    Runs ``uv pip compile --format pylock.toml --only-binary :all: --python <python>`` (wheels only,
    because locks install with ``--no-build``), with uv's index settings from the environment. Logs
    the resolved versions through ``uv.on_line`` as one ``[python_exec]`` line.

    :param lock: where the lock is written; named ``pylock.toml`` or ``pylock.<name>.toml``.
    :returns: the resolved ``(name, version)`` pairs, in the lock's order.
    :raises ProvisioningError: uv cannot resolve them (its reason in the message) or was stopped.
    """
    if not LOCK_NAME.match(lock.name):
        raise ProvisioningError(f"lock file {lock.name!r} is not a PEP 751 name; use pylock.toml")
    started = time.monotonic()
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".requirements-", suffix=".in", dir=lock.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{r}\n" for r in requirements))
        # --quiet: uv would print the whole lock besides writing it.
        uv.run(
            "resolving requirements",
            ["pip", "compile", "--quiet", *COMPILE_OPTIONS, "--python", str(python), name, "-o", str(lock)],
        )
    finally:
        os.unlink(name)
    resolved = tuple(tuple(p.split("==", 1)) for p in locked_packages(lock))
    listing = ", ".join(f"{n}=={v}" for n, v in resolved) or "nothing"
    uv.on_line(f"[python_exec] resolved {len(resolved)} package(s): {listing} ({ms(started)})")
    return resolved  # type: ignore[return-value]


def _normalized(
    text: str, where: str, reach: Reach | None = None, job_folder: Path | None = None, *, quote: bool = True
) -> str:
    """One requirement in a canonical spelling, or a one-line refusal.

    :param quote: the message may quote ``text`` (``False`` for a line of a file: only ``where``).
    """
    if len(text) > MAX_REQUIREMENT_LENGTH:  # packaging's parser takes minutes on huge strings
        raise JobConfigError(f"a requirement{where} has {len(text)} characters; {MAX_REQUIREMENT_LENGTH} at most")
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        if not quote:
            raise JobConfigError(
                f"requirement{where} is not a PEP 508 requirement; write it like 'pandas==2.2.3'"
            ) from None
        raise JobConfigError(
            f"requirement {text!r}{where} is not a PEP 508 requirement ({reason}); write it like 'pandas==2.2.3'"
        ) from None
    if req.url and reach is not None:
        try:
            _check_url(req.url, reach, job_folder, f"requirement {hide_url_credentials(text)!r}{where}")
        except JobConfigError as exc:
            if quote:
                raise
            refused = (
                "would be fetched over the network" if "network" in str(exc) else "names a place a job may not reach"
            )
            raise JobConfigError(f"requirement{where} {refused}; see [python_exec] data_allowed_uris") from None
    extras = f"[{','.join(sorted(canonicalize_name(e) for e in req.extras))}]" if req.extras else ""
    spec = f" @ {req.url} " if req.url else str(req.specifier)
    marker = f"; {req.marker}" if req.marker else ""
    return f"{canonicalize_name(req.name)}{extras}{spec}{marker}".strip()


#: Longest requirement string parsed.
MAX_REQUIREMENT_LENGTH = 4096
#: Largest requirements file read (a job-named file: read as hostile input).
MAX_REQUIREMENTS_BYTES = 1 << 20


def _read_small(path: Path) -> str:
    """The text of a requirements file: a regular file reached without following a final link,
    without blocking on a FIFO, at most :data:`MAX_REQUIREMENTS_BYTES`.

    :raises OSError: not a regular file, or larger than that.
    """
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        data = f.read(MAX_REQUIREMENTS_BYTES + 1)
    if len(data) > MAX_REQUIREMENTS_BYTES:
        raise OSError(f"larger than {MAX_REQUIREMENTS_BYTES} bytes")
    return data.decode("utf-8")


def _requirement_lines(path: Path) -> list[tuple[str, str]]:
    """``(requirement, " in <file> line N")`` for each requirement line of a requirements file."""
    try:
        text = _read_small(path)
    except FileNotFoundError:
        raise ProvisioningError(
            f"requirements file {path} does not exist; add it or fix pythonEnv.requirements"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:80]
        if isinstance(exc, UnicodeDecodeError):
            reason = f"not UTF-8 text at byte {exc.start}"
        raise ProvisioningError(f"requirements file {path} cannot be read ({reason}); fix it") from None
    lines, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*", "", raw).strip()  # pip's comments: '#' at the start or after a space
        start = start or number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        where, start = f" in {path.name} line {start}", 0
        if not line:
            continue
        if line.startswith("-") or " --" in line:
            option = next(word for word in line.split() if word.startswith("-"))
            raise JobConfigError(
                f"option {option}{where} is not supported; list requirements only, and set "
                "indexes with uv's variables (UV_INDEX_URL...) or use a pylock"
            )
        lines.append((line, where))
    return lines


def _specifier(value: object, name: str = "the script") -> SpecifierSet:
    if not isinstance(value, str):
        raise JobConfigError(f"{name}: PEP 723 'requires-python' must be a string like \">=3.11\"")
    try:
        return SpecifierSet(value)
    except InvalidSpecifier:
        raise JobConfigError(
            f'{name}: requires-python {value!r} is not a version specifier; write it like ">=3.11"'
        ) from None


def _toml(content: str, name: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise JobConfigError(f"{name}: the '# /// script' block is not valid TOML ({exc}); fix it") from None
