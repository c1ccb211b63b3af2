"""PEP 751 lock files: checks before uv sees one, what it installs for a given Python, and one-line
explanations when uv finds nothing in it for the worker (so a bad or foreign lock fails with one clear line
and the command that fixes it)."""

from __future__ import annotations

import platform
import re
import shlex
import sys
import sysconfig
from pathlib import Path
from urllib.parse import unquote

from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.isolation.job_files import read_capped
from airflow_python_exec.redaction import hide_url_credentials

#: PEP 751: ``pylock.toml`` or ``pylock.<name>.toml`` (name non-empty, no dots).
LOCK_NAME = re.compile(r"pylock(\.[^.]+)?\.toml\Z")
#: The most a lock file may hold, bytes: the worker reads it whole (a universal lock of a large
#: data-science stack is a few MiB; a sparse file of gigabytes would take as much of the worker's memory).
MAX_LOCK_BYTES = 64 << 20


def read_lock(lock: Path) -> bytes:
    """The bytes of ``lock``, read the way every job file is (:func:`~airflow_python_exec.isolation.
    job_files.read_capped`: a FIFO is not waited for, a file over :data:`MAX_LOCK_BYTES` is not read).

    :raises JobConfigError: one line: not a regular file, over the cap, or unreadable.
    """
    return read_capped(lock, "lock file", MAX_LOCK_BYTES)


def check_lock_file(lock: Path) -> None:
    """Check that ``lock`` exists and is named per PEP 751 (cheap: no read, fit for every run).

    :raises ProvisioningError: with the file and what is wrong with it.
    """
    if lock.exists() and not lock.is_file():  # a FIFO or a device would block or never end
        raise ProvisioningError(f"lock file {lock} is not a regular file; replace it with the PEP 751 lock")
    if not lock.is_file():
        raise ProvisioningError(f"lock file {lock} does not exist; add it to the job folder or fix pythonEnv.pylock")
    if not LOCK_NAME.match(lock.name):
        raise ProvisioningError(
            f"lock file {lock.name!r} is not a PEP 751 name; rename it to pylock.toml or pylock.<name>.toml"
        )


def locked_packages(lock: Path, python_version: str | None = None) -> tuple[str, ...]:
    """Parse ``lock`` and check it is a version-1 PEP 751 lock; only needed when building.

    A cache hit never calls this: its key is the lock's digest (and what the lock's local places
    hold, :func:`.job_paths.lock_digests`), and an environment exists only for content that
    parsed and installed before.

    :param python_version: the full version of the environment's interpreter (``"3.12.1"``). A
        universal lock lists a package once per Python it supports, each with a ``marker``; given a
        version, only the entries whose marker holds for it (and this machine) are returned, as uv
        installs them. ``None``: every entry.
    :returns: the ``name==version`` of each ``[[packages]]`` entry it lists (for that Python).
    :raises ProvisioningError: not valid TOML, not a PEP 751 lock, or an unsupported lock-version.
    """
    data = _load(lock)
    version = str(data.get("lock-version", ""))
    if not version or not isinstance(data.get("packages"), list):
        raise ProvisioningError(
            f"lock file {lock} is not a PEP 751 lock (no lock-version or packages); generate it with "
            "uv pip compile --format pylock.toml"
        )
    if version.split(".")[0] != "1":
        raise ProvisioningError(f"lock file {lock} has lock-version {version}; only version 1 locks are supported")
    packages = [p for p in data["packages"] if isinstance(p, dict)]
    if python_version is not None:
        packages = [p for p in packages if _marker_holds(p.get("marker"), python_version)]
    return tuple(f"{p.get('name', '?')}=={p.get('version', '?')}" for p in packages)


def download_size(lock: Path, python_version: str) -> tuple[int, int]:
    """What installing ``lock`` fetches into an empty uv cache: ``(packages, bytes)``, from the sizes
    the lock records, for each entry whose marker holds, of the wheel this machine and Python would
    take (the most specific tag first, as installers rank them) or else its sdist. A progress
    figure: uv fetches only what its cache lacks.
    """
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    version = _minor(python_version)
    rank = {tag: i for i, tag in enumerate([*cpython_tags(version), *compatible_tags(version)])}
    count = total = 0
    for package in _load(lock).get("packages", []):
        if not isinstance(package, dict) or not _marker_holds(package.get("marker"), python_version):
            continue
        best: tuple[int, int] | None = None
        for wheel in package.get("wheels") or []:
            name = str(wheel.get("name") or str(wheel.get("url", "")).rsplit("/", 1)[-1])
            try:
                tags = parse_wheel_filename(name)[3]
            except InvalidWheelFilename:
                continue
            fit = min((rank[tag] for tag in tags if tag in rank), default=None)
            if fit is not None and (best is None or fit < best[0]):
                best = (fit, int(wheel.get("size") or 0))
        sdist = package.get("sdist")
        count += 1
        total += best[1] if best is not None else int(sdist.get("size") or 0) if isinstance(sdist, dict) else 0
    return count, total


