"""Find an installed interpreter for a job's ``python_version``: on PATH, in pyenv, uv-managed.

uv's own discovery covers PATH and uv-managed interpreters but stops at pyenv's shims (a shim for a
version that is not selected fails), so pyenv's ``versions/*/bin/python3`` are listed as well.
Nothing is downloaded unless ``[python_exec] python_downloads`` allows it.

Listing takes seconds (uv runs every interpreter it finds), so with a ``cache_dir`` the result is
kept in ``<cache_dir>/interpreters.json`` for every process, and rebuilt when what it was built
from changes: a ``PATH`` folder, pyenv's ``versions/``, uv's managed-Python folder, the uv binary,
an interpreter file itself (see :mod:`airflow_python_exec.environments.interpreter_index`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from airflow_python_exec.environments import interpreter_index
from airflow_python_exec.errors import InterpreterNotRunnableError, ProvisioningError

from .uv import uv_binary


def _matches(version: str, wanted: str) -> bool:
    return version == wanted or version.startswith(wanted + ".")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def installed_pythons(python_downloads: str = "never", cache_dir: Path | None = None) -> tuple[tuple[str, Path], ...]:
    """Every CPython found, as ``(full version, executable)`` pairs, newest first.

    :param cache_dir: keep the listing in ``<cache_dir>/interpreters.json``, shared by every
        process and rebuilt when its sources change; ``None``: cached in this process only.
    """
    if cache_dir is None:
        return _listed(python_downloads)
    fingerprint = _fingerprint(python_downloads)
    known = interpreter_index.load(cache_dir).get("discovery")
    if isinstance(known, dict) and known.get("fingerprint") == fingerprint and _same_uv(known.get("uv")):
        pythons = _unchanged(known.get("pythons"))
        if pythons is not None:
            return pythons
    pythons = _list_pythons(python_downloads)
    entries = [[v, str(p), interpreter_index.file_identity(p)] for v, p in pythons]
    uv = uv_binary()

    def change(data: dict) -> None:
        data["discovery"] = {
            "fingerprint": fingerprint,
            "uv": [uv, interpreter_index.file_identity(uv)],
            "pythons": entries,
        }

    interpreter_index.update(cache_dir, change)
    return pythons


def _unchanged(entries: object) -> tuple[tuple[str, Path], ...] | None:
    """The indexed listing, or ``None`` when an interpreter in it is no longer the file it was
    (replaced, upgraded in place, removed) or the entries are damaged."""
    try:
        pythons = tuple((str(v), Path(p)) for v, p, _ in entries)  # type: ignore[attr-defined]
        if all(interpreter_index.file_identity(p) == ident for _, p, ident in entries):  # type: ignore[attr-defined]
            return pythons
    except (TypeError, ValueError):
        pass
    return None


def _same_uv(entry: object) -> bool:
    """The uv binary that made the listing is still that same file (reinstalling or upgrading the
    ``uv`` package replaces it). Checked by its recorded path: finding uv costs more than a stat."""
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and interpreter_index.file_identity(entry[0]) == entry[1]
    )


#: The pyenv variables that change which interpreters are found. Not the others: a pyenv shim sets
#: ``PYENV_DIR`` to the working directory (and ``PYENV_HOOK_PATH`` and more), so runs started from
#: different folders would each list the interpreters again (0.05-0.8 s).
_PYENV_VARS = ("PYENV_ROOT", "PYENV_VERSION")


def _fingerprint(python_downloads: str) -> str:
    """What a listing depends on: the folders interpreters are found in (identity and mtime, which
    change when an entry is added or removed) and the settings uv reads; the uv binary is checked
    apart (:func:`_same_uv`)."""
    parts = [f"index={interpreter_index.INDEX_VERSION}", f"downloads={python_downloads}"]
    parts += [f"env={k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("UV_PYTHON") or k in _PYENV_VARS]
    folders = [*os.environ.get("PATH", "").split(os.pathsep), str(_pyenv_root() / "versions"), str(_uv_python_dir())]
    parts += [f"dir={d}:{interpreter_index.file_identity(d)}" for d in folders if d]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _pyenv_root() -> Path:
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def _uv_python_dir() -> Path:
    """uv's managed-Python folder: ``UV_PYTHON_INSTALL_DIR``, else ``$XDG_DATA_HOME/uv/python``,
    else ``~/.local/share/uv/python`` (uv's documented defaults on Linux and macOS)."""
    if os.environ.get("UV_PYTHON_INSTALL_DIR"):
        return Path(os.environ["UV_PYTHON_INSTALL_DIR"]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "uv" / "python"


@functools.cache
def _listed(python_downloads: str) -> tuple[tuple[str, Path], ...]:
    return _list_pythons(python_downloads)


def _list_pythons(python_downloads: str) -> tuple[tuple[str, Path], ...]:
    """Ask uv, then add pyenv's interpreters (uv stops at pyenv's shims)."""
    found: dict[Path, str] = {}
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": python_downloads, "NO_COLOR": "1"}
    listing = subprocess.run(
        [uv_binary(), "python", "list", "--only-installed", "--output-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    if listing.returncode == 0:
        for entry in json.loads(listing.stdout or "[]"):
            if entry.get("implementation") == "cpython" and entry.get("path"):
                found[Path(entry["path"])] = entry["version"]
    for exe in sorted(_pyenv_root().glob("versions/*/bin/python3")):
        name = exe.parent.parent.name  # pyenv names a CPython folder by its version
        if re.fullmatch(r"\d+\.\d+\.\d+", name) and os.access(exe, os.X_OK):
            found.setdefault(exe, name)
    pairs = {(v, p) for p, v in found.items() if "shims" not in p.parts}
    return tuple(sorted(pairs, key=lambda vp: (_version_key(vp[0]), str(vp[1])), reverse=True))


def find_python(wanted: str, python_downloads: str = "never", cache_dir: Path | None = None) -> tuple[Path, str]:
    """Return ``(executable, full version)`` of the newest installed Python matching ``wanted``.

    ``wanted`` is ``3``, ``3.12`` or ``3.12.4``. With ``python_downloads = automatic`` a missing
    version is installed by uv first.

    :param cache_dir: where the listing is kept for every process (see :func:`installed_pythons`).
    :raises ProvisioningError: nothing matches; the message lists the versions found.
    """
    for version, exe in installed_pythons(python_downloads, cache_dir):
        if _matches(version, wanted):
            return exe, version
    if python_downloads == "automatic":
        subprocess.run(
            [uv_binary(), "python", "install", wanted],
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "UV_PYTHON_DOWNLOADS": python_downloads},
        )
        _listed.cache_clear()  # uv's folder changed: the index's fingerprint no longer matches
        for version, exe in installed_pythons(python_downloads, cache_dir):
            if _matches(version, wanted):
                return exe, version
    versions = sorted({v for v, _ in installed_pythons(python_downloads, cache_dir)}, key=_version_key)
    raise ProvisioningError(
        f"python_version {wanted} is not installed on this worker (found: {', '.join(versions) or 'none'}); "
        "install it, pick one of those, or allow [python_exec] python_downloads"
    )


PROBE_TIMEOUT_S = 30.0
_PROBE = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


@dataclass(frozen=True)
class Interpreter:
    """A validated base interpreter.

    :ivar path: the executable, e.g. ``/usr/local/bin/python3`` (not resolved through symlinks).
    :ivar version: its full version, ``"3.12.4"``.
    :ivar install_path: the installation prefix it was found under.
    """

    path: Path
    version: str
    install_path: Path

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``version`` as integers, e.g. ``(3, 12, 4)``."""
        return tuple(int(p) for p in self.version.split("."))


_probe_cache: dict[tuple[str, int, int], str] = {}
_probe_lock = threading.Lock()


def probe_version(exe: Path, cache_dir: Path | None = None) -> str:
    """Run ``exe`` once to read its full version (``"3.12.4"``); cached per (path, inode, mtime) in
    this process, so a worker probes each interpreter once, not once per task.

    :param cache_dir: also keep the version in ``<cache_dir>/interpreters.json`` for every process
        (each task runs in a new one), valid while ``exe`` is the same file (device, inode, size,
        modification and change times); see :mod:`airflow_python_exec.environments.interpreter_index`.
    :raises InterpreterNotRunnableError: it does not run or report a version.
    """
    st = exe.stat()
    key = (str(exe), st.st_ino, st.st_mtime_ns)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    if cache_dir is not None:
        known = interpreter_index.cached_probe(cache_dir, exe)
        if known is not None:
            with _probe_lock:
                _probe_cache[key] = known
            return known
    try:
        out = subprocess.run(
            [str(exe), "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise InterpreterNotRunnableError(
            f"{exe} does not run ({reason}); repair or reinstall that Python, or change install_path"
        ) from None
    lines = out.stdout.split()
    if out.returncode != 0 or not lines:
        detail = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise InterpreterNotRunnableError(
            f"{exe} does not run ({detail}); repair or reinstall that Python, or change install_path"
        )
    with _probe_lock:
        _probe_cache[key] = lines[0]
    if cache_dir is not None:
        interpreter_index.store_probe(cache_dir, exe, lines[0])
    return lines[0]