def downloading(lock: Path, python_version: str) -> str:
    """The progress line before uv downloads what its cache lacks of ``lock``."""
    try:
        count, size = download_size(lock, python_version)
    except ProvisioningError:
        return "downloading the packages uv's cache lacks"
    return f"downloading {count} packages, {size / 1e6:.1f} MB at most (uv's cache lacks some)"


def relock_command(lock: Path, python_version: str) -> str:
    """The command that re-locks ``lock`` for every platform and every Python from the lower of its
    ``requires-python`` floor and ``python_version`` (the worker's) up.

    ``--universal`` keeps every platform's wheels, each package entry carrying a marker; without
    ``--python-version`` uv would take the lowest Python from the interpreter running it, dropping
    older workers. Run in the lock's folder, with the job's top-level requirements in ``requirements.in``.
    """
    lowest = _minor(python_version)
    try:
        floor = re.match(r"\s*>=\s*(\d+)\.(\d+)", str(_load(lock).get("requires-python", "")))
    except ProvisioningError:
        floor = None
    if floor is not None:
        lowest = min(lowest, (int(floor[1]), int(floor[2])))
    return (
        f"cd {shlex.quote(str(lock.parent))} && uv pip compile --universal --only-binary :all: "
        f"--python-version {lowest[0]}.{lowest[1]} --format pylock.toml -o {shlex.quote(lock.name)} requirements.in"
    )


def worker_tags(python_version: str) -> str:
    """The wheel tags a lock must hold for this worker: ``"cp312, manylinux_2_36_x86_64"``.

    The interpreter tag comes from ``python_version`` (the environment's interpreter, which may not
    be the one running this code); the platform is this machine's, the same for every interpreter on it.
    """
    major, minor = _minor(python_version)
    return f"cp{major}{minor}, {platform_tag()}"


def platform_tag() -> str:
    """This machine's wheel platform tag, as wheel file names spell it (``manylinux_2_36_x86_64``)."""
    machine = platform.machine().lower() or "unknown"
    system = platform.system()
    if system == "Linux":
        libc, libc_version = platform.libc_ver()
        if libc == "glibc" and libc_version:
            return f"manylinux_{libc_version.replace('.', '_')}_{machine}"
        return f"linux_{machine}"  # musl and others: no glibc version to name
    if system == "Darwin":
        release = platform.mac_ver()[0].split(".")[0] or "0"
        return f"macosx_{release}_0_{machine}"
    return sysconfig.get_platform().replace("-", "_").replace(".", "_")


#: uv's words for "the lock has nothing installable for this interpreter or platform".
_NO_WHEEL = re.compile(
    r"Package `(?P<name>[^`]+)` can't be installed because it (is marked as `--no-build` but has no binary "
    r"distribution|doesn't have a source distribution or wheel for the current platform)"
)
_PYTHON_REQUIREMENT = re.compile(r"incompatible with the `?[^`\s]*`?'s Python requirement: `(?P<spec>[^`]+)`")


def explain_install_failure(lines: list[str], lock: Path, python_version: str) -> str | None:
    """Turn uv's output for a lock that does not fit this worker into one line with the fix.

    Two cases: a package without a wheel for this worker's Python and platform (a lock made for
    another Python, e.g. holding cp311 wheels only), and an interpreter outside the lock's
    ``requires-python``. Both name the worker's Python and wheel tags and the exact re-lock command.

    :param lines: uv's output lines; :param python_version: the environment interpreter's full version.
    :returns: the message, or ``None`` when uv failed for another reason.
    """
    text = "\n".join(lines)
    worker = f"this worker's Python {python_version} ({worker_tags(python_version)})"
    fix = f"re-lock it for every Python and platform your workers run: {relock_command(lock, python_version)}"
    if match := _NO_WHEEL.search(text):
        return f"the lock has no wheel of {match['name']} for {worker}; {fix}"
    if match := _PYTHON_REQUIREMENT.search(text):
        return f"the lock requires Python {match['spec']}, not {worker}; {fix}"
    return None


def local_places(lock: Path, text: bytes | None = None) -> tuple[tuple[str, str], ...]:
    """Every local place ``lock`` names for uv to read: a ``path`` (relative to the lock's folder,
    PEP 751) or a ``file:`` ``url`` of a package's ``vcs``, ``directory``, ``archive``, ``sdist`` or
    ``wheels`` entry, as ``(the value as written, where: "packages[3].wheels[0].path")``.

    :param text: the lock's bytes when the caller has read them (:func:`read_lock`), else read here.
    :raises ProvisioningError: as :func:`locked_packages`.
    """
    places = []
    for i, package in enumerate(p for p in _load(lock, text).get("packages") or () if isinstance(p, dict)):
        for kind in ("vcs", "directory", "archive", "sdist", "wheels"):
            entries = package.get(kind)
            entries = entries if isinstance(entries, list) else [entries]
            for j, entry in enumerate(e for e in entries if isinstance(e, dict)):
                at = f"packages[{i}].{kind}" + (f"[{j}]" if kind == "wheels" else "")
                if "path" in entry:
                    places.append((_read_as_path(entry["path"]), f"{at}.path"))
                url = entry.get("url")
                if isinstance(url, str) and _as_url_reader_sees(url).split(":", 1)[0].lower() in ("file", "local"):
                    places.append((_read_as(url.strip(), f"{lock.name} {at}.url"), f"{at}.url"))
    return tuple(places)


def _read_as_path(path: str) -> str:
    """``path`` as uv reads it, a path, never a URL: ``file:/../x`` is the folder ``file:`` next to
    the lock, then its parent, not ``/x``; ``./`` keeps the check from reading it as a URL."""
    # isinstance: a lock may hold any TOML value there; job_path refuses what is not a string
    return f"./{path}" if isinstance(path, str) and re.match(r"\s*[A-Za-z][A-Za-z0-9+.-]*:", path) else path


def _as_url_reader_sees(url: str) -> str:
    """``url`` as a URL reader (WHATWG, uv's) takes it: blanks and control characters trimmed at
    both ends, and every tab and newline dropped, so ``'fi<TAB>le:///x.whl'`` is a ``file:`` URL (the
    check then refuses the control character in the value as written)."""
    return re.sub(r"[\t\n\r]", "", url).strip("".join(map(chr, range(33))))


def _read_as(url: str, what: str) -> str:
    """The ``file:`` URL of the path uv reads for ``url``: a URL reader takes a backslash for ``/``,
    ends the path at ``?`` or ``#``, makes ``file:x`` absolute and decodes ``%2e%2e`` and every other
    escape, so the check sees what uv opens, never a literal spelling the job made exist.

    :raises JobConfigError: an encoded ``/`` (uv would hand its ``..`` to the file system).
    """
    scheme, _, rest = re.split(r"[?#]", url.replace("\\", "/"), maxsplit=1)[0].partition(":")
    if re.search(r"%2f", rest, re.IGNORECASE):
        raise JobConfigError(f"{what}: {hide_url_credentials(url)!r} holds an encoded '/' (%2F); write it plainly")
    return f"{scheme}:{'' if rest.startswith('/') else '/'}{unquote(rest)}"


def _load(lock: Path, text: bytes | None = None) -> dict:
    """The parsed lock (``text``: its bytes, when already read).

    :raises JobConfigError: as :func:`read_lock`.
    :raises ProvisioningError: not UTF-8 TOML.
    """
    if sys.version_info >= (3, 11):  # imported here: the cache-hit path never needs a TOML parser
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        return tomllib.loads((read_lock(lock) if text is None else text).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProvisioningError(f"lock file {lock} is not valid TOML ({exc}); regenerate it") from None


def _marker_holds(marker: object, python_version: str) -> bool:
    """Whether a package entry's PEP 508 ``marker`` holds for ``python_version`` on this machine.

    Anything that cannot be evaluated (a marker on ``extras`` or ``dependency_groups`` with an older
    ``packaging``, or a malformed one) counts as holding: uv decides what is installed, this only
    lists it.
    """
    if not marker:
        return True
    from packaging.markers import Marker  # cold path only, like the TOML parser

    major, minor = _minor(python_version)
    try:
        return Marker(str(marker)).evaluate(
            {"python_version": f"{major}.{minor}", "python_full_version": python_version}
        )
    except Exception:  # noqa: BLE001 - see the docstring
        return True


def _minor(python_version: str) -> tuple[int, int]:
    parts = re.findall(r"\d+", python_version)
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else (3, 0)
